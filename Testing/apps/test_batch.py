"""`iqt batch`: a tiny BIDS cohort on a real Dask LocalCluster of 2 workers; outputs, sidecars, failures, resuming,
a killed run restarted, a list of subjects run in-process, and two real dev subjects."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib import fileio  # noqa: E402
from ImageQualityTransferLib.core.errors import IQTWarning  # noqa: E402
from ImageQualityTransferLib.apps import batch  # noqa: E402
from ImageQualityTransferLib.apps.cli import batch as batch_cli  # noqa: E402
from ImageQualityTransferLib.dmri.phantom import make_phantom  # noqa: E402

import helpers  # noqa: E402
from helpers import DEV, need_data, run_cli  # noqa: E402



def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_bids(root: Path, subjects=("01", "02"), corrupt="03", shape=(32, 36, 28)) -> Path:
    """helpers.make_bids with a third, corrupt subject by default."""
    return helpers.make_bids(root, subjects, corrupt, shape)


# A smaller phantom grid for the in-process runs whose checks (which subjects are done, skipped or redone, which files
# and records they leave) do not depend on the scan's size: a fifth of the default's voxels, a third of its CPU.
SMALL = (20, 22, 16)
HALF = (24, 28, 20)  # half the default grid's voxels; on SMALL one phantom's b0 reads as moved (a warning line)


@pytest.fixture(scope="module")
def cluster():
    """One real LocalCluster (2 single-threaded worker processes, as `iqt batch --workers 2` makes it) for the
    module, reached with --scheduler: on plain TCP, as a user's own `dask scheduler` (`iqt batch`'s own cluster speaks
    TLS with the run's credentials: test_batch_security_cluster.py)."""
    with pytest.MonkeyPatch.context() as mp:  # the worker processes import the engine from this tree
        mp.setenv("PYTHONPATH", helpers.engine_env()["PYTHONPATH"])
        client, c = batch.start_client(2, dashboard_address=":0", secure=False)
    client.close()
    yield c.scheduler_address
    c.close()


def outputs(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_bids_cohort_outputs_failures_and_resume(tmp_path, capsys, cluster):
    """The outputs, sidecars, QC table and resuming of a BIDS cohort on the module's cluster, on phantoms of half the
    default grid's voxels (its checks are of which files and records each run leaves, not of the scan's size)."""
    ds = make_bids(tmp_path / "bids", shape=HALF)
    before = {str(p): sha(p) for p in ds.rglob("*") if p.is_file()}
    out = tmp_path / "deriv"
    args = ("batch", ds, "-o", out, "--method", "biqt", "--uncertainty", "--scheduler", cluster)
    code, stdout, err = run_cli(capsys, *args)
    assert code == 1, err
    assert err.strip().splitlines() == [err.strip()] and "1 of 3 subjects failed" in err
    assert "Dask dashboard: http" in stdout and "2 done, 0 skipped (already done), 1 failed" in stdout
    assert "sub-03:" in stdout and "truncated" in stdout

    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["BIDSVersion"]
    assert desc["DatasetLinks"]["raw"] == ds.absolute().as_uri() and desc["SourceDatasets"] == [{"URL": ds.absolute().as_uri()}]
    gen = desc["GeneratedBy"][0]
    assert gen["Name"] == "ImageQualityTransfer" and gen["Method"] == "biqt" and gen["Version"]
    # the command that made them (researcher audit: only the lock file held it, and the sidecars are the workers')
    assert gen["Command"] == shlex.join(["iqt", *map(str, args)]), gen
    model_side = Path(gen["Model"])
    weights = model_side.with_name(json.loads(model_side.read_text())["weights"])
    assert gen["ModelSHA256"] == sha(weights)

    base = "sub-01_space-orig_res-2x_model-biqt_param-"
    names = {f"{base}tensor_dwimap", f"{base}fa_dwimap", f"{base}md_dwimap", f"{base}tensor_desc-std_dwimap",
             f"{base}tensor_desc-direction_dwimap", base.replace("_param-", "_desc-brain_mask")}
    files = {p.name for p in (out / "sub-01" / "dwi").iterdir()}
    assert files == {n + ext for n in names for ext in (".nii.gz", ".json")}
    assert not (out / "sub-03").exists()
    side = json.loads((out / "sub-01" / "dwi" / f"{base}tensor_dwimap.json").read_text())
    src = ds / "sub-01" / "dwi" / "sub-01_dwi.nii.gz"
    assert side["InputSHA256"] == sha(src) and Path(side["InputFile"]) == src.absolute()
    assert side["Method"] == "biqt" and side["Factor"] == 2 and side["ModelSHA256"] == gen["ModelSHA256"]
    assert side["SoftwareVersion"] and side["Time"] and side["Sources"] == [f"bids:raw:sub-01/dwi/sub-01_dwi.{e}" for e in ("nii.gz", "bval", "bvec")]
    hr = fileio.load_tensor(out / "sub-01" / "dwi" / f"{base}tensor_dwimap.nii.gz")
    assert hr.shape3 == tuple(2 * n for n in HALF) and np.allclose(hr.voxel_size, 2.0)
    fa = fileio.load_scalar(out / "sub-01" / "dwi" / f"{base}fa_dwimap.nii.gz").data
    assert 0 <= fa.min() and fa.max() <= 1 and fa.max() > 0.3
    # the run's brain mask on the output grid, for averaging the maps over the brain: the DWI's own mask, upsampled
    brain = fileio.load_mask(out / "sub-01" / "dwi" / (base.replace("_param-", "_desc-brain_mask") + ".nii.gz"))
    assert brain.shape3 == hr.shape3 and np.allclose(brain.affine, hr.affine)
    assert 0.05 < brain.data.mean() < 0.9 and np.all(np.any(hr.data[brain.data] != 0, axis=-1))
    # BIDS: a mask's sidecar names its Type, and a unitless map (FA) or the mask carries no empty Units (an audit)
    side = lambda name: json.loads((out / "sub-01" / "dwi" / name).read_text())  # noqa: E731
    mask_side = side(base.replace("_param-", "_desc-brain_mask") + ".json")
    assert mask_side["Type"] == "Brain" and "Units" not in mask_side
    assert "Units" not in side(f"{base}fa_dwimap.json") and side(f"{base}md_dwimap.json")["Units"] == "mm^2/s"

    rows = [line.split("\t") for line in (out / "qc.tsv").read_text().splitlines()]
    assert rows[0][:9] == ["subject", "model", "res", "status", "input_voxel_mm", "snr", "brain_ml", "brain_from",
                           "median_std_mm2s"]
    qc = {r[0]: r for r in rows[1:]}
    assert qc["sub-01"][1:5] == ["biqt", "2x", "done", "4.00x4.00x4.00"]
    assert float(qc["sub-01"][5]) > 5 and 100 < float(qc["sub-01"][6]) < 2000 and qc["sub-01"][7] == "dwi"
    assert float(qc["sub-01"][8]) > 0
    assert qc["sub-03"][3] == "failed" and "truncated" in qc["sub-03"][rows[0].index("reason")]
    assert "sub-03" in (out / "qc.html").read_text()
    col = {name: i for i, name in enumerate(rows[0])}
    seconds = {r[0]: r[col["seconds"]] for r in rows[1:]}
    assert 0 <= float(qc["sub-01"][col["nonphysical_pct"]]) < 5  # output voxels with a negative eigenvalue, % of brain
    assert 0 < float(qc["sub-01"][col["noise_index"]]) < 1  # the input's roughness (noise_level.noise_index)

    # a rerun redoes nothing; a deleted output redoes that subject only
    first = outputs(out / "sub-01") | outputs(out / "sub-02")
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 1 and "0 done, 2 skipped" in stdout
    assert outputs(out / "sub-01") | outputs(out / "sub-02") == first
    again = {r.split("\t")[0]: r.split("\t") for r in (out / "qc.tsv").read_text().splitlines()[1:]}
    assert again["sub-01"][3] == "skipped" and float(seconds["sub-01"]) > 0  # the run's time kept
    assert abs(float(again["sub-01"][col["seconds"]]) - float(seconds["sub-01"])) <= 0.2
    (out / "sub-02" / "dwi" / "sub-02_space-orig_res-2x_model-biqt_param-fa_dwimap.nii.gz").unlink()
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 1 and "1 done, 1 skipped" in stdout
    assert outputs(out / "sub-01") == {k: v for k, v in first.items() if k.startswith(("dwi/sub-01", "figures/sub-01"))}
    assert {p.name for p in (out / "sub-02" / "dwi").iterdir()} == {n.replace("sub-01", "sub-02") + ext
                                                                    for n in names for ext in (".nii.gz", ".json")}
    assert {str(p): sha(p) for p in ds.rglob("*") if p.is_file()} == before  # inputs never modified
    # another method into the same folder: its rows join the QC, the first run's stay
    code, stdout, err = run_cli(capsys, "batch", ds, "-o", out, "--method", "linear", "--scheduler", cluster)
    assert code == 1, err
    runs = [tuple(line.split("\t")[:4]) for line in (out / "qc.tsv").read_text().splitlines()[1:]]
    assert ("sub-01", "biqt", "2x", "skipped") in runs and ("sub-01", "linear", "2x", "done") in runs
    assert len(runs) == 6


@pytest.mark.slow
def test_killed_run_restarts_without_redoing(tmp_path, capsys, cluster):
    """SIGKILL the whole run (scheduler and local workers) once a subject is done; the restart finishes the rest,
    keeps what was done and leaves no temporary file. On phantoms of half the default grid's voxels: what it checks
    (which subjects are skipped, kept or done) does not depend on the scan's size."""
    ds = make_bids(tmp_path / "bids", subjects=("01", "02", "03"), corrupt=None, shape=HALF)
    out = tmp_path / "deriv"
    env = helpers.engine_env()
    cmd = [sys.executable, "-m", "ImageQualityTransferLib", "batch", str(ds), "-o", str(out), "--method", "cubic",
           "--workers", "1", "--dashboard-address", ":0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    try:
        while time.time() < deadline and not list(out.glob("sub-*/dwi/*param-tensor_dwimap.json")):
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = list(out.glob("sub-*/dwi/*param-tensor_dwimap.json"))
    assert done, "no subject finished within 60 s"
    assert len(done) < 3, "every subject had finished before the kill: no restart to check"  # a review (smaller phantoms)
    kept = {d.parent.parent.name: outputs(d.parent) for d in done}
    (out / "sub-03" / "dwi").mkdir(parents=True, exist_ok=True)
    (out / "sub-03" / "dwi" / ".iqt-left.nii.gz").write_bytes(b"partial")  # as a writer killed mid-file leaves

    code, stdout, err = run_cli(capsys, *cmd[3:-4], "--scheduler", cluster)  # started again (on the module's cluster)
    assert code == 0, stdout + err
    assert f"{len(done)} skipped" in stdout
    for sub, files in kept.items():
        assert outputs(out / sub / "dwi") == files
    assert len(list(out.glob("sub-*/dwi/*param-tensor_dwimap.json"))) == 3
    assert not [p for p in out.rglob("*") if p.name.startswith(".iqt-")]


@pytest.mark.slow
def test_ctrl_c_stops_a_local_cluster_run_in_one_line(tmp_path):
    """A terminal's Ctrl-C (SIGINT to the whole process group) while a local worker is busy on a subject: exit 130 and
    one line, no worker traceback (each worker printed its own KeyboardInterrupt), no temporary file, no
    process left. The Monte Carlo method keeps the worker on the next subject for seconds after the first is done (on
    24x28x20 phantoms: over a second of CPU each, half the default grid's); the first, which only has to end, is a
    14x16x12 one."""
    ds = make_bids(tmp_path / "bids", subjects=("01", "02", "03"), corrupt=None, shape=HALF)
    helpers.save_phantom_dwi(ds / "sub-01" / "dwi" / "sub-01_dwi.nii.gz", (14, 16, 12), 0)
    out = tmp_path / "deriv"
    env = helpers.engine_env()
    cmd = [sys.executable, "-m", "ImageQualityTransferLib", "batch", str(ds), "-o", str(out), "--method",
           "espcn-hetero-var1", "--uncertainty", "--workers", "1", "--dashboard-address", ":0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(out.glob("sub-*/dwi/*param-tensor_dwimap.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.strip() == "iqt: interrupted; no partial output was left; the subjects that ended are kept, and a rerun of the same command skips them and does the rest", err
    assert not [p for p in out.rglob("*") if p.name.startswith(".iqt-")]
    def left() -> list:
        return subprocess.run(["ps", "-o", "stat=", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()

    # at most a zombie the session leader's parent reaps, once its processes have ended (however loaded the machine)
    assert helpers.wait_until(lambda: all(stat.startswith("Z") for stat in left())), left()


SECOND_CTRL_C = """
import logging, os, signal, sys, time
from ImageQualityTransferLib.apps import batch
from ImageQualityTransferLib.apps.cli import batch as batch_cli

def busy():  # a subject's C++ work: the thread lets go of the GIL in a C++ call and takes it again as it returns, as
    # torch's calls do (scipy's pocketfft, a core dependency: importing torch takes 1.5 s of CPU, and a worker closed
    # while its task still imported it had no C++ call to abort in)
    import numpy as np
    from scipy import fft
    a = np.random.default_rng(0).random((64, 64, 64))  # a few ms a call: the thread is nearly always in C++ (16^3 let
    # one run in six pass with _leave_if_busy a no-op, a review)
    fft.fftn(a)
    os.environ["IQT_TEST_IN_CPP"] = "1"  # the worker's own: its task loops in C++ calls from now on
    end = time.time() + 60
    while time.time() < end:
        fft.fftn(a)

client, cluster = batch.start_client(1, dashboard_address="127.0.0.1:0", secure=False)
fut = client.submit(busy, pure=False)
while not any(client.run(lambda: os.environ.get("IQT_TEST_IN_CPP") == "1").values()):
    time.sleep(0.05)
print(*client.run(os.getpid).values(), flush=True)


class SecondCtrlC(logging.Handler):  # the second Ctrl-C, as the cluster's nanny starts closing its busy worker
    def emit(self, record):
        if record.getMessage().startswith("Closing Nanny"):
            print("second Ctrl-C", flush=True)
            os.kill(os.getpid(), signal.SIGINT)


logging.getLogger("distributed.nanny").addHandler(SecondCtrlC())
logging.getLogger("distributed.nanny").setLevel(logging.INFO)
try:
    raise KeyboardInterrupt  # the first Ctrl-C, as the run's subject works
except KeyboardInterrupt:
    try:
        batch_cli._stop(client, cluster)
    except KeyboardInterrupt:  # the second let through mid-close: the close was cancelled (Dask's sync)
        print("the close was interrupted", flush=True)
print("cluster", cluster.status.name, flush=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="a process's end is read in /proc")
def test_a_second_ctrl_c_as_the_local_cluster_closes_leaves_no_worker_abort(tmp_path):
    """A second Ctrl-C during `iqt batch` cancelled the cluster's close (Dask's sync): no nanny killed its worker, which
    ended its process with a subject in torch, and the C++ runtime aborted ('terminate called without an active
    exception' after the run's line, a core file; an audit). The close now completes, and a worker that ends with a
    task running leaves at once (batch/worker_signals.py). The second Ctrl-C is sent as the nanny starts closing the
    busy worker: a 0.5 s timer came after the close, once that took half a second (batch/local_cluster.py nanny_class).
    The task is waited for until it runs its C++ calls: the close had come while it still imported torch, and the
    test passed with `_leave_if_busy` a no-op (a review)."""
    import resource

    err = tmp_path / "stderr"
    with err.open("w") as f:  # a file, not a pipe: the worker may outlive this process
        proc = subprocess.run([sys.executable, "-c", SECOND_CTRL_C], env=helpers.engine_env(), stdout=subprocess.PIPE,
                              stderr=f, text=True, timeout=120, cwd=tmp_path,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
    worker = int(proc.stdout.split()[0])
    deadline = time.time() + 30
    while time.time() < deadline and Path(f"/proc/{worker}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{worker}").exists()
    assert "terminate called" not in err.read_text() and proc.returncode == 0, (proc.returncode, err.read_text())
    assert "second Ctrl-C" in proc.stdout, proc.stdout  # sent while the cluster closed
    assert "the close was interrupted" not in proc.stdout and "cluster closed" in proc.stdout, proc.stdout  # held


def test_a_ctrl_c_while_the_cluster_closes_waits_for_the_close():
    """The close is not cancelled by a Ctrl-C (its nannies would not kill their workers); the Ctrl-C is raised once it
    has closed, unless the run is already unwinding from the first."""

    class Closing:
        closed = False

        def close(self):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the signal is handled meanwhile
            self.closed = True

    cluster = Closing()
    try:
        raise KeyboardInterrupt  # the first Ctrl-C
    except KeyboardInterrupt:
        try:
            batch_cli._stop(Closing(), cluster)
        except KeyboardInterrupt:
            pass
    assert cluster.closed
    cluster = Closing()
    with pytest.raises(KeyboardInterrupt):
        batch_cli._stop(Closing(), cluster)
    assert cluster.closed


BUSY_AT_EXIT = """
import atexit, sys, threading, time
import torch
from ImageQualityTransferLib.apps.batch import worker_signals

x, w = torch.randn(1, 8, 24, 24, 24), torch.randn(8, 8, 3, 3, 3)
def busy():
    while True:
        torch.nn.functional.conv3d(x, w)
threading.Thread(target=busy, daemon=True).start()
atexit.register(worker_signals._leave_if_busy, {1: "a subject"})  # as dask_setup, with a task running
time.sleep(0.2)
sys.exit(0)
"""


@pytest.mark.slow
def test_a_worker_process_that_ends_with_a_task_in_torch_leaves_without_an_abort():
    """Python's exit stopped the task's thread inside torch: 'terminate called without an active exception', SIGABRT
    and a core file (a worker closed under a subject). `_leave_if_busy` ends the process before that."""
    import resource

    proc = subprocess.run([sys.executable, "-c", BUSY_AT_EXIT], env=helpers.engine_env(), capture_output=True,
                          text=True, timeout=60, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
    assert proc.returncode == 0 and "terminate called" not in proc.stderr, (proc.returncode, proc.stderr)


def _sigint_ignored():
    import signal

    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def _pause(dask_worker):
    return dask_worker.memory_manager.memory_pause_fraction


@pytest.fixture(scope="module")
def local_cluster_story():
    """One local cluster of our own (1 worker, --memory-limit 1GiB) taken through what the three tests below read, in
    turn: what its worker reads before and after its nanny starts it again (client.restart); its worker killed with
    distributed.deploy.lost-worker-timeout 0 s (Dask closes that nanny for good at once) and a task sent after; and
    this process's Dask pause setting before the cluster and after it closed. One cluster start for the three (each had
    started its own: 1.5-3 s each), the run's poll of its workers (tasks.WORKERS_POLL_S) shortened to 0.2 s. (A cluster
    scaled to none keeps its own: here the worker the step before had started again could join after the scale-down,
    and the run found a worker, in a CI rehearsal.)"""
    import dask

    from ImageQualityTransferLib.apps.batch import tasks

    seen = {"config_before": dask.config.get("distributed.worker.memory.pause")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tasks, "WORKERS_POLL_S", 0.2)
        client, cluster = batch.start_client(1, dashboard_address=":0", memory_limit="1GiB")
        try:
            seen["ignored"] = [client.submit(_sigint_ignored, pure=False).result(timeout=60)]
            seen["pause"] = [set(client.run(_pause).values())]
            client.restart(timeout=60)
            seen["ignored"].append(client.submit(_sigint_ignored, pure=False).result(timeout=60))
            seen["pause"].append(set(client.run(_pause).values()))

            with dask.config.set({"distributed.deploy.lost-worker-timeout": "0s"}):  # the cluster closes it at once
                os.kill(next(iter(client.run(os.getpid).values())), signal.SIGKILL)
                # until the scheduler has no worker either: one its nanny was starting again had taken the task
                # below before it was closed, and Dask computed it again (two pids, in a whole-suite run)
                deadline = time.time() + 60
                while (cluster.workers or client.nthreads()) and time.time() < deadline:
                    time.sleep(0.05)
                seen["closed_for_good"] = not cluster.workers  # as in the audit's run
                fut = client.submit(os.getpid, pure=False)
                seen["after_closed"] = ([f.result() for f in tasks._as_completed(client, [fut], 30)], [fut.result()],
                                        len(client.nthreads()))
        finally:
            client.close()
            cluster.close()
    seen["config_after"] = dask.config.get("distributed.worker.memory.pause")
    return seen


def test_a_worker_the_nanny_starts_again_ignores_ctrl_c_too(local_cluster_story):
    """The workers of the local cluster ignore SIGINT, also once the nanny has started them again (as after a
    memory-limit kill), so that a terminal's Ctrl-C prints the run's one line and no worker's traceback."""
    assert local_cluster_story["ignored"] == [True, True]


def test_a_worker_near_its_memory_limit_is_not_paused_also_once_started_again(local_cluster_story):
    """A worker past 80 % of --memory-limit paused, and one resting between 80 and 95 % ran nothing more: a cohort audit's
    run (espcn, 600MiB) waited forever without a word. Our workers never pause (one past 95 % is killed and its subject
    said); a worker the nanny starts again had read Dask's defaults, pausing at 80 %, back."""
    assert local_cluster_story["pause"] == [{False}, {False}]
    # this process's other clusters keep theirs
    assert local_cluster_story["config_after"] == local_cluster_story["config_before"]


def test_a_worker_the_cluster_closed_for_good_is_started_again(local_cluster_story):
    """Dask closes for good a nanny whose killed worker is not back within distributed.deploy.lost-worker-timeout (a
    worker killed past its memory limit, again and again): a cohort audit's run was left without workers and stopped
    after --wait-workers with subjects not run. The run starts it again and its subjects run."""
    assert local_cluster_story["closed_for_good"]  # closed for good, as in the audit's run
    done, results, threads = local_cluster_story["after_closed"]
    # the subject ran and the run saw it end; which process ran it is not the point (a task Dask computes again on a
    # worker started later gives another pid)
    assert len(done) == len(results) == 1 and all(isinstance(pid, int) for pid in done + results) and threads == 1


_GATE = threading.Event()


def _lose_the_worker_running_it(client) -> str:
    """The worker processing the one task submitted, removed on the scheduler as a dead worker is (`_lost`); its
    address."""
    deadline = time.time() + 30
    while not any(client.processing().values()) and time.time() < deadline:
        time.sleep(0.01)
    first = next(w for w, keys in client.processing().items() if keys)
    client.run_on_scheduler(_lost, address=first)
    return first


def _held_until_released():
    """A subject's task that runs until the test lets it end (its worker can be lost meanwhile)."""
    _GATE.wait(30)
    return True


async def _lost(dask_scheduler, address):
    """The scheduler's own handling of a worker whose connection closed (killed, out of memory, its node lost)."""
    await dask_scheduler.remove_worker(address, stimulus_id="handle-worker-cleanup-test", close=False)


def test_a_subject_dask_gave_to_another_worker_after_its_worker_died_says_so():
    """Dask gives to another worker, without a word, a task whose worker died holding it: a cohort's table read the same for a flaky
    subject as for a clean one. The subject's note (its QC row's notes, its warning line) says how often and why."""
    from distributed import Client, LocalCluster

    from ImageQualityTransferLib.apps.batch import tasks

    _GATE.clear()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        clean = client.submit(os.getpid, pure=False)
        assert clean.result(timeout=30) and tasks.retried_note(client, clean.key) is None
        flaky = client.submit(_held_until_released, pure=False)
        first = _lose_the_worker_running_it(client)
        _GATE.set()
        assert flaky.result(timeout=30)
        note = tasks.retried_note(client, flaky.key)
    assert note == (f"re-sent 1 time after its worker died ({first}: its process died); its outputs, if any, come from "
                    "the last try, but a subject whose worker dies may need more memory per worker")


def test_the_retry_notes_read_the_scheduler_s_worker_events_once_not_once_a_subject():
    """retried_note's scheduler side had copied and scanned every event topic once per retried subject: 56 ms of the
    scheduler's loop a subject with 150 full worker topics (a review). The topics are read once while they stay the
    same; each subject still gets its own dead worker and reason."""
    import collections
    import types

    from distributed.broker import Broker

    from ImageQualityTransferLib.apps.batch import tasks

    class Counted(collections.deque):
        reads = 0

        def __iter__(self):
            Counted.reads += 1
            return super().__iter__()

    broker = Broker(1000, None)
    for w in range(3):
        topic = broker._topics[f"tcp://10.0.0.{w}:4000"]
        topic.events = Counted([(0.0, {"action": "add-worker"}), (1.0, {
            "action": "remove-worker", "expected": False, "stimulus_id": "handle-worker-cleanup",
            "processing-tasks": [f"sub-{w}a", f"sub-{w}b"]})], maxlen=1000)
    keys = [f"sub-{w}{x}" for w in range(3) for x in "ab"]
    sched = types.SimpleNamespace(tasks={k: types.SimpleNamespace(suspicious=1, state="memory") for k in keys},
                                  get_events=broker.get_events, allowed_failures=3, _broker=broker)
    space: dict = {}
    exec(tasks._RETRIES, space)  # noqa: S102 (the text the run sends the scheduler)
    found = {k: space["retries"](sched, k) for k in keys}
    assert found["sub-2b"] == [1, [["tcp://10.0.0.2:4000", "its process died"]], False], found
    assert Counted.reads == 3, Counted.reads  # each worker topic once, not once a subject (18)


def test_the_retry_function_is_compiled_once_not_once_a_subject():
    """retried_note had compiled _RETRIES again for every subject that ended (2 ms each); the function it sends the
    scheduler is now made once, the same object for every subject."""
    from ImageQualityTransferLib.apps.batch import tasks

    sent = []

    class Recorder:  # what retried_note hands Client.run_on_scheduler, a subject at a time
        def run_on_scheduler(self, function, key):
            sent.append(function)
            return [0, [], False]

    assert [tasks.retried_note(Recorder(), k) for k in ("iqt-a", "iqt-b")] == [None, None]
    assert len(sent) == 2 and sent[0] is sent[1] and sent[0].__name__ == "retries"


def test_a_subject_dask_stopped_after_its_workers_died_claims_no_outputs():
    """A subject whose task killed its worker every time ended failed (KilledWorker), and its note said "Dask gave it to
    another worker 4 times ...; its outputs come from the last": it has none, and 4 counted the deaths, one more than
    the re-sends (a review). Dask's allowed failures set to 0 here: one death ends it."""
    import dask
    from distributed import Client, KilledWorker, LocalCluster

    from ImageQualityTransferLib.apps.batch import tasks

    _GATE.clear()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                         dashboard_address=":0") as cluster, Client(cluster) as client:
        doomed = client.submit(_held_until_released, pure=False)
        first = _lose_the_worker_running_it(client)
        with pytest.raises(KilledWorker):
            doomed.result(timeout=30)
        note = tasks.retried_note(client, doomed.key)
        _GATE.set()
    assert note == (f"Dask stopped after 1 worker holding it died ({first}: its process died); a subject whose worker "
                    "dies may need more memory per worker")


def test_a_local_cluster_left_without_workers_advises_memory_limit():
    """Where our own local cluster has no worker left for --wait-workers, the line advises --memory-limit (a scheduler's
    run is told to wait for its cluster's workers instead: test_batch_scale.py); scaled to none on purpose, it is not
    started again."""
    from ImageQualityTransferLib.apps.batch import tasks
    from ImageQualityTransferLib.core.errors import IQTError

    client, cluster = batch.start_client(1, dashboard_address=":0")
    try:
        cluster.scale(0)
        deadline = time.time() + 60
        while client.nthreads() and time.time() < deadline:
            time.sleep(0.05)
        fut = client.submit(os.getpid, pure=False)
        with pytest.raises(IQTError, match=r"1 of 1 subject not run: .*no worker for 2 s.*a larger --memory-limit"):
            list(tasks._as_completed(client, [fut], 2))
        assert not cluster.workers and fut.cancelled()
    finally:
        client.close()
        cluster.close()

def test_list_of_folders_and_dti_files_in_process(tmp_path):
    """A text list (subject folder, DTI file, missing folder) through the same `process`, without Dask."""
    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti

    folder = tmp_path / "subjA"
    folder.mkdir()
    dwi = make_phantom(shape=SMALL, voxel_mm=4.0, n_dirs=12)  # its SNR (about 53) as on the 32x36x28 grid
    fileio.save_dwi(dwi, folder / "dwi.nii.gz")
    fileio.save_tensor(fit_dti(dwi, brain_mask(dwi)), tmp_path / "b_dti.nii.gz")
    (tmp_path / "list.txt").write_text("# cohort\nsubjA  # the first\n\nb_dti.nii.gz\nmissing\n")
    items = batch.find_items(tmp_path / "list.txt")
    assert [(i.prefix, i.kind) for i in items] == [("sub-subjA", "dwi"), ("sub-bdti", "dti"), ("sub-missing", "dwi")]
    s = batch.Settings(method="cubic")
    out = tmp_path / "deriv"
    out.mkdir()
    res = batch.run_cohort(items, s, out, client=None, progress=False)
    assert [r["status"] for r in res] == ["done", "done", "failed"]
    assert "no dwi.nii.gz" in res[2]["reason"]
    assert np.isnan(res[1]["qc"]["snr"]) and res[0]["qc"]["snr"] > 5
    assert (out / "sub-bdti" / "dwi" / "sub-bdti_space-orig_res-2x_model-cubic_param-md_dwimap.nii.gz").exists()
    side = json.loads((out / "sub-subjA" / "dwi" / "sub-subjA_space-orig_res-2x_model-cubic_param-tensor_dwimap.json")
                      .read_text())
    assert side["Sources"] == [f"bids:raw:subjA/dwi.{e}" for e in ("nii.gz", "bval", "bvec")]  # the files, not the folder
    # a BIDS URI is percent-encoded, as a file URI is (a cohort audit: "bids:raw:P 03/dwi.nii.gz")
    from ImageQualityTransferLib.apps.batch.records import sources

    spaced = tmp_path / "subj B"
    shutil.copytree(folder, spaced)
    (tmp_path / "spaced.txt").write_text('"subj B"\n')
    assert sources(batch.find_items(tmp_path / "spaced.txt")[0])[0] == "bids:raw:subj%20B/dwi.nii.gz"
    assert json.loads((out / "dataset_description.json").read_text())["DatasetLinks"]["raw"] == tmp_path.as_uri()
    for side in out.rglob("*.json"):  # strict JSON (BIDS validator, JavaScript): no NaN, e.g. a QC value not measured
        json.loads(side.read_text(), parse_constant=lambda c: pytest.fail(f"{side.name}: {c}"))
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["skipped", "skipped", "failed"]
    plain = tmp_path / "subjB"  # an uncompressed dwi.nii, as train and demo read it ('no dwi.nii.gz there')
    plain.mkdir()
    fileio.save_dwi(dwi, plain / "dwi.nii")
    (tmp_path / "plain.txt").write_text("subjB\n")
    assert [r["status"] for r in batch.run_cohort(batch.find_items(tmp_path / "plain.txt"), s, out, progress=False)] \
        == ["done"]


def test_per_axis_factors_in_process(tmp_path):
    """A DTI file upsampled by (1,1,2) without Dask: the output grid, the res- entity, the recorded factor, the skip."""
    import json

    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti

    dwi = make_phantom(shape=(20, 22, 16), voxel_mm=4.0, n_dirs=12)
    fileio.save_tensor(fit_dti(dwi, brain_mask(dwi)), tmp_path / "c_dti.nii.gz")
    (tmp_path / "list.txt").write_text("c_dti.nii.gz\n")
    items = batch.find_items(tmp_path / "list.txt")
    s = batch.Settings(method="linear", factor=(1, 1, 2))
    out = tmp_path / "deriv"
    out.mkdir()
    assert [r["status"] for r in batch.run_cohort(items, s, out, client=None, progress=False)] == ["done"]
    tensor = out / "sub-cdti" / "dwi" / "sub-cdti_space-orig_res-1x1x2x_model-linear_param-tensor_dwimap.nii.gz"
    assert fileio.load_tensor(tensor).shape3 == (20, 22, 32)
    # its MD map bit for bit as 'iqt upsample --maps' writes MD (they had differed by 1-2 float32 ulp: a cohort audit)
    from ImageQualityTransferLib.core.tensors import dtifit_maps

    md = fileio.load_scalar(Path(str(tensor).replace("param-tensor", "param-md"))).data
    assert np.array_equal(md, dtifit_maps(fileio.load_tensor(tensor).data)["MD"])
    side = json.loads(tensor.with_name(tensor.name.replace(".nii.gz", ".json")).read_text())
    assert side["Factor"] == [1, 1, 2]
    # what res- means, which BIDS derivatives require where the entity is present (a cohort audit)
    assert side["Resolution"] == {"1x1x2x": "upsampled by factors 1,1,2 along the input's voxel axes: 4x4x2 mm voxels"}
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["skipped"]


def test_the_sigma_noise_factor_is_in_qc_tsv_and_the_std_sidecar(tmp_path, monkeypatch):
    """biqt's sigma on a noisy input is scaled (methods/base.py NOISY_STD_SCALE) and `iqt upsample`'s run
    record holds the factor, but batch wrote the scaled median_std_mm2s with no word of it, in neither the QC table nor
    the std map's sidecar (a review); a clean input says 1 there (checked by hand: a run costs a second). Without Dask,
    the input's noise index made 0.165."""
    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti
    from ImageQualityTransferLib.methods import base

    dwi = make_phantom(shape=(16, 18, 12), voxel_mm=4.0, n_dirs=12)
    fileio.save_tensor(fit_dti(dwi, brain_mask(dwi)), tmp_path / "n_dti.nii.gz")
    (tmp_path / "list.txt").write_text("n_dti.nii.gz\n")
    monkeypatch.setattr(base, "input_noise_index", lambda *a, **k: 0.165)
    out = tmp_path / "deriv"
    out.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IQTWarning)
        res = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="biqt", uncertainty=True),
                               out, client=None, progress=False)
    assert [r["status"] for r in res] == ["done"], res
    head, row = ((out / "qc.tsv").read_text().splitlines()[i].split("\t") for i in (0, 1))
    g = round(base.noisy_std_scale("biqt", 0.165, 2), 4)  # what iqt upsample's run record holds (1.525 by today's knots)
    assert g > 1.1 and row[head.index("noise_std_scale")] == f"{g:.5g}", dict(zip(head, row))
    assert json.loads(next(out.rglob("*desc-std_dwimap.json")).read_text())["NoiseStdScale"] == g
    assert "NoiseStdScale" not in json.loads(next(out.rglob("*desc-direction_dwimap.json")).read_text())
    # no failed fits warned of: none counted (test_batch_qc_page.py, a cavity's)
    assert row[head.index("failed_fits_flagged")] == "0"
    assert json.loads(next(out.rglob("*desc-direction_dwimap.json")).read_text())["FailedFitsFlagged"] == 0
    # its noise line, of more than 200 characters as one, is kept as short lines (methods/base.py warning_lines), the
    # second naming biqt's map
    notes = json.loads(next(out.rglob("*param-tensor_dwimap.json")).read_text())["Notes"]
    noise = [n for n in notes if "biqt" in n]
    assert len(noise) == 2 and max(map(len, noise)) <= 200 and "biqt's uncertainty map" in noise[1], notes
    # the QC table's cell names the input once, not once per line (each had opened with its path: 446 characters)
    cell = row[head.index("notes")]
    assert cell.count("n_dti.nii.gz") == 1 and "| biqt's uncertainty map" in cell, cell


def test_outlier_rule_and_bad_command_lines(tmp_path, capsys):
    res = [{"qc": {"snr": v, "brain_ml": 1000.0}} for v in (20, 21, 19, 22, 20, 60)]
    batch.flag_outliers(res)
    assert [r["outlier"] for r in res] == [[]] * 5 + [["snr"]]
    # brain volumes measured in different ways (a DWI's median-Otsu mask, another tool's tensor mask) are compared
    # within each kind: the DWIs' 1215 ml is not flagged beside tensor files masked more generously
    res = [{"qc": {"brain_ml": v, "brain_from": k}} for v, k in
           ((1215.0, "dwi"), (1472.0, "tensor"), (1480.0, "tensor"), (1470.0, "tensor"), (1475.0, "tensor"),
            (1900.0, "tensor"))]
    batch.flag_outliers(res)
    assert [r["outlier"] for r in res] == [[]] * 5 + [["brain_ml"]]
    pooled = [{"qc": {"brain_ml": r["qc"]["brain_ml"]}} for r in res]
    batch.flag_outliers(pooled)
    assert pooled[0]["outlier"] == ["brain_ml"]  # pooled, the DWI would have been flagged
    for volumes in ((27.0,) * 4 + (19.79,), (27.0, 27.00000024, 27.0, 27.0, 19.79)):  # one protocol and one other scan
        res = [{"qc": {"voxel_mm3": v}} for v in volumes]
        batch.flag_outliers(res, metrics=("voxel_mm3",))
        assert [r["outlier"] for r in res] == [[]] * 4 + [["voxel_mm3"]]
    # small differences in measured figures are not outliers (0.4 % in brain volume, 3 % in median std),
    # nor is anything in a cohort of fewer than 5
    res = [{"qc": {"brain_ml": v, "median_std": u}} for v, u in
           ((1287.1, 1.22e-4), (1287.4, 1.22e-4), (1292.6, 1.26e-4), (1288.0, 1.22e-4), (1286.0, 1.23e-4))]
    batch.flag_outliers(res)
    assert [r["outlier"] for r in res] == [[]] * 5
    res = [{"qc": {"snr": v}} for v in (20, 21, 60)]
    batch.flag_outliers(res)
    assert [r["outlier"] for r in res] == [[]] * 3
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None)
    for args, words in ((("--workers", "0"), "--workers 0"), (("--method", "nope"), "nope"),
                        (("--method", "cubic", "--uncertainty"), "no uncertainty"),
                        (("--method", "biqt", "--factor", "1,1,4"), "--model for factors 1,1,4"),
                        (("--factor", "0"), "--factor 0"),
                        (("--method", "cubic", "--memory-limit", "lots"), "--memory-limit lots: not a memory size"),
                        (("--method", "cubic", "--memory-limit", "10MiB"), "too little for a worker")):
        code, _, err = run_cli(capsys, "batch", ds, "-o", tmp_path / "o", *args)
        assert code == 2 and err.startswith("iqt: error: ") and words in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "batch", tmp_path / "nothing", "-o", tmp_path / "o", "--method", "cubic")
    assert code == 2 and "not found" in err
    for inside in (ds, ds / "iqt", ds / "sub-01" / "derivatives"):
        code, _, err = run_cli(capsys, "batch", ds, "-o", inside, "--method", "cubic")
        assert code == 2 and "inside the input dataset" in err and not (ds / "iqt").exists()
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli(capsys, "batch", ds, "-o", tmp_path / "afile", "--method", "cubic")
    assert code == 2 and "is not a folder" in err
    import socket

    with socket.socket() as free:  # a port nothing listens on: refused at once, not after Dask's retries
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    code, _, err = run_cli(capsys, "batch", ds, "-o", tmp_path / "o2", "--method", "cubic", "--scheduler",
                           f"tcp://127.0.0.1:{port}")
    assert code == 2 and "cannot connect" in err and "refused" in err and not (tmp_path / "o2").exists()
    assert not (tmp_path / "o").exists()


@pytest.mark.realdata
@pytest.mark.slow
def test_two_real_dev_subjects_as_bids(tmp_path, capsys, cluster):
    pairs = [("ortho", need_data(DEV / "siemens_prisma_3mm_ortho")), ("yaw", need_data(DEV / "siemens_prisma_3mm_yaw"))]
    ds = tmp_path / "bids"
    for name, d in pairs:
        sub = ds / f"sub-{name}" / "dwi"
        sub.mkdir(parents=True)
        for ext in ("nii.gz", "bval", "bvec", "json"):
            (sub / f"sub-{name}_dwi.{ext}").symlink_to(d / f"dwi.{ext}")
    out = tmp_path / "deriv"
    code, stdout, err = run_cli(capsys, "batch", ds, "-o", out, "--method", "cubic", "--scheduler", cluster)
    assert code == 0, err
    assert "2 done" in stdout
    lines = (out / "qc.tsv").read_text().splitlines()
    col = {c: i for i, c in enumerate(lines[0].split("\t"))}
    rows = {r.split("\t")[0]: r.split("\t") for r in lines[1:]}
    for name, _ in pairs:
        r = rows[f"sub-{name}"]
        assert r[3] == "done" and r[4] == "3.00x3.00x3.00" and float(r[5]) > 3 and 800 < float(r[6]) < 2500, r
        assert float(r[col["noise_index"]]) < 0.10, r  # a clean native scan is not called noisy
        hr = fileio.load_tensor(out / f"sub-{name}" / "dwi" / f"sub-{name}_space-orig_res-2x_model-cubic_param-tensor_dwimap.nii.gz")
        assert np.allclose(hr.voxel_size, 1.5)


def test_tta_reaches_the_method_and_names_its_own_outputs(tmp_path):
    """--tta through Settings: the learned method averaged over flips, outputs named model-<method>tta beside a plain
    run's, recorded in the sidecar and the dataset description; a rerun skips it."""
    import json

    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti

    if "global-linear" not in methods.ready(2):
        pytest.skip("no global-linear model for x2 here")
    # smaller than the other tests' 20x22x16: the average over flips runs the model 16 times, twice (here and below)
    dwi = make_phantom(shape=(14, 16, 12), voxel_mm=4.0, n_dirs=12)
    lr = fit_dti(dwi, brain_mask(dwi))
    fileio.save_tensor(lr, tmp_path / "c_dti.nii.gz")
    (tmp_path / "list.txt").write_text("c_dti.nii.gz\n")
    items = batch.find_items(tmp_path / "list.txt")
    out = tmp_path / "deriv"
    out.mkdir()
    for tta in (False, True):
        s = batch.Settings(method="global-linear", tta=tta)
        assert [r["status"] for r in batch.run_cohort(items, s, out, client=None, progress=False)] == ["done"]
        assert [r["status"] for r in batch.run_cohort(items, s, out, client=None, progress=False)] == ["skipped"]
    d = out / "sub-cdti" / "dwi"
    plain = d / "sub-cdti_space-orig_res-2x_model-globallinear_param-tensor_dwimap.nii.gz"
    avg = d / "sub-cdti_space-orig_res-2x_model-globallineartta_param-tensor_dwimap.nii.gz"
    np.testing.assert_allclose(fileio.load_tensor(avg).data,
                               methods.get("global-linear", tta=True).predict(lr, 2).tensor.data, atol=1e-9)
    assert np.abs(fileio.load_tensor(avg).data - fileio.load_tensor(plain).data).max() > 0
    assert json.loads(avg.with_name(avg.name.replace(".nii.gz", ".json")).read_text())["TTA"] is True
    assert "TTA" not in json.loads(plain.with_name(plain.name.replace(".nii.gz", ".json")).read_text())
    assert any(e.get("TTA") for e in json.loads((out / "dataset_description.json").read_text())["GeneratedBy"])


def test_a_listed_mrtrix_tensor_file_is_read_in_its_order_and_frame(tmp_path):
    """--tensor-order through Settings: a dwi2tensor-style 4D file gives what its 5D NIfTI twin gives, the sidecar
    records the order (a rerun with another order is not skipped), and without the order the file is refused."""
    import json

    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti

    dwi = make_phantom(shape=(20, 22, 16), voxel_mm=4.0, n_dirs=12)
    lr = fit_dti(dwi, brain_mask(dwi))
    fileio.save_tensor(lr, tmp_path / "m_dt.nii.gz", order="mrtrix")
    fileio.save_tensor(lr, tmp_path / "n_dt.nii.gz")
    (tmp_path / "list.txt").write_text("m_dt.nii.gz\nn_dt.nii.gz\n")
    items = batch.find_items(tmp_path / "list.txt")
    out = tmp_path / "deriv"
    out.mkdir()
    s = batch.Settings(method="cubic", tensor_order="mrtrix")
    assert [r["status"] for r in batch.run_cohort(items[:1], s, out, client=None, progress=False)] == ["done"]
    assert [r["status"] for r in batch.run_cohort(items[1:], batch.Settings(method="cubic"), out, client=None,
                                                  progress=False)] == ["done"]
    name = "sub-{}_space-orig_res-2x_model-cubic_param-tensor_dwimap.nii.gz"
    got, twin = (out / f"sub-{k}" / "dwi" / name.format(k) for k in ("mdt", "ndt"))
    np.testing.assert_array_equal(fileio.load_tensor(got, "mrtrix").data, fileio.load_tensor(twin).data)
    side = json.loads(got.with_name(got.name.replace(".nii.gz", ".json")).read_text())
    assert side["TensorOrder"] == side["OutputOrder"] == "mrtrix"  # written back as it was read
    assert "TensorOrder" not in json.loads(twin.with_name(twin.name.replace(".nii.gz", ".json")).read_text())
    got.unlink()
    rows = batch.run_cohort(items[:1], batch.Settings(method="cubic"), out, client=None, progress=False)
    assert [r["status"] for r in rows] == ["failed"] and "--tensor-order" in rows[0]["reason"]


def test_each_listed_tensor_file_comes_back_in_the_order_it_was_read(tmp_path, capsys, cluster):
    """As `iqt upsample`: a dtifit file's output is dtifit's 4D file in FSL's frame, a dipy 4D file's dipy's 4D, a 5D
    file's and a DWI's this tool's 5D; --output-order nifti writes every one 5D, recorded in the sidecar, and a rerun
    with the other order is not skipped. Both runs on the module's cluster (--scheduler), not a cluster each."""
    import json

    import nibabel as nib

    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti

    dwi = make_phantom(shape=(20, 22, 16), voxel_mm=4.0, n_dirs=12)
    lr = fit_dti(dwi, brain_mask(dwi))
    for name, order in (("P01", "nifti"), ("P02", "fsl"), ("P03", "dipy")):
        (tmp_path / name).mkdir()
        fileio.save_tensor(lr, tmp_path / name / "dti.nii.gz", order=order)
    (tmp_path / "list.txt").write_text("P01/dti.nii.gz\nP02/dti.nii.gz --tensor-order fsl\n"
                                       "P03/dti.nii.gz --tensor-order dipy\n")
    out = tmp_path / "deriv"
    code, _, err = run_cli(capsys, "batch", tmp_path / "list.txt", "-o", out, "--method", "cubic", "--scheduler", cluster)
    assert code == 0, err
    tensor = "sub-{0}/dwi/sub-{0}_space-orig_res-2x_model-cubic_param-tensor_dwimap.nii.gz"
    shapes = {n: nib.load(out / tensor.format(n)).shape for n in ("P01", "P02", "P03")}
    assert shapes == {"P01": (40, 44, 32, 1, 6), "P02": (40, 44, 32, 6), "P03": (40, 44, 32, 6)}
    own = fileio.load_tensor(out / tensor.format("P01")).data
    for n, order in (("P02", "fsl"), ("P03", "dipy")):
        np.testing.assert_allclose(fileio.load_tensor(out / tensor.format(n), order).data, own, atol=1e-12)
        side = json.loads((out / tensor.format(n)).with_suffix("").with_suffix(".json").read_text())
        assert side["OutputOrder"] == order
        assert {"fsl": "dtifit's 4D order", "dipy": "dipy's 4D"}[order] in side["Description"]
    assert "OutputOrder" not in json.loads((out / tensor.format("P01")).with_suffix("").with_suffix(".json").read_text())
    code, stdout, err = run_cli(capsys, "batch", tmp_path / "list.txt", "-o", out, "--method", "cubic", "--scheduler",
                                cluster, "--output-order", "nifti")
    assert code == 0, err
    assert "1 skipped" in stdout  # P01 was written 5D already; the others are redone as 5D
    assert {nib.load(out / tensor.format(n)).shape for n in ("P01", "P02", "P03")} == {(40, 44, 32, 1, 6)}
    np.testing.assert_allclose(fileio.load_tensor(out / tensor.format("P02")).data, own, atol=1e-12)


def test_list_subjects_are_named_apart(tmp_path):
    """A list names each subject after its folder (BIDS datatype folders such as dwi/ left out), a DTI file after its
    folder too (after the file only where it has none); an existing sub- is not doubled, and names that would collide
    take the file's name where two files share a folder, else parent folders (two sites with the same subject code). A
    subject's name does not change when other lines are added (the README's own example list named its
    subjects sub-dti, sub-dtitensor and sub-tensor, and adding a line renamed sub-P01 to sub-P01dtitensor)."""
    (tmp_path / "l.txt").write_text("subs/sub-07\nc/P02/dwi\nc/P03/dwi\nsiteA/P01\nsiteB/P01\nx/s1_dti.nii.gz\n"
                                    "y/a.nii.gz\ny/b.nii.gz\nz.nii.gz\nsubs/sub-08/dti.nii.gz\n")
    items = batch.find_items(tmp_path / "l.txt")
    assert [i.prefix for i in items] == ["sub-07", "sub-P02", "sub-P03", "sub-siteAP01", "sub-siteBP01", "sub-x",
                                         "sub-ya", "sub-yb", "sub-z", "sub-08"]
    readme = "P01/dti.nii.gz\nP05/dti_tensor.nii.gz --tensor-order fsl --mask P05/nodif_brain_mask.nii.gz\n" \
             "P09/tensor.nii.gz --tensor-order mrtrix\n"
    for lines, names in ((readme, ["sub-P01", "sub-P05", "sub-P09"]), ("P01/dti_tensor.nii.gz\nP07/dti_tensor.nii.gz\n",
                         ["sub-P01", "sub-P07"]), ("P01/dti_tensor.nii.gz\nP07/dti_tensor.nii.gz\nP04/dti5d.nii.gz\n",
                         ["sub-P01", "sub-P07", "sub-P04"]), ("P07/dti_tensor.nii.gz\n", ["sub-P07"]),
                         # BIDS-like folders, one site's code twice, sessions
                         ("sub-01/dwi/sub-01_dti.nii.gz\nsub-02/dwi/sub-02_dti.nii.gz\n", ["sub-01", "sub-02"]),
                         ("siteA/P01/dti.nii.gz\nsiteB/P01/dti.nii.gz\n", ["sub-siteAP01", "sub-siteBP01"]),
                         ("siteA/P01/dti.nii.gz\nsiteB/P01\n", ["sub-siteAP01", "sub-siteBP01"]),
                         ("sub-01/ses-1/dwi/x.nii.gz\nsub-01/ses-2/dwi/x.nii.gz\n", ["sub-01ses1", "sub-01ses2"])):
        (tmp_path / "m.txt").write_text(lines)
        assert [i.prefix for i in batch.find_items(tmp_path / "m.txt")] == names
    assert items[1].path == str(tmp_path / "c" / "P02" / "dwi" / "dwi.nii.gz")
    (tmp_path / "same.txt").write_text("a/P01\na/P01\n")  # the same subject twice is still refused
    with pytest.raises(batch.IQTError, match="is listed twice"):
        batch.find_items(tmp_path / "same.txt")


@pytest.mark.realdata
def test_a_noisy_subject_is_run_and_recorded_with_the_noise_trained_model(tmp_path, axial_subject):
    """A real dev subject's tight ×2 tensors with Rician noise added (noise index above noise_level.NOISY_MODEL) and the
    same tensors clean, listed as DTI files: rf runs its model trained with added noise on the first only, and the
    subject's sidecar names it."""
    import json

    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.core import noise_level
    from ImageQualityTransferLib.dmri import degrade as deg, randomise

    if "rf" not in methods.ready(2):
        pytest.skip("no rf model for x2 here")
    s = axial_subject  # siemens_prisma_3mm_ortho, loaded once per worker
    for name, noise in (("clean", None), ("noisy", randomise.rician(15, 0))):
        fileio.save_tensor(deg.degrade(s.dwi, s.mask.data, 2, style="tight", noise=noise).tensor,
                           tmp_path / f"{name}_dti.nii.gz")
    (tmp_path / "list.txt").write_text("clean_dti.nii.gz\nnoisy_dti.nii.gz\n")
    out = tmp_path / "deriv"
    out.mkdir()
    noisy_file, noisy_sha = batch.noisy_model_record(methods.get("rf"), 2)
    settings = batch.Settings(method="rf", noisy_model_file=noisy_file, noisy_model_sha256=noisy_sha)
    rows = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), settings, out, client=None, progress=False)
    assert [r["status"] for r in rows] == ["done", "done"]
    assert rows[0]["qc"]["noise_index"] < noise_level.NOISY_MODEL < rows[1]["qc"]["noise_index"]
    side = {n: json.loads(next((out / f"sub-{n}dti" / "dwi").glob("*param-tensor_dwimap.json")).read_text())
            for n in ("clean", "noisy")}
    assert "ModelUsed" not in side["clean"] and "Notes" not in side["clean"]
    assert side["noisy"]["ModelUsed"].endswith("rf_x2_noisy.json") and side["noisy"]["ModelUsedFor"] == "noisy inputs"
    from ImageQualityTransferLib.methods.forest import model_io

    noisy_sidecar = json.loads(model_io.shipped_for("rf", 2, "noisy").read_text())
    assert side["noisy"]["ModelUsedSHA256"] == noisy_sidecar["sha256"] != side["noisy"]["ModelSHA256"]
    assert len(side["noisy"]["Notes"]) == 1 and "noise-trained model" in side["noisy"]["Notes"][0]
    qc = [line.split("\t") for line in (out / "qc.tsv").read_text().splitlines()]
    used = qc[0].index("model_used")
    assert [row[used] for row in qc[1:]] == ["default", "noisy"]
    run = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0]
    assert run["NoisyInputModelSHA256"] == noisy_sidecar["sha256"] and run["NoisyInputAboveNoiseIndex"] == noise_level.NOISY_MODEL


def test_a_tensor_file_with_a_tiny_background_runs_as_its_twin_with_zeros(tmp_path):
    """`iqt batch` reads a listed tensor file's support as `iqt upsample` does: a masked fit stored as int16 (a few 1e-9
    outside the brain) gives its float twin's output and QC (brain read from the tensors, not estimated), and so does a
    file whose background is all NaN."""
    import nibabel as nib

    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti

    dwi = make_phantom(shape=(20, 22, 16), voxel_mm=4.0, n_dirs=12)
    lr = fit_dti(dwi, brain_mask(dwi))
    fileio.save_tensor(lr, tmp_path / "a_dt.nii.gz")
    img = nib.load(tmp_path / "a_dt.nii.gz")
    img.set_data_dtype(np.int16)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32), img.affine, img.header), tmp_path / "b_dt.nii.gz")
    assert np.all(fileio.load_tensor(tmp_path / "b_dt.nii.gz").data != 0)
    nan = np.where(np.any(lr.data != 0, axis=-1)[..., None], lr.data, np.nan)
    fileio.save_tensor(lr.replace(data=nan), tmp_path / "c_dt.nii.gz")
    (tmp_path / "list.txt").write_text("a_dt.nii.gz\nb_dt.nii.gz\nc_dt.nii.gz\n")
    out = tmp_path / "deriv"
    out.mkdir()
    rows = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="cubic"), out, client=None,
                            progress=False)
    assert [r["status"] for r in rows] == ["done"] * 3
    assert [r["qc"]["brain_from"] for r in rows] == ["tensor"] * 3
    name = "sub-{}_space-orig_res-2x_model-cubic_param-tensor_dwimap.nii.gz"
    a, b, c = (fileio.load_tensor(out / f"sub-{k}" / "dwi" / name.format(k)).data for k in ("adt", "bdt", "cdt"))
    assert np.array_equal(np.any(b != 0, axis=-1), np.any(a != 0, axis=-1))  # the same support: zero outside it
    np.testing.assert_allclose(b, a, rtol=0, atol=2e-7)  # int16's steps
    np.testing.assert_array_equal(c, a)


def test_one_list_for_a_cohort_made_by_several_tools(tmp_path, capsys):
    """A list whose lines carry their own --tensor-order and --mask (a cohort of 5D and dtifit files had to
    be two runs, and the second into the same folder dropped the first's QC rows and moved its raw link): one run,
    one folder; dtifit's shared file name is left out of the subjects' names; another list from another folder into
    the same folder is refused; another list from the same folder keeps the first's rows."""
    from ImageQualityTransferLib.core import tensors
    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti

    dwi = make_phantom(shape=(24, 26, 20), voxel_mm=4.0, n_dirs=12)
    mask = brain_mask(dwi)
    dti = fit_dti(dwi, mask)
    for name in ("P05", "P06"):
        (tmp_path / name).mkdir()
    fileio.save_tensor(dti, tmp_path / "P05" / "dti_tensor.nii.gz")  # 5D, iqt's own
    fsl = tmp_path / "P06" / "dti_tensor.nii.gz"  # 4D, dtifit's element order
    import nibabel as nib

    from ImageQualityTransferLib.fileio.gradients import fsl_flip

    flip = fsl_flip(dti.affine)  # dtifit's frame: FSL's bvec axes
    in_file = tensors.from_matrix(flip @ tensors.to_matrix(dti.data) @ flip)
    nib.save(nib.Nifti1Image(tensors.to_order(in_file, "fsl").astype(np.float32), dti.affine), fsl)
    fileio.save_mask(mask, tmp_path / "P06" / "mask.nii.gz")
    (tmp_path / "list.txt").write_text("P05/dti_tensor.nii.gz\nP06/dti_tensor.nii.gz --tensor-order fsl "
                                       "--mask P06/mask.nii.gz\n")
    items = batch.find_items(tmp_path / "list.txt")
    assert [(i.prefix, i.tensor_order, Path(i.mask).name if i.mask else "") for i in items] == \
        [("sub-P05", "", ""), ("sub-P06", "fsl", "mask.nii.gz")]
    out = tmp_path / "deriv"
    out.mkdir()
    res = batch.run_cohort(items, batch.Settings(method="cubic"), out, progress=False)
    assert [r["status"] for r in res] == ["done", "done"], [r["reason"] for r in res]
    assert res[1]["qc"]["brain_from"] == "mask"
    tensor = "sub-{0}/dwi/sub-{0}_space-orig_res-2x_model-cubic_param-tensor_dwimap.nii.gz"
    a, b = (fileio.load_tensor(out / tensor.format(n), o).data for n, o in (("P05", "nifti"), ("P06", "fsl")))
    np.testing.assert_allclose(a, b, atol=1e-9)  # the same tensors, read in either order and written back in it
    side = json.loads((out / tensor.format("P06")).with_suffix("").with_suffix(".json").read_text())
    assert side["TensorOrder"] == "fsl" and side["MaskSHA256"] and side["Sources"][-1] == "bids:raw:P06/mask.nii.gz"
    # the same list with P06's mask left out: P06 is redone (its outputs were cut to the mask), P05 skipped
    (tmp_path / "nomask.txt").write_text("P05/dti_tensor.nii.gz\nP06/dti_tensor.nii.gz --tensor-order fsl\n")
    again = batch.run_cohort(batch.find_items(tmp_path / "nomask.txt"), batch.Settings(method="cubic"), out, progress=False)
    assert [r["status"] for r in again] == ["skipped", "done"]
    assert again[1]["qc"]["brain_from"] == "tensor"
    # a second list in the same folder: its rows join, the first's stay
    (tmp_path / "more.txt").write_text("P05/dti_tensor.nii.gz\n")
    (tmp_path / "P07").mkdir()
    fileio.save_tensor(dti, tmp_path / "P07" / "dti_tensor.nii.gz")
    (tmp_path / "more.txt").write_text("P07/dti_tensor.nii.gz\n")
    batch.run_cohort(batch.find_items(tmp_path / "more.txt"), batch.Settings(method="cubic"), out, progress=False)
    rows = [line.split("\t")[0] for line in (out / "qc.tsv").read_text().splitlines()[1:]]
    assert sorted(rows) == ["sub-P05", "sub-P06", "sub-P07"]  # one line: named after its folder, as in a longer list
    # a list from another folder into it: refused before any work, the raw link unchanged
    other = tmp_path / "elsewhere"
    other.mkdir()
    fileio.save_tensor(dti, other / "x.nii.gz")
    (other / "list.txt").write_text("x.nii.gz\n")
    code, _, err = run_cli(capsys, "batch", other / "list.txt", "-o", out, "--method", "cubic", "--workers", "1")
    assert code == 2 and "holds the derivatives of another input" in err and len(err.strip().splitlines()) == 1
    assert json.loads((out / "dataset_description.json").read_text())["DatasetLinks"]["raw"] == tmp_path.as_uri()
    (tmp_path / "bad.txt").write_text("P05/dti_tensor.nii.gz --tensor-order sideways\n")
    with pytest.raises(batch.IQTError, match="unknown order"):
        batch.find_items(tmp_path / "bad.txt")


def test_the_dashboard_serves_this_machine_only_by_default():
    """The LocalCluster's dashboard listened on every interface while 127.0.0.1 was printed."""
    from ImageQualityTransferLib.apps.cli import build_parser
    from ImageQualityTransferLib.apps.cli.batch import LOCAL_DEFAULTS

    args = build_parser().parse_args(["batch", "in", "-o", "out"])
    # filled in for a local cluster only (None: --scheduler takes none of them)
    assert args.dashboard_address is None and LOCAL_DEFAULTS["dashboard_address"].startswith("127.0.0.1:")


def test_an_unmasked_tensor_file_is_named_estimated_and_told_how_to_give_a_mask(tmp_path):
    """A whole-field fit: its brain is estimated (generous), which the QC says in brain_from, and the warning names the
    list line's --mask (batch has no --mask of its own)."""
    from ImageQualityTransferLib.dmri.dti import fit_dti

    dwi = make_phantom(shape=(24, 26, 20), voxel_mm=4.0, n_dirs=12)
    fileio.save_tensor(fit_dti(dwi, None), tmp_path / "whole.nii.gz")
    (tmp_path / "list.txt").write_text("whole.nii.gz\n")
    out = tmp_path / "deriv"
    out.mkdir()
    res = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="cubic"), out, progress=False)
    assert res[0]["status"] == "done" and res[0]["qc"]["brain_from"] == "estimated"
    assert any("line in the list with --mask" in n for n in res[0]["notes"]), res[0]["notes"]
    assert not any("give --mask" in n for n in res[0]["notes"])
    row = (out / "qc.tsv").read_text().splitlines()[1].split("\t")
    assert row[7] == "estimated"
    again = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="cubic"), out, progress=False)
    assert again[0]["status"] == "skipped" and again[0]["notes"] == res[0]["notes"]  # said again on a rerun


def test_an_unmasked_fit_s_noise_index_is_read_in_the_unit_its_brain_was_estimated_in(tmp_path):
    """A whole-field fit whose MD mode is its background's (9 mm voxels): qc.tsv's noise index is read in the unit the
    brain was estimated in (its meta's md_unit), as the learned methods read it; cubic's row had read it in the
    background's unit (a clean x3 Prisma input: 0.097 for cubic, 0.060 for espcn)."""
    from ImageQualityTransferLib.dmri.dti import brain_from_tensors
    from ImageQualityTransferLib.methods.inputs import input_noise_index

    lr, _ = helpers.brain_outnumbered_by_its_background()
    fileio.save_tensor(lr, tmp_path / "whole.nii.gz")
    lr = fileio.load_tensor(tmp_path / "whole.nii.gz")
    est = brain_from_tensors(lr)
    want = input_noise_index(lr, est.data, True, est.meta["md_unit"])
    assert want < 0.8 * input_noise_index(lr, est.data, True)  # the background's unit reads it rougher
    (tmp_path / "list.txt").write_text("whole.nii.gz\n")
    out = tmp_path / "deriv"
    out.mkdir()
    res = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="cubic"), out, progress=False)
    assert res[0]["status"] == "done" and res[0]["qc"]["brain_from"] == "estimated"
    assert res[0]["qc"]["noise_index"] == pytest.approx(want, rel=1e-6)


def test_a_folder_of_another_dataset_or_pipeline_is_refused(tmp_path, capsys):
    """An output folder holding another pipeline's derivatives (fmriprep's) or another raw dataset is refused before any
    work, its dataset_description.json unchanged (it was replaced, and the outputs mixed into that dataset)."""
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None)
    for name, desc in (("fmriprep", {"Name": "fmriprep", "BIDSVersion": "1.8.0", "DatasetType": "derivative"}),
                       ("other", {"Name": "another study", "BIDSVersion": "1.8.0"}), ("broken", None)):
        out = ds / "derivatives" / name
        out.mkdir(parents=True)
        text = json.dumps(desc) if desc else "{not json"
        (out / "dataset_description.json").write_text(text)
        code, _, err = run_cli(capsys, "batch", ds, "-o", out, "--method", "cubic", "--workers", "1")
        assert code == 2 and err.startswith("iqt: error: ") and "this tool's derivatives" in err and err.count("\n") == 1, err
        assert (out / "dataset_description.json").read_text() == text and len(list(out.iterdir())) == 1


def test_a_model_given_is_checked_before_any_work_and_recorded_by_its_full_path(tmp_path, capsys, monkeypatch, cluster):
    """--model: a missing or foreign model file is one line before the cluster starts (a missing one was an
    internal error, a foreign one failed every subject); the records name its sidecar by its full path, usable from the
    derivatives folder (they held the path as typed, relative to the shell's folder); a path relative to this folder
    reaches workers started in another one (the module's cluster; every subject failed, "model file not
    found", where a --scheduler's workers did not share the shell's folder)."""
    import shutil

    from ImageQualityTransferLib.fileio import model_files

    monkeypatch.chdir(tmp_path)
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None, shape=SMALL)
    (tmp_path / "models").mkdir()
    for suffix in (".npz", ".json"):
        shutil.copy(Path(model_files.MODELS_DIR) / f"global-linear_x2{suffix}", tmp_path / "models" / f"global-linear_x2{suffix}")
    for model, words in (("models/none.npz", "model file not found"), ("models/global-linear_x2.npz", "use --method global-linear")):
        code, _, err = run_cli(capsys, "batch", ds, "-o", tmp_path / "o", "--method", "rf", "--model", model, "--workers", "1")
        assert code == 2 and words in err and err.count("\n") == 1, err
        assert not (tmp_path / "o").exists()
    code, out, err = run_cli(capsys, "batch", ds, "-o", tmp_path / "o", "--method", "global-linear", "--model",
                             "models/global-linear_x2.npz", "--scheduler", cluster)
    assert code == 0 and "1 done" in out, (out, err)
    gen = json.loads((tmp_path / "o" / "dataset_description.json").read_text())["GeneratedBy"][0]
    assert gen["Model"] == str(tmp_path / "models" / "global-linear_x2.json")
    # the QC table tells a model given from the shipped one (both read "default": a researcher's audit)
    header, row = (tmp_path / "o" / "qc.tsv").read_text().splitlines()[:2]
    assert dict(zip(header.split("\t"), row.split("\t")))["model_used"] == "given"


def test_a_relative_list_and_output_folder_reach_workers_started_in_another_folder(tmp_path, capsys, monkeypatch, cluster):
    """A list file, its inputs and the output folder given relative to this shell's folder, on a --scheduler whose
    workers run elsewhere (the module's cluster): every subject failed 'file not found'."""
    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    monkeypatch.chdir(tmp_path)
    dwi = make_phantom(shape=(14, 16, 12), voxel_mm=4.0, n_dirs=12)
    fileio.save_tensor(fit_dti(dwi, brain_mask(dwi)), tmp_path / "a_dti.nii.gz")
    (tmp_path / "b_dti.nii.gz").write_bytes(b"not a NIfTI file")
    (tmp_path / "list.txt").write_text("a_dti.nii.gz\nb_dti.nii.gz\n")
    code, out, err = run_cli(capsys, "batch", "list.txt", "-o", "deriv", "--method", "cubic", "--scheduler", cluster)
    assert code == 1 and "1 done" in out and "1 failed" in out and "wrote deriv/qc.tsv and deriv/qc.html;" in out, (out, err)
    # the run's wall time and throughput, for planning a cohort's cluster time (a research-computing audit)
    assert re.search(r"wrote deriv/qc\.tsv and deriv/qc\.html; \d+ s in all, \d+\.\d subjects computed a minute", out), out
    assert list((tmp_path / "deriv").rglob("*_dwimap.nii.gz"))
    # the failure names the file as typed (the absolute path the workers were given leaked into it)
    assert "  sub-bdti: b_dti.nii.gz: " in out and str(tmp_path) not in out + err, (out, err)
    assert str(tmp_path) not in (tmp_path / "deriv" / "qc.tsv").read_text()


def test_bids_files_not_named_for_their_subject_and_session_are_left_alone(tmp_path):
    """A file must carry its folders' sub- and ses- labels whole (sub-010 in sub-01/ and ses-2 in ses-1/
    were run and filed under the folders)."""
    for rel in ("sub-01/ses-1/dwi/sub-010_ses-1_dwi.nii.gz", "sub-02/ses-1/dwi/sub-02_ses-2_dwi.nii.gz",
                "sub-03/ses-1/dwi/sub-03_ses-1_run-1_dwi.nii.gz", "sub-04/dwi/sub-04_acq-b1000_dwi.nii.gz",
                "sub-05/dwi/sub-050_dwi.nii.gz"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    with pytest.warns(IQTWarning, match=r"3 files not named for their folders' sub- and ses- labels left out: "
                                        r"sub-01/ses-1/dwi/sub-010_ses-1_dwi.nii.gz, "):
        assert [i.prefix for i in batch.find_items(tmp_path)] == ["sub-03_ses-1_run-1", "sub-04_acq-b1000"]


def test_a_subject_redone_without_uncertainty_keeps_no_maps_of_its_old_input(tmp_path):
    """Redone on a changed input without --uncertainty, a subject's earlier uncertainty maps (of the old input) are
    removed, not left beside the new tensors."""
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None, shape=SMALL)
    out = tmp_path / "deriv"
    out.mkdir()
    items = batch.find_items(ds)
    rows = batch.run_cohort(items, batch.Settings(method="biqt", uncertainty=True), out, progress=False)
    assert [r["status"] for r in rows] == ["done"]
    folder = out / "sub-01" / "dwi"
    assert list(folder.glob("*_desc-std_dwimap.nii.gz"))
    dwi = fileio.load_dwi(items[0].path)
    fileio.save_dwi(dwi.replace(data=dwi.data * 1.01), items[0].path)  # the input corrected
    rows = batch.run_cohort(items, batch.Settings(method="biqt"), out, progress=False)
    assert [r["status"] for r in rows] == ["done"]
    assert not list(folder.glob("*_param-tensor_desc-*")) and list(folder.glob("*_param-tensor_dwimap.nii.gz"))


def test_bids_gradients_inherited_from_a_folder_above(tmp_path):
    """BIDS's inheritance principle: a dataset's top-level dwi.bval/dwi.bvec (or a subject's sub-02_dwi.bval beside its
    session folders) serve the DWIs that have none of their own, the sidecars' Sources and hashes name them; a DWI's
    own files win (inherited gradients were not found, and each subject failed)."""
    import shutil

    ds = make_bids(tmp_path / "bids", subjects=("01", "02"), corrupt=None, shape=SMALL)
    for suffix in (".bval", ".bvec"):
        shutil.copy(ds / "sub-01" / "dwi" / f"sub-01_dwi{suffix}", ds / f"dwi{suffix}")
        (ds / "sub-01" / "dwi" / f"sub-01_dwi{suffix}").unlink()
    items = {i.prefix: i for i in batch.find_items(ds)}
    assert items["sub-01"].gradients() == (ds / "dwi.bval", ds / "dwi.bvec")
    assert items["sub-02"].gradients()[0] == ds / "sub-02" / "dwi" / "sub-02_dwi.bval"
    out = tmp_path / "deriv"
    out.mkdir()
    rows = batch.run_cohort(list(items.values()), batch.Settings(method="cubic"), out, progress=False)
    assert [r["status"] for r in rows] == ["done", "done"], [r["reason"] for r in rows]
    side = json.loads(next((out / "sub-01" / "dwi").glob("*param-tensor_dwimap.json")).read_text())
    assert side["Sources"][1:] == ["bids:raw:dwi.bval", "bids:raw:dwi.bvec"]
    tie = tmp_path / "tie"  # two files of one level apply to one DWI: said
    (tie / "sub-01" / "dwi").mkdir(parents=True)
    for name in ("sub-01/dwi/sub-01_acq-multi_dwi.nii.gz", "sub-01_dwi.bval", "acq-multi_dwi.bval"):
        (tie / name).write_bytes(b"")
    with pytest.warns(IQTWarning, match="both apply to it"):
        batch.find_items(tie)


def test_a_run_naming_its_model_by_another_path_keeps_one_generated_by_entry(tmp_path):
    """A folder made by an earlier version recorded a --model as typed (relative); the same run now names it by its full
    path, and dataset_description.json keeps one entry for it, not two that differ only in the path."""
    from ImageQualityTransferLib.apps.batch import records

    out = tmp_path / "deriv"
    out.mkdir()
    s = batch.Settings(method="rf", model="m/rf.npz", model_file=str(tmp_path / "m" / "rf.json"), model_sha256="ab" * 32)
    from ImageQualityTransferLib.core.version import __version__

    old = {"Name": "ImageQualityTransfer", "Version": __version__, "Method": "rf", "Factor": 2, "Model": "m/rf.npz",
           "ModelSHA256": "ab" * 32}
    (out / "dataset_description.json").write_text(json.dumps({"Name": "x", "BIDSVersion": "1.10.0",
                                                              "DatasetType": "derivative", "GeneratedBy": [old]}))
    records.dataset_description(out, s)
    runs = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"]
    assert len(runs) == 1 and runs[0]["Model"] == str(tmp_path / "m" / "rf.json")
    records.dataset_description(out, batch.Settings(method="rf", model_file=str(tmp_path / "other.json"),
                                                    model_sha256="cd" * 32))
    assert len(json.loads((out / "dataset_description.json").read_text())["GeneratedBy"]) == 2  # another model: its own


def _damage(path: Path, how: str) -> None:
    """Cut a file to half its size, or flip one byte in its middle (its sidecar left as it is)."""
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_damaged_output_is_redone_not_skipped(tmp_path):
    """An output cut to half its size and one with a flipped byte, sidecars untouched, were skipped as
    already done. Each sidecar keeps its file's size and SHA256; a subject whose file differs is redone. A sidecar
    written before (no hash) is trusted only where its file reads fully."""
    ds = make_bids(tmp_path / "bids", subjects=("01", "02", "03", "04"), corrupt=None, shape=SMALL)
    out = tmp_path / "deriv"
    out.mkdir()
    items, s = batch.find_items(ds), batch.Settings(method="cubic")
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["done"] * 4
    base = "_space-orig_res-2x_model-cubic_param-"
    for p in out.glob("sub-*/dwi/*.nii.gz"):
        side = json.loads(p.with_name(p.name[: -len(".nii.gz")] + ".json").read_text())
        assert side["FileSHA256"] == sha(p) and side["FileSizeBytes"] == p.stat().st_size
    _damage(out / "sub-01" / "dwi" / f"sub-01{base}md_dwimap.nii.gz", "truncate")
    _damage(out / "sub-02" / "dwi" / f"sub-02{base}fa_dwimap.nii.gz", "flip")
    for sub in ("sub-03", "sub-04"):  # as written before the hashes were kept
        for side in (out / sub / "dwi").glob("*.json"):
            meta = json.loads(side.read_text())
            side.write_text(json.dumps({k: v for k, v in meta.items() if k not in ("FileSHA256", "FileSizeBytes")}))
    _damage(out / "sub-04" / "dwi" / f"sub-04{base}fa_dwimap.nii.gz", "flip")
    rows = batch.run_cohort(items, s, out, progress=False)
    assert [r["status"] for r in rows] == ["done", "done", "skipped", "done"]
    for sub in ("sub-01", "sub-02", "sub-04"):
        for kind in ("md", "fa"):
            assert fileio.load_scalar(out / sub / "dwi" / f"{sub}{base}{kind}_dwimap.nii.gz").data.size
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["skipped"] * 4
    for p in (out / "sub-03" / "dwi").glob("*.nii.gz"):  # the older sidecars, once read fully, now hold the hashes
        side = json.loads(p.with_name(p.name[: -len(".nii.gz")] + ".json").read_text())
        assert side["FileSHA256"] == sha(p) and side["FileSizeBytes"] == p.stat().st_size


# `iqt` (apps/entry.py's main, as `python -m ImageQualityTransferLib` runs it) with the wait for a scheduler's answer
# shortened from its 5 s (batch/scheduler.py SCHEDULER_ANSWER_S), which a port that is not a scheduler's waits out
ANSWER_SHORTENED = """
import sys
from ImageQualityTransferLib.apps.batch import scheduler
scheduler.SCHEDULER_ANSWER_S = 0.5
from ImageQualityTransferLib.apps.entry import main
sys.exit(main())
"""


@pytest.mark.slow
def test_a_scheduler_address_that_is_not_a_scheduler_is_refused_in_seconds(tmp_path, capsys, cluster):
    """--scheduler at a port that listens but is not a Dask scheduler (its dashboard's) hung with no message.
    Now one line and exit 2 within seconds, nothing written; a worker's address is named as a worker's. The dashboard
    case runs in a subprocess, so that a hang fails the test instead of stopping the suite, with the answer's wait
    shortened to 0.5 s (it waited out the 5 s)."""
    from distributed import Client

    with Client(cluster, timeout="20s") as client:
        info = client.scheduler_info()
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None)
    code, _, err = run_cli(capsys, "batch", ds, "-o", tmp_path / "o", "--method", "cubic", "--scheduler",
                           next(iter(info["workers"])))
    assert code == 2 and err.startswith("iqt: error: ") and len(err.strip().splitlines()) == 1, err
    assert "cannot connect (a Dask Worker answers there, not the scheduler)" in err and not (tmp_path / "o").exists()
    env = helpers.engine_env()
    cmd = [sys.executable, "-c", ANSWER_SHORTENED, "--threads", "1", "batch", str(ds), "-o", str(tmp_path / "o"),
           "--method", "cubic", "--scheduler", f"tcp://127.0.0.1:{info['services']['dashboard']}"]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("iqt batch still waited on the dashboard's port after 60 s")
    assert time.monotonic() - start < 30
    assert proc.returncode == 2 and proc.stderr.startswith("iqt: error: "), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "not a scheduler's" in proc.stderr and "within 0.5 s" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_dashboard_address_this_machine_cannot_serve_is_refused_before_the_cluster(tmp_path, capsys):
    """--dashboard-address at an address of another machine or a host that does not resolve gave
    'internal error: RuntimeError: Cluster failed to start', rc 1. Now one line, exit 2, before any cluster or file."""
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None)
    for address, words in (("192.0.2.1:8787", "192.0.2.1 is not an address of this machine"),
                           ("nosuchhost.invalid:8787", "the host nosuchhost.invalid cannot be resolved"),
                           ("127.0.0.1:port", "not HOST:PORT"), ("127.0.0.1:70000", "port 70000 is not 0 to 65535")):
        code, _, err = run_cli(capsys, "batch", ds, "-o", tmp_path / "o", "--method", "cubic", "--workers", "1",
                               "--dashboard-address", address)
        assert code == 2 and err.startswith("iqt: error: ") and len(err.strip().splitlines()) == 1, err
        assert words in err and "127.0.0.1:8787" in err and not (tmp_path / "o").exists()
    assert batch_cli.check_dashboard_address("127.0.0.1:0") is None and batch_cli.check_dashboard_address(":0") is None


@pytest.mark.slow
def test_ctrl_c_leaves_no_temporary_of_a_worker_killed_writing(tmp_path, capsys, monkeypatch):
    """In 1 run of 6, after Ctrl-C the line said no partial output was left, but a worker stopped with the
    cluster mid-write had left its 0-byte .iqt- temporary. A real local worker holds one open (the engine's own atomic
    write, slowed down) when the main process is interrupted; once the cluster is closed, none is left. The busy worker
    leaves as soon as it is closed, its task's result thrown away: Dask's nanny had waited 4 s on the task, then killed
    the worker (SIGKILL, its warning logged), and the stop waited that long (batch/local_cluster.py nanny_class)."""
    monkeypatch.setenv("PYTHONPATH", helpers.engine_env()["PYTHONPATH"])
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None)
    out = tmp_path / "deriv"

    def slow_write(path):
        import time as _time

        from ImageQualityTransferLib import fileio as _fileio

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        _fileio.atomic_write(path, lambda tmp: _time.sleep(30))

    def interrupted(items, s, out_root, client, **kwargs):
        target = Path(out_root) / "sub-01" / "dwi" / "x.nii.gz"
        client.submit(slow_write, str(target), pure=False)
        deadline = time.time() + 60
        while time.time() < deadline and not list(target.parent.glob(".iqt-*")):
            time.sleep(0.05)
        assert list(target.parent.glob(".iqt-*")), "the worker made no temporary within 60 s"
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "run_cohort", interrupted)
    with nanny_said() as said:
        code, _, err = run_cli(capsys, "batch", ds, "-o", out, "--method", "cubic", "--workers", "1",
                               "--dashboard-address", ":0")
    assert code == 130 and err.strip() == "iqt: interrupted; no partial output was left; the subjects that ended are kept, and a rerun of the same command skips them and does the rest", err
    assert not [p for p in out.rglob("*") if p.name.startswith(".iqt-")]
    assert [m for level, m in said if m.startswith("Nanny asking worker to close")], said  # its close was seen
    # the worker left on its own: no "Worker process still alive after 4.0 seconds, killing", no "killed by signal 9"
    assert not [m for level, m in said if level >= logging.WARNING or "killed" in m], said


@contextlib.contextmanager
def nanny_said():
    """The (level, message) of each record Dask's nanny logs meanwhile, INFO up (its logger's own handler: the
    `distributed` logger does not pass them on to the root)."""
    log = logging.getLogger("distributed.nanny")
    said: list = []

    class Said(logging.Handler):
        def emit(self, record):
            said.append((record.levelno, record.getMessage()))

    handler, level = Said(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield said
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def test_a_changed_bids_sidecar_redoes_the_subject(tmp_path):
    """The DWI's dwi.json gives the slice axis that --exclude-outliers drops slices along and the notes name: a rerun
    after editing it skipped the subject, its outputs made with the old axis (a researcher's audit). The sidecar's
    SHA256 is now compared too; a subject without one is skipped as before."""
    folder = tmp_path / "subjA"
    folder.mkdir()
    fileio.save_dwi(make_phantom(shape=SMALL, voxel_mm=4.0, n_dirs=12), folder / "dwi.nii.gz")
    (folder / "dwi.json").write_text(json.dumps({"SliceEncodingDirection": "k"}))
    (tmp_path / "list.txt").write_text("subjA\n")
    items, s, out = batch.find_items(tmp_path / "list.txt"), batch.Settings(method="cubic"), tmp_path / "deriv"
    out.mkdir()
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["done"]
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["skipped"]
    (folder / "dwi.json").write_text(json.dumps({"SliceEncodingDirection": "i"}))
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["done"]
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["skipped"]
    (folder / "dwi.json").unlink()  # gone: redone too (the review)
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["done"]
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["skipped"]


def test_a_5d_file_whose_frame_only_the_user_knows_is_asked_for_in_a_cohort_too(tmp_path):
    """A 5D tensor file iqt did not write, on a grid whose affine has a positive determinant (dipy's frame or voxel
    axes, a mirror apart): `iqt upsample` asks for --tensor-order, and `iqt batch` ran it in voxel axes (the
    review). The subject fails naming both orders; its list line's --tensor-order, or the run's, reads it."""
    import nibabel as nib

    from helpers import random_spd

    t = random_spd(8 * 8 * 8).reshape(8, 8, 8, 6).astype(np.float32)
    img = nib.Nifti1Image(t[:, :, :, None, :], np.diag([2.0, 2.0, 2.0, 1.0]))
    img.header.set_intent("symmetric matrix", (), name="")  # as dipy.io.utils.nifti1_symmat writes it
    nib.save(img, tmp_path / "dipy_dti.nii.gz")
    (tmp_path / "list.txt").write_text("dipy_dti.nii.gz\n")
    out = tmp_path / "deriv"
    out.mkdir()
    items = batch.find_items(tmp_path / "list.txt")
    res = batch.run_cohort(items, batch.Settings(method="cubic", order_stated=False), out, progress=False)
    assert res[0]["status"] == "failed" and "--tensor-order nifti (voxel axes) or --tensor-order dipy" in res[0]["reason"]
    res = batch.run_cohort(items, batch.Settings(method="cubic", tensor_order="dipy", order_stated=True), out,
                           progress=False)
    assert res[0]["status"] == "done"
    (tmp_path / "line.txt").write_text("dipy_dti.nii.gz --tensor-order nifti\n")
    res = batch.run_cohort(batch.find_items(tmp_path / "line.txt"), batch.Settings(method="linear", order_stated=False),
                           out, progress=False)
    assert res[0]["status"] == "done", res


def test_a_scheduler_file_not_there_is_named_so(tmp_path, capsys):
    """`--scheduler /path/sched.json` before the scheduler wrote it said 'cannot connect (missing port number in
    address ...)' (a researcher's audit): a path is named as a scheduler file that is not there, nothing written."""
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None)
    for given in (tmp_path / "nonexist.json", "sched.json", "sched.json\n"):  # a pasted newline: the file still named
        code, _, err = run_cli(capsys, "batch", ds, "-o", tmp_path / "o", "--method", "cubic", "--scheduler", given)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "no such scheduler file" in err, err
        assert not (tmp_path / "o").exists()
    # an address without a scheme, read as a path for its '/': its password had been echoed; now told as the address
    # it is, its login masked (a folder named with an '@' is a path's, kept as given)
    for given, said, why in (("alice:S3cret@node7:8786/dask", "alice:***@node7:8786/dask", "a tcp:// address holds no "
                              "user name (user@); give tcp://node7:8786"),
                             (tmp_path / "a@b" / "s.json", tmp_path / "a@b" / "s.json", "no such scheduler file;")):
        code, _, err = run_cli(capsys, "batch", ds, "-o", tmp_path / "o", "--method", "cubic", "--scheduler", given)
        assert code == 2 and err.startswith(f"iqt: error: --scheduler {said}: {why}"), err


def test_a_scheduler_address_of_another_protocol_is_refused_naming_the_forms(tmp_path, capsys):
    """`--scheduler ucx://...` ended "internal error: TypeError: Can't instantiate abstract class UCXConnector",
    `inproc://x` "cannot connect (not enough values to unpack ...)" (a cluster audit); also from a scheduler file."""
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None)
    (tmp_path / "sched.json").write_text('{"address": "inproc://192.168.1.2/1/1"}')
    for given in ("ucx://127.0.0.1:8788", "inproc://x", tmp_path / "sched.json"):
        code, _, err = run_cli(capsys, "batch", ds, "-o", tmp_path / "o", "--method", "cubic", "--scheduler", given)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "tcp://host:port" in err, err
        assert "not a scheduler address this command connects to" in err and "scheduler file" in err, err
        assert not (tmp_path / "o").exists()


def test_an_unbracketed_ipv6_scheduler_is_refused_with_the_bracketed_form_and_an_upper_case_scheme_is_taken(tmp_path,
                                                                                                         capsys):
    """`--scheduler ::1:8803` passed the address check, then ended "cannot connect (invalid address ...)"; `TCP://...`
    was refused as another protocol; the "cannot connect" line named only tcp:// and tls:// (a review)."""
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None)
    code, _, err = run_cli(capsys, "batch", ds, "-o", tmp_path / "o", "--method", "cubic", "--scheduler", "::1:8819")
    assert code == 2 and err.strip() == ("iqt: error: --scheduler ::1:8819: an IPv6 address is written in brackets "
                                         "before its port; give tcp://[::1]:8819"), err
    code, _, err = run_cli(capsys, "batch", ds, "-o", tmp_path / "o", "--method", "cubic", "--scheduler",
                           "TCP://127.0.0.1:8819")  # nothing listens there
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--scheduler tcp://127.0.0.1:8819: cannot connect" in err and "ws:// or wss://" in err, err
    assert not (tmp_path / "o").exists()


def test_an_ipv6_scheduler_without_a_port_is_said_so_with_the_bracketed_form(tmp_path, capsys):
    """`--scheduler ::1` had been read as host ':' port 1 and advised "tcp://[:]:1" (a review)."""
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None)
    for given, form in (("::1", "tcp://[::1]:8786"), ("tcp://fe80::1", "tcp://[fe80::1]:8786")):
        code, _, err = run_cli(capsys, "batch", ds, "-o", tmp_path / "o", "--method", "cubic", "--scheduler", given)
        assert code == 2 and err.strip() == (f"iqt: error: --scheduler {given}: an IPv6 address without a port; give it "
                                             f"in brackets before the scheduler's port, e.g. {form} (the default port "
                                             "of 'dask scheduler')"), err
        assert not (tmp_path / "o").exists()


def test_settling_a_stopped_cluster_run_drops_its_generated_by_entry_if_it_made_nothing(tmp_path):
    """On a cluster the stopped run's GeneratedBy entry is pruned once the workers are gone (settle_after_stop), not
    as the run stops, when a worker may still put a subject in place (a review); an entry no output names goes."""
    from ImageQualityTransferLib.apps.batch import records

    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None, shape=SMALL)
    items, out = batch.find_items(ds), tmp_path / "deriv"
    assert [r["status"] for r in batch.run_cohort(items, batch.Settings(method="cubic"), out, progress=False)] == ["done"]
    before = (out / "dataset_description.json").read_text()
    records.dataset_description(out, batch.Settings(method="linear"), items)  # the stopped run's entry, as it began
    assert "linear" in (out / "dataset_description.json").read_text()
    batch.settle_after_stop(items, batch.Settings(method="linear"), out)
    assert (out / "dataset_description.json").read_text() == before


def test_a_run_stopped_before_any_subject_ended_leaves_no_dataset_description(tmp_path, monkeypatch):
    """Ctrl-C before any subject ended said 'no partial output was left', but the new folder kept a
    dataset_description.json naming a run that made nothing (a researcher's audit). A folder that had one keeps it."""
    from ImageQualityTransferLib.apps.batch import tasks

    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None, shape=SMALL)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tasks, "process", interrupted)
    items, s = batch.find_items(ds), batch.Settings(method="cubic")
    out = tmp_path / "deriv"
    with pytest.raises(KeyboardInterrupt):
        batch.run_cohort(items, s, out, progress=False)
    assert not (out / "dataset_description.json").exists()
    monkeypatch.undo()
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["done"]
    before = (out / "dataset_description.json").read_text()
    monkeypatch.setattr(tasks, "process", interrupted)
    with pytest.raises(KeyboardInterrupt):
        batch.run_cohort(items, batch.Settings(method="linear"), out, progress=False)
    assert (out / "dataset_description.json").exists() and json.loads(before)["Name"]
    # and it does not list the stopped run, which made no file there (a cohort audit: listed until the next whole run)
    assert (out / "dataset_description.json").read_text() == before
    # a worker that put its subject in place before its result reached this process (a cohort audit's SIGTERM as the
    # first outputs landed): the new folder keeps its description and a table, the subject pending until a rerun
    monkeypatch.undo()
    real = tasks.process

    def landed_then_stopped(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(tasks, "process", landed_then_stopped)
    fresh = tmp_path / "deriv2"
    with pytest.raises(KeyboardInterrupt):
        batch.run_cohort(items, s, fresh, progress=False)
    assert (fresh / "dataset_description.json").exists(), sorted(p.name for p in fresh.rglob("*"))
    assert [r.split("\t")[3] for r in (fresh / "qc.tsv").read_text().splitlines()[1:]] == ["pending"]


def test_a_listed_file_whose_header_records_its_order_comes_back_in_it(tmp_path):
    """A 4D file this tool wrote in dtifit's order (its header records it) listed without --tensor-order: `iqt
    upsample` reads it in that order and writes dtifit's 4D file, `iqt batch` wrote 5D, its sidecar's TensorOrder
    and OutputOrder null (a researcher's audit). Now as upsample."""
    import nibabel as nib

    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti

    dwi = make_phantom(shape=(20, 22, 16), voxel_mm=4.0, n_dirs=12)
    (tmp_path / "P02").mkdir()
    from ImageQualityTransferLib.apps.cli import main

    assert main(["upsample", str(_save(fit_dti(dwi, brain_mask(dwi)), tmp_path / "lr.nii.gz")), "--method",
                 "cubic", "--output-order", "fsl", "-o", str(tmp_path / "P02" / "dti.nii.gz")]) == 0
    (tmp_path / "list.txt").write_text("P02/dti.nii.gz\n")
    out = tmp_path / "deriv"
    out.mkdir()
    res = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="linear", order_stated=False),
                           out, progress=False)
    assert res[0]["status"] == "done", res
    written = out / "sub-P02/dwi/sub-P02_space-orig_res-2x_model-linear_param-tensor_dwimap.nii.gz"
    assert nib.load(written).shape[3:] == (6,)  # dtifit's 4D file, as upsample writes it
    side = json.loads(written.with_suffix("").with_suffix(".json").read_text())
    assert side["TensorOrder"] == "fsl" and side["OutputOrder"] == "fsl"


def _save(vol, path):
    fileio.save_tensor(vol, path)
    return path


@pytest.mark.slow
def test_voxel_size_and_a_models_own_factors_choose_each_subjects(tmp_path, capsys, cluster):
    """`iqt batch --voxel-size MM` (and `--model` of a thick-slice model without --factor) choose each subject's
    factors from its own header, as `iqt upsample` does (batch had one --factor for the cohort: a cohort whose slices
    lie along different voxel axes needed one run per storage); one already at the size is refused by name."""
    from ImageQualityTransferLib.core.orientation import reorient
    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti
    from ImageQualityTransferLib.fileio import model_files

    dwi = make_phantom(shape=(16, 18, 12), voxel_mm=4.0, n_dirs=12)
    iso = fit_dti(dwi, brain_mask(dwi))
    thick = iso.replace(affine=iso.affine @ np.diag([1.0, 1.0, 2.0, 1.0]))  # 4x4x8 mm, slices along k
    fileio.save_tensor(iso, tmp_path / "iso.nii.gz")
    fileio.save_tensor(thick, tmp_path / "thick.nii.gz")
    fileio.save_tensor(reorient(thick, "SLA"), tmp_path / "sla.nii.gz")  # the same slices stored along i
    (tmp_path / "list.txt").write_text("iso.nii.gz\nthick.nii.gz\nsla.nii.gz\n")
    out = tmp_path / "deriv"
    code, stdout, err = run_cli(capsys, "batch", tmp_path / "list.txt", "-o", out, "--method", "linear",
                                "--voxel-size", "2", "--scheduler", cluster)
    assert code == 0, err
    assert "1 subject, method linear, factor 2 (--voxel-size 2: sub-iso)" in stdout, stdout
    shapes = {}
    for name, res in (("iso", "2x"), ("thick", "2x2x4x"), ("sla", "4x2x2x")):
        t = out / f"sub-{name}" / "dwi" / f"sub-{name}_space-orig_res-{res}_model-linear_param-tensor_dwimap.nii.gz"
        shapes[name] = fileio.load_tensor(t).shape3
        assert np.allclose(fileio.load_tensor(t).voxel_size, 2.0), name
    assert shapes == {"iso": (32, 36, 24), "thick": (32, 36, 48), "sla": (48, 32, 36)}, shapes
    rows = (out / "qc.tsv").read_text().splitlines()[1:]
    assert sorted((r.split("\t")[0], r.split("\t")[2], r.split("\t")[3]) for r in rows) == [
        ("sub-iso", "2x", "done"), ("sub-sla", "4x2x2x", "done"), ("sub-thick", "2x2x4x", "done")], rows
    page = (out / "qc.html").read_text()  # one command's factor sets are all this run's (a review: two were grey)
    assert "<b>3 rows of this run</b>" in page and "earlier runs" not in page, page[:500]
    code, stdout, err = run_cli(capsys, "batch", tmp_path / "list.txt", "-o", out, "--method", "linear",
                                "--voxel-size", "2", "--scheduler", cluster)
    assert code == 0 and "0 done, 3 skipped" in stdout, (stdout, err)
    code, _, err = run_cli(capsys, "batch", tmp_path / "list.txt", "-o", tmp_path / "d2", "--method", "linear",
                           "--voxel-size", "4", "--scheduler", cluster)
    assert code == 2 and err.startswith("iqt: error: sub-iso (") and "already at most 4 mm" in err, err
    assert "; or leave that subject out of the cohort" in err, err
    assert not (tmp_path / "d2").exists()
    code, _, err = run_cli(capsys, "batch", tmp_path / "list.txt", "-o", tmp_path / "d2", "--method", "linear",
                           "--voxel-size", "8", "--scheduler", cluster)  # every one named (the first only: an audit)
    assert code == 2 and err.startswith("iqt: error: sub-iso (") and len(err.strip().splitlines()) == 1, err
    assert ("; also refused at --voxel-size 8: sub-thick (4x4x8 mm) and sub-sla (8x4x4 mm); or leave those subjects "
            "out of the cohort") in err, err
    model = str(Path(model_files.MODELS_DIR) / "global-linear_x1x1x3.npz")  # S refined x3, whichever axis holds it
    (tmp_path / "two.txt").write_text("thick.nii.gz\nsla.nii.gz\n")
    code, stdout, err = run_cli(capsys, "batch", tmp_path / "two.txt", "-o", tmp_path / "d3", "--model", model,
                                "--scheduler", cluster)
    assert code == 0, err
    for name, res, shape in (("thick", "1x1x3x", (16, 18, 36)), ("sla", "3x1x1x", (36, 16, 18))):
        t = tmp_path / "d3" / f"sub-{name}" / "dwi" / f"sub-{name}_space-orig_res-{res}_model-globallinear_param-tensor_dwimap.nii.gz"
        assert fileio.load_tensor(t).shape3 == shape, name


def test_a_list_line_s_mask_on_the_output_grid_gives_the_brain_volume_it_holds(tmp_path):
    """qc.tsv's brain_ml from a line's --mask on the output's grid: it had been read as the low-res blocks the mask
    touches (a cohort audit: 1,402.7 ml for a mask of 1,215.3 ml), so one brain read 1,176-1,403 ml by the grid its mask
    was given on."""
    from ImageQualityTransferLib.core.grid import hr_affine
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti

    dwi = make_phantom(shape=(20, 22, 16), voxel_mm=4.0, n_dirs=12)
    lr_mask = brain_mask(dwi)
    fileio.save_tensor(fit_dti(dwi, lr_mask), tmp_path / "c_dti.nii.gz")
    hr = np.zeros((40, 44, 32), bool)
    hr[9:30, 11:34, 7:26] = True  # not made of whole low-res blocks
    hr &= np.asarray(lr_mask.data, bool).repeat(2, 0).repeat(2, 1).repeat(2, 2)
    fileio.save_mask(Volume(hr, hr_affine(dwi.affine, 2), "mask"), tmp_path / "hr_mask.nii.gz")
    (tmp_path / "list.txt").write_text("c_dti.nii.gz --mask hr_mask.nii.gz\n")
    res = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="cubic"), tmp_path / "o",
                           progress=False)
    assert res[0]["status"] == "done", res
    assert res[0]["qc"]["brain_ml"] == pytest.approx(hr.sum() * 8.0 / 1000.0), (res[0]["qc"]["brain_ml"], hr.sum())


def test_a_dataset_reached_by_another_path_or_moved_with_its_derivatives_resumes(tmp_path):
    """A resume through a symbolic link to the dataset (a cluster's login and compute nodes), or of a dataset moved with
    its derivatives/ inside, had been refused as 'the derivatives of another input' (a cohort audit); it skips what is
    done, and the raw link names the path of the run."""
    import shutil

    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None, shape=SMALL)
    s = batch.Settings(method="cubic")
    out = ds / "derivatives" / "iqt"
    assert [r["status"] for r in batch.run_cohort(batch.find_items(ds), s, out, progress=False)] == ["done"]
    link = tmp_path / "link"
    link.symlink_to(ds)
    moved = tmp_path / "moved"
    shutil.copytree(ds, moved)
    for root in (link, moved):
        items = batch.find_items(root)
        batch.check_source(root / "derivatives" / "iqt", items)  # `iqt batch`'s check before the cluster starts
        assert [r["status"] for r in batch.run_cohort(items, s, root / "derivatives" / "iqt", progress=False)] \
            == ["skipped"]
        desc = json.loads((root / "derivatives" / "iqt" / "dataset_description.json").read_text())
        assert desc["DatasetLinks"]["raw"] == root.absolute().as_uri()
    other = make_bids(tmp_path / "other", subjects=("02",), corrupt=None)  # another dataset into it: still refused
    with pytest.raises(batch.IQTError, match="holds the derivatives of another input"):
        batch.check_source(out, batch.find_items(other))


def test_generated_by_tells_apart_runs_of_other_samples_bmax_and_outlier_settings(tmp_path):
    """A folder redone with --exclude-outliers kept naming the run without it, and a --mc-samples 2 run's command stood
    for outputs made with the default 10 (a cohort audit): each setting has its own GeneratedBy entry, and one that no
    output's sidecar names is dropped."""
    from ImageQualityTransferLib.apps.batch import records

    out = tmp_path / "deriv"
    out.mkdir()
    runs = [batch.Settings(method="espcn-hetero-var1"), batch.Settings(method="espcn-hetero-var1", mc_samples=2),
            batch.Settings(method="espcn-hetero-var1", exclude_outliers=True),
            batch.Settings(method="espcn-hetero-var1", bmax=1000.0)]
    for s in runs:
        records.dataset_description(out, s)
    entries = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"]
    assert len(entries) == 4 and [e.get("MCSamples") for e in entries] == [10, 2, 10, 10], entries
    side = out / "sub-01" / "dwi" / "sub-01_space-orig_res-2x_model-espcnheterovar1_param-tensor_dwimap.json"
    side.parent.mkdir(parents=True)
    side.write_text(json.dumps({"SoftwareBuild": entries[2]["Build"], "Method": "espcn-hetero-var1", "Factor": 2,
                                "ModelSHA256": None, "MCSamples": 10, "ExcludeOutliers": True,
                                "GradientSHA256": {"bval": "0" * 64, "bvec": "0" * 64}}))  # a DWI subject's
    records.generated_by_in_use(out)
    kept = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"]
    assert len(kept) == 1 and kept[0].get("ExcludeOutliers") is True, kept
    # the other way round: a plain run's DWI sidecar keeps the plain entry alone (a second review)
    (out / "dataset_description.json").unlink()
    for s in runs:
        records.dataset_description(out, s)
    entries = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"]
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**{k: v for k, v in meta.items() if k != "ExcludeOutliers"}, "SoftwareBuild": entries[0]["Build"]}))
    records.generated_by_in_use(out)
    kept = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"]
    assert [(e.get("MCSamples"), e.get("BMax"), e.get("ExcludeOutliers")) for e in kept] == [(10, None, None)], kept
    # a source dataset named without a URL (a DOI) stays when the raw link is first set
    desc = json.loads((out / "dataset_description.json").read_text())
    desc.pop("DatasetLinks", None)
    desc["SourceDatasets"] = [{"DOI": "doi:10.18112/openneuro.ds000001.v1.0.0"}]
    (out / "dataset_description.json").write_text(json.dumps(desc))
    item = batch.items.Item(prefix="sub-01", subdir="sub-01/dwi", path=str(tmp_path / "x.nii.gz"), kind="dti",
                            root=str(tmp_path))
    records.dataset_description(out, runs[0], [item])
    assert json.loads((out / "dataset_description.json").read_text())["SourceDatasets"] == [
        {"DOI": "doi:10.18112/openneuro.ds000001.v1.0.0"}, {"URL": tmp_path.as_uri()}]


def test_the_dashboard_line_names_the_port_a_scheduler_serves():
    """With --scheduler the line gave the client's configured default (8787), which a scheduler serving its dashboard
    on another port does not serve (a cohort audit)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=0, dashboard_address=":0", processes=False, protocol="tcp") as c, Client(c) as client:
        port = c.scheduler.services["dashboard"].port
        assert port != 8787
        said = batch_cli._dashboard(client, c.scheduler_address)
        assert said.endswith(f":{port}/status") and said.startswith("http://"), said


def test_a_dwi_line_s_mask_on_the_output_grid_is_taken(tmp_path):
    """A DWI subject's list line with --mask on the output's grid, as the README allows a line's mask: it had failed
    ('give a mask on the input's grid'; a cohort audit). Fitted in the blocks it touches, the outputs kept to it."""
    from ImageQualityTransferLib.core.grid import hr_affine
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.dmri.dti import brain_mask

    folder = tmp_path / "P01"
    folder.mkdir()
    dwi = make_phantom(shape=(20, 22, 16), voxel_mm=4.0, n_dirs=12)
    fileio.save_dwi(dwi, folder / "dwi.nii.gz")
    hr = np.asarray(brain_mask(dwi).data, bool).repeat(2, 0).repeat(2, 1).repeat(2, 2)
    hr[:, :, :13] = False  # cut through blocks
    fileio.save_mask(Volume(hr, hr_affine(dwi.affine, 2), "mask"), tmp_path / "hr.nii.gz")
    (tmp_path / "list.txt").write_text("P01 --mask hr.nii.gz\n")
    out = tmp_path / "o"
    res = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="cubic"), out, progress=False)
    assert res[0]["status"] == "done", res
    assert res[0]["qc"]["brain_from"] == "mask"
    stem = out / "sub-P01" / "dwi" / "sub-P01_space-orig_res-2x_model-cubic"
    written = fileio.load_mask(Path(f"{stem}_desc-brain_mask.nii.gz"))
    np.testing.assert_array_equal(np.asarray(written.data, bool), hr)
    t = fileio.load_tensor(Path(f"{stem}_param-tensor_dwimap.nii.gz"))
    assert not np.any(t.data[~hr]) and np.all(np.any(t.data[hr] != 0, axis=-1))


def test_with_bmax_and_a_mask_on_the_output_grid_the_order_is_read_on_every_volume(tmp_path):
    """A b = 500 shell first and the phantom's b0s moved to the file's end, in the b = 1000 shell's lines that --bmax 500
    drops, the files not: the subject fails with the order's line also where its list line's mask is on the output's
    grid (only the kept volumes, which hold no b0, had been read there, and the series fitted)."""
    from ImageQualityTransferLib.core.grid import hr_affine
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.dmri.dti import B0_THRESHOLD, brain_mask

    dwi = make_phantom(shape=(20, 22, 16), voxel_mm=4.0, n_dirs=12)
    d, b = np.asarray(dwi.data, np.float64), np.asarray(dwi.bvals, float)
    b0, dw = b <= B0_THRESHOLD, b > B0_THRESHOLD
    half = np.sqrt(d[..., b0].mean(-1, keepdims=True) * d[..., dw])
    data, bvals = np.concatenate([half, d], -1), np.r_[b[dw] / 2, b]
    order = np.r_[np.flatnonzero(bvals > B0_THRESHOLD), np.flatnonzero(bvals <= B0_THRESHOLD)]
    folder = tmp_path / "P01"
    folder.mkdir()
    fileio.save_dwi(dwi.replace(data=data[..., order].astype(np.float32), bvals=bvals,
                                bvecs=np.r_[dwi.bvecs[dw], dwi.bvecs]), folder / "dwi.nii.gz")
    hr = np.asarray(brain_mask(dwi).data, bool).repeat(2, 0).repeat(2, 1).repeat(2, 2)
    fileio.save_mask(Volume(hr, hr_affine(dwi.affine, 2), "mask"), tmp_path / "hr.nii.gz")
    (tmp_path / "list.txt").write_text("P01 --mask hr.nii.gz\n")
    res = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="cubic", bmax=500.0),
                           tmp_path / "o", progress=False)
    assert res[0]["status"] == "failed" and "the bval/bvec order does not match the volumes" in res[0]["reason"], res
    n = len(bvals)
    assert f"volumes {n - 2}, {n - 1}, which the bval file calls diffusion-weighted" in res[0]["reason"], res


@pytest.mark.parametrize("setting", [{"exclude_outliers": True}, {"bmax": 1000.0}])
def test_a_run_whose_outputs_are_tensor_files_keeps_its_generated_by_entry(tmp_path, setting):
    """--exclude-outliers and --bmax act on DWIs and a tensor file's sidecar records neither: its run's entry had been
    dropped, and the rerun the failure line asks for refused as 'another dataset' (a review)."""
    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti

    dwi = make_phantom(shape=(12, 14, 10), voxel_mm=4.0, n_dirs=12)
    fileio.save_tensor(fit_dti(dwi, brain_mask(dwi)), tmp_path / "t1.nii.gz")
    (tmp_path / "P02").mkdir()  # a DWI subject that fails: no gradient files beside it
    fileio.save_dwi(dwi, tmp_path / "P02" / "dwi.nii.gz")
    for p in (tmp_path / "P02").glob("dwi.bv*"):
        p.unlink()
    (tmp_path / "list.txt").write_text("t1.nii.gz\nP02\n")
    out = tmp_path / "deriv"
    res = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="linear", **setting), out,
                           progress=False)
    assert [r["status"] for r in res] == ["done", "failed"]
    assert len(json.loads((out / "dataset_description.json").read_text())["GeneratedBy"]) == 1
    batch.check_source(out, batch.find_items(tmp_path / "list.txt"))  # the rerun is taken


def test_another_input_s_outputs_under_this_dataset_s_derivatives_are_not_taken_for_it(tmp_path):
    """A folder under a dataset's derivatives/ that holds the outputs of another input (a list elsewhere) is not that
    dataset moved: refused, its raw link kept (a review of the move rule)."""
    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti

    ds = make_bids(tmp_path / "ds", subjects=("01",), corrupt=None)
    lists = tmp_path / "tensors"
    lists.mkdir()
    dwi = make_phantom(shape=(12, 14, 10), voxel_mm=4.0, n_dirs=12)
    fileio.save_tensor(fit_dti(dwi, brain_mask(dwi)), lists / "P09.nii.gz")
    (lists / "list.txt").write_text("P09.nii.gz\n")
    out = ds / "derivatives" / "iqt"
    batch.run_cohort(batch.find_items(lists / "list.txt"), batch.Settings(method="linear"), out, progress=False)
    with pytest.raises(batch.IQTError, match="holds the derivatives of another input"):
        batch.check_source(out, batch.find_items(ds))


def test_a_header_whose_grid_its_reader_refuses_leaves_the_choice_of_factors_to_the_others(tmp_path):
    """Under --voxel-size, a subject whose header has a NaN or a zero voxel axis had ended the cohort in an internal
    error (or refused it, 'factors above 10,000'); it joins the first factor set and fails alone with its reader's line
    (a review)."""
    import argparse

    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti

    dwi = make_phantom(shape=(12, 14, 10), voxel_mm=4.0, n_dirs=12)
    t = fit_dti(dwi, brain_mask(dwi))
    fileio.save_tensor(t, tmp_path / "good.nii.gz")
    import nibabel as nib

    img = nib.load(tmp_path / "good.nii.gz")
    for name, entry in (("nan", np.nan), ("zero", 0.0)):
        a = img.affine.copy()
        a[:3, 2] = [0.0, 0.0, entry]
        bad = nib.Nifti1Image(np.asarray(img.dataobj), None, img.header.copy())
        bad.header["srow_x"], bad.header["srow_y"], bad.header["srow_z"] = a[0], a[1], a[2]  # as a broken tool writes
        bad.header["sform_code"], bad.header["qform_code"] = 1, 0
        nib.save(bad, tmp_path / f"{name}.nii.gz")
    (tmp_path / "list.txt").write_text("good.nii.gz\nnan.nii.gz\nzero.nii.gz\n")
    items = batch.find_items(tmp_path / "list.txt")
    for extra in ({"voxel_size": 2.0, "model": None}, {"voxel_size": None, "model": str(Path(
            fileio.model_files.MODELS_DIR) / "global-linear_x1x1x3.npz")}):
        args = argparse.Namespace(factor=None, **extra)
        groups = batch_cli.factor_groups(args, items)
        assert len(groups) == 1 and [it.prefix for it in groups[0][1]] == [it.prefix for it in items], groups


def test_a_scheduler_port_out_of_range_is_said_with_the_range():
    """`--scheduler tcp://[::1]:99999` had been tried and said as "cannot connect (... Connection refused)", as if
    a scheduler could listen there: the port's range is said, as for no port (through check_address, which the command
    runs before connecting: test_a_bracketed_ipv6_scheduler_without_a_port_is_said_so). The port is quoted: a name
    for one had read "port port is not 1 to 65535" (a review)."""
    from ImageQualityTransferLib.apps.batch import scheduler

    for given, port, form in (("tcp://[::1]:99999", "99999", "tcp://[::1]:8786"),
                              ("tls://[2001:db8::5]:0", "0", "tls://[2001:db8::5]:8786"),
                              ("host:65536", "65536", "tcp://host:8786"), ("tcp://10.0.0.9:port", "port", "tcp://10.0.0.9:8786"),
                              ("tcp://[::1]:0:", "0:", "tcp://[::1]:8786")):
        with pytest.raises(batch.IQTError) as err:
            scheduler.check_address(given)
        assert str(err.value) == (f"--scheduler {given}: port '{port}' is not a number from 1 to 65535; give the "
                                  f"scheduler's port, e.g. {form} (the default port of 'dask scheduler')"), err.value
    assert scheduler.check_address("tcp://[::1]:65535") == "tcp://[::1]:65535"
    assert scheduler.check_address("TCP://10.0.0.9:1") == "tcp://10.0.0.9:1"


def test_a_bracketed_ipv6_host_followed_by_other_than_a_colon_is_refused_as_malformed():
    """The port had been taken as what followed "]" less its first character: `tcp://[::1]8786` passed as port 786
    (then "cannot connect"), `tcp://[::1]x0` read "port 0 is not 1 to 65535" (a review); an unclosed bracket passed too.
    Each is now refused as malformed with the form to give."""
    from ImageQualityTransferLib.apps.batch import scheduler

    for given, form in (("tcp://[::1]8786", "tcp://[::1]:8786"), ("tcp://[::1]x0", "tcp://[::1]:8786"),
                        ("tls://[2001:db8::5]-8786", "tls://[2001:db8::5]:8786"), ("tcp://[::1", "tcp://[::1]:8786")):
        with pytest.raises(batch.IQTError) as err:
            scheduler.check_address(given)
        assert str(err.value) == (f"--scheduler {given}: not a scheduler address: an IPv6 host in brackets is followed "
                                  f"by a colon and the port; give e.g. {form}"), err.value
    assert scheduler.check_address("tcp://[::1]:8786") == "tcp://[::1]:8786"


def test_a_scheduler_address_with_a_path_after_the_port_is_refused():
    """`--scheduler tcp://[::1]:8786/` had passed (the path was dropped before the port was read), then failed "cannot
    connect (invalid literal for int() with base 10: '8786/')": Dask reads no path (a review). Refused in one line."""
    from ImageQualityTransferLib.apps.batch import scheduler

    for given, form in (("tcp://[::1]:8786/", "tcp://[::1]:8786"), ("tcp://[::1]:8786/x", "tcp://[::1]:8786"),
                        ("tls://host:8786/", "tls://host:8786"), ("host:8786/sched", "tcp://host:8786")):
        with pytest.raises(batch.IQTError) as err:
            scheduler.check_address(given)
        assert str(err.value) == f"--scheduler {given}: no path after the port; give {form}", err.value
    for given, form in (("tcp://host/", "tcp://host:8786"), ("tcp://127.0.0.1/x", "tcp://127.0.0.1:8786")):
        with pytest.raises(batch.IQTError) as err:  # no port either: 'give tcp://host' had been said, which Dask refuses
            scheduler.check_address(given)
        assert str(err.value).startswith(f"--scheduler {given}: no port, and a path after the host; give {form}"), err.value


def test_a_ws_scheduler_url_keeps_its_path_as_dask_reads_it():
    """`--scheduler ws://127.0.0.1:8799/` had been refused "no path after the port", though Dask's Client hands a ws URL's
    path to the server and reaches the scheduler there (a review): a ws/wss URL is taken with its path (and without a
    port, the scheme's, as a proxy serves it); tcp/tls, which Dask reads as host:port, still refuse one."""
    from ImageQualityTransferLib.apps.batch import scheduler

    for given in ("ws://127.0.0.1:8799/", "WS://[::1]:8786/", "wss://node7.cluster:443/", "ws://host:8786/?a=1",
                  "wss://proxy.example.org", "ws://host:8799#frag"):
        assert scheduler.check_address(given) == given[:3].lower() + given[3:], given
    with pytest.raises(batch.IQTError, match=r"^--scheduler tls://h:8786/: no path after the port; give tls://h:8786$"):
        scheduler.check_address("tls://h:8786/")
    with pytest.raises(batch.IQTError, match=r"^--scheduler ws://h:99999/: port '99999' is not a number from 1 to 65535"):
        scheduler.check_address("ws://h:99999/")


def test_a_scheduler_address_without_a_port_or_a_host_is_said_so():
    """`localhost`, `tcp://127.0.0.1` and `tcp://node042.cluster` (no port, no path) had been told "cannot connect
    (missing port number ...); start one with 'dask scheduler'", where `tcp://127.0.0.1/` was told the port to give;
    `tcp://:8786` and `tcp://[]:8786` had passed, Dask reading host '' (a review). Each is said in one line with the
    form to give."""
    from ImageQualityTransferLib.apps.batch import scheduler

    for given, form in (("localhost", "tcp://localhost:8786"), ("tcp://127.0.0.1", "tcp://127.0.0.1:8786"),
                        ("tcp://node042.cluster", "tcp://node042.cluster:8786"), ("TLS://node7", "tls://node7:8786")):
        with pytest.raises(batch.IQTError) as err:
            scheduler.check_address(given)
        assert str(err.value) == (f"--scheduler {given.replace('TLS', 'tls')}: no port; give {form} (the default port "
                                  "of 'dask scheduler'), or the scheduler's own port"), err.value
    for given, before in (("tcp://:8786", " before the port"), ("tcp://[]:8786", " before the port"),
                          (":8786", " before the port"), ("ws://[]:8786/", " before the port"), ("tcp://[]", ""),
                          ("tcp://[]:", ""), ("tcp://:", "")):
        with pytest.raises(batch.IQTError) as err:
            scheduler.check_address(given)
        proto = "ws" if given.startswith("ws") else "tcp"
        assert str(err.value) == (f"--scheduler {given}: no host{before}; give the scheduler's machine, e.g. "
                                  f"{proto}://127.0.0.1:8786 for this one"), err.value


def test_a_bracketed_ipv6_scheduler_without_a_port_is_said_so(tmp_path, capsys):
    """`--scheduler tcp://[::1]` (brackets, no port) had been told "cannot connect (missing port number ...)", and
    `tcp://[::1]:` (a colon, no port) "cannot connect (invalid literal for int() ...)": the no-port line, as for ::1
    (reviews). The forms through check_address; one through the command (exit 2, nothing made), which reads the
    cohort first (a second each)."""
    from ImageQualityTransferLib.apps.batch import scheduler

    def line(given, form):
        return (f"--scheduler {given}: an IPv6 address without a port; give the scheduler's port after the brackets, "
                f"e.g. {form} (the default port of 'dask scheduler')")

    for given, form in (("tcp://[::1]", "tcp://[::1]:8786"), ("[::1]", "tcp://[::1]:8786"),
                        ("tls://[2001:db8::5]", "tls://[2001:db8::5]:8786"), ("[::1]:", "tcp://[::1]:8786"),
                        ("tls://[2001:db8::5]:", "tls://[2001:db8::5]:8786")):
        with pytest.raises(batch.IQTError) as err:
            scheduler.check_address(given)
        assert str(err.value) == line(given, form)
    with pytest.raises(batch.IQTError, match=r"^--scheduler tcp://host:: no port after the colon; give the "
                                             r"scheduler's port, e\.g\. tcp://host:8786 "):
        scheduler.check_address("tcp://host:")
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None)
    code, _, err = run_cli(capsys, "batch", ds, "-o", tmp_path / "o", "--method", "cubic", "--scheduler", "tcp://[::1]:")
    assert code == 2 and err.strip() == "iqt: error: " + line("tcp://[::1]:", "tcp://[::1]:8786"), err
    assert not (tmp_path / "o").exists()


def test_a_bracketed_host_that_is_no_ipv6_address_is_refused():
    """`--scheduler tcp://[localhost]:8786` had passed the address check (brackets belong only around an IPv6 address)
    and been tried as localhost (a review): refused in one line that says to drop the brackets."""
    from ImageQualityTransferLib.apps.batch import scheduler

    for given, form in (("tcp://[localhost]:8786", "tcp://localhost:8786"), ("tls://[10.0.0.9]:9000", "tls://10.0.0.9:9000"),
                        ("[node7]:8786", "tcp://node7:8786")):
        with pytest.raises(batch.IQTError) as err:
            scheduler.check_address(given)
        assert str(err.value) == (f"--scheduler {given}: brackets belong only "
                                  f"around an IPv6 address, not '{given.rpartition('[')[2].partition(']')[0]}'; drop "
                                  f"them: give {form}"), err.value
    assert scheduler.check_address("tcp://[::1]:8786") == "tcp://[::1]:8786"


def test_a_port_alone_a_dashboard_address_or_a_pasted_space_is_said_so():
    """`--scheduler 8786` had been told "no port; give tcp://8786:8786"; the dashboard's `127.0.0.1:8787/status` "give
    tcp://127.0.0.1:8787", then "the port listens but is not a scheduler's"; a pasted address's trailing space or
    newline was read as part of its port (a review)."""
    from ImageQualityTransferLib.apps.batch import scheduler

    for given, form in (("8786", "8786"), ("tcp://9000", "9000")):
        with pytest.raises(batch.IQTError) as err:
            scheduler.check_address(given)
        assert str(err.value) == (f"--scheduler {given}: a port alone, no host; give the scheduler's machine before it, "
                                  f"tcp://HOST:{form}, e.g. tcp://127.0.0.1:{form} for this one"), err.value
    for given, form in (("127.0.0.1:8787/status", "tcp://127.0.0.1"), ("http://node7:8787/status", "tcp://node7"),
                        ("http://127.0.0.1:8787", "tcp://127.0.0.1"), ("tcp://[::1]:8787/", "tcp://[::1]"),
                        ("tcp://node7:9999/workers", "tcp://node7"), ("ws://node7:8787/individual-cpu", "ws://node7"),
                        ("tls://127.0.0.1:8787/status", "tls://127.0.0.1"), ("wss://node7:8787/status", "wss://node7")):
        with pytest.raises(batch.IQTError) as err:
            scheduler.check_address(given)
        assert str(err.value) == (f"--scheduler {given}: the address of the scheduler's dashboard (its web pages), not "
                                  f"of the scheduler; give the scheduler's, {form}:8786 by default"), err.value
    for given in ("tcp://127.0.0.1:8786 ", "  tcp://127.0.0.1:8786", "tcp://127.0.0.1:8786\n"):
        assert scheduler.check_address(given) == "tcp://127.0.0.1:8786", repr(given)


def test_scheduler_address_forms_are_taken_as_dask_reads_them():
    """A ws URL's user:password@ (tornado's websocket client sends it, a proxy's login) and a bracketed IPv6 ws URL
    without a port (the scheme's, 80) had been refused; tcp://user@host:8786 and a space inside an address had passed,
    Dask then looking up "user@host" or "my host" as a machine's name; ucx:// (a stub in this Dask) is refused saying
    why (a review)."""
    from ImageQualityTransferLib.apps.batch import scheduler

    for given in ("ws://user:pw@node7/", "wss://user:@node7:8786/", "ws://[::1]/", "wss://[::1]/"):
        assert scheduler.check_address(given) == given
    for given, line in (("tcp://user@node7:8786", "a tcp:// address holds no user name (user@); give tcp://node7:8786"),
                        ("tcp://my host:8786", "a space inside the address; give it without: tcp://myhost:8786"),
                        ("ws://my host/", "a space inside the address; give it without: ws://myhost/")):
        with pytest.raises(batch.IQTError) as err:
            scheduler.check_address(given)
        assert str(err.value).endswith(line), err.value
    with pytest.raises(batch.IQTError, match=r"^--scheduler ucx://node7:8786: not a scheduler address this command "
                                             r"connects to \(Dask's ucx:// moved to the distributed-ucxx package\)"):
        scheduler.check_address("ucx://node7:8786")


def test_a_refused_scheduler_address_never_says_its_password():
    """Every --scheduler refusal had echoed a ws URL's password to stderr and a cluster job's log, and suggested an
    address carrying it (wss://u:pw@host:8787/status: "give ... wss://u:pw@host:8786"); an unencoded '/' in one had
    been read as the end of the host ("port 'p' is not a number ..., e.g. ws://user:8786"); a space in the address,
    one without a scheme and a token given as the user name had still been echoed (reviews)."""
    from ImageQualityTransferLib.apps.batch import scheduler

    for given, line in (
            ("wss://u:pw@node7:8787/status", "--scheduler wss://u:***@node7:8787/status: the address of the scheduler's "
                                             "dashboard (its web pages), not of the scheduler; give the scheduler's, "
                                             "wss://node7:8786 by default"),
            ("ws://user:pw@node7:99999/", "--scheduler ws://user:***@node7:99999/: port '99999' is not a number from 1 "
                                          "to 65535; give the scheduler's port, e.g. ws://node7:8786 (the default port "
                                          "of 'dask scheduler')"),
            ("ws://user:p/w@node7/", "--scheduler ws://***: an '@' after the first '/', '?' or '#': a user "
                                     "name or password holding one of these ends the host early, and Dask's websocket "
                                     "client sends a login as written ('%2F' as '%2F', not '/'); give one without '/', "
                                     "'?' or '#', e.g. a token as ws://TOKEN:@host/"),
            ("tcp://u:pw@node7:8786", "--scheduler tcp://u:***@node7:8786: a tcp:// address holds no user name (user@); "
                                      "give tcp://node7:8786")):
        with pytest.raises(batch.IQTError) as err:
            scheduler.check_address(given)
        assert str(err.value) == line, err.value
    for given in ("ws://alice:S3cret@my host:8786/", "alice:S3cret@host 7:8786", "ws://S3cret@node7:99999/"):
        with pytest.raises(batch.IQTError) as err:  # a space, no scheme, a token as the user name
            scheduler.check_address(given)
        assert "S3cret" not in str(err.value) and "***@" in str(err.value), err.value
    assert scheduler.shown("alice:S3cret@host:8786") == "alice:***@host:8786"
    # a suggestion is built from the host and port alone (a wss:// address answered without TLS had suggested
    # tcp://alice:S3cret@host:port/, apps/batch/dask_client.py)
    assert scheduler.host_port("wss://alice:S3cret@127.0.0.1:48621/dask/?x") == "127.0.0.1:48621"
    assert scheduler.check_address("ws://user:p%2Fw@node7/") == "ws://user:p%2Fw@node7/"
    # a worker is given the scheme, host and port alone: `dask worker ws://host:8786/` ends in a traceback (its port
    # read as '8786/', checked with a real ws scheduler), and a proxy's login or query is nothing it sends (a proxy's
    # path: test_batch_scheduler_logins.py)
    assert scheduler._no_workers("ws://u:pw@node7:8786/?token=T", 5, "joined") == (
        "--scheduler ws://u:***@node7:8786/?token=***: no worker joined within 5 s; start workers with 'dask worker "
        "ws://node7:8786' (with ImageQualityTransfer installed, as here), or wait longer with --wait-workers SECONDS")
    assert "'dask worker tcp://node7:8786'" in scheduler._no_workers("node7:8786", 5, "joined")


def test_an_at_sign_in_a_ws_url_s_path_or_query_is_not_taken_for_a_login():
    """ws://host:8786/?t=a@b had been refused as a login cut short ("an '@' after the first '/' ...") and echoed as
    ws://host:***@b, the host masked; Dask's Client (tornado, urlsplit) reads its host as host:8786 and connects (a
    review; checked on a ws LocalCluster). A host part whose port is no number is still read as a cut-short login."""
    from urllib.parse import urlsplit

    from ImageQualityTransferLib.apps.batch import scheduler

    for given in ("ws://127.0.0.1:8786/a@b", "ws://node7:8786/?t=a@b", "ws://[::1]:8786/a@b"):
        assert scheduler.check_address(given) == given
        # all after the host masked, the host shown with its port (apps/batch/ws_shown.py: one label and digits before
        # a path's '@' read as a user name and a password's start, ws://alice:1/pw@h/, but not before a query value's)
        assert scheduler.shown(given) == given.replace("?t=a@b", "***").replace("a@b", "***")
        assert scheduler.host_port(given) == urlsplit(given).netloc
    with pytest.raises(batch.IQTError, match="ends the host early"):
        scheduler.check_address("ws://user:p?w@node7:8786/")
    assert scheduler.shown("ws://user:p/w@node7/") == "ws://***"


def test_a_ws_login_dask_cannot_send_is_refused_and_one_it_sends_is_taken_with_nothing_secret_said():
    """ws://TOKEN@host/ ended "internal error: AssertionError" (exit 1; tornado asserts a password) and is refused in
    one line; a space in a ws URL's password, which Dask's ws client sends as written (both checked with a real Client
    on a ws LocalCluster), had been refused "give it without", another password; a query's token and a token given as
    TOKEN:@ had been echoed; tcp://user@host was told to give tcp://host, refused next for its missing port (a review)."""
    from ImageQualityTransferLib.apps.batch import scheduler

    for given, line in (
            ("ws://S3cret@node7:8786/p", "--scheduler ws://***@node7:8786/p: a user name without a password (TOKEN@), "
                                         "which Dask's websocket client cannot send; give a token as "
                                         "ws://TOKEN:@node7:8786/p (an empty password), or ws://USER:PASSWORD@node7:8786/p"),
            ("alice:S3cret@node7", "--scheduler alice:***@node7: a tcp:// address holds no user name (user@); give "
                                   "tcp://node7:8786"),
            ("tls://u:S3cret@[::1]", "--scheduler tls://u:***@[::1]: a tls:// address holds no user name (user@); give "
                                     "tls://[::1]:8786"),
            ("ws://alice:S3c ret@my host/", "--scheduler 'ws://alice:***@my host/': a space inside the address; give it "
                                            "without: ws://alice:***@myhost/")):
        with pytest.raises(batch.IQTError) as err:
            scheduler.check_address(given)
        assert str(err.value) == line, err.value
    for given in ("ws://alice:S3c ret@node7/", "wss://S3cret:@node7/"):
        assert scheduler.check_address(given) == given
    assert scheduler.shown("wss://S3cret:@node7/?token=S3cret&x=1#f") == "wss://***:@node7/?token=***&x=***#***"
    assert scheduler.shown("ws://u:S3cret@node7/?token=S3cret") == "ws://u:***@node7/?token=***"
    assert scheduler.dask_said("Timed out trying to connect to ws://u:S3c ret@h/ after 2 s: HTTP 401 (u:S3c ret)",
                               "ws://u:S3c ret@h/") == "Timed out trying to connect to ws://u:***@h/ after 2 s: HTTP 401 (u:***)"


def test_dask_s_own_connect_error_and_the_plain_scheme_advice_say_no_password(monkeypatch):
    """Through start_client: Dask's own "Timed out trying to connect to ws://alice:S3cret@..." had been quoted whole in
    the "cannot connect (...)" line where the handshake failed (a review: a login proxy's 401); a wss:// URL answered
    without TLS is told its ws:// form (a ws listener does not speak tcp://, which had been suggested), password masked."""
    from ImageQualityTransferLib.apps.batch import dask_client

    monkeypatch.setattr(dask_client, "CONNECT_S", 0.3, raising=False)  # Dask's Client retries the 503s until then
    with _answering(lambda request: 503) as base:  # a proxy's answer left to the Client (its scheduler starting)
        where = base.replace("ws://", "")
        with pytest.raises(batch.IQTError) as err:
            dask_client.start_client(scheduler=f"ws://alice:S3cret@{where}/dask/", wait_workers=1)
        assert str(err.value).startswith(f"--scheduler ws://alice:***@{where}/dask/: cannot connect (Timed out trying "
                                         f"to connect to ws://alice:***@{where}/dask/ after 0.3 s"), err.value
        assert "S3cret" not in str(err.value)
        with pytest.raises(batch.IQTError) as err:
            dask_client.start_client(scheduler=f"wss://alice:S3cret@{where}/dask/", wait_workers=1)
        assert str(err.value).startswith(f"--scheduler wss://alice:***@{where}/dask/: the TLS handshake failed ("), err
        assert (f"): either the scheduler speaks plain ws:// (give ws://alice:***@{where}/dask/) or the credentials "
                "Dask's configuration names") in str(err.value) and "S3cret" not in str(err.value), err.value


def test_a_ws_scheduler_at_port_8787_is_not_taken_for_the_dashboard():
    """`ws://127.0.0.1:8787/`, a ws scheduler given port 8787 at the one route Dask's ws listener serves, had been
    refused as the dashboard's address (a review); a ws URL off 8787 with a dashboard page's path is told the ws path
    rule, not to give tcp://."""
    from ImageQualityTransferLib.apps.batch import scheduler

    for given in ("ws://127.0.0.1:8787/", "wss://node7:8787/", "ws://127.0.0.1:8787/?x=1", "ws://node7:9999/status"):
        assert scheduler.check_address(given) == given


def test_a_ws_scheduler_url_with_nothing_listening_is_refused_at_once():
    """`ws://127.0.0.1` (nothing on port 80) had passed, then waited 20 s to say "cannot connect ... start one with
    'dask scheduler'" (a review): nothing listening at a ws URL's port (80 where none is given) is said at once."""
    import socket

    from ImageQualityTransferLib.apps.batch import scheduler

    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        start = time.monotonic()
        with pytest.raises(ConnectionRefusedError):
            scheduler._reachable(f"ws://127.0.0.1:{s.getsockname()[1]}/")
    assert time.monotonic() - start < 4  # not the 20 s, nor the connection's 5 s timeout (the bound had been 1 s)


@contextlib.contextmanager
def _answering(status_of, tls=None):
    """A local http.server answering every GET with `status_of(request)` and no body; yields its ws:// base URL (a
    stand-in for what answers at a --scheduler ws address: a scheduler, a proxy, a dashboard); over TLS with `tls`'s
    (a distributed Security's) certificate, which no system trusts."""
    import http.server
    import ssl
    import tempfile
    import threading

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(status_of(self))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    if tls is not None:
        with tempfile.TemporaryDirectory() as d:
            Path(d, "c.pem").write_text(tls.tls_scheduler_cert)
            Path(d, "k.pem").write_text(tls.tls_scheduler_key)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(Path(d, "c.pem"), Path(d, "k.pem"))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"ws://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_ws_url_is_asked_what_answers_there_a_proxy_s_path_taken_a_web_page_refused_at_once():
    """`ws://127.0.0.1:18932/dask/` (a proxy mapping /dask/ to a ws scheduler's /, which Dask's Client reaches) had been
    refused "answers ... at the path / only", and `ws://127.0.0.1:8787/` (the dashboard's port) waited 42 s for
    "cannot connect" (a review). A websocket handshake tells them apart: a ws listener answers 101 and a proxy in front
    of one may answer 101 or 503 (its scheduler starting: left to the Client), a dashboard 200 or a redirect, a server
    without the path 404. A local http.server stands in for each answer (a real ws Scheduler and its dashboard answer
    these, seconds to start)."""
    from ImageQualityTransferLib.apps.batch import scheduler

    answers = {"/": 301, "/status": 200, "/dask/": 101, "/user/me/proxy/8786/": 503}
    with _answering(lambda request: answers.get(request.path.split("?")[0], 404)) as base:
        start = time.monotonic()
        for path in ("/dask/", "/user/me/proxy/8786/?token=x"):
            given = scheduler.check_address(base + path)
            scheduler._reachable(given)
        for path, status in (("/", 301), ("", 301), ("/status", 200)):
            with pytest.raises(batch.IQTError) as err:
                scheduler._reachable(scheduler.check_address(base + path))
            assert str(err.value) == (f"--scheduler {base}{path}: a web page answers there (HTTP {status}), not a Dask "
                                      "scheduler: the address of its dashboard? give the scheduler's, "
                                      "tcp://127.0.0.1:8786 by default (ws://HOST:PORT/ where it was started with "
                                      "--protocol ws)"), err.value
        with pytest.raises(batch.IQTError) as err:
            scheduler._reachable(scheduler.check_address(base + "/dsak/"))
        assert str(err.value) == (f"--scheduler {base}/dsak/: nothing answers at the path /dsak/ there (HTTP 404); "
                                  f"Dask's scheduler answers ws:// at the path / ({base}/), a proxy at the path it maps "
                                  "to it"), err.value
        with pytest.raises(batch.IQTError) as err:  # a proxy's login: the password masked, the suggestion without it
            scheduler._reachable(scheduler.check_address(base.replace("ws://", "ws://user:pw@") + "/dsak/"))
        assert str(err.value).startswith(f"--scheduler {base.replace('ws://', 'ws://user:***@')}/dsak/: nothing answers")
        assert f"at the path / ({base}/)" in str(err.value) and "pw" not in str(err.value), err.value
        assert time.monotonic() - start < scheduler.WS_ANSWER_S  # no probe waited out its timeout (had been 1 s)


def test_a_proxy_refusing_dask_s_websocket_handshake_is_said_at_once():
    """A proxy that answers Dask's own handshake 400 (nginx not passing the Upgrade header on) or 426 had the run wait
    20 s (Dask's Client retries it until its timeout), then say "cannot connect ... start one" (a review): said at
    once, as the line `iqt batch` prints, with no password."""
    from ImageQualityTransferLib.apps.batch import dask_client

    for status in (400, 426):
        with _answering(lambda request: status) as base:
            where = base.replace("ws://", "")
            start = time.monotonic()
            with pytest.raises(batch.IQTError) as err:
                dask_client.start_client(scheduler=f"ws://alice:S3cret@{where}/dask/", wait_workers=1)
            assert time.monotonic() - start < 3, time.monotonic() - start
        assert str(err.value).startswith(f"--scheduler ws://alice:***@{where}/dask/: the server there refuses Dask's "
                                         f"websocket handshake (HTTP {status}): ") and "S3cret" not in str(err.value)


def test_the_ws_probe_is_a_websocket_handshake_with_the_url_s_login():
    """A proxy routing by the Upgrade header (websocket to the scheduler, plain HTTP to a 200 landing page) and a login
    proxy (302 without the Basic login of ws://user:pw@HOST/) both pass Dask's Client but had been refused "a web page
    answers there" by a plain GET (a review): the probe sends a handshake with the login, and 101 is accepted. A 404 at
    `/` itself says nothing there serves a scheduler (it had repeated the refused address as the one to give); no
    message prints the password. http.server stands in for each proxy (a real ws Scheduler takes seconds to start)."""
    import base64

    from ImageQualityTransferLib.apps.batch import scheduler

    login = "Basic " + base64.b64encode(b"user:s3cret").decode()

    def proxy(request):
        handshake = (request.headers.get("Upgrade", "").lower() == "websocket"
                     and "upgrade" in request.headers.get("Connection", "").lower()
                     and request.headers.get("Sec-WebSocket-Version") == "13"
                     and len(base64.b64decode(request.headers.get("Sec-WebSocket-Key", ""))) == 16)
        path = request.path.split("?")[0]
        if path == "/up/":
            return 101 if handshake else 200
        if path == "/login/":
            return 101 if handshake and request.headers.get("Authorization") == login else 302
        return 404

    with _answering(proxy) as base:
        port = int(base.rsplit(":", 1)[1])
        start = time.monotonic()
        for given in (f"{base}/up/", f"ws://user:s3cret@127.0.0.1:{port}/login/"):
            scheduler._reachable(scheduler.check_address(given))
        with pytest.raises(batch.IQTError, match=r"\(HTTP 302\)"):
            scheduler._reachable(scheduler.check_address(f"{base}/login/"))
        for given in (f"{base}/", base, f"ws://user:s3cret@127.0.0.1:{port}/"):
            with pytest.raises(batch.IQTError) as err:
                scheduler._reachable(scheduler.check_address(given))
            assert str(err.value).split(": ", 1)[1] == (f"nothing at 127.0.0.1:{port} serves a Dask scheduler (HTTP 404 "
                                                        "at the path /); give the scheduler's address, "
                                                        "tcp://127.0.0.1:8786 by default"), err.value
        with pytest.raises(batch.IQTError) as err:
            scheduler._reachable(scheduler.check_address(f"ws://user:s3cret@127.0.0.1:{port}/dsak/"))
        assert str(err.value).split(": ", 1)[1] == (f"nothing answers at the path /dsak/ there (HTTP 404); Dask's "
                                                    f"scheduler answers ws:// at the path / ({base}/), a proxy at the "
                                                    "path it maps to it"), err.value
        assert time.monotonic() - start < scheduler.WS_ANSWER_S  # no probe waited out its timeout (had been 1 s)


def test_what_answers_at_a_ws_address_is_said_with_its_path_and_host_as_every_line_masks_them():
    """A 404 or 401 at a ws address whose '@' follows the host (a token holding '/' before a host, a path's '@') had
    quoted its path whole ("nothing answers at the path /SECa@b/c", "give it in the URL, ws://USER:PASSWORD@...
    /SECa@b/c"), and the host and port where the address's line masks them: both as ws_shown's rule writes them."""
    import socket

    from ImageQualityTransferLib.apps.batch import scheduler

    name = socket.gethostname()  # one label, resolving to this machine: ws_shown masks it (it may be a token's start)
    local = "." not in name and socket.gethostbyname(name) == "127.0.0.1"
    for status in (404, 401):
        with _answering(lambda request: status) as base:
            port = base.rpartition(":")[2]
            for given in [f"{base}/SECa@b/c", f"{base}/?SECa@SECb"] + ([f"ws://{name}:{port}/SECa@b/"] if local else []):
                with pytest.raises(batch.IQTError) as err:
                    scheduler._reachable(scheduler.check_address(given))
                line = str(err.value)
                assert line.startswith(f"--scheduler {scheduler.shown(given)}: ") and f"HTTP {status}" in line, line
                assert "SEC" not in line and (given.startswith(base) or f"{name}:{port}" not in line), line


def test_a_404_is_said_at_the_path_the_probe_asked_not_at_the_line_s_masked_one():
    """A query's '@' after host:port/ reads '/***' in the line, and a host the line hides hides its path too: a 404 at
    '/' had been said "nothing answers at the path /*** there", and one at /x/a@b/ behind a hidden host "nothing at
    HOST:PORT serves a Dask scheduler (HTTP 404 at the path /)", sending its owner to a right address's path."""
    import socket

    from ImageQualityTransferLib.apps.batch import scheduler

    name = socket.gethostname()  # one label, resolving to this machine: the line hides it (it may be a token's start)
    local = "." not in name and socket.gethostbyname(name) == "127.0.0.1"
    with _answering(lambda request: 404) as base:
        port = base.rpartition(":")[2]
        with pytest.raises(batch.IQTError) as err:
            scheduler._reachable(scheduler.check_address(f"{base}/?token=SECa@SECb"))
        assert str(err.value) == (f"--scheduler {base}/***: nothing at 127.0.0.1:{port} serves a Dask scheduler (HTTP "
                                  "404 at the path /); give the scheduler's address, tcp://127.0.0.1:8786 by default")
        if local:
            with pytest.raises(batch.IQTError) as err:
                scheduler._reachable(scheduler.check_address(f"ws://{name}:{port}/x/SECa@b/"))
            line = str(err.value)
            assert line.startswith("--scheduler ws://***: nothing answers at its path there (HTTP 404); "), line
            assert "SEC" not in line and name not in line, line


def test_a_login_proxy_s_401_is_said_at_once_as_the_login_refused():
    """A login proxy answering 401 to the handshake (the login Dask's Client sends, refused) had been tried for 20 s,
    then said as "cannot connect (...); start one with 'dask scheduler'" to a user whose scheduler was running (a
    review: ws_cli.log); said at once, the password masked, and where the URL has none, how to give one."""
    from ImageQualityTransferLib.apps.batch import scheduler

    with _answering(lambda request: 401) as base:
        where = base.replace("ws://", "")
        start = time.monotonic()
        with pytest.raises(batch.IQTError) as err:
            scheduler._reachable(scheduler.check_address(f"ws://alice:S3cret@{where}/dask/?token=S3cret"))
        assert str(err.value) == (f"--scheduler ws://alice:***@{where}/dask/?token=***: the server there refused the "
                                  "login (HTTP 401); check the URL's user name and password"), err.value
        with pytest.raises(batch.IQTError) as err:
            scheduler._reachable(scheduler.check_address(f"{base}/dask/"))
        assert str(err.value) == (f"--scheduler {base}/dask/: the server there asks for a login (HTTP 401); give it in "
                                  f"the URL, ws://USER:PASSWORD@{where}/dask/ (a token as ws://TOKEN:@{where}/dask/)")
        assert time.monotonic() - start < scheduler.WS_ANSWER_S  # at once: not Dask's 20 s, nor the probe's timeout


def test_a_dashboard_address_without_a_scheme_is_said_so_through_the_command(tmp_path, capsys):
    """`iqt batch ... --scheduler 127.0.0.1:8787/status` (and node7:8787/status, localhost:8787/) had been told "no such
    scheduler file" (the `/` read as a path) where the docs say the dashboard's address is told so (a review)."""
    for given, host in (("127.0.0.1:8787/status", "127.0.0.1"), ("node7:8787/status", "node7"),
                        ("localhost:8787/", "localhost")):
        code, _, err = run_cli(capsys, "batch", tmp_path / "list.txt", "-o", tmp_path / "o", "--method", "cubic",
                               "--scheduler", given)
        assert code == 2 and err.strip() == (f"iqt: error: --scheduler {given}: the address of the scheduler's dashboard "
                                             "(its web pages), not of the scheduler; give the scheduler's, "
                                             f"tcp://{host}:8786 by default"), err
    code, _, err = run_cli(capsys, "batch", tmp_path / "list.txt", "-o", tmp_path / "o", "--method", "cubic",
                           "--scheduler", "run/scheduler.json")
    assert code == 2 and "no such scheduler file" in err and not (tmp_path / "o").exists()


def test_the_recorded_command_and_options_mask_every_scheduler_password():
    """dataset_description.json's Command (and every header's run record) held `--scheduler ws://alice:S3cret@...`
    whole: only the lock had been masked, and there the last of two --scheduler values only (a review)."""
    import argparse

    from ImageQualityTransferLib.apps.cli import _record

    argv = ["--threads", "1", "batch", "l.txt", "--sched", "ws://alice:OldPw@h:1/", "--scheduler=ws://a:S3cret@h:1/?token=T0k",
            "--method", "cubic"]
    args = argparse.Namespace(command="batch", argv=argv, scheduler="ws://a:S3cret@h:1/?token=T0k", method="cubic")
    record = _record(args)
    assert record["command"] == ("iqt --threads 1 batch l.txt --sched 'ws://alice:***@h:1/' "
                                 "'--scheduler=ws://a:***@h:1/?token=***' --method cubic"), record
    assert record["options"]["scheduler"] == "ws://a:***@h:1/?token=***"


def test_a_wss_probe_sends_the_login_only_to_a_server_whose_certificate_verifies(monkeypatch):
    """The wss:// probe had sent the URL's Basic login to a server with any certificate (an unverified context), where
    Dask's Client fails the TLS check and sends nothing (a review: a self-signed server logged alice:S3cret); it now
    checks the certificate as the Client does, its own credentials (a Security) where Dask's configuration names them."""
    from distributed.security import Security

    from ImageQualityTransferLib.apps.batch import dask_client, scheduler

    sent, security = [], Security.temporary()
    with _answering(lambda request: sent.append(request.headers.get("Authorization")) or 401, tls=security) as base:
        given = f"wss://alice:S3cret@{base.replace('ws://', '')}/"
        with pytest.raises(batch.IQTError) as err:
            dask_client.start_client(scheduler=given, wait_workers=1)
        assert "the server's certificate does not verify, and no login was sent to it" in str(err.value), err.value
        assert sent == [] and "S3cret" not in str(err.value)
        with pytest.raises(batch.IQTError, match=r"refused the login \(HTTP 401\)"):  # its CA trusted: the login goes
            scheduler._reachable(given, security)
        assert sent == ["Basic YWxpY2U6UzNjcmV0"]


def test_a_wss_address_of_a_plain_ws_scheduler_is_told_its_ws_form(monkeypatch):
    """wss:// at a --protocol ws scheduler (which waits for a request, not a TLS hello) had taken 28 s to say "cannot
    connect ... start one with 'dask scheduler'" (a review, against a real one); a plain handshake there, sent without
    the login, answered 101, says to give ws://, the password masked."""
    from ImageQualityTransferLib.apps.batch import scheduler

    monkeypatch.setattr(scheduler, "WS_ANSWER_S", 0.3)
    sent = []
    with _answering(lambda request: sent.append(request.headers.get("Authorization")) or 101) as base:
        where = base.replace("ws://", "")
        with pytest.raises(batch.IQTError) as err:
            scheduler._reachable(f"wss://alice:S3cret@{where}/")
    assert str(err.value) == (f"--scheduler wss://alice:***@{where}/: the scheduler there speaks plain ws://, not TLS "
                              f"(wss://); give ws://alice:***@{where}/") and sent == [None], err.value


def test_scheduler_messages_mask_the_login_not_letters_of_dask_s_words_nor_a_path_s_at_sign(tmp_path, capsys):
    """A password "o" had blanked Dask's "[Errn*** 111] C***nnecti***n refused"; a file's name with an '@'
    (runs@node7/scheduler.json) had been masked as a login; ws://alice:123/secret@h/ (read as host alice, port 123)
    had been echoed whole; ws://u:pw@h:8786/?t=a@b, which Dask's Client reaches, had been refused and its host lost;
    tcp://u@node7:abc had been told "give tcp://node7:abc:8786", tcp://u@::1 "give tcp://::1"; a token in the query
    refused by a 401 had been told to give a login instead (reviews)."""
    from ImageQualityTransferLib.apps.batch import scheduler

    said = "cannot connect to ws://alice:o@127.0.0.1:1/ ([Errno 111] Connection refused)"
    assert scheduler.dask_said(said, "ws://alice:o@127.0.0.1:1/") == (
        "cannot connect to ws://alice:***@127.0.0.1:1/ ([Errno 111] Connection refused)")
    assert scheduler.dask_said("to 127.0.0.1:1 ([Errno 111])", "ws://alice:1@127.0.0.1:1/") == "to 127.0.0.1:1 ([Errno 111])"
    for path in ("runs@node7/scheduler.json", r"C:\Users\bob@corp\sched.json"):
        assert scheduler.shown(path) == path
    helpers.refused_line(capsys, ["batch", tmp_path / "l.txt", "-o", tmp_path / "o", "--scheduler",
                                  "runs@node7/scheduler.json"], "--scheduler runs@node7/scheduler.json: no such")
    assert scheduler.shown("alice:S3cret@node7:8786/x") == "alice:***@node7:8786/x"
    for given, said in (("alice:p/w@node7:8786", "alice:***@node7:8786"), ("alice:p/w@node7", "alice:***@node7"),
                        ("TOKEN/x@node7:8786/", "***@node7:8786/")):  # a '/' in the login: had been echoed whole
        assert scheduler.shown(given) == said
        with pytest.raises(batch.IQTError) as err:  # told as the address it is ("no such scheduler file"; "give
            scheduler.check_address(given)  # tcp://TOKEN:8786", part of the token, had been said of them)
        assert str(err.value) == (f"--scheduler {said}: a tcp:// address holds no user name (user@); give "
                                  "tcp://node7:8786"), err.value
    assert scheduler.shown("ws://alice:123/secret@proxy.example/") == "ws://***"  # apps/batch/ws_shown.py's rule
    assert scheduler.check_address("ws://u:pw@h:8786/?t=a@b") == "ws://u:pw@h:8786/?t=a@b"
    assert scheduler.shown("ws://u:pw@h:8786/?t=a@b") == "ws://***@h:8786/***"
    assert scheduler.shown("ws://u:pw@h.example.org:8786/?t=a@b") == "ws://***@h.example.org:8786/***"
    for given, give in (("tcp://u@node7:abc", "give tcp://HOST:PORT, no user@"), ("tcp://u@::1", "give tcp://[::1]:8786")):
        with pytest.raises(batch.IQTError) as err:
            scheduler.check_address(given)
        assert str(err.value).endswith(f"holds no user name (user@); {give}"), err.value
    with _answering(lambda request: 401) as base:
        with pytest.raises(batch.IQTError) as err:
            scheduler._reachable(f"{base}/?token=S3cret")
    assert str(err.value) == (f"--scheduler {base}/?token=***: the server there refused the token in the URL's query "
                              "(HTTP 401); check it"), err.value


def test_scheduler_login_before_an_ipv6_host_or_a_bare_host_is_masked():
    """alice:p/w@[::1]:8786 and alice:p/w@::1 had been taken for file names and echoed whole, TOKEN/x@node7 (no port)
    too (a review): each is told as the address it is, its login masked."""
    from ImageQualityTransferLib.apps.batch import scheduler

    for given, said, give in (("alice:p/w@[::1]:8786", "alice:***@[::1]:8786", "tcp://[::1]:8786"),
                              ("alice:p/w@::1", "alice:***@::1", "tcp://[::1]:8786"),
                              ("TOKEN/x@node7", "***@node7", "tcp://node7:8786")):
        assert not scheduler._a_path(given) and scheduler.shown(given) == said  # told as an address, not a file
        with pytest.raises(batch.IQTError) as err:
            scheduler.check_address(given)
        assert str(err.value) == f"--scheduler {said}: a tcp:// address holds no user name (user@); give {give}", err.value
    assert scheduler.shown("runs@node7/scheduler.json") == "runs@node7/scheduler.json"  # still a file's name
    assert scheduler.shown("runs/x@v2.json") == "runs/x@v2.json"


def test_a_scheduler_file_to_come_in_an_existing_folder_is_a_file(tmp_path, monkeypatch):
    """runs/sched@node7, a scheduler file not yet written in the folder runs/, had been told 'a tcp:// address holds no
    user name' once TOKEN/x@node7 was read as an address (a review): in an existing folder it is a file's name."""
    from ImageQualityTransferLib.apps.batch import scheduler

    monkeypatch.chdir(tmp_path)
    assert not scheduler._a_path("runs/sched@node7")  # no folder runs/: a token holding a '/', as above
    (tmp_path / "runs").mkdir()
    assert scheduler._a_path("runs/sched@node7") and scheduler.shown("runs/sched@node7") == "runs/sched@node7"
    assert scheduler._a_path(f"{tmp_path}/sched@node7") and not scheduler._a_path("TOKEN/x@node7")


def test_scheduler_at_sign_after_a_slash_and_host_port_is_told_without_a_suggestion():
    """tcp://alice:123/w@node7:8786 (a password typed with a '/') had been told "give tcp://alice:123", its user name
    and part of its password, and node7:8786/a@b (no scheme) "give tcp://b:8786" (a review): where an '@' follows a
    '/' after host:port, either side may be a login, so the line gives the accepted forms only, with or without a
    scheme; a login holding a '/' before a host (alice:p/w@node7:8786) is still told its host."""
    from ImageQualityTransferLib.apps.batch import scheduler

    for given in ("tcp://alice:123/w@node7:8786", "alice:123/w@node7:8786", "tcp://node7:8786/a@b", "node7:8786/a@b",
                  "tcp://[::1]:8786/a@b", "tls://alice:123/w@node7:8786", "tcp://alice:8787/w@node7:8786"):
        with pytest.raises(batch.IQTError) as err:
            scheduler.check_address(given)
        proto = given.partition("://")[0] if "://" in given else "tcp"
        assert str(err.value) == (f"--scheduler {scheduler.shown(given)}: an '@' after a '/', a path's or a password's "
                                  f"holding a '/': {proto}:// addresses take neither; give {scheduler.ADDRESS_FORMS}"), err.value
    with pytest.raises(batch.IQTError) as err:
        scheduler.check_address("alice:p/w@node7:8786")
    assert str(err.value).endswith("holds no user name (user@); give tcp://node7:8786"), err.value
