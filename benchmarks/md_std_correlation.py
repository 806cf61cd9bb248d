#!/usr/bin/env python3
"""How correlated are the CNNs' errors in the three diagonal tensor elements, in units of their own σ?

MD = (Dxx + Dyy + Dzz) / 3, so its intrinsic variance is (Σ v_i + 2 Σ_{i<j} ρ s_i s_j) / 9 with v_i the diagonal
elements' predicted variances (s_i = √v_i) and ρ the correlation of their errors. This prints, per subject, method
and factor set, ρ: the mean over the three pairs i≠j of the Pearson correlation of e_i / σ_i (e_i the prediction's
error against the fit of the full-resolution DWIs, σ_i the element's predictive standard deviation, intrinsic plus
parameter) over the brain voxels (the brain mask's evaluation voxels the prediction covers, as `iqt evaluate` takes
them: analysis/evaluation.py), and the share of brain voxels whose MD error is within ±2 md_std and the RMS of
MD error / md_std with the intrinsic part taken with ρ = 0 (the old map), with the ρ of methods/cnn/inference.py
(MD_ERROR_CORRELATION) and with the ρ measured on that case. The constant is the median of ρ over the training
subjects:

    python benchmarks/md_std_correlation.py ../shared/data/dmri/train/* --factors 2,3,1x1x2,1x1x3
    python benchmarks/md_std_correlation.py --factors 2   # the dev subjects (a check: the constant is not fitted on them)

Inputs are made as training makes them (style "own", no added noise); `--styles tight,ols,...` makes them as other
tools would (degrade.STYLES), a check that the constant holds there too. Reads the subjects from ../shared/data/dmri/dev
by default; prints figures only (nothing is written). A factor set per axis is written with "x" (1x1x2).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "ImageQualityTransfer"))

from ImageQualityTransferLib import methods  # noqa: E402
from ImageQualityTransferLib.analysis import evaluation  # noqa: E402
from ImageQualityTransferLib.core import grid  # noqa: E402
from ImageQualityTransferLib.dmri.subject import load_subject, make_case  # noqa: E402
from ImageQualityTransferLib.methods.cnn import inference  # noqa: E402

DEV = ROOT / ".." / "shared" / "data" / "dmri" / "dev"
DIAG = (0, 2, 5)


class Capture:
    """Keeps the per-element variances predict_volume computes but does not return (it overwrites them in place)."""

    def __init__(self):
        self.mc, self.plain = inference.run_network_mc, inference.run_network
        self.got = {}

    def __enter__(self):
        def mc(*a, **kw):
            res, pvar, logvar, trvar, fa_std = self.mc(*a, **kw)
            scale = np.asarray(kw["out_scale"], np.float64)
            self.got = {"pvar": pvar.copy(), "logvar": logvar.copy(), "trvar": trvar.copy(), "out_scale": scale,
                        "trace": (kw["base"][..., DIAG] + res[..., DIAG] * scale[0]).sum(-1)}
            return res, pvar, logvar, trvar, fa_std

        def plain(*a, **kw):
            res, logvar = self.plain(*a, **kw)
            self.got = {"logvar": None if logvar is None else logvar.copy()}
            return res, logvar

        inference.run_network_mc, inference.run_network = mc, plain
        return self

    def __exit__(self, *exc):
        inference.run_network_mc, inference.run_network = self.mc, self.plain


def to_frame(stored, like):
    """The axis permutation and flips that take the stored-order map `stored` (X, Y, Z) to `like`, the same map in the
    frame predict_volume ran in (canonical axes, perhaps permuted for a model's factors: methods/base.py)."""
    best = None
    for perm in itertools.permutations(range(3)):
        moved = np.transpose(stored, perm)
        if moved.shape != like.shape:
            continue
        for flips in itertools.product((False, True), repeat=3):
            cand = np.flip(moved, [a for a in range(3) if flips[a]])
            d = float(np.abs(cand - like)[cand != 0].max())  # the prediction is zero outside its support
            if best is None or d < best[0]:
                best = (d, perm, flips)
    if best is None or best[0] > 1e-6 * float(np.abs(like).max()):
        raise RuntimeError("cannot match the prediction to predict_volume's frame")
    _, perm, flips = best

    def apply(a):  # (X, Y, Z, ...) stored -> frame
        a = np.transpose(a, perm + tuple(range(3, a.ndim)))
        return np.flip(a, [k for k in range(3) if flips[k]])
    return apply, perm


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("subjects", nargs="*", type=Path)
    ap.add_argument("--factors", default="2", help="comma-separated: 2, 3 or per axis such as 1x1x2")
    ap.add_argument("--methods", default="deep-hetero-var1,espcn-hetero-var1")
    ap.add_argument("--styles", default="own", help="comma-separated input styles (iqt degrade --style)")
    args = ap.parse_args(argv)
    subjects = args.subjects or sorted(p for p in DEV.iterdir() if p.is_dir())
    shipped = inference.MD_ERROR_CORRELATION
    rhos: dict = {}
    print(f"subject | method | factor | voxels | ρ (xx,yy / xx,zz / yy,zz) | MD within ±2 md_std ρ=0 → "
          f"ρ={shipped:g} → own ρ | RMS MD error/md_std ρ=0 → ρ={shipped:g} → own ρ")
    for folder in subjects:
        subject = load_subject(folder)
        for fs, style in itertools.product(args.factors.split(","), args.styles.split(",")):
            f = grid.factors(fs.replace("x", ","))
            factor = grid.isotropic(f) or f
            case = make_case(subject, factor, style=style)
            label = fs if style == "own" else f"{fs} {style}"  # the figures of the default style read as before
            truth = np.asarray(case.truth, np.float64)
            for name in args.methods.split(","):
                method = methods.get(name)
                try:
                    with Capture() as cap:
                        pred = method.predict(case.lr, factor, case.lr_mask)
                except Exception as exc:  # a factor set the method does not ship
                    print(f"{subject.name} | {name} | {label} | skipped: {exc}", flush=True)
                    continue
                got = cap.got
                tensor = np.asarray(pred.tensor.data, np.float64)
                covered = evaluation.covered(tensor)  # the voxels iqt evaluate scores σ over
                voxels = evaluation.evaluation_voxels(truth, case.hr_mask.astype(bool)) & covered
                if "trace" not in got:  # no Monte Carlo pass, no md_std
                    print(f"{subject.name} | {name} | {label} | no Monte Carlo pass: skipped", flush=True)
                    continue
                # the captured maps are in predict_volume's frame: take the errors there (diagonal elements follow
                # the axes; flips leave them as they are)
                apply, perm = to_frame(tensor[..., DIAG].sum(-1), got["trace"])
                diag_of = [DIAG[p] for p in perm]
                err = apply((tensor - truth)[..., diag_of])[apply(voxels)]
                voxels = apply(voxels)
                scale2 = got["out_scale"] ** 2
                ivar = np.exp(np.clip(got["logvar"][voxels].astype(np.float64), -30, 30)) * scale2
                var = ivar + got["pvar"][voxels] * scale2
                z = err / np.sqrt(var[:, DIAG])
                c = np.corrcoef(z.T)
                pair = [c[0, 1], c[0, 2], c[1, 2]]
                rho = float(np.mean(pair))
                rhos.setdefault((name, label), []).append(rho)
                line = (f"{subject.name} | {name} | {label} | {int(voxels.sum())} | {rho:.3f} "
                        f"({pair[0]:.2f} / {pair[1]:.2f} / {pair[2]:.2f})")
                trpart = got["trvar"][voxels] * scale2[0]
                md_err = np.abs(err.sum(-1) / 3.0)
                cov, rms = [], []
                for r in (0.0, shipped, rho):
                    sd = inference.md_std_map(ivar, trpart, r)
                    cov.append(np.mean(md_err <= 2 * sd))
                    rms.append(np.sqrt(np.mean((md_err / sd) ** 2)))
                line += (" | " + " → ".join(f"{v:.3f}" for v in cov) + " | "
                         + " → ".join(f"{v:.2f}" for v in rms))
                print(line, flush=True)
    every = [r for v in rhos.values() for r in v]
    for (name, fs), v in rhos.items():
        print(f"{name} x{fs}: ρ {min(v):.3f}-{max(v):.3f}, median {np.median(v):.3f}")
    if every:
        print(f"all: ρ {min(every):.3f}-{max(every):.3f}, median {np.median(every):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
