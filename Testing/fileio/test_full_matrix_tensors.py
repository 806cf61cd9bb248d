"""A tensor file of full 3x3 matrices (dipy's `fit.quadratic_form` saved as it is) is refused with how to save the six
elements that are read (audit, stop 57: the refusal named only the shapes that are read)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import helpers


def test_a_3x3_matrix_file_is_refused_with_how_to_save_it(tmp_path, capsys):
    q = np.zeros((6, 6, 6, 3, 3), np.float32)
    q[..., 0, 0], q[..., 1, 1], q[..., 2, 2] = 1.2e-3, 0.8e-3, 0.6e-3
    nib.save(nib.Nifti1Image(q, np.diag([2.0, 2, 2, 1])), tmp_path / "quad33.nii.gz")
    line = helpers.refused_line(capsys, ["upsample", tmp_path / "quad33.nii.gz", "-o", tmp_path / "o.nii.gz"],
                                "full 3x3 matrices", "lower_triangular()", "--tensor-order dipy")
    assert "Traceback" not in line and not (tmp_path / "o.nii.gz").exists()


def test_nine_volumes_of_3x3_matrices_are_refused_with_the_volumes_to_keep(tmp_path, capsys):
    """A 4D file of nine volumes (a row-major 3x3 per voxel) gets the six volumes that are FSL's order (input audit)."""
    q = np.zeros((6, 6, 6, 9), np.float32)
    q[..., 0], q[..., 4], q[..., 8] = 1.2e-3, 0.8e-3, 0.6e-3
    nib.save(nib.Nifti1Image(q, np.diag([2.0, 2, 2, 1])), tmp_path / "full9.nii.gz")
    helpers.refused_line(capsys, ["upsample", tmp_path / "full9.nii.gz", "-o", tmp_path / "o.nii.gz"],
                         "nine volumes", "[0, 1, 2, 4, 5, 8]", "--tensor-order fsl")
    assert not (tmp_path / "o.nii.gz").exists()
    six = nib.Nifti1Image(q[..., [0, 1, 2, 4, 5, 8]], np.diag([2.0, 2, 2, 1]))  # what it says to do reads
    nib.save(six, tmp_path / "dti6.nii.gz")
    from ImageQualityTransferLib.fileio import load_tensor

    t = load_tensor(tmp_path / "dti6.nii.gz", order="fsl").data
    np.testing.assert_allclose(t[0, 0, 0], [1.2e-3, 0, 0.8e-3, 0, 0, 0.6e-3], rtol=1e-6)


def test_fsl_s_eigenvalue_and_vector_maps_are_refused_with_dtifit_s_tensor_option(tmp_path, capsys):
    """dtifit's dti_L1 (a scalar map) and dti_V1 (three volumes) are not the tensor: the refusal names --save_tensor."""
    for name, shape, said in (("dti_L1", (6, 6, 6), "scalar map"), ("dti_V1", (6, 6, 6, 3), "vector map")):
        nib.save(nib.Nifti1Image(np.full(shape, 1e-3, np.float32), np.diag([2.0, 2, 2, 1])), tmp_path / f"{name}.nii.gz")
        helpers.refused_line(capsys, ["upsample", tmp_path / f"{name}.nii.gz", "-o", tmp_path / "o.nii.gz"],
                             said, "--save_tensor", "--tensor-order fsl")
        assert not (tmp_path / "o.nii.gz").exists()


def test_dipy_s_seven_volume_lower_triangular_is_refused_with_the_six_to_keep(tmp_path, capsys):
    """dipy's fit.lower_triangular(b0=S0) adds -log(S0) as a seventh volume: the refusal says to keep the first six and
    read them with --tensor-order dipy, and what it says to do reads (input audit: a generic shape refusal)."""
    t = np.zeros((6, 6, 6, 7), np.float32)
    t[..., 0], t[..., 2], t[..., 5], t[..., 6] = 1.2e-3, 0.8e-3, 0.6e-3, -np.log(900.0)
    nib.save(nib.Nifti1Image(t, np.diag([-2.0, 2, 2, 1])), tmp_path / "lt7.nii.gz")
    helpers.refused_line(capsys, ["upsample", tmp_path / "lt7.nii.gz", "-o", tmp_path / "o.nii.gz"],
                         "seven volumes", "lower_triangular(b0=S0)", "[..., :6]", "--tensor-order dipy")
    assert not (tmp_path / "o.nii.gz").exists()
    nib.save(nib.Nifti1Image(t[..., :6], np.diag([-2.0, 2, 2, 1])), tmp_path / "dti6.nii.gz")
    from ImageQualityTransferLib.fileio import load_tensor

    got = load_tensor(tmp_path / "dti6.nii.gz", order="dipy").data
    np.testing.assert_allclose(got[0, 0, 0], [1.2e-3, 0, 0.8e-3, 0, 0, 0.6e-3], rtol=1e-6)


def test_a_5d_file_with_the_elements_on_the_fourth_axis_is_refused_with_the_transpose(tmp_path, capsys):
    """A 5D file (X,Y,Z,6,1) holds the six elements where SYMMATRIX holds the 1: the refusal names the transpose that
    gives (X,Y,Z,1,6), which then reads as the same tensors (input audit: a generic shape refusal)."""
    t = np.zeros((6, 6, 6, 6, 1), np.float32)
    t[..., 0, 0], t[..., 2, 0], t[..., 5, 0], t[..., 1, 0] = 1.2e-3, 0.8e-3, 0.6e-3, 1e-4
    img = nib.Nifti1Image(t, np.diag([-2.0, 2, 2, 1]))
    img.header.set_intent("symmetric matrix", (3,))
    nib.save(img, tmp_path / "swapped.nii.gz")
    helpers.refused_line(capsys, ["upsample", tmp_path / "swapped.nii.gz", "-o", tmp_path / "o.nii.gz"],
                         "fourth axis", "(X,Y,Z,1,6)", ".transpose(0, 1, 2, 4, 3)")
    assert not (tmp_path / "o.nii.gz").exists()
    fixed = nib.Nifti1Image(nib.load(tmp_path / "swapped.nii.gz").get_fdata().transpose(0, 1, 2, 4, 3),
                            np.diag([-2.0, 2, 2, 1]))
    nib.save(fixed, tmp_path / "dti5d.nii.gz")
    from ImageQualityTransferLib.fileio import load_tensor

    got = load_tensor(tmp_path / "dti5d.nii.gz").data
    np.testing.assert_allclose(got[0, 0, 0], [1.2e-3, 1e-4, 0.8e-3, 0, 0, 0.6e-3], rtol=1e-6)


@pytest.mark.realdata
def test_a_seven_volume_dwi_is_not_called_dipy_s_lower_triangular(tmp_path, capsys):
    """A DWI series of a b0 and six directions (seven volumes, the real axial scan's first) given as tensors had been
    told it was dipy's lower_triangular(b0=S0) and to keep its first six volumes with --tensor-order dipy (a review):
    it is told as a DWI series, to fit tensors from with 'iqt fit' (test_dwi_given_as_tensors.py for 6 and 9)."""
    img = nib.load(helpers.need_data(helpers.AXIAL) / "dwi.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj[..., :7]), img.affine, img.header), tmp_path / "dwi7.nii.gz")
    line = helpers.refused_line(capsys, ["upsample", tmp_path / "dwi7.nii.gz", "-o", tmp_path / "o.nii.gz"],
                                "is a DWI series", "first with 'iqt fit")
    assert "lower_triangular(b0=S0)" not in line and not (tmp_path / "o.nii.gz").exists()
