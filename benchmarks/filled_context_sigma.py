#!/usr/bin/env python3
"""How well does a method's σ match its error where it answers from context it filled itself?

Beyond a tight mask (FSL `dtifit -m`, MRtrix, dipy with a mask) the learned methods fill the missing context and
answer the brain voxels whose low-res block lies outside the mask from it: the "ring". This prints, per subject,
style and method, the RMS of error/σ in the ring, at the rest of the brain's edge (the exterior) and in the interior,
their ratio ring / rest (each over the evaluation voxels the prediction covers, as `iqt evaluate` takes them:
analysis/evaluation.py), and the share of ring voxels within ±2σ; with the method's `filled_std_scale` undone too
("plain"), so one run gives the figures before and after the raise. The factors in methods/cnn/method.py and
methods/forest/training.py are the medians of "plain ratio" over the training subjects' tight ×2 inputs:

    python benchmarks/filled_context_sigma.py ../shared/data/dmri/train/* --styles tight,own
    python benchmarks/filled_context_sigma.py --factor 3 --methods deep-hetero-var1   # the dev subjects

Reads the subjects from ../shared/data/dmri/dev by default; prints figures only (nothing is written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "ImageQualityTransfer"))

from ImageQualityTransferLib import methods  # noqa: E402
from ImageQualityTransferLib.analysis import evaluation  # noqa: E402
from ImageQualityTransferLib.core import grid  # noqa: E402
from ImageQualityTransferLib.core.grid import repeat_blocks  # noqa: E402
from ImageQualityTransferLib.dmri.subject import load_subject, make_case  # noqa: E402
from ImageQualityTransferLib.methods.cnn.inference import lr_support  # noqa: E402
from ImageQualityTransferLib.methods.forest.training import FILLED_STD_SCALE  # noqa: E402

DEV = ROOT / ".." / "shared" / "data" / "dmri" / "dev"


def scale_of(method) -> float:
    """The factor the method's σ is raised by over filled context."""
    return FILLED_STD_SCALE.get(method.name, getattr(type(method), "filled_std_scale", 1.0))


def rms_ratio(err, sd, voxels) -> float:
    return float(np.sqrt(np.mean((err[voxels] / sd[voxels]) ** 2)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("subjects", nargs="*", type=Path)
    ap.add_argument("--factor", default="2", help="2, 3 or per-axis such as 1,1,3")
    ap.add_argument("--methods", default="espcn-hetero,espcn-hetero-var1,deep-hetero-var1")
    ap.add_argument("--styles", default="tight")
    args = ap.parse_args(argv)
    subjects = args.subjects or sorted(p for p in DEV.iterdir() if p.is_dir())
    f = grid.factors(args.factor)
    factor = grid.isotropic(f) or f
    made = [methods.get(n) for n in args.methods.split(",")]
    plain: dict = {}
    print("subject | style | method | ring voxels | filled share | error/σ ring plain → raised | rest of exterior | "
          "interior | ring/rest plain → raised | within ±2σ ring plain → raised | rest")
    for folder in subjects:
        subject = load_subject(folder)
        for style in args.styles.split(","):
            case = make_case(subject, factor, style=style)
            regs = evaluation.regions(case.hr_mask, case.lr_mask.data, f)
            lr_mask = case.lr_mask.data.astype(bool)
            filled_lr = lr_support(lr_mask, lr_mask.shape) & ~np.any(np.asarray(case.lr.data) != 0, axis=-1)
            filled = repeat_blocks(filled_lr, f).astype(bool)
            for method in made:
                pred = method.predict(case.lr, factor, case.lr_mask)
                err = np.sqrt(np.mean((pred.tensor.data - case.truth) ** 2, axis=-1))
                sd = np.asarray(pred.std.data)
                sd0 = sd.copy()
                sd0[filled] /= np.float32(scale_of(method))
                covered = evaluation.covered(pred.tensor.data)  # the voxels iqt evaluate scores σ over
                ext = evaluation.evaluation_voxels(case.truth, regs["exterior"]) & covered
                inner = evaluation.evaluation_voxels(case.truth, regs["interior"]) & covered
                ring = ext & ~repeat_blocks(lr_mask, f).astype(bool)
                rest = ext & ~ring
                if not ring.any():
                    continue
                r0, r1 = rms_ratio(err, sd0, ring), rms_ratio(err, sd, ring)
                rr0, rr = rms_ratio(err, sd0, rest), rms_ratio(err, sd, rest)  # a failed fit's voxel is filled too
                plain.setdefault((style, method.name), []).append(r0 / rr0)
                print(f"{subject.name} | {style} | {method.name} | {int(ring.sum())} | {filled[ring].mean():.2f} | "
                      f"{r0:.2f} → {r1:.2f} | {rr:.2f} | {rms_ratio(err, sd, inner):.2f} | {r0 / rr0:.3f} → "
                      f"{r1 / rr:.3f} | {np.mean(err[ring] < 2 * sd0[ring]):.3f} → {np.mean(err[ring] < 2 * sd[ring]):.3f} "
                      f"| {np.mean(err[rest] < 2 * sd[rest]):.3f}", flush=True)
    for (style, name), ratios in plain.items():
        print(f"{style} {name}: plain ring/rest {min(ratios):.3f}-{max(ratios):.3f}, median {np.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
