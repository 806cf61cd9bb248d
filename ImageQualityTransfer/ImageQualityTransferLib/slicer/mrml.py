"""MRML nodes <-> `Volume`, Qt-free: works inside the Slicer application and with the `slicer-core` wheel.

MRML and VTK are imported lazily, so the rest of the engine never needs them.

Geometry: a node's IJKToRAS matrix is the Volume's affine (the image data keeps origin 0 and spacing 1,
as MRML requires). vtkImageData stores x fastest: a (N, C) point array reshapes to (Z,Y,X,C) and is
transposed to (X,Y,Z,C).

Tensors: vtkImageData point-data tensors hold 9 components, a row-major 3x3, expressed in the node's
measurement frame MF (D_RAS = MF D MF^T). Volumes hold components in the voxel (IJK) axes, so reading
re-expresses them with D_ijk = R^-1 MF D MF^T R^-T (R = IJK->RAS direction matrix, columns normalised);
nodes we create follow Slicer's DTI estimation: components in IJK axes and MF = R. A node's parent
transform is not applied to the arrays: the results are placed under the input's own (slicer/processing.py,
add_result_nodes); its id is recorded in `meta["parent_transform_id"]`.

Input nodes are never modified: arrays are copied out of them.
"""

from __future__ import annotations

import numpy as np

from ..core import tensor_checks, tensors
from ..core.errors import IQTError
from ..core.i18n import _, option
from ..fileio.nrrd import SPACES, direction_rotation, frame_to_voxel_axes, is_rotation, reexpress
from ..core.volume import Volume

# Perceptual colour maps first (present in the Slicer application), then Slicer's default grey.
DEFAULT_COLORMAP = "Inferno"
FALLBACK_COLOR_NODE_IDS = ("vtkMRMLColorTableNodeGrey",)


def _vtk():
    import vtk
    from vtk.util import numpy_support

    return vtk, numpy_support


def _matrix_to_numpy(m) -> np.ndarray:
    return np.array([[m.GetElement(i, j) for j in range(4)] for i in range(4)], dtype=np.float64)


def _numpy_to_matrix(a: np.ndarray):
    vtk, _ = _vtk()
    m = vtk.vtkMatrix4x4()
    for i in range(4):
        for j in range(4):
            m.SetElement(i, j, float(a[i, j]))
    return m


FACTORS_ATTRIBUTE = "ImageQualityTransfer.Factors"  # "2" or "1,1,3" (input voxel axes) on a run's outputs and maps
MODEL_ATTRIBUTE = "ImageQualityTransfer.Model"  # the model a learned method ran ("shipped model espcn_x2.pt"), as
# the header of a file iqt writes names it (fileio/records.py made_by), on the run's tensor output and its maps
NOTES_ATTRIBUTE = "ImageQualityTransfer.Notes"  # the engine's warnings for a run (one per line), on its tensor output
NOISE_ATTRIBUTE = "ImageQualityTransfer.NoiseScale"  # on a map node of a run whose input read noisy (noise index above
# core.noise_level.NOISY_MODEL): the factor its sigma was scaled by for that noise (methods/base.py NOISY_STD_SCALE, 1.0
# for a method not scaled); absent for a clean input (slicer/legends.py says it in the legend and lowers the floor)
NOISE_KEY = "noisy_std_scale"  # that factor in a map Volume's meta (slicer/processing.py noisy_scale), kept to its node
NOISE_INDEX_ATTRIBUTE = "ImageQualityTransfer.NoiseIndex"  # beside it, the input's noise index: the legend says "noisy
# input" only above core.noise_level.NOISY_INPUT (a clean training scan, the Trio at 0.080, had been called noisy)
NOISE_INDEX_KEY = "noise_index"  # that index in a map Volume's meta, kept to its node
TENSOR_SCALE_ATTRIBUTE = "ImageQualityTransfer.TensorScale"  # on a map node: its run's input tensor scale, the MD
# mode of the low-res input's brain in µm²/ms (methods/inputs.py brain_md_unit), that a shipped model's clean level is scaled by
# (slicer/clean_levels.py)
TENSOR_SCALE_KEY = "input_md_mode"  # that scale in a map Volume's meta, kept to its node
MEDIAN_ATTRIBUTE = "ImageQualityTransfer.SupportMedian"  # on a map node: its median over its input's brain (legends._median)
SUPPORT_ATTRIBUTE = "ImageQualityTransfer.Support"  # "estimated" on a run's outputs kept to a brain estimated from the
# tensors (an input fitted without a mask): a rim of scalp and background fits surrounds the brain there
UNIT_ATTRIBUTE = "ImageQualityTransfer.Unit"  # the unit an uncertainty map's node holds ("um2/ms", "deg", "1")
MAP_ATTRIBUTE = "ImageQualityTransfer.Map"  # which uncertainty map a node holds ("std", "direction", ...)
RUN_ATTRIBUTE = "ImageQualityTransfer.Run"  # the run an uncertainty map node came from: its method (and factors)
# An uncertainty map's node holds diffusivities in µm²/ms (= 10⁻³ mm²/s, how clinicians read them; its legend labels
# read 0.30, not 3.00e-04); files keep mm²/s (`fileio.records.MAP_UNITS`). Unit -> (scale, UCUM code, printed).
NODE_UNITS = {"mm2/s": (tensors.SHOWN_UNIT, "um2/ms", tensors.SHOWN_UNIT_LABEL), "unitless": (1.0, "1", "unitless"), "degrees": (1.0, "deg", "°")}


# Slicer's NRRD storage node writes a node's attributes into the file's header (`key:=value`), which pynrrd (and so
# iqt's reader, fileio/nrrd.py) reads as ASCII, dropping other characters ("biqt ×1,1,3" read "biqt 1,1,3")
_ASCII = {"×": "x", "µ": "u", "²": "^2", "³": "^3", "°": " deg", "→": "->", "–": "-", "—": "-", "≈": "~", "≤": "<=",
          "≥": ">=", "…": "...", "σ": "sigma", "±": "+/-", "‘": "'", "’": "'", "“": '"', "”": '"'}


def header_text(text: str) -> str:
    """`text` in ASCII for an attribute that a saved file's header carries (the run's notes): the module's own symbols
    spelled out (× as x, µm²/ms as um^2/ms), anything else (a translation's) as a Python escape, which the status line
    turns back (ImageQualityTransfer.py runStatusText)."""
    text = "".join(_ASCII.get(c, c) for c in str(text))
    return text.encode("ascii", "backslashreplace").decode("ascii")


def map_in_node_unit(vol: Volume, key: str) -> tuple[Volume, tuple]:
    """Uncertainty map `key` (`fileio.records.MAP_UNITS`) in its node's unit, and that unit's `NODE_UNITS` entry."""
    from ..fileio.records import MAP_UNITS

    unit = NODE_UNITS[MAP_UNITS.get(key, "mm2/s")]
    if unit[0] == 1.0:
        return vol, unit
    # replace keeps the meta (an estimated support, `legends.brain_of_map`), which a 4th positional argument, the
    # b-values, had dropped from every rescaled map
    return vol.replace(data=np.asarray(vol.data, np.float32) * np.float32(unit[0])), unit


def set_map(node, key: str, unit: tuple, run: str | None = None) -> None:
    """Record on a scalar node which uncertainty map it holds (MAP_ATTRIBUTE), the run it came from (RUN_ATTRIBUTE: the
    method, and the factors other than 2) and its `NODE_UNITS` entry: Slicer's voxel value units (the Data Probe shows
    them) and UNIT_ATTRIBUTE."""
    _, code, printed = unit
    node.SetAttribute(MAP_ATTRIBUTE, key)
    if run:
        node.SetAttribute(RUN_ATTRIBUTE, run)
    node.SetAttribute(UNIT_ATTRIBUTE, code)
    if hasattr(node, "SetVoxelValueUnits"):
        from slicer import vtkCodedEntry

        entry = vtkCodedEntry()
        entry.SetValueSchemeMeaning(code, "UCUM", printed)
        node.SetVoxelValueUnits(entry)


def node_affine(node) -> np.ndarray:
    """A volume node's IJK-to-RAS affine (the Volume's), extent start included."""
    return _geometry(node)[1]


def _node_label(node) -> str:
    name = node.GetName() if hasattr(node, "GetName") else None
    return f"node '{name}'" if name else f"{node.GetClassName()} node"


def _node_said(node) -> str:
    """`_node_label` in the user's language, for the lines marked for translation (core/i18n.py)."""
    name = node.GetName() if hasattr(node, "GetName") else None
    return _("node '{name}'").format(name=name) if name else f"{node.GetClassName()} node"


def _geometry(node):
    """(image data, affine) of a volume node; the affine includes a non-zero extent start."""
    vtk = _vtk()[0]
    image = node.GetImageData()
    if image is None:
        raise IQTError(_("{node} has no image data; load or compute the volume first").format(node=_node_said(node)))
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    affine = _matrix_to_numpy(m)
    ext = image.GetExtent()
    if any(ext[2 * k] != 0 for k in range(3)):
        shift = np.eye(4)
        shift[:3, 3] = [ext[0], ext[2], ext[4]]
        affine = affine @ shift
    return image, affine


def _point_array(image, array, node) -> np.ndarray:
    """Copy of a point array as (X,Y,Z,C)."""
    ns = _vtk()[1]
    dims = image.GetDimensions()
    if min(dims) < 1:
        raise IQTError(_("{node} has an empty image ({dimensions}); load the volume first").format(
            node=_node_said(node), dimensions=dims))
    a = np.array(ns.vtk_to_numpy(array), copy=True)
    n = dims[0] * dims[1] * dims[2]
    if a.shape[0] != n:
        raise IQTError(_("{node}: {count} voxels for dimensions {dimensions}; the image data is inconsistent").format(
            node=_node_said(node), count=a.shape[0], dimensions=dims))
    a = a.reshape(n, -1).reshape(dims[2], dims[1], dims[0], -1)
    return np.ascontiguousarray(a.transpose(2, 1, 0, 3))


def _meta(node) -> dict:
    meta = {"node_id": node.GetID(), "node_name": node.GetName(), "node_class": node.GetClassName()}
    tid = node.GetTransformNodeID() if hasattr(node, "GetTransformNodeID") else None
    if tid:
        meta["parent_transform_id"] = tid
    return meta


# ---------------------------------------------------------------- node -> Volume


def tensor_volume_from_node(node) -> Volume:
    """Tensor Volume (X,Y,Z,6) float32, components in voxel axes, from a vtkMRMLDiffusionTensorVolumeNode."""
    if node is None or not node.IsA("vtkMRMLTensorVolumeNode"):
        raise IQTError(_("expected a diffusion tensor volume node, got nothing; select a DTI volume (estimate it from a "
                         "DWI first)") if node is None else
                       _("expected a diffusion tensor volume node, got {got}; select a DTI volume (estimate it from a DWI "
                         "first)").format(got=node.GetClassName()))
    image, affine = _geometry(node)
    source = _nifti_source(node)
    if source is not None:
        return _tensor_volume_from_nifti(node, source, affine)
    pd = image.GetPointData()
    arr = pd.GetTensors()
    if arr is None and pd.GetScalars() is not None and pd.GetScalars().GetNumberOfComponents() == 9:
        arr = pd.GetScalars()
    if arr is None or arr.GetNumberOfComponents() != 9:
        raise IQTError(_("{node} holds no 3x3 tensor point data; select a DTI volume").format(node=_node_said(node)))
    import warnings

    from ..core.errors import IQTWarning

    m9 = _point_array(image, arr, node)
    # tensors.from_matrix's sums, indexed along the last axis: its np.stack of strided slices held the GUI thread 1.5 s
    # on an HCP-size input (a module audit's t20_gaps.py)
    ij = [3 * i + j for i, j in tensors.LOWER_TRIANGULAR]
    ji = [3 * j + i for i, j in tensors.LOWER_TRIANGULAR]
    t6 = (m9[..., ij].astype(np.float64) + m9[..., ji]) / 2
    # a NaN background (all six elements) is an empty one; its line, where failed fits lie inside, is one of the run's
    # notes, shown with the result (it had reached only the Python console: a display audit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IQTWarning)
        t6 = tensor_checks.nan_as_empty(t6, f"{_node_label(node)}: ")
        _warn_if_gapped(node, affine)
        mf3 = measurement_frame(node)
    notes = [str(w.message) for w in caught if issubclass(w.category, IQTWarning)]
    t6, rotated = reexpress(t6, frame_to_voxel_axes(mf3, affine))
    if not np.isfinite(t6).all():
        raise IQTError(_("{node} has NaN/Inf tensor values; replace them (for example with 0 outside the brain)").format(
            node=_node_said(node)))
    meta = _meta(node) | {"measurement_frame_ras": mf3.tolist(), "reoriented_components": rotated, "input_notes": notes}
    return Volume(t6.astype(np.float32), affine, "tensor", meta=meta)


def measurement_frame(node) -> np.ndarray:
    """A diffusion node's measurement frame (3x3, to RAS), checked against the NRRD file the node was read from:

    - a header frame that is not a rotation is refused, as `iqt upsample` refuses that file (fileio/nrrd.py): Slicer's
      reader keeps it, and a frame scaled 1.5 times had given a brain median MD 2.25 times the file's, unsaid;
    - a header without one holds components (a DWI's gradients) in its own space, as the NRRD format and `iqt upsample`
      read them, where Slicer's reader gives a DTI node LPS's axes and a DWI node RAS's whatever the space: an RAS or
      LAS DTI file's principal directions had come out a median 48° off on the yaw dev scan (docs/measurements.md,
      Slicer: DTI made the Slicer way), an LPS or LAS DWI file's gradients up to 78° off;
    - a header without a 'space' line is refused, as `iqt upsample` refuses that file: the format names no anatomical
      directions for it, and Slicer's reader takes a DTI file's grid as LPS (where `iqt upsample` had taken it as RAS)
      and a DWI file's as RAS.

    The node's own frame is not judged: Slicer's reader makes one that is not a rotation from a right file (the
    symmetric kinds on an oblique grid of unequal voxels, Testing/slicer/test_mrml.py
    test_foreign_frame_matches_slicer_reader)."""
    vtk = _vtk()[0]
    m = vtk.vtkMatrix4x4()
    node.GetMeasurementFrameMatrix(m)
    mf = _matrix_to_numpy(m)[:3, :3]
    name = _read_from(node, (".nrrd", ".nhdr"))
    if name is None:
        return mf
    try:
        import nrrd

        hdr = nrrd.read_header(name)
    except Exception:  # noqa: BLE001 - a header that is not read says nothing of its frame
        return mf
    if "space" not in hdr:  # `iqt upsample` refuses it in the same words
        # the words of fileio/nrrd.py no_space_line, whole, so that a translator has the sentence
        only = _(" (only 'space dimension: {dimension}')").format(dimension=hdr["space dimension"]) \
            if "space dimension" in hdr else ""
        raise IQTError(_("{node}: {file}: its header has no 'space' line{only}, so the NRRD format gives its grid and "
                          "components no anatomical directions, and readers differ on them (Slicer's takes a tensor "
                          "file's as left-posterior-superior, a DWI file's as right-anterior-superior): it is not read; "
                          "add the line 'space: left-posterior-superior' (or right-anterior-superior, or "
                          "left-anterior-superior: the space its 'space directions' and 'space origin' are in) to the "
                          "header and load the file again").format(node=_node_said(node), file=name, only=only))
    frame = hdr.get("measurement frame")
    if frame is not None and not is_rotation(frame):
        raise IQTError(_("{node}: the measurement frame of {file}, {frame}, is not a rotation (its vectors must be "
                          "unit length and at right angles), so the sizes and directions it gives are unknown; fix the "
                          "header's 'measurement frame' line and load the file again (Slicer writes the IJK->RAS "
                          "rotation)").format(node=_node_said(node), file=name,
                                              frame=np.round(np.asarray(frame, dtype=float), 4).tolist()))
    space = SPACES.get(str(hdr.get("space", "")).strip().lower())
    if frame is None and space is not None and np.allclose(np.abs(mf), np.eye(3), atol=1e-9):  # Slicer's default
        if not np.allclose(mf, np.diag(space), atol=1e-9):
            _warn_slicer_reads_otherwise(node, name, hdr, mf)
        return np.diag(space)
    return mf


def _warn_slicer_reads_otherwise(node, name: str, hdr: dict, slicer_mf: np.ndarray) -> None:
    """One of the run's notes: the file has no measurement frame, read in its own space here, where Slicer's reader
    took other axes, so Slicer's glyphs of the input (and its own DWI-to-DTI fit) differ from the output's."""
    import os
    import warnings

    from ..core.errors import IQTWarning

    axes = {(1.0, 1.0, 1.0): "RAS", (-1.0, -1.0, 1.0): "LPS"}.get(tuple(np.round(np.diag(slicer_mf), 6)), "other")
    if node.IsA("vtkMRMLDiffusionWeightedVolumeNode"):
        line = _("{node}: {file} has no 'measurement frame' line, so its gradients are read in its space ({space}) "
                  "as the NRRD format and {iqt_upsample} read them, where Slicer's own reader took {axes} axes: "
                  "Slicer's view of the input differs from the output's; add the line to the header to say which")
    else:
        line = _("{node}: {file} has no 'measurement frame' line, so its tensors are read in its space ({space}) "
                  "as the NRRD format and {iqt_upsample} read them, where Slicer's own reader took {axes} axes: "
                  "Slicer's view of the input differs from the output's; add the line to the header to say which")
    warnings.warn(line.format(node=_node_said(node), file=os.path.basename(name), space=hdr["space"], axes=axes,
                              iqt_upsample="'iqt upsample'"), IQTWarning, stacklevel=2)


def _read_from(node, suffixes: tuple) -> str | None:
    """The file with one of `suffixes` that `node` was read from and still holds unchanged, or None."""
    import os

    storage = node.GetStorageNode() if hasattr(node, "GetStorageNode") else None
    name = (storage.GetFileName() or "") if storage is not None else ""
    if name.lower().endswith(suffixes) and os.path.isfile(name) and not node.GetModifiedSinceRead():
        return name
    return None


def _warn_if_gapped(node, affine) -> None:
    """The slice gap that the NRRD file a node was read from says (fileio/slices.py), as the engine's reader says it
    of a file: one of the run's notes."""
    from ..fileio import slices

    name = _read_from(node, (".nrrd", ".nhdr"))
    if name is not None:
        slices.warn_if_gapped(_node_label(node), affine, slices.from_nrrd_file(name, None, affine))


def _nifti_fix() -> str:
    """The fix for a tensor node read from a NIfTI file the engine cannot read for it."""
    return _("load it as NRRD instead ({iqt_fit} writes one) or run {iqt_upsample} on the file itself").format(
        iqt_fit="'iqt fit … -o dti.nrrd'", iqt_upsample="'iqt upsample'")


def _nifti_source(node) -> str | None:
    """The .nii/.nii.gz file a tensor node was read from, or None: Slicer's reader gets such a file's components
    wrong (docs/slicer.md, Tensor files for Slicer: fibre directions a median 59° off), so the engine reads the file
    itself."""
    storage = node.GetStorageNode() if hasattr(node, "GetStorageNode") else None
    name = (storage.GetFileName() or "") if storage is not None else ""
    return name if name.lower().endswith((".nii", ".nii.gz")) else None


def _tensor_volume_from_nifti(node, path: str, affine: np.ndarray) -> Volume:
    """The tensors of the NIfTI file `node` was read from, by the engine's reader (fileio.load_tensor), re-indexed
    onto the node's grid (Slicer's reader may reverse an axis); an IQTError naming the fix where that is not sound."""
    import os
    import warnings

    from .. import fileio
    from ..core.errors import IQTWarning
    from ..core.orientation import onto_grid

    label, said, name = _node_label(node), _node_said(node), os.path.basename(path)
    if node.GetModifiedSinceRead():
        raise IQTError(_("{node} was changed since it was read from {file}, whose tensor components Slicer's reader "
                          "gets wrong; {fix}").format(node=said, file=name, fix=_nifti_fix()))
    if not os.path.exists(path):
        raise IQTError(_("{node} was read from {file}, which is no longer there, and Slicer's reader gets a NIfTI "
                          "file's tensor components wrong; {fix}").format(node=said, file=name, fix=_nifti_fix()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IQTWarning)
        try:
            vol = fileio.load_tensor(path)
        except IQTError as exc:
            if "no standard component order" in str(exc):
                raise IQTError(_("{node} was read from {file}, a 4D six-volume tensor file whose component order only "
                                  "its maker knows; write it as NRRD with {iqt_upsample} (or fit it with {iqt_fit}) "
                                  "and load that").format(
                    node=said, file=name, iqt_upsample=f"'iqt upsample {name} --tensor-order fsl|mrtrix|dipy -o OUT.nrrd'",
                    iqt_fit="'iqt fit … -o dti.nrrd'")) from None
            raise
    if _may_be_dipy_frame(path, vol):  # the engine's reader warned 'add --tensor-order dipy', which the module lacks
        raise IQTError(f"{label} was read from {name}, a 5D tensor file on a positive-determinant grid that iqt did not "
                       "write, and the file does not tell the frame of its tensors: voxel axes if ANTs wrote it, the "
                       "FSL bvec frame if dipy did (dipy_fit_dti; its fibres would come out mirrored left-right); "
                       f"upsample it outside the module with 'iqt upsample {name} --tensor-order dipy -o OUT.nrrd' (for "
                       "dipy; --tensor-order nifti for ANTs) and load OUT.nrrd, or fit the DWIs with "
                       "'iqt fit … -o dti.nrrd' and load that")
    shape = node.GetImageData().GetDimensions()
    moved = [onto_grid(vol.data[..., c], vol.affine, shape, affine) for c in range(6)]
    if moved[0] is None:
        raise IQTError(_("{node} is not on the grid of {file}, which it was read from: the file changed since the node "
                          "was loaded (reload it), or {fix}").format(node=said, file=name, fix=_nifti_fix()))
    perm = np.round(np.linalg.solve(affine, vol.affine)[:3, :3])  # file voxel axes -> node voxel axes
    data = tensors.rotate(np.stack(moved, axis=-1), perm)
    if not _same_tensors(node, data):  # the file was overwritten after loading (GetModifiedSinceRead() says nothing)
        raise IQTError(_("the file {file} changed since {node} was loaded from it (its tensors are not the node's): "
                          "reload it").format(file=name, node=said))
    notes = [str(w.message) for w in caught if issubclass(w.category, IQTWarning)]
    meta = _meta(node) | {"read_from": path, "input_notes": notes}
    return Volume(np.ascontiguousarray(data, dtype=np.float32), affine, "tensor", meta=meta)


def _may_be_dipy_frame(path: str, vol: Volume) -> bool:
    """Where `fileio.load_tensor` warns that a 5D file may be dipy's (components in FSL's bvec frame): a 5D file iqt did
    not write (intent name) on a grid whose affine has a positive determinant. The CLI asks for --tensor-order there;
    the module has no such control, so it refuses rather than run with a note naming one."""
    from ..fileio.nifti import open_nifti

    from ..fileio.volumes import OWN_INTENT

    if not vol.meta.get("five_d") or np.linalg.det(np.asarray(vol.affine, float)[:3, :3]) <= 0:
        return False
    return open_nifti(path).header.get_intent()[2] != OWN_INTENT


def _same_tensors(node, t6: np.ndarray, rtol: float = 1e-5) -> bool:
    """Whether the node's tensors are `t6` (lower-triangular, on the node's grid) up to a change of frame: Slicer's
    reader re-expresses a NIfTI file's tensors in another orthogonal frame, which keeps each voxel's trace and
    Frobenius norm. Compared to `rtol` of the largest norm (float32 rounding is ~1e-7; the file may hold float64).
    NaN reads as 0 on both sides (a NaN background is an empty one)."""
    image = node.GetImageData()
    pd = image.GetPointData() if image is not None else None
    arr = pd.GetTensors() if pd is not None else None
    if arr is None or arr.GetNumberOfComponents() != 9:
        return False
    m9 = _point_array(image, arr, node)
    if m9.shape[:3] != np.shape(t6)[:3]:
        return False
    largest = differ = 0.0
    for k in range(0, m9.shape[0], SLAB):  # in float64 a slab at a time: the whole volume's copies took 296 MiB
        m = np.nan_to_num(np.asarray(m9[k:k + SLAB], np.float64), nan=0.0)
        t = np.nan_to_num(np.asarray(t6[k:k + SLAB], np.float64), nan=0.0)
        norm_node = np.sqrt((m ** 2).sum(axis=-1))
        norm_file = np.sqrt((t[..., [0, 2, 5]] ** 2).sum(axis=-1) + 2 * (t[..., [1, 3, 4]] ** 2).sum(axis=-1))
        trace_gap = np.abs(m[..., 0] + m[..., 4] + m[..., 8] - (t[..., 0] + t[..., 2] + t[..., 5]))
        largest = max(largest, float(norm_node.max(initial=0.0)), float(norm_file.max(initial=0.0)))
        differ = max(differ, float(trace_gap.max(initial=0.0)), float(np.abs(norm_node - norm_file).max(initial=0.0)))
    return differ <= rtol * max(largest, np.finfo(np.float32).tiny)


SLAB = 16  # planes per step of _same_tensors


def scalar_volume_from_node(node) -> Volume:
    """Scalar Volume (X,Y,Z) (or (X,Y,Z,K) for K components) from a scalar or label map volume node."""
    if node is None or not node.IsA("vtkMRMLVolumeNode"):
        raise IQTError(_("expected a scalar volume node, got nothing; select a scalar volume") if node is None else
                       _("expected a scalar volume node, got {got}; select a scalar volume").format(
                           got=node.GetClassName()))
    image, affine = _geometry(node)
    scalars = image.GetPointData().GetScalars()
    if scalars is None:
        raise IQTError(_("{node} holds no scalar point data; select a scalar volume").format(node=_node_said(node)))
    data = _point_array(image, scalars, node)
    if data.shape[3] == 1:
        data = data[..., 0]
    return Volume(data, affine, "scalar", meta=_meta(node))


def mask_from_node(node) -> Volume:
    """Binary mask (> 0) from a label map or scalar volume node."""
    vol = scalar_volume_from_node(node)
    data = vol.data
    if data.ndim != 3:
        raise IQTError(_("{node} has {count} components; a mask is a single-component label map").format(
            node=_node_said(node), count=data.shape[3]))
    mask = np.nan_to_num(data.astype(np.float64)) > 0
    if not mask.any():
        raise IQTError(_("{node} is empty (no voxel > 0); {give_mask}").format(
            node=_node_said(node), give_mask=option("give a brain mask")))
    return Volume(mask, vol.affine, "mask", meta=vol.meta)


# ---------------------------------------------------------------- Volume -> node


def _image_data(arr_xyzc: np.ndarray, as_tensors: bool):
    vtk, ns = _vtk()
    x, y, z, c = arr_xyzc.shape
    flat = np.ascontiguousarray(arr_xyzc.transpose(2, 1, 0, 3)).reshape(-1, c)
    if c == 1:
        flat = flat[:, 0]
    varr = ns.numpy_to_vtk(flat, deep=1)
    image = vtk.vtkImageData()
    image.SetDimensions(x, y, z)
    if as_tensors:
        varr.SetName("tensors")
        image.GetPointData().SetTensors(varr)
    else:
        varr.SetName("ImageScalars")
        image.GetPointData().SetScalars(varr)
    return image


def free_name(scene, name: str) -> str:
    """`name` where no node of `scene` has it, else MRML's unique variant ("name_1" …); GenerateUniqueName alone gives
    a variant for any name it gave before, though that node was deleted or renamed since."""
    return name if scene.GetFirstNodeByName(name) is None else scene.GenerateUniqueName(name)


def add_tensor_node(scene, vol: Volume, name: str):
    """New vtkMRMLDiffusionTensorVolumeNode in `scene` with Slicer's display nodes; components in IJK axes,
    IJKToRAS = the affine, measurement frame = IJK->RAS rotation (as Slicer's DTI estimation writes)."""
    from slicer import vtkMRMLDiffusionTensorVolumeNode

    node = vtkMRMLDiffusionTensorVolumeNode()
    node.SetName(free_name(scene, name))
    set_tensor_node(node, vol)
    scene.AddNode(node)
    _tensor_display(scene, node)
    return node


def add_dwi_node(scene, dwi: Volume, name: str = "dwi"):
    """New vtkMRMLDiffusionWeightedVolumeNode in `scene` holding `dwi` (gradients in voxel axes): IJKToRAS the affine,
    measurement frame the voxel axes' rotation (as `set_tensor_node`'s), so that its gradients are the voxel-axis ones
    and processing.dwi_volume_from_node reads back what was given."""
    from slicer import vtkMRMLDiffusionWeightedVolumeNode

    ns = _vtk()[1]
    node = vtkMRMLDiffusionWeightedVolumeNode()
    node.SetName(free_name(scene, name))
    node.SetIJKToRASMatrix(_numpy_to_matrix(dwi.affine))
    mf = np.eye(4)
    mf[:3, :3] = direction_rotation(dwi.affine)
    node.SetMeasurementFrameMatrix(_numpy_to_matrix(mf))
    node.SetAndObserveImageData(_image_data(np.asarray(dwi.data, dtype=np.float32), as_tensors=False))
    node.SetNumberOfGradients(len(dwi.bvals))
    g = np.asarray(dwi.bvecs, dtype=np.float64).reshape(-1, 3)
    node.SetDiffusionGradients(ns.numpy_to_vtk(np.ascontiguousarray(g), deep=1))
    node.SetBValues(ns.numpy_to_vtk(np.ascontiguousarray(np.asarray(dwi.bvals, dtype=np.float64)), deep=1))
    scene.AddNode(node)
    node.CreateDefaultDisplayNodes()
    return node


def add_label_node(scene, mask: Volume, name: str):
    """New vtkMRMLLabelMapVolumeNode in `scene` holding `mask` (1 inside): what the module takes as its brain mask."""
    from slicer import vtkMRMLLabelMapVolumeNode

    node = vtkMRMLLabelMapVolumeNode()
    node.SetName(free_name(scene, name))
    _set_scalar_image(node, Volume(np.asarray(mask.data).astype(np.uint8), mask.affine, "mask"))
    scene.AddNode(node)
    node.CreateDefaultDisplayNodes()
    return node


def set_tensor_node(node, vol: Volume):
    """Fill an existing DTI node with `vol` (geometry, measurement frame, tensors), in place: its display nodes
    are kept, so a node reused run after run never gains new ones. Display nodes are added only if it has none."""
    if vol.kind != "tensor":
        raise ValueError("set_tensor_node needs a tensor volume")
    m = tensors.to_matrix(np.asarray(vol.data, dtype=np.float32)).reshape(vol.shape3 + (9,))
    node.SetIJKToRASMatrix(_numpy_to_matrix(vol.affine))
    mf = np.eye(4)
    mf[:3, :3] = direction_rotation(vol.affine)
    node.SetMeasurementFrameMatrix(_numpy_to_matrix(mf))
    node.SetAndObserveImageData(_image_data(m, as_tensors=True))
    scene = node.GetScene()
    if scene is not None and node.GetDisplayNode() is None:
        _tensor_display(scene, node)
    return node


def _tensor_display(scene, node) -> None:
    """Display node + display properties + slice glyph nodes, as Slicer creates them for a loaded DTI."""
    try:
        node.CreateDefaultDisplayNodes()
    except Exception:  # very old MRML: build the minimum by hand
        pass
    if node.GetDisplayNode() is None:
        from slicer import vtkMRMLDiffusionTensorVolumeDisplayNode

        disp = vtkMRMLDiffusionTensorVolumeDisplayNode()
        scene.AddNode(disp)
        node.SetAndObserveDisplayNodeID(disp.GetID())
        disp.AddSliceGlyphDisplayNodes(node)  # glyph nodes + vtkMRMLDiffusionTensorDisplayPropertiesNode
    disp = node.GetDisplayNode()
    if disp is not None and not disp.GetColorNodeID():
        # grey for the scalar maps (FA, MD...), as radiologists read them: with Rainbow, FA 0 (all the background
        # within the field of view) is solid red; colour by orientation does not use the table
        disp.SetAndObserveColorNodeID(_grey_id(scene))


def _grey_id(scene) -> str:
    """Id of Slicer's grey table, made once where the scene lacks it (trame-slicer's has none: the FA display was
    left without a lookup table, drawn as stripes), as `legends.colormap_id` makes Inferno. Made as a User table of 256
    greys, the colours of SetTypeToGrey(): a saved Grey-type table did not read back ("Failed to read node Grey")."""
    found = _find_color_node_id(scene, "Grey")
    if found:
        return found
    from slicer import vtkMRMLColorTableNode

    table = vtkMRMLColorTableNode()
    table.SetTypeToUser()
    table.SetNumberOfColors(256)
    for i in range(256):
        table.SetColor(i, i / 255, i / 255, i / 255, 1.0)
    table.SetName("Grey")
    scene.AddNode(table)
    return table.GetID()


def _find_color_node_id(scene, colormap: str | None) -> str | None:
    """Id of a colour node named `colormap` in the scene, else Slicer's grey, else None."""
    candidates = []
    if colormap:
        candidates += [
            f"vtkMRMLColorTableNodeFile{colormap}.txt",
            f"vtkMRMLColorTableNode{colormap}",
            f"vtkMRMLProceduralColorNode{colormap}",
            f"vtkMRMLPETProceduralColorNode{colormap}",
        ]
    for cid in candidates:
        if scene.GetNodeByID(cid) is not None:
            return cid
    if colormap:
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLColorNode")):
            n = scene.GetNthNodeByClass(i, "vtkMRMLColorNode")
            if (n.GetName() or "").lower() == colormap.lower():
                return n.GetID()
    for cid in FALLBACK_COLOR_NODE_IDS:
        if scene.GetNodeByID(cid) is not None:
            return cid
    return None


def add_scalar_node(scene, vol: Volume, name: str, colormap: str | None = DEFAULT_COLORMAP):
    """New vtkMRMLScalarVolumeNode with a display node using `colormap` when the scene has it (the Slicer
    application has Inferno, Viridis, ...), else Slicer's grey; with no colour nodes at all (bare scene
    in slicer-core) the display node is left without one."""
    from slicer import vtkMRMLScalarVolumeNode

    node = vtkMRMLScalarVolumeNode()
    node.SetName(free_name(scene, name))
    _set_scalar_image(node, vol)
    scene.AddNode(node)
    _scalar_display(scene, node, colormap)
    return node


def set_scalar_node(node, vol: Volume, colormap: str | None = DEFAULT_COLORMAP):
    """Fill an existing scalar volume node with `vol`, in place, keeping its display nodes (one is added only if
    it has none)."""
    _set_scalar_image(node, vol)
    scene = node.GetScene()
    if scene is not None and node.GetDisplayNode() is None:
        _scalar_display(scene, node, colormap)
    return node


def _set_scalar_image(node, vol: Volume) -> None:
    data = np.asarray(vol.data)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"add_scalar_node needs a 3D volume, got shape {data.shape}")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float32)
    node.SetIJKToRASMatrix(_numpy_to_matrix(vol.affine))
    node.SetAndObserveImageData(_image_data(data[..., None], as_tensors=False))


def _scalar_display(scene, node, colormap: str | None) -> None:
    from slicer import vtkMRMLScalarVolumeDisplayNode

    disp = vtkMRMLScalarVolumeDisplayNode()
    scene.AddNode(disp)
    disp.AutoWindowLevelOn()
    color_id = _find_color_node_id(scene, colormap)
    if color_id:
        disp.SetAndObserveColorNodeID(color_id)
    node.SetAndObserveDisplayNodeID(disp.GetID())
