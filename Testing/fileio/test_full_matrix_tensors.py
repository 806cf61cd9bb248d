"""A tensor file of full 3x3 matrices (dipy's `fit.quadratic_form` saved as it is) is refused with how to save the six
elements that are read (audit, stop 57: the refusal named only the shapes that are read)."""

from __future__ import annotations

import nibabel as nib
import numpy as np

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
