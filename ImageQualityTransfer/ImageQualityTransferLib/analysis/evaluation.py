"""Evaluation of a high-resolution tensor prediction against its reference (docs/conventions.md: Regions,
Plausible voxels, Error), uncertainty calibration, and the reference's own noise floor (its per-voxel part:
dmri/fit_noise.py).

Conventions:
  - tensors are (X,Y,Z,6) lower-triangular Dxx,Dxy,Dyy,Dxz,Dyz,Dzz in mm^2/s; masks are bool (X,Y,Z);
  - every error in mm^2/s is reported in 1e-5 mm^2/s (the unit of the published tables): DT-RMSE,
    MD RMSE and the noise floor; FA RMSE is unitless; PSNR is in dB;
  - errors are taken over the *evaluation voxels*: the region AND the plausible voxels of the reference
    (`tensors.plausible`) with MD above zero; a voxel whose reference fit failed, or that holds no reference tensor (zero, a fit's floor
    below tensors.NEGLIGIBLE, or NaN in every element: `no_reference`), is left out of every figure.

All metrics are root-mean-square errors (not mean absolute errors):
  - ``dt_rmse``  = sqrt(mean over voxels and the 6 unique elements of (pred - truth)^2) * 1e5;
  - ``fa_rmse``  = sqrt(mean over voxels of (FA(pred) - FA(truth))^2);
  - ``md_rmse``  = sqrt(mean over voxels of (MD(pred) - MD(truth))^2) * 1e5;
  - ``psnr``     = 20 log10(max |truth element| over the voxels / element RMSE) (both in mm^2/s);
  - ``noise_floor`` = sqrt(mean over voxels and 6 elements of the reference's element variance) * 1e5,
    the error a perfect method would still show against a noisy reference (see `noise_floor`);
  - ``spearman`` = Spearman rank correlation of the per-voxel uncertainty with the per-voxel RMS error;
  - ``within_2sigma`` = fraction of element errors with |error| <= 2 sigma (0.954 if calibrated Gaussian);
  - ``angle_error`` = median angle (degrees) between the principal eigenvectors of prediction and
    reference over the *tracked* voxels (reference FA >= TRACKED_FA, where tractography runs);
  - ``direction_spearman`` / ``direction_within_2`` = Spearman correlation of the direction uncertainty
    (degrees, `direction.spread`) with that angle, and the fraction of tracked voxels whose angle is within
    twice the map (0.98 if calibrated, small angles).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..core import grid, tensor_checks, tensors
from ..core.direction import angular_error
from ..core.errors import IQTError
from ..core.volume import as_array as _array

UNIT = 1e-5  # mm^2/s: the unit of reported errors
TRACKED_FA = 0.2  # reference FA from which the direction is scored: the default tracking threshold
# degrees: a principal-direction error below this is rounding, taken as zero (a tensor against itself gives up to
# 1.5e-6 degrees, which ranked against a direction map gave a Spearman of -0.011 for an exact prediction; the smallest
# real errors on the dev subjects are about 0.2 degrees)
ANGLE_TOLERANCE = 1e-3


# ----------------------------------------------------------------------------------------- regions


def regions(hr_mask, lr_mask, r, radius: int = 2) -> dict:
    """Interior and exterior high-res voxel maps (docs/conventions.md, Regions).

    interior: high-res voxels inside `hr_mask` whose low-res parent (index j // f on each axis, f that axis's factor;
    r is an integer or (fx, fy, fz)) has its whole (2*radius+1)^3 low-res neighbourhood inside `lr_mask` (outside the
    grid counts as outside); exterior: `hr_mask` minus interior. The high-res grid must be f times the low-res grid.
    """
    hr = _array(hr_mask, bool)
    lr = _array(lr_mask, bool)
    f = grid.factors(r, identity_ok=True)  # 1: a grid against itself
    if hr.ndim != 3 or lr.ndim != 3:
        raise IQTError(f"masks must be 3D, got high-res {hr.shape} and low-res {lr.shape}")
    if tuple(hr.shape) != tuple(k * n for k, n in zip(f, lr.shape)):
        raise IQTError(
            f"the high-res mask {hr.shape} is not the factor-{grid.text(f)} grid of the low-res mask "
            f"{lr.shape}; crop the reference to the low-res grid (degrade.hr_crop) before evaluating"
        )
    size = 2 * int(radius) + 1
    core = ndimage.binary_erosion(lr, structure=np.ones((size,) * 3, bool), border_value=0) if lr.any() else lr
    # Every high-res voxel takes its parent's value: repeat f times along each axis.
    interior = hr & grid.repeat_blocks(core, f)
    return {"interior": interior, "exterior": hr & ~interior}


def no_reference(truth) -> np.ndarray:
    """Voxels with no reference tensor: all six elements zero (outside the mask the reference was fitted in), within
    tensors.NEGLIGIBLE of zero (a fit's floor where a voxel has no diffusion signal or its fit failed, the
    diffusion-weighted signal at or above the b0; or a stored background: no truth) or NaN (as some tools write a
    missing fit). The one rule of `iqt evaluate` and `iqt benchmark`: scoring them would
    score the prediction against a truth of zero, or of a failed fit."""
    t = _array(truth)
    return ~np.any(np.isfinite(t) & (np.abs(t) > tensors.NEGLIGIBLE), axis=-1)


def negative_md(truth) -> np.ndarray:
    """Voxels holding a reference tensor (`no_reference`) whose MD is at or below zero: no tissue has it, and an OLS
    fit keeps it unclipped where a WLS fit clips the same failed voxels to its floor (left out as no reference);
    plausible eigenvalues or not, it is no truth: left out and counted with the implausible ones."""
    t = _array(truth)
    return ~no_reference(t) & (tensors.md(np.nan_to_num(t)) <= 0)


def evaluation_voxels(truth, region) -> np.ndarray:
    """The voxels every figure uses: `region` AND a reference tensor there (`no_reference`) AND a plausible one, with
    MD above zero (`negative_md`)."""
    t = _array(truth)
    reg = _array(region, bool)
    if t.shape[:3] != reg.shape:
        raise IQTError(f"the region {reg.shape} and the reference tensors {t.shape[:3]} are not on the same grid")
    out = np.zeros(reg.shape, bool)
    out[reg] = tensors.plausible(t[reg]) & ~no_reference(t[reg]) & ~negative_md(t[reg])
    return out


def covered(pred) -> np.ndarray:
    """Voxels the prediction answers: not exactly zero in every element. An output cut to zero (by a mask the user gave)
    holds no prediction, and its zero std is no claim to score: the calibration figures leave those voxels out."""
    return np.any(_array(pred) != 0, axis=-1)


# ----------------------------------------------------------------------------------------- errors


def _diff(pred, truth, voxels):
    p = _array(pred)
    t = _array(truth)
    v = _array(voxels, bool)
    if p.shape != t.shape:
        raise IQTError(f"the prediction {p.shape} and the reference {t.shape} differ in shape")
    return p[v].astype(np.float64), t[v].astype(np.float64)


def _rms(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x**2))) if x.size else float("nan")


def dt_rmse(pred, truth, voxels) -> float:
    """DT-RMSE over `voxels` and the 6 unique elements, in 1e-5 mm^2/s."""
    p, t = _diff(pred, truth, voxels)
    return _rms(p - t) / UNIT


def fa_rmse(pred, truth, voxels) -> float:
    """RMSE of fractional anisotropy over `voxels` (unitless)."""
    p, t = _diff(pred, truth, voxels)
    return _rms(tensors.fa(p) - tensors.fa(t))


def md_rmse(pred, truth, voxels) -> float:
    """RMSE of mean diffusivity over `voxels`, in 1e-5 mm^2/s."""
    p, t = _diff(pred, truth, voxels)
    return _rms(tensors.md(p) - tensors.md(t)) / UNIT


def psnr(pred, truth, voxels) -> float:
    """20 log10(max |truth element| / element RMSE) in dB over `voxels` (inf for a perfect prediction)."""
    p, t = _diff(pred, truth, voxels)
    if t.size == 0:
        return float("nan")
    err = _rms(p - t)
    peak = float(np.max(np.abs(t)))
    if err == 0:
        return float("inf")
    if not np.isfinite(err) or peak == 0:
        return float("nan")
    return float(20.0 * np.log10(peak / err))


# ----------------------------------------------------------------------------------------- uncertainty


def _voxel_sigma(uncertainty, voxels) -> np.ndarray:
    """Per-element sigma (n,6) at `voxels` from a per-voxel (X,Y,Z) or per-element (X,Y,Z,6) std map."""
    u = _array(uncertainty).astype(np.float64)
    v = _array(voxels, bool)
    if u.ndim == 4 and u.shape[3] == 1:
        u = u[..., 0]
    if u.shape[:3] != v.shape or u.ndim not in (3, 4) or (u.ndim == 4 and u.shape[3] != 6):
        raise IQTError(f"the uncertainty map {u.shape} is neither (X,Y,Z) nor (X,Y,Z,6) on the grid {v.shape}")
    s = u[v]
    return np.repeat(s[:, None], 6, axis=1) if s.ndim == 1 else s


def spearman(pred, truth, uncertainty, voxels) -> float:
    """Spearman rank correlation of the per-voxel uncertainty with the per-voxel RMS error over 6 elements.

    A per-element map (X,Y,Z,6) is reduced to the mean over its 6 elements (the per-voxel convention).
    """
    from scipy.stats import spearmanr

    p, t = _diff(pred, truth, voxels)
    u = _voxel_sigma(uncertainty, voxels).mean(axis=1)
    err = np.sqrt(np.mean((p - t) ** 2, axis=1))
    ok = np.isfinite(u) & np.isfinite(err)
    if ok.sum() < 3 or np.ptp(u[ok]) == 0 or np.ptp(err[ok]) == 0:
        return float("nan")
    return float(spearmanr(u[ok], err[ok])[0])


def nonphysical_flagged(pred, uncertainty, edge, brain) -> dict:
    """Output voxels inside the brain (`brain`: the high-res brain mask) that are not physical tensors (a negative
    eigenvalue), and the fraction of them whose uncertainty is at least the median over the brain's edge (`edge`: the
    exterior evaluation voxels the prediction covers); NaN where there is none. Voxels outside the brain (the rings of
    context a method answers beyond a tight mask) are not counted: the figure is the target's, "wherever an output
    voxel is not physical inside the support, its uncertainty is at least the brain edge's median"."""
    p = _array(pred)
    u = _array(uncertainty).astype(np.float64)
    u = u.mean(axis=-1) if u.ndim == 4 else u
    b = _array(brain, bool)
    if b.shape != p.shape[:3]:
        raise IQTError(f"the brain mask {b.shape} is not on the prediction's grid {p.shape[:3]}")
    bad = np.zeros(b.shape, bool)
    bad[b] = tensors.distance_to_physical(p[b]) > 0
    e = _array(edge, bool)
    if not bad.any() or not e.any():
        return {"n_nonphysical": int(bad.sum()), "nonphysical_flagged": float("nan")}
    return {"n_nonphysical": int(bad.sum()), "nonphysical_flagged": float(np.mean(u[bad] >= np.median(u[e])))}


def within_2sigma(pred, truth, uncertainty, voxels) -> float:
    """Fraction of element errors inside +-2 sigma (a per-voxel sigma serves all 6 elements)."""
    p, t = _diff(pred, truth, voxels)
    s = _voxel_sigma(uncertainty, voxels)
    if s.size == 0:
        return float("nan")
    return float(np.mean(np.abs(p - t) <= 2.0 * s))


def tracked(truth, voxels) -> np.ndarray:
    """The evaluation voxels where the reference is anisotropic enough to track (FA >= TRACKED_FA)."""
    v = _array(voxels, bool)
    out = np.zeros(v.shape, bool)
    out[v] = tensors.fa(_array(truth)[v]) >= TRACKED_FA
    return out


def _angles(pred, truth, v) -> np.ndarray:
    """Principal-direction errors (degrees) at the voxels `v`, those below ANGLE_TOLERANCE (rounding) as zero."""
    err = angular_error(_array(pred)[v], _array(truth)[v])
    return np.where(err < ANGLE_TOLERANCE, 0.0, err)


def angle_error(pred, truth, voxels) -> float:
    """Median principal-direction error (degrees) over the tracked voxels among `voxels`."""
    v = tracked(truth, voxels)
    return float(np.median(_angles(pred, truth, v))) if v.any() else float("nan")


def direction_calibration(pred, truth, direction_map, voxels) -> dict:
    """Spearman of the direction uncertainty with the principal-direction error, and the fraction of errors
    within twice the map, over the tracked voxels among `voxels`; errors below ANGLE_TOLERANCE count as zero, so an
    exact prediction has no ranking to score (Spearman NaN: undefined)."""
    from scipy.stats import spearmanr

    v = tracked(truth, voxels)
    d = _array(direction_map).astype(np.float64)
    if d.shape != v.shape:
        raise IQTError(f"the direction uncertainty map {d.shape} is not on the grid {v.shape}")
    err, u = _angles(pred, truth, v), d[v]
    ok = np.isfinite(u) & np.isfinite(err)
    rho = float(spearmanr(u[ok], err[ok])[0]) if ok.sum() >= 3 and np.ptp(u[ok]) > 0 and np.ptp(err[ok]) > 0 else float("nan")
    within = float(np.mean(err[ok] <= 2.0 * u[ok])) if ok.any() else float("nan")
    return {"direction_spearman": rho, "direction_within_2": within, "n_tracked": int(ok.sum())}


# ----------------------------------------------------------------------------------------- noise floor


def noise_floor_rmse(std_elements, voxels) -> float:
    """Reference noise floor in 1e-5 mm^2/s: sqrt(mean over voxels and 6 elements of the variance).

    Voxels whose standard deviation is not finite (a singular fit) are left out.
    """
    s = _array(std_elements).astype(np.float64)[_array(voxels, bool)]
    var = (s**2)[np.isfinite(s).all(axis=-1)] if s.size else s
    return float(np.sqrt(np.mean(var))) / UNIT if var.size else float("nan")


# ----------------------------------------------------------------------------------------- all together


INPUT_OPTIONS = {"prediction": "--tensor-order", "reference": "--truth-order"}  # the flag reading each one's order (iqt evaluate)


def check_inputs(pred, truth, hr_mask, sources: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`evaluate`'s inputs as it scores them, or an IQTError where scoring them would give a wrong answer: a NaN or
    Inf among a voxel's elements (voxels with NaN in every element are read as missing: the prediction's as zero,
    said in one line as `iqt evaluate` says it, the reference's counted in n_no_reference), or tensors that are not a
    fit in mm^2/s in this project's element order (`tensor_checks.check_scale`: each inside `hr_mask`). The error's
    `input` attribute names the one refused ("prediction" or "reference"), for a caller that knows its file (iqt
    evaluate adds the path and the element order that reads it). `sources`: "<file>: " by input, starting its warnings
    (tensor_checks.check_scale's), as the refusals' caller names the file."""
    p = tensor_checks.nan_as_empty(_array(pred), fate=tensor_checks.MISSING_AS_PREDICTION)
    t = _array(truth)
    t = np.where(np.isnan(t).all(axis=-1, keepdims=True), 0, t) if np.isnan(t).any() else t  # n_no_reference's
    region = _array(hr_mask, bool)
    # each judged inside the brain mask, as its brain (`check_scale`'s brain rule: a tenth of the unit had been refused
    # in the reference and only warned of in the prediction); a mask on another grid is said by regions()
    where = {"prediction": region if region.shape == p.shape[:3] else None,
             "reference": region if region.shape == t.shape[:3] else None}
    for what, a in (("prediction", p), ("reference", t)):
        try:
            bad = int((~np.isfinite(a)).any(axis=-1).sum())
            if bad:
                raise IQTError(f"the {what} holds NaN or Inf in {bad} voxel{'s' if bad != 1 else ''} (not in every "
                               "element, which would read as a missing tensor); replace them (for example with 0) and retry")
            tensor_checks.check_scale(a, where[what], what, INPUT_OPTIONS[what], brain=where[what] is not None,
                                      source=(sources or {}).get(what, ""))
        except IQTError as exc:
            exc.input = what
            raise
    return p, t


def evaluate(pred, truth, hr_mask, lr_mask, r, uncertainty=None, floor_std=None, radius: int = 2,
             direction=None, sources: dict | None = None) -> dict:
    """Every metric per region: {"interior": {...}, "exterior": {...}[, "brain": {...}]} (JSON-serialisable).

    Each region holds dt_rmse, fa_rmse, md_rmse (RMSEs; 1e-5 mm^2/s except FA), psnr (dB), n_voxels
    (evaluation voxels: region AND a plausible reference tensor), n_implausible (region voxels left out for a failed
    reference fit: eigenvalues out of the plausible range, or MD <= 0) and n_no_reference (region voxels left out for holding no reference tensor: zero, a fit's floor or
    all NaN);
    noise_floor (1e-5 mm^2/s) when `floor_std` is given; spearman and within_2sigma when `uncertainty`
    (per-voxel (X,Y,Z) or per-element (X,Y,Z,6) std, mm^2/s) is given, over the voxels the prediction covers (not
    exactly zero; n_uncovered counts the region's voxels left out), then also in a third entry "brain" over both
    regions' evaluation voxels (with n_voxels and n_uncovered); angle_error (degrees) in each region;
    with `direction` (the direction uncertainty map, degrees) the "brain" entry also holds
    direction_spearman, direction_within_2 and n_tracked. Empty regions give NaN metrics. Inputs that would be
    scored wrongly (another unit or element order, NaN or Inf among a voxel's elements) are refused (`check_inputs`;
    `sources` names their files in its warnings).
    """
    p = _array(pred)
    t = _array(truth)
    if p.shape != t.shape or t.ndim != 4 or t.shape[3] != 6:
        raise IQTError(f"the prediction {p.shape} and the reference {t.shape} must both be (X,Y,Z,6) on one grid")
    p, t = check_inputs(p, t, hr_mask, sources)
    result = {}
    every = []
    answered = covered(p)
    missing = no_reference(t)  # no reference tensor: left out and counted apart from the failed fits
    for name, region in regions(hr_mask, lr_mask, r, radius).items():
        v = evaluation_voxels(t, region)
        every.append(v)
        row = {
            "dt_rmse": dt_rmse(p, t, v),
            "fa_rmse": fa_rmse(p, t, v),
            "md_rmse": md_rmse(p, t, v),
            "psnr": psnr(p, t, v),
            "angle_error": angle_error(p, t, v),
            "n_voxels": int(v.sum()),
            "n_implausible": int((region & ~missing).sum() - v.sum()),
            "n_no_reference": int((region & missing).sum()),
        }
        if floor_std is not None:
            row["noise_floor"] = noise_floor_rmse(floor_std, v)
        if uncertainty is not None:
            row["spearman"] = spearman(p, t, uncertainty, v & answered)
            row["within_2sigma"] = within_2sigma(p, t, uncertainty, v & answered)
            row["n_uncovered"] = int((v & ~answered).sum())
        result[name] = row
    v = every[0] | every[1]
    if uncertainty is not None:
        # the calibration figures over the whole brain as well: the two regions differ in typical error
        result["brain"] = {"spearman": spearman(p, t, uncertainty, v & answered),
                           "within_2sigma": within_2sigma(p, t, uncertainty, v & answered), "n_voxels": int(v.sum()),
                           "n_uncovered": int((v & ~answered).sum()),
                           **nonphysical_flagged(p, uncertainty, every[1] & answered, hr_mask)}
    if direction is not None:
        result.setdefault("brain", {"n_voxels": int(v.sum()), "n_uncovered": int((v & ~answered).sum())}).update(
            direction_calibration(p, t, direction, v & answered))
    return result
