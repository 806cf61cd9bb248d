"""Whole-volume inference, tiled so that memory stays bounded whatever the volume size.

The low-res grid is cut into tiles of `tile`^3 positions; each tile is read with the network's halo (2 voxels for
ESPCN's unpadded 5^3 receptive field, 4 for `deep`'s 9^3) from the volume padded with its edge tensors, so every output
voxel sees exactly the inputs it would see in one untiled pass. Beyond the field of view the network sees the nearest
tensor, as beyond a tight mask (methods/context.py), not zeros: where a slab cuts the brain, zeros made its edge planes
look like the brain's edge (docs/measurements.md, "The field of view's edge"). Each tile is cropped to the bounding box of its output support (the
low-res mask dilated by one voxel), and tiles with none are skipped. The network predicts the residual over cubic B-spline interpolation
in normalised units; the result is cubic + residual * scale, zero outside the support.

Variational models (`espcn-hetero-var1/2`) are sampled N times (Monte Carlo, dropout noise on, seeded
generator): the mean tensor is the mean of the sampled means; per element, the predictive variance is
intrinsic (the predicted variance; the log-variance network is deterministic, so its mean over samples is
itself) plus parameter (the unbiased variance of the sampled means). The first hidden layer and the
log-variance network are computed once per tile; only the noisy part runs N times. MD's standard deviation
follows from the samples (parameter part) and the diagonal predicted variances (intrinsic part, the elements'
errors correlated MD_ERROR_CORRELATION). FA's standard deviation is by sampling: each Monte Carlo draw adds FA_DRAWS draws of the intrinsic
noise to its sampled mean, and FA is taken in closed form, FA^2 = 3/2 |D - MD I|^2 / |D|^2 (no eigen-decomposition).

A network is run under its own lock (`net_lock`), held for the whole pass: the Monte Carlo pass switches its dropout
layers' sampling on and gives them the call's generator, and either pass moves it to the call's device, all on the
one module a method instance caches (`LearnedMethod.load`); so threads sharing an instance (a Dask worker with several
threads running `iqt batch` subjects, a caller's thread pool) take turns on it and each gets the result it gets alone.

Both passes go through one tile loop, `run_tiled`, which also moves each tile's input to the requested device
(`resolve_device`: cpu, cuda or auto) and brings the outputs back as float32 numpy arrays.
"""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager

import numpy as np
from scipy import ndimage

from ...core import grid, tensors
from ...core.errors import IQTError
from ...core.grid import repeat_blocks
from ..context import CONTEXT_RINGS, fill_context  # noqa: F401  (re-exported: training, tests)
from ..interpolation import upsample_separable
from ...core.tensors import fa_closed_form, md as _md
from .networks import HALO, is_hetero, is_variational

DEFAULT_TILE = 24  # low-res positions per tile side: ~ 50 MB of activations
DEFAULT_SAMPLES = 10  # MC samples for the variational models: on a dev slab the std map moves 0.03 % and std_parameter 12 % vs N=200
DEFAULT_SEED = 0


def normalise_input(lr: np.ndarray, norm: dict, halo: int = HALO) -> np.ndarray:
    """Raw tensors (mm^2/s) padded by `halo` with the nearest edge tensor -> normalised, (6, X+2h, Y+2h, Z+2h) float32."""
    padded = np.pad(np.asarray(lr, np.float32), [(halo, halo)] * 3 + [(0, 0)], mode="edge")
    mean = np.asarray(norm["in_mean"], np.float32)
    scale = np.asarray(norm["in_scale"], np.float32)
    return np.ascontiguousarray(np.moveaxis((padded - mean) / scale, -1, 0))


def subject_scale(lr: np.ndarray, mask: np.ndarray | None, kind: str = "md-mode") -> float:
    """The unit (mm^2/s) in which models with a "subject_scale" normalisation see their input, so that b-value and
    scanner differences in overall diffusivity drop out. "md-mode": the mode of the mean diffusivity over every
    positive-definite input voxel (the brain tissue's peak: within 2.6 % of the brain-only mode on the real subjects'
    clean x2 inputs, unmasked or not, but not on noisy or 9 mm unmasked ones: input_unit), the mask unused;
    "median-md" (the first models): the median MD over the mask, else over every voxel with MD > 0."""
    if kind == "median-md":
        md = _md(lr)
        inside = md > 0 if mask is None else (np.asarray(mask, bool) & (md > 0))
        if not inside.any():
            return 1.0
        return float(np.median(md[inside]))
    if kind != "md-mode":
        raise IQTError(f"unknown subject scale {kind!r} in the model's normalisation; use a model made by 'iqt train'")
    return tensors.md_mode(lr)


UNIT_TIE = 1.2  # the filled input's MD mode this many times above the input's own: the filled edge's peak won (input_unit)


def _a_whole_field_brain(raw: np.ndarray, mask: np.ndarray) -> bool:
    """inputs.a_whole_field_brain: a given or estimated brain of a whole-field fit, not a region or a masked fit."""
    from ..inputs import a_whole_field_brain

    return a_whole_field_brain(raw, mask)


def input_unit(raw: np.ndarray, filled: np.ndarray, mask: np.ndarray | None, kind: str = "md-mode") -> float:
    """The unit a "subject_scale" model sees its input in: `subject_scale` of the context-filled input, as its training
    took it; where that mode is more than UNIT_TIE times above the input's own, the filled edge's peak has outnumbered
    white matter's (a brain cut by the field of view: +36-44 % on the 3 mm dev pair, docs/limitations.md), and the
    input's own is taken. One-sided: a filled mode below the input's own (noisy cut inputs) is no such peak, and taking
    the own there gained nothing consistently (docs/limitations.md). A whole-field fit whose `mask` may be its brain
    (`_a_whole_field_brain`: the brain estimated from it, or a given brain mask) takes the mode over `mask` where it is more than UNIT_TIE times above the input's own:
    background noise fits had pulled the whole field's down (the brain's 1.39-1.68 times it on the ×2 inputs at b0
    SNR 3, docs/limitations.md)."""
    unit = subject_scale(filled, mask, kind)
    if kind != "md-mode":
        return unit
    own = subject_scale(raw, mask, kind)
    if mask is not None and _a_whole_field_brain(raw, mask):
        brain = subject_scale(np.where(np.asarray(mask, bool)[..., None], raw, 0), mask, kind)
        if brain > UNIT_TIE * own:
            return brain
    return own if unit > UNIT_TIE * own else unit


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


def support_box(support: np.ndarray, t: tuple):
    """The tile `t` (slices) cropped to the bounding box of its support voxels; None where it holds none. Outputs
    outside the support are zeroed anyway, so a brain's corner tiles compute only their corner (a 72x87x72
    volume in 24^3 tiles: 63 % of the positions instead of all)."""
    box = grid.bounding_box(support[t])
    return None if box is None else tuple(slice(sl.start + b.start, sl.start + b.stop) for sl, b in zip(t, box))


def resolve_device(name):
    """The torch.device for a `--device` choice: "cpu", "cuda", or "auto" (CUDA when PyTorch sees one, else the
    CPU); a torch.device passes through. Asking for CUDA where there is none is an IQTError, not a torch trace."""
    import torch

    if isinstance(name, torch.device):
        kind = name.type
    else:
        kind = str(name).strip().lower()
        if kind == "auto":
            kind = "cuda" if torch.cuda.is_available() else "cpu"
        if kind not in ("cpu", "cuda"):
            raise IQTError(f"--device {name}: unknown device; choose one of cpu, cuda, auto")
    if kind == "cuda" and not torch.cuda.is_available():
        raise IQTError(f"--device {name}: no CUDA device is available to PyTorch here; use --device cpu (or auto)")
    return name if isinstance(name, torch.device) else torch.device(kind)


def run_tiled(fn, x: np.ndarray, r, support: np.ndarray, outputs: dict, tile: int = DEFAULT_TILE,
              halo: int = HALO, device="cpu", progress=None) -> dict:
    """Apply `fn` tile by tile over the low-res grid and assemble its outputs on the high-res grid.

    `x` is the (C, X+2h, Y+2h, Z+2h) input zero-padded by `halo`; each tile of `tile`^3 positions is read with
    its halo, so that tiling does not change any output voxel; each tile is cropped to its support's bounding box
    (`support_box`) and tiles with no voxel of `support` are skipped.
    `fn(inp, hr)` gets the tile's (1, C, ...) input on `device` and its high-res slices `hr`, and returns
    {name: tensor}, channels first. `outputs` maps each name to its trailing shape on the high-res grid ((6,) for
    tensors, () for scalar maps); the result maps it to a float32 numpy array, zero where no tile reached.
    `progress(fraction)` is called after each tile."""
    import torch

    shape = support.shape
    f = grid.factors(r, identity_ok=True)
    hr_shape = tuple(fa * n for fa, n in zip(f, shape))
    out = {name: np.zeros(hr_shape + tuple(dims), np.float32) for name, dims in outputs.items()}
    todo = [b for b in (support_box(support, t) for t in tiles(shape, tile)) if b is not None]
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        for n, (si, sj, sk) in enumerate(todo):
            inp = xt[:, si.start : si.stop + 2 * halo, sj.start : sj.stop + 2 * halo, sk.start : sk.stop + 2 * halo]
            hr = tuple(slice(fa * s.start, fa * s.stop) for fa, s in zip(f, (si, sj, sk)))
            for name, t in fn(inp[None].to(device), hr).items():
                out[name][hr] = (t.movedim(0, -1) if outputs[name] else t).cpu().numpy()
            if progress is not None:
                progress((n + 1) / len(todo))
    return out


_NET_LOCKS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_NET_LOCKS_GUARD = threading.Lock()


def net_lock(net) -> threading.RLock:
    """The lock `run_network` and `run_network_mc` hold while they run `net`: both change state on the module itself
    (its device; the dropout layers' sampling switch, generator and per-channel noise), which two threads running
    one cached network at once would overwrite under each other (every brain voxel of espcn-hetero-var1 changed,
    by up to 1.1 % of max|T|, the direction map by up to 18.9 degrees). Reentrant: a progress callback may run the
    same network again (each run restores the state it found). The callback runs inside the lock: one that runs
    another network can deadlock with a thread doing the reverse, and a slow one holds back other threads
    on this network; keep callbacks to reporting."""
    with _NET_LOCKS_GUARD:
        lock = _NET_LOCKS.get(net)
        if lock is None:
            lock = _NET_LOCKS[net] = threading.RLock()
        return lock


@contextmanager
def _on_device(net, device):
    """`net` on `device` for the duration, then back where it was."""
    home = next(net.parameters()).device
    net.to(device)
    try:
        yield net
    finally:
        net.to(home)


def run_network(net, x: np.ndarray, r, support: np.ndarray, tile: int = DEFAULT_TILE, progress=None,
                device="cpu"):
    """Residual (and log-variance for heteroscedastic networks) on the whole high-res grid, (rX, rY, rZ, 6)."""
    hetero = is_hetero(net)

    def one_pass(inp, hr):
        out = net(inp)
        return {"res": out[0][0], "logvar": out[1][0]} if hetero else {"res": out[0]}

    outputs = {"res": (6,), "logvar": (6,)} if hetero else {"res": (6,)}
    with net_lock(net), _on_device(net, device):
        out = run_tiled(one_pass, x, r, support, outputs, tile, net.halo, device, progress)
    return out["res"], out.get("logvar")


# intrinsic-noise draws per Monte Carlo sample for the FA std: one each left it mostly sampling noise at the default
# 10 samples (31 % of a dev scan's brain voxels over 25 % off the 200-sample map; docs/accuracy.md, What the pooled
# figures hide); draws cost no network pass, but 8 took the default uncertainty run from about 15 s to 24 s, 3 to 17 s
FA_DRAWS = 3

# correlation of the diagonal elements' errors that MD's intrinsic variance counts (measured in units of their whole σ,
# whose parameter part is under 1 % of the intrinsic): counted as independent, MD's error was within ±2 md_std in
# 83-92 % of the dev scans' brain voxels (docs/accuracy.md, What the pooled figures hide). The median over the four
# training subjects, shipped Monte Carlo models and factor sets (0.504; 0.30-0.63, varying by subject more than by
# model or factors: 0.46-0.55 per model and factor set): benchmarks/md_std_correlation.py on the training subjects
MD_ERROR_CORRELATION = 0.5


def md_std_map(ivar, trvar, rho: float = MD_ERROR_CORRELATION):
    """MD's standard deviation from the elements' intrinsic variances (..., 6) and the trace's parameter variance
    (...), both (mm^2/s)^2: (sum_i v_i + 2 rho sum_{i<j} s_i s_j + trvar) / 9 over the diagonal, s_i = sqrt(v_i)
    (benchmarks/md_std_correlation.py scores it at other rho)."""
    s = np.sqrt(ivar[..., [0, 2, 5]])
    cross = s[..., 0] * s[..., 1] + s[..., 0] * s[..., 2] + s[..., 1] * s[..., 2]
    return np.sqrt((s * s).sum(-1) + 2.0 * rho * cross + trvar) / 3.0


def run_network_mc(net, x: np.ndarray, r, support: np.ndarray, samples: int, seed: int = DEFAULT_SEED,
                   tile: int = DEFAULT_TILE, progress=None, base: np.ndarray | None = None, out_scale=None,
                   device="cpu"):
    """Monte Carlo pass of a variational hetero network: (mean residual, parameter variance, log-variance,
    parameter variance of the trace Dxx + Dyy + Dzz, FA std), normalised units, high-res grid. The FA std is
    over samples of the predictive distribution (sampled mean plus FA_DRAWS intrinsic-noise draws per sample) and
    needs `base` (the cubic interpolation, (rX, rY, rZ, 6) mm^2/s) and `out_scale`; without them it is None.
    The generators live on `device`: on the CPU the draws are those of a CPU torch.Generator seeded `seed`."""
    import torch

    samples = int(samples)
    if samples < 1:
        raise ValueError("Monte Carlo prediction needs at least one sample")
    with_fa = base is not None
    scale_t = torch.as_tensor(np.asarray(out_scale, np.float32))[:, None, None, None].to(device) if with_fa else None
    gen = torch.Generator(device=device).manual_seed(int(seed))
    fa_gen = torch.Generator(device=device).manual_seed(int(seed) + 1)  # separate stream: the means don't use it
    layers = net.mean.dropout_layers()
    channel_noise = None
    if layers and layers[0].mode == "channel":  # one draw per channel and sample, shared by every tile
        channel_noise = [[torch.randn(d.log_alpha.shape[0], generator=gen, device=device) for d in layers]
                         for _ in range(samples)]

    def sample_tile(inp, hr):
        lv = net.logvar(inp)[0]
        h1 = net.mean.features(inp)
        if with_fa:
            base_t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(base[hr], -1, 0))).to(device)
            sd = (0.5 * lv.clamp(-30, 30)).exp()
            fa_acc, fa_acc2 = torch.zeros_like(lv[0]), torch.zeros_like(lv[0])
        # sums of deviations from the first sample (shifted data: no cancellation in float32)
        ref = acc = acc2 = tacc = tacc2 = None
        for s in range(samples):
            if channel_noise is not None:
                for d, eps in zip(layers, channel_noise[s]):
                    d.channel_noise = eps
            mu = net.mean.head(h1)[0]
            if with_fa:
                for _ in range(FA_DRAWS):
                    draw = mu + sd * torch.randn(mu.shape, generator=fa_gen, device=mu.device)
                    fa = fa_closed_form(*(base_t + draw * scale_t)).clamp(0, 1)
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
        tm = tacc / samples
        out = {"mean": ref + m, "pvar": (acc2 - samples * m * m).clamp_min(0) / max(samples - 1, 1), "logvar": lv,
               "trvar": (tacc2 - samples * tm * tm).clamp_min(0) / max(samples - 1, 1)}
        if with_fa:
            n = samples * FA_DRAWS
            fm = fa_acc / n
            out["fa_std"] = ((fa_acc2 - n * fm * fm).clamp_min(0) / max(n - 1, 1)).sqrt()
        return out

    outputs = {"mean": (6,), "pvar": (6,), "logvar": (6,), "trvar": ()}
    if with_fa:
        outputs["fa_std"] = ()
    with net_lock(net), _on_device(net, device):
        found = [(d.sampling, d.generator, d.channel_noise) for d in layers]
        for d in layers:
            d.sampling, d.generator, d.channel_noise = True, gen, None
        try:
            out = run_tiled(sample_tile, x, r, support, outputs, tile, net.halo, device, progress)
        finally:
            for d, (sampling, generator, noise) in zip(layers, found):
                d.sampling, d.generator, d.channel_noise = sampling, generator, noise
    return out["mean"], out["pvar"], out["logvar"], out["trvar"], out.get("fa_std")


def predict_volume(model, lr: np.ndarray, mask: np.ndarray | None, tile: int = DEFAULT_TILE, progress=None,
                   samples: int | None = None, seed: int = DEFAULT_SEED, device="cpu"):
    """High-res tensors (rX, rY, rZ, 6) and, for heteroscedastic models, {"std": per-voxel mean over the
    6 elements of the predicted standard deviation, mm^2/s}. Variational models with `samples` >= 1 (default
    DEFAULT_SAMPLES) are sampled by Monte Carlo and also give "std_intrinsic", "std_parameter" (the same
    per-voxel mean of the two parts' standard deviations; "std" is that of their sum), "md_std" (mm^2/s)
    and "fa_std" (unitless, by sampling: FA_DRAWS intrinsic-noise draws per sample);
    `samples=0` gives one deterministic pass (the expected activations) with the intrinsic part only.
    `lr` is clipped, canonical-axis, mm^2/s. `device` ("cpu", "cuda", "auto" or a torch.device) runs the
    network there for this call; the outputs are float32 numpy arrays either way."""
    from ...fileio.records import note_run

    device = resolve_device(device)
    note_run(device=device.type)  # where it ran, in the run's record ("auto" is only what was asked)
    r = model.factor  # (fx, fy, fz)
    norm = model.meta["normalisation"]
    raw, lr = lr, fill_context(lr)
    support = lr_support(mask, lr.shape[:3])
    unit = input_unit(raw, lr, mask, norm["subject_scale"]) if norm.get("subject_scale") else 1.0
    x = normalise_input(np.asarray(lr, np.float32) / np.float32(unit), norm, model.net.halo)
    out_scale = np.asarray(norm["out_scale"], np.float32) * np.float32(unit)
    hr_support = repeat_blocks(support, r)
    if samples is None:
        samples = DEFAULT_SAMPLES
    if is_variational(model.net) and samples >= 1:
        cubic = upsample_separable(lr, r, 3)
        res, pvar, logvar, trvar, fa_std = run_network_mc(model.net, x, r, support, samples, seed, tile, progress,
                                                          base=cubic, out_scale=out_scale, device=device)
        # in place, as below: each (rX, rY, rZ, 6) array is the output's size (docs/measurements.md#speed); `cubic` is a
        # new array (core/grid.factors refuses a factor of 1 on every axis)
        hr = np.add(cubic, np.multiply(res, out_scale, out=res), out=cubic)
        del res
        hr[~hr_support] = 0.0
        var_scale = out_scale**2
        ivar = np.multiply(np.exp(np.clip(logvar, -30, 30, out=logvar), out=logvar), var_scale, out=logvar)
        pvar = np.multiply(pvar, var_scale, out=pvar)
        # MD = (Dxx + Dyy + Dzz) / 3: intrinsic part with the diagonal elements' errors correlated
        # MD_ERROR_CORRELATION, parameter part from the samples' traces (the diagonal elements share one output scale)
        md_std = md_std_map(ivar, trvar * float(out_scale[0]) ** 2)
        unc = {
            "std": np.sqrt(ivar + pvar).mean(axis=-1),
            "std_intrinsic": np.sqrt(ivar, out=ivar).mean(axis=-1),
            "std_parameter": np.sqrt(pvar, out=pvar).mean(axis=-1),
            "md_std": md_std,
            "fa_std": fa_std,
        }
        del ivar, pvar, logvar  # ivar is logvar, computed in place
        for k in unc:
            unc[k][~hr_support] = 0.0
            unc[k] = unc[k].astype(np.float32, copy=False)
        return hr.astype(np.float32, copy=False), unc
    res, logvar = run_network(model.net, x, r, support, tile, progress, device)
    # in place: a new array of the output's size costs about as much as the arithmetic (docs/measurements.md#speed)
    hr = np.multiply(res, out_scale, out=res)
    hr += upsample_separable(lr, r, 3)
    hr[~hr_support] = 0.0
    unc = {}
    if logvar is not None:
        std = (np.exp(0.5 * np.clip(logvar, -30, 30)) * out_scale).mean(axis=-1)
        std[~hr_support] = 0.0
        unc["std"] = std.astype(np.float32)
    return hr, unc
