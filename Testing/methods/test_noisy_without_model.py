"""A method with no model trained with added noise, on an input noisy enough that the others switch to theirs, says so
in one warning line naming those that would (README, Noisy scans)."""

from __future__ import annotations

import warnings

import pytest

from ImageQualityTransferLib import methods
from ImageQualityTransferLib.core import noise_level


@pytest.mark.realdata
def test_a_method_without_a_noisy_model_says_which_methods_have_one(sagittal_subject):
    """At x3, where the forests have a noise-trained model and the CNNs none (at x2 every learned method has one since
    stop 54), on the sagittal dev scan with noise at SNR 20 (noise index 0.082)."""
    from ImageQualityTransferLib.dmri import degrade as deg, randomise

    s = sagittal_subject
    noisy = deg.degrade(s.dwi, s.mask.data, 3, style="tight", noise=randomise.rician(20, 0))
    index = noise_level.noise_index(noisy.tensor.data, noisy.mask.data)
    assert noise_level.NOISY_MODEL < index < noise_level.NOISY_INPUT, index
    with_twin = {n for n in methods.ready(3) if methods.method_class(n).learned and methods.get(n).for_noisy_inputs((3, 3, 3))}
    without = [n for n in methods.ready(3) if methods.method_class(n).learned and n not in with_twin]
    assert without and with_twin, f"the shipped x3 models no longer make this case: with a noisy model {sorted(with_twin)}"
    name = without[0]
    method = methods.get(name, samples=0) if methods.method_class(name).takes_samples else methods.get(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        method.predict(noisy.tensor, 3, noisy.mask)
    said = [str(w.message) for w in caught if "noisier than clean scans" in str(w.message)]
    assert len(said) == 1, said
    assert f"{name} has no model trained with added noise for factor 3" in said[0], said
    assert all(other in said[0] for other in with_twin), said
