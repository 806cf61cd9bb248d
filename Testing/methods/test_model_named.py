"""The header names the model that ran for every caller, not only the CLI (the Python API's and iqt
batch's files held "iqt espcn factor 2" where the CLI's held "... shipped model espcn_x2.pt": the same values, other
bytes)."""

from __future__ import annotations

import nibabel as nib
import pytest
from ImageQualityTransferLib import fileio, methods
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.dmri.degrade import degrade
from ImageQualityTransferLib.dmri.dti import brain_mask
from ImageQualityTransferLib.dmri.phantom import make_phantom


@pytest.mark.parametrize("name", ["rf", "espcn"])
def test_the_api_s_output_names_the_model_as_the_cli_s_does(tmp_path, capsys, name):
    if name == "espcn":
        pytest.importorskip("torch", reason="PyTorch (the cnn extra) runs the CNNs")
    dwi = make_phantom(shape=(20, 22, 16), voxel_mm=2.0, n_dirs=12)
    lr = degrade(dwi, brain_mask(dwi).data, 2).tensor
    fileio.save_tensor(lr, tmp_path / "lr.nii.gz")
    fileio.save_tensor(methods.get(name).predict(lr, 2).tensor, tmp_path / "api.nii.gz")
    assert cli.main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / "cli.nii.gz"), "--method", name]) == 0
    api, by_cli = (nib.load(tmp_path / f).header["descrip"].tobytes().rstrip(b"\0") for f in ("api.nii.gz", "cli.nii.gz"))
    assert api == by_cli and b" shipped model " in api, (api, by_cli)


def test_a_model_fitted_in_this_session_names_no_file_and_predicts_at_any_factor(small_subject):
    """A model trained in the Python session was named as the shipped one at x2, and at a factor with no
    shipped model predict failed after the whole prediction had run."""
    dwi = make_phantom(shape=(32, 36, 28), voxel_mm=4.0, n_dirs=12)  # the subject's own phantom
    for factor in (2, (1, 1, 4)):
        m = methods.get("global-linear").fit([small_subject], factor, progress=False)
        meta = m.predict(degrade(dwi, brain_mask(dwi).data, factor).tensor, factor).tensor.meta
        assert "model_name" not in meta and "model_origin" not in meta, meta
