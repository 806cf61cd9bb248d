"""`iqt track`, `iqt propagate`, `iqt lesion-check` and `iqt report`: the analysis commands.

Kept beside cli.py so that cli.py only registers them (`add_commands`); the same conventions hold: bad
input is an `IQTError` (one line, status 2), outputs are checked before any work and written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...core.errors import IQTError


def _out_dir(path) -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise IQTError(f"{p}: exists and is not a folder; give a folder for the outputs")
    if not p.parent.exists():
        raise IQTError(f"{p}: the folder {p.parent} does not exist; create it or choose another output path")
    p.mkdir(exist_ok=True)
    return p


def _settings(args):
    from ...analysis.tractography import TrackingSettings

    return TrackingSettings(fa_threshold=args.fa_threshold, step=args.step, angle=args.angle, density=args.density,
                            min_length=args.min_length, max_length=args.max_length).check()


def cmd_track(args):
    from ... import fileio
    from ...analysis import tractography

    out = tractography.check_tract_output(args.output)
    extra = [tractography.check_tract_output(p) for p in (args.also or [])]
    s = _settings(args)
    dti = fileio.load_tensor(args.input, args.tensor_order)
    seeds = fileio.load_mask(args.seeds)
    mask = fileio.load_mask(args.mask, dti) if args.mask else None
    if mask is not None and mask.shape3 != dti.shape3:
        raise IQTError(f"{args.mask}: the tracking mask must be on the tensor grid {dti.shape3}")
    lines = tractography.track(dti, seeds, s, mask=None if mask is None else mask.data)
    for p in [out, *extra]:
        tractography.save_tracts(lines, dti, p)
    n_seeds = int(seeds.data.sum()) * s.density**3
    print(f"wrote {', '.join(map(str, [out, *extra]))}: {len(lines)} streamlines from {n_seeds} seeds")


# ---------------------------------------------------------------- uncertainty propagation (shared by
# `iqt propagate` and `iqt upsample --propagate`)

PROPAGATION_MAPS = ("fa_mean", "fa_std", "md_mean", "md_std", "visitation")
PROPAGATION_DEFAULTS = {"n_seeds": 1000, "fa_threshold": 0.2, "seed": 0}


def propagation_paths(folder, prefix: str = "") -> dict:
    """Where the propagation outputs go: `<folder>/<prefix>fa_mean.nii.gz` ... `<prefix>visitation.nii.gz`
    and `<prefix>propagation.json` (`iqt propagate`: no prefix, in its folder; `iqt upsample --propagate`:
    beside the output, prefixed with its name)."""
    folder = Path(folder)
    paths = {n: folder / f"{prefix}{n}.nii.gz" for n in PROPAGATION_MAPS}
    paths["json"] = folder / f"{prefix}propagation.json"
    return paths


def check_propagation(method, samples: int) -> None:
    """Before any work: the method must give an uncertainty to sample from, and N >= 2."""
    from ... import methods

    if not method.gives_uncertainty:
        with_unc = [m["name"] for m in methods.describe() if m["uncertainty"]]
        raise IQTError(f"method {method.name!r} gives no uncertainty to propagate; choose one of: {', '.join(with_unc)}")
    if samples is None or int(samples) < 2:
        raise IQTError(f"--samples {samples}: uncertainty propagation needs at least 2 samples (e.g. --samples 100)")


def propagate_prediction(pred, samples: int, *, lr_mask=None, factor: int = 2, seeds=None, seed: int = 0,
                         track: bool = True, n_seeds: int = 1000, fa_threshold: float = 0.2):
    """Draw `samples` high-res DTI samples from `pred` (propagation.propagate) inside the high-res
    mask implied by the low-res mask `lr_mask` (a Volume or None)."""
    from ...analysis import propagation
    from ...core.grid import repeat_blocks
    from ...analysis.tractography import TrackingSettings

    hr_mask = None if lr_mask is None else repeat_blocks(lr_mask.data.astype(bool), factor)
    return propagation.propagate(pred, samples, seeds=seeds, mask=hr_mask, rng=seed, track=track, n_seeds=n_seeds,
                                 settings=TrackingSettings(fa_threshold=fa_threshold))


def write_propagation(res, paths: dict, method_name: str, input_path) -> str:
    """Write the maps and the JSON summary to `paths` (propagation_paths); returns the one-line message."""
    from ... import fileio

    written = []
    for name in PROPAGATION_MAPS:
        vol = getattr(res, name)
        if vol is not None:
            fileio.save_scalar(vol, paths[name])
            written.append(paths[name].name)
    summary = {"method": method_name, "input": str(input_path), **res.summary()}
    fileio.atomic_write(paths["json"], lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)))
    d = summary["tract_dice_between_samples"]
    tract = f", tract Dice between samples {d['mean']:.3f} ± {d['std']:.3f}" if d else ""
    return (f"wrote {', '.join(written)} and {paths['json'].name} in {paths['json'].parent}/: FA/MD mean and std"
            f"{', visitation' if d else ''} from {res.n_samples} samples of {method_name} "
            f"({res.seconds:.1f} s{tract}; diagonal Gaussian approximation)")


def load_seeds(path):
    from ... import fileio

    return fileio.load_mask(path) if path else None


def cmd_propagate(args):
    from ...core import grid
    from ... import fileio, methods

    r = grid.check_factor(args.factor)
    method = methods.get(args.method, model=args.model)
    check_propagation(method, args.samples)
    lr = fileio.load_tensor(args.input, args.tensor_order)
    mask = fileio.load_mask(args.mask, lr, r) if args.mask else None
    if mask is not None and mask.shape3 != lr.shape3:
        from ...dmri.degrade import block_average

        mask = lr.replace(data=block_average(mask.data.astype("float32"), r) > 0.5, kind="mask")
    seeds = load_seeds(args.seeds)
    out = _out_dir(args.output)
    pred = method.predict(lr, r, mask)
    res = propagate_prediction(pred, args.samples, lr_mask=mask, factor=r, seeds=seeds, seed=args.seed,
                               track=not args.no_tracts, n_seeds=args.n_seeds, fa_threshold=args.fa_threshold)
    print(write_propagation(res, propagation_paths(out), method.name, args.input))


def add_propagation_args(sp, defaults: bool = True) -> None:
    """The propagation options shared by `iqt propagate` and `iqt upsample --propagate` (with
    defaults=False they default to None, so that upsample can tell they were given without --propagate)."""
    d = PROPAGATION_DEFAULTS if defaults else dict.fromkeys(PROPAGATION_DEFAULTS)
    sp.add_argument("--seeds", help="seed ROI for the tracts (default: 1000 random points where FA >= 0.3)")
    sp.add_argument("--n-seeds", type=int, default=d["n_seeds"], help="random seeds when no --seeds (default 1000)")
    sp.add_argument("--fa-threshold", type=float, default=d["fa_threshold"], help="tracking stops below this FA (default 0.2)")
    sp.add_argument("--no-tracts", action="store_true", help="FA/MD maps only, no tract variability")
    sp.add_argument("--seed", type=int, default=d["seed"], help="random seed of the samples (default 0)")


def cmd_lesion_check(args):
    from ...analysis import lesion
    from ... import methods
    from ...dmri.subject import load_subject

    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    for n in names:
        if not methods.get(n).gives_uncertainty:
            raise IQTError(f"method {n!r} gives no uncertainty; choose methods that do (see 'iqt methods')")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for k in kinds:
        if k not in lesion.KINDS:
            raise IQTError(f"--kinds {k}: lesion kinds are {', '.join(lesion.KINDS)}")
    if args.mc_samples is not None and args.mc_samples < 0:
        raise IQTError(f"--mc-samples {args.mc_samples}: give a number of Monte Carlo samples >= 0")
    objects = {}
    for n in names:
        objects[n] = methods.get(n)
        if args.mc_samples is not None and getattr(objects[n], "variational", False):
            objects[n].samples = args.mc_samples
    rows = []
    for folder in args.subjects:
        rows.extend(lesion.check(load_subject(folder), names, kinds, args.factor, args.radius, method_objects=objects))
    print(lesion.table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=float))


def cmd_report(args):
    from .. import report

    out = Path(args.output)
    if out.suffix.lower() not in (".html", ".htm"):
        raise IQTError(f"{out}: the report name must end in .html")
    if not out.parent.exists():
        raise IQTError(f"{out}: the folder {out.parent} does not exist; create it or choose another output path")
    names = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    path = report.run(out, subject_dir=args.subject, factor=args.factor, method_names=names,
                      tracts=not args.no_tracts, n_seeds=args.n_seeds)
    print(f"wrote {path}")


def add_commands(sub, factor_type) -> None:
    """Register the analysis subcommands on cli.py's subparsers."""

    def tracking_args(sp):
        sp.add_argument("--fa-threshold", type=float, default=0.2, help="stop where FA falls below this (default 0.2)")
        sp.add_argument("--step", type=float, default=0.5, help="step length in mm (default 0.5)")
        sp.add_argument("--angle", type=float, default=45.0, help="largest turn per step in degrees (default 45)")
        sp.add_argument("--density", type=int, default=1, help="seeds per voxel axis in each seed voxel (default 1)")
        sp.add_argument("--min-length", type=float, default=10.0, help="drop streamlines shorter than this, mm (default 10)")
        sp.add_argument("--max-length", type=float, default=250.0, help="longest streamline, mm (default 250)")

    sp = sub.add_parser("track", help="deterministic DTI tractography (principal direction, FA stop) from a seed ROI")
    sp.add_argument("input", help="tensor volume (NIfTI SYMMATRIX, 4D with --tensor-order, or Slicer .nrrd)")
    sp.add_argument("--seeds", required=True, help="seed ROI (NIfTI mask, any grid in the same world space)")
    sp.add_argument("-o", "--output", required=True, help="tractogram: .trk, or VTK polydata .vtk/.vtp (Slicer loads both)")
    sp.add_argument("--also", action="append", help="also write the same streamlines here (.trk/.vtk/.vtp; repeatable)")
    sp.add_argument("--mask", help="tracking mask on the tensor grid (tracking stops outside it)")
    sp.add_argument("--tensor-order", default="nifti", choices=["nifti", "fsl", "mrtrix"])
    tracking_args(sp)
    sp.set_defaults(func=cmd_track)

    sp = sub.add_parser("propagate", help="uncertainty propagation: N high-res samples -> FA/MD mean/std, tract variability")
    sp.add_argument("input", help="low-res tensor volume")
    sp.add_argument("-o", "--output", required=True, help="output folder (fa_mean, fa_std, md_mean, md_std, visitation, propagation.json)")
    sp.add_argument("--method", default="espcn-hetero", help="a method with uncertainty (default espcn-hetero)")
    sp.add_argument("--model", help="model file to use instead of the shipped one")
    sp.add_argument("--samples", type=int, default=100, help="number of samples (default 100)")
    sp.add_argument("--factor", type=factor_type, default=2)
    sp.add_argument("--mask", help="brain mask on the input grid (or on the high-res grid)")
    add_propagation_args(sp)
    sp.add_argument("--tensor-order", default="nifti", choices=["nifti", "fsl", "mrtrix"])
    sp.set_defaults(func=cmd_propagate)

    sp = sub.add_parser("lesion-check", help="inject synthetic lesions, report the ROC AUC of each uncertainty map (lesion vs mirrored tissue)")
    sp.add_argument("subjects", nargs="+", help="subject folders (dwi.nii.gz, dwi.bval, dwi.bvec)")
    sp.add_argument("--methods", default="espcn-hetero-var1,biqt",
                    help="uncertainty methods; every uncertainty map of each is scored (default espcn-hetero-var1,biqt)")
    sp.add_argument("--kinds", default="edema,tumour,glioma",
                    help="lesion kinds: edema, tumour (lower FA, same MD), glioma (lower FA, MD x1.68) (default all)")
    sp.add_argument("--mc-samples", type=int, help="Monte Carlo samples of the variational methods (default 10)")
    sp.add_argument("--radius", type=float, default=8.0, help="lesion radius in mm (default 8)")
    sp.add_argument("--factor", type=factor_type, default=2)
    sp.add_argument("--json", help="also write the rows as JSON")
    sp.set_defaults(func=cmd_lesion_check)

    sp = sub.add_parser("report", help="one self-contained HTML page: FA/colour-FA views, uncertainty, errors, metrics, tracts")
    sp.add_argument("-o", "--output", required=True, help="report file (.html)")
    sp.add_argument("--subject", help="subject folder (default: the built-in phantom)")
    sp.add_argument("--methods", help="comma-separated methods (default: cubic and every shipped learned method that runs here)")
    sp.add_argument("--factor", type=factor_type, default=2)
    sp.add_argument("--no-tracts", action="store_true", help="leave out tractography")
    sp.add_argument("--n-seeds", type=int, default=2000, help="tractography seeds (default 2000)")
    sp.set_defaults(func=cmd_report)
