"""Orientation: any storage order gives the same answer after mapping back (real sagittal PSR subject)."""

import numpy as np
import pytest

from ImageQualityTransferLib.dmri import degrade
from ImageQualityTransferLib import methods
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.dmri.dti import fit_dti
from ImageQualityTransferLib.core.orientation import Reorientation, reorient
from ImageQualityTransferLib.core.volume import Volume


def test_reorientation_round_trip_and_tensor_frame():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(4, 5, 6, 6)).astype(np.float32)
    aff = np.array([[0, 0, 2.7, -60], [-2.7, 0, 0, 130], [0, 2.7, 0, -130], [0, 0, 0, 1.0]])  # PSR
    vol = Volume(t, aff, "tensor")
    reo = Reorientation.to_canonical(aff)
    can = reo.apply(vol)
    import nibabel as nib

    assert nib.aff2axcodes(can.affine) == ("R", "A", "S")
    back = reo.undo(can)
    assert np.allclose(back.data, t) and np.allclose(back.affine, aff)
    # a voxel keeps its world position, and its tensor expressed in world axes is unchanged
    world_rot = lambda a: a[:3, :3] / np.linalg.norm(a[:3, :3], axis=0)
    ijk = np.array([1, 2, 3])
    world = aff @ np.r_[ijk, 1]
    ijk_c = np.round(np.linalg.solve(can.affine, world)[:3]).astype(int)
    d_world = world_rot(aff) @ tensors.to_matrix(t[tuple(ijk)]) @ world_rot(aff).T
    d_world_c = world_rot(can.affine) @ tensors.to_matrix(can.data[tuple(ijk_c)]) @ world_rot(can.affine).T
    assert np.allclose(d_world, d_world_c, atol=1e-6)


def test_dwi_restored_as_las_fits_the_same_tensors(sagittal_subject):
    """Re-storing the DWIs (bvecs follow the axes) and fitting gives the same tensors, mapped back."""
    s = sagittal_subject
    crop = (slice(20, 40), slice(20, 40), slice(15, 35))
    dwi = Volume(s.dwi.data[crop].copy(), s.dwi.affine, "dwi", bvals=s.dwi.bvals, bvecs=s.dwi.bvecs)
    mask = s.mask.data[crop]
    las = reorient(dwi, "LAS")
    t_psr = fit_dti(dwi, mask).data
    t_las = fit_dti(las, reorient(Volume(mask, dwi.affine, "mask"), "LAS")).data
    back = reorient(Volume(t_las, las.affine, "tensor"), "PSR").data
    assert np.allclose(back, t_psr, atol=1e-7)


@pytest.mark.parametrize("name", methods.names())
def test_same_subject_psr_and_las_gives_identical_results(sagittal_subject, name):
    s = sagittal_subject
    pair = degrade.degrade(s.dwi, s.mask.data, 2)
    las_lr, las_mask = reorient(pair.tensor, "LAS"), reorient(pair.mask, "LAS")
    method = methods.get(name)
    out_psr = method.predict(pair.tensor, 2, pair.mask).tensor
    out_las = method.predict(las_lr, 2, las_mask).tensor
    back = reorient(out_las, "PSR")
    assert np.allclose(back.affine, out_psr.affine)
    assert np.allclose(back.data, out_psr.data, atol=1e-9, rtol=1e-5)
