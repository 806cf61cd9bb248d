"""Pathology check: does the uncertainty flag tissue unlike anything in training?

A synthetic lesion is put into a subject's high-res DWIs *before* degrading, through the tensor model:
at each lesion voxel the reference tensor D is changed to D' and every diffusion-weighted signal is
multiplied by exp(-b g'D'g) / exp(-b g'Dg), which keeps that voxel's noise and its S0. Two kinds:

- ``edema``: raised isotropic diffusivity, D' = D + delta I (delta = 1.0e-3 mm^2/s by default: MD up
  by 1e-3, FA down);
- ``tumour``: lowered anisotropy at a similar MD, eigenvalues pulled towards their mean,
  lambda' = MD + keep (lambda - MD) (keep = 0.25).

The lesion is a ball (radius in mm) centred on white matter in one hemisphere; its control is the
mirror image of the ball through the brain's mid-sagittal plane (x -> 2 cx - x in world RAS mm), i.e.
the same tissue type in the other hemisphere, left untouched. The low-res input is made by the usual
protocol (`pipeline.make_case`), each uncertainty method predicts, and the area under the ROC curve of
its per-voxel uncertainty separates lesion from control voxels (0.5 = chance, 1 = perfect).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import tensors, tractography
from .dti import B0_THRESHOLD
from .errors import IQTError
from .pipeline import Subject, make_case

KINDS = ("edema", "tumour")


def auc(positive, negative) -> float:
    """Area under the ROC curve of a score for positives against negatives (Mann-Whitney U, ties count 1/2)."""
    from scipy.stats import rankdata

    p = np.asarray(positive, np.float64).ravel()
    q = np.asarray(negative, np.float64).ravel()
    p, q = p[np.isfinite(p)], q[np.isfinite(q)]
    if p.size == 0 or q.size == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([p, q]))
    u = ranks[: p.size].sum() - p.size * (p.size + 1) / 2.0
    return float(u / (p.size * q.size))


def modify_tensor(t: np.ndarray, kind: str, delta: float = 1.0e-3, keep: float = 0.25) -> np.ndarray:
    if kind not in KINDS:
        raise IQTError(f"unknown lesion kind {kind!r}; use one of {', '.join(KINDS)}")
    t = np.asarray(t, np.float64)
    if kind == "edema":
        return t + delta * np.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    w, v = tensors.eig(t)
    mean = w.mean(axis=-1, keepdims=True)
    return tensors.rebuild(mean + keep * (w - mean), v)


def _world(ijk, affine):
    return np.asarray(ijk, float) @ affine[:3, :3].T + affine[:3, 3]


def _voxels(xyz, affine, shape):
    inv = np.linalg.inv(affine)
    ijk = np.rint(np.asarray(xyz) @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    ok = np.all((ijk >= 0) & (ijk < np.array(shape)), axis=1)
    out = np.zeros(shape, bool)
    out[tuple(ijk[ok].T)] = True
    return out


@dataclass
class LesionSite:
    lesion: np.ndarray  # (X,Y,Z) bool on the subject's high-res grid
    control: np.ndarray  # the mirror image in the other hemisphere
    centre_mm: np.ndarray


def choose_site(subject: Subject, radius_mm: float = 8.0, fa_min: float = 0.25, side: float = 1.0) -> LesionSite:
    """A ball of `radius_mm` centred at the white-matter voxel (FA >= fa_min) of one hemisphere (side +1:
    patient left, x > cx) with the most white matter in the ball and in its mirror image."""
    from scipy import ndimage

    t = np.asarray(subject.tensor.data, np.float64)
    mask = np.asarray(subject.mask.data, bool) & tensors.plausible(t)
    fa = np.where(mask, tractography.fa_fast(t), 0.0)
    aff = subject.tensor.affine
    shape = mask.shape
    ijk = np.argwhere(mask)
    xyz = _world(ijk, aff)
    cx = float(np.median(xyz[:, 0]))
    vox = subject.tensor.voxel_size
    # white-matter fraction in a ball around each voxel, and at its mirror image
    rad = np.ceil(radius_mm / vox).astype(int)
    g = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in rad], indexing="ij"), -1)
    ball = ((g * vox) ** 2).sum(-1) <= radius_mm**2
    wm = (fa >= fa_min).astype(np.float32)
    score = ndimage.convolve(wm, ball.astype(np.float32), mode="constant") / ball.sum()
    inside = ndimage.binary_erosion(mask, structure=ball) if mask.any() else mask
    cand = np.argwhere(inside & (wm > 0))
    if len(cand) == 0:
        raise IQTError("no white-matter voxel deep enough in the brain for the lesion; use a smaller --radius")
    cxyz = _world(cand, aff)
    keep = side * (cxyz[:, 0] - cx) >= radius_mm + 2.0
    if not keep.any():
        raise IQTError("no white-matter site away from the mid-line; use a smaller --radius")
    cand, cxyz = cand[keep], cxyz[keep]
    mirror = cxyz.copy()
    mirror[:, 0] = 2 * cx - mirror[:, 0]
    mvox = np.rint(mirror @ np.linalg.inv(aff)[:3, :3].T + np.linalg.inv(aff)[:3, 3]).astype(int)
    ok = np.all((mvox >= 0) & (mvox < np.array(shape)), axis=1)
    total = np.where(ok, score[tuple(cand.T)] + np.where(ok, score[tuple(np.clip(mvox, 0, np.array(shape) - 1).T)], 0), -1)
    best = int(np.argmax(total))
    centre = cxyz[best]
    d2 = ((xyz - centre) ** 2).sum(axis=1)
    lesion = np.zeros(shape, bool)
    lesion[tuple(ijk[d2 <= radius_mm**2].T)] = True
    mirrored = xyz[d2 <= radius_mm**2].copy()
    mirrored[:, 0] = 2 * cx - mirrored[:, 0]
    control = _voxels(mirrored, aff, shape) & mask & ~lesion
    return LesionSite(lesion, control, centre)


def inject(subject: Subject, site: LesionSite, kind: str, **kwargs) -> Subject:
    """A copy of `subject` whose DWIs carry the lesion (signal ratio through the tensor model); the
    reference tensors are refitted, the brain mask is kept."""
    from .dti import fit_dti
    from .evaluation import design_matrix

    dwi = subject.dwi
    t = np.asarray(subject.tensor.data, np.float64)[site.lesion]
    t_new = modify_tensor(t, kind, **kwargs)
    X = design_matrix(dwi.bvals, dwi.bvecs)[:, :6]  # log-attenuation = X @ d
    ratio = np.exp(t_new @ X.T - t @ X.T)
    ratio[:, dwi.bvals <= B0_THRESHOLD] = 1.0
    data = np.array(dwi.data, dtype=np.float32, copy=True)
    data[site.lesion] = data[site.lesion] * ratio.astype(np.float32)
    new = dwi.replace(data=data)
    return Subject(f"{subject.name}+{kind}", new, subject.mask, fit_dti(new, subject.mask))


def check(subject: Subject, method_names=("espcn-hetero", "biqt"), kinds=KINDS, factor: int = 2,
          radius_mm: float = 8.0) -> list[dict]:
    """For each lesion kind and uncertainty method: AUC of the uncertainty for lesion against mirrored
    control voxels (high-res voxels inside the low-res mask's region of the case). Also the AUC of the
    method's per-voxel error, for context."""
    from . import degrade, methods

    site = choose_site(subject, radius_mm)
    rows = []
    for kind in kinds:
        sick = inject(subject, site, kind)
        case = make_case(sick, factor)
        lesion = degrade.hr_crop(site.lesion, factor, case.shift) & case.hr_mask
        control = degrade.hr_crop(site.control, factor, case.shift) & case.hr_mask
        for name in method_names:
            method = methods.get(name)
            if not method.gives_uncertainty:
                raise IQTError(f"method {name!r} gives no uncertainty; choose one that does (see 'iqt methods')")
            pred = method.predict(case.lr, factor, case.lr_mask)
            u = np.asarray(pred.uncertainty["std"].data, np.float64)
            u = np.sqrt(np.mean(u**2, axis=-1)) if u.ndim == 4 else u
            err = np.sqrt(np.mean((np.asarray(pred.tensor.data, np.float64) - case.truth) ** 2, axis=-1))
            rows.append({
                "subject": subject.name, "kind": kind, "method": name,
                "auc": auc(u[lesion], u[control]),
                "error_auc": auc(err[lesion], err[control]),
                "n_lesion": int(lesion.sum()), "n_control": int(control.sum()),
                "uncertainty_lesion_median": float(np.median(u[lesion])) if lesion.any() else float("nan"),
                "uncertainty_control_median": float(np.median(u[control])) if control.any() else float("nan"),
                "centre_mm": [float(x) for x in site.centre_mm],
            })
    return rows


def table(rows) -> str:
    lines = ["| subject | lesion | method | uncertainty AUC | error AUC | median σ lesion / control (1e-5 mm²/s) | voxels lesion / control |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['subject']} | {r['kind']} | {r['method']} | {r['auc']:.3f} | {r['error_auc']:.3f} | "
                     f"{r['uncertainty_lesion_median'] * 1e5:.2f} / {r['uncertainty_control_median'] * 1e5:.2f} | "
                     f"{r['n_lesion']} / {r['n_control']} |")
    return "\n".join(lines)
