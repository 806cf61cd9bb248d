"""The uncertainty maps' calibration on a noisy real scan: issue 13's target, the share of element errors within ±2σ
between 0.85 and 0.99, for the methods whose σ a clinician reads on noisy clinical scans (docs/accuracy.md, "Sigma on
noisy inputs")."""

from __future__ import annotations

import warnings

import pytest

from ImageQualityTransferLib import methods
from ImageQualityTransferLib.analysis import evaluation
from ImageQualityTransferLib.core import noise_level
from ImageQualityTransferLib.dmri.subject import make_case


@pytest.fixture(scope="module")
def snr5_cases(axial_subject):
    """The 3 mm dev scan's inputs with Rician noise at b0 SNR 5 (`iqt degrade --snr 5`, seed 0), by factors, made once
    each: the dev scan whose noisy shares read lowest (docs/measurements.md, "Sigma of espcn-hetero in thick
    slices")."""
    made = {}
    return lambda f: made.setdefault(f, make_case(axial_subject, f, style="own", snr=5.0, seed=0))


@pytest.mark.slow
@pytest.mark.parametrize("name, factor", [("rf", (2, 2, 2)), ("espcn-hetero", (2, 2, 2)), ("biqt", (2, 2, 2)),
                                          ("espcn-hetero", (1, 1, 2))],
                         ids=["rf-x2", "espcn-hetero-x2", "biqt-x2", "espcn-hetero-x1,1,2"])
def test_sigma_on_a_noisy_dev_scan_holds_its_errors_within_two_sigma(snr5_cases, name, factor):
    """rf, espcn-hetero and biqt run their noise-trained models there; the whole brain's share within ±2σ stays in
    0.85-0.99. espcn-hetero's at x1,1,2 had been 0.811, its σ not scaled for the noise (NOISY_STD_SCALE); biqt's
    without its factor reads 0.771 at x2."""
    case = snr5_cases(factor)
    assert noise_level.noise_index(case.lr.data, case.lr_mask.data) > noise_level.NOISY_MODEL  # the case: noisy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the noise line, said and checked in test_noise_training_range.py
        pred = methods.get(name).predict(case.lr, case.factor, case.lr_mask)
    assert pred.tensor.meta.get("model_for") == "noisy", pred.tensor.meta.get("model_for")
    scores = evaluation.evaluate(pred.tensor.data, case.truth, case.hr_mask, case.lr_mask.data, case.factor,
                                 uncertainty=pred.std.data)
    share = scores["brain"]["within_2sigma"]
    assert 0.85 <= share <= 0.99, (name, case.factor, share)
