"""Checks of the tensors a command reads, and their wording: voxels with NaN in every element read as missing
(`nan_as_empty`, whose warning ends with what becomes of them: `missing_read_as`, MISSING_AS_*), and the refusal of
volumes that are not a fit in mm^2/s or in this project's element order (`check_scale`). The algebra they use is in
core.tensors.
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np

from . import tensors
from .i18n import _, option
from .tensors import TISSUE_RANGE, eigenvalues, failed_fits, md_mode_of


# What becomes of the voxels nan_as_empty reads as missing, the second half of its warning: as a method's input (the
# default: upsample, report, view, propagate, batch), as iqt track's input (analysis/tractography.py: an empty tensor
# has FA 0, where a streamline stops), and as iqt evaluate's prediction or reference (analysis/evaluation.py: a zero
# prediction is scored as a zero tensor, covered only by the uncertainty figures; a voxel with no reference tensor is
# left out of every figure and counted as n_no_reference)
# interpolation too fills them (methods/context.py), as it fills the context beyond a tight mask: the line had said
# "interpolation takes them as zero" (a tool-inputs audit)
MISSING_AS_INPUT = "every method fills such voxels, up to two voxels deep, from the nearest fits"
MISSING_AS_TRACKED = "tracking reads them as empty (FA 0): streamlines stop at them"
MISSING_AS_PREDICTION = ("the error figures score them as a zero tensor (the whole reference tensor counts as error) "
                         "and the uncertainty figures leave them out")
MISSING_AS_REFERENCE = "they are left out of every figure and counted (n_no_reference)"


_MISSING_FATE = contextvars.ContextVar("iqt_missing_fate", default=MISSING_AS_INPUT)


def missing_fate_text(fate: str) -> str:
    """`fate` (one of MISSING_AS_*) in the user's language (core/i18n.py); another text as it is."""
    return {MISSING_AS_INPUT: _("every method fills such voxels, up to two voxels deep, from the nearest fits"),
            MISSING_AS_TRACKED: _("tracking reads them as empty (FA 0): streamlines stop at them"),
            MISSING_AS_PREDICTION: _("the error figures score them as a zero tensor (the whole reference tensor counts "
                                     "as error) and the uncertainty figures leave them out"),
            MISSING_AS_REFERENCE: _("they are left out of every figure and counted (n_no_reference)")}.get(fate, fate)


@contextlib.contextmanager
def missing_read_as(fate: str):
    """A context within which the files read say `fate` of their missing voxels (nan_as_empty's warning, through
    whichever reader: NIfTI, NRRD): `with tensor_checks.missing_read_as(tensor_checks.MISSING_AS_PREDICTION): load_tensor(...)`."""
    token = _MISSING_FATE.set(fate)
    try:
        yield
    finally:
        _MISSING_FATE.reset(token)


def nan_as_empty(t: np.ndarray, source: str = "", fate: str | None = None) -> np.ndarray:
    """Voxels whose six elements are all NaN, as some tools write the background, read as empty (zero), the way this
    project writes it; any other NaN or Inf stays for the caller to refuse. Such voxels enclosed by tensors (failed
    fits written as NaN, not a background) are said in one warning line (`source`: the file, for it), which ends with
    what becomes of them: `fate`, or the one `missing_read_as` set around the read (MISSING_AS_INPUT by default)."""
    empty = np.isnan(t).all(axis=-1)
    if not empty.any():
        return t
    from scipy import ndimage

    n = int((empty & ndimage.binary_fill_holes(~empty)).sum())
    # where other NaN or Inf remain the caller refuses the file: its refusal is then the one line (a warning had come
    # first: a tool-inputs audit)
    if n and np.isfinite(t[~empty]).all():
        import warnings

        from .errors import IQTWarning

        line = _("{count} voxel inside the tensors holds NaN in every element (failed fits, or holes in the mask the "
                 "fit was made in): read as missing (zero); {fate}") if n == 1 else \
            _("{count} voxels inside the tensors hold NaN in every element (failed fits, or holes in the mask the fit "
              "was made in): read as missing (zero); {fate}")
        warnings.warn(source + line.format(count=n, fate=missing_fate_text(_MISSING_FATE.get() if fate is None else fate)),
                      IQTWarning, stacklevel=3)
    return np.where(empty[..., None], 0, t)


# share of the brain's median MD above which an integer file's stored step (its scl_slope) is said: on the 3 mm ortho
# and sag AP dev scans at x2 a step of 3.6 % of it cost the methods' interior error at most 0.45 %, 10 % cost deep
# +3.2 % and 18.9 % +13.5 % (docs/measurements.md, "Tensors stored as integers")
COARSE_STEP = 0.10
# a brain whose typical voxel's largest diagonal element is under this many steps (a step over a tenth of it, as
# COARSE_STEP) is read wrong for its step: a refusal of its scale or sign names the step, not a unit or an element
# order (an unmasked x1,1,2 Achieva input at a step of 25 % of the MD had been told its unit was wrong)
FEW_STEPS = 10.0
# under this many, a passing file's rounded brain's MD is the step's, not the brain's: its warning says no share
NO_SHARE_STEPS = 3.0
# an integer file is said to be clipped where more than SATURATED_VOXELS voxels hold its type's largest or smallest
# value and that value stands for a tissue-like element (at most SATURATED_VALUE mm^2/s): a fixed step of 1e-7 ends
# int16 at 3.3e-3 (166-53,041 voxels of the dipy fits of three subjects), where nibabel's automatic scaling leaves at
# most 4 voxels at its ends, or failed fits' values, and a clean Achieva x1,1,2 input's ceiling 12
# (docs/measurements.md, "Tensors stored as integers")
SATURATED_VOXELS = 100
SATURATED_VALUE = 0.01


def brain_median_md(brain: np.ndarray) -> float | None:
    """The median MD of a brain's tensors `brain` (n, 6) whose MD lies in TISSUE_RANGE (failed fits left out)."""
    md = tensors.md(np.asarray(brain, np.float64))
    md = md[(md >= TISSUE_RANGE[0]) & (md <= TISSUE_RANGE[1])]
    return float(np.median(md)) if md.size else None


def rounds_to_few_steps(brain: np.ndarray, step: float, few: float = FEW_STEPS, largest=(0, 2, 5)) -> bool:
    """Whether the brain's tensors `brain` (n, 6) are a few stored steps each (their median largest |Dii| under
    FEW_STEPS of `step`): an integer file whose step is the size of a brain's MD keeps no tensor in it. Read over the
    tensors that are not the file's stored zero (each element within 1.5 steps of the elements' median) where they
    are STORED_BRAIN of them: a tight fit read in a wrong order or sign is taken for a whole field, its stored-zero
    background for brain, and had been refused for its step in place of its order or sign (a review: 5,445 brain voxels
    of 23,328 on the 3 mm ortho dev scan); a brain that rounds to the stored zero leaves only its failed fits. Only
    where that median is a stored zero (every element within STORED_ZERO steps of 0): an unmasked field cast from
    um^2/ms, its background truncated to 0, has its brain as its median, and read off it had kept only its noise fits
    (tens of steps) and been told a positive-definite share (docs/measurements.md, Integer files without a scale).
    `largest`: the columns whose largest magnitude is read (the diagonals; every column where the order is unknown)."""
    if not step > 0 or not len(brain):
        return False
    t = np.asarray(brain, np.float64)
    ref = np.median(t, axis=0)
    kept = ~(np.abs(t - ref) <= 1.5 * step).all(axis=1)
    if np.abs(ref).max() <= STORED_ZERO * step and kept.sum() >= STORED_BRAIN * len(t):
        t = t[kept]
    big = np.abs(t[:, largest]).max(axis=1)
    return float(np.median(big)) < few * step


STORED_BRAIN = 0.05  # share of the tensors off an integer file's stored zero above which they are read as its brain
STORED_ZERO = 0.51  # steps: an integer file's zero reads within half a step of 0 (its intercept's rounding)


# what a tensor file's rounding does where `iqt evaluate` scores it (its prediction or reference), said after each line
# on an integer file's step; an input's lines say what it does to the methods' outputs
SCORED_ROUNDING = {"prediction": "scoring takes that rounding for the method's error",
                   "reference": "scoring takes that rounding for every method's error"}
# share of the voxels judged that an integer file without a scl_slope (a plain cast, or a NRRD: a step of 1) holds at
# most for every value to read as cast to zero: a brain's elements (about 1e-3 mm^2/s) truncate to 0, failed fits may not
CAST_LEFT = 0.01
# share of those few tensors left positive definite at most for them to read as failed fits that outlived the cast (a
# small element truncated to 0), not a tiny ROI in another unit: Testing/fileio/test_integer_step.py
CAST_LEFT_DEFINITE = 0.25


def step_cause(step: float, what: str = "input") -> str:
    """The refusal of an integer file whose brain rounds to a few steps (rounds_to_few_steps)."""
    scored = f"; {SCORED_ROUNDING[what]}" if what in SCORED_ROUNDING else ""
    return _("the file stores integers with a step of {step} (its scl_slope): the brain's tensors round to a few "
             "steps, and an integer file's scale spans its whole range, which one failed fit can stretch{scored}; save "
             "the tensors as float32").format(step=f"{step:.3g}", scored=scored)


def filled_in(data: np.ndarray, where=None) -> np.ndarray:
    """The tensors (n, 6) of the grid `data` (X,Y,Z,6) in `where` (all voxels where None) that are not all zero."""
    filled = np.any(data != 0, axis=-1)
    return data[filled if where is None else filled & where]


def integer_cause(data: np.ndarray, where, step: float, what: str = "input", wrapped: int = 0) -> str | None:
    """Why an integer file whose tensors `data` (X,Y,Z,6), judged in `where` (all voxels where None), a check refused
    is wrong, where its stored `step` (mm^2/s; 1 without a scl_slope, 0 for a float file) is the cause: every value
    cast to zero (no scl_slope, and at most CAST_LEFT of the voxels judged holding a tensor, at most
    CAST_LEFT_DEFINITE of them positive definite), tensors in um^2/ms cast to whole numbers (no scl_slope, and a brain
    of a few steps: its unit is what to fix, as its float copy is told), or a brain rounded to a few steps of a real
    scl_slope (step_cause: one failed fit can stretch an automatic scaling to 0.38 mm^2/s, docs/measurements.md); None
    where the step is not the cause. `wrapped`: the file's stored values that wrapped (wrapped_count), said with the
    um^2/ms cast (at a few steps no element lies near the type's top). For every command that reads a tensor file (`what`: "input", or iqt evaluate's
    "prediction" and "reference")."""
    if not step > 0:
        return None
    t = np.asarray(filled_in(data, where), np.float64)
    voxels = int(np.prod(data.shape[:3])) if where is None else int(np.count_nonzero(where))
    if step == 1 and len(t) <= CAST_LEFT * voxels \
            and (not len(t) or np.mean(eigenvalues(t)[:, 0] > 0) <= CAST_LEFT_DEFINITE):
        if not len(t):
            return _("the {what} file stores integers without a scl_slope and every voxel is 0: tensors in mm^2/s (about "
                     "1e-3) or m^2/s cast to integers, which truncates every value to 0; save the tensors as float32, or "
                     "store them scaled (nibabel sets a scl_slope where float tensors are saved after "
                     "img.set_data_dtype(np.int16))").format(what=what)
        # counted in the mask where one is given: the line had said "of its N voxels", N the mask's count
        line = _("the {what} file stores integers without a scl_slope and all but {count} of its {voxels} voxels are 0: "
                 "tensors in mm^2/s (about 1e-3) or m^2/s cast to integers, which truncates every value to 0; save the "
                 "tensors as float32, or store them scaled (nibabel sets a scl_slope where float tensors are saved after "
                 "img.set_data_dtype(np.int16))") if where is None else \
            _("the {what} file stores integers without a scl_slope and all but {count} of the {voxels} voxels inside "
              "the mask are 0: tensors in mm^2/s (about 1e-3) or m^2/s cast to integers, which truncates every value to "
              "0; save the tensors as float32, or store them scaled (nibabel sets a scl_slope where float tensors are "
              "saved after img.set_data_dtype(np.int16))")
        return line.format(what=what, count=len(t), voxels=voxels)
    if not rounds_to_few_steps(t, step):
        return None
    if step == 1:
        return _um_cast_line(float(np.median(np.abs(t[:, [0, 2, 5]]).max(axis=1))), what, wrapped)
    return step_cause(step, what)


# a brain's typical largest |Dii| in mm^2/s, as a whole-number cast keeps it: 1-2 um^2/ms in 128 casts of the
# 8 subjects' fits, 4-9 in 1e-4 mm^2/s ones (their noisy fields' medians down to 0.4e-3), free water 3.0e-3 at most
# (docs/measurements.md, Integer files without a scale)
CAST_DII_RANGE = (0.3e-3, 3.0e-3)


def cast_powers(big: float) -> list[int]:
    """The powers of ten (-3 for um^2/ms, -4 for 1e-4 mm^2/s) whose unit reads a whole-number cast's typical largest
    |Dii| `big` as a brain's (CAST_DII_RANGE): one, or two where its size fits both (3: free water in um^2/ms, or a
    noisy field in 1e-4 mm^2/s); -3 where none does."""
    powers = [p for p in range(-2, -6, -1) if CAST_DII_RANGE[0] <= big * 10.0 ** p <= CAST_DII_RANGE[1]]
    return powers or [-3]


def _um_cast_line(big: float, what: str, wrapped: int = 0) -> str:
    """The line of a file of tensors in um^2/ms, or another unit (cast_powers), cast to integers without a scl_slope,
    its brain's largest |Dii| typically `big`: the unit and its factor are read from that size, both named where it
    fits two (1e-4 mm^2/s tensors had been told um^2/ms and 1e-3); `wrapped`: how many of its stored values wrapped
    (a value near an unsigned type's top is no element of a few steps: a negative one wrapped), said where any did."""
    powers = cast_powers(big)
    names = [_("um^2/ms") if p == -3 else f"1e{p} mm^2/s" for p in powers]
    if len(powers) == 1:
        # the float unit check's advice (check_scale), for a brain MD of 0.7e-3 mm^2/s in that unit
        unit, rescale = names[0], _rescale_hint(0.7e-3 * 10.0 ** -powers[0])
    else:
        unit = _("{one} or {other}").format(one=names[0], other=names[1])
        rescale = _("multiply them by 1e{a} to get mm^2/s if they are in {ua}, by 1e{b} if in {ub}").format(
            a=powers[0], ua=names[0], b=powers[1], ub=names[1])
    line = _("the {what} tensor values look like they are not in mm^2/s but {unit} cast to whole numbers (the file "
             "stores integers without a scl_slope, and the brain's largest |Dii| is typically {big}; a brain's MD is "
             "about 0.7e-3 mm^2/s, 0.7 um^2/ms): {rescale} and save them as float32 (cast to integers in {unit}, "
             "each element keeps only a few steps)").format(what=what, unit=unit, big=f"{big:g}", rescale=rescale)
    if wrapped:
        line += _("; {count} of its stored values lie just under the top of its unsigned integer type: negative "
                  "elements that wrapped there in the cast, read as huge positive ones").format(count=wrapped)
    return line


def warn_coarse_step(brain: np.ndarray, step: float, source: str = "", what: str = "input") -> None:
    """One warning where `step`, the value of one stored integer of a tensor file (its scl_slope, mm^2/s), is over
    COARSE_STEP of the median MD of `brain` (n, 6), the brain's tensors: every element is rounded to it, and what
    that costs FA and direction no output shows (`what`: "prediction" or "reference" where iqt evaluate scores it)."""
    typical = brain_median_md(brain) if step > 0 else None
    if typical is None or step <= COARSE_STEP * typical:
        return
    import warnings

    from .errors import IQTWarning

    if rounds_to_few_steps(brain, step, NO_SHARE_STEPS):
        warnings.warn(source + step_cause(step, what), IQTWarning, stacklevel=3)
        return
    costs = f"and {SCORED_ROUNDING[what]}" if what in SCORED_ROUNDING else _("which coarsens FA and directions")
    warnings.warn(source + _("its tensors are stored as integers in steps of {step} mm^2/s (its scl_slope), {share} % "
                             "of the brain's median MD ({md} mm^2/s): every element is rounded to that step, {costs}; "
                             "an integer file's scale spans its whole range, which one failed fit can stretch: save the "
                             "tensors as float32").format(
        step=f"{step:.3g}", share=f"{100 * step / typical:.0f}", md=f"{typical:.3g}", costs=costs),
        IQTWarning, stacklevel=3)


def warn_saturated(raw: np.ndarray, dtype: np.dtype, step: float, intercept: float = 0.0, source: str = "") -> None:
    """One warning where more than SATURATED_VOXELS voxels of an integer file's stored values `raw` (unscaled; `step`
    and `intercept` scale them) hold the type's largest or smallest value standing for a tissue-like element (far from
    zero, at most SATURATED_VALUE): the tensors were clipped when stored, and no output shows it."""
    info = np.iinfo(dtype)
    raw = np.asarray(raw)
    at_end = np.zeros(raw.shape[:-1], bool)
    for end in (info.max, info.min):
        value = abs(end * step + intercept)
        # a clipping cast keeps zero mid-range (its ends half the type's range away); an automatic scaling can set
        # zero at an end (the 3 mm ortho masked fit's int8 file: 190 voxels there, half a step from zero)
        if step * (info.max // 2) < value <= SATURATED_VALUE:
            at_end |= (raw == end).any(axis=-1)
    n = int(at_end.sum())
    if n <= SATURATED_VOXELS:
        return
    import warnings

    from .errors import IQTWarning

    warnings.warn(source + _("{count} voxels hold the largest or smallest value of the file's integer type ({dtype}, "
                             "step {step}, its scl_slope) in an element: those tensors were clipped when stored, and read "
                             "wrong; save the tensors as float32").format(
        count=n, dtype=np.dtype(dtype).name, step=f"{step:.3g}"), IQTWarning, stacklevel=3)


def wrapped_cause(raw: np.ndarray, dtype: np.dtype, intercept: float = 0.0, nrrd: bool = False, step: float = 1.0,
                  axis: int = -1) -> str | None:
    """The refusal of a tensor file of an unsigned integer type whose negative elements wrapped to the top of its range
    when cast (-1 stored as 65535 in uint16): over WRAPPED_SHARE of its non-zero stored values (at least WRAPPED_MIN)
    lie above half the range, most of them within WRAPPED_TOP of the range's top, not over WRAPPED_SPREAD of them
    further down with their median over WRAPPED_RAMP of the range below the top (a DWI clipped at the top holds its
    bright voxels' ramp there; a tensor's larger negative elements lie nearer the top), and the values below half the range
    are typically at most WRAPPED_MIRROR times the magnitudes the wrapped ones stood for (a tensor's positive and
    negative elements are of a size), and at most WRAPPED_AT_TOP of them are the type's largest value (a DWI clipped
    there holds nothing else above half the range; the unmasked fields' wrapped um^2/ms casts held 30-34 % of -1, the 3
    mm Prisma's at x1,1,2 93.6 %) unless the values below half the range are a tensor's few steps (99 % of them at most
    WRAPPED_MIRROR: the Elition's unmasked um^2/ms cast at SNR 5 held 99.97 % of -1), nor over WRAPPED_AT_CLIP of them
    their largest value where it is under the top (a DWI clipped there). Read as they are, they are huge positive elements: uint16 casts of um^2/ms tensors
    had been told they were a DWI series (6-10 of 80 inputs at x2 and x1,1,2: docs/measurements.md, Integer files
    without a scale). Where `step` is 1 (no scl_slope) and the brain, the wrapped values read as negative, is a few
    steps, the line is the um^2/ms cast's (_um_cast_line) with the wrapped count: both are to fix. None for any other
    file (a signed type, or an intercept: nibabel's scaling stores negatives without wrapping). `nrrd`: the file is a
    NRRD, which stores no scale: its fix is float alone. `axis`: the elements' axis of `raw`."""
    dtype = np.dtype(dtype)
    if dtype.kind != "u" or intercept != 0:
        return None
    top = int(np.iinfo(dtype).max)
    values = np.asarray(raw)
    values = values[values != 0]
    if values.size <= CAST_LEFT * np.asarray(raw).size:  # a cast that truncated nearly every value to 0, its failed
        # fits' negatives wrapped: integer_cause names the cast (the Achieva's unmasked x1,1,2 input in mm^2/s as a
        # uint16 NRRD: 16 of its 79 non-zero values wrapped)
        return None
    high = values > top // 2
    n = int(high.sum())
    if n < max(WRAPPED_MIN, WRAPPED_SHARE * values.size):
        return None
    far = values[high & (values < _near_top(top))]
    if far.size > WRAPPED_SPREAD * n and float(np.median(top + 1 - far.astype(np.int64))) > WRAPPED_RAMP * top:
        return None  # bright values spread over the range's upper half under the pile: a DWI clipped at the top
    peak = values[high].max()
    low = values[~high]
    if float(np.mean(values[high] == peak)) > (WRAPPED_AT_TOP if peak == top else WRAPPED_AT_CLIP) \
            and not (peak == top and low.size and float(np.percentile(low, 99)) <= WRAPPED_MIRROR):
        return None  # clipped at the top or under it: a saturated DWI, not a wrap (-1 is stored at the top), unless
        # the rest is a tensor's few steps (a noisy unmasked um^2/ms cast: nearly every negative element is -1)
    below = top + 1 - values[high].astype(np.int64)  # the magnitude each wrapped value stood for
    if float(np.median(below)) > top * WRAPPED_TOP or \
            (low.size and float(np.median(low)) > WRAPPED_MIRROR * float(np.median(below))):
        return None
    if step == 1:
        signed = np.moveaxis(np.asarray(raw), axis, -1).astype(np.int64)
        signed = np.where(signed > top // 2, signed - (top + 1), signed).reshape(-1, signed.shape[-1])
        brain = filled_in(signed)
        if rounds_to_few_steps(brain, 1.0, largest=slice(None)):  # the elements' order is not known here: a
            # positive-definite tensor's largest |element| is its largest |Dii|
            return _um_cast_line(float(np.median(np.abs(brain).max(axis=1))), "file's", n)
    fix = _(" (a NRRD stores no scale: in Slicer, save the tensor volume as it is; with pynrrd, write the float array, "
            "e.g. nrrd.write(path, data.astype(np.float32), header))") if nrrd else \
        _(", or as int16 with a scl_slope (nibabel sets one where float tensors are saved after "
          "img.set_data_dtype(np.int16))")
    return _("{count} of the file's {total} non-zero stored values lie just under the top of its unsigned integer "
             "type ({dtype}, largest {top}): a tensor's negative elements (its off-diagonals) wrap there when tensors "
             "are cast to an unsigned type (read as signed, they are -{largest} to -1), and read as huge positive "
             "elements; save the tensors as float32{fix}").format(
        count=n, total=values.size, dtype=dtype.name, top=top, largest=int(below.max()), fix=fix)


def _near_top(top: int) -> float:
    """The least stored value of an unsigned type (largest `top`) read as a wrapped negative element: within
    WRAPPED_TOP of the range's top (-1 to about -1,023 in uint16)."""
    return top - top * WRAPPED_TOP


def wrapped_values(raw: np.ndarray, dtype: np.dtype, intercept: float = 0.0) -> np.ndarray | bool:
    """Where stored values `raw` of an unsigned integer file without an intercept lie within WRAPPED_TOP of its type's
    top, where a cast's wrapped negative elements lie; False for any other file."""
    dtype = np.dtype(dtype)
    if dtype.kind != "u" or intercept != 0:
        return False
    return np.asarray(raw) >= _near_top(int(np.iinfo(dtype).max))


def wrapped_count(raw: np.ndarray, dtype: np.dtype, intercept: float = 0.0) -> int:
    """How many stored values `raw` of an unsigned integer file without an intercept are wrapped_values: where the
    file's brain is a few steps (integer_cause's um^2/ms cast) they are negative elements wrapped by the cast, too few
    for wrapped_cause to refuse the file (own and tight fits: 0.1-0.4 % of their non-zero values); 0 for any other
    file."""
    return int(np.count_nonzero(wrapped_values(raw, dtype, intercept)))


WRAPPED_SHARE = 0.01  # share of an unsigned file's non-zero values above half its range for them to read as wrapped
WRAPPED_MIN = 10
# share of the type's range from its top within which the median wrapped value lies (1,023 for uint16): a tensor's
# negative elements are small beside the range; a DWI's bright voxels are not wrapped values
WRAPPED_TOP = 1 / 64
WRAPPED_MIRROR = 30.0
WRAPPED_AT_TOP = 0.99
# share of them at their largest value, where that is under the top, above which they read as a DWI clipped there: real
# DWIs rescaled and clipped at 65,000-65,534 that read as wrapped held 49-83 % there; a wrap's largest is -1, the top
WRAPPED_AT_CLIP = 0.25
# share of the values above half an unsigned range further than WRAPPED_TOP from its top, and their median distance
# from the top as a share of the range, above both of which they read as a DWI's bright voxels under its pile at the
# top, not as wrapped negative elements: the real uint8 DWIs clipped at 255 that had read as wrapped held 18-49 %
# there, 0.18-0.42 of the range down; the uint16 um^2/ms casts' wraps none there, the same casts in um^2/s 0.03-0.11
# down (docs/measurements.md, Integer files without a scale)
WRAPPED_SPREAD = 0.05
WRAPPED_RAMP = 0.15


def check_scale(t: np.ndarray, where: np.ndarray | None = None, what: str = "input",
                order_option: str = "--tensor-order", brain: bool = False, brain_md: float | None = None,
                source: str = "", made_by: str | None = None, inside=None, estimated=None) -> None:
    """Refuse tensors that would give a wrong answer whatever the method: none positive definite, most not
    positive definite, or a scale that is not mm^2/s (brain MD is about 0.7e-3). `where`: voxels to judge; `what`
    names the volume and `order_option` the option that reads its element order, in the messages. `brain`: the voxels
    judged (in `where`, else the non-zero ones) are the brain, so that their own median MD is read against the lower
    bounds (the tissue-like voxels' median, which CSF keeps above 1e-4, had let ten times too small pass).
    `brain_md`: the median MD of a brain estimated from a whole-field fit (methods/inputs.py check_tensor_input), read
    as the scale: the whole field's tissue-like median, scalp and noise fits in it, had a ten times too large fit read
    "5.3 times above a brain's, not a power of ten" (a tool-inputs audit). Where the scale is a brain's, one outside an
    in-vivo brain's (dmri/b0s.py MD_RANGE, as `iqt fit` says) is warned of. `source` ("<file>: ", `Volume.source`)
    starts each warning, as the other input warnings start (methods/inputs.py); a refusal's caller adds it. `made_by`:
    the header's record of this tool's upsampling (fileio.records.made_by), which the negative-MD warning names.
    `inside`: None, or a callable giving the brain (a grid mask) that the negative-MD warning counts in, called only
    where the count over every voxel would warn (methods/inputs.py check_tensor_input: an upsampled unmasked fit).
    `estimated`: a whole-field fit's brain as the support estimates it (a grid mask, with `brain_md`), in which the
    positive-definite share is judged where the whole field's falls short: a noisy OLS fit's background holds
    tissue-like noise fits (the Elition's unmasked-ols SNR 5 x1,1,2 input: 0.498 over the field, 0.878 in the brain),
    and a wrong element order finds no brain (docs/measurements.md, "The positive-definite share of a whole field")."""
    from .errors import IQTError

    t = np.asarray(t)
    present = np.any(t != 0, axis=-1)
    if where is not None:
        present &= where
    values = t[present]
    if values.size == 0:
        fix = {"prediction": "give the output of 'iqt upsample'",
               "reference": "give the reference's fitted tensors and its own brain mask (on its grid)"}
        raise IQTError(f"the {what} holds no tensor" + (" inside the mask" if where is not None else "") +
                       " (every voxel zero or NaN); " + fix.get(what, "give a fitted DTI volume in mm^2/s, e.g. from 'iqt fit'"))
    lam = eigenvalues(values)
    md = lam.mean(axis=1)
    # an unmasked fit can be mostly background: fits of near-zero MD (about 1e-9 where the scanner zeroes it) or,
    # by least squares, of noise with negative eigenvalues. Judge on the tissue-like voxels where there are enough
    # of them (docs/inputs.md, What is refused); a wrong element order leaves most of those not positive definite, a
    # wrong sign or unit leaves none tissue-like
    tissue = (md > TISSUE_RANGE[0]) & (md < TISSUE_RANGE[1])
    _check_sign(lam, md, tissue, what)
    few_tissue = tissue.sum() < max(100, 0.05 * len(md))
    judged = np.ones(len(md), bool) if few_tissue else tissue
    pd = lam[:, 0] > 0
    share = float(pd[judged].mean())
    if share < 0.5 and estimated is not None and (judged & estimated[present]).sum() >= 100:
        share = float(pd[judged & estimated[present]].mean())
    if share < 0.5:
        raise IQTError(f"only {100 * share:.0f} % of the {what} tensors are positive definite; the volume is not a "
                       f"diffusion tensor fit (or its sign or element order is wrong: check {order_option})")
    if brain:  # a brain partly sign-inverted: its tissue-like voxels, judged above, leave those out
        _check_negative_md(md, what, source, made_by, None if inside is None else lambda: inside()[present])
    scale = float(np.median(md[judged & pd]))
    # over the judged voxels too: failed fits (dipy's WLS reaches 1e-2 to 2.5 mm^2/s in low-signal voxels; 3 % of a
    # native scan's brain) are not the volume's unit, and the methods and the evaluation take them as missing
    big = float(np.percentile(np.abs(values[judged][:, [0, 2, 5]]), 99))
    if scale < 1e-5 and _mostly_one_isotropic(lam[judged]):
        raise IQTError(_("the {what} tensors are all one and the same isotropic value (MD {md} mm^2/s): the floor a "
                         "DTI fit clips its eigenvalues at where it found no signal to fit, not a unit; refit the DWI "
                         "after checking its b0 volumes (a blank one, or one of another series)").format(
            what=what, md=f"{scale:g}"))
    if scale < 1e-5 and _few_tensors(values[judged]):
        raise IQTError(_("the {what} tensors are one or two tiny tensors repeated in nearly every voxel (MD {md} "
                         "mm^2/s): an empty or failed fit (an integer file's intercept, or a fit's floor, everywhere), "
                         "not a unit to rescale; fit the DWI again ({iqt_fit}) after checking its b0 volumes (a blank "
                         "one, or one of another series)").format(what=what, md=f"{scale:g}", iqt_fit="'iqt fit'"))
    if few_tissue:  # too few tissue-like in mm^2/s: a unit to name, read off a fit's floor
        scale = _off_floor_median(lam[judged & pd], md[judged & pd], scale)
    if scale <= MAX_MEDIAN_MD:  # a whole-field fit ten times too large: its brain's MD leaves the tissue-like range,
        # and its background's noise fits decide the median; the brain's mode is still the volume's commonest MD
        scale = max(scale, md_mode_of(lam, hi=0.05)) if scale > 1e-5 else scale
    fitted = pd & (md > 1e-5)  # not a masked fit's tiny background (1e-9 to 1e-6: docs/measurements.md)
    if brain and fitted.any():
        scale = min(scale, float(np.median(md[fitted])))
    if brain_md is not None and np.isfinite(brain_md) and brain_md > 0:
        scale = float(brain_md)
    if big > 0.1 or scale > MAX_MEDIAN_MD or scale < MIN_MEDIAN_MD:
        raise IQTError(_("the {what} tensor values look like they are not in mm^2/s (typical MD {md}, 99th percentile "
                         "of |Dii| {largest}; brain MD is about 0.7e-3 mm^2/s): {rescale}").format(
            what=what, md=f"{scale:g}", largest=f"{big:g}", rescale=_rescale_hint(scale)))
    if scale < LOW_MEDIAN_MD:  # tissue-like, but below any living brain's: a unit slip reads as a low MD, and so does
        # noise: the noise floor keeps the DWIs up (the 3 mm ortho dev scan at x3, b0 SNR 1: 0.21e-3 where clean 0.78e-3)
        import warnings

        from .errors import IQTWarning

        warnings.warn(source + _("the {what} tensors' typical MD {md} mm^2/s is below any living brain's (about "
                                 "0.6-1.0e-3): if they are in other units, {rescale}; ex-vivo tissue reads this low, as "
                                 "does a scan whose diffusion-weighted signal sinks to the noise floor (b0 SNR about "
                                 "1)").format(what=what, md=f"{scale:.2g}", rescale=_rescale_hint(scale)),
                      IQTWarning, stacklevel=3)
    elif what == "input" and (brain or brain_md is not None) and not IN_VIVO_MD[0] <= scale <= IN_VIVO_MD[1] \
            and failed_fits(values).mean() <= 0.5:  # mostly failed fits: their refusal (methods/inputs.py) is the line
        import warnings

        from .errors import IQTWarning

        # a b=3000 shell labelled 1000 reads 3x a brain's, passing the unit check with only its failed fits said, as
        # CSF's (a tool-inputs audit); `iqt fit` warns of the same range (dmri/b0s.py check_b0_levels)
        high = scale > IN_VIVO_MD[1]
        cause = _("a b-value slip gives this (a b=3000 shell labelled b=1000 reads about 3 times a brain's), as do a "
                  "unit slip and a failed fit") if high else _("right for ex-vivo tissue (about 0.1-0.3e-3); a b-value "
                                                               "or unit slip gives this too, as does a scan whose "
                                                               "diffusion-weighted signal sinks to the noise floor (b0 "
                                                               "SNR about 1)")
        warnings.warn(source + _("the {what} tensors' brain median MD is {md}e-3 mm^2/s, outside the {low}e-3 to "
                                 "{high}e-3 of an in-vivo brain: {cause}; every method's output keeps that scale (the "
                                 "learned methods were trained on in-vivo brains): check the b-values (s/mm^2) the "
                                 "tensors were fitted with, and fit them again if one slipped").format(
            what=what, md=f"{scale * 1e3:.2g}", low=f"{IN_VIVO_MD[0] * 1e3:g}", high=f"{IN_VIVO_MD[1] * 1e3:g}",
            cause=cause), IQTWarning, stacklevel=3)


IN_VIVO_MD = (0.4e-3, 1.6e-3)  # mm^2/s: an in-vivo brain's median MD, as dmri/b0s.py MD_RANGE (`iqt fit`'s warning)
# No brain's median MD reaches free water's at body temperature (3.0e-3 mm^2/s): a volume ten times too large (1e-4
# mm^2/s units) had passed, every voxel then a failed fit, and gave an answer in neither unit (an input audit)
MAX_MEDIAN_MD = 3.5e-3
# Nor is any brain's median MD below tissue's range (TISSUE_RANGE; ex-vivo tissue reads 1-3e-4): tensors ten or twenty
# times too small (brain MD 7.7e-5 and 3.9e-5) had passed without a word (an input audit)
MIN_MEDIAN_MD = 1e-4
LOW_MEDIAN_MD = 2.5e-4  # below it, a warning: a tenth of a brain's MD can read as tissue where CSF sets the median


SIGN_INVERTED = 0.9  # share of the tissue-size voxels negative definite: 100 % in negated real fits (int16 or float)


def _check_sign(lam: np.ndarray, md: np.ndarray, tissue: np.ndarray, what: str) -> None:
    """Refuse tensors whose sign is inverted (-D): nine in ten or more of the voxels of a tissue's size negative definite
    (a brain partly inverted, where -1 would not mend it, is `_check_negative_md`'s). A negated int16 whole-field fit had been told to "multiply them by 1e3" (its background's noise fits set the
    judged scale), a negated masked one that it was perhaps no tensor fit (a review)."""
    from .errors import IQTError

    negative = int(((-md > TISSUE_RANGE[0]) & (-md < TISSUE_RANGE[1]) & (lam[:, 2] < 0)).sum())
    positive = int((tissue & (lam[:, 0] > 0)).sum())
    if negative > 0 and negative >= SIGN_INVERTED * (negative + positive):
        raise IQTError(_("the {what} tensors' sign is inverted: {negative} voxels hold negative-definite tensors of a "
                         "tissue's size (MD -1e-4 to -5e-3 mm^2/s) against {positive} positive-definite ones: multiply "
                         "them by -1 (e.g. {fslmaths}), or fit them again").format(
            what=what, negative=negative, positive=positive, fslmaths="'fslmaths in -mul -1 out'"))


NEGATIVE_MD_REFUSED = 0.5  # share of the brain's tensors with MD <= 0 above which an input is refused
NEGATIVE_MD_SAID = 0.01  # and above which (at least NEGATIVE_MD_MIN voxels) one warning says so
NEGATIVE_MD_MIN = 10
# the methods of methods/interpolation.py, as a header's record names them (fileio/records.py made_by): the only ones
# whose MD <= 0 tensors the negative-MD warning calls an interpolation's overshoot
INTERPOLATION_METHODS = ("nearest", "linear", "cubic", "logeuclid-cubic")
# what gives fewer MD <= 0 tensors than a learned method that wrote over NEGATIVE_MD_SAID of them inside a masked brain:
# on the own-style SNR-5 and SNR-10 inputs of the 4 dev scans x2, global-linear wrote 2.6-4.8 % of the output, rf and
# biqt 0.28-0.69 %, espcn at most 8 voxels, deep at most 1 (docs/accuracy.md, Noisy scans)
# (said in _check_negative_md's line for a learned method's output)


def _check_negative_md(md: np.ndarray, what: str, source: str = "", made_by: str | None = None, inside=None) -> None:
    """Refuse a brain whose tensors mostly have a mean diffusivity at or below zero, and say where some do: no tissue
    diffuses so, and the tissue-like voxels the other checks judge leave them out, so that a fit with 61 % of its brain
    sign-inverted had run with a warning counting only its failed fits (a tool-inputs audit; the OLS fits of three real
    scans hold at most 1 such voxel of 24,514)."""
    negative = md <= 0
    n, share = int(negative.sum()), float(negative.mean())
    if share > NEGATIVE_MD_REFUSED:
        from .errors import IQTError

        raise IQTError(_("{share} % of the {what} tensors in the brain have a mean diffusivity at or below zero, which "
                         "no tissue has: their sign is inverted or they are not a diffusion tensor fit; fit them again "
                         "from the DWI ({iqt_fit}) or check the tool that wrote them").format(
            share=f"{100 * share:.0f}", what=what, iqt_fit="'iqt fit'"))
    if share > NEGATIVE_MD_SAID and n >= NEGATIVE_MD_MIN and inside is not None:
        # counted in the brain only: 96-100 % of those of cubic outputs of the 8 subjects' unmasked fits lay in the
        # scalp and background fits kept around it (0.9-1.7 % of every voxel, 0-0.04 % of the brain; a review)
        brain = inside()
        n, share = int((negative & brain).sum()), float((negative & brain).sum() / max(int(brain.sum()), 1))
    if share > NEGATIVE_MD_SAID and n >= NEGATIVE_MD_MIN:
        import warnings

        from .errors import IQTWarning

        counts = dict(count=n, what=what, share=f"{100 * share:.1f}", made_by=made_by)
        if made_by:  # this tool's upsampled output, not a fit to redo (a review: iqt track warned so of cubic outputs
            # of clean fits, advising 'iqt fit'; docs/measurements.md)
            method = made_by.split()[1].removesuffix("+tta") if len(made_by.split()) > 1 else ""
            if method in INTERPOLATION_METHODS:  # a learned method's are not an interpolation's overshoot (a review)
                # pieces (split at "; ") of at most PIECE_LIMIT characters, as a long warning is said over several
                # lines (methods/base.py warning_lines), as are the two below
                warnings.warn(source + _("{count} of the {what} tensors in the brain ({share} %) have a mean "
                                         "diffusivity at or below zero, which no tissue has; the file is {iqt_upsample}'s "
                                         "output ('{made_by}'); its interpolation overshoots to such tensors where the "
                                         "input's tensors change sharply; they change so at an unmasked fit's scalp and "
                                         "background fits and at the brain's edge; they are not measurements; "
                                         "{give_mask} with the brain mask, or upsample with logeuclid-cubic, which "
                                         "keeps the tensors positive definite").format(
                    **counts, give_mask=option("give --mask"), iqt_upsample="iqt upsample"), IQTWarning, stacklevel=4)
                return
            # counted in the brain (the mask's, a masked input's, or the one estimated from an unmasked fit: `inside`),
            # they are the model's own prediction, which regresses the six elements, not the eigenvalues: 'upsample
            # again with --mask' had been advised where --mask was given to both commands (own-style SNR-5 inputs hold
            # none, global-linear's outputs 2.0-2.7 % of the brain; a review; docs/accuracy.md, Noisy scans)
            line = _("{count} of the {what} tensors in the brain ({share} %) have a mean diffusivity at or below "
                     "zero, which no tissue has; the file is {iqt_upsample}'s output ('{made_by}'); these are "
                     "{method}'s own prediction from a noisy input, its model for noisy inputs having run; it predicts "
                     "the six elements, not the eigenvalues, and noise can take them below zero; most lie near the "
                     "brain's edge, not in an unmasked fit's background; tracking reads them as no tissue (FA 0), "
                     "where streamlines stop; {fewer}") if "_noisy" in made_by else \
                _("{count} of the {what} tensors in the brain ({share} %) have a mean diffusivity at or below zero, "
                  "which no tissue has; the file is {iqt_upsample}'s output ('{made_by}'); these are {method}'s own "
                  "prediction; it predicts the six elements, not the eigenvalues, and noise can take them below zero; "
                  "most lie near the brain's edge, not in an unmasked fit's background; tracking reads them as no "
                  "tissue (FA 0), where streamlines stop; {fewer}")
            warnings.warn(source + line.format(**counts, method=method, iqt_upsample="iqt upsample", fewer=_(
                "deep (the default) and espcn gave at most 8 such voxels on noisy masked inputs of the 4 dev scans; "
                "global-linear gave 2.6-4.8 % there (docs/accuracy.md, Noisy scans); logeuclid-cubic keeps every "
                "tensor positive definite")), IQTWarning, stacklevel=4)
            return
        warnings.warn(source + _("{count} of the {what} tensors in the brain ({share} %) have a mean diffusivity at or "
                                 "below zero, which no tissue has; such tensors are sign-inverted, or not fitted: every "
                                 "method's output there is not a measurement; fit them again from the DWI ({iqt_fit}) "
                                 "or check the tool that wrote them").format(**counts, iqt_fit="'iqt fit'"),
                      IQTWarning, stacklevel=4)


def _mostly_one_isotropic(lam: np.ndarray) -> bool:
    """Whether all but FAILED_FIT_OTHERS of the eigenvalue triples (ascending) are isotropic and equal: a failed fit's
    floor in every voxel (`iqt fit` gives 1e-6 / b_max where the log signal gives it nothing), not a tissue in any
    unit. An unmasked fit whose background the scanner zeroed holds the same floor around a brain: 3 % of brain voxels
    in m^2/s beside it are still a unit to name."""
    if len(lam) == 0:
        return False
    iso = np.abs(lam[:, 2] - lam[:, 0]) <= 1e-3 * np.abs(lam[:, 2])
    if iso.mean() < 1 - FAILED_FIT_OTHERS:
        return False
    return int(_on_floor(lam, iso).sum()) >= (1 - FAILED_FIT_OTHERS) * len(lam)


def _on_floor(lam: np.ndarray, iso: np.ndarray) -> np.ndarray:
    """Which eigenvalue triples (ascending) sit on a fit's floor: isotropic (`iso`) and at the commonest such value."""
    common = np.median(lam[iso, 2])
    return iso & (np.abs(lam[:, 2] - common) <= 1e-3 * abs(common))


def _off_floor_median(lam: np.ndarray, md: np.ndarray, scale: float) -> float:
    """The median MD of the tensors off a fit's floor (isotropic, at the commonest such value), or `scale` where no more
    than FAILED_FIT_OTHERS of them are off it: an unmasked fit in m^2/s whose air the scanner zeroed (60 % of an
    Elition field) had read the floor's MD as typical and been told to multiply by 1e12 where 1e6 is right."""
    if len(lam) == 0:
        return scale
    iso = np.abs(lam[:, 2] - lam[:, 0]) <= 1e-3 * np.abs(lam[:, 2])
    if not iso.any():
        return scale
    off = ~_on_floor(lam, iso)
    if off.sum() <= FAILED_FIT_OTHERS * len(lam):
        return scale
    return float(np.median(md[off]))


FAILED_FIT_OTHERS = 0.01  # the share of voxels off the floor that a failed fit may hold


def _few_tensors(t: np.ndarray) -> bool:
    """Whether all but FAILED_FIT_OTHERS of tensors `t` (n, 6) are one of two exact values: an int16 fit that is empty
    (its intercept in every voxel) or failed (the intercept, and the floor above it in the brain) reads as a whole
    field of them, and had been told to 'multiply them by 1e5' (a review); a brain in another unit varies."""
    if len(t) == 0:
        return False
    counts = np.unique(np.asarray(t), axis=0, return_counts=True)[1]
    return int(np.sort(counts)[-2:].sum()) >= (1 - FAILED_FIT_OTHERS) * len(t)


def _rescale_hint(scale: float) -> str:
    """What to multiply by, and the tools known to write that unit."""
    exact = float(np.log10(0.7e-3 / scale)) if scale > 0 else 0.0
    power = int(np.round(exact))
    if power == 0 and abs(exact) > 0.2:  # 3x off reads as no power of ten: the nearer one, said not to be one below
        power = int(np.sign(exact))
    if power == 0:
        return _("rescale them to mm^2/s")
    tool = {-3: _("DTI-TK writes 1e-3 mm^2/s, i.e. um^2/ms"), 6: _("m^2/s, as Camino writes")}.get(power)
    # the advice in the words of the app that runs (core/i18n.py option: the Slicer module's volume is loaded already)
    hint = option("multiply them by 1e{power} to get mm^2/s ({tool})" if tool else
                  "multiply them by 1e{power} to get mm^2/s").format(power=power, tool=tool)
    if abs(exact - power) > 0.2:  # a brain's MD spans 0.6-1.0e-3, about 0.1 either way in log10: not a unit's step
        off = (_("(they read about {times} times below a brain's, not a power of ten: if no unit slipped, check how "
                 "they were fitted)") if exact > 0 else
               _("(they read about {times} times above a brain's, not a power of ten: if no unit slipped, check how "
                 "they were fitted)")).format(times=f"{10 ** abs(exact):.2g}")
        hint += " " + off
    return hint
