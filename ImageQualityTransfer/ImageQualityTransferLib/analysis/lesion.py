"""Pathology check: does the uncertainty flag tissue unlike anything in training?

A synthetic lesion is put into a subject's high-res DWIs *before* degrading, through the tensor model:
at each lesion voxel the reference tensor D is changed to D' and every diffusion-weighted signal is
multiplied by exp(-b g'D'g) / exp(-b g'Dg), which keeps that voxel's noise and its S0. Three kinds:

- ``edema``: raised isotropic diffusivity, D' = D + delta I (delta = 1.0e-3 mm^2/s by default: MD up
  by 1e-3, FA down);
- ``tumour``: lowered anisotropy at the same MD, eigenvalues pulled towards
  their mean, lambda' = MD + keep (lambda - MD) (keep = 0.25);
- ``glioma``: the same loss of anisotropy with the MD raised as measured in high-grade gliomas:
  lambda' = md_ratio MD + keep (lambda - MD), md_ratio = 1229.8 / 731.5 = 1.68, the mean MD of the
  enhancing tumour margin over that of normal white matter in Sinha et al., "Diffusion tensor MR
  imaging of high-grade cerebral gliomas", AJNR 2002;23(4):520-527 (the least raised of their tumour
  regions: enhancing core 1308.7, edema 1411.2, necrotic core 1825.4, in 1e-6 mm^2/s).

A loss of anisotropy at unchanged MD turns white matter into a tensor much like grey matter's, which
fills the training data: the methods reconstruct its elements no worse than those of the white matter it
replaced, so the element std maps have nothing to flag there. What the lesion does make worse is the
principal direction, which the lowered anisotropy leaves less determined: the direction uncertainty
(`direction.spread`) is the map that flags it, and the direction error rises with it (`iqt lesion-check`
shows both error AUCs).

The lesion is a ball (radius in mm) centred on white matter in one hemisphere; its control is the
mirror image of the ball through the brain's mid-sagittal plane (x -> 2 cx - x in world RAS mm), i.e.
the same tissue type in the other hemisphere, left untouched. The low-res input is made by the usual
protocol (`dmri.subject.make_case`), each uncertainty method predicts, and the area under the ROC curve of
its per-voxel uncertainty separates lesion from control voxels (0.5 = chance, 1 = perfect).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import direction, tensors
from ..core.errors import IQTError
from ..dmri.subject import Subject, make_case

KINDS = ("edema", "tumour", "glioma")
GLIOMA_MD_RATIO = 1229.8 / 731.5  # Sinha et al. 2002, enhancing tumour margin / normal white matter MD


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


def modify_tensor(t: np.ndarray, kind: str, delta: float = 1.0e-3, keep: float = 0.25,
                  md_ratio: float = GLIOMA_MD_RATIO) -> np.ndarray:
    if kind not in KINDS:
        raise IQTError(f"unknown lesion kind {kind!r}; use one of {', '.join(KINDS)}")
    t = np.asarray(t, np.float64)
    if kind == "edema":
        return t + delta * np.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    w, v = tensors.eig(t)
    mean = w.mean(axis=-1, keepdims=True)
    scale = md_ratio if kind == "glioma" else 1.0
    return tensors.rebuild(scale * mean + keep * (w - mean), v)


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
    patient right: x > cx in RAS world coordinates) with the most white matter in the ball and in its mirror image.
    Chosen in the closest canonical (RAS) voxel order, as `propagation.propagate` draws: of voxels scoring alike the
    first in np.argwhere's order wins, and in stored order the 3 mm ortho dev scan stored PSR, or the sagittal HF one
    stored LAS, had its lesion 3 or 28 mm elsewhere (a thick-slice audit's check of the engine's draws)."""
    from ..core.orientation import Reorientation
    from ..core.volume import Volume

    re = Reorientation.to_canonical(subject.tensor.affine)
    if re.is_identity:
        return _choose_site(subject, radius_mm, fa_min, side)
    canon = Subject(subject.name, subject.dwi, re.apply(subject.mask), re.apply(subject.tensor))  # its dwi unread here
    site = _choose_site(canon, radius_mm, fa_min, side)
    back = re.inverse()

    def stored(a):
        return back.apply(Volume(a, canon.tensor.affine, "mask")).data

    return LesionSite(stored(site.lesion), stored(site.control), site.centre_mm)


def _choose_site(subject: Subject, radius_mm: float, fa_min: float, side: float) -> LesionSite:
    """`choose_site` on a subject stored in canonical order."""
    from scipy import ndimage

    vox = subject.tensor.voxel_size
    if not radius_mm >= 2 * float(np.max(vox)):
        raise IQTError(f"--radius {radius_mm:g}: the lesion must span a few voxels to give an AUC; give at least "
                       f"{2 * float(np.max(vox)):g} mm (twice the voxel size), e.g. 8")
    t = np.asarray(subject.tensor.data, np.float64)
    mask = np.asarray(subject.mask.data, bool) & tensors.plausible(t)
    fa = np.where(mask, tensors.fa(t), 0.0)
    aff = subject.tensor.affine
    shape = mask.shape
    ijk = np.argwhere(mask)
    if len(ijk):  # before the ball's convolution, whose cost grows with its volume (a 500 mm one ran out of memory)
        extent = float(((ijk.max(0) - ijk.min(0) + 1) * vox).min())
        smallest = 2 * float(np.max(vox))
        if extent / 4 < smallest:  # no radius both spans a few voxels and fits ("at most 1 mm, e.g. 8" had been said)
            raise IQTError(f"{subject.name}: the brain is {extent:.0f} mm across at its thinnest, too thin for a lesion of "
                           f"at least {smallest:g} mm radius (twice the voxel size) in one hemisphere; a lesion check "
                           f"needs a whole brain: give a subject whose scan covers it")
        if radius_mm > extent / 4:
            most = np.floor(extent / 4 * 10) / 10
            raise IQTError(f"--radius {radius_mm:g}: a lesion that size does not fit in one hemisphere of this brain "
                           f"(its smallest extent is {extent:.0f} mm); give at most {most:g} mm")
    xyz = _world(ijk, aff)
    cx = float(np.median(xyz[:, 0]))
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
    from ..dmri.dti import fit_dti
    from ..dmri.fit_noise import design_matrix

    dwi = subject.dwi
    t = np.asarray(subject.tensor.data, np.float64)[site.lesion]
    t_new = modify_tensor(t, kind, **kwargs)
    X = design_matrix(dwi.bvals, dwi.bvecs)[:, :6]  # log-attenuation = X @ d
    ratio = np.exp(t_new @ X.T - t @ X.T)  # 1 for a b = 0 volume; a low-b one changes as the fit reads it
    data = np.array(dwi.data, dtype=np.float32, copy=True)
    data[site.lesion] = data[site.lesion] * ratio.astype(np.float32)
    new = dwi.replace(data=data)
    return Subject(f"{subject.name}+{kind}", new, subject.mask, fit_dti(new, subject.mask))


# What each uncertainty map of a Prediction is, in the words the table uses. Maps not listed (a method that
# adds one later) are reported under their own key.
COMPONENTS = {
    "std": "total",
    "std_intrinsic": "intrinsic",
    "std_parameter": "parameter",
    "md_std": "MD std",
    "fa_std": "FA std",
    "direction": "direction",
}

# each map's unit as its rows hold it (--json): the medians are in this unit, unscaled (the table shows the mm^2/s ones
# in 1e-5 mm^2/s, UNIT_SCALE); a row's JSON had mixed all three under one key (an audit)
COMPONENT_UNITS = {"total": "mm^2/s", "intrinsic": "mm^2/s", "parameter": "mm^2/s", "MD std": "mm^2/s",
                   "FA std": "unitless", "direction": "degrees"}
# what `iqt lesion-check --json` says of each row's figures, as benchmark.UNITS does for its rows
UNITS = {"auc": "ROC AUC of the map, lesion against mirrored control voxels (0.5 chance)",
         "error_auc": "the same for the per-voxel tensor error (RMS over the 6 elements)",
         "angle_error_auc": "the same for the principal-direction error",
         "uncertainty_lesion_median": "the map's median over the lesion voxels, in the row's uncertainty_unit",
         "uncertainty_control_median": "the map's median over the control voxels, in the row's uncertainty_unit",
         "uncertainty_unit": "mm^2/s (total, intrinsic, parameter, MD std), unitless (FA std) or degrees (direction)",
         "n_lesion": "high-res lesion voxels inside the mask", "n_control": "high-res control voxels inside the mask",
         "centre_mm": "the lesion's centre in the scanner coordinates of the DWI's affine (mm)"}


def components(uncertainty: dict) -> list[tuple[str, np.ndarray]]:
    """(label, per-voxel map) for every uncertainty map a prediction holds, in a fixed order. A 4D
    (X,Y,Z,6) map is reduced to the root mean square over its elements. biqt's and espcn-hetero's
    single map is their total predictive std (its square is the predictive variance: same ranking, same AUC)."""
    out = []
    keys = [k for k in COMPONENTS if k in uncertainty] + sorted(k for k in uncertainty if k not in COMPONENTS)
    for k in keys:
        u = np.asarray(getattr(uncertainty[k], "data", uncertainty[k]), np.float64)
        u = np.sqrt(np.mean(u**2, axis=-1)) if u.ndim == 4 else u
        if not np.any(u):  # e.g. fa_std from a single Monte Carlo pass: all zero, no information
            continue
        out.append((COMPONENTS.get(k, k), u))
    return out


def default_methods(factor=2) -> list[str]:
    """What `check` scores unless told: the default uncertainty method at `factor` (methods.default_method) and the
    forest one, biqt, where it has a model for `factor`."""
    from .. import methods

    first = methods.default_method(factor, uncertainty=True)
    return [first] + (["biqt"] if first != "biqt" and "biqt" in methods.ready(factor) else [])


def check(subject: Subject, chosen=None, kinds=KINDS, factor=2,
          radius_mm: float = 8.0, progress=None) -> list[dict]:
    """For each lesion kind, uncertainty method and each of the method's uncertainty maps (total,
    intrinsic, parameter, MD std, FA std, direction where it has them): the AUC of that map for lesion against
    mirrored control voxels (high-res voxels inside the case's high-res mask). Also the AUC of the
    method's per-voxel tensor error and of its principal-direction error, for context. `chosen`: method names, or
    `Method`s made with their settings (default: `default_methods`)."""
    from ..dmri import degrade
    from .. import methods

    chosen = default_methods(factor) if chosen is None else chosen
    site = choose_site(subject, radius_mm)
    rows = []
    for kind in kinds:
        sick = inject(subject, site, kind)
        case = make_case(sick, factor)
        lesion = degrade.hr_crop(site.lesion, factor, case.shift) & case.hr_mask
        control = degrade.hr_crop(site.control, factor, case.shift) & case.hr_mask
        for method in chosen:
            method = methods.get(method) if isinstance(method, str) else method
            name = method.name
            if not method.gives_uncertainty:
                raise IQTError(f"method {name!r} gives no uncertainty; choose one that does (see 'iqt methods')")
            if progress:
                progress(f"{subject.name}: {kind} lesion, {name}")
            pred = method.predict(case.lr, factor, case.lr_mask, direction=True)
            t_pred = np.asarray(pred.tensor.data, np.float64)
            err = np.sqrt(np.mean((t_pred - case.truth) ** 2, axis=-1))
            err_auc = auc(err[lesion], err[control])
            both = lesion | control
            ang = np.zeros(both.shape)
            ang[both] = direction.angular_error(t_pred[both], case.truth[both])
            ang_auc = auc(ang[lesion], ang[control])
            for label, u in components(pred.maps()):
                rows.append({
                    "subject": subject.name, "kind": kind, "method": name, "component": label,
                    "auc": auc(u[lesion], u[control]),
                    "error_auc": err_auc,
                    "angle_error_auc": ang_auc,
                    "n_lesion": int(lesion.sum()), "n_control": int(control.sum()),
                    "uncertainty_lesion_median": float(np.median(u[lesion])) if lesion.any() else float("nan"),
                    "uncertainty_control_median": float(np.median(u[control])) if control.any() else float("nan"),
                    "uncertainty_unit": COMPONENT_UNITS.get(label, "unknown"),
                    "centre_mm": [float(x) for x in site.centre_mm],
                })
    return rows


def best(rows) -> dict:
    """Per lesion kind: the (method, component) with the highest AUC averaged over subjects, with that mean
    and the per-subject minimum."""
    out = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        groups = {}
        for r in rows:
            if r["kind"] == kind and np.isfinite(r["auc"]):
                groups.setdefault((r["method"], r["component"]), []).append(r["auc"])
        if groups:
            (m, c), a = max(groups.items(), key=lambda kv: float(np.mean(kv[1])))
            out[kind] = {"method": m, "component": c, "auc_mean": float(np.mean(a)), "auc_min": float(np.min(a)),
                         "n_subjects": len(a)}
    return out


UNIT_SCALE = {"FA std": 1.0, "direction": 1.0}  # maps not in 1e-5 mm^2/s (shown as they are)
TARGET_AUC = 0.8  # the aim: the best uncertainty map separates lesion from control with an AUC of at least 0.8


def table(rows) -> str:
    lines = ["| subject | lesion | method | uncertainty | AUC | error AUC (tensor / direction) | median lesion / control | voxels lesion / control |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        k = UNIT_SCALE.get(r["component"], 1e5)
        lines.append(f"| {r['subject']} | {r['kind']} | {r['method']} | {r['component']} | {r['auc']:.3f} | "
                     f"{r['error_auc']:.3f} / {r.get('angle_error_auc', float('nan')):.3f} | "
                     f"{r['uncertainty_lesion_median'] * k:.3g} / {r['uncertainty_control_median'] * k:.3g} | "
                     f"{r['n_lesion']} / {r['n_control']} |")
    lines.append("")
    lines.append("Medians: FA std unitless, direction in degrees, every other map in 1e-5 mm²/s. AUC 0.5 = chance, "
                 "1 = uncertainty higher in every lesion voxel. Error AUC: the same for the method's per-voxel tensor "
                 "error (RMS over the 6 elements) and for its principal-direction error (degrees).")
    for kind, b in best(rows).items():
        verdict = ("" if b["auc_mean"] >= TARGET_AUC else
                   f"; below the {TARGET_AUC} target: no uncertainty map here separates this lesion"
                   + (" (every map tends to be lower in the lesion than in its control)" if b["auc_mean"] < 0.5 else ""))
        lines.append(f"best uncertainty for the {kind} lesion: {b['method']} {b['component']} "
                     f"(AUC {b['auc_mean']:.3f} mean over {b['n_subjects']} subject(s), min {b['auc_min']:.3f}){verdict}")
    return "\n".join(lines)
