"""Whole-volume inference, tiled so that memory stays bounded whatever the volume size.

The low-res grid is cut into tiles of `tile`^3 positions; each tile is read with its 2-voxel halo (the
network's unpadded 5^3 receptive field) from the zero-padded volume, so every output voxel sees exactly
the inputs it would see in one untiled pass. Tiles with no voxel of the output support (the low-res mask
dilated by one voxel) are skipped. The network predicts the residual over cubic B-spline interpolation
in normalised units; the result is cubic + residual * scale, zero outside the support.

Variational models (`espcn-hetero-var1/2`) are sampled N times (Monte Carlo, dropout noise on, seeded
generator): the mean tensor is the mean of the sampled means; per element, the predictive variance is
intrinsic (the predicted variance; the log-variance network is deterministic, so its mean over samples is
itself) plus parameter (the unbiased variance of the sampled means). The first hidden layer and the
log-variance network are computed once per tile; only the noisy part runs N times. MD's standard deviation
follows from the samples (parameter part) and the diagonal predicted variances (intrinsic part, elements
independent). FA's standard deviation is by sampling: each Monte Carlo draw adds one draw of the intrinsic
noise to its sampled mean, and FA is taken in closed form, FA^2 = 3/2 |D - MD I|^2 / |D|^2 (no eigen-decomposition).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ...core.grid import repeat_blocks
from ..interpolation import upsample_separable
from ...core.tensors import fa_closed_form as _fa_elements, md as _md
from .networks import HALO, is_hetero, is_variational

DEFAULT_TILE = 24  # low-res positions per tile side: ~ 50 MB of activations
DEFAULT_SAMPLES = 10  # MC samples for the variational models: on a dev slab the std map moves 0.03 % and std_parameter 12 % vs N=200
DEFAULT_SEED = 0


def normalise_input(lr: np.ndarray, norm: dict) -> np.ndarray:
    """Raw tensors (mm^2/s) zero-padded by HALO -> normalised, (6, X+4, Y+4, Z+4) float32."""
    padded = np.pad(np.asarray(lr, np.float32), [(HALO, HALO)] * 3 + [(0, 0)])
    mean = np.asarray(norm["in_mean"], np.float32)
    scale = np.asarray(norm["in_scale"], np.float32)
    return np.ascontiguousarray(np.moveaxis((padded - mean) / scale, -1, 0))


def subject_scale(lr: np.ndarray, mask: np.ndarray | None) -> float:
    """Median mean diffusivity of the low-res brain (mm^2/s): the unit in which models with a "subject_scale"
    normalisation see their input, so that b-value and scanner differences in overall diffusivity drop out."""
    md = _md(lr)
    inside = md > 0 if mask is None else (np.asarray(mask, bool) & (md > 0))
    if not inside.any():
        return 1.0
    return float(np.median(md[inside]))


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


def fa_closed_form(t):
    """FA of (6, ...) lower-triangular torch tensors (tensors.fa_closed_form), clipped to [0, 1]."""
    return _fa_elements(*t).clamp(0, 1)


def run_network_mc(net, x: np.ndarray, r: int, support: np.ndarray, samples: int, seed: int = DEFAULT_SEED,
                   tile: int = DEFAULT_TILE, progress=None, base: np.ndarray | None = None, out_scale=None):
    """Monte Carlo pass of a variational hetero network: (mean residual, parameter variance, log-variance,
    parameter variance of the trace Dxx + Dyy + Dzz, FA std), normalised units, high-res grid. The FA std is
    over samples of the predictive distribution (sampled mean plus one intrinsic-noise draw per sample) and
    needs `base` (the cubic interpolation, (rX, rY, rZ, 6) mm^2/s) and `out_scale`; without them it is None."""
    import torch

    samples = int(samples)
    if samples < 1:
        raise ValueError("Monte Carlo prediction needs at least one sample")
    shape = support.shape
    hr_shape = tuple(r * n for n in shape) + (6,)
    mean = np.zeros(hr_shape, np.float32)
    pvar = np.zeros(hr_shape, np.float32)
    logvar = np.zeros(hr_shape, np.float32)
    trvar = np.zeros(hr_shape[:3], np.float32)
    fa_std = None if base is None else np.zeros(hr_shape[:3], np.float32)
    scale_t = None if base is None else torch.as_tensor(np.asarray(out_scale, np.float32))[:, None, None, None]
    todo = [t for t in tiles(shape, tile) if support[t].any()]
    xt = torch.from_numpy(x)
    gen = torch.Generator().manual_seed(int(seed))
    fa_gen = torch.Generator().manual_seed(int(seed) + 1)  # separate stream: the mean maps do not depend on it
    layers = net.mean.dropout_layers()
    channel_noise = None
    if layers and layers[0].mode == "channel":  # one draw per channel and sample, shared by every tile
        channel_noise = [[torch.randn(d.log_alpha.shape[0], generator=gen) for d in layers] for _ in range(samples)]
    for d in layers:
        d.sampling, d.generator = True, gen
    try:
        with torch.inference_mode():
            for n, (si, sj, sk) in enumerate(todo):
                inp = xt[:, si.start : si.stop + 2 * HALO, sj.start : sj.stop + 2 * HALO, sk.start : sk.stop + 2 * HALO][None]
                hr_sl = (slice(r * si.start, r * si.stop), slice(r * sj.start, r * sj.stop), slice(r * sk.start, r * sk.stop))
                lv = net.logvar(inp)[0]
                logvar[hr_sl] = lv.permute(1, 2, 3, 0).numpy()
                h1 = net.mean.features(inp)
                if fa_std is not None:
                    base_t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(base[hr_sl], -1, 0)))
                    sd = (0.5 * lv.clamp(-30, 30)).exp()
                    fa_acc, fa_acc2 = torch.zeros_like(lv[0]), torch.zeros_like(lv[0])
                # sums of deviations from the first sample (shifted data: no cancellation in float32)
                ref = acc = acc2 = tacc = tacc2 = None
                for s in range(samples):
                    if channel_noise is not None:
                        for d, eps in zip(layers, channel_noise[s]):
                            d.channel_noise = eps
                    mu = net.mean.head(h1)[0]
                    if fa_std is not None:
                        draw = mu + sd * torch.randn(mu.shape, generator=fa_gen)
                        fa = fa_closed_form(base_t + draw * scale_t)
                        fa_acc += fa
                        fa_acc2 += fa * fa
                    if ref is None:
                        ref = mu
                        acc, acc2 = torch.zeros_like(mu), torch.zeros_like(mu)
                        tacc, tacc2 = torch.zeros_like(mu[0]), torch.zeros_like(mu[0])
                        continue
                    dev = mu - ref
                    acc += dev
                    acc2 += dev * dev
                    tr = dev[0] + dev[2] + dev[5]
                    tacc += tr
                    tacc2 += tr * tr
                m = acc / samples
                v = (acc2 - samples * m * m).clamp_min(0) / max(samples - 1, 1)
                mean[hr_sl] = (ref + m).permute(1, 2, 3, 0).numpy()
                pvar[hr_sl] = v.permute(1, 2, 3, 0).numpy()
                tm = tacc / samples
                trvar[hr_sl] = ((tacc2 - samples * tm * tm).clamp_min(0) / max(samples - 1, 1)).numpy()
                if fa_std is not None:
                    fm = fa_acc / samples
                    fa_std[hr_sl] = ((fa_acc2 - samples * fm * fm).clamp_min(0) / max(samples - 1, 1)).sqrt().numpy()
                if progress is not None:
                    progress((n + 1) / len(todo))
    finally:
        for d in layers:
            d.sampling, d.generator, d.channel_noise = False, None, None
    return mean, pvar, logvar, trvar, fa_std


def predict_volume(model, lr: np.ndarray, mask: np.ndarray | None, tile: int = DEFAULT_TILE, progress=None,
                   samples: int | None = None, seed: int = DEFAULT_SEED):
    """High-res tensors (rX, rY, rZ, 6) and, for heteroscedastic models, {"std": per-voxel mean over the
    6 elements of the predicted standard deviation, mm^2/s}. Variational models with `samples` >= 1 (default
    DEFAULT_SAMPLES) are sampled by Monte Carlo and also give "std_intrinsic", "std_parameter" (the same
    per-voxel mean of the two parts' standard deviations; "std" is that of their sum), "md_std" (mm^2/s)
    and "fa_std" (unitless, by sampling; needs samples >= 2 to be non-zero);
    `samples=0` gives one deterministic pass (the expected activations) with the intrinsic part only.
    `lr` is clipped, canonical-axis, mm^2/s."""
    r = model.factor
    norm = model.meta["normalisation"]
    support = lr_support(mask, lr.shape[:3])
    unit = subject_scale(lr, mask) if norm.get("subject_scale") else 1.0
    x = normalise_input(np.asarray(lr, np.float32) / np.float32(unit), norm)
    out_scale = np.asarray(norm["out_scale"], np.float32) * np.float32(unit)
    hr_support = repeat_blocks(support, r)
    if samples is None:
        samples = DEFAULT_SAMPLES
    if is_variational(model.net) and samples >= 1:
        cubic = upsample_separable(lr, r, 3)
        res, pvar, logvar, trvar, fa_std = run_network_mc(model.net, x, r, support, samples, seed, tile, progress,
                                                          base=cubic, out_scale=out_scale)
        hr = cubic + res * out_scale
        hr[~hr_support] = 0.0
        ivar = np.exp(np.clip(logvar, -30, 30)) * out_scale**2
        pvar = pvar * out_scale**2
        unc = {
            "std": np.sqrt(ivar + pvar).mean(axis=-1),
            "std_intrinsic": np.sqrt(ivar).mean(axis=-1),
            "std_parameter": np.sqrt(pvar).mean(axis=-1),
        }
        # MD = (Dxx + Dyy + Dzz) / 3: intrinsic part with independent elements, parameter part from the samples'
        # traces (the diagonal elements share one output scale)
        diag = [0, 2, 5]
        unc["md_std"] = np.sqrt(ivar[..., diag].sum(-1) + trvar * float(out_scale[0]) ** 2) / 3.0
        unc["fa_std"] = fa_std
        for k in unc:
            unc[k][~hr_support] = 0.0
            unc[k] = unc[k].astype(np.float32)
        return hr.astype(np.float32), unc
    res, logvar = run_network(model.net, x, r, support, tile, progress)
    hr = upsample_separable(lr, r, 3) + res * out_scale
    hr[~hr_support] = 0.0
    unc = {}
    if logvar is not None:
        std = (np.exp(0.5 * np.clip(logvar, -30, 30)) * out_scale).mean(axis=-1)
        std[~hr_support] = 0.0
        unc["std"] = std.astype(np.float32)
    return hr.astype(np.float32), unc
