"""Synthetic low quality (docs/conventions.md): average the DWIs over non-overlapping r^3 blocks, then fit DTI.

Every one of the r^3 block shifts gives a different low-res image of the same subject (training data);
the low-res mask is the block majority of the high-res mask, and the low-res tensors are fitted on that
mask dilated by a couple of voxels with eigenvalues clipped to [0, 4e-3] mm^2/s.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..core import grid, tensors
from ..core.errors import IQTError
from .dti import fit_dti
from ..core.volume import Volume

FIT_DILATION = 2  # low-res voxels
# How the low-res tensors are made: this project's own way, and the ways other tools make them (docs/conventions.md,
# Degradation). "fsl" is "tight" written as a 4D six-volume file in dtifit order (`iqt degrade` writes it so).
STYLES = {
    "own": "WLS on the low-res mask dilated by two voxels, eigenvalues clipped to [0, 4e-3] mm^2/s (the training inputs)",
    "tight": "WLS on the block-majority low-res mask, zeros outside (FSL dtifit -m, MRtrix dwi2tensor -mask, dipy with a mask)",
    "unmasked": "WLS over the whole field of view, background noise tensors included (Slicer's DWI to DTI, dipy without a mask)",
    "ols": "ordinary least squares on the tight mask, unclipped: negative eigenvalues kept",
    "fsl": "as tight, in FSL dtifit's 4D element order (read with --tensor-order fsl)",
}
FILE_ORDER = {"fsl": "fsl"}


def all_shifts(r: int):
    return list(itertools.product(range(r), repeat=3))


def lr_shape(hr_shape, r: int, shift=(0, 0, 0)):
    return tuple((int(n) - int(s)) // r for n, s in zip(hr_shape[:3], shift))


def block_average(data: np.ndarray, r: int, shift=(0, 0, 0)) -> np.ndarray:
    """Mean over non-overlapping r^3 blocks starting at `shift`; trailing voxels that make no whole block are dropped."""
    n = lr_shape(data.shape, r, shift)
    sx, sy, sz = shift
    crop = data[sx : sx + r * n[0], sy : sy + r * n[1], sz : sz + r * n[2]]
    blocks = crop.reshape(n[0], r, n[1], r, n[2], r, *data.shape[3:])
    return blocks.mean(axis=(1, 3, 5), dtype=np.float64)


def block_majority(mask: np.ndarray, r: int, shift=(0, 0, 0)) -> np.ndarray:
    """The low-res mask of a high-res mask: voxels whose r^3 block is more than half inside."""
    return block_average(np.asarray(mask, np.float32), r, shift) > 0.5


def hr_crop(data: np.ndarray, r: int, shift=(0, 0, 0)) -> np.ndarray:
    """The high-res voxels covered by the low-res grid of `block_average` (the reference for evaluation)."""
    n = lr_shape(data.shape, r, shift)
    sx, sy, sz = shift
    return data[sx : sx + r * n[0], sy : sy + r * n[1], sz : sz + r * n[2]]


@dataclass
class LowResPair:
    """A low-res tensor volume and mask made from a high-res DWI, with the matching high-res crop offsets."""

    tensor: Volume
    mask: Volume
    shift: tuple
    factor: int
    style: str = "own"


def degrade(dwi: Volume, hr_mask: np.ndarray, r: int, shift=(0, 0, 0), style: str = "own", fit: str | None = None,
            noise=None) -> LowResPair:
    """Block-average the DWIs by r at `shift`, majority-vote the mask, fit the low-res tensors in `style` (STYLES).
    `fit` overrides the style's least-squares method (WLS or OLS); `noise(lr_dwi, lr_mask)` may alter the low-res
    DWIs before the fit (the training's randomisation, dmri/randomise.py)."""
    r = grid.check_factor(r)
    if style not in STYLES:
        raise IQTError(f"--style {style}: choose one of {', '.join(STYLES)}")
    hr_mask = np.asarray(getattr(hr_mask, "data", hr_mask), dtype=bool)
    n = lr_shape(dwi.shape3, r, shift)
    if min(n) < 1:
        raise IQTError(f"the volume {dwi.shape3} is too small for factor {r} (the low-res grid would be {n}); "
                       f"use a smaller factor or a larger volume")
    lr_dwi = block_average(dwi.data, r, shift).astype(np.float32)
    lr_mask = block_majority(hr_mask, r, shift)
    if not lr_mask.any():
        raise IQTError(f"no block of {r}x{r}x{r} voxels is mostly inside the brain mask: the brain is too small for "
                       f"factor {r}; use a smaller factor or check the mask")
    if noise is not None:
        lr_dwi = noise(lr_dwi, lr_mask).astype(np.float32)
    aff = grid.lr_affine(dwi.affine, r, shift)
    lr_dwi_vol = Volume(lr_dwi, aff, "dwi", bvals=dwi.bvals, bvecs=dwi.bvecs)
    data = fit_style(lr_dwi_vol, lr_mask, style, fit)
    return LowResPair(
        tensor=Volume(data.astype(np.float32), aff, "tensor", meta={"factor": r, "shift": tuple(shift), "style": style}),
        mask=Volume(lr_mask, aff, "mask"),
        shift=tuple(shift),
        factor=r,
        style=style,
    )


def fit_style(lr_dwi: Volume, lr_mask: np.ndarray, style: str, fit: str | None = None) -> np.ndarray:
    """Low-res tensors fitted from low-res DWIs the way `style` makes them; `fit` (WLS/OLS) overrides its method."""
    if style == "own":
        fit_mask = ndimage.binary_dilation(lr_mask, iterations=FIT_DILATION)
        data = tensors.clip_eigenvalues(fit_dti(lr_dwi, fit_mask, fit or "WLS").data, *tensors.INPUT_CLIP)
        data[~fit_mask] = 0.0
        return data
    method = fit or ("OLS" if style == "ols" else "WLS")
    return fit_dti(lr_dwi, None if style == "unmasked" else lr_mask, method).data


def load_lowres_mask(path, lr: Volume, r: int) -> Volume | None:
    """A brain mask for a low-res input: on the input's grid, or on its factor-r high-res grid (reduced by block
    majority, as `degrade` makes the low-res mask); None without a path."""
    from .. import fileio

    if not path:
        return None
    mask = fileio.load_mask(path, lr, r)
    if mask.shape3 != lr.shape3:
        mask = lr.replace(data=block_majority(mask.data, r), kind="mask")
    return mask
