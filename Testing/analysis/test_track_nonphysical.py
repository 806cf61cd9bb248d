"""Tensors with a negative eigenvalue (an upsampling's non-physical voxels) read FA up to 1 once clipped, the most
anisotropic there is: tracking had seeded streamlines in them and carried them through; they are read as no tissue."""

from __future__ import annotations

import numpy as np

from ImageQualityTransferLib.analysis import tractography as tr
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.volume import Volume

from helpers import bundle_volume

NONPHYSICAL = tensors.from_matrix(np.diag([1.7e-3, 0.1e-3, -0.3e-3]))  # along x, an eigenvalue below zero


def _strip_volume():
    vol = bundle_volume(shape=(40, 16, 16))  # the real bundle along x at y, z 6-9
    t = np.array(vol.data)
    t[:, 1:3, 1:3] = NONPHYSICAL  # a strip of non-physical tensors beside it
    return vol.replace(data=t)


def test_nonphysical_voxels_neither_seed_nor_carry_streamlines():
    vol = _strip_volume()
    assert tensors.fa(NONPHYSICAL[None])[0] > 0.9  # clipped: it reads as strongly anisotropic
    seeds = np.zeros(vol.shape3, bool)
    seeds[20, 1:3, 1:3] = True
    assert tr.track(vol, Volume(seeds, vol.affine, "mask")) == []
    seeds[20, 7:9, 7:9] = True  # the physical bundle is tracked as before
    lines = tr.track(vol, Volume(seeds, vol.affine, "mask"))
    idx = np.argwhere(tr.density_map(lines, vol.affine, vol.shape3) > 0)
    assert len(lines) == 4 and idx[:, 1].min() >= 6 and idx[:, 2].min() >= 6


def test_a_tensor_a_little_below_zero_inside_a_bundle_does_not_cut_its_tracts():
    """One plane of white-matter tensors whose smallest eigenvalue is 3 % of the largest below zero (an OLS fit's
    noise) had stopped every tract there, 39 mm where 78 (a review): below NONPHYSICAL_TOLERANCE it stays a fibre."""
    vol = bundle_volume(shape=(40, 16, 16))
    t = np.array(vol.data)
    t[20, 6:10, 6:10] = tensors.from_matrix(np.diag([1.7e-3, 0.3e-3, -0.05e-3]))
    vol = vol.replace(data=t)
    seeds = np.zeros(vol.shape3, bool)
    seeds[10, 7:9, 7:9] = True
    lines = tr.track(vol, Volume(seeds, vol.affine, "mask"))
    assert len(lines) == 4 and all(np.ptp(line[:, 0]) > 70 for line in lines), [np.ptp(x[:, 0]) for x in lines]
