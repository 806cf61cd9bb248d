"""Tensor invariants and NIfTI I/O conventions."""

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.core.volume import Volume


def random_spd(n, seed=0):
    m = np.random.default_rng(seed).normal(size=(n, 3, 3)) * 5e-4
    return tensors.from_matrix(m @ np.swapaxes(m, 1, 2) + 1e-4 * np.eye(3))


def test_invariants_of_known_tensors():
    prolate = tensors.from_matrix(np.diag([1.7e-3, 0.3e-3, 0.3e-3]))
    iso = tensors.from_matrix(np.eye(3) * 0.8e-3)
    assert np.isclose(tensors.md(prolate), 0.7667e-3, rtol=1e-3)
    expected_fa = np.sqrt(0.5) * np.sqrt(2 * 1.4**2) / np.sqrt(1.7**2 + 2 * 0.3**2)
    assert np.isclose(tensors.fa(prolate), expected_fa, rtol=1e-6)
    assert np.isclose(tensors.fa(iso), 0.0, atol=1e-7)
    assert np.allclose(tensors.color_fa(prolate), [expected_fa, 0, 0], atol=1e-6)
    assert tensors.fa(np.zeros(6)) == 0.0


def test_pd_projection_log_exp_and_plausibility():
    t = random_spd(50)
    assert np.allclose(tensors.expm(tensors.logm(t)), t, rtol=1e-6, atol=1e-12)
    neg = tensors.from_matrix(np.diag([1e-3, -2e-4, 5e-4]))
    assert tensors.eig(tensors.project_pd(neg, 1e-6))[0].min() >= 1e-6 - 1e-15
    assert tensors.plausible(t).all()
    assert not tensors.plausible(tensors.from_matrix(np.eye(3) * 1.0))  # a 1 mm^2/s fit failure
    assert not tensors.plausible(np.array([np.nan, 0, 0, 0, 0, 0]))
    clipped = tensors.clip_eigenvalues(tensors.from_matrix(np.diag([6e-3, -1e-3, 1e-3])), 0, 4e-3)
    assert np.allclose(tensors.eig(clipped)[0], [4e-3, 1e-3, 0], atol=1e-12)


def test_rotation_is_a_change_of_frame():
    t = random_spd(10)
    theta = 0.3
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    assert np.allclose(tensors.eig(tensors.rotate(t, rot))[0], tensors.eig(t)[0])
    assert np.allclose(tensors.rotate(tensors.rotate(t, rot), rot.T), t)


def test_tensor_nifti_is_5d_symmatrix_lower_triangular(tmp_path):
    t = random_spd(4 * 5 * 3).reshape(4, 5, 3, 6).astype(np.float32)
    aff = np.diag([-2.0, 2.0, 2.0, 1.0])
    path = tmp_path / "dti.nii.gz"
    fileio.save_tensor(Volume(t, aff, "tensor"), path)
    img = nib.load(path)
    assert img.shape == (4, 5, 3, 1, 6)
    assert img.header.get_intent()[0] == "symmetric matrix"
    assert np.allclose(np.asarray(img.dataobj)[:, :, :, 0, 1], t[..., 1])  # Dxy is the second element
    back = fileio.load_tensor(path)
    assert np.array_equal(back.data, t) and np.allclose(back.affine, aff)


@pytest.mark.parametrize("order", ["fsl", "mrtrix"])
def test_4d_tensor_orders_on_request(tmp_path, order):
    t = random_spd(24).reshape(2, 3, 4, 6).astype(np.float32)
    path = tmp_path / f"{order}.nii.gz"
    fileio.save_tensor(Volume(t, np.eye(4), "tensor"), path, order=order)
    raw = np.asarray(nib.load(path).dataobj)
    names = {"fsl": ["xx", "xy", "xz", "yy", "yz", "zz"], "mrtrix": ["xx", "yy", "zz", "xy", "xz", "yz"]}[order]
    lower = ["xx", "xy", "yy", "xz", "yz", "zz"]
    for k, name in enumerate(names):
        assert np.allclose(raw[..., k], t[..., lower.index(name)])
    assert np.array_equal(fileio.load_tensor(path, order).data, t)
    with pytest.raises(IQTError, match="--tensor-order"):
        fileio.load_tensor(path)


def test_dwi_reading_and_gradient_checks(tmp_path):
    data = np.random.default_rng(0).random((4, 4, 4, 8)).astype(np.float32) * 100
    dwi_path = tmp_path / "dwi.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([-2.0, 2, 2, 1])), dwi_path)
    bvecs = np.vstack([[0, 0, 0], np.eye(3), np.eye(3)[::-1], [[0.6, 0.8, 0]]])
    np.savetxt(tmp_path / "dwi.bval", [[0, 1000, 1000, 1000, 1000, 1000, 1000, 1000]], fmt="%g")
    np.savetxt(tmp_path / "dwi.bvec", bvecs.T)
    dwi = fileio.load_dwi(dwi_path)
    assert dwi.data.shape == (4, 4, 4, 8) and np.allclose(dwi.bvecs, bvecs)
    # positive determinant: FSL's x flip is undone so directions are in voxel axes
    pos = tmp_path / "pos.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2, 2, 1])), pos)
    assert np.allclose(fileio.load_dwi(pos, tmp_path / "dwi.bval", tmp_path / "dwi.bvec").bvecs[:, 0], -bvecs[:, 0])
    np.savetxt(tmp_path / "short.bval", [[0, 1000, 1000]], fmt="%g")
    with pytest.raises(IQTError, match="8 volumes but short.bval has 3"):
        fileio.load_dwi(dwi_path, tmp_path / "short.bval", tmp_path / "dwi.bvec")
