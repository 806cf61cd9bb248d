"""The module's through-plane mode picks the axis from the input's voxel spacing: the thick axis, one at least
grid.THICK_RATIO times each of the other two, else (near-isotropic, or two thick axes) the voxel axis along S
(orientation.through_plane_axis, the CLI's rule for a through-plane --model; without an affine, axes along R, A, S).
The largest spacing within 2 % had refined an in-plane axis of 2.29 x 2.29 x 2.2 mm axial scans."""

from __future__ import annotations

import numpy as np
import pytest

from ImageQualityTransferLib.core import grid, orientation
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.slicer import upsampling

from helpers import SAGITTAL, need_data


@pytest.mark.parametrize("spacing, axis", [((2.7073, 2.7073, 2.7), 2), ((2, 2, 5), 2), ((5, 2, 2), 0), ((2, 5, 2), 1),
                                           ((2.7, 2.7073, 2.7073), 2), ((5, 5, 2), 2), ((2, 2.03, 2), 2), ((2, 2.05, 2), 2),
                                           ((2, 2.4, 2), 1), ((2.2917, 2.2917, 2.2), 2), ((2.73, 2.73, 2.6), 2)])
def test_the_thick_axis_wins_else_s(spacing, axis):
    assert upsampling.slice_axis(spacing) == axis
    f = [1, 1, 1]
    f[axis] = 3
    assert upsampling.factors_for("through-plane", 3, spacing=spacing) == tuple(f)


def test_thick_is_the_thick_ratio():
    top = 3.0
    assert upsampling.slice_axis((top, top / grid.THICK_RATIO * 0.9999, 1.0)) == 0
    assert upsampling.slice_axis((top, top / grid.THICK_RATIO * 1.0001, 1.0)) == 2  # two thick axes: S


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_affine_is_refused_in_one_line(bad):
    """A NaN or infinite IJK-to-RAS matrix (or voxel size) is refused saying what to do: it had raised numpy's
    LinAlgError 'SVD did not converge' (a review)."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[0, 1] = bad
    with pytest.raises(IQTError, match="IJK-to-RAS matrix holds NaN or infinite values.*voxel-size upsampling"):
        upsampling.factors_for("through-plane", 3, spacing=(2, 2, 2), affine=affine)
    with pytest.raises(IQTError, match="voxel-to-world matrix holds NaN or infinite values"):
        orientation.through_plane_axis((2, 2, 2), affine)
    with pytest.raises(IQTError, match="voxel size .* is not three positive numbers"):
        orientation.through_plane_axis((bad, 2, 2), np.eye(4))
    with pytest.raises(IQTError, match="no voxel axis along S"):
        orientation.through_plane_axis((2, 2, 2), np.zeros((4, 4)))


@pytest.mark.realdata
def test_sagittal_dev_scan_refines_its_slices():
    """The real sag_2p7mm_ap header (stored PSR, 2.7073 x 2.7073 x 2.7 mm, no thick axis): through-plane refines j,
    S, as the CLI's through-plane --model does (it had been k, R)."""
    import nibabel as nib

    img = nib.load(str(need_data(SAGITTAL) / "dwi.nii.gz"))
    spacing = [float(x) for x in img.header.get_zooms()[:3]]
    assert nib.aff2axcodes(img.affine)[2] in "RL"
    assert max(spacing) > spacing[2]  # the in-plane spacing is the largest by 0.3 %: no thick axis, S decides
    assert upsampling.factors_for("through-plane", 3, spacing=spacing, affine=img.affine) == (1, 3, 1)
