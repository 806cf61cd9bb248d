"""This tool's 5D tensor file is a NIfTI SYMMATRIX as nifti1.h defines it: intent_p1 holds N, the matrix size (3), as
dipy writes it (it was 0), with this tool's intent name `DTI`; dipy's 5D layout keeps p1 = 3 without it."""

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.volume import Volume


@pytest.mark.parametrize("order, name", [("nifti", "DTI"), ("dipy", "")])
def test_a_5d_symmatrix_file_records_its_matrix_size(tmp_path, order, name):
    field = np.zeros((3, 4, 2, 6), np.float32)
    field[..., [0, 2, 5]] = [1.0e-3, 0.7e-3, 0.5e-3]
    path = tmp_path / "t.nii.gz"
    fileio.save_tensor(Volume(field, np.diag([2.0, 2.0, 2.0, 1.0]), "tensor"), path, order, five_d=True)
    img = nib.load(path)
    code, params, intent_name = img.header.get_intent()
    assert img.shape == (3, 4, 2, 1, 6)
    assert (code, params, intent_name) == ("symmetric matrix", (3.0,), name)
    assert float(img.header["intent_p1"]) == 3.0
    np.testing.assert_allclose(fileio.load_tensor(path, order).data, field, atol=1e-9)
