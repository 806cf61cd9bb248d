"""The model that runs is the one the user gave: a weights file whose sidecar names another file is refused (two
models' sidecars swapped, and `--model het.pt` ran the other model's weights, output identical to it, exit 0)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ImageQualityTransferLib import IQTError, fileio
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.fileio import model_files
from ImageQualityTransferLib.methods.forest import model_io

import helpers


def _copy(d: Path, shipped: str, name: str) -> Path:
    """A copy of a shipped model under `name` (its sidecar naming the copy, sealed as shipped)."""
    src = Path(model_files.MODELS_DIR) / shipped
    shutil.copy(src.with_suffix(".npz"), d / f"{name}.npz")
    side = json.loads(src.with_suffix(".json").read_text())
    side["weights"] = f"{name}.npz"  # not covered by the seal: a copy under a new name may change it
    (d / f"{name}.json").write_text(json.dumps(side))
    return d / f"{name}.npz"


@pytest.fixture
def swapped(tmp_path):
    """Two global-linear x2 models (the default and the noisy one) whose sidecars were swapped, file names kept."""
    a, b = _copy(tmp_path, "global-linear_x2", "a"), _copy(tmp_path, "global-linear_x2_noisy", "b")
    sa, sb = a.with_suffix(".json").read_bytes(), b.with_suffix(".json").read_bytes()
    a.with_suffix(".json").write_bytes(sb)
    b.with_suffix(".json").write_bytes(sa)
    return a, b


def test_each_model_loads_as_itself(tmp_path):
    a = _copy(tmp_path, "global-linear_x2", "a")
    assert model_io.load(a).meta["weights"] == "a.npz"


def test_a_weights_file_its_sidecar_does_not_name_is_refused(swapped):
    a, b = swapped
    with pytest.raises(IQTError, match=r"b\.npz: its sidecar b\.json names a\.npz as its weights, not b\.npz") as e:
        model_io.load(b)  # before: a.npz's weights, silently
    assert "give a.npz" in str(e.value)
    # a sidecar given is used with the weights it names: that is the model it describes
    assert model_io.load(b.with_suffix(".json")).meta["weights"] == "a.npz"


def test_upsample_refuses_the_swapped_model_in_one_line(swapped, tmp_path, capsys):
    a, b = swapped
    t, _ = helpers.smooth_tensors((10, 10, 8))
    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(Volume(t, np.diag([2.0, 2.0, 2.0, 1.0]), "tensor"), lr)
    out = tmp_path / "o.nii.gz"
    assert main(["upsample", str(lr), "-o", str(out), "--method", "global-linear", "--model", str(a)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a.npz: its sidecar a.json names b.npz as its weights" in err, err
    assert not out.exists()
