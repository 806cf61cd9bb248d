"""The context a learned method sees beyond the input's brain: a tightly masked fit (FSL, MRtrix, dipy with a mask)
has zeros right next to the brain, where the training fits reach two voxels further (dmri/degrade.py)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..core.grid import repeat_blocks

CONTEXT_RINGS = 2  # the project's own fits reach two voxels beyond the brain mask (dmri/degrade.py)


def fill_context(lr: np.ndarray, rings: int | None = CONTEXT_RINGS) -> np.ndarray:
    """Missing (all-zero) tensors within `rings` voxels of the input's non-zero voxels (every one: None) take their
    nearest non-zero voxel's tensor. The CNNs learnt from fits that reach two voxels beyond the brain, never from zeros
    beside it, which is what a tightly masked fit (FSL, MRtrix, dipy with a mask) gives them (their training fills the
    same way); the forests, trained without it, answer the brain's edge better with it too (docs/measurements.md,
    "Context beyond a tight mask"). The mask plays no part, so that a run with it and one without see the same input."""
    present = np.any(lr != 0, axis=-1)
    brain = present
    if not brain.any():
        return lr
    band = ~present if rings is None else ndimage.binary_dilation(brain, iterations=rings) & ~brain & ~present
    if not band.any():
        return lr
    nearest = ndimage.distance_transform_edt(~brain, return_distances=False, return_indices=True)
    out = np.array(lr, copy=True)
    out[band] = lr[tuple(i[band] for i in nearest)]
    return out


def raise_where_filled(maps: dict, filled: np.ndarray, r, scale: float) -> dict:
    """Every uncertainty map multiplied by `scale` in the high-res blocks of the low-res voxels `filled` (answered
    from filled context, not from the input). The learned methods' σ does not know that such an input was made up and
    underrates the error there (docs/measurements.md, "Context beyond a tight mask"); each method's `scale` is how
    much larger the error was relative to σ there than at the rest of the brain's edge, on the training subjects."""
    if scale == 1.0 or not filled.any():
        return maps
    hr = repeat_blocks(filled, r)
    for v in maps.values():
        v[hr] *= np.float32(scale)
    return maps
