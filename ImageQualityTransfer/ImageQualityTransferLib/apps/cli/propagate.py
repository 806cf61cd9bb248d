"""`iqt propagate`: uncertainty propagation, N high-res samples -> FA/MD mean and std maps, tract variability."""

from __future__ import annotations

from ...core.errors import IQTError
from ...fileio.staging import make_folder, say  # 'wrote' lines: printed once the run's outputs are in place
from . import options


# where an input is at one of the folder's map names: the maps' names are not the user's to change
INSTEAD = "give another output folder (-o), or a copy of that input from another folder"


def add_parsers(sub) -> None:
    sp = sub.add_parser("propagate", help="uncertainty propagation: N high-res samples -> FA/MD mean/std, tract variability")
    sp.add_argument("input", help="low-res tensor volume")
    sp.add_argument("-o", "--output", required=True, help="output folder (fa_mean, fa_std, md_mean, md_std, visitation, propagation.json)")
    sp.add_argument("--method", help="a method with uncertainty (default: with --model, the model's own method, else the "
                                     "best with an uncertainty map for the factors, deep-hetero-var1 where it has a model)")
    options.add_method_settings(sp)
    sp.add_argument("--samples", type=int, default=100, help="number of samples (default 100)")
    options.add_factor(sp, voxel_size=True, model=True)
    sp.add_argument("--mask", help="brain mask on the input grid (or on the high-res grid)")
    options.add_propagation(sp)  # settled in run: options made idle are refused
    options.add_tensor_order(sp)
    sp.set_defaults(func=run)


def run(args):
    import time

    from ... import fileio, methods
    from ...analysis import propagation
    from ...core import grid
    from ...methods.factor_choice import model_voxel_size
    from .upsample import _refuse_foreign, input_shape3, refuse_foreign_summary

    t0 = time.perf_counter()
    options.settle_propagation(args)
    f = options.factors(args)  # None with --voxel-size (or a --model alone): from the input's grid, read first
    lr = None
    if f is None:
        lr = fileio.load_tensor(args.input, args.tensor_order, getattr(args, "order_stated", None))
        f = options.factors(args, lr.voxel_size, lr.affine)
    method = methods.get(options.method_name(args, f, uncertainty=True, voxel_size=None if lr is None or args.voxel_size
                                             is None else lr.voxel_size), **options.method_settings(args))
    try:
        options.check_propagation(method, args, f, None if lr is None or args.voxel_size is None else lr.voxel_size)
    except IQTError as exc:
        if args.voxel_size is None:
            raise
        raise IQTError(f"--voxel-size {args.voxel_size:g} chose {options.voxel_size_line(f, lr.voxel_size)}; {exc}"
                       + (options.coarser_voxel_size(lr.voxel_size, f, lambda g: method.name in methods.ready(g))
                          if method.learned and not args.model and method.name not in methods.ready(f) else "")) from None
    out = options.out_dir(args.output)
    plan = fileio.Outputs(args.input, args.mask, args.seeds, *options.model_files(args.model))
    paths = propagation.output_paths(out)
    earlier = paths.pop("visitation") if args.no_tracts else None  # not written: an earlier run's is retired below
    for key, path in paths.items():
        plan.add(path, fileio.JSON_SUFFIXES if key == "json" else fileio.NIFTI_SUFFIXES, f"propagation {key}",
                 folder_checked=True, instead=INSTEAD)
    plan.check()
    # another tool's fa_std.nii.gz or a user's own propagation.json in the folder had been written over without a word
    free = "a folder whose maps are free"
    _refuse_foreign([p for key, p in paths.items() if key != "json"], "iqt propagate", free)
    refuse_foreign_summary(paths["json"], "iqt propagate", free)
    stale = _retire_visitation(plan, earlier)
    shape3 = input_shape3(args.input)  # the run's high-res grid from the input's header, as 'iqt upsample' checks it
    nifti = [p for key, p in paths.items() if key != "json"]
    if shape3 is not None:  # before the input is read or a model loaded; predict checks the same again
        grid.check_nifti_grid(shape3, f, nifti)
        method.check_memory(shape3, f, method.gives_uncertainty, propagate=True)
    if method.learned:
        try:
            method.load(f, cubic=False)  # a missing, corrupt or foreign model fails here, before any work; its refusal
            # advises no interpolation method, which has no uncertainty map to propagate
        except IQTError as exc:
            if args.voxel_size is None:
                raise
            # a coarser --voxel-size only where the method has no model for the factors chosen, and for a --model
            # given for other factors the one that gives its own where the loader refused its factors (its `advice`),
            # as iqt upsample and methods/factor_choice.py say it
            if not args.model:
                hint = options.coarser_voxel_size(lr.voxel_size, f, lambda g: method.name in methods.ready(g))
            elif hasattr(exc, "advice"):
                hint = model_voxel_size(lr.voxel_size, f, args.voxel_size, args.model)
            else:
                hint = ""
            raise IQTError(f"--voxel-size {args.voxel_size:g} chose {options.voxel_size_line(f, lr.voxel_size)}; "
                           f"{exc}{hint}") from None
    if lr is None:
        lr = fileio.load_tensor(args.input, args.tensor_order, getattr(args, "order_stated", None))
    if shape3 is None:  # a header the early check could not read: checked once read, before any work
        grid.check_nifti_grid(lr.shape3, f, nifti)
    seeds = options.load_seeds(args)
    if args.voxel_size is not None:  # once the seeds are read: a refusal of them is the run's only line
        print(options.voxel_size_line(f, lr.voxel_size))
    pred, mask = options.predict_with_mask(method, lr, f, args.mask)
    res = options.propagate(pred, args, mask, f, seeds)
    model = options.note_model_run(method, pred, f, args)  # its files record the model, factors and samples, as upsample's
    make_folder(out)  # removed again if a write then fails
    say(propagation.write(res, paths, method.name, *options.propagation_record(args, f, method, model),
                          time.perf_counter() - t0))
    if stale:  # said once the outputs are in place (a map rewritten meanwhile by another program stays)
        say(lambda: f"removed {stale.name}: an earlier run's, which would pass for this run's"
            if not stale.exists() else "")


def _retire_visitation(plan, path):
    """An earlier run's visitation map at `path`, removed when this run's outputs are put in place (kept if it fails),
    only where its run record says an `iqt` run wrote it into this folder; another's file of that name stays (it had
    been deleted at once, whoever wrote it: a review of the propagation outputs)."""
    import os

    from ...fileio.nifti import run_record_of

    def ours(p) -> bool:
        try:
            output = ((run_record_of(p) or {}).get("options") or {}).get("output")
        except Exception:  # noqa: BLE001 - a file nibabel cannot read is not one of ours
            return False
        return isinstance(output, str) and os.path.basename(os.path.normpath(output)) == p.parent.name

    return path if path is not None and path.is_file() and ours(path) and plan.retire(path, ours) else None
