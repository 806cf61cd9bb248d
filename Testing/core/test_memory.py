"""The memory a process may use (cgroup, /proc/meminfo, ulimit -v less the address space beyond resident memory, torch's
threads) and the checks of a run's peak against it (core/memory.py)."""

import re

import numpy as np
import pytest

from ImageQualityTransferLib.core import memory, threads
from ImageQualityTransferLib.core.errors import IQTError, IQTWarning


def test_the_output_size_check_counts_a_runs_peak_and_the_processs_memory_limit(monkeypatch):
    """A grid is judged by its run's peak (a multiple of its tensors and a fixed part), not its tensors alone: x5 of a
    128x128x60 fit (2.7 GiB of tensors) passed under an 8 GB limit and ran out of memory."""
    import resource
    import subprocess
    import sys

    monkeypatch.setattr(memory, "memory_limit", lambda: 8 * 2**30)
    with pytest.raises(IQTError, match=r"tensors alone take 2.7 GiB and whose run needs about 11.5 GiB, more than "
                                       r"this process's 8.0 GiB"):
        memory.check_output_size((128, 128, 60), 5)
    monkeypatch.setattr(memory, "memory_limit", lambda: 6.5 * 2**30)
    memory.check_output_size((128, 128, 60), 4)  # 1.4 GiB of tensors: about 6.1 GiB at its peak
    with pytest.raises(IQTError, match=r"needs about 10.3 GiB with its uncertainty maps, more than this process's 6.5"):
        memory.check_output_size((128, 128, 60), 4, 7, maps=True)
    limit = 6 * 2**30
    code = "from ImageQualityTransferLib.core import memory; print(memory.memory_limit())"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    # ulimit -v is the process's memory, less the address space it holds beyond its resident memory (VmSize - VmRSS)
    assert limit - 2**30 < int(run.stdout) < limit


def test_ulimit_v_counts_the_address_space_beyond_resident_memory(tmp_path, monkeypatch):
    """ulimit -v counts a process's virtual size, a few hundred MB above its resident memory (espcn under ulimit -v
    1,900,000 KiB passed a check of its peak RSS, 1.7 GiB, then died of out-of-memory after 8-10 s): the limit read
    less /proc/self/status VmSize - VmRSS, as first read; a run on torch, read before torch loaded, less
    TORCH_ADDRESS_BYTES more; the message says the ulimit -v given."""
    import resource

    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmSize:\t 3145728 kB\nVmRSS:\t 1048576 kB\n")  # 2 GiB beyond the resident
    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit", lambda which: (4 * 2**30, 4 * 2**30) if which == resource.RLIMIT_AS
                        else real(which))
    monkeypatch.setattr(memory, "PROC_STATUS", str(status))
    monkeypatch.setattr(memory, "_OVERHEAD", [])
    monkeypatch.setattr(memory, "cgroup_limit", lambda: None)
    monkeypatch.setattr(memory, "memory_available", lambda: None)
    assert memory.address_limit() == 2 * 2**30 and memory.memory_limit() == 2 * 2**30
    status.write_text("VmSize:\t 8 kB\nVmRSS:\t 4 kB\n")  # read once, before the work: later readings not taken
    assert memory.address_limit() == 2 * 2**30
    monkeypatch.setattr(memory, "_OVERHEAD", [(2 * 2**30, False)])  # torch not loaded when read
    monkeypatch.setattr(threads, "in_use", lambda: 1)  # torch's threads beyond the first: the test below

    def refused(limit):
        return f"needs more than this process's {limit / 2**30:.3f} GiB of memory; give less"

    memory.check_need(1.9 * 2**30, refused, "needs")
    with pytest.raises(IQTError, match=r"more than this process's 1.875 GiB of memory \(ulimit -v 4,194,304 KiB, "
                                       r"less the 2.12 GiB of address space the process holds beyond its memory\); "
                                       r"give less$"):
        memory.check_need(1.9 * 2**30, refused, "needs", torch=True)
    monkeypatch.setattr(memory, "_OVERHEAD", [(2 * 2**30, True)])  # read with torch loaded: counted already
    memory.check_need(1.9 * 2**30, refused, "needs", torch=True)


def test_ulimit_v_counts_torchs_threads(tmp_path, monkeypatch):
    """Each torch thread beyond the first takes address space (espcn's VmPeak 1.20 million KiB at --threads 1, 2.02-2.12
    at 8): a --threads 8 run had passed the check under ulimit -v 1,500,000 KiB and died of torch's allocator."""
    import resource

    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit", lambda which: (4 * 2**30, 4 * 2**30) if which == resource.RLIMIT_AS
                        else real(which))
    monkeypatch.setattr(memory, "_OVERHEAD", [(2**30, True)])
    monkeypatch.setattr(memory, "cgroup_limit", lambda: None)
    monkeypatch.setattr(memory, "memory_available", lambda: None)

    def refused(limit):
        return f"needs more than this process's {limit / 2**30:.3f} GiB of memory; give less"

    monkeypatch.setattr(threads, "in_use", lambda: 1)
    memory.check_need(2.5 * 2**30, refused, "needs", torch=True)  # 3 GiB left
    memory.check_need(2.5 * 2**30, refused, "needs")
    monkeypatch.setattr(threads, "in_use", lambda: 8)  # 0.18 + 6 x 0.13 GiB more
    with pytest.raises(IQTError, match=r"this process's 2.040 GiB of memory \(ulimit -v 4,194,304 KiB, less the 1.96 ") as e:
        memory.check_need(2.5 * 2**30, refused, "needs", torch=True)
    # what it lacks is the threads' address space: said so, not only "give less" (a review)
    assert str(e.value).endswith("; or run fewer threads (--threads 1: its 8 threads hold 0.96 GiB of address space "
                                 "beyond the first)"), e.value
    with pytest.raises(IQTError) as e:  # one thread would not fit either: fewer threads are not advised
        memory.check_need(3.5 * 2**30, refused, "needs", torch=True)
    assert "--threads" not in str(e.value), e.value
    memory.check_need(2.5 * 2**30, refused, "needs")  # not on torch: its threads not counted


def _fake_machine(monkeypatch, tmp_path, cgroup: str, limits: dict, available_kb: int = 64 * 2**20):
    """The memory readers pointed at fake files: /proc/self/cgroup holding `cgroup`, the cgroup tree holding each
    {relative file: text} of `limits`, and /proc/meminfo with `available_kb` available."""
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "cgroup").write_text(cgroup)
    for rel, text in limits.items():
        (tmp_path / "fs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / rel).write_text(text + "\n")
    (tmp_path / "meminfo").write_text(f"MemTotal:       {64 * 2**20} kB\nMemFree:  1000 kB\n"
                                      f"MemAvailable:   {available_kb} kB\n")
    monkeypatch.setattr(memory, "PROC_CGROUP", str(tmp_path / "cgroup"))
    monkeypatch.setattr(memory, "CGROUP_ROOT", str(tmp_path / "fs"))
    monkeypatch.setattr(memory, "MEMINFO", str(tmp_path / "meminfo"))
    monkeypatch.setattr(memory, "_WARNED", set())


def test_a_cgroup_limit_is_the_processs_memory(monkeypatch, tmp_path):
    """A container's or a Slurm job's cgroup limit is what the kernel kills at: a run needing 5 GiB under a 4 GiB
    cgroup (cgroup v2, the limit on the job, its step below it) is refused, whatever the machine's memory (it
    passed the check and would have been killed mid-run)."""
    _fake_machine(monkeypatch, tmp_path, "0::/job/step\n", {"job/memory.max": str(4 * 2**30), "job/step/memory.max": "max",
                                                           "memory.max": "max"})
    assert memory.cgroup_limit() == 4 * 2**30 and memory.memory_limit() == 4 * 2**30
    tensors = 128 * 128 * 60 * 6 * 4 * 8  # x2 of a 128x128x60 fit: 0.7 GiB of tensors, 5 GiB at a 6x peak
    with pytest.raises(IQTError, match=r"needs about 4.9 GiB, more than this process's 4.0 GiB"):
        memory.check_output_size((128, 128, 60), 2, (5 * 2**30 - memory.PEAK_FIXED_BYTES) / tensors * 0.98)
    # "max" all the way up: no cgroup limit (the machine's memory or ulimit -v decide)
    _fake_machine(monkeypatch, tmp_path / "none", "0::/job/step\n", {"job/memory.max": "max", "job/step/memory.max": "max"})
    assert memory.cgroup_limit() is None and memory.memory_limit() > 4 * 2**30
    # cgroup v1: the memory controller's hierarchy; its "no limit" is a number near 2**63
    _fake_machine(monkeypatch, tmp_path / "v1", "5:cpu,cpuacct:/a\n4:memory:/slurm/uid_1/job_7\n0::/\n",
                  {"memory/slurm/uid_1/job_7/memory.limit_in_bytes": str(3 * 2**30),
                   "memory/memory.limit_in_bytes": "9223372036854771712"})
    assert memory.cgroup_limit() == 3 * 2**30 and memory.memory_limit() == 3 * 2**30


def test_memory_other_programs_hold_is_a_warning_not_a_refusal(monkeypatch, tmp_path):
    """A run that fits in the process's memory but needs more than the machine has available now (MemAvailable) runs,
    with one warning line (said once, though the CLI and predict both check)."""
    _fake_machine(monkeypatch, tmp_path, "0::/\n", {"memory.max": "max"}, available_kb=2 * 2**20)
    monkeypatch.setattr(memory, "memory_limit", lambda: 16 * 2**30)
    with pytest.warns(IQTWarning, match=r"needs about 6.1 GiB, more than the 2.0 GiB this machine has available "
                                              r"now \(other programs hold the rest"):
        memory.check_output_size((128, 128, 60), 4)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        memory.check_output_size((128, 128, 60), 4)  # said once
        _fake_machine(monkeypatch, tmp_path / "plenty", "0::/\n", {"memory.max": "max"}, available_kb=12 * 2**20)
        memory.check_output_size((128, 128, 60), 4)  # enough available: nothing said


def test_the_available_memory_warning_tells_its_figures_apart(monkeypatch, tmp_path):
    """The warning's need, available and limit to as many decimals as tell them apart (memory.gib): it had said "needs
    about 1.0 GiB, more than the 1.0 GiB this machine has available now"; `iqt fit`'s reading check (fileio/sizes.py
    check_inputs) too."""
    import nibabel as nib

    from ImageQualityTransferLib.fileio import sizes

    monkeypatch.setattr(memory, "memory_limit", lambda: int(1.04 * 2**30))
    monkeypatch.setattr(memory, "memory_available", lambda: int(0.97 * 2**30))
    monkeypatch.setattr(memory, "_WARNED", set())
    with pytest.warns(IQTWarning, match=r"the run needs about 1.02 GiB, more than the 0.97 GiB this machine has "
                                              r"available now \(other programs hold the rest of the 1.04 GiB"):
        memory.check_output_size((110, 110, 60), 2)
    image = tmp_path / "dwi.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 6), np.float32), np.eye(4)), image)
    need = 4 * 4 * 4 * 6 * 4 * sizes.READ_PEAK["fit"] + memory.PEAK_FIXED_BYTES
    monkeypatch.setattr(memory, "memory_available", lambda: int(need - 2**30 * 0.004))
    with pytest.warns(IQTWarning, match=rf"needs about {need / 2**30:.3f} GiB, more than the "
                                              rf"{(need - 2**30 * 0.004) / 2**30:.3f} GiB"):
        sizes.check_inputs("fit", [image])


def test_each_method_is_judged_by_its_own_peak(monkeypatch):
    """The forests make their uncertainty maps with or without --uncertainty (biqt peaked at 5.1-5.4x its tensors
    without it, against the 4x it was allowed): judged by their own multiple."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.core.volume import Volume

    lr = Volume(np.zeros((128, 128, 60, 6), np.float32), np.eye(4), "tensor")  # x3: 0.6 GiB of tensors
    monkeypatch.setattr(memory, "memory_limit", lambda: 3.5 * 2**30)
    for name, refused in (("cubic", False), ("biqt", True), ("rf", True), ("global-linear", False)):
        with pytest.raises(IQTError) as err:  # past the memory check, the input's zeros are refused
            methods.get(name).predict(lr, 3, uncertainty=False)
        assert ("more than this process's 3.5 GiB" in str(err.value)) == refused, (name, err.value)


def test_a_cgroup_file_that_is_not_text_reads_as_no_limit(monkeypatch, tmp_path):
    """Non-UTF-8 bytes in memory.max were 'internal error: UnicodeDecodeError', exit 1."""
    _fake_machine(monkeypatch, tmp_path, "0::/job\n", {"job/memory.max": "max"})
    (tmp_path / "fs" / "job" / "memory.max").write_bytes(b"\xff\xfe\x00max")
    assert memory.cgroup_limit() is None


def test_a_memory_refusal_tells_the_need_from_the_limit_in_its_figures(monkeypatch):
    """A need 3 % over the limit had read "needs about 1.0 GiB ..., more than this process's 1.0 GiB" (an audit of
    time and memory): as many decimals as tell them apart."""
    need = memory.output_need((110, 110, 60), 2)  # 1.02 GiB
    monkeypatch.setattr(memory, "memory_limit", lambda: int(0.97 * 2**30))
    monkeypatch.setattr(memory, "memory_available", lambda: int(0.97 * 2**30))
    assert f"{need / 2**30:.1f}" == "1.0"
    with pytest.raises(IQTError) as e:
        memory.check_output_size((110, 110, 60), 2)
    said = re.findall(r"needs about ([\d.]+) GiB.*this process's ([\d.]+) GiB", str(e.value))
    assert said and said[0][0] != said[0][1] and float(said[0][0]) > float(said[0][1]), str(e.value)
    assert memory.gib(1.5 * 2**30) == "1.5" and memory.gib(1.01 * 2**30, 0.97 * 2**30) == "1.01"
    assert memory.gib(0.04 * 2**30, 0.7 * 2**30) == "0.04" and memory.gib(0) == "0.0"  # "this process's 0.0 GiB" had read so
