"""A subject as if acquired with larger voxels: training data at the scale of coarser scans (`iqt train --coarsen`).

A scanner's voxel integrates signal over its extent (a box point-spread function). Going from voxel size s to t
along an axis adds the box variance (t^2 - s^2) / 12, here as a Gaussian blur, before trilinear sampling at the
centres of the new voxels, which tile the same field of view. Axes already at least t stay as they are.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..core.errors import IQTError
from ..core.volume import Volume


def coarsen(dwi: Volume, voxel_mm: float) -> Volume:
    """(X,Y,Z,N) DWI -> the same field of view at voxel size max(current, voxel_mm) per axis (mm)."""
    if not voxel_mm > 0:
        raise IQTError(f"--coarsen {voxel_mm:g}: give a voxel size in mm (e.g. 3)")
    src = np.asarray(dwi.voxel_size, float)
    tgt = np.maximum(src, float(voxel_mm))
    step = tgt / src  # new voxel size in old voxels, per axis
    sigma = np.sqrt(tgt**2 - src**2) / np.sqrt(12.0) / src
    shape = np.floor(np.array(dwi.shape3) / step + 1e-6).astype(int)
    if (shape < 1).any():
        raise IQTError(f"{voxel_mm:g} mm voxels do not fit in a {dwi.shape3} image of {np.round(src, 2).tolist()} mm")
    # centre of new voxel i, in old voxel indices, so the new voxels tile the old field of view
    axes = [(np.arange(n) + 0.5) * k - 0.5 for n, k in zip(shape, step)]
    points = np.meshgrid(*axes, indexing="ij")
    data = np.asarray(dwi.data, np.float32)
    out = np.empty(tuple(shape) + data.shape[3:], np.float32)
    for v in range(data.shape[-1]):
        blurred = ndimage.gaussian_filter(data[..., v], sigma, mode="nearest")
        out[..., v] = ndimage.map_coordinates(blurred, points, order=1, mode="nearest")
    affine = np.array(dwi.affine, float)
    new = affine.copy()
    new[:3, :3] = affine[:3, :3] * step[None, :]
    new[:3, 3] = affine[:3, :3] @ (0.5 * step - 0.5) + affine[:3, 3]
    return dwi.replace(data=np.maximum(out, 0.0), affine=new, meta={**dwi.meta, "coarsened_to_mm": float(voxel_mm)})
