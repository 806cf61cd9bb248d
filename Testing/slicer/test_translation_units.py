"""The module's sentences are whole translatable texts (audit AD, items 5 and 7): the status line after a run, the
method's description with its properties and the Logic's note when interpolation ran for want of a model were built
by gluing translated fragments ("Done: {name}" + " " + "({model})" + "\\n" + "Note: {notes}") or held the engine's
English "factor 2" / "factors 1,1,3" (grid.describe) inside a translated sentence. Each is one tr() text now, with
placeholders, and the English is as before; a method's description is the module's own text (the engine's for a
method it does not know). The functions run from the module's source (the module itself needs
Slicer) with two stand-ins for tr(): one that returns its text (English) and one that marks what it translated."""

from __future__ import annotations

import ast
import logging
import types
import typing

import pytest

from helpers import REPO, vowels_translated

MODULE_PY = REPO / "ImageQualityTransfer" / "ImageQualityTransfer.py"
HELPERS = ("factorsText", "methodDescriptionText")


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
    helpers = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name in HELPERS and f.name not in space]
    if helpers:  # the translated texts (factors, method descriptions) the module's other texts use
        exec(compile(ast.Module(helpers, []), str(MODULE_PY), "exec"), space)
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

def _description(tr, info, node=None, factors=(2, 2, 2), logic=None):
    update = _load(tr, "ImageQualityTransferWidget._updateMethodGui")["ImageQualityTransferWidget._updateMethodGui"]
    ui = types.SimpleNamespace(methodComboBox=types.SimpleNamespace(currentIndex=0),
                               methodDescriptionLabel=types.SimpleNamespace(text=None),
                               installTorchButton=types.SimpleNamespace(enabled=None),
                               averageFlipsCheckBox=types.SimpleNamespace(enabled=None))
    logic = logic or types.SimpleNamespace()
    logic.torchAvailable = lambda: False
    panel = types.SimpleNamespace(ui=ui, _methods=[info], _factors=factors, logic=logic,
                                  _parameterNode=types.SimpleNamespace(method=info["name"], inputVolume=node))
    update(panel)
    return ui.methodDescriptionLabel.text


METHODS = [  # (entry, English label): the panel's own description of a method it knows, the engine's otherwise
    ({"name": "cubic", "description": "the engine's words"},
     "Cubic B-spline interpolation of the six tensor elements: the baseline the learned methods are compared with "
     "(no uncertainty map)"),
    ({"name": "biqt", "description": "the engine's words", "uncertainty": True, "learned": True},
     "Bayesian IQT random forest: learned regression trees that also give an uncertainty, a predictive standard "
     "deviation, one value for each low-resolution voxel's block (gives an uncertainty map, learned)"),
    ({"name": "deep", "description": "the engine's words", "learned": True, "needs_torch": True},
     "Deeper 3D-ESPCN: sees 9×9×9 low-resolution voxels around each voxel it refines (no uncertainty map, learned, "
     "needs PyTorch)"),
    ({"name": "my-method", "description": "A method of a newer engine", "learned": True},
     "A method of a newer engine (no uncertainty map, learned)"),
    ({"name": "my-interpolation", "description": "Another interpolation"}, "Another interpolation (no uncertainty map)"),
]


def test_the_method_description_with_its_properties_is_one_sentence():
    for info, said in METHODS:
        assert _description(english, info) == said
        label = _description(marked, info)
        unknown = info["name"].startswith("my-")
        description = said[:-1].rsplit(" (", 1)[0] if said.endswith(")") else said
        # the panel's own description is translated; a method it does not know keeps the engine's English
        shown = description if unknown else "<" + description + ">"
        if said.endswith(")"):  # one text "{description} ({properties})"; the properties, list items, translated each
            properties = said[:-1].rsplit(" (", 1)[1]
            assert label == "<" + shown + " (" + ", ".join(f"<{p}>" for p in properties.split(", ")) + ")>", label
        else:
            assert label == shown, label


def test_every_method_the_panel_offers_has_a_translated_description_in_plain_words():
    """The panel lists the engine's methods (Logic.availableMethods: methods.describe()): each one's description is
    the module's translated text, not the engine's English, and none speaks to the command line."""
    from ImageQualityTransferLib import methods

    text = _load(marked, "methodDescriptionText")["methodDescriptionText"]
    names = [entry["name"] for entry in methods.describe()]
    assert len(names) >= 14
    for name in names:
        said = text(name, "ENGLISH")
        assert said != "ENGLISH" and one_unit(said), (name, said)
        assert "--" not in said and "^" not in said, (name, said)


# ---------------------------------------------------------------- the Logic's note when interpolation ran

def _note(tr, factor):
    from ImageQualityTransferLib.core import grid

    process = _load(tr, "ImageQualityTransferLogic.process")["ImageQualityTransferLogic.process"]
    notes = []
    tensor = object()
    engine = types.SimpleNamespace(method_needs_torch=lambda m: False, method_info=lambda m: {"learned": False},
                                   run_on_nodes=lambda *a, **k: {"tensor": tensor},
                                   choose_factors=lambda *a, **k: types.SimpleNamespace(refusal="", hint=""))
    logic = types.SimpleNamespace(engineError=lambda: ValueError, engine=lambda: engine,
                                  defaultMethod=lambda f, node=None: "cubic", _outputAnisotropy=lambda node, f: None, _batch=lambda: True, torchAvailable=lambda: False,
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


# ---------------------------------------------------------------- output voxels far from the training's


def test_the_panel_preselects_cubic_and_says_why_where_the_output_voxels_are_far_from_isotropic():
    """Through-plane 3 on the sagittal dev scan (2.7 mm isotropic: factors 1,3,1) had preselected deep-hetero-var1,
    whose finished run then warned that its 2.71 × 0.90 × 2.70 mm voxels were off its training and to use cubic (a
    clinician's audit): the default is cubic there, and a learned method chosen says so before Apply."""
    names = ["ImageQualityTransferLogic." + n for n in ("defaultMethod", "anisotropicOutputNote", "_outputAnisotropy",
                                                        "outputSpacing")]
    fns = _load(english, *names)
    logic = types.SimpleNamespace(_engineOnPath=lambda: None)
    for name, fn in fns.items():
        setattr(logic, name.rsplit(".", 1)[1], types.MethodType(fn, logic))
    sagittal = types.SimpleNamespace(GetSpacing=lambda: (2.7073, 2.7073, 2.7))
    thick = types.SimpleNamespace(GetSpacing=lambda: (2.0, 2.0, 6.0))
    assert logic.defaultMethod((1, 3, 1), sagittal) == "cubic"
    assert logic.defaultMethod((1, 1, 3), thick) == logic.defaultMethod((1, 1, 3)) != "cubic"  # 2 x 2 x 2 mm voxels
    assert logic.defaultMethod((2, 2, 2), sagittal) == logic.defaultMethod((2, 2, 2))
    assert logic.anisotropicOutputNote(sagittal, (1, 3, 1)) == (
        "At factors 1,3,1 the output voxels are 2.71 × 0.90 × 2.70 mm (3.0:1), far from the near-isotropic voxels the "
        "learned methods were trained on: choose cubic, or factors that make them near-isotropic (Target voxel size "
        "picks them).")
    assert logic.anisotropicOutputNote(thick, (1, 1, 3)) == ""
    said = _description(english, {"name": "deep-hetero-var1", "description": "x", "uncertainty": True, "learned": True},
                        node=sagittal, factors=(1, 3, 1), logic=logic)
    assert said.endswith("(gives an uncertainty map, learned) At factors 1,3,1 the output voxels are 2.71 × 0.90 × "
                         "2.70 mm (3.0:1), far from the near-isotropic voxels the learned methods were trained on: "
                         "choose cubic, or factors that make them near-isotropic (Target voxel size picks them)."), said



def test_the_preselected_method_follows_the_factors_and_a_readers_choice_stays():
    """The default stored at factor 2 (deep-hetero-var1) had been kept when the reader picked Through-plane 3 on the
    2.7 mm sagittal scan, where the default is cubic (a review's panel_sticky.py). A default follows the factors; a
    method the reader chose stays, the note under the list saying why not."""
    names = ["ImageQualityTransferWidget._updateMethodGui", "ImageQualityTransferWidget.onMethodChanged"] + [
        "ImageQualityTransferLogic." + n for n in ("defaultMethod", "anisotropicOutputNote", "_outputAnisotropy",
                                                   "outputSpacing")]
    fns = _load(english, *names)
    logic = types.SimpleNamespace(_engineOnPath=lambda: None, torchAvailable=lambda: True)
    for name, fn in fns.items():
        if name.startswith("ImageQualityTransferLogic"):
            setattr(logic, name.rsplit(".", 1)[1], types.MethodType(fn, logic))
    methods = [{"name": n, "description": n, "learned": n.startswith("deep"), "uncertainty": True}
               for n in ("cubic", "deep-hetero-var1")]
    combo = types.SimpleNamespace(currentIndex=0, blockSignals=lambda b: False)
    ui = types.SimpleNamespace(methodComboBox=combo, methodDescriptionLabel=types.SimpleNamespace(text=None),
                               installTorchButton=types.SimpleNamespace(enabled=None),
                               averageFlipsCheckBox=types.SimpleNamespace(enabled=None))
    node = types.SimpleNamespace(method="", inputVolume=types.SimpleNamespace(GetSpacing=lambda: (2.7073, 2.7073, 2.7)))
    panel = types.SimpleNamespace(ui=ui, _methods=methods, _factors=(2, 2, 2), logic=logic, _parameterNode=node)
    panel._updateMethodGui = types.MethodType(fns["ImageQualityTransferWidget._updateMethodGui"], panel)
    changed = types.MethodType(fns["ImageQualityTransferWidget.onMethodChanged"], panel)
    panel._updateMethodGui()
    assert node.method == "deep-hetero-var1"
    panel._factors = (1, 3, 1)  # Through-plane 3
    panel._updateMethodGui()
    assert node.method == "cubic" and combo.currentIndex == 0
    panel._factors = (2, 2, 2)
    panel._updateMethodGui()
    assert node.method == "deep-hetero-var1"
    changed(1)  # the reader picks deep-hetero-var1, then Through-plane 3: kept, and the note says why not
    panel._factors = (1, 3, 1)
    panel._updateMethodGui()
    assert node.method == "deep-hetero-var1" and "choose cubic" in ui.methodDescriptionLabel.text


# ---------------------------------------------------------------- the engine's refusals and notes the panel shows


def _clauses_translated(said: str) -> bool:
    """Every clause ("; ") of every line of `said` is one marked text."""
    return all(one_unit(c) for line in said.split("\n") for c in line.lstrip("; ").split("; "))


ESPCN_REFUSAL = ("the Target voxel size 0.9 chose factors 1,1,8: output voxel size 0.9x0.9x0.875 mm (input 0.9x0.9x7 "
                 "mm); espcn has shipped models for factor 2, factor 3, factors 1,1,2, factors 1,1,3 only; choose an "
                 "Advanced > Model file for factors 1,1,8 (train one with 'iqt train --method espcn --subjects DIR... "
                 "--factor 1,1,8 -o MODEL.pt') or use an interpolation method (cubic); no coarser Target voxel size "
                 "helps (the shipped models' factors leave these voxels far from isotropic)")


def test_the_factor_rule_s_lines_name_the_module_s_controls_in_the_translator_s_words():
    """The factor rule's refusal and hints (methods/factor_choice.py, fileio/model_files.py shipped) had named the
    command line's options, which the module put as its controls after the line was made, so that the module matched
    that English to translate it (its engineText rules): each clause is one marked template now, its option a
    placeholder the module fills with its control's name (slicer/processing.py module_options) and its factors the
    engine's marked words. The English is the module's as before, the command line's its own."""
    from ImageQualityTransferLib.core import i18n
    from ImageQualityTransferLib.fileio.paths import MODELS_DIR
    from ImageQualityTransferLib.methods.factor_choice import choose
    from ImageQualityTransferLib.slicer import processing

    cases = (("biqt", (1, 1, 4), None, None), ("biqt", None, (1.8, 1.8, 6), 1.8), ("espcn", None, (0.9, 0.9, 7), 0.9))
    assert processing.choose_factors(*cases[2]).refusal == ESPCN_REFUSAL
    assert choose("espcn", voxel_size=(0.9, 0.9, 7), target=0.9).refusal == ESPCN_REFUSAL.replace(
        "the Target voxel size", "--voxel-size").replace("choose an Advanced > Model file", "give --model").replace(
        "no coarser Target voxel size", "no coarser --voxel-size")
    i18n.install(lambda context, text: "<" + text + ">")
    try:
        for case in cases:
            said = processing.choose_factors(*case).refusal
            assert _clauses_translated(said) and "<factors 1,1," in said and "Target" not in said.replace(
                "<the Target voxel size>", "").replace("<no coarser Target voxel size>", ""), said
        hint = processing.choose_factors(None, None, (1.8, 1.8, 6), 1.8).hint
        assert hint == "; <<the Target voxel size> 2 gives <factors 1,1,3> (1.8x1.8x2 mm voxels), for which models ship>"
        # a model file for other factors than the Target voxel size chose: the voxel size that gives its own
        hint = processing.choose_factors("biqt", None, (2, 2, 6), 1.5, MODELS_DIR / "biqt_x1x1x3.npz").hint
        assert hint == "; <<the Target voxel size> 2 gives <factors 1,1,3> (2x2x2 mm voxels), which the given model " \
                       "serves>", hint
        process = _load(marked, "ImageQualityTransferLogic.process")["ImageQualityTransferLogic.process"]
        engine = types.SimpleNamespace(choose_factors=processing.choose_factors)
        logic = types.SimpleNamespace(engineError=lambda: ValueError, engine=lambda: engine,
                                      defaultMethod=lambda f, n: "x",
                                      upsamplingFactors=lambda node, mode, voxelSize: processing.choose_factors(
                                          None, None, node.GetSpacing(), voxelSize).factors)
        node = types.SimpleNamespace(GetSpacing=lambda: (1.8, 1.8, 6.0))
        with pytest.raises(ValueError) as refused:  # the Logic's refusal, as the error dialog shows it
            process(logic, node, method="biqt", voxelSize=1.8)
    finally:
        i18n.install(None)
    assert _clauses_translated(str(refused.value)) and "<biqt has shipped models for <factor 2>" in str(refused.value)


def test_the_holes_line_comes_in_the_installed_translator_s_words():
    """The run's note that low-res voxels enclosed by tensors hold none (methods/inputs.py warn_holes) is marked for
    translation (core/i18n.py): with a translator installed the engine says it as one text, singular or plural, its
    count, size and failed-fit clause filled, and the status line shows it as it is; without one its English is as
    before (the Slicer module had matched the English by regex, and a reworded line fell back to English)."""
    import warnings

    import numpy as np

    from ImageQualityTransferLib.core import i18n
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.methods.inputs import warn_holes

    status = _load(marked, "runStatusText")["runStatusText"]
    lr = Volume(np.zeros((6, 6, 6, 6), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]), "tensor")

    def said(n, failed, told):
        holes = np.zeros((6, 6, 6), bool)
        holes[2, 2, 2:2 + n] = True
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warn_holes(lr, holes, failed, told)
        return str(caught[0].message)

    cases = {(1, 0, False): "1 low-res voxel holds no tensor (a missing tensor or a failed fit) where the fitted tensors "
                            "enclose it, 0.0 cm^3 in the largest hole: a lesion",
             (4, 0, False): "4 low-res voxels hold no tensor (a missing tensor or a failed fit) where the fitted "
                            "tensors enclose them, 0.0 cm^3 in the largest hole: a lesion",
             (1, 1, True): "enclose it, 0.0 cm^3 in the largest hole, 1 of them failed fit (counted in the failed-fit "
                           "line too): a lesion",
             (4, 3, True): "enclose them, 0.0 cm^3 in the largest hole, 3 of them failed fits (counted in the "
                           "failed-fit line too): a lesion",
             (4, 2, False): "enclose them, 0.0 cm^3 in the largest hole, 2 of them failed fits: a lesion"}
    english = {case: said(*case) for case in cases}
    for case, words in cases.items():
        assert words in english[case] and english[case].endswith("look at the scan there"), english[case]
    i18n.install(lambda context, text: marked(text) if context == "methods.inputs" else None)
    try:
        translated = {case: said(*case) for case in cases}
    finally:
        i18n.install(None)
    for case, line in translated.items():
        n, failed, _ = case
        assert line.startswith(f"<{n} low-res voxel") and line.endswith(">") and "{" not in line, line
        assert (f"<, {failed} of them failed fit" in line) == bool(failed), line
        assert line.replace("<", "").replace(">", "") == english[case], line
        shown = status("dti_biqt", "the brain was estimated\n" + line, False, None)
        assert shown.split("\n")[-1] == line + ">", shown
    assert {case: said(*case) for case in cases} == english


def _fit_note(dwi, *said):
    """The note of the module's DWI fit (slicer/processing.py fit_dwi) that holds one of `said`."""
    import warnings

    from ImageQualityTransferLib.slicer import processing

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = processing.fit_dwi(dwi)[0]
    return next(n for n in lr.meta["input_notes"] if any(s in n for s in said))


def test_the_exclude_outliers_advice_names_the_panel_s_checkbox_under_a_translator():
    """A DWI node's fit (slicer/processing.py fit_dwi, in the module's process and in its worker) on a series with a
    dropped slice pair: the outlier line's advice had been put as the panel's checkbox by matching its English, so
    under a translator the note told a Slicer user to rerun 'iqt fit' with --exclude-outliers; the option is a
    placeholder the module fills with its control (processing.module_options). A translator that upper-cases vowels
    outside placeholders stands for a language; without one the English is as before."""
    import numpy as np

    from ImageQualityTransferLib.dmri.dti import B0_THRESHOLD
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=(20, 22, 16), voxel_mm=4.0, n_dirs=12)
    d = np.array(dwi.data)
    d[:, :, [8, 9], np.flatnonzero(dwi.bvals > B0_THRESHOLD)[2]] *= 0.2

    def note():
        return _fit_note(dwi.replace(data=d), "does not fit parts", "dOEs nOt fIt pArts")

    assert note().endswith("check the series for head motion, or tick Inputs > Exclude outliers and apply again to "
                           "fit without them")
    with vowels_translated():
        said = note()
    assert said.endswith("chEck thE sErIEs fOr hEAd mOtIOn, Or tIck InpUts > ExclUdE OUtlIErs And Apply AgAIn tO fIt "
                         "wIthOUt thEm") and "--" not in said, said


def test_the_shells_advice_names_the_dwi_volume_not_bmax_under_a_translator():
    """A DWI node with b = 1000 and 3000 shells (slicer/processing.py fit_dwi): the shell line's advice had been put as
    the module's words by matching its English ("give --bmax"), so under a translator the note told a Slicer user to
    give --bmax; the advice is a placeholder the module fills (processing.module_options). A translator that upper-cases
    vowels outside placeholders stands for a language; without one the English is as before."""
    import numpy as np

    from ImageQualityTransferLib.dmri.dti import B0_THRESHOLD
    from ImageQualityTransferLib.dmri.phantom import make_phantom
    from ImageQualityTransferLib.slicer import processing

    dwi = make_phantom(shape=(20, 22, 16), voxel_mm=4.0, n_dirs=12)
    bvals = np.array(dwi.bvals, float)
    weighted = np.flatnonzero(bvals > B0_THRESHOLD)
    bvals[weighted[::2]] = 3000.0
    dwi = dwi.replace(bvals=bvals)

    def note():
        return _fit_note(dwi, "shells", "shElls")

    assert processing.in_module_words(note()).endswith(
        "fit the lowest shell only, as most DTI studies do: keep only the b0s and the volumes with b up to 1000 "
        "s/mm^2 in the DWI volume")
    with vowels_translated():
        said = note()
    assert said.endswith("kEEp Only thE b0s And thE vOlUmEs wIth b Up tO 1000 s/mm^2 In thE DWI vOlUmE") and \
        "--" not in said, said
