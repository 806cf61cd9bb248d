"""`iqt batch` and memory: each subject's need, from its header as `iqt upsample` judges it, checked against a local
worker's --memory-limit before the cluster starts (--memory-limit 1GiB had failed an Elition subject after 73 s, the
need unsaid), one warning line for --memory-limit x --workers above the machine's memory; and a worker that cannot get
memory or address space (ulimit -v: "can't start new thread") named so, not blamed on the installation."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
from types import SimpleNamespace

import pytest

pytest.importorskip("distributed")

from helpers import bundle_volume, engine_env, process_start_refused, refused_line  # noqa: E402
from ImageQualityTransferLib import fileio  # noqa: E402
from ImageQualityTransferLib.core.errors import IQTWarning  # noqa: E402


def _subject(tmp_path, shape=(48, 48, 48)):
    """A list of one tensor file (cubic x2 of 48^3: about 0.58 GiB at its peak, core/memory.py output_need)."""
    fileio.save_tensor(bundle_volume(shape=shape), tmp_path / "a_dti.nii.gz")
    (tmp_path / "list.txt").write_text("a_dti.nii.gz\n")
    return tmp_path / "list.txt"


def test_a_subject_past_a_workers_memory_limit_is_refused_before_the_cluster_starts(tmp_path, capsys):
    listed, out = _subject(tmp_path), tmp_path / "deriv"
    line = refused_line(capsys, ["batch", listed, "-o", out, "--method", "cubic", "--workers", "1",
                                 "--memory-limit", "600MiB"],
                        "sub-adti (", "needs about 0.6 GiB", "--memory-limit 600MiB", "give --memory-limit 1GiB or more")
    assert "leave that subject out" in line and not out.exists()


def test_a_memory_limit_past_the_machines_memory_is_said(monkeypatch):
    from distributed import system

    from ImageQualityTransferLib.apps.cli import batch as batch_cli

    monkeypatch.setattr(system, "MEMORY_LIMIT", 8 * 2**30)
    args = SimpleNamespace(memory_limit="500GiB", workers=2, uncertainty=False)
    with pytest.warns(IQTWarning, match=r"--memory-limit 500GiB x 2 workers is 0.98 TiB, more than this machine's "
                                        r"8.00 GiB"):
        batch_cli.check_worker_memory(args, [])


def test_under_ulimit_v_a_subject_is_refused_for_a_workers_address_space(tmp_path):
    """Each worker process has the ulimit -v on its own, and holds about 0.5 GiB (cubic) of address space beyond its
    memory: 1.0 GiB is too little for a 0.58 GiB need (the run had failed every subject, 'can't start new thread')."""
    listed, out = _subject(tmp_path), tmp_path / "deriv"
    limit = 2**30
    run = subprocess.run([sys.executable, "-m", "ImageQualityTransferLib", "batch", str(listed), "-o", str(out),
                          "--method", "cubic", "--workers", "1"], capture_output=True, text=True, timeout=120,
                         env=engine_env(), preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "ulimit -v 1,048,576 KiB, which each worker process has on its own; raise it to 1,200,000 KiB" in run.stderr
    assert not out.exists()


class _Done:
    key = "iqt-stand-in"  # a Dask future's key, which the run asks the scheduler about (tasks.retried_note)

    def __init__(self, result):
        self.value = result

    def result(self):
        return dict(self.value)


class _Failed:
    key = "iqt-stand-in"

    def __init__(self, exc):
        self.exc = exc

    def result(self):
        raise self.exc


@pytest.mark.parametrize("exc", [RuntimeError("can't start new thread"), MemoryError(),
                                 OSError(errno.ENOMEM, "Cannot allocate memory")])
def test_a_worker_out_of_memory_is_said_so(tmp_path, monkeypatch, exc):
    from ImageQualityTransferLib.apps.batch import tasks
    from ImageQualityTransferLib.apps.batch.items import Item

    client = SimpleNamespace(submit=lambda *a, **k: _Failed(exc), cluster=object())
    monkeypatch.setattr(tasks, "_as_completed", lambda client, futures, wait, *more: iter(futures))
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1_500_000 * 1024, resource.RLIM_INFINITY))
    ended = []
    item = Item(prefix="sub-a", subdir="sub-a", path=str(tmp_path / "a_dti.nii.gz"), kind="dti")
    tasks._run_items([item], None, tmp_path, client, 1.0, lambda it, r: ended.append(r))
    reason = ended[0]["reason"]
    assert ended[0]["status"] == "failed" and "installed" not in reason, reason
    assert reason.startswith("a worker ran out of memory (") and "ulimit -v 1,500,000 KiB" in reason, reason


@pytest.mark.parametrize("local", [True, False])
def test_a_killed_worker_is_said_with_the_options_that_set_its_memory(tmp_path, monkeypatch, local):
    """A --scheduler worker killed mid-task had the advice "--memory-limit or run fewer --workers", options that
    --scheduler refuses (a cluster audit): its reason names what sets a scheduler's workers' memory."""
    from distributed import KilledWorker

    from ImageQualityTransferLib.apps.batch import tasks
    from ImageQualityTransferLib.apps.batch.items import Item

    client = SimpleNamespace(submit=lambda *a, **k: _Failed(KilledWorker("iqt-1", "tcp://10.0.0.2:4000", 3)),
                             cluster=object() if local else None)
    monkeypatch.setattr(tasks, "_as_completed", lambda client, futures, wait, *more: iter(futures))
    ended = []
    item = Item(prefix="sub-a", subdir="sub-a", path=str(tmp_path / "a_dti.nii.gz"), kind="dti")
    tasks._run_items([item], None, tmp_path, client, 1.0, lambda it, r: ended.append(r))
    reason = ended[0]["reason"]
    assert reason.startswith("the worker running it died"), reason
    assert ("--memory-limit or run fewer --workers" in reason) == local, reason
    assert ("'dask worker --memory-limit', the cluster job's memory" in reason) != local, reason


@pytest.mark.parametrize("exc", ["killed", MemoryError()])
def test_a_lone_local_worker_is_not_told_to_run_fewer(tmp_path, monkeypatch, exc):
    """`iqt batch --workers 1` whose worker died or ran out of memory had been advised "or run fewer --workers" (a
    review); with two workers it still is."""
    from distributed import KilledWorker

    from ImageQualityTransferLib.apps.batch import tasks
    from ImageQualityTransferLib.apps.batch.items import Item

    if exc == "killed":
        exc = KilledWorker("iqt-1", "tls://127.0.0.1:4000", 3)
    monkeypatch.setattr(tasks, "_as_completed", lambda client, futures, wait, *more: iter(futures))
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    item = Item(prefix="sub-a", subdir="sub-a", path=str(tmp_path / "a_dti.nii.gz"), kind="dti")
    for n in (1, 2):
        cluster = SimpleNamespace(worker_spec=dict.fromkeys(range(n)))  # a LocalCluster's, one entry a worker
        ended = []
        tasks._run_items([item], None, tmp_path, SimpleNamespace(submit=lambda *a, **k: _Failed(exc), cluster=cluster),
                          1.0, lambda it, r: ended.append(r))
        reason = ended[0]["reason"]
        assert "--memory-limit" in reason and ("fewer --workers" in reason) == (n > 1), reason


class _Ran:
    key = "iqt-stand-in"

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


@pytest.mark.parametrize("exc", [MemoryError("Unable to allocate 9.13 GiB"), RuntimeError("can't start new thread")])
def test_a_lone_local_worker_whose_subject_ran_out_is_not_told_to_run_fewer(tmp_path, monkeypatch, exc):
    """A MemoryError (or a thread that could not start) inside the subject on `iqt batch --workers 1`'s one worker had
    still been advised "run fewer --workers" (subject.py said it without the count): the task carries the count."""
    import helpers

    from ImageQualityTransferLib.apps import batch
    from ImageQualityTransferLib.apps.batch import subject, tasks
    from ImageQualityTransferLib.apps.batch.records import Settings
    from ImageQualityTransferLib.fileio.model_files import build

    def compute(item, s):
        raise exc

    monkeypatch.setattr(subject, "compute", compute)
    monkeypatch.setattr(tasks, "_as_completed", lambda client, futures, wait, *more: iter(futures))
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    helpers.tensor_list(tmp_path)
    item = batch.find_items(tmp_path / "list.txt")[0]
    for n in (1, 2):
        cluster = SimpleNamespace(worker_spec=dict.fromkeys(range(n)))  # a LocalCluster's, one entry a worker
        client = SimpleNamespace(submit=lambda task, payload, run_build, torch, **k: _Ran(task(payload, run_build)),
                                 cluster=cluster)
        ended = []
        tasks._run_items([item], Settings(method="nearest"), tmp_path / "o", client, 1.0,
                          lambda it, r: ended.append(r), run_build=build())
        reason = ended[0]["reason"]
        assert "--memory-limit" in reason or "more memory" in reason, reason
        assert ("fewer --workers" in reason) == (n > 1), reason


@pytest.mark.parametrize("local", [True, False])
def test_a_remote_workers_address_space_is_said_as_the_workers(tmp_path, monkeypatch, local):
    """Under --scheduler a worker's refusal for its own ulimit -v read "more than this process's 0.6 GiB (ulimit -v
    ...)", as if it were the shell's that ran iqt batch (a cluster audit): said as the worker's, with its fix."""
    from ImageQualityTransferLib.apps.batch import tasks
    from ImageQualityTransferLib.apps.batch.items import Item

    said = ("factor 2: a high-res grid of 144x144x72 voxels, whose run needs about 0.7 GiB, more than this process's "
            "0.6 GiB of memory (ulimit -v 1,300,000 KiB, less the 0.64 GiB of address space the process holds beyond "
            "its memory); give smaller factors (or a larger --voxel-size)")
    item = Item(prefix="sub-a", subdir="sub-a", path=str(tmp_path / "a_dti.nii.gz"), kind="dti")
    done = {"subject": "sub-a", "input": item.path, "status": "failed", "qc": {}, "reason": said}
    client = SimpleNamespace(submit=lambda *a, **k: _Done(done), cluster=object() if local else None)
    monkeypatch.setattr(tasks, "_as_completed", lambda client, futures, wait, *more: iter(futures))
    ended = []
    tasks._run_items([item], None, tmp_path, client, 1.0, lambda it, r: ended.append(r))
    reason = ended[0]["reason"]
    if local:
        assert reason == said
    else:
        assert "more than the worker's 0.6 GiB of memory (ulimit -v 1,300,000 KiB" in reason, reason
        assert "this process" not in reason and reason.endswith("raise that worker's ulimit -v where 'dask worker' is "
                                                                "started (its cluster job's memory, e.g. h_vmem)"), reason


def _dask_machine(monkeypatch, memory, cores):
    """Dask's view of this machine (what every nanny of the local cluster reads), and a cluster that must not start."""
    from distributed import system, worker_memory

    from ImageQualityTransferLib.apps import batch

    monkeypatch.setattr(system, "MEMORY_LIMIT", memory)
    monkeypatch.setattr(worker_memory, "CPU_COUNT", cores)

    def started(*args, **kwargs):
        raise RuntimeError("the cluster started")

    monkeypatch.setattr(batch, "start_client", started)


def test_the_auto_share_is_the_machines_memory_over_its_cores_not_over_the_workers(tmp_path, capsys, monkeypatch):
    """--memory-limit auto: Dask gives each single-threaded worker the machine's memory / its CPU cores, whatever
    --workers is; 8 GiB over 16 cores is 0.5 GiB, too little for 0.58 GiB (checked as 8 GiB / 1 worker, it had passed)."""
    listed, out = _subject(tmp_path), tmp_path / "deriv"
    _dask_machine(monkeypatch, 8 * 2**30, 16)
    line = refused_line(capsys, ["batch", listed, "-o", out, "--method", "cubic", "--workers", "1"],
                        "needs about 0.6 GiB", "8.00 GiB / its 16 cores, 512.00 MiB", "give --memory-limit 1GiB or more")
    assert "fewer --workers" not in line and not out.exists()


def test_the_auto_share_does_not_shrink_with_more_workers(tmp_path, capsys, monkeypatch):
    """1 GiB on 1 core: each of 16 workers is given 1 GiB by Dask (refused as 64 MiB each before)."""
    listed, out = _subject(tmp_path), tmp_path / "deriv"
    _dask_machine(monkeypatch, 2**30, 1)
    from ImageQualityTransferLib.apps.cli import main

    capsys.readouterr()
    main(["batch", str(listed), "-o", str(out), "--method", "cubic", "--workers", "16"])
    err = capsys.readouterr().err
    assert "the cluster started" in err  # past the check
    # 16 workers of 1 GiB each on a 1 GiB machine: said, as a --memory-limit x --workers over it is (a review)
    assert "iqt: warning: --workers 16: each worker may use 1.00 GiB (the machine's memory over its 1 cores)" in err, err


@pytest.mark.parametrize("exc", [MemoryError(), OSError(errno.ENOMEM, "Cannot allocate memory"),
                                 RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                                              "allocate memory: you tried to allocate 6489600 bytes. Error code 12")])
def test_a_subject_out_of_memory_in_its_own_run_is_said_as_a_worker_out_of_memory(tmp_path, monkeypatch, exc):
    """Inside the subject's run (subject.py _process) the same reason as for a task that never returned
    (memory_reasons.memory_reason), with the worker's ulimit -v: MemoryError had left it out, ENOMEM and torch's allocator
    were said as internal errors."""
    from ImageQualityTransferLib.apps.batch import subject
    from ImageQualityTransferLib.apps.batch.items import Item
    from ImageQualityTransferLib.apps.batch.records import Settings

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(subject, "compute", boom)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (3_000_000 * 1024, resource.RLIM_INFINITY))
    fileio.save_tensor(bundle_volume(shape=(8, 8, 8)), tmp_path / "a_dti.nii.gz")
    item = Item(prefix="sub-a", subdir="sub-a", path=str(tmp_path / "a_dti.nii.gz"), kind="dti")
    res = subject.process(item, Settings(method="cubic", factor=2), str(tmp_path / "out"))
    assert res["status"] == "failed" and "internal error" not in res["reason"], res["reason"]
    assert res["reason"].startswith(f"a worker ran out of memory ({type(exc).__name__}"), res["reason"]
    assert "ulimit -v 3,000,000 KiB, which each worker process has on its own" in res["reason"], res["reason"]


@pytest.mark.parametrize("where", ["compute", "write"])
def test_a_subject_out_of_open_files_is_said_so_not_an_internal_error(tmp_path, monkeypatch, where):
    """EMFILE inside a subject's run (a worker under ulimit -n) had failed it "internal error: OSError: [Errno 24] Too
    many open files: '.../.iqt-6t4zvypf.nii.gz'" (a review's oeb.err): now the limit's line, the output's where its
    own write met it (fileio/writing.py atomic_write), no temporary file named."""
    from ImageQualityTransferLib.apps.batch import subject
    from ImageQualityTransferLib.apps.batch.items import Item
    from ImageQualityTransferLib.apps.batch.records import Settings
    from ImageQualityTransferLib.fileio import writing

    def boom(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files", str(tmp_path / "out" / ".iqt-6t4zvypf.nii.gz"))

    if where == "compute":
        monkeypatch.setattr(subject, "compute", boom)
    fileio.save_tensor(bundle_volume(shape=(8, 8, 8)), tmp_path / "a_dti.nii.gz")
    if where == "write":  # the first output's own write
        monkeypatch.setattr(writing, "_mode_for", boom)
    item = Item(prefix="sub-a", subdir="sub-a", path=str(tmp_path / "a_dti.nii.gz"), kind="dti")
    res = subject.process(item, Settings(method="cubic", factor=2), str(tmp_path / "out"))
    assert res["status"] == "failed" and "internal error" not in res["reason"], res["reason"]
    assert "too many open files: this process met its limit on open files (ulimit -n " in res["reason"], res["reason"]
    assert ".iqt-" not in res["reason"] and "--workers" not in res["reason"], res["reason"]
    if where == "write":
        assert ": cannot be written: too many open files" in res["reason"], res["reason"]


@pytest.mark.parametrize("exc", [RuntimeError("can't start new thread"), process_start_refused()])
@pytest.mark.parametrize("local", [True, False, None])
def test_cant_start_new_thread_without_ulimit_v_may_be_a_thread_limit(monkeypatch, local, exc):
    """Without ulimit -v, "can't start new thread" (pthread_create's EAGAIN) is more often a cap on threads or
    processes (ulimit -u, a cgroup's pids.max) than memory: said so, not only memory; a process start's EAGAIN (an
    OSError) too, named a process (it had failed the subject as a bug)."""
    from ImageQualityTransferLib.apps.batch import tasks

    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    reason = tasks.memory_reason(exc, local=local)
    assert tasks.out_of_memory(exc) and "ran out of memory" not in reason, reason
    what = "thread" if isinstance(exc, RuntimeError) else "process"
    assert reason.startswith(f"a worker could not start a {what} ({exc}): a limit on threads or "
                             "processes (") and "ulimit -u, a cgroup's pids.max" in reason and "or memory" in reason
    assert "ran out of memory" in tasks.memory_reason(MemoryError(), local=local)
    # a non-blocking write's EAGAIN (a full pipe) is no process refused: not memory, the subject's failure its own
    assert not tasks.out_of_memory(BlockingIOError(errno.EAGAIN, "write could not complete without blocking", 0))


def test_an_eagain_raised_outside_a_process_start_is_no_process_refused():
    """An OSError EAGAIN without characters_written (os.read on an empty non-blocking pipe; a helper's own raise) is
    I/O, not a process refused: only the traceback walk of core/errors.process_not_started tells them apart (a review:
    with that walk removed every test had still passed)."""
    from ImageQualityTransferLib.apps.batch import tasks
    from ImageQualityTransferLib.core.errors import process_not_started

    def helper():
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    r, w = os.pipe()
    os.set_blocking(r, False)
    try:
        os.read(r, 1)
    except BlockingIOError as exc:
        read = exc
    finally:
        os.close(r)
        os.close(w)
    try:
        helper()
    except OSError as exc:
        raised = exc
    for exc in (read, raised):
        assert not hasattr(exc, "characters_written") and exc.errno == errno.EAGAIN
        assert not process_not_started(exc) and not tasks.out_of_memory(exc), exc
    assert process_not_started(process_start_refused())


def test_a_dwi_subjects_fit_is_checked_as_iqt_fit_checks_it(tmp_path, capsys):
    """A DWI subject is fitted before it is upsampled: its need is the larger of the fit's (fileio/sizes.py read_need,
    5.5 x its DWI's voxels as float32 + 0.5 GiB) and the run's (a 16^3 grid of 1000 volumes: 0.58 GiB against the
    run's 0.51; only the run's had been checked)."""
    import nibabel as nib
    import numpy as np

    folder = tmp_path / "P01"
    folder.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16, 1000), np.int8), np.eye(4)), folder / "dwi.nii.gz")
    b = np.r_[0, np.full(999, 1000)]
    (folder / "dwi.bval").write_text(" ".join(map(str, b)) + "\n")
    v = np.random.default_rng(0).normal(size=(3, 1000))
    v /= np.linalg.norm(v, axis=0)
    (folder / "dwi.bvec").write_text("\n".join(" ".join(f"{x:.6f}" for x in row) for row in v) + "\n")
    (tmp_path / "list.txt").write_text("P01\n")
    out = tmp_path / "deriv"
    line = refused_line(capsys, ["batch", tmp_path / "list.txt", "-o", out, "--method", "cubic", "--workers", "1",
                                 "--memory-limit", "600MiB"],
                        "sub-P01 (", "fitting its DWI takes the most) needs about 0.6 GiB", "--memory-limit 600MiB")
    assert not out.exists(), line


@pytest.mark.parametrize("given", ["AUTO", " Auto "])
def test_memory_limit_auto_in_any_case(tmp_path, capsys, monkeypatch, given):
    """--memory-limit AUTO is auto (Dask's parser had ended it in 'internal error: ValueError: Could not interpret
    AUTO as a byte unit'): it reaches the check of auto's share."""
    listed, out = _subject(tmp_path), tmp_path / "deriv"
    _dask_machine(monkeypatch, 8 * 2**30, 16)
    refused_line(capsys, ["batch", listed, "-o", out, "--method", "cubic", "--workers", "1", "--memory-limit", given],
                 "needs about 0.6 GiB", "a worker's auto share")


def test_a_schedulers_workers_memory_limits_are_checked_before_any_subject_runs(tmp_path, capsys):
    """--scheduler: each subject's need had been checked for the local cluster only, so a scheduler's workers too small
    for it failed it after its run began. Their memory_limit, which the scheduler knows: refused in one line where no
    worker can hold a subject (600 MiB, stopped at 95 %, for 0.58 GiB), said in a warning where only some can. Only
    the workers connected then are seen, which both lines say (a review: a 4 GiB worker joining 4 s after a 600 MiB
    one, the run was refused naming '1 worker' alone)."""
    import dask
    from distributed import LocalCluster

    listed, out = _subject(tmp_path), tmp_path / "deriv"
    # In-process workers measure this whole pytest process, which after other test files holds more than 600 MiB: their
    # memory monitor would pause the worker and wait_for_workers below hang (a CI run); the limits alone are tested
    # (terminate stays: the check reads its fraction, and a worker without a nanny is not stopped by it).
    monitor_off = {f"distributed.worker.memory.{k}": False for k in ("target", "spill", "pause")}
    with dask.config.set(monitor_off), LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                                    memory_limit="600MiB", protocol="tcp", host="127.0.0.1",
                                                    dashboard_address="127.0.0.1:0") as c:
        line = refused_line(capsys, ["batch", listed, "-o", out, "--method", "cubic", "--scheduler", c.scheduler_address],
                            "sub-adti (", "needs about 0.6 GiB", "the scheduler's 1 worker connected now, 600.00 MiB",
                            "'dask worker --memory-limit 1GiB' or more", "workers that join later are not counted")
        assert "leave that subject out" in line and not out.exists()
        c.new_spec["options"]["memory_limit"] = "4GiB"  # a second worker that can hold it
        c.scale(2)
        c.wait_for_workers(2, timeout=120)
        from ImageQualityTransferLib.apps.cli import main

        main(["batch", str(listed), "-o", str(out), "--method", "cubic", "--scheduler", c.scheduler_address])
        err = capsys.readouterr().err
    assert "iqt: warning: sub-adti (" in err and "more than the memory limit of 1 of the scheduler's 2 workers connected now" in err, err
