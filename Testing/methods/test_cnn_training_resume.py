"""A finished CNN training resumed from its checkpoint with a larger --epochs goes on to the new --epochs (it
trained no epoch and exited 0)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ImageQualityTransferLib.methods.cnn import training  # noqa: E402

from helpers import synthetic_items  # noqa: E402

KW = dict(method="espcn", iters_per_epoch=6, batch_size=4, patch=6, val_patches=4, patience=10, progress=False,
          threads=1)


@pytest.mark.slow
def test_a_finished_run_resumed_with_more_epochs_trains_them_as_one_run_would(tmp_path):
    ck = tmp_path / "run.ckpt"
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:  # threads=1 holds for the training only: a Slicer session or script that trains goes on with its own
        net_whole, _, whole = training.train(synthetic_items(), seed=3, epochs=4, **KW)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    training.train(synthetic_items(), seed=3, epochs=2, checkpoint=ck, **KW)
    assert torch.load(str(ck), weights_only=True)["phase_finished"]
    lines = []
    net, meta, resumed = training.train(synthetic_items(), seed=3, epochs=4, checkpoint=ck, log=lines.append, **KW)
    assert lines[0] == f"resuming from {ck} after epoch 2, on to --epochs 4", lines
    assert [h["epoch"] for h in resumed] == [1, 2, 3, 4] and meta["training"]["epochs_run"] == 4
    assert [h["val_loss"] for h in resumed] == [h["val_loss"] for h in whole]  # as if run to 4 epochs at once
    for a, b in zip(net.state_dict().values(), net_whole.state_dict().values()):
        assert torch.equal(a, b)
    lines = []  # the same --epochs again: nothing to train, and said so
    _, _, again = training.train(synthetic_items(), seed=3, epochs=4, checkpoint=ck, log=lines.append, **KW)
    assert len(again) == 4 and "the checkpoint's run had already ended (epochs, after epoch 4)" in lines[1], lines


FAST = dict(iters_per_epoch=3, batch_size=4, patch=6, val_patches=4, patience=10, progress=False, threads=1)


def test_a_two_phase_run_resumed_with_more_epochs_keeps_its_warm_up_and_says_so(tmp_path):
    """A finished two-phase run (warm-up, then heteroscedastic) resumed with a larger --epochs trains its last phase on
    to what --epochs gives it, its warm-up kept as it ran: 2+2 resumed with --epochs 8 trains 2+5 = 7 epochs, where a
    run given 8 at once trains 3+5. The log said 'on to --epochs 8' (review); it says this, and the sidecar records
    the epochs run per phase and at most."""
    ck = tmp_path / "run.ckpt"
    training.train(synthetic_items(), seed=3, method="espcn-hetero-var1", epochs=4, checkpoint=ck, **FAST)
    lines = []
    _, meta, hist = training.train(synthetic_items(), seed=3, method="espcn-hetero-var1", epochs=8, checkpoint=ck,
                                   log=lines.append, **FAST)
    assert lines[0] == (f"resuming from {ck} after epoch 4: its finished hetero-warmup-mse phase is kept as it ran (2 "
                        "epochs; a run given --epochs 8 at once gives it 3); the hetero phase trains on to 5 epochs, "
                        "to epoch 7 at most"), lines
    t = meta["training"]
    assert [h["phase"] for h in hist] == ["hetero-warmup-mse"] * 2 + ["hetero"] * 5
    assert (t["epochs_run"], t["epochs_max"], t["epochs_given"]) == (7, 7, 8)
    assert t["epochs_per_phase"] == {"hetero-warmup-mse": 2, "hetero": 5}


class _Interrupted(Exception):
    pass


def test_resumed_with_fewer_epochs_than_done_trains_none_says_so_and_records_what_ran(tmp_path):
    """--epochs below the epochs a checkpoint has: a finished 4-epoch run resumed with --epochs 2 recorded epochs_max 2
    with epochs_run 4, and one interrupted after epoch 3 of 5 resumed with --epochs 2 trained nothing without a word
    (review); now one log line, and the sidecar's epochs_max is what the run reached."""
    ck = tmp_path / "done.ckpt"
    training.train(synthetic_items(), seed=3, epochs=4, checkpoint=ck, **FAST)
    _, meta, _ = training.train(synthetic_items(), seed=3, epochs=2, checkpoint=ck, **FAST)
    t = meta["training"]
    assert (t["epochs_run"], t["epochs_max"], t["epochs_given"]) == (4, 4, 2)

    def interrupt_at_epoch_4(line):
        if line.startswith("epoch 4 "):  # logged before its checkpoint is saved: the checkpoint holds 3 epochs
            raise _Interrupted

    ck = tmp_path / "cut.ckpt"
    with pytest.raises(_Interrupted):
        training.train(synthetic_items(), seed=3, epochs=5, checkpoint=ck, log=interrupt_at_epoch_4, **FAST)
    lines = []
    _, meta, hist = training.train(synthetic_items(), seed=3, epochs=2, checkpoint=ck, log=lines.append, **FAST)
    assert lines == [f"resuming from {ck} after epoch 3: its mse phase has 3 epochs already, more than the 2 --epochs 2 "
                     "gives it: no epoch to train; its best weights are written"], lines
    t = meta["training"]
    assert len(hist) == 3 and (t["epochs_run"], t["epochs_max"], t["epochs_given"]) == (3, 3, 2)
    assert t["epochs_per_phase"] == {"mse": 3}


def test_a_two_phase_run_stopped_as_its_warm_up_ended_resumes_as_one_run_would(tmp_path):
    """A training audit: espcn-hetero stopped once its warm-up's last epoch was saved could not be resumed (the
    checkpoint's optimiser, the mean network's, was loaded into the heteroscedastic phase's: 'a damaged or foreign
    training checkpoint'); now the next phase starts afresh, as in one run, and ends with the same weights."""
    net_whole, _, whole = training.train(synthetic_items(), seed=3, method="espcn-hetero", epochs=4, **FAST)

    def interrupt_at_epoch_3(line):
        if line.startswith("epoch 3 "):  # the first hetero epoch: the checkpoint holds the 2 warm-up epochs
            raise _Interrupted

    ck = tmp_path / "warm.ckpt"
    with pytest.raises(_Interrupted):
        training.train(synthetic_items(), seed=3, method="espcn-hetero", epochs=4, checkpoint=ck,
                       log=interrupt_at_epoch_3, **FAST)
    saved = torch.load(str(ck), weights_only=True)
    assert (saved["phase_index"], saved["phase_finished"]) == (0, True)
    net, _, resumed = training.train(synthetic_items(), seed=3, method="espcn-hetero", epochs=4, checkpoint=ck, **FAST)
    assert [h["val_loss"] for h in resumed] == [h["val_loss"] for h in whole]
    for a, b in zip(net.state_dict().values(), net_whole.state_dict().values()):
        assert torch.equal(a, b)


def test_a_checkpoint_resumed_on_another_thread_count_says_so_and_records_both(tmp_path):
    """A CPU training's sums depend on its thread count: one resumed on 2 threads from a 1-thread checkpoint had
    recorded 2 alone, and the command its record gave trained other weights (a cohort audit). Said, and recorded."""
    ck = tmp_path / "run.ckpt"
    kw = {**FAST, "method": "espcn"}
    training.train(synthetic_items(), seed=1, epochs=1, checkpoint=ck, **kw)
    assert torch.load(str(ck), weights_only=True)["threads"] == 1
    lines = []
    _, meta, _ = training.train(synthetic_items(), seed=1, epochs=2, checkpoint=ck, log=lines.append,
                                **{**kw, "threads": 2})
    said = [line for line in lines if "trained on 1 CPU thread and this run has 2" in line]
    assert len(said) == 1 and "--threads 1" in said[0], lines
    assert meta["training"]["threads"]["torch"] == 2 and meta["training"]["threads_before_resume"] == 1
    lines = []
    training.train(synthetic_items(), seed=1, epochs=3, checkpoint=ck, log=lines.append, **{**kw, "threads": 2})
    assert not any("CPU thread" in line for line in lines), lines  # the count it was written on: nothing to say



def test_a_checkpoint_resumed_on_another_thread_count_warns_without_a_log(tmp_path):
    """Without -v (no log) the thread count's note had not been said at all: a warning line now, where an epoch is left
    to train."""
    from ImageQualityTransferLib.core.errors import IQTWarning

    ck = tmp_path / "run.ckpt"
    kw = {**FAST, "method": "espcn"}
    training.train(synthetic_items(), seed=1, epochs=1, checkpoint=ck, **kw)
    with pytest.warns(IQTWarning, match="trained on 1 CPU thread and this run has 2"):
        training.train(synthetic_items(), seed=1, epochs=2, checkpoint=ck, **{**kw, "threads": 2})
