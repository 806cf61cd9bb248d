"""The engine's hook for user text in the user's language (core/i18n.py): lines marked with `_` are said in the
words of the translator an app edge installs (the Slicer module installs Slicer's), in a separate worker process too,
and are English without one; every marked template is a literal, which string extraction finds."""

from __future__ import annotations

import ast
import re
import warnings

import numpy as np
import pytest

from ImageQualityTransferLib.core import i18n
from ImageQualityTransferLib.core.volume import Volume

from helpers import REPO

ENGINE = REPO / "ImageQualityTransfer" / "ImageQualityTransferLib"
HOLES = ("{count} low-res voxels hold no tensor (a missing tensor or a failed fit) where the fitted tensors enclose them, "
         "{size} cm^3 in the largest hole{failed}: a lesion, ventricle or region left out of the fit's mask, or "
         "background a wide mask closed over? Every method, interpolation too, fills such holes from the tensors around "
         "them (a wide hole's core stays empty), every uncertainty map raised to the top there: look at the scan there")
# a translator's table, as a .qm file would give it: the placeholders moved
TABLE = {HOLES: "Ohne Tensor: {count} Voxel (größtes Loch {size} cm^3{failed}); sehen Sie sich den Scan dort an"}


@pytest.fixture
def translator():
    """TABLE installed as the engine's translator for one test, then none again."""
    i18n.install(lambda context, text: TABLE.get(text))
    yield
    i18n.install(None)


def test_every_marked_template_is_a_literal_that_extraction_finds():
    """Each `_(...)` call in the engine has one argument, a plain string literal (an f-string, a name or a "+" would
    hide the template from Slicer's extraction, which rewrites `_("...")` for lupdate, and from `marked_templates`);
    `_` comes from core/i18n.py only, and no function that calls it binds `_` itself (a throwaway `parts, _ = ...`
    there would make the call fail)."""
    calls, wrong, found = 0, [], set()
    for path in sorted(ENGINE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if not re.search(r"(?<![\w.])_\s*\(|import _\b", text):
            continue
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and any(a.name == "_" for a in node.names) \
                    and not (node.module or "").endswith("i18n"):
                wrong.append(f"{path.name}:{node.lineno} imports _ from {node.module}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_":
                calls += 1
                if len(node.args) != 1 or node.keywords or not isinstance(node.args[0], ast.Constant) \
                        or not isinstance(node.args[0].value, str):
                    wrong.append(f"{path.name}:{node.lineno} {ast.unparse(node)[:80]}")
                else:
                    found.add(node.args[0].value)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                own = [n for n in ast.walk(node) if isinstance(n, ast.Name) and n.id == "_"]
                if any(isinstance(n.ctx, ast.Store) for n in own) and any(isinstance(n.ctx, ast.Load) for n in own):
                    wrong.append(f"{path.name}:{node.lineno} {node.name} binds _ and calls it")
    assert not wrong, wrong
    templates = [t for _, t in i18n.marked_templates()]
    assert calls >= len(templates) > 10 and ("methods.inputs", HOLES) in i18n.marked_templates()
    assert set(templates) == found  # the worker's list misses none (an import in parentheses, say)
    assert all("{" not in t or t.count("{") == t.count("}") for t in templates)


def test_without_a_translator_the_english_is_said():
    assert i18n.installed() is None and i18n._(HOLES) is HOLES and i18n.translations() == []


def test_a_translator_that_fails_or_has_no_entry_leaves_the_english(translator):
    assert i18n._("no such template") == "no such template"
    assert i18n.translations() == [["methods.inputs", HOLES, TABLE[HOLES]]]
    i18n.install(lambda context, text: 1 / 0)
    assert i18n._(HOLES) == HOLES


def _holed_brain():
    """A sphere of tissue with a 5x5x5 hole the fit left out, and the mask it was fitted in (Testing/methods/
    test_holes.py)."""
    g = np.indices((20, 20, 20)) - 9.5
    brain = (g ** 2).sum(0) < 8 ** 2
    t = np.where(brain[..., None], np.array([7e-4, 0, 7e-4, 0, 0, 7e-4], np.float32), 0).astype(np.float32)
    t[8:13, 8:13, 8:13] = 0
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    return Volume(t, affine, "tensor"), Volume(brain, affine, "mask")


@pytest.mark.slow
def test_a_run_says_the_holes_line_in_the_translator_s_words(translator):
    """cubic on a holed brain, in this process and in the Slicer module's separate worker process (which has no
    translator: it is handed the translations): the holes line in the table's words, its count and size filled."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.slicer import processing

    lr, mask = _holed_brain()
    want = "Ohne Tensor: 125 Voxel (größtes Loch 3.4 cm^3); sehen Sie sich den Scan dort an"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        methods.get("cubic").predict(lr, 2, mask)
    assert want in [str(w.message) for w in caught], [str(w.message) for w in caught]
    far = processing.predict_in_subprocess(lr, processing.Request("cubic", 2), mask)["tensor"]
    assert want in far.meta["notes"], far.meta["notes"]


def _said_by(method: str, lr: Volume, brain: np.ndarray) -> list[str]:
    """The warning lines `method` says upsampling `lr` by 2 in the mask `brain`."""
    from ImageQualityTransferLib import methods

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        methods.get(method).predict(lr, 2, Volume(brain, lr.affine, "mask"))
    return [str(w.message) for w in caught]


def test_a_run_says_the_noisy_context_line_in_the_translator_s_words():
    """cubic on a sphere of tissue given with its mask, every tensor in the two rings beyond it not physical
    (methods/inputs.py warn_noisy_context): the line in the translator's words, each placeholder filled; English
    without one."""
    template = next(t for _, t in i18n.marked_templates() if t.startswith("{count} of the {total} tensors within {rings}"))
    g = np.indices((20, 20, 20)) - 9.5
    r2 = (g ** 2).sum(0)
    brain = r2 < 6 ** 2
    t = np.zeros((20, 20, 20, 6), np.float32)
    t[r2 < 8.5 ** 2] = [-3e-4, 0, 7e-4, 0, 0, 7e-4]  # a negative eigenvalue: noise, not tissue
    t[brain] = [7e-4, 0, 7e-4, 0, 0, 7e-4]
    lr = Volume(t, np.diag([3.0, 3.0, 3.0, 1.0]), "tensor")

    def said():
        return _said_by("cubic", lr, brain)

    english = said()
    assert english[0].startswith("920 of the 920 tensors within 2 voxels beyond the mask (100 %) are not physical"), english
    i18n.install(lambda context, text: {("methods.inputs", template): "{share} % von {total} ({count}) in {rings} "
                                                                      "Ringen: Rauschen ({fslmaths})"}.get((context, text)))
    try:
        assert said() == ["100 % von 920 (920) in 2 Ringen: Rauschen (fslmaths DTI -mas MASK)"]
    finally:
        i18n.install(None)
    assert said() == english


@pytest.mark.slow
def test_a_learned_run_says_the_brain_size_line_in_the_translator_s_words():
    """biqt on a sphere of tissue with 300 mm voxels (a header in another unit; methods/base.py _warn_off_training):
    the brain-length line in the translator's words, its length, voxel size and method filled; English without one."""
    template = next(t for _, t in i18n.marked_templates() if t.startswith("the input's brain is {length} m long"))
    g = np.indices((20, 20, 20)) - 9.5
    brain = (g ** 2).sum(0) < 8 ** 2
    t = np.where(brain[..., None], np.array([7e-4, 0, 7e-4, 0, 0, 7e-4], np.float32), 0).astype(np.float32)
    lr = Volume(t, np.diag([300.0, 300.0, 300.0, 1.0]), "tensor")

    def said():
        return _said_by("biqt", lr, brain)

    english = said()
    assert english == [template.format(length="4.8", size="300x300x300", method="biqt")], english
    assert english[0].startswith("the input's brain is 4.8 m long, far longer than a human brain")
    i18n.install(lambda context, text: {("methods.base", template): "{method}: Voxel {size} mm, Gehirn {length} m "
                                                                    "lang"}.get((context, text)))
    try:
        assert said() == ["biqt: Voxel 300x300x300 mm, Gehirn 4.8 m lang"]
    finally:
        i18n.install(None)


@pytest.mark.parametrize("mistake", ["{count}", "{nombre}", "{count} {name}", "{", "{0}", "{count:d}", "{count!r}",
                                     "{count.real}"])
def test_a_translation_whose_placeholders_are_not_the_template_s_leaves_the_english(mistake):
    """A translator's entry with a placeholder misspelled, added, dropped, positional, given a format or a stray brace
    (the caller formats it after translating: a KeyError or ValueError there had stopped the run): the English line,
    its figures filled."""
    from ImageQualityTransferLib.methods import inputs

    lr, mask = _holed_brain()
    holes = inputs.enclosed_holes(lr, mask, ~np.asarray(lr.data).any(-1))

    def said():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            inputs.warn_holes(lr, holes)
        return [str(w.message) for w in caught]

    english = said()
    wrong = "Ohne Tensor: {size} cm^3{failed} " + mistake.replace("{count}", "")  # {count} alone: it is dropped
    i18n.install(lambda context, text: wrong if text.startswith("{count} low-res voxels") else None)
    try:
        assert said() == english
    finally:
        i18n.install(None)
    assert english[0].startswith("125 low-res voxels hold no tensor"), english


@pytest.mark.parametrize("stray", [b"x = 'caf\xe9'\n", b"from .core.i18n import _\nx = _('a'\n"])
def test_a_stray_file_beside_the_engine_s_does_not_stop_the_worker_handoff(tmp_path, stray):
    """The engine's files and a stray one beside them (Latin-1 bytes, or broken Python that imports `_`: an editor's
    or a user's leftover in the extension's folder): the worker's translations are still made from the engine's
    templates, in a fresh process as in Slicer (a UnicodeDecodeError or SyntaxError there had failed every run)."""
    import shutil
    import subprocess
    import sys

    engine = tmp_path / "ImageQualityTransferLib"
    shutil.copytree(ENGINE, engine, ignore=shutil.ignore_patterns("__pycache__", "*.pt", "*.npz"))
    (engine / "stray.py").write_bytes(stray)
    said = subprocess.run([sys.executable, "-c", "from ImageQualityTransferLib.core import i18n\n"
                           "i18n.install(lambda context, text: 'X ' + text)\nprint(len(i18n.translations()))"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert said.returncode == 0 and said.stdout.split() == [str(len(i18n.marked_templates()))], said.stderr


def _engine_lines_said() -> list[str]:
    """The lines of a few of the engine's checks a Slicer run can say (core/tensor_checks.py, dmri/dti.py,
    methods/inputs.py, methods/forest/model_io.py), each on an input made to trip it."""
    from ImageQualityTransferLib.core import tensor_checks
    from ImageQualityTransferLib.dmri import dti
    from ImageQualityTransferLib.methods import inputs
    from ImageQualityTransferLib.methods.forest import model_io

    t = np.tile(np.array([7e-4, 0, 7e-4, 0, 0, 7e-4], np.float32), (8, 8, 8, 1))
    t[4, 4, 4] = np.nan
    low = np.tile(np.array([1.5e-4, 0, 1.5e-4, 0, 0, 1.5e-4], np.float32), (6, 6, 6, 1))
    negative = np.r_[np.full(20, -1e-4), np.full(100, 7e-4)]
    shells = Volume(np.ones((4, 4, 4, 4), np.float32), np.eye(4), "dwi", bvals=np.array([0.0, 1000, 2000, 3000]),
                    bvecs=np.eye(3)[[0, 0, 1, 2]], meta={"path": "dwi.nii.gz"})
    lr = Volume(t, np.diag([2.0, 2.0, 2.0, 1.0]), "tensor", meta={"path": "dti.nii.gz"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tensor_checks.nan_as_empty(t, "dti.nii.gz: ")
        tensor_checks.check_scale(low, source="dti.nii.gz: ")
        tensor_checks._check_negative_md(negative, "input", "dti.nii.gz: ")
        dti.check_shells(shells)
        inputs.warn_frame_noise(lr)
        model_io.check_arrays({"gl_W": np.zeros(3)}, "model.npz", "rf")
    return [str(w.message) for w in caught]


def test_the_engine_s_warnings_are_said_in_the_translator_s_words_and_english_where_a_placeholder_is_wrong():
    """Each line of `_engine_lines_said` is one marked template, its placeholders filled after translating: a
    translator that brackets every template brackets each line whole (after the file's name); one whose placeholders
    are misspelled leaves each line's English; none installed, the English."""
    english = _engine_lines_said()
    assert len(english) >= 5 and english[0].startswith("dti.nii.gz: 1 voxel inside the tensors holds NaN"), english
    i18n.install(lambda context, text: "«" + text + "»")
    try:
        bracketed = _engine_lines_said()
        i18n.install(lambda context, text: re.sub(r"\{(\w+)", r"{\1_typo", text))
        misspelled = _engine_lines_said()
    finally:
        i18n.install(None)
    assert len(bracketed) == len(english) and all(re.sub(r"^\w+\.nii\.gz: ", "", line).startswith("«")
                                                  and line.endswith("»") for line in bracketed), bracketed
    assert misspelled == english and _engine_lines_said() == english


def test_the_engine_s_clause_helpers_say_their_constants_without_a_translator():
    """The marked copies of texts kept as constants for other uses (core/tensor_checks.py MISSING_AS_*,
    dmri/gradcheck.py LINES_CHECK) are those constants, word for word, where no translator is installed."""
    from ImageQualityTransferLib.core import tensor_checks
    from ImageQualityTransferLib.dmri import gradcheck

    fates = [tensor_checks.MISSING_AS_INPUT, tensor_checks.MISSING_AS_TRACKED, tensor_checks.MISSING_AS_PREDICTION,
             tensor_checks.MISSING_AS_REFERENCE]
    assert [tensor_checks.missing_fate_text(f) for f in fates] == fates
    assert gradcheck.lines_check_text() == gradcheck.LINES_CHECK


# a command a user types, or a program's name: kept out of a marked template's words, as a placeholder
COMMAND = re.compile(r"'iqt |\biqt (fit|upsample|mask|degrade|seal|train|view|batch|track)\b|\b(fslmaths|fslroi|fslmerge|"
                     r"mrconvert|dipy_fit_dti)\b")


def test_no_marked_template_holds_a_command_outside_its_placeholders():
    """A translator translates a template's words: a command in them (the sign refusal's 'fslmaths in -mul -1 out')
    came out changed under a translation, so each is a placeholder the engine fills."""
    held = [(c, t) for c, t in i18n.marked_templates() if COMMAND.search(re.sub(r"\{\w*\}", "", t))]
    assert not held, held


def test_the_sign_refusal_s_command_is_kept_under_a_translator():
    from helpers import vowels_translated

    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.core.tensor_checks import check_scale

    from ImageQualityTransferLib.core import tensors

    rng = np.random.default_rng(3)  # a negated fit: tissue-sized tensors, every one negative definite
    lam = rng.uniform(0.3e-3, 1.5e-3, size=(512, 3))
    rot = np.linalg.qr(rng.normal(size=(512, 3, 3)))[0]
    t = -tensors.from_matrix(rot @ (lam[:, :, None] * np.eye(3)) @ np.swapaxes(rot, 1, 2)).reshape(8, 8, 8, 6)
    with vowels_translated(), pytest.raises(IQTError) as caught:
        check_scale(t, what="input")
    assert "'fslmaths in -mul -1 out'" in str(caught.value) and "mUltIply" in str(caught.value), str(caught.value)
