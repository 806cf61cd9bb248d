"""A diffusion node's measurement frame as the module reads it, on real slicer-core (no mocks): a DTI NRRD written as
Slicer writes one (LPS space, an arbitrary measurement frame, components expressed in it) reads as the tensors it
was made from; a NRRD whose frame is not a rotation, read by Slicer's loader, is refused in one line naming the node
and the file, as `iqt upsample` refuses the file (fileio/nrrd.py), for a DTI node and for a DWI node, where it had
changed every tensor's size or every gradient's direction unsaid; a DTI NRRD with no frame reads in its own space,
as `iqt upsample` reads it; a DTI or DWI NRRD with no 'space' line is refused as `iqt upsample` refuses it."""

from __future__ import annotations

import numpy as np
import pytest

from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.dmri.phantom import make_phantom
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.fileio.nrrd import SPACES, direction_rotation, load_tensor_nrrd, no_space_line

from helpers import AFFINES, assert_same, on_grid_of, rot, tensor_volume

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")
nrrd = pytest.importorskip("nrrd")

from ImageQualityTransferLib.slicer import mrml, processing  # noqa: E402

LPS = np.diag([-1.0, -1.0, 1.0])
REFUSED = "is not a rotation (its vectors must be unit length and at right angles)"
SHEAR = np.array([[1, 0.2, 0], [0, 1, 0], [0, 0, 1.0]])


def slicer_style_nrrd(path, vol, mf_lps):
    """`vol` written as a DTI NRRD in LPS space with measurement frame `mf_lps` (its components expressed in it), kinds
    '3D-symmetric-matrix space space space'."""
    d_lps = tensors.rotate(tensors.rotate(vol.data.astype(np.float64), direction_rotation(vol.affine)), LPS)
    d_file = tensors.rotate(d_lps, np.linalg.inv(mf_lps))
    hdr = {"type": "float", "dimension": 4, "space": "left-posterior-superior",
           "kinds": ["3D-symmetric-matrix", "space", "space", "space"],
           "space directions": np.vstack([np.full(3, np.nan), (LPS @ vol.affine[:3, :3]).T]),
           "space origin": LPS @ vol.affine[:3, 3], "measurement frame": np.asarray(mf_lps).T, "encoding": "gzip"}
    nrrd.write(str(path), np.moveaxis(tensors.to_order(d_file, "fsl"), -1, 0).astype(np.float32), hdr, index_order="F")
    return path


def added_data(scene, path, kind="vtkMRMLDiffusionTensorVolumeNode"):
    """The node Slicer's Add Data (the volumes logic) makes from `path`, its storage node naming the file."""
    if not hasattr(slicer, "vtkSlicerVolumesLogic"):
        pytest.skip("vtkSlicerVolumesLogic is not in this MRML build")
    logic = slicer.vtkSlicerVolumesLogic()
    logic.SetMRMLScene(scene)
    node = logic.AddArchetypeVolume(str(path), path.stem)
    assert node is not None and node.IsA(kind) and node.GetStorageNode().GetFileName() == str(path)
    return node


@pytest.mark.slow
def test_a_dti_node_whose_measurement_frame_is_not_a_rotation_is_refused(tmp_path, sagittal_subject):
    full = sagittal_subject.tensor
    shift = np.eye(4)
    shift[2, 3] = 20
    vol = full.replace(data=np.ascontiguousarray(full.data[:, :, 20:28]), affine=full.affine @ shift)  # 8 slices
    scene = slicer.vtkMRMLScene()
    mf = rot(20, -35, 50)
    got = mrml.tensor_volume_from_node(added_data(scene, slicer_style_nrrd(tmp_path / "dti.nrrd", vol, mf)))
    # Slicer reverses the last voxel axis of this left-handed grid: compare the tensors in RAS at each voxel centre
    assert np.allclose(got.affine[:3, :3] @ np.diag([1, 1, -1]), vol.affine[:3, :3])
    ras = tensors.rotate(got.data.astype(np.float64), direction_rotation(got.affine))[:, :, ::-1]
    want = tensors.rotate(vol.data.astype(np.float64), direction_rotation(vol.affine))
    np.testing.assert_allclose(ras, want, rtol=0, atol=1e-7)  # float32 components of up to 3e-3 mm^2/s
    for name, skew in (("scaled", 1.5 * np.eye(3)), ("sheared", SHEAR)):
        path = slicer_style_nrrd(tmp_path / f"{name}.nrrd", vol, mf @ skew)
        node = added_data(scene, path)
        with pytest.raises(IQTError) as refused:
            processing.run_on_nodes(scene, node, "cubic", 2)
        said = str(refused.value)
        assert said.startswith(f"node '{name}': the measurement frame of {path}") and REFUSED in said
        assert "fix the header's 'measurement frame' line" in said and "\n" not in said
    assert scene.GetNodesByClass("vtkMRMLDiffusionTensorVolumeNode").GetNumberOfItems() == 3  # nothing added


def dwi_nrrd(path, dwi, space: str, mf: np.ndarray | None):
    """`dwi` written as a DWI NRRD in `space` whose gradients are in measurement frame `mf` (to that space), or in the
    space itself with no measurement frame line where None; b-values as gradient lengths, as Slicer writes them."""
    flip = np.diag(SPACES[space])
    b = np.asarray(dwi.bvals, np.float64)
    g = (flip @ direction_rotation(dwi.affine) @ np.asarray(dwi.bvecs, np.float64).T).T
    g = (g if mf is None else g @ mf) * np.sqrt(b / b.max())[:, None]
    hdr = {"type": "float", "dimension": 4, "space": space, "kinds": ["domain", "domain", "domain", "list"],
           "space directions": np.vstack([(flip @ dwi.affine[:3, :3]).T, np.full(3, np.nan)]),
           "space origin": flip @ dwi.affine[:3, 3], "modality": "DWMRI", "DWMRI_b-value": f"{b.max():g}"}
    if mf is not None:
        hdr["measurement frame"] = np.asarray(mf).T
    for i, v in enumerate(g):
        hdr[f"DWMRI_gradient_{i:04d}"] = " ".join(f"{x:.10f}" for x in v)
    nrrd.write(str(path), np.asarray(dwi.data, np.float32), hdr, index_order="F")
    return path


def gradient_angles(got, dwi) -> np.ndarray:
    """Degrees between the gradients read (`got`, on its node's grid) and `dwi`'s, in RAS, of the weighted volumes."""
    a = (direction_rotation(got.affine) @ np.asarray(got.bvecs).T).T
    b = (direction_rotation(dwi.affine) @ np.asarray(dwi.bvecs).T).T
    dw = np.asarray(dwi.bvals) > 0
    return np.degrees(np.arccos(np.clip(np.abs(np.sum(a[dw] * b[dw], axis=1)), 0, 1)))


def test_a_dwi_node_whose_measurement_frame_is_not_a_rotation_is_refused(tmp_path):
    dwi = make_phantom(shape=(12, 14, 10), voxel_mm=4.0, n_dirs=12)
    scene = slicer.vtkMRMLScene()
    mf = rot(10, 25, -40)
    node = added_data(scene, dwi_nrrd(tmp_path / "right.nrrd", dwi, "left-posterior-superior", mf),
                      "vtkMRMLDiffusionWeightedVolumeNode")
    assert gradient_angles(processing.dwi_volume_from_node(node), dwi).max() < 1e-3
    path = dwi_nrrd(tmp_path / "sheared.nrrd", dwi, "left-posterior-superior", mf @ SHEAR)
    node = added_data(scene, path, "vtkMRMLDiffusionWeightedVolumeNode")
    with pytest.raises(IQTError) as refused:
        processing.dwi_volume_from_node(node)
    assert str(refused.value).startswith(f"node 'sheared': the measurement frame of {path}")
    assert REFUSED in str(refused.value)


@pytest.mark.parametrize("space", ["right-anterior-superior", "left-anterior-superior", "left-posterior-superior"])
def test_a_dwi_nrrd_without_a_measurement_frame_reads_in_its_own_space(tmp_path, space):
    """Slicer's reader gives such a DWI node RAS's axes whatever the space: the module had read an LPS or LAS file's
    gradients up to 78° off."""
    dwi = make_phantom(shape=(12, 14, 10), voxel_mm=4.0, n_dirs=12)
    dwi = dwi.replace(affine=AFFINES["las_oblique_aniso"])
    scene = slicer.vtkMRMLScene()
    node = added_data(scene, dwi_nrrd(tmp_path / "dwi.nrrd", dwi, space, None), "vtkMRMLDiffusionWeightedVolumeNode")
    got = processing.dwi_volume_from_node(node)
    assert gradient_angles(got, dwi).max() < 1e-3
    assert_slicer_reading_said(got, space, "right-anterior-superior", "gradients", "RAS")


@pytest.mark.parametrize("kind", ["3D-symmetric-matrix", "3D-matrix"])
@pytest.mark.parametrize("space", ["right-anterior-superior", "left-anterior-superior", "left-posterior-superior"])
def test_a_dti_nrrd_without_a_measurement_frame_reads_in_its_own_space(tmp_path, kind, space):
    """No measurement frame line: the components are in the file's space (the NRRD format; `iqt upsample` reads them
    so). Slicer's reader gives the node LPS's axes whatever the space, and the module had read an RAS file's tensors
    mirrored in x and y, an LAS file's in y."""
    vol = tensor_volume("las_oblique_aniso", seed=4)
    flip = np.diag(SPACES[space])
    d_world = tensors.rotate(tensors.rotate(vol.data.astype(np.float64), direction_rotation(vol.affine)), flip)
    comps = (tensors.to_matrix(d_world).reshape(vol.shape3 + (9,)) if kind == "3D-matrix"
             else tensors.to_order(d_world, "fsl"))
    hdr = {"type": "float", "dimension": 4, "space": space, "kinds": [kind, "domain", "domain", "domain"],
           "space directions": np.vstack([np.full(3, np.nan), (flip @ vol.affine[:3, :3]).T]),
           "space origin": flip @ vol.affine[:3, 3]}
    path = tmp_path / "no_frame.nrrd"
    nrrd.write(str(path), np.moveaxis(comps, -1, 0).astype(np.float32), hdr, index_order="F")
    assert_same(vol, load_tensor_nrrd(path), atol=1e-8)
    scene = slicer.vtkMRMLScene()  # held: the node finds its storage node through it
    got = mrml.tensor_volume_from_node(added_data(scene, path))
    assert_same(vol, on_grid_of(got, vol), atol=1e-8)
    assert_slicer_reading_said(got, space, "left-posterior-superior", "tensors", "LPS")


def assert_slicer_reading_said(got, space, slicers, what, axes):
    """Where Slicer's reader took other axes than the file's space, one of the run's notes says so in one line (Slicer
    shows the input otherwise than the output); where they agree, nothing is said."""
    said = [n for n in got.meta["input_notes"] if "no 'measurement frame' line" in n]
    if space == slicers:
        assert said == [], said
    else:
        assert len(said) == 1 and "\n" not in said[0], said
        assert f"its {what} are read in its space ({space})" in said[0] and f"Slicer's own reader took {axes}" in said[0]


def test_a_dti_or_dwi_nrrd_without_a_space_line_is_refused_as_iqt_upsample_refuses_it(tmp_path):
    """'space dimension: 3' and no 'space' line: the NRRD format names no anatomical directions; Slicer's reader took a
    DTI file's grid and components as LPS where `iqt upsample` took them as RAS, so the module and the command line read
    the same file mirrored in x and y, unsaid (and it takes a DWI file's grid as RAS). Both now refuse it, naming the file and the line to add."""
    vol = tensor_volume("las_oblique_aniso", seed=4)
    dti = tmp_path / "dti.nrrd"
    slicer_style_nrrd(dti, vol, rot(0, 0, 0))
    dwi = dwi_nrrd(tmp_path / "dwi.nrrd", make_phantom(shape=(12, 14, 10), voxel_mm=4.0, n_dirs=12),
                   "left-posterior-superior", rot(10, 25, -40))
    scene = slicer.vtkMRMLScene()
    for path, kind, read in ((dti, "vtkMRMLDiffusionTensorVolumeNode", mrml.tensor_volume_from_node),
                             (dwi, "vtkMRMLDiffusionWeightedVolumeNode", processing.dwi_volume_from_node)):
        spaceless = tmp_path / f"spaceless_{path.name}"
        spaceless.write_bytes(path.read_bytes().replace(b"space: left-posterior-superior\n", b"space dimension: 3\n", 1))
        read(added_data(scene, path, kind))  # the file with its line is read
        node = added_data(scene, spaceless, kind)
        with pytest.raises(IQTError) as refused:
            read(node)
        said = str(refused.value)
        assert said.startswith(f"node '{spaceless.stem}': {spaceless}: its header has no 'space' line"), said
        assert "add the line 'space: left-posterior-superior'" in said and "load the file again" in said, said
        assert "\n" not in said
        # the module's whole-sentence template (slicer/mrml.py) keeps fileio/nrrd.py no_space_line's words
        assert no_space_line(nrrd.read_header(str(spaceless))) in said, said
        with pytest.raises(IQTError) as cli_refused:  # the command line's reader, in the same words
            fileio.load_tensor(spaceless)
        assert (no_space_line(nrrd.read_header(str(spaceless))) in str(cli_refused.value)) == (path == dti)


def _header_lines(tmp_path) -> list[str]:
    """The three lines of slicer/mrml.py's NRRD header checks the panel shows, from real nodes of a phantom's files: a
    frame that is not a rotation (refused), no frame line (a note), no 'space' line (refused)."""
    tmp_path.mkdir()
    dwi = make_phantom(shape=(12, 14, 10), voxel_mm=4.0, n_dirs=12)
    scene = slicer.vtkMRMLScene()
    said = []
    node = added_data(scene, dwi_nrrd(tmp_path / "sheared.nrrd", dwi, "left-posterior-superior", rot(10, 25, -40) @ SHEAR),
                      "vtkMRMLDiffusionWeightedVolumeNode")
    with pytest.raises(IQTError) as refused:
        processing.dwi_volume_from_node(node)
    said.append(str(refused.value))
    path = dwi_nrrd(tmp_path / "lps.nrrd", dwi, "left-posterior-superior", None)
    said += [n for n in processing.dwi_volume_from_node(added_data(scene, path, "vtkMRMLDiffusionWeightedVolumeNode"))
             .meta["input_notes"] if "measurement frame" in n]
    spaceless = tmp_path / "spaceless.nrrd"
    spaceless.write_bytes(path.read_bytes().replace(b"space: left-posterior-superior\n", b"space dimension: 3\n", 1))
    with pytest.raises(IQTError) as refused:
        processing.dwi_volume_from_node(added_data(scene, spaceless, "vtkMRMLDiffusionWeightedVolumeNode"))
    said.append(str(refused.value))
    return said


def test_the_nrrd_header_refusals_and_note_come_in_the_installed_translator_s_words(tmp_path):
    """slicer/mrml.py's NRRD header lines are marked for translation (core/i18n.py): with a translator installed the
    engine says each in its words, its placeholders (node, file, frame, space, axes) filled; without one the English is
    as before (the engine's own words since the Slicer module matched them by regex, which a rewording escaped)."""
    from ImageQualityTransferLib.core import i18n

    english = _header_lines(tmp_path / "en")
    assert len(english) == 3 and english[0].startswith("node 'sheared': the measurement frame of ") \
        and "[[" in english[0] and "has no 'measurement frame' line, so its gradients are read in its space (" \
        "left-posterior-superior)" in english[1] \
        and "its header has no 'space' line (only 'space dimension: 3')" in english[2], english
    table = {"node '{name}'": "Knoten »{name}«",
             " (only 'space dimension: {dimension}')": " (nur 'space dimension: {dimension}')"}
    i18n.install(lambda context, text: table.get(text, f"<{text}>") if context == "slicer.mrml" else None)
    try:
        said = _header_lines(tmp_path / "de")
    finally:
        i18n.install(None)
    for line, before in zip(said, english):
        assert line.startswith("<Knoten »") and line.endswith(">") and "{" not in line.replace("[[", ""), line
        assert line[1:-1].replace("Knoten »", "node '", 1).replace("«", "'", 1).replace(
            " (nur 'space dimension: 3')", " (only 'space dimension: 3')") == before.replace(str(tmp_path / "en"),
                                                                                              str(tmp_path / "de"))
    assert _header_lines(tmp_path / "again") == [t.replace(str(tmp_path / "en"), str(tmp_path / "again"))
                                                 for t in english]


def test_the_slicer_module_installs_its_translator_for_the_engine(tmp_path):
    """The Logic, as it puts the engine on the path, installs Slicer's translate as the engine's translator, each
    template looked up in its file's context as Slicer's extraction names it ("slicer.mrml"): a real node's refusal
    then reaches the error dialog in it, through Logic.process unchanged."""
    import ast
    import logging
    import types

    from helpers import REPO, module_functions

    from ImageQualityTransferLib.core import i18n

    module = REPO / "ImageQualityTransfer" / "ImageQualityTransfer.py"
    logic_class = next(c for c in ast.parse(module.read_text()).body
                       if isinstance(c, ast.ClassDef) and c.name == "ImageQualityTransferLogic")
    space = {"_": lambda text: f"<{text}>", "Optional": None, "logging": logging, "sys": __import__("sys"),
             "translate": lambda context, text: f"<{context}: {text}>",
             "slicer": types.SimpleNamespace(mrmlScene=None)}
    space.update(module_functions(space["_"], "factorsText"))
    exec(compile(ast.Module([f for f in logic_class.body if isinstance(f, ast.FunctionDef)
                             and f.name in ("process", "_engineOnPath")], []), str(module), "exec"), space)
    dwi = make_phantom(shape=(12, 14, 10), voxel_mm=4.0, n_dirs=12)
    scene = slicer.vtkMRMLScene()
    node = added_data(scene, dwi_nrrd(tmp_path / "sheared.nrrd", dwi, "left-posterior-superior", rot(10, 25, -40) @ SHEAR),
                      "vtkMRMLDiffusionWeightedVolumeNode")
    logic = types.SimpleNamespace(moduleDir=lambda: str(REPO / "ImageQualityTransfer"))
    assert i18n.installed() is None
    try:
        space["_engineOnPath"](logic)
        with pytest.raises(IQTError) as refused:
            processing.dwi_volume_from_node(node)
    finally:
        i18n.install(None)
    assert str(refused.value).startswith("<slicer.mrml: <slicer.mrml: node 'sheared'>: the measurement frame of "), \
        str(refused.value)

    def run_on_nodes(*args, **kwargs):  # the engine's run, refused as the real node's header is
        raise IQTError(str(refused.value))

    engine = types.SimpleNamespace(method_needs_torch=lambda m: False, run_on_nodes=run_on_nodes,
                                   model_refusal=processing.model_refusal,
                                   method_info=lambda m: {"learned": False},
                                   choose_factors=lambda *a, **k: types.SimpleNamespace(refusal="", hint=""))
    logic = types.SimpleNamespace(engine=lambda: engine, engineError=lambda: IQTError, _batch=lambda: True,
                                  defaultMethod=lambda factor, node: "cubic", modelMethod=lambda path: None,
                                  _outputAnisotropy=lambda node, factor: None, _addNote=lambda node, note: None,
                                  torchAvailable=lambda: True)
    with pytest.raises(IQTError) as shown:
        space["process"](logic, node, method="cubic")
    assert str(shown.value) == str(refused.value)
