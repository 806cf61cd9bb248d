"""Synthetic low quality (docs/conventions.md): average the DWIs over non-overlapping fx*fy*fz blocks (optionally
with a gap of dropped planes after each, for thick slices with a gap), then fit DTI.

Every one of the fx*fy*fz block shifts gives a different low-res image of the same subject (training data);
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
# Degradation). "fsl" and "mrtrix" are "tight" written as a 4D six-volume file as dtifit and dwi2tensor write it (element
# order and frame: fileio.volumes.file_frame), and read back so (`iqt degrade` writes them so).
STYLES = {
    "own": "WLS on the low-res mask dilated by two voxels, eigenvalues clipped to [0, 4e-3] mm^2/s (the training inputs)",
    "tight": "WLS on the block-majority low-res mask, zeros outside (FSL dtifit -m, MRtrix dwi2tensor -mask, dipy with a mask)",
    "unmasked": "WLS over the whole field of view, background noise tensors included (Slicer's DWI to DTI, dipy without a mask)",
    "ols": "ordinary least squares on the tight mask, unclipped: negative eigenvalues kept",
    "unmasked-ols": "ordinary least squares over the whole field of view, unclipped (dipy's or MRtrix's OLS without a mask)",
    "fsl": "as tight, in FSL dtifit's 4D element order and bvec frame (read with --tensor-order fsl)",
    "mrtrix": "as tight, in MRtrix dwi2tensor's 4D element order and scanner (RAS) frame (read with --tensor-order mrtrix)",
}
FILE_ORDER = {"fsl": "fsl", "mrtrix": "mrtrix"}
WHOLE_FIELD = ("unmasked", "unmasked-ols")  # styles fitted over the whole field of view: the mask leaves no tensor zero


def all_shifts(f):
    """Every block shift: range(f) along each axis (a single shift 0 along an axis of factor 1)."""
    return list(itertools.product(*(range(k) for k in grid.factors(f, identity_ok=True))))


def gaps(f, slice_gap: int = 0) -> tuple[int, int, int]:
    """High-res planes dropped after each block: `slice_gap` along the axes with a factor above 1, none elsewhere."""
    return tuple(int(slice_gap) if k > 1 else 0 for k in grid.factors(f, identity_ok=True))


def lr_shape(hr_shape, f, shift=(0, 0, 0), gap=(0, 0, 0)):
    """Whole blocks per axis: a block of f planes, then `gap` dropped planes before the next one."""
    return tuple(max(0, (int(n) - int(s) - k) // (k + g) + 1) for n, s, k, g in
                 zip(hr_shape[:3], shift, grid.factors(f, identity_ok=True), gap))


def block_average(data: np.ndarray, f, shift=(0, 0, 0), gap=(0, 0, 0)) -> np.ndarray:
    """Mean over non-overlapping fx*fy*fz blocks starting at `shift` (each followed by `gap` dropped planes);
    trailing voxels that make no whole block are dropped."""
    fx, fy, fz = grid.factors(f, identity_ok=True)
    n = lr_shape(data.shape, f, shift, gap)
    if any(gap):
        data = _without_gaps(data, (fx, fy, fz), shift, gap, n)
        shift = (0, 0, 0)
    crop = hr_crop(data, f, shift)
    blocks = crop.reshape(n[0], fx, n[1], fy, n[2], fz, *data.shape[3:])
    return blocks.mean(axis=(1, 3, 5), dtype=np.float64)


def _without_gaps(data, f, shift, gap, n):
    """The high-res planes inside the blocks, the gaps between them left out."""
    for axis, (k, s, g, m) in enumerate(zip(f, shift, gap, n)):
        idx = (s + (k + g) * np.arange(m)[:, None] + np.arange(k)[None, :]).ravel()
        data = np.take(data, idx, axis=axis)
    return data


def block_majority(mask: np.ndarray, f, shift=(0, 0, 0), gap=(0, 0, 0)) -> np.ndarray:
    """The low-res mask of a high-res mask: voxels whose block is more than half inside."""
    return block_average(np.asarray(mask, np.float32), f, shift, gap) > 0.5


def hr_crop(data: np.ndarray, f, shift=(0, 0, 0)) -> np.ndarray:
    """The high-res voxels covered by the low-res grid of `block_average` (the reference for evaluation)."""
    fx, fy, fz = grid.factors(f, identity_ok=True)
    n = lr_shape(data.shape, f, shift)
    sx, sy, sz = shift
    return data[sx : sx + fx * n[0], sy : sy + fy * n[1], sz : sz + fz * n[2]]


@dataclass
class LowResPair:
    """A low-res tensor volume and mask made from a high-res DWI, with the matching high-res crop offsets."""

    tensor: Volume
    mask: Volume
    shift: tuple
    factor: tuple  # (fx, fy, fz)
    style: str = "own"


def degrade(dwi: Volume, hr_mask: np.ndarray, r, shift=(0, 0, 0), style: str = "own", fit: str | None = None,
            noise=None, slice_gap: int = 0) -> LowResPair:
    """Block-average the DWIs by the factors r (an integer or (fx, fy, fz)) at `shift`, majority-vote the mask, fit
    the low-res tensors in `style` (STYLES). `fit` overrides the style's least-squares method (WLS or OLS);
    `noise(lr_dwi, lr_mask)` may alter the low-res DWIs before the fit (the training's randomisation,
    dmri/randomise.py); `slice_gap` drops that many high-res planes after each block along the axes with a factor
    above 1 (thick slices with a gap: the low-res spacing there is f + slice_gap high-res voxels)."""
    f = grid.factors(r)
    if style not in STYLES:
        raise IQTError(f"--style {style}: choose one of {', '.join(STYLES)}")
    if int(slice_gap) != slice_gap or slice_gap < 0:
        raise IQTError(f"--slice-gap {slice_gap}: give the number of high-res planes dropped after each block, "
                       f"an integer >= 0")
    gap = gaps(f, slice_gap)
    thinnest = min((k for k in f if k > 1), default=1)  # the gap follows every refined axis
    if slice_gap > thinnest:  # 100 made a one-slice volume without a word (a fresh-eyes audit)
        raise IQTError(f"--slice-gap {slice_gap}: a gap wider than the slices themselves ({thinnest} high-res planes) is "
                       f"no scan's; give at most {thinnest}")
    hr_mask = np.asarray(getattr(hr_mask, "data", hr_mask), dtype=bool)
    n = lr_shape(dwi.shape3, f, shift, gap)
    if min(n) < 1:
        raise IQTError(f"the volume {dwi.shape3} is too small for {grid.describe(f)}"
                       + (f" with a slice gap of {slice_gap}" if slice_gap else "")
                       + f" (the low-res grid would be {n}); use a smaller factor or a larger volume")
    lr_dwi = block_average(dwi.data, f, shift, gap).astype(np.float32)
    lr_mask = block_majority(hr_mask, f, shift, gap)
    if not lr_mask.any():
        raise IQTError(f"no block of {'x'.join(map(str, f))} voxels is mostly inside the brain mask: the brain is too "
                       f"small for {grid.describe(f)}; use a smaller factor or check the mask")
    if noise is not None:
        lr_dwi = noise(lr_dwi, lr_mask).astype(np.float32)
    aff = grid.lr_affine(dwi.affine, f, shift, gap)
    # the source's path kept: its multi-shell warning is then the one already given, not a second, unnamed one; and
    # its volumes' numbers in the file (dti.file_volumes, after --bmax), which the fit's refusals name them by
    lr_dwi_vol = Volume(lr_dwi, aff, "dwi", bvals=dwi.bvals, bvecs=dwi.bvecs,
                        meta={k: dwi.meta[k] for k in ("path", "file_volumes") if k in dwi.meta})
    data = fit_style(lr_dwi_vol, lr_mask, style, fit)
    meta = {"factor": grid.record(f), "shift": tuple(shift), "style": style, **({"slice_gap": int(slice_gap)} if slice_gap else {})}
    return LowResPair(
        tensor=Volume(data.astype(np.float32), aff, "tensor", meta=meta),
        mask=Volume(lr_mask, aff, "mask"),
        shift=tuple(shift),
        factor=f,
        style=style,
    )


def fit_style(lr_dwi: Volume, lr_mask: np.ndarray, style: str, fit: str | None = None) -> np.ndarray:
    """Low-res tensors fitted from low-res DWIs the way `style` makes them; `fit` (WLS/OLS) overrides its method."""
    if style == "own":
        fit_mask = ndimage.binary_dilation(lr_mask, iterations=FIT_DILATION)
        data = tensors.clip_eigenvalues(fit_dti(lr_dwi, fit_mask, fit or "WLS").data, *tensors.INPUT_CLIP)
        data[~fit_mask] = 0.0
        return data
    method = fit or ("OLS" if style in ("ols", "unmasked-ols") else "WLS")
    return fit_dti(lr_dwi, None if style in WHOLE_FIELD else lr_mask, method).data


def lowres_mask(mask: Volume | None, lr: Volume, r, cover: bool = False) -> Volume | None:
    """`mask` on the low-res input's grid: itself, or reduced by block majority from the high-res grid; with `cover`,
    also every block that holds a mask voxel where the input has a tensor (a run's support: every voxel of a high-res
    mask then gets a prediction, where block majority alone leaves a thin edge's minority blocks empty)."""
    if mask is None or mask.shape3 == lr.shape3:
        return mask
    data = block_majority(mask.data, r)
    if cover:
        data |= (block_average(np.asarray(mask.data, np.float32), r) > 0) & np.any(np.asarray(lr.data) != 0, axis=-1)
    # the mask's file (a warning names it, not the input) and the grid it was reduced from (its count is not the file's)
    return lr.replace(data=data, kind="mask", meta={**mask.meta, "reduced_from": mask.shape3})
