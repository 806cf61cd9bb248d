"""A method with no model trained with added noise, on an input noisy enough that the others switch to theirs, says so
in one warning line naming those that would (README, Noisy scans)."""

from __future__ import annotations

import warnings

import pytest

from ImageQualityTransferLib import methods
from ImageQualityTransferLib.core import tensors


@pytest.mark.realdata
def test_a_method_without_a_noisy_model_says_which_methods_have_one(axial_subject):
    from ImageQualityTransferLib.dmri import degrade as deg, randomise

    s = axial_subject
    noisy = deg.degrade(s.dwi, s.mask.data, 2, style="tight", noise=randomise.rician(20, 0))
    index = tensors.noise_index(noisy.tensor.data, noisy.mask.data)
    assert tensors.NOISY_MODEL < index < tensors.NOISY_INPUT, index
    with_twin = {n for n in methods.ready(2) if methods.method_class(n).learned and methods.get(n).for_noisy_inputs((2, 2, 2))}
    without = [n for n in methods.ready(2) if methods.method_class(n).learned and n not in with_twin]
    if not without or not with_twin:
        pytest.skip(f"every shipped learned method at x2 has a model for noisy inputs, or none has ({sorted(with_twin)})")
    name = without[0]
    method = methods.get(name, samples=0) if methods.method_class(name).takes_samples else methods.get(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        method.predict(noisy.tensor, 2, noisy.mask)
    said = [str(w.message) for w in caught if "noisier than clean scans" in str(w.message)]
    assert len(said) == 1, said
    assert f"{name} has no model trained with added noise for factor 2" in said[0], said
    assert all(other in said[0] for other in with_twin), said
