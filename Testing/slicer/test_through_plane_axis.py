"""The module's through-plane mode picks the thick-slice axis from the input's voxel spacing: spacings within
grid.VOXEL_SIZE_TOLERANCE of the largest tie, and a tie goes to k, the acquisition's slice axis (a sagittal scan stored
PSR holds 2.7073 x 2.7073 x 2.7 mm for a nominal 2.7 mm: its slices are along k)."""

from __future__ import annotations

import pytest

from ImageQualityTransferLib.core import grid
from ImageQualityTransferLib.slicer import upsampling

from helpers import SAGITTAL, need_data


@pytest.mark.parametrize("spacing, axis", [((2.7073, 2.7073, 2.7), 2), ((2, 2, 5), 2), ((5, 2, 2), 0), ((2, 5, 2), 1),
                                           ((2.7, 2.7073, 2.7073), 2), ((5, 5, 2), 1), ((2, 2.03, 2), 2), ((2, 2.05, 2), 1)])
def test_spacings_within_the_tolerance_tie_and_k_wins(spacing, axis):
    assert upsampling.slice_axis(spacing) == axis
    f = [1, 1, 1]
    f[axis] = 3
    assert upsampling.factors_for("through-plane", 3, spacing=spacing) == tuple(f)


def test_the_tie_is_the_voxel_size_tolerance():
    top = 3.0
    just_inside = top / (1 + grid.VOXEL_SIZE_TOLERANCE) * 1.0001
    just_outside = top / (1 + grid.VOXEL_SIZE_TOLERANCE) * 0.9999
    assert upsampling.slice_axis((top, 1.0, just_inside)) == 2
    assert upsampling.slice_axis((top, 1.0, just_outside)) == 0


@pytest.mark.realdata
def test_sagittal_dev_scan_refines_its_slices():
    """The real sag_2p7mm_ap header (stored PSR, 2.7073 x 2.7073 x 2.7 mm): through-plane refines k (R-L), the
    sagittal slice direction, not an in-plane axis."""
    import nibabel as nib

    img = nib.load(str(need_data(SAGITTAL) / "dwi.nii.gz"))
    spacing = [float(x) for x in img.header.get_zooms()[:3]]
    assert nib.aff2axcodes(img.affine)[2] in "RL"
    assert max(spacing) > spacing[2]  # the in-plane spacing is the largest by 0.3 %: the tie decides
    assert upsampling.factors_for("through-plane", 3, spacing=spacing) == (1, 1, 3)
