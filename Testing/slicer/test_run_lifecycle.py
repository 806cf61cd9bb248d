"""A module run whose world changes under it (a Slicer reviewer's audit): the scene closed or the input deleted while
the method runs adds nothing to the scene (it had put the old patient's result into the next patient's scene); a
progress callback that raises, or Ctrl-C in a batch script, stops the worker process at once (the run had waited
for the worker to finish); the Logic's callback always gets a number; and the panel's last result is the parameter
node's, so a closed scene's nodes are never acted on and a reopened scene's are."""

from __future__ import annotations

import ast
import subprocess
import sys
import types

import numpy as np
import pytest

from ImageQualityTransferLib.core.volume import Volume

from helpers import REPO, random_tensors

MODULE_PY = REPO / "ImageQualityTransfer" / "ImageQualityTransfer.py"


def _class_method(cls_name, name, **space):
    tree = ast.parse(MODULE_PY.read_text())
    cls = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == cls_name)
    fn = next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == name)
    fn.decorator_list = []
    namespace = {"Optional": None, **space}
    exec(compile(ast.Module([fn], []), str(MODULE_PY), "exec"), namespace)
    return namespace[name]


# ---------------------------------------------------------------- the engine, on a real vtkMRMLScene


@pytest.fixture
def scene_and_node():
    slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")
    from ImageQualityTransferLib.slicer import mrml

    scene = slicer.vtkMRMLScene()
    node = mrml.add_tensor_node(scene, Volume(random_tensors((6, 7, 5), seed=1), np.diag([2.0, 2.0, 2.0, 1.0]),
                                              "tensor"), "in")
    return scene, node


def _volumes(scene):
    return [scene.GetNthNode(i).GetName() for i in range(scene.GetNumberOfNodes())
            if scene.GetNthNode(i).IsA("vtkMRMLVolumeNode")]


@pytest.mark.filterwarnings("ignore:the input holds tensors over the whole field of view")
@pytest.mark.parametrize("how", ["scene closed", "input deleted"])
def test_a_run_whose_input_leaves_the_scene_adds_nothing(scene_and_node, how):
    from ImageQualityTransferLib.slicer import processing

    scene, node = scene_and_node

    def progress(fraction, message):
        if message == "running cubic (x2)":  # the method is running
            scene.Clear(0) if how == "scene closed" else scene.RemoveNode(node)

    with pytest.raises(processing.Cancelled) as err:
        processing.run_on_nodes(scene, node, "cubic", 2, interpolate=True, progress=progress)
    assert "input volume left the scene" in str(err.value) and "no output was created" in str(err.value)
    assert _volumes(scene) == []


@pytest.mark.filterwarnings("ignore:the input holds tensors over the whole field of view")
def test_a_run_whose_input_stays_makes_its_nodes(scene_and_node):
    from ImageQualityTransferLib.slicer import processing

    scene, node = scene_and_node
    nodes = processing.run_on_nodes(scene, node, "cubic", 2)
    assert scene.IsNodePresent(nodes["tensor"]) and nodes["tensor"].GetName() in _volumes(scene)


@pytest.mark.filterwarnings("ignore:the input holds tensors over the whole field of view")
def test_a_progress_callback_that_raises_stops_the_worker_process(scene_and_node, monkeypatch):
    from ImageQualityTransferLib.slicer import processing, separate_process

    scene, node = scene_and_node
    started = []
    popen = subprocess.Popen

    def recording(argv, *a, **k):
        # the worker's own command, held before it starts working: under load the real worker of this small input could
        # end before the parent's first keep-alive call, and a process that ended cannot show it was stopped
        held = [argv[0], "-c", "import time; time.sleep(60)"]
        started.append(popen(held, *a, **k))
        return started[-1]

    monkeypatch.setattr(separate_process.subprocess, "Popen", recording)

    def progress(fraction, message):
        if started and fraction is None:  # the worker runs: the caller's callback fails
            raise RuntimeError("the caller's callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        processing.run_on_nodes(scene, node, "cubic", 2, progress=progress, python_executable=sys.executable)
    proc = started[0]
    assert proc.returncode is not None and proc.returncode < 0  # stopped by a signal, not run to its end
    assert _volumes(scene) == ["in"]


@pytest.mark.filterwarnings("ignore:the input holds tensors over the whole field of view")
def test_deleting_the_input_stops_the_worker_process_at_once_and_says_why(scene_and_node, monkeypatch):
    """The worker had run on to its end (8-11 s on a 3 mm scan) after the input node was deleted, then said nothing."""
    from ImageQualityTransferLib.slicer import processing, separate_process

    scene, node = scene_and_node
    started = []
    popen = subprocess.Popen

    def recording(argv, *a, **k):  # a worker that would work 30 s: under a loaded CI a 3 s one ended (0) first
        started.append(popen([argv[0], "-c", "import time; time.sleep(30)"], *a, **k))
        return started[-1]

    monkeypatch.setattr(separate_process.subprocess, "Popen", recording)

    def progress(fraction, message):
        if started and fraction is None and scene.IsNodePresent(node):
            scene.RemoveNode(node)

    with pytest.raises(processing.Cancelled, match="input volume left the scene"):
        processing.run_on_nodes(scene, node, "cubic", 2, progress=progress, python_executable=sys.executable)
    assert started[0].returncode is not None and started[0].returncode < 0  # stopped, not waited for
    assert _volumes(scene) == []


# ---------------------------------------------------------------- the module file (the Logic and the panel need Slicer)


def test_the_logic_s_callback_always_gets_a_fraction():
    """The engine's heartbeat (None, None) reaches the Logic's caller as the last fraction: `f"{f:.0%}"` works."""
    calls = []

    class Engine:
        @staticmethod
        def method_needs_torch(method):
            return False

        @staticmethod
        def choose_factors(*a, **k):  # the engine's factor rule (slicer/processing.py): nothing refused here
            return types.SimpleNamespace(refusal="", hint="")

        @staticmethod
        def method_info(method):
            return {"learned": True}

        @staticmethod
        def run_on_nodes(*a, progress, **k):
            for fraction, message in ((None, None), (0.0, "reading"), (None, None), (0.4, "cubic"), (None, None)):
                progress(fraction, message)
            return {"tensor": None}

    logic = types.SimpleNamespace(engine=lambda: Engine, _batch=lambda: True, torchAvailable=lambda: True,
                                  pythonSlicerExecutable=lambda: "PythonSlicer", engineError=lambda: RuntimeError)
    process = _class_method("ImageQualityTransferLogic", "process", _=lambda text: text,
                            logging=types.SimpleNamespace(info=lambda *a: None), slicer=types.SimpleNamespace(mrmlScene=None))
    process(logic, object(), method="cubic", progressCallback=lambda f, m: calls.append((f"{f:.0%}", m)))
    assert calls == [("0%", None), ("0%", "reading"), ("0%", None), ("40%", "cubic"), ("40%", None)]


def _panel(parameter_node, last=None, running=False):
    panel = types.SimpleNamespace(_parameterNode=parameter_node, _lastResult=last, _running=running,
                                  _cancelRequested=False, setParameterNode=lambda p: None, filled=[])
    panel._fillMapCombo = panel.filled.append  # the Uncertainty map list, as the panel refills it
    return panel


def test_the_panel_s_last_result_is_the_parameter_node_s():
    result = _class_method("ImageQualityTransferWidget", "_result")
    tensor, unc, cubic = object(), object(), object()
    run = {"tensor": tensor, "uncertainty": unc, "interpolated": cubic, "uncertainties": {"std": unc}}
    kept = types.SimpleNamespace(resultVolume=tensor, resultUncertainty=unc, resultInterpolated=cubic)
    assert result(_panel(kept, run)) is run  # this session's run, with every map
    # a saved scene opened again: what the parameter node kept, and the run's maps the Logic finds in the scene
    reopened = _panel(kept)
    reopened.logic = types.SimpleNamespace(runMaps=lambda node, shown: {"std": shown} if node is tensor else {})
    assert result(reopened) == {"tensor": tensor, "uncertainty": unc, "interpolated": cubic, "uncertainties": {"std": unc}}
    # the output left the scene (MRML drops the reference): nothing to compare or to send to tractography
    gone = types.SimpleNamespace(resultVolume=None, resultUncertainty=None, resultInterpolated=None)
    assert result(_panel(gone, run)) == {}
    assert result(_panel(None, run)) == {}  # the scene closed


def test_closing_the_scene_cancels_the_run_and_forgets_its_result():
    close = _class_method("ImageQualityTransferWidget", "onSceneStartClose")
    panel = _panel(object(), last={"tensor": object()}, running=True)
    close(panel, None, None)
    assert panel._cancelRequested is True and panel._lastResult is None and panel.filled == [{}]  # no map listed
    idle = _panel(object(), last={"tensor": object()})
    close(idle, None, None)
    assert idle._cancelRequested is False and idle._lastResult is None


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_worker_killed_by_the_system_is_said_so_with_what_to_do():
    """A Slicer-module audit: a worker killed mid-run (SIGKILL; on Linux usually the out-of-memory killer) said only
    "exit status -9: no message". The line now says it was killed, most often for want of memory, and what to try."""
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.slicer import separate_process

    kill_self = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    with pytest.raises(IQTError) as caught:
        separate_process._run_worker([sys.executable, "-c", kill_self], None, None)
    said = str(caught.value)
    assert "killed by the system (SIGKILL)" in said and "memory" in said and "Average over flips" in said, said
    assert "\n" not in said and "-9" not in said
    assert separate_process.exit_words(-15) == "stopped by SIGTERM" and separate_process.exit_words(3) == "exit status 3"
    assert separate_process.exit_words(137) == separate_process.exit_words(-9)  # passed on by a launcher or shell


def test_the_worker_is_slicers_python_launcher_from_the_application_folder(tmp_path, monkeypatch):
    """Without PythonSlicer on PATH the worker is Slicer's launcher in the application's bin folder, where Slicer
    keeps it (a Slicer-module audit: the fallback was sys.executable, which inside Slicer can be the application)."""
    import os
    import shutil

    (tmp_path / "bin").mkdir()
    launcher = tmp_path / "bin" / ("PythonSlicer.exe" if os.name == "nt" else "PythonSlicer")
    launcher.write_text("")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    app = types.SimpleNamespace(slicerHome=str(tmp_path))
    find = _class_method("ImageQualityTransferLogic", "pythonSlicerExecutable", shutil=shutil, os=os, sys=sys,
                         slicer=types.SimpleNamespace(app=app))
    assert find() == str(launcher)
    launcher.unlink()
    assert find() == sys.executable  # nothing else found


class _Combo:
    """The little of a QComboBox the panel's Uncertainty map code uses."""

    def __init__(self):
        self.items, self.currentIndex, self.enabled, self.blocked = [], -1, True, False

    def blockSignals(self, block):
        was, self.blocked = self.blocked, block
        return was

    def clear(self):
        self.items, self.currentIndex = [], -1

    def addItem(self, text, data):
        self.items.append((text, data))
        self.currentIndex = max(self.currentIndex, 0)

    def itemData(self, index):
        return self.items[index][1] if 0 <= index < len(self.items) else None


def test_the_uncertainty_map_list_is_the_runs_and_a_choice_shows_it():
    """Display → Uncertainty map (the panel's code, run on a stand-in combo): the run's maps by their legends' titles,
    the chosen map selected where the run has it, else its main map; choosing one shows it and makes it the map
    Compare and the opacity act on; an empty run or a closed scene leaves the list empty and off."""
    fill = _class_method("ImageQualityTransferWidget", "_fillMapCombo")
    changed = _class_method("ImageQualityTransferWidget", "onUncertaintyMapChanged")
    std, direction = object(), object()
    run = {"tensor": object(), "uncertainty": std, "uncertainties": {"std": std, "direction": direction}}
    shown = []
    logic = types.SimpleNamespace(legendTitle=lambda key: {"std": "Tensor SD", "direction": "Direction SD"}[key],
                                  showUncertaintyMap=lambda nodes, key, opacity: shown.append((key, opacity)) or
                                  nodes["uncertainties"][key])
    p = types.SimpleNamespace(uncertaintyMap="direction", uncertaintyOpacity=0.3, resultUncertainty=std)
    panel = _panel(p, last=run)
    panel.ui, panel.logic = types.SimpleNamespace(uncertaintyMapComboBox=_Combo()), logic
    panel._result = lambda: run
    combo = panel.ui.uncertaintyMapComboBox
    fill(panel, run)
    assert combo.items == [("Tensor SD", "std"), ("Direction SD", "direction")] and combo.currentIndex == 1
    assert combo.enabled and not combo.blocked
    p.uncertaintyMap = "fa_std"  # a map this run lacks: its main one
    fill(panel, run)
    assert combo.currentIndex == 0
    changed(panel, 1)
    assert shown == [("direction", 0.3)] and p.uncertaintyMap == "direction" and p.resultUncertainty is direction
    fill(panel, {})
    assert combo.items == [] and not combo.enabled
    changed(panel, -1)  # the empty list's signal: nothing shown
    assert len(shown) == 1


def test_a_run_stopped_without_cancel_says_why_in_the_status_line():
    """The input deleted mid-run: the status line had said "Cancelled." with Cancel never pressed."""
    import contextlib

    from ImageQualityTransferLib.slicer.processing import Cancelled

    tree = ast.parse(MODULE_PY.read_text())
    fn = next(f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "runStatusText")
    space = {"_": lambda text: text, "Optional": None}
    exec(compile(ast.Module([fn], []), str(MODULE_PY), "exec"), space)
    why = "the input volume left the scene while it was processed (the scene was closed or the node deleted)"
    stub = types.SimpleNamespace(util=types.SimpleNamespace(tryWithErrorDisplay=lambda *a, **k: contextlib.nullcontext()),
                                 mrmlScene=None)
    apply = _class_method("ImageQualityTransferWidget", "onApplyButton", _=lambda text: text, slicer=stub,
                          runStatusText=space["runStatusText"])
    noop = lambda *a, **k: None  # noqa: E731

    def process(*a, **k):
        raise Cancelled(why)

    widget = types.SimpleNamespace(text="", toolTip="", value=0, setVisible=noop)
    params = types.SimpleNamespace(modelPath="", method="cubic", inputVolume=None, outputVolume=None, maskVolume=None,
                                   uncertaintyVolume=None, interpolatedVolume=None, samples=10, useGPU=False,
                                   averageFlips=False, excludeOutliers=False, upsamplingMode="isotropic", voxelSize=1.0)
    panel = types.SimpleNamespace(
        _running=False, _cancelRequested=False, _parameterNode=params, _factors=(2, 2, 2), _updateUpsampling=noop,
        _setInputsEnabled=noop, _checkCanApply=noop, _onProgress=noop,
        logic=types.SimpleNamespace(missingPackages=lambda: [], bundledPackagesProblem=lambda: "", process=process, cancelledError=lambda: Cancelled),
        ui=types.SimpleNamespace(statusLabel=types.SimpleNamespace(text=""), applyButton=widget, progressBar=widget))
    apply(panel)
    assert panel.ui.statusLabel.text == "Stopped: " + why


@pytest.mark.filterwarnings("ignore:the input holds tensors over the whole field of view")
def test_average_over_flips_for_interpolation_is_refused_in_the_module_s_words(scene_and_node):
    """The Logic had run cubic with averageFlips=True as plain cubic, no '+tta' and no note, where `iqt upsample
    --method cubic --tta` is refused; the panel passes it for learned methods only (the box is greyed out otherwise)."""
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.slicer import processing

    scene, node = scene_and_node
    with pytest.raises(IQTError) as err:
        processing.run_on_nodes(scene, node, "cubic", 2, tta=True, interpolate=True)
    assert str(err.value) == ("method 'cubic' is unchanged by flips and swaps (nothing to average); Advanced > Average "
                              "over flips applies to the learned methods: turn it off")
    assert _volumes(scene) == ["in"]
    tree = ast.parse(MODULE_PY.read_text())
    widget = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "ImageQualityTransferWidget")
    apply = next(f for f in widget.body if isinstance(f, ast.FunctionDef) and f.name == "onApplyButton")
    call = next(c for c in ast.walk(apply) if isinstance(c, ast.Call) and ast.unparse(c.func) == "self.logic.process")
    flips = ast.unparse(next(k.value for k in call.keywords if k.arg == "averageFlips"))
    assert "learned" in flips  # not p.averageFlips alone


@pytest.mark.filterwarnings("ignore:the input holds tensors over the whole field of view")
def test_an_unknown_method_is_refused_with_the_methods_of_the_method_list(scene_and_node):
    """The Logic's refusal of method="foo" had said "(see 'iqt methods')" and listed two methods with no shipped model
    among the choices."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.slicer import processing

    scene, node = scene_and_node
    unshipped = [e["name"] for e in methods.describe() if e["learned"] and not e["shipped"]]
    for name, hint in (("foo", None), ("Cubic", "did you mean 'cubic'?")):
        for call in (lambda: processing.method_needs_torch(name), lambda: processing.run_on_nodes(scene, node, name, 2)):
            with pytest.raises(IQTError) as err:
                call()
            text = str(err.value)
            assert text.startswith(f"unknown method {name!r}") and "iqt methods" not in text and "\n" not in text
            choices = text.split("choose one of the Method list's: ")[1].split(" (")[0].split(", ")
            assert "cubic" in choices and "biqt" in choices and not set(unshipped) & set(choices)
            assert (hint in text) if hint else "did you mean" not in text
    assert _volumes(scene) == ["in"]


def _logic_process(learned: bool):
    """Logic.process on stand-ins: the engine's run_on_nodes records its keywords; the default method is cubic."""
    import logging

    space = {"_": lambda text: text, "Optional": None, "logging": logging, "factorsText": str,
             "slicer": types.SimpleNamespace(mrmlScene=None)}
    process = _class_method("ImageQualityTransferLogic", "process", **space)
    runs, notes = [], []
    tensor = object()

    def run_on_nodes(scene, node, method, **kwargs):
        runs.append((method, kwargs["tta"]))
        return {"tensor": tensor}

    sp = types.SimpleNamespace(method_needs_torch=lambda m: False, run_on_nodes=run_on_nodes,
                               method_info=lambda m: {"learned": learned and m != "cubic"},
                               choose_factors=lambda *a, **k: types.SimpleNamespace(refusal="", hint=""))
    logic = types.SimpleNamespace(engine=lambda: sp, defaultMethod=lambda factor, node: "cubic", _batch=lambda: True,
                                  _outputAnisotropy=lambda node, factor: None, modelMethod=lambda path: None,
                                  _addNote=lambda node, note: notes.append(note), torchAvailable=lambda: True)
    return (lambda **kwargs: process(logic, "input", **kwargs)), runs, notes


def test_average_over_flips_is_dropped_with_a_note_where_the_logic_chose_cubic():
    """logic.process(node, factor=(1,1,3), averageFlips=True) with the method left to the Logic had been refused where
    the Logic itself chose cubic; a caller who names cubic is still refused by the engine (tta passed on)."""
    run, runs, notes = _logic_process(learned=True)
    run(factor=(1, 1, 3), averageFlips=True)
    assert runs == [("cubic", False)]
    assert notes[-1].startswith("Average over flips was left out: the interpolation baseline (cubic)")
    run(method="cubic", factor=(1, 1, 3), averageFlips=True)
    assert runs[-1] == ("cubic", True) and len(notes) == 2  # the engine refuses it (test above); no note of ours


@pytest.mark.parametrize("window", [False, True])
def test_without_a_main_window_interpolation_runs_in_process_and_a_torch_method_asks_nothing(window):
    """The Logic's `_batch()` (no main window: Slicer --no-main-window) decides where a run goes and whether anything is
    asked: in batch cubic runs in this process and a torch method without PyTorch is refused unasked; with a main window
    cubic runs in a separate process (the GUI stays live) and PyTorch's install is offered. `_batch()` always False had
    passed the run's tests (a mutation run; only test_headless_install's engine install caught it): batch scripts
    would have started a worker for cubic and offered a dialog no one can answer."""
    options = types.SimpleNamespace(noMainWindow=not window)
    slicer = types.SimpleNamespace(mrmlScene=None, app=types.SimpleNamespace(commandOptions=lambda: options))
    batch = _class_method("ImageQualityTransferLogic", "_batch", slicer=slicer)
    asked, ran = [], []

    class Engine:
        @staticmethod
        def method_needs_torch(method):
            return method == "espcn"

        @staticmethod
        def choose_factors(*a, **k):  # the engine's factor rule (slicer/processing.py): nothing refused here
            return types.SimpleNamespace(refusal="", hint="")

        @staticmethod
        def method_info(method):
            return {"learned": method == "espcn"}

        @staticmethod
        def run_on_nodes(*a, python_executable, **k):
            ran.append(python_executable)
            return {"tensor": None}

    logic = types.SimpleNamespace(engine=lambda: Engine, _batch=batch, torchAvailable=lambda: False,
                                  installTorch=lambda askConfirmation: asked.append(askConfirmation) or False,
                                  pythonSlicerExecutable=lambda: "PythonSlicer", engineError=lambda: RuntimeError)
    process = _class_method("ImageQualityTransferLogic", "process", _=lambda text: text, slicer=slicer,
                            logging=types.SimpleNamespace(info=lambda *a: None))
    process(logic, object(), method="cubic")
    assert ran == (["PythonSlicer"] if window else [None])
    with pytest.raises(RuntimeError, match="needs PyTorch"):
        process(logic, object(), method="espcn")
    assert asked == ([True] if window else [])
    assert _class_method("ImageQualityTransferLogic", "_batch", slicer=types.SimpleNamespace(app=None))()  # no app
