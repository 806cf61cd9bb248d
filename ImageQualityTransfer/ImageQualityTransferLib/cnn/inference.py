"""Whole-volume inference, tiled so that memory stays bounded whatever the volume size.

The low-res grid is cut into tiles of `tile`^3 positions; each tile is read with its 2-voxel halo (the
network's unpadded 5^3 receptive field) from the zero-padded volume, so every output voxel sees exactly
the inputs it would see in one untiled pass. Tiles with no voxel of the output support (the low-res mask
dilated by one voxel) are skipped. The network predicts the residual over cubic B-spline interpolation
in normalised units; the result is cubic + residual * scale, zero outside the support.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..methods.interpolation import upsample_separable
from .networks import HALO, is_hetero

DEFAULT_TILE = 24  # low-res positions per tile side: ~ 50 MB of activations


def normalise_input(lr: np.ndarray, norm: dict) -> np.ndarray:
    """Raw tensors (mm^2/s) zero-padded by HALO -> normalised, (6, X+4, Y+4, Z+4) float32."""
    padded = np.pad(np.asarray(lr, np.float32), [(HALO, HALO)] * 3 + [(0, 0)])
    mean = np.asarray(norm["in_mean"], np.float32)
    scale = np.asarray(norm["in_scale"], np.float32)
    return np.ascontiguousarray(np.moveaxis((padded - mean) / scale, -1, 0))


def lr_support(mask: np.ndarray | None, shape) -> np.ndarray:
    if mask is None:
        return np.ones(shape, bool)
    return ndimage.binary_dilation(mask, structure=np.ones((3, 3, 3), bool))


def tiles(shape, tile: int):
    """Corners and extents of the tiles covering a low-res grid of `shape`."""
    for i in range(0, shape[0], tile):
        for j in range(0, shape[1], tile):
            for k in range(0, shape[2], tile):
                yield (slice(i, min(i + tile, shape[0])), slice(j, min(j + tile, shape[1])), slice(k, min(k + tile, shape[2])))


def run_network(net, x: np.ndarray, r: int, support: np.ndarray, tile: int = DEFAULT_TILE, progress=None):
    """Residual (and log-variance for heteroscedastic networks) on the whole high-res grid, (rX, rY, rZ, 6)."""
    import torch

    shape = support.shape
    hr_shape = tuple(r * n for n in shape) + (6,)
    res = np.zeros(hr_shape, np.float32)
    logvar = np.zeros(hr_shape, np.float32) if is_hetero(net) else None
    todo = [t for t in tiles(shape, tile) if support[t].any()]
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        for n, (si, sj, sk) in enumerate(todo):
            inp = xt[:, si.start : si.stop + 2 * HALO, sj.start : sj.stop + 2 * HALO, sk.start : sk.stop + 2 * HALO][None]
            out = net(inp)
            hr_sl = (slice(r * si.start, r * si.stop), slice(r * sj.start, r * sj.stop), slice(r * sk.start, r * sk.stop))
            if logvar is not None:
                mu, lv = out
                logvar[hr_sl] = lv[0].permute(1, 2, 3, 0).numpy()
            else:
                mu = out
            res[hr_sl] = mu[0].permute(1, 2, 3, 0).numpy()
            if progress is not None:
                progress((n + 1) / len(todo))
    return res, logvar


def predict_volume(model, lr: np.ndarray, mask: np.ndarray | None, tile: int = DEFAULT_TILE, progress=None):
    """High-res tensors (rX, rY, rZ, 6) and, for heteroscedastic models, {"std": per-voxel mean over the
    6 elements of the predicted standard deviation, mm^2/s}. `lr` is clipped, canonical-axis, mm^2/s."""
    r = model.factor
    norm = model.meta["normalisation"]
    support = lr_support(mask, lr.shape[:3])
    x = normalise_input(lr, norm)
    res, logvar = run_network(model.net, x, r, support, tile, progress)
    out_scale = np.asarray(norm["out_scale"], np.float32)
    hr = upsample_separable(lr, r, 3) + res * out_scale
    hr_support = support.repeat(r, 0).repeat(r, 1).repeat(r, 2)
    hr[~hr_support] = 0.0
    unc = {}
    if logvar is not None:
        std = (np.exp(0.5 * np.clip(logvar, -30, 30)) * out_scale).mean(axis=-1)
        std[~hr_support] = 0.0
        unc["std"] = std.astype(np.float32)
    return hr.astype(np.float32), unc
