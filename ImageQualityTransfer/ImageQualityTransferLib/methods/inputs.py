"""What a method takes from its input, the same for every method: the tensor checks, whether the tensors were
fitted over the whole field of view, the negligible background of a masked fit, failed fits, the noise index and the
clipping of the eigenvalues (`Method.predict` in methods/base.py runs them in that order)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy import ndimage

from ..core import grid, noise_level, tensor_checks, tensors
from ..core.errors import IQTError, IQTWarning
from ..core.i18n import _, option
from ..core.volume import Volume
from ..dmri.dti import brain_from_tensors, fill_slice_holes, tissue_core
from ..dmri.gradcheck import LINES_CHECK, NOISE_SHORT_STEPS, NOISE_VERDICT, NOISY_RATIO, lines_check_text
from .context import CONTEXT_RINGS

log = logging.getLogger(__name__)

WHOLE_FIELD = 0.95  # share of non-zero input voxels above which the input was fitted without a mask
MASKED_MAX_SHARE = 0.7  # of the field: a brain's share in the scans seen is 0.14-0.40 (0.85-0.92 for whole-field fits of noise)
SOLID_BACKGROUND = 0.25  # solid_share of a masked fit's background: 0.53-0.97, slabs cut through the brain included;
# whole-field fits whose other voxels pass MASKED_MAX_SHARE 0.00-0.16 (docs/measurements.md)
EMPTY_IN_MASK = 0.01  # share of a given mask's voxels holding no tensor above which that is said (dipy's fit of the
# 3 mm ortho dev scan leaves 18 of its own mask's 45,012 voxels zero; `iqt mask`'s mask there holds 5.6 % more voxels)
MASKED_EDGE = 0.7  # share of tissue-like tensors along the edge of a masked fit's brain (0.87-1.0 measured; heads 0.18-0.40)


def whole_field(lr: Volume) -> bool:
    """Whether `lr` holds tensors over (nearly) its whole field of view: fitted without a mask (`Method.support`).
    Empty planes at the field's edge are left out (the box of its non-empty voxels is read). Where the field holds
    negligible tensors (tensors.negligible) scattered through more than MASKED_MAX_SHARE of it,
    they are clipped noise fits of a whole field; otherwise (a few, or a solid background however much of a cropped
    field the brain fills) the edge of the rest decides: tissue there is a brain mask's edge (a masked fit stored with a
    tiny background), background fits are a head's (a fit over the whole field of a scan whose air the scanner zeroed)
    (docs/measurements.md, "A background that is tiny, not zero")."""
    t = np.asarray(lr.data)
    nonzero = np.any(t != 0, axis=-1)
    # read inside the box of the non-empty voxels: planes at the field's edge that hold nothing (exact zeros, or all
    # NaN as read) are a resample's padding or zeroed end slices, not a masked fit's background; a masked fit's box is
    # its brain's, which it fills far less (a cropped one is read as it was)
    box = grid.bounding_box(nonzero)
    if box is None:
        return False
    t, nonzero = t[box], nonzero[box]
    if nonzero.mean() <= WHOLE_FIELD:
        return False
    present = nonzero & ~tensors.negligible(t)
    if not present.any():
        return True
    # planes at the field's edge with nothing in them (a resample's or eddy's padding) are no masked fit's background
    box = grid.bounding_box(present)
    if present.mean() > MASKED_MAX_SHARE and solid_share(~present[box]) < SOLID_BACKGROUND:
        return True
    edge = present & ~ndimage.binary_erosion(present, border_value=1)  # the field's own border is no edge
    return not edge.any() or bool(tensors.tissue_like(t[edge]).mean() < MASKED_EDGE)


def solid_share(background: np.ndarray) -> float:
    """The share of `background` voxels whose six neighbours are background too (the field's border counts as
    background): much of a brain mask's complement, cropped to the brain or not, and next to none of the clipped noise
    fits scattered through a whole field or of a plane the scanner zeroed."""
    n = int(background.sum())
    return float(ndimage.binary_erosion(background, border_value=1).sum() / n) if n else 0.0


def without_tiny_background(lr: Volume, whole: bool | None = None) -> Volume:
    """`lr` with the negligible tensors of a masked fit (tensors.negligible: e.g. an int16 file's intercept outside the
    brain) made exactly zero, as the engine reads a background; a fit over the whole field of view as it is. `whole`:
    whole_field(lr), where the caller has it."""
    return lr if (whole_field(lr) if whole is None else whole) else _negligible_zeroed(lr)


def input_noise_index(lr: Volume, brain: np.ndarray, estimated: bool = False, unit: float | None = None,
                      fit_support: bool = False) -> float | None:
    """noise_level.noise_index of `lr` in `brain`; a brain estimated from whole-field tensors is read inside its rim of
    scalp and background fits (noise_level.estimated_core), as its brain mask would be, and in the MD unit it was
    estimated in where that was not the field's (`unit`: its meta's "md_unit"; in the background's unit of 9 mm
    voxels a clean scan reads as noisy, 0.097 against 0.060). A brain mask given for a whole-field fit
    (a_whole_field_brain) is read in the MD mode over it: in the field's, the clean ×3 ortho input had read 0.089 with
    its brain mask and 0.060 without one. A masked fit keeps the field's mode (its background is empty). A brain whose
    failed fits' holes leave too little after the erosion (noise_level.noise_index's None) is eroded with them filled,
    and read only where a tensor and its 6 neighbours are present (its holes' zeros are no roughness); a brain mask
    still unread is read as a small brain where clearly noisy (`_clearly_noisy`). `fit_support`: `brain` is a masked
    fit's own support, no mask given: the lower of its reading and the one noise_level.FIT_SUPPORT_CORE voxels further
    in, as its edge may be its fitting mask's, wider than the brain, or the brain's own."""
    if unit is None and not estimated:
        unit = _brain_unit(lr, brain)
    core = noise_level.estimated_core(lr.voxel_size) if estimated else 0
    index = noise_level.noise_index(lr.data, brain, core=core, unit=unit)
    if fit_support and index is not None:
        inner = noise_level.noise_index(lr.data, brain, core=noise_level.FIT_SUPPORT_CORE, unit=unit)
        index = index if inner is None else min(index, inner)
    if index is None:  # a very noisy scan's failed fits, cut out of its brain, leave holes the erosion spreads: at b0
        # SNR 1 a dev brain eroded to 150 voxels, read as clean (its clean model, no line); read with them filled
        filled = ndimage.binary_fill_holes(np.asarray(brain, bool))
        if filled.sum() > np.count_nonzero(brain):
            index = noise_level.noise_index(lr.data, filled, core=core, unit=unit, present_only=True)
    if index is None and not estimated:  # a masked brain too small to read eroded by two voxels (b0 SNR 1 at x3: its
        # failed fits had left 1,571 voxels), or holed by missing tensors, had run the clean model with no line
        index = _clearly_noisy(noise_level.small_brain_noise_index(lr.data, brain, unit=unit))
    return index


def _brain_unit(lr: Volume, brain: np.ndarray) -> float | None:
    """The MD mode over a brain mask given for a whole-field fit (input_noise_index); None (the field's) otherwise."""
    if a_whole_field_brain(lr.data, brain):
        return tensors.md_mode(np.where(np.asarray(brain, bool)[..., None], lr.data, 0))
    return None


def brain_md_unit(lr: Volume, brain: np.ndarray | None, estimated: bool = False, md_unit: float | None = None) -> float:
    """The MD mode (mm^2/s) of the input's brain, the unit its noise index is read in: over a brain mask given for a
    whole-field fit (`_brain_unit`), the unit a brain estimated from whole-field tensors was found in (`md_unit`, its
    meta's: the brain's peak where 9 mm voxels' background outnumbers it), else the field's (tensors.md_mode). The
    overlay's clean level follows it (slicer/clean_levels.py): the field's mode had been the background's there."""
    unit = md_unit if estimated else None if brain is None else _brain_unit(lr, brain)
    return tensors.md_mode(lr.data) if unit is None else float(unit)


def noise_unreadable(lr: Volume, brain: np.ndarray) -> bool:
    """Whether a brain mask whose noise index input_noise_index left unread (None) may hide a noisy scan: its small-brain
    reading is none (under SMALL_BRAIN_MIN voxels) or above NOISY_MODEL, where no threshold tells a clean crop from a
    noisy one (slabs of the dev scans at b0 SNR 10 cut along any voxel axis: up to 0.139, docs/measurements.md, The noise index of a small brain); a reading
    at or below NOISY_MODEL is clean by either reading."""
    small = noise_level.small_brain_noise_index(lr.data, brain, unit=_brain_unit(lr, brain))
    return small is None or small > noise_level.NOISY_MODEL


def _clearly_noisy(index: float | None) -> float | None:
    """A small brain's reading (noise_level.small_brain_noise_index) where it is above SMALL_BRAIN_NOISY, else None
    (unread): one voxel less eroded, it reads clean whole brains up to 0.009 higher than noise_index, and clean crops
    and slabs up to 0.126, so below that it cannot tell a clean input from a slightly noisy one, and a clean crop would
    switch model with a line (docs/measurements.md, The noise index of a small brain)."""
    return index if index is not None and index > noise_level.SMALL_BRAIN_NOISY else None


BRAIN_SHARE_MIN = 0.05  # a mask holding less of a whole-field fit's filled voxels is a region, not its brain: the
# brains estimated from the 8 subjects' unmasked x2/x3/x1,1,3 inputs, clean and at SNR 3-10, hold 0.094-0.70 of them
# (the noisy ones 0.094-0.39)


def a_whole_field_brain(raw: np.ndarray, mask: np.ndarray) -> bool:
    """Whether `raw` is a whole-field fit (whole_field) and `mask` may be its brain: at least BRAIN_SHARE_MIN of its
    filled voxels. A masked fit given a smaller --mask, or a region (a lesion's label map chosen as the brain mask in
    Slicer), keeps the field's unit (a review: a high-MD region had set a clean input's CNN unit 1.78x up)."""
    filled = np.any(np.asarray(raw) != 0, axis=-1)
    inside = np.asarray(mask, bool)
    # the mask's filled voxels: a mask over a padded field's empty planes had counted them (a review; on the 8
    # subjects' whole-field inputs the two counts are equal)
    if not np.any(filled & ~inside) or (inside & filled).sum() < BRAIN_SHARE_MIN * filled.sum():
        return False
    return whole_field(Volume(np.asarray(raw), np.eye(4), "tensor"))


# the negligible tensors of a masked fit are its background (zeroed) where they are a fill, FILL_SHARE of them one
# tensor within FILL_RTOL of its largest element or one stored step of an integer file (an int16 file's intercept, a
# fill value), however small the brain beside them (a 3.9 % ROI cut from a fit had been refused as another unit) but
# not where nothing lies beside them (a failed fit's one value, which the input checks name); or where the rest holds
# at least BRAIN_BESIDE_TINY of the filled voxels (a noisy fit's floors: 536-1944 varied ones in the 8 subjects'
# own-style inputs at SNR 3-10);
# many varied ones beside a few above are a brain in another unit (m^2/s), which the input checks name
FILL_SHARE = 0.9
FILL_RTOL = 1e-3
BRAIN_BESIDE_TINY = 0.05


def _negligible_zeroed(lr: Volume) -> Volume:
    """`lr` with its negligible tensors made exactly zero where they are a background (one repeated fill tensor, or
    beside a brain of BRAIN_BESIDE_TINY of the filled voxels): a brain in m^2/s beside a few voxels in mm^2/s keeps its
    tensors and is named another unit (a review: read by those few voxels alone, the whole brain had been zeroed
    without a word), and a small ROI stored as int16 runs as its float copy does."""
    t = np.asarray(lr.data)
    tiny = tensors.negligible(t)
    if not tiny.any():
        return lr
    filled = int(np.any(t != 0, axis=-1).sum())
    beside = filled - int(tiny.sum())
    if beside == 0:  # nothing beside them: a failed fit's one value, which the input checks name, not a background
        return lr
    if beside < BRAIN_BESIDE_TINY * filled and not _one_fill(t[tiny], stored_step(lr)):
        return lr
    return lr.replace(data=np.where(tiny[..., None], 0, t).astype(t.dtype, copy=False))


def _one_fill(t: np.ndarray, step: float = 0.0) -> bool:
    """Whether FILL_SHARE of tensors `t` (n, 6) are one tensor, within FILL_RTOL of its largest element or one stored
    `step` of an integer file (its scl_slope: a background of +-1 raw steps around an int16 intercept, far wider than
    1e-3 of it, had been refused as another unit): a fill or an int16 intercept, not a brain's varied tensors. Half a
    step more leaves room for float32's rounding (+-1 raw steps had read 1.0000013 steps away and been refused)."""
    ref = np.median(t, axis=0)
    tol = max(FILL_RTOL * float(np.abs(ref).max()), 1.5 * step)
    return tol > 0 and bool((np.abs(t - ref) <= tol).all(axis=-1).mean() >= FILL_SHARE)


def warn_if_upsampled(lr: Volume) -> None:
    """One warning, not a refusal, where the input is already this tool's upsampled output (its header records the
    method and factors that made it, fileio.records.made_by; running it again took 8.2 s on 1.35 mm voxels): every
    method is made for, and the learned ones trained on, low-resolution tensors fitted to block-averaged DWIs
    (docs/conventions.md, Degradation), and no method's output is such an input."""
    made = lr.meta.get("made_by")
    if not made:
        return
    warnings.warn(lr.source + _("its header reads '{made}': it is already this tool's upsampled output, not a "
                                 "low-resolution scan; every method is made for (the learned ones trained on) tensors "
                                 "fitted to block-averaged DWIs, which no output is, so running again gives finer voxels "
                                 "but no measured detail: upsample the original input at the factor wanted").format(
        made=made), IQTWarning, stacklevel=2)


FRAME_CHECKED_ORDERS = ("fsl", "mrtrix", "dipy")  # another tool's 4D file: where a frame slips (dtifit given bvecs not
# flipped for a neurological-storage DWI, an MRtrix scanner-frame fit reordered to FSL's) mirrors every fibre


def frame_checked(lr: Volume) -> bool:
    """Whether `iqt upsample` checks the input's frame (check_frame): another tool's 4D file, and a 5D NIfTI this tool
    did not upsample (dipy_fit_dti's or ANTs', read without --tensor-order where the affine's determinant is negative,
    or iqt fit's), where a fit given the wrong bvecs mirrors every fibre as in a 4D file and had run without a word (a
    tool-inputs audit: a median V1 error of 42.9 degrees, cubic x2 of a 3 mm training scan); not a NRRD, whose
    measurement frame says it."""
    order = lr.meta.get("order")
    return order in FRAME_CHECKED_ORDERS or (order == "nifti" and bool(lr.meta.get("five_d"))
                                             and not lr.meta.get("made_by"))


FRAME_SEEDS = 1000  # of gradcheck's 4000: the same verdicts on the audit's files (x-flipped 1.67-1.68x, as read
# 0.71x) and the 8 subjects' 48 clean inputs (at most 0.84x), in a tenth of the time (0.07-0.19 s against 0.3-1.4 s)
# voxels: a brain thinner than this along any axis is not judged: on clean axial slabs of the 8 real subjects' fits,
# 4-12 slices thick, 56 of 732 were named a wrong frame (slabs up to 8 thick; docs/measurements.md, The gradient table: noise, other commands, slabs) ...
FRAME_MIN_EXTENT = 16
# ... unless it spans FRAME_MIN_MM along every axis in at least FRAME_MIN_SLICES voxels: a whole brain in thick slices
# (9 mm, 12 of them: `iqt degrade --factor 1,1,3` of a 3 mm scan) had gone unjudged, a mirrored one without a word;
# thin slabs span far less (15 slices of 3 mm: 45 mm). The evidence, clean and mirrored inputs: docs/measurements.md
FRAME_MIN_MM = 80.0
FRAME_MIN_SLICES = 8


# where even the winning correction's streamlines run under FRAME_SHORT_STEPS steps (one mean voxel each) on average,
# noise ends them, and the best of the ~20 rows' permutations and frames beat the table as given by up to 1.17x on
# clean-table inputs at SNR 3-5 (8 of 32 named a wrong frame at WARN_RATIO 1.1): there such a candidate must score more
# than FRAME_NOISY_RATIO times it, a single-axis flip too (a correct SNR-5 table had been named x-flipped at 1.14x, 4.8
# mm against 4.2 on 5.4 mm voxels; clean tables' flips run 20.3-31.7 mm, which the rule leaves alone). Measured on the
# 8 subjects' inputs and their mirrored copies at SNR 5-20: docs/measurements.md, The gradient table: noise, other commands, slabs
FRAME_SHORT_STEPS = NOISE_SHORT_STEPS  # one rule with iqt fit's check (dmri/gradcheck.py GradCheck.noisy)
FRAME_NOISY_RATIO = NOISY_RATIO
# check_frame's verdict where the noisy-fit rule set a winner aside: undecided, not "ok" (on x/y-swapped noisy 1,1,3
# inputs 4 of 6 such winners named the real fault); iqt batch's QC table shows it as neither ok nor failed
FRAME_NOISE = NOISE_VERDICT
# what does judge such a table: fitting again runs this same check on the same noisy data (a review: iqt fit of an SNR-4
# DWI with x/y-swapped bvecs wrote its fit without a word); colour FA colours by |v| (core/tensors.py color_fa), so it
# shows a swap of axes but never a flip: the principal directions' lines or glyphs do, in an axial and a coronal view
# (the genu's alone had been advised, where an up-down flip leaves them as they were: a review; LINES_CHECK)
FRAME_NOISE_ADVICE = f"a new fit of the same DWI cannot judge the table either; {LINES_CHECK}"


def frame_judged(box, voxel_size) -> bool:
    """Whether check_frame judges a brain of this bounding box (slices per axis) on voxels of this size (mm): thick
    enough in voxels, or spanning most of a brain in fewer, thicker ones; tracks leave a thin slab through its faces."""
    if box is None:
        return False
    vox = np.array([b.stop - b.start for b in box])
    return bool(vox.min() >= FRAME_MIN_EXTENT
                or (vox.min() >= FRAME_MIN_SLICES and (vox * np.asarray(voxel_size, float)).min() >= FRAME_MIN_MM))


def check_frame(lr: Volume, order: str | None = None) -> str | None:
    """One warning line where another frame of the input tensors' directions makes the fibres clearly more continuous
    than as read: `iqt fit`'s gradient-table check (dmri/gradcheck.py gradient_scores, the same candidates and
    WARN_RATIO) on the tensors, read in the input's brain (its non-zero voxels, or the brain estimated from a
    whole-field fit). A heuristic: the input runs as read. Returns the suspected correction's key, "ok" where the
    check judged the frame and found none better, FRAME_NOISE (no warning) where only a winner the noisy-fit rule set
    aside beat it or where none won and noise ends the table as given's streamlines too, or None where it could not judge (a slab, `frame_judged`; too little white matter), which `iqt
    batch` records in its QC table (apps/batch/subject.py frame_record)."""
    from ..dmri.gradcheck import gradient_scores

    if whole_field(lr):

        brain = brain_within_box(lr)
        if brain is None:
            return None
        brain = np.asarray(brain.data, bool)
    else:
        t = np.asarray(lr.data)
        brain = np.any(t != 0, axis=-1) & ~tensors.negligible(t)
    if not frame_judged(grid.bounding_box(brain), lr.voxel_size):  # a slab: tracks leave it
        return None
    found = gradient_scores(lr, brain, seeds=FRAME_SEEDS)
    key = found.suspect
    short = FRAME_SHORT_STEPS * float(np.mean(lr.voxel_size))
    if key is not None and found.ratio <= FRAME_NOISY_RATIO and found.scores[key] < short:
        return FRAME_NOISE  # said by no warning, and not "ok": the winner may be the real fault
    if key is None:
        if not found.judged:
            return None
        # noise ends the table as given's streamlines within a step: not "ok" (a review: 18 of 28 mirrored SNR-5
        # copies of the 8 subjects' inputs read ok, every candidate under 2 steps; clean tables run 20-31 mm)
        return FRAME_NOISE if found.scores["given"] < short else "ok"
    c = found.candidates[key]
    read = _("{given} mm as read with --tensor-order {order}") if order else _("{given} mm as read")
    # pieces (split at "; ") of at most PIECE_LIMIT characters, as a long warning is said over several lines
    # (methods/base.py warning_lines): as one line it had run to 685 characters after the file's name
    warnings.warn(lr.source + _("the tensors' directions look mirrored or turned on this grid, as a wrong gradient table "
                                "leaves them; {what}; fibres tracked with the directions corrected run {best} mm on "
                                "average, against {read}; every output direction follows the input's; if "
                                "the fit was given bvecs not flipped for a neurological-storage DWI, fit again from the "
                                "DWI with the right table; {iqt_fit} checks the table; if the file is in another tool's "
                                "frame (MRtrix's scanner frame reads with --tensor-order mrtrix), read it in its own "
                                "order; "
                                "--no-frame-check skips this check").format(
        what=c.what, best=f"{found.scores[key]:.1f}",
        read=read.format(given=f"{found.scores['given']:.1f}", order=order), iqt_fit="'iqt fit'"),
        IQTWarning, stacklevel=2)
    return key


def warn_frame_noise(lr: Volume) -> None:
    """One warning line where check_frame returned FRAME_NOISE: `iqt upsample` had said nothing, as on a clean table
    (a review; iqt batch's QC table shows the verdict instead)."""
    warnings.warn(lr.source + _("the gradient-table check could not decide, nor can a new fit of this DWI: noise ends "
                                "every table's tracked fibres in two voxels; {check}; --no-frame-check skips this "
                                "check").format(check=lines_check_text()), IQTWarning, stacklevel=2)


def check_tensor_input(vol: Volume, mask: Volume | None = None) -> None:
    """A method's input must be a finite tensor volume in mm^2/s that is mostly positive definite (inside the mask
    when one is given): otherwise every method would return a confident answer from nonsense."""
    if vol.kind != "tensor" or vol.data.ndim != 4 or vol.data.shape[3] != 6:
        raise IQTError(_("the input is not a diffusion tensor volume (shape {shape}); give a DTI volume (fit one from "
                         "DWIs with {iqt_fit})").format(shape=vol.data.shape, iqt_fit="'iqt fit'"))
    source = vol.source
    if not np.isfinite(vol.data).all():
        raise IQTError(source + _("the input tensors hold NaN/Inf values; replace them (0 outside the brain) and "
                                  "retry"))
    vol = _stored_zeros_empty(vol)
    where = None if mask is None else np.asarray(mask.data, bool)
    field = whole_field(vol)
    whole = where is None and field
    # a masked fit's negligible background read as none, as the methods read it: an int16 file's intercept can leave it
    # a few 1e-8 below zero, and as brain those voxels had refused a valid fit as sign-inverted (a tool-inputs audit:
    # 75 % of a training scan's int16 dipy fit)
    data = without_tiny_background(vol, field).data
    step = stored_step(vol)
    found = brain_within_box(vol) if whole else None  # a whole field's brain, as the support estimates it
    estimated = None if found is None else np.asarray(found.data, bool)
    try:  # the brain is the mask's voxels, or a tightly masked input's non-zero ones (not a whole field's)
        tensor_checks.check_scale(data, where, brain=not whole, brain_md=estimated_brain_md(vol, found) if whole else None,
                                  source=source, made_by=vol.meta.get("made_by"), inside=_estimated_brain(vol, where),
                                  estimated=estimated)
    except IQTError as exc:
        cause = tensor_checks.integer_cause(data, where, step, wrapped=vol.meta.get("wrapped", 0))
        raise IQTError(source + (cause or str(exc) + order_hint(vol, where, str(exc)))) from None
    # over the brain the engine estimates where no mask is given, as the scale check reads it
    warn_integer_step(data, where if where is not None else estimated, step, source)


def stored_step(vol: Volume) -> float:
    """The value of one stored integer of the file `vol` was read from (its scl_slope, mm^2/s; 1 for an integer file
    without one), 0 for a float file (fileio's readers record it)."""
    return float(vol.meta.get("step", 0.0) or 0.0)


def warn_integer_step(data: np.ndarray, where, step: float, source: str = "", what: str = "input") -> None:
    """An integer file's step said where it is coarse against the brain's tensors in `where` (tensor_checks
    .warn_coarse_step); nothing for a float file (`step` 0)."""
    if step > 0:
        tensor_checks.warn_coarse_step(tensor_checks.filled_in(data, where), step, source, what)


def _estimated_brain(vol: Volume, where) -> object:
    """For iqt upsample's output of a fit without a brain mask (kept to the brain estimated from the tensors' MD with
    the fits around it, as its header records) and no mask given: a callable giving that brain (brain_within_box), in
    which the negative-MD warning counts; None otherwise."""
    from ..dmri.dti import ESTIMATED_SUPPORT

    if where is not None or vol.meta.get("support") != ESTIMATED_SUPPORT:
        return None

    def brain():
        found = brain_within_box(vol)
        return np.ones(vol.shape3, bool) if found is None else np.asarray(found.data, bool)

    return brain


def _stored_zeros_empty(vol: Volume) -> Volume:
    """An integer file whose tensors are all negligible (a brain in m^2/s), or whose brain's tensors are far above
    any brain's in mm^2/s (um^2/ms, um^2/s: a typical largest |Dii| over OTHER_UNIT_DII), with its stored zeros, the
    intercept in all six elements (within 1.5 stored steps, as _one_fill reads them), made empty, as its float copy's
    zeros are: read as a whole field of rank-one tensors, an int16 ROI in m^2/s had been told 'pass --tensor-order
    mrtrix' where its float copy is told to multiply by 1e6 (a review), and tight fits in um^2/ms stored with
    nibabel's scaling 'only 18 % ... positive definite' or 'multiply them by 1e1' where 1e-3 is right. An empty or
    failed fit (nothing, or one floor tensor, beside the intercept) is left for the checks to name."""
    step = stored_step(vol)
    t = np.asarray(vol.data)
    filled = np.any(t != 0, axis=-1)
    if step <= 0 or not filled.any():
        return vol
    negligible = bool(tensors.negligible(t[filled]).all())
    ref, band = np.median(t[filled], axis=0), 1.5 * step
    # the median is no stored zero where it is not one value in all six elements, nor zero within its rounding (half
    # a step: a file without a scl_slope stores its zeros as 0, and its brain in um^2/ms, rounded, is as near its
    # median tensor as a stored zero is)
    if np.ptp(ref) > 1.5 * step or (not negligible and np.abs(ref).max() > tensor_checks.STORED_ZERO * step):
        if negligible:
            return vol
        # a whole field's brain and noise fits outnumber its zeroed air: the stored zeros are the voxels within half a
        # step of 0 (the dStream's unmasked x1,1,2 input in um^2/ms, int16 with nibabel's scaling, had been told
        # "only 0 % ... positive definite", its air's rounding read as tissue; docs/measurements.md)
        ref, band = np.zeros(t.shape[-1]), tensor_checks.STORED_ZERO * step
    fill = filled & (np.abs(t - ref) <= band).all(axis=-1)
    rest = filled & ~fill
    if not rest.any() or _one_fill(t[rest], step):  # an empty fit, or a failed one's floor: the checks name them
        return vol
    if not negligible and np.median(np.abs(t[rest][:, [0, 2, 5]]).max(axis=1)) <= OTHER_UNIT_DII:
        return vol  # a brain in mm^2/s: its background is the other checks' (without_tiny_background)
    return vol.replace(data=np.where(fill[..., None], 0, t).astype(t.dtype, copy=False))


# mm^2/s: a typical largest |Dii| no brain reaches in mm^2/s (about 1-3e-3), over which an integer file's brain is in
# another unit, to be refused as such (tensor_checks.check_scale reads a 99th percentile over 0.1 as a unit slip too)
OTHER_UNIT_DII = 0.1


def estimated_brain_md(vol: Volume, found=False) -> float | None:
    """The median MD of a whole-field fit's brain as the support estimates it (methods/base.py `support`; its filters
    are relative to the MD mode, so a scaled fit's brain is found as well), over its positive-definite fits: the
    scale check's figure, not the whole field's; None where no brain is found. On the 8 real subjects fitted unmasked
    0.72-1.02e-3, their brain masks' 0.71-0.90e-3 (docs/inputs.md, What is refused). `found`: brain_within_box(vol)
    where the caller has it."""

    brain = brain_within_box(vol) if found is False else found
    if brain is None:
        return None
    t = np.asarray(vol.data)[np.asarray(brain.data, bool)]
    md = tensors.md(t)
    fitted = (tensors.eigenvalues(t)[:, 0] > 0) & (md > tensors.NEGLIGIBLE)
    return float(np.median(md[fitted])) if fitted.any() else None


def order_hint(vol: Volume, where, message: str, option: str = "--tensor-order") -> str:
    """Where a 4D file read in one order is mostly not positive definite: the order that reads it, if one does
    (`option`: the flag that reads this file, e.g. evaluate's --truth-order); for a 5D file holding a 4D order's
    elements, that order and how to save the file so that it reads (a 5D file takes no such order)."""
    from ..fileio.volumes import order_shares

    if "positive definite" not in message:
        return ""
    shares = order_shares(vol, where)
    five_d = bool(vol.meta.get("five_d"))
    if five_d:  # its own order is lower-triangular (nifti, or dipy's frame): only a 4D order is another reading
        shares = {k: v for k, v in shares.items() if k in ("fsl", "mrtrix")}
    best = max(shares, key=shares.get) if shares else None
    if best is None or best == vol.meta.get("order") or shares[best] < 0.9:
        return ""
    if five_d:  # --tensor-order fsl or mrtrix is refused for a 5D file: say how to read it
        return (f"; read in {FOUR_D_TOOL[best]}'s element order, {100 * shares[best]:.0f} % of them are: a 5D file "
                f"holds its format's order, so save it as a 4D six-volume file (squeeze the fifth axis) and pass "
                f"{option} {best}")
    return f"; read with {option} {best}, {100 * shares[best]:.0f} % of them are"


FOUR_D_TOOL = {"fsl": "dtifit", "mrtrix": "dwi2tensor"}  # the tool whose 4D element order each --tensor-order reads


def mask_within_fit(lr: Volume, mask: Volume, before: Volume | None = None, said: np.ndarray | None = None) -> Volume:
    """A given mask cut to the voxels of a masked fit that hold a tensor, with one warning line counting those that hold
    none (a mask made by another tool, wider than the fit): read as brain, those zeros made the noise index choose
    another model, the output-scale check refuse every learned method, and tensors spread several voxels beyond the
    fit (docs/measurements.md, "A mask wider than the fit"). Small holes stay covered: the outputs reach one low-res
    voxel beyond the support. `before`: `lr` before its negligible tensors were zeroed, to tell a fit's floor apart.
    `said`: voxels of holes that a line of their own says (holes_said_apart), cut but left out of this line's count."""
    given = np.asarray(mask.data, bool)
    present = np.any(np.asarray(lr.data) != 0, axis=-1)
    empty = given & ~present
    if not empty.any():
        return mask
    cut = mask.replace(data=given & ~empty)
    if said is not None:  # one hole, one line: the holes' line (warn_holes) had been said beside this one's
        empty = empty & ~said
        if not empty.any():
            return cut
    n, total = int(empty.sum()), int(given.sum())
    # a mask on the output's grid is counted in its low-res blocks (methods/base.predict_within): said so, or a user
    # reading "of the mask's 60515 voxels" of a mask of 179k looks for another file (a low-field audit)
    whose = " on the input's grid (the high-res mask's blocks)" if mask.meta.get("reduced_from") else ""
    if n < total * EMPTY_IN_MASK:  # holes a fit leaves inside its own mask: cut out without a word
        return cut
    covered = float((given & present).sum() / present.sum())
    if n > total / 2 and covered < 0.5:  # mostly empty and missing most of the fit: another brain's or grid's mask
        line = _("{count} of the mask's {total} voxels on the input's grid (the high-res mask's blocks) hold no tensor "
                 "and it covers {share} % of the fitted ones: the mask is not on this input's brain; give the mask the "
                 "tensors were fitted in (or none: the input's non-zero voxels are then the brain)") if whose else \
            _("{count} of the mask's {total} voxels hold no tensor and it covers {share} % of the fitted ones: the mask "
              "is not on this input's brain; give the mask the tensors were fitted in (or none: the input's non-zero "
              "voxels are then the brain)")
        raise IQTError(lr.source + line.format(count=n, total=total, share=f"{100 * covered:.0f}"))
    # a very noisy scan's fit leaves its own mask's voxels without diffusion signal at the fit's floor, which reads as
    # no tensor: told apart, since the advice to give the fit's mask was given for that very mask (a cohort audit)
    floored = np.zeros_like(empty) if before is None else empty & np.any(np.asarray(before.data) != 0, axis=-1)
    floor = int(floored.sum())
    # holes enclosed by the fitted tensors, next to them, are failed fits inside the brain (dtifit leaves zeros where a
    # b0 is 0), not a mask wider than the fit: the advice to give the fit's mask was given for that very mask (an input
    # audit); the heart of a wider cavity (a fit made without the ventricles) stays beyond the fit
    near = ndimage.binary_dilation(present, structure=np.ones((3, 3, 3), bool))  # what the outputs fill: a voxel on
    unfit = empty & ~floored
    parts = ndimage.label(unfit, structure=np.ones((3, 3, 3), bool))[0]  # a gap is a hole or a cavity as a whole
    beyond = unfit & np.isin(parts, np.unique(parts[unfit & ~(ndimage.binary_fill_holes(present) & near)]))
    wider = int(beyond.sum()) >= total * EMPTY_IN_MASK  # beyond the fit, not its floor or holes alone: the advice stands
    holes = n - floor - int(beyond.sum())
    why = [(_("{count} of them hold tensors below {floor} mm^2/s, a fit's floor where a voxel has no diffusion "
              "signal") if wider or holes else
            _("{count} of them hold tensors below {floor} mm^2/s, a fit's floor where a voxel has no diffusion signal: "
              "a scan this noisy fills its own mask so")).format(count=floor, floor=f"{tensors.NEGLIGIBLE:g}")] \
        if floor else []
    edge = n - floor - holes  # beside a wider mask, a cavity's rim is no failed fit: holes are said only without one
    why += [(_("{count} of them are holes inside the fitted tensors, failed fits as a fit leaves where a voxel's b0 is "
               "0; {edge} beyond them") if edge else
             _("{count} of them are holes inside the fitted tensors, failed fits as a fit leaves where a voxel's b0 is "
               "0")).format(count=holes, edge=edge)] if holes and not wider else []
    why = f" ({'; '.join(why)})" if why else ""
    where = _("read as holes in the brain, which the outputs fill from the tensors around them") if holes and not wider \
        else _("the mask reaches beyond the fitted tensors, so the brain is taken as the mask's voxels that hold one "
               "(the outputs reach one low-res voxel beyond it)")
    if whose:
        line = _("{count} of the mask's {total} voxels on the input's grid (the high-res mask's blocks) ({share} %) hold "
                 "no tensor{why}: {where}; give the mask the tensors were fitted in to silence this") if wider else \
            _("{count} of the mask's {total} voxels on the input's grid (the high-res mask's blocks) ({share} %) hold no "
              "tensor{why}: {where}")
    else:
        line = _("{count} of the mask's {total} voxels ({share} %) hold no tensor{why}: {where}; give the mask the "
                 "tensors were fitted in to silence this") if wider else \
            _("{count} of the mask's {total} voxels ({share} %) hold no tensor{why}: {where}")
    warnings.warn(lr.source + line.format(count=n, total=total, share=f"{100 * n / total:.1f}", why=why, where=where),
                  IQTWarning, stacklevel=3)
    return cut


def holes_said_apart(lr: Volume, mask: Volume | None, missing: np.ndarray) -> np.ndarray | None:
    """The holes that enclosed_holes finds in `lr` within `mask` once its failed fits are dropped (drop_failed_fits):
    warn_holes says them, so the mask's line, said before the failed fits are dropped, leaves them out."""
    return enclosed_holes(failed_fits_zeroed(lr), mask, missing)


def failed_fits_zeroed(lr: Volume, failed: np.ndarray | None = None) -> Volume:
    """`lr` with its failed fits (`failed`, tensors.failed_fits where None) zeroed, in its own dtype: the input every
    method reads (drop_failed_fits) and the one the mask's line looks for holes in (holes_said_apart), one source so
    that the two cannot count different holes."""
    failed = tensors.failed_fits(lr.data) if failed is None else failed
    return lr.replace(data=np.where(failed[..., None], 0, lr.data).astype(np.asarray(lr.data).dtype))


MOSTLY_FAILED = 0.5  # the share of the brain's tensors beyond which the input is refused, not filled: real fits hold
# a few per cent (docs/measurements.md, "Failed fits in the input")


def diverged_fits(t: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """The `failed` fits of `t` with an eigenvalue above DIVERGED: no CSF's, whatever the failed-fit line says of them
    (a given mask's rim on a whole-field fit, GIVEN_RIM, says them at INFO)."""
    blown = np.zeros(failed.shape, bool)
    if failed.any():
        blown[failed] = tensors.eigenvalues(np.asarray(t)[failed]).max(axis=-1) > DIVERGED
    return blown


def csf_like_fits(t: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """The `failed` fits of `t` whose eigenvalues are finite, none below the plausible range and none above DIVERGED:
    CSF at the noise floor, whose clipped tensor is nearer the high-res reference than one filled from around it."""
    keep = np.zeros(failed.shape, bool)
    if failed.any():
        w = tensors.eigenvalues(np.asarray(t)[failed])
        keep[failed] = np.isfinite(w).all(-1) & (w.min(-1) >= tensors.PLAUSIBLE_RANGE[0]) & (w.max(-1) <= DIVERGED)
    return keep


def drop_failed_fits(lr: Volume, mask: Volume | None, where: str | None = None, refuse: bool = True,
                     estimated: bool = False, flagged: bool = False, clip_csf: bool = False):
    """A method's input with its failed fits (tensors.failed_fits) taken as missing: zero, filled from the nearest
    fits as the context beyond a tight mask is (methods/context.py), instead of clipped into bright, strongly
    anisotropic tensors that the method spreads into their neighbours (docs/measurements.md, "Failed fits in the
    input"). `clip_csf` (interpolation's): the CSF-like ones (csf_like_fits) are kept, clipped by the method as
    before, where filling took cubic about twice as far from the high-res reference. One line counts
    those inside the mask (or the support). With `refuse` and a mask, an input whose tensors there are mostly
    failed fits is refused (IQTError): not a fit of this brain in mm^2/s; a brain estimated from a whole-field fit,
    which keeps background fits around it, is not judged so (`estimated`: `mask` is that brain). `flagged`: also
    return the low-res voxels warned of (None where none), whose uncertainty the caller raises where it filled them
    (flags.flag_maps: filled from around, a cavity's had read as confident tissue, an audit) and counts for a
    cohort's QC table (interpolation's too, which makes no maps)."""
    failed = tensors.failed_fits(lr.data)
    unsure = None
    if not failed.any():
        return (lr, unsure) if flagged else lr
    where = _("the mask") if where is None else where
    inside = failed if mask is None else failed & np.asarray(mask.data, bool)
    if estimated and mask is not None:  # a cavity at the cortex is carved out of the estimate: looked for in its outline,
        # on thick slices only where the estimate surrounds it (that outline there bridges the background's fits)
        brain = np.asarray(mask.data, bool)
        inside = inside | _cavity(failed & closed_outline(brain), lr.voxel_size,
                                  None if outline_judged(lr.voxel_size) else brain)[1]
    refuse = refuse and mask is not None
    if inside.any():
        n = int(inside.sum())
        held = int((np.any(np.asarray(lr.data) != 0, axis=-1) & np.asarray(mask.data, bool)).sum()) if refuse else 0
        if refuse and n > MOSTLY_FAILED * held:  # not a fit of this brain: filling them would be made up from the rest
            raise IQTError(lr.source + _("{count} of the {total} tensors in {where} ({share} %) are failed fits (an "
                                         "eigenvalue outside {low} to {high} mm^2/s): the volume is not a diffusion "
                                         "tensor fit of this brain in mm^2/s; check its unit (brain MD about 0.7e-3 "
                                         "mm^2/s) and element order (--tensor-order), or fit it again from the DWI "
                                         "({iqt_fit})").format(iqt_fit="'iqt fit'", 
                count=n, total=held, where=where, share=f"{100 * n / held:.0f}", low=f"{tensors.PLAUSIBLE_RANGE[0]:g}",
                high=f"{tensors.PLAUSIBLE_RANGE[1]:g}"))
        cause, usual = _likely_cause(lr, inside, mask, estimated)
        if n == 1:
            line = _("{count} voxel in {where} holds a failed fit (an eigenvalue outside {low} to {high} mm^2/s); "
                     "interpolation fills it if outside {low} to {diverged} mm^2/s, else clips it; the learned "
                     "methods fill it from the nearest fits{cause}") if usual else \
                _("{count} voxel in {where} holds a failed fit (an eigenvalue outside {low} to {high} mm^2/s); "
                  "interpolation fills it if outside {low} to {diverged} mm^2/s, else clips it; the learned "
                  "methods fill it from the nearest fits; any uncertainty map raised to the top there{cause}")
        else:
            line = _("{count} voxels in {where} hold a failed fit (an eigenvalue outside {low} to {high} mm^2/s); "
                     "interpolation fills those outside {low} to {diverged} mm^2/s and clips the others; the "
                     "learned methods fill them from the nearest fits{cause}") if usual else \
                _("{count} voxels in {where} hold a failed fit (an eigenvalue outside {low} to {high} mm^2/s); "
                  "interpolation fills those outside {low} to {diverged} mm^2/s and clips the others; the "
                  "learned methods fill them from the nearest fits; any uncertainty map raised to the top there{cause}")
        line = lr.source + line.format(count=n, where=where, low=f"{tensors.PLAUSIBLE_RANGE[0]:g}",
                                       high=f"{tensors.PLAUSIBLE_RANGE[1]:g}", diverged=f"{DIVERGED:g}", cause=cause)
        if usual:  # what every clean scan holds: a warning on each had taught users to skip warnings (a review)
            log.info(line)
        else:
            warnings.warn(line, IQTWarning, stacklevel=3)
            unsure = inside
    lr = failed_fits_zeroed(lr, failed & ~csf_like_fits(lr.data, failed) if clip_csf else failed)
    return (lr, unsure) if flagged else lr


# voxels: without a mask, a hole counts where it reaches deeper than this inside the tensors' outline: a fit's rings of
# context round the brain (own-style inputs, methods/context.py CONTEXT_RINGS) enclose background where they close over
# a fold of it; the 8 subjects' clean own-style inputs (x2, x1,1,3, x3, two grid phases) hold 1-4 such components in 8
# of 48, at most 4.12 voxels deep, where the 3 mm dev scans' tight inputs at x2 are 6.08 deep, 6-7 % of them deeper
# than 4.5 (docs/measurements.md, "Holes in the tensors")
HOLE_DEPTH = 4.5


def _border_closed(a: np.ndarray, inset: int = 0) -> np.ndarray:
    """`a` padded by a voxel, each face of the field closed where `a` meets it (its slice there, eroded by `inset`
    voxels, holes filled): a brain cut by the field of view is closed by it there, its background beside the brain
    left open."""
    out = np.pad(np.asarray(a, bool), 1)
    for axis in range(3):
        for face, pad in ((1, 0), (-2, -1)):
            src, dst = [slice(1, -1)] * 3, [slice(1, -1)] * 3
            src[axis], dst[axis] = face, pad
            cut = out[tuple(src)]
            out[tuple(dst)] = ndimage.binary_fill_holes(ndimage.binary_erosion(cut, iterations=inset) if inset else cut)
    return out


def filled_at_border(a: np.ndarray, inset: int = 0) -> np.ndarray:
    """`a` with its holes filled in 3D, a field's face read as closed where `a` meets it (_border_closed): a hole
    against the field's first or last slice, inside a brain the field cuts there, had been read as open to the outside
    and gone untold (Testing/methods/test_holes.py)."""
    return ndimage.binary_fill_holes(_border_closed(a, inset))[1:-1, 1:-1, 1:-1]


def enclosed_holes(lr: Volume, mask: Volume | None, missing: np.ndarray) -> np.ndarray | None:
    """The low-res voxels of the holes in `lr`'s fitted tensors (its failed fits already zeroed: drop_failed_fits) that
    they enclose in 3D within `mask` (or anywhere, holding voxels of `mask`) and that hold a voxel with no tensor in
    the input as given (`missing`: all six elements zero): a lesion or a ventricle a fit's mask left out, which a
    learned method fills from around it with tissue it made up; None where there is none. Without a mask (`mask` None: a masked fit's non-zero voxels are the
    brain) a hole counts only where it reaches deeper than HOLE_DEPTH voxels inside the tensors' outline. Failed fits
    alone are the cavity rules' (_likely_cause), and a fit's floor (1e-9) is a tensor: the scattered ones every clean
    scan holds are no hole."""
    present = np.any(np.asarray(lr.data) != 0, axis=-1)
    tissue = present if mask is None else present & np.asarray(mask.data, bool)
    # without a mask a face is closed only inside the fit's rings of context: at the skull base they close over the
    # background between the lobes, in the 3 mm dev scans' clean own-style x3 inputs 16-30 voxels (docs/measurements.md)
    holes = filled_at_border(tissue, CONTEXT_RINGS if mask is None else 0) & ~tissue
    if mask is not None:  # a mask's voxels with no tensor that the fits enclose are a hole too: a whole-field
        # fit's hole at the cortex, which the scalp's fits close over; a masked fit's hole that a gap in the mask opens
        # (methods/base.py hands the mask as given, not cut to the fit); and one that the fits as given enclose, their
        # failed fits with them: a zeroed block in a shell of failed fits that reaches the brain's edge, which had been
        # said as a mask wider than the fit, given the fit's own mask (Testing/methods/test_holes.py)
        holes |= np.asarray(mask.data, bool) & missing & filled_at_border(~missing)
    held = holes & missing
    if mask is None and held.any():  # deeper than HOLE_DEPTH (a field's face counts as inside where the brain meets it)
        held &= ndimage.distance_transform_edt(_border_closed(holes | tissue))[1:-1, 1:-1, 1:-1] > HOLE_DEPTH
    if not held.any():
        return None
    parts, _ = ndimage.label(holes, structure=np.ones((3, 3, 3), bool))
    found = np.unique(parts[held])
    found = [k for k in found[found > 0] if not _face_pocket(parts, k)]
    return np.isin(parts, found) if found else None


def _face_pocket(parts: np.ndarray, k: int) -> bool:
    """Whether hole `k` of `parts` lies in a face slice of the field alone: _border_closed caps a face with that
    slice's outline filled in 2D, so a pocket of background enclosed only within the face slice (open beyond the cut)
    read as a hole; on clean fields cut across the brain these were 1-13 low-res voxels (docs/measurements.md)."""
    where = np.nonzero(parts == k)
    return any(n > 1 and w.min() == w.max() and w[0] in (0, n - 1) for w, n in zip(where, parts.shape))


def warn_holes(lr: Volume, holes: np.ndarray, failed: int = 0, told: bool = False) -> None:
    """One warning line counting the enclosed holes' voxels (enclosed_holes) and giving the largest hole's size: filled
    from around them, they had read as confident tissue without a word (a review). `failed`: how many of them are
    failed fits, which the failed-fit line counts too where `told` (drop_failed_fits): said, so the counts are not
    added."""
    parts = ndimage.label(holes, structure=np.ones((3, 3, 3), bool))[0]
    vv = float(np.prod(lr.voxel_size)) / 1000
    largest = int(np.bincount(parts.ravel())[1:].max()) * vv
    n = int(holes.sum())
    # not "inside the brain": a fit's mask a little wider than the brain can close its rings over the skull base's
    # background (a review: 1-22 low-res voxels on clean scans, outside the brain), where the filling is made up too
    if not failed:
        clause = ""
    elif told:
        clause = (_(", 1 of them failed fit (counted in the failed-fit line too)") if failed == 1 else
                  _(", {count} of them failed fits (counted in the failed-fit line too)").format(count=failed))
    else:
        clause = _(", 1 of them failed fit") if failed == 1 else _(", {count} of them failed fits").format(count=failed)
    # HOLE_SAID is in both templates: the tests find the line by it (Testing/methods/test_holes.py)
    line = (_("1 low-res voxel holds no tensor (a missing tensor or a failed fit) where the fitted tensors enclose it, "
               "{size} cm^3 in the largest hole{failed}: a lesion, ventricle or region left out of the fit's mask, or "
               "background a wide mask closed over? Every method, interpolation too, fills such holes from the tensors "
               "around them (a wide hole's core stays empty), every uncertainty map raised to the top there: look at "
               "the scan there") if n == 1 else
            _("{count} low-res voxels hold no tensor (a missing tensor or a failed fit) where the fitted tensors "
               "enclose them, {size} cm^3 in the largest hole{failed}: a lesion, ventricle or region left out of the "
               "fit's mask, or background a wide mask closed over? Every method, interpolation too, fills such holes "
               "from the tensors around them (a wide hole's core stays empty), every uncertainty map raised to the top "
               "there: look at the scan there"))
    warnings.warn(lr.source + line.format(count=n, size=f"{largest:.1f}", failed=clause), IQTWarning, stacklevel=3)


def warn_mask_holes(lr: Volume, mask: Volume, missing: np.ndarray) -> None:
    """One warning line where a given mask has holes inside the brain (enclosed in 3D: ventricles some tools leave
    out) whose voxels hold tensors beyond the outputs' reach of one low-res voxel (interpolation.output_support):
    every output is zero there, and had been without a word (a new lab's audit, its ventricles left out of the mask)."""
    given = np.asarray(mask.data, bool)
    reach = ndimage.binary_dilation(given, structure=np.ones((3, 3, 3), bool))
    zeroed = ndimage.binary_fill_holes(given) & ~reach & ~missing
    if not zeroed.any():
        return
    n = int(zeroed.sum())
    cm3 = n * float(np.prod(lr.voxel_size)) / 1000
    # the count is what the output loses, not the whole hole: its rim within one voxel of the mask is upsampled
    line = (_("the mask has holes inside the brain: the output is zero over 1 low-res voxel of them that holds a "
              "tensor (a hole's part more than one voxel from the mask; the rest is upsampled); fill the mask's holes "
              "(or give none) to upsample it")
            if n == 1 else
            _("the mask has holes inside the brain: the output is zero over {count} low-res voxels of them ({size} "
              "cm^3) that hold tensors (each hole's part more than one voxel from the mask; the rest is upsampled); "
              "fill the mask's holes (or give none) to upsample them"))
    warnings.warn(lr.source + line.format(count=n, size=f"{cm3:.1f}"), IQTWarning, stacklevel=3)


MASK_HOLES_SAID = "the mask has holes inside the brain"  # the line, as the tests find it in said warnings


HOLE_SAID = "cm^3 in the largest hole"  # the holes' line, as the tests find it in said warnings


NOISY_CONTEXT = 0.5  # share of the tensors beyond a given mask that are not physical, above which it is said
NOISY_CONTEXT_MIN = 50  # voxels of that band, fewer and nothing is said


def warn_noisy_context(lr: Volume, mask: Volume) -> None:
    """One warning where most tensors within CONTEXT_RINGS voxels beyond a given mask are not physical (a negative
    eigenvalue or a failed fit: noise, not tissue): every method reads them as the brain edge's context, and they had
    moved a dev scan's results near the edge without a word (a tool-inputs audit: cubic's exterior DT-RMSE 20.65 ->
    22.89); zeroed, they are filled from the brain's edge (methods/context.py)."""
    inside = np.asarray(mask.data, bool)
    band = ndimage.binary_dilation(inside, iterations=CONTEXT_RINGS) & ~inside & np.any(np.asarray(lr.data) != 0, axis=-1)
    m = int(band.sum())
    if m < NOISY_CONTEXT_MIN:
        return
    t = np.asarray(lr.data)[band]
    n = int(((tensors.distance_to_physical(t) > 0) | tensors.failed_fits(t)).sum())
    if n > NOISY_CONTEXT * m:
        warnings.warn(lr.source + _("{count} of the {total} tensors within {rings} voxels beyond the mask ({share} %) "
                                     "are not physical (a negative eigenvalue or a failed fit: noise, not tissue): every "
                                     "method reads them as the brain edge's context and its outputs near the edge follow "
                                     "them; zero the tensors outside the mask (e.g. {fslmaths}), which the "
                                     "methods then fill from the brain's edge").format(
            count=n, total=m, rings=CONTEXT_RINGS, share=f"{100 * n / m:.0f}", fslmaths="fslmaths DTI -mas MASK"),
            IQTWarning, stacklevel=3)


# share of a given mask's voxels outside the brain estimated from a whole-field input's tensors (which keeps scalp and the
# fits around the brain) above which the mask is said to be another scan's, or one far beyond the brain: each of the 8
# real subjects' own masks, fitted unmasked, 0-0.04 %; shifted by 20 mm along an axis 0-7.8 % (5 of 48 above it), by
# 40 mm 0-29 % (27 of 48), another subject's mask placed by world position 0-56 % (33 of 56); own masks dilated by 3
# voxels 0-5.5 % (1 of 8), the brain's bounding box 3.8-25 % (6 of 8; docs/measurements.md, A mask beyond the estimated brain)
MASK_OFF_HEAD = 0.05
MASK_OFF_HEAD_MIN = 50  # voxels of the mask outside it, fewer and nothing is said


def warn_mask_off_head(lr: Volume, mask: Volume) -> None:
    """One warning naming both files where a mask given with a whole-field input lies partly on the background beyond
    the head its tensors show: another subject's mask, or one shifted, had run without a word (a review), every
    method then answering from noise there. Not where that head is too small to read the noise index in (a fit mostly
    of noise, b0 SNR 1-2): it had called the scan's own mask 56-85 % off the head after the unreadable index's line
    (methods/base.py) sent the user to give it (a review); on a noisy scan whose index reads, the mask is read against
    that head's closed outline (closed_outline: the 3 mm dev scans' own masks at b0 SNR 5, 5.2 and 6.5 % beyond the
    head, had been called another scan's; docs/measurements.md) and the line says the head estimate shrinks with the noise
    (the scan's own mask is still called a wrong one at b0 SNR 1-3, a review)."""
    brain = brain_within_box(lr)
    index = None if brain is None else input_noise_index(lr, np.asarray(brain.data, bool), True, brain.meta.get("md_unit"))
    if index is None:
        return
    inside = np.asarray(mask.data, bool)
    head = np.asarray(brain.data, bool)
    if index > noise_level.NOISY_INPUT:  # the noise pits that head's edge: its outline, closed, is read (docs/measurements.md)
        head = closed_outline(head)
    n = int((inside & ~head).sum())
    total = int(inside.sum())
    if n >= MASK_OFF_HEAD_MIN and n > MASK_OFF_HEAD * total:
        named = mask.meta.get("path") or "the mask"
        # a mask on the output's grid is counted as reduced to the input's (a review: "of the 33053 voxels of" a file
        # of 264,424)
        # a noisy scan's head estimate shrinks with the noise, no outline tried kept up with it at b0 SNR 3 and below, so
        # its own mask can read beyond it (the 3 mm ortho dev scan's: 6.5 % at SNR 5, 56 % at 3; docs/measurements.md)
        # said without a figure: its own noise index, read in that shrunk head, had stood beside the noise line's other
        # one (0.17 and 0.161), and the advice had been to give the very mask given (a review)
        give = _("On a scan this noisy the noise also shrinks that head: if it is this scan's own brain mask, keep it; "
                 "if not, {give_own}").format(give_own=option("give this scan's own")) \
            if index > noise_level.NOISY_INPUT else option("Give this scan's own brain mask")
        line = _("{count} of the {total} input-grid voxels that {mask} covers ({share} %) lie beyond the head its "
                 "tensors show (the background's noise fits, where every method's output is noise): a mask made from "
                 "another scan, shifted, or reaching well beyond the brain (dilated, a box)? {give} ({iqt_mask}, "
                 "{iqt_degrade}), or none") if "reduced_from" in mask.meta else \
            _("{count} of the {total} voxels of {mask} ({share} %) lie beyond the head its tensors show (the "
              "background's noise fits, where every method's output is noise): a mask made from another scan, "
              "shifted, or reaching well beyond the brain (dilated, a box)? {give} ({iqt_mask}, {iqt_degrade}), "
              "or none")
        # one decimal: the rule is over 5 %, which "(5 %)" had said of 5.5 %
        warnings.warn(lr.source + line.format(count=n, total=total, mask=named, share=f"{100 * n / total:.1f}",
                                              give=give, iqt_mask="'iqt mask'", iqt_degrade="'iqt degrade --mask-out'"),
                      IQTWarning, stacklevel=3)


# share of the mask's voxels up to which failed fits that diffuse faster than free water, in a brain of in-vivo MD, are
# what every clean scan holds (CSF at the noise floor) and are filled without a line (logging's INFO only): the 8 real
# subjects' own fits ('iqt fit') hold 0-0.234 % of their masks, full-resolution OLS fits of them 0.003-0.459 %, their
# 'iqt degrade' inputs (every style, clean and at --snr 5) 0-0.008 %, the unmasked ones in the brain estimated without
# --mask 0-0.460 %; ols ones with a negative eigenvalue are warned (docs/measurements.md, "Failed fits in the input")
USUAL_FAILED = 0.01
# and their largest 26-connected cluster up to this many cm^3: the same inputs' largest is 1.56 cm^3 (204 voxels of the
# 1.75x2.5 mm Achieva's full-resolution OLS fit; 0.70 cm^3 in its own fit), where a cavity or cyst at the noise floor
# (a 6x6x6 block of a 3 mm scan: 5.8 cm^3) is a finding, not CSF's scatter; an estimated brain's is read in its core
# (noise_level.estimated_core), its rim holding background fits (none in the cores of the 8 subjects' unmasked inputs)
USUAL_FAILED_CLUSTER_CM3 = 3.0
# a cluster holding a 2x2x2 block of failed fits (a cavity, not CSF's scatter) over this many cm^3 is a finding too, in
# the mask or, without one, anywhere in the estimated brain's outline (closed_outline: a cavity at the cortex is carved
# out of the estimate, and its rim had hidden it): none of the real inputs above holds one over 0.70 cm^3 (full-res
# OLS fits none at all, their 1.56 cm^3 cluster a sheet; the estimated brains' outlines none), where a 2 cm^3 cyst at
# 2-4 mm voxels holds one (docs/measurements.md, "Failed fits in the input")
CAVITY_CM3 = 1.0
# mm^2/s: a failed fit with an eigenvalue above this is a fit that diverged, not CSF at the noise floor, and is warned
# of however few: in the 8 real subjects' masks the failed fits of their own fits reach 0.039 mm^2/s, of dipy OLS fits
# 0.024, of their degraded inputs 0.0099, where dipy WLS fits of 4 of them hold blow-ups of 0.52 to 1139 mm^2/s
# (docs/measurements.md, "Failed fits in the input")
DIVERGED = 0.1
# voxels: a given mask on a whole-field fit is judged for fits that diverged this far inside its edge, within the fits
# that look like tissue: the 8 subjects' whole-field fits (native, x2, x1,1,2) given their brain mask dilated by 1, 2
# and 4 voxels had held the background's in 7, 12 and 13 of 56 runs, 0, 0 and 9 so; the brain mask's 3+ voxels deep
# at least 99.6 % judged, its own diverged fits (all 1-3 voxels deep) 2 of 11 (docs/measurements.md)
GIVEN_RIM = 2
OUTLINE_CLOSING = 4  # voxels: a brain estimated from the tensors closed so, its holes filled (closed_outline)
# the outline is searched for any cavity only on voxels this near to isotropic: on thick slices (x1,1,2 and x1,1,3) its
# closing bridges 16-24 mm of background along the slice axis, and the clean Elition's and dStream's whole-field fits
# held a 1.3-5.6 cm^3 "cavity" there, none of it in their brain masks (a review); a closing of 12 mm per axis still
# left 1.8-4.8 cm^3 of them (docs/measurements.md, "Failed fits in the input")
OUTLINE_ANISOTROPY = 1.5
# on thicker slices a cavity in the outline counts where at least this share of the voxels around it (its 26-neighbours)
# lie in the estimated brain: a cavity carved out at the cortex is mostly surrounded by it (0.82-1.00 for balls of 2-6
# cm^3 at the cortex of the 8 subjects' x1,1,2 and x1,1,3 inputs), the background's bridged clusters are not (0.20-0.59)
ENCLOSED = 0.7
# voxels of this many mm^3 or more (5.4-9 mm: the x2 inputs of 2.7-3 mm scans, x3 of any) are coarse: a 2-2.5 cm^3
# cyst is 7-19 of them, often without a 2x2x2 block (a ball centred on a voxel is 7 at 6 mm, a voxel and its six
# faces), so a cluster holding a 2x2x1 block or a voxel with its six faces failed counts there too, over
# COARSE_CAVITY_CM3: the clean real inputs' largest such cluster is 1.30 cm^3 (6 voxels, the dStream's unmasked x2
# input in its estimated brain), none within a mask (docs/measurements.md, "Failed fits in the input")
COARSE_VOXEL_MM3 = 150.0
COARSE_CAVITY_CM3 = 1.4
# on thick slices without a mask, a cluster holding a block 2x2 in-plane and one slice thick counts where every voxel
# around it lies in the brain estimated from the tensors: 1.1-2.8 cm^3 cysts in six subjects' unmasked x1,1,3 inputs
# (deep and at the cortex) had gone untold; on the clean unmasked and unmasked-ols x1,1,2 and x1,1,3 inputs (two grid
# phases) and the unmasked ones at --snr 5, such clusters over CAVITY_CM3 (the dStream's background, 2.0-2.4 cm^3) are
# at most 0.74 surrounded, those wholly surrounded at most 0.19 cm^3 (docs/measurements.md, "Holes in the tensors")
SLAB_ENCLOSED = 1.0


def outline_judged(voxel_size) -> bool:
    """Whether closed_outline is searched for any cavity on voxels of this size (mm), not only for those the estimated
    brain surrounds (ENCLOSED): near-isotropic ones only."""
    v = np.asarray(voxel_size, float)
    return float(v.max() / v.min()) <= OUTLINE_ANISOTROPY


def closed_outline(brain: np.ndarray, k: int = OUTLINE_CLOSING) -> np.ndarray:
    """`brain` closed by `k` voxels (the field's border read as open) with its holes filled, in 3D and within each
    slice: a brain estimated from noisy or damaged tensors loses the voxels whose fits failed, at its edge too, and
    this outline puts them back (a cavity against the field's border, where the head is cut, is a hole only in its
    slice: the 3 mm ortho and dStream inputs' cortical cubes)."""
    padded = ndimage.binary_closing(np.pad(np.asarray(brain, bool), k), iterations=k)
    return fill_slice_holes(ndimage.binary_fill_holes(padded)[k:-k, k:-k, k:-k] | brain)


def _cavity(failed: np.ndarray, voxel_size, brain: np.ndarray | None = None,
            masked: bool = False, coarse_in: np.ndarray | None = None,
            enclosed_by: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """(cm^3, voxels) of the largest 26-connected cluster of `failed` that holds a 2x2x2 block of them (on coarse
    voxels, COARSE_VOXEL_MM3, also one over COARSE_CAVITY_CM3 holding a 2x2x1 block or a voxel failed on all six
    faces): a cavity's shape, where CSF's failed fits scatter in sheets a voxel or two thick (empty where there is
    none). `brain`: only clusters it surrounds (ENCLOSED) count. `masked` (a brain mask given, not estimated), on thick
    slices (not outline_judged): a block one slice thick counts too, a 2-2.5 cm^3 cyst on 7.5-9 mm slices holding no
    2x2x2 one; the 8 subjects' x1,1,2 and x1,1,3 inputs hold at most 0.16 cm^3 of such clusters in their own masks,
    but 2.0-2.2 cm^3 of the background's in the brains estimated from the dStream's (docs/measurements.md).
    `coarse_in`: coarse clusters count only where they lie wholly in it (an estimated brain's core and what is carved
    out of it: its rim's background fits held 1.5-2.4 cm^3 such clusters at other crop phases of the clean dStream's
    unmasked x2 input) or where each of their 26-neighbours lies in `enclosed_by` (that brain): a cyst at the cortex of
    coarse voxels reaches into the rim, and had gone untold without --mask. On thick slices a cluster holding a block
    one slice thick counts where each of its 26-neighbours lies in `enclosed_by` too (SLAB_ENCLOSED)."""
    vv = float(np.prod(voxel_size)) / 1000
    solid = ndimage.binary_erosion(failed, np.ones((2, 2, 2), bool))
    coarse = np.zeros_like(solid)
    if vv * 1000 >= COARSE_VOXEL_MM3:
        for shape in ((2, 2, 1), (2, 1, 2), (1, 2, 2)):
            coarse |= ndimage.binary_erosion(failed, np.ones(shape, bool))
        coarse |= ndimage.binary_erosion(failed, ndimage.generate_binary_structure(3, 1))
    slab = np.zeros_like(solid)
    if not outline_judged(voxel_size) and (masked or enclosed_by is not None):  # thick slices: a block one slice thick
        shape = [2, 2, 2]
        shape[int(np.argmax(voxel_size))] = 1
        slab = ndimage.binary_erosion(failed, np.ones(shape, bool))
        if masked:
            solid, slab = solid | slab, np.zeros_like(slab)
    if not (solid.any() or coarse.any() or slab.any()):
        return 0.0, np.zeros(failed.shape, bool)
    parts, _ = ndimage.label(failed, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(parts.ravel())
    if slab.any():  # in a brain estimated from the tensors only with its every neighbour in it (SLAB_ENCLOSED)
        boxes = ndimage.find_objects(parts)
        solid = solid | np.isin(parts, [p for p in np.unique(parts[slab]) if p and
                                        _surrounded(parts, p, boxes[p - 1], enclosed_by) >= SLAB_ENCLOSED])
    big = [p for p in np.unique(parts[coarse]) if sizes[p] * vv > COARSE_CAVITY_CM3]
    if coarse_in is not None and big:  # wholly within it: no voxel of the cluster outside ...
        outside = np.bincount(parts[~np.asarray(coarse_in, bool)].ravel(), minlength=sizes.size)
        # ... or with its every neighbour in `enclosed_by`: a cyst at the cortex reaches into an estimated brain's rim,
        # the background's clusters there touch its edge
        boxes = ndimage.find_objects(parts) if enclosed_by is not None else None
        big = [p for p in big if outside[p] == 0 or
               (boxes is not None and _surrounded(parts, p, boxes[p - 1], enclosed_by) == 1.0)]
    held = np.union1d(np.unique(parts[solid]), big)
    held = held[held > 0].astype(int)
    if brain is not None:  # the share of each cluster's 26-neighbours in the brain, read in its box grown by a voxel
        boxes = ndimage.find_objects(parts)
        held = np.array([p for p in held if _surrounded(parts, p, boxes[p - 1], brain) >= ENCLOSED], int)
    if not held.size:
        return 0.0, np.zeros(failed.shape, bool)
    best = int(held[np.argmax(sizes[held])])
    return float(sizes[best]) * vv, parts == best


def _surrounded(parts: np.ndarray, label: int, box: tuple, brain: np.ndarray) -> float:
    """The share of cluster `label`'s 26-neighbours (within the field) that lie in `brain`."""
    box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
    it = parts[box] == label
    shell = ndimage.binary_dilation(it, np.ones((3, 3, 3), bool)) & ~it
    return float((shell & brain[box]).sum() / max(int(shell.sum()), 1))


def _given_core(lr: Volume, mask: Volume) -> np.ndarray:
    """Where a given `mask` on a whole-field fit holds the brain, not the background's fits a generous mask reaches:
    its voxels, holes filled, over GIVEN_RIM voxels from its edge (the field's border is none: a brain the field cuts),
    within the fits that look like tissue (dti.tissue_core) where those hold at least half of them."""
    inner = ndimage.distance_transform_edt(ndimage.binary_fill_holes(np.asarray(mask.data, bool))) > GIVEN_RIM
    core = tissue_core(np.asarray(lr.data))
    if core is not None and np.count_nonzero(inner & core) >= 0.5 * np.count_nonzero(inner):
        inner &= core
    return inner


def _likely_cause(lr: Volume, failed: np.ndarray, mask: Volume | None, estimated: bool = False) -> tuple[str, bool]:
    """(Where most failed fits diffuse faster than free water, their usual cause, so that they are not read as a fault
    in the data (an input audit: 27 in the 3 mm dev scan's own fit, its CSF at b=2000); whether they are what every
    clean scan holds: that cause, none below the plausible range nor above DIVERGED, an in-vivo brain MD, at most
    USUAL_FAILED of the mask (or of the fitted voxels), no cluster over USUAL_FAILED_CLUSTER_CM3 and no cavity over
    CAVITY_CM3 (a lesion-sized block had been filled as tissue without a word, a review), whose size the line then
    says)."""
    t = np.asarray(lr.data)
    w = tensors.eigenvalues(t[failed])
    too_fast = w.max(axis=-1) > tensors.PLAUSIBLE_RANGE[1]
    if too_fast.mean() < 0.5:
        return "", False
    brain = np.any(t != 0, axis=-1) & (True if mask is None else np.asarray(mask.data, bool))
    judged = failed
    if estimated and mask is not None:  # its rim keeps the background's fits around the brain: judged in its core
        core = noise_level.estimated_core(lr.voxel_size)  # a box's erosion, as separable minima (fast)
        inner = ndimage.minimum_filter(np.asarray(mask.data, bool), size=tuple(2 * c + 1 for c in core), mode="constant",
                                       cval=False)
        judged = failed & inner
    few = failed.sum() <= USUAL_FAILED * (np.count_nonzero(mask.data) if mask is not None else np.count_nonzero(brain))
    largest = 0.0
    if judged.any():
        parts = ndimage.label(judged, structure=np.ones((3, 3, 3), bool))[0]
        largest = int(np.bincount(parts.ravel())[1:].max()) * float(np.prod(lr.voxel_size)) / 1000
        few = few and not np.any(tensors.eigenvalues(t[judged]).min(axis=-1) < tensors.PLAUSIBLE_RANGE[0])
    # a given mask's one-slice blocks not where it leaves out part of a whole-field input: such a wider (dilated) mask
    # had held its background's, 1.5 cm^3 of the clean Elition's x1,1,3 within its own mask dilated by 5 (a review)
    # counted there only where the mask surrounds them (SLAB_ENCLOSED), as in a brain estimated from the tensors: a
    # one-slice cyst in a whole-field fit given its brain mask had gone untold (Testing/methods/test_failed_fits.py)
    wider = mask is not None and np.any(np.any(t != 0, axis=-1) & ~np.asarray(mask.data, bool)) and whole_field(lr)
    cavity = _cavity(failed, lr.voxel_size, masked=not estimated and not wider,
                     coarse_in=inner | ~np.asarray(mask.data, bool) if estimated and mask is not None else None,
                     enclosed_by=np.asarray(mask.data, bool) if (estimated or wider) and mask is not None else None)[0]
    big = max(largest if largest > USUAL_FAILED_CLUSTER_CM3 else 0.0, cavity if cavity > CAVITY_CM3 else 0.0)
    few = few and not big
    # the cluster's size said: the learned methods fill it with tissue made up from around it, which reads as brain
    # each piece one marked sentence (CLUSTER_SAID's words in it, read by iqt batch's QC in English)
    cluster = "; " + _("{size} cm^3 of them in one cluster, a lesion's or a failed region's size: look at the scan "
                       "there").format(size=f"{big:.1f}") if big else ""
    # a fit that diverged is no CSF's: said, however few (a dipy fit's 1.7 mm^2/s had been logged at INFO only); in an
    # estimated brain's core, as clusters are: its rim's background fits diverge in every clean whole-field fit
    # so in a given mask on a whole-field fit that reaches beyond it (`wider`): a generous mask's rim holds the
    # background's (a brain mask dilated by 1-4 voxels had warned 13 runs of the 8 subjects with none in the brain mask)
    blown = diverged_fits(t, judged)
    if wider and not estimated and blown.any():  # only where it matters: the fits' core costs 2 s on a native field
        blown &= _given_core(lr, mask)
    diverged = int(blown.sum())
    few = few and not diverged
    cluster += "; " + _("{count} of them with an eigenvalue above {limit} mm^2/s, more than any signal's decay gives: "
                        "the fit diverged there").format(count=diverged, limit=f"{DIVERGED:g}") if diverged else ""
    md = float(np.median(tensors.md(t[brain]))) if brain.any() else 0.0
    # the diverged ones are no CSF's: the clauses that say the others' cause count those up to DIVERGED only
    too_fast = too_fast & (w.max(axis=-1) <= DIVERGED)
    every, count = too_fast.all(), int(too_fast.sum())
    if not count:  # every one that diffuses faster than free water diverged: the diverged clause alone
        return cluster, few
    if md > tensor_checks.IN_VIVO_MD[1]:  # the whole brain diffuses too fast: its scale's (check_scale's warning), not CSF's
        return "; " + (_("all of them diffuse faster than free water, as the brain's median MD {md}e-3 mm^2/s, above an "
                         "in-vivo brain's, makes them: not CSF's noise floor{cluster}") if every else
                       _("{count} of them diffuse faster than free water, as the brain's median MD {md}e-3 mm^2/s, above "
                         "an in-vivo brain's, makes them: not CSF's noise floor{cluster}")).format(
            count=count, md=f"{md * 1e3:.2g}", cluster=cluster), False
    if few:
        return "; " + (_("all of them diffuse faster than free water, as CSF does where its diffusion-weighted signal "
                         "sinks to the noise floor (usual in a few voxels)") if every else
                       _("{count} of them diffuse faster than free water, as CSF does where its diffusion-weighted "
                         "signal sinks to the noise floor (usual in a few voxels)")).format(count=count), few
    return "; " + (_("all of them diffuse faster than free water, as CSF does where its diffusion-weighted signal sinks "
                     "to the noise floor{cluster}") if every else
                   _("{count} of them diffuse faster than free water, as CSF does where its diffusion-weighted signal "
                     "sinks to the noise floor{cluster}")).format(count=count, cluster=cluster), few


CLUSTER_SAID = "cm^3 of them in one cluster"  # the failed-fit line's cavity, as iqt batch's QC reads it (apps/batch/qc.py)


def clip_input(lr: np.ndarray) -> np.ndarray:
    """Method inputs get eigenvalues clipped to [0, 4e-3] mm^2/s (docs/conventions.md, Degradation)."""
    return tensors.clip_eigenvalues(lr, *tensors.INPUT_CLIP)


def filled_box(lr: Volume, mask: Volume | None) -> tuple | None:
    """The box of `lr`'s non-empty voxels (and `mask`'s), where planes at the field's edge hold nothing; None where
    it is the whole field."""
    inside = np.any(np.asarray(lr.data) != 0, axis=-1)
    if mask is not None:
        inside = inside | np.asarray(mask.data, bool)
    box = grid.bounding_box(inside)
    if box is None or all(b.start == 0 and b.stop == n for b, n in zip(box, inside.shape)):
        return None
    return box


def brain_within_box(lr: Volume) -> Volume | None:
    """brain_from_tensors of `lr` read inside the box of its non-empty voxels, empty outside it: planes at the field's
    edge that hold nothing (a resample's padding, zeroed end slices) change neither the estimate nor its share (its
    filters read the field's border as they would without them)."""
    box = filled_box(lr, None)
    if box is None:
        return brain_from_tensors(lr)
    brain = brain_from_tensors(Volume(np.ascontiguousarray(np.asarray(lr.data)[box]), grid.box_affine(lr.affine, box),
                                      "tensor"))
    if brain is None:
        return None
    full = np.zeros(lr.shape3, bool)
    full[box] = brain.data
    return Volume(full, lr.affine, "mask", meta=dict(brain.meta))
