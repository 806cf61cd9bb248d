"""biqt's std spread over the voxels of each output block by the predicted tensor.

The forest answers a low-res voxel's r^3 block from one patch, so its std is (nearly) one value per block. Within the
block the error is larger where the predicted MD is higher and where the voxel's tensor departs from the block's mean
tensor (docs/measurements.md, "Uncertainty"), so each voxel's std is weighted by

    w_v = (MD_v / MD_b)^MD_POWER * (1 + DEV_WEIGHT * dev_v / MD_b)

(MD_b the block's mean MD, dev_v the Frobenius norm of the voxel's tensor minus the block's mean tensor) and the
block's std rescaled so that its mean variance is kept: the variance the forest predicts for the block is
redistributed among its voxels, not changed, so the calibration of `Forest.calibrate` still holds. A block of one
voxel, a block of equal tensors and a block whose mean MD is not positive are unchanged, and so is a block holding a
non-physical voxel (methods/flags.py raises those from the forest's own std; spread, they lost σ to their neighbours)
or a voxel whose MD is below LOW_MD of the block's mean (near-zero fits at the support's edge, which would read as
the most certain voxels). The weights use the block
alone, so that `Forest.calibrate` can apply them to its training examples as the prediction does.
"""

from __future__ import annotations

import numpy as np

from ...core import tensors

# chosen on the training subjects' x2 inputs (five styles): the mean whole-brain Spearman of std with the error
MD_POWER = 1.0
DEV_WEIGHT = 0.5
LOW_MD = 0.25  # a block with a voxel's MD below this fraction of its mean MD is left as the forest gives it
_DIAG = (0, 2, 5)  # Dxx, Dyy, Dzz in the lower-triangular order (core/tensors.py)
_FROB = np.array([1, 2, 1, 2, 2, 1], np.float32)  # off-diagonal elements count twice in the Frobenius norm


def spread(std: np.ndarray, tensor: np.ndarray) -> np.ndarray:
    """std (N, B) of N blocks of B voxels, weighted within each block by its predicted tensors (N, B, 6) (any unit:
    the weights are ratios); each block's mean of std^2 is kept. Returns float32 (N, B)."""
    std = np.asarray(std, np.float32)
    t = np.asarray(tensor, np.float32)
    if std.shape[1] < 2 or len(std) == 0:
        return std.copy()
    md = t[..., list(_DIAG)].mean(-1)  # (N, B)
    md_b = md.mean(-1, keepdims=True)
    ok = md_b[:, 0] > 0
    safe = np.where(md_b > 0, md_b, np.float32(1))
    ok &= (md >= np.float32(LOW_MD) * safe).all(-1)
    # non-physical as methods/flags.py finds them (tensors.distance_to_physical: a negative eigenvalue)
    cand = np.flatnonzero(ok)
    w0 = tensors.eigenvalues(t[cand])[..., 0]
    ok[cand[(w0 < 0).any(-1)]] = False
    dev = np.sqrt((((t - t.mean(1, keepdims=True)) ** 2) * _FROB).sum(-1))
    w = (np.maximum(md / safe, np.float32(LOW_MD)) ** np.float32(MD_POWER)) * (1 + np.float32(DEV_WEIGHT) * dev / safe)
    s2 = std.astype(np.float64) ** 2
    before = s2.mean(-1)
    after = (s2 * w.astype(np.float64) ** 2).mean(-1)
    ok &= after > 0
    k = np.sqrt(np.divide(before, after, out=np.ones_like(before), where=ok))
    out = np.where(ok[:, None], std * w * k[:, None].astype(np.float32), std)
    return out.astype(np.float32)


def spread_volume(std: np.ndarray, tensor: np.ndarray, support: np.ndarray, r) -> np.ndarray:
    """`spread` on a high-res std map (X, Y, Z) and tensor map (X, Y, Z, 6), block by block over the low-res voxels
    `support` (the blocks outside it are left as they are: zero)."""
    from .patches import from_blocks, to_blocks

    if not support.any():
        return std
    sb = to_blocks(std[..., None], r)
    tb = to_blocks(tensor, r)
    idx = np.nonzero(support)
    B = sb.shape[-1]
    sb[idx] = spread(sb[idx], tb[idx].reshape(-1, B, 6))
    return from_blocks(sb, r, K=1)[..., 0]
