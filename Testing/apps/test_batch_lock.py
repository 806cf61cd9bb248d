"""`iqt batch`'s lock on its derivatives folder (two runs into one folder at once both computed every subject,
and each one's removal of leftover `.iqt-*` temporaries could delete the other's file in flight)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib.apps import batch  # noqa: E402
from ImageQualityTransferLib.apps.batch import lock  # noqa: E402
from ImageQualityTransferLib.apps.batch.records import remove_temporaries  # noqa: E402
from ImageQualityTransferLib.apps.signals import Terminated  # noqa: E402


import helpers  # noqa: E402
from helpers import run_cli  # noqa: E402



def make_bids(root: Path, subjects=("01",), corrupt=None) -> Path:
    return helpers.make_bids(root, subjects, corrupt)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def write_lock(out: Path, **rec) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / lock.LOCK_NAME
    path.write_text(json.dumps({"pid": rec.get("pid", 1), "host": rec.get("host", socket.gethostname()),
                                "started": "2026-01-02 03:04:05 +0000", "command": "iqt batch bids -o o",
                                "token": "x"}))
    return path


CMD = ("--method", "cubic", "--workers", "1", "--dashboard-address", "127.0.0.1:0")
# The runs that get past the lock in this process take it as `iqt batch` does and run their cohort here, no cluster
# started (helpers.batch_runs_in_process): the lock is taken before the cluster starts and released after it stops; a
# real cluster in its own process holds it in test_two_real_runs_into_one_folder.


def test_a_second_run_is_refused_in_one_line_and_writes_nothing(tmp_path, capsys):
    """While a run holds the folder (here this process, alive), another is refused before any work: exit 2, one line
    naming the run (pid, host, since when) and what to do; the leftover temporary the other run may be writing, the
    outputs and the lock are left as they were."""
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None)
    out = tmp_path / "deriv"
    out.mkdir()
    with lock.held(out, command="iqt batch first"):
        (out / "sub-01" / "dwi").mkdir(parents=True)
        (out / "sub-01" / "dwi" / ".iqt-inflight.nii.gz").write_bytes(b"being written")
        before = files(out)
        code, stdout, err = run_cli(capsys, "batch", ds, "-o", out, *CMD)
        assert code == 2 and stdout == "", stdout + err
        line = err.strip()
        assert "\n" not in line, err
        assert "another iqt batch run is writing into this folder" in line
        assert f"pid {os.getpid()} on {socket.gethostname()}, since " in line and "iqt batch first" in line
        assert f"kill {os.getpid()}" in line and "rerun" in line
        assert files(out) == before  # no dataset_description.json, temporary kept, lock unchanged
        with pytest.raises(batch.IQTError, match="another iqt batch run"):  # the library's entry point too
            batch.run_cohort(batch.find_items(ds), batch.Settings(method="cubic"), out, progress=False)
        assert files(out) == before
    assert not (out / lock.LOCK_NAME).exists()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path, capsys):
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None)
    out = tmp_path / "deriv"
    path = write_lock(out, pid=dead_pid(), host="other-node.invalid")
    before = files(out)
    code, _, err = run_cli(capsys, "batch", ds, "-o", out, *CMD)
    assert code == 2 and "other-node.invalid" in err and f"remove {path}" in err and len(err.strip().splitlines()) == 1
    assert files(out) == before


def test_a_stale_lock_is_taken_over_with_a_warning_and_removed_after_success(tmp_path, capsys, monkeypatch):
    """A run killed with SIGKILL leaves its lock: its pid is gone on this host, so the next run takes it over with one
    warning line, runs, and leaves no lock."""
    helpers.batch_runs_in_process(monkeypatch, batch)
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None)
    out = tmp_path / "deriv"
    pid = dead_pid()
    write_lock(out, pid=pid)
    code, stdout, err = run_cli(capsys, "batch", ds, "-o", out, *CMD)
    assert code == 0, stdout + err
    warned = [ln for ln in err.splitlines() if "taking over the lock" in ln]
    assert len(warned) == 1 and f"pid {pid} on {socket.gethostname()}" in warned[0], err
    assert "1 done" in stdout and not (out / lock.LOCK_NAME).exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_the_lock_is_removed_after_a_failed_run(tmp_path, capsys, monkeypatch):
    """A run where a subject fails (exit 1) holds the lock while it runs and leaves none; its line counts one subject
    as one ('1 of 1 subjects failed ... fix them' had been said)."""
    helpers.batch_runs_in_process(monkeypatch, batch)
    ds = make_bids(tmp_path / "bids", subjects=(), corrupt="03")
    out = tmp_path / "deriv"
    real, held = batch.run_cohort, []

    def spied(items, s, out_root, client, **kwargs):  # the real run, once the lock is seen held
        held.append(json.loads((Path(out_root) / lock.LOCK_NAME).read_text())["pid"])
        return real(items, s, out_root, client, **kwargs)

    monkeypatch.setattr(batch, "run_cohort", spied)
    code, _, err = run_cli(capsys, "batch", ds, "-o", out, *CMD)
    assert code == 1 and "iqt: 1 of 1 subject failed: sub-03: " in err and "; fix it and rerun" in err, err
    assert held == [os.getpid()] and not (out / lock.LOCK_NAME).exists()


@pytest.mark.parametrize("stop, code", [(batch.IQTError("the cluster went away"), 2), (KeyboardInterrupt(), 130),
                                        (Terminated(signal.SIGTERM), 128 + signal.SIGTERM)])
def test_the_lock_is_held_during_the_run_and_removed_however_it_ends(tmp_path, capsys, monkeypatch, stop, code):
    helpers.batch_runs_in_process(monkeypatch, batch)
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None)
    out = tmp_path / "deriv"
    seen = {}

    def stopped(items, s, out_root, client, **kwargs):
        seen.update(json.loads((Path(out_root) / lock.LOCK_NAME).read_text()), kwargs=kwargs)
        raise stop

    monkeypatch.setattr(batch, "run_cohort", stopped)
    got, _, err = run_cli(capsys, "batch", ds, "-o", out, *CMD)
    assert got == code, err
    assert seen["pid"] == os.getpid() and seen["host"] == socket.gethostname() and seen["started"]
    assert "batch" in seen["command"] and seen["kwargs"]["lock"] is False  # taken once, by the command
    assert not (out / lock.LOCK_NAME).exists()


@pytest.mark.parametrize("form", [("--scheduler", "ws://alice:S3cret@node7:8786/"),
                                  ("--scheduler=ws://alice:S3cret@node7:8786/",), ("--sched", "alice:S3cret@node7:8786")])
def test_the_lock_shows_the_command_with_the_scheduler_s_password_masked(tmp_path, capsys, monkeypatch, form):
    """The lock held the command as typed, and a second run into the folder was refused quoting it: "(pid ...: iqt batch
    ... --scheduler ws://alice:S3cret@node7:8786/)", to every user who can read the lock (a review: lock_leak.log). Its
    pid, host, start time and command stay, the password masked as every --scheduler message writes it."""
    helpers.tensor_list(tmp_path)
    seen = {}

    def reached(*args, **kwargs):  # while the run holds the lock: what it holds, and what a second run is told
        seen["lock"] = (tmp_path / "deriv" / lock.LOCK_NAME).read_text()
        with pytest.raises(batch.IQTError) as err:
            lock.acquire(tmp_path / "deriv")
        seen["refusal"] = str(err.value)
        raise batch.IQTError("stopped here")

    monkeypatch.setattr(batch, "start_client", reached)
    code, _, err = run_cli(capsys, "batch", tmp_path / "list.txt", "-o", tmp_path / "deriv", "--method", "cubic", *form)
    assert code == 2 and "stopped here" in err, err
    masked = [a.replace("S3cret", "***") for a in form]  # quoted as shlex.join quotes it: the command stays one to copy
    assert shlex.join(["iqt", "batch", str(tmp_path / "list.txt"), "-o", str(tmp_path / "deriv"), "--method", "cubic",
                       *masked]) in seen["refusal"], seen["refusal"]
    assert "S3cret" not in seen["lock"] + seen["refusal"], seen
    assert f"pid {os.getpid()} on {socket.gethostname()}, since " in seen["refusal"]


def test_a_run_refused_for_its_cluster_leaves_no_folder_and_no_lock(tmp_path, capsys):
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None)
    code, _, err = run_cli(capsys, "batch", ds, "-o", tmp_path / "a" / "o", "--method", "cubic",
                           "--scheduler", "tcp://127.0.0.1:1")
    assert code == 2 and "cannot connect" in err and not (tmp_path / "a").exists()


def test_removing_temporaries_keeps_the_lock(tmp_path):
    with lock.held(tmp_path):
        (tmp_path / ".iqt-x.nii.gz").write_bytes(b"")
        assert remove_temporaries(tmp_path) == 1
        assert (tmp_path / lock.LOCK_NAME).is_file()


def test_a_lock_being_written_is_not_taken_for_stale(tmp_path, monkeypatch):
    """Another run has made the lock but not yet written its record: refused (after a short wait), never removed."""
    monkeypatch.setattr(lock, "UNREADABLE_WAIT_S", 0.1)
    (tmp_path / lock.LOCK_NAME).write_text("")
    with pytest.raises(batch.IQTError, match="remove .* and rerun"):
        lock.acquire(tmp_path)
    assert (tmp_path / lock.LOCK_NAME).read_text() == ""


@pytest.mark.slow
def test_two_real_runs_into_one_folder(tmp_path, capsys):
    """A real first run (its own process) holds the folder from before its cluster starts: a second run is refused
    naming it; SIGTERM stops the first, and its lock is gone."""
    ds = make_bids(tmp_path / "bids", subjects=("01", "02"), corrupt=None)
    out = tmp_path / "deriv"
    env = helpers.engine_env()
    cmd = [sys.executable, "-m", "ImageQualityTransferLib", "batch", str(ds), "-o", str(out), "--method",
           "espcn-hetero-var1", "--uncertainty", "--workers", "1", "--dashboard-address", "127.0.0.1:0"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (out / lock.LOCK_NAME).exists():
            time.sleep(0.02)
        code, stdout, err = run_cli(capsys, *cmd[3:])
        assert code == 2 and stdout == "" and f"pid {first.pid} on {socket.gethostname()}" in err, err
        assert "espcn-hetero-var1" in err  # its command
        os.killpg(first.pid, signal.SIGTERM)
        _, first_err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert first.returncode == 128 + signal.SIGTERM, first_err
    assert not (out / lock.LOCK_NAME).exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".iqt")]


def test_a_lock_whose_pid_is_another_process_now_is_taken_over(tmp_path):
    """A lock left by a killed run whose pid a new process has since taken (a container's pid 1 rerun, this very
    process here) was taken for a live run, and the folder refused for good, the message saying to kill the new
    process. The process's start time, recorded beside the pid, tells them apart."""
    rec = {"pid": os.getpid(), "pid_start": "0", "host": socket.gethostname(), "started": "earlier",
           "command": "iqt batch …", "token": "old"}
    (tmp_path / lock.LOCK_NAME).write_text(json.dumps(rec))
    with pytest.warns(UserWarning, match="taking over the lock"):
        mine = lock.acquire(tmp_path)
    assert mine["pid"] == os.getpid() and json.loads((tmp_path / lock.LOCK_NAME).read_text())["token"] == mine["token"]
    with pytest.raises(batch.IQTError, match="another iqt batch run"):  # while this process holds it: refused
        lock.acquire(tmp_path)
    lock.release(tmp_path, mine)
    assert not (tmp_path / lock.LOCK_NAME).exists()


def test_a_signal_inside_the_cluster_thread_s_start_is_joined_not_an_internal_error():
    """SIGTERM while the local cluster's thread was starting: `join` on a thread that has not yet said it runs raised
    "cannot join thread before it is started", an internal error (exit 1, not 143) in test_two_real_runs_into_one_folder
    under load. The thread is joined once it runs; one that never starts is given up."""
    import threading

    from ImageQualityTransferLib.apps.batch.local_cluster import _join_once_started

    ran = []
    late = threading.Thread(target=lambda: ran.append(1))
    with pytest.raises(RuntimeError, match="before it is started"):
        late.join()
    threading.Timer(0.3, late.start).start()  # started from elsewhere, after the join is first asked
    _join_once_started(late)
    assert ran == [1] and not late.is_alive()
    t0 = time.monotonic()
    _join_once_started(threading.Thread(target=lambda: None), wait_s=0.1)  # never started: no hang, no error
    assert time.monotonic() - t0 < 2
