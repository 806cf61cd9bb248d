"""3D sub-pixel shuffle (depth-to-space) and its inverse, per axis.

With factors (fx, fy, fz) (an integer r is (r, r, r)), channel `c * fx*fy*fz + (a * fy*fz + b * fz + d)` of a
low-res voxel (i, j, k) becomes channel `c` of the high-res voxel (fx*i + a, fy*j + b, fz*k + d): the block of
high-res voxels of the grid alignment (docs/conventions.md, Grid).
"""

from __future__ import annotations

import math

import torch

from ...core import grid


def pixel_shuffle_3d(x: torch.Tensor, factor) -> torch.Tensor:
    """(B, C*fx*fy*fz, X, Y, Z) -> (B, C, fx*X, fy*Y, fz*Z)."""
    fx, fy, fz = grid.factors(factor, identity_ok=True)
    b, cf, nx, ny, nz = x.shape
    block = fx * fy * fz
    if cf % block:
        raise ValueError(f"{cf} channels is not a multiple of fx*fy*fz = {block}")
    c = cf // block
    x = x.reshape(b, c, fx, fy, fz, nx, ny, nz)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, c, nx * fx, ny * fy, nz * fz)


def pixel_unshuffle_3d(x: torch.Tensor, factor) -> torch.Tensor:
    """(B, C, fx*X, fy*Y, fz*Z) -> (B, C*fx*fy*fz, X, Y, Z); the inverse of `pixel_shuffle_3d`. Only the tests use it,
    to check `pixel_shuffle_3d`."""
    f = grid.factors(factor, identity_ok=True)
    b, c, hx, hy, hz = x.shape
    if hx % f[0] or hy % f[1] or hz % f[2]:
        raise ValueError(f"spatial shape {(hx, hy, hz)} is not divisible by {grid.text(f)}")
    nx, ny, nz = hx // f[0], hy // f[1], hz // f[2]
    x = x.reshape(b, c, nx, f[0], ny, f[1], nz, f[2])
    x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)
    return x.reshape(b, c * math.prod(f), nx, ny, nz)
