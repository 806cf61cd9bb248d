"""Tensor algebra on (...,6) arrays in the NIfTI lower-triangular order Dxx,Dxy,Dyy,Dxz,Dyz,Dzz.

Invariants (eigen, FA, MD, colour FA), eigenvalue clipping, log-Euclidean maps, component
reordering for other file conventions, rotation of the frame, and the plausible-voxel test (docs/conventions.md).
"""

from __future__ import annotations

import numpy as np

# (row, col) of each stored element, NIfTI SYMMATRIX lower-triangular order.
LOWER_TRIANGULAR = ((0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2))
# Other on-disk orders, as index lists into the lower-triangular order.
ORDERS = {
    "nifti": (0, 1, 2, 3, 4, 5),  # Dxx Dxy Dyy Dxz Dyz Dzz
    "fsl": (0, 1, 3, 2, 4, 5),  # Dxx Dxy Dxz Dyy Dyz Dzz
    "mrtrix": (0, 2, 5, 1, 3, 4),  # Dxx Dyy Dzz Dxy Dxz Dyz
    "dipy": (0, 1, 2, 3, 4, 5),  # TensorFit.lower_triangular() saved as a 4D array: Dxx Dxy Dyy Dxz Dyz Dzz
}

PLAUSIBLE_RANGE = (-1e-3, 5e-3)  # mm^2/s: eigenvalues outside mean a failed fit
INPUT_CLIP = (0.0, 4e-3)  # mm^2/s: clipping for method inputs and training targets


def to_order(t: np.ndarray, order: str) -> np.ndarray:
    """Lower-triangular -> file order `order` (a key of ORDERS)."""
    return t[..., list(ORDERS[order])]


def from_order(t: np.ndarray, order: str) -> np.ndarray:
    """File order `order` -> lower-triangular."""
    return t[..., list(np.argsort(ORDERS[order]))]


def to_matrix(t: np.ndarray) -> np.ndarray:
    """(...,6) -> (...,3,3) symmetric."""
    t = np.asarray(t)
    m = np.empty(t.shape[:-1] + (3, 3), dtype=t.dtype)
    for k, (i, j) in enumerate(LOWER_TRIANGULAR):
        m[..., i, j] = t[..., k]
        m[..., j, i] = t[..., k]
    return m


def from_matrix(m: np.ndarray) -> np.ndarray:
    """(...,3,3) -> (...,6), symmetrising."""
    m = np.asarray(m)
    return np.stack([(m[..., i, j] + m[..., j, i]) / 2 for i, j in LOWER_TRIANGULAR], axis=-1)


def eig(t: np.ndarray):
    """Eigenvalues (descending) and eigenvectors (columns) of each tensor; non-finite tensors give NaN."""
    t = np.asarray(t, dtype=np.float64)
    finite = np.isfinite(t).all(axis=-1)
    m = to_matrix(np.where(finite[..., None], t, 0.0))
    w, v = np.linalg.eigh(m)
    w, v = w[..., ::-1], v[..., :, ::-1]
    w[~finite] = np.nan
    v[~finite] = np.nan
    return w, v


def _trigonometric(a, b, c, d, e, f):
    """The trigonometric solution of the characteristic cubic of tensors with elements xx, xy, yy, xz, yz, zz (arrays,
    computed in their own dtype): (q, p, phi) with eigenvalues q + 2 p cos(phi + 2 pi k / 3), k = 0 the largest."""
    q = (a + c + f) / 3.0
    off = b * b + d * d + e * e
    p = np.sqrt(((a - q) ** 2 + (c - q) ** 2 + (f - q) ** 2 + 2.0 * off) / 6.0)
    inv = np.divide(1.0, p, out=np.zeros_like(p), where=p > 0)
    x, y, z = (a - q) * inv, (c - q) * inv, (f - q) * inv
    bb, dd, ee = b * inv, d * inv, e * inv
    half_det = 0.5 * (x * (y * z - ee * ee) - bb * (bb * z - ee * dd) + dd * (bb * ee - y * dd))
    return q, p, np.arccos(np.clip(half_det, -1.0, 1.0)) / 3.0


def eigenvalues(t: np.ndarray) -> np.ndarray:
    """Ascending eigenvalues (..., 3) of (..., 6) tensors in closed form (the trigonometric solution of the
    characteristic cubic, float64): about eight times faster than LAPACK's batched `eigvalsh` on a brain, within
    ~1e-8 of the largest eigenvalue (Testing/core). For tests and selections, not for rebuilding tensors."""
    t = np.asarray(t, np.float64)
    q, p, phi = _trigonometric(*(t[..., k] for k in range(6)))
    hi = q + 2.0 * p * np.cos(phi)
    lo = q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)
    return np.stack([lo, 3.0 * q - hi - lo, hi], axis=-1)


TISSUE_RANGE = (1e-4, 5e-3)  # mm^2/s: MD of brain tissue and CSF in a positive-definite fit
NEGLIGIBLE = 1e-5  # mm^2/s: a tensor whose six elements all lie within this of zero is no tissue (TISSUE_RANGE)
# Pictures of per-voxel diffusivity maps (uncertainty, error) read in µm²/ms = 1e-3 mm^2/s, as Slicer's map nodes do
# (a white-matter SD of 0.1, not 1e-4); the tables of errors keep the published 1e-5 mm^2/s.
SHOWN_UNIT = 1e3  # times mm^2/s
SHOWN_UNIT_LABEL = "µm²/ms"


def negligible(t: np.ndarray) -> np.ndarray:
    """Voxels whose tensor is not zero but too small to be tissue (every element within NEGLIGIBLE of zero): the
    background of a masked fit stored with a scale and an intercept (int16) or filled with a tiny value, and the air
    that a scanner zeroed in a fit over the whole field of view (dipy writes about 1e-9 there)."""
    a = np.abs(np.asarray(t)).max(axis=-1)
    return (a > 0) & (a <= NEGLIGIBLE)


def tissue_like(t: np.ndarray) -> np.ndarray:
    """Positive-definite tensors whose MD lies in TISSUE_RANGE."""
    lam = eigenvalues(t)
    md = lam.mean(axis=-1)
    return (lam[..., 0] > 0) & (md > TISSUE_RANGE[0]) & (md < TISSUE_RANGE[1])


def md(t: np.ndarray) -> np.ndarray:
    """Mean diffusivity (trace / 3)."""
    return (t[..., 0] + t[..., 2] + t[..., 5]) / 3.0


def fa_from_evals(w: np.ndarray) -> np.ndarray:
    mean = w.mean(axis=-1, keepdims=True)
    num = ((w - mean) ** 2).sum(axis=-1)
    den = (w**2).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fa = np.sqrt(1.5 * num / den)
    return np.clip(np.nan_to_num(fa, nan=0.0), 0.0, 1.0)


def fa_closed_form(a00, a10, a11, a20, a21, a22, tiny: float = 1e-30):
    """FA from the six elements without an eigen decomposition, sqrt(3/2) |D - MD I|_F / |D|_F, with
    operators numpy arrays and torch tensors share. |D - MD I|^2 is summed directly (no cancellation), so
    float32 isotropic tensors keep FA 0; a zero tensor gives 0 (|D|^2 floored at `tiny`), NaN stays NaN."""
    m = (a00 + a11 + a22) / 3.0
    dev2 = (a00 - m) ** 2 + (a11 - m) ** 2 + (a22 - m) ** 2 + 2.0 * (a10**2 + a20**2 + a21**2)
    norm2 = dev2 + 3.0 * m**2
    return (1.5 * dev2 / norm2.clip(tiny, None)) ** 0.5


def fa(t: np.ndarray) -> np.ndarray:
    """Fractional anisotropy in [0,1] of (..., 6) tensors; 0 where the tensor is zero or not finite. In closed form
    (`fa_closed_form`, float64): the eigenvalues' formula to 1e-15, 30x faster than LAPACK on a dev subject's tensors."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # inf and 0/0 end as NaN, then 0
        out = fa_closed_form(*(np.asarray(t)[..., k].astype(np.float64) for k in range(6)), tiny=0.0)
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0)


def color_fa(t: np.ndarray) -> np.ndarray:
    """RGB = FA * |principal eigenvector| (voxel axes), (...,3) in [0,1]."""
    w, v = eig(t)
    rgb = np.abs(v[..., :, 0]) * fa_from_evals(w)[..., None]
    return np.clip(np.nan_to_num(rgb), 0.0, 1.0)


DTIFIT_MAPS = ("FA", "MD", "L1", "L2", "L3", "V1")  # what FSL's dtifit writes of a tensor, by its names


def dtifit_maps(t: np.ndarray) -> dict[str, np.ndarray]:
    """The scalar and vector maps dtifit writes, from (X,Y,Z,6) tensors: FA (clipped to [0,1]), MD and the
    eigenvalues L1 >= L2 >= L3 (the tensor's unit), V1 the principal eigenvector (X,Y,Z,3) in the tensors' frame
    (0 where L1 = L2: no principal direction, where dtifit gives an arbitrary one);
    every map zero where the tensor is (outside the support), float32. In closed form (`eigenvalues`,
    `principal_vector`, float64): 5x faster than LAPACK on a brain, the same V1 wherever L1 exceeds L2 by 0.1 %."""
    t = np.asarray(t)
    present = np.any(t != 0, axis=-1)
    out = {k: np.zeros(t.shape[:-1] + ((3,) if k == "V1" else ()), np.float32) for k in DTIFIT_MAPS}
    where = np.flatnonzero(present)
    flat = {k: v.reshape((-1,) + v.shape[3:]) for k, v in out.items()}
    for start in range(0, len(where), 200_000):  # chunks: the closed forms' temporaries stay small
        idx = where[start:start + 200_000]
        x = t.reshape(-1, 6)[idx].astype(np.float64)
        w = eigenvalues(x)[:, ::-1]
        flat["FA"][idx] = fa_from_evals(w)
        flat["MD"][idx] = md(x)  # the trace's third in float64, as every MD map here is (iqt batch's too)
        for k in range(3):
            flat[f"L{k + 1}"][idx] = w[:, k]
        flat["V1"][idx] = principal_vector(x)
    return out


def rebuild(w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(...,6) from eigenvalues w (...,3) and eigenvectors v (...,3,3)."""
    return from_matrix(np.einsum("...ik,...k,...jk->...ij", v, w, v))


def clip_eigenvalues(t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip every eigenvalue into [lo, hi]; non-finite tensors become zero. Only voxels that need it are rebuilt."""
    t = np.asarray(t)
    out = t.copy()
    finite = np.isfinite(t).all(axis=-1)
    out[~finite] = 0.0
    nonzero = finite & np.any(t != 0, axis=-1)
    w = eigenvalues(t[nonzero])
    outside = (w < lo).any(axis=-1) | (w > hi).any(axis=-1)
    if outside.any():
        w_all, v = eig(t[nonzero][outside])
        fixed = rebuild(np.clip(w_all, lo, hi), v)
        idx = np.flatnonzero(nonzero.ravel())[outside]
        out.reshape(-1, 6)[idx] = fixed
    if lo > 0:  # zero tensors are outside [lo, hi] too
        out[finite & ~nonzero] = from_matrix(np.eye(3) * lo)
    return out


def distance_to_physical(t: np.ndarray) -> np.ndarray:
    """Per voxel, the RMS over the six elements of the change that makes the tensor positive semi-definite (its
    negative eigenvalues raised to zero): zero for physical tensors. A reference tensor is physical, so an output's
    error is about at least this much wherever it is not."""
    t = np.asarray(t)
    out = np.zeros(t.shape[:-1], np.float32)
    flat = t.reshape(-1, 6)
    idx = np.flatnonzero(np.any(flat != 0, axis=-1) & np.isfinite(flat).all(axis=-1))
    w = eigenvalues(flat[idx])
    bad = w[:, 0] < 0
    if bad.any():
        w_b, v = eig(flat[idx[bad]])
        change = rebuild(np.minimum(w_b, 0.0), v)
        out.reshape(-1)[idx[bad]] = np.sqrt(np.mean(change**2, axis=-1))
    return out


def logm(t: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """Log-Euclidean map: matrix log of the PD projection of each tensor."""
    w, v = eig(t)
    return rebuild(np.log(np.maximum(np.nan_to_num(w, nan=floor), floor)), np.nan_to_num(v))


def expm(t: np.ndarray) -> np.ndarray:
    """Inverse of `logm`: matrix exponential of symmetric tensors."""
    w, v = eig(t)
    return rebuild(np.exp(w), v)


def plausible(t: np.ndarray, lo: float = PLAUSIBLE_RANGE[0], hi: float = PLAUSIBLE_RANGE[1]) -> np.ndarray:
    """True where the tensor is finite and its eigenvalues lie in [lo, hi] (a successful fit)."""
    w, _ = eig(t)
    return np.isfinite(w).all(axis=-1) & (w >= lo).all(axis=-1) & (w <= hi).all(axis=-1)


def failed_fits(t: np.ndarray) -> np.ndarray:
    """Non-zero voxels whose eigenvalues leave PLAUSIBLE_RANGE: fits that failed (dipy's WLS in low-signal voxels
    reaches eigenvalues of 1e-2 to 2.5 mm^2/s; no tissue diffuses faster than free water, 3e-3 at 37 degrees C)."""
    t = np.asarray(t)
    present = np.any(t != 0, axis=-1)
    w = eigenvalues(t[present])
    bad = ~(np.isfinite(w).all(-1) & (w >= PLAUSIBLE_RANGE[0]).all(-1) & (w <= PLAUSIBLE_RANGE[1]).all(-1))
    out = np.zeros(present.shape, bool)
    out[present] = bad
    return out


def rotate(t: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Express tensors in a new frame: D' = R D R^T for a 3x3 R (new axes from old)."""
    rot = np.asarray(rot, dtype=float)
    if np.array_equal(np.abs(rot), np.abs(rot).round()) and (np.abs(rot).sum(axis=1) == 1).all():
        return _permute(np.asarray(t), rot)
    m = to_matrix(t)
    return from_matrix(np.einsum("ij,...jk,lk->...il", rot, m, rot)).astype(np.asarray(t).dtype, copy=False)


def _permute(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """`rotate` for a signed permutation: a reordering of the 6 components with sign flips (no arithmetic)."""
    src = np.abs(p).argmax(axis=1)
    sign = p[np.arange(3), src]
    order, signs = [], []
    for i, j in LOWER_TRIANGULAR:
        a, b = sorted((src[i], src[j]), reverse=True)
        order.append(LOWER_TRIANGULAR.index((a, b)))
        signs.append(sign[i] * sign[j])
    if order == list(range(6)):  # a flip of axes only: one copy (contiguous, whatever the view), then signs in place
        out = np.empty(t.shape, t.dtype)
        out[...] = t
    else:
        out = np.take(t, order, axis=-1)
    for k in np.flatnonzero(np.array(signs) < 0):
        out[..., k] *= -1
    return out


def principal_vector(t: np.ndarray) -> np.ndarray:
    """Unit eigenvector of the largest eigenvalue of each tensor (...,6), in closed form (trigonometric
    eigenvalue, then the largest cross product of two rows of D - lambda1 I); zero for isotropic tensors.
    float32 input is computed in float32 (within 0.05 degree of float64 where FA >= 0.1 on random tensors)."""
    t = np.asarray(t)
    t = t if t.dtype in (np.float32, np.float64) else t.astype(np.float64)
    # each element as one contiguous array (one copy): the passes below ran about 1.1-2x as fast on them as on the
    # strided views t[..., k], with the same bits (docs/speed.md, The direction map)
    a00, a10, a11, a20, a21, a22 = np.ascontiguousarray(np.moveaxis(t, -1, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        q, p, phi = _trigonometric(a00, a10, a11, a20, a21, a22)
        lam = q + 2.0 * p * np.cos(phi)
        d0, d1, d2 = a00 - lam, a11 - lam, a22 - lam
        # cross products of the rows (d0,a10,a20), (a10,d1,a21), (a20,a21,d2)
        c01 = (a10 * a21 - a20 * d1, a20 * a10 - d0 * a21, d0 * d1 - a10 * a10)
        c02 = (a10 * d2 - a20 * a21, a20 * a20 - d0 * d2, d0 * a21 - a10 * a20)
        c12 = (d1 * d2 - a21 * a21, a21 * a20 - a10 * d2, a10 * a21 - d1 * a20)
        n01, n02, n12 = (sum(x * x for x in c) for c in (c01, c02, c12))
        use02 = n02 > n01
        best = [np.where(use02, b, a) for a, b in zip(c01, c02)]
        nbest = np.maximum(n01, n02)
        use12 = n12 > nbest
        best = [np.where(use12, b, a) for a, b in zip(best, c12)]
        nbest = np.maximum(nbest, n12)
        inv_n = np.where(nbest > 0, 1.0 / np.sqrt(np.where(nbest > 0, nbest, 1.0)), 0.0)
        v = np.stack([b * inv_n for b in best], -1)
    return np.nan_to_num(v, copy=False)


def md_mode(lr: np.ndarray, lo: float = 1e-5, hi: float = 1e-2, bins: int = 600, width: float = 0.08) -> float:
    """Mode of the MD of the positive-definite tensors with MD in [lo, hi] mm^2/s: the peak of the log-MD histogram
    smoothed by a Gaussian of `width` (log units); 1.0 where no voxel qualifies."""
    flat = np.asarray(lr).reshape(-1, 6)
    flat = flat[np.any(flat != 0, axis=-1)]
    if not len(flat):
        return 1.0
    return md_mode_of(eigenvalues(flat), lo, hi, bins, width)


def md_mode_of(lam: np.ndarray, lo: float = 1e-5, hi: float = 1e-2, bins: int = 600, width: float = 0.08) -> float:
    """`md_mode` from the ascending eigenvalues (N, 3) of the non-zero tensors, for a caller that has them already."""
    found = _md_histogram(lam, lo, hi, bins, width)
    if found is None:
        return 1.0
    centres, smooth = found
    return float(np.exp(centres[int(np.argmax(smooth))]))


# a peak of the MD histogram above its mode is another tissue's where it is at least UPPER_PEAK_HEIGHT of the mode's
# height and the histogram between them falls below UPPER_PEAK_VALLEY of its own (md_upper_mode): on the 3 mm Prisma
# scans fitted unmasked at x3 (9 mm voxels) the brain's peak is 0.92-0.96 of the background's, its valley 0.66-0.68
UPPER_PEAK_HEIGHT = 0.5
UPPER_PEAK_VALLEY = 0.8


def md_upper_mode(lr: np.ndarray, lo: float = 1e-5, hi: float = 1e-2, bins: int = 600, width: float = 0.08) -> float | None:
    """The MD of the highest peak of `md_mode`'s histogram above its mode that a valley sets apart from it
    (UPPER_PEAK_HEIGHT, UPPER_PEAK_VALLEY): a brain outnumbered by background fits of lower MD; None where there is
    none (one tissue's peak and its shoulders)."""
    flat = np.asarray(lr).reshape(-1, 6)
    flat = flat[np.any(flat != 0, axis=-1)]
    found = _md_histogram(eigenvalues(flat), lo, hi, bins, width) if len(flat) else None
    if found is None:
        return None
    centres, smooth = found
    k = int(np.argmax(smooth))
    s = smooth[k:]
    peak = np.zeros(s.shape, bool)
    peak[1:-1] = (s[1:-1] > s[:-2]) & (s[1:-1] >= s[2:])
    peak &= (s >= UPPER_PEAK_HEIGHT * s[0]) & (np.minimum.accumulate(s) < UPPER_PEAK_VALLEY * s)
    if not peak.any():
        return None
    return float(np.exp(centres[k + int(np.argmax(np.where(peak, s, -1.0)))]))


def _md_histogram(lam: np.ndarray, lo: float, hi: float, bins: int, width: float):
    """(the log MD at each bin's centre, the smoothed counts) of `md_mode`'s log-MD histogram; None where no voxel
    qualifies."""
    from scipy import ndimage

    md = lam.mean(axis=-1)
    # noise fits whose eigenvalues method inputs had clipped to (0, 0, INPUT_CLIP max) pile up at MD = max / 3 and
    # outnumbered the brain's peak on a noisy unmasked scan (docs/measurements.md, Without a brain mask): left out
    clipped = (lam[:, 2] >= 0.999 * INPUT_CLIP[1]) & (lam[:, 0] < 1e-3 * md)
    ok = (lam[:, 0] > 0) & ~clipped & (md > lo) & (md < hi)
    if not ok.any():
        return None
    x = np.log(md[ok])
    step = (np.log(hi) - np.log(lo)) / bins
    edges = np.median(x) + step * (np.arange(-bins, bins + 1) - 0.5)  # anchored to the data: scaling MD by k scales the mode by k
    hist, _ = np.histogram(x, edges)
    smooth = ndimage.gaussian_filter1d(hist.astype(np.float64), width / (edges[1] - edges[0]), mode="constant")
    return 0.5 * (edges[:-1] + edges[1:]), smooth
