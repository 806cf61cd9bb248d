"""The Slicer module, headless: its Qt-free processing on a real vtkMRMLScene (slicer-core, no mocks), the
worker process, and static checks of the module file, its .ui, CMake lists and the Extensions Index file.

The GUI itself (widgets, layouts, colour legend, SlicerDMRI hand-over) needs the Slicer application and is
covered by the module's own self-test (ImageQualityTransferTest), not here.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from ImageQualityTransferLib.dmri import degrade
from ImageQualityTransferLib.core import grid, tensors
from ImageQualityTransferLib.fileio.nrrd import direction_rotation

from helpers import REPO, on_grid_of

MODULE_DIR = REPO / "ImageQualityTransfer"
MODULE_PY = MODULE_DIR / "ImageQualityTransfer.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "ImageQualityTransfer.ui"
LIB = MODULE_DIR / "ImageQualityTransferLib"
FACTOR = 2


# ---------------------------------------------------------------- static checks (no slicer needed)


def module_tree():
    return ast.parse(MODULE_PY.read_text())


def test_module_top_level_imports_are_slicer_provided():
    allowed = {"slicer", "vtk", "qt", "ctk", "SampleData", "PyTorchUtils"}
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for node in module_tree().body:  # top level only: imports inside functions are lazy
        if isinstance(node, ast.Import):
            roots = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            roots = [(node.module or "").split(".")[0]]
        else:
            continue
        bad += [r for r in roots if r not in allowed and r not in stdlib]
    assert not bad, f"top-level imports Slicer does not provide: {bad}"
    src = MODULE_PY.read_text()
    assert "ImageQualityTransferLib" in src  # the engine is used, lazily


def test_module_follows_the_wizard_template():
    tree = module_tree()
    classes = {c.name: c for c in tree.body if isinstance(c, ast.ClassDef)}
    bases = {n: [ast.unparse(b) for b in c.bases] for n, c in classes.items()}
    assert bases["ImageQualityTransfer"] == ["ScriptedLoadableModule"]
    assert bases["ImageQualityTransferWidget"] == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    assert bases["ImageQualityTransferLogic"] == ["ScriptedLoadableModuleLogic"]
    assert bases["ImageQualityTransferTest"] == ["ScriptedLoadableModuleTest"]
    decos = [ast.unparse(d) for d in classes["ImageQualityTransferParameterNode"].decorator_list]
    assert decos == ["parameterNodeWrapper"]
    src = MODULE_PY.read_text()
    for needle in ("tryWithErrorDisplay", 'categories = [translate("qSlicerAbstractCoreModule", "Diffusion")]',
                   "Alexander", "Tanno", "2014", "2016", "2017", "describe()", "PyTorchUtils", "PythonSlicer",
                   "show_results", "show_comparison", "send_to_seeding", "pip_ensure", "run_on_nodes"):
        assert needle in src, needle
    process = [f for f in ast.walk(classes["ImageQualityTransferLogic"]) if isinstance(f, ast.FunctionDef) and f.name == "process"][0]
    args = [a.arg for a in process.args.args]
    for a in ("inputNode", "outputNode", "method", "factor", "maskNode", "uncertaintyNode", "interpolatedNode",
              "samples", "progressCallback"):
        assert a in args, a


def parameter_names() -> set[str]:
    cls = [c for c in module_tree().body if isinstance(c, ast.ClassDef) and c.name == "ImageQualityTransferParameterNode"][0]
    return {s.target.id for s in cls.body if isinstance(s, ast.AnnAssign)}


def ui_widgets() -> dict[str, ET.Element]:
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def test_ui_names_used_by_the_module_exist():
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_PY.read_text()))
    assert used, "the module uses no ui widget?"
    missing = used - set(ui_widgets())
    assert not missing, f"widgets used in ImageQualityTransfer.py but absent from the .ui: {sorted(missing)}"


def test_ui_parameter_names_match_the_parameter_node():
    params = parameter_names()
    bound = {}
    for name, w in ui_widgets().items():
        for p in w.findall("property"):
            if p.get("name") == "SlicerParameterName":
                bound[name] = p.find("string").text
    assert bound, "no SlicerParameterName in the .ui"
    unknown = {w: p for w, p in bound.items() if p not in params}
    assert not unknown, f"SlicerParameterName without a parameter: {unknown}"
    # every parameter has a widget, except the method (combo filled from the engine at run time), the model file
    # (bound by hand: the path widget's binding shows "." for an empty path) and the upsampling mode (bound by hand:
    # the Choice binding would show the raw values instead of the .ui's translated labels), and the last run's nodes
    # (kept for Compare and tractography, shown by no control), and the uncertainty map shown (its combo lists the last
    # run's maps, filled at run time), and who chose the method (set with it)
    assert params - set(bound.values()) == {"method", "methodChosenBy", "modelPath", "upsamplingMode", "resultVolume",
                                            "resultUncertainty", "resultInterpolated", "uncertaintyMap"}
    assert "onUncertaintyMapChanged" in MODULE_PY.read_text()
    assert "modelPathLineEdit" in ui_widgets() and "onModelPathChanged" in MODULE_PY.read_text()


def test_ui_parameter_names_are_not_translated_and_the_uncertainty_tooltip_names_the_nodes_unit():
    """A translated SlicerParameterName would no longer bind its widget to the parameter node, so each is notr; the
    Uncertainty selector's tooltip gives the unit its nodes hold (µm²/ms, mrml.NODE_UNITS), not mm^2/s (audit)."""
    names = [p.find("string") for w in ui_widgets().values() for p in w.findall("property")
             if p.get("name") == "SlicerParameterName"]
    assert len(names) == 14 and all(s.get("notr") == "true" for s in names), [s.text for s in names if s.get("notr") != "true"]
    tip = next(p.find("string").text for p in ui_widgets()["uncertaintySelector"].findall("property")
               if p.get("name") == "toolTip")
    assert tensors.SHOWN_UNIT_LABEL in tip and "mm^2/s" not in tip

def test_the_floor_checkbox_says_it_colours_from_the_clean_level_or_the_median():
    """The overlay is coloured from a shipped model's clean level or the map's median, whichever is lower
    (slicer/legends.py); the checkbox had read "Above the median only". Its label and tooltip name both, the help and
    docs name the label the panel shows, and it still binds the parameter a saved scene holds its value under."""
    widgets = ui_widgets()

    def text(widget: str, prop: str) -> str:
        return next(p.find("string").text for p in widgets[widget].findall("property") if p.get("name") == prop)

    label = text("fromMedianCheckBoxLabel", "text").rstrip(":")
    assert "clean level" in label and "median" in label, label
    tip = text("fromMedianCheckBox", "toolTip")
    assert "clean" in tip and "median" in tip and "lower" in tip, tip
    assert text("fromMedianCheckBox", "SlicerParameterName") == "uncertaintyFromMedian"
    assert "uncertaintyFromMedian" in parameter_names()
    assert f"<b>Display &gt; {label}</b>" in MODULE_PY.read_text()
    assert f"**Display \u2192 {label}**" in (REPO / "docs" / "slicer.md").read_text()
    # `iqt view`'s box says the same (it had kept "Above the median only"), and its page names it so
    view = (MODULE_DIR / "ImageQualityTransferLib" / "apps" / "view" / "viewer.py").read_text()
    assert f'label="{label}"' in view and "Above the median only" not in view
    assert f"**{label}**" in " ".join((REPO / "docs" / "view.md").read_text().split())


def test_the_model_file_chooser_offers_the_model_files():
    """Advanced > Model file's file dialog lists the learned families' weights and their .json sidecars first (it had
    no filter: every file of a folder)."""
    from ImageQualityTransferLib import methods

    prop = next(p for p in ui_widgets()["modelPathLineEdit"].findall("property") if p.get("name") == "nameFilters")
    filters = [s.text for s in prop.find("stringlist").findall("string")]
    suffixes = {getattr(methods.method_class(n), "model_suffix", "") for n in methods.names()} - {""} | {".json"}
    assert set(re.findall(r"\*(\.\w+)", filters[0])) == suffixes and filters[-1] == "All files (*)"


def test_a_runs_notes_give_diffusivities_in_the_panels_unit():
    """The status line's notes said "outside -0.001 to 0.005 mm^2/s" where the panel's legends and map nodes say
    µm²/ms."""
    from ImageQualityTransferLib.slicer import processing

    note = ("27 voxels in the mask hold a failed fit (an eigenvalue outside -0.001 to 0.005 mm^2/s); "
            "below 1e-06 mm^2/s")
    assert processing.notes_in_shown_unit(note) == ("27 voxels in the mask hold a failed fit (an eigenvalue outside "
                                                    "-1 to 5 µm²/ms); below 0.001 µm²/ms")
    run = ast.unparse(next(f for f in ast.parse(Path(processing.__file__).read_text()).body
                           if isinstance(f, ast.FunctionDef) and f.name == "_run_on_nodes"))
    assert "notes_in_shown_unit(in_module_words(notes))" in run


def test_a_note_gives_its_figures_in_one_unit():
    """The engine's real notes (core/tensor_checks.py check_scale's warning, dmri/b0s.py's brain MD words) had read
    "typical MD 0.2 µm²/ms is below any living brain's (about 0.6-1.0e-3)": their reference figures stayed in mm²/s."""
    import warnings

    import numpy as np

    from ImageQualityTransferLib.core import tensor_checks
    from ImageQualityTransferLib.core.errors import IQTWarning
    from ImageQualityTransferLib.dmri import b0s
    from ImageQualityTransferLib.slicer import processing

    t = np.zeros((8, 8, 8, 6))
    t[..., 0] = t[..., 2] = t[..., 5] = 2e-4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IQTWarning)
        tensor_checks.check_scale(t, None, "input")
    low = processing.notes_in_shown_unit(processing.in_module_words(str(caught[0].message)))
    assert "typical MD 0.2 µm²/ms is below any living brain's (about 0.6-1.0 µm²/ms)" in low
    md = 2.0e-3  # dmri/b0s.py check_b0_levels' wording
    said = (f"the brain's median MD is {md * 1e3:.2g}e-3 mm^2/s, outside the {b0s.MD_RANGE[0] * 1e3:g}e-3 to "
            f"{b0s.MD_RANGE[1] * 1e3:g}e-3 of an in-vivo brain")
    assert processing.notes_in_shown_unit(said) == ("the brain's median MD is 2 µm²/ms, outside the 0.4 to 1.6 µm²/ms "
                                                    "of an in-vivo brain")
    # a figure that cannot be converted with the others: the note stays as the engine wrote it, whole
    mixed = "typical MD 0.0002, 99th percentile of |Dii| 0.01; brain MD is about 0.7e-3 mm^2/s"
    assert processing.notes_in_shown_unit("first 1e-06 mm^2/s\n" + mixed) == "first 0.001 µm²/ms\n" + mixed


def test_ui_sections_and_controls():
    widgets = ui_widgets()
    for section in ("inputs", "method", "outputs", "display", "advanced"):
        assert widgets[f"{section}CollapsibleButton"].get("class") == "ctkCollapsibleButton"
    kinds = {n: w.get("class") for n, w in widgets.items()}
    assert kinds["methodComboBox"] == "QComboBox" and kinds["methodDescriptionLabel"] == "QLabel"
    assert kinds["progressBar"] == "QProgressBar" and kinds["statusLabel"] == "QLabel"
    assert kinds["opacitySliderWidget"] == "ctkSliderWidget" and kinds["fromMedianCheckBox"] == "QCheckBox"
    for b in ("applyButton", "compareButton", "tractographyButton"):
        assert kinds[b] == "QPushButton"


def test_upsampling_controls_follow_the_engine():
    """The mode combo lists the engine's modes in its order; the factor and voxel-size boxes are bound; the module
    computes factors and offered methods through the engine (slicer/upsampling.py), not by itself."""
    from ImageQualityTransferLib.slicer import upsampling

    tree = module_tree()
    modes = [n for n in tree.body if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "UPSAMPLING_MODES"
                                                                      for t in n.targets)]
    assert len(modes) == 1 and ast.literal_eval(modes[0].value) == upsampling.MODES
    widgets = ui_widgets()
    combo = widgets["upsamplingModeComboBox"]
    assert combo.get("class") == "QComboBox"
    labels = [i.find("property/string").text for i in combo.findall("item")]
    assert labels == ["Isotropic", "Through-plane", "Target voxel size"]
    assert widgets["voxelSizeSpinBox"].get("class") == "QDoubleSpinBox"
    assert widgets["factorSpinBox"].get("class") == "QSpinBox"
    for name in ("factorsLabel", "upsamplingNoteLabel"):
        assert widgets[name].get("class") == "QLabel"
    assert {"upsamplingMode", "factor", "voxelSize"} <= parameter_names()
    src = MODULE_PY.read_text()
    for needle in ("upsampling.factors_for(", "upsampling.offered(", "upsampling.output_spacing(", "factor=self._factors"):
        assert needle in src, needle


def cmake_sets(text: str) -> dict[str, str]:
    return dict(re.findall(r'set\((EXTENSION_\w+)\s+"([^"]*)"\)', text))


def _cmake_engine_scripts(text: str) -> set[str]:
    """The engine scripts CMakeLists.txt hands to Slicer: its GLOB_RECURSE evaluated by cmake itself (script mode,
    where CONFIGURE_DEPENDS does not apply)."""
    block = re.search(r"file\(GLOB_RECURSE MODULE_ENGINE_SCRIPTS.*?\)", text, re.S)
    assert block, "CMakeLists.txt no longer globs the engine's scripts into MODULE_ENGINE_SCRIPTS"
    script = (f"set(CMAKE_CURRENT_SOURCE_DIR {MODULE_DIR.as_posix()})\n"
              + block.group(0).replace("CONFIGURE_DEPENDS", "") + '\nmessage("${MODULE_ENGINE_SCRIPTS}")\n')
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "glob.cmake"
        path.write_text(script)
        proc = subprocess.run(["cmake", "-P", str(path)], capture_output=True, text=True, check=True)
    return set(proc.stderr.strip().split(";"))


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed, so the CMake glob is not evaluated")
def test_cmake_lists_every_script_and_resource():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert re.search(r"set\(MODULE_PYTHON_SCRIPTS\s+\$\{MODULE_NAME\}\.py\s+\$\{MODULE_ENGINE_SCRIPTS\}\s*\)", text)
    listed = _cmake_engine_scripts(text)
    on_disk = {p.relative_to(MODULE_DIR).as_posix() for p in LIB.rglob("*.py") if "__pycache__" not in p.parts}
    assert listed == on_disk, f"CMake lists {sorted(listed ^ on_disk)} differently from the files on disk"
    for needle in ("slicerMacroBuildScriptedModule", "WITH_GENERIC_TESTS", "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)",
                   "Resources/UI/${MODULE_NAME}.ui", "Resources/Icons/${MODULE_NAME}.png", "Resources/Models/*", "${MODULE_NAME}.py"):
        assert needle in text, needle
    from PIL import Image

    with Image.open(MODULE_DIR / "Resources" / "Icons" / "ImageQualityTransfer.png") as im:
        assert im.size == (128, 128)


def test_extension_index_file_agrees_with_cmake():
    entry = json.loads((REPO / "ImageQualityTransfer.json").read_text())
    meta = cmake_sets((REPO / "CMakeLists.txt").read_text())
    assert entry["$schema"] == (
        "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json"
    )
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies", "dicom_support_rule",
               "build_subdirectory", "enabled", "tier"}  # the schema has additionalProperties: false
    assert set(entry) <= allowed and {"$schema", "category", "scm_url"} <= set(entry)
    assert entry["category"] == meta["EXTENSION_CATEGORY"] == "Diffusion"
    assert entry["build_dependencies"] == meta["EXTENSION_DEPENDS"].split()
    repo_url = entry["scm_url"].removesuffix(".git")
    assert meta["EXTENSION_HOMEPAGE"].startswith(repo_url)
    assert repo_url.split("github.com/")[1] in meta["EXTENSION_ICONURL"]
    assert 1 <= entry["tier"] <= 5
    for key in ("EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_SCREENSHOTURLS"):
        assert meta.get(key), key
    # every screenshot named exists in the repository, small enough for the extension page
    for url in meta["EXTENSION_SCREENSHOTURLS"].split():
        shot = REPO / url.split("/main/", 1)[1]
        assert shot.is_file() and shot.stat().st_size < 300_000, shot
    # SlicerDMRI is optional (checked at run time by the tractography hand-off), never a build dependency
    assert "SlicerDMRI" not in entry["build_dependencies"]


# ---------------------------------------------------------------- real MRML (slicer-core)

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")
vtk = pytest.importorskip("vtk")

from ImageQualityTransferLib.slicer import mrml, processing as slicer_processing  # noqa: E402
from ImageQualityTransferLib.core.volume import Volume  # noqa: E402


def node_state(node):
    from vtk.util import numpy_support as ns

    ijk, mf = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk)
    node.GetMeasurementFrameMatrix(mf)
    t = np.array(ns.vtk_to_numpy(node.GetImageData().GetPointData().GetTensors()), copy=True)
    return t, mrml._matrix_to_numpy(ijk), mrml._matrix_to_numpy(mf)


def principal_ras_from_node(node):
    """Principal eigenvector in RAS straight from the node: D_RAS = MF D_node MF^T (Slicer's own reading)."""
    t9, ijk, mf = node_state(node)
    dims = node.GetImageData().GetDimensions()
    d = t9.reshape(dims[2], dims[1], dims[0], 3, 3).transpose(2, 1, 0, 3, 4)
    m = mf[:3, :3]
    d_ras = np.einsum("ij,...jk,lk->...il", m, d, m)
    _, v = np.linalg.eigh(d_ras)
    return v[..., :, -1], ijk


def cc_body_voxels(vol_affine, fa, mask, min_fa=0.45):
    """High-FA voxels near the mid-sagittal plane, slightly superior to the centre of the brain mask."""
    idx = np.argwhere(mask)
    ras = (vol_affine[:3, :3] @ idx.T).T + vol_affine[:3, 3]
    centre = ras.mean(axis=0)
    vox = np.sqrt((vol_affine[:3, :3] ** 2).sum(axis=0))
    near = (np.abs(ras[:, 0] - centre[0]) <= 1.5 * vox.max()) & (ras[:, 2] - centre[2] > 3) & (ras[:, 2] - centre[2] < 30) \
        & (np.abs(ras[:, 1] - centre[1]) < 20)
    cand = idx[near]
    f = fa[tuple(cand.T)]
    keep = cand[f > max(min_fa, np.percentile(f, 85))]
    return keep


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


@pytest.fixture(scope="module")
def lr_axial(axial_subject):
    return degrade.degrade(axial_subject.dwi, axial_subject.mask.data, FACTOR)


@pytest.fixture(scope="module")
def lr_sagittal(sagittal_subject):
    return degrade.degrade(sagittal_subject.dwi, sagittal_subject.mask.data, FACTOR)


def test_run_on_nodes_real_subject(tmp_path, scene, lr_axial):
    lr = lr_axial.tensor
    in_node = mrml.add_tensor_node(scene, lr, "lowres")
    mask_node = mrml.add_scalar_node(scene, Volume(lr_axial.mask.data.astype(np.uint8), lr.affine, "scalar"), "mask")
    before = node_state(in_node)
    mtime = in_node.GetImageData().GetMTime()
    steps = []
    nodes = slicer_processing.run_on_nodes(scene, in_node, "cubic", FACTOR, mask_node=mask_node, interpolate=True,
                                           progress=lambda f, m: steps.append((f, m)))
    out = nodes["tensor"]
    assert out.GetClassName() == "vtkMRMLDiffusionTensorVolumeNode"
    assert out.GetDisplayNode() is not None and out.GetDisplayNode().IsA("vtkMRMLDiffusionTensorVolumeDisplayNode")
    assert nodes["interpolated"].GetClassName() == "vtkMRMLDiffusionTensorVolumeNode"
    assert out is not in_node and nodes["interpolated"] is out  # cubic is its own comparison: one node, not two
    # geometry: spacing / r, origin at the first high-res voxel centre, direction copied
    in_dirs, out_dirs = np.zeros((3, 3)), np.zeros((3, 3))
    in_node.GetIJKToRASDirections(in_dirs)
    out.GetIJKToRASDirections(out_dirs)
    np.testing.assert_allclose(out_dirs, in_dirs, atol=1e-12)
    np.testing.assert_allclose(out.GetSpacing(), np.array(in_node.GetSpacing()) / FACTOR, rtol=1e-12)
    np.testing.assert_allclose(out.GetOrigin(), grid.hr_affine(lr.affine, FACTOR)[:3, 3], atol=1e-9)
    assert out.GetImageData().GetDimensions() == tuple(FACTOR * n for n in lr.shape3)
    # the input node is unchanged
    after = node_state(in_node)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert in_node.GetImageData().GetMTime() == mtime
    assert [s[0] for s in steps if s[0] is not None][-1] == 1.0
    # the result is what the engine gives on the Volume
    expect = slicer_processing.methods_mod.get("cubic").predict(lr, FACTOR, mask=lr_axial.mask).tensor
    got = mrml.tensor_volume_from_node(out)
    np.testing.assert_allclose(got.data, expect.data, atol=1e-10)

    # written by Slicer's NRRD storage node, read back by the Volumes logic as a DTI node with the same components
    path = tmp_path / "iqt.nrrd"
    storage = slicer.vtkMRMLNRRDStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.WriteData(out) == 1
    logic = slicer.vtkSlicerVolumesLogic()
    logic.SetMRMLScene(scene)
    back = logic.AddArchetypeVolume(str(path), "back")
    assert back is not None and back.IsA("vtkMRMLDiffusionTensorVolumeNode")
    back_vol = mrml.tensor_volume_from_node(back)
    if np.allclose(back_vol.affine, got.affine, atol=1e-6):
        np.testing.assert_allclose(back_vol.data, got.data, atol=1e-12)
    else:  # the reader may reverse an axis of a left-handed grid: same tensors in RAS at the same points
        np.testing.assert_allclose(on_grid_of(back_vol, got).data, got.data, atol=1e-9)


def test_existing_target_nodes_are_filled(scene, lr_axial):
    lr = Volume(lr_axial.tensor.data[10:30, 10:30, 10:20], lr_axial.tensor.affine, "tensor")
    in_node = mrml.add_tensor_node(scene, lr, "crop")
    target = scene.AddNode(slicer.vtkMRMLDiffusionTensorVolumeNode())
    target.SetName("my output")
    n_before = scene.GetNumberOfNodesByClass("vtkMRMLDiffusionTensorVolumeNode")
    nodes = slicer_processing.run_on_nodes(scene, in_node, "linear", FACTOR, targets={"tensor": target})
    assert nodes["tensor"] is target and target.GetName() == "my output"
    assert scene.GetNumberOfNodesByClass("vtkMRMLDiffusionTensorVolumeNode") == n_before
    assert target.GetImageData().GetDimensions() == tuple(FACTOR * n for n in lr.shape3)
    wrong = scene.AddNode(slicer.vtkMRMLScalarVolumeNode())
    ran = []
    real = slicer_processing.predict_volumes
    slicer_processing.predict_volumes = lambda *a, **k: ran.append(1) or real(*a, **k)
    try:
        with pytest.raises(slicer_processing.IQTError, match="Named after the method"):
            slicer_processing.run_on_nodes(scene, in_node, "linear", FACTOR, targets={"tensor": wrong})
    finally:
        slicer_processing.predict_volumes = real
    assert not ran  # refused before any work


@pytest.mark.realdata  # the subject comes through request.getfixturevalue, which the automatic marking cannot see
@pytest.mark.parametrize("which", ["axial", pytest.param("sagittal", marks=pytest.mark.slow)])
def test_corpus_callosum_points_left_right(scene, which, request):
    pair = request.getfixturevalue(f"lr_{which}")
    in_node = mrml.add_tensor_node(scene, pair.tensor, which)
    nodes = slicer_processing.run_on_nodes(scene, in_node, "cubic", FACTOR)
    out = nodes["tensor"]
    e1_ras, ijk = principal_ras_from_node(out)
    hr_mask = pair.mask.data.repeat(FACTOR, 0).repeat(FACTOR, 1).repeat(FACTOR, 2)
    fa = tensors.fa(mrml.tensor_volume_from_node(out).data)
    cc = cc_body_voxels(ijk, fa, hr_mask)
    assert len(cc) >= 10, f"found only {len(cc)} corpus callosum voxels"
    lr_dot = np.abs(e1_ras[tuple(cc.T)][:, 0])
    assert np.median(lr_dot) > 0.8, f"{which}: median |e1 . x_RAS| = {np.median(lr_dot):.2f} in the CC body"
    # and the RAS reading matches the engine's own frame rule (components in voxel axes, rotated by R)
    v = mrml.tensor_volume_from_node(out)
    _, vec = tensors.eig(v.data[tuple(cc.T)])
    e1_engine = (direction_rotation(v.affine) @ vec[:, :, 0].T).T
    np.testing.assert_allclose(np.abs((e1_engine * e1_ras[tuple(cc.T)]).sum(axis=1)), 1.0, atol=1e-4)


def test_dwi_node_is_fitted_first(scene, axial_subject):
    """A vtkMRMLDiffusionWeightedVolumeNode (gradients in its measurement frame) gives the same tensors as the
    engine's own fit of the same DWI."""
    from vtk.util import numpy_support as ns

    from ImageQualityTransferLib.dmri import dti

    dwi = axial_subject.dwi
    sub = Volume(np.ascontiguousarray(dwi.data[20:44, 20:44, 10:26]), dwi.affine, "dwi", bvals=dwi.bvals, bvecs=dwi.bvecs)
    node = slicer.vtkMRMLDiffusionWeightedVolumeNode()
    scene.AddNode(node)
    image = mrml._image_data(sub.data.astype(np.float32), as_tensors=False)
    node.SetIJKToRASMatrix(mrml._numpy_to_matrix(sub.affine))
    r = direction_rotation(sub.affine)
    mf = np.eye(4)
    mf[:3, :3] = r
    node.SetMeasurementFrameMatrix(mrml._numpy_to_matrix(mf))  # gradients stored in IJK axes
    node.SetAndObserveImageData(image)
    node.SetNumberOfGradients(len(sub.bvals))
    node.SetDiffusionGradients(ns.numpy_to_vtk(np.ascontiguousarray(sub.bvecs, dtype=np.float64), deep=1))
    node.SetBValues(ns.numpy_to_vtk(np.ascontiguousarray(sub.bvals, dtype=np.float64), deep=1))
    back = slicer_processing.dwi_volume_from_node(node)
    np.testing.assert_allclose(back.bvecs[sub.bvals > 50], sub.bvecs[sub.bvals > 50] /
                               np.linalg.norm(sub.bvecs[sub.bvals > 50], axis=1, keepdims=True), atol=1e-9)
    lr, mask = slicer_processing.input_volumes(node)
    expect = dti.fit_dti(sub, mask)
    np.testing.assert_allclose(lr.data, expect.data, atol=1e-9)  # as fitted, as iqt fit writes them
    # no mask chosen: the estimated one is said in the run's notes
    notes = slicer_processing.predict_volumes(lr, slicer_processing.Request("cubic", FACTOR), mask)["tensor"].meta["notes"]
    assert len(notes) == 1 and notes[0].startswith("no mask was chosen") and "% of the field of view" in notes[0]
    # a mask with the same voxels stored with the first axis reversed (a NIfTI beside an NRRD) is taken, re-indexed
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = mask.shape3[0] - 1
    mirrored = Volume(np.ascontiguousarray(mask.data[::-1]), mask.affine @ flip, "mask")
    mask_node = mrml.add_scalar_node(scene, Volume(mirrored.data.astype(np.float32), mirrored.affine, "scalar"), "m")
    again, taken = slicer_processing.input_volumes(node, mask_node)
    np.testing.assert_array_equal(taken.data, mask.data)
    np.testing.assert_allclose(again.data, lr.data, atol=1e-9)


@pytest.mark.slow
def test_worker_process_matches_in_process(scene, lr_axial):
    """The separate-process path (what the Slicer module uses for torch methods), here with plain Python."""
    lr = Volume(lr_axial.tensor.data[8:40, 8:40, 8:24], lr_axial.tensor.affine, "tensor")
    mask = Volume(lr_axial.mask.data[8:40, 8:40, 8:24], lr.affine, "mask")
    steps = []
    request = slicer_processing.Request("linear", FACTOR, interpolate=True)
    sub = slicer_processing.predict_in_subprocess(lr, request, mask=mask, python_executable=sys.executable,
                                                  progress=lambda f, m: steps.append(f))
    here = slicer_processing.predict_volumes(lr, request, mask=mask)
    assert set(sub) == set(here) == {"tensor", "interpolated"}
    for k in here:  # to float32 round-off: a BLAS thread count set by an earlier test moves the last bit
        np.testing.assert_allclose(sub[k].data, here[k].data, atol=1e-6 * float(np.abs(here[k].data).max()))
        np.testing.assert_allclose(sub[k].affine, here[k].affine, atol=1e-9)
    assert any(s is not None and s > 0 for s in steps)
    assert sub["tensor"].meta["factor"] == here["tensor"].meta["factor"]  # the comparison view picks its plane by it
    with pytest.raises(slicer_processing.IQTError, match="unknown method"):
        slicer_processing.predict_in_subprocess(lr, slicer_processing.Request("no-such-method", FACTOR),
                                                python_executable=sys.executable)
    with pytest.raises(slicer_processing.Cancelled):
        slicer_processing.predict_in_subprocess(lr, slicer_processing.Request("cubic", FACTOR), python_executable=sys.executable,
                                                cancel=lambda: True)


def test_the_worker_hands_its_outputs_back_uncompressed(lr_axial, tmp_path):
    """Slicer writes the worker's input and reads its outputs on its GUI thread: the arrays as they are (.npz, .npy),
    no gzip (a module audit timed a 3 s pause of the panel there, then 4.3 s writing an HCP-size input) and no NRRD,
    whose read-back conversions held it 5.8 s."""
    lr = Volume(lr_axial.tensor.data[8:24, 8:24, 8:16], lr_axial.tensor.affine, "tensor")
    mask = Volume((lr.data[..., 0] != 0).astype(np.uint8), lr.affine, "mask")
    request = slicer_processing.Request("biqt", FACTOR, interpolate=True)
    got = slicer_processing.predict_in_subprocess(lr, request, mask, python_executable=sys.executable, workdir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.npz", "mask.nii", "out"]
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["interpolated.npy", "tensor.npy", "uncertainty_direction.npy", "uncertainty_std.npy"], files
    here = slicer_processing.predict_volumes(lr, request, mask)
    for key, vol in here.items():  # the same arrays on the same grid
        np.testing.assert_allclose(got[key].data, vol.data, rtol=1e-5, atol=1e-6 * float(np.abs(vol.data).max()))
        np.testing.assert_allclose(got[key].affine, vol.affine, atol=1e-9)
        assert got[key].kind == vol.kind


@pytest.mark.slow
def test_a_dwi_is_fitted_in_the_worker_as_it_is_here(scene):
    """With a separate process (the module's path for the CNNs) the GUI thread only reads a DWI node; the worker fits
    it (`processing.fit_dwi`) and gives what the in-process fit gives: the same tensors on exactly the same grid, the
    same notes (the estimated mask's; a NaN read as no signal, which a file would have been refused for) with no
    temporary file named, and the fit's progress comes back."""
    from helpers import dwi_node

    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=(24, 28, 20), voxel_mm=3.0, n_dirs=12, snr=6)  # noisy: a note that names its input
    dwi.data[0, 0, 0, 3] = np.nan
    oblique = np.array([[0.0, 0.0, -1.0], [0.96, 0.28, 0.0], [-0.28, 0.96, 0.0]]) * 4.0  # a non-round origin too
    dwi = dwi.replace(affine=np.r_[np.c_[oblique, [12.3456789, -98.7654321, 33.3333333]], [[0, 0, 0, 1]]])
    node = dwi_node(scene, dwi)
    dwi, mask = slicer_processing.input_volumes(node, fit=False)
    assert dwi.kind == "dwi" and mask is None  # nothing fitted on this side
    steps = []
    request = slicer_processing.Request("rf", FACTOR)  # a learned method: it says the input is noisy
    there = slicer_processing.predict_in_subprocess(dwi, request, python_executable=sys.executable,
                                                    progress=lambda f, m: steps.append((f, m)))
    lr, fit_mask = slicer_processing.input_volumes(node)
    here = slicer_processing.predict_volumes(lr, request, fit_mask)
    np.testing.assert_allclose(there["tensor"].data, here["tensor"].data, atol=1e-6 * float(np.abs(here["tensor"].data).max()))
    np.testing.assert_allclose(there["tensor"].affine, here["tensor"].affine, rtol=0, atol=1e-9)  # not float32 NIfTI's 1e-6
    notes = here["tensor"].meta["notes"]
    assert there["tensor"].meta["notes"] == notes and not any("/" in n.split(" ")[0] for n in notes)
    assert notes[0] == "1 NaN/Inf values in the diffusion-weighted volume were read as 0 (no signal)"
    assert any(n.startswith("no mask was chosen") for n in notes) and any("noisier" in n for n in notes), notes
    fit = [f for f, m in steps if m == "fitting tensors to the diffusion-weighted volume"]
    assert len(fit) >= 4 and fit == sorted(fit)
    few = dwi_node(scene, dwi.replace(data=dwi.data[..., :6], bvals=dwi.bvals[:6], bvecs=dwi.bvecs[:6]))
    with pytest.raises(slicer_processing.IQTError, match=r"^only \d+ diffusion-weighted volumes"):  # as in-process
        slicer_processing.run_on_nodes(scene, few, "cubic", FACTOR, python_executable=sys.executable)


def test_bad_inputs_say_what_to_do(scene):
    scalar = mrml.add_scalar_node(scene, Volume(np.ones((4, 4, 4), np.float32), np.eye(4), "scalar"), "s")
    with pytest.raises(slicer_processing.IQTError, match="DTI"):
        slicer_processing.run_on_nodes(scene, scalar, "cubic", 2)
    with pytest.raises(slicer_processing.IQTError, match="no input"):
        slicer_processing.run_on_nodes(scene, None, "cubic", 2)


def test_the_panel_and_the_logic_draw_as_many_monte_carlo_samples_as_the_command_line():
    """The Slicer default (parameter node, .ui spin box, Logic.process) is the engine's (cnn/inference.py), so a
    result in Slicer and one from `iqt upsample` agree and take the time measured for it."""
    from ImageQualityTransferLib.methods.cnn.inference import DEFAULT_SAMPLES

    cls = [c for c in module_tree().body if isinstance(c, ast.ClassDef) and c.name == "ImageQualityTransferParameterNode"][0]
    param = [s for s in cls.body if isinstance(s, ast.AnnAssign) and s.target.id == "samples"][0]
    assert ast.literal_eval(param.value) == DEFAULT_SAMPLES
    spin = ui_widgets()["samplesSpinBox"]
    value = [p for p in spin.iter("property") if p.get("name") == "value"][0]
    assert int(value.find("number").text) == DEFAULT_SAMPLES
    logic = [c for c in module_tree().body if isinstance(c, ast.ClassDef) and c.name == "ImageQualityTransferLogic"][0]
    process = [f for f in ast.walk(logic) if isinstance(f, ast.FunctionDef) and f.name == "process"][0]
    names = [a.arg for a in process.args.args]
    defaults = dict(zip(names[len(names) - len(process.args.defaults):], process.args.defaults))
    assert ast.literal_eval(defaults["samples"]) == DEFAULT_SAMPLES


def test_output_messages_name_the_panels_choice():
    """The messages about output selectors name the choice the panel shows for "none" (there were two wordings,
    neither of them the panel's)."""
    import re
    from pathlib import Path

    from ImageQualityTransferLib.slicer import results

    ui = (Path(results.__file__).parents[2] / "Resources" / "UI" / "ImageQualityTransfer.ui").read_text()
    shown = set(re.findall(r'name="noneDisplay">\s*<string>([^<(]+?)\s*(?:\([^<]*\))?</string>', ui))
    assert results.automatic_output().strip("'") in shown, shown


def test_every_progress_message_of_a_run_goes_through_tr(scene):
    """The engine's progress messages reach the status line through the module's progressText, which gives each fixed
    phrase to tr() (they bypassed it); method names pass as they are."""
    fn = next(f for f in module_tree().body if isinstance(f, ast.FunctionDef) and f.name == "progressText")
    space = {"_": lambda text: "<" + text + ">"}
    exec(compile(ast.Module([fn], []), str(MODULE_PY), "exec"), space)
    progress_text = space["progressText"]
    from helpers import dwi_node
    from ImageQualityTransferLib.dmri.phantom import make_phantom
    from ImageQualityTransferLib.slicer import processing as sp

    node = dwi_node(scene, make_phantom(shape=(16, 18, 14), voxel_mm=4.0, n_dirs=12))  # a DWI: the fit's message too
    fractions = []
    sp.run_on_nodes(scene, node, "biqt", 2, interpolate=True, progress=lambda f, m: fractions.append((f, m)) or True)
    messages = [m for _, m in fractions]
    shown = {m for m in messages if m}
    assert {"reading the input volume", "fitting tensors to the diffusion-weighted volume", "done"} <= shown
    shown.add(sp.CUT_CHECK)  # a DWI with a chosen mask: the mask's check (Testing/dmri/test_mask_cut.py)
    for m in shown:
        text = progress_text(m)
        assert text != m, m  # every phrase translated
        assert not text.startswith("<running") or "biqt" in text
    # the method's own progress, the run's longest phase, keeps "running biqt (x2)" (it read "biqt" alone: an audit)
    during = [m for f, m in fractions if m and f is not None and 0.1 < f <= 0.85]
    assert during and set(during) <= {"running biqt (x2)", "cubic interpolation for comparison"}, set(during)


def test_the_memory_refusal_names_the_target_voxel_size_in_the_module_words():
    """core/grid.py's 'give smaller factors (or a larger --voxel-size)' reads as the panel's control, not as the
    garbled 'a larger the Target voxel size' (audit)."""
    from ImageQualityTransferLib.slicer.processing import in_module_words

    text = in_module_words("more than this process's 4.0 GiB of memory; give smaller factors (or a larger --voxel-size)")
    assert text.endswith("give smaller factors (or a larger Target voxel size)")
    assert in_module_words("--voxel-size 1.25") == "the Target voxel size 1.25"


def test_the_noise_note_leaves_out_a_factor_the_legend_leaves_out():
    """On the clean Trio the note said "its uncertainty map is raised x1.01 for this noise index" under a legend that
    says nothing below x1.05 (legends.NOISE_SCALE_SHOWN; a review): left out there, kept from x1.05; "--method cubic"
    had read "the Method cubic" (and does not now it opens the line's advice)."""
    from ImageQualityTransferLib.methods.base import noise_ending
    from ImageQualityTransferLib.slicer.processing import in_module_words

    head = "x: the input is noisier than clean scans typically are (noise index {:.3f}, above 0.075): biqt uses its " \
           "noise-trained model"
    assert in_module_words(head.format(0.080) + noise_ending(0.080, "biqt", f=2)) == head.format(0.080)
    assert in_module_words(head.format(0.0998) + noise_ending(0.0998, "biqt", f=2)).endswith("raised x1.05 for this noise index")
    assert in_module_words(noise_ending(0.3, None, maps=False, f=2)).endswith("(up to 0.20): cubic may do as well")


def test_the_run_shows_no_busy_cursor_over_its_cancel_button():
    """A run takes minutes and Apply turns into Cancel: Slicer stays responsive, so the run is not wrapped in a busy
    cursor (a Slicer-module audit); the short actions (Compare, install) keep theirs."""
    tree = module_tree()
    apply = next(f for c in tree.body if isinstance(c, ast.ClassDef) for f in c.body
                 if isinstance(f, ast.FunctionDef) and f.name == "onApplyButton")
    calls = [n for n in ast.walk(apply) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "tryWithErrorDisplay"]
    run = [c for c in calls if "Image Quality Transfer failed." in ast.unparse(c.args[0])]
    assert len(run) == 1
    assert not any(k.arg == "waitCursor" and ast.literal_eval(k.value) for k in run[0].keywords)


def test_a_run_too_large_for_memory_is_refused_before_a_dwi_is_read_or_fitted(scene):
    """A Target voxel size of 0.1 mm on a 3 mm scan (factor 30) was refused only after the DWI's fit (6.6 s in a
    Slicer-module audit): the memory check now comes before any work, the fit's progress never shown."""
    from helpers import dwi_node
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.dmri.phantom import make_phantom
    from ImageQualityTransferLib.slicer import processing as sp

    node = dwi_node(scene, make_phantom(shape=(16, 18, 14), voxel_mm=4.0, n_dirs=12))
    shown = []
    with pytest.raises(IQTError, match="more than this process's .* GiB of memory; give smaller factors"):
        sp.run_on_nodes(scene, node, "biqt", (300, 300, 300), progress=lambda f, m: shown.append(m) or True)
    assert shown == []


def test_factor_advice_names_the_panels_mode_and_factor():
    """The panel sets factors as a mode and one number: a model for other factors had been told to "use the Upsampling
    factor 1,1,3", which the spin box cannot hold, and the thick-slice warning read "iqt upsample's the Target voxel size
    MM picks them" (a module audit)."""
    from ImageQualityTransferLib.slicer.processing import in_module_words

    said = in_module_words("m.pt: this espcn model is for factors 1,1,3, not 3; use --factor 1,1,3, or an "
                           "interpolation method (cubic) for 3")
    assert said.endswith("not 3; use Upsampling: Through-plane, factor 3, or an interpolation method (cubic) for 3")
    assert in_module_words("use --factor 3, or leave --model out") == \
        "use Upsampling: Isotropic, factor 3, or leave Advanced > Model file out"
    assert in_module_words("use --factor 2,2,2.") == "use Upsampling: Isotropic, factor 2."
    assert in_module_words("use --factor 1,3,1") == "use Upsampling: Through-plane, factor 3"
    for odd in ("--factor 1,1,1: nothing to upsample", "--factor 2.5 is not"):  # reviews: "Through-plane, factor 1"
        assert "Upsampling:" not in in_module_words(odd), in_module_words(odd)
    # the thick-slice warning's option is a placeholder the module fills (core/i18n.py option)
    from ImageQualityTransferLib.core.i18n import option, options_named
    from ImageQualityTransferLib.slicer.processing import module_options

    with options_named(module_options()):
        assert option("iqt upsample's --voxel-size MM picks them") == "Upsampling: Target voxel size picks them"


def test_a_possessive_is_no_quote_around_a_command():
    """The engine's anisotropy note holds two possessives ("deep-hetero-var1's … upsample's"): their apostrophes
    had been paired as a quoted command, so the options between them half-changed ("iqt upsample's Upsampling:
    Target voxel size", a module audit); a quoted command is still left as it is."""
    from ImageQualityTransferLib.slicer.processing import in_module_words

    note = ("at factors 1,3,1 the output voxels are 2.71x0.902x2.7 mm (3.0:1), far from the near-isotropic voxels "
            "deep-hetero-var1's models were trained on (up to 1.4:1): give factors that make them near-isotropic "
            "(iqt upsample's --voxel-size), or use cubic")
    assert in_module_words(note).endswith("(up to 1.4:1): give factors that make them near-isotropic "
                                          "(iqt upsample's the Target voxel size), or use cubic")
    assert in_module_words("the model's --factor 2 file; make one with 'iqt train --factor 2' or give --model") == \
        "the model's Upsampling: Isotropic, factor 2 file; make one with 'iqt train --factor 2' or choose an " \
        "Advanced > Model file"


def test_a_scalar_input_is_told_how_a_nifti_dwi_gets_in():
    """A DWI saved as NIfTI loads in Slicer as a scalar volume: the refusal says how to bring it in (a module audit:
    it said only "select a DTI or DWI volume")."""
    from ImageQualityTransferLib.slicer.processing import input_volumes

    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "dwi")
    with pytest.raises(slicer_processing.IQTError, match=r"a scalar volume; select a diffusion tensor .*DWIConvert.*"
                                                         r"'iqt fit DWI.nii.gz -o dti.nrrd'"):
        input_volumes(node, None)


def test_the_map_list_is_filled_when_a_scene_is_opened_again():
    """setParameterNode (a scene loaded, the module entered) fills the Uncertainty map list from the parameter node's
    result, whose maps the Logic finds in the scene (results.run_maps; test_result_nodes.py), not only after Apply."""
    tree = module_tree()
    method = next(f for c in tree.body if isinstance(c, ast.ClassDef) for f in c.body
                  if isinstance(f, ast.FunctionDef) and f.name == "setParameterNode")
    assert "self._fillMapCombo(self._result())" in ast.unparse(method)
    result = next(f for c in tree.body if isinstance(c, ast.ClassDef) for f in c.body
                  if isinstance(f, ast.FunctionDef) and f.name == "_result")
    assert "self.logic.runMaps(tensor, p.resultUncertainty)" in ast.unparse(result)


@pytest.mark.parametrize("said, module", [
    ("(or its sign or element order is wrong: check --tensor-order)", "check the element order of the file the volume"),
    ("need at least one b0 (check the bval file)", "(check the DWI volume's b-values as loaded)"),
    ("'m' is empty (no voxel > 0); give a brain mask", "choose a Brain mask that holds the brain")])
def test_advice_on_files_the_module_has_none_of_names_what_it_has(said, module):
    """--tensor-order, a bval file: a Slicer user has a loaded volume and a mask node (a module audit; multiplying a
    file's values is the module's own option, Testing/core/test_i18n_fillers.py)."""
    from ImageQualityTransferLib.slicer.processing import in_module_words

    assert module in in_module_words(said) and "--" not in in_module_words(said), in_module_words(said)
