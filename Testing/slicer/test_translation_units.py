"""The module's sentences are whole translatable texts (audit AD, items 5 and 7): the status line after a run, the
method's description with its properties and the Logic's note when interpolation ran for want of a model were built
by gluing translated fragments ("Done: {name}" + " " + "({model})" + "\\n" + "Note: {notes}") or held the engine's
English "factor 2" / "factors 1,1,3" (grid.describe) inside a translated sentence. Each is one tr() text now, with
placeholders, and the English is as before. The functions run from the module's source (the module itself needs
Slicer) with two stand-ins for tr(): one that returns its text (English) and one that marks what it translated."""

from __future__ import annotations

import ast
import logging
import types
import typing

from helpers import REPO

MODULE_PY = REPO / "ImageQualityTransfer" / "ImageQualityTransfer.py"


def english(text):
    return text


def marked(text):
    return "<" + text + ">"


def _load(tr, *names):
    """The module's top-level functions and class methods `names` ("function" or "Class.method") run with tr = `tr`."""
    tree = ast.parse(MODULE_PY.read_text())
    space = {"_": tr, "logging": logging, "Optional": typing.Optional, "slicer": types.SimpleNamespace(mrmlScene=None)}
    found = {}
    for name in names:
        cls, _, fn_name = name.rpartition(".")
        body = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == cls).body if cls else tree.body
        fn = next(f for f in body if isinstance(f, ast.FunctionDef) and f.name == fn_name)
        exec(compile(ast.Module([fn], []), str(MODULE_PY), "exec"), space)
        found[name] = space[fn_name]
    helper = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "factorsText"]
    if helper and "factorsText" not in space:  # the translated factors the module's texts use
        exec(compile(ast.Module(helper, []), str(MODULE_PY), "exec"), space)
    return found


def one_unit(text):
    """`text` is one marked (translated) text: "<...>" whose own fragments, if any, are whole list items inside it."""
    return text.startswith("<") and text.endswith(">") and "><" not in text and "> <" not in text and ">\n<" not in text


# ---------------------------------------------------------------- the status line after a run

STATUS_CASES = [  # (name, notes, model) -> the English status line, as the module wrote it before
    (("dti_biqt", None, None), "Done: dti_biqt"),
    (("dti_biqt", None, "shipped model biqt_x2.npz"), "Done: dti_biqt (shipped model biqt_x2.npz)"),
    (("dti_cubic", "the brain was estimated", None), "Done: dti_cubic\nNote: the brain was estimated"),
    (("dti_biqt", "the brain was estimated\nslices 14-15 left out", "model file my.npz"),
     "Done: dti_biqt (model file my.npz)\nNote: the brain was estimated\nslices 14-15 left out"),
]


def test_the_status_line_is_one_text_and_its_english_is_unchanged():
    status = _load(english, "runStatusText")["runStatusText"]
    for (name, notes, model), said in STATUS_CASES:
        assert status(name, notes, False, model) == said
    status = _load(marked, "runStatusText")["runStatusText"]
    for (name, notes, model), said in STATUS_CASES:
        line = status(name, notes, False, model)
        assert line == "<" + said + ">" and one_unit(line), line


# ---------------------------------------------------------------- the method's description and its properties

def _description(tr, info):
    update = _load(tr, "ImageQualityTransferWidget._updateMethodGui")["ImageQualityTransferWidget._updateMethodGui"]
    ui = types.SimpleNamespace(methodComboBox=types.SimpleNamespace(currentIndex=0),
                               methodDescriptionLabel=types.SimpleNamespace(text=None),
                               installTorchButton=types.SimpleNamespace(enabled=None),
                               averageFlipsCheckBox=types.SimpleNamespace(enabled=None))
    panel = types.SimpleNamespace(ui=ui, _methods=[info], _parameterNode=types.SimpleNamespace(method=info["name"]),
                                  _factors=(2, 2, 2), logic=types.SimpleNamespace(torchAvailable=lambda: False))
    update(panel)
    return ui.methodDescriptionLabel.text


METHODS = [  # (entry, English label as before)
    ({"name": "cubic", "description": "Cubic interpolation of the tensor elements"},
     "Cubic interpolation of the tensor elements"),
    ({"name": "biqt", "description": "Bayesian IQT random forest", "uncertainty": True, "learned": True},
     "Bayesian IQT random forest (gives an uncertainty map, learned)"),
    ({"name": "espcn", "description": "3D-ESPCN", "learned": True, "needs_torch": True},
     "3D-ESPCN (learned, needs PyTorch)"),
]


def test_the_method_description_with_its_properties_is_one_sentence():
    for info, said in METHODS:
        assert _description(english, info) == said
        label = _description(marked, info)
        if "(" in said:  # one text "{description} ({properties})"; the properties, list items, translated each
            description, properties = said[:-1].split(" (")
            assert label == "<" + description + " (" + ", ".join(f"<{p}>" for p in properties.split(", ")) + ")>"
        else:  # the engine's description alone
            assert label == said


# ---------------------------------------------------------------- the Logic's note when interpolation ran

def _note(tr, factor):
    from ImageQualityTransferLib.core import grid

    process = _load(tr, "ImageQualityTransferLogic.process")["ImageQualityTransferLogic.process"]
    notes = []
    tensor = object()
    engine = types.SimpleNamespace(method_needs_torch=lambda m: False, method_info=lambda m: {"learned": False},
                                   run_on_nodes=lambda *a, **k: {"tensor": tensor})
    logic = types.SimpleNamespace(engineError=lambda: ValueError, engine=lambda: engine,
                                  defaultMethod=lambda f: "cubic", _batch=lambda: True, torchAvailable=lambda: False,
                                  pythonSlicerExecutable=lambda: "PythonSlicer",
                                  _addNote=lambda node, note: notes.append(note),
                                  _describeFactors=grid.describe)  # where the module took the words from before
    process(logic, object(), factor=factor)  # no method: the default, interpolation where no model ships
    return notes[0]


def test_the_interpolation_note_says_the_factors_in_the_users_language():
    for factor, words in ((2, "factor 2"), ((2, 2, 2), "factor 2"), ((1, 1, 3), "factors 1,1,3"),
                          ((3, 3, 1), "factors 3,3,1")):
        said = _note(english, factor)
        assert said == (f"no learned model ships for {words}, so the interpolation baseline (cubic) ran; choose a "
                        "Method and an Advanced > Model file trained for these factors for a learned one")
        note = _note(marked, factor)
        assert note.startswith("<no learned model ships for <" + words + ">, so"), note  # not the engine's English
        assert note.endswith(">")


def test_the_factors_text_is_the_engines_words_in_english():
    from ImageQualityTransferLib.core import grid

    factors_text = _load(english, "factorsText")["factorsText"]
    for factor in (2, 3, (2, 2, 2), (1, 1, 3), (1, 2, 1), [3, 3, 1], "2", "1,1,3"):
        assert factors_text(factor) == grid.describe(factor)
