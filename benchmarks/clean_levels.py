#!/usr/bin/env python3
"""The clean levels the uncertainty overlay is coloured against (slicer/clean_levels.py): per shipped model, the median
and 99th percentile over the brain of each of its maps on clean inputs of the training subjects (style "own", as
training makes them), the median of the subjects' figures. Prints one line per subject, model and map, then the table,
and writes it to ImageQualityTransfer/Resources/Models/clean_levels.json with this command in it:

    python benchmarks/clean_levels.py --models espcn-hetero:2,espcn-hetero:1x1x2,espcn-hetero:1x1x3,biqt:2,biqt:3,biqt:1x1x2,biqt:1x1x3,rf:2,rf:3,rf:1x1x2,rf:1x1x3,espcn-hetero-var1:2,espcn-hetero-var1:1x1x2,espcn-hetero-var1:1x1x3,deep-hetero-var1:2,deep-hetero-var1:3,deep-hetero-var1:1x1x2,deep-hetero-var1:1x1x3

Diffusivity maps are in µm²/ms (the map nodes' unit); each line also gives the level over the input's MD mode (of
its brain, as a run reads it: methods/inputs.py brain_md_unit). Each level records that mode's median over the
subjects ("scale", µm²/ms: the overlay scales a diffusivity level by a scan's own over it) and the SHA256 its
model's sidecar records ("sha256": a level of another file is not used). --scales-only writes those two into the table at --out without running the models (minutes, not
hours); the levels stay as measured. The dev subjects are never read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "ImageQualityTransfer"))

from ImageQualityTransferLib import methods  # noqa: E402
from ImageQualityTransferLib.core import grid, tensors  # noqa: E402
from ImageQualityTransferLib.dmri.dti import inside_rim, unflagged  # noqa: E402
from ImageQualityTransferLib.dmri.subject import load_subject, make_case  # noqa: E402
from ImageQualityTransferLib.fileio.model_files import model_sha256  # noqa: E402
from ImageQualityTransferLib.fileio.paths import MODELS_DIR  # noqa: E402
from ImageQualityTransferLib.fileio.records import MAP_UNITS  # noqa: E402
from ImageQualityTransferLib.methods.inputs import brain_md_unit  # noqa: E402
from ImageQualityTransferLib.slicer.clean_levels import LEVELS_FILE, model_key  # noqa: E402
from ImageQualityTransferLib.slicer.legends import input_support  # noqa: E402

TRAIN = ROOT / ".." / "shared" / "data" / "dmri" / "train"
# every shipped model of a method with an uncertainty map (registry.json), as the table's command lists them
SHIPPED = ("espcn-hetero:2,espcn-hetero:1x1x2,espcn-hetero:1x1x3,biqt:2,biqt:3,biqt:1x1x2,biqt:1x1x3,rf:2,rf:3,rf:1x1x2,"
           "rf:1x1x3,espcn-hetero-var1:2,espcn-hetero-var1:1x1x2,espcn-hetero-var1:1x1x3,deep-hetero-var1:2,"
           "deep-hetero-var1:3,deep-hetero-var1:1x1x2,deep-hetero-var1:1x1x3")


def levels(vol, factors: str, key: str) -> tuple[float, float]:
    """(median over the input's brain, 99th percentile inside the rim) of a map in its node's unit, read as the overlay
    reads them (legends._median over input_support, legends.display_range)."""
    data = np.asarray(vol.data, np.float64) * (tensors.SHOWN_UNIT if MAP_UNITS.get(key) == "mm2/s" else 1.0)
    present = np.isfinite(data) & (data > 0)
    brain = input_support(present, factors) & present
    rim = inside_rim(present, vol.voxel_size) & present
    return float(np.median(data[brain])), float(np.percentile(unflagged(data[rim]), 99))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("subjects", nargs="*", default=sorted(str(p) for p in TRAIN.glob("*")))
    ap.add_argument("--models", default=SHIPPED,
                    help="method:factors pairs, factors per axis written with x (1x1x2)")
    ap.add_argument("--out", default=str(LEVELS_FILE))
    ap.add_argument("--scales-only", action="store_true",
                    help="add each level's scale and model checksum to the table at --out, running no model")
    args = ap.parse_args(argv)
    if any(Path(s).resolve().parent.name != "train" for s in args.subjects):
        raise SystemExit("clean levels are read on the training subjects only")
    pairs = [(m, grid.factors(tuple(int(x) for x in f.split("x")) if "x" in f else int(f)))
             for m, f in (p.split(":") for p in args.models.split(","))]
    if args.scales_only:
        return add_scales(args.subjects, pairs, Path(args.out))
    got: dict = {}
    for folder in args.subjects:
        subject = load_subject(folder)
        for name, f in pairs:
            case = make_case(subject, f, style="own")
            unit = tensor_scale(case)
            pred = methods.get(name).predict(case.lr, f, case.lr_mask, direction=True)
            model = model_key(f"shipped model {pred.tensor.meta['model_name']}")
            for key, vol in pred.maps().items():
                med, top = levels(vol, grid.text(f), key)
                got.setdefault(model, {}).setdefault(key, []).append((med, top, unit))
                print(f"{subject.name} {model} {key}: median {med:.4g} p99 {top:.4g} md_mode {unit:.4g} "
                      f"median/md_mode {med / unit:.4g}", flush=True)
    table = {"command": "python benchmarks/clean_levels.py --models " + args.models, "models": {}}
    for model, maps in got.items():
        table["models"][model] = {}
        for key, rows in maps.items():
            a = np.array(rows)
            table["models"][model][key] = {"median": round(float(np.median(a[:, 0])), 5),
                                           "top": round(float(np.median(a[:, 1])), 5),
                                           "scale": round(float(np.median(a[:, 2])), 5),
                                           "sha256": model_sha256(MODELS_DIR / f"{model}.json")}
            rel = a[:, 0] / a[:, 2]
            print(f"{model} {key}: median {np.median(a[:, 0]):.4g} (spread over subjects "
                  f"{a[:, 0].std() / a[:, 0].mean():.2f}; over md_mode {rel.std() / rel.mean():.2f}) "
                  f"top {np.median(a[:, 1]):.4g}")
    Path(args.out).write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


def tensor_scale(case) -> float:
    """The case's input tensor scale (µm²/ms) as a run reads it (methods/inputs.py brain_md_unit, its mask given): the
    MD mode of its brain."""
    return brain_md_unit(case.lr, np.asarray(case.lr_mask.data, bool)) * tensors.SHOWN_UNIT


def add_scales(subjects, pairs, out: Path) -> int:
    """--scales-only: each listed model's levels in the table at `out` get the training inputs' median MD mode at its
    factors ("scale") and its sidecar's SHA256, the models unrun."""
    table = json.loads(out.read_text())
    modes: dict = {}
    for folder in subjects:
        subject = load_subject(folder)
        for f in {f for _, f in pairs}:
            case = make_case(subject, f, style="own")
            modes.setdefault(f, []).append(tensor_scale(case))
            print(f"{subject.name} x{grid.text(f)}: md_mode {modes[f][-1]:.4g}", flush=True)
    for name, f in pairs:
        model = f"{name}_x{grid.text(f).replace(',', 'x')}"
        for level in table["models"][model].values():
            level.update(scale=round(float(np.median(modes[f])), 5), sha256=model_sha256(MODELS_DIR / f"{model}.json"))
    out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
