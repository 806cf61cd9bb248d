"""`iqt track`, `iqt propagate`, `iqt lesion-check` and `iqt report`: the analysis commands (issue 6).

Kept beside cli.py so that cli.py only registers them (`add_commands`); the same conventions hold: bad
input is an `IQTError` (one line, status 2), outputs are checked before any work and written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import IQTError


def _out_dir(path) -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise IQTError(f"{p}: exists and is not a folder; give a folder for the outputs")
    if not p.parent.exists():
        raise IQTError(f"{p}: the folder {p.parent} does not exist; create it or choose another output path")
    p.mkdir(exist_ok=True)
    return p


def _settings(args):
    from .tractography import TrackingSettings

    return TrackingSettings(fa_threshold=args.fa_threshold, step=args.step, angle=args.angle, density=args.density,
                            min_length=args.min_length, max_length=args.max_length).check()


def cmd_track(args):
    from . import io, tractography

    out = tractography.check_tract_output(args.output)
    extra = [tractography.check_tract_output(p) for p in (args.also or [])]
    s = _settings(args)
    dti = io.load_tensor(args.input, args.tensor_order)
    seeds = io.load_mask(args.seeds)
    mask = io.load_mask(args.mask, dti) if args.mask else None
    if mask is not None and mask.shape3 != dti.shape3:
        raise IQTError(f"{args.mask}: the tracking mask must be on the tensor grid {dti.shape3}")
    lines = tractography.track(dti, seeds, s, mask=None if mask is None else mask.data)
    for p in [out, *extra]:
        tractography.save_tracts(lines, dti, p)
    n_seeds = int(seeds.data.sum()) * s.density**3
    print(f"wrote {', '.join(map(str, [out, *extra]))}: {len(lines)} streamlines from {n_seeds} seeds")


def cmd_propagate(args):
    from . import grid, io, methods, propagation
    from .tractography import TrackingSettings

    r = grid.check_factor(args.factor)
    out = _out_dir(args.output)
    method = methods.get(args.method, model=args.model)
    if not method.gives_uncertainty:
        with_unc = [m["name"] for m in methods.describe() if m["uncertainty"]]
        raise IQTError(f"method {method.name!r} gives no uncertainty to propagate; choose one of: {', '.join(with_unc)}")
    lr = io.load_tensor(args.input, args.tensor_order)
    mask = io.load_mask(args.mask, lr, r) if args.mask else None
    if mask is not None and mask.shape3 != lr.shape3:
        from .degrade import block_average

        mask = lr.replace(data=block_average(mask.data.astype("float32"), r) > 0.5, kind="mask")
    seeds = io.load_mask(args.seeds) if args.seeds else None
    pred = method.predict(lr, r, mask)
    hr_mask = None
    if mask is not None:
        import numpy as np

        hr_mask = np.repeat(np.repeat(np.repeat(mask.data, r, 0), r, 1), r, 2)
    res = propagation.propagate(pred, args.samples, seeds=seeds, mask=hr_mask, rng=args.seed,
                                track=not args.no_tracts, n_seeds=args.n_seeds,
                                settings=TrackingSettings(fa_threshold=args.fa_threshold))
    for name in ("fa_mean", "fa_std", "md_mean", "md_std", "visitation"):
        vol = getattr(res, name)
        if vol is not None:
            io.save_scalar(vol, out / f"{name}.nii.gz")
    summary = {"method": method.name, "input": str(args.input), **res.summary()}
    (out / "propagation.json").write_text(json.dumps(summary, indent=2))
    d = summary["tract_dice_between_samples"]
    tract = f", tract Dice between samples {d['mean']:.3f} ± {d['std']:.3f}" if d else ""
    print(f"wrote {out}/: FA/MD mean and std{', visitation' if d else ''} from {args.samples} samples of {method.name} "
          f"({res.seconds:.1f} s{tract}; diagonal Gaussian approximation)")


def cmd_lesion_check(args):
    from . import lesion, methods
    from .pipeline import load_subject

    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    for n in names:
        if not methods.get(n).gives_uncertainty:
            raise IQTError(f"method {n!r} gives no uncertainty; choose methods that do (see 'iqt methods')")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for k in kinds:
        if k not in lesion.KINDS:
            raise IQTError(f"--kinds {k}: lesion kinds are {', '.join(lesion.KINDS)}")
    rows = []
    for folder in args.subjects:
        rows.extend(lesion.check(load_subject(folder), names, kinds, args.factor, args.radius))
    print(lesion.table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=float))


def cmd_report(args):
    from . import report

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
    sp.add_argument("--seeds", help="seed ROI for the tracts (default: 1000 random points where FA >= 0.3)")
    sp.add_argument("--n-seeds", type=int, default=1000, help="random seeds when no --seeds (default 1000)")
    sp.add_argument("--fa-threshold", type=float, default=0.2)
    sp.add_argument("--no-tracts", action="store_true", help="FA/MD maps only")
    sp.add_argument("--seed", type=int, default=0, help="random seed of the samples")
    sp.add_argument("--tensor-order", default="nifti", choices=["nifti", "fsl", "mrtrix"])
    sp.set_defaults(func=cmd_propagate)

    sp = sub.add_parser("lesion-check", help="inject synthetic lesions, report the ROC AUC of the uncertainty (lesion vs mirrored tissue)")
    sp.add_argument("subjects", nargs="+", help="subject folders (dwi.nii.gz, dwi.bval, dwi.bvec)")
    sp.add_argument("--methods", default="espcn-hetero,biqt", help="uncertainty methods (default espcn-hetero,biqt)")
    sp.add_argument("--kinds", default="edema,tumour", help="lesion kinds: edema, tumour (default both)")
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
