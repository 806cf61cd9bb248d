"""`iqt upsample` checks memory before it reads the input, imports torch or loads a model (a refusal
came after the input was read, torch imported and the model loaded: 4.6-20 s and 0.62 GB for one line), with the same
figures predict checks (`Method.check_memory`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import bundle_volume
from ImageQualityTransferLib import fileio

CODE = """
import sys
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.core import memory
from ImageQualityTransferLib import fileio
memory.memory_limit = lambda: memory.PEAK_FIXED_BYTES  # any run passes it
read = []
load_tensor = fileio.load_tensor
fileio.load_tensor = lambda *a, **k: read.append(1) or load_tensor(*a, **k)
code = main(["upsample", sys.argv[1], "-o", sys.argv[2], "--method", sys.argv[3], "--uncertainty", sys.argv[4]])
print(code, "torch" in sys.modules, bool(read))
"""


def test_a_refusal_for_memory_comes_before_the_input_is_read_or_torch_imported(tmp_path):
    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(bundle_volume(shape=(14, 10, 10)), lr)
    run = subprocess.run([sys.executable, "-c", CODE, str(lr), str(tmp_path / "hr.nii.gz"), "espcn-hetero-var1",
                          str(tmp_path / "u.nii.gz")], capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["2", "False", "False"], (run.stdout, run.stderr)
    assert "with its uncertainty maps, more than this process's 0.500 GiB of memory" in run.stderr, run.stderr
    assert run.stderr.count("\n") == 1 and not list(tmp_path.glob("hr*")), run.stderr


def test_a_tensor_nrrd_output_counts_its_writer(monkeypatch):
    """Writing a tensor NRRD added about 0.7x the tensors' bytes to the peak (cubic x2 of a 145x174x145 input:
    2.98 GB against 2.49 GB to .nii.gz), which the check did not count: a run that fits to .nii.gz may not to .nrrd."""
    import pytest
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.core import memory
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.methods.base import NRRD_WRITE_MULTIPLE

    cubic = methods.get("cubic")
    shape, tensors = (100, 100, 60), 100 * 100 * 60 * 8 * 6 * 4
    limit = memory.PEAK_FIXED_BYTES + tensors * (cubic.peak_multiple(False, False) + NRRD_WRITE_MULTIPLE / 2)
    monkeypatch.setattr(memory, "memory_limit", lambda: int(limit))
    cubic.check_memory(shape, 2, maps=False)
    with pytest.raises(IQTError, match="more than this process's"):
        cubic.check_memory(shape, 2, maps=False, nrrd=True)


def test_iqt_upsample_checks_a_nrrd_output_with_its_writer(tmp_path, monkeypatch, capsys):
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.apps.cli import main
    from ImageQualityTransferLib.core import memory
    from ImageQualityTransferLib.methods.base import NRRD_WRITE_MULTIPLE

    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(bundle_volume(shape=(14, 10, 10)), lr)
    tensors = 28 * 20 * 20 * 6 * 4
    limit = memory.PEAK_FIXED_BYTES + tensors * (methods.get("cubic").peak_multiple(False, False) + NRRD_WRITE_MULTIPLE / 2)
    monkeypatch.setattr(memory, "memory_limit", lambda: int(limit))
    capsys.readouterr()
    assert main(["upsample", str(lr), "-o", str(tmp_path / "hr.nrrd"), "--method", "cubic"]) == 2
    assert "more than this process's" in capsys.readouterr().err and not (tmp_path / "hr.nrrd").exists()
    assert main(["upsample", str(lr), "-o", str(tmp_path / "hr2.nii.gz"), "--method", "cubic"]) == 0


def test_a_long_axis_counts_the_interpolation_s_weights(monkeypatch):
    """The interpolation's weights along an axis of n voxels take bytes in n squared (3.6 GB measured for 8000 voxels;
    a review's 16400-voxel axis took 14.8 GB): counted now, so a limit the tensors alone would pass refuses it."""
    import pytest
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.core import memory
    from ImageQualityTransferLib.core.errors import IQTError

    cubic = methods.get("cubic")
    shape = (8000, 6, 6)
    tensors = 16000 * 12 * 12 * 6 * 4
    limit = memory.PEAK_FIXED_BYTES + tensors * cubic.peak_multiple(False, False) + 2**30  # a GiB to spare
    monkeypatch.setattr(memory, "memory_limit", lambda: int(limit))
    with pytest.raises(IQTError, match="more than this process's"):
        cubic.check_memory(shape, 2, maps=False)
    cubic.check_memory((6, 6, 8000), (2, 2, 1), maps=False)  # that axis not refined: no such weights
    assert memory.axis_weights_bytes((256, 256, 160), 2) < 4e6


def test_a_method_on_torch_is_checked_with_torchs_address_space(monkeypatch):
    """Method.check_memory passes `torch` for a method on torch (ulimit -v: TORCH_ADDRESS_BYTES and its threads more,
    core/memory.py address_overhead) and not for one without: under a ulimit -v that leaves room for cubic's run and not
    for torch's allowance, espcn is refused and cubic runs."""
    import resource

    import pytest
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.core import memory, threads
    from ImageQualityTransferLib.core.errors import IQTError

    espcn, cubic = methods.get("espcn"), methods.get("cubic")
    assert espcn.requires_torch and not cubic.requires_torch
    shape = (20, 20, 20)
    need = max(memory.output_need(shape, 2, m.peak_multiple(False, False)) for m in (espcn, cubic))
    soft = int(need + memory.TORCH_ADDRESS_BYTES / 2)  # room for the run, not for torch's allowance
    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit", lambda which: (soft, soft) if which == resource.RLIMIT_AS else real(which))
    monkeypatch.setattr(memory, "_OVERHEAD", [(0, False)])
    monkeypatch.setattr(memory, "cgroup_limit", lambda: None)
    monkeypatch.setattr(memory, "memory_available", lambda: None)
    monkeypatch.setattr(threads, "in_use", lambda: 1)
    cubic.check_memory(shape, 2, maps=False)
    with pytest.raises(IQTError, match="of address space the process holds beyond its memory"):
        espcn.check_memory(shape, 2, maps=False)


@pytest.mark.parametrize("ratio, said", [(0.9, None), (0.95, "warning"), (0.99, "warning"), (1.08, "warning"),
                                         (1.12, "refused")])
def test_a_need_near_the_ulimit_v_limit_is_a_warning_not_a_refusal(monkeypatch, ratio, said):
    """Under ulimit -v the estimate is off either way (espcn on the Elition fit completed from 1,921,875 KiB, refused up
    to 2,132,812; on the 3 mm ortho fit it ran out of memory at 1,070,312, let start): within memory.ADDRESS_BAND of the
    limit one warning line that it may run out of memory, refused only beyond (it had been refused from just above).
    0.95: espcn on the 3 mm fit ran out of memory at need / limit 0.959-0.964 without a word (a review: the band's lower
    edge had been 0.97); at the ulimit -v the warning advises, no warning."""
    import resource
    import warnings

    from ImageQualityTransferLib.core import memory
    from ImageQualityTransferLib.core.errors import IQTError, IQTWarning

    shape = (40, 40, 30)
    need = memory.output_need(shape, 2, 4.0)
    soft = int(need / ratio)  # no address space beyond memory counted: the limit is the ulimit -v itself
    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit", lambda which: (soft, soft) if which == resource.RLIMIT_AS else real(which))
    monkeypatch.setattr(memory, "_OVERHEAD", [(0, False)])
    monkeypatch.setattr(memory, "cgroup_limit", lambda: None)
    monkeypatch.setattr(memory, "memory_available", lambda: None)
    monkeypatch.setattr(memory, "_WARNED", set())
    if said == "refused":
        with pytest.raises(IQTError, match=r"more than this process's .* GiB of memory \(ulimit -v"):
            memory.check_output_size(shape, 2)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        memory.check_output_size(shape, 2)
    lines = [str(w.message) for w in caught if issubclass(w.category, IQTWarning)]
    if said is None:
        assert lines == []
    else:
        assert len(lines) == 1 and "may run out of memory" in lines[0] and f"ulimit -v {soft // 1024:,} KiB" in lines[0]
        assert "raise ulimit -v to" in lines[0], lines
        advised = int(lines[0].split("raise ulimit -v to ")[1].split()[0].replace(",", "")) * 1024
        assert need / advised <= memory.ADDRESS_BAND[0]  # no overhead here: the limit is the ulimit -v
        monkeypatch.setattr(resource, "getrlimit", lambda which: (advised, advised) if which == resource.RLIMIT_AS
                            else real(which))
        monkeypatch.setattr(memory, "_WARNED", set())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            memory.check_output_size(shape, 2)
        assert not [w for w in caught if issubclass(w.category, IQTWarning)]


@pytest.mark.parametrize("ulimit, cgroup, said", [(1.0, 1 / 1.05, "cgroup"), (1 / 1.05, 1 / 1.02, "cgroup"),
                                                  (1 / 1.05, 1.01, "warning")])
def test_the_band_eases_only_the_ulimit_v_and_a_refusal_names_the_cgroup(monkeypatch, ulimit, cgroup, said):
    """memory.ADDRESS_BAND is the ulimit -v estimate's error: a need past a tighter cgroup limit is refused (the kernel
    kills there), and one within the band of the ulimit -v but past the cgroup limit above it is refused naming the
    cgroup's limit (it had named the ulimit -v's, which alone would have given a warning: a review). `ulimit`,
    `cgroup`: each as a share of the need."""
    import resource
    import warnings

    from ImageQualityTransferLib.core import memory
    from ImageQualityTransferLib.core.errors import IQTError, IQTWarning

    shape = (40, 40, 30)
    need = memory.output_need(shape, 2, 4.0)
    soft, real = int(need * ulimit), resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit", lambda which: (soft, soft) if which == resource.RLIMIT_AS else real(which))
    monkeypatch.setattr(memory, "_OVERHEAD", [(0, False)])
    monkeypatch.setattr(memory, "cgroup_limit", lambda: int(need * cgroup))
    monkeypatch.setattr(memory, "memory_available", lambda: None)
    monkeypatch.setattr(memory, "_WARNED", set())
    if said == "cgroup":
        with pytest.raises(IQTError) as refused:
            memory.check_output_size(shape, 2)
        assert "ulimit -v" not in str(refused.value)
        assert ("of memory (its cgroup's limit)" in str(refused.value)) == (ulimit < 1), refused.value  # in its band
        assert f"more than this process's {memory.gib(need * cgroup, need)} GiB" in str(refused.value), refused.value
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        memory.check_output_size(shape, 2)
    assert ["may run out of memory" in str(w.message) for w in caught if issubclass(w.category, IQTWarning)] == [True]
