"""The module's own Slicer self-test (ImageQualityTransferTest.test_Phantom, what Slicer's "Reload and Test" and the
extension's CTest run) on a real vtkMRMLScene, in a child process so that the application shell it is given
(Testing/slicer/self_test_in_batch.py) stays out of this one. test_DTIBrain downloads Slicer's sample data and is
left to Slicer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("slicer", reason="the self-test needs slicer-core (pip install slicer-core)")

DRIVER = Path(__file__).with_name("self_test_in_batch.py")


@pytest.mark.slow
def test_the_module_self_test_passes(tmp_path):
    pytest.importorskip("torch", reason="the self-test runs every method, the CNNs need torch (the cnn extra)")
    run = subprocess.run([sys.executable, str(DRIVER), "test_Phantom"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Phantom test passed" in run.stdout


WITH_MAIN_WINDOW = r"""
import types
slicer.app.commandOptions = lambda: types.SimpleNamespace(noMainWindow=False)
from ImageQualityTransferLib.slicer import mrml, processing
from ImageQualityTransferLib.dmri import degrade, dti
from ImageQualityTransferLib.dmri.phantom import make_phantom

calls = []
real = processing.predict_in_subprocess
processing.predict_in_subprocess = lambda *a, **k: calls.append(k.get("python_executable")) or real(*a, **k)
module.ImageQualityTransferLogic.pythonSlicerExecutable = staticmethod(lambda: sys.executable)
dwi = make_phantom(shape=(24, 24, 20), voxel_mm=2.0, n_dirs=12)
lr = degrade.degrade(dwi, dti.brain_mask(dwi).data, 2).tensor
node = mrml.add_tensor_node(slicer.mrmlScene, lr, "dti")
nodes = module.ImageQualityTransferLogic().process(node, method="biqt", factor=2)
assert nodes["tensor"] is not None and nodes["uncertainty"] is not None
print("worker calls", len(calls))
"""


def test_with_a_main_window_every_method_runs_in_the_worker(logic_default_at_5):
    """The Logic with a main window runs even a forest in the separate process (the GUI stays live, Cancel kills it);
    in batch mode it runs in-process, as the module's self-test above does. Run last in the Logic tests' child, once
    its batch-mode runs are done (the Logic reads the main window's absence at each run)."""
    out = logic_default_at_5
    assert "worker calls 1" in out, out[-2000:]


LOGIC_RUN = r"""
import sys
sys.path.insert(0, {testing!r})
import self_test_in_batch as shell
shell.application_shell()
import slicer
sys.path.insert(0, str(shell.MODULE_DIR))
import ImageQualityTransfer as module
from ImageQualityTransferLib.core.errors import IQTError
logic = module.ImageQualityTransferLogic()
try:
    logic.process(None)
except IQTError as exc:
    print("refused:", exc)
{more}
"""


def logic_run(tmp_path, more: str = "") -> str:
    code = LOGIC_RUN.format(testing=str(DRIVER.parent), more=more)
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def test_the_logic_refuses_no_input_in_the_engines_words(logic_default_at_5):
    """Logic.process(None) raises the engine's IQTError, shown as the panel's words (it was a plain ValueError)."""
    out = logic_default_at_5  # LOGIC_RUN tries process(None) first, whatever `more` it runs after
    assert "refused: no input volume: select a diffusion tensor (DTI) or diffusion-weighted (DWI) volume" in out


DEFAULT_AT_5 = r"""
from ImageQualityTransferLib.slicer import mrml
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.core import tensors
import numpy as np
d = np.broadcast_to(tensors.from_matrix(np.diag([1.7e-3, 3e-4, 3e-4])), (6, 6, 5, 6)).astype(np.float32)
node = mrml.add_tensor_node(slicer.mrmlScene, Volume(d, np.diag([3.0, 3.0, 3.0, 1.0]), "tensor"), "dti")
for factor, method in ((5, None), (5, "cubic")):
    nodes = logic.process(node, method=method, factor=factor)
    print(factor, method, "notes:", repr(nodes["tensor"].GetAttribute(mrml.NOTES_ATTRIBUTE)))
"""


WITHOUT_A_MODEL = r"""
big = mrml.add_tensor_node(slicer.mrmlScene, Volume(d, np.diag([6.0, 6.0, 6.0, 1.0]), "tensor"), "dti6")
for kwargs in ({"method": "deep", "factor": 4}, {"method": "deep", "voxelSize": 1.5}):
    before = slicer.mrmlScene.GetNumberOfNodes()
    try:
        logic.process(big, **kwargs)
        print("ran:", kwargs)
    except IQTError as exc:
        print("refused", kwargs["method"], kwargs.get("voxelSize"), "nodes made", slicer.mrmlScene.GetNumberOfNodes() - before,
              "|", exc)
nodes = logic.process(big, voxelSize=1.5)
print("default at 1.5 mm notes:", repr(nodes["tensor"].GetAttribute(mrml.NOTES_ATTRIBUTE)))
nodes = logic.process(big, method="cubic", voxelSize=1.5)
print("cubic at 1.5 mm:", nodes["tensor"].GetImageData().GetDimensions())
"""


MODEL_FOR_OTHER_FACTORS = r"""
model = str(shell.MODULE_DIR / "Resources" / "Models" / "biqt_x1x1x3.npz")
thick = mrml.add_tensor_node(slicer.mrmlScene, Volume(d, np.diag([2.0, 2.0, 6.0, 1.0]), "tensor"), "dti226")
def model_refused(where):
    before = slicer.mrmlScene.GetNumberOfNodes()
    try:
        logic.process(thick, modelPath=model, voxelSize=1.5)
        print("ran with the model", where)
    except IQTError as exc:
        print("model refused", where, "nodes made", slicer.mrmlScene.GetNumberOfNodes() - before, "|", exc)
model_refused("in batch")
"""


@pytest.fixture(scope="module")
def logic_default_at_5(tmp_path_factory):
    """One child process for the Logic tests: LOGIC_RUN's process(None), then DEFAULT_AT_5 and WITHOUT_A_MODEL in batch
    mode, then WITH_MAIN_WINDOW (a Slicer shell and the engine imported once, not four times)."""
    return logic_run(tmp_path_factory.mktemp("logic"), DEFAULT_AT_5 + WITHOUT_A_MODEL + MODEL_FOR_OTHER_FACTORS
                     + WITH_MAIN_WINDOW + 'model_refused("in the worker")\n')


def test_a_learned_method_without_a_model_is_refused_before_any_node_as_the_command_line_refuses_it(logic_default_at_5):
    """The Logic asked for deep at factor 4 (no model ships) had no rule of its own, and with the Target voxel size
    named neither the voxel size it chose nor a coarser one whose factors have a model, as iqt upsample does (a review
    of issue 14): the engine's rule (methods/factor_choice.py) refuses it in the module's words before any node is
    made; the default falls back to cubic with a note naming the coarser voxel size; cubic runs at any factors."""
    out = logic_default_at_5
    lines = out.splitlines()
    by_factor = next(line for line in lines if line.startswith("refused deep None"))
    assert "nodes made 0 |" in by_factor and "deep has shipped models for factor 2" in by_factor, out[-3000:]
    assert "choose an Advanced > Model file for factor 4" in by_factor and "give --model" not in by_factor, by_factor
    by_size = next(line for line in lines if line.startswith("refused deep 1.5"))
    assert "nodes made 0 |" in by_size, by_size
    assert ("the Target voxel size 1.5 chose factor 4: output voxel size 1.5x1.5x1.5 mm (input 6x6x6 mm); deep has "
            "shipped models") in by_size, by_size
    assert by_size.endswith("; the Target voxel size 2 gives factor 3 (2x2x2 mm voxels), for which models ship"), by_size
    note = next(line for line in lines if line.startswith("default at 1.5 mm notes:"))
    assert ("the interpolation baseline (cubic) ran; choose a Method and an Advanced > Model file trained for these "
            "factors for a learned one; the Target voxel size 2 gives factor 3") in note, note
    assert "cubic at 1.5 mm: (24, 24, 20)" in out, out[-3000:]


def test_the_default_method_at_factors_without_a_model_says_it_ran_interpolation(logic_default_at_5):
    """In batch the default method at factors no learned model ships for is cubic: the run's notes say so (it had
    become cubic without a word); a method chosen by name adds no such note."""
    out = logic_default_at_5
    note = ("no learned model ships for factor 5, so the interpolation baseline (cubic) ran; choose a Method and an "
            "Advanced > Model file trained for these factors for a learned one")
    default, named = (line for line in out.splitlines() if line.startswith("5 "))
    assert default.startswith("5 None notes:") and note in default, out
    assert named.startswith("5 cubic notes:") and "no learned model" not in named, out


def test_a_model_file_for_other_factors_than_the_target_voxel_size_chose_names_the_one_that_runs_it(logic_default_at_5):
    """Advanced > Model file (biqt_x1x1x3) with the Target voxel size 1.5 on a 2x2x6 mm volume (factors 2,2,4): the
    Logic had said the loader's refusal alone, where `iqt upsample --model --voxel-size` names --voxel-size 2, which
    gives the model's own factors (methods/factor_choice.py model_hint, one function for both); in batch mode (the run
    in-process) and with a main window (the run in the worker process), before any node is made."""
    out = logic_default_at_5
    for where in ("in batch", "in the worker"):
        line = next((x for x in out.splitlines() if x.startswith(f"model refused {where} ")), None)
        assert line is not None and "nodes made 0 |" in line, out[-3000:]
        assert "the Target voxel size 1.5 chose factors 2,2,4: output voxel size 1x1x1.5 mm (input 2x2x6 mm); " in line
        assert "this biqt model is for factors 1,1,3, not 2,2,4" in line and "--" not in line, line
        assert line.endswith("; the Target voxel size 2 gives factors 1,1,3 (2x2x2 mm voxels), which the given model "
                             "serves"), line
