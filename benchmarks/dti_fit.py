#!/usr/bin/env python3
"""The engine's DTI fit (`dmri.dti.fit_dti`, WLS by per-voxel normal equations) against dipy's own WLS on real
subjects, in the brain mask and over the whole field: the time of each and the largest per-voxel difference relative
to the voxel's largest element (float32 keeps about 6e-8), over the voxels with a b0 signal: where every b0 holds none
the engine writes its eigenvalue floor on purpose (`dti._floor_without_b0`), where dipy answers from the
diffusion-weighted volumes alone; those voxels are counted apart.

    python benchmarks/dti_fit.py ../shared/data/dmri/dev/* ../shared/data/dmri/train/*
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing" / "dmri"))
from test_fit import dipy_wls  # noqa: E402  dipy's own WLS, as the tests compare with it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("subjects", nargs="+", type=Path, help="folders holding dwi.nii.gz, dwi.bval, dwi.bvec")
    args = parser.parse_args()
    from ImageQualityTransferLib.dmri import dti
    from ImageQualityTransferLib.fileio.volumes import load_dwi

    print(f"{'subject':32s} {'region':6s} {'engine s':>9s} {'dipy s':>8s} {'ratio':>6s} {'max rel diff':>13s} "
          f"{'no b0 signal':>12s}")
    for folder in args.subjects:
        dwi = load_dwi(folder / "dwi.nii.gz")
        no_s0 = np.all(np.asarray(dwi.data)[..., np.asarray(dwi.bvals) <= dti.B0_THRESHOLD] <= 0, axis=-1)
        for region, mask in (("mask", dti.brain_mask(dwi).data), ("whole", None)):
            t0 = time.perf_counter()
            ours = dti.fit_dti(dwi, mask).data
            t1 = time.perf_counter()
            theirs = dipy_wls(dwi, mask)
            t2 = time.perf_counter()
            rel = np.abs(ours - theirs) / (np.abs(theirs).max(axis=-1, keepdims=True) + 1e-12)
            inside = np.ones(no_s0.shape, bool) if mask is None else np.asarray(mask, bool)
            print(f"{folder.name:32s} {region:6s} {t1 - t0:9.2f} {t2 - t1:8.2f} {(t2 - t1) / (t1 - t0):6.2f} "
                  f"{rel[inside & ~no_s0].max():13.2e} {int((inside & no_s0).sum()):12d}")


if __name__ == "__main__":
    main()
