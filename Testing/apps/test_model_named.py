"""An output says which model made it: user-trained, shipped and registered models all printed 'wrote ...
(espcn)' and wrote 'iqt espcn factor 2' in the header; after --register replaced the default, 'iqt methods' still
said 'shipped for x2'."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.apps.cli.demo import _listed
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.fileio import model_files

import helpers


@pytest.fixture
def lr(tmp_path):
    t, _ = helpers.smooth_tensors((10, 10, 8))
    path = tmp_path / "lr.nii.gz"
    fileio.save_tensor(Volume(t, np.diag([2.0, 2.0, 2.0, 1.0]), "tensor"), path)
    return path


def _copy(d: Path, name: str, command: str | None = None) -> Path:
    src = Path(model_files.MODELS_DIR) / "global-linear_x2"
    shutil.copy(src.with_suffix(".npz"), d / f"{name}.npz")
    side = json.loads(src.with_suffix(".json").read_text())
    side["weights"] = f"{name}.npz"
    if command is not None:
        side.pop(model_files.SEAL)
        side["training"]["command"] = command
        model_files.write_sidecar(d / f"{name}.json", side)
    else:
        (d / f"{name}.json").write_text(json.dumps(side))
    return d / f"{name}.npz"


@pytest.mark.parametrize("given", [True, False])
def test_the_wrote_line_and_the_header_name_the_model(lr, tmp_path, capsys, given):
    model = _copy(tmp_path, "mine") if given else None
    out = tmp_path / "o.nii.gz"
    argv = ["upsample", str(lr), "-o", str(out), "--method", "global-linear"] + (["--model", str(model)] if given else [])
    assert main(argv) == 0
    wrote = capsys.readouterr().out
    name, origin = ("mine.npz", "given") if given else ("global-linear_x2.npz", "shipped")
    assert f"(global-linear, {origin} model {model if given else name})" in wrote, wrote
    descrip = nib.load(out).header["descrip"].tobytes().split(b"\0")[0].decode()
    assert descrip == f"iqt global-linear factor 2 {origin} model {name}", descrip
    from ImageQualityTransferLib.fileio.volumes import made_at

    assert made_at(nib.load(out))[1] == (2, 2, 2)  # 'iqt evaluate' still reads its factors


def test_a_model_put_in_the_registry_by_register_is_called_registered(tmp_path):
    _copy(tmp_path, "global-linear_x2", command="iqt train --method global-linear --subjects s -o global-linear_x2.npz")
    mine = _copy(tmp_path, "mine_x2", command="iqt train --method global-linear --subjects s -o mine_x2.npz --register")
    assert model_files.model_origin(tmp_path / "global-linear_x2.json", given=False) == ("global-linear_x2.npz", "shipped")
    assert model_files.model_origin(mine.with_suffix(".json"), given=False) == ("mine_x2.npz", "registered")
    model_files.register(json.loads(mine.with_suffix(".json").read_text()), mine, tmp_path)
    assert model_files.registered_factor_sets("global-linear", tmp_path) == [(2, 2, 2)]
    assert _listed([2, 3], [2]) == "x2 (registered with 'iqt train --register'), x3"


def test_a_model_given_without_method_runs_the_method_its_sidecar_names(lr, tmp_path, capsys):
    """`--model` without `--method` ran the default method with that file, so any model but the default method's
    (here a global-linear one, with deep the default) was refused as another method's."""
    model = _copy(tmp_path, "mine")
    out = tmp_path / "o.nii.gz"
    assert main(["upsample", str(lr), "-o", str(out), "--model", str(model)]) == 0
    assert f"(global-linear, given model {model})" in capsys.readouterr().out
    descrip = nib.load(out).header["descrip"].tobytes().split(b"\0")[0].decode()
    assert descrip == "iqt global-linear factor 2 given model mine.npz", descrip


def test_without_method_or_model_the_default_is_deep_at_every_shipped_factor_set():
    """The default is the most accurate shipped method with a model for the factors (README, Deeper network)."""
    pytest.importorskip("torch", reason="PyTorch is not installed: without it the default is biqt")
    from ImageQualityTransferLib import methods

    for f in [(2, 2, 2), (3, 3, 3), (1, 1, 2), (1, 1, 3), (3, 1, 1)]:
        assert methods.default_method(f) == "deep", f
    assert methods.default_method((4, 4, 4)) == "cubic"  # no learned model at x4
