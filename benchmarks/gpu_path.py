#!/usr/bin/env python3
"""The device path of the CNNs: one `espcn` pass, one `espcn-hetero-var1` Monte Carlo pass and the training step's
throughput, on the device `--device` picks (auto: CUDA when PyTorch sees one, else the CPU). Runs on a CPU-only
machine as well.

    PYTHONPATH=ImageQualityTransfer python benchmarks/gpu_path.py [--device auto|cpu|cuda] [--shape 48,56,44]
                                                                  [--mc-samples 10] [--steps 10]

The input is the phantom fitted to tensors at 3 mm (`--shape` low-res voxels); each pass is timed after one warm-up
run (CUDA initialisation and kernel selection excluded), the best of `--repeats`. Training throughput is the
network's own step (forward, backward, Adam) on random patches of the trainer's size and batch (data sampling
excluded), in patches per second. OpenMP's threads wait passively, as in the `iqt` command (core/threads.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ImageQualityTransfer"))


def best_time(fn, repeats: int, sync) -> float:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--shape", default="48,56,44", help="low-res grid of the input (default 48,56,44; HCP-sized: 72,87,72)")
    ap.add_argument("--mc-samples", type=int, default=10)
    ap.add_argument("--steps", type=int, default=10, help="training steps timed")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    from ImageQualityTransferLib.core import threads

    threads.wait_passively()  # as `iqt` runs: spinning OpenMP waits stretch the Monte Carlo pass on a busy machine
    import numpy as np
    import torch

    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti
    from ImageQualityTransferLib.dmri.phantom import make_phantom
    from ImageQualityTransferLib.methods.cnn import networks
    from ImageQualityTransferLib.methods.cnn.inference import resolve_device
    from ImageQualityTransferLib.methods.cnn.training import mse_loss
    from ImageQualityTransferLib.methods.cnn.training_data import DEFAULTS

    device = resolve_device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    shape = tuple(int(s) for s in args.shape.split(","))
    dwi = make_phantom(shape=shape, voxel_mm=3.0, n_dirs=30)
    mask = brain_mask(dwi)
    lr = fit_dti(dwi, mask)
    print(f"device {device} ({name}), torch {torch.__version__}, low-res input {shape} -> x2\n")
    print("| what | time | throughput |")
    print("|---|---|---|")

    espcn = methods.get("espcn", device=str(device.type))
    t = best_time(lambda: espcn.predict(lr, 2, mask, uncertainty=False), args.repeats, sync)
    n_hr = 8 * int(np.prod(shape))
    print(f"| espcn, one pass (predict end to end) | {t:.2f} s | {n_hr / t / 1e6:.2f} M high-res voxels/s |")
    var1 = methods.get("espcn-hetero-var1", samples=args.mc_samples, device=str(device.type))
    t = best_time(lambda: var1.predict(lr, 2, mask, uncertainty=True), args.repeats, sync)
    print(f"| espcn-hetero-var1, Monte Carlo pass, {args.mc_samples} samples | {t:.2f} s | "
          f"{n_hr / t / 1e6:.2f} M high-res voxels/s |")

    net = networks.build({"name": "espcn", "factor": 2, "widths": [50, 100]}).to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    p, b = DEFAULTS["patch"], DEFAULTS["batch_size"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, 6, p + 2 * networks.HALO, p + 2 * networks.HALO, p + 2 * networks.HALO, generator=gen).to(device)
    y = torch.randn(b, 6, 2 * p, 2 * p, 2 * p, generator=gen).to(device)
    w = torch.ones(b, 2 * p, 2 * p, 2 * p).to(device)

    def steps():
        for _ in range(args.steps):
            loss = mse_loss(net(x), y, w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    t = best_time(steps, args.repeats, sync)
    print(f"| espcn training, {args.steps} steps of {b} patches ({p}^3 low-res) | {t:.2f} s | {args.steps * b / t:.1f} patches/s |")


if __name__ == "__main__":
    main()
