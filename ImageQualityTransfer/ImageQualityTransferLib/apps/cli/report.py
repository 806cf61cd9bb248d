"""`iqt report`: one self-contained HTML page of views, uncertainty overlays, errors, metrics and tracts."""

from __future__ import annotations

import warnings

from ...core.errors import IQTError, IQTWarning
from ...fileio.staging import say  # 'wrote' lines: printed once the run's outputs are in place
from . import options


def add_parsers(sub) -> None:
    sp = sub.add_parser("report", help="one self-contained HTML page: FA/colour-FA views, uncertainty, errors, metrics, tracts")
    sp.add_argument("-o", "--output", required=True, help="report file (.html)")
    source = sp.add_mutually_exclusive_group()
    source.add_argument("--subject", help="subject folder (dwi.nii.gz, bval, bvec), degraded and scored against its own "
                                          "fit (default: the built-in phantom)")
    source.add_argument("--input", help="your own low-res tensor volume instead: upsampled by each method and shown with "
                                        "its uncertainty (no reference, so no errors or scores)")
    sp.add_argument("--mask", help="with --input: brain mask on the input's grid or on the output's")
    options.add_tensor_order(sp)
    sp.add_argument("--no-frame-check", action="store_true",
                    help="with --input: skip the frame check of a --tensor-order fsl, mrtrix or dipy input, or of a 5D "
                         "NIfTI iqt did not upsample (a warning where its directions look mirrored), as in iqt upsample")
    sp.add_argument("--methods", help="comma-separated methods (default: cubic and every shipped learned method that runs here)")
    options.add_factor(sp, voxel_size=True)
    options.add_method_models(sp, "show")
    sp.add_argument("--no-tracts", action="store_true", help="leave out tractography")
    sp.add_argument("--n-seeds", type=int, help="tractography seeds (default 2000)")
    sp.set_defaults(func=run)


def run(args):
    from ... import fileio, methods
    from ...fileio.sizes import check_subjects
    from ...dmri.degrade import lowres_mask
    from ...methods.inputs import FRAME_NOISE, check_frame, check_tensor_input, frame_checked, warn_frame_noise
    from .. import report

    f = options.factors(args)  # None with --voxel-size: the input's voxel size chooses them
    if f is None and not args.input:
        raise IQTError("--voxel-size goes with --input (a subject is degraded by --factor); give --factor or --input")
    if args.tensor_order != "nifti" and not args.input:
        raise IQTError(f"--tensor-order {args.tensor_order} reads --input (a subject folder holds DWIs); add --input or "
                       "drop it")
    if args.no_tracts and args.n_seeds is not None:  # said, not ignored
        raise IQTError("--n-seeds with --no-tracts: the page has no tracts to seed; drop one of them")
    args.n_seeds = 2000 if args.n_seeds is None else args.n_seeds
    if not args.no_tracts and args.n_seeds < 1:
        raise IQTError(f"--n-seeds {args.n_seeds}: tracking needs at least 1 seed (e.g. 2000), or add --no-tracts")
    if args.no_frame_check and not args.input:  # said, not ignored: a subject's DWIs are checked as iqt fit checks them
        raise IQTError("--no-frame-check goes with --input (a subject folder's fit checks its gradient table); drop it")
    if args.mask and not args.input:
        raise IQTError("--mask goes with --input (a subject folder's mask is made from its b0); add --input LR_DTI.nii.gz "
                       "or drop --mask")
    plan = fileio.Outputs(args.subject, args.input, args.mask, *(p for text in args.model
                                                                  for p in options.model_files(text.partition("=")[2])))
    out = plan.add(args.output, (".html", ".htm"), "report")
    plan.check()
    if args.input and f is not None:  # each method's run on the input's grid, from its header; with
        from .upsample import input_shape3  # --voxel-size the input is read for its voxel size, then predict checks

        shape3 = input_shape3(args.input)
        names = (method_names(args, f) or methods.ready(f)) if shape3 is not None else []
        for name in [n for n in names if n in methods.names()]:  # an unknown name is said where the methods are chosen
            method = methods.get(name)
            method.check_memory(shape3, f, method.gives_uncertainty)
    if args.input and f is not None:  # a learned method with no shipped model for f: refused before the input is
        given = {text.partition("=")[0].strip() for text in args.model}  # read (load fails on the registry, no torch)
        for name in method_names(args, f) or []:
            if name in methods.names() and name not in given and methods.method_class(name).learned \
                    and not methods.serves(methods.shipped_factors(name), f):
                methods.get(name).load(f)
    check_subjects("report", [args.subject])  # its DWI from its header, before any data is read
    if args.input:
        with warnings.catch_warnings(record=True) as caught:  # what reading says about the input heads the page too
            warnings.simplefilter("always", IQTWarning)
            lr = fileio.load_tensor(args.input, args.tensor_order, getattr(args, "order_stated", None))
            if f is None:
                f = options.factors(args, lr.voxel_size)
                # where no learned method has a model for them, the page is cubic's alone: a coarser --voxel-size
                # whose factors have one is said (options.coarser_voxel_size)
                learned = lambda g: any(methods.method_class(n).learned for n in methods.ready(g))  # noqa: E731
                print(options.voxel_size_line(f, lr.voxel_size)
                      + ("" if args.methods or learned(f) else options.coarser_voxel_size(lr.voxel_size, f, learned)))
            models = options.method_models(args.model, f)  # with --voxel-size, once the factors are known
            mask = fileio.load_mask(args.mask, lr, f) if args.mask else None
            # bad input (a wrong --tensor-order, wrong units) gets its one line before any method is chosen or said
            # skipped, as in 'iqt view'
            check_tensor_input(lr, lowres_mask(mask, lr, f))
            # iqt upsample's check of another tool's frame: a mirrored fsl or mrtrix file had its page without a word
            # (an audit); its line heads the page with the input's others
            if frame_checked(lr) and not args.no_frame_check:
                if check_frame(lr, lr.meta["order"] if lr.meta["order"] != "nifti" else None) == FRAME_NOISE:
                    warn_frame_noise(lr)
        read = [str(w.message) for w in caught if issubclass(w.category, IQTWarning)]
        path = report.run_input(out, lr, mask, f, method_names=method_names(args, f), tracts=not args.no_tracts,
                                n_seeds=args.n_seeds, read_notes=read, models=models, mask_path=args.mask,
                                names_only=bool(getattr(args, "no_record", False)))
    else:
        models = options.method_models(args.model, f)
        path = report.run(out, subject_dir=args.subject, factor=f, method_names=method_names(args, f),
                          tracts=not args.no_tracts, n_seeds=args.n_seeds, models=models,
                          names_only=bool(getattr(args, "no_record", False)))
    say(f"wrote {path}")


def method_names(args, f) -> list[str] | None:
    """--methods with the methods given a model by --model added (None where neither names one: every ready method;
    a model given then runs beside them)."""
    from ... import methods

    names = options.method_list(args.methods)
    given = [text.partition("=")[0].strip() for text in args.model]
    if names is None and given:
        names = list(methods.ready(f))
    return None if names is None else names + [n for n in given if n and n not in names]
