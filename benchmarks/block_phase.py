#!/usr/bin/env python3
"""Does a method's error, and its uncertainty map, vary with where an output voxel sits in its low-res block?

At ×3 the uncertainty maps show a faint grid of 3-voxel blocks (docs/accuracy.md, Other factors). This prints, per dev
subject and method, the interior RMS error and RMS σ of the output voxels grouped by their distance from their low-res
block's centre (low-res voxel units), each relative to the interior's RMS over all voxels: where the error has the
same grid, the σ map's grid is the truth, not an artefact.

    python benchmarks/block_phase.py --factor 3 --methods cubic,deep,deep-hetero-var1 [SUBJECT_DIR...]

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
from ImageQualityTransferLib.dmri.subject import load_subject, make_case  # noqa: E402

DEV = ROOT / ".." / "shared" / "data" / "dmri" / "dev"


def distance_to_centre(shape, factors) -> np.ndarray:
    """Each high-res voxel's distance from the centre of its low-res block, in low-res voxels (high-res voxel j
    lies in block j // f: docs/conventions.md, Regions)."""
    offsets = [((np.arange(n) % f) + 0.5) / f - 0.5 for n, f in zip(shape, factors)]
    ox, oy, oz = np.meshgrid(*offsets, indexing="ij")
    return np.round(np.sqrt(ox ** 2 + oy ** 2 + oz ** 2), 3)


def by_distance(values, voxels, dist) -> dict:
    """RMS of `values` over `voxels` at each distance, relative to their RMS over all of `voxels`."""
    whole = np.sqrt(np.mean(values[voxels] ** 2))
    return {d: float(np.sqrt(np.mean(values[voxels & (dist == d)] ** 2)) / whole) for d in np.unique(dist[voxels])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("subjects", nargs="*", type=Path)
    ap.add_argument("--factor", default="3", help="2, 3 or per-axis such as 1,1,3")
    ap.add_argument("--methods", default="cubic,deep,deep-hetero-var1")
    ap.add_argument("--style", default="own")
    args = ap.parse_args(argv)
    subjects = args.subjects or sorted(p for p in DEV.iterdir() if p.is_dir())
    f = grid.factors(args.factor)
    factor = grid.isotropic(f) or f
    made = [methods.get(n) for n in args.methods.split(",")]
    for folder in subjects:
        case = make_case(load_subject(folder), factor, style=args.style)
        dist = distance_to_centre(case.truth.shape[:3], f)
        voxels = evaluation.evaluation_voxels(case.truth, evaluation.regions(case.hr_mask, case.lr_mask.data, case.factor)["interior"])
        for method in made:
            pred = method.predict(case.lr, case.factor, case.lr_mask)
            err = np.sqrt(np.mean((pred.tensor.data - case.truth) ** 2, axis=-1))
            rows = {"error": by_distance(err, voxels, dist)}
            if pred.std is not None:
                sd = pred.std.data if pred.std.data.ndim == 3 else np.sqrt(np.mean(pred.std.data ** 2, axis=-1))
                rows["sigma"] = by_distance(sd, voxels, dist)
            for what, row in rows.items():
                cells = "  ".join(f"{d:.3f}: {v:.3f}" for d, v in row.items())
                print(f"{Path(folder).name:30s} {method.label:18s} {what:5s} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
