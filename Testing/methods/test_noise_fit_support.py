"""A masked fit run without a mask: its noise index is read on its own support, whose edge is its fitting mask's, often
wider than the brain (the training inputs' own style, the brain mask dilated by two voxels), and holds CSF and skull
fits. Read there, the clean Achieva ×2 read as noisy (0.081 against 0.069 with its mask) and ran the noise-trained
models (core/noise_level.py FIT_SUPPORT_CORE)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ImageQualityTransferLib import methods
from ImageQualityTransferLib.core import noise_level
from ImageQualityTransferLib.dmri import degrade
from ImageQualityTransferLib.methods.inputs import input_noise_index


@pytest.mark.realdata
def test_a_masked_fit_without_its_mask_reads_the_noise_of_its_brain_not_its_masks_edge(noisy_background_subject):
    """16 slices of the clean Achieva (a slab keeps the test quick): read on its support, 0.082, noisy."""
    s = noisy_background_subject
    affine = np.array(s.dwi.affine, float)
    affine[:3, 3] += affine[:3, 2] * 24
    dwi = s.dwi.replace(data=np.asarray(s.dwi.data)[:, :, 24:40], affine=affine)
    mask = s.mask.replace(data=np.asarray(s.mask.data)[:, :, 24:40], affine=affine)
    pair = degrade.degrade(dwi, mask, 2, style="own")  # WLS on the low-res mask dilated by two voxels
    brain = np.asarray(pair.mask.data, bool)
    assert np.any(np.asarray(pair.tensor.data)[~brain] != 0)  # the fit reaches past the brain mask
    with_mask = input_noise_index(pair.tensor, brain)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = methods.get("global-linear").predict(pair.tensor, 2, None, uncertainty=False).tensor.meta
    assert with_mask < noise_level.NOISY_MODEL
    assert "model_for" not in meta, meta  # the clean model, as with the mask
    assert meta["noise_index"] == pytest.approx(with_mask, abs=0.003), (meta, with_mask)
