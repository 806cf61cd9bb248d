#!/usr/bin/env python3
"""Reruns a shipped model's recorded `iqt train` command (its sidecar's `training.command`) into a temporary folder
with this checkout's code and compares the result with the shipped file: its SHA256, and for a forest the training
examples and tree leaves. Prints the figures; not a test (a forest takes 1-15 min, a CNN its --minutes or more).

    PYTHONPATH=ImageQualityTransfer python benchmarks/reproduce_model.py biqt_x1x1x3 [--keep DIR] [--data DIR]

--data replaces the folder the recorded subjects were read from (/work/shared/data/dmri/train on the machine the
shipped models were trained on); --keep writes the model and its training log there instead of a temporary folder.
A CNN trained under --minutes stops by the clock and is not expected to match (docs/training.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "ImageQualityTransfer" / "Resources" / "Models"


def sha256(path: Path) -> str:
    """The file's SHA256 in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rerun_argv(command: str, out: Path, data: str | None) -> list[str]:
    """The recorded command as this checkout's `python -m ImageQualityTransferLib`, writing `out`, its subjects under
    `data` where given and an --init model gone from its recorded path read from the shipped models."""
    words = shlex.split(command)
    if words[0] != "iqt":
        raise SystemExit(f"the recorded command does not start with iqt: {command}")
    argv = [sys.executable, "-m", "ImageQualityTransferLib"] + words[1:]
    for flag in ("-o", "--output"):
        if flag in argv:
            argv[argv.index(flag) + 1] = str(out)
    if data:
        i = argv.index("--subjects") + 1
        while i < len(argv) and not argv[i].startswith("-"):
            argv[i] = str(Path(data) / Path(argv[i]).name)
            i += 1
    if "--init" in argv:  # a warm start from a shipped model: the shipped file of that name where the path is gone
        i = argv.index("--init") + 1
        if not Path(argv[i]).exists() and (MODELS / Path(argv[i]).name).exists():
            argv[i] = str(MODELS / Path(argv[i]).name)
    if "-v" not in argv:
        argv.append("-v")
    return argv


def leaves(path: Path) -> list[int] | None:
    """A forest file's leaves per tree, from its arrays (None for a file without trees)."""
    import numpy as np

    with np.load(path) as z:
        trees = sorted(int(k[4:-5]) for k in z.files if re.fullmatch(r"tree\d+_leaf", k))
        return [int((z[f"tree{i}_leaf"] >= 0).sum()) for i in trees] or None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name", help="a shipped model's name without suffix, e.g. global-linear_x2")
    ap.add_argument("--keep", help="write the model and its log here instead of a temporary folder")
    ap.add_argument("--data", help="the folder holding the recorded training subjects")
    args = ap.parse_args(argv)
    side_path = MODELS / f"{args.name}.json"
    if not side_path.is_file():
        raise SystemExit(f"{side_path} does not exist: give a shipped model's name (ls {MODELS})")
    side = json.loads(side_path.read_text())
    command = side["training"]["command"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / side["weights"]
        cmd = rerun_argv(command, out, args.data)
        env = {**os.environ, "PYTHONPATH": str(REPO / "ImageQualityTransfer")}
        print(f"{args.name}: iqt {shlex.join(cmd[3:])}", flush=True)  # as one types it (cmd: python -m ...)
        t0 = time.perf_counter()
        log = folder / f"{args.name}.train.log"
        with open(log, "w") as f:
            rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        took = time.perf_counter() - t0
        if rc != 0:
            print(f"training ended with exit status {rc} after {took:.0f} s; its log: {log}")
            return 1
        new = json.loads(out.with_suffix(".json").read_text())
        same = sha256(out) == side["sha256"]
        print(f"{args.name}: {'the same' if same else 'NOT the same'} SHA256 ({sha256(out)[:16]} against the "
              f"shipped {side['sha256'][:16]}), {took:.0f} s wall")
        print(f"  built by {new.get('version') or new.get('engine_version')} (build "
              f"{new.get('build') or new.get('engine_build')}); shipped by {side.get('version')}"
              f" / {side.get('engine_version')} (build {side.get('build') or side.get('engine_build')})")
        was, now = side["training"].get("examples"), new["training"].get("examples")
        if was is not None or now is not None:
            print(f"  training examples: {now} against the shipped {was}; their SHA256 "
                  f"{new['training'].get('examples_sha256', '-')[:16]} against the shipped "
                  f"{side['training'].get('examples_sha256', 'unrecorded')[:16]}")
        if out.suffix == ".npz":
            shipped = leaves(MODELS / side["weights"])
            print(f"  leaves per tree: {leaves(out)} against the shipped {shipped}")
        if args.keep:
            print(f"  kept: {out}, its log {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
