"""The training data of the 3D-ESPCN models: synthetic low quality from high-quality subjects, and its sampling.

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
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

from ...core import grid, tensors
from ...core.errors import IQTError
from ...core.orientation import Reorientation
from ...dmri import degrade as deg
from ...dmri import randomise
from ..inputs import clip_input
from ..interpolation import upsample_separable
from .inference import fill_context, subject_scale
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
    from ...dmri.subject import as_subject, check_subject_table
    from .distributed import rank_and_world

    rng = None if randomise_seed is None else np.random.default_rng([randomise_seed, 4242])
    items = []
    for d in subject_dirs:
        t0 = time.perf_counter()
        subject = as_subject(d)
        if rank_and_world()[0] == 0:  # said once, not by every process of an --nproc training
            check_subject_table(d, subject)
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
