"""Advanced > Model file reaches the run: Apply read the path, then set the same variable to None (it also held the
label of the model that made the output) before calling the Logic, so the shipped model always ran and nothing said so.
Choosing a model file selects the method it was trained for where the Method list offers it; a model file of another
method than the one chosen is said in the status line before anything runs; the Logic given a
model file and no method runs the model's own method (as `iqt upsample --model` does). The module file runs in
Testing/slicer/self_test_in_batch.py's application shell, in a child process, with a Logic whose `process` records
what it was given."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from ImageQualityTransferLib.fileio import model_files

DRIVER = Path(__file__).with_name("self_test_in_batch.py")

SCRIPT = r"""
import contextlib, sys, types
sys.path[:0] = [{testing!r}, {helpers!r}]
import self_test_in_batch as shell
shell.application_shell()
import slicer
import slicer.util
sys.path.insert(0, str(shell.MODULE_DIR))
import ImageQualityTransfer as module


@contextlib.contextmanager
def tryWithErrorDisplay(message=None, show=True, waitCursor=False):
    yield


slicer.util.tryWithErrorDisplay = tryWithErrorDisplay
logic = module.ImageQualityTransferLogic()
logic.missingPackages = lambda: []
given = []


def process(inputNode, **kwargs):
    given.append(kwargs)
    raise logic.cancelledError()()


logic.process = process
noop = lambda *a, **k: None
widget = types.SimpleNamespace(text="", toolTip="", value=0, setVisible=noop)
params = types.SimpleNamespace(modelPath={model!r}, method="", inputVolume=None, outputVolume=None, maskVolume=None,
                               uncertaintyVolume=None, interpolatedVolume=None, samples=10, useGPU=False,
                               averageFlips=False, excludeOutliers=False, upsamplingMode="isotropic", voxelSize=1.0)
panel = types.SimpleNamespace(_running=False, _cancelRequested=False, logic=logic, _parameterNode=params,
                              _factors=(2, 2, 2), _factorsError="", _updateUpsampling=noop, _setInputsEnabled=noop,
                              _checkCanApply=noop, _onProgress=noop,
                              ui=types.SimpleNamespace(statusLabel=types.SimpleNamespace(text=""), applyButton=widget,
                                                       progressBar=widget))
for method in ("global-linear", "deep"):
    params.method = method
    given.clear()
    module.ImageQualityTransferWidget.onApplyButton(panel)
    print(method, "|", [(g["method"], g["modelPath"]) for g in given], "|", panel.ui.statusLabel.text)
print("logic method |", logic.modelMethod({model!r}))
params.modelPath, params.method = "", "deep"
panel._methods = [dict(name=n) for n in ("cubic", "global-linear", "deep")]
panel._updateMethodGui = noop
module.ImageQualityTransferWidget.onModelPathChanged(panel, {model!r})
print("chosen |", params.method, params.modelPath == {model!r})
panel._methods = [dict(name=n) for n in ("cubic", "deep")]  # the list at factors the model's method has none for
params.modelPath, params.method = "", "deep"
module.ImageQualityTransferWidget.onModelPathChanged(panel, {model!r})
print("not offered |", params.method)
"""


def test_the_model_file_reaches_the_run_selects_its_method_and_one_of_another_method_is_said(tmp_path):
    src = Path(model_files.MODELS_DIR) / "global-linear_x2"
    model = tmp_path / "mine.npz"
    shutil.copy(src.with_suffix(".npz"), model)
    side = json.loads(src.with_suffix(".json").read_text())
    side["weights"] = model.name
    (tmp_path / "mine.json").write_text(json.dumps(side))
    code = SCRIPT.format(testing=str(DRIVER.parent), helpers=str(DRIVER.parent.parent), model=str(model))
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout.splitlines()
    assert f"global-linear | [('global-linear', '{model}')] | Cancelled." in out, run.stdout
    assert ("deep | [] | The model file is a global-linear model: choose global-linear as the Method to run it, or "
            "clear Advanced > Model file") in out, run.stdout
    assert "logic method | global-linear" in out, run.stdout
    assert "chosen | global-linear True" in out, run.stdout  # choosing the file selects its method
    assert "not offered | deep" in out, run.stdout
