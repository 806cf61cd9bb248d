"""The Slicer module's processing, Qt-free: MRML nodes in, new MRML nodes out.

`run_on_nodes` is what the Slicer Logic calls (and what the headless tests call with `slicer-core`):

    input node (DTI, or DWI fitted first) + optional mask node
      -> Volume (mrml.tensor_volume_from_node / dwi_volume_from_node)
      -> method.predict  (in this process, or, given `python_executable`, in a separate Python process:
         `separate_process`; the Logic gives one for every method with a main window, for the torch methods only
         in batch mode: ImageQualityTransfer.py `process`)
      -> nodes named after the method (`results.add_result_nodes`): high-res tensor, uncertainty map(s), and the
         cubic interpolation for side-by-side comparison.

The input node is never modified. A run fills the nodes the last run with the same input and method made (new
ones the first time), or the nodes the user chose (`targets`); nodes are filled in place, so their display nodes
are kept and nothing piles up run after run. Nothing here imports Qt or `slicer.app`; what is shown is `display`.

Progress callbacks receive `(fraction in [0, 1], message)`; `cancel` is a callable returning True to stop
(checked between steps, and continuously while a worker process runs; `progress`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .. import methods as methods_mod
from . import mrml
from ..core import grid, tensors
from ..core.errors import IQTError, IQTWarning
from ..core.i18n import _, options_named
from ..fileio.nrrd import direction_rotation
from ..core.volume import Volume
from ..methods.base import warning_lines
from .legends import NOISE_SCALE_SHOWN
from .progress import Cancelled as Cancelled  # the module's Logic catches it from here
from .progress import check_cancel, report_progress, scaled_progress
from .results import (COMPARISON_METHOD, add_result_nodes, automatic_comparison, automatic_output, check_target_kind,
                      selector_label)
from .separate_process import predict_in_subprocess



# ---------------------------------------------------------------- methods


def method_class(name: str):
    """The registry's class of method `name`; an unknown name is refused in the module's words: the registry's line
    listed every registered method (two with no shipped model) and pointed at 'iqt methods'."""
    if name in methods_mod.names():
        return methods_mod.method_class(name)
    entries = methods_mod.describe()
    runs = [e["name"] for e in entries if not (e["learned"] and not e["shipped"])]  # the Method list's (availableMethods)
    need = [e["name"] for e in entries if e["name"] not in runs]
    near = next((n for n in runs + need if str(name).strip().lower() == n), None)
    said = (_("unknown method {method} (did you mean {near}?)") if near else _("unknown method {method}")).format(
        method=repr(name), near=repr(near))
    listed = (_("choose one of the Method list's: {methods} ({others} only with an Advanced > Model file)") if need else
              _("choose one of the Method list's: {methods}")).format(methods=", ".join(runs), others=", ".join(need))
    raise IQTError(said + "; " + listed)


def method_info(name: str) -> dict:
    """The registry's description of one method (name, description, uncertainty, learned, samples, torch, shipped)."""
    method_class(name)  # an unknown name refused, naming the valid choices
    return next(entry for entry in methods_mod.describe() if entry["name"] == name)


def method_needs_torch(name: str) -> bool:
    """True for methods whose prediction imports torch (the CNNs): the Slicer module runs them in a separate
    Python process even in batch mode (with a main window it runs every method in one), so that a torch crash or a
    long run never takes the application down."""
    return method_class(name).requires_torch


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
        cls = method_class(self.method)
        # tta for a method flips leave unchanged is refused (methods/base.py), as `iqt upsample --tta` is: dropped
        # here, it ran without a word
        return cls(model=self.model or None, samples=self.samples if cls.takes_samples else None,
                   device=(self.device or "cpu") if cls.requires_torch else "cpu", tta=self.tta)

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
    from vtk.util import numpy_support as ns

    if node is None or not node.IsA("vtkMRMLDiffusionWeightedVolumeNode"):
        raise IQTError(_("expected a diffusion-weighted volume node, got nothing; load a DWI NRRD (or select a DTI "
                         "volume)") if node is None else
                       _("expected a diffusion-weighted volume node, got {got}; load a DWI NRRD (or select a DTI "
                         "volume)").format(got=node.GetClassName()))
    vol = mrml.scalar_volume_from_node(node)
    data = np.asarray(vol.data, dtype=np.float32)
    notes = []
    bad = ~np.isfinite(data)
    if bad.any():  # `iqt fit` refuses them in a file; a node is not edited so easily: no signal, and said
        data = np.where(bad, np.float32(0), data)
        notes.append(_("{count} NaN/Inf values in the diffusion-weighted volume were read as 0 (no signal)").format(
            count=int(bad.sum())))
    if data.ndim != 4:
        raise IQTError(_("node '{node}' holds a single volume; a DWI series has one volume per gradient").format(
            node=node.GetName()))
    n = data.shape[3]
    grads = node.GetDiffusionGradients()
    bvals_arr = node.GetBValues()
    if grads is None or bvals_arr is None or grads.GetNumberOfTuples() != n or bvals_arr.GetNumberOfTuples() != n:
        raise IQTError(_("node '{node}' has {count} volumes but its gradient table does not match; reload the DWI with "
                         "its gradients").format(node=node.GetName(), count=n))
    g = np.array(ns.vtk_to_numpy(grads), dtype=np.float64).reshape(n, 3)
    b = np.array(ns.vtk_to_numpy(bvals_arr), dtype=np.float64).reshape(n)
    norms = np.linalg.norm(g, axis=1)
    dw = norms > 1e-6
    _refuse_trace(node, b, dw)
    if dw.any() and np.ptp(b[dw]) == 0 and not np.allclose(norms[dw], 1.0, atol=1e-3):
        b = b * norms**2  # NRRD multi-shell convention: b = b_max * |g|^2
    g[dw] /= norms[dw, None]
    # the slice gap of the file the node was read from (its NRRD thicknesses, its BIDS sidecar), as a DTI node's
    # (mrml.tensor_volume_from_node) and `iqt fit DWI` say it: a DWI node's had gone unsaid
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IQTWarning)
        mf3 = mrml.measurement_frame(node)
        mrml._warn_if_gapped(node, vol.affine)
    g_ijk = np.linalg.solve(direction_rotation(vol.affine), mf3 @ g.T).T
    b[~dw] = 0.0
    notes += [str(w.message) for w in caught if issubclass(w.category, IQTWarning)]
    return Volume(data, vol.affine, "dwi", bvals=b, bvecs=g_ijk,
                  meta=vol.meta | {"fitted_from_dwi": True, "input_notes": notes})


def _refuse_trace(node, b, dw) -> None:
    """A volume with b > 0 and no gradient (a scanner's trace, isotropic, image) refused as `iqt fit` refuses it
    (dmri/dti.py check_gradients): `b[~dw] = 0` below had fitted it as a second b0, MD halved (an audit). A node whose
    b-values are one number throughout lists them as a NRRD header does, where a zero gradient is a b0: left as it was
    (Slicer's NRRD reader gives each volume its own, b x |g|^2, and unit gradients: slicer-core 5.11 read a header's
    b 1000 with |g| 0, 1, 0.5, 0.25 as b 0, 1000, 250, 62.5; so a b0 it read has b 0)."""
    from ..fileio.gradients import B0_THRESHOLD

    trace = np.flatnonzero(~dw & (b > B0_THRESHOLD))
    if trace.size and np.ptp(b) > 0:
        line = _("node '{node}': volumes {volumes} (counted from 0) have b = {b} s/mm^2 but a zero gradient: usually the "
                 "scanner's trace (isotropic) image, which would be fitted as a b0; remove them from the DWI (e.g. in "
                 "its NIfTI with its bval and bvec, with {fslroi}) and load it again") if trace.size > 1 else \
            _("node '{node}': volume {volumes} (counted from 0) has b = {b} s/mm^2 but a zero gradient: usually the "
              "scanner's trace (isotropic) image, which would be fitted as a b0; remove it from the DWI (e.g. in its "
              "NIfTI with its bval and bvec, with {fslroi}) and load it again")
        raise IQTError(line.format(node=node.GetName(), b=f"{b[trace[0]]:g}", fslroi="fslroi",
                                   volumes=", ".join(map(str, trace[:6])) + (" ..." if trace.size > 6 else "")))


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
        raise IQTError(f"the input is {got}; select a diffusion tensor (DTI) or diffusion-weighted (DWI) volume"
                       + ("; a DWI saved as NIfTI loads as a scalar volume: convert it with its .bval and .bvec to NRRD "
                          "(SlicerDMRI's Diffusion-weighted DICOM Import (DWIConvert)), or fit it outside Slicer with "
                          "'iqt fit DWI.nii.gz -o dti.nrrd', and load that" if kind == "scalar volume" else ""))
    lr = mrml.tensor_volume_from_node(input_node)
    if mask is not None:
        mask = _check_same_grid(mask, lr, mask_node)
    return lr, mask


# fit_dwi's progress message while it compares a chosen mask with the b0's brain (dmri/mask_cut.py), a cancel checked
# on each side (the worker's Cancel stops it within)
CUT_CHECK = "checking the chosen mask against the brain the b0 shows"


def fit_dwi(dwi: Volume, mask: Volume | None = None, progress=None, cancel=None,
            exclude: bool = False) -> tuple[Volume, Volume]:
    """(tensors fitted to `dwi` in `mask` or, without one, in a brain mask estimated from its b0, that mask): the
    series' shell warning and the estimated mask said in the tensors' meta["input_notes"], the tensors as fitted (as
    `iqt fit` writes them). With `exclude` (the panel's "Exclude outliers"), fitted without the slices and
    volumes the tensor model does not fit, as `iqt fit --exclude-outliers` fits them; the note says what was left out.
    Here or in the worker process (slicer/worker.py `--dwi`, `--exclude-outliers`)."""
    from ..dmri import dti
    from ..dmri.fit_checks import fit_with_checks

    def fit(d, m):  # slab by slab, with progress and cancel; the series' shells are said once, before
        out = _fit_in_slabs(d, m, progress, cancel)
        check_cancel(cancel)
        return out

    report_progress(progress, 0.02, "fitting tensors to the diffusion-weighted volume" if mask is None else CUT_CHECK)
    if mask is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IQTWarning)  # a stripped DWI's line: said below, in the module's words
            fit_mask = dti.brain_mask(dwi)
    else:
        fit_mask = mask
    # iqt fit's checks, as the run's notes, their options as the module's controls (in the worker too)
    with warnings.catch_warnings(record=True) as said, options_named(module_options()):
        warnings.simplefilter("always", IQTWarning)
        dti.check_shells(dwi)
        if mask is not None:  # a median Otsu of the b0 (CUT_CHECK on the bar), seconds on a fine scan
            from ..dmri.mask_cut import warn_if_cut

            check_cancel(cancel)
            warn_if_cut(dwi, mask, _("the chosen mask"), _("choose a mask that covers the whole brain, or none to "
                                                           "fit in that estimate"))
        check_cancel(cancel)
        lr = fit_with_checks(dwi, fit_mask, exclude, fit=fit).tensor
    for w in said:
        if not issubclass(w.category, IQTWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    meta = dict(dwi.meta)
    meta["input_notes"] = list(dwi.meta.get("input_notes", [])) + [
        str(w.message) for w in said if issubclass(w.category, IQTWarning)]
    if mask is None:
        share = f"{100 * np.mean(fit_mask.data):.0f}"
        line = _("no mask was chosen: the tensors were fitted in the region where the DWI is non-zero (it was "
                 "skull-stripped; {share} % of the field of view), which the output follows; choose a mask to use your "
                 "own") if fit_mask.meta.get("source") == "nonzero" else \
            _("no mask was chosen: the tensors were fitted in a brain mask estimated from the b0 (median Otsu, {share} % "
              "of the field of view), which the output follows; choose a mask to use your own")
        meta["input_notes"].append(line.format(share=share))
    # as fitted, as `iqt fit` writes them: the method's input preparation finds the failed fits and clips the rest
    # (methods/inputs.py); clipped here, failed fits had been clipped unseen and unsaid (a Slicer audit)
    lr = lr.replace(data=np.asarray(lr.data, np.float32), meta=meta)
    return lr, fit_mask


def _fit_in_slabs(dwi: Volume, mask: Volume, progress=None, cancel=None, slabs: int = 8) -> Volume:
    """`dti.fit_dti` slab by slab along the last axis (the fit is voxel-wise, so the result is the same), with
    progress from 0.02 to 0.1 and a cancel check between slabs."""
    from ..dmri import dti

    m = np.asarray(mask.data, dtype=bool)
    nz = dwi.shape3[2]
    edges = np.linspace(0, nz, min(slabs, nz) + 1).round().astype(int)
    out = np.zeros(dwi.shape3 + (6,), dtype=np.float32)
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        check_cancel(cancel)
        report_progress(progress, 0.02 + 0.08 * i / (len(edges) - 1), "fitting tensors to the diffusion-weighted volume")
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
    what = (_("another grid ({mask}) than the input ({input})") if mask.shape3 != vol.shape3 else
            _("the input's voxel counts {input} but another position or spacing")).format(
        mask=mask.shape3, input=vol.shape3)
    raise IQTError(_("mask '{mask}' is on {grid}; resample the mask onto the input volume (Resample Scalar/Vector/DWI "
                     "Volume) or leave it empty").format(mask=name, grid=what))


# ---------------------------------------------------------------- the engine call (shared with the worker)


def noisy_scale(meta: dict) -> float | None:
    """The factor a run's maps were scaled by for its input's noise (methods/base.py noisy_std_scale; 1.0 where the
    method is not scaled), where the input read noisy by the noise index the method chose its model by; else None."""
    from ..core.noise_level import NOISY_MODEL

    index = meta.get("noise_index")
    if index is None or not float(index) > NOISY_MODEL:
        return None
    return float(meta.get("noise_std_scale", 1.0))


OUTPUT_PROGRESS = 0.95  # the overall progress where the output nodes are made: every step before ends at or below it


def predict_volumes(lr: Volume, request: Request, mask: Volume | None = None, progress=None,
                    cancel=None) -> dict[str, Volume]:
    """{"tensor": Volume, "uncertainty/<name>": Volume..., "interpolated": Volume} on the high-res grid; the engine's
    warnings for the run (e.g. the brain estimated for unmasked input) are the tensor's meta["notes"]. A `mask` on
    the high-res grid (`iqt view --mask`) keeps every output to it, as `iqt upsample` does."""
    from ..methods.base import NOISY_STD_MAPS, predict_within

    method, factor = request.method, request.factor
    given = mask
    m = request.make()
    # the method, then the comparison (when there is one), end at OUTPUT_PROGRESS, where the nodes are made
    span = 0.75 if request.interpolate and method != COMPARISON_METHOD else OUTPUT_PROGRESS - 0.1
    running = f"running {method} (x{grid.text(factor)})"  # kept through the method's own progress, its longest phase
    report_progress(progress, 0.1, running)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IQTWarning)
        pred, mask = predict_within(m, lr, factor, given, direction=True,
                                    progress=scaled_progress(progress, 0.1, 0.1 + span, running, cancel))
    notes = []
    for w in caught:  # the engine's warnings become the run's notes (shown with the result); others pass on
        if issubclass(w.category, IQTWarning):
            notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    check_cancel(cancel)
    pred.tensor.meta["notes"] = list(lr.meta.get("input_notes", [])) + notes
    out = {"tensor": pred.tensor}
    noisy = noisy_scale(pred.tensor.meta)
    # the clean level follows the brain's MD mode (clean_levels.py), the field's where the method read none
    unit = pred.tensor.meta.get("md_unit")
    scale = (tensors.md_mode(np.asarray(lr.data)) if unit is None else unit) * tensors.SHOWN_UNIT
    for key, v in pred.maps().items():
        v.meta[mrml.TENSOR_SCALE_KEY] = float(scale)
        if noisy is not None:  # the legend says it (mrml.NOISE_ATTRIBUTE): a uniformly scaled map looks like a clean one
            v.meta[mrml.NOISE_KEY] = noisy if key in NOISY_STD_MAPS else 1.0  # the direction's: drawn from the scaled SD, not multiplied
            v.meta[mrml.NOISE_INDEX_KEY] = float(pred.tensor.meta["noise_index"])  # the legend's words by it
        out[f"uncertainty/{key}"] = v
    if request.interpolate:
        if method == COMPARISON_METHOD:
            out["interpolated"] = pred.tensor
        else:
            report_progress(progress, 0.1 + span, f"{COMPARISON_METHOD} interpolation for comparison")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", IQTWarning)  # the same input: said once, above
                cmp, _ = predict_within(methods_mod.get(COMPARISON_METHOD), lr, factor, given,
                                        progress=scaled_progress(progress, 0.1 + span, OUTPUT_PROGRESS, None, cancel))
                out["interpolated"] = cmp.tensor
    check_cancel(cancel)
    return out


def choose_factors(method: str | None, factor, spacing=None, voxel_size_mm: float | None = None, model=None):
    """The engine's rule for factors without a model (`methods.factor_choice.choose`, as iqt upsample and iqt batch
    apply it) for a run of the module: `method` (None: the default), `factor` as the controls give it, and with the
    Target voxel size mode the node's `spacing` and `voxel_size_mm`; its refusal, note and hint in the module's words."""
    import dataclasses

    from ..methods.factor_choice import choose

    with options_named(module_options()):
        c = choose(method, factor, voxel_size=spacing if voxel_size_mm is not None else None, target=voxel_size_mm,
                   model=model)
    return dataclasses.replace(c, refusal=in_module_words(c.refusal), note=in_module_words(c.note),
                               hint=in_module_words(c.hint))


def module_options() -> dict[str, str]:
    """The module's controls, in the user's language, for the command line's options that the factor rule's lines and
    the outlier line's advice name (core/i18n.py option; methods/factor_choice.py, fileio/model_files.py shipped,
    dmri/outliers.py): filled into their templates, so that a translation holds them where its language puts them."""
    return {"--voxel-size": _("the Target voxel size"), "no coarser --voxel-size": _("no coarser Target voxel size"),
            "give --model": _("choose an Advanced > Model file"),
            "rerun 'iqt fit' with --exclude-outliers": _("tick Inputs > Exclude outliers and apply again"),
            "give --mask": _("choose a Brain mask"), "give --mask with a brain mask": _("choose a Brain mask"),
            "give a brain mask": _("choose a Brain mask that holds the brain"),
            "give --bmax {bmax} (iqt fit, mask, degrade, batch; the other commands fit every shell: give them a series "
            "of that shell)": _("keep only the b0s and the volumes with b up to {bmax} s/mm^2 in the DWI volume"),
            "iqt upsample's --voxel-size MM picks them": _("Upsampling: Target voxel size picks them"),
            "--method cubic": _("cubic"), "give this scan's own": _("choose this scan's own Brain mask"),
            "Give this scan's own brain mask": _("Choose this scan's own Brain mask"),
            # volumes out of their b-values' order (dmri/b0s.py check_b0_order): the node holds them, not the files
            "the bval/bvec order does not match the volumes": _("the DWI volume's b-values and gradients are not in its "
                                                                "volumes' order"),
            "which the bval file calls": _("which its b-values call"),
            # a tensor volume in another unit (core/tensor_checks.py): the node is loaded already
            "multiply them by 1e{power} to get mm^2/s": _("rescale them by 1e{power} to mm^2/s before loading them"),
            "multiply them by 1e{power} to get mm^2/s ({tool})": _("rescale them by 1e{power} to mm^2/s before loading "
                                                                   "them ({tool})"),
            "without their lines in the bval and bvec files: reorder the bval and bvec files to the volumes (or the "
            "volumes to the files, e.g. with mrconvert -coord 3 or fslroi and fslmerge) and run again": _(
                "without their b-values and gradients: reorder the b-values and gradients of the file the DWI volume "
                "was loaded from to its volumes (or its volumes to them, e.g. with {mrconvert} or {fslroi} and "
                "{fslmerge}), load it again and apply again").format(
                mrconvert="mrconvert -coord 3", fslroi="fslroi", fslmerge="fslmerge")}


def model_refusal(exc, choice, voxel_size_mm: float | None) -> str:
    """The run's refusal `exc` in the module's words, and where the loader refused a given model's factors that the
    Target voxel size chose, what it chose and the voxel size that gives the model's own (`choice` from
    `choose_factors`), as iqt upsample says it (methods/factor_choice.py model_hint)."""
    from ..methods.factor_choice import model_hint

    hint = model_hint(exc, choice)
    if not hint or voxel_size_mm is None:
        return str(exc)
    return choice.said + "; " + str(exc) + hint


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
    PythonSlicer for every method with a main window, for the torch methods only in batch mode); None runs it here. The input node is never modified. The engine's messages and
    notes name the module's controls, not the command line's options (`in_module_words`). exclude_outliers: a DWI
    input node is fitted without the slices and volumes the tensor model does not fit (`fit_dwi`, here or in that
    process); nothing for a DTI input node.
    """
    try:
        with options_named(module_options()):  # a model's refusal here names the module's Model file
            return _run_on_nodes(scene, input_node, method, factor, mask_node, model, samples, device, interpolate,
                                 tta, targets, progress, cancel, python_executable, exclude_outliers)
    except IQTError as exc:
        if type(exc) is not IQTError:  # Cancelled and the like keep their type and words
            raise
        said = IQTError(in_module_words(str(exc)))
        if getattr(exc, "advice", None):  # a model refused for its factors (model_refusal reads it)
            said.advice = in_module_words(exc.advice)
        raise said from None


# command-line options in the engine's messages -> the module's controls (Resources/UI/ImageQualityTransfer.ui)
MODULE_WORDS = (
    (r"give --mask with a brain mask", "choose a Brain mask"), (r"give --mask", "choose a Brain mask"),
    (r"--mask", "the Brain mask"), (r"drop --tta", "turn off Advanced > Average over flips"),
    (r"--tta (applies to [^:]*): drop it", r"Advanced > Average over flips \1: turn it off"),
    (r"--tta", "Advanced > Average over flips"), (r"give --model( a model file)?", "choose an Advanced > Model file"),
    (r"--model", "Advanced > Model file"), (r"(use|give) --device cpu( \(or auto\))?", "turn off Advanced > Use GPU"),
    (r"--device \w+", "Advanced > Use GPU"), (r"--mc-samples|--samples", "Advanced > Monte Carlo samples"),
    # the panel sets factors as a mode and one number: "--factor 1,1,3" is Through-plane 3, "--factor 3" Isotropic 3;
    # a through-plane model's own factors, along the thick-slice axis (methods/learned.py _use_instead), Through-plane
    (r"use --factor with (\d+) along the input's thick-slice voxel axis \([^)]*\)", r"use Upsampling: Through-plane, factor \1"),
    (r"--factor (?:1,1,([2-9]|\d{2,})|1,([2-9]|\d{2,}),1|([2-9]|\d{2,}),1,1)(?!\.?\d|,\d)", r"Upsampling: Through-plane, factor \1\2\3"),
    (r"--factor ([2-9]|\d{2,})(?:,\1,\1)?(?!\.?\d|,\d)", r"Upsampling: Isotropic, factor \1"),
    (r"a larger --voxel-size", "a larger Target voxel size"), (r"--voxel-size", "the Target voxel size"), (r"--factor", "the Upsampling factor"),
    (r"--method cubic", "cubic"),  # the option's value: not "the Method cubic may do as well"
    (r"--method", "the Method"),
    # a sigma factor the legend leaves unsaid (legends.NOISE_SCALE_SHOWN: no colour shows it) is left out of the note too
    # (the clean Trio's note had said "raised x1.01" under a legend that says nothing of it)
    (r"; (?:its|[\w-]+'s) uncertainty map is raised x(\d+\.\d+) for this noise index",
     lambda m: "" if float(m.group(1)) < NOISE_SCALE_SHOWN else m.group(0)),
    # advice for files the module has none of: the volume as loaded, its b-values, the mask node (a module audit)
    (r"check --tensor-order", "check the element order of the file the volume was loaded from: Slicer reads a DTI "
                              "NRRD's own, another tool's 4D NIfTI needs converting"),
    (r"check the bval file", "check the DWI volume's b-values as loaded"),
    (r"give a brain mask(, for example from)?", r"choose a Brain mask that holds the brain\1"),
)


def in_module_words(text: str) -> str:
    """An engine message with the command line's options put as the module's controls (a quoted command, such as the
    'iqt train …' that makes a model, is left as it is)."""
    import re

    # a quote opens after a non-word character and closes before one: a possessive's apostrophe ("var1's models …
    # upsample's --voxel-size") had paired with the next one, leaving the options between them unput
    parts = re.split(r"((?<!\w)'(?:[^']|'(?=\w))*'(?!\w))", text)
    for i in range(0, len(parts), 2):
        for pattern, words in MODULE_WORDS:
            parts[i] = re.sub(pattern, words, parts[i])
    return "".join(parts)


_NUMBER = r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"


def notes_in_shown_unit(text: str) -> str:
    """A run's notes with their diffusivities ("outside -0.001 to 0.005 mm^2/s") in the unit the panel shows them in
    (µm²/ms, core/tensors.py SHOWN_UNIT: "-1 to 5 µm²/ms"), as its legends and map nodes are (slicer/mrml.py NODE_UNITS),
    one note (line) at a time: the reference figures the engine writes without a unit ("(about 0.6-1.0e-3)" in
    core/tensor_checks.py check_scale, "the 0.4e-3 to 1.6e-3 of an in-vivo brain" in dmri/b0s.py) are converted too, and
    a note with a figure left in mm^2/s is kept as the engine wrote it, never mixing the two units in one sentence."""
    return "\n".join(_note_in_shown_unit(line) for line in text.split("\n"))


def _note_in_shown_unit(note: str) -> str:
    import re

    from ..core.tensors import SHOWN_UNIT, SHOWN_UNIT_LABEL

    def shown(number: str) -> str:
        return f"{float(number) * SHOWN_UNIT:.6g}"

    done = "\x00"  # around each converted figure, so that the check below skips it
    text = re.sub(_NUMBER + r" to " + _NUMBER + r" mm\^2/s",
                  lambda m: f"{done}{shown(m[1])} to {shown(m[2])} {SHOWN_UNIT_LABEL}{done}", note)
    text = re.sub(_NUMBER + r" mm\^2/s", lambda m: f"{done}{shown(m[1])} {SHOWN_UNIT_LABEL}{done}", text)
    if text == note:
        return note
    # the unit-less reference figures of the engine's wordings: "0.6-1.0e-3", "0.4e-3 to 1.6e-3"
    text = re.sub(r"(?<![\w.])(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)e-3\b", rf"{done}\1-\2 {SHOWN_UNIT_LABEL}{done}", text)
    text = re.sub(r"(?<![\w.])(\d+(?:\.\d+)?)e-3 to (\d+(?:\.\d+)?)e-3\b",
                  rf"{done}\1 to \2 {SHOWN_UNIT_LABEL}{done}", text)
    # a figure still in mm^2/s (e-notation, or a decimal below 0.1 such as "MD 0.0002"): the engine's words kept
    rest = re.sub(f"{done}[^{done}]*{done}", " ", text)
    if re.search(r"(?<![\w.])\d+(?:\.\d+)?e-\d|(?<![\w.])0\.0\d*[1-9]", rest):
        return note
    return text.replace(done, "")


def _check_still_in(scene, input_node, mask_node, targets: dict) -> None:
    """`Cancelled` where the input, the mask or an output node to fill left `scene` while the method ran (the scene
    was closed, the node deleted): a result added now would land in another patient's scene, or be lost."""
    gone = [what for what, node in (("input volume", input_node), ("brain mask", mask_node),
                                    *((f"{key} output", node) for key, node in targets.items()))
            if node is not None and not isinstance(node, bool) and not scene.IsNodePresent(node)]
    if gone:
        raise Cancelled(f"the {' and the '.join(gone)} left the scene while it was processed (the scene was closed or "
                        "the node deleted); no output was created")


def _cancel_when_gone(scene, input_node, mask_node, targets: dict, cancel):
    """`cancel`, checked also for the run's nodes leaving `scene` (`_check_still_in` raises `Cancelled` naming them): a
    node deleted or a scene closed mid-run had let the method, and its worker process, run on to the end."""

    def check() -> bool:
        _check_still_in(scene, input_node, mask_node, targets)
        return cancel is not None and bool(cancel())

    return check


def _run_on_nodes(scene, input_node, method, factor, mask_node, model, samples, device, interpolate, tta, targets,
                  progress, cancel, python_executable, exclude_outliers=False) -> dict:
    if input_node is None:
        raise IQTError(_("no input volume: select a diffusion tensor (DTI) or diffusion-weighted (DWI) volume"))
    if scene is None:
        raise IQTError("no MRML scene given")
    if samples is not None and not (isinstance(samples, (int, np.integer)) and 2 <= samples <= 200):
        raise IQTError(_("Advanced > Monte Carlo samples is {samples}; give 2 to 200, the panel's range (one sample "
                         "would give no spread)").format(samples=repr(samples)))
    request = Request(method, factor, model, samples, device or "cpu", interpolate, bool(tta), bool(exclude_outliers))
    made = request.make()
    label = made.label  # the method's settings are checked before any work; "+tta" names averaged results
    _check_targets(targets or {}, input_node, mask_node)
    cancel = _cancel_when_gone(scene, input_node, mask_node, targets or {}, cancel)
    image = input_node.GetImageData() if hasattr(input_node, "GetImageData") else None
    if image is not None:  # the memory check before a DWI's fit too (a factor of 30 was refused after a 6.6 s fit)
        made.check_memory(image.GetDimensions(), request.factor, made.gives_uncertainty)
    report_progress(progress, 0.0, "reading the input volume")
    # a DWI is fitted in the worker too when there is one: the GUI thread only reads the node
    lr, mask = input_volumes(input_node, mask_node, progress, cancel, fit=not python_executable,
                             exclude=request.exclude_outliers)
    check_cancel(cancel)
    if python_executable:
        results = predict_in_subprocess(lr, request, mask, progress, cancel, python_executable=python_executable)
    else:
        results = predict_volumes(lr, request, mask, progress, cancel)
    report_progress(progress, OUTPUT_PROGRESS, "creating output nodes")
    check_cancel(cancel)  # pressed as the method ended: still no output
    _check_still_in(scene, input_node, mask_node, targets or {})
    base = input_node.GetName() or "dti"
    nodes = add_result_nodes(scene, results, base, label, targets, input_node=input_node, factor=request.factor)
    notes = nodes["tensor"].GetAttribute(mrml.NOTES_ATTRIBUTE)
    if notes:  # a long warning line as several, as iqt upsample prints it (methods/base.py warning_lines), once the
        # worker's folder is out of it (separate_process.py)
        notes = "\n".join(line for note in notes.split("\n") for line in warning_lines(note))
        nodes["tensor"].SetAttribute(mrml.NOTES_ATTRIBUTE,
                                       mrml.header_text(notes_in_shown_unit(in_module_words(notes))))
    report_progress(progress, 1.0, "done")
    return nodes


def _check_targets(targets: dict, input_node, mask_node) -> None:
    """Output nodes are never an input node, and no node receives two results."""
    seen = {}
    for key, node in targets.items():
        if node is None:
            continue
        choice = automatic_comparison() if key == "interpolated" else automatic_output()  # as that selector shows it
        selector = selector_label(key)
        if node is input_node or (mask_node is not None and node is mask_node):
            raise IQTError(_("the output node '{node}' is an input of this run; choose {choice} in the {selector} "
                             "selector (inputs are never overwritten)").format(node=node.GetName(), choice=choice,
                                                                               selector=selector))
        if id(node) in seen:
            raise IQTError(_("the node '{node}' is chosen in both the {first} and the {selector} selectors; choose "
                             "{choice} in the {selector} one").format(
                node=node.GetName(), first=selector_label(seen[id(node)]), selector=selector,
                choice=choice))
        seen[id(node)] = key
        # said before the run, not after it (_put_volume checks again)
        check_target_kind(node, tensor=key in ("tensor", "interpolated"), choice=choice, selector=selector)
