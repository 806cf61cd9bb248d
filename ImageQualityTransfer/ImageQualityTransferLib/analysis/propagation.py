"""Uncertainty propagation: draw high-res DTI samples from a method's predictive distribution and carry
them through FA, MD and tractography.

The predictive distribution used here is a **diagonal Gaussian approximation**: at every voxel each of
the 6 unique tensor elements is drawn independently as N(mean element, sigma^2), with sigma the
method's per-voxel standard deviation map (`Prediction.std`, the std averaged over the 6
elements; a per-element (X,Y,Z,6) map is used element by element). Correlations between elements and
between neighbouring voxels, which the methods do not report, are ignored: the spread of FA, MD and of
the tracts is therefore that of spatially independent element noise of the predicted size.

Outputs: FA and MD mean and standard-deviation maps over the samples (a sample's MD below zero, which no tissue has,
read as 0 in the mean, the spread left as drawn: `_propagate`); per-voxel visitation probability
(the fraction of samples whose streamlines from the same seeds visit the voxel); the Dice of the
binarised tract-density maps between consecutive samples (tract variability) and against the
tracts of the mean prediction.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..core import tensors
from . import tractography
from ..core.errors import IQTError, IQTWarning
from ..core.words import counted
from ..core.orientation import Reorientation, _nio
from ..core.volume import Volume


@dataclass
class Propagation:
    fa_mean: Volume
    fa_std: Volume
    md_mean: Volume
    md_std: Volume
    visitation: Volume | None  # fraction of samples visiting each voxel (None without tracking)
    dice_between_samples: list = field(default_factory=list)  # Dice(sample i, sample i+1)
    dice_to_mean: list = field(default_factory=list)  # Dice(sample i, tracts of the mean prediction)
    n_streamlines: list = field(default_factory=list)
    n_samples: int = 0
    seconds: float = 0.0  # the sampling alone (the prediction before it is the caller's)
    settings: dict = field(default_factory=dict)  # what reproduces the samples and tracts: the seed, tracking settings
    md_clipped_voxels: int = 0  # voxels md_mean reads 0 as the prediction's MD is not above zero: none of --samples
    md_mean_below_zero_voxels: int = 0  # and those it reads 0 as their samples' mean MD fell below zero by chance
    sampled_voxels: int = 0  # the voxels drawn (the mask's voxels holding a tensor): what the two counts are out of

    def summary(self) -> dict:
        def stats(x):  # over the defined values: a Dice of two empty tract maps is NaN
            x = np.asarray(x, float)
            x = x[np.isfinite(x)]
            return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min())} if x.size else None

        return {
            "n_samples": self.n_samples,
            "sampling_seconds": self.seconds,
            "settings": self.settings,
            "approximation": "diagonal Gaussian per element (independent elements and voxels)",
            "tract_dice_between_samples": stats(self.dice_between_samples),
            "tract_dice_to_mean_prediction": stats(self.dice_to_mean),
            "streamlines_per_sample": stats(self.n_streamlines),
            "md_clipped_voxels": self.md_clipped_voxels,
            "md_mean_below_zero_voxels": self.md_mean_below_zero_voxels,
            "sampled_voxels": self.sampled_voxels,
        }


def _sigma(std, shape3) -> np.ndarray:
    s = np.asarray(getattr(std, "data", std), dtype=np.float32)
    if s.ndim == 4 and s.shape[3] == 1:
        s = s[..., 0]
    if s.shape[:3] != tuple(shape3) or s.ndim not in (3, 4) or (s.ndim == 4 and s.shape[3] != 6):
        raise IQTError(f"the std map {s.shape} is neither (X,Y,Z) nor (X,Y,Z,6) on the prediction grid {tuple(shape3)}")
    return np.nan_to_num(np.maximum(s, 0.0))


def propagate(prediction, n: int = 100, seeds=None, mask=None, settings=None, rng=0, track: bool = True,
              n_seeds: int = 1000, progress=None, track_mask=None) -> Propagation:
    """Draw `n` tensor samples from `prediction` (a methods.Prediction with a "std" map) and summarise them.

    seeds: world (N,3) points or a seed-mask Volume; default `n_seeds` random points where the mean
    prediction's FA >= 0.3. mask: high-res (X,Y,Z) bool; only its voxels with a non-zero prediction are used.
    track_mask: where random seeds fall and tracts run, within `mask` (default all of it: the maps may cover a margin
    the tracts keep out of). track=False gives only the FA/MD maps.

    The samples and the random seeds are drawn in the closest canonical (RAS) voxel axes, as the methods work, and the
    maps put back on the prediction's grid: the same tensors stored in another voxel order give the same maps."""
    if prediction.std is None:
        raise IQTError("this prediction has no uncertainty map; propagate needs a method with uncertainty (e.g. espcn-hetero, biqt)")
    if int(n) < 2:
        raise IQTError(f"--samples {n}: give at least 2 samples")
    t0 = time.perf_counter()
    vol = prediction.tensor
    shape3 = vol.shape3
    if mask is not None:
        mask = np.asarray(getattr(mask, "data", mask), bool)
        if mask.shape != shape3:
            raise IQTError(f"the mask {mask.shape} is not on the prediction grid {shape3}")
    sigma = _sigma(prediction.std, shape3)
    if track_mask is not None:
        track_mask = np.asarray(getattr(track_mask, "data", track_mask), bool)
    re = Reorientation.to_canonical(vol.affine)
    if re.is_identity:
        return _propagate(vol, sigma, n, seeds, mask, settings, rng, track, n_seeds, progress, track_mask, t0)

    def canonical(a):
        return None if a is None else np.ascontiguousarray(_nio().apply_orientation(a, re.ornt))

    sigma = canonical(sigma)
    if sigma.ndim == 4:  # per-element stds: the elements reordered as the tensor's, no sign (a std is not signed)
        sigma = tensors.rotate(sigma, np.abs(re.signed_permutation()))
    out = _propagate(re.apply(vol), sigma, n, seeds, canonical(mask), settings, rng, track, n_seeds, progress,
                     canonical(track_mask), t0)
    back = re.inverse().ornt
    for name in MAPS:
        v = getattr(out, name)
        if v is not None:  # on the prediction's own grid and affine
            setattr(out, name, Volume(np.ascontiguousarray(_nio().apply_orientation(v.data, back)), vol.affine, "scalar"))
    return out


def _propagate(vol, sigma, n, seeds, mask, settings, rng, track, n_seeds, progress, track_mask, t0) -> Propagation:
    """`propagate` on tensors `vol` with the stds `sigma` (`_sigma`), `mask` and `track_mask` bool arrays on its grid."""
    mu_full = np.asarray(vol.data, np.float32)
    shape3 = vol.shape3
    m = np.any(mu_full != 0, axis=-1) & np.isfinite(mu_full).all(axis=-1)
    if mask is not None:
        # a high-res --mask zeroed the prediction outside it (Prediction.within) within the blocks of `mask`
        m &= mask
    t = m if track_mask is None else m & track_mask
    sig = sigma[m]
    sig = sig[:, None] if sig.ndim == 1 else sig
    mu = mu_full[m]
    rng_seed = rng if isinstance(rng, (int, np.integer)) else None
    rng = np.random.default_rng(rng)
    # lengths not given scaled once to the prediction's brain (the voxels holding a tensor), the same for every sample
    s = (settings or tractography.TrackingSettings()).check().resolved(tractography.tensor_support(mu_full), vol.affine).check()
    if track:
        tractography.warn_long_step(s, vol.voxel_size)

    acc = {k: np.zeros(len(mu), np.float64) for k in ("fa", "fa2", "md", "md2")}
    visits = np.zeros(shape3, np.float32) if track else None
    out = Propagation(*(None,) * 5)
    if track:
        if seeds is None:
            fa_mu = np.zeros(shape3)
            fa_mu[m] = tensors.fa(mu)
            fa_mu[~t] = 0.0
            seeds = tractography.random_seeds(fa_mu >= 0.3, vol.affine, n_seeds, rng=0) if (fa_mu >= 0.3).any() else np.zeros((0, 3))
        elif isinstance(seeds, Volume):
            seeds = tractography.seeds_from_mask(seeds, s.density)
        seeds = tractography.seeds_inside(seeds, shape3, vol.affine)  # once, for every sample's tracking below
        mean_lines = tractography.track(vol, seeds, s, mask=t)
        mean_density = tractography.density_map(mean_lines, vol.affine, shape3) > 0
    prev = None
    fa_vol = np.zeros(shape3, np.float64)
    dirs_vol = np.zeros(shape3 + (3,), np.float64)
    for i in range(int(n)):
        sample = mu + sig * rng.standard_normal(mu.shape, dtype=np.float32)
        fa = tensors.fa(sample)
        md = tensors.md(sample).astype(np.float64)  # unclipped: MD is linear in the elements, so its mean is unbiased
        acc["fa"] += fa
        acc["fa2"] += fa * fa
        acc["md"] += md
        acc["md2"] += md * md
        if track:
            fa_vol[m] = fa
            fa_vol[~t] = 0.0  # tracking stops outside the tracking mask
            live = fa >= s.fa_threshold
            d = np.zeros((len(mu), 3))
            if live.any():
                d[live] = tensors.principal_vector(sample[live])
            dirs_vol[m] = d
            lines = tractography.track_fields(fa_vol, dirs_vol, vol.affine, seeds, s)
            dens = tractography.density_map(lines, vol.affine, shape3) > 0
            visits += dens
            out.n_streamlines.append(len(lines))
            out.dice_to_mean.append(_tract_dice(dens, mean_density))
            if prev is not None:
                out.dice_between_samples.append(_tract_dice(dens, prev))
            prev = dens
        if progress:
            progress(i + 1, int(n))

    def full(x):
        a = np.zeros(shape3, np.float32)
        a[m] = x
        return Volume(a, vol.affine, "scalar")

    k = float(n)
    fa_mean = acc["fa"] / k
    md_mean = acc["md"] / k
    out.fa_mean = full(fa_mean)
    out.fa_std = full(np.sqrt(np.maximum(acc["fa2"] / k - fa_mean**2, 0.0)))
    # an MD not above zero is no diffusion: the brain edge of a whole-field input, where the prediction itself is not
    # physical, had read md_mean -6e-4 mm^2/s. Such a voxel reads 0 (md_std keeps the drawn spread: not "certain");
    # clipping each sample instead had raised md_mean by a median 21 % in physical voxels whose md_std is 1-2x MD
    not_physical = tensors.md(mu) <= 0
    no_diffusion = not_physical | (md_mean < 0)
    out.md_mean = full(np.where(no_diffusion, 0.0, md_mean))
    out.md_std = full(np.sqrt(np.maximum(acc["md2"] / k - md_mean**2, 0.0)))
    # a streamline's last step can land a voxel beyond the mask; every output is zero outside it
    out.visitation = Volume(np.where(m, visits / k, 0.0).astype(np.float32), vol.affine, "scalar") if track else None
    out.n_samples = int(n)
    # counted apart: the prediction's own (a count that had varied with --samples, 3,306 / 1,876 / 1,621 at 5 / 20 / 40
    # on one input, a review) and the samples' chance, which falls as --samples grows
    out.md_clipped_voxels = int(not_physical.sum())
    out.md_mean_below_zero_voxels = int((no_diffusion & ~not_physical).sum())
    out.sampled_voxels = int(len(mu))
    out.seconds = time.perf_counter() - t0
    # seeds outside the tracking mask start no streamline: counted apart (a tractography audit: 24,800 of them had
    # read as tracked, and the run told to seek white matter)
    outside = tractography.points_outside(seeds, Volume(t, vol.affine, "mask")) if track else 0
    out.settings = {"seed": rng_seed, "tracking": asdict(s) if track else None,
                    "seeds_tracked": len(seeds) - outside if track else 0,
                    **({"seeds_outside_tracked_region": outside} if track and outside else {})}
    if track and not any(out.n_streamlines):
        why = tractography.no_streamline_reason(s, outside, len(seeds), masked=mask is not None or track_mask is not None)
        warnings.warn(f"no streamline was tracked in any of the {counted(int(n), 'sample')} from the "
                      f"{counted(len(seeds), 'seed')}, so the tract "
                      f"Dice is undefined (null in propagation.json): {why}", IQTWarning, stacklevel=2)
    return out


def propagate_within(prediction, lr_mask=None, factor=2, **kw) -> Propagation:
    """`propagate` over what a run with a low-res brain mask `lr_mask` (a Volume or None) at `factor` covers: the maps
    over the mask's blocks and every voxel the prediction fills (a method fills the mask widened by a voxel; its maps
    read 0, "certain", there when only the blocks were drawn), the seeds and tracts inside the blocks only (in the
    margin 169 of 1000 random seeds fell where the method extrapolates)."""
    from ..core.grid import repeat_blocks

    if lr_mask is None:
        return propagate(prediction, **kw)
    blocks = repeat_blocks(np.asarray(getattr(lr_mask, "data", lr_mask)).astype(bool), factor)
    filled = np.any(np.asarray(prediction.tensor.data) != 0, axis=-1)
    return propagate(prediction, mask=blocks | filled, track_mask=blocks, **kw)


def _tract_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two tract maps; NaN when both are empty (no tracts to agree on, not perfect agreement)."""
    return tractography.dice(a, b) if a.any() or b.any() else float("nan")


# ---------------------------------------------------------------- outputs (`iqt propagate`, `iqt upsample --propagate`)

MAPS = ("fa_mean", "fa_std", "md_mean", "md_std", "visitation")


def output_paths(folder, prefix: str = "", suffix: str = ".nii.gz") -> dict:
    """Where the outputs go: `<folder>/<prefix>fa_mean.nii.gz` ... `<prefix>visitation.nii.gz` and
    `<prefix>propagation.json` (`iqt propagate`: no prefix, in its folder; `iqt upsample --propagate`:
    beside the output, prefixed with its name, in its suffix: .nrrd or .nhdr maps beside a NRRD output)."""
    folder = Path(folder)
    paths = {n: folder / f"{prefix}{n}{suffix}" for n in MAPS}
    paths["json"] = folder / f"{prefix}propagation.json"
    return paths


SUMMARY_KEYS = ("method", "n_samples", "approximation", "tract_dice_between_samples")  # every summary `write` made


def is_summary(path) -> bool:
    """Whether the JSON at `path` is a propagation summary this tool wrote (`write`: its keys), so that a run replaces
    it; another program's file of that name (a user's own results) had been written over without a word."""
    from ..fileio.model_files import read_json

    try:
        summary = read_json(path, what="the propagation summary")
    except (OSError, ValueError, UnicodeDecodeError, IQTError):
        return False
    # the keys alone took a user's file holding them for ours (a review): their values as `write` has always made them
    return isinstance(summary, dict) and all(k in summary for k in SUMMARY_KEYS) and \
        isinstance(summary["method"], str) and isinstance(summary["n_samples"], int) and \
        str(summary["approximation"]).startswith("diagonal Gaussian")


def write(res: Propagation, paths: dict, method_name: str, input_path, settings: dict | None = None,
          total_seconds: float | None = None) -> str:
    """Write the maps and the JSON summary to `paths` (`output_paths`); returns the one-line message. `settings`: the
    command's options that reproduce the run, recorded with the propagation's own; `total_seconds`: the whole command's
    time (the prediction with the sampling). An earlier run's map this run does not write (a visitation before
    --no-tracts) is the caller's to retire through its plan (apps/cli/propagate.py, upsample.py retire_stale_maps):
    removed only if iqt wrote it, and only once every output is in place."""
    from .. import fileio
    from ..fileio.model_files import software
    from ..fileio.records import map_record

    written = []
    for name in MAPS:
        vol = getattr(res, name)
        if vol is not None:  # its kind and unit in the header, as the uncertainty maps record theirs
            fileio.save_scalar(vol, paths[name], map_record(method_name, name))
            written.append(paths[name].name)
    summary = {"method": method_name, "input": None if input_path is None else str(input_path), **res.summary(),
               **software()}  # after an upgrade the same --seed draws other samples: which code drew these
    summary["settings"] = {**(settings or {}), **summary["settings"]}
    if total_seconds is not None:
        summary["seconds"] = total_seconds
    fileio.write_json(paths["json"], summary)
    d = summary["tract_dice_between_samples"]
    tracked = res.visitation is not None
    timing = (f"{res.seconds:.1f} s sampling" if total_seconds is None else
              f"{total_seconds:.1f} s in all, {res.seconds:.1f} s of it sampling")
    tract = (f", tract Dice between samples {d['mean']:.3f} ± {d['std']:.3f}" if d else
             ", no streamlines: tract Dice undefined" if tracked else "")
    return (f"wrote {', '.join(written)} and {paths['json'].name} in {paths['json'].parent}/: FA/MD mean and std"
            f"{', visitation' if tracked else ''} from {res.n_samples} samples of {method_name} "
            f"({timing}{tract}; diagonal Gaussian approximation: fa_mean is not an FA estimate, noise raises low FA, "
            f"read the prediction's FA with fa_std as its spread; md_std counts no error shared between the elements)")
