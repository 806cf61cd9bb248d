"""A learned method run outside what it was trained on says so in one warning line: an input thinner
than the model's context along an axis (a 1-slice slab at x2: espcn made its two output slices differ by up to 1.8e-4
mm^2/s from no information along that axis) and output voxels far from the near-isotropic training voxels (1x1x6 mm at
--factor 2); an ordinary input gets neither (the 8 real subjects, fitted and degraded x2, by their voxel sizes)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import bundle_volume
from ImageQualityTransferLib import methods


def _said(vol, factor, name="rf") -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        methods.get(name).predict(vol, factor, uncertainty=False)
    return [str(w.message) for w in caught if "thinner than" in str(w.message) or "near-isotropic" in str(w.message)]


def test_a_slab_thinner_than_the_models_context_is_said():
    slab = bundle_volume(shape=(14, 10, 10))
    slab = slab.replace(data=np.ascontiguousarray(slab.data[:, :, 4:5]))
    said = _said(slab, 2)
    assert len(said) == 1 and "1 voxel along voxel axis k, thinner than the 3 voxels rf reads" in said[0], said


def test_voxels_far_from_the_training_ones_are_said():
    vol = bundle_volume(shape=(14, 10, 10))
    vol = vol.replace(affine=np.diag([1.0, 1.0, 6.0, 1.0]))
    said = _said(vol, 2)
    assert len(said) == 1 and "output voxels are 0.5x0.5x3 mm (6.0:1)" in said[0], said
    assert _said(vol, (1, 1, 3)) == []  # 1x1x2 mm: the through-plane model's own case


@pytest.mark.parametrize("name", ["rf", pytest.param("espcn", marks=pytest.mark.slow)])
def test_an_ordinary_input_is_not_said(name):
    assert _said(bundle_volume(shape=(14, 10, 10)), 2, name) == []


def test_two_to_one_within_a_header_s_rounding_is_not_said():
    """At 1,1,2 the 3 mm ortho scan (exactly 2:1) was silent but the 3 mm yaw scan (3.00000001 mm in its
    rotated header) and the sagittal 2.7 mm scans (2.7073 / 1.35 = 2.005) were warned 'far from' the training voxels."""
    vol = bundle_volume(shape=(14, 10, 10))
    assert _said(vol.replace(affine=np.diag([2.7073, 2.7073, 2.7, 1.0])), (1, 1, 2)) == []
    assert _said(vol.replace(affine=np.diag([3.00000001, 3.0, 3.0, 1.0])), (1, 1, 2)) == []
    assert len(_said(vol.replace(affine=np.diag([3.0, 3.0, 3.0, 1.0])), (1, 1, 3))) == 1  # 3:1 still is
