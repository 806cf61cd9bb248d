"""A method's output that this tool writes in another tool's order and frame records that order in its header's
description ("iqt cubic factor 2 order fsl"), and is read back without --tensor-order in that order, said in one line
(reading its own 4D output back needed --tensor-order). A file without the record is refused as before, and a
wrong --tensor-order given is still refused."""

import warnings

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.errors import IQTError, IQTWarning
from ImageQualityTransferLib.fileio import records

C, S = np.cos(np.radians(20.0)), np.sin(np.radians(20.0))
AFFINE = np.array([[2.0 * C, -2.0 * S, 0, -20], [2.0 * S, 2.0 * C, 0, -30], [0, 0, 2.5, -10], [0, 0, 0, 1]])  # det > 0
LOWER = np.array([0.9e-3, 0.2e-3, 0.7e-3, -0.1e-3, 0.05e-3, 0.5e-3])
LAYOUTS = {"fsl": ("fsl", (6,)), "mrtrix": ("mrtrix", (6,)), "dipy-4d": ("dipy", (6,)), "dipy-5d": ("dipy", (1, 6))}


def _descrip(path) -> str:
    return bytes(nib.load(path).header["descrip"]).split(b"\0")[0].decode()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_an_output_in_another_tools_order_is_read_back_in_the_order_it_records(tmp_path, capsys, layout):
    order, tail = LAYOUTS[layout]
    raw = tensors.to_order(LOWER, order)
    field = np.broadcast_to(raw.reshape((1, 1, 1) + (1,) * (len(tail) - 1) + (6,)), (6, 7, 5) + tail)
    nib.save(nib.Nifti1Image(field.astype(np.float32), AFFINE), tmp_path / "dt.nii.gz")
    code = cli.main(["upsample", str(tmp_path / "dt.nii.gz"), "--tensor-order", order, "-o", str(tmp_path / "up.nii.gz"),
                     "--method", "cubic"])
    assert code == 0, capsys.readouterr().err
    assert _descrip(tmp_path / "up.nii.gz") == f"iqt cubic factor 2 order {order}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vol = fileio.load_tensor(tmp_path / "up.nii.gz")
    said = [str(w.message) for w in caught if issubclass(w.category, IQTWarning)]
    assert len(said) == 1 and f"read as --tensor-order {order}, the order its header records" in said[0], said
    assert vol.meta["order"] == order and np.all(np.asarray(vol.meta["made_at"][1]) == 2)
    np.testing.assert_array_equal(vol.data, fileio.load_tensor(tmp_path / "up.nii.gz", order).data)
    # the output of a run on it comes back in that order too
    assert cli.main(["upsample", str(tmp_path / "up.nii.gz"), "-o", str(tmp_path / "up2.nii.gz"), "--method", "cubic"]) == 0
    assert f"read as --tensor-order {order}" in capsys.readouterr().err
    assert records.recorded_order(_descrip(tmp_path / "up2.nii.gz")) == order


def test_a_wrong_order_given_is_still_refused_and_an_unrecorded_4d_file_still_asks(tmp_path, capsys):
    field = np.broadcast_to(tensors.to_order(LOWER, "fsl"), (6, 7, 5, 6)).astype(np.float32)
    nib.save(nib.Nifti1Image(field, AFFINE), tmp_path / "dt.nii.gz")
    with pytest.raises(IQTError, match="no standard component order") as said:
        fileio.load_tensor(tmp_path / "dt.nii.gz")
    assert "is for 5D" not in str(said.value)
    # --tensor-order nifti said for a 4D file: told what nifti reads (it had been asked to say which order, as if
    # it had said none: a tool-inputs audit)
    with pytest.raises(IQTError, match="--tensor-order nifti is for 5D SYMMATRIX files"):
        fileio.load_tensor(tmp_path / "dt.nii.gz", "nifti", True)
    assert cli.main(["upsample", str(tmp_path / "dt.nii.gz"), "--tensor-order", "fsl", "-o", str(tmp_path / "up.nii.gz"),
                     "--method", "cubic"]) == 0
    capsys.readouterr()
    code = cli.main(["upsample", str(tmp_path / "up.nii.gz"), "--tensor-order", "mrtrix", "-o",
                     str(tmp_path / "bad.nii.gz"), "--method", "cubic"])
    err = capsys.readouterr().err
    assert code != 0 and "positive definite" in err and "--tensor-order fsl" in err
    assert not (tmp_path / "bad.nii.gz").exists()


def test_only_a_methods_output_records_its_order():
    assert records.made_by({}, AFFINE, "mrtrix") == ""  # 'iqt fit', 'iqt degrade --style': read with --tensor-order
    assert records.made_by({"method": "cubic", "factor": (2, 2, 2)}, AFFINE, "nifti") == "iqt cubic factor 2"
    text = records.made_by({"method": "espcn", "factor": (2, 2, 2), "model_name": "espcn_x2.pt", "model_origin": "shipped"},
                           AFFINE, "fsl")
    assert text == "iqt espcn factor 2 order fsl shipped model espcn_x2.pt"
    assert records.read_made_by(text, AFFINE)[0] == text and records.recorded_order(text) == "fsl"
    assert records.recorded_order("iqt espcn factor 2") is None


def test_an_order_given_wins_over_the_one_the_header_records(tmp_path):
    """--tensor-order nifti given for a dipy_fit_dti-layout file this tool wrote (its header records dipy) is read in
    voxel axes, as given (the review: the record won, while the positive-grid refusal tells users to give exactly
    that); without it, the record reads it, as before."""
    raw = tensors.to_order(LOWER, "dipy")
    field = np.broadcast_to(raw.reshape(1, 1, 1, 1, 6), (6, 7, 5, 1, 6))
    nib.save(nib.Nifti1Image(field.astype(np.float32), AFFINE), tmp_path / "dt.nii.gz")
    assert cli.main(["upsample", str(tmp_path / "dt.nii.gz"), "--tensor-order", "dipy", "-o", str(tmp_path / "up.nii.gz"),
                     "--method", "cubic"]) == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        given = fileio.load_tensor(tmp_path / "up.nii.gz", "nifti", stated=True)
    assert given.meta["order"] == "nifti" and not [w for w in caught if issubclass(w.category, IQTWarning)]
    assert fileio.load_tensor(tmp_path / "up.nii.gz", stated=False).meta["order"] == "dipy"
