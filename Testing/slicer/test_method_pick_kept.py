"""A method picked in the Method list comes back when the factors offer it again: biqt picked at Isotropic 2, the factor
spun 3 -> 4 -> 3 -> 2 (4 has no biqt model, cubic is shown there) had ended on the module's default, deep-hetero-var1
(docs/slicer.md promises the pick is kept). The panel's own methods, taken from the module file, on stand-in widgets."""

from __future__ import annotations

import ast
import types

from helpers import REPO

MODULE_PY = REPO / "ImageQualityTransfer" / "ImageQualityTransfer.py"

LEARNED = ["cubic", "biqt", "deep-hetero-var1"]


def _class_method(cls_name, name, **space):
    tree = ast.parse(MODULE_PY.read_text())
    cls = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == cls_name)
    fn = next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == name)
    namespace = dict(space)
    exec(compile(ast.Module([fn], []), str(MODULE_PY), "exec"), namespace)
    return namespace[name]


class Combo:
    def __init__(self, panel):
        self.panel, self.currentIndex, self.items = panel, -1, []

    def blockSignals(self, blocked):
        return False


def _panel():
    space = {"_": lambda text: text, "methodDescriptionText": lambda name, description: description}
    cls = types.SimpleNamespace(**{name: _class_method("ImageQualityTransferWidget", name, **space)
                                   for name in ("_updateMethodGui", "onMethodChanged")})
    label = types.SimpleNamespace(text="", enabled=True)
    panel = types.SimpleNamespace(
        _methods=[], _methodPreselected=False, _pickedMethod="", _factors=(2, 2, 2),
        _parameterNode=types.SimpleNamespace(method="", inputVolume=None),
        logic=types.SimpleNamespace(defaultMethod=lambda factors, node: "deep-hetero-var1" if factors[0] < 4 else "cubic",
                                    anisotropicOutputNote=lambda node, factors: "", torchAvailable=lambda: True),
        ui=types.SimpleNamespace(methodDescriptionLabel=label, installTorchButton=types.SimpleNamespace(enabled=False),
                                 averageFlipsCheckBox=types.SimpleNamespace(enabled=False)))
    panel.ui.methodComboBox = Combo(panel)
    panel._updateMethodGui = lambda: cls._updateMethodGui(panel)
    panel.onMethodChanged = lambda index: cls.onMethodChanged(panel, index)
    return panel


def _offer(panel, factor):
    panel._factors = (factor,) * 3
    panel._methods = [dict(name=n, description=n) for n in (LEARNED if factor < 4 else ["cubic"])]
    panel._updateMethodGui()
    return panel._parameterNode.method, panel._methods[panel.ui.methodComboBox.currentIndex]["name"]


def test_a_picked_method_is_selected_again_when_the_factors_offer_it_again():
    panel = _panel()
    assert _offer(panel, 2) == ("deep-hetero-var1", "deep-hetero-var1")  # the module's default
    panel.onMethodChanged(LEARNED.index("biqt"))
    assert _offer(panel, 3) == ("biqt", "biqt")
    assert _offer(panel, 4) == ("cubic", "cubic")  # no biqt model at 4
    assert _offer(panel, 3) == ("biqt", "biqt")
    assert _offer(panel, 2) == ("biqt", "biqt")


def test_the_default_still_follows_the_factors_when_nothing_was_picked():
    panel = _panel()
    assert _offer(panel, 2)[0] == "deep-hetero-var1"
    assert _offer(panel, 4)[0] == "cubic"
    assert _offer(panel, 3)[0] == "deep-hetero-var1"


def _enter(panel):
    """The module entered again (enter() -> initializeParameterNode -> setParameterNode with the same node)."""
    noop = lambda *args, **kwargs: None  # noqa: E731
    space = {"Optional": __import__("typing").Optional, "ImageQualityTransferParameterNode": object,
             "vtk": types.SimpleNamespace(vtkCommand=types.SimpleNamespace(ModifiedEvent=0))}
    node = panel._parameterNode
    node.__dict__.setdefault("methodChosenBy", "")
    node.__dict__.update(modelPath="", uncertaintyFromMedian=True, sharedColourScale=False,
                         connectGui=lambda ui: "tag", disconnectGui=noop)
    panel.__dict__.update(addObserver=noop, removeObserver=noop, _checkCanApply=noop, _fillMapCombo=noop,
                          _result=dict, _parameterNodeGuiTag=None)
    panel.logic.followFromMedian = noop
    panel.ui.modelPathLineEdit = types.SimpleNamespace(currentPath="")
    _class_method("ImageQualityTransferWidget", "setParameterNode", **space)(panel, node)


def test_re_entering_the_module_keeps_its_default_a_default():
    """The module's default stored in the parameter node had become the pick on re-entering, kept at factors where
    the module preselects another (3 here: its default is cubic there)."""
    panel = _panel()
    panel.logic.defaultMethod = lambda factors, node: "cubic" if factors[0] >= 3 else "deep-hetero-var1"
    assert _offer(panel, 2)[0] == "deep-hetero-var1"
    _enter(panel)
    assert _offer(panel, 4)[0] == "cubic"
    assert _offer(panel, 3)[0] == "cubic"


def test_re_entering_the_module_keeps_a_pick():
    panel = _panel()
    assert _offer(panel, 2)[0] == "deep-hetero-var1"
    panel.onMethodChanged(LEARNED.index("biqt"))
    _enter(panel)
    assert _offer(panel, 4)[0] == "cubic"
    assert _offer(panel, 3)[0] == "biqt"
