#!/usr/bin/env python3
"""BLAS threads and the separable upsampling: `interpolation.upsample_separable` of a tensor volume as the engine runs
it (axes 2 and 1 on one BLAS thread) against every product on the BLAS pool's threads, interleaved in one process
(ratios, since the machine is shared and noisy); wall and CPU seconds a call, and whether the bytes are equal.

    python benchmarks/separable_threads.py [--shape 72,72,36] [--factor 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_info

from ImageQualityTransferLib.methods import interpolation


def timed(x, factor) -> tuple[float, float, np.ndarray]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = interpolation.upsample_separable(x, factor, 3)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="72,72,36", help="the low-res grid X,Y,Z (default 72,72,36: a 3 mm scan)")
    parser.add_argument("--factor", default="2", help="the factor, as --factor reads it (default 2)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from ImageQualityTransferLib.core import grid

    factor = grid.factors(args.factor)
    x = np.random.default_rng(0).random((*map(int, args.shape.split(",")), 6)).astype(np.float32)
    pool = max((lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"), default=0)
    print(f"upsample_separable of {x.shape} at x{grid.record(factor)}; the BLAS pool's threads here: {pool}")
    times: dict[str, list[tuple[float, float]]] = {"engine": [], "pool": []}
    outs = {}
    timed(x, factor)  # the weights cached, the pages touched
    for _ in range(args.repeats):
        for name in times:
            with contextlib.ExitStack() as stack:
                if name == "pool":  # every product on the pool's threads, as before
                    stack.enter_context(_on_the_pool())
                wall, cpu, outs[name] = timed(x, factor)
            times[name].append((wall, cpu))
    for name, runs in times.items():
        print(f"{name:>6}: wall {statistics.median(w for w, _ in runs):.3f} s, CPU {statistics.median(c for _, c in runs):.3f} s "
              f"a call (median of {len(runs)})")
    ratio = statistics.median(w for w, _ in times["pool"]) / statistics.median(w for w, _ in times["engine"])
    print(f"pool / engine wall: {ratio:.1f}x; bytes equal: {np.array_equal(outs['engine'], outs['pool'])}")


@contextlib.contextmanager
def _on_the_pool():
    saved = interpolation.small_solves
    interpolation.small_solves = contextlib.nullcontext
    try:
        yield
    finally:
        interpolation.small_solves = saved


if __name__ == "__main__":
    main()
