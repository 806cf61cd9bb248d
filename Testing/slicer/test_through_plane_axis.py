"""The module's through-plane mode picks the axis from the input's voxel spacing: the largest, or where spacings tie
within grid.VOXEL_SIZE_TOLERANCE of it, the tied voxel axis along S, then A (orientation.through_plane_axis, the CLI's
rule for a through-plane --model; without an affine, axes along R, A, S). Before, one axis had to be grid.THICK_RATIO
times the others, else S: a 2 x 2 x 2.3 mm coronal scan's thin in-plane axis was refined, and (5, 5, 2) its 2 mm axis."""

from __future__ import annotations

import pytest

from ImageQualityTransferLib.core import grid
from ImageQualityTransferLib.slicer import upsampling

from helpers import SAGITTAL, need_data


@pytest.mark.parametrize("spacing, axis", [((2.7073, 2.7073, 2.7), 2), ((2, 2, 5), 2), ((5, 2, 2), 0), ((2, 5, 2), 1),
                                           ((2.7, 2.7073, 2.7073), 2), ((5, 5, 2), 1), ((2, 2.03, 2), 2), ((2, 2.05, 2), 1),
                                           ((2, 2.4, 2), 1)])
def test_the_largest_spacing_wins_else_s(spacing, axis):
    assert upsampling.slice_axis(spacing) == axis
    f = [1, 1, 1]
    f[axis] = 3
    assert upsampling.factors_for("through-plane", 3, spacing=spacing) == tuple(f)


def test_a_tie_is_the_voxel_size_tolerance():
    top = 3.0
    assert upsampling.slice_axis((top, top / (1 + grid.VOXEL_SIZE_TOLERANCE) * 0.9999, 1.0)) == 0
    assert upsampling.slice_axis((top, top / (1 + grid.VOXEL_SIZE_TOLERANCE) * 1.0001, 1.0)) == 1  # R and A tie: A


@pytest.mark.realdata
def test_sagittal_dev_scan_refines_its_slices():
    """The real sag_2p7mm_ap header (stored PSR, 2.7073 x 2.7073 x 2.7 mm, no thick axis): through-plane refines j,
    S, as the CLI's through-plane --model does (it had been k, R)."""
    import nibabel as nib

    img = nib.load(str(need_data(SAGITTAL) / "dwi.nii.gz"))
    spacing = [float(x) for x in img.header.get_zooms()[:3]]
    assert nib.aff2axcodes(img.affine)[2] in "RL"
    assert max(spacing) > spacing[2]  # the in-plane spacing is the largest by 0.3 %: the tie decides
    assert upsampling.factors_for("through-plane", 3, spacing=spacing, affine=img.affine) == (1, 3, 1)
