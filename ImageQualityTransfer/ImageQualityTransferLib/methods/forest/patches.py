"""Patch library: low-res (2n+1)^3 x 6 input patches and their fx*fy*fz x 6 high-res residual targets (an integer
factor r is (r, r, r); through-plane factors such as (1, 1, 3) refine one axis only).

Every training subject is reoriented to canonical (RAS) voxel axes (tensor components with them), as
`Method.predict` feeds a method; each of the r^3 block shifts is degraded (`degrade.degrade`: DWIs
block-averaged, DTI fitted on the dilated low-res mask, eigenvalues clipped) and paired with the matching
high-res reference crop (`degrade.hr_crop`). A low-res voxel gives one example when it lies in the brain
(the low-res mask dilated by one voxel, the voxels a method answers for) and all r^3 high-res voxels it
covers are in the high-res brain mask with a plausible fit (`tensors.plausible`). The target is the
reference block minus the cubic B-spline interpolation of the low-res input at those r^3 voxels. Examples
are subsampled at `rate` with a seeded generator, so a library is reproducible from its seed. With `flips`, each
example is then turned by one of the grid's flips and equal-factor swaps (`methods/symmetry.py`), drawn from the
same generator, as the CNNs' batches are (`methods/cnn/training_data.py`, `augment_batch`); the split features are
invariant to these, the patch, its missing map and the target block move with them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ...dmri import degrade as deg
from ...dmri import randomise as randomise_inputs
from ...core import grid, tensors
from ..inputs import clip_input
from ..context import fill_context
from ..interpolation import upsample_separable
from .. import symmetry
from ...core.orientation import Reorientation
from . import INPUT_UNITS, MD_REFERENCE, SCALE
from .features import volume_features


def patch_size(n: int) -> int:
    return (2 * n + 1) ** 3


def offsets(n: int) -> np.ndarray:
    r = np.arange(-n, n + 1)
    return np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)


def prepare_input(lr: np.ndarray, r, unit: str = "fixed", fill: bool = False):
    """Low-res input (mm^2/s) -> (clipped input, cubic B-spline upsampling, scale): both inputs multiplied by the
    scale, SCALE (1e-3 mm^2/s units) or, for `unit` "md-mode", SCALE * MD_REFERENCE / the input's MD mode. With
    `fill` (prediction), missing context beyond a tight mask is filled first (methods.context.fill_context), the
    unit still taken from the input as given; training does not fill, so that each shipped model's recorded command
    still makes it."""
    if unit not in INPUT_UNITS:
        raise ValueError(f"input unit {unit!r}; known: {', '.join(INPUT_UNITS)}")
    x = clip_input(np.asarray(lr, np.float32)).astype(np.float32)
    scale = SCALE
    if unit == "md-mode":
        mode = tensors.md_mode(x)
        scale = SCALE * MD_REFERENCE / mode if mode != 1.0 else SCALE  # 1.0: no tissue-like voxel to take it from
    if fill:
        x = fill_context(x)
    cubic = upsample_separable(x, r, 3)
    return x * np.float32(scale), cubic * np.float32(scale), float(scale)


def to_blocks(hr: np.ndarray, f) -> np.ndarray:
    """(fx X, fy Y, fz Z, K) -> (X, Y, Z, fx*fy*fz * K): the block of each low-res voxel, block-major (i, j, k,
    element); `f` an integer r or per-axis factors."""
    fx, fy, fz = grid.factors(f, identity_ok=True)
    X, Y, Z = (s // k for s, k in zip(hr.shape[:3], (fx, fy, fz)))
    K = hr.shape[3]
    b = hr[: fx * X, : fy * Y, : fz * Z].reshape(X, fx, Y, fy, Z, fz, K).transpose(0, 2, 4, 1, 3, 5, 6)
    return b.reshape(X, Y, Z, fx * fy * fz * K)


def from_blocks(b: np.ndarray, f, K: int = 6) -> np.ndarray:
    """Inverse of `to_blocks`."""
    fx, fy, fz = grid.factors(f, identity_ok=True)
    X, Y, Z = b.shape[:3]
    return b.reshape(X, Y, Z, fx, fy, fz, K).transpose(0, 3, 1, 4, 2, 5, 6).reshape(fx * X, fy * Y, fz * Z, K)


def extract(vol: np.ndarray, centres: np.ndarray, n: int):
    """Patches (N, (2n+1)^3 * 6) around `centres` (N, 3) of a (X,Y,Z,6) volume, zero outside the volume,
    and the (N, (2n+1)^3) map of missing voxels (all-zero tensors)."""
    pad = np.pad(vol, [(n, n)] * 3 + [(0, 0)])
    c = np.asarray(centres) + n
    out = np.empty((len(c), patch_size(n), vol.shape[-1]), np.float32)
    for k, (dx, dy, dz) in enumerate(offsets(n)):
        out[:, k] = pad[c[:, 0] + dx, c[:, 1] + dy, c[:, 2] + dz]
    missing = ~np.any(out != 0, axis=-1)
    return out.reshape(len(c), -1), missing


def _moved(points: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Index k' of each point's image under `p`: points (K, 3) centred integer coordinates, closed under `p`."""
    where = {tuple(q): i for i, q in enumerate(points.tolist())}
    return np.array([where[tuple(q)] for q in (points @ p.T).tolist()])


def flip_examples(X, missing, Y, C, f, n: int, which: np.ndarray):
    """Example i under transform `which[i]` of `symmetry.transforms(f)`: its patch and missing map as if extracted
    from the transformed volume at the moved centre, its block (Y, and C when given) as the transformed block."""
    f = grid.factors(f)
    ps = symmetry.transforms(f)
    offs = offsets(n)
    sub = np.stack(np.meshgrid(*(np.arange(k) for k in f), indexing="ij"), -1).reshape(-1, 3)
    sub = 2 * sub - (np.array(f) - 1)  # centred (doubled) sub-voxel coordinates, block-major as to_blocks
    X, missing, Y = X.copy(), missing.copy(), Y.copy()
    C = None if C is None else C.copy()
    for t, p in enumerate(ps):
        rows = np.flatnonzero(which == t)
        if t == 0 or len(rows) == 0:
            continue
        kp, bp = np.empty(len(offs), int), np.empty(len(sub), int)
        kp[_moved(offs, p)] = np.arange(len(offs))  # new patch voxel k' holds old voxel kp[k']
        bp[_moved(sub, p)] = np.arange(len(sub))
        K, B = len(offs), len(sub)
        X[rows] = tensors.rotate(X[rows].reshape(-1, K, 6)[:, kp], p).reshape(len(rows), -1)
        missing[rows] = missing[rows][:, kp]
        Y[rows] = tensors.rotate(Y[rows].reshape(-1, B, 6)[:, bp], p).reshape(len(rows), -1)
        if C is not None:
            C[rows] = tensors.rotate(C[rows].reshape(-1, B, 6)[:, bp], p).reshape(len(rows), -1)
    return X, missing, Y, C


def support(lr_mask: np.ndarray) -> np.ndarray:
    """Low-res voxels a method answers for: the mask dilated by one voxel (as the interpolations)."""
    return ndimage.binary_dilation(lr_mask, structure=np.ones((3, 3, 3), bool)) if lr_mask.any() else lr_mask


@dataclass
class Library:
    X: np.ndarray  # (N, (2n+1)^3 * 6) float32, 1e-3 mm^2/s, missing voxels zero (completed later)
    missing: np.ndarray  # (N, (2n+1)^3) bool
    F: np.ndarray  # (N, n_features) float32
    Y: np.ndarray  # (N, fx*fy*fz * 6) float32 residual over cubic, 1e-3 mm^2/s
    group: np.ndarray  # (N,) int16: index of the subject
    n: int
    factor: tuple  # (fx, fy, fz)
    subjects: list = field(default_factory=list)
    seconds: float = 0.0
    C: np.ndarray | None = None  # (N, fx*fy*fz * 6) float32: the cubic B-spline values of the block (1e-3 mm^2/s)

    def __len__(self):
        return len(self.X)

    def sha256(self) -> str:
        """SHA256 over the arrays a forest trains on (inputs, missing, features, targets, subjects, cubic values): two
        builds of one recorded command that differ here train different models, which this tells before any training."""
        return arrays_sha256(self.X, self.missing, self.F, self.Y, self.group, self.C)

    def take(self, idx) -> "Library":
        return Library(self.X[idx], self.missing[idx], self.F[idx], self.Y[idx], self.group[idx], self.n, self.factor,
                       list(self.subjects), self.seconds, None if self.C is None else self.C[idx])


def arrays_sha256(*arrays) -> str:
    """SHA256 over arrays' dtypes, shapes and bytes in order (None counts as such)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"None\0")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}\0".encode())
        h.update(a.data)
    return h.hexdigest()


def subject_examples(subject, r, n: int, rate: float, rng, shifts=None, log=None, randomise: bool = False,
                     subsets: float = 0.0, noise: float = 0.0, flips: bool = False, unit: str = "fixed"):
    """Examples of one `dmri.subject.Subject` over its block shifts: list of (X, missing, F, Y, C) arrays
    (C: the cubic B-spline values of each target block, the extra regressors of `inputs="patch+cubic"`);
    with `randomise`, each shift's input is made in a random way (dmri/randomise.py)."""
    reo = Reorientation.to_canonical(subject.dwi.affine)
    dwi = reo.apply(subject.dwi)
    mask = reo.apply(subject.mask).data.astype(bool)
    truth = reo.apply(subject.tensor).data
    good_full = mask & tensors.plausible(truth)
    parts = []
    for shift in shifts if shifts is not None else deg.all_shifts(r):
        t0 = time.perf_counter()
        variant = randomise_inputs.draw(rng, dwi.bvals, dwi.bvecs, subsets, noise) if randomise else randomise_inputs.Variant()
        pair = randomise_inputs.degrade_variant(dwi, mask, r, shift, variant)
        x, cubic, scale = prepare_input(pair.tensor.data, r, unit)
        good = to_blocks(deg.hr_crop(good_full, r, shift)[..., None].astype(np.float32), r).min(-1) > 0.5
        sel = support(pair.mask.data) & good
        centres = np.argwhere(sel)
        if rate < 1.0:
            centres = centres[rng.random(len(centres)) < rate]
        if not len(centres):  # a grid too small for the factors at this shift: nothing to learn from it
            continue
        target = to_blocks((deg.hr_crop(truth, r, shift) * scale).astype(np.float32), r)
        cb = to_blocks(cubic, r)
        res = target - cb
        X, miss = extract(x, centres, n)
        F = volume_features(x, n)[tuple(centres.T)]
        Y, C = res[tuple(centres.T)].astype(np.float32), cb[tuple(centres.T)].astype(np.float32)
        if flips:
            X, miss, Y, C = flip_examples(X, miss, Y, C, r, n, rng.integers(len(symmetry.transforms(grid.factors(r))),
                                                                                size=len(X)))
        parts.append((X, miss, F, Y, C))
        if log:
            log(f"  {subject.name} shift {shift} {variant.describe()}: {len(centres)} examples, sha256 "
                f"{arrays_sha256(X, miss, F, Y, C)[:12]} ({time.perf_counter() - t0:.1f} s)")
    return parts


def room_for_a_complete_patch(subjects, r, n: int = 1) -> bool:
    """Whether some subject's grid, read from its header, holds a whole (2n+1)^3 patch of low-res voxels (canonical axes,
    block shift 0: the largest low-res grid); where none does, no training patch can be complete, which `train` says
    before degrading every block shift (1000 of them at x10). A subject whose header cannot be read counts as room."""
    from ...core.errors import IQTError
    from ...core.orientation import Reorientation
    from ...dmri.subject import Coarsened, Subject, dwi_path
    from ...fileio.nifti import load_nifti

    for item in subjects:
        try:
            if isinstance(item, Subject):
                shape, affine = item.dwi.shape3, item.dwi.affine
            else:  # a coarsened copy's grid is smaller than its folder's: the folder's is an upper bound
                img = load_nifti(dwi_path(item.folder if isinstance(item, Coarsened) else item))
                shape, affine = img.shape[:3], img.affine
        except (IQTError, OSError, AttributeError):
            return True
        canonical = [0, 0, 0]
        for src, (dst, _) in enumerate(Reorientation.to_canonical(affine).ornt):
            canonical[int(dst)] = int(shape[src])
        if min(deg.lr_shape(canonical, r)) >= 2 * n + 1:
            return True
    return False


def build_library(subjects, r, n: int = 1, rate: float = 1.0, seed: int = 0, log=None,
                  randomise: bool = False, subsets: float = 0.0, noise: float = 0.0, flips: bool = False,
                  unit: str = "fixed") -> Library:
    """Library over `subjects` (subject folders, dmri.subject.Coarsened copies or Subject objects), every block shift;
    each input and its target in `unit` (prepare_input)."""
    from ...dmri.subject import as_subject, check_subject_table

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    parts, groups, names = [], [], []
    for gi, s in enumerate(subjects):
        if log and not hasattr(s, "dwi"):
            log(f"loading {getattr(s, 'name', s)}")
        item, s = s, as_subject(s)
        check_subject_table(item, s)
        names.append(s.name)
        for p in subject_examples(s, r, n, rate, rng, log=log, randomise=randomise, subsets=subsets, noise=noise,
                                  flips=flips, unit=unit):
            parts.append(p)
            groups.append(np.full(len(p[0]), gi, np.int16))
    cat = [np.concatenate([p[k] for p in parts]) for k in range(5)]
    return Library(cat[0], cat[1], cat[2], cat[3], np.concatenate(groups), n, grid.factors(r), names, time.perf_counter() - t0, cat[4])
