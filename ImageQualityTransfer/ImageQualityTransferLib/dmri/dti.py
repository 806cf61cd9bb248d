"""DTI fitting (dipy weighted least squares on log signal) and b0 brain masks (dipy median Otsu)."""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict

import numpy as np

from ..core import grid
from ..core.errors import IQTError, IQTWarning
from ..core.i18n import _, option
from ..core.volume import Volume
from ..fileio.gradients import B0_THRESHOLD, check_table  # one value and one check for reading and fitting (s/mm^2)


def _no_b0(bvals, source: str = ""):
    raise IQTError(f"{source}no b=0 volume in the series (none with b <= {B0_THRESHOLD:g} s/mm^2; the lowest is "
                   f"{float(np.min(bvals)):g}); DTI fitting and masking need at least one b0 (check the bval file)")


def gradient_table(dwi: Volume):
    from dipy.core.gradients import gradient_table as dipy_gtab

    check_gradients(dwi.bvals, dwi.bvecs, dwi.source, file_volumes(dwi))
    bvecs = np.array(dwi.bvecs, dtype=float)
    norms = np.linalg.norm(bvecs, axis=1)
    # a low-b volume (0 < b <= B0_THRESHOLD) keeps its direction and b-value in the fit, as dipy, FSL and MRtrix fit
    # it (zeroing its direction had made it a b0 row: MD 4-5 % low with b = 50 volumes, a tool-inputs audit); it still
    # counts as a b0 for the brain mask and the checks
    weighted = norms > 1e-6
    bvecs[weighted] /= norms[weighted, None]
    bvecs[~weighted] = 0.0
    return dipy_gtab(dwi.bvals, bvecs=bvecs, b0_threshold=B0_THRESHOLD)


def check_gradients(bvals, bvecs, source: str = "", number=None) -> None:
    """What `gradient_table` refuses in a series' b-values and directions (fewer than 6 diffusion-weighted volumes, no
    b0, a weighted volume without a direction, directions that determine no tensor); reads neither data nor dipy, so
    `iqt train` runs it on each subject's header before preparing any (apps/cli/train.py). `source`: "<file>: " to
    start a message with, where the series came from one; `number`: each volume's number in that file
    (`file_volumes`), else its index."""
    bvals = np.asarray(bvals, float)
    bvecs = np.array(bvecs, dtype=float)
    b0 = bvals <= B0_THRESHOLD
    norms = np.linalg.norm(bvecs, axis=1)
    if (~b0).sum() < 6:
        raise IQTError(f"{source}only {(~b0).sum()} diffusion-weighted volumes (b > {B0_THRESHOLD:g} s/mm^2); a tensor "
                       "fit needs at least 6 directions: check the bval file")
    if not b0.any():
        _no_b0(bvals, source)
    zero = np.flatnonzero(~b0 & (norms < 1e-6))
    if number is not None:
        zero = np.asarray(number)[zero]
    if zero.size:
        raise IQTError(f"{source}diffusion-weighted volume{'s' if zero.size > 1 else ''} "
                       f"{', '.join(map(str, zero[:6]))}{' ...' if zero.size > 6 else ''} (counted from 0) "
                       f"{'have' if zero.size > 1 else 'has'} a zero gradient direction: a b > 0 volume without one is usually the "
                       "scanner's trace (isotropic) image; remove it from the DWI and from the bval and bvec files (e.g. "
                       "fslroi keeps a range of volumes), else check the bvec file")
    if not spans_tensor(bvecs, bvals):  # dipy fits one direction repeated, the three axes or one plane silently
        raise IQTError(f"{source}the {(~b0).sum()} diffusion-weighted directions determine only "
                       f"{_tensor_rank(bvecs[~b0])} of the tensor's 6 elements (fewer than 6 distinct directions, or all "
                       "in one plane), so every fitted tensor would be wrong; check that the bvec file belongs to this "
                       "series")


def unit_design(g) -> np.ndarray:
    """(N, 6): g^T D g = rows . (Dxx, Dxy, Dyy, Dxz, Dyz, Dzz) for directions (N, 3) taken at unit length (a zero one
    gives a zero row): the fit's design at b = 1, in the directions' axes."""
    g = np.array(g, float)
    n = np.linalg.norm(g, axis=1)
    x, y, z = np.where(n[:, None] > 1e-6, g / np.where(n > 1e-6, n, 1.0)[:, None], 0.0).T
    return np.stack([x * x, 2 * x * y, y * y, 2 * x * z, 2 * y * z, z * z], 1)


def _tensor_rank(g) -> int:
    """How many of the six tensor elements directions (n, 3) determine (the rank of the fit's design)."""
    return int(np.linalg.matrix_rank(unit_design(g), tol=1e-3))


def spans_tensor(bvecs, bvals=None) -> bool:
    """Whether the diffusion-weighted directions among these (every one without `bvals`) determine the six tensor
    elements: at least MIN_DIRECTIONS, not fewer distinct ones nor all in one plane."""
    g = np.asarray(bvecs, float)
    if bvals is not None:
        g = g[np.asarray(bvals, float) > B0_THRESHOLD]
    return len(g) >= MIN_DIRECTIONS and _tensor_rank(g) == 6


POOR_CONDITION = 10.0  # a table's design condition number warned of: the 8 shared scans' read 1.58-2.76, common
# 6-direction schemes 1.58-3.23; 6-direction subsets of a dev scan's table turned its principal directions by a median
# 10.5 degrees at 10, twice the 5.4 at 1.9 (docs/measurements.md "A poorly conditioned table")
_ORTHONORMAL = np.array([1.0, np.sqrt(0.5), 1.0, np.sqrt(0.5), np.sqrt(0.5), 1.0])  # unit_design's 2xy -> sqrt2 xy


def table_condition(bvals, bvecs) -> float:
    """The condition number of the fit's design over the diffusion-weighted directions at unit length, in an
    orthonormal basis of the tensor's elements, so that a table reads the same however the scan is angulated: how
    unevenly noise reaches the tensor's elements (sqrt(2.5) = 1.58 for directions spread evenly, the least possible).
    inf below 6 directions; directions that determine no tensor (refused before a fit) read inf or, by rounding, a
    huge finite number (1e15 and more), not always inf."""
    g = np.asarray(bvecs, float)[np.asarray(bvals, float) > B0_THRESHOLD]
    return float(np.linalg.cond(unit_design(g) * _ORTHONORMAL)) if len(g) >= MIN_DIRECTIONS else float("inf")


def mean_b0(dwi: Volume) -> np.ndarray:
    return dwi.data[..., dwi.bvals <= B0_THRESHOLD].mean(axis=-1)


def brain_mask(dwi: Volume, median_radius: int = 2, numpass: int = 1, fill_slices: bool = True) -> Volume:
    """Deterministic brain mask from the mean b0 (dipy median Otsu), largest connected component, holes filled; with
    `fill_slices`, also the holes enclosed within one slice of any orientation (`fill_slice_holes`). A skull-stripped
    DWI keeps the region it was stripped to (`_stripped_brain`), said in one warning; meta["source"] says which."""
    if not (dwi.bvals <= B0_THRESHOLD).any():
        _no_b0(dwi.bvals, dwi.source)
    b0 = mean_b0(dwi).astype(np.float64)
    if not np.any(b0 > 0):
        raise IQTError("the b0 image holds no positive signal (all zero or negative); give the DWI series as scanner "
                       "signal intensities, with a b=0 volume that has signal")
    if np.ptp(b0) <= 1e-6 * float(b0.max()):  # Otsu divides by zero on it and takes every voxel (a bad-input audit)
        raise IQTError("the b0 image is one constant value, with no contrast between brain and background: not a "
                       "scan's b0 (a test pattern, or a file written wrongly); give the series as the scanner wrote it, "
                       "or a brain mask with --mask")
    mask, source = _otsu_brain(b0, median_radius, numpass, fill_slices), "median_otsu"
    stripped = _stripped_brain(dwi, b0, mask, fill_slices)
    if stripped is not None:
        warnings.warn(_("the DWI is zero outside a brain-shaped region (skull-stripped): that region is the brain "
                        "mask, {count} voxels (median Otsu on its b0 found {otsu}); give a mask to use another").format(
            count=int(stripped.sum()), otsu=int(mask.sum())), IQTWarning, stacklevel=2)
        mask, source = stripped, "nonzero"
    if not mask.any():
        raise IQTError("no brain found in the b0 image; give a mask with --mask")
    return Volume(mask.astype(bool), dwi.affine, "mask", meta={"source": source})


OTSU_KEPT = 4  # b0 images whose median Otsu mask a process keeps (`_otsu_brain`)
_otsu_kept: OrderedDict = OrderedDict()
_otsu_lock = threading.Lock()


def _otsu_brain(b0: np.ndarray, median_radius: int, numpass: int, fill_slices: bool) -> np.ndarray:
    """Median Otsu's mask of the float64 `b0`, its largest component with its holes filled (`_largest_filled`); kept
    for the last OTSU_KEPT b0 images, keyed by their bytes: the Slicer module, `iqt view` and a script estimate the same
    scan's mask again at each run, and the median filter takes seconds on a whole scan."""
    from dipy.segment.mask import median_otsu

    b0 = np.ascontiguousarray(b0, np.float64)
    key = (hashlib.sha256(b0).hexdigest(), b0.shape, median_radius, numpass, fill_slices)
    with _otsu_lock:
        if key in _otsu_kept:
            _otsu_kept.move_to_end(key)
            return _otsu_kept[key].copy()
    mask = _largest_filled(median_otsu(b0, median_radius=median_radius, numpass=numpass)[1], fill_slices)
    with _otsu_lock:
        _otsu_kept[key] = mask.copy()
        while len(_otsu_kept) > OTSU_KEPT:
            _otsu_kept.popitem(last=False)
    return mask


def _largest_filled(mask: np.ndarray, fill_slices: bool) -> np.ndarray:
    """The largest component of `mask`, its holes filled (with `fill_slices`, those within one slice too)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, range(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    mask = ndimage.binary_fill_holes(mask)
    return fill_slice_holes(mask) if fill_slices else mask


STRIPPED_ZERO_SHARE = 0.2  # of the field of view zero in every volume: a background removed (or air zeroed)
STRIPPED_OTSU_SHARE = 0.85  # of the non-zero region median Otsu keeps: the region is the brain, not the head


def _stripped_brain(dwi: Volume, b0: np.ndarray, otsu: np.ndarray, fill_slices: bool) -> np.ndarray | None:
    """The region where a skull-stripped DWI is non-zero, where it is one: a background zero in every volume over a
    fifth of the field of view, and a region median Otsu covers almost wholly (0.915-0.983 of it on the eight shared
    subjects stripped with their own masks, 0.334-0.706 where only their air was zeroed: docs/measurements.md, Skull-
    stripped DWIs). Otsu run again on a stripped b0 cut 1.7-8.5 % of the brain away at its edge."""
    if np.mean(b0 == 0) < STRIPPED_ZERO_SHARE:  # zero in every volume is zero in the mean b0: most scans end here
        return None
    nonzero = np.zeros(dwi.shape3, bool)
    for k in range(dwi.data.shape[3]):  # a volume at a time: `dwi.data != 0` whole is a byte per sample (1 GB for HCP)
        nonzero |= np.asarray(dwi.data[..., k]) != 0
    if 1 - nonzero.mean() < STRIPPED_ZERO_SHARE:
        return None
    region = _largest_filled(nonzero, fill_slices)
    if (otsu & region).sum() < STRIPPED_OTSU_SHARE * region.sum():
        return None
    return region


def fill_slice_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` with every hole enclosed within one slice filled, along each of the three axes. Median Otsu leaves such
    holes by the ventricles and under the corpus callosum that open to the outside in 3D, so a 3D fill misses them
    (5.8 % and 5.3 % of the 3 mm dev scans' masks; docs/measurements.md, Holes in the estimated brain mask): left out,
    the output is zero there and cubic rings round them."""
    from scipy import ndimage

    out = np.asarray(mask, bool).copy()
    while True:  # filling along one axis can close a hole along another: repeat until nothing changes
        before = int(out.sum())
        for axis in range(3):
            planes = np.moveaxis(out, axis, 0)  # a view: filled in place
            for k in range(planes.shape[0]):
                planes[k] |= ndimage.binary_fill_holes(planes[k])
        if int(out.sum()) == before:
            return out


TISSUE_MD = (0.7, 5.0)  # MD range of brain tissue and CSF, in units of the input's MD mode (tensors.md_mode)
MAX_LOG_MD_SPREAD = 1.0  # std of log MD over a voxel's 3^3 above which its fits look like noise, not tissue
KEEP_WITHIN = 5  # voxels: how far the estimate may reach beyond its low-spread core
MAX_BRAIN_SHARE = 0.9  # an estimate covering more of the field of view than this finds no background to remove


def _largest_opened(cand):
    """The largest component of `cand` opened by two voxels (cuts the bridges to scalp and neck); None if empty."""
    from scipy import ndimage

    labels, n = ndimage.label(ndimage.binary_opening(cand, ndimage.generate_binary_structure(3, 1), iterations=2))
    if n == 0:
        return None
    sizes = ndimage.sum_labels(np.ones(labels.shape), labels, range(1, n + 1))
    return labels == (1 + int(np.argmax(sizes)))


def tissue_core(t: np.ndarray) -> np.ndarray | None:
    """The voxels of whole-field tensors that look like tissue, not noise (brain_from_tensors' core: PD with a
    tissue-like MD and little log MD spread over their 3^3, by 3^3 majority, the largest component opened by two
    voxels), holes filled: it holds the brain to its edge but few of the background's fits around it; None where empty."""
    from scipy import ndimage

    core = _low_spread_core(*_tissue_and_spread(t))
    return None if core is None else ndimage.binary_fill_holes(core)


def _low_spread_core(tissue: np.ndarray, spread: np.ndarray) -> np.ndarray | None:
    """The tissue-like voxels whose 3^3 log MD varies little (under MAX_LOG_MD_SPREAD), by 3^3 majority, the largest
    component opened by two voxels (_largest_opened): brain_from_tensors' core; None where empty."""
    from scipy import ndimage

    return _largest_opened(ndimage.uniform_filter((tissue & (spread < MAX_LOG_MD_SPREAD)).astype(np.float32), 3,
                                                  mode="nearest") >= 0.5)


def _tissue_and_spread(t: np.ndarray, unit: float | None = None):
    """(PD voxels with a tissue-like MD, the std of log MD over each voxel's 3^3) of whole-field tensors, MD read in
    `unit` (default: their MD mode)."""
    from scipy import ndimage

    from ..core import tensors

    lam = tensors.eigenvalues(t.reshape(-1, 6)).reshape(t.shape[:3] + (3,))
    md = lam.mean(axis=-1)
    unit = tensors.md_mode(t) if unit is None else unit
    lo, hi = TISSUE_MD
    tissue = (lam[..., 0] > 0) & (md > lo * unit) & (md < hi * unit)
    log_md = np.log(np.clip(md / unit, 1e-2, 1e2))
    mean = ndimage.uniform_filter(log_md, 3, mode="nearest")
    spread = np.sqrt(np.maximum(ndimage.uniform_filter(log_md**2, 3, mode="nearest") - mean**2, 0.0))
    return tissue, spread


def noise_fits(tensor: Volume) -> np.ndarray:
    """The voxels of whole-field tensors whose fits look like background noise, not tissue: not positive definite or
    MD outside TISSUE_MD, or log MD jumping over their 3^3 (MAX_LOG_MD_SPREAD). What a brain estimated from the
    tensors keeps of them is not brain, and no method's output there means anything (methods/base.py flags them)."""
    t = np.asarray(tensor.data)
    tissue, spread = _tissue_and_spread(t)
    return np.any(t != 0, axis=-1) & (~tissue | (spread >= MAX_LOG_MD_SPREAD))


def brain_from_tensors(tensor: Volume) -> Volume | None:
    """A brain estimated from tensors fitted over the whole field of view (no mask, no b0 at hand): positive-definite
    voxels with a tissue-like MD (TISSUE_MD times the MD mode), by 3^3 majority; the largest component after an
    opening by two voxels, grown back by two within them; then cut to KEEP_WITHIN voxels around its core, the same
    built from the voxels whose 3^3 log MD also varies little (noise fits often have a tissue-like MD but jump from
    voxel to voxel); holes filled. None where it would keep nearly everything (no background). Generous, not a brain
    mask: scalp and background fits near the brain stay. On the dev and training subjects fitted unmasked it kept
    every brain-mask voxel within one voxel (the support's margin); docs/measurements.md, Without a brain mask.
    Where the mode is a background's that outnumbers the brain (9 mm voxels average its noise fits to one low MD),
    the estimate is made again in the unit of the histogram's peak above it (tensors.md_upper_mode), which its meta
    records as "md_unit" (the brain's MD mode, which the noise index is read in)."""
    t = np.asarray(tensor.data)
    meta = {"source": "brain_from_tensors"}
    brain = _brain_in_unit(t, None)
    if brain is None:
        from ..core import tensors

        upper = tensors.md_upper_mode(t)
        brain = None if upper is None else _brain_in_unit(t, upper)
        meta["md_unit"] = upper
    if brain is None:
        return None
    return Volume(brain, tensor.affine, "mask", meta=meta)


def _brain_in_unit(t: np.ndarray, unit: float | None) -> np.ndarray | None:
    """brain_from_tensors' estimate with MD read in `unit` (default: the MD mode); None where it keeps more than
    MAX_BRAIN_SHARE of the field."""
    from scipy import ndimage

    tissue, spread = _tissue_and_spread(t, unit)
    cand = ndimage.uniform_filter(tissue.astype(np.float32), 3, mode="nearest") >= 0.5
    brain = _largest_opened(cand)
    if brain is None:
        return None
    ball = ndimage.generate_binary_structure(3, 1)
    brain = ndimage.binary_dilation(brain, ball, iterations=2) & cand
    core = _low_spread_core(tissue, spread)
    if core is not None:
        brain &= ndimage.binary_dilation(core, ball, iterations=KEEP_WITHIN)
    brain = ndimage.binary_fill_holes(brain)
    return None if brain.mean() > MAX_BRAIN_SHARE else brain


def inside_rim(present: np.ndarray, voxel_size) -> np.ndarray:
    """The voxels of `present` (an output's support, a brain estimated by brain_from_tensors and the rim of scalp and
    background fits it keeps) more than that rim's depth (noise_level.ESTIMATED_BRAIN_RIM_MM) inside its edge, the field's
    border counted as an edge (a head cut by the field of view has its rim there too): where a display reads the
    colour scale of an uncertainty map, which the rim's noise fits would otherwise set. Read on a grid of at most
    about RIM_GRID voxels (every 2nd voxel of a 256x256x160 map), plenty for a scale."""
    from scipy import ndimage

    from ..core import noise_level

    present = np.asarray(present, bool)
    step = max(1, int(np.ceil((present.size / RIM_GRID) ** (1 / 3))))
    coarse = present[::step, ::step, ::step]
    depth = ndimage.distance_transform_edt(np.pad(coarse, 1), sampling=np.asarray(voxel_size, float) * step)
    inner = coarse & (depth[1:-1, 1:-1, 1:-1] > noise_level.ESTIMATED_BRAIN_RIM_MM)
    for axis in range(3):
        inner = np.repeat(inner, step, axis=axis)
    return inner[: present.shape[0], : present.shape[1], : present.shape[2]] & present


RIM_GRID = 2_000_000
ESTIMATED_SUPPORT = "estimated"  # an output's meta["support"] where its support is a brain estimated from the tensors
SCALE_MIN_VOXELS = 1000  # fewer voxels inside the rim and a display reads its colour scale over the whole support
# a value held by more voxels than both of these is a flag level (methods/flags.py raises the voxels it flags to one
# value), not a measurement: a block-constant map at x4 repeats a value over 64 voxels
FLAG_LEVEL_VOXELS = 100
FLAG_LEVEL_SHARE = 0.001


def unflagged(values) -> np.ndarray:
    """A map's `values` where a display reads its colour scale, without its flag levels (FLAG_LEVEL_VOXELS): flagged
    voxels say "no information", and with them the scale was theirs (on the 3 mm ortho dev scan fitted unmasked, 99th
    percentile 9.87 um^2/ms inside the rim, the brain's median 0.089; docs/measurements.md, Background noise fits
    without a mask). Zero is never a flag level (outside the output, or a map with no information: its zeros stay, as
    before). All of `values` where flag levels hold half of them or more: a map flat but for a few voxels."""
    values = np.asarray(values).ravel()
    if values.size == 0:
        return values
    level, counts = np.unique(values, return_counts=True)
    level = level[(counts > max(FLAG_LEVEL_VOXELS, FLAG_LEVEL_SHARE * values.size)) & (level != 0)]
    kept = values[~np.isin(values, level)] if level.size else values
    return kept if 2 * kept.size > values.size else values


FIT_METHODS = ("WLS", "OLS")


SHELL_STEP = 100.0  # s/mm^2: b-values within this of each other are one shell
DTI_BMAX = 1500.0  # s/mm^2: the highest shell most DTI studies fit (above it kurtosis lowers the apparent MD)
MIN_DIRECTIONS = 6  # diffusion-weighted volumes a tensor needs


def shells(bvals) -> list[float]:
    """The series' diffusion-weighted shells, rounded to SHELL_STEP (b0s left out), ascending."""
    b = np.asarray(bvals, float)
    return sorted({float(SHELL_STEP * round(v / SHELL_STEP)) for v in b[b > B0_THRESHOLD]})


TRAINING_BMAX = 3000.0  # s/mm^2: the highest b a training subject may hold (its fit takes every shell: dmri/subject.py)


def check_training_shells(bvals, source: str = "") -> None:
    """Refuse a training subject with a b-value above TRAINING_BMAX (to half a SHELL_STEP, as `keep_bmax` keeps a
    shell's spread: HCP's b = 3010 is its 3000 shell): its DTI fit takes every shell and is biased there (kurtosis
    lowers the apparent MD), and a model trained on it learns that bias; a single shell relabelled b=6000 had trained
    without a word, and b = 1000 + 6000 still did when the lowest shell alone was checked (reviews). `source`:
    "<file>: " to start the line with."""
    b = np.asarray(bvals, float)
    b = b[b > B0_THRESHOLD]
    limit = TRAINING_BMAX + SHELL_STEP / 2
    if b.size and b.max() > limit:
        # iqt train has no --bmax: the volumes to keep are told by the cutoff applied here, not by shells, which a
        # tool may group otherwise (2990 and 3060 as one: 'dwiextract -shells 0,3000' had been said, which may keep
        # 3060; naming dwiextract or select_dwi_vols, which select by shell too, set the same trap: reviews)
        way = (f"train on a series that keeps only the b0s and the volumes with b at or under {limit:g} s/mm^2 as the "
               "bval file holds them (e.g. chosen with a short script over the bval file; most DTI studies "
               f"fit b = {DTI_BMAX:g} or below), or check the bval file if its b-values were mislabelled") \
            if (b <= limit).any() else "check the bval file if its b-values were mislabelled, or train on another series"
        raise IQTError(f"{source}holds b = {b.max():g} s/mm^2, above the {TRAINING_BMAX:g} ({limit:g} with a shell's "
                       "spread) up to which a training subject's DTI fit, which takes every shell, is allowed (kurtosis "
                       f"biases the tensors at high b, and a model would learn that bias): {way}")


def keep_bmax(dwi: Volume, bmax: float) -> Volume:
    """The series' b0s and the volumes with b up to `bmax` (to the shell rounding), for a DTI fit of the lower shells
    of a multi-shell acquisition."""
    b = np.asarray(dwi.bvals, float)
    if not np.isfinite(bmax) or bmax <= B0_THRESHOLD:  # nan had been told to give a higher --bmax (audit)
        raise IQTError(f"--bmax {bmax:g}: give the highest b-value to fit, in s/mm^2 (e.g. 1000)")
    keep = b <= float(bmax) + SHELL_STEP / 2
    if (keep & (b > B0_THRESHOLD)).sum() < MIN_DIRECTIONS:
        raise IQTError(f"--bmax {bmax:g}: only {(keep & (b > B0_THRESHOLD)).sum()} diffusion-weighted volumes have b up "
                       f"to it (shells at b = {', '.join(f'{v:g}' for v in shells(b))} s/mm^2); a tensor needs at least "
                       f"{MIN_DIRECTIONS}: give a higher --bmax")
    return Volume(np.asarray(dwi.data)[..., keep], dwi.affine, "dwi", bvals=b[keep], bvecs=np.asarray(dwi.bvecs)[keep],
                  meta={**dwi.meta, "bmax": float(bmax), "file_volumes": file_volumes(dwi)[keep]})


def file_volumes(dwi: Volume) -> np.ndarray:
    """(N,): each volume's number in the file it was read from (counted from 0): its own index, or after `keep_bmax`
    the kept volumes' places, so that a line naming a volume names the one a user finds in the file. Numbers carried
    (Volume.replace copies meta) onto a series of another length are refused, never read as another volume's."""
    numbers = np.asarray(dwi.meta.get("file_volumes", np.arange(len(dwi.bvals))), int)
    if len(numbers) != len(dwi.bvals):
        raise ValueError(f"the series holds {len(dwi.bvals)} volumes but carries the file numbers of {len(numbers)}: "
                         "a series cut after keep_bmax must carry its own numbers (dmri/dti.py keep_bmax)")
    return numbers


def check_shells(dwi: Volume) -> None:
    """One warning where a DTI fit would use shells above DTI_BMAX beside lower ones (an HCP-like multi-shell series):
    kurtosis lowers the apparent diffusivity at high b, so such a tensor is not the one a b = 1000 study reports."""
    found = shells(dwi.bvals)
    if len(found) > 1 and found[-1] > DTI_BMAX:  # every shell above it too (b = 2000 and 3000 alone)
        lower = max([v for v in found if v <= DTI_BMAX] or found[:1])
        source = dwi.source
        warnings.warn(source + _("the series has {count} shells (b = {shells} s/mm^2) and DTI is fitted to all of "
                                 "them, which lowers MD at high b; fit the lowest shell only, as most DTI studies do: "
                                 "{keep_lowest_shell}").format(
            count=len(found), shells=", ".join(f"{v:g}" for v in found),
            keep_lowest_shell=option("give --bmax {bmax} (iqt fit, mask, degrade, batch; the other commands fit every "
                                     "shell: give them a series of that shell)").format(bmax=f"{lower:g}")),
            IQTWarning, stacklevel=2)


def fit_dti(dwi: Volume, mask: Volume | np.ndarray | None = None, method: str = "WLS", say_shells: bool = True) -> Volume:
    """Tensor volume (lower-triangular, mm^2/s, voxel axes) by dipy weighted (default) or ordinary least squares;
    zero outside the mask. A multi-shell series reaching above DTI_BMAX gets one warning (`check_shells`) unless
    `say_shells` is False (a refit of a series already said)."""
    if dwi.kind != "dwi":
        raise IQTError("DTI fitting needs a diffusion-weighted series with b-values and directions")
    check_table(dwi.bvals, dwi.bvecs, dwi.data.shape[3] if dwi.data.ndim == 4 else 1)  # as fileio.load_dwi checks a file's
    if say_shells:
        check_shells(dwi)
    m = None if mask is None else np.asarray(getattr(mask, "data", mask), dtype=bool)
    if m is not None:
        if m.shape != dwi.shape3:
            raise IQTError(f"mask shape {m.shape} differs from the DWI grid {dwi.shape3}; give a mask on the DWI's grid")
        if isinstance(mask, Volume) and not grid.same_affine(mask.affine, dwi.affine):  # as Method.predict checks
            raise IQTError("the mask has the DWI's shape but another position or orientation (affine); give a mask made "
                           "on this DWI's grid (e.g. 'iqt mask'), or one read with fileio.load_mask(path, reference=dwi)")
        if not m.any():
            raise IQTError("the mask is empty (no voxel inside); give a brain mask, for example from 'iqt mask'")
    if method not in FIT_METHODS:
        raise IQTError(f"DTI fit method {method!r}: choose one of {', '.join(FIT_METHODS)}")
    from dipy.reconst.dti import TensorModel  # after the checks: a refusal need not wait for dipy's import

    data = np.maximum(np.asarray(dwi.data, dtype=np.float64), 0.0)
    scale = signal_scale(data, dwi.bvals)
    if scale != 1.0:
        data *= scale
    if method == "OLS":
        tensor = _ols(gradient_table(dwi), data, m)
    else:
        model = TensorModel(gradient_table(dwi), fit_method=_wls, return_S0_hat=False)
        with np.errstate(all="ignore"):
            tensor = model.fit(data, mask=m).lower_triangular()
    tensor = np.nan_to_num(tensor, nan=0.0, posinf=0.0, neginf=0.0)
    if m is not None:
        tensor[~m] = 0.0
    return Volume(tensor.astype(np.float32), dwi.affine, "tensor", meta={"fit": f"dipy {method}"})


SIGNAL_LEVEL = 100.0  # the b0s' 99th percentile below which a series is scaled up before the fit


def signal_scale(data: np.ndarray, bvals) -> float:
    """The power of ten that brings the b0 volumes' 99th percentile to at least SIGNAL_LEVEL, else 1. dipy clips the
    signal at an absolute 1e-4 (MIN_POSITIVE_SIGNAL) before taking its log: a series stored at a small scale (an
    scl_slope of 1e-5, signal normalised to the b0) had a share of its brain clipped, and a zero sample weighed
    differently, so the tensors depended on the file's scale (fresh-eyes audit: median FA 0.150 against 0.173).
    Now the floor stays at most 1e-6 of that percentile, and a series stored at a power-of-ten scale of one whose
    level lies between SIGNAL_LEVEL and ten times it (the 3 mm dev scans' 674-683) gives the same tensors; a zero
    sample still weighs a little differently at another level (the floor is absolute). Scanners' integers (p99 358 to
    3.6e5 on the project's subjects) are left as they are, so their fits do not change."""
    b0 = data[::2, ::2, ::2][..., np.asarray(bvals) <= B0_THRESHOLD]  # every 8th voxel: plenty for a percentile
    level = float(np.percentile(b0, 99)) if b0.size else 0.0
    if not level > 0 or level >= SIGNAL_LEVEL:
        return 1.0
    return float(10.0 ** np.ceil(np.log10(SIGNAL_LEVEL / level)))


WLS_CHUNK = 50_000  # voxels per step: the (voxels, 7, 7) normal matrices of one step take 20 MB
WLS_RCOND = 1e-4  # smallest/largest eigenvalue of a suspect voxel's normal matrix below which dipy solves it
WLS_TINY_WEIGHT = 1e-8  # a voxel whose smallest weight is below this share of its largest is suspect
WLS_DESIGN_COND = 1e7  # a design worse than this (5e3 at b = 1000), e.g. directions almost in one plane: dipy's way


def _wls(design: np.ndarray, data: np.ndarray, *args, **kwargs):
    """dipy's weighted least squares (Chung et al. 2006: weights from the OLS fit's predicted signal), solved by the
    7 x 7 normal equations per voxel instead of dipy's SVD of each voxel's weighted design: 2-4x faster, the same
    tensors to float32 precision (docs/measurements.md, Speed). The voxels whose weighted problem is close to
    singular, so that the normal equations would lose what dipy's SVD keeps (part of the signal clipped, or weights
    spanning more than 1e8), and a design that is itself ill-conditioned, go through dipy's own function.
    A voxel whose b0 holds no signal gets the eigenvalue floor (`_floor_without_b0`)."""
    from dipy.reconst.dti import eig_from_lo_tri, wls_fit_tensor

    norms = np.linalg.norm(design, axis=0)
    scale = 1.0 / np.where(norms > 0, norms, 1.0)  # equilibrated columns: b ~ 1e3 beside the constant's 1
    scaled = design * scale
    if not np.linalg.cond(design) < WLS_DESIGN_COND:
        params, extra = wls_fit_tensor(design, data, *args, **kwargs)
        return _floor_without_b0(params, design, data), extra
    outer = np.einsum("gi,gj->gij", scaled, scaled).reshape(len(design), -1)
    hat = design @ np.linalg.pinv(design)  # OLS prediction of the log signal
    floor = data.min()  # TensorModel.fit has clipped the signal at its min_signal
    params = np.empty(data.shape[:-1] + (design.shape[1],))
    for start in range(0, data.shape[0], WLS_CHUNK):
        block = data[start:start + WLS_CHUNK]
        log_s = np.log(block)
        log_w = log_s @ hat.T
        w2 = np.exp(2.0 * (log_w - log_w.max(axis=-1, keepdims=True)))  # squared weights over the voxel's largest
        normal = (w2 @ outer).reshape(-1, design.shape[1], design.shape[1])
        at_floor = block <= floor
        suspect = (at_floor.any(axis=-1) & ~at_floor.all(axis=-1)) | (w2.min(axis=-1) < WLS_TINY_WEIGHT)
        if suspect.any():  # all at the floor (zeroed air) is well posed: D = 0
            ev = np.linalg.eigvalsh(normal[suspect])
            suspect[suspect] = ~(ev[:, 0] > ev[:, -1] * WLS_RCOND)
        beta = np.zeros((len(block), design.shape[1]))
        try:
            beta[~suspect] = np.linalg.solve(normal[~suspect], ((w2 * log_s) @ scaled)[~suspect][..., None])[..., 0]
        except np.linalg.LinAlgError:  # an exactly singular one: the whole step goes dipy's way
            suspect[:] = True
        suspect |= ~np.isfinite(beta).all(axis=-1)
        beta *= scale
        if suspect.any():
            beta[suspect] = wls_fit_tensor(design, block[suspect], return_lower_triangular=True)[0]
        params[start:start + WLS_CHUNK] = beta
    return _floor_without_b0(eig_from_lo_tri(params, min_diffusivity=1e-6 / -design.min()), design, data), None


def _floor_without_b0(params: np.ndarray, design: np.ndarray, data: np.ndarray) -> np.ndarray:
    """`params` (eigenvalues, then eigenvectors, per voxel) with every eigenvalue of the voxels whose b0 volumes all
    hold no signal (at dipy's min_signal: zero in the file) set to the floor the fit clips them at (1e-6 / b_max, 5e-10
    mm^2/s at b = 2000): with no S0 the tensor is not measured there. With one shell dipy's fit gives most such voxels
    that floor anyway (its diffusivities come out negative), but the b-values scanners write, spread a few s/mm^2 about
    the shell (1995 / 2005), let the fit set S0 from the diffusion-weighted volumes alone and reach 7.8e-2 mm^2/s
    (docs/measurements.md, Holes in the estimated brain mask); a few voxels of little signal got up to 2.7e-2 with one
    shell too (the Elition's). The eigenvectors stay as fitted, so a voxel already at the floor keeps its bytes."""
    from dipy.reconst.dti import MIN_POSITIVE_SIGNAL

    # the b0 rows by their b-value (a row's diffusion terms sum, on the diagonal, to -b): a low-b volume keeps its
    # direction in the fit (gradient_table), so rows without diffusion terms had missed HCP-style b = 5 b0s (a review)
    b0 = -(design[:, 0] + design[:, 2] + design[:, 5]) <= B0_THRESHOLD * (1 + 1e-9)  # b |g|^2 rounds above 50 at 50
    if b0.any():
        no_s0 = np.all(data[..., b0] <= MIN_POSITIVE_SIGNAL, axis=-1)
        params[no_s0, :3] = 1e-6 / -design.min()
    return params


def _ols(gtab, data: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Ordinary least squares on the log signal with the tensor's elements as they come out: dipy floors the
    eigenvalues at a small positive value, other tools' OLS fits keep negative ones (as this style must)."""
    from dipy.reconst.dti import MIN_POSITIVE_SIGNAL, design_matrix

    sel = np.ones(data.shape[:3], bool) if mask is None else mask
    y = np.log(np.maximum(data[sel], MIN_POSITIVE_SIGNAL))
    params = np.linalg.lstsq(design_matrix(gtab), y.T, rcond=None)[0]  # (7, voxels): 6 elements, -log S0
    tensor = np.zeros(data.shape[:3] + (6,))
    tensor[sel] = params[:6].T
    return tensor
