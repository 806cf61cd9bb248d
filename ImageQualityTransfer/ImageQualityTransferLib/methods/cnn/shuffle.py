"""3D sub-pixel shuffle (depth-to-space) and its inverse.

Channel `c * r^3 + (a * r^2 + b * r + d)` of a low-res voxel (i, j, k) becomes channel `c` of the
high-res voxel (r*i + a, r*j + b, r*k + d): the r^3 high-res voxels of the grid alignment (docs/conventions.md, Grid).
"""

from __future__ import annotations

import torch


def pixel_shuffle_3d(x: torch.Tensor, r: int) -> torch.Tensor:
    """(B, C*r^3, X, Y, Z) -> (B, C, r*X, r*Y, r*Z)."""
    b, cr3, nx, ny, nz = x.shape
    if cr3 % (r**3):
        raise ValueError(f"{cr3} channels is not a multiple of r^3 = {r**3}")
    c = cr3 // r**3
    x = x.reshape(b, c, r, r, r, nx, ny, nz)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, c, nx * r, ny * r, nz * r)


def pixel_unshuffle_3d(x: torch.Tensor, r: int) -> torch.Tensor:
    """(B, C, r*X, r*Y, r*Z) -> (B, C*r^3, X, Y, Z); the inverse of `pixel_shuffle_3d`."""
    b, c, hx, hy, hz = x.shape
    if hx % r or hy % r or hz % r:
        raise ValueError(f"spatial shape {(hx, hy, hz)} is not divisible by {r}")
    nx, ny, nz = hx // r, hy // r, hz // r
    x = x.reshape(b, c, nx, r, ny, r, nz, r)
    x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)
    return x.reshape(b, c * r**3, nx, ny, nz)
