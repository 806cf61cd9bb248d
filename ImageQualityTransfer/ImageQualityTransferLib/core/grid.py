"""Grid alignment for per-axis factors (docs/conventions.md, Grid).

A factor is a tuple (fx, fy, fz) of positive integers in the input's voxel axes, at least one > 1; an integer r
means (r, r, r). Along an axis with factor f, low-res voxel i covers high-res voxels f*i .. f*i+f-1 (a factor
of 1 leaves that axis as it is). Every function here takes an integer or a tuple.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .errors import IQTError
from .i18n import _

EXAMPLES = "e.g. 2, 3 or 1,1,3"


def factors(value, identity_ok: bool = False) -> tuple[int, int, int]:
    """(fx, fy, fz) from an integer r (-> (r, r, r)), a text "2" or "1,1,3", or a sequence of three; IQTError else.
    An upsampling request needs a factor of at least 2 on one axis; `identity_ok` also takes (1, 1, 1) (the
    geometric helpers below, and evaluation on a grid against itself)."""
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, (list, tuple, np.ndarray)):
        parts = list(value)
    else:
        parts = [value]
    try:
        f = [_integer(p) for p in parts]
    except (TypeError, ValueError):
        f = []
    if len(f) not in (1, 3):
        raise IQTError(f"--factor {_text(value)}: give one integer or three separated by commas ({EXAMPLES})")
    f = f * 3 if len(f) == 1 else f
    if min(f) < 1:
        raise IQTError(f"--factor {_text(value)}: every factor must be a positive integer ({EXAMPLES})")
    if max(f) > MAX_FACTOR:  # a 320-digit one ended in an OverflowError (a thick-slice audit)
        raise IQTError(f"--factor {_text(value)}: give factors of at most {MAX_FACTOR:,} ({EXAMPLES})")
    if max(f) < 2 and not identity_ok:
        raise IQTError(f"--factor {_text(value)}: nothing to upsample; the factor must be at least 2 along one axis "
                       f"or more ({EXAMPLES})")
    return tuple(f)


MAX_FACTOR = 10_000  # far beyond any grid memory allows (core/memory.py check_output_size refuses those); past it, arithmetic overflows


def _integer(p) -> int:
    if isinstance(p, str):
        return int(p.strip())
    i = int(p)
    if i != p or isinstance(p, bool):
        raise ValueError(p)
    return i


def _text(value) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return ",".join(str(v) for v in value)
    return str(value)


def isotropic(f) -> int | None:
    """r when the factors are (r, r, r), None otherwise."""
    f = factors(f, identity_ok=True)
    return f[0] if f[0] == f[1] == f[2] else None


NIFTI_MAX_DIM = 32767  # NIfTI-1 stores each dim as int16: nibabel's writer fails on more, after the whole run
UNLIMITED = (".nrrd", ".nhdr", ".mif", ".mif.gz")  # NRRD's and MRtrix's sizes are text (fileio/paths.py's suffixes)


def check_nifti_grid(shape3, f, outputs, nrrd_ok: bool = False) -> None:
    """Refuse (one line) before any work a high-res grid of `shape3` at `f` with an axis above NIFTI_MAX_DIM voxels
    where any of `outputs` (paths) is NIfTI; `nrrd_ok`: the first of them could be a .nrrd or .mif instead (said so)."""
    shape = tuple(int(s) * int(k) for s, k in zip(shape3, factors(f)))
    nifti = [p for p in outputs if not str(p).lower().endswith(UNLIMITED)]
    if max(shape) <= NIFTI_MAX_DIM or not nifti:
        return
    other = "; or a .nrrd or .mif tensor output (-o NAME.nrrd, -o NAME.mif), which have no such limit" \
        if nrrd_ok and nifti[0] == outputs[0] and len(nifti) == 1 else ""
    raise IQTError(f"{describe(f)}: a high-res grid of {shape[0]}x{shape[1]}x{shape[2]} voxels, more than the "
                   f"{NIFTI_MAX_DIM:,} voxels along an axis a NIfTI file can hold ({nifti[0]}); give smaller "
                   f"factors (or a larger --voxel-size){other}")


def text(f) -> str:
    """How factors are written in messages and names: "2" for (2, 2, 2), "1,1,3" otherwise."""
    r = isotropic(f)
    return str(r) if r is not None else ",".join(map(str, factors(f, identity_ok=True)))


def describe(f) -> str:
    """"factor 2" or "factors 1,1,3" (for messages)."""
    return ("factor " if isotropic(f) is not None else "factors ") + text(f)


def described(f) -> str:
    """`describe(f)` in the user's language (core/i18n.py), for the marked lines that name factors."""
    return (_("factor {factors}") if isotropic(f) is not None else _("factors {factors}")).format(factors=text(f))


def record(f):
    """The factors as JSON records hold them: an integer when isotropic (as before), else a list of three."""
    r = isotropic(f)
    return r if r is not None else list(factors(f, identity_ok=True))


def permute(f, ornt) -> tuple[int, int, int]:
    """The factors in the axes a reorientation (nibabel `ornt`: per input axis, (output axis, flip)) maps to."""
    f = factors(f, identity_ok=True)
    out = [0, 0, 0]
    for src, (dst, _flip) in enumerate(np.asarray(ornt)):
        out[int(dst)] = f[src]
    return tuple(out)


THICK_RATIO = 1.2  # a voxel axis this many times longer than the other two holds thick slices (dmri/outliers.py)


def thick_axis(voxel_size) -> int | None:
    """The voxel axis at least THICK_RATIO times longer than the other two (thick slices), else None."""
    size = np.asarray(voxel_size, float)
    k = int(np.argmax(size))
    return k if size[k] >= THICK_RATIO * max(np.delete(size, k)) else None


def largest_axis(f) -> int | None:
    """The one axis with the largest factor (the thick-slice axis of through-plane factors such as 1,1,3); None
    when two or more axes share the largest factor (isotropic)."""
    f = factors(f, identity_ok=True)
    top = [i for i, k in enumerate(f) if k == max(f)]
    return top[0] if len(top) == 1 else None


def axis_order(f, have) -> tuple[int, int, int] | None:
    """The axis permutation p (new axis k is old axis p[k]) that turns factors `f` into one of the factor sets
    `have`: the identity when `f` is one of them, else a cyclic one (a rotation of the axes, so the anatomy is
    turned, never mirrored), else a swap; None when no set is a reordering of `f`. A model trained for (1, 1, 3)
    (thick slices along the last axis) serves (3, 1, 1) with the axes permuted (docs/conventions.md, Grid)."""
    f = factors(f, identity_ok=True)
    sets = [factors(h, identity_ok=True) for h in have]
    for p in ROTATIONS_FIRST:
        if tuple(f[i] for i in p) in sets:
            return p
    return None


def _odd(p) -> bool:
    return sum(p[i] > p[j] for i in range(3) for j in range(i + 1, 3)) % 2 == 1


ROTATIONS_FIRST = sorted(itertools.permutations(range(3)), key=lambda p: (_odd(p), p))


def check_voxel_size(target_mm, name: str = "--voxel-size") -> float:
    """A wanted output voxel size in mm: a positive finite number; IQTError (naming the control `name`) else."""
    try:
        target = float(target_mm)
    except (TypeError, ValueError):
        target = float("nan")
    if not (target > 0 and math.isfinite(target)):
        raise IQTError(f"{name} {target_mm}: give the wanted output voxel size in mm, a positive number (e.g. 1.25)")
    return target


# A voxel this much above the target reaches it: headers hold 2.7073 for a nominal 2.7 mm
VOXEL_SIZE_TOLERANCE = 0.02


def for_voxel_size(voxel_size, target_mm, name: str = "--voxel-size",
                   instead: str = "give a smaller voxel size, or a --factor") -> tuple[int, int, int]:
    """The smallest integer factor per axis that brings each voxel size to at most `target_mm` (within
    VOXEL_SIZE_TOLERANCE: a scanner's nominal 2.7 mm, stored as 2.7073, is not split in three for a target of 2.7);
    IQTError (naming the control `name`, suggesting `instead`) when no axis needs upsampling."""
    target = check_voxel_size(target_mm, name)
    v = [float(x) for x in voxel_size]
    ratios = [x / (target * (1 + VOXEL_SIZE_TOLERANCE)) for x in v]
    if not all(r <= MAX_FACTOR for r in ratios):  # 1e-308 gave infinity, then an OverflowError (a thick-slice audit)
        raise IQTError(f"{name} {target:g}: the input's voxels ({'x'.join(f'{x:.3g}' for x in v)} mm) would need factors "
                       f"above {MAX_FACTOR:,}; give the wanted output voxel size in mm (e.g. 1.25)")
    f = tuple(max(1, math.ceil(r - 1e-6)) for r in ratios)
    if max(f) < 2:
        raise IQTError(f"{name} {target:g}: the input's voxels ({'x'.join(f'{x:.3g}' for x in v)} mm) are already "
                       f"at most {target:g} mm, or within {VOXEL_SIZE_TOLERANCE:.0%} of it (a header's 2.7073 mm is a "
                       f"nominal 2.7); {instead}")
    return f


def voxel_size_choices(voxel_size, most: int) -> list[tuple[float, tuple[int, int, int]]]:
    """(T, factors) for each factor set, none above `most`, that `for_voxel_size` gives `voxel_size` for some
    --voxel-size, ascending: T an output voxel size x/k to 3 digits where one gives the set, else the shortest decimal
    that does, each pair read off `for_voxel_size` itself. A hint naming a voxel size then names one that gives what
    it says: x/k alone had missed the narrow windows the tolerance leaves below them (2.707x2.707x5.4 mm gets factor 2
    from 2.647 to 2.653 mm only, where no x/k lies); a window no number of 4 significant digits falls in is left out."""
    v = [float(x) for x in voxel_size]
    scale = 1 + VOXEL_SIZE_TOLERANCE
    # where an axis's factor steps from k to k + 1 as the target falls (the rule's own ratio, with its 1e-6)
    edges = sorted({x / ((k + 1e-6) * scale) for x in v for k in range(1, int(most) + 1)})
    found: dict[tuple, tuple] = {}  # factors -> (not an x/k, T)
    for lo, hi in zip(edges, edges[1:] + [math.inf]):
        nice = [float(f"{x / k:.3g}") for x in v for k in range(1, int(most) + 1)]
        tries = [(0, t) for t in nice if lo <= t < hi] + [(1, _shortest_decimal(lo, hi))]
        for rank, t in (pair for pair in tries if pair[1] is not None):
            try:
                g = for_voxel_size(v, t)
            except IQTError:  # no axis refined
                continue
            if max(g) <= most and (g not in found or (rank, t) < found[g]):
                found[g] = (rank, t)
    return sorted(((t, g) for g, (_, t) in found.items()), key=lambda pair: pair[0])


def _shortest_decimal(lo: float, hi: float) -> float | None:
    """The number of fewest significant digits, at most 4, in [lo, hi); None where none is (a window no one types, as
    the rule's 1e-6 guard leaves: 2.941174 alone gives 3x3x6 mm factors 1,1,3)."""
    top = math.floor(math.log10(lo))
    for digits in range(1, 5):
        step = 10.0 ** (top - digits + 1)
        t = float(f"{math.ceil(lo / step - 1e-9) * step:.{digits}g}")
        if lo <= t < hi:
            return t
    return None


def repeat_blocks(a, f) -> np.ndarray:
    """A low-res map on the high-res grid: each voxel repeated into its fx*fy*fz block (nearest upsampling)."""
    fx, fy, fz = factors(f, identity_ok=True)
    return np.asarray(a).repeat(fx, 0).repeat(fy, 1).repeat(fz, 2)


def hr_affine(lr_affine: np.ndarray, f) -> np.ndarray:
    """Affine of the high-res grid: voxel size / f per axis, origin at the centre of the first high-res voxel."""
    fa = np.asarray(factors(f, identity_ok=True), float)
    t = np.diag([*(1.0 / fa), 1.0])
    t[:3, 3] = -(fa - 1) / (2.0 * fa)
    return np.asarray(lr_affine, float) @ t


def lr_affine(hr_aff: np.ndarray, f, shift=(0, 0, 0), gap=(0, 0, 0)) -> np.ndarray:
    """Affine of the low-res grid made by averaging fx*fy*fz blocks that start at high-res index `shift`, with `gap`
    high-res planes dropped after each block (slices with a gap: the low-res spacing is f + gap)."""
    fa = np.asarray(factors(f, identity_ok=True), float)
    t = np.diag([*(fa + np.asarray(gap, float)), 1.0])
    t[:3, 3] = np.asarray(shift, float) + (fa - 1) / 2.0
    return np.asarray(hr_aff, float) @ t


def lr_coordinates(n_lr: int, r: int) -> np.ndarray:
    """Continuous low-res index of each of the r*n_lr high-res voxel centres along one axis (factor r on it)."""
    return (np.arange(r * n_lr) - (r - 1) / 2.0) / r


def bounding_box(present: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box (one slice per axis) holding every True voxel of `present`; None where there is none."""
    box = []
    for ax in range(present.ndim):  # one projection per axis: no index array of every voxel
        hit = np.flatnonzero(present.any(axis=tuple(a for a in range(present.ndim) if a != ax)))
        if not len(hit):
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def box_affine(affine, box) -> np.ndarray:
    """The voxel-to-world matrix of the sub-grid `box` of a grid with `affine`: the same axes, its first voxel's origin."""
    out = np.array(affine, float)
    out[:3, 3] += out[:3, :3] @ [b.start for b in box]
    return out


def same_affine(affine, reference) -> bool:
    """Whether `affine` places the voxels where `reference` does: every entry within a thousandth of the reference's
    largest voxel-axis entry (a header's rounding passes, a shift or a flip does not). The one test of a mask's grid,
    for a mask file (fileio.load_mask) and for a mask given to `Method.predict` in memory."""
    return bool(np.allclose(np.asarray(affine, float), np.asarray(reference, float), atol=affine_tolerance(reference)))


def affine_tolerance(reference) -> float:
    """How far (mm) `same_affine` lets an affine's entries lie from `reference`'s: a thousandth of its largest
    voxel-axis entry (a header's rounding)."""
    return 1e-3 * float(np.abs(np.asarray(reference, float)[:3, :3]).max())


def extent_mm(where, affine) -> float:
    """The largest extent in mm, along the voxel axes, of the voxels `where` (X,Y,Z bool); 0 where there are none."""
    w = np.asarray(where, bool)
    if not w.any():
        return 0.0
    sizes = np.linalg.norm(np.asarray(affine, np.float64)[:3, :3], axis=0)
    spans = []
    for ax in range(3):
        idx = np.flatnonzero(w.any(axis=tuple(a for a in range(3) if a != ax)))
        spans.append((idx[-1] - idx[0] + 1) * sizes[ax])
    return float(max(spans))
