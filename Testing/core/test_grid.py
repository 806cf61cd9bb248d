"""Per-axis factors (docs/conventions.md, Grid): parsing, the affines, nearest blocks, factors from a voxel size."""

import re

import numpy as np
import pytest

from ImageQualityTransferLib.core import grid, threads
from ImageQualityTransferLib.core.errors import IQTError


@pytest.mark.parametrize("value, expected", [(2, (2, 2, 2)), ("3", (3, 3, 3)), ("1,1,3", (1, 1, 3)), (" 2, 1 ,2", (2, 1, 2)),
                                             ((1, 3, 1), (1, 3, 1)), ([2, 2, 2], (2, 2, 2)), (np.int64(2), (2, 2, 2))])
def test_factors_parses_an_integer_or_three(value, expected):
    assert grid.factors(value) == expected


@pytest.mark.parametrize("value, words", [(1, "at least 2"), ("1,1,1", "at least 2"), ("2.5", "integer"), (2.5, "integer"),
                                          ("2,2", "three"), ("0,1,3", "positive"), ("1,-2,3", "positive"), ("a", "integer"),
                                          (None, "integer")])
def test_bad_factors_are_one_clear_line(value, words):
    with pytest.raises(IQTError, match=words) as info:
        grid.factors(value)
    assert "\n" not in str(info.value) and "--factor" in str(info.value)


def test_the_geometric_helpers_take_a_factor_of_one_everywhere():
    """Only requests need a factor of at least 2 somewhere; on a grid against itself the helpers are the identity."""
    aff = np.diag([2.0, 2.0, 2.5, 1.0])
    assert grid.factors(1, identity_ok=True) == (1, 1, 1)
    assert np.array_equal(grid.hr_affine(aff, 1), aff) and np.array_equal(grid.lr_affine(aff, 1), aff)
    a = np.arange(6).reshape(1, 2, 3)
    assert np.array_equal(grid.repeat_blocks(a, 1), a)


def test_texts_and_records():
    assert grid.text(2) == "2" and grid.text((1, 1, 3)) == "1,1,3"
    assert grid.describe(3) == "factor 3" and grid.describe("1,1,3") == "factors 1,1,3"
    assert grid.record((2, 2, 2)) == 2 and grid.record((1, 1, 3)) == [1, 1, 3]
    assert grid.isotropic((3, 3, 3)) == 3 and grid.isotropic((1, 1, 3)) is None


def test_integer_factor_is_the_isotropic_tuple():
    aff = np.array([[0.0, 0, 2.7, -60], [-2.7, 0, 0, 130], [0, 2.7, 0, -130], [0, 0, 0, 1]])
    for r in (2, 3):
        assert np.array_equal(grid.hr_affine(aff, r), grid.hr_affine(aff, (r, r, r)))
        assert np.array_equal(grid.lr_affine(aff, r, (1, 0, 1)), grid.lr_affine(aff, (r, r, r), (1, 0, 1)))
        a = np.arange(24).reshape(2, 3, 4)
        assert np.array_equal(grid.repeat_blocks(a, r), grid.repeat_blocks(a, (r, r, r)))


@pytest.mark.parametrize("f", [(1, 1, 3), (2, 1, 3), (3, 2, 1)])
def test_per_axis_affines_put_block_centres_where_the_grid_says(f):
    hr_aff = np.array([[-2.0, 0.1, 0, 10], [0, 2.0, 0.2, -5], [0, 0, 2.5, 3], [0, 0, 0, 1]])
    shift = tuple(k - 1 for k in f)
    lr_aff = grid.lr_affine(hr_aff, f, shift)
    i = np.array([2, 1, 3])
    fa = np.array(f)
    assert np.allclose(lr_aff @ np.r_[i, 1], hr_aff @ np.r_[np.array(shift) + fa * i + (fa - 1) / 2, 1])
    assert np.allclose(grid.hr_affine(grid.lr_affine(hr_aff, f), f), hr_aff)
    # a factor of 1 leaves that axis's voxel size alone
    lr_size = np.linalg.norm(lr_aff[:3, :3], axis=0)
    assert np.allclose(lr_size, np.linalg.norm(hr_aff[:3, :3], axis=0) * fa)


def test_slice_gap_spaces_the_low_res_grid_by_factor_plus_gap():
    hr_aff = np.diag([2.0, 2.0, 2.0, 1.0])
    lr_aff = grid.lr_affine(hr_aff, (1, 1, 3), (0, 0, 1), gap=(0, 0, 2))
    # low-res slice k averages high-res planes 1 + 5k .. 3 + 5k: centre 2 + 5k
    for k in range(3):
        assert np.allclose(lr_aff @ [0, 0, k, 1], [0, 0, 2.0 * (2 + 5 * k), 1])


def test_repeat_blocks_per_axis():
    a = np.arange(6).reshape(1, 2, 3)
    out = grid.repeat_blocks(a, (1, 2, 3))
    assert out.shape == (1, 4, 9)
    assert out[0, 3, 8] == a[0, 1, 2] and out[0, 2, 3] == a[0, 1, 1]


@pytest.mark.parametrize("voxel, target, expected", [((2, 2, 5), 2, (1, 1, 3)), ((2.5, 2.5, 2.5), 1.25, (2, 2, 2)),
                                                     ((2.0000001, 2, 4), 2, (1, 1, 2)), ((3, 2, 2), 1, (3, 2, 2)),
                                                     # a nominal 2.7 mm scan as its header stores it (a dev subject)
                                                     ((2.7073, 2.7073, 8.1), 2.7, (1, 1, 3)),
                                                     ((5.4146, 5.4146, 5.4), 2.7, (2, 2, 2)),
                                                     ((2.06, 2, 4), 2, (2, 1, 2))])  # 3 % above: not within
def test_factors_for_a_voxel_size(voxel, target, expected):
    f = grid.for_voxel_size(voxel, target)
    assert f == expected
    assert all(v / k <= target * (1 + grid.VOXEL_SIZE_TOLERANCE) for v, k in zip(voxel, f))


@pytest.mark.parametrize("target, words", [(2, "already"), (0, "positive"), (-1, "positive"), (float("nan"), "positive")])
def test_bad_voxel_sizes(target, words):
    with pytest.raises(IQTError, match=words):
        grid.for_voxel_size((2, 2, 2), target)


def test_permute_follows_the_reorientation():
    # input axis 0 -> canonical axis 2, 1 -> 0, 2 -> 1
    assert grid.permute((1, 1, 3), [[2, 1], [0, -1], [1, 1]]) == (1, 3, 1)


def test_axis_order_serves_a_reordering_of_the_factors():
    assert grid.axis_order((1, 1, 3), [(2, 2, 2), (1, 1, 3)]) == (0, 1, 2)
    for f in ((3, 1, 1), (1, 3, 1)):  # a rotation of the axes (an even permutation), never a mirror
        p = grid.axis_order(f, [(1, 1, 3)])
        assert tuple(f[i] for i in p) == (1, 1, 3) and p in ((1, 2, 0), (2, 0, 1))
    assert grid.axis_order(2, [(2, 2, 2)]) == (0, 1, 2)
    assert grid.axis_order((2, 2, 1), [(1, 1, 2), (2, 2, 2)]) is None
    assert grid.axis_order(3, [(2, 2, 2)]) is None
    assert grid.largest_axis((1, 3, 1)) == 1 and grid.largest_axis((2, 2, 1)) is None and grid.largest_axis(2) is None


def test_the_output_size_check_counts_a_runs_peak_and_the_processs_memory_limit(monkeypatch):
    """A grid is judged by its run's peak (a multiple of its tensors and a fixed part), not its tensors alone: x5 of a
    128x128x60 fit (2.7 GiB of tensors) passed under an 8 GB limit and ran out of memory."""
    import resource
    import subprocess
    import sys

    monkeypatch.setattr(grid, "memory_limit", lambda: 8 * 2**30)
    with pytest.raises(IQTError, match=r"tensors alone take 2.7 GiB and whose run needs about 11.5 GiB, more than "
                                       r"this process's 8.0 GiB"):
        grid.check_output_size((128, 128, 60), 5)
    monkeypatch.setattr(grid, "memory_limit", lambda: 6.5 * 2**30)
    grid.check_output_size((128, 128, 60), 4)  # 1.4 GiB of tensors: about 6.1 GiB at its peak
    with pytest.raises(IQTError, match=r"needs about 10.3 GiB with its uncertainty maps, more than this process's 6.5"):
        grid.check_output_size((128, 128, 60), 4, 7, maps=True)
    limit = 6 * 2**30
    code = "from ImageQualityTransferLib.core import grid; print(grid.memory_limit())"
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
    monkeypatch.setattr(grid, "PROC_STATUS", str(status))
    monkeypatch.setattr(grid, "_OVERHEAD", [])
    monkeypatch.setattr(grid, "cgroup_limit", lambda: None)
    monkeypatch.setattr(grid, "memory_available", lambda: None)
    assert grid.address_limit() == 2 * 2**30 and grid.memory_limit() == 2 * 2**30
    status.write_text("VmSize:\t 8 kB\nVmRSS:\t 4 kB\n")  # read once, before the work: later readings not taken
    assert grid.address_limit() == 2 * 2**30
    monkeypatch.setattr(grid, "_OVERHEAD", [(2 * 2**30, False)])  # torch not loaded when read
    monkeypatch.setattr(threads, "in_use", lambda: 1)  # torch's threads beyond the first: the test below

    def refused(limit):
        return f"needs more than this process's {limit / 2**30:.3f} GiB of memory; give less"

    grid.check_need(1.9 * 2**30, refused, "needs")
    with pytest.raises(IQTError, match=r"more than this process's 1.875 GiB of memory \(ulimit -v 4,194,304 KiB, "
                                       r"less the 2.12 GiB of address space the process holds beyond its memory\); "
                                       r"give less$"):
        grid.check_need(1.9 * 2**30, refused, "needs", torch=True)
    monkeypatch.setattr(grid, "_OVERHEAD", [(2 * 2**30, True)])  # read with torch loaded: counted already
    grid.check_need(1.9 * 2**30, refused, "needs", torch=True)



def test_ulimit_v_counts_torchs_threads(tmp_path, monkeypatch):
    """Each torch thread beyond the first takes address space (espcn's VmPeak 1.20 million KiB at --threads 1, 2.02-2.12
    at 8): a --threads 8 run had passed the check under ulimit -v 1,500,000 KiB and died of torch's allocator."""
    import resource

    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit", lambda which: (4 * 2**30, 4 * 2**30) if which == resource.RLIMIT_AS
                        else real(which))
    monkeypatch.setattr(grid, "_OVERHEAD", [(2**30, True)])
    monkeypatch.setattr(grid, "cgroup_limit", lambda: None)
    monkeypatch.setattr(grid, "memory_available", lambda: None)

    def refused(limit):
        return f"needs more than this process's {limit / 2**30:.3f} GiB of memory; give less"

    monkeypatch.setattr(threads, "in_use", lambda: 1)
    grid.check_need(2.5 * 2**30, refused, "needs", torch=True)  # 3 GiB left
    grid.check_need(2.5 * 2**30, refused, "needs")
    monkeypatch.setattr(threads, "in_use", lambda: 8)  # 0.18 + 6 x 0.13 GiB more
    with pytest.raises(IQTError, match=r"this process's 2.040 GiB of memory \(ulimit -v 4,194,304 KiB, less the 1.96 ") as e:
        grid.check_need(2.5 * 2**30, refused, "needs", torch=True)
    # what it lacks is the threads' address space: said so, not only "give less" (a review)
    assert str(e.value).endswith("; or run fewer threads (--threads 1: its 8 threads hold 0.96 GiB of address space "
                                 "beyond the first)"), e.value
    with pytest.raises(IQTError) as e:  # one thread would not fit either: fewer threads are not advised
        grid.check_need(3.5 * 2**30, refused, "needs", torch=True)
    assert "--threads" not in str(e.value), e.value
    grid.check_need(2.5 * 2**30, refused, "needs")  # not on torch: its threads not counted


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
    monkeypatch.setattr(grid, "PROC_CGROUP", str(tmp_path / "cgroup"))
    monkeypatch.setattr(grid, "CGROUP_ROOT", str(tmp_path / "fs"))
    monkeypatch.setattr(grid, "MEMINFO", str(tmp_path / "meminfo"))
    monkeypatch.setattr(grid, "_WARNED", set())


def test_a_cgroup_limit_is_the_processs_memory(monkeypatch, tmp_path):
    """A container's or a Slurm job's cgroup limit is what the kernel kills at: a run needing 5 GiB under a 4 GiB
    cgroup (cgroup v2, the limit on the job, its step below it) is refused, whatever the machine's memory (it
    passed the check and would have been killed mid-run)."""
    _fake_machine(monkeypatch, tmp_path, "0::/job/step\n", {"job/memory.max": str(4 * 2**30), "job/step/memory.max": "max",
                                                           "memory.max": "max"})
    assert grid.cgroup_limit() == 4 * 2**30 and grid.memory_limit() == 4 * 2**30
    tensors = 128 * 128 * 60 * 6 * 4 * 8  # x2 of a 128x128x60 fit: 0.7 GiB of tensors, 5 GiB at a 6x peak
    with pytest.raises(IQTError, match=r"needs about 4.9 GiB, more than this process's 4.0 GiB"):
        grid.check_output_size((128, 128, 60), 2, (5 * 2**30 - grid.PEAK_FIXED_BYTES) / tensors * 0.98)
    # "max" all the way up: no cgroup limit (the machine's memory or ulimit -v decide)
    _fake_machine(monkeypatch, tmp_path / "none", "0::/job/step\n", {"job/memory.max": "max", "job/step/memory.max": "max"})
    assert grid.cgroup_limit() is None and grid.memory_limit() > 4 * 2**30
    # cgroup v1: the memory controller's hierarchy; its "no limit" is a number near 2**63
    _fake_machine(monkeypatch, tmp_path / "v1", "5:cpu,cpuacct:/a\n4:memory:/slurm/uid_1/job_7\n0::/\n",
                  {"memory/slurm/uid_1/job_7/memory.limit_in_bytes": str(3 * 2**30),
                   "memory/memory.limit_in_bytes": "9223372036854771712"})
    assert grid.cgroup_limit() == 3 * 2**30 and grid.memory_limit() == 3 * 2**30


def test_memory_other_programs_hold_is_a_warning_not_a_refusal(monkeypatch, tmp_path):
    """A run that fits in the process's memory but needs more than the machine has available now (MemAvailable) runs,
    with one warning line (said once, though the CLI and predict both check)."""
    _fake_machine(monkeypatch, tmp_path, "0::/\n", {"memory.max": "max"}, available_kb=2 * 2**20)
    monkeypatch.setattr(grid, "memory_limit", lambda: 16 * 2**30)
    with pytest.warns(grid.IQTWarning, match=r"needs about 6.1 GiB, more than the 2.0 GiB this machine has available "
                                              r"now \(other programs hold the rest"):
        grid.check_output_size((128, 128, 60), 4)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grid.check_output_size((128, 128, 60), 4)  # said once
        _fake_machine(monkeypatch, tmp_path / "plenty", "0::/\n", {"memory.max": "max"}, available_kb=12 * 2**20)
        grid.check_output_size((128, 128, 60), 4)  # enough available: nothing said


def test_the_available_memory_warning_tells_its_figures_apart(monkeypatch, tmp_path):
    """The warning's need, available and limit to as many decimals as tell them apart (grid.gib): it had said "needs
    about 1.0 GiB, more than the 1.0 GiB this machine has available now"; `iqt fit`'s reading check (fileio/sizes.py
    check_inputs) too."""
    import nibabel as nib

    from ImageQualityTransferLib.fileio import sizes

    monkeypatch.setattr(grid, "memory_limit", lambda: int(1.04 * 2**30))
    monkeypatch.setattr(grid, "memory_available", lambda: int(0.97 * 2**30))
    monkeypatch.setattr(grid, "_WARNED", set())
    with pytest.warns(grid.IQTWarning, match=r"the run needs about 1.02 GiB, more than the 0.97 GiB this machine has "
                                              r"available now \(other programs hold the rest of the 1.04 GiB"):
        grid.check_output_size((110, 110, 60), 2)
    image = tmp_path / "dwi.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 6), np.float32), np.eye(4)), image)
    need = 4 * 4 * 4 * 6 * 4 * sizes.READ_PEAK["fit"] + grid.PEAK_FIXED_BYTES
    monkeypatch.setattr(grid, "memory_available", lambda: int(need - 2**30 * 0.004))
    with pytest.warns(grid.IQTWarning, match=rf"needs about {need / 2**30:.3f} GiB, more than the "
                                              rf"{(need - 2**30 * 0.004) / 2**30:.3f} GiB"):
        sizes.check_inputs("fit", [image])


def test_bounding_box_and_its_affine():
    """The box of a mask's voxels and the affine of that sub-grid (the cropping of padded whole-field fits and CNN tiles)."""
    present = np.zeros((5, 6, 7), bool)
    assert grid.bounding_box(present) is None
    present[1, 2, 3] = present[3, 4, 3] = True
    assert grid.bounding_box(present) == (slice(1, 4), slice(2, 5), slice(3, 4))
    affine = np.array([[0, -2.0, 0, 10], [3.0, 0, 0, -5], [0, 0, 2.5, 1], [0, 0, 0, 1]])
    sub = grid.box_affine(affine, grid.bounding_box(present))
    np.testing.assert_allclose(sub @ [0, 0, 0, 1], affine @ [1, 2, 3, 1])
    np.testing.assert_allclose(sub[:3, :3], affine[:3, :3])


def test_each_method_is_judged_by_its_own_peak(monkeypatch):
    """The forests make their uncertainty maps with or without --uncertainty (biqt peaked at 5.1-5.4x its tensors
    without it, against the 4x it was allowed): judged by their own multiple."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.core.volume import Volume

    lr = Volume(np.zeros((128, 128, 60, 6), np.float32), np.eye(4), "tensor")  # x3: 0.6 GiB of tensors
    monkeypatch.setattr(grid, "memory_limit", lambda: 3.5 * 2**30)
    for name, refused in (("cubic", False), ("biqt", True), ("rf", True), ("global-linear", False)):
        with pytest.raises(IQTError) as err:  # past the memory check, the input's zeros are refused
            methods.get(name).predict(lr, 3, uncertainty=False)
        assert ("more than this process's 3.5 GiB" in str(err.value)) == refused, (name, err.value)


def test_a_cgroup_file_that_is_not_text_reads_as_no_limit(monkeypatch, tmp_path):
    """Non-UTF-8 bytes in memory.max were 'internal error: UnicodeDecodeError', exit 1."""
    _fake_machine(monkeypatch, tmp_path, "0::/job\n", {"job/memory.max": "max"})
    (tmp_path / "fs" / "job" / "memory.max").write_bytes(b"\xff\xfe\x00max")
    assert grid.cgroup_limit() is None


def test_a_memory_refusal_tells_the_need_from_the_limit_in_its_figures(monkeypatch):
    """A need 3 % over the limit had read "needs about 1.0 GiB ..., more than this process's 1.0 GiB" (an audit of
    time and memory): as many decimals as tell them apart."""
    need = grid.output_need((110, 110, 60), 2)  # 1.02 GiB
    monkeypatch.setattr(grid, "memory_limit", lambda: int(0.97 * 2**30))
    monkeypatch.setattr(grid, "memory_available", lambda: int(0.97 * 2**30))
    assert f"{need / 2**30:.1f}" == "1.0"
    with pytest.raises(IQTError) as e:
        grid.check_output_size((110, 110, 60), 2)
    said = re.findall(r"needs about ([\d.]+) GiB.*this process's ([\d.]+) GiB", str(e.value))
    assert said and said[0][0] != said[0][1] and float(said[0][0]) > float(said[0][1]), str(e.value)
    assert grid.gib(1.5 * 2**30) == "1.5" and grid.gib(1.01 * 2**30, 0.97 * 2**30) == "1.01"
    assert grid.gib(0.04 * 2**30, 0.7 * 2**30) == "0.04" and grid.gib(0) == "0.0"  # "this process's 0.0 GiB" had read so
