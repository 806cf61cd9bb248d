"""Rotation-invariant split features (Alexander et al.): 7 / 15 / 23 for patch radius n = 0 / 1 / 2.

Per voxel (7): the three eigenvalues (descending), linearity (l1-l2)/l1, planarity (l2-l3)/l1,
isotropy l3/l1 and the trace. n=0: those of the centre voxel. n=1: plus the same 7 averaged over the
central 3^3 and the orientation concentration of the principal eigenvectors over the 3^3 (largest
eigenvalue of the mean dyadic e1 e1^T, 1/3 for random directions, 1 for parallel ones). n=2: plus the
7 averaged over the whole 5^3 patch and its orientation concentration.

Missing voxels (all-zero tensors: nothing fitted there, or outside the image) are left out of the
averages; a missing centre takes the 3^3 average of the voxels present. All are invariant to rotations of
the tensor frame and to flips/permutations of the patch axes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ...core import tensors

N_FEATURES = {0: 7, 1: 15, 2: 23}
PER_VOXEL = ("l1", "l2", "l3", "linearity", "planarity", "isotropy", "trace")


def feature_names(n: int) -> list[str]:
    names = [f"centre_{p}" for p in PER_VOXEL]
    if n >= 1:
        names += [f"mean3_{p}" for p in PER_VOXEL] + ["concentration3"]
    if n >= 2:
        names += [f"mean5_{p}" for p in PER_VOXEL] + ["concentration5"]
    return names


def voxel_features(t: np.ndarray):
    """(...,6) tensors -> (...,7) per-voxel features and (...,6) dyadic e1 e1^T of the principal eigenvector."""
    w, v = tensors.eig(np.asarray(t, np.float64))
    w = np.nan_to_num(w)
    v = np.nan_to_num(v)
    l1 = np.maximum(w[..., 0], 1e-12)
    f = np.stack([w[..., 0], w[..., 1], w[..., 2], (w[..., 0] - w[..., 1]) / l1, (w[..., 1] - w[..., 2]) / l1,
                  w[..., 2] / l1, w.sum(-1)], axis=-1)
    e1 = v[..., :, 0]
    dy = tensors.from_matrix(e1[..., :, None] * e1[..., None, :])
    return f.astype(np.float32), dy.astype(np.float32)


def _box_mean(a: np.ndarray, valid: np.ndarray, size: int) -> np.ndarray:
    """Mean of a (X,Y,Z,K) over the size^3 box of present voxels (0 where none)."""
    vv = ndimage.uniform_filter(valid.astype(np.float64), size, mode="constant")
    out = np.empty(a.shape, np.float32)
    for k in range(a.shape[-1]):
        out[..., k] = ndimage.uniform_filter(a[..., k].astype(np.float64) * valid, size, mode="constant") / np.maximum(vv, 1e-12)
    out[vv <= 1e-9] = 0.0
    return out


def _concentration(dy_mean: np.ndarray) -> np.ndarray:
    w = np.linalg.eigvalsh(tensors.to_matrix(dy_mean.astype(np.float64)))
    return w[..., -1].astype(np.float32)


def volume_features(t: np.ndarray, n: int, valid: np.ndarray | None = None) -> np.ndarray:
    """(X,Y,Z,6) tensors (any consistent unit) -> (X,Y,Z,F) split features of the patch centred at each voxel."""
    if n not in N_FEATURES:
        raise ValueError(f"patch radius n must be 0, 1 or 2, got {n}")
    t = np.asarray(t)
    if valid is None:
        valid = np.any(t != 0, axis=-1)
    f, dy = voxel_features(t)
    f[~valid] = 0.0
    dy[~valid] = 0.0
    m3 = _box_mean(np.concatenate([f, dy], -1), valid, 3)
    centre = np.where(valid[..., None], f, m3[..., :7])
    out = [centre]
    if n >= 1:
        out += [m3[..., :7], _concentration(m3[..., 7:])[..., None]]
    if n >= 2:
        m5 = _box_mean(np.concatenate([f, dy], -1), valid, 5)
        out += [m5[..., :7], _concentration(m5[..., 7:])[..., None]]
    return np.concatenate(out, axis=-1).astype(np.float32)
