"""`--threads N` caps torch's threads without importing torch for the methods that do not use it (`iqt
--threads 1 upsample --method cubic` imported torch, +180 MB RSS and about 2 s of CPU, 334 -> 513 MB), and a CNN run
under it still uses N torch threads (torch imported after the cap)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import bundle_volume
from ImageQualityTransferLib import fileio


def _python(code: str, *args) -> str:
    run = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_the_thread_cap_does_not_import_torch():
    code = "import sys; from ImageQualityTransferLib.core import threads; threads.apply(1); print('torch' in sys.modules)"
    assert _python(code) == ["False"]


@pytest.mark.slow  # imports torch and runs a CNN in a fresh process
def test_a_cnn_run_under_the_cap_uses_that_many_torch_threads(tmp_path):
    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(bundle_volume(shape=(14, 10, 10)), lr)
    code = ("import sys\nfrom ImageQualityTransferLib.apps.cli import main\n"
            "from ImageQualityTransferLib.fileio.nifti import run_record_of\n"
            "code = main(['--threads', '3', 'upsample', sys.argv[1], '-o', sys.argv[2], '--method', 'espcn'])\n"
            "print(code, run_record_of(sys.argv[2])['threads'])")  # torch's count as the run wrote (records.run_json)
    assert _python(code, lr, tmp_path / "hr.nii.gz")[-2:] == ["0", "3"]  # 3, not the machine's cores (2 here)


def test_the_test_processes_let_openmp_wait_without_spinning():
    """The suite's processes (and the children they start) wait passively as `iqt` does, set by Testing/conftest.py
    before torch loads: two spinning xdist workers on two cores stretched the CNN tests' time."""
    import os

    assert os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"


def test_every_test_module_runs_on_one_blas_thread(request):
    """Testing/conftest.py's one_blas_thread holds for every module, not only those that asked for it: a second
    OpenBLAS thread per xdist worker doubled the CPU time of small solves on CI's two cores (test_report,
    test_failed_fits and test_benchmark: 76 -> 64 CPU s). The fixture is named too: on one CPU OpenBLAS starts with
    one thread, and the count alone passes without it (a review)."""
    import numpy  # noqa: F401  (its BLAS loaded, as in every module here)
    from threadpoolctl import threadpool_info

    assert "one_blas_thread" in request.fixturenames, request.fixturenames
    assert {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"} == {1}


def _pools() -> list:
    from threadpoolctl import threadpool_info

    return sorted((lib["user_api"], lib["filepath"], lib["num_threads"]) for lib in threadpool_info())


def test_threads_given_to_an_in_process_main_hold_for_that_call_only(tmp_path):
    """`cli.main(["--threads", "1", ...])` left the cap in place: a later call without --threads ran on one thread and
    recorded `threads: 1` (a code-health review; docs/python.md: an engine call changes no process-wide setting)."""
    from ImageQualityTransferLib.apps.cli import main
    from ImageQualityTransferLib.core import threads
    from ImageQualityTransferLib.fileio.nifti import run_record_of
    from threadpoolctl import threadpool_limits

    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(bundle_volume(shape=(8, 6, 6)), lr)
    with threadpool_limits(limits=2):  # a process with more than one thread to lose
        before = _pools()
        assert main(["--threads", "1", "upsample", str(lr), "-o", str(tmp_path / "a.nii.gz"), "--method", "cubic"]) == 0
        assert threads.cap() is None and _pools() == before
        assert main(["upsample", str(lr), "-o", str(tmp_path / "b.nii.gz"), "--method", "cubic"]) == 0
    assert run_record_of(tmp_path / "a.nii.gz")["threads"] == 1
    if "torch" not in sys.modules:  # torch's own count is per thread (the record's writer may read it in another)
        assert run_record_of(tmp_path / "b.nii.gz")["threads"] == threads.in_use()


def _fake_torch(monkeypatch):
    """A torch of 4 threads, not yet imported (the test puts it in sys.modules where the run would import it)."""
    import types

    fake = types.SimpleNamespace(n=4)
    fake.get_num_threads = lambda: fake.n
    fake.set_num_threads = lambda n: setattr(fake, "n", n)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    return fake


def test_torch_imported_under_a_cap_gets_its_own_count_back(monkeypatch):
    """torch loaded within the block (a CNN run) is capped there (limit_torch) and has its count back after."""
    from ImageQualityTransferLib.core import threads

    fake = _fake_torch(monkeypatch)
    with threads.restored():
        threads.apply(1)
        monkeypatch.setitem(sys.modules, "torch", fake)  # imported now, as methods/cnn require_torch does
        threads.limit_torch()
        assert fake.n == 1 and threads.in_use() == 1
    assert fake.n == 4 and threads.cap() is None
    fake.n = 3
    with threads.restored():  # torch loaded before the block: its count then
        threads.apply(2)
        assert fake.n == 2
    assert fake.n == 3


def test_nested_blocks_give_torch_its_own_count_back(monkeypatch):
    """An in-process main within another (torch imported and capped in the outer block, then an inner block): the
    inner exit forgot torch's count from before the cap, and torch stayed capped after the outer (a review)."""
    from ImageQualityTransferLib.core import threads

    fake = _fake_torch(monkeypatch)
    with threads.restored():
        threads.apply(1)
        monkeypatch.setitem(sys.modules, "torch", fake)
        threads.limit_torch()
        with threads.restored():
            pass
        assert fake.n == 1 and threads.cap() == 1
    assert fake.n == 4 and threads.cap() is None


@pytest.mark.parametrize("inner_cap", [None, 2])
def test_torch_imported_in_an_inner_block_stays_under_the_outer_cap(monkeypatch, inner_cap):
    """torch imported first within an inner block (a CNN run in an in-process main within another): the inner exit gave
    it back its own count, and it ran uncapped for the rest of the outer block, whose cap still held (a review)."""
    from ImageQualityTransferLib.core import threads

    fake = _fake_torch(monkeypatch)
    with threads.restored():
        threads.apply(1)
        with threads.restored():
            threads.apply(inner_cap)
            monkeypatch.setitem(sys.modules, "torch", fake)  # imported now, as methods/cnn require_torch does
            threads.limit_torch()
            assert fake.n == (inner_cap or 1)
        assert fake.n == 1 and threads.cap() == 1 and threads.in_use() == 1
    assert fake.n == 4 and threads.cap() is None


def test_wait_passively_is_a_documented_helper_that_says_whether_it_took(monkeypatch):
    """docs/python.md's snippet ran 4-7x slower than `iqt upsample` on a loaded machine: only the command set OpenMP's
    passive wait. A caller calls the helper itself; it keeps a value the user set and says whether it can take effect
    (torch not loaded yet), in-process, the environment restored by monkeypatch."""
    import os
    from pathlib import Path

    from ImageQualityTransferLib.core import threads

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert threads.wait_passively() is True and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert threads.wait_passively() is False and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    doc = (Path(__file__).resolve().parents[2] / "docs" / "python.md").read_text()
    snippet = doc.split("```python", 1)[1].split("```", 1)[0]
    assert snippet.index("threads.wait_passively()") < snippet.index("from ImageQualityTransferLib import fileio")


def test_a_container_cpu_quota_caps_the_cpus_counted(tmp_path, monkeypatch):
    """A pod given 4 CPUs on 64 cores had its 64 counted (its affinity), so `iqt train --nproc 2` recorded --threads
    32: a cgroup CPU quota (v2 cpu.max, v1 cfs_quota_us / cfs_period_us) caps the count, rounded up; none ("max", -1,
    no files) leaves the affinity's."""
    import os

    from ImageQualityTransferLib.core import threads
    from ImageQualityTransferLib.methods.cnn import distributed

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(threads, "CGROUP", str(tmp_path))
    assert threads._cores() == 64
    (tmp_path / "cpu.max").write_text("400000 100000\n")
    assert threads._cores() == 4 and distributed.default_threads(2) == 2
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads._cores() == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads._cores() == 64
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads._cores() == 3
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads._cores() == 64
