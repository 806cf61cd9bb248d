"""Runs one method in a separate Python process for the Slicer module (every method with a main window, the torch
methods in batch mode: ImageQualityTransfer.py `process`).

    PythonSlicer -m ImageQualityTransferLib.slicer.worker --input LR.npz|LR.nrrd [--dwi] [--mask MASK.nii] --method NAME
        [--factor 2] [--model PATH] [--samples N] [--device cpu|cuda] [--interpolate] [--tta] [--exclude-outliers]
        --outdir DIR [--translations FILE.json]

Reads the low-res tensor (the module's node as read: an .npz of its `data` and `affine`; or Slicer NRRD or NIfTI; with
`--dwi`, a DWI NIfTI with FSL bval/bvec beside it, fitted here first, as `processing.fit_dwi` does in Slicer, with
`--exclude-outliers` without the slices and volumes the tensor model does not fit) and mask, writes `tensor.npy`,
`interpolated.npy` and `uncertainty_<key>.npy` into DIR, the arrays as predicted (read back at once on Slicer's GUI
thread: gzip, then a NRRD's conversions, cost it seconds), and prints JSON lines on stdout:

    {"progress": 0.42, "message": "espcn"}
    {"error": "one line naming the problem and the fix"}            (then exit status 2; 1 for out of memory)
    {"done": true, "outputs": {"tensor": {"path": ..., "kind": "tensor", "affine": [[...]], "support": null},
     "uncertainty/std": {...}, ...},
     "notes": ["the engine's warnings for the run, one line each"]}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


OUT_OF_MEMORY = ("out of memory: close other programs, or run with a smaller factor, fewer Monte Carlo samples or "
                 "without Average over flips, or on a machine with more memory")


def _emit(**msg) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def main(argv=None) -> int:
    from ..core import threads

    threads.wait_passively()  # before torch loads: the clinician's machine is seldom idle
    p = argparse.ArgumentParser(prog="slicer_worker", description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True)
    p.add_argument("--dwi", action="store_true", help="--input is a DWI series: fit its tensors first")
    p.add_argument("--mask")
    p.add_argument("--method", required=True)
    p.add_argument("--factor", default="2", help="2, or per-axis factors such as 1,1,3")
    p.add_argument("--model")
    p.add_argument("--samples", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--interpolate", action="store_true")
    p.add_argument("--tta", action="store_true")
    p.add_argument("--exclude-outliers", action="store_true",
                   help="with --dwi: fit without the slices and volumes the tensor model does not fit (iqt fit's option)")
    p.add_argument("--outdir", required=True)
    p.add_argument("--translations", help="a JSON file of the engine's marked lines in the user's language "
                                          "(core/i18n.py translations): this process has no translator of its own")
    args = p.parse_args(argv)
    if args.translations:
        from ..core import i18n

        with open(args.translations, encoding="utf-8") as f:
            table = {(context, template): said for context, template, said in json.load(f)}
        i18n.install(lambda context, template: table.get((context, template)))

    import numpy as np

    from .. import fileio
    from ..core import grid
    from ..core.errors import IQTError
    from ..core.volume import Volume
    from . import mrml
    from ..core.i18n import options_named
    from .processing import Request, fit_dwi, module_options, predict_volumes

    def progress(fraction, message=None):
        if fraction is not None:
            _emit(progress=round(float(fraction), 4), message=message)

    try:
        if args.input.endswith(".npz"):  # the module's tensor node as read (separate_process.predict_in_subprocess)
            with np.load(args.input, allow_pickle=False) as given:
                lr = Volume(given["data"], given["affine"], "tensor")
        else:
            lr = fileio.load_dwi(args.input) if args.dwi else fileio.load_tensor(args.input)
        mask = fileio.load_mask(args.mask, reference=lr) if args.mask else None
        if args.dwi:
            lr, mask = fit_dwi(lr, mask, progress, exclude=args.exclude_outliers)
        request = Request(args.method, grid.factors(args.factor), args.model, args.samples, args.device, args.interpolate,
                          args.tta, args.exclude_outliers)
        with options_named(module_options()):  # the engine's lines name the module's controls, as in its process
            results = predict_volumes(lr, request, mask, progress)
        out = Path(args.outdir)
        out.mkdir(parents=True, exist_ok=True)
        outputs = {}
        for key, vol in results.items():
            # the arrays as predicted (.npy, the affine in the summary): read back as a NRRD (its components turned
            # to the voxel axes in float64) they had held Slicer's GUI thread 5.8 s on an HCP-size output
            path = out / f"{key.replace('/', '_')}.npy"
            np.save(path, np.asarray(vol.data))
            outputs[key] = {"path": str(path), "kind": vol.kind, "affine": np.asarray(vol.affine, float).tolist(),
                            "support": vol.meta.get("support"),
                            # the model that ran, which the header's 80 bytes drop for long names
                            **{k: vol.meta[k] for k in ("model_name", "model_origin", mrml.NOISE_KEY, mrml.NOISE_INDEX_KEY,
                                                        mrml.TENSOR_SCALE_KEY)
                               if vol.meta.get(k)}}
    except IQTError as exc:  # a model refused for its factors says so (`advice`: methods/factor_choice.py model_hint)
        _emit(error=str(exc), **({"advice": exc.advice} if getattr(exc, "advice", None) else {}))
        return 2
    except Exception as exc:
        from ..core.errors import out_of_memory, start_refused_said

        if not out_of_memory(exc):  # a bug: its traceback is the process's failure (separate_process._run_worker)
            raise
        # the module's own words, not the CLI's options: a MemoryError had reached the user as a traceback's tail; a
        # thread or process refused is named as the CLI names it (core/errors.py)
        refused = start_refused_said(exc)
        _emit(error=OUT_OF_MEMORY if refused is None else f"{refused}: close other programs, raise that limit, or run "
              "on a machine with more memory")
        return 1
    _emit(done=True, outputs=outputs, notes=results["tensor"].meta.get("notes", []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
