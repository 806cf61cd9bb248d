#!/usr/bin/env python3
"""Seconds `iqt batch`'s stop (apps/cli/batch_stop.py `_stop`, after Ctrl-C or a termination signal) takes to close
its local cluster of 2 workers with one busy on a subject (a torch loop, as a CNN's), against both idle, in the same
run; and, as the before figure, the busy stop under Dask's own Nanny, which let the task run 4 s more before it
killed the worker (batch/local_cluster.py nanny_class). Each stop also counts the worker processes left after it.

    PYTHONPATH=ImageQualityTransfer python benchmarks/batch_stop.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ImageQualityTransfer"))

from ImageQualityTransferLib.apps import batch  # noqa: E402
from ImageQualityTransferLib.apps.batch import dask_client  # noqa: E402
from ImageQualityTransferLib.apps.cli import batch_stop  # noqa: E402


def busy() -> None:
    """A subject's work for up to 60 s: torch convolutions where torch is installed, else Python arithmetic."""
    end = time.time() + 60
    try:
        import torch

        x, w = torch.randn(1, 8, 24, 24, 24), torch.randn(8, 8, 3, 3, 3)
        while time.time() < end:
            torch.nn.functional.conv3d(x, w)
    except ImportError:
        while time.time() < end:
            sum(i * i for i in range(10_000))


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie not yet reaped counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def one_stop(mode: str) -> tuple[float, int]:
    """(seconds `_stop` took, worker processes left 0.5 s after it) for one fresh 2-worker local cluster."""
    nanny_class = dask_client.nanny_class
    if mode == "busy, Dask's Nanny":
        from distributed import Nanny

        dask_client.nanny_class = lambda: Nanny
    try:
        client, cluster = batch.start_client(2, dashboard_address="127.0.0.1:0", secure=False)
    finally:
        dask_client.nanny_class = nanny_class
    pids = [w.process.process.pid for w in cluster.workers.values()]
    if mode != "idle":
        client.submit(busy, pure=False)
        while not any(client.run(lambda dask_worker: bool(dask_worker.active_threads)).values()):
            time.sleep(0.05)
        time.sleep(0.5)
    start = time.perf_counter()
    batch_stop._stop(client, cluster)
    took = time.perf_counter() - start
    time.sleep(0.5)
    return took, sum(alive(p) for p in pids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="stops of each kind, alternated (default 3)")
    args = ap.parse_args()
    modes = ("idle", "busy", "busy, Dask's Nanny")
    took: dict = {m: [] for m in modes}
    left = 0
    for _ in range(args.repeats):
        for mode in modes:
            s, n = one_stop(mode)
            took[mode].append(s)
            left += n
            print(f"  {mode}: {s:.2f} s", flush=True)
    med = {m: statistics.median(v) for m, v in took.items()}
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.repeats} stops of each, median "
          "(min-max):")
    for m in modes:
        print(f"  {m:20s} {med[m]:.2f} s ({min(took[m]):.2f}-{max(took[m]):.2f}), {med[m] / med['idle']:.2f}x idle")
    print(f"worker processes left after the stops: {left}")


if __name__ == "__main__":  # the workers are spawned: they import this file again
    main()
