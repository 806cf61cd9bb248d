#!/usr/bin/env python3
"""BLAS threads and the forests: `iqt upsample --method rf|biqt` on the HCP-sized (72x87x72) timing volume with
the libraries' default thread settings against one BLAS/OpenMP thread, interleaved in one run (ratios, since the
machine is shared and noisy).

    python benchmarks/forest_threads.py [--repeats 2] [--old-tree DIR]

`--old-tree` also times an older checkout of the engine (its ImageQualityTransfer/ folder first on PYTHONPATH),
e.g. one from before the forests pinned their small solves to one thread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SINGLE = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run(cmd, env) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--methods", default="rf,biqt")
    p.add_argument("--old-tree", help="an older checkout to time beside this one")
    a = p.parse_args()
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.analysis.benchmark import speed_volume

    trees = {"this tree": None} | ({"old tree": str(Path(a.old_tree) / "ImageQualityTransfer")} if a.old_tree else {})
    base = {k: v for k, v in os.environ.items() if k not in SINGLE}
    print(f"{os.cpu_count()} CPUs; default threads = the libraries' own (no *_NUM_THREADS set)")
    with tempfile.TemporaryDirectory(prefix="iqt-threads-") as tmp:
        lr, mask = speed_volume()
        fileio.save_tensor(lr, Path(tmp) / "lr.nii.gz")
        fileio.save_scalar(mask, Path(tmp) / "m.nii.gz")
        for method in a.methods.split(","):
            for tree, path in trees.items():
                env = dict(base, PYTHONPATH=path) if path else dict(base)
                cmd = [sys.executable, "-m", "ImageQualityTransferLib", "upsample", str(Path(tmp) / "lr.nii.gz"),
                       "-o", str(Path(tmp) / "o.nii.gz"), "--mask", str(Path(tmp) / "m.nii.gz"), "--method", method]
                times = {"default": [], "1 thread": []}
                for _ in range(a.repeats):
                    times["default"].append(run(cmd, env))
                    times["1 thread"].append(run(cmd, env | SINGLE))
                d, s = statistics.median(times["default"]), statistics.median(times["1 thread"])
                print(f"{method:5s} {tree:9s}: default {d:6.1f} s, one thread {s:6.1f} s, ratio {d / s:.2f} "
                      f"(median of {a.repeats})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
