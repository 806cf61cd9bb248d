"""The Slicer module's processing, Qt-free: MRML nodes in, new MRML nodes out.

`run_on_nodes` is what the Slicer Logic calls (and what the headless tests call with `slicer-core`):

    input node (DTI, or DWI fitted first) + optional mask node
      -> Volume (mrml.tensor_volume_from_node / dwi_volume_from_node)
      -> method.predict  (in this process, or in a separate Python process for torch methods)
      -> nodes named after the method (`add_result_nodes`): high-res tensor, uncertainty map(s), and the
         cubic interpolation for side-by-side comparison.

The input node is never modified. A run fills the nodes the last run with the same input and method made (new
ones the first time), or the nodes the user chose (`targets`); nodes are filled in place, so their display nodes
are kept and nothing piles up run after run. Nothing here imports Qt or `slicer.app`; what is shown is `display`.

Progress callbacks receive `(fraction in [0, 1], message)`; `cancel` is a callable returning True to stop
(checked between steps, and continuously while a worker process runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue

import numpy as np

from .. import methods as methods_mod
from . import mrml
from ..core import grid, tensors
from ..core.errors import IQTError, IQTWarning
from ..fileio.nrrd import direction_rotation
from ..core.volume import Volume

COMPARISON_METHOD = "cubic"
LIB_DIR = Path(__file__).resolve().parents[1]


class Cancelled(IQTError):
    """The user stopped the processing; no output node was created."""


# ---------------------------------------------------------------- methods


def method_info(name: str) -> dict:
    """The registry's description of one method (name, description, uncertainty, learned, samples, torch, shipped)."""
    methods_mod.method_class(name)  # raises the registry's IQTError naming the valid choices
    return next(entry for entry in methods_mod.describe() if entry["name"] == name)


def method_needs_torch(name: str) -> bool:
    """True for methods whose prediction imports torch (the CNNs): the Slicer module runs them in a separate
    Python process so that a torch crash or a long run never takes the application down."""
    return methods_mod.method_class(name).requires_torch


@dataclass(frozen=True)
class Request:
    """One run: a method with its settings, the factor, and whether to add the cubic interpolation beside it.
    `samples` is the panel's Monte Carlo setting: it reaches the methods that take samples only; `tta` (the panel's
    "Average over flips") likewise reaches the learned methods only (methods/symmetry.py). `exclude_outliers` (the
    panel's "Exclude outliers") is for a DWI input's fit only (`fit_dwi`, `iqt fit --exclude-outliers`): no method
    sees it."""

    method: str
    factor: int | tuple = 2  # an integer r, or per-axis factors (fx, fy, fz)
    model: str | None = None
    samples: int | None = None
    device: str = "cpu"
    interpolate: bool = False
    tta: bool = False
    exclude_outliers: bool = False

    def make(self):
        cls = methods_mod.method_class(self.method)
        return cls(model=self.model or None, samples=self.samples if cls.takes_samples else None,
                   device=self.device or "cpu", tta=self.tta and cls.learned)

    def worker_args(self) -> list[str]:
        args = ["--method", self.method, "--factor", grid.text(self.factor), "--device", self.device or "cpu"]
        args += ["--model", str(self.model)] if self.model else []
        args += ["--samples", str(int(self.samples))] if self.samples is not None else []
        args += ["--exclude-outliers"] if self.exclude_outliers else []
        return args + (["--interpolate"] if self.interpolate else []) + (["--tta"] if self.tta else [])


# ---------------------------------------------------------------- nodes -> Volumes


def dwi_volume_from_node(node) -> Volume:
    """DWI Volume (X,Y,Z,N) with b-values and gradient directions in voxel axes, from a
    vtkMRMLDiffusionWeightedVolumeNode. Gradients are stored in the node's measurement frame
    (g_RAS = MF g); Slicer's NRRD convention of gradient length sqrt(b/b_max) is turned into per-volume
    b-values with unit directions."""
    import vtk
    from vtk.util import numpy_support as ns

    if node is None or not node.IsA("vtkMRMLDiffusionWeightedVolumeNode"):
        got = "nothing" if node is None else node.GetClassName()
        raise IQTError(f"expected a diffusion-weighted volume node, got {got}; load a DWI NRRD (or select a DTI volume)")
    vol = mrml.scalar_volume_from_node(node)
    data = np.asarray(vol.data, dtype=np.float32)
    notes = []
    bad = ~np.isfinite(data)
    if bad.any():  # `iqt fit` refuses them in a file; a node is not edited so easily: no signal, and said
        data = np.where(bad, np.float32(0), data)
        notes.append(f"{int(bad.sum())} NaN/Inf values in the diffusion-weighted volume were read as 0 (no signal)")
    if data.ndim != 4:
        raise IQTError(f"node '{node.GetName()}' holds a single volume; a DWI series has one volume per gradient")
    n = data.shape[3]
    grads = node.GetDiffusionGradients()
    bvals_arr = node.GetBValues()
    if grads is None or bvals_arr is None or grads.GetNumberOfTuples() != n or bvals_arr.GetNumberOfTuples() != n:
        raise IQTError(
            f"node '{node.GetName()}' has {n} volumes but its gradient table does not match; reload the DWI with its gradients"
        )
    g = np.array(ns.vtk_to_numpy(grads), dtype=np.float64).reshape(n, 3)
    b = np.array(ns.vtk_to_numpy(bvals_arr), dtype=np.float64).reshape(n)
    norms = np.linalg.norm(g, axis=1)
    dw = norms > 1e-6
    if dw.any() and np.ptp(b[dw]) == 0 and not np.allclose(norms[dw], 1.0, atol=1e-3):
        b = b * norms**2  # NRRD multi-shell convention: b = b_max * |g|^2
    g[dw] /= norms[dw, None]
    mf = vtk.vtkMatrix4x4()
    node.GetMeasurementFrameMatrix(mf)
    mf3 = mrml._matrix_to_numpy(mf)[:3, :3]
    g_ijk = np.linalg.solve(direction_rotation(vol.affine), mf3 @ g.T).T
    b[~dw] = 0.0
    return Volume(data, vol.affine, "dwi", bvals=b, bvecs=g_ijk,
                  meta=vol.meta | {"fitted_from_dwi": True, "input_notes": notes})


def input_volumes(input_node, mask_node=None, progress=None, cancel=None, fit: bool = True,
                  exclude: bool = False) -> tuple[Volume, Volume | None]:
    """(low-res tensor Volume, mask Volume or None) from the input node (DTI, or DWI fitted here: `fit_dwi`, without
    the slices and volumes the tensor model does not fit with `exclude`) and mask node. `fit=False` returns a DWI input
    unfitted (kind "dwi"), for a separate process to fit (`predict_in_subprocess`), off the GUI thread."""
    mask = mrml.mask_from_node(mask_node) if mask_node is not None else None
    if input_node is not None and input_node.IsA("vtkMRMLDiffusionWeightedVolumeNode"):
        dwi = dwi_volume_from_node(input_node)
        if mask is not None:
            mask = _check_same_grid(mask, dwi, mask_node)
        if not fit:
            from ..dmri import dti

            dti.gradient_table(dwi)  # its problems said here, in the in-process words, not about a temporary file
            return dwi, mask
        return fit_dwi(dwi, mask, progress, cancel, exclude=exclude)
    if input_node is None or not input_node.IsA("vtkMRMLTensorVolumeNode"):  # a scalar or label volume, say
        kind = next((words for cls, words in (("vtkMRMLLabelMapVolumeNode", "label map"),
                                              ("vtkMRMLScalarVolumeNode", "scalar volume"))
                     if input_node is not None and input_node.IsA(cls)), None)
        got = "nothing" if input_node is None else f"'{input_node.GetName()}', a {kind or input_node.GetClassName()}"
        raise IQTError(f"the input is {got}; select a diffusion tensor (DTI) or diffusion-weighted (DWI) volume")
    lr = mrml.tensor_volume_from_node(input_node)
    if mask is not None:
        mask = _check_same_grid(mask, lr, mask_node)
    return lr, mask


def fit_dwi(dwi: Volume, mask: Volume | None = None, progress=None, cancel=None,
            exclude: bool = False) -> tuple[Volume, Volume]:
    """(tensors fitted to `dwi` in `mask` or, without one, in a brain mask estimated from its b0, that mask): the
    series' shell warning and the estimated mask said in the tensors' meta["input_notes"], eigenvalues clipped as
    the engine's readers clip them. With `exclude` (the panel's "Exclude outliers"), fitted without the slices and
    volumes the tensor model does not fit, as `iqt fit --exclude-outliers` fits them; the note says what was left out.
    Here or in the worker process (slicer/worker.py `--dwi`, `--exclude-outliers`)."""
    from ..dmri import dti
    from ..dmri.gradcheck import check_gradients
    from ..dmri.motion import check_b0
    from ..dmri.outliers import check_fit

    _report(progress, 0.02, "fitting tensors to the diffusion-weighted volume")
    fit_mask = mask if mask is not None else dti.brain_mask(dwi)
    with warnings.catch_warnings(record=True) as shells:  # said once as the run's note, not once per slab
        warnings.simplefilter("always", IQTWarning)
        dti.check_shells(dwi)
        check_b0(dwi)  # iqt fit's checks (apps/cli/fit.py): a b0 the head moved from; the mask was made from it
    lr = _fit_in_slabs(dwi, fit_mask, progress, cancel)
    _check_cancel(cancel)
    with warnings.catch_warnings(record=True) as fit:  # the slices and volumes the fit does not explain; a wrong table
        warnings.simplefilter("always", IQTWarning)
        lr = check_fit(dwi, fit_mask, lr, exclude=exclude)
        check_gradients(dwi, fit_mask, lr)
    meta = dict(dwi.meta)
    meta["input_notes"] = list(dwi.meta.get("input_notes", [])) + [
        _fit_in_module_words(str(w.message)) for w in [*shells, *fit] if issubclass(w.category, IQTWarning)]
    if mask is None:
        meta["input_notes"].append(f"no mask was chosen: the tensors were fitted in a brain mask estimated from the "
                                   f"b0 (median Otsu, {100 * np.mean(fit_mask.data):.0f} % of the field of view), which "
                                   "the output follows; choose a mask to use your own")
    lr = lr.replace(data=tensors.clip_eigenvalues(lr.data, *tensors.INPUT_CLIP).astype(np.float32), meta=meta)
    return lr, fit_mask


# the panel's control for `iqt fit --exclude-outliers` (Resources/UI/ImageQualityTransfer.ui, excludeOutliersCheckBox)
EXCLUDE_OUTLIERS_CONTROL = "Inputs > Exclude outliers"


def _fit_in_module_words(note: str) -> str:
    """`iqt fit`'s advice to rerun it with --exclude-outliers, put as what a user of the module can do: tick the
    panel's Exclude outliers and apply again."""
    return note.replace("or rerun 'iqt fit' with --exclude-outliers to fit without them",
                        f"or tick {EXCLUDE_OUTLIERS_CONTROL} and apply again to fit without them")


def _fit_in_slabs(dwi: Volume, mask: Volume, progress=None, cancel=None, slabs: int = 8) -> Volume:
    """`dti.fit_dti` slab by slab along the last axis (the fit is voxel-wise, so the result is the same), with
    progress from 0.02 to 0.1 and a cancel check between slabs."""
    from ..dmri import dti

    m = np.asarray(mask.data, dtype=bool)
    nz = dwi.shape3[2]
    edges = np.linspace(0, nz, min(slabs, nz) + 1).round().astype(int)
    out = np.zeros(dwi.shape3 + (6,), dtype=np.float32)
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        _check_cancel(cancel)
        _report(progress, 0.02 + 0.08 * i / (len(edges) - 1), "fitting tensors to the diffusion-weighted volume")
        if b > a and m[:, :, a:b].any():
            part = dwi.replace(data=dwi.data[:, :, a:b])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", IQTWarning)  # input_volumes says the series' shells once
                out[:, :, a:b] = dti.fit_dti(part, m[:, :, a:b]).data
    return Volume(out, dwi.affine, "tensor", meta={"fit": "dipy WLS"})


def _check_same_grid(mask: Volume, vol: Volume, mask_node) -> Volume:
    """`mask` on `vol`'s grid: as it is, or the same voxels stored in another axis order or direction re-indexed; an
    IQTError for a mask on other voxels."""
    from ..core.orientation import onto_grid

    if mask.shape3 == vol.shape3 and np.allclose(mask.affine, vol.affine, atol=1e-4):
        return mask
    moved = onto_grid(mask.data, mask.affine, vol.shape3, vol.affine)
    if moved is not None:
        return Volume(moved, vol.affine, "mask", meta=mask.meta)
    name = mask_node.GetName() if mask_node is not None else "the mask"
    what = (f"another grid ({mask.shape3}) than the input ({vol.shape3})" if mask.shape3 != vol.shape3 else
            f"the input's voxel counts {vol.shape3} but another position or spacing")
    raise IQTError(f"mask '{name}' is on {what}; resample the mask onto the input volume (Resample Scalar/Vector/DWI "
                   "Volume) or leave it empty")


# ---------------------------------------------------------------- the engine call (shared with the worker)


OUTPUT_PROGRESS = 0.95  # the overall progress where the output nodes are made: every step before ends at or below it


def predict_volumes(lr: Volume, request: Request, mask: Volume | None = None, progress=None,
                    cancel=None) -> dict[str, Volume]:
    """{"tensor": Volume, "uncertainty/<name>": Volume..., "interpolated": Volume} on the high-res grid; the engine's
    warnings for the run (e.g. the brain estimated for unmasked input) are the tensor's meta["notes"]. A `mask` on
    the high-res grid (`iqt view --mask`) keeps every output to it, as `iqt upsample` does."""
    from ..methods.base import predict_within

    method, factor = request.method, request.factor
    given = mask
    m = request.make()
    # the method, then the comparison (when there is one), end at OUTPUT_PROGRESS, where the nodes are made
    span = 0.75 if request.interpolate and method != COMPARISON_METHOD else OUTPUT_PROGRESS - 0.1
    _report(progress, 0.1, f"running {method} (x{grid.text(factor)})")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IQTWarning)
        pred, mask = predict_within(m, lr, factor, given, direction=True,
                                    progress=_scaled(progress, 0.1, 0.1 + span, f"{method}", cancel))
    notes = []
    for w in caught:  # the engine's warnings become the run's notes (shown with the result); others pass on
        if issubclass(w.category, IQTWarning):
            notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    _check_cancel(cancel)
    pred.tensor.meta["notes"] = list(lr.meta.get("input_notes", [])) + notes
    out = {"tensor": pred.tensor}
    for key, v in pred.maps().items():
        out[f"uncertainty/{key}"] = v
    if request.interpolate:
        if method == COMPARISON_METHOD:
            out["interpolated"] = pred.tensor
        else:
            _report(progress, 0.1 + span, f"{COMPARISON_METHOD} interpolation for comparison")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", IQTWarning)  # the same input: said once, above
                cmp, _ = predict_within(methods_mod.get(COMPARISON_METHOD), lr, factor, given,
                                        progress=_scaled(progress, 0.1 + span, OUTPUT_PROGRESS, None, cancel))
                out["interpolated"] = cmp.tensor
    _check_cancel(cancel)
    return out


# ---------------------------------------------------------------- Volumes -> nodes


# the output selectors' empty choice, as the panel names it (Resources/UI/ImageQualityTransfer.ui, noneDisplay)
AUTOMATIC_OUTPUT = "'Named after the method'"
# A run's outputs are found again by a node reference to their input, which MRML remaps when a saved scene is imported
# next to clashing node IDs (a text attribute holding the input's ID kept patient A's ID, so patient B's run refilled
# A's results), and by which output of which run they are. Nodes of scenes saved before (an attribute
# "ImageQualityTransfer.Result" only) are left as they are: a run makes new nodes beside them.
INPUT_REFERENCE = "ImageQualityTransfer.Input"  # node reference role: the input a run's output was made from
OUTPUT_ATTRIBUTE = "ImageQualityTransfer.Output"  # "<method>[_x<factors>]/<role>", e.g. "biqt_x3/uncertainty/std"
# A reference from each node the module made to itself, remapped on import as the input's: a user's copy carries the
# attributes (scene.CopyNode, Slicer's Clone) and may carry the references (CopyNode does), but its own reference points
# at the original, or at nothing once the original is deleted, so a copy the user kept is never refilled.
OWN_REFERENCE = "ImageQualityTransfer.Own"
NAME_ATTRIBUTE = "ImageQualityTransfer.Name"  # the name a run gave its output ("_1" … may follow it in the node's name)


def find_result_node(scene, input_node, output: str, class_name: str):
    """The node an earlier run made from `input_node` for `output` (method, factors, role); None where there is none,
    or more than one (neither is overwritten: the run makes a new node)."""
    found = []
    for i in range(scene.GetNumberOfNodesByClass(class_name)):
        node = scene.GetNthNodeByClass(i, class_name)
        if (node.GetAttribute(OUTPUT_ATTRIBUTE) == output and node.GetNodeReferenceID(OWN_REFERENCE) == node.GetID()
                and node.GetNodeReferenceID(INPUT_REFERENCE) == input_node.GetID()):
            found.append(node)
    return found[0] if len(found) == 1 else None


def model_words(meta: dict) -> str:
    """The model a learned method ran, in words ("shipped model espcn_x2.pt"; "given" for one chosen by path): from
    the prediction's meta (Method.predict) or, from the worker process, the header that recorded it (records.made_by);
    "" for interpolation (the Slicer module did not name the model, stop 49 left undone)."""
    if meta.get("model_name") and meta.get("model_origin"):
        return f"{meta['model_origin']} model {meta['model_name']}"
    from ..fileio.records import MADE_BY

    m = MADE_BY.match(str(meta.get("made_by") or ""))
    return f"{m['origin']} model {m['model']}" if m is not None and m["model"] else ""


def _put(scene, vol: Volume, name: str, input_node, output: str, target=None):
    """`vol` into `target` (a node the user chose), else into the node an earlier run made from `input_node` for
    `output` (`find_result_node`), else into a new node named `name`; a tensor's factors go on the node
    (`mrml.FACTORS_ATTRIBUTE`, for the comparison view), and the run's notes (`mrml.NOTES_ATTRIBUTE`, for the module's
    status line)."""
    node = _put_volume(scene, vol, name, input_node, output, target)
    if vol.meta.get("factor") is not None:
        node.SetAttribute(mrml.FACTORS_ATTRIBUTE, grid.text(vol.meta["factor"]))
    if vol.meta.get("support"):
        node.SetAttribute(mrml.SUPPORT_ATTRIBUTE, vol.meta["support"])
    else:
        node.RemoveAttribute(mrml.SUPPORT_ATTRIBUTE)
    model = model_words(vol.meta)
    if model:
        node.SetAttribute(mrml.MODEL_ATTRIBUTE, model)
    else:  # a refilled node keeps no model of an earlier run
        node.RemoveAttribute(mrml.MODEL_ATTRIBUTE)
    if "notes" in vol.meta:  # a refilled node keeps no note of an earlier run
        if vol.meta["notes"]:
            node.SetAttribute(mrml.NOTES_ATTRIBUTE, "\n".join(vol.meta["notes"]))
        else:
            node.RemoveAttribute(mrml.NOTES_ATTRIBUTE)
    return node


def _put_volume(scene, vol: Volume, name: str, input_node, output: str, target=None):
    """`_put` without the factors. Nodes are filled in place, so repeated runs add no node and no display node."""
    tensor = vol.kind == "tensor"
    class_name = "vtkMRMLDiffusionTensorVolumeNode" if tensor else "vtkMRMLScalarVolumeNode"
    fill = mrml.set_tensor_node if tensor else mrml.set_scalar_node
    if target is not None:
        if not target.IsA(class_name) or (not tensor and target.IsA("vtkMRMLLabelMapVolumeNode")):
            raise IQTError(f"output node '{target.GetName()}' is a {target.GetClassName()}, expected a {class_name}; "
                           f"choose {AUTOMATIC_OUTPUT} in the output selector")
        target.RemoveAttribute(OUTPUT_ATTRIBUTE)  # the user's node, never reused for another run by itself
        target.RemoveNodeReferenceIDs(INPUT_REFERENCE)
        target.RemoveNodeReferenceIDs(OWN_REFERENCE)
        return fill(target, vol)
    node = find_result_node(scene, input_node, output, class_name) if input_node is not None else None
    if node is not None:
        _follow_input_name(scene, node, name)
        return fill(node, vol)
    node = (mrml.add_tensor_node if tensor else mrml.add_scalar_node)(scene, vol, name)
    if input_node is not None:
        node.SetAttribute(NAME_ATTRIBUTE, name)
        node.SetAttribute(OUTPUT_ATTRIBUTE, output)
        node.SetNodeReferenceID(INPUT_REFERENCE, input_node.GetID())
        node.SetNodeReferenceID(OWN_REFERENCE, node.GetID())
    return node


def _follow_input_name(scene, node, name: str) -> None:
    """A refilled node renamed `name` (after its input's name now) where it was named after another and the user has not
    renamed it, so that one run's outputs share one name (after a renamed input they kept the old one, and an output
    made anew took the new one)."""
    import re

    given = node.GetAttribute(NAME_ATTRIBUTE)
    if given is None or given == name or not re.fullmatch(re.escape(given) + r"(_\d+)?", node.GetName() or ""):
        return
    node.SetName(mrml.free_name(scene, name))
    node.SetAttribute(NAME_ATTRIBUTE, name)


def factor_suffix(factor) -> str:
    """"" at the module's default factor 2, else "_x3" or "_x1x1x3": result names and keys tell factors apart."""
    if factor is None or grid.isotropic(factor) == 2:
        return ""
    return "_x" + grid.text(factor).replace(",", "x")


def add_result_nodes(scene, results: dict[str, Volume], base_name: str, method: str, targets: dict | None = None,
                     input_node=None, factor=None) -> dict:
    """The results as nodes named after the method and, other than 2, the factors (`<input>_<method>`,
    `<input>_<method>_uncertainty_<map>`, `<input>_cubic`; `<input>_<method>_x3` …). A run reuses the nodes the last
    run with the same input, method and factors made, so results of other methods or factors are never overwritten
    and node counts stay flat. `targets` may map "tensor", "uncertainty" (the overlay map), "interpolated" to nodes
    the user chose, which receive that result instead.
    Returns {"tensor": node, "uncertainty": node or None, "uncertainties": {key: node}, "interpolated": node or None}."""
    targets = targets or {}
    factor = factor if factor is not None else results["tensor"].meta.get("factor")
    suffix = factor_suffix(factor)
    run = f"{method} ×{grid.text(factor)}" if suffix else method  # names the run on its legends (display.share_scales)
    created = {"tensor": None, "uncertainty": None, "uncertainties": {}, "interpolated": None}
    created["tensor"] = _put(scene, results["tensor"], f"{base_name}_{method}{suffix}", input_node,
                             f"{method}{suffix}/tensor", targets.get("tensor"))
    unc_keys = [k for k in results if k.startswith("uncertainty/")]
    # the map shown as overlay: "std" when the method gives one, else the first
    main = next((k for k in unc_keys if k.endswith("/std")), unc_keys[0] if unc_keys else None)
    for k in unc_keys:
        short = k.split("/", 1)[1]
        vol, unit = mrml.map_in_node_unit(results[k], short)
        node = _put(scene, vol, f"{base_name}_{method}{suffix}_uncertainty_{short}", input_node,
                    f"{method}{suffix}/{k}", targets.get("uncertainty") if k == main else None)
        mrml.set_map(node, short, unit, run=run)
        if k == main:
            created["uncertainty"] = node
        created["uncertainties"][short] = node
    if "interpolated" in results:
        if method == COMPARISON_METHOD and targets.get("interpolated") is None:
            created["interpolated"] = created["tensor"]  # the comparison is this run's own result
        else:  # the cubic run's node: shared with runs of cubic itself
            created["interpolated"] = _put(scene, results["interpolated"], f"{base_name}_{COMPARISON_METHOD}{suffix}",
                                           input_node, f"{COMPARISON_METHOD}{suffix}/tensor", targets.get("interpolated"))
    # the results are in the input's own coordinates: under its parent transform (a registration to a T1, say) they
    # lie where it lies (review 45f: they came out as far from it as the transform moved it)
    parent = input_node.GetTransformNodeID() if input_node is not None and hasattr(input_node, "GetTransformNodeID") else None
    for node in [created["tensor"], created["interpolated"], *created["uncertainties"].values()]:
        if node is not None and hasattr(node, "SetAndObserveTransformNodeID"):
            node.SetAndObserveTransformNodeID(parent)
    return created


# ---------------------------------------------------------------- the one call


def run_on_nodes(
    scene,
    input_node,
    method: str,
    factor: int = 2,
    mask_node=None,
    model=None,
    samples: int | None = None,
    device: str | None = None,
    interpolate: bool = False,
    tta: bool = False,
    targets: dict | None = None,
    progress=None,
    cancel=None,
    python_executable: str | None = None,
    exclude_outliers: bool = False,
) -> dict:
    """Super-resolve `input_node` with `method`; returns the created (or filled) nodes, see `add_result_nodes`.

    python_executable: run the method in that Python interpreter (a separate process; the Slicer module gives
    PythonSlicer for torch methods); None runs it here. The input node is never modified. The engine's messages and
    notes name the module's controls, not the command line's options (`in_module_words`). exclude_outliers: a DWI
    input node is fitted without the slices and volumes the tensor model does not fit (`fit_dwi`, here or in that
    process); nothing for a DTI input node.
    """
    try:
        return _run_on_nodes(scene, input_node, method, factor, mask_node, model, samples, device, interpolate, tta,
                             targets, progress, cancel, python_executable, exclude_outliers)
    except IQTError as exc:
        if type(exc) is not IQTError:  # Cancelled and the like keep their type and words
            raise
        raise IQTError(in_module_words(str(exc))) from None


# command-line options in the engine's messages -> the module's controls (Resources/UI/ImageQualityTransfer.ui)
MODULE_WORDS = (
    (r"give --mask with a brain mask", "choose a Brain mask"), (r"give --mask", "choose a Brain mask"),
    (r"--mask", "the Brain mask"), (r"drop --tta", "turn off Advanced > Average over flips"),
    (r"--tta", "Advanced > Average over flips"), (r"give --model( a model file)?", "choose an Advanced > Model file"),
    (r"--model", "Advanced > Model file"), (r"(use|give) --device cpu( \(or auto\))?", "turn off Advanced > Use GPU"),
    (r"--device \w+", "Advanced > Use GPU"), (r"--mc-samples|--samples", "Advanced > Monte Carlo samples"),
    (r"a larger --voxel-size", "a larger Target voxel size"), (r"--voxel-size", "the Target voxel size"), (r"--factor", "the Upsampling factor"),
    (r"--method", "the Method"),
    (r" \(iqt fit, [^)]*\)", ""),  # which commands take --bmax: the module has none of them
    (r"give --bmax (\d+)", r"keep only the b0s and the volumes with b up to \1 s/mm^2 in the DWI volume"),
)


def in_module_words(text: str) -> str:
    """An engine message with the command line's options put as the module's controls (a quoted command, such as the
    'iqt train …' that makes a model, is left as it is)."""
    import re

    parts = re.split(r"('[^']*')", text)
    for i in range(0, len(parts), 2):
        for pattern, words in MODULE_WORDS:
            parts[i] = re.sub(pattern, words, parts[i])
    return "".join(parts)


def _run_on_nodes(scene, input_node, method, factor, mask_node, model, samples, device, interpolate, tta, targets,
                  progress, cancel, python_executable, exclude_outliers=False) -> dict:
    if input_node is None:
        raise IQTError("no input volume: select a diffusion tensor (DTI) or diffusion-weighted (DWI) volume")
    if scene is None:
        raise IQTError("no MRML scene given")
    if samples is not None and not (isinstance(samples, (int, np.integer)) and 2 <= samples <= 200):
        raise IQTError(f"Advanced > Monte Carlo samples is {samples!r}; give 2 to 200, the panel's range (one sample "
                       "would give no spread)")
    request = Request(method, factor, model, samples, device or "cpu", interpolate, bool(tta), bool(exclude_outliers))
    label = request.make().label  # the method's settings are checked before any work; "+tta" names averaged results
    _check_targets(targets or {}, input_node, mask_node)
    _report(progress, 0.0, "reading the input volume")
    # a DWI is fitted in the worker too when there is one: the GUI thread only reads the node
    lr, mask = input_volumes(input_node, mask_node, progress, cancel, fit=not python_executable,
                             exclude=request.exclude_outliers)
    _check_cancel(cancel)
    if python_executable:
        results = predict_in_subprocess(lr, request, mask, progress, cancel, python_executable=python_executable)
    else:
        results = predict_volumes(lr, request, mask, progress, cancel)
    _report(progress, OUTPUT_PROGRESS, "creating output nodes")
    _check_cancel(cancel)  # pressed as the method ended: still no output (review 45f: the nodes came back "Cancelled")
    base = input_node.GetName() or "dti"
    nodes = add_result_nodes(scene, results, base, label, targets, input_node=input_node, factor=request.factor)
    notes = nodes["tensor"].GetAttribute(mrml.NOTES_ATTRIBUTE)
    if notes:
        nodes["tensor"].SetAttribute(mrml.NOTES_ATTRIBUTE, in_module_words(notes))
    _report(progress, 1.0, "done")
    return nodes


def _check_targets(targets: dict, input_node, mask_node) -> None:
    """Output nodes are never an input node, and no node receives two results."""
    seen = {}
    for key, node in targets.items():
        if node is None:
            continue
        if node is input_node or (mask_node is not None and node is mask_node):
            raise IQTError(f"the output node '{node.GetName()}' is an input of this run; choose {AUTOMATIC_OUTPUT} "
                           f"in the output selector (inputs are never overwritten)")
        if id(node) in seen:
            raise IQTError(f"the node '{node.GetName()}' is chosen for both the {seen[id(node)]} and the {key} output; "
                           f"choose {AUTOMATIC_OUTPUT} for one of them")
        seen[id(node)] = key
        tensor = key in ("tensor", "interpolated")  # said before the run, not after it (_put_volume checks again)
        class_name = "vtkMRMLDiffusionTensorVolumeNode" if tensor else "vtkMRMLScalarVolumeNode"
        if not node.IsA(class_name) or (not tensor and node.IsA("vtkMRMLLabelMapVolumeNode")):
            raise IQTError(f"output node '{node.GetName()}' is a {node.GetClassName()}, expected a {class_name}; "
                           f"choose {AUTOMATIC_OUTPUT} in the output selector")


# ---------------------------------------------------------------- separate process (see slicer_worker.py)


def predict_in_subprocess(lr: Volume, request: Request, mask: Volume | None = None, progress=None, cancel=None,
                          python_executable: str | None = None, workdir=None) -> dict[str, Volume]:
    """`predict_volumes` in a separate Python process running `slicer.worker`: inputs and outputs go through
    files in a temporary folder, progress comes back as JSON lines on stdout. `lr` may be a DWI (kind "dwi",
    `input_volumes(fit=False)`): the worker fits it first (`fit_dwi`)."""
    from .. import fileio

    exe = python_executable or sys.executable
    if workdir is None:
        remove_orphaned_folders()
    tmp_ctx = tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{os.getpid()}-") if workdir is None else None
    folder = Path(workdir if workdir is not None else tmp_ctx.name)
    try:
        if lr.kind == "dwi":
            source = folder / "input.nii"  # uncompressed: written on the GUI thread
            fileio.save_dwi(lr, source)
        else:
            source = folder / "input.nrrd"
            fileio.save_tensor(lr, source)
        args = [exe, "-m", "ImageQualityTransferLib.slicer.worker", "--input", str(source),
                *(["--dwi"] if lr.kind == "dwi" else []), "--outdir", str(folder / "out"), *request.worker_args()]
        if mask is not None:
            fileio.save_scalar(Volume(mask.data.astype(np.uint8), mask.affine, "scalar"), folder / "mask.nii.gz")
            args += ["--mask", str(folder / "mask.nii.gz")]
        try:
            summary = _run_worker(args, progress, cancel)
        except IQTError as exc:
            if str(folder) not in str(exc):
                raise
            raise IQTError(_without_paths(str(exc), folder)) from None
        results = {}
        for key, entry in summary["outputs"].items():
            path = entry["path"]
            results[key] = fileio.load_tensor(path) if entry["kind"] == "tensor" else fileio.load_scalar(path)
            if entry["kind"] == "tensor":  # the files do not carry the run's factors; the comparison view needs them
                results[key].meta["factor"] = grid.record(request.factor)
            if entry.get("support"):  # nor an estimated support, which the uncertainty legend is scaled by
                results[key].meta["support"] = entry["support"]
            results[key].meta.update({k: entry[k] for k in ("model_name", "model_origin") if entry.get(k)})
        results["tensor"].meta["notes"] = list(lr.meta.get("input_notes", [])) + [
            _without_paths(n, folder) for n in summary.get("notes", [])]
        expected = grid.hr_affine(lr.affine, request.factor)
        for key, vol in results.items():  # a NIfTI input's float32 affine moved the grid by ~1e-6 mm: the exact one
            if np.allclose(vol.affine, expected, atol=1e-4):
                results[key] = vol.replace(affine=expected)
        return results
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()


WORK_PREFIX = "iqt-slicer-"  # + the owning process's id + "-": a run's folder of the patient's input and outputs


def remove_orphaned_folders(root=None) -> list[Path]:
    """Remove this user's run folders (WORK_PREFIX<pid>-*, in the temporary folder) whose owning process no longer
    runs, and return them: a Slicer killed mid-run (kill -9, a crash, a power cut) never ran its cleanup, and the
    patient's input stayed in /tmp (audit Z, stop 51). A folder of a running process is left alone. POSIX only (on
    Windows a process id cannot be probed without opening the process; the folders stay there as before)."""
    import re
    import shutil

    if os.name != "posix":
        return []
    gone = []
    for path in Path(root or tempfile.gettempdir()).glob(f"{WORK_PREFIX}*-*"):
        m = re.fullmatch(re.escape(WORK_PREFIX) + r"(\d+)-\w+", path.name)
        try:
            if not m or path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid():
                continue
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:  # its owner has ended
            shutil.rmtree(path, ignore_errors=True)
            gone.append(path)
        except (OSError, OverflowError):  # running under another user, or not ours to judge
            continue
    return gone


def _without_paths(text: str, folder: Path) -> str:
    """`text` without the worker's temporary file names ("/tmp/iqt-x/input.nii: ..."): the user knows the input as
    the node."""
    import re

    return re.sub(re.escape(str(folder)) + r"[^\s:]*(: )?", "", text)


def _run_worker(args, progress, cancel) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(LIB_DIR.parent)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **_own_group())
    lines: Queue = Queue()
    errors: list[str] = []

    def pump(stream, sink):
        for line in stream:
            sink(line)
        stream.close()

    t_out = threading.Thread(target=pump, args=(proc.stdout, lines.put), daemon=True)
    t_err = threading.Thread(target=pump, args=(proc.stderr, errors.append), daemon=True)
    t_out.start()
    t_err.start()
    summary = None
    error = None
    try:
        while True:
            if cancel is not None and cancel():
                stop_process_tree(proc)
                raise Cancelled("processing cancelled; no output was created")
            try:
                line = lines.get(timeout=0.1)
            except Empty:
                if proc.poll() is not None and not t_out.is_alive() and lines.empty():
                    break
                if progress is not None:
                    _report(progress, None, None)  # keeps a GUI responsive (the callback may process events)
                continue
            msg = _parse(line)
            if msg is None:
                continue
            if "progress" in msg:
                _report(progress, msg["progress"], msg.get("message"))
            if "error" in msg:
                error = msg["error"]
            if msg.get("done"):
                summary = msg
    finally:
        if proc.poll() is None:
            proc.wait()
        t_err.join(timeout=5)
    if error:
        raise IQTError(error)
    if proc.returncode != 0 or summary is None:
        tail = "".join(errors)[-2000:].strip()
        raise IQTError(f"the processing process failed (exit status {proc.returncode}): {tail or 'no message'}")
    return summary


def _own_group() -> dict:
    """Popen arguments that start the worker in its own process group (session), so that cancelling stops the
    whole tree: PythonSlicer is a launcher whose child is the Python that does the work."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def stop_process_tree(proc, timeout: float = 5.0) -> None:
    """Terminate `proc` and every process it started (its process group), killing what outlives `timeout`."""
    if proc.poll() is not None:
        return
    if os.name == "nt":
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(proc.pid)], capture_output=True)
    else:
        import signal

        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # members of the group that outlived the launcher
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


def _parse(line: str):
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


# ---------------------------------------------------------------- helpers


def _report(progress, fraction, message) -> None:
    if progress is not None:
        progress(None if fraction is None else float(min(max(fraction, 0.0), 1.0)), message)


def _scaled(progress, lo, hi, message, cancel=None):
    """A method-level progress(fraction) mapped onto [lo, hi] of the overall progress; raises `Cancelled` from
    inside the method (between its tiles or trees) as soon as `cancel()` is true."""
    if progress is None and cancel is None:
        return None
    last = [0.0]

    def cb(fraction, *_):
        _check_cancel(cancel)
        if progress is None:
            return
        now = time.monotonic()
        if fraction is not None and (fraction >= 1.0 or now - last[0] > 0.1):
            last[0] = now
            _report(progress, lo + (hi - lo) * float(fraction), message)

    return cb


def _check_cancel(cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled("processing cancelled; no output was created")
