"""`iqt batch`'s sidecars say which device a network ran on (`--device auto` resolved on the worker, as `iqt upsample`'s
run record says it), and nothing of a device for a method that runs none."""

from __future__ import annotations

import json

import pytest

from ImageQualityTransferLib import fileio, methods
from ImageQualityTransferLib.apps import batch
from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti
from ImageQualityTransferLib.dmri.phantom import make_phantom


def test_the_sidecars_name_the_device_a_network_ran_on(tmp_path):
    torch = pytest.importorskip("torch")
    if "espcn" not in methods.ready(2):
        pytest.skip("no espcn model for x2 here")
    dwi = make_phantom(shape=(14, 16, 12), voxel_mm=4.0, n_dirs=12)
    fileio.save_tensor(fit_dti(dwi, brain_mask(dwi)), tmp_path / "c_dti.nii.gz")
    (tmp_path / "list.txt").write_text("c_dti.nii.gz\n")
    items = batch.find_items(tmp_path / "list.txt")
    out = tmp_path / "deriv"
    out.mkdir()
    for method in ("espcn", "cubic"):
        s = batch.Settings(method=method, device="auto")
        assert [r["status"] for r in batch.run_cohort(items, s, out, client=None, progress=False)] == ["done"]
    d = out / "sub-cdti" / "dwi"
    net = json.loads((d / "sub-cdti_space-orig_res-2x_model-espcn_param-tensor_dwimap.json").read_text())
    assert net["Device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert "Device" not in json.loads((d / "sub-cdti_space-orig_res-2x_model-cubic_param-tensor_dwimap.json").read_text())
