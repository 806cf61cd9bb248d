"""Data-parallel CNN training: 2 real gloo processes against 1 with the same global batch, none of them listening beyond
the loopback, and checkpoints that a training started again continues from."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ImageQualityTransferLib.apps import cli  # noqa: E402
from ImageQualityTransferLib.methods.cnn import distributed, training  # noqa: E402

from helpers import synthetic_items  # noqa: E402

KW = dict(method="espcn", epochs=4, iters_per_epoch=12, batch_size=4, patch=6, val_patches=4, patience=10, progress=False)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """This process's trainings on one torch thread (restored after), as the spawned ranks run with threads=1: on a busy
    machine (2 xdist workers on 2 cores) the default thread per core spends more CPU waiting in OpenMP's barriers than
    these tiny networks compute. Each comparison here is between runs of this same setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train_and_record(out, seed, checkpoint=None, threads_out=None, listeners_out=None, then_rank_1_fails=False):
    """One rank's training on the synthetic items; rank 0 writes its history and metadata to `out` (and, first, its
    CPU threads to `threads_out` and every rank's listening sockets to `listeners_out`). With `then_rank_1_fails`,
    once rank 0 has written them, rank 1 refuses its input (fail_on_rank_1) while rank 0 would work on."""
    if threads_out is not None:
        record_threads(threads_out)
    if listeners_out is not None:
        record_listeners(listeners_out)
    net, meta, hist = training.train(synthetic_items(), seed=seed, checkpoint=checkpoint, **KW)
    if distributed.rank_and_world()[0] == 0:
        with open(out, "w") as f:
            json.dump({"val": [h["val_loss"] for h in hist], "training": meta["training"]}, f, default=str)
    if then_rank_1_fails:
        import torch.distributed as dist

        dist.barrier()  # rank 0's files are written
        fail_on_rank_1()


@pytest.fixture(scope="module")
def one_process_seed_3():
    """One process's training with seed 3 (net, metadata, history): the reference of the two-process test and the
    uninterrupted run of the checkpoint test without weight averaging (ema 0.0 is train's default)."""
    return training.train(synthetic_items(), seed=3, **KW)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """One 2-process gloo training with seed 3 and 1 thread each, after which rank 1 fails (its folder: two.json,
    threads.json, listeners.json, ddp.ckpt; failed.json, what spawn raised and what reached stderr and the log; and
    tmp/, where the processes' meeting folder was made), which the loss, thread-cap, loopback and failed-process tests
    read: starting the processes is most of each test's time."""
    import contextlib
    import io
    import logging

    from ImageQualityTransferLib.core.errors import IQTError

    folder = tmp_path_factory.mktemp("ddp")
    (folder / "tmp").mkdir()
    records, said, raised = [], io.StringIO(), None
    keep = logging.Handler()  # on torch's spawn logger itself: "torch" propagates nothing to the root logger
    keep.emit = lambda record: records.append(record.getMessage())
    spawn_log = logging.getLogger("torch.multiprocessing.spawn")
    saved = os.dup(2)
    try:
        with open(folder / "stderr.txt", "w") as fd2, contextlib.redirect_stderr(said), \
                pytest.MonkeyPatch.context() as mp:  # stderr and the log as capfd and caplog read them
            os.dup2(fd2.fileno(), 2)
            spawn_log.addHandler(keep)
            mp.setattr(tempfile, "tempdir", str(folder / "tmp"))  # where spawn makes the meeting folder
            try:
                distributed.spawn(train_and_record, 2, str(folder / "two.json"), 3, str(folder / "ddp.ckpt"),
                                  str(folder / "threads.json"), str(folder / "listeners.json"), True, threads=1)
            except IQTError as exc:
                raised = str(exc)
    finally:
        spawn_log.removeHandler(keep)
        os.dup2(saved, 2)
        os.close(saved)
    err = said.getvalue() + (folder / "stderr.txt").read_text()
    (folder / "failed.json").write_text(json.dumps({"raised": raised, "stderr": err, "records": records}))
    return folder


@pytest.mark.slow
def test_two_gloo_processes_reach_the_loss_of_one_with_the_same_global_batch(tmp_path, two_processes,
                                                                            one_process_seed_3):
    """Noise: one process with seeds 3, 4, 5 ended these 4 epochs at validation losses 0.322, 0.344, 0.352 (two
    processes with seeds 3 and 4: 0.330, 0.332); two processes must land within 0.05 of one with the same seed."""
    one = [h["val_loss"] for h in one_process_seed_3[2]]
    ck = two_processes / "ddp.ckpt"
    two = json.loads((two_processes / "two.json").read_text())
    assert two["training"]["processes"] == 2 and two["training"]["resumed_after_epoch"] is None
    assert two["val"][-1] < two["val"][0]
    assert abs(min(two["val"]) - min(one)) <= 0.05, (two["val"], one)
    saved = torch.load(str(ck), weights_only=True)  # every rank's random streams, for a resumed 2-process run
    assert saved["processes"] == 2 and saved["epoch"] == 4 and len(saved["rng"]) == 2
    assert saved["rng"][0]["sampler"] != saved["rng"][1]["sampler"]
    # resumed by one process (researcher audit: accepted in silence, the model's record naming one process only)
    lines = []
    ck = shutil.copy(ck, tmp_path / "ddp.ckpt")  # the shared run's own stays as the processes left it
    meta = training.train(synthetic_items(), seed=3, checkpoint=str(ck), log=lines.append, **{**KW, "epochs": 5})[1]
    assert any("written by 2 processes and this run has 1" in line for line in lines), lines
    assert meta["training"]["processes"] == 1 and meta["training"]["processes_before_resume"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_an_interrupted_training_continues_from_its_checkpoint(tmp_path, ema, one_process_seed_3):
    kw = dict(KW, ema=ema)  # with weight averaging the average is saved and resumed too
    items = synthetic_items()
    net_whole, _, whole = one_process_seed_3 if ema == 0.0 else training.train(items, seed=3, **kw)
    ck = tmp_path / "run.ckpt"

    def stop_in_epoch_3(msg):
        if msg.startswith("epoch 3 "):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(synthetic_items(), seed=3, checkpoint=ck, log=stop_in_epoch_3, **kw)
    assert torch.load(str(ck), weights_only=True)["epoch"] == 2
    lines = []
    net, meta, resumed = training.train(synthetic_items(), seed=3, checkpoint=ck, log=lines.append, **kw)
    assert lines[0].startswith(f"resuming from {ck} after epoch 2") and lines[1].startswith("epoch 3 ")
    assert meta["training"]["resumed_after_epoch"] == 2 and meta["training"]["epochs_run"] == 4
    assert [h["val_loss"] for h in resumed] == [h["val_loss"] for h in whole]  # as if never interrupted
    for a, b in zip(net.state_dict().values(), net_whole.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(Exception, match="checkpoint of espcn at factor 2 with seed 3"):
        training.train(synthetic_items(), seed=4, checkpoint=ck, **kw)
    with pytest.raises(Exception, match="a checkpoint trained with --input-unit md-mode"):  # weights in another unit
        training.train(synthetic_items(), seed=3, checkpoint=ck, **dict(kw, subject_scale=False))
    # other subjects or options: refused, not trained on under the checkpoint's name
    with pytest.raises(Exception, match=r"a checkpoint of another training \(subjects s0, s1, s2 \(in that order\)\)"):
        training.train(synthetic_items(n=2), seed=3, checkpoint=ck, **kw)
    with pytest.raises(Exception, match=r"a checkpoint of another training \(noise_fraction 0.0\)"):
        training.train(synthetic_items(), seed=3, checkpoint=ck, **dict(kw, noise_fraction=0.5))


def test_train_refuses_nproc_for_methods_without_a_network(tmp_path, capsys):
    subj = tmp_path / "s"
    subj.mkdir()
    (subj / "dwi.nii.gz").write_bytes(b"")
    code = cli.main(["train", "--method", "rf", "--subjects", str(subj), "-o", str(tmp_path / "m.npz"), "--nproc", "2"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("iqt: error: --nproc applies to the CNN methods, not 'rf'; drop it")  # only it
    code = cli.main(["train", "--method", "rf", "--subjects", str(subj), "-o", str(tmp_path / "m.npz"), "--nproc", "2",
                     "--checkpoint", str(tmp_path / "c.pt")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("iqt: error: --nproc and --checkpoint apply to the CNN methods")


def test_train_device_cuda_is_refused_up_front_without_a_gpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    subj = tmp_path / "s"
    subj.mkdir()
    (subj / "dwi.nii.gz").write_bytes(b"")
    code = cli.main(["train", "--method", "espcn", "--subjects", str(subj), "-o", str(tmp_path / "m.pt"), "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and "no CUDA device" in err and len(err.strip().splitlines()) == 1


def test_a_checkpoint_path_is_neither_an_input_nor_the_model(tmp_path, capsys):
    """--checkpoint naming a subject's DWI or the model output is refused before any work (the model replaced the
    checkpoint, and the rerun failed; a DWI was read as a damaged checkpoint with the advice to delete it);
    a file that is no checkpoint is said so without PyTorch's advice to load it unsafely."""
    subj = tmp_path / "s"
    subj.mkdir()
    for name in ("dwi.nii.gz", "dwi.bval", "dwi.bvec"):
        (subj / name).write_bytes(b"")
    base = ["train", "--method", "espcn", "--subjects", str(subj), "-o", str(tmp_path / "m.pt")]
    for ck, words in ((subj / "dwi.nii.gz", "is an input of this run"), (tmp_path / "m.pt", "would be written twice")):
        code = cli.main([*base, "--checkpoint", str(ck)])
        err = capsys.readouterr().err
        assert code == 2 and words in err and err.count("\n") == 1, err
    assert (subj / "dwi.nii.gz").read_bytes() == b"" and not (tmp_path / "m.pt").exists()
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(Exception, match="not a training checkpoint this tool can read") as said:
        training.load_checkpoint(tmp_path / "notes.txt", "espcn", 2, 0)
    assert "weights_only" not in str(said.value) and "unsafe" not in str(said.value).lower()


def record_threads(out):
    """One rank's CPU threads as a training records them; rank 0 writes them to `out`."""
    from ImageQualityTransferLib.core.threads import thread_record

    if distributed.rank_and_world()[0] == 0:
        with open(out, "w") as f:
            json.dump(thread_record(torch=True), f)


@pytest.mark.parametrize("where", ["before", "after"])
def test_nproc_takes_threads_given_before_the_command_or_after(tmp_path, capsys, monkeypatch, small_subject, where):
    """'iqt --threads N train --nproc M' gave the processes the default thread count, not N: its weights differed from
    'iqt train --threads N --nproc M' (researcher audit, stop 57)."""
    seen = []
    monkeypatch.setattr(distributed, "spawn", lambda fn, nproc, *a, threads=None, **_: seen.append((nproc, threads)))
    argv = ["train", "--method", "espcn", "--subjects", str(small_subject), "-o", str(tmp_path / "m.pt"), "--epochs", "1",
            "--nproc", "2"]
    argv = ["--threads", "1", *argv] if where == "before" else [*argv, "--threads", "1"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert seen == [(2, 1)]


@pytest.mark.slow
def test_the_processes_hold_the_thread_cap_for_blas_and_torch(two_processes):
    got = json.loads((two_processes / "threads.json").read_text())  # recorded before the training
    assert got["torch"] == 1 and got["blas"] == 1, got


def _listening() -> list[str]:
    """This process's listening TCP sockets as 'address:port' (Linux /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                found.append(cols[1])
    return found


def record_listeners(out):
    """Every rank's listening sockets once the group has met (before the training); rank 0 writes them to `out`
    (none where /proc cannot be read: the test that reads them runs on Linux only)."""
    import torch.distributed as dist

    here = _listening() if os.path.isdir("/proc/self/fd") else []
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, here)
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(gathered))


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1 as /proc/net writes them


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the listening sockets from Linux's /proc")
def test_no_training_process_listens_beyond_the_loopback(two_processes):  # unmarked, as it was: the quick loop keeps it
    """`iqt train --nproc N`: the training processes meet through a file in a private folder, so none listens on a
    network interface (the TCP store of rank 0 listened on every interface, *:port, for the whole training); gloo's
    own connections between them stay on the loopback."""
    listeners = json.loads((two_processes / "listeners.json").read_text())
    assert len(listeners) == 2
    beyond = [a for rank in listeners for a in rank if a.split(":")[0] not in LOOPBACK]
    assert not beyond, listeners
    assert not list((two_processes / "tmp").iterdir())  # the meeting folder is gone with the processes


def fail_on_rank_1():
    """Rank 1 refuses its input at once; rank 0 would work on."""
    import time

    from ImageQualityTransferLib.core.errors import IQTError

    if distributed.rank_and_world()[0] == 1:
        raise IQTError("a damaged subject")
    time.sleep(60)


@pytest.mark.slow
def test_a_failed_process_gives_the_commands_line_alone(two_processes):
    """Researcher audit: `iqt train --nproc 2` with a damaged subject printed PyTorch's "Terminating process N via
    signal SIGTERM" before its own one line; the other process is still stopped, and the error is the command's.
    Rank 1 of the module's 2-process run fails once the training is done, rank 0 still running (two_processes)."""
    failed = json.loads((two_processes / "failed.json").read_text())
    assert failed["raised"] == "a damaged subject", failed  # spawn raised the command's IQTError with rank 1's line
    assert "Terminating process" not in failed["stderr"], failed["stderr"]
    assert not [r for r in failed["records"] if "Terminating process" in r]


def test_a_killed_process_says_what_to_do(monkeypatch):
    """A researcher's scale-out audit: rank 1 of 'iqt train --nproc 2' killed with SIGKILL ended in "a training process
    died (process 1 terminated with signal SIGKILL); see its messages above", where a killed process leaves none and
    nothing said what to do. torch's own exception for it, raised from a stubbed start (real processes took ~4 s)."""
    import types

    import torch.multiprocessing as mp

    from ImageQualityTransferLib.core.errors import IQTError

    def killed(*_a, **_k):
        raise mp.ProcessExitedException("process 1 terminated with signal SIGKILL", error_index=1, error_pid=1,
                                        exit_code=-9, signal_name="SIGKILL")

    proc = types.SimpleNamespace(exitcode=-9, is_alive=lambda: False, join=lambda: None)
    context = types.SimpleNamespace(join=killed, processes=[proc, proc], error_files=[])
    monkeypatch.setattr(mp, "start_processes", lambda *a, **k: context)
    with pytest.raises(IQTError) as caught:
        distributed.spawn(print, 2, threads=1)
    said = str(caught.value)
    assert "SIGKILL" in said and "out of memory" in said and said.endswith("; run the same command again"), said
    assert "messages above" not in said, said


def test_the_killed_message_says_fewer_nproc_and_no_resume_of_a_run_that_saved_nothing(tmp_path, capsys, monkeypatch,
                                                                                         small_subject):
    """Without --checkpoint it had read "run the same command again (with --checkpoint CKPT a run resumed so continues
    after its last saved epoch)": garbled, and against the "fewer --nproc" just before it; then "(with --checkpoint CKPT
    it continues ...)", read as resuming the killed run, which saved nothing, and with --checkpoint "run the same
    command again, which continues after the checkpoint's last saved epoch" where none was saved, at the --nproc the
    system had just killed (reviews)."""
    seen = []
    monkeypatch.setattr(distributed, "spawn", lambda fn, nproc, *a, again="", **_: seen.append(again))
    argv = ["train", "--method", "espcn", "--subjects", str(small_subject), "-o", str(tmp_path / "m.pt"), "--epochs", "1",
            "--nproc", "2", "--threads", "1"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert cli.main([*argv, "--checkpoint", str(tmp_path / "ck.pt")]) == 0, capsys.readouterr().err
    assert seen == ["run it again with fewer --nproc (a run with --checkpoint continues from its last saved epoch)",
                    f"run it again with fewer --nproc (with --checkpoint {tmp_path / 'ck.pt'} it continues after the "
                    "last epoch saved there, if one was)"]


def test_the_default_threads_share_the_cpus_this_process_may_run_on(monkeypatch, capsys):
    """A cluster job given 4 of 64 cores recorded --threads 32 under --nproc 2: os.cpu_count, not the CPUs it may run
    on: default_threads is checked against a 4-CPU affinity on a 64-core count, and --help says --threads is each
    process's under --nproc."""
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
    assert distributed.default_threads(2) == 2 and distributed.default_threads(8) == 1
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "under --nproc, each process's" in " ".join(capsys.readouterr().out.split())
