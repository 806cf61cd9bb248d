"""Training of the 3D-ESPCN models on synthetic low quality from high-quality subjects.

Data (docs/conventions.md): every subject is first reoriented to canonical (RAS) voxel axes, tensor components and
b-vectors included, so that training sees what `Method.predict` feeds the network; then every one of the
r^3 block shifts is degraded (DWIs averaged, DTI fitted) `variants` times in random ways (`randomise`: the input
styles of other tools and WLS/OLS; direction subsets and Rician noise for the shares `subset_fraction` and
`noise_fraction`, 0 by default; dmri/randomise.py), each input prepared as `Method.predict` prepares it
(eigenvalues clipped, missing context filled next to the input's non-zero voxels, subject scale), and paired
with the matching high-res reference. Targets are the residual of the clipped reference over cubic B-spline interpolation,
on plausible brain voxels only (the others get zero weight).

Units: with `subject_scale` (the default) every degraded volume is first divided by the mode of its low-res MD
(inference.subject_scale, "md-mode"; the first models used the median brain MD, "median-md"; inference does the
same and multiplies back), so that the b-value and scanner
differences in overall diffusivity (b=1000 and b=2000 in training) drop out; on two dev subjects after 10
epochs this lowered the DT-RMSE ratio to cubic by 0.006-0.016 in both regions, where a random gain
augmentation (`scale_aug`) did not help.
Normalisation (stored with the model, invariant under axis flips and permutations): inputs
(x - m) / s with one mean for the diagonal elements (0 for off-diagonals) and one scale for diagonal and
one for off-diagonal elements. The residual is divided by one RMS over all six elements (`out_norm="metric"`,
the default), so that the MSE weighs the elements as DT-RMSE does; `out_norm="per-element"` (diagonal /
off-diagonal RMS, the first shipped models) weighs an off-diagonal error about ten times a diagonal one.

Augmentation: a random signed permutation of the patch axes per batch (flips and axis permutations),
with the tensor components transformed to match (D' = P D P^T). Validation: a slab of low-res coronal planes of
every subject is held out of the training targets (training patches may see its inputs, never its targets); early stopping on the validation loss.
Weight averaging (`ema` > 0, off by default): an exponential moving average of the weights (decay `ema` per batch,
restarted with each phase) is what validation scores, early stopping keeps and the model ships, as in Polyak
averaging; the optimiser moves the live weights.
Heteroscedastic models: MSE on the mean network first, then the heteroscedastic loss
mean(exp(-s) (y - mu)^2 + s) on both networks. Variational-dropout models (`espcn-hetero-var1/2`) add
kl_weight * KL(q || log-uniform prior) of the dropout rates to both phases; the default weight is one over the
number of training target values (the ELBO divided by the data size). `init` warm-starts from a trained model
of a compatible architecture (e.g. `espcn-hetero` -> `espcn-hetero-var1`: the dropout rates start at
alpha = exp(-4); a plain `espcn` or `deep` model starts the mean network of a heteroscedastic one, whose variance
network starts as built). Deterministic for a given seed and `epochs`
(a `minutes` budget stops on wall time, which is not).

Distributed (`distributed.py`): when a torch.distributed group is initialised, every process trains the same
network wrapped in DistributedDataParallel on its own share of each batch (batch_size / processes patches from its own
sampler stream, seeded by seed and rank), the gradients averaged, so the global batch is the same; rank 0's
validation loss drives every decision and only rank 0 logs. `checkpoint` is written after every epoch (by rank 0,
atomically): weights, optimiser, scheduler, early-stopping state and every process's random streams; a training
started again with the same checkpoint continues from its last epoch, as if uninterrupted.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ...core.version import __version__ as engine_version
from ...fileio.model_files import build as engine_build
from ...dmri import degrade as deg
from ...core import grid, tensors
from ...core.errors import IQTError
from ..interpolation import upsample_separable
from ...core.orientation import Reorientation
from ..inputs import clip_input
from ...dmri import randomise
from .inference import fill_context, subject_scale
from .model_io import save_torch
from .networks import HALO

VAL_AXIS = 1
# The residual targets are most of the training data's memory (x3: 324 volumes); float16 halves it. Its rounding is
# under 3e-8 mm^2/s below 6e-5 and 5e-4 relative above: far below the errors learnt (DT-RMSE ~1e-4 mm^2/s).
RESIDUAL_DTYPE = np.float16
DIAG = np.array([True, False, True, False, False, True])
DEFAULTS = dict(patch=12, batch_size=8, iters_per_epoch=200, lr=1e-3, patience=12, augment="all",
                val_fraction=0.15, val_patches=12, val_total=1200, hetero_mse_fraction=0.4, kl_weight=None, out_norm="metric",
                subject_scale=True, scale_aug=0.0, randomise=True, variants=3,
                subset_fraction=0.0, noise_fraction=0.0, reference_noise=False, ema=0.0)


@dataclass
class TrainItem:
    """One (subject, shift): zero-padded low-res input, high-res residual target and weight, patch corners."""

    name: str
    shift: tuple
    lr_pad: np.ndarray  # (X+2h, Y+2h, Z+2h, 6) mm^2/s, zero-padded by `halo`
    res: np.ndarray  # (rX, rY, rZ, 6) reference - cubic, mm^2/s (RESIDUAL_DTYPE), 0 where weight is 0
    weight: np.ndarray  # (rX, rY, rZ) bool: plausible reference voxel in the brain mask, outside the validation slab
    val_weight: np.ndarray  # the same inside the validation slab
    train_corners: np.ndarray  # (N, 3) low-res patch corners whose output avoids the validation slab
    val_corners: np.ndarray
    unit: float = 1.0  # the input's MD unit (inference.subject_scale), for "subject_scale" models
    unit_kind: str = "md-mode"
    lr_mask: np.ndarray | None = None  # (X, Y, Z) bool: the low-res brain
    variant: dict | None = None  # how the input was made (dmri.randomise.Variant.describe)
    halo: int = HALO  # the padding of lr_pad: the halo of the network it is made for
    ref_std: np.ndarray | None = None  # (rX, rY, rZ, 6) mm^2/s: the reference fit's element noise (reference_noise)
    ref_std_unit: float = 1.0  # the unit `res` was divided by (subject scale), for ref_std, which items share

    def inner(self) -> np.ndarray:
        """The low-res input without its padding."""
        h = self.halo
        return self.lr_pad[h:-h, h:-h, h:-h]


def prepare_subject(subject, r, patch: int = DEFAULTS["patch"], val_fraction=DEFAULTS["val_fraction"],
                    log=None, variants: int = 1, rng=None, subsets: float = 0.0, noise: float = 0.0,
                    halo: int = HALO, reference_noise: bool = False) -> list[TrainItem]:
    """All block shifts of one `dmri.subject.Subject` as training items (canonical axes; `r`: an integer or per-axis
    factors): with `rng`, `variants`
    randomly made inputs per shift (dmri/randomise.py; `subsets`, `noise`: the shares with a direction subset, with
    added noise), else the project's own. Each input is then prepared as `Method.predict` prepares it (eigenvalues
    clipped, missing context filled, subject scale) and zero-padded by the network's `halo`. `reference_noise`: each
    item also holds the reference fit's per-element noise (dmri/fit_noise.py), one array shared by the subject's items."""
    reo = Reorientation.to_canonical(subject.dwi.affine)
    dwi = reo.apply(subject.dwi)
    mask = reo.apply(subject.mask).data.astype(bool)
    truth = reo.apply(subject.tensor).data
    weight_full = mask & tensors.plausible(truth)
    target_full = tensors.clip_eigenvalues(truth, *tensors.INPUT_CLIP)
    std_full = None
    if reference_noise:
        from ...dmri.fit_noise import noise_floor

        std_full = np.nan_to_num(noise_floor(dwi.data, dwi.bvals, dwi.bvecs, truth, weight_full)).astype(np.float32)
    items = []
    jobs = [(shift, randomise.draw(rng, dwi.bvals, dwi.bvecs, subsets, noise) if rng is not None else randomise.Variant())
            for shift in deg.all_shifts(r) for _ in range(variants if rng is not None else 1)]
    for shift, variant in jobs:
        t0 = time.perf_counter()
        pair = randomise.degrade_variant(dwi, mask, r, shift, variant)
        lr = fill_context(clip_input(pair.tensor.data)).astype(np.float32)
        cubic = upsample_separable(lr, r, 3)
        w = deg.hr_crop(weight_full, r, shift)
        res = (deg.hr_crop(target_full, r, shift) - cubic).astype(RESIDUAL_DTYPE)
        res[~w] = 0.0
        lr_mask = pair.mask.data
        shape = np.array(lr_mask.shape, dtype=int)
        if (shape < patch).any():
            raise IQTError(f"{subject.name}: low-res grid {tuple(int(v) for v in shape)} is smaller than the {patch}^3 training patch")
        corners = np.unique(np.clip(np.argwhere(lr_mask) - patch // 2, 0, shape - patch), axis=0)
        # validation: a slab of low-res coronal planes (axis 1, anterior-posterior) held out of the targets
        ys = np.argwhere(lr_mask)[:, VAL_AXIS]
        lo, hi = ys.min(), ys.max() + 1
        width = max(patch, int(round(val_fraction * (hi - lo))))
        y0 = int(np.clip(lo + 0.6 * (hi - lo) - width / 2, 0, shape[VAL_AXIS] - width))
        y1 = y0 + width
        in_slab = np.zeros(w.shape[VAL_AXIS], bool)
        fy = grid.factors(r)[VAL_AXIS]
        in_slab[fy * y0 : fy * y1] = True
        in_slab = in_slab.reshape([-1 if a == VAL_AXIS else 1 for a in range(3)])
        cy = corners[:, VAL_AXIS]
        train = corners[~((cy >= y0) & (cy + patch <= y1))]
        val = corners[(cy >= y0) & (cy + patch <= y1)]
        w_train, w_val = w & ~in_slab, w & in_slab
        items.append(TrainItem(subject.name, tuple(shift), np.pad(lr, [(halo, halo)] * 3 + [(0, 0)]), res, w_train, w_val,
                               train, val, unit=subject_scale(lr, None), lr_mask=lr_mask, variant=variant.describe(),
                               halo=halo, ref_std=None if std_full is None else deg.hr_crop(std_full, r, shift)))
        if log:
            log(f"  {subject.name} shift {shift} {variant.describe()}: low-res {tuple(int(v) for v in shape)}, {int(w.sum())} target voxels, "
                f"{len(train)}/{len(val)} train/val corners ({time.perf_counter() - t0:.1f} s)")
    return items


def load_items(subject_dirs, r, log=None, randomise_seed: int | None = None, **kw) -> list[TrainItem]:
    """Training items of every subject (folder, dmri.subject.Coarsened copy or Subject); `randomise_seed` draws the inputs' variants (dmri/randomise.py)."""
    from ...dmri.subject import as_subject

    rng = None if randomise_seed is None else np.random.default_rng([randomise_seed, 4242])
    items = []
    for d in subject_dirs:
        t0 = time.perf_counter()
        subject = as_subject(d)
        if log:
            log(f"{subject.name}: high-res fit {subject.dwi.shape3} ({time.perf_counter() - t0:.1f} s)")
        items.extend(prepare_subject(subject, r, log=log, rng=rng, **kw))
    return items


# ---------------------------------------------------------------- normalisation


def fit_normalisation(items: list[TrainItem], out_norm: str = "metric") -> dict:
    """Flip/permutation-invariant normalisation from the training data (see the module docstring)."""
    if out_norm not in ("metric", "per-element"):
        raise IQTError(f"out_norm must be 'metric' or 'per-element', not {out_norm!r}")
    # running sums over the items, not one concatenation of every brain value in float64 (a x3 training set's
    # residuals over again; docs/measurements.md, Other factors)
    n_lr = n_res = 0
    lr_sum = np.zeros(6)
    lr_sq = np.zeros(6)
    res_sq = np.zeros(6)
    for it in items:
        inner = it.inner()
        brain = np.abs(inner).sum(-1) > 0
        if it.lr_mask is not None:
            brain &= it.lr_mask
        v = inner[brain].astype(np.float64)
        lr_sum += v.sum(0)
        lr_sq += (v**2).sum(0)
        n_lr += len(v)
        res = it.res[it.weight | it.val_weight].astype(np.float64)
        res_sq += (res**2).sum(0)
        n_res += len(res)
    n_lr, n_res = max(n_lr, 1), max(n_res, 1)
    diag_mean = float(lr_sum[DIAG].sum() / (3 * n_lr))
    # std of the diagonal values about their common mean (population std, as np.std)
    s_diag = float(np.sqrt(max(lr_sq[DIAG].sum() / (3 * n_lr) - diag_mean**2, 0.0)))
    s_off = float(np.sqrt(lr_sq[~DIAG].sum() / (3 * n_lr)))
    r_diag, r_off = float(np.sqrt(res_sq[DIAG].sum() / (3 * n_res))), float(np.sqrt(res_sq[~DIAG].sum() / (3 * n_res)))
    if out_norm == "metric":
        r_diag = r_off = float(np.sqrt(res_sq.sum() / (6 * n_res)))
    return {
        "kind": "residual-over-cubic",
        "in_mean": [diag_mean if d else 0.0 for d in DIAG],
        "in_scale": [s_diag if d else s_off for d in DIAG],
        "out_scale": [r_diag if d else r_off for d in DIAG],
        "units": "mm^2/s",
    }


# ---------------------------------------------------------------- augmentation


def signed_permutations():
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            p = np.zeros((3, 3))
            for new, (old, s) in enumerate(zip(perm, signs)):
                p[new, old] = s
            yield perm, signs, p


SIGNED_PERMUTATIONS = list(signed_permutations())


def component_map(p: np.ndarray) -> np.ndarray:
    """6x6 matrix M with t' = M t for D' = P D P^T (lower-triangular order)."""
    return np.stack([tensors.rotate(np.eye(6)[k], p) for k in range(6)], axis=1).astype(np.float32)


def augment_batch(arrays, perm, signs, p, magnitudes: int = 0):
    """Apply one signed axis permutation to (B, 6, X, Y, Z) tensor batches and (B, X, Y, Z) weights; the last
    `magnitudes` arrays are per-element standard deviations, which move with their elements but keep their sign."""
    import torch

    m = torch.from_numpy(component_map(p))
    out = []
    for i, a in enumerate(arrays):
        if i == len(arrays) - magnitudes:
            m = m.abs()  # a signed permutation sends each element to one element, up to its sign
        spatial0 = a.dim() - 3
        a = a.permute(*range(spatial0), *(spatial0 + q for q in perm))
        flips = [spatial0 + ax for ax, s in enumerate(signs) if s < 0]
        if flips:
            a = torch.flip(a, flips)
        if a.dim() == 5:
            a = torch.einsum("ij,bjxyz->bixyz", m, a)
        out.append(a.contiguous())
    return out


# ---------------------------------------------------------------- batches


class Sampler:
    def __init__(self, items, norm, r, patch, seed, scale_aug=0.0):
        self.items, self.r, self.patch, self.scale_aug = items, r, patch, float(scale_aug)
        self.f = grid.factors(r)  # per-axis factors, once (patch_at runs for every patch)
        self.rng = np.random.default_rng(seed)
        self.in_mean = np.asarray(norm["in_mean"], np.float32)
        self.in_scale = np.asarray(norm["in_scale"], np.float32)
        self.out_scale = np.asarray(norm["out_scale"], np.float32)
        sizes = np.array([len(it.train_corners) for it in items], float)
        self.p_items = sizes / sizes.sum()

    def patch_at(self, it: TrainItem, c, val=False, gain=1.0):
        P, f, h = self.patch, self.f, it.halo
        x = it.lr_pad[c[0] : c[0] + P + 2 * h, c[1] : c[1] + P + 2 * h, c[2] : c[2] + P + 2 * h]
        hr = tuple(slice(fa * ci, fa * (ci + P)) for ci, fa in zip(c, f))
        x = (x * np.float32(gain) - self.in_mean) / self.in_scale
        y = it.res[hr] * np.float32(gain) / self.out_scale
        out = [np.moveaxis(x, -1, 0), np.moveaxis(y, -1, 0), (it.val_weight if val else it.weight)[hr].astype(np.float32)]
        if it.ref_std is not None:  # in the target's units: the same subject scale, gain and output scale
            out.append(np.moveaxis(it.ref_std[hr] * np.float32(gain / it.ref_std_unit) / self.out_scale, -1, 0))
        return out

    def batch(self, n):
        import torch

        parts = []
        for k in self.rng.choice(len(self.items), size=n, p=self.p_items):
            it = self.items[k]
            corner = it.train_corners[self.rng.integers(len(it.train_corners))]
            gain = math.exp(self.rng.uniform(-self.scale_aug, self.scale_aug)) if self.scale_aug else 1.0
            parts.append(self.patch_at(it, corner, gain=gain))
        return [torch.from_numpy(np.ascontiguousarray(np.stack(a))) for a in zip(*parts)]

    def validation(self, n_per_item, seed, total: int | None = None) -> "ValidationSet":
        """`n_per_item` held-out patches of each item, fewer where that would exceed `total` in all: evaluated every
        epoch, a x3 set of 324 items x 12 patches of 36^3 outputs took about as long as the epoch's training."""
        rng = np.random.default_rng(seed + 7919)
        held = [it for it in self.items if len(it.val_corners)]
        if total and held:
            n_per_item = max(1, min(n_per_item, int(total) // len(held)))
        picks = []
        for it in held:
            for k in rng.choice(len(it.val_corners), size=min(n_per_item, len(it.val_corners)), replace=False):
                picks.append((it, it.val_corners[k]))
        if not picks:
            raise IQTError("no validation patches: the training subjects are too small for the held-out slab")
        return ValidationSet(self, picks)


class ValidationSet:
    """The held-out patches, kept as (item, corner) and made a chunk at a time when evaluated: stacked once, a x3
    training set's (12 per item, 36^3 x 6 targets each) held more memory than its volumes."""

    def __init__(self, sampler: Sampler, picks):
        self.sampler, self.picks = sampler, picks

    def __len__(self) -> int:
        return len(self.picks)

    def chunks(self, size: int, device="cpu"):
        """(x, y, w) tensors of `size` patches at a time, in a fixed order."""
        import torch

        for s in range(0, len(self.picks), size):
            parts = [self.sampler.patch_at(it, c, val=True) for it, c in self.picks[s : s + size]]
            yield [torch.from_numpy(np.ascontiguousarray(np.stack(a))).to(device) for a in zip(*parts)]


def mse_loss(pred, y, w):
    return ((pred - y) ** 2 * w[:, None]).sum() / (w.sum() * 6 + 1e-8)


def hetero_loss(pred, logvar, y, w, ref_std=None):
    """Gaussian negative log-likelihood per target element; with `ref_std` (the reference's own fit noise), the
    target's variance is the predicted one plus that noise's, so the prediction's is its error against the truth."""
    if ref_std is None:
        nll = (-logvar).exp() * (pred - y) ** 2 + logvar
    else:
        var = logvar.exp() + ref_std ** 2
        nll = (pred - y) ** 2 / var + var.log()
    return (nll * w[:, None]).sum() / (w.sum() * 6 + 1e-8)


# ---------------------------------------------------------------- the loop


CHECKPOINT_FORMAT = "iqt-cnn-checkpoint/1"
SIDECAR_VERSION = "1.0.0"  # a trained model's sidecar "version", as every shipped CNN sidecar has it (the engine's
# own is its "engine_version")


def load_checkpoint(path, method: str, factor: int, seed: int) -> dict:
    """A checkpoint written by `train` for the same method, factor and seed (weights-only load: no code runs)."""
    import torch

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4 in the checkpoint": the refusal below says it
            warnings.simplefilter("ignore")
            ck = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # PyTorch's text would advise loading it unsafely: its kind only
        raise IQTError(f"{path}: not a training checkpoint this tool can read ({type(exc).__name__}: another kind of file, "
                       "or a damaged one); give --checkpoint a file of its own (it is created there)") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise IQTError(f"{path}: not an IQT training checkpoint; give another --checkpoint path or delete it")
    if (ck["method"], grid.factors(ck["factor"]), ck["seed"]) != (method, grid.factors(factor), int(seed)):
        raise IQTError(f"{path}: a checkpoint of {ck['method']} at factor {ck['factor']} with seed {ck['seed']}; resume it "
                       "with those settings, or give another --checkpoint path")
    return ck


def _resume_plan(phases, given, limits, ended, last, done, start, epochs, more) -> str:
    """What a resumed run trains, for its 'resuming from … after epoch N' log line: ', on to --epochs N' where that is
    what a run given those epochs at once would train; otherwise which ended phases are kept as they ran (a two-phase
    run's warm-up: review, 2+2 epochs resumed with --epochs 8 trains 2+5, not a fresh run's 3+5), which phase trains
    on to how many epochs, and a phase that already has the epochs --epochs gives it (it trains no more)."""
    if start >= len(phases):
        return ""  # the run had ended: the next line says so
    notes = []
    for i in range(start):
        if ended[i][1] == 0 and ended[i][0] != given[i]:
            notes.append(f"its finished {phases[i][0]} phase is kept as it ran ({ended[i][0]} epochs; a run given "
                         f"--epochs {epochs} at once gives it {given[i]})")
    k0 = done if start == last else 0
    rest = [f"the {phases[i][0]} phase trains {'on ' if i == last else ''}to {limits[i]} epochs"
            for i in range(start, len(phases)) if limits[i] > (k0 if i == start else 0)]
    if k0 >= given[start]:
        notes.append(f"its {phases[start][0]} phase has {k0} epochs already, "
                     f"{'more than' if k0 > given[start] else 'as many as'} the {given[start]} --epochs {epochs} gives "
                     "it: " + ("it trains no more" if rest else "no epoch to train; its best weights are written"))
    if not notes:
        return f", on to --epochs {epochs}" if more else ""
    return ": " + "; ".join(notes + rest) + (f", to epoch {sum(limits)} at most" if rest else "")


def train(items: list[TrainItem], method: str = "espcn", factor=2, seed: int = 0, epochs: int = 200,
          minutes: float | None = None, log=None, progress: bool = True, threads: int | None = None, init=None,
          checkpoint=None, device="cpu", data=None, **options) -> tuple:
    """Train a network on prepared items (on every process of a torch.distributed group, if one is initialised);
    with `checkpoint`, save after every epoch and resume from it when it exists. Returns (net in eval mode, sidecar
    metadata, history). `device` ("cpu", "cuda", "auto"): where the network trains (batches are drawn on the CPU);
    with several processes, the CPU only (gloo). `data`: the subjects' files as `base.data_record` gives them, which a
    checkpoint must have been trained on to be resumed."""
    run = _Training(items, method, factor, seed, epochs, minutes, log, progress, threads, init, checkpoint, device,
                    options, data)
    run.start()
    for pi in range(run.start_phase, len(run.phases)):  # the phases a resumed run has ended are skipped
        run.train_phase(pi)
    run.bar.close()
    return run.result()


class _Training:
    """One `train` call: what its set-up made (network, data, sampler, checkpoint to resume) and the progress its
    epochs move on (epoch, history, ended phases: what a checkpoint records). A class so that each step of the loop
    reads on one screen: set-up (`__init__`), `start`, `train_phase` per phase, `result`."""

    def __init__(self, items, method, factor, seed, epochs, minutes, log, progress, threads, init, checkpoint, device,
                 options, data=None):
        """Check the options, then set up processes, device, threads, the network, the data and the checkpoint."""
        from . import networks, require_torch
        from .distributed import rank_and_world

        self.torch = torch = require_torch()
        self.items, self.method, self.factor, self.seed, self.epochs = items, method, factor, seed, epochs
        self.minutes, self.checkpoint = minutes, checkpoint
        # each subject's DWI by content: a checkpoint resumed on another scan in a folder of the same name went on
        # training on it, its sidecar naming only the new data
        # ([file, sha256] lists: what a checkpoint reads back, compared as saved)
        self.data = {d["subject"]: [[k, v] for k, v in sorted(d["sha256"].items())]
                     for d in sorted(data or [], key=lambda d: str(d.get("subject"))) if d.get("sha256")}
        self.opts = opts = {**DEFAULTS, **options}
        if method not in networks.ARCHITECTURES:
            raise IQTError(f"unknown CNN method {method!r}; trainable: {', '.join(networks.ARCHITECTURES)}")
        self.rank, self.world = rank, world = rank_and_world()
        if opts["batch_size"] % world:
            raise IQTError(f"a batch of {opts['batch_size']} patches does not split over {world} processes; give a number "
                           f"of processes that divides it")
        if rank:
            log, progress = None, False
        self.log, self.progress = log, progress
        from .inference import resolve_device

        self.device = device = resolve_device(device)
        if world > 1 and device.type != "cpu":
            raise IQTError(f"--device {device.type}: training over several processes runs on the CPU (gloo); use --device cpu "
                           "or one process")
        if threads:
            torch.set_num_threads(int(threads))
        from ...core.threads import thread_record

        self.threads_used = thread_record(torch=True)
        base = self._build_network(init)
        self._prepare_data(base)
        self._place_network()
        self.ck = self._open_checkpoint()
        self.decay = float(opts["ema"])
        if not 0.0 <= self.decay < 1.0:
            raise IQTError(f"weight averaging decay {self.decay:g}: give a number in [0, 1), e.g. 0.999, or 0 for none")

    # ------------------------------------------------ set-up

    def _build_network(self, init):
        """Seed torch and the augmentation stream, build the network, warm-start it from `init`; returns that model or None."""
        from . import networks

        torch, method, factor, seed = self.torch, self.method, self.factor, self.seed
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed if self.world == 1 else [seed, self.rank])
        self.arch = {"name": method, "factor": grid.record(factor), "widths": list(networks.default_widths(method))}
        self.f_train = grid.factors(factor)
        self.net = net = networks.build(self.arch)
        self.hetero = networks.is_hetero(net)
        if any(it.halo != net.halo for it in self.items):
            raise IQTError(f"the training items are padded for a halo of {self.items[0].halo} low-res voxels, {method!r} needs "
                           f"{net.halo}; prepare them with halo={net.halo}")
        self.init_info, base = None, None
        if init is not None:
            from . import model_io

            base = model_io.load(init)
            if grid.factors(base.factor) != grid.factors(factor):
                raise IQTError(f"{init}: --init model is for {grid.describe(base.factor)}, not {grid.text(factor)}")
            # a model without a variance network (espcn, deep) warm-starts the mean network of a heteroscedastic one,
            # whose variance network starts as built
            target = net.mean if networks.is_hetero(net) and not networks.is_hetero(base.net) else net
            missing, unexpected = target.load_state_dict(base.net.state_dict(), strict=False)
            # new parts start as they are built: dropout rates, and deep's residual block (zero: the base's function)
            if unexpected or any("log_alpha" not in k and ".res_" not in f".{k}" for k in missing):
                raise IQTError(f"{init}: a model of method {base.method!r} cannot initialise a network of method {method!r}")
            self.opts["subject_scale"] = bool(base.meta["normalisation"].get("subject_scale"))  # the base's units
            self.init_info = {"model": str(base.path.name), "method": base.method, "sha256": base.meta.get("sha256"),
                              "minutes": base.meta.get("training", {}).get("minutes"),
                              "command": base.meta.get("training", {}).get("command")}
        return base

    def _prepare_data(self, base):
        """Put the items in their subject unit, fit the normalisation (or take `base`'s), make the sampler and validation set."""
        from . import networks

        items, opts = self.items, self.opts
        scale_kind = "md-mode"
        if base is not None and base.meta["normalisation"].get("subject_scale"):
            scale_kind = base.meta["normalisation"]["subject_scale"]  # the base's units
            for it in items:
                if it.unit_kind != scale_kind:
                    inner = it.inner()
                    it.unit, it.unit_kind = subject_scale(inner, it.lr_mask, scale_kind), scale_kind
        if opts["subject_scale"]:
            for it in items:  # in place: the items are this training's own
                it.lr_pad /= np.float32(it.unit)
                it.res /= np.float32(it.unit)
                it.ref_std_unit = float(it.unit)
        if base is not None:
            norm = base.meta["normalisation"]
        else:
            norm = fit_normalisation(items, opts["out_norm"])
            if opts["subject_scale"]:
                norm["subject_scale"] = scale_kind
                norm["units"] = "mode of the low-res MD" if scale_kind == "md-mode" else "median low-res brain MD"
        self.norm = norm
        if opts["reference_noise"] and not self.hetero:
            raise IQTError(f"reference noise enters the heteroscedastic loss only; {self.method!r} has none (use espcn-hetero or -var1)")
        if bool(opts["reference_noise"]) != all(it.ref_std is not None for it in items):
            raise IQTError("prepare the training items with reference_noise as the training asks (load_items)")
        self.variational = networks.is_variational(self.net)
        n_targets = sum(float(it.weight.sum()) for it in items) * 6
        self.kl_weight = (1.0 / max(n_targets, 1.0)) if opts["kl_weight"] is None else float(opts["kl_weight"])
        seed = self.seed
        self.sampler = Sampler(items, norm, self.factor, opts["patch"], seed if self.world == 1 else [seed, self.rank],
                               opts["scale_aug"])
        self.val_set = self.sampler.validation(opts["val_patches"], seed, opts["val_total"])

    def _place_network(self):
        """Move the network to its device; over several processes, wrap it in DistributedDataParallel (`self.model`)."""
        self.net.to(self.device)
        self.model = self.net
        if self.world > 1:  # the same initial weights everywhere (DDP broadcasts rank 0's), then each rank its own dropout draws
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.net)
            self.torch.manual_seed(self.seed * 1000 + self.rank)

    def _open_checkpoint(self):
        """The checkpoint to resume (None if there is none), checked against this training, its weights and streams restored."""
        from pathlib import Path

        opts, checkpoint = self.opts, self.checkpoint
        # what a checkpoint must have been trained on to be resumed here: the subjects and every option (else one
        # resumed with other --subjects goes on training on them and its sidecar names only the new ones)
        training = {"subjects": sorted({it.name for it in self.items}),
                    "options": {k: v for k, v in sorted(opts.items()) if isinstance(v, (bool, int, float, str, type(None)))}}
        if self.data:
            training["data"] = self.data
        self.training = training
        if checkpoint is None or not Path(checkpoint).exists():
            return None
        ck = load_checkpoint(checkpoint, self.method, self.factor, self.seed)
        if bool(ck.get("subject_scale", True)) != bool(opts["subject_scale"]):  # weights learnt in another input unit
            unit = "md-mode" if ck.get("subject_scale", True) else "fixed"
            raise IQTError(f"{checkpoint}: a checkpoint trained with --input-unit {unit}; resume it with that unit, or "
                           "give another --checkpoint path")
        # a checkpoint of an earlier version holds no data record: its subjects are then told by name only
        same = {k: v for k, v in training.items() if k != "data" or "data" in ck.get("training", {})}
        if "training" in ck and ck["training"] != same:
            was, now = ck["training"], same
            what = [f"subjects {', '.join(was['subjects'])}"] if was["subjects"] != now["subjects"] else []
            what += [f"other files for subject {name}" for name in sorted(now.get("data", {}))
                     if was.get("data", {}).get(name) not in (None, now["data"][name])]
            what += [f"{k} {was['options'].get(k)!r}" for k in sorted(set(was["options"]) | set(now["options"]))
                     if was["options"].get(k) != now["options"].get(k)]
            raise IQTError(f"{checkpoint}: a checkpoint of another training ({'; '.join(what)}); resume it with the same "
                           "--subjects and options, or give another --checkpoint path")
        self.net.load_state_dict(ck["net"])
        if len(ck["rng"]) == self.world:  # every process's streams as they were; another process count draws afresh
            st = ck["rng"][self.rank]
            self.rng.bit_generator.state, self.sampler.rng.bit_generator.state = st["augment"], st["sampler"]
            self.torch.set_rng_state(st["torch"])
        return ck

    # ------------------------------------------------ progress: phases, resuming, checkpoints

    def start(self):
        """The phases and the epochs --epochs gives each, the clock and progress bar; a checkpoint's progress taken over."""
        opts = self.opts
        hetero_mse = opts["hetero_mse_fraction"]
        self.phases = [("hetero-warmup-mse", hetero_mse), ("hetero", 1 - hetero_mse)] if self.hetero else [("mse", 1.0)]
        self.history = []
        self.t_start = time.perf_counter()
        from ...core.progress import progress_bar

        self.bar = progress_bar(total=self.epochs, desc=f"train {self.method}", enabled=self.progress)
        self.epoch = 0
        self.stopped = "epochs"
        self.start_phase = 0
        self.given = [max(1, int(round(self.epochs * frac))) for _, frac in self.phases]  # the epochs --epochs gives each phase
        self.limits = list(self.given)  # the most epochs each phase has in this run (a resumed one keeps what its phases ran)
        self.ended = []  # [epochs run, stop] of each phase that has ended: 0 by its epochs, 1 early stopping, 2 time budget
        if self.ck is not None:
            self._resume(self.ck)

    def _resume(self, ck):
        """Take over a checkpoint's history, epoch and ended phases, and decide which phase goes on to how many epochs."""
        phases, given, limits = self.phases, self.given, self.limits
        self.history, self.epoch, self.stopped = list(ck["history"]), int(ck["epoch"]), ck["stopped"]
        self.t_start -= float(ck["elapsed"])
        # a phase finished by its epochs goes on where --epochs now gives it more (a finished --epochs 1 run
        # resumed with --epochs 2 trains one more epoch); one that stopped early or at its time budget is over
        last = int(ck["phase_index"])
        done = int(ck["phase_epochs_done"])
        ran_out = ck.get("phase_stop", 0 if ck["stopped"] == "epochs" else 1) == 0
        more = bool(ck["phase_finished"]) and ran_out and done < given[last]
        finished = bool(ck["phase_finished"]) and not more
        self.start_phase = start_phase = last + finished
        ran = [sum(1 for h in self.history if h["phase"] == name) for name, _ in phases]
        self.ended = ended = [list(e) for e in ck.get("phases_ended", [[ran[i], 0] for i in range(last)])]
        if finished:
            self.net.load_state_dict(ck["best_state"])
            ended.append([done, int(ck.get("phase_stop", 0))])
        for i in range(min(start_phase, len(phases))):  # the phases that have ended stay as they ran
            limits[i] = ran[i]
        if start_phase < len(phases):
            limits[start_phase] = max(given[start_phase], done if start_phase == last else 0)
        self.bar.update(self.epoch)
        if self.log:
            self.log(f"resuming from {self.checkpoint} after epoch {self.epoch}" + _resume_plan(
                phases, given, limits, ended, last, done, start_phase, self.epochs, more))
            before = int(ck.get("processes", 1))
            if before != self.world:
                self.log(f"the checkpoint was written by {before} process{'es' if before > 1 else ''} and this run has "
                         f"{self.world}: the random streams start afresh, so the weights differ from those of a run "
                         f"that went on with {before} (the model's record names both counts)")
            if start_phase >= len(phases):
                self.log(f"the checkpoint's run had already ended ({ck['stopped']}, after epoch {self.epoch}): no epoch to "
                         "train; its model is written as it was" + (f" (a larger --epochs than {self.epoch} continues a "
                                                                   "run stopped by its epochs)" if ran_out else ""))

    def _save_checkpoint(self, pi, done, finished, opt, sched, best, best_state, since, ema_state, stop=0):
        """Write the whole training state (every process's random streams gathered) to `checkpoint`, on rank 0, atomically."""
        from .distributed import gather

        torch = self.torch
        states = gather({"augment": self.rng.bit_generator.state, "sampler": self.sampler.rng.bit_generator.state,
                         "torch": torch.get_rng_state()})
        if self.rank == 0:
            from ...fileio import atomic_write

            state = {"format": CHECKPOINT_FORMAT, "method": self.method, "factor": grid.record(self.factor),
                     "seed": int(self.seed), "subject_scale": bool(self.opts["subject_scale"]), "processes": self.world,
                     "phase_index": pi, "phase_epochs_done": done, "phase_finished": finished, "phase_stop": int(stop),
                     "phases_ended": self.ended, "epoch": self.epoch, "stopped": self.stopped,
                     "elapsed": time.perf_counter() - self.t_start, "history": self.history, "net": self.net.state_dict(),
                     "opt": opt.state_dict(), "sched": sched.state_dict(), "best": best, "best_state": best_state,
                     "since": since, "rng": states, "ema_state": ema_state, "training": self.training}
            atomic_write(self.checkpoint, lambda tmp: save_torch(state, tmp))

    # ------------------------------------------------ the loop

    def train_phase(self, pi):
        """One phase's epochs (its optimiser and early stopping resumed where it is the checkpoint's), then its best weights kept."""
        from .distributed import agree

        opts, net, ck, log = self.opts, self.net, self.ck, self.log
        phase, frac = self.phases[pi]
        phase_epochs = self.given[pi]
        phase_deadline = None if self.minutes is None else self.t_start + 60 * self.minutes * (
            frac if phase != "hetero" else 1.0)
        if phase == "hetero-warmup-mse":
            params, loss_kind = list(net.mean.parameters()), "mse"
        else:
            params, loss_kind = list(net.parameters()), phase
        opt, sched = self._make_opt(params, opts["lr"] if phase != "hetero" else opts["lr"] * 0.3)
        best, best_state, since = math.inf, copy.deepcopy(net.state_dict()), 0
        ema_state = copy.deepcopy(net.state_dict()) if self.decay else None
        k0 = 0
        if ck is not None and pi == self.start_phase:
            opt.load_state_dict(ck["opt"])
            sched.load_state_dict(ck["sched"])
            best, best_state, since, k0 = ck["best"], ck["best_state"], int(ck["since"]), int(ck["phase_epochs_done"])
            if self.decay:
                ema_state = ck["ema_state"]
        net.train()
        stop = 0
        for k in range(k0, phase_epochs):
            t0 = time.perf_counter()
            total = self._train_epoch(opt, loss_kind, ema_state)
            kind = "hetero" if loss_kind == "hetero" else "mse"
            val = agree(self._averaged(ema_state, lambda: self._evaluate(kind)))  # rank 0's, so that every rank decides alike
            sched.step(val)
            self.epoch += 1
            self.history.append({"epoch": self.epoch, "phase": phase, "train_loss": total / opts["iters_per_epoch"],
                                 "val_loss": val, "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0})
            if val < best - 1e-6:
                best, best_state, since = val, copy.deepcopy(net.state_dict() if ema_state is None else ema_state), 0
            else:
                since += 1
            last = self.history[-1]
            self.bar.update(1)
            self.bar.set_postfix(train=f"{last['train_loss']:.4f}", val=f"{val:.4f}")
            if log:
                log(f"epoch {self.epoch} [{phase}] train {last['train_loss']:.5f} val {val:.5f} "
                    f"lr {last['lr']:.2g} ({last['seconds']:.1f} s, {(time.perf_counter() - self.t_start) / 60:.1f} min)")
            stop = agree(1 if since >= opts["patience"] else
                         2 if phase_deadline is not None and time.perf_counter() > phase_deadline else 0)
            self.stopped = {1: "early stopping", 2: "time budget"}.get(stop, self.stopped)
            if self.checkpoint is not None:
                self._save_checkpoint(pi, k + 1, bool(stop) or k + 1 == phase_epochs, opt, sched, best, best_state,
                                      since, ema_state, stop)
            if stop:
                break
        self.ended = self.ended + [[sum(1 for h in self.history if h["phase"] == phase),
                                    int(stop) if k0 < phase_epochs else 0]]
        net.load_state_dict(best_state)

    def _train_epoch(self, opt, loss_kind, ema_state) -> float:
        """`iters_per_epoch` optimiser steps on augmented batches (the averaged weights updated after each); the summed loss."""
        opts, torch, device, decay = self.opts, self.torch, self.device, self.decay
        total = 0.0
        for _ in range(opts["iters_per_epoch"]):
            x, y, w, *ref = self._augment(self.sampler.batch(opts["batch_size"] // self.world))
            x, y, w, ref = x.to(device), y.to(device), w.to(device), [a.to(device) for a in ref]
            loss = self._loss(self.model(x), y, w, ref, loss_kind)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema_state is not None:
                with torch.no_grad():
                    for key, value in self.net.state_dict().items():
                        if value.is_floating_point():
                            ema_state[key].mul_(decay).add_(value, alpha=1.0 - decay)
            total += loss.item()
        return total

    def _augment(self, batch):
        """One random signed axis permutation of a batch, from the `augment` option's set, keeping each axis's factor."""
        opts = self.opts
        if opts["augment"] == "none":
            return batch
        cands = SIGNED_PERMUTATIONS if opts["augment"] == "all" else [s for s in SIGNED_PERMUTATIONS if s[0] == (0, 1, 2)]
        # per-axis factors: only the permutations that keep each axis's factor (all of them for r)
        cands = [s for s in cands if all(self.f_train[q] == self.f_train[k] for k, q in enumerate(s[0]))]
        perm, signs, p = cands[self.rng.integers(len(cands))]
        return augment_batch(batch, perm, signs, p, magnitudes=len(batch) - 3)

    def _loss(self, out, y, w, ref, loss_kind):
        """The batch loss: MSE, or the heteroscedastic NLL, plus the KL term of variational dropout."""
        if not self.hetero:
            return mse_loss(out, y, w)
        mu, lv = out
        loss = (mse_loss(mu, y, w) if loss_kind == "mse" else hetero_loss(mu, lv, y, w, *ref)) + self._kl_term()
        if self.world > 1 and loss_kind == "mse":
            loss = loss + 0.0 * lv.sum()  # DDP reduces a gradient for every parameter, the variance net's too
        return loss

    def _kl_term(self):
        """The variational dropout's KL divergence, weighted (0 for other networks)."""
        return self.kl_weight * self.net.mean.kl() if self.variational else 0.0

    def _make_opt(self, params, lr):
        """A phase's Adam optimiser and its plateau learning-rate schedule."""
        o = self.torch.optim.Adam(params, lr=lr)
        return o, self.torch.optim.lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=max(2, self.opts["patience"] // 3))

    def _evaluate(self, phase):
        """The validation loss of `phase`'s kind, in eval mode (no dropout noise: the mean network's expectation)."""
        net, torch = self.net, self.torch
        net.eval()
        with torch.no_grad():
            losses = []
            for xb, yb, wb, *refb in self.val_set.chunks(16, self.device):
                out = net(xb)
                if self.hetero:
                    mu, lv = out
                    losses.append(float(hetero_loss(mu, lv, yb, wb, *refb) if phase == "hetero" else mse_loss(mu, yb, wb)) * len(xb))
                    # validation is in eval mode: the dropout noise is off, the mean network's expectation
                else:
                    losses.append(float(mse_loss(out, yb, wb)) * len(xb))
        net.train()
        return sum(losses) / len(self.val_set)

    def _averaged(self, ema_state, run):
        """`run()` with the averaged weights in the network (the live ones put back after); without averaging, as is."""
        if ema_state is None:
            return run()
        net = self.net
        live = copy.deepcopy(net.state_dict())
        net.load_state_dict(ema_state)
        try:
            return run()
        finally:
            net.load_state_dict(live)

    # ------------------------------------------------ the result

    def result(self) -> tuple:
        """(the network on the CPU in eval mode, a plain copy of a DDP one; its sidecar metadata; the history)."""
        if self.world > 1:  # hand back a plain copy: DDP's hooks on the parameters hold the process group
            import gc

            from . import networks

            plain = networks.build(self.arch)
            plain.load_state_dict(self.net.state_dict())
            del self.model
            self.net = plain
            gc.collect()
        net = self.net
        net.to("cpu")
        net.eval()
        return net, self._sidecar(), self.history

    def _sidecar(self) -> dict:
        """The trained model's sidecar metadata: architecture, normalisation and the record of this training."""
        net, opts, items, history, phases = self.net, self.opts, self.items, self.history, self.phases
        variational = self.variational
        return {
            "method": self.method,
            "factor": grid.record(self.factor),
            "arch": self.arch,
            "patch": {"input_lr": opts["patch"] + 2 * net.halo, "output_lr": opts["patch"],
                      "receptive_field_lr": 2 * net.halo + 1, "halo_lr": net.halo},
            "normalisation": self.norm,
            "training": {
                "subjects": sorted({it.name for it in items}),
                "shifts": len({it.shift for it in items}),
                "volumes": len(items),
                "input_styles": {k: sum(1 for it in items if (it.variant or {}).get("style", "own") == k)
                                 for k in sorted({(it.variant or {}).get("style", "own") for it in items})},
                "seed": self.seed, "epochs_run": self.epoch, "epochs_max": sum(self.limits), "epochs_given": self.epochs,
                "epochs_per_phase": {name: sum(1 for h in history if h["phase"] == name) for name, _ in phases},
                "minutes_budget": self.minutes, "stopped_by": self.stopped,
                "best_val_loss": min(h["val_loss"] for h in history if h["phase"] == phases[-1][0]),
                "minutes": (time.perf_counter() - self.t_start) / 60,
                "options": {k: opts[k] for k in DEFAULTS},
                "init": self.init_info,
                "processes": self.world,
                "threads": self.threads_used,  # this process's (each process of a group takes as many)
                "device": self.device.type,
                "resumed_after_epoch": None if self.ck is None else int(self.ck["epoch"]),
                "processes_before_resume": None if self.ck is None else int(self.ck.get("processes", 1)),
                "kl_weight": self.kl_weight if variational else None,
                "log_alpha": ({name: [round(float(v), 4) for v in d.log_alpha.detach()] for name, d in
                               (("drop1", net.mean.drop1), ("drop2", net.mean.drop2))} if variational else None),
                "orientation": "canonical RAS axes (Method.predict reorients)",
                "targets": "plausible voxels in the brain mask, eigenvalues clipped to [0, 4e-3]",
            },
            "version": SIDECAR_VERSION,
            "engine_version": engine_version,
            "engine_build": engine_build(),
        }
