"""`iqt batch` at scale: Ctrl-C while the local cluster starts, a scheduler without (usable) workers,
workers of another version, two runs into one folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib import __version__  # noqa: E402
from ImageQualityTransferLib.apps import batch, cli  # noqa: E402

import helpers  # noqa: E402
from helpers import run_cli  # noqa: E402

ENV = helpers.engine_env()


def make_bids(root: Path, subjects=("01",)) -> Path:
    return helpers.make_bids(root, subjects, shape=(24, 28, 20))


def group(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,pgid=,stat=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split()[1] == str(pgid) and not line.split()[2].startswith("Z")]


@pytest.mark.slow
def test_ctrl_c_while_the_local_workers_start_stops_the_run(tmp_path):
    """A terminal's Ctrl-C (SIGINT to the process group) while the local cluster's worker was starting was
    lost (SIGINT ignored in the main process for the whole start, 3-4 s) and the batch ran to its end, exit 0. Sent as
    the worker process appears, it now stops the run: exit 130, one line, no output, no process left, no worker
    traceback."""
    ds = make_bids(tmp_path / "bids", subjects=("01", "02", "03"))
    out = tmp_path / "deriv"
    cmd = [sys.executable, "-m", "ImageQualityTransferLib", "--threads", "1", "batch", str(ds), "-o", str(out),
           "--method", "cubic", "--workers", "1", "--dashboard-address", "127.0.0.1:0"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None and not any("multiprocessing" in line
                                                                          for line in group(proc.pid)):
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.strip() == "iqt: interrupted; no partial output was left; the subjects that ended are kept, and a rerun of the same command skips them and does the rest", err
    assert time.monotonic() - sent < 30
    assert not list(out.glob("sub-*/dwi/*")) and not [p for p in out.rglob(".iqt-*")]
    assert helpers.wait_until(lambda: group(proc.pid) == []), group(proc.pid)  # its processes gone, however loaded


def test_a_ctrl_c_as_a_worker_is_forked_is_kept(monkeypatch):
    """This process ignored SIGINT while Dask's thread forked a worker, so that the worker inherited it ignored; a
    Ctrl-C that came in that moment was lost and the batch ran to its end, exit 0 (CI of stop 57). A SIGINT sent to
    this process just as the worker is forked is now held and returned, and the child still starts."""
    import multiprocessing
    from multiprocessing import util

    from ImageQualityTransferLib.apps.batch import local_cluster

    real = util.spawnv_passfds

    def ctrl_c_then_fork(path, args, passfds):
        os.kill(os.getpid(), signal.SIGINT)  # the terminal's Ctrl-C, as the worker is forked
        time.sleep(0.2)
        return real(path, args, passfds)

    def make():
        child = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0.1,))
        child.start()
        child.join(30)
        return child

    monkeypatch.setattr(util, "spawnv_passfds", ctrl_c_then_fork)
    before = signal.getsignal(signal.SIGINT)
    child, held = local_cluster._spawn_ignoring_ctrl_c(make)
    assert held and set(held) == {signal.SIGINT}  # one per fork (the resource tracker's and the child's)
    assert child.exitcode == 0
    assert signal.getsignal(signal.SIGINT) == before and util.spawnv_passfds is ctrl_c_then_fork


def test_a_ctrl_c_deferred_since_an_import_is_not_lost_to_the_workers_start(monkeypatch):
    """A SIGINT during the imports was deferred (cli._on_signal) and sent again every 50 ms; the first
    re-send while the workers started met SIGINT ignored, and nothing was left pending. Now `_resend` keeps it while
    SIGINT is ignored, and the cluster's start ends in KeyboardInterrupt with its workers closed."""
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        cli._deferred["signum"] = signal.SIGINT
        cli._resend(signal.SIGINT)  # while ignored: kept, and tried again
        assert cli._deferred["signum"] == signal.SIGINT and cli._deferred["timer"] is not None
    finally:
        cli.cancel_deferred()
        signal.signal(signal.SIGINT, before)
    cli._deferred["signum"] = signal.SIGINT  # pending when the cluster starts
    try:
        with pytest.raises(KeyboardInterrupt):
            batch.start_client(1, dashboard_address="127.0.0.1:0")
    finally:
        cli.cancel_deferred()
    assert cli._deferred["signum"] is None and signal.getsignal(signal.SIGINT) == before
    import psutil

    def worker(c) -> bool:
        try:
            return c.status() != psutil.STATUS_ZOMBIE and "--multiprocessing-fork" in c.cmdline()
        except psutil.NoSuchProcess:  # ended as it was looked at
            return False

    def workers() -> list:
        return [c for c in psutil.Process().children() if worker(c)]

    assert helpers.wait_until(lambda: not workers()), workers()  # closed, however loaded the machine


@pytest.fixture
def empty_scheduler():
    """A real Dask scheduler with no worker (a LocalCluster of none, in this process)."""
    from distributed import LocalCluster

    c = LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address="127.0.0.1:0")
    yield c
    c.close()


@pytest.mark.slow
def test_a_scheduler_without_workers_is_waited_for_a_bounded_time(tmp_path, empty_scheduler):
    """--scheduler at a real scheduler with no worker waited forever with no message. Now it says it waits
    (0 connected), and after --wait-workers seconds (0.5 here: the test waits them out) stops with one line, exit 2,
    nothing written."""
    ds = make_bids(tmp_path / "bids")
    cmd = [sys.executable, "-m", "ImageQualityTransferLib", "--threads", "1", "batch", str(ds), "-o",
           str(tmp_path / "o"), "--method", "cubic", "--scheduler", empty_scheduler.scheduler_address,
           "--wait-workers", "0.5"]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("iqt batch still waited for workers after 60 s")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines[0] == (f"iqt: waiting for workers at {empty_scheduler.scheduler_address}: 0 connected (up to 0.5 s, "
                        "--wait-workers)"), lines
    assert len(lines) == 2 and lines[1].startswith("iqt: error: --scheduler ") and "no worker connected within 0.5 s" \
        in lines[1], lines
    assert time.monotonic() - start < 30 and not (tmp_path / "o").exists()


RELEASE = threading.Event()


def _blocked():  # a task that runs until the test releases it (the worker runs in this process)
    RELEASE.wait(60)


@pytest.mark.slow
@pytest.mark.parametrize("own", [False, True], ids=["scheduler", "own local cluster"])
def test_a_run_whose_workers_all_left_stops_after_the_wait(empty_scheduler, monkeypatch, own):
    """When every worker died or left (a worker without the project dies on its first task), the tasks
    waited forever. Now the run stops once the cluster has had no worker for the wait, its unfinished tasks cancelled;
    the line's advice is --memory-limit for a local cluster this process started only (it sets no scheduler's workers),
    else to wait for the cluster's workers (the scheduler's wording had no test: a review's mutation)."""
    from distributed import Client

    from ImageQualityTransferLib.apps.batch import scheduler, tasks
    from ImageQualityTransferLib.core.errors import IQTError

    if own:
        monkeypatch.setitem(scheduler._OWN_CLUSTERS, empty_scheduler.scheduler_address, None)
    monkeypatch.setattr(tasks, "WORKERS_POLL_S", 0.2)  # the wait's rounds, shortened with it
    mend = ("rerun the same command, which skips the subjects done, with a larger --memory-limit where a subject's "
            "worker died" if own else "rerun the same command, which skips the subjects done, once your cluster has "
            "workers again (with more memory where one was killed)")
    RELEASE.clear()  # set by the case before
    try:
        with Client(empty_scheduler) as client:
            empty_scheduler.scale(1)
            client.wait_for_workers(1, timeout=30)
            fut = client.submit(_blocked, pure=False)
            deadline = time.time() + 30
            while time.time() < deadline and not client.processing():
                time.sleep(0.05)
            empty_scheduler.scale(0)
            start = time.monotonic()
            with pytest.raises(IQTError, match=r"1 of 1 subject not run: .* no worker for 0.5 s") as err:
                list(tasks._as_completed(client, [fut], 0.5))
            assert str(err.value).endswith(mend), err.value
            assert time.monotonic() - start < 15
            assert fut.cancelled()
    finally:
        RELEASE.set()


BLOCK = '''import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "ImageQualityTransferLib":
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
'''


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["old", "other-build", "missing"])
def test_workers_without_this_version_are_refused_before_any_task(tmp_path, capsys, empty_scheduler, kind):
    """A worker that cannot import the project died unpickling the first task and the run hung; one of
    another version wrote outputs recording its own SoftwareVersion, exit 0. Now each is named in one line, exit 2,
    before any task or file; so is one of this version from other code (the version is a constant that
    two commits share)."""
    env, extra = dict(ENV), []
    if kind == "old":  # another ImageQualityTransfer first on the worker's path
        old = tmp_path / "oldlib" / "ImageQualityTransferLib" / "core"
        old.mkdir(parents=True)
        (old.parent / "__init__.py").write_text("")
        (old / "__init__.py").write_text("")
        (old / "version.py").write_text("__version__ = '0.0.9-old'\n")
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "oldlib"), ENV["PYTHONPATH"]])
    elif kind == "other-build":  # this version's code with one line changed, and this install's models
        here = Path(batch.__file__).resolve().parents[3]  # ImageQualityTransfer/ (the package and Resources/)
        shutil.copytree(here / "ImageQualityTransferLib", tmp_path / "other" / "ImageQualityTransferLib",
                        ignore=shutil.ignore_patterns("__pycache__"))
        (tmp_path / "other" / "Resources").symlink_to(here / "Resources")
        with open(tmp_path / "other" / "ImageQualityTransferLib" / "methods" / "interpolation.py", "a") as f:
            f.write("\nCHANGED = True\n")
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "other"), ENV["PYTHONPATH"]])
    else:
        (tmp_path / "block.py").write_text(BLOCK)
        extra = ["--preload", str(tmp_path / "block.py")]
    address = empty_scheduler.scheduler_address
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                               "--no-dashboard", "--memory-limit", "1GiB", *extra], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ds = make_bids(tmp_path / "bids")
        code, _, err = run_cli(capsys, "--threads", "1", "batch", ds, "-o", tmp_path / "o", "--method", "cubic",
                               "--scheduler", address, "--wait-workers", "60")
    finally:
        worker.terminate()
        worker.wait(30)
    lines = [line for line in err.strip().splitlines() if not line.startswith("iqt: waiting for workers")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"iqt: error: --scheduler {address}: 1 of 1 workers "
                                                                 "cannot run this ImageQualityTransfer"), err
    assert {"old": "version 0.0.9-old", "other-build": f"version {__version__} from other code or models",
            "missing": "cannot import it (ModuleNotFoundError"}[kind] in lines[0]
    assert not (tmp_path / "o").exists()


def test_workers_without_torch_are_refused_for_a_cnn_method(monkeypatch):
    """A worker without PyTorch failed each subject of a CNN method "the CNN methods need PyTorch, which is not
    installed", naming no worker, while this machine had it (a cluster audit): the start-up probe names it."""
    from types import SimpleNamespace

    from ImageQualityTransferLib.apps.batch import scheduler
    from ImageQualityTransferLib.core import errors
    from ImageQualityTransferLib.core.errors import IQTError

    def run(fn, *args, on_error):
        with monkeypatch.context() as m:  # a stand-in: the real import takes seconds
            m.setitem(sys.modules, "torch", SimpleNamespace())
            found = {"tcp://10.0.0.1:4000": fn(*args)}
        with monkeypatch.context() as m:
            m.setitem(sys.modules, "torch", None)  # import torch fails there
            found["tcp://10.0.0.2:4000"] = fn(*args)
        return found

    client = SimpleNamespace(run=run)
    scheduler.check_workers(client, "tcp://10.0.0.9:8786")  # a method without torch: both fit
    with pytest.raises(IQTError) as err:
        scheduler.check_workers(client, "tcp://10.0.0.9:8786", torch=True)
    line = str(err.value)
    assert line.startswith("--scheduler tcp://10.0.0.9:8786: 1 of 2 workers cannot import PyTorch, which the CNN "
                           "methods need (tcp://10.0.0.2:4000: "), line
    assert "10.0.0.1" not in line and "\n" not in line
    # the workers' platform is not this machine's (a Mac client, Linux workers; GPU workers): the CPU index is offered
    # for the platforms it is for, not added or left out by this one's (a review)
    for platform in ("darwin", "linux"):
        monkeypatch.setattr(sys, "platform", platform)
        with pytest.raises(IQTError) as err:
            scheduler.check_workers(client, "tcp://10.0.0.9:8786", torch=True)
        assert str(err.value).endswith(
            f"; install it where the workers run ('pip install {errors.TORCH_PIN}' in their environment, with "
            f"'--index-url {errors.TORCH_CPU_INDEX}' for the CPU build on Linux or Windows workers, where PyPI's torch "
            "pulls CUDA packages) and start them again, or choose a method without it (e.g. biqt)"), err.value


def test_outputs_of_another_version_are_redone_not_skipped(tmp_path):
    """Outputs written by another version (a worker's) were skipped by a later resume as done. The version
    is part of what a resume compares."""
    ds = make_bids(tmp_path / "bids")
    out = tmp_path / "o"
    out.mkdir()
    s = batch.Settings(method="cubic")
    items = batch.find_items(ds)
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["done"]
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["skipped"]
    for side in out.glob("sub-*/dwi/*.json"):
        meta = json.loads(side.read_text())
        side.write_text(json.dumps({**meta, "SoftwareVersion": "0.0.9-old"}))
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["done"]
    from ImageQualityTransferLib.core.version import __version__

    assert {json.loads(p.read_text())["SoftwareVersion"] for p in out.glob("sub-*/dwi/*.json")} == {__version__}


def test_an_interrupted_run_leaves_no_empty_subject_folder_that_it_made(tmp_path):
    """Fresh-eyes audit: Ctrl-C during a local run left sub-01/ses-1/dwi/ empty (the worker was stopped before its
    staging removed the folder), though 'no partial output was left' and the README promise no folder. Once the local
    cluster has stopped, the subject folders the run made that are empty are removed up to the output folder; one
    that was there before the run is kept."""
    from distributed import Client, LocalCluster
    from ImageQualityTransferLib.apps.batch.records import subject_folders
    from ImageQualityTransferLib.apps.cli import batch as batch_command

    ds = make_bids(tmp_path / "bids", subjects=("01", "02"))
    items = batch.find_items(ds)
    out = tmp_path / "deriv"
    (out / "sub-02" / "dwi").mkdir(parents=True)  # there before the run
    existed = batch_command._folders_there(out, items)
    (out / "sub-01" / "dwi").mkdir(parents=True)  # made by the run's worker, which was stopped before writing
    (out / "sub-01" / "dwi" / ".iqt-k3v9x2.nii.gz").write_bytes(b"half")  # and a half-written temporary
    cluster = LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0")
    batch_command._stop(Client(cluster), cluster, subject_folders(out, items), existed)
    assert not (out / "sub-01").exists()
    assert (out / "sub-02" / "dwi").is_dir() and out.is_dir()


def test_a_run_on_a_remote_scheduler_leaves_no_empty_folder_it_made_and_no_remote_writers_file(tmp_path):
    """A lost scheduler (kill -9) had left a new output folder's subject folders empty (a cohort audit); an empty
    figures/ folder beside them too. Under a remote scheduler (no local cluster) the empty folders the run made are
    removed as well; a temporary is kept, since a remote worker may still be writing it."""
    from distributed import Client, LocalCluster
    from ImageQualityTransferLib.apps.batch.records import subject_folders
    from ImageQualityTransferLib.apps.cli import batch as batch_command

    ds = make_bids(tmp_path / "bids", subjects=("01", "02", "03", "04"))
    items = batch.find_items(ds)
    out = tmp_path / "deriv"
    (out / "sub-04" / "figures").mkdir(parents=True)  # there before the run, empty: kept (a review)
    (out / "sub-04" / "dwi").mkdir()
    existed = batch_command._folders_there(out, items)
    (out / "sub-01" / "dwi").mkdir(parents=True)
    (out / "sub-01" / "figures").mkdir()
    (out / "sub-02" / "dwi").mkdir(parents=True)
    (out / "sub-02" / "dwi" / ".iqt-k3v9x2.nii.gz").write_bytes(b"half")  # a remote writer's, maybe still writing
    with LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as remote:
        batch_command._stop(Client(remote.scheduler_address), None, subject_folders(out, items), existed)
    assert not (out / "sub-01").exists() and not (out / "sub-03").exists()
    assert (out / "sub-04" / "figures").is_dir() and (out / "sub-04" / "dwi").is_dir()
    assert (out / "sub-02" / "dwi" / ".iqt-k3v9x2.nii.gz").read_bytes() == b"half" and out.is_dir()


def test_a_ulimit_n_too_low_for_the_local_cluster_is_refused_before_it_starts(tmp_path, capsys, monkeypatch):
    """Under ulimit -n 16, `iqt batch --workers 2` flooded stderr with Dask's accept tracebacks for 38 s, then ended
    "internal error: RuntimeError: Nanny failed to start." (a review): refused at once now, one line, exit 2."""
    import resource

    helpers.tensor_list(tmp_path)
    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit", lambda which: (16, 4096) if which == resource.RLIMIT_NOFILE
                        else real(which))
    monkeypatch.setattr(resource, "setrlimit", lambda *a: (_ for _ in ()).throw(ValueError("not allowed")))
    monkeypatch.setattr(batch, "start_client", lambda *a, **k: (_ for _ in ()).throw(AssertionError("started")))
    code, _, err = run_cli(capsys, "batch", tmp_path / "list.txt", "-o", tmp_path / "o", "--method", "nearest",
                           "--workers", "2")
    err = [ln for ln in err.splitlines() if not ln.startswith("iqt: warning: ")]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("iqt: error: too many open files: a local cluster of 2 workers needs about "), err
    assert "more than its limit (ulimit -n 16); raise it (e.g. ulimit -n " in err[0], err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("hard", [20000, 20])
def test_the_soft_ulimit_n_is_raised_to_the_hard_one_before_the_check(tmp_path, capsys, monkeypatch, hard):
    """A soft ulimit -n 38 under a hard 20000 had been refused ("raise it"), where any process may raise its own soft
    limit: raised to the hard one now (the workers inherit it); refused only where the hard limit is too low."""
    import resource

    helpers.tensor_list(tmp_path)
    real, now, raised = resource.getrlimit, [38, hard], []

    def setrlimit(which, limits):
        assert which == resource.RLIMIT_NOFILE and limits[1] == hard, limits  # the hard one kept
        raised.append(limits)
        now[0] = limits[0]

    monkeypatch.setattr(resource, "getrlimit", lambda which: tuple(now) if which == resource.RLIMIT_NOFILE
                        else real(which))
    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    monkeypatch.setattr(batch, "start_client", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    code, _, err = run_cli(capsys, "batch", tmp_path / "list.txt", "-o", tmp_path / "o", "--method", "nearest",
                           "--workers", "2")
    err = [ln for ln in err.splitlines() if not ln.startswith("iqt: warning: ")]
    if hard == 20000:  # not refused: it went on to start the cluster (stopped there by the test)
        assert raised == [(20000, 20000)] and "too many open files" not in "\n".join(err), (raised, err)
        assert code != 2 or not err or "too many open files" not in err[-1], err
    else:
        assert code == 2 and len(err) == 1, err
        assert "ask an administrator to raise its hard limit (20) to " in err[0], err
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("workers, limit", [(1, 30), (2, 42), (4, 64)])
def test_a_ulimit_n_at_which_no_local_run_ended_whole_is_refused_naming_the_need(tmp_path, capsys, monkeypatch,
                                                                                   workers, limit):
    """The pre-start check (16 + 10 a worker above the 5 files open) had let --workers 2 start under ulimit -n 41-42,
    where no run ended whole (a review: its QC table unwritten, or the cluster's start failing). Measured lowest limits
    at which a run ended whole: 32, 44 and 66 for 1, 2 and 4 workers (apps/cli/batch_limits.py CLUSTER_FILES); refused at
    what failed, the line naming the need."""
    import resource

    helpers.tensor_list(tmp_path)
    real_limit, real_list = resource.getrlimit, os.listdir
    monkeypatch.setattr(resource, "getrlimit", lambda which: (limit, limit) if which == resource.RLIMIT_NOFILE
                        else real_limit(which))
    # as in the iqt process at the check: 5 files open (the listing's own is the sixth)
    monkeypatch.setattr(os, "listdir", lambda p=".": ["0", "1", "2", "3", "4", "5"] if str(p) == "/proc/self/fd"
                        else real_list(p))
    monkeypatch.setattr(batch, "start_client", lambda *a, **k: (_ for _ in ()).throw(AssertionError("started")))
    code, _, err = run_cli(capsys, "batch", tmp_path / "list.txt", "-o", tmp_path / "o", "--method", "nearest",
                           "--workers", str(workers))
    err = [ln for ln in err.splitlines() if not ln.startswith("iqt: warning: ")]
    need = 5 + cli.batch.CLUSTER_FILES[0] + cli.batch.CLUSTER_FILES[1] * workers
    assert code == 2 and len(err) == 1, err
    assert f"needs about {need} open files in this process, more than its limit (ulimit -n {limit})" in err[0], err
    assert f"raise its hard limit ({limit}) to {need} or more" in err[0], err


def _dask_start_failed(cause: BaseException) -> RuntimeError:
    """What Dask raised where a nanny's worker process could not start for `cause`: its cleanup failed in turn (an
    AttributeError, then its status assertion), and the server's "Nanny failed to start." came from those."""
    try:
        try:
            try:
                try:
                    raise cause
                except OSError:
                    raise AttributeError("'NoneType' object has no attribute 'terminate'")
            except AttributeError:
                raise AssertionError("Status.starting")
        except AssertionError as exc:
            raise RuntimeError("Nanny failed to start.") from exc
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize("limit", ["files", "files logged", "processes"])
def test_a_limit_met_as_the_local_cluster_starts_is_its_line_every_time(tmp_path, capsys, monkeypatch, limit):
    """Under ulimit -n 32 the nanny's os.pipe() met EMFILE, and under ulimit -u a fork met EAGAIN, behind Dask's
    failed cleanup (an AttributeError): "internal error: RuntimeError: Nanny failed to start." in some runs, the
    limit's line in others (a review). Now the limit's line each time; the event loop's EMFILE tracebacks (a listener's
    accept, once per try) are kept off stderr."""
    import errno
    import logging

    from ImageQualityTransferLib.apps.batch import dask_client

    helpers.tensor_list(tmp_path)

    def start(make):
        if limit == "files logged":
            try:
                raise OSError(errno.EMFILE, "Too many open files")
            except OSError:
                logging.getLogger("asyncio").error("Exception in callback accept_handler", exc_info=True)
            raise RuntimeError("Nanny failed to start.")
        raise _dask_start_failed(OSError(errno.EMFILE, "Too many open files") if limit.startswith("files")
                                 else helpers.process_start_refused())

    monkeypatch.setattr(dask_client, "_spawn_ignoring_ctrl_c", start)
    asyncio_filters = list(logging.getLogger("asyncio").filters)
    try:
        code, _, err = run_cli(capsys, "batch", tmp_path / "list.txt", "-o", tmp_path / "o", "--method", "nearest",
                               "--workers", "2")
        # the failed start's filter is gone: it had stayed for the rest of the process once one was met
        assert logging.getLogger("asyncio").filters == asyncio_filters
    finally:
        logging.getLogger("asyncio").filters[:] = asyncio_filters
    err = [ln for ln in err.splitlines() if not ln.startswith("iqt: warning: ")]
    assert len(err) == 1 and "internal error" not in err[0] and "Traceback" not in err[0], err
    if limit == "processes":
        assert code == 1 and err[0].startswith("iqt: error: out of memory or of processes: a process could not start"), err
    else:
        assert code == 2 and err[0].startswith("iqt: error: too many open files: this process met its limit"), err
        assert err[0].endswith("or run fewer --workers, then rerun"), err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("what", ["thread", "process"])
def test_a_refusal_dask_raised_from_as_the_local_cluster_starts_is_its_line(tmp_path, capsys, monkeypatch, what):
    """Under ulimit -u 6 and 10 (as nobody, --workers 2) the nanny's server raised "Nanny failed to start." from the
    refusal itself (`raise ... from exc`, no cleanup between): the run ended "internal error: RuntimeError: Nanny
    failed to start." (a cohort audit), since start_client re-raised that wrapper `from None`, which cut its cause.
    Now the refusal's line, exit 1, nothing written."""
    from ImageQualityTransferLib.apps.batch import dask_client

    helpers.tensor_list(tmp_path)
    refusal = RuntimeError("can't start new thread") if what == "thread" else helpers.process_start_refused()

    def start(make):
        raise RuntimeError("Nanny failed to start.") from refusal

    import logging

    monkeypatch.setattr(dask_client, "_spawn_ignoring_ctrl_c", start)
    reaper = logging.getLogger("distributed.process")  # its exit handler's "reaping stray process" line at INFO
    saved = reaper.level
    reaper.setLevel(logging.INFO)
    try:
        code, _, err = run_cli(capsys, "batch", tmp_path / "list.txt", "-o", tmp_path / "o", "--method", "nearest",
                               "--workers", "2")
        assert not reaper.isEnabledFor(logging.INFO)  # that line came after the run's one line
    finally:
        reaper.setLevel(saved)
    err = [ln for ln in err.splitlines() if not ln.startswith("iqt: warning: ")]
    plural = {"thread": "threads", "process": "processes"}[what]
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"iqt: error: out of memory or of {plural}: a {what} could not start"), err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("debug", [False, True])
def test_a_bug_raised_while_an_emfile_is_handled_as_the_cluster_starts_is_a_bug(tmp_path, capsys, monkeypatch, debug):
    """A TypeError raised while an EMFILE was handled as the local cluster started had been said as "too many open
    files", --debug too (open_files._limit_met followed __context__ of any exception): an internal error, its traceback
    under --debug."""
    import errno

    from ImageQualityTransferLib.apps.batch import dask_client

    helpers.tensor_list(tmp_path)

    def start(make):
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError:
            raise TypeError("unsupported operand type(s) for +: 'NoneType' and 'int'")

    monkeypatch.setattr(dask_client, "_spawn_ignoring_ctrl_c", start)
    args = ("batch", tmp_path / "list.txt", "-o", tmp_path / "o", "--method", "nearest", "--workers", "2")
    if debug:  # --debug lets the bug through, traceback and all
        with pytest.raises(TypeError, match="unsupported operand"):
            run_cli(capsys, "--debug", *args)
        return
    code, _, err = run_cli(capsys, *args)
    assert code == 1 and "too many open files" not in err, err
    assert "internal error: TypeError: unsupported operand" in err, err


@pytest.mark.parametrize("how", ["ctrl-c held", "client failed"])
def test_a_local_cluster_started_but_not_handed_over_removes_its_emfile_filter(monkeypatch, how):
    """A local cluster that started but whose start then ended (a Ctrl-C held through it, or Client(cluster) failing)
    was closed with its EMFILE filter left on the event loop's loggers for the rest of the process (a review: "asyncio
    filters before: 0 after: 1"), dropping every later EMFILE traceback, --debug too. Now it is removed with it."""
    import logging
    import types

    import distributed

    from ImageQualityTransferLib.apps.batch import dask_client, open_files, scheduler

    closed = []
    cluster = types.SimpleNamespace(scheduler_address="tcp://127.0.0.1:1", close=lambda: closed.append(True))

    def refused(c):
        raise OSError("Timed out trying to connect")

    monkeypatch.setattr(dask_client, "_spawn_ignoring_ctrl_c", lambda make: (cluster, how == "ctrl-c held"))
    monkeypatch.setattr(distributed, "Client", refused)
    names = ("asyncio", "tornado.application", "tornado.general")
    before = {n: list(logging.getLogger(n).filters) for n in names}
    try:
        with pytest.raises(KeyboardInterrupt if how == "ctrl-c held" else OSError):
            dask_client.start_client(1, dashboard_address="127.0.0.1:0", quiet=True)
        assert {n: list(logging.getLogger(n).filters) for n in names} == before
    finally:
        for n in names:
            logging.getLogger(n).filters[:] = before[n]
    assert closed == [True]
    assert cluster.scheduler_address not in open_files._KEPT_OFF
    assert cluster.scheduler_address not in scheduler._OWN_CLUSTERS


def test_the_event_loops_emfile_filter_stays_for_the_clusters_life_unless_debug(tmp_path, capsys, monkeypatch):
    """The filter keeping the event loop's EMFILE tracebacks off stderr had been removed once the local cluster had
    started: under ulimit -n 41 with --workers 2 a run printed 40,027 tornado accept_handler tracebacks (a review). It
    stays until the cluster has closed, then one warning gives their count; under --debug it ends with the start (a
    later EMFILE's traceback shown); other errors are logged throughout; a failed start removes it, one met or not."""
    import errno
    import logging
    import sys
    import types
    import warnings

    from ImageQualityTransferLib.apps.batch import open_files

    names = ("asyncio", "tornado.application", "tornado.general")
    before = {n: list(logging.getLogger(n).filters) for n in names}

    def logged(err=errno.EMFILE):
        try:
            raise OSError(err, "Too many open files" if err == errno.EMFILE else "Connection reset")
        except OSError:
            record = logging.getLogger("asyncio").makeRecord("asyncio", logging.ERROR, __file__, 1, "accept", (),
                                                             sys.exc_info())
        return logging.getLogger("asyncio").filter(record)

    try:
        with open_files._open_files_noted(keep=True) as met:
            assert not logged()  # dropped while it starts
        assert capsys.readouterr().err == ""  # a failed start's own line says it
        assert not logged() and not logged() and logged(errno.ECONNRESET)  # and while it runs; other errors shown
        assert met.count == 3 and len(met) == 3
        # the first one met while it runs is said at once, once (a run that stalled on it had been silent to its end)
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("iqt: warning: the local cluster has met this process's limit on "
                                                   "open files; the run may slow down or stall"), err
        cluster = types.SimpleNamespace(scheduler_address="tls://127.0.0.1:1")
        monkeypatch.setitem(open_files._KEPT_OFF, cluster.scheduler_address, met)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cli.batch._open_files_said(cluster)  # once the cluster has closed: the count, once
            cli.batch._open_files_said(cluster)
        (w,) = [str(c.message) for c in caught]
        assert w.startswith("the local cluster met this process's limit on open files 3 times (ulimit -n "), w
        assert "kept off stderr, --debug shows them" in w
        assert {n: list(logging.getLogger(n).filters) for n in names} == before and logged()
        with open_files._open_files_noted(keep=False) as met:  # --debug: ended with the start
            assert not logged()
        assert {n: list(logging.getLogger(n).filters) for n in names} == before and logged()
        with pytest.raises(RuntimeError), open_files._open_files_noted(keep=True) as met:
            assert not logged()
            raise RuntimeError("Nanny failed to start.")
        # a failed start: removed (kept, it had dropped every later EMFILE traceback of the process, --debug too)
        assert {n: list(logging.getLogger(n).filters) for n in names} == before and logged()
    finally:
        for n in names:
            logging.getLogger(n).filters[:] = before[n]
    # the command keeps them off for the cluster's life unless --debug
    seen = []

    def start(*a, **k):
        seen.append(k.get("quiet"))
        raise batch.IQTError("stopped here")

    monkeypatch.setattr(batch, "start_client", start)
    helpers.tensor_list(tmp_path)
    monkeypatch.delenv("IQT_DEBUG", raising=False)
    for debug in ((), ("--debug",)):
        code, _, err = run_cli(capsys, *debug, "batch", tmp_path / "list.txt", "-o", tmp_path / "o", "--method",
                               "nearest", "--workers", "1")
        assert code == 2 and "stopped here" in err, err
    assert seen == [True, False]
