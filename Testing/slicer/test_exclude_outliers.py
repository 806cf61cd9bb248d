"""The Slicer module's Inputs > Exclude outliers: a DWI input node is fitted without the slices and volumes the tensor
model does not fit (dmri/outliers.py), as `iqt fit --exclude-outliers` fits the same series, in this process and in
the worker process (`Request.worker_args` -> slicer/worker.py `--exclude-outliers` -> `processing.fit_dwi(exclude=)`),
and the run's note says what was left out; off (the default) the fit is today's, every volume in it. The panel: a
parameter-node bool bound to a checkbox, passed by the Logic, enabled for a DWI input only. Real slicer-core, no
mocks."""

from __future__ import annotations

import ast
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")

from helpers import REPO, dwi_node, run_notes as _notes  # noqa: E402
from ImageQualityTransferLib import fileio  # noqa: E402
from ImageQualityTransferLib.apps import cli  # noqa: E402
from ImageQualityTransferLib.dmri.dti import B0_THRESHOLD  # noqa: E402
from ImageQualityTransferLib.dmri.phantom import make_phantom  # noqa: E402
from ImageQualityTransferLib.slicer import mrml, processing  # noqa: E402

MODULE_PY = REPO / "ImageQualityTransfer" / "ImageQualityTransfer.py"
UI_FILE = REPO / "ImageQualityTransfer" / "Resources" / "UI" / "ImageQualityTransfer.ui"
DRIVER = Path(__file__).with_name("self_test_in_batch.py")
OUTLIERS = "the tensor model does not fit parts of the series"


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A phantom DWI with slices 14-15 of its 3rd diffusion-weighted volume at 20 % and its 6th zero; `iqt fit` of it
    as a file, with and without --exclude-outliers (tensors, and the brain mask it fitted in)."""
    dwi = make_phantom(shape=(32, 36, 28), voxel_mm=4.0, n_dirs=12)
    d = np.array(dwi.data)
    dw = np.flatnonzero(dwi.bvals > B0_THRESHOLD)
    d[:, :, [14, 15], dw[2]] *= 0.2
    d[..., dw[5]] = 0.0
    bad = dwi.replace(data=d)
    folder = tmp_path_factory.mktemp("exclude_outliers")
    fileio.save_dwi(bad, folder / "bad.nii.gz")
    ref = {}
    for name, option in (("off", []), ("on", ["--exclude-outliers"])):
        out, mask = folder / f"{name}.nii.gz", folder / f"{name}_mask.nii.gz"
        assert cli.main(["fit", str(folder / "bad.nii.gz"), *option, "-o", str(out), "--mask-out", str(mask)]) == 0
        ref[name] = fileio.load_tensor(out), fileio.load_mask(mask)
    return bad, dw, ref


def _same(a, b):
    """Equal but for the file round trip (NIfTI, FSL bvec text) `iqt fit`'s tensors went through."""
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * float(np.abs(b).max()))


@pytest.mark.slow
def test_exclude_outliers_fits_a_dwi_node_as_iqt_fit_exclude_outliers_does(series):
    bad, dw, ref = series
    scene = slicer.vtkMRMLScene()
    node = dwi_node(scene, bad)
    for name, exclude in (("off", False), ("on", True)):
        lr, mask = processing.input_volumes(node, exclude=exclude)
        want, want_mask = ref[name]
        np.testing.assert_array_equal(mask.data.astype(bool), want_mask.data.astype(bool))
        _same(lr.data, want.data)  # as iqt fit wrote them
    off, on = (ref[name][0].data for name in ("off", "on"))
    assert np.abs(on - off).max() > 0.1 * np.abs(off).max()  # the option changes the tensors: not the same fit twice
    assert processing.input_volumes(node)[0].data.tobytes() == processing.input_volumes(node, exclude=False)[0].data.tobytes()

    # through the nodes: the result is the upsampling of those tensors, and the note says what was left out
    for name, exclude in (("off", False), ("on", True)):
        nodes = processing.run_on_nodes(scene, node, "cubic", 2, exclude_outliers=exclude)
        want = processing.predict_volumes(ref[name][0], processing.Request("cubic", 2), ref[name][1])
        _same(mrml.tensor_volume_from_node(nodes["tensor"]).data, want["tensor"].data)
        notes = _notes(nodes["tensor"])
        said = [n for n in notes if OUTLIERS in n]
        assert len(said) == 1, notes
        said = ["; ".join(notes[notes.index(said[0]):])]  # over lines of whole pieces (methods/base.py warning_lines)
        if exclude:
            assert "fitted without them" in said[0] and f"volume {dw[5]} left out of every slice" in said[0], said
            assert "2 slices refitted without theirs" in said[0] and "tick" not in said[0], said
        else:  # today's fit, the panel's control named instead of the command line
            assert "fitted without them" not in said[0], said
            assert "or tick Inputs > Exclude outliers and apply again to fit without them" in said[0], said
        assert "--exclude-outliers" not in said[0] and "iqt fit" not in said[0], said

    dti = mrml.add_tensor_node(scene, ref["off"][0], "dti")  # a DTI input: nothing to fit, the option changes nothing
    plain = processing.run_on_nodes(scene, dti, "cubic", 2)
    before = mrml.tensor_volume_from_node(plain["tensor"]).data
    again = processing.run_on_nodes(scene, dti, "cubic", 2, exclude_outliers=True)
    assert again["tensor"].GetID() == plain["tensor"].GetID()  # the same run's node, filled again
    np.testing.assert_array_equal(mrml.tensor_volume_from_node(again["tensor"]).data, before)
    assert not any(OUTLIERS in n for n in _notes(again["tensor"]))


@pytest.mark.slow
def test_the_worker_process_fits_without_them_too(series, monkeypatch):
    """With a separate process (the module's path for the CNNs) the flag reaches the worker, which fits as here. The
    worker run with the flag on is run_on_nodes's own (read as it returns), not a third worker process of the same
    request."""
    bad, _, ref = series
    assert "--exclude-outliers" in processing.Request("cubic", 2, exclude_outliers=True).worker_args()
    assert "--exclude-outliers" not in processing.Request("cubic", 2).worker_args()
    scene = slicer.vtkMRMLScene()
    node = dwi_node(scene, bad)
    dwi, _ = processing.input_volumes(node, fit=False)
    worker, real = [], processing.predict_in_subprocess

    def seen(lr, request, *a, **k):  # run_on_nodes's worker run: its request and results, kept as they came back
        results = real(lr, request, *a, **k)
        worker.append((request, np.array(results["tensor"].data), list(results["tensor"].meta["notes"])))
        return results

    there = processing.predict_in_subprocess(dwi, processing.Request("cubic", 2), python_executable=sys.executable)
    # run_on_nodes with a worker: the flag is the request's (equal but for float32 NIfTI's last bit, as in-process)
    monkeypatch.setattr(processing, "predict_in_subprocess", seen)
    on = mrml.tensor_volume_from_node(processing.run_on_nodes(scene, node, "cubic", 2, exclude_outliers=True,
                                                              python_executable=sys.executable)["tensor"]).data
    monkeypatch.undo()
    here_on = mrml.tensor_volume_from_node(processing.run_on_nodes(scene, node, "cubic", 2, exclude_outliers=True)["tensor"]).data
    np.testing.assert_allclose(on, here_on, rtol=0, atol=1e-6 * float(np.abs(here_on).max()))
    assert len(worker) == 1 and worker[0][0] == processing.Request("cubic", 2, exclude_outliers=True), worker
    runs = {"off": (there["tensor"].data, there["tensor"].meta["notes"]), "on": worker[0][1:]}
    for name, exclude in (("off", False), ("on", True)):
        data, notes = runs[name]
        want = processing.predict_volumes(ref[name][0], processing.Request("cubic", 2), ref[name][1])
        _same(data, want["tensor"].data)
        lr, fit_mask = processing.input_volumes(node, exclude=exclude)
        here = processing.predict_volumes(lr, processing.Request("cubic", 2, exclude_outliers=exclude), fit_mask)
        assert notes == here["tensor"].meta["notes"]
        notes = here["tensor"].meta["notes"]
        said = [n for n in notes if OUTLIERS in n]
        assert len(said) == 1 and ("fitted without them" in "; ".join(notes[notes.index(said[0]):])) == exclude, said


def _class(name):
    return next(c for c in ast.parse(MODULE_PY.read_text()).body if isinstance(c, ast.ClassDef) and c.name == name)


def test_the_panel_s_exclude_outliers_is_a_bound_checkbox_off_by_default():
    param = next(s for s in _class("ImageQualityTransferParameterNode").body
                 if isinstance(s, ast.AnnAssign) and s.target.id == "excludeOutliers")
    assert ast.unparse(param.annotation) == "bool" and ast.literal_eval(param.value) is False
    inputs = next(w for w in ET.parse(UI_FILE).getroot().iter("widget") if w.get("name") == "inputsCollapsibleButton")
    box = next(w for w in inputs.iter("widget") if w.get("name") == "excludeOutliersCheckBox")
    assert box.get("class") == "QCheckBox"
    bound = next(p.find("string") for p in box.findall("property") if p.get("name") == "SlicerParameterName")
    assert bound.text == "excludeOutliers" and bound.get("notr") == "true"
    tip = next(p.find("string") for p in box.findall("property") if p.get("name") == "toolTip")
    assert "DWI" in tip.text and tip.get("notr") is None  # translated with the .ui
    process = next(f for f in ast.walk(_class("ImageQualityTransferLogic"))
                   if isinstance(f, ast.FunctionDef) and f.name == "process")
    names = [a.arg for a in process.args.args]
    defaults = dict(zip(names[len(names) - len(process.args.defaults):], process.args.defaults))
    assert ast.literal_eval(defaults["excludeOutliers"]) is False
    assert "excludeOutliers=p.excludeOutliers" in ast.unparse(_class("ImageQualityTransferWidget"))


LOGIC_AND_PANEL = r"""
import sys, types
sys.path[:0] = [{testing!r}, {helpers!r}]
import self_test_in_batch as shell
shell.application_shell()
import slicer
sys.path.insert(0, str(shell.MODULE_DIR))
import ImageQualityTransfer as module
from helpers import dwi_node
from ImageQualityTransferLib.dmri.phantom import make_phantom
from ImageQualityTransferLib.slicer import mrml
import numpy as np

dwi = make_phantom(shape=(24, 28, 20), voxel_mm=4.0, n_dirs=12)
dwi.data[..., 5] = 0.0
node = dwi_node(slicer.mrmlScene, dwi)
logic = module.ImageQualityTransferLogic()
for exclude in (False, True):
    nodes = logic.process(node, method="cubic", factor=2, excludeOutliers=exclude)
    notes = nodes["tensor"].GetAttribute(mrml.NOTES_ATTRIBUTE).split("\n")
    said = [n for n in notes if "does not fit" in n]
    print("logic", exclude, "fitted without them" in "; ".join(notes[notes.index(said[0]):]))

# the panel: the checkbox enabled, with its tooltip, for a DWI input only
dti = mrml.add_tensor_node(slicer.mrmlScene, mrml.tensor_volume_from_node(nodes["tensor"]), "dti")
for input_node in (node, dti, None):
    box = types.SimpleNamespace(enabled=None, toolTip=None)
    panel = types.SimpleNamespace(ui=types.SimpleNamespace(excludeOutliersCheckBox=box),
                                  _parameterNode=types.SimpleNamespace(inputVolume=input_node))
    module.ImageQualityTransferWidget._updateExcludeOutliers(panel)
    print("panel", "none" if input_node is None else input_node.GetClassName(), box.enabled, "|", box.toolTip)
"""


@pytest.mark.slow
def test_the_logic_passes_it_and_the_panel_offers_it_for_a_dwi_input_only(tmp_path):
    """The module file itself (its Logic and the widget's update) in the batch application shell: the Logic's
    excludeOutliers reaches the fit; the checkbox is enabled for a DWI input node and disabled, saying why, for a DTI
    one or none."""
    code = LOGIC_AND_PANEL.format(testing=str(DRIVER.parent), helpers=str(DRIVER.parent.parent))
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout.splitlines()
    assert "logic False False" in out and "logic True True" in out, run.stdout
    panel = {line.split(" ")[1]: line for line in out if line.startswith("panel ")}
    assert panel["vtkMRMLDiffusionWeightedVolumeNode"].startswith("panel vtkMRMLDiffusionWeightedVolumeNode True |")
    assert "iqt fit --exclude-outliers" in panel["vtkMRMLDiffusionWeightedVolumeNode"]
    for other in ("vtkMRMLDiffusionTensorVolumeNode", "none"):
        assert panel[other].startswith(f"panel {other} False |") and "Only for a diffusion-weighted" in panel[other]
