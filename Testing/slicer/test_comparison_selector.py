"""The comparison output's selector says what its node is: the cubic interpolation, `<input>_cubic`, whatever method
runs. Its empty choice read "Named after the method" like the other two, and a radiologist took `dti_cubic` beside a
biqt run for the method chosen; the messages about that selector name its own empty choice."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from helpers import REPO, tensor_node_and_a_scalar_node

UI = REPO / "ImageQualityTransfer" / "Resources" / "UI" / "ImageQualityTransfer.ui"


def _widget(root, name):
    return next(w for w in root.iter("widget") if w.get("name") == name)


def _property(widget, name):
    prop = next(p for p in widget.iter("property") if p.get("name") == name)
    return prop.find("string")


def test_the_comparison_selector_says_cubic_not_the_method():
    from ImageQualityTransferLib.slicer import results

    root = ET.parse(UI).getroot()
    selector = _widget(root, "interpolatedSelector")
    label = _property(_widget(root, "interpolatedSelectorLabel"), "text")
    none = _property(selector, "noneDisplay")
    tip = _property(selector, "toolTip")
    for text in (label, none, tip):  # translatable text (uic gives it to tr())
        assert text.get("notr") != "true", text.text
        assert results.COMPARISON_METHOD in text.text.lower(), text.text
    assert "method (" not in none.text and none.text.startswith(results.automatic_comparison().strip("'")), none.text
    assert "whatever method runs" in tip.text
    # the other two outputs are named after the method, as their selectors say
    for name in ("outputSelector", "uncertaintySelector"):
        assert _property(_widget(root, name), "noneDisplay").text.startswith(results.automatic_output().strip("'"))


def test_a_wrong_comparison_node_is_refused_naming_that_selectors_choice():
    slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.slicer import mrml, processing, results
    import numpy as np

    scene = slicer.vtkMRMLScene()
    node, wrong, data = tensor_node_and_a_scalar_node(slicer, scene)
    for targets in ({"interpolated": wrong}, {"interpolated": node}, {"tensor": wrong}):
        with pytest.raises(IQTError) as caught:
            processing.run_on_nodes(scene, node, "linear", 2, targets=targets)
        message = str(caught.value)
        assert "\n" not in message
        choice = results.automatic_comparison() if "interpolated" in targets else results.automatic_output()
        assert choice in message, message
        # the selector that offers that choice, by its panel label (the Output one never offers the comparison's)
        assert results.selector_label(next(iter(targets))) + " selector" in message, message
    # one node in two selectors: both said by their panel labels, not the internal keys
    other = mrml.add_tensor_node(scene, Volume(data, np.diag([1.0, 1.0, 1.0, 1.0]), "tensor"), "other_dti")
    with pytest.raises(IQTError) as caught:
        processing.run_on_nodes(scene, node, "linear", 2, targets={"tensor": other, "interpolated": other})
    message = str(caught.value)
    assert "\n" not in message and "interpolated output" not in message, message
    for key in ("tensor", "interpolated"):
        assert results.selector_label(key) in message, message
    assert f"choose {results.automatic_comparison()} in the {results.selector_label('interpolated')}" in message, message


def test_the_selector_labels_in_messages_are_the_panels_labels():
    from ImageQualityTransferLib.slicer import results

    root = ET.parse(UI).getroot()
    for key, name in (("tensor", "outputSelectorLabel"), ("uncertainty", "uncertaintySelectorLabel"),
                      ("interpolated", "interpolatedSelectorLabel")):
        assert results.SELECTOR_UI_LABEL[key] == _property(_widget(root, name), "text").text
        assert results.selector_label(key) == "'" + results.SELECTOR_UI_LABEL[key].rstrip(":") + "'"


def test_the_compare_buttons_tooltips_name_the_cubic_comparison():
    """Compare is live after any method but cubic (linear | cubic too); its greyed-out tooltip had said "a method other
    than interpolation, with the interpolated output"."""
    import ast

    from ImageQualityTransferLib.slicer import results

    tree = ast.parse((REPO / "ImageQualityTransfer" / "ImageQualityTransfer.py").read_text())
    check = next(f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "_checkCanApply")
    texts = [n.args[0].value for n in ast.walk(check) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "_"]
    tips = [t for t in texts if "compare" in t.lower() or "side by side" in t]  # compareButton's two tooltips
    assert len(tips) == 2, tips
    for tip in tips:
        assert f"{results.COMPARISON_METHOD} interpolation" in tip.lower(), tip
    assert "other than interpolation" not in " ".join(tips)
