"""A marked line's placeholders filled with marked text too (core/i18n.py): under a translator, the failed-fit line's
place, the outlier line's slices and volumes, the output selectors' names and the pieces of a thin brain's line are
the translator's words, not English a translator never saw; the module's advice comes from its own options, not from
rewriting English."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from ImageQualityTransferLib.core import i18n
from ImageQualityTransferLib.core.volume import Volume

from helpers import tensor_node_and_a_scalar_node, vowels_translated

def english_words(text: str) -> list[str]:
    """The words of `text` (after its file's name) that a translator upper-casing vowels left as they were: words of
    three letters or more with a lower-case vowel (units such as mm^2/s have none)."""
    text = re.sub(r"^\S+\.nii\.gz: ", "", text)
    return [w for w in re.findall(r"[A-Za-z]{3,}", text) if re.search(r"[aeiou]", w)]


def _failed_fit_lines(**predict) -> list[str]:
    """The failed-fit line of a cubic run on a small field of tensors with two failed fits (a negative eigenvalue)."""
    from ImageQualityTransferLib import methods

    t = np.tile(np.array([7e-4, 0, 7e-4, 0, 0, 7e-4], np.float32), (10, 10, 10, 1))
    t[4, 4, 4, 0] = t[5, 5, 5, 0] = -3e-3
    lr = Volume(t, np.diag([2.0, 2.0, 2.0, 1.0]), "tensor", meta={"path": "dti.nii.gz"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        methods.get("cubic").predict(lr, (2, 2, 2), **predict)
    return [str(w.message) for w in caught if "failed fit" in str(w.message) or "fAIlEd fIt" in str(w.message)]


def test_the_failed_fit_line_says_where_in_the_translator_s_words():
    with vowels_translated():
        said = _failed_fit_lines()
    assert len(said) == 1 and "thE fIEld Of vIEw" in said[0] and not english_words(said[0]), said


def test_the_outlier_line_s_slices_volumes_and_axis_are_the_translator_s():
    from ImageQualityTransferLib.dmri import outliers

    thick = Volume(np.zeros((4, 4, 4, 2), np.float32), np.diag([2.0, 2.0, 6.0, 1.0]), "dwi",
                   bvals=np.array([0.0, 1000]), bvecs=np.eye(3)[:2])
    english_axis = outliers.slice_axis_of(thick)[1]
    found = outliers.Outliers(axis=2, axis_why=english_axis, volumes={5: 31.0},
                              pairs={18: {5: 264.0}, 20: {9: 250.0}, 21: {9: 90.0, 10: 80.0}})
    english = outliers.describe(found)
    with vowels_translated():
        axis_why = outliers.slice_axis_of(thick)[1]
        found.axis_why = axis_why
        said = [outliers.describe(found), outliers._along(found)]
    assert english == ("volume 5 in every slice (median robust z-score 31); slice 18 of volume 5 (robust z-score 264); "
                       "slice 20 of volume 9 (robust z-score 250); slice 21 of volumes 9, 10 (robust z-score up to 90)")
    assert english_axis == "its thick-slice axis, 6 mm"
    assert all(not english_words(s) for s in said) and "vOxEl AxIs k" in said[1], said


def test_the_output_selectors_are_named_in_the_translator_s_words():
    slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.slicer import mrml, processing

    scene = slicer.vtkMRMLScene()
    node, wrong, data = tensor_node_and_a_scalar_node(slicer, scene)
    other = mrml.add_tensor_node(scene, Volume(data, np.diag([1.0, 1.0, 1.0, 1.0]), "tensor"), "other_dti")
    said = []
    with vowels_translated():
        for targets in ({"interpolated": wrong}, {"interpolated": node}, {"uncertainty": node},
                        {"tensor": other, "interpolated": other}):
            with pytest.raises(IQTError) as caught:
                processing.run_on_nodes(scene, node, "linear", 2, targets=targets)
            # the nodes' names and classes and the method's name are names, said as they are
            said.append(re.sub(r"vtkMRML\w+|'(other_)?dti'|'Volume'|_cubic", "", str(caught.value)))
    assert all(not english_words(s) for s in said), said
    assert "'HIgh-rEsOlUtIOn DTI'" in said[-1] and "'NAmEd <InpUt>'" in said[0], said


def test_a_thin_brain_s_axes_are_one_template_a_translator_orders():
    from ImageQualityTransferLib import methods

    table = {"{first} and {second}": "{second} und {first}"}
    i18n.install(lambda context, text: table.get(text))
    try:
        t = np.tile(np.array([7e-4, 0, 7e-4, 0, 0, 7e-4], np.float32), (12, 2, 1, 1))
        lr = Volume(t, np.diag([2.0, 2.0, 2.0, 1.0]), "tensor", meta={"path": "dti.nii.gz"})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            methods.get("global-linear")._warn_off_training(lr, None, (2, 2, 2))
    finally:
        i18n.install(None)
    said = [str(w.message) for w in caught if "thinner than" in str(w.message)]
    assert len(said) == 1 and "1 voxel along voxel axis k und 2 voxels along voxel axis j" in said[0], said
    assert not [t for _, t in i18n.marked_templates() if t.strip() in ("and", "nothing")]


def test_a_missing_node_is_refused_in_one_template():
    pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.slicer import mrml

    with pytest.raises(IQTError) as caught:
        mrml.tensor_volume_from_node(None)
    template = str(caught.value)
    assert template.startswith("expected a diffusion tensor volume node, got nothing; ")
    assert ("slicer.mrml", template) in i18n.marked_templates()


def test_the_rescale_advice_is_the_module_s_own_words_under_a_translator():
    from ImageQualityTransferLib.core import tensor_checks
    from ImageQualityTransferLib.slicer.processing import in_module_words, module_options

    def said():
        with i18n.options_named(module_options()):
            return in_module_words(tensor_checks._rescale_hint(0.7))

    assert tensor_checks._rescale_hint(0.7) == "multiply them by 1e-3 to get mm^2/s (DTI-TK writes 1e-3 mm^2/s, i.e. um^2/ms)"
    assert said() == "rescale them by 1e-3 to mm^2/s before loading them (DTI-TK writes 1e-3 mm^2/s, i.e. um^2/ms)"
    with vowels_translated():
        module = said()
    assert module.startswith("rEscAlE thEm by 1E-3 tO mm^2/s bEfOrE lOAdIng thEm") and not english_words(module), module


def test_the_b0_order_line_s_templates_name_no_command_line_option():
    """--bmax is iqt fit's: the Slicer module never keeps shells, so its translators get a placeholder (the English
    line is Testing/dmri/test_b0_order.py's)."""
    b0s = [t for c, t in i18n.marked_templates() if c == "dmri.b0s"]
    assert b0s and not [t for t in b0s if "--" in t], b0s


def test_a_slicer_run_s_tensor_and_mask_refusals_are_the_translator_s():
    """Refusals a Slicer run reaches with a loaded volume: a sign-inverted or empty fit, NaN in the tensors, an empty
    mask node (its advice the module's own option); `{what}` ("input") is the caller's word."""
    slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")
    from ImageQualityTransferLib.core import tensor_checks
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.methods import inputs
    from ImageQualityTransferLib.slicer import mrml, processing

    nan = np.ones((4, 4, 4, 6))
    nan[0, 0, 0, 0] = np.nan
    scene = slicer.vtkMRMLScene()
    empty = mrml.add_scalar_node(scene, Volume(np.zeros((4, 4, 4), np.float32), np.eye(4), "scalar"), "m")

    def module_mask():
        with i18n.options_named(processing.module_options()):
            mrml.mask_from_node(empty)

    said = []
    with vowels_translated():
        for refused in (lambda: tensor_checks.check_scale(np.tile([-7e-4, 0, -7e-4, 0, 0, -7e-4], (500, 1))),
                        lambda: tensor_checks.check_scale(np.tile([1e-9, 0, 1e-9, 0, 0, 1e-9], (500, 1))),
                        lambda: inputs.check_tensor_input(Volume(nan, np.eye(4), "tensor")), module_mask):
            with pytest.raises(IQTError) as caught:
                refused()
            said.append(processing.in_module_words(str(caught.value)))
    # the sign refusal's command is a placeholder: kept as typed, not translated
    assert "'fslmaths in -mul -1 out'" in said[0], said
    assert all(not english_words(s.replace(" input ", " ").replace("'fslmaths in -mul -1 out'", "")) for s in said), said
    assert said[-1].endswith("chOOsE A BrAIn mAsk thAt hOlds thE brAIn"), said


def test_the_gradient_file_warnings_are_the_translator_s(tmp_path):
    """A bvec file's directions off unit length (each branch) and an unreadable BIDS sidecar: whole marked lines."""
    from ImageQualityTransferLib.fileio import gradients, volumes

    g = np.eye(3)[[0, 0, 1, 2, 0, 1, 2]] * np.r_[1, 0.7, 0.8, 0.9, 1.0, 0.75, 0.85][:, None]
    (tmp_path / "dwi.json").write_text("{not json")
    with vowels_translated(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        volumes._scale_b_by_length(np.r_[0.0, np.full(6, 1000.0)], g, "dwi.bvec")
        volumes._scale_b_by_length(np.r_[0.0, np.full(3, 1000.0), np.full(3, 2000.0)], g, "dwi.bvec")
        gradients.sidecar_slices(tmp_path / "dwi.nii.gz")
    said = [re.sub(r"^\S+: ", "", str(w.message)) for w in caught]
    assert len(said) == 3 and all(not english_words(s.replace("JSONDecodeError", "")) for s in said), said


def test_each_selector_label_is_translated_once_in_the_panel_s_context():
    """A refusal names an output selector by the panel's label (Resources/UI/ImageQualityTransfer.ui), in the panel's
    translation: the label had been marked again in slicer.results, so a translator translated it twice and the two
    could differ."""
    from ImageQualityTransferLib.slicer import results

    asked = []

    def translator(context, text):
        asked.append((context, text))
        return "Etikett" if context == results.UI_CONTEXT else None

    i18n.install(translator)
    try:
        said = {key: results.selector_label(key) for key in results.SELECTOR_UI_LABEL}
    finally:
        i18n.install(None)
    assert said == dict.fromkeys(results.SELECTOR_UI_LABEL, "'Etikett'"), said
    assert sorted(asked) == sorted((results.UI_CONTEXT, label) for label in results.SELECTOR_UI_LABEL.values()), asked
    words = {label.rstrip(":") for label in results.SELECTOR_UI_LABEL.values()}
    assert not [t for c, t in i18n.marked_templates() if c == "slicer.results" and t.strip("'") in words]
