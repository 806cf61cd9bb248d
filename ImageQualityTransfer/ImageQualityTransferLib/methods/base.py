"""The one method model: settings validated when a method is made, `fit` to train it, `predict` to run it.

Every caller (CLI, Slicer processing, benchmark, analysis) goes through `Method.predict`, which checks the
input, reorients it to canonical (RAS) axes, calls the family's `_predict` and puts the result back on the
input's own grid, so that every method answers the same whatever the storage order of the input.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from ..core import grid, memory, noise_level, tensors
from ..core.direction import spread
from ..core.errors import IQTError, IQTWarning
from ..core.i18n import _, option
from ..core.orientation import Reorientation
from ..core.words import listed
from ..core.volume import Volume
from ..dmri.dti import ESTIMATED_SUPPORT, noise_fits
from . import symmetry
from .flags import flag_maps
from .inputs import (
    _negligible_zeroed,
    brain_md_unit,
    brain_within_box,
    check_tensor_input,
    diverged_fits,
    drop_failed_fits,
    filled_box,
    holes_said_apart,
    input_noise_index,
    mask_within_fit,
    noise_unreadable,
    warn_holes,
    warn_mask_holes,
    warn_mask_off_head,
    warn_noisy_context,
    whole_field,
)

DEVICES = ("cpu", "cuda", "auto")


OUTPUT_MD_RANGE = (1 / 3, 3.0)  # the output's median MD over the input's: interpolation keeps it near 1


def _check_output_scale(out: np.ndarray, lr: np.ndarray, mask: Volume | None) -> None:
    """A learned method's output whose median MD is off the input's by more than 3x is refused: a model that diverged
    in training or holds the wrong normalisation can write tensors of 4.6 mm^2/s."""
    md_in = tensors.md(np.asarray(lr))
    md_in = md_in[(md_in > 0) if mask is None else (md_in > 0) & np.asarray(mask.data, bool)]
    md_out = tensors.md(out)  # one scalar map, not a copy of the brain's tensors
    md_out = md_out[md_out != 0]
    if not len(md_in) or not len(md_out):
        return
    ratio = float(np.median(md_out)) / float(np.median(md_in))
    if not OUTPUT_MD_RANGE[0] <= ratio <= OUTPUT_MD_RANGE[1]:
        raise IQTError(f"the model's output is not plausible: its median MD is {ratio:.3g} times the input's; the model "
                       "is damaged or was trained for other inputs: use a shipped model or retrain it")


# the median SD map over the input's brain median MD: the shipped rf, biqt, espcn-hetero, espcn-hetero-var1 and
# deep-hetero-var1 models gave 0.13-0.25 on the 4 dev scans at x2 (style own), 0.083-0.56 on the 3 mm ortho one at
# x3 and x1,1,2 and at x2 with b0 SNR 8 and 3 (the noisy-input models); the bounds are 100x beyond
UNCERTAINTY_MD_RANGE = (5e-4, 60.0)


def _check_uncertainty_scale(std: np.ndarray, tensor: np.ndarray, lr: np.ndarray, mask: np.ndarray | None,
                             model: str) -> None:
    """An uncertainty map whose median (over the output's non-zero voxels) is outside UNCERTAINTY_MD_RANGE times the
    input's brain median MD is refused, as `_check_output_scale` refuses the mean: a damaged model's SD
    of 642 mm^2/s (or 6e-11) had been written with exit 0, and `iqt propagate` drew its samples from it."""
    md_in = tensors.md(lr)
    md_in = md_in[(md_in > 0) if mask is None else (md_in > 0) & mask]
    sd = std[np.any(tensor != 0, axis=-1)]
    if not len(md_in) or not len(sd):
        return
    with np.errstate(over="ignore", invalid="ignore"):
        ratio = float(np.median(sd)) / float(np.median(md_in))
    if not UNCERTAINTY_MD_RANGE[0] <= ratio <= UNCERTAINTY_MD_RANGE[1]:  # NaN fails both
        raise IQTError(f"{model}'s uncertainty is not plausible: its median SD is {ratio:.3g} times the input's median "
                       "MD (the shipped models give 0.08-0.56); the model is damaged or was trained for other inputs: "
                       "use a shipped model or retrain it")


@dataclass
class Prediction:
    """A method's output on the high-res grid: the tensor volume and the uncertainty maps it was asked for.

    std: per-voxel standard deviation averaged over the 6 elements (mm^2/s); std_intrinsic / std_parameter: its
    two parts for the Monte Carlo methods; md_std (mm^2/s) and fa_std (unitless): the MD's and FA's; direction:
    the principal eigenvector's uncertainty in degrees (`core.direction.spread`). Absent maps are None."""

    tensor: Volume
    std: Volume | None = None
    std_intrinsic: Volume | None = None
    std_parameter: Volume | None = None
    md_std: Volume | None = None
    fa_std: Volume | None = None
    direction: Volume | None = None

    def maps(self) -> dict[str, Volume]:
        """The uncertainty maps present, by name ("std" first): the suffixes of the files beside the output."""
        return {f.name: getattr(self, f.name) for f in fields(self)[1:] if getattr(self, f.name) is not None}

    def within(self, mask: Volume, factor) -> "Prediction":
        """Every output exactly zero outside a mask the user gave: on the high-res grid, the mask itself; on the
        input's grid (factors `factor`), the high-res blocks of its voxels. `predict` answers a low-res voxel further
        (the input's brain edge holds brain in part of its block); a user who gives a mask expects nothing outside it."""
        region = np.asarray(mask.data, bool)
        shape = self.tensor.shape3
        if region.shape != shape:
            region = grid.repeat_blocks(region, factor)
        if region.shape != shape:
            raise IQTError(f"mask shape {np.asarray(mask.data).shape} matches neither the output {shape} nor its input's "
                           "grid; give a mask on the input's grid or on the output's")

        def cut(v: Volume) -> Volume:
            keep = region[..., None] if v.data.ndim == 4 else region
            return v.replace(data=np.where(keep, v.data, 0).astype(v.data.dtype))

        return replace(self, **{f.name: cut(getattr(self, f.name)) for f in fields(self)
                                if getattr(self, f.name) is not None})



# --propagate, added to a method's peak (`Method.peak_multiple`): the sampling's arrays (the masked means and stds, float64
# sums, the float64 FA and direction fields the tracking reads) beside the prediction, the same for 10 and 50 samples
PROPAGATE_PEAK = 4.0


HUMAN_BRAIN_MIN_MM = 100.0  # a brain shorter than this along its longest voxel axis is no adult human's
HUMAN_BRAIN_MAX_MM = 400.0  # ... and none, nor a whole head's field of view, is longer than this
ANIMAL_VOXEL_MM = 1.0  # ... nor, with input voxels all under this, a clinical scan's crop (a small animal's)


MAX_SAMPLES = 10_000  # Monte Carlo samples a run may ask for


class Method:
    """Base class. A subclass sets the class attributes and implements `_predict` on canonical-axis arrays
    (and, if learned, `_fit`); settings are given once, to the constructor, and checked there."""

    name = "?"
    description = ""
    gives_uncertainty = False
    learned = False
    takes_samples = False  # Monte Carlo samples (the variational CNNs)
    requires_torch = False  # the Slicer module runs these in a separate Python process, even in batch mode
    # the run's peak memory per byte of its high-res tensors, without and with uncertainty maps, over a fixed part
    # (core/memory.py check_output_size; measured per method in docs/measurements.md, Memory)
    peak = (4.0, 7.0)
    # with --tta, added to `peak`: the float64 sums of the tensors and of every map the method makes (with or without
    # --uncertainty) kept across its 16 runs, beside each run's own peak (espcn 3.1-3.8x measured, espcn-hetero-var1
    # 7.8x; docs/measurements.md, Memory)
    tta_peak = 4.0

    @staticmethod
    def _names_where(has) -> list[str]:
        """The names of the registered methods whose class `has` (subclasses in the order they are defined; the
        registry imports this module, so it is not asked)."""
        found, todo = [], list(Method.__subclasses__())
        while todo:
            cls = todo.pop(0)
            todo[:0] = cls.__subclasses__()
            if has(cls) and cls.name != "?" and cls.name not in found:
                found.append(cls.name)
        return found

    @staticmethod
    def sampling() -> list[str]:
        """The methods that take Monte Carlo samples, for the messages that say where --mc-samples applies."""
        return Method._names_where(lambda cls: cls.takes_samples)

    @staticmethod
    def on_torch() -> list[str]:
        """The methods that run a network (`requires_torch`), for the messages that say where --device applies."""
        return Method._names_where(lambda cls: cls.requires_torch)

    def peak_multiple(self, maps: bool, propagate: bool = False) -> float:
        """The run's peak per byte of its high-res tensors (`memory.check_output_size`): the method's own, and what
        --tta and --propagate (drawing samples of the output; any number of them) add to it; --mc-samples adds none
        (the Monte Carlo sums are per tile)."""
        return self.peak[maps] + (self.tta_peak if self.tta else 0.0) + (PROPAGATE_PEAK if propagate else 0.0)

    def memory_need(self, shape3, factor, maps: bool, propagate: bool = False, nrrd: bool = False) -> float:
        """The peak bytes `check_memory` judges a run by (`iqt batch` checks each subject's against a worker's)."""
        peak = self.peak_multiple(maps, propagate) + (NRRD_WRITE_MULTIPLE if nrrd else 0.0)
        return memory.output_need(shape3, factor, peak)

    def check_memory(self, shape3, factor, maps: bool, propagate: bool = False, nrrd: bool = False) -> None:
        """The memory check of a run of this method on a low-res grid of `shape3` at `factor` (`memory.check_output_size`
        with `peak_multiple`): `predict` runs it, and `iqt upsample` before it reads the input or loads a model, with
        `nrrd` where the output is a tensor NRRD, whose writer holds NRRD_WRITE_MULTIPLE more."""
        peak = self.peak_multiple(maps, propagate) + (NRRD_WRITE_MULTIPLE if nrrd else 0.0)
        memory.check_output_size(shape3, factor, peak, maps=maps, tta=self.tta, propagate=propagate,
                                 torch=self.requires_torch)

    def __init__(self, model=None, samples: int | None = None, seed: int = 0, device: str = "cpu", tta: bool = False):
        if model is not None and not self.learned:
            raise IQTError(f"method {self.name!r} has no model; drop --model (it applies to the learned methods)")
        if samples is not None:
            if not self.takes_samples:
                raise IQTError(f"method {self.name!r} takes no Monte Carlo samples; drop --mc-samples "
                               f"(it applies to {', '.join(Method.sampling())})")
            try:
                whole = int(samples) == samples and not isinstance(samples, bool)
            except (TypeError, ValueError):
                whole = False
            if not whole:  # else 2.7 would run as 2
                raise IQTError(f"--mc-samples {samples!r}: give a whole number of Monte Carlo samples (default 10)")
            if int(samples) < 0:
                raise IQTError(f"--mc-samples {samples}: give a number of Monte Carlo samples >= 0")
            if int(samples) > MAX_SAMPLES:  # 1e8 was taken, and ran on past 300 s without a word (a fresh-eyes audit)
                raise IQTError(f"--mc-samples {samples}: give at most {MAX_SAMPLES} (each sample is one more pass of the "
                               "network over the volume; the default is 10)")
            if int(samples) == 1:  # the parameter part is the samples' variance: one sample has none
                raise IQTError("--mc-samples 1: one sample gives no parameter uncertainty; give at least 2 (default 10), "
                               "or 0 for one deterministic pass with the intrinsic part only")
        if tta and not self.learned:
            raise IQTError(f"method {self.name!r} is unchanged by flips and swaps (nothing to average); --tta applies to "
                           "the learned methods: drop it")
        if str(device) not in DEVICES:
            raise IQTError(f"--device {device}: choose one of {', '.join(DEVICES)}")
        if str(device) == "cuda" and not self.requires_torch:  # else it ran on the CPU without a word (a bad-input audit)
            raise IQTError(f"method {self.name!r} runs on the CPU only; drop --device cuda (it applies to the CNNs: "
                           f"{', '.join(Method.on_torch())}), or give --device auto")
        self.model_path = model
        self.samples = None if samples is None else int(samples)
        self.seed = int(seed)
        self.device = str(device)
        self.tta = bool(tta)

    @property
    def label(self) -> str:
        """The name the method's outputs and benchmark rows carry ("+tta" when averaged over symmetries)."""
        return self.name + ("+tta" if self.tta else "")

    # ---------------------------------------------------------------- running

    def predict(self, lr: Volume, factor=2, mask: Volume | np.ndarray | None = None, *, uncertainty: bool = True,
                direction: bool = False, progress=None) -> Prediction:
        """High-res tensors for `lr`; with `uncertainty`, the method's std maps; with `direction`, also the
        direction map (16 seeded draws per voxel: asked for only where it is shown or scored). Every output is exactly
        zero outside the support: the mask (else the input's non-zero voxels) grown by one low-res voxel. `factor`
        is an integer r (r along each axis) or per-axis factors (fx, fy, fz) in the input's voxel axes. `mask`: a
        Volume on the input's grid (its shape and affine, `grid.same_affine`), or a boolean array of the input's shape."""
        f = grid.factors(factor)
        self._check_model(f)
        maps = bool(uncertainty) and self.gives_uncertainty
        self.check_memory(lr.shape3, f, maps)
        if isinstance(mask, np.ndarray):  # a plain array is on the input's grid: its shape must be the input's
            if mask.shape != lr.shape3:
                raise IQTError(f"mask array shape {mask.shape} differs from the low-res input {lr.shape3}; give a mask "
                               "on the input's grid")
            mask = Volume(mask.astype(bool), lr.affine, "mask")
        if mask is not None:
            if not isinstance(mask, Volume):
                raise IQTError(f"the mask is a {type(mask).__name__}; give a Volume (kind 'mask') or a boolean array of "
                               f"the input's shape {lr.shape3}")
            if mask.shape3 != lr.shape3:
                raise IQTError(
                    f"mask shape {mask.shape3} differs from the low-res input {lr.shape3}; give a mask on the input's grid"
                )
            if not grid.same_affine(mask.affine, lr.affine):
                raise IQTError("the mask has the input's shape but another position or orientation (affine); give a mask "
                               "made on this input's grid (e.g. 'iqt mask' or 'iqt degrade --mask-out'), or one read with "
                               "fileio.load_mask(path, reference=input), which puts a mask of the same voxels onto it")
            if not np.asarray(mask.data).any():
                raise IQTError("the mask is empty (no voxel inside); give a brain mask, for example from 'iqt mask'")
        check_tensor_input(lr, mask)
        given = mask is not None
        whole = whole_field(lr)  # before failed fits are taken out: most of those a whole-field fit holds are background
        box = filled_box(lr, mask) if whole else None
        if box is not None:  # empty planes at a whole field's edge (padding): run as without them, zero there
            return self._in_box(lr, mask, box, f, uncertainty=uncertainty, direction=direction, progress=progress)
        missing = ~np.any(np.asarray(lr.data) != 0, axis=-1)  # no tensor as given (a fit's floor is a tensor)
        if given:
            warn_mask_holes(lr, mask, missing)
        as_given = mask  # holes are looked for in it, not in it cut to the fit: a gap in it had opened a hole
        if not whole:
            lr, before = _negligible_zeroed(lr), lr
            if given:  # holes get a line of their own (warn_holes), interpolation's too: the mask's leaves them out
                mask = mask_within_fit(lr, mask, before, holes_said_apart(lr, mask, missing))
        if mask is None:
            mask = self.support(lr, whole)
        runner, index = self, None
        # a brain estimated from whole-field tensors (here or by the caller, e.g. batch) keeps a rim of scalp and
        # background fits around the brain
        estimated = whole and (not given or mask.meta.get("source") == "brain_from_tensors")
        where = _("the mask") if given and not estimated else _("the field of view") if mask is None else \
            _("the input's brain") if not estimated else _("the brain estimated from the tensors (with the fits around "
                                                           "it)")
        if given and not estimated:
            warn_noisy_context(lr, mask)
            if whole:
                warn_mask_off_head(lr, mask)
        # the background's failed fits an estimated brain keeps, read before they are zeroed: filled, they had read as
        # certain, holes in the flagged rim (a review; Testing/methods/test_support.py)
        failed = tensors.failed_fits(lr.data)  # before they are zeroed: those in a hole are said in the holes' line
        kept_failed = failed if estimated and mask is not None else None
        # every fit that diverged in the mask, warned of or not: one in a given mask's rim on a whole-field fit is said at
        # INFO (inputs.GIVEN_RIM), yet the brain's own lie there too, 1-3 voxels deep, and filled they read as certain
        blown = diverged_fits(lr.data, failed if mask is None else failed & np.asarray(mask.data, bool))
        # taken as missing by every method, but interpolation clips the CSF-like ones, nearer the high-res reference so
        lr, unsure = drop_failed_fits(lr, mask, where, refuse=mask is not None and not estimated, estimated=estimated,
                                      flagged=True, clip_csf=not self.learned)
        if self.learned:
            runner, index = self._for_noise(lr, mask, f, estimated=estimated, maps=maps, fit_support=not given and not whole)
            self._warn_off_training(lr, mask, f)
        # the background's noise fits that an estimated brain keeps: their outputs mean nothing, and a forest's std
        # there is low, calling them certain
        # there, and in the margin of one low-res voxel the outputs reach beyond it (interpolation.output_support): left
        # out, that ring of background read as certain as the brain round every clean whole-field output (a review)
        noise = lr.replace(data=(noise_fits(lr) | kept_failed) & _reach(mask.data), kind="mask") if estimated and \
            mask is not None else None
        # holes the fitted tensors enclose (a lesion a fit's mask left out), filled from around them as a cavity's
        # failed fits are: every map raised there too, the voxels counted for a cohort's QC table (a masked fit's support,
        # its non-zero voxels, read as no mask: its holes are judged by their depth)
        # looked for with every failed fit zeroed, interpolation's CSF-like ones too: the same holes for every method
        holes = holes_said_apart(lr, as_given if given else mask if estimated else None, missing)
        if holes is not None:
            # failed fits in a hole count in both lines (and qc.tsv's columns): the holes' line says how many
            warn_holes(lr, holes, int((failed & holes).sum()), told=unsure is not None and bool((unsure & holes).any()))
        if holes is not None and self.learned:  # interpolation makes no maps and counts none (docs/cohorts.md)
            noise = lr.replace(data=holes if noise is None else noise.data | holes, kind="mask")
            if uncertainty:
                from ..fileio.records import note_run

                note_run(holes_flagged=int(holes.sum()))
        if unsure is not None and self.learned:  # failed fits warned of (a cavity's), filled from around them: as
            # uncertain as noise fits (interpolation makes no maps)
            noise = lr.replace(data=unsure if noise is None else noise.data | unsure, kind="mask")
            if uncertainty:  # for a cohort's reader, as the noise factor is
                from ..fileio.records import note_run

                note_run(failed_fits_flagged=int(unsure.sum()))
        if blown.any() and self.learned:  # raised as a warned failed fit is, counted in neither line nor QC column
            noise = lr.replace(data=blown if noise is None else noise.data | blown, kind="mask")
        # the noise factor, known before the run: the direction map is drawn from the scaled sigma (calibrated on the
        # install's models: another --model file's sigma is left as it is)
        g = 1.0 if index is None or runner.given_model() else noisy_std_scale(self.name, index, f)
        pred = runner._run(lr, f, mask, uncertainty, direction, progress, noise, std_scale=g)
        if self.learned:
            _check_output_scale(pred.tensor.data, lr.data, mask)
        if index is not None:  # read once: batch QC reports the figure the model was chosen by
            pred.tensor.meta["noise_index"] = index
            scale_for_noise(pred, g)
            if uncertainty and g != 1.0:  # the factor applied, for a cohort's reader
                from ..fileio.records import note_run

                pred.tensor.meta["noise_std_scale"] = g
                note_run(noise_index=round(float(index), 4), noise_std_scale=round(g, 4))
        if self.learned and uncertainty:  # the brain's MD mode, that a shipped model's clean level is scaled by
            pred.tensor.meta["md_unit"] = brain_md_unit(lr, None if mask is None else np.asarray(mask.data, bool),
                                                        estimated, mask.meta.get("md_unit") if mask is not None else None)
        if unsure is not None:  # the warned failed fits' count, for a cohort's QC table (apps/batch/subject.py)
            pred.tensor.meta["failed_fits_flagged"] = int(unsure.sum())
        if holes is not None and self.learned:  # the holes' count, for a cohort's QC table (apps/batch/subject.py)
            pred.tensor.meta["holes_flagged"] = int(holes.sum())
        if estimated and mask is not None:  # a display scales the maps to the brain, not the rim (slicer/display.py)
            for vol in (pred.tensor, *pred.maps().values()):
                vol.meta["support"] = ESTIMATED_SUPPORT
        return pred

    def _in_box(self, lr: Volume, mask: Volume | None, box: tuple, f: tuple, **kw) -> Prediction:
        """`predict` on `lr` (and `mask`) cut to `box`, every output put back on the whole high-res grid with zeros
        outside it: a whole-field fit padded with empty planes gives the output it gives without them."""
        affine = grid.box_affine(lr.affine, box)
        cut = lambda v: v.replace(data=np.ascontiguousarray(np.asarray(v.data)[box]), affine=affine)  # noqa: E731
        pred = self.predict(cut(lr), f, None if mask is None else cut(mask), **kw)
        shape = tuple(n * k for n, k in zip(lr.shape3, f))
        hr_box = tuple(slice(b.start * k, b.stop * k) for b, k in zip(box, f))
        hr_aff = grid.hr_affine(lr.affine, f)

        def put_back(v: Volume) -> Volume:
            data = np.zeros(shape + v.data.shape[3:], v.data.dtype)
            data[hr_box] = v.data
            return v.replace(data=data, affine=hr_aff)

        return replace(pred, **{k: put_back(v) for k, v in [("tensor", pred.tensor), *pred.maps().items()]})

    def _run(self, lr: Volume, f: tuple, mask: Volume | None, uncertainty: bool, direction: bool,
             progress, noise: Volume | None = None, std_scale: float = 1.0) -> Prediction:
        """`predict` once the input is checked and its support decided; `noise`: low-res voxels (background noise
        fits) whose every map is raised (`flags.flag_maps`); `std_scale`: the noise factor (`noisy_std_scale`) the
        direction map's draws take, as the std maps take it after (`scale_for_noise`)."""
        reo = Reorientation.to_canonical(lr.affine)
        order = self._axis_order(grid.permute(f, reo.ornt))
        if order is not None:  # a model for a reordering of the factors: permute the axes it refines into its own
            reo = reo.then(Reorientation.permutation(order))
        lr_c = reo.apply(lr)
        mask_c = None if mask is None else reo.apply(mask)
        f_c = grid.permute(f, reo.ornt)  # the factors along the canonical axes
        lr_a, mask_a = np.asarray(lr_c.data, dtype=np.float32), None if mask_c is None else mask_c.data.astype(bool)
        if self.tta:
            tensor, unc = symmetry.average(lambda x, m, prog: self._predict(x, self._family_factor(f_c), m, prog),
                                           lr_a, mask_a, f_c, progress)
        else:
            tensor, unc = self._predict(lr_a, self._family_factor(f_c), mask_a, progress)
        if not (np.isfinite(tensor).all() and all(np.isfinite(v).all() for v in unc.values())):
            raise IQTError(f"{self.name} gave non-finite values on this input"
                           + (f" with the model {self.model_path}" if self.model_path else "")
                           + "; the model file is damaged or was not trained for such inputs: retrain it or use the shipped model")
        if not uncertainty:
            unc = {}
        elif "std" in unc and self._judges_uncertainty(f):  # before the direction map is drawn from it (a huge SD
            # had overflowed there)
            _check_uncertainty_scale(unc["std"], tensor, lr_a, mask_a, f"the model {self.model_path}" if self.model_path
                                     else f"the {self.name} model")
        noise_c = None if noise is None else reo.apply(noise).data
        present = np.any(tensor != 0, axis=-1) if unc else None  # the direction map needs the std: one support for both
        unc = flag_maps(tensor, unc, f_c, noise_c, present)
        if direction and "std" in unc:
            std = unc["std"] if std_scale == 1.0 else unc["std"] * np.float32(std_scale)  # a clean input's draws as before
            unc.update(flag_maps(tensor, {"direction": spread(tensor, std)}, f_c, noise_c, present))
        hr_aff = grid.hr_affine(lr_c.affine, f_c)
        out = reo.undo(Volume(tensor.astype(np.float32, copy=False), hr_aff, "tensor",
                              meta={"method": self.name, "factor": grid.record(f),
                                    **({"averaged_over": len(symmetry.transforms(f_c))} if self.tta else {}),
                                    **({"model_for": self.model_for, "model_file": str(self.model_path),
                                        "model_sha256": self.model_record(f)[1]} if self.model_for else {}),
                                    **self._model_named(f_c)}))
        maps = {k: reo.undo(Volume(v.astype(np.float32, copy=False), hr_aff, "scalar")) for k, v in unc.items()}
        return Prediction(out, **maps)

    model_for = None  # the kind of input the model was chosen for (model_files.NOISY), recorded in the output's meta

    def given_model(self) -> bool:
        """Whether the model that runs is a --model file the noise factor (NOISY_STD_SCALE) was not calibrated on: any
        but one the install chose, or the install's own model trained with added noise, known by its weights' SHA256 in
        the registry wherever the file lies (by its folder, a byte-identical copy had kept its sigma unscaled)."""
        if self.model_path is None or self.model_for is not None:
            return False
        from ..fileio.model_files import NOISY, model_sha256, read_registry

        digest = model_sha256(self.model_path)  # checked against the weights when the model was loaded
        return not digest or not any(e.get("sha256") == digest and e.get("input") == NOISY and e.get("method") == self.name
                                     for e in read_registry())

    def _judges_uncertainty(self, f) -> bool:
        """Whether `_run` refuses this model's uncertainty map off the input's scale (`_check_uncertainty_scale`)."""
        return True

    def _model_named(self, f) -> dict:
        """The model that ran, as the header names it (records.made_by): none for interpolation (LearnedMethod's)."""
        return {}

    def _for_noise(self, lr: Volume, mask: Volume | None, f: tuple, estimated: bool = False, maps: bool = True,
                   fit_support: bool = False):
        """(The method that runs on `lr`, the input's noise index): this one, or for an input noisier than clean scans
        (noise_level.noise_index above noise_level.NOISY_MODEL) the same method with its shipped model trained with added noise, where there is one and
        no model was given (said in one warning line). Without one, a warning when the input is much noisier than the
        training inputs (above noise_level.NOISY_INPUT): there the method may do no better than cubic (docs/measurements.md).
        `maps`: whether uncertainty maps are written; without, the line names no sigma factor (none is applied).
        `fit_support`: no mask was given for a masked fit, whose own support is read (input_noise_index)."""
        if mask is None and estimated:  # a whole field with no brain found in it: the index would read background fits
            return self, None
        brain = np.any(np.asarray(lr.data) != 0, axis=-1) if mask is None else np.asarray(mask.data, bool)
        index = input_noise_index(lr, brain, estimated, mask.meta.get("md_unit") if estimated and mask is not None else None,
                                  fit_support=fit_support)
        # an unread index is said where a noise-trained model could have run, or a given model runs (said as what runs)
        said = index is None and (self.model_path is not None or self.for_noisy_inputs(f) is not None)
        runs = (_("{method} runs the given model") if self.model_path is not None else
                _("{method} runs its model for clean scans")).format(method=self.name)
        if said and estimated:  # at b0 SNR 1-2 the brain estimated
            # from a whole-field fit shrank to 517-3,582 voxels on the 8 subjects: the clean model ran with no line
            # said plainly as noise, and which mask reads it (inputs.warn_mask_off_head judges no mask on such a scan);
            # each fact once, in about three terminal lines (it had reached 338 characters)
            warnings.warn(lr.source + _("the noise index is unreadable: the brain estimated from the tensors is too "
                                        "small ({count} voxels), as on a scan whose fits are mostly noise (b0 SNR about "
                                        "1-2), so {runs}; {give_mask} made from this scan itself to have it read").format(
                              count=int(brain.sum()), runs=runs, give_mask=option("give --mask with a brain mask")),
                          IQTWarning, stacklevel=4)
        elif said and noise_unreadable(lr, brain):
            # a slab of a b0 SNR 10 scan cut along voxel axis i or j: its clean model ran with no line, its SD map 0.71x
            # the whole scan's at the same voxels; a region's mask on a whole scan reads so too (reviews)
            warnings.warn(lr.source + _("the noise index is unreadable: the brain ({count} voxels) is too small or thin "
                                         "to read it, so {runs}, noisy or not; run the whole scan with its whole brain's "
                                         "mask to have it read (docs/inputs.md)").format(count=int(brain.sum()), runs=runs),
                          IQTWarning, stacklevel=4)
        if index is None or index <= noise_level.NOISY_MODEL:
            return self, index
        twin = self.for_noisy_inputs(f)
        head = dict(noisier=_noisier(index), index=f"{index:.3f}", limit=f"{noise_level.NOISY_MODEL:g}", method=self.name)
        scaled = self.name if maps else None  # the method whose sigma factor a line names (none without a map)
        measured = self.name if tuple(f) == (2, 2, 2) else None  # measured against cubic beyond its training at x2 only
        if twin is not None:
            warnings.warn(lr.source + _("{noisier} (noise index {index}, above {limit}): {method} uses its "
                                        "noise-trained model{ending}").format(
                **head, ending=noise_ending(index, scaled, maps, measured, f=f)), IQTWarning, stacklevel=4)
            return twin, index
        from ..fileio.model_files import NOISY, read_registry

        noisy = [e for e in read_registry() if e.get("input") == NOISY]
        here = sorted({e.get("method") for e in noisy if grid.axis_order(f, [grid.factors(e.get("factor"))]) is not None})
        if self.name in here and _trained_with_noise(self.model_path):  # a noise-trained model given: its line, as
            # the default run's (the line had said to run such a model, the one that ran); one not the install's keeps
            # its sigma (given_model), said so
            if not self.given_model():  # the install's own (or a byte-identical copy): not named again
                line = _("{noisier} (noise index {index}, above {limit}): {method} uses its noise-trained model, as "
                         "given{ending}")
                end = noise_ending(index, scaled, maps, measured, f=f)
            else:  # its sigma unscaled: said in the lower-bound piece where there is one
                line = _("{noisier} (noise index {index}, above {limit}): {method} uses the given noise-trained model "
                         "{model}{ending}")
                end = (_beyond_noise_training(index, scaled, maps, given=True, f=f)
                       or _given_unscaled(scaled, index, f))  # not the model measured against cubic
            warnings.warn(lr.source + line.format(**head, model=Path(self.model_path).stem, ending=end), IQTWarning,
                          stacklevel=4)
        elif self.name in here and not _trained_with_noise(self.model_path):  # a model was given: it runs, as asked;
            # above the training inputs' range it is warned of as a method without a noise-trained model is (a merged
            # line had warned the noise-trained models of their edge and said nothing of this clean one's)
            beyond = "; " + _("it may do no better than cubic here") if index > noise_level.NOISY_INPUT else ""
            end = (f"; {underrates(scaled, index, given=True, clean=True, f=f)}" if maps and index > NOISY_TRAINED[0] else
                   _given_unscaled(scaled, index, f))
            warnings.warn(lr.source + _("{noisier} (noise index {index}, above {limit}): {method} runs the given "
                                        "model, not its noise-trained one{beyond}{ending}").format(
                **head, beyond=beyond, ending=end), IQTWarning, stacklevel=4)
        elif index <= noise_level.NOISY_INPUT and here and self.name not in here:  # the methods listed would have switched
            line = _("{noisier} (noise index {index}, above {limit}): {method} has no noise-trained model for "
                     "{factors}; {methods} runs one on such inputs") if len(here) == 1 else \
                _("{noisier} (noise index {index}, above {limit}): {method} has no noise-trained model for {factors}; "
                  "{methods} run one on such inputs")
            warnings.warn(lr.source + line.format(**head, factors=grid.described(f), methods=listed(here)), IQTWarning,
                          stacklevel=4)
        elif index > noise_level.NOISY_INPUT:
            at = sorted({grid.describe(e.get("factor")) for e in noisy})
            if here:
                hint = (_("{methods} runs a noise-trained model on such inputs") if len(here) == 1 else
                        _("{methods} run a noise-trained model on such inputs")).format(methods=listed(here))
            else:
                hint = _("noise-trained models ship for {factors} only").format(factors=listed(at)) if at else ""
            line = _("the input looks noisier than the data the learned methods were trained on (noise index {index}, "
                     "training inputs 0.055-0.082): {method} may do no better than cubic inside the brain here; "
                     "{hint}") if hint else \
                _("the input looks noisier than the data the learned methods were trained on (noise index {index}, "
                  "training inputs 0.055-0.082): {method} may do no better than cubic inside the brain here")
            warnings.warn(lr.source + line.format(index=f"{index:.3f}", method=self.name, hint=hint),
                          IQTWarning, stacklevel=4)
        return self, index

    def context(self, f: tuple) -> int | None:
        """Low-res voxels the model reads along each axis around a voxel (a CNN's receptive field, a forest's patch);
        None where unknown."""
        return None

    def _warn_off_training(self, lr: Volume, mask: Volume | None, f: tuple) -> None:
        """One warning line where a learned method runs outside what it was trained on: an input (its brain)
        thinner than the model's context along an axis (a 1-slice slab at x2: espcn made its two output slices
        differ by up to 1.8e-4 mm^2/s from no information along that axis), output voxels far from the
        near-isotropic ones of the training subjects (1x1x6 mm at --factor 2: 0.5x0.5x3 mm), or a brain far smaller
        than a human's (a rodent's)."""
        context = self.context(f)
        inside = np.any(np.asarray(lr.data) != 0, axis=-1) if mask is None else np.asarray(mask.data, bool)
        box = grid.bounding_box(inside)
        if context is not None and box is not None:
            thin = [(i, b.stop - b.start) for i, b in enumerate(box) if b.stop - b.start < context]
            if thin:
                said = [(_("{count} voxels along voxel axis {axis}") if n > 1 else
                         _("{count} voxel along voxel axis {axis}")).format(count=n, axis="ijk"[i]) for i, n in thin]
                # the pieces in one template each number of them: a translator orders them and says "and" as a whole
                axes = said[0] if len(said) == 1 else _("{first} and {second}").format(first=said[0], second=said[1]) \
                    if len(said) == 2 else _("{first} and {second} and {third}").format(first=said[0], second=said[1],
                                                                                        third=said[2])
                warnings.warn(lr.source + _("the input's brain is {thin}, thinner than the {context} voxels {method} "
                                            "reads around each voxel: there its output comes from edge values it was "
                                            "not trained on, not from the data; use cubic for such a slab").format(
                    thin=axes, context=context, method=self.name), IQTWarning, stacklevel=4)
        brain_mm = grid.extent_mm(inside, lr.affine)
        # small voxels on a small brain: an animal's (a small test volume of MRI-sized voxels is not one)
        if 0 < brain_mm < HUMAN_BRAIN_MIN_MM and max(lr.voxel_size) < ANIMAL_VOXEL_MM:
            warnings.warn(lr.source + _("the input's brain is {length} mm long, far shorter than an adult human brain "
                                         "(the dev subjects' 173-195 mm): {method} was trained on adult human brains and "
                                         "has not seen this anatomy; compare with cubic, and read its uncertainty with "
                                         "care (docs/limitations.md, Brains unlike the training's)").format(
                length=f"{brain_mm:.0f}", method=self.name), IQTWarning, stacklevel=4)
        if brain_mm > HUMAN_BRAIN_MAX_MM:  # 1000 mm voxels had run without a word (a bad-input audit)
            warnings.warn(lr.source + _("the input's brain is {length} m long, far longer than a human brain (the dev "
                                         "subjects' 173-195 mm): its header's voxel size ({size} mm) is probably in "
                                         "another unit; {method} reads voxels of 1-3 mm: check the header (e.g. fslhd) "
                                         "and fix pixdim").format(
                length=f"{brain_mm / 1000:.3g}", size="x".join(f"{v:.3g}" for v in lr.voxel_size), method=self.name),
                IQTWarning, stacklevel=4)
        ratio = off_training_anisotropy(lr.voxel_size, f)
        if ratio is not None:
            sizes = "x".join(f"{v:.3g}" for v in np.asarray(lr.voxel_size, float) / np.asarray(f, float))
            warnings.warn(lr.source + _("at {factors} the output voxels are {sizes} mm ({ratio}:1), far from the "
                                        "near-isotropic voxels {method}'s models were trained on (up to 1.4:1): give "
                                        "factors that make them near-isotropic ({voxel_size_picks}), or use cubic").format(
                factors=grid.describe(f), sizes=sizes, ratio=f"{ratio:.1f}", method=self.name,
                voxel_size_picks=option("iqt upsample's --voxel-size MM picks them")),
                IQTWarning, stacklevel=4)

    def for_noisy_inputs(self, f: tuple) -> "Method | None":
        """This method with its shipped model for noisy inputs at factors `f` (or a reordering), made once; None."""
        return None

    @staticmethod
    def support(lr: Volume, whole: bool | None = None) -> Volume | None:
        """The support when no mask is given: the input's non-zero voxels, so that the background stays exactly zero;
        for tensors over the whole field of view (fitted without a mask), a brain estimated from them
        (dmri.dti.brain_from_tensors), reported in one warning (said over several lines where long: warning_lines).
        None: every voxel. `whole`: whole_field(lr), where the caller has it."""
        if not (whole_field(lr) if whole is None else whole):
            t = np.asarray(lr.data)
            present = np.any(t != 0, axis=-1) & ~tensors.negligible(t)
            return None if present.all() else Volume(present, lr.affine, "mask")
        brain = brain_within_box(lr)
        if brain is None:
            warnings.warn(lr.source + _("the input holds tensors over the whole field of view and no background was "
                                        "found to leave out: the output covers all of it; {give_mask} to keep it zero "
                                        "outside the brain").format(give_mask=option("give --mask")), IQTWarning,
                          stacklevel=3)
            return None
        # the file named, as the other input warnings name it (a thick-slice audit: the first line of a run had none)
        warnings.warn(lr.source + _("the input holds tensors over the whole field of view (fitted without a brain "
                                    "mask); the output is kept to the brain and the tissue-like fits around it ({count} "
                                    "of the field's {total} low-res voxels, {share} %); both estimated from the "
                                    "tensors' MD; {give_mask} to leave out scalp and background").format(
            count=int(brain.data.sum()), total=brain.data.size, share=f"{100 * brain.data.mean():.0f}",
            give_mask=option("give --mask with a brain mask")),
            IQTWarning, stacklevel=3)
        return brain

    def _family_factor(self, f: tuple):
        """The factor as the family's `_predict` takes it: the per-axis factors (fx, fy, fz) on canonical axes."""
        return f

    def _check_model(self, f: tuple) -> None:
        """An IQTError, in the caller's own axes, when the method cannot serve factors `f` (learned: no model)."""

    def _axis_order(self, f: tuple):
        """An axis permutation (grid.axis_order) to apply after the canonical one so that the family serves factors
        `f` (canonical axes) with a model for a reordering of them; None to keep the canonical axes."""
        return None

    def _predict(self, lr: np.ndarray, r, mask: np.ndarray | None, progress) -> tuple[np.ndarray, dict]:
        """Canonical-axis low-res tensors (mm^2/s) -> (high-res tensors, {map name: array})."""
        raise NotImplementedError

    def map_names(self, direction: bool = True) -> tuple[str, ...]:
        """The uncertainty maps `predict` gives, known before any work (so that output names are checked first)."""
        if not self.gives_uncertainty:
            return ()
        return ("std", "direction") if direction else ("std",)

    # ---------------------------------------------------------------- training

    def fit(self, subjects, factor=2, **options) -> "Method":
        """Train on high-quality subject folders (or `dmri.subject.Subject`s) for `factor`; the trained model then
        serves `predict` at that factor and `save` writes it."""
        raise IQTError(f"method {self.name!r} has nothing to learn; trainable methods are the learned ones "
                       "(see 'iqt methods')")


# A learned method's output voxels (the input's over the factors) longer along one axis than this times another are
# said to be off its training: the training subjects' voxels reach 1.4:1 (1.75x1.75x2.5 mm)
ANISOTROPY_TRAINED = 2.0
NRRD_WRITE_MULTIPLE = 0.7  # of the high-res tensors' bytes, on top of the run's peak, writing a tensor NRRD
# (cubic x2 of a 145x174x145 input peaked at 2.98 GB to .nrrd against 2.49 GB to .nii.gz, tensors 0.70 GB)
ANISOTROPY_SLACK = 1.02  # as --voxel-size's: a header's 3.00000001 mm (a rotated affine) or 2.7073 mm over 1.35 is 2:1
# (without it the 3 mm yaw and the sagittal dev scans at 1,1,2 would be warned, the 3 mm ortho scan not)


def off_training_anisotropy(voxel_size, factors) -> float | None:
    """The output voxels' longest side over their shortest (the input's `voxel_size` over `factors`) where a learned
    method's output is off its training (`Method._warn_off_training` warns; `registry.viewer_default` prefers cubic),
    else None."""
    hr = np.asarray(voxel_size, float) / np.asarray(grid.factors(factors, identity_ok=True), float)
    if hr.min() > 0 and hr.max() / hr.min() > ANISOTROPY_TRAINED * ANISOTROPY_SLACK:
        return float(hr.max() / hr.min())
    return None


def _reach(mask) -> np.ndarray:
    """The low-res voxels a run's outputs reach: the mask and one voxel beyond it, diagonals too."""
    from scipy import ndimage

    return ndimage.binary_dilation(np.asarray(mask, bool), structure=np.ones((3, 3, 3), bool))


def predict_within(method: "Method", lr: Volume, factor, mask: Volume | None = None, **kw) -> tuple[Prediction, Volume | None]:
    """`method.predict` with a mask on the input's grid or on the output's (`iqt upsample --mask`, `iqt view --mask`):
    one on the output's grid is reduced by block majority for the run, with the blocks it covers where the input has
    tensors, and every output is then kept to it (`Prediction.within`). Returns (the prediction, the run's mask on the
    input's grid)."""
    from ..dmri.degrade import lowres_mask

    lr_mask = lowres_mask(mask, lr, factor, cover=True)
    pred = method.predict(lr, factor, lr_mask, **kw)
    if mask is not None and mask.shape3 != lr.shape3:
        pred = pred.within(mask, factor)
    return pred, lr_mask


# The noise the models trained with added noise saw (`iqt train --noise-fraction`): Rician noise on the low-res DWIs at
# a b0 SNR down to dmri.randomise.SNR_RANGE[0] = 8. At SNR 8 the training subjects' inputs (the four, native and their
# 3 mm copies; styles own, tight, unmasked, ols; factors 2, 1,1,2, 3 and 1,1,3; read as `predict` reads them) gave a
# noise index of 0.118-0.197, by scan: 0.118-0.167 on the Achievas and the Trio, 0.146-0.197 on the Elition. So above the
# upper end the input is noisier than every input such a model saw; between the two it may be noisier than any input
# of its own kind (the 3 mm ortho dev scan at x2 reads 0.136 at SNR 8, 0.161 at SNR 5 and 0.189 at SNR 3).
NOISY_TRAINED = (0.12, 0.20)
# What the uncertainty map does there: sigma rises less than the error with the noise (docs/accuracy.md, "What the
# pooled figures hide": on the 3 mm ortho dev scan, biqt's median sigma 1.01x the clean run's at b0 SNR 10 and 0.92x at
# SNR 5, at 1.42x and 1.83x its RMS error; deep-hetero-var1's 1.42x and 1.45x at 1.49x and 1.86x)
# sigma's factor by the input's noise index, per method: (index knots, factors), linear between them and held beyond
# the last, 1 at or below noise_level.NOISY_MODEL (clean inputs unchanged). Each knot's factor is what brings the ±2σ
# share of element errors to 0.95 on the training subjects (Trio 2 mm and Achieva dStream 3 mm, own style ×2, b0 SNR
# 20, 10, 5; docs/accuracy.md, "Sigma on noisy inputs"); espcn-hetero's on their x1,1,2 inputs, where its share falls
# with the noise (at x2 it does not: its dev scans' x1,1,2 share at SNR 5 had been 0.81-0.83). Methods not measured, or
# whose share does not fall with the noise (rf), keep their sigma. The third item: the factor sets a row applies at
# (any reordering of their axes too, grid.axis_order), None for every set: espcn-hetero's x2 share at SNR 5 is 0.892-0.960
# on the training subjects unscaled, and raised x1.5 the Elition's read 0.991 (docs/measurements.md, "Sigma of
# espcn-hetero in thick slices").
NOISY_STD_SCALE = {"biqt": ((0.075, 0.13, 0.20), (1.0, 1.1, 1.95), None),
                   "deep-hetero-var1": ((0.075, 0.13, 0.20), (1.0, 1.0, 1.35), None),
                   "espcn-hetero": ((0.075, 0.13, 0.20), (1.0, 1.1, 1.5), ((1, 1, 2), (1, 1, 3)))}
NOISY_STD_MAPS = ("std", "std_intrinsic", "std_parameter", "md_std", "fa_std")


def noisy_std_scale(name: str, index: float, f) -> float:
    """The factor `name`'s sigma takes on an input of noise `index` upsampled by factors `f` (NOISY_STD_SCALE): its
    sigma rose less than its error with the noise, the outputs of noisy inputs reading too confident; 1 at a factor
    set its row was not fitted for."""
    if name not in NOISY_STD_SCALE or index <= noise_level.NOISY_MODEL:
        return 1.0
    knots, factors, sets = NOISY_STD_SCALE[name]
    if sets is not None and grid.axis_order(f, sets) is None:
        return 1.0
    return float(np.interp(index, knots, factors))


def scale_for_noise(pred: "Prediction", g: float) -> None:
    """`pred`'s std maps multiplied by `g` (noisy_std_scale), in place; not the direction map (degrees), which `_run`
    drew from the std already scaled by `g`."""
    if g == 1.0:
        return
    for key in NOISY_STD_MAPS:
        v = getattr(pred, key)
        if v is not None:
            setattr(pred, key, v.replace(data=np.asarray(v.data) * np.asarray(g, np.asarray(v.data).dtype)))


# The noise line's pieces (`_for_noise`), short enough to be read (lines of 540-760 characters, seven merged in one of
# 1,700, had said each fact twice); what they leave out is in docs/inputs.md, "The upsampling's warnings". Each piece
# after a method's opening starts with "; " and holds none, so a page's merged line can take the pieces apart
# (`_shared_ending`).
_USES = "uses its noise-trained model"
_GIVEN_NOISY = "uses the given noise-trained model"  # and its name
# the install's own given: its name had been said ("the given noise-trained model deep-hetero-var1_x2_noisy")
_GIVEN_SHIPPED = f"{_USES}, as given"
_GIVEN_CLEAN = "runs the given model, not its noise-trained one"
_GIVEN_INSTEAD = "runs the given model instead"  # the same, in a merged line that names the others' noise-trained models
_NO_BETTER = "it may do no better than cubic here"  # a given clean model's, above noise_level.NOISY_INPUT
_NO_BETTER_SHORT = "perhaps no better than cubic here"
# the range is where the noisiest training inputs read (NOISY_TRAINED), said so: "(0.12-0.20)" alone had read as the
# range trained on, an input at 0.167 inside it
_EDGE = "near the noisiest inputs trained on ({:.2f}-{:.2f}): results may be less reliable"
_BEYOND = "beyond the noise trained on (up to {:.2f}): --method cubic may do as well"
_BEYOND_WON = "beyond the noise trained on (up to {:.2f}): results may be less reliable"  # where it still beat cubic
_BOUND = "read its uncertainty map as a lower bound of the error (docs/inputs.md)"
_BOUND_RAISED = "its uncertainty map, {}, is still a lower bound of the error (docs/inputs.md)"
# a given model's: the shipped model it is not scaled as, "model" beside a given noise-trained one, else "noise-trained
# model" (a given clean model, itself perhaps shipped, `--model biqt=biqt_x2`, had been set beside "the shipped model's")
_BOUND_GIVEN = "its uncertainty map, not {} as the shipped {}'s is, is a lower bound of the error (docs/inputs.md)"
_RAISED = "its uncertainty map is {} for this noise index"  # below the edge: the factor, no lower bound said
_NOT_RAISED = "its uncertainty map is not {} as the shipped noise-trained model's would be"
_MAP_PIECES = {kind: re.compile("^" + "(.+?)".join(map(re.escape, t.split("{}"))) + "$")
               for kind, t in (("raised", _BOUND_RAISED), ("given", _BOUND_GIVEN), ("below", _RAISED), ("not", _NOT_RAISED))}
UNDERRATES = _BOUND  # a method whose sigma is not scaled on this input


def _shown_factor(name: str | None, index: float, f) -> str | None:
    """`name`'s sigma factor at noise `index` and factors `f` as a line says it ("raised x1.34"), None where it reads
    x1.00 at the two decimals said (a line had said "scaled up x1.00" for 1.0002-1.0046; the run record keeps the
    factor itself)."""
    g = 1.0 if name is None else noisy_std_scale(name, index, f)
    shown = f"{g:.2f}"
    return None if shown == "1.00" else f"{'raised' if g > 1 else 'lowered'} x{shown}"


def underrates(name: str | None, index: float, given: bool = False, clean: bool = False, *, f) -> str:
    """The lower-bound piece for `name` at noise `index`: where its sigma is scaled (`_shown_factor`) it says by how
    much (a line had named two other methods' scaling in every method's line); `given`: a --model file, whose sigma
    that factor would scale is left as it is (`_given_unscaled`), said so; `clean`: a clean one's; `f`: the run's
    factors (the factor depends on them: noisy_std_scale)."""
    shown = _shown_factor(name, index, f)
    if not shown:
        return _BOUND
    return _BOUND_GIVEN.format(shown, "noise-trained model" if clean else "model") if given else _BOUND_RAISED.format(shown)


def noise_ending(index: float, name: str | None, maps: bool = True, method: str | None = None, *, f) -> str:
    """The end of `name`'s noise-trained model's line: `_beyond_noise_training`'s pieces, or below the training edge,
    where `name`'s sigma is scaled all the same (noisy_std_scale above 1 from NOISY_MODEL on), the factor (the line had
    named it only beyond the edge, while the run record held it); `maps`, `method`, `f`: as `_beyond_noise_training`."""
    ending = _beyond_noise_training(index, name=name, maps=maps, method=method, f=f)
    shown = _shown_factor(name, index, f) if maps else None
    if ending or shown is None:
        return ending
    return "; " + _RAISED.format(shown)


# Beyond the noise trained on, the noise-trained x2 models measured against cubic on the 4 dev scans at b0 SNR 3 (noise
# index 0.188-0.226, five input styles; and at SNR 2, own style, 0.237-0.267): each but global-linear had the lower
# DT-RMSE in the interior and at the edge
# (docs/accuracy.md, "Beyond the noise trained on"); above the noisiest input measured nothing is known, and the line
# says cubic may do as well of every method
BEAT_CUBIC_UP_TO = 0.267
NO_BETTER_THAN_CUBIC = ("global-linear",)


def beat_cubic_beyond(method: str | None, index: float) -> bool:
    """Whether `method`'s noise-trained model was measured beating cubic at noise `index` beyond its training's (the
    line then says no "--method cubic may do as well", which had been false there; BEAT_CUBIC_UP_TO)."""
    return method is not None and method not in NO_BETTER_THAN_CUBIC and index <= BEAT_CUBIC_UP_TO


def _beyond_noise_training(index: float, name: str | None = None, maps: bool = True, given: bool = False,
                           method: str | None = None, *, f) -> str:
    """The pieces the noise-trained model's line ends with where the input's noise index reaches that of the noisiest
    inputs it was trained on (NOISY_TRAINED), else "": where it is, then the uncertainty map as a lower bound (`maps`:
    whether one is written; without, none is named: a deep run without --uncertainty had been told to read its
    uncertainty map as a lower bound), naming `name`'s sigma factor (`underrates`; `given`: a --model file's, not
    applied); `method`: the method whose line it is, known whether or not it writes a map (`beat_cubic_beyond`); `f`:
    the run's factors, which the factor depends on (noisy_std_scale)."""
    lo, hi = NOISY_TRAINED
    if index <= lo:
        return ""
    where = _EDGE.format(lo, hi) if index <= hi else _BEYOND_WON.format(hi) if beat_cubic_beyond(method, index) else \
        _BEYOND.format(hi)
    return f"; {where}" + (f"; {underrates(name, index, given, f=f)}" if maps else "")


def _given_unscaled(name: str | None, index: float, f) -> str:
    """The given model's line's end where `name`'s sigma would be scaled for this noise (noisy_std_scale above 1): that
    factor is calibrated on the install's models, so a --model file's sigma is left unscaled, said here."""
    shown = _shown_factor(name, index, f)
    return "; " + _NOT_RAISED.format(shown) if shown else ""


def _trained_with_noise(model_path) -> bool:
    """Whether the model file's sidecar says it was trained with added noise (model_files.input_kind)."""
    from ..fileio.model_files import NOISY, input_kind, read_json, sidecar_path

    try:
        return input_kind(read_json(sidecar_path(model_path))) == NOISY
    except (OSError, ValueError, TypeError, AttributeError):
        return False


NOISIER_TYPICAL = "the input is noisier than clean scans typically are"  # the clean scans' own range (_noisier)


def _noisier(index: float) -> str:
    """The noise line's opening for an input of noise `index` above NOISY_MODEL: up to NOISY_INPUT the clean training
    scans' range (the Trio reads 0.080-0.082 clean), not called noisier than clean scans outright (the line had said so of
    the clean Trio, whose Slicer legend calls it no noisy input: slicer/legends.py NOISE_INDEX_NOTE)."""
    return _("the input is noisier than clean scans typically are") if index <= noise_level.NOISY_INPUT else \
        _("the input is noisier than clean scans")


def _run(names) -> str:
    """The verb for `listed(names)`: "espcn runs", "espcn and rf run" (it had said "espcn run one")."""
    return "runs" if len(list(names)) == 1 else "run"


# the input's noise clause that each method's line starts with (`_for_noise`)
_NOISE_HEAD = re.compile(r"^(.*?the input (?:is|looks) noisier than [^(]*\(noise index [^)]*\)): (.+)$", re.S)


def noise_clause_once(notes) -> list[str]:
    """`notes` each once, with the methods' lines that start with the same noise clause said as one line: the clause
    once, then each method's own part, then the ending they share (a noisy subject's page had said the clause once per
    method)."""
    notes = list(dict.fromkeys(notes))
    groups: dict[str, list[str]] = {}
    for note in notes:
        m = _NOISE_HEAD.match(note)
        if m:
            groups.setdefault(m.group(1), []).append(m.group(2))
    out = []
    for note in notes:
        m = _NOISE_HEAD.match(note)
        if not m:
            out.append(note)
        elif m.group(1) in groups:  # the group's first line: all of them, here
            parts = groups.pop(m.group(1))
            out.append(note if len(parts) == 1 else f"{m.group(1)}: {_shared_ending(parts)}")
    return out


# the longest warning line said as one: a longer one is said over several lines (`warning_lines`); one noise line had
# run to 295 characters for one method and 458 for seven merged (docs/measurements.md, "The noise line's length"), the
# gradient-table check's undecided line to 601
WARNING_LINE_LIMIT = 200
# the file (or subject) a warning opens with: names without spaces, or a path to a volume file (NIfTI, NRRD or MRtrix;
# a Windows one with its drive), each perhaps with a parenthesised tag (iqt batch's input style), each closed by ": "
_SOURCE = re.compile(r"^((?:(?:(?:[A-Za-z]:)?[^:;]*?\.(?:nii\.gz|nii|nrrd|nhdr|mif\.gz|mif|mih)|[^\s:;]+)"
                     r"(?: \([^()]*\))?: )+)")
# the other warnings said over several lines where long, after their file: those whose pieces (split at "; ") are
# worded to read alone (each names what it speaks of). Of the warnings over WARNING_LINE_LIMIT that real inputs gave
# (docs/measurements.md, "Long warnings") the gradient table's had run to 531 characters, the whole field's to 307;
# then the tensors' directions looking mirrored (methods/inputs.py), iqt fit's halves that disagree and its misfit
# line (dmri/outliers.py, the misfit line 304-547 characters after the file's name); the gradient table looking wrong
# (dmri/gradcheck.py, 563-651 characters after the file's name) and iqt track's whole field of an upsampled output
# (apps/cli/track.py, 439 after the file's name).
SPLIT_WARNINGS = ("the gradient-table check could not decide", "the gradient table could not be judged",
                  "the gradient table looks wrong; ",
                  "the input holds tensors over the whole field of view (fitted without a brain mask)",
                  "the tensors reach beyond the brain and no --mask was given; ",
                  "the tensors' directions look mirrored or turned on this grid, as a wrong gradient table leaves them; ",
                  "the fit's residuals say every other diffusion-weighted volume disagrees with the rest; ",
                  "the tensor model does not fit parts of the series (signal dropout, or a volume dead or moved); ")
# those of them that open with a count: the failed fits (methods/inputs.py, 309 characters with its path), a mean
# diffusivity at or below zero (core/tensor_checks.py, 324; and as iqt upsample's output, read by iqt track), iqt
# fit's poorly conditioned directions
# (dmri/outliers.py, 628) and its b0 away from the diffusion-weighted volumes (dmri/motion.py, 511), iqt evaluate's mask
# voxels without a reference tensor (apps/cli/evaluate.py, 323 after the file's name; its share as "8.9e-05" under a
# ten-thousandth of a per cent)
SPLIT_OPENINGS = re.compile(r"\d+ voxels? in .+? holds? a failed fit \(|\d+ of the \S+ tensors in the brain \([\d.]+ %\) "
                            r"have a mean diffusivity at or below zero, which no tissue has; |the \d+ diffusion-weighted "
                            r"directions(?: kept by --exclude-outliers(?: in slice \d+)?)? determine the tensor poorly|"
                            r"the b0 lies [\d.]+ voxels from the mean of the diffusion-weighted volumes |"
                            r"\d+ of the mask's \d+ voxels \([\d.e+-]+ %\) hold no reference tensor and are left out of "
                            r"every figure; ")
# the most characters, after its file's name, of a line of such a warning said over several: whole pieces up to it
PIECE_LIMIT = 120
_OPENING_NAME = re.compile(r"^(?!it )([\w.+-]+) (?:uses|runs|has|may) ")  # a method's part, not "it may …"
# a noise line's pieces that lean on the one before, as said on a line of their own: "its" named, "instead" and "one"
# said in full
_OWN_PIECE = ((re.compile(r"^its uncertainty map"), "{}'s uncertainty map"),
              (re.compile(r"^read its uncertainty map"), "read {}'s uncertainty map"),
              (re.compile(r"^it may do no better"), "{} may do no better"),
              (re.compile(r"^([\w.+-]+) " + re.escape(_GIVEN_INSTEAD)), r"\1 " + _GIVEN_CLEAN),
              (re.compile(r"^(.+ runs?) one on such inputs"), r"\1 a noise-trained model on such inputs"))


def warning_lines(note: str) -> list[str]:
    """A noise line (`_for_noise`, `noise_clause_once`) or a warning of SPLIT_WARNINGS (or SPLIT_OPENINGS) of more than
    WARNING_LINE_LIMIT characters as several lines, each holding whole pieces (split at "; "): the first its file and
    opening (in a noise line the input's noise clause and first piece), each other its file's name and the pieces that
    fit (WARNING_LINE_LIMIT characters in all for a noise line, PIECE_LIMIT after the file's name for the others), a
    noise line's piece that leans on one away from its line naming what it speaks of (`_OWN_PIECE`). Any other note as
    it is."""
    if len(note) <= WARNING_LINE_LIMIT:
        return [note]
    m = _NOISE_HEAD.match(note)
    if m:
        head, rest = m.group(1), m.group(2)
        source = head[:head.rfind("the input ")]
    else:
        source = (_SOURCE.match(note) or [""])[0]
        head, _, rest = note.partition("; ")
        body = note[len(source):]
        if not rest or not (body.startswith(SPLIT_WARNINGS) or SPLIT_OPENINGS.match(body)):
            return [note]
    lines, name = [head], None
    for i, piece in enumerate(rest.split("; ")):
        name = (o.group(1) if (o := _OPENING_NAME.match(piece)) else name)
        if m and (len(lines) > 1 or (i > 0 and len(lines[0]) + 2 + len(piece) > WARNING_LINE_LIMIT)):  # its own line
            for pattern, named in _OWN_PIECE:
                piece = pattern.sub(named.format(name), piece) if name is not None or "{}" not in named else piece
        joined = f"{lines[-1]}{': ' if m and i == 0 else '; '}{piece}"
        if (m and i == 0) or (len(joined) <= WARNING_LINE_LIMIT if m else len(joined) - len(source) <= PIECE_LIMIT):
            lines[-1] = joined
        else:
            lines.append(f"{source}{piece}")
    return lines


def name_said_once(notes) -> list[str]:
    """`notes` with each line `warning_lines` split off a long warning, and any later note opening with the same input's
    name, without that name: joined in one cell of a QC table (" | "), the name had been said once per line (446
    characters where the line as one was 329)."""
    out, source = [], ""
    for note in notes:
        m = _NOISE_HEAD.match(note)
        if m:
            source = m.group(1)[:m.group(1).rfind("the input ")]
            out.append(note)
        elif source and note.startswith(source):
            out.append(note[len(source):])
        else:
            out.append(note)
            named = (_SOURCE.match(note) or [""])[0]
            body = note[len(named):] + "; "  # a split warning's first line: its opening, perhaps alone
            if named and (body.startswith(SPLIT_WARNINGS) or SPLIT_OPENINGS.match(body)):
                source = named  # the other warnings said over several lines: the gradient table's had said it 8 times
    return out


def _shared_ending(parts: list[str]) -> str:
    """Several methods' parts of one noise line as one: the noise-trained models' parts (an opening, then `_EDGE` or
    `_BEYOND` and the map pieces) with the methods that run the install's model named once, where the input lies in
    their training said once and their uncertainty maps in one lower-bound piece naming each factor; parts that
    differ only in their method (`_PLURAL`) said once for all of them; the others as they are (a page had said the
    clause once per method: 1,700 characters for seven)."""
    merged, same, own = [], {}, []  # (name, opening, where, map pieces); the alike parts by their words; the rest
    clean = []  # a clean --model's parts with a lower-bound piece: (name, the part before it, (kind, that piece))
    for p in parts:
        name, _, rest = p.partition(" ")
        opening, *pieces = rest.split("; ")
        where = [q for q in pieces if q.startswith((_EDGE.split(" (")[0], _BEYOND.split(" (")[0]))]
        maps = [_map_piece(q) for q in pieces if q not in where]
        if (opening in (_USES, _GIVEN_SHIPPED) or opening.startswith(_GIVEN_NOISY)) and len(where) <= 1 and all(maps):
            merged.append((name, opening, where, maps))
        elif opening == _GIVEN_CLEAN and maps and maps[-1] and maps[-1][0] in ("plain", "given"):
            clean.append((name, "; ".join([opening, *pieces[:-1]]), maps[-1]))
        elif rest.startswith(tuple(_PLURAL)):
            same.setdefault(rest, []).append(name)
        else:
            own.append(p)
    # methods the line names with their noise-trained (or given) model; a given clean one's too, whatever its map piece
    # (a hint had named biqt as running a noise-trained model beside "biqt runs the given model")
    said = {part[0] for part in merged + clean} | {p.partition(" ")[0] for p in own
                                                  if p.partition(" ")[2].startswith(_GIVEN_CLEAN)}
    if len({tuple(w) for *_, w, _ in merged}) > 1:  # a part with no place in the training (a clean --model's) apart
        own = [f"{n} " + "; ".join([o, *(piece for _, piece in m)]) for n, o, w, m in merged if not w] + own
        merged = [part for part in merged if part[2]]
    if len({tuple(w) for *_, w, _ in merged}) > 1:  # beyond the training, some said to be no better than cubic and
        # some measured beating it: the first kind each apart (one line had said cubic may do as well of them all)
        won = [part for part in merged if not _cubic_hint(part[2])]
        own = [f"{n} " + "; ".join([o, *w, *(piece for _, piece in m)]) for n, o, w, m in merged if _cubic_hint(w)] + own
        merged = won
    if not merged:  # no lower-bound piece to share: each as it is
        own = [f"{n} {text}; {piece}" for n, text, (_, piece) in clean] + own
        clean = []
    # whether the line's place in the training is beyond it, whose "--method cubic may do as well" a given clean
    # model's "no better than cubic" would say again (a line of 479 characters had said both)
    beyond = bool(merged) and _cubic_hint(merged[0][2])
    out = []
    if len(merged) == 1 and not clean:
        out += [f"{n} " + "; ".join([o, *w, *(piece for _, piece in m)]) for n, o, w, m in merged]
    elif merged:
        uses = [n for n, o, _, _ in merged if o == _USES]
        openings = ([f"{listed(uses)} use their noise-trained models"] if len(uses) > 1 else
                    [f"{n} {_USES}" for n in uses]) + [f"{n} {o}" for n, o, _, _ in merged if o != _USES]
        bound = [(n, kind, piece) for n, _, _, m in merged for kind, piece in m if kind in ("plain", "raised", "given")]
        bound += [(n, kind, piece) for n, _, (kind, piece) in clean]
        notes = [f"{n}'s {_MAP_PIECES[kind].match(piece).group(1)}" if kind == "raised" else
                 f"{n}'s not {_MAP_PIECES[kind].match(piece).group(1)}" for n, kind, piece in bound if kind != "plain"]
        # a given clean model beside noise-trained ones: "instead" of its own; no better than cubic not said again
        text = "; ".join(openings + merged[0][2] + [
            f"{n} {_GIVEN_INSTEAD}" + ("" if beyond or _NO_BETTER not in part.split("; ") else f", {_NO_BETTER_SHORT}")
            for n, part, _ in clean])  # before the shared bound
        if len(bound) == 1:  # named: "its uncertainty map" after several methods had read as any of theirs
            text += "; " + bound[0][2].replace("its uncertainty map", f"{bound[0][0]}'s uncertainty map", 1)
        elif bound:  # no "still" beside a given model's map named as left unscaled (it had been said of it)
            still = "" if any(kind == "given" for _, kind, _ in bound) else "still "
            text += (f"; the uncertainty maps, {listed(notes)}, are {still}lower bounds of the error (docs/inputs.md)"
                     if notes else "; read the uncertainty maps as lower bounds of the error (docs/inputs.md)")
        text += "".join(f"; {n}'s {piece.split(' ', 1)[1]}" for n, _, _, m in merged for kind, piece in m
                        if kind in ("below", "not"))
        out.append(text)
    same = {_HINT.sub("", rest) if (m := _HINT.search(rest)) and set(re.split(", | and ", m.group(1))) <= said else
            rest: names for rest, names in same.items()}  # its hint's methods named already: not twice
    out += [f"{listed(names)} {_PLURAL[v]}{rest[len(v):]}" if len(names) > 1 else f"{names[0]} {rest}"
            for rest, names in same.items() for v in _PLURAL if rest.startswith(v)]
    if merged:  # a given clean model's own part beside the noise-trained models, worded as in `text`
        own = [_given_instead(p, beyond) for p in own]
    return "; ".join(out + own)


def _cubic_hint(where) -> bool:
    """Whether a part's place in the training (`where`, its pieces) says "--method cubic may do as well"."""
    return any(w.endswith(_BEYOND.rsplit(": ", 1)[1]) for w in where)


def _given_instead(part: str, beyond: bool) -> str:
    """A given clean model's part (`_GIVEN_CLEAN`) in a line that names other methods' noise-trained models: "runs the
    given model instead", without its no-better-than-cubic piece where the line's beyond piece says so (`beyond`)."""
    name, _, rest = part.partition(" ")
    if not rest.startswith(_GIVEN_CLEAN):
        return part
    pieces = [q for q in rest[len(_GIVEN_CLEAN):].split("; ") if q and not (beyond and q == _NO_BETTER)]
    return "; ".join([f"{name} {_GIVEN_INSTEAD}", *pieces])


# a part's opening that reads alike for several methods: its verb for them (`_shared_ending`)
_PLURAL = {"has no noise-trained model": "have no noise-trained model", "may do no better": "may do no better"}
# such a part's hint, the methods that have a noise-trained model (`_for_noise`): left out where the merged line names
# each of them already (a line had listed five methods' models, then the same five as having one)
_HINT = re.compile(r"; (.+) runs? (?:one|a noise-trained model) on such inputs$")


def _map_piece(piece: str) -> tuple[str, str] | None:
    """A noise-trained model's uncertainty-map piece as (its kind, the piece); None: another piece."""
    if piece == _BOUND:
        return "plain", piece
    return next(((kind, piece) for kind, pattern in _MAP_PIECES.items() if pattern.match(piece)), None)
