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
