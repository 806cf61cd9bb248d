"""The panel's "Send to tractography" tooltip (ImageQualityTransfer.py, the widget's _checkCanApply): without SlicerDMRI
it says to install the extension; once SlicerDMRI is there it says what the button does again (the .ui's text, through
tr()), not the install hint left from an earlier check (audit AD, item 10). The method runs on a stand-in panel (the
widget itself needs Qt), with a tr() that marks what it translated."""

from __future__ import annotations

import ast
import types
import xml.etree.ElementTree as ET

from helpers import REPO

MODULE_PY = REPO / "ImageQualityTransfer" / "ImageQualityTransfer.py"
UI_FILE = REPO / "ImageQualityTransfer" / "Resources" / "UI" / "ImageQualityTransfer.ui"


def _widget_method(name):
    tree = ast.parse(MODULE_PY.read_text())
    widget = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "ImageQualityTransferWidget")
    fn = next(f for f in widget.body if isinstance(f, ast.FunctionDef) and f.name == name)
    space = {"_": lambda text: "<" + text + ">", "factorsText": lambda factors: "<factor 2>"}
    exec(compile(ast.Module([fn], []), str(MODULE_PY), "exec"), space)
    return space[name]


def _ui_tooltip(widget_name):
    widget = next(w for w in ET.parse(UI_FILE).getroot().iter("widget") if w.get("name") == widget_name)
    return next(p.find("string").text for p in widget.findall("property") if p.get("name") == "toolTip")


def _panel(dmri):
    buttons = {name: types.SimpleNamespace(enabled=None, toolTip=None)
               for name in ("applyButton", "compareButton", "tractographyButton")}
    tensor = types.SimpleNamespace(GetID=lambda: "vtkMRMLDiffusionTensorVolumeNode1")
    return types.SimpleNamespace(
        ui=types.SimpleNamespace(**buttons), logic=types.SimpleNamespace(tractographyAvailable=lambda: dmri[0]),
        _updateUpsampling=lambda: None, _updateMethodGui=lambda: None, _updateExcludeOutliers=lambda: None,
        _running=False, _parameterNode=types.SimpleNamespace(inputVolume=object()), _methods=[{"name": "cubic"}],
        _factors=(2, 2, 2), _factorsError="",
        _result=lambda: {"tensor": tensor, "interpolated": None})


def test_the_tractography_tooltip_follows_whether_slicerdmri_is_there():
    check = _widget_method("_checkCanApply")
    dmri = [False]
    panel = _panel(dmri)
    check(panel)
    button = panel.ui.tractographyButton
    assert button.enabled is False
    assert button.toolTip == "<Install the SlicerDMRI extension to seed tractography>"
    dmri[0] = True  # SlicerDMRI installed meanwhile: the button is enabled and says what it does again
    check(panel)
    assert button.enabled is True
    assert button.toolTip == "<" + _ui_tooltip("tractographyButton") + ">"
    assert "Install" not in button.toolTip
    dmri[0] = False
    check(panel)
    assert button.toolTip == "<Install the SlicerDMRI extension to seed tractography>"
