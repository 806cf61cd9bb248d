"""Grid alignment for factor r (docs/conventions.md, Grid): low-res voxel i covers high-res voxels r*i .. r*i+r-1."""

from __future__ import annotations

import numpy as np


def check_factor(factor) -> int:
    from .errors import IQTError

    try:
        r = int(factor)
    except (TypeError, ValueError):
        raise IQTError(f"factor {factor!r} is not an integer: use --factor 2 or 3") from None
    if r != factor or r < 2:
        raise IQTError(f"factor {factor} is invalid: the upsampling factor must be an integer of at least 2 (use 2 or 3)")
    return r


def repeat_blocks(a, r: int) -> np.ndarray:
    """A low-res map on the high-res grid: each voxel repeated into its r^3 block (nearest upsampling)."""
    return np.asarray(a).repeat(r, 0).repeat(r, 1).repeat(r, 2)


def hr_affine(lr_affine: np.ndarray, r: int) -> np.ndarray:
    """Affine of the high-res grid: voxel size / r, origin at the centre of the first high-res voxel."""
    t = np.diag([1.0 / r, 1.0 / r, 1.0 / r, 1.0])
    t[:3, 3] = -(r - 1) / (2.0 * r)
    return np.asarray(lr_affine, float) @ t


def lr_affine(hr_aff: np.ndarray, r: int, shift=(0, 0, 0)) -> np.ndarray:
    """Affine of the low-res grid made by averaging r^3 blocks that start at high-res index `shift`."""
    t = np.diag([float(r), float(r), float(r), 1.0])
    t[:3, 3] = np.asarray(shift, float) + (r - 1) / 2.0
    return np.asarray(hr_aff, float) @ t


def lr_coordinates(n_lr: int, r: int) -> np.ndarray:
    """Continuous low-res index of each of the r*n_lr high-res voxel centres along one axis."""
    return (np.arange(r * n_lr) - (r - 1) / 2.0) / r
