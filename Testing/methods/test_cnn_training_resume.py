"""A finished CNN training resumed from its checkpoint with a larger --epochs goes on to the new --epochs (audit C:
it trained no epoch and exited 0)."""

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
    net_whole, _, whole = training.train(synthetic_items(), seed=3, epochs=4, **KW)
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
