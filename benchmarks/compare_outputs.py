#!/usr/bin/env python3
"""Behaviour check for refactors: run `iqt degrade` and `iqt upsample` (every shipped method, with its
uncertainty maps) on real subjects and either save the outputs or compare them with saved ones.

    python benchmarks/compare_outputs.py --save BEFORE_DIR  [SUBJECT_DIR...]   # on the old tree
    python benchmarks/compare_outputs.py --check BEFORE_DIR [SUBJECT_DIR...]   # on the new tree

`--iqt "CMD"` names the command line to run (default: `python -m ImageQualityTransferLib`). Outputs are
derived from the subjects' data: keep BEFORE_DIR outside the repository. Every file must agree to float32
round-off: max |new - old| <= 1e-5 x max |old| (and the same shape and affine).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dmri" / "dev"
METHODS = ("nearest", "linear", "cubic", "logeuclid-cubic", "global-linear", "rf", "biqt",
           "espcn", "espcn-hetero", "espcn-hetero-var1")
UNCERTAIN = ("rf", "biqt", "espcn-hetero", "espcn-hetero-var1")
RTOL = 1e-5


def run(iqt: list[str], args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(iqt + args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def produce(iqt, subjects, out: Path) -> None:
    for subj in subjects:
        d = out / subj.name
        d.mkdir(parents=True, exist_ok=True)
        lr, lr_mask = d / "lr.nii.gz", d / "lr_mask.nii.gz"
        run(iqt, ["degrade", str(subj / "dwi.nii.gz"), "--factor", "2", "-o", str(lr), "--mask-out", str(lr_mask)])
        for m in METHODS:
            args = ["upsample", str(lr), "--method", m, "--mask", str(lr_mask), "-o", str(d / f"{m}.nii.gz")]
            if m in UNCERTAIN:
                args += ["--uncertainty", str(d / f"{m}_std.nii.gz")]
            print(f"{subj.name} {m}: {run(iqt, args):.1f} s", flush=True)


def compare(old: Path, new: Path) -> int:
    bad = 0
    files = sorted(p.relative_to(old) for p in old.rglob("*.nii.gz"))
    for rel in files:
        a, b = nib.load(old / rel), (nib.load(new / rel) if (new / rel).exists() else None)
        if b is None:
            print(f"MISSING {rel}")
            bad += 1
            continue
        x, y = np.asarray(a.dataobj, np.float64), np.asarray(b.dataobj, np.float64)
        if x.shape != y.shape or not np.allclose(a.affine, b.affine, atol=1e-6):
            print(f"GRID {rel}: {x.shape} vs {y.shape}")
            bad += 1
            continue
        scale = max(np.abs(x).max(), 1e-30)
        err = np.abs(x - y).max() / scale
        ok = err <= RTOL
        bad += not ok
        print(f"{'ok  ' if ok else 'DIFF'} {rel}: max rel diff {err:.2e}")
    extra = sorted(p.relative_to(new) for p in new.rglob("*.nii.gz") if not (old / p.relative_to(new)).exists())
    for rel in extra:
        print(f"NEW {rel} (not in the saved outputs)")
    print(f"{len(files) - bad} of {len(files)} outputs agree to {RTOL:g} relative")
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", help="write the outputs here")
    g.add_argument("--check", help="compare with the outputs saved here (new ones go to CHECK/../<name>-new)")
    p.add_argument("subjects", nargs="*", help="subject folders (default: every dev subject)")
    p.add_argument("--iqt", default=f"{shlex.quote(sys.executable)} -m ImageQualityTransferLib")
    a = p.parse_args()
    subjects = [Path(s) for s in a.subjects] or sorted(DEV.resolve().iterdir())
    iqt = shlex.split(a.iqt)
    if a.save:
        produce(iqt, subjects, Path(a.save))
        return 0
    old = Path(a.check)
    new = old.parent / f"{old.name}-new"
    produce(iqt, subjects, new)
    return compare(old, new)


if __name__ == "__main__":
    sys.exit(main())
