"""`iqt`: the command line for fitting, degrading, upsampling, evaluating, benchmarking and the demo.

Bad input prints one line on stderr naming the problem and the fix, exits with status 2 and writes no
output file (writers are atomic and outputs are checked before any work starts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ...core.errors import IQTError

from ...fileio.paths import NIFTI_SUFFIXES, NRRD_SUFFIXES
from ...fileio.paths import check_output as _check_output

TENSOR_SUFFIXES = NIFTI_SUFFIXES + NRRD_SUFFIXES


def _factor(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"factor must be an integer such as 2 or 3, got {value!r}") from None


# ---------------------------------------------------------------- commands


def cmd_fit(args):
    from ... import fileio
    from ...dmri.dti import brain_mask, fit_dti

    out = _check_output(args.output, TENSOR_SUFFIXES)
    dwi = fileio.load_dwi(args.dwi, args.bval, args.bvec)
    mask = fileio.load_mask(args.mask, dwi) if args.mask else brain_mask(dwi)
    fileio.save_tensor(fit_dti(dwi, mask), out)
    if args.mask_out:
        fileio.save_mask(mask, _check_output(args.mask_out, what="mask"))
    print(f"wrote {out}")


def cmd_mask(args):
    from ... import fileio
    from ...dmri.dti import brain_mask

    out = _check_output(args.output, what="mask")
    mask = brain_mask(fileio.load_dwi(args.dwi, args.bval, args.bvec))
    fileio.save_mask(mask, out)
    print(f"wrote {out} ({int(mask.data.sum())} voxels)")


def cmd_degrade(args):
    from ...dmri import degrade
    from ...core import grid
    from ... import fileio
    from ...dmri.dti import brain_mask

    r = grid.check_factor(args.factor)
    shift = tuple(int(s) for s in args.shift.split(","))
    if len(shift) != 3 or any(not 0 <= s < r for s in shift):
        raise IQTError(f"--shift {args.shift}: give three integers in [0, {r - 1}] separated by commas, e.g. 0,1,0")
    out = _check_output(args.output, TENSOR_SUFFIXES)
    mask_out = _check_output(args.mask_out, what="mask") if args.mask_out else None
    dwi = fileio.load_dwi(args.dwi, args.bval, args.bvec)
    mask = fileio.load_mask(args.mask, dwi) if args.mask else brain_mask(dwi)
    pair = degrade.degrade(dwi, mask.data, r, shift)
    fileio.save_tensor(pair.tensor, out)
    if mask_out:
        fileio.save_mask(pair.mask, mask_out)
    print(f"wrote {out} {pair.tensor.shape3}")


def _output_stem(path: Path) -> str:
    name = path.name
    for suf in sorted(TENSOR_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return path.stem


def cmd_upsample(args):
    from ...core import grid
    from ... import fileio, methods

    r = grid.check_factor(args.factor)
    method = methods.get(args.method or methods.default_method(), model=args.model)
    variational = getattr(method, "variational", False)
    if args.propagate:
        # `--samples N --propagate`: N draws from the predictive distribution (the Monte Carlo passes of the
        # variational methods are set by --mc-samples)
        from .analysis import PROPAGATION_DEFAULTS, check_propagation

        if args.samples is None:
            args.samples = 100
        check_propagation(method, args.samples)
        for k, v in PROPAGATION_DEFAULTS.items():
            if getattr(args, k) is None:
                setattr(args, k, v)
    else:
        given = [f"--{k.replace('_', '-')}" for k in ("seeds", "n_seeds", "fa_threshold", "seed") if getattr(args, k) is not None]
        given += ["--no-tracts"] if args.no_tracts else []
        if given:
            raise IQTError(f"{', '.join(given)}: {'applies' if len(given) == 1 else 'apply'} only with --propagate; "
                           "add --propagate (and a method with uncertainty) or drop "
                           f"{'it' if len(given) == 1 else 'them'}")
        if args.samples is not None:
            if not variational:
                raise IQTError(f"method {method.name!r} takes no Monte Carlo samples; drop --samples "
                               "(it applies to espcn-hetero-var1 and espcn-hetero-var2), or add --propagate to draw "
                               "samples of the output from a method with uncertainty")
            if args.mc_samples is not None:
                raise IQTError("give the Monte Carlo samples once: --samples or --mc-samples (without --propagate they are the same)")
            args.mc_samples = args.samples
    if args.mc_samples is not None:
        if not variational:
            raise IQTError(f"method {method.name!r} takes no Monte Carlo samples; drop --mc-samples "
                           "(it applies to espcn-hetero-var1 and espcn-hetero-var2)")
        if args.mc_samples < 0:
            raise IQTError(f"--mc-samples {args.mc_samples}: give a number of Monte Carlo samples >= 0")
        method.samples = args.mc_samples
    out = _check_output(args.output, TENSOR_SUFFIXES)
    if args.uncertainty:
        if not method.gives_uncertainty:
            with_unc = [m["name"] for m in methods.describe() if m["uncertainty"]]
            raise IQTError(
                f"method {method.name!r} gives no uncertainty; drop --uncertainty"
                + (f" or choose one of: {', '.join(with_unc)}" if with_unc else "")
            )
        unc_out = _check_output(args.uncertainty, what="uncertainty")
    lr = fileio.load_tensor(args.input, args.tensor_order)
    mask = fileio.load_mask(args.mask, lr, r) if args.mask else None
    if mask is not None and mask.shape3 != lr.shape3:
        from ...dmri.degrade import block_average

        mask = lr.replace(data=block_average(mask.data.astype("float32"), r) > 0.5, kind="mask")
    seeds = None
    if args.propagate:
        from .analysis import load_seeds, propagation_paths

        seeds = load_seeds(args.seeds)
        prop_paths = propagation_paths(out.parent, _output_stem(out) + "_")
    pred = method.predict(lr, r, mask)
    res = None
    if args.propagate:  # sampled before anything is written, so a failure leaves no partial output
        from .analysis import propagate_prediction

        res = propagate_prediction(pred, args.samples, lr_mask=mask, factor=r, seeds=seeds, seed=args.seed,
                                   track=not args.no_tracts, n_seeds=args.n_seeds, fa_threshold=args.fa_threshold)
    fileio.save_tensor(pred.tensor, out)
    if args.uncertainty:
        fileio.save_scalar(pred.uncertainty["std"], unc_out)
        stem = _output_stem(unc_out)
        for key, vol in pred.uncertainty.items():  # Monte Carlo parts, MD and FA std beside the total
            if key != "std":
                fileio.save_scalar(vol, unc_out.with_name(f"{stem}_{key}{unc_out.name[len(stem):]}"))
    print(f"wrote {out} {pred.tensor.shape3} ({method.name})")
    if res is not None:
        from .analysis import write_propagation

        print(write_propagation(res, prop_paths, method.name, args.input))


def cmd_evaluate(args):
    import numpy as np

    from ...dmri import degrade
    from ...analysis import evaluation
    from ...core import grid
    from ... import fileio

    r = grid.check_factor(args.factor)
    pred = fileio.load_tensor(args.pred, args.tensor_order)
    truth = fileio.load_tensor(args.truth, args.tensor_order)
    mask = fileio.load_mask(args.mask, truth)
    shape = pred.shape3
    if any(t < p or t - p >= r for t, p in zip(truth.shape3, shape)) or any(s % r for s in shape):
        raise IQTError(
            f"the prediction {shape} is not the factor-{r} grid of the reference {truth.shape3}; "
            f"give the output of 'iqt upsample' on 'iqt degrade' of the same subject with the same --factor"
        )
    t = degrade.hr_crop(truth.data, r)
    m = degrade.hr_crop(mask.data, r)
    lr_mask = degrade.block_average(m.astype(np.float32), r) > 0.5
    unc = fileio.load_scalar(args.uncertainty).data if args.uncertainty else None
    if unc is not None and unc.shape[:3] != shape:
        raise IQTError(f"{args.uncertainty}: shape {unc.shape} differs from the prediction {shape}")
    direc = fileio.load_scalar(args.direction).data if args.direction else None
    if direc is not None and direc.shape != shape:
        raise IQTError(f"{args.direction}: shape {direc.shape} differs from the prediction {shape}; give the "
                       f"_direction map that 'iqt upsample --uncertainty' wrote beside this prediction")
    floor = None
    if args.dwi:
        dwi = fileio.load_dwi(args.dwi, args.bval, args.bvec)
        if dwi.shape3 != truth.shape3:
            raise IQTError(f"{args.dwi}: the DWI grid {dwi.shape3} differs from the reference {truth.shape3}")
        floor = evaluation.noise_floor(degrade.hr_crop(dwi.data, r), dwi.bvals, dwi.bvecs, t, m)
    result = evaluation.evaluate(pred.data, t, m, lr_mask, r, uncertainty=unc, floor_std=floor, direction=direc)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    for region in ("interior", "exterior"):
        row = result[region]
        extra = "".join(f", {k} {row[k]:.3f}" for k in ("noise_floor", "spearman", "within_2sigma") if row.get(k) is not None)
        print(f"{region}: DT-RMSE {row['dt_rmse']:.3f} (1e-5 mm^2/s), FA RMSE {row['fa_rmse']:.4f}, "
              f"MD RMSE {row['md_rmse']:.3f}, PSNR {row['psnr']:.2f} dB, principal-direction error "
              f"{row['angle_error']:.1f} deg (median, FA >= {evaluation.TRACKED_FA}), {row['n_voxels']} voxels{extra}")
    if "brain" in result:
        row = result["brain"]
        parts = [f"{k} {row[k]:.3f}" for k in ("spearman", "within_2sigma", "direction_spearman", "direction_within_2")
                 if k in row]
        print(f"whole brain: {', '.join(parts)}, {row['n_voxels']} voxels")


def cmd_benchmark(args):
    from ...analysis import benchmark
    from ... import methods

    names = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else methods.names()
    for n in names:
        methods.get(n)
    if args.speed:
        rows = benchmark.speed(names)
        print(benchmark.speed_table(rows))
    else:
        if not args.subjects:
            raise IQTError("give one or more subject folders (each with dwi.nii.gz, dwi.bval, dwi.bvec), or --speed")
        tracts = getattr(args, "tracts", False)
        rows = benchmark.run(args.subjects, names, args.factor, progress=True, tracts=tracts)
        print(benchmark.markdown_table(rows))
        if tracts:
            print()
            print(benchmark.tract_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=float))


def cmd_demo(args):
    from .. import demo

    demo.run(out_dir=args.output, subject_dir=args.subject, factor=args.factor, method_names=args.methods)


FOREST_TRAINABLE = ("global-linear", "rf", "biqt")


def _check_train_args(args, suffix) -> Path:
    """The model path's suffix and folder, and that every subject folder holds a DWI, before any work."""
    out = Path(args.output)
    if out.suffix != suffix:
        raise IQTError(f"{out}: a {args.method} model name must end in {suffix} (the JSON sidecar is written beside it)")
    if not out.parent.exists():
        raise IQTError(f"{out}: the folder {out.parent} does not exist; create it or choose another output path")
    for d in args.subjects:
        if not (Path(d) / "dwi.nii.gz").exists() and not (Path(d) / "dwi.nii").exists():
            raise IQTError(f"{d}: not a subject folder (it needs dwi.nii.gz, dwi.bval and dwi.bvec)")
    return out


def cmd_train_forest(args):
    """`iqt train --method global-linear|rf|biqt`: numpy forests, a .npz model and its JSON sidecar."""
    import time

    from ...core import grid
    from ...methods.forest import model_io, training
    from ...core.progress import progress_bar

    r = grid.check_factor(args.factor)
    out = _check_train_args(args, ".npz")
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.verbose else None
    bar = progress_bar(total=8 if args.method != "global-linear" else 1, desc=f"train {args.method}")
    t0 = time.perf_counter()
    model = training.train(args.method, args.subjects, factor=r, seed=args.seed, log=log,
                           progress=lambda done, total: bar.update(1))
    bar.close()
    model.meta["training"]["command"] = "iqt " + " ".join(sys.argv[1:]) if sys.argv else None
    side = model_io.save(model, out)
    if args.register:
        model_io.register(side, out.parent)
    leaves = f", {model.forest.n_leaves} leaves in {len(model.forest.trees)} trees" if model.forest is not None else ""
    print(f"wrote {out} and {side.name} ({model.meta['training']['examples']} examples{leaves}, "
          f"{(time.perf_counter() - t0) / 60:.1f} min)")


def cmd_train(args):
    import time

    from ...core import grid

    if args.method in FOREST_TRAINABLE:
        return cmd_train_forest(args)
    from ...methods.cnn import require_torch

    r = grid.check_factor(args.factor)
    cnn_trainable = ("espcn", "espcn-hetero", "espcn-hetero-var1", "espcn-hetero-var2")
    if args.method not in cnn_trainable:
        raise IQTError(f"--method {args.method}: trainable methods are {', '.join(FOREST_TRAINABLE + cnn_trainable)}")
    out = _check_train_args(args, ".pt")
    if args.epochs is not None and args.epochs < 1:
        raise IQTError("--epochs must be at least 1")
    torch = require_torch()
    from ...methods.cnn import model_io, training

    if args.threads:
        torch.set_num_threads(args.threads)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.verbose else None
    t0 = time.perf_counter()
    items = training.load_items(args.subjects, r, log=log)
    prep = time.perf_counter() - t0
    print(f"training data: {len(items)} degraded volumes from {len(args.subjects)} subject(s) ({prep:.0f} s)", flush=True)
    epochs = args.epochs if args.epochs is not None else (10_000 if args.minutes else 200)
    net, meta, history = training.train(items, method=args.method, factor=r, seed=args.seed, epochs=epochs,
                                        minutes=args.minutes, log=log, progress=True, init=args.init)
    meta["training"]["data_preparation_seconds"] = prep
    meta["training"]["command"] = "iqt " + " ".join(sys.argv[1:]) if sys.argv else None
    side = model_io.save(net, meta, out)
    if args.register:
        model_io.register(side, out.parent)
    print(f"wrote {out} and {side.name} ({meta['training']['epochs_run']} epochs, {meta['training']['stopped_by']}, "
          f"best validation loss {meta['training']['best_val_loss']:.4f}, {meta['training']['minutes']:.1f} min)")


def cmd_methods(args):
    from ... import methods

    default = methods.default_method()
    for m in methods.describe():
        flags = ("uncertainty" if m["uncertainty"] else "no uncertainty") + (", learned" if m["learned"] else "")
        star = " (default)" if m["name"] == default else ""
        print(f"{m['name']:<18} {m['description']} [{flags}]{star}")


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iqt", description="Image Quality Transfer for diffusion MRI (DTI super-resolution with uncertainty).")
    p.add_argument("--debug", action="store_true", help="show a traceback on unexpected errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def dwi_args(sp):
        sp.add_argument("dwi", help="4D DWI NIfTI")
        sp.add_argument("--bval", help="FSL b-values (default: beside the DWI)")
        sp.add_argument("--bvec", help="FSL b-vectors (default: beside the DWI)")

    sp = sub.add_parser("fit", help="fit DTI (dipy WLS) to a DWI series")
    dwi_args(sp)
    sp.add_argument("--mask", help="brain mask (default: median Otsu on the b0)")
    sp.add_argument("--mask-out", help="also write the brain mask used")
    sp.add_argument("-o", "--output", required=True, help="tensor output (.nii.gz SYMMATRIX or .nrrd)")
    sp.set_defaults(func=cmd_fit)

    sp = sub.add_parser("mask", help="brain mask from the b0 (median Otsu)")
    dwi_args(sp)
    sp.add_argument("-o", "--output", required=True)
    sp.set_defaults(func=cmd_mask)

    sp = sub.add_parser("degrade", help="synthetic low quality: block-average DWIs by the factor, then fit DTI")
    dwi_args(sp)
    sp.add_argument("--mask", help="high-res brain mask (default: median Otsu)")
    sp.add_argument("--factor", type=_factor, default=2)
    sp.add_argument("--shift", default="0,0,0", help="block shift i,j,k in [0, factor-1] (default 0,0,0)")
    sp.add_argument("--mask-out", help="also write the low-res mask (block majority)")
    sp.add_argument("-o", "--output", required=True, help="low-res tensor output")
    sp.set_defaults(func=cmd_degrade)

    sp = sub.add_parser("upsample", help="high-resolution tensors from a low-resolution DTI volume")
    sp.add_argument("input", help="low-res tensor volume (NIfTI SYMMATRIX, 4D with --tensor-order, or Slicer .nrrd)")
    sp.add_argument("-o", "--output", required=True, help="high-res tensor output (.nii.gz, or .nrrd for Slicer)")
    sp.add_argument("--method", help="method name (see 'iqt methods'; default: the best shipped)")
    sp.add_argument("--factor", type=_factor, default=2)
    sp.add_argument("--mask", help="brain mask on the input grid (or on the high-res grid)")
    sp.add_argument("--uncertainty", help="write the per-voxel standard deviation map here (methods with uncertainty) "
                    "and NAME_direction beside it (the principal direction's uncertainty, degrees); the Monte Carlo "
                    "methods also write NAME_std_intrinsic, NAME_std_parameter, NAME_md_std and NAME_fa_std")
    sp.add_argument("--model", help="model file to use instead of the shipped one (learned methods)")
    sp.add_argument("--samples", type=int,
                    help="with --propagate: number of samples drawn from the predictive distribution (default 100); "
                         "without: Monte Carlo samples for espcn-hetero-var1/-var2 (as --mc-samples)")
    sp.add_argument("--mc-samples", type=int, help="Monte Carlo samples for espcn-hetero-var1/-var2 (default 10; 0: one "
                                                   "deterministic pass, intrinsic uncertainty only)")
    sp.add_argument("--propagate", action="store_true",
                    help="uncertainty propagation (methods with uncertainty): draw --samples high-res DTI samples and "
                         "write FA/MD mean/std and tract visitation maps beside the output (<name>_fa_mean.nii.gz, ..., "
                         "<name>_propagation.json)")
    from .analysis import add_propagation_args

    add_propagation_args(sp, defaults=False)
    sp.add_argument("--tensor-order", default="nifti", choices=["nifti", "fsl", "mrtrix"], help="component order of a 4D input")
    sp.set_defaults(func=cmd_upsample)

    sp = sub.add_parser("evaluate", help="DT-RMSE, FA/MD errors, PSNR per region (and uncertainty calibration)")
    sp.add_argument("--pred", required=True, help="high-res prediction")
    sp.add_argument("--truth", required=True, help="high-res reference tensors")
    sp.add_argument("--mask", required=True, help="high-res brain mask")
    sp.add_argument("--factor", type=_factor, default=2)
    sp.add_argument("--uncertainty", help="per-voxel standard deviation map of the prediction")
    sp.add_argument("--direction", help="the prediction's direction uncertainty map (degrees; the _direction file "
                                        "'iqt upsample --uncertainty' writes), scored against the principal-direction error")
    sp.add_argument("--dwi", help="the reference's DWI, to report its noise floor beside the errors")
    sp.add_argument("--bval")
    sp.add_argument("--bvec")
    sp.add_argument("--tensor-order", default="nifti", choices=["nifti", "fsl", "mrtrix"])
    sp.add_argument("--json", help="also write the metrics as JSON")
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("benchmark", help="the whole protocol on subject folders, or --speed on an HCP-sized volume")
    sp.add_argument("subjects", nargs="*", help="folders holding dwi.nii.gz, dwi.bval, dwi.bvec")
    sp.add_argument("--methods", help="comma-separated method names (default: all); cubic is always included")
    sp.add_argument("--factor", type=_factor, default=2)
    sp.add_argument("--speed", action="store_true", help="time 'iqt upsample' end to end on a 72x87x72 low-res volume")
    sp.add_argument("--tracts", action="store_true",
                    help="also compare tractography: tract-density Dice to the reference and false-positive density (opt-in)")
    sp.add_argument("--json", help="also write the rows as JSON")
    sp.set_defaults(func=cmd_benchmark)

    sp = sub.add_parser("demo", help="the main job on a built-in phantom (or --subject DIR): every method, metrics and a figure")
    sp.add_argument("--subject", help="run on this subject folder instead of the phantom")
    sp.add_argument("-o", "--output", default="iqt-demo", help="output folder (default ./iqt-demo)")
    sp.add_argument("--factor", type=_factor, default=2)
    sp.add_argument("--methods", help="comma-separated method names (default: all)")
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("train", help="train a learned method (3D-ESPCN, IQT-RF, BIQT-RF, global-linear) on high-quality subject folders")
    sp.add_argument("--method", default="espcn", help="espcn, espcn-hetero, rf, biqt or global-linear (default espcn)")
    sp.add_argument("--subjects", nargs="+", required=True, help="folders holding dwi.nii.gz, dwi.bval, dwi.bvec")
    sp.add_argument("--factor", type=_factor, default=2)
    sp.add_argument("-o", "--output", required=True, help="model weights file (.pt for CNNs, .npz for rf/biqt/global-linear); the .json sidecar is written beside it")
    sp.add_argument("--seed", type=int, default=0, help="random seed (with --epochs the run is deterministic)")
    sp.add_argument("--epochs", type=int, help="maximum epochs of 200 batches (default 200, or unlimited with --minutes)")
    sp.add_argument("--minutes", type=float, help="wall-time budget for the training loop")
    sp.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    sp.add_argument("--register", action="store_true", help="add the model to registry.json in its folder")
    sp.add_argument("--init", help="CNN: warm-start from this trained model (e.g. an espcn-hetero .pt for espcn-hetero-var1)")
    sp.add_argument("-v", "--verbose", action="store_true", help="log data preparation and every epoch")
    sp.set_defaults(func=cmd_train)

    from .analysis import add_commands as _add_analysis_commands  # track, propagate, lesion-check, report

    _add_analysis_commands(sub, _factor)

    sp = sub.add_parser("methods", help="list the methods")
    sp.set_defaults(func=cmd_methods)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except IQTError as exc:
        print(f"iqt: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("iqt: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: say so in one line unless --debug
        if args.debug or os.environ.get("IQT_DEBUG"):
            raise
        print(f"iqt: internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
