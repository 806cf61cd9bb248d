"""A learned method on a brain far smaller than a human's, in small voxels (a rodent's, a marmoset's) says in one
warning line that it was trained on adult human brains (the 3 mm dev data relabelled 0.3 mm ran without a
word); the same data in MRI-sized voxels, and interpolation, say nothing of it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from helpers import bundle_volume
from ImageQualityTransferLib import methods


def _said(name, voxel_mm):
    lr = bundle_volume(affine=np.diag([-voxel_mm, voxel_mm, voxel_mm, 1.0]), shape=(20, 12, 12))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        methods.get(name).predict(lr, 2, uncertainty=False)
    return [str(w.message) for w in caught if "adult human brains" in str(w.message)]


@pytest.mark.parametrize("name", ["espcn", "rf"])
def test_a_small_animal_s_brain_is_said_once(name):
    said = _said(name, 0.3)
    assert len(said) == 1 and "6 mm long" in said[0] and "compare with cubic" in said[0], said


def test_mri_sized_voxels_and_interpolation_say_nothing_of_it():
    assert _said("espcn", 2.0) == [] and _said("cubic", 0.3) == []
