"""The module's through-plane mode and the CLI's through-plane --model (no --factor) choose the axis by one engine
function, orientation.through_plane_axis: on equal voxel sizes stored sagittally (PSR: k is R, j is S) both refine j,
the axis closest to S, along which the shipped through-plane models were trained, whatever the storage order; the
module had refined k. The Logic runs in
Testing/slicer/self_test_in_batch.py's application shell, in a child process, on a real vtkMRMLScene."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ImageQualityTransferLib.apps.cli import options
from ImageQualityTransferLib.fileio import model_files
from ImageQualityTransferLib.slicer import upsampling

from helpers import LAS as LAS_DIR
from helpers import PSR, make_affine, rot

DRIVER = Path(__file__).with_name("self_test_in_batch.py")
AFFINE = make_affine(rot(-6, 9, 4) @ PSR, (2.0, 2.0, 2.0), (10.0, -20.0, 30.0))

SCRIPT = r"""
import sys
import numpy as np
sys.path[:0] = [{testing!r}, {helpers!r}]
import self_test_in_batch as shell
shell.application_shell()
import slicer
sys.path.insert(0, str(shell.MODULE_DIR))
import ImageQualityTransfer as module
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.slicer import mrml
from helpers import random_tensors

logic = module.ImageQualityTransferLogic()
node = mrml.add_tensor_node(slicer.vtkMRMLScene(), Volume(random_tensors((6, 7, 5)), np.array({affine!r}), "tensor"), "sag")
print("logic |", ",".join(str(k) for k in logic.upsamplingFactors(node, "through-plane", 2)))
"""


def test_the_logic_and_the_cli_refine_the_same_axis_of_equal_sagittal_voxels(tmp_path):
    code = SCRIPT.format(testing=str(DRIVER.parent), helpers=str(DRIVER.parent.parent), affine=AFFINE.tolist())
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    logic = next(line.split("| ")[1] for line in run.stdout.splitlines() if line.startswith("logic |"))
    model = Path(model_files.MODELS_DIR) / "biqt_x1x1x2.npz"
    cli = options.factors(argparse.Namespace(voxel_size=None, factor=None, model=str(model)), (2.0, 2.0, 2.0), AFFINE)
    assert ",".join(map(str, cli)) == logic == "1,2,1"  # j, the voxel axis along S


def test_the_closest_axes_are_nibabels_without_nibabel():
    """The numpy copy the module uses before nibabel is installed assigns the axes as io_orientation does."""
    import numpy as np

    from ImageQualityTransferLib.core.orientation import _closest_world_axes, io_orientation, through_plane_axis

    rng = np.random.default_rng(7)
    for _ in range(200):
        a = np.eye(4)
        a[:3, :3] = np.linalg.qr(rng.normal(size=(3, 3)))[0] * rng.uniform(0.5, 4, 3)
        assert _closest_world_axes(a) == [int(x) for x in io_orientation(a)[:, 0]]
    assert through_plane_axis((2, 2, 6), AFFINE) == 2  # thick slices win wherever S lies


LSA = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


def _cli(tmp_path, own, spacing, affine):
    """The factors the CLI runs a user model trained for `own` at, without --factor (a crafted sidecar)."""
    (tmp_path / "m.json").write_text(json.dumps({"factor": list(own)}))
    return options.factors(argparse.Namespace(voxel_size=None, factor=None, model=str(tmp_path / "m.npz")), spacing, affine)


@pytest.mark.parametrize("name, direction, spacing, module, r_model", [
    ("thick axial", LAS_DIR, (2.0, 2.0, 6.0), (1, 1, 3), (1, 1, 3)),
    ("coronal 2x2x2.3", LSA, (2.0, 2.0, 2.3), (1, 3, 1), (3, 1, 1)),
    ("sagittal 2x2x2.3", PSR, (2.0, 2.0, 2.3), (1, 3, 1), (1, 1, 3)),
    ("axial 2.29x2.29x2.2", LAS_DIR, (2.2917, 2.2917, 2.2), (1, 1, 3), (3, 1, 1)),
    ("isotropic sagittal", PSR, (2.0, 2.0, 2.0), (1, 3, 1), (1, 1, 3)),
    ("isotropic axial", LAS_DIR, (2.0, 2.0, 2.0), (1, 1, 3), (3, 1, 1)),
    ("two thick axes", LAS_DIR, (5.0, 5.0, 2.0), (1, 1, 3), (3, 1, 1)),
])
def test_one_rule_for_the_module_and_the_cli(tmp_path, name, direction, spacing, module, r_model):
    """The thick axis (grid.THICK_RATIO times each other), else the voxel axis of the model's slice axis: S for the
    module and a 1,1,3 model, R for a user's 3,1,1 model. The largest spacing within 2 % had split an in-plane axis of
    2.29x2.29x2.2 mm axial scans with the shipped 1,1,3 model (0.18.0 had refined S)."""
    affine = make_affine(direction, spacing, (0.0, 0.0, 0.0))
    assert upsampling.factors_for("through-plane", 3, spacing=spacing, affine=affine) == module, name
    assert _cli(tmp_path, (1, 1, 3), spacing, affine) == module, name
    assert _cli(tmp_path, (3, 1, 1), spacing, affine) == r_model, name
