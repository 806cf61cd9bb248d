"""`iqt train`'s summary says what its figure is: it read 'best validation loss 0.8578' (espcn, normalised MSE)
beside 0.0701 (espcn-hetero, Gaussian NLL) with no unit, and a forest's said nothing of validation."""

from __future__ import annotations

from types import SimpleNamespace

from ImageQualityTransferLib import methods


def _trained(name: str, training: dict):
    m = methods.get(name)
    m._loaded[(2, 2, 2)] = SimpleNamespace(meta={"training": training},
                                           forest=None)  # what `fit` leaves for `summary`
    return m


def _cnn(phases: dict) -> dict:
    return {"epochs_run": sum(phases.values()), "stopped_by": "epochs", "best_val_loss": 0.0701, "minutes": 1.0,
            "data_preparation_seconds": 5.0, "epochs_per_phase": phases, "options": {"val_fraction": 0.15}}


def test_a_cnn_summary_names_its_loss_and_that_it_is_optimistic():
    mse = _trained("espcn", _cnn({"mse": 3})).summary(2)
    nll = _trained("espcn-hetero", _cnn({"hetero-warmup-mse": 1, "hetero": 2})).summary(2)
    assert "mean squared error" in mse and "log-likelihood" not in mse
    assert "Gaussian negative log-likelihood" in nll
    for text in (mse, nll):
        assert "held-out slab (15%) of the training subjects" in text and "optimistic" in text
        assert "not comparable across methods" in text


def test_a_forest_summary_says_it_has_no_validation_figure():
    text = _trained("global-linear", {"examples": 42774}).summary(2)
    assert text.startswith("42774 examples") and "no validation figure" in text


def test_one_epoch_is_said_in_the_singular():
    """'1 epochs (stopped by: epochs)' after `iqt train --epochs 1` (a newcomer's audit)."""
    assert _trained("espcn", _cnn({"mse": 1})).summary(2).startswith("1 epoch (stopped by")
    assert _trained("espcn", _cnn({"mse": 3})).summary(2).startswith("3 epochs (stopped by")
