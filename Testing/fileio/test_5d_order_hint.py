"""A 5D tensor file holding another tool's 4D element order (dtifit's, dwi2tensor's) is refused as mostly not positive
definite; --tensor-order fsl or mrtrix is refused for a 5D file, so the message names the order that reads it and how
to save the file so that it reads (a 4D six-volume file, the fifth axis squeezed), as it names the order for a 4D
file read in the wrong one (an audit: the message said only "check --tensor-order")."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.methods.inputs import check_tensor_input


def _tissue(shape=(10, 10, 8)) -> np.ndarray:
    """Lower-triangular tensors of white matter (eigenvalues 1.7, 0.3, 0.3e-3 mm^2/s) in random directions."""
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(int(np.prod(shape)), 3, 3)))
    d = np.einsum("nij,j,nkj->nik", q, np.array([1.7e-3, 3e-4, 3e-4]), q)
    lower = np.stack([d[:, 0, 0], d[:, 1, 0], d[:, 1, 1], d[:, 2, 0], d[:, 2, 1], d[:, 2, 2]], -1)
    return lower.reshape(*shape, 6)


@pytest.mark.parametrize("order,tool", [("fsl", "dtifit"), ("mrtrix", "dwi2tensor")])
def test_a_5d_file_in_a_4d_order_is_refused_naming_the_order_and_the_4d_file(tmp_path, order, tool):
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    elements = tensors.to_order(_tissue(), order).astype(np.float32)
    five = tmp_path / "as5d.nii.gz"
    img = nib.Nifti1Image(elements[:, :, :, None, :], affine)
    img.header.set_intent("symmetric matrix", (), "")
    nib.save(img, five)
    vol = fileio.load_tensor(five)
    with pytest.raises(IQTError) as err:
        check_tensor_input(vol)
    msg = str(err.value)
    assert "positive definite" in msg
    assert f"read in {tool}'s element order, 100 % of them are" in msg
    assert "save it as a 4D six-volume file (squeeze the fifth axis)" in msg and msg.endswith(f"--tensor-order {order}")
    four = tmp_path / "as4d.nii.gz"  # done as it says, the file reads
    nib.save(nib.Nifti1Image(np.asarray(nib.load(five).dataobj)[:, :, :, 0, :], affine), four)
    check_tensor_input(fileio.load_tensor(four, order))


def test_a_5d_file_in_its_own_order_gets_no_such_hint(tmp_path):
    """A 5D file that is simply not tensors (every element negated) names no order: none reads it."""
    five = tmp_path / "neg5d.nii.gz"
    nib.save(nib.Nifti1Image(-_tissue()[:, :, :, None, :].astype(np.float32), np.diag([-2.0, 2.0, 2.0, 1.0])), five)
    with pytest.raises(IQTError) as err:
        check_tensor_input(fileio.load_tensor(five))
    assert "squeeze" not in str(err.value) and "read in" not in str(err.value)
