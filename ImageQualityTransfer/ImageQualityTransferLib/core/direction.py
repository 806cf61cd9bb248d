"""Uncertainty of the fibre direction: how far the principal eigenvector may be from the predicted one.

Tractography follows the principal eigenvector e1, and an element-wise std does not say how well e1 is
determined: a nearly isotropic tensor predicted to within a small std still has an undetermined direction.
The direction map is the root-mean-square angle (degrees) between e1 of draws from the method's
predictive distribution and e1 of the prediction. The predictive distribution is the one `propagation`
samples: each of the 6 elements independently N(prediction, std^2) with the method's total std map.
For small angles the angle is Rayleigh-distributed, so a calibrated map holds the true e1 within twice the
map's value in 98% of voxels (1 - e^-4); a fully undetermined direction saturates near 61 degrees (the RMS
angle between a fixed and a uniformly random axis, sqrt(pi - 2) rad).
"""

from __future__ import annotations

import numpy as np

from .tensors import principal_vector

RANDOM_AXIS_DEGREES = float(np.degrees(np.sqrt(np.pi - 2)))  # 61.2: RMS angle of a uniformly random axis to a fixed one
# the direction map's colour top wherever it is shown: a fixed scale whose top is "no direction at all" (a random
# axis, which the map reaches where no draw determines e1), not the map's own 99th percentile
SHOWN_TOP_DEGREES = 60.0
DRAWS = 16  # draws per voxel: the map's relative sampling error is about 1 / sqrt(2 * DRAWS) = 18%
SEED = 0
_CHUNK = 1 << 18  # voxels per block: bounds the temporaries of the closed-form eigenvector


def _unit_angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle in degrees between unit (or zero) axes: arccos |u.v|; a zero vector gives 90."""
    return np.degrees(np.arccos(np.minimum(np.abs(np.einsum("...i,...i->...", u, v)), 1.0)))


def axis_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between the axes a and b (..., 3): sign-free, in [0, 90]. A zero vector (the principal
    vector of an exactly isotropic tensor) has no direction and counts as the worst case, 90."""

    def unit(x):
        x = np.asarray(x, np.float64)
        n = np.linalg.norm(x, axis=-1, keepdims=True)
        return x / np.where(n > 0, n, 1.0)

    return _unit_angle(unit(a), unit(b))


def angular_error(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Angle in degrees between the principal eigenvectors of two tensor arrays (..., 6)."""
    return axis_angle(principal_vector(np.asarray(pred, np.float64)), principal_vector(np.asarray(truth, np.float64)))


def spread(tensor: np.ndarray, std: np.ndarray, mask: np.ndarray | None = None, draws: int = DRAWS,
           seed: int = SEED) -> np.ndarray:
    """RMS angle (degrees, float32, (X,Y,Z)) between e1 of `draws` samples N(tensor, std^2) per element and
    e1 of `tensor`, at the voxels of `mask` (default: non-zero tensors); 0 elsewhere. `std` is a per-voxel
    (X,Y,Z) or per-element (X,Y,Z,6) standard deviation in the tensor's units. Seeded: the same input
    gives the same map."""
    t = np.asarray(tensor, np.float32)
    s = np.nan_to_num(np.maximum(np.asarray(std, np.float32), 0.0))
    m = np.any(t != 0, axis=-1) if mask is None else np.asarray(mask, bool)
    out = np.zeros(t.shape[:3], np.float32)
    mu = t[m]
    sig = s[m]
    sig = sig[:, None] if sig.ndim == 1 else sig
    rng = np.random.default_rng(seed)
    res = np.empty(len(mu), np.float32)
    for start in range(0, len(mu), _CHUNK):
        part = slice(start, start + _CHUNK)
        e0 = principal_vector(mu[part])
        acc = np.zeros(len(e0), np.float64)
        for _ in range(int(draws)):
            draw = mu[part] + sig[part] * rng.standard_normal(mu[part].shape, dtype=np.float32)
            acc += _unit_angle(principal_vector(draw), e0) ** 2
        res[part] = np.sqrt(acc / max(int(draws), 1))
    out[m] = res
    return out
