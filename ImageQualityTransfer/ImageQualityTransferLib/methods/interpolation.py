"""Interpolation baselines: nearest, linear, cubic B-spline (on the 6 elements) and log-Euclidean cubic.

All are separable: each axis is resampled by a small matrix whose rows are the 1-D interpolation weights
at the high-res voxel centres of the grid alignment (docs/conventions.md), which is exact for a tensor-product spline
and much faster than evaluating a 3-D kernel per output voxel. They see every empty voxel beyond a tight mask filled
from the nearest brain voxel (methods/context.py; the learned methods two rings of it): interpolated towards the zeros
there, cubic rang into non-physical, bright-FA tensors along every edge of the brain and its mask's holes, and with two
rings into tensors of MD <= 0 at the support's corners (docs/measurements.md, "Interpolation beyond a tight mask").
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage

from ..core import grid, tensors
from ..core.threads import small_solves
from .base import Method
from .context import fill_context
from .inputs import clip_input


@lru_cache(maxsize=64)
def axis_weights(n: int, r: int, order: int) -> np.ndarray:
    """(r*n, n) matrix mapping n low-res samples to r*n high-res samples along one axis of factor r (edge values
    repeated outside)."""
    coords = grid.lr_coordinates(n, r)
    eye = np.eye(n)
    w = np.stack(
        [ndimage.map_coordinates(eye[k], coords[None], order=order, mode="nearest", prefilter=order > 1) for k in range(n)],
        axis=1,
    )
    w[np.abs(w) < 1e-12] = 0.0
    return w.astype(np.float32)


def upsample_separable(data: np.ndarray, r, order: int) -> np.ndarray:
    """Resample a (X,Y,Z,...) array onto the high-res grid of the factors r (an integer or (fx, fy, fz)), axis by
    axis; an axis of factor 1 is left as it is. Each axis is one (batched) matrix product on a reshaped view, so no
    step copies the volume into another axis order (that copying took most of the upsampling's time: a 72x87x72
    tensor volume at x2 in 0.16-0.20 s before, 0.06-0.11 s so, in a warm process; docs/measurements.md#speed). The
    batched products of axes 2 and 1 run on one BLAS thread, the bytes unchanged (docs/measurements.md#speed)."""
    out = np.asarray(data, dtype=np.float32)
    f = grid.factors(r, identity_ok=True)
    for axis in (2, 1, 0):  # axis 0 last: there the product is one large matrix product, on the largest volume
        if f[axis] == 1:
            continue
        w = axis_weights(out.shape[axis], f[axis], order)
        shape = out.shape
        x = out.reshape(int(np.prod(shape[:axis])), shape[axis], -1)
        if x.shape[0] == 1:
            res = w @ x[0]
        else:  # one small product per row or plane: BLAS threads woken for each cost far more than they give
            with small_solves():
                res = np.matmul(w, x)
        out = res.reshape(shape[:axis] + (w.shape[0],) + shape[axis + 1 :])
    return np.ascontiguousarray(out)


def output_support(mask: np.ndarray | None, r) -> np.ndarray | None:
    """High-res voxels a method answers for: the low-res mask dilated by one voxel, upsampled by nearest."""
    if mask is None:
        return None
    m = ndimage.binary_dilation(mask, structure=np.ones((3, 3, 3), bool))
    return grid.repeat_blocks(m, r)


class Interpolation(Method):
    order = 1

    def _transform(self, lr):
        return lr

    def _inverse(self, hr):
        return hr

    def _predict(self, lr, r, mask, progress):
        report = progress if progress is not None else (lambda fraction: None)
        # every empty voxel filled, not two rings: the support's corners (one low-res voxel beyond the brain, diagonally)
        # lie beyond two 6-connected rings, and cubic rang there against the zeros into tensors of MD <= 0 (1.0-1.3 % of
        # the brain that iqt track read in 4 of the 8 subjects' clean own-style outputs: docs/measurements.md)
        x = self._transform(clip_input(fill_context(lr, rings=None)))
        report(0.2)
        hr = upsample_separable(x, r, self.order)
        report(0.6)
        support = output_support(mask, r)
        if support is None:
            out = self._inverse(hr)
        else:
            out = np.zeros_like(hr)
            out[support] = self._inverse(hr[support])
        report(1.0)
        return out, {}


class Nearest(Interpolation):
    name = "nearest"
    description = "nearest-neighbour: each low-res voxel copied into its high-res block"
    order = 0


class Linear(Interpolation):
    name = "linear"
    description = "trilinear interpolation of the 6 tensor elements"
    order = 1


class Cubic(Interpolation):
    name = "cubic"
    description = "cubic B-spline interpolation of the 6 tensor elements (the baseline to beat)"
    order = 3


class LogEuclidCubic(Interpolation):
    name = "logeuclid-cubic"
    peak = (5.0, 5.0)  # 4.1-4.4x measured: eigen-decompositions of every high-res voxel
    description = "cubic B-spline in the log-Euclidean domain, then matrix exponential (keeps tensors positive)"
    order = 3
    floor = 1e-5  # mm^2/s: eigenvalue floor before the log (background and failed fits)

    def _transform(self, lr):
        # Background (all-zero) tensors have no logarithm: give them the log of the nearest tissue voxel,
        # so the brain's edge does not ring towards log(floor).
        log = tensors.logm(lr, floor=self.floor).astype(np.float32)
        empty = ~np.any(lr != 0, axis=-1)
        if empty.any() and not empty.all():
            idx = ndimage.distance_transform_edt(empty, return_distances=False, return_indices=True)
            log = log[tuple(idx)]
        return log

    def _inverse(self, hr):
        return tensors.expm(hr).astype(np.float32)
