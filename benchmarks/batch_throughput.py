#!/usr/bin/env python3
"""Throughput of `iqt batch`: subjects per minute in this process without Dask, then on a LocalCluster of 1 and of 2
workers, and the scheduler's overhead per subject (1-worker cluster against in-process on one thread, as a worker
runs, the same `process` calls).

    PYTHONPATH=ImageQualityTransfer python benchmarks/batch_throughput.py [--dev | --phantoms 6] [--method biqt]

--dev runs the real subjects of ../shared/data/dmri/dev (linked as a BIDS dataset), otherwise phantom subjects
(64x72x56 at 2 mm, 30 directions). Everything is written under a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ImageQualityTransfer"))

from ImageQualityTransferLib import fileio  # noqa: E402
from ImageQualityTransferLib.apps import batch  # noqa: E402

DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dmri" / "dev"


def dataset(root: Path, dev: bool, n: int) -> Path:
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps({"Name": "bench", "BIDSVersion": batch.BIDS_VERSION}))
    if dev:
        for i, d in enumerate(sorted(p for p in DEV.iterdir() if (p / "dwi.nii.gz").exists())):
            sub = root / f"sub-{i:02d}" / "dwi"
            sub.mkdir(parents=True)
            for ext in ("nii.gz", "bval", "bvec"):
                (sub / f"sub-{i:02d}_dwi.{ext}").symlink_to(d.resolve() / f"dwi.{ext}")
    else:
        from ImageQualityTransferLib.dmri.phantom import make_phantom

        for i in range(n):
            sub = root / f"sub-{i:02d}" / "dwi"
            sub.mkdir(parents=True)
            fileio.save_dwi(make_phantom(seed=i), sub / f"sub-{i:02d}_dwi.nii.gz")
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", action="store_true", help="the real dev subjects instead of phantoms")
    ap.add_argument("--phantoms", type=int, default=6, help="phantom subjects (default 6)")
    ap.add_argument("--method", default="biqt")
    args = ap.parse_args()
    from ImageQualityTransferLib import methods

    method = methods.get(args.method)
    model_file, model_sha = batch.model_record(method, 2)
    s = batch.Settings(method=args.method, uncertainty=method.gives_uncertainty, model_file=model_file,
                       model_sha256=model_sha)
    with tempfile.TemporaryDirectory(prefix="iqt-batch-bench-") as tmp:
        tmp = Path(tmp)
        items = batch.find_items(dataset(tmp / "bids", args.dev, args.phantoms))
        n = len(items)
        rows = []

        def timed(label, client, start_s=0.0):
            out = tmp / f"out-{len(rows)}"
            out.mkdir()
            t0 = time.perf_counter()
            res = batch.run_cohort(items, s, out, client, progress=False)
            wall = time.perf_counter() - t0
            assert all(r["status"] == "done" for r in res), [r["reason"] for r in res]
            t1 = time.perf_counter()
            again = batch.run_cohort(items, s, out, client, progress=False)  # a resumed run: every subject skipped
            skip = time.perf_counter() - t1
            assert all(r["status"] == "skipped" for r in again)
            rows.append((label, start_s, wall, 60.0 * n / wall, wall / n, skip / n))

        timed("in-process, no Dask (library thread defaults)", None)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):  # as a Dask worker process runs (the nanny sets OMP_NUM_THREADS=1 and co.)
            timed("in-process, no Dask, 1 thread", None)
        for w in (1, 2):
            t0 = time.perf_counter()
            client, cluster = batch.start_client(w, dashboard_address=":0")
            start = time.perf_counter() - t0
            try:
                timed(f"LocalCluster, {w} worker{'s' if w > 1 else ''}", client, start)
            finally:
                client.close()
                cluster.close()
    what = "dev subjects" if args.dev else "phantom subjects (64x72x56, 2 mm)"
    print(f"{n} {what}, method {args.method}{' with uncertainty' if s.uncertainty else ''}, factor 2\n")
    print("| run | cluster start (s) | wall (s) | subjects/min | s/subject | rerun, s/subject (all skipped) |")
    print("|---|---|---|---|---|---|")
    for label, start, wall, spm, per, skip in rows:
        print(f"| {label} | {start:.1f} | {wall:.1f} | {spm:.1f} | {per:.2f} | {skip:.3f} |")
    overhead = rows[2][4] - rows[1][4]
    print(f"\nscheduler overhead per subject (1-worker cluster minus in-process on 1 thread): {overhead:+.2f} s")


if __name__ == "__main__":
    main()
