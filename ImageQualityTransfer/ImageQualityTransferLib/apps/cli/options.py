"""Options and checks shared by the commands: one definition each, so every command spells them the same."""

from __future__ import annotations

from pathlib import Path

from ...core.errors import IQTError, IQTWarning
from ...core.tensors import ORDERS
from ...core.words import listed
from ...fileio.train_options import MAX_SEED, seed_number  # noqa: F401 (defined with train's options)
from ...methods.factor_choice import coarser_voxel_size, voxel_size_line  # noqa: F401 (the engine's, for every command)

FACTOR_HELP = ("upsampling factor: one integer for all three axes, or three separated by commas along the input's "
               "voxel axes i,j,k, e.g. 1,1,3 for thick slices (a factor of 1 leaves that axis as it is)")


def add_factor(sp, voxel_size: bool = False, recorded: bool = False, model: bool = False) -> None:
    """--factor (checked by `factors`, so that a bad one is a one-line IQTError); with `voxel_size`, also
    --voxel-size MM, the factors chosen from the input's voxel size instead; with `recorded`, no default (the
    command reads the factor an output of 'iqt upsample' records, else 2); with `model` (and `voxel_size`), a --model
    given sets them where --factor is not given (`factors`)."""
    if recorded:
        sp.add_argument("--factor", help=FACTOR_HELP.replace(
                            "the input's voxel axes i,j,k", "the low-res input's voxel axes i,j,k (those the prediction's "
                            "header records its factors along, as 'iqt upsample' writes them: 'factors 2,1,1 SLA'; where "
                            "it records none, the reference's)") +
                        " (default: the factor the prediction's header records, as 'iqt upsample' writes it; else 2)")
        return
    if not voxel_size:
        sp.add_argument("--factor", default="2", help=FACTOR_HELP + " (default 2)")
        return
    own = (", the --model's own where one is given (a through-plane model's along the input's thick axis, one at least "
           "1.2 times each of the other two, else along the input's axis its slice axis maps to; another's along the "
           "input's axes its axes map to)") if model else ""
    sp.add_argument("--factor", help=FACTOR_HELP + f" (default 2{own}, or as --voxel-size chooses)")
    sp.add_argument("--voxel-size", type=float, metavar="MM",
                    help="instead of --factor: the smallest integer factor along each axis that makes the output voxels "
                         "at most MM mm along it, 2 %% over counting as reached (a 2x2x5 mm input with --voxel-size 2 gets "
                         "factors 1,1,3; a header's 2.7073 mm is a nominal 2.7)")


def factors(args, voxel_size=None, affine=None) -> tuple[int, int, int] | None:
    """The per-axis factors the command line asks for: --factor, or with --voxel-size those `grid.for_voxel_size`
    picks for an input of `voxel_size`, or without either a --model's own: a through-plane model's along the input's
    thick axis, else the axis of its own slice axis (`orientation.through_plane_axis`), another's
    canonical axes mapped onto the voxel axes of an input with `affine`
    (None: the input is not read yet; the options are checked and None returned)."""
    from ...core import grid

    target = getattr(args, "voxel_size", None)
    if target is None:
        if args.factor is None and getattr(args, "model", None) and isinstance(args.model, str):
            from ...fileio.model_files import factors_named

            own = factors_named(args.model)  # a model given without --factor runs at its own (a thick-slice audit)
            if own is not None and max(own) > 1:
                if affine is None:
                    return None
                from ...core.orientation import Reorientation, through_plane_axis

                if voxel_size is not None and grid.largest_axis(own) is not None and sorted(own)[1] == 1:
                    # a through-plane model refines the thickest axis, along whichever axis: 1,1,3 had split a sagittal
                    # scan's 2.7 mm S axis, its 8.1 mm slices left as they were (a training audit); where none is thick,
                    # the axis of the model's own slice axis, the rule of the Slicer module's through-plane mode too
                    axis = through_plane_axis(voxel_size, affine, along=grid.largest_axis(own))
                    return tuple(max(own) if i == axis else 1 for i in range(3))
                # a model's factors are along canonical (RAS) axes: 1,1,3 refines S, whichever voxel axis holds it
                return grid.permute(own, Reorientation.to_canonical(affine).inverse().ornt)
        return grid.factors("2" if args.factor is None else args.factor)
    if args.factor is not None:
        raise IQTError(f"--factor {args.factor} and --voxel-size {target:g}: give one of them (--voxel-size chooses the "
                       f"factors from the input's voxel size)")
    grid.check_voxel_size(target)
    return None if voxel_size is None else grid.for_voxel_size(voxel_size, target)


def uncertainty_choices(f, voxel_size=None, drop: str = "") -> str:
    """"choose one of: rf, biqt, ..." (the methods with an uncertainty map that run at factors `f`), or where none does,
    the factors their models are for, and after --voxel-size (the input's `voxel_size`) a coarser one that has them:
    at factors 1,1,5 the list had been empty ("choose one of: ", a low-field clinic's audit). `drop`: the other way
    out ("drop --uncertainty"), said first."""
    from ... import methods
    from ...core import grid
    from ...methods.registry import uncertainty_factor_sets

    names = methods.with_uncertainty(f)
    if names:
        return f"{drop} or choose one of: {', '.join(names)}" if drop else f"choose one of: {', '.join(names)}"
    drop = f"{drop}; " if drop else ""
    hint = "" if voxel_size is None else coarser_voxel_size(voxel_size, f, lambda g: bool(methods.with_uncertainty(g)))
    return (f"{drop}no method with an uncertainty map has a shipped model for {grid.describe(f)} (theirs are for "
            f"{listed([grid.describe(g) for g in uncertainty_factor_sets()])}): give such factors, or --method with "
            f"--model trained for these{hint}")


def add_tensor_order(sp) -> None:
    sp.add_argument("--tensor-order", default=None, choices=list(ORDERS),
                    help="how another tool wrote the tensor file, element order and frame: fsl (dtifit, 4D), "
                         "mrtrix (dwi2tensor, 4D, scanner coordinates), dipy (4D lower_triangular() or dipy_fit_dti's "
                         "5D file, fitted with FSL bvecs), nifti (5D SYMMATRIX in voxel axes, as iqt and ANTs write it; "
                         "the default, except that a 5D file iqt did not write on a grid with a positive-determinant "
                         "affine, where the two 5D frames differ, needs nifti or dipy said)")


def add_output_order(sp) -> None:
    sp.add_argument("--output-order", default="input", choices=["input", *ORDERS],
                    help="how to write the high-res tensors: input (default: as the input was read, so that a dtifit, "
                         "dwi2tensor or dipy file comes back in its tool's order and frame, a 5D or NRRD one as this "
                         "tool's 5D NIfTI, or NRRD by the output's suffix), or one of the --tensor-order names (nifti: 5D SYMMATRIX in voxel axes; dipy: "
                         "dipy_fit_dti's 5D file, or 4D lower_triangular() where a 4D dipy file was read)")


def check_output_order(args, out) -> None:
    """An order asked of a NRRD output is refused before any work (its format fixes the order)."""
    from ...fileio.paths import NRRD_SUFFIXES

    from ...fileio.mif import MIF_SUFFIXES

    if str(out).lower().endswith(NRRD_SUFFIXES) and args.output_order not in ("input", "nifti"):
        raise IQTError(f"{out}: a Slicer NRRD holds its own element order and measurement frame; leave "
                       f"--output-order {args.output_order} out or write .nii.gz")
    if str(out).lower().endswith(MIF_SUFFIXES) and args.output_order not in ("input", "mrtrix"):
        raise IQTError(f"{out}: an MRtrix image holds dwi2tensor's order (Dxx,Dyy,Dzz,Dxy,Dxz,Dyz, scanner frame); "
                       f"leave --output-order {args.output_order} out or write .nii.gz")


def output_order(args, lr, out) -> dict:
    """`save_tensor`'s order and layout for `--output-order` (fileio.write_order); a NRRD output keeps its own."""
    from ...fileio import as_read, write_order
    from ...fileio.mif import MIF_SUFFIXES
    from ...fileio.paths import NRRD_SUFFIXES

    check_output_order(args, out)
    if str(out).lower().endswith(NRRD_SUFFIXES):
        return {"order": "nifti", "five_d": True}
    if str(out).lower().endswith(MIF_SUFFIXES):
        return {"order": "mrtrix", "five_d": False}
    return write_order(as_read(lr), args.output_order)


def order_words(order: dict, out=None) -> str:
    """How a written tensor file is laid out, for the line that names it ("" for this tool's own 5D; an MRtrix image,
    read in its order without --tensor-order, without the option)."""
    from ...fileio import layout_words
    from ...fileio.mif import is_mif

    if order["order"] == "nifti":
        return ""
    if out is not None and is_mif(out):
        return f"; {layout_words(order)}"
    return f"; {layout_words(order)}: read it with --tensor-order {order['order']}"


def add_dwi(sp, bmax_help: str | None = None) -> None:
    sp.add_argument("dwi", help="4D DWI: NIfTI with FSL bval/bvec, or MRtrix .mif/.mif.gz/.mih with its dw_scheme")
    sp.add_argument("--bval", help="FSL b-values (default: beside the DWI, or a .mif DWI's dw_scheme)")
    sp.add_argument("--bvec", help="FSL b-vectors (default: beside the DWI, or a .mif DWI's dw_scheme)")
    add_bmax(sp, bmax_help)


def add_bmax(sp, help_text: str | None = None) -> None:
    sp.add_argument("--bmax", type=float, metavar="B",
                    help=help_text or "fit DTI to the b0s and the volumes with b up to B s/mm^2 only (the lower shell "
                                      "of a multi-shell series, e.g. --bmax 1000; default: every volume)")


def method_list(text: str | None) -> list[str] | None:
    """`--methods a,b,c` -> ["a", "b", "c"] (None when not given); unknown names fail here, before any work."""
    from ... import methods

    if text is None:
        return None
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:  # "" had run every method
        raise IQTError(f"--methods {text!r}: name at least one method (see 'iqt methods'), or leave --methods out for all")
    for n in names:
        methods.method_class(n)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # run and counted twice (a lesion check's mean "over 2 subjects" of one; a bad-input audit)
        raise IQTError(f"--methods {text}: {', '.join(twice)} named twice; name each method once")
    return names


def method_settings(args) -> dict:
    """The method settings the command line gives (model file, Monte Carlo samples, device, symmetry averaging)."""
    return {"model": getattr(args, "model", None), "samples": getattr(args, "mc_samples", None),
            "device": getattr(args, "device", None) or "cpu", "tta": bool(getattr(args, "tta", False))}


TTA_HELP = ("learned methods: average the prediction over the input's 8 axis flips and, where two axes share a factor, "
            "their swap (16 runs: 16x the time; on the dev scans the espcn family's and deep's error 0.8-2.3 points of cubic's "
            "lower at x2 and through-plane, higher on some scans at x3, and the forests' too; docs/accuracy.md "
            "'Averaging over flips')")


def add_method_settings(sp, model: bool = True) -> None:
    if model:
        sp.add_argument("--model", help="model file to use instead of the shipped one (learned methods)")
    sp.add_argument("--mc-samples", type=int, help="Monte Carlo samples of espcn-hetero-var1/-var2, deep-hetero-var1 (default 10; 0: one "
                                                   "deterministic pass, intrinsic uncertainty only)")
    sp.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu",
                    help="where the CNNs run (default cpu; auto: CUDA when PyTorch has it)")
    sp.add_argument("--tta", action="store_true", help=TTA_HELP)


def method_name(args, f, uncertainty: bool = False, voxel_size=None) -> str:
    """The method to run: --method; else, with --model, the method its sidecar names (a model of any family runs without
    --method); else the best shipped one with a model for factors `f` (`methods.default_method`), one that gives an
    uncertainty map where the run asks for one (`uncertainty`). `voxel_size`: the input's, where --voxel-size chose
    `f`, so that a refusal says a coarser --voxel-size that has a model (`coarser_voxel_size`)."""
    from ... import methods

    if args.method:
        return args.method
    if getattr(args, "model", None):
        from ...fileio.model_files import method_named

        named = method_named(args.model)  # None where the sidecar cannot be read or names no method
        if named is None and Path(args.model).is_file():
            from ...fileio.model_files import sidecar_path

            # the default method's loader had said why, in a CNN's words for a forest's .npz (a training audit)
            sp = sidecar_path(args.model)
            what = "model sidecar not found" if not sp.exists() else "not a model sidecar naming its method"
            raise IQTError(f"{sp}: {what}; 'iqt train' writes one beside each model, naming its method: put it "
                           f"beside {args.model}, or give --method")
        return named if named in methods.names() else methods.default_method(uncertainty=uncertainty)
    from ...methods.factor_choice import choose

    target = getattr(args, "voxel_size", None)
    choice = choose(None, f, voxel_size=voxel_size, target=None if voxel_size is None else target, uncertainty=uncertainty)
    if choice.refusal:
        raise IQTError(choice.refusal)
    return choice.method


def model_files(model) -> list:
    """A `--model` file and its sidecar (both are inputs: never outputs of the same run)."""
    if not model:
        return []
    from ...fileio.model_files import sidecar_path

    if Path(model).is_dir() or not Path(model).name:
        raise IQTError(f"--model {model}: a folder; give the model file (.npz or .pt, its .json sidecar beside it) "
                       "from 'iqt train'")
    return [Path(model), sidecar_path(model)]


def out_dir(path) -> Path:
    """An output folder, checked before any work: a folder or a new name in a folder that takes new files. It is
    created only when the outputs are written, so a failed run leaves no empty folder."""
    from ...fileio.paths import check_folder

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise IQTError(f"{p}: exists and is not a folder; give a folder for the outputs")
    check_folder(p if p.is_dir() else p.parent, p)
    return p


# ---------------------------------------------------------------- uncertainty propagation (propagate, upsample)

PROPAGATION_DEFAULTS = {"n_seeds": 1000, "fa_threshold": 0.2, "seed": 0}
# the tracking lengths: None scales the human ones to the brain's size (analysis/tractography.TrackingSettings)
TRACKING_LENGTHS = ("step", "min_length", "max_length")
# the options that apply only with --propagate (iqt upsample refuses them without it)
PROPAGATION_ONLY = ("seeds", *PROPAGATION_DEFAULTS, *TRACKING_LENGTHS)


def add_propagation(sp) -> None:
    """The propagation options of `iqt propagate` and `iqt upsample --propagate`, None where not given (so that an
    option given where it does nothing is told apart: upsample without --propagate, `settle_propagation`)."""
    d = dict.fromkeys(PROPAGATION_DEFAULTS)
    sp.add_argument("--seeds", help="seed ROI for the tracts (default: 1000 random points where FA >= 0.3)")
    sp.add_argument("--n-seeds", type=int, default=d["n_seeds"], help="random seeds when no --seeds (default 1000)")
    sp.add_argument("--fa-threshold", type=float, default=d["fa_threshold"], help="tracking stops below this FA (default 0.2)")
    sp.add_argument("--step", type=float, help="tracking step in mm (default 0.5 on a human brain, scaled to a smaller one, "
                                               "as in 'iqt track')")
    sp.add_argument("--min-length", type=float, help="drop streamlines shorter than this, mm (default 10 on a human brain, "
                                                     "scaled to a smaller one)")
    sp.add_argument("--max-length", type=float, help="drop streamlines longer than this, mm (default 250 on a human brain, "
                                                     "scaled to a smaller one)")
    sp.add_argument("--no-tracts", action="store_true", help="FA/MD maps only, no tract variability")
    sp.add_argument("--seed", type=seed_number, default=d["seed"], help="random seed of the samples (default 0)")


def settle_propagation(args) -> None:
    """The propagation options as given (None where not, `add_propagation`): options that the others make idle (seeds
    and tracking settings beside --no-tracts, --n-seeds beside --seeds) are refused, not ignored, then the defaults fill
    what was not given."""
    if args.seeds and args.no_tracts:
        raise IQTError(f"--seeds {args.seeds}: --no-tracts draws no tracts to seed; drop one of them")
    if args.n_seeds is not None and (args.seeds or args.no_tracts):
        why = f"--seeds {args.seeds} gives the seeds" if args.seeds else "--no-tracts draws no tracts"
        raise IQTError(f"--n-seeds {args.n_seeds}: {why}; drop --n-seeds")
    tracking = [f"--{k.replace('_', '-')}" for k in ("fa_threshold", *TRACKING_LENGTHS) if getattr(args, k, None) is not None]
    if args.no_tracts and tracking:
        raise IQTError(f"{', '.join(tracking)}: --no-tracts draws no tracts; drop {'it' if len(tracking) == 1 else 'them'}")
    for k, v in PROPAGATION_DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(args, k, v)


def check_propagation(method, args, factor=None, voxel_size=None) -> None:
    """Before any work: the method must give an uncertainty to sample from (those suggested run at `factor`; the
    input's `voxel_size` where --voxel-size chose it), N >= 2, and the tracking settings must hold (checked before the
    prediction, not after)."""
    from ... import methods
    from ...core import grid

    if not method.gives_uncertainty:
        raise IQTError(f"method {method.name!r} gives no uncertainty to propagate; "
                       f"{uncertainty_choices(factor, voxel_size)}")
    if method.learned and factor is not None and not getattr(args, "model", None) and method.name not in methods.ready(factor):
        # load() would name every method with a model for these factors, uncertainty or not
        others = methods.with_uncertainty(factor)
        if others:
            raise IQTError(f"{method.name} has no shipped model for {grid.describe(factor)}; give --model with one "
                           f"trained for them, or choose a method with an uncertainty map that has one: {', '.join(others)}")
        from ...fileio.model_files import shipped_factor_sets
        from ...methods.registry import uncertainty_factor_sets

        # the sets named from the registry (a wording audit: "e.g. 2 or 3" left out 1,1,2 and 1,1,3), the method's own
        # apart: "their models are for ... factor 3" had been said to espcn-hetero, which has no x3 model
        own = shipped_factor_sets(method.name)
        others: dict = {}
        for f in uncertainty_factor_sets():
            if f not in own:
                others.setdefault(tuple(methods.with_uncertainty(f)), []).append(grid.describe(f))
        per_axis = ", per-axis ones along any voxel axis" if any(grid.largest_axis(f) is not None for f in own) else ""
        have = [f"{method.name}'s models are for {listed([grid.describe(f) for f in own])}{per_axis}" if own else
                f"{method.name} has none"]
        have += [f"{listed(sets)} {'runs' if len(sets) == 1 else 'run'} {listed(names, 'or')}"
                 for names, sets in others.items()]
        raise IQTError(f"{method.name} has no shipped model for {grid.describe(factor)}, nor has any other method with "
                       f"an uncertainty map ({', and '.join(have)}); give one of "
                       f"those factors with a method that has it, or --model with a model trained for "
                       f"{grid.text(factor)} ('iqt train')")
    if args.samples is None or int(args.samples) < 2:
        raise IQTError(f"--samples {args.samples}: uncertainty propagation needs at least 2 samples (e.g. --samples 100)")
    from ...methods.base import MAX_SAMPLES

    if int(args.samples) > MAX_SAMPLES:  # 1e8 ran on without end, as --mc-samples had (methods/base.py, MAX_SAMPLES)
        raise IQTError(f"--samples {args.samples}: give at most {MAX_SAMPLES} (each sample is one more draw of the "
                       "whole high-res volume, tracked unless --no-tracts; the default is 100)")
    tracking_settings(args).check()


def tracking_settings(args):
    """The propagation's tracking settings from the command line: the lengths not given (None) are scaled to the
    prediction's brain when it is tracked (TrackingSettings.resolved)."""
    from ...analysis.tractography import TrackingSettings

    fa = PROPAGATION_DEFAULTS["fa_threshold"] if args.fa_threshold is None else args.fa_threshold
    return TrackingSettings(fa_threshold=fa, **{k: getattr(args, k, None) for k in TRACKING_LENGTHS})


def propagation_settings(args, factor, method=None, model=None) -> dict:
    """The options that reproduce a propagation run, recorded in its JSON: the model that ran (`note_model_run`'s
    answer) and the Monte Carlo samples drawn, also where they were defaulted (null had stood for them: a tractography
    audit)."""
    from ...core import grid

    samples = args.mc_samples if args.mc_samples is not None or method is None else mc_samples_used(method)
    return {"factor": grid.record(factor), "mask": args.mask, "seeds": args.seeds,
            "n_seeds": None if args.seeds or args.no_tracts else args.n_seeds, "fa_threshold": args.fa_threshold,
            "tracts": not args.no_tracts, "model": args.model if args.model or model is None else model[0],
            **({"model_origin": model[1]} if model else {}), "mc_samples": samples,
            "tta": args.tta, **{k: getattr(args, k, None) for k in TRACKING_LENGTHS}}


def propagation_record(args, factor, method=None, model=None) -> tuple[str | None, dict]:
    """(the input, the settings) a propagation summary records; under `iqt --no-record` no path: the input and the
    mask, seed ROI and model files are recorded as given or not ("given"), as the headers record no command (review
    51a: the input's path was the one name left in such a run's outputs)."""
    settings = propagation_settings(args, factor, method, model)
    if not getattr(args, "no_record", False):
        return args.input, settings
    given = ("mask", "seeds") + (("model",) if args.model else ())  # a shipped model's name is no path of the user's
    return None, {k: ("given" if v else v) if k in given else v for k, v in settings.items()}


def predict_with_mask(method, lr, f, mask_path, **kw):
    """(prediction, low-res mask) of `method` on `lr` with the --mask file: on the input's grid it is the run's mask;
    on the output's grid it is reduced for the run and every output is then kept to it (`Prediction.within`)."""
    from ... import fileio
    from ...methods.base import predict_within

    return predict_within(method, lr, f, fileio.load_mask(mask_path, lr, f) if mask_path else None, **kw)


def load_seeds(args):
    """The seed ROI, or None for random seeds (then at least one is needed to track)."""
    from ... import fileio

    if not args.seeds and not args.no_tracts and args.n_seeds < 1:
        raise IQTError(f"--n-seeds {args.n_seeds}: tracking needs at least 1 seed (e.g. 1000), or add --no-tracts")
    return fileio.load_mask(args.seeds, seeds=True) if args.seeds else None


def propagate(pred, args, lr_mask, r, seeds):
    """Draw `args.samples` high-res samples from `pred` over what the run with the low-res mask covers
    (`propagation.propagate_within`), and say the tracking lengths where they were scaled to a small brain."""
    from ...analysis import propagation
    from ...analysis.tractography import scaling_line

    res = propagation.propagate_within(pred, lr_mask, r, n=args.samples, seeds=seeds, rng=args.seed,
                                       track=not args.no_tracts, n_seeds=args.n_seeds, settings=tracking_settings(args))
    line = scaling_line(res.settings["tracking"]) if res.settings.get("tracking") else None
    if line:  # the lengths scaled to a brain smaller than a human's, as iqt track says them
        print(line)
    return res


SNR_HELP = ("add Rician noise to the low-res DWIs before the fit, its standard deviation the brain's median b0 over SNR "
            "(seeded: the same command gives the same input), as a noisier scanner would; from 0.01 up, clinical scans "
            "about 10-40; default: none")


def add_noise_seed(sp) -> None:
    """--seed N: the seed of the --snr noise (iqt degrade, iqt benchmark)."""
    sp.add_argument("--seed", type=seed_number, metavar="N",
                    help="seed of the --snr noise (default 0): the same seed draws the same noise, so one command gives "
                         "one result; another seed draws another noise at the same SNR")


def noise_seed(args, snr_value) -> int:
    """The --snr noise's seed (0 where not given); one clear line for a seed without --snr (`seed_number` reads it)."""
    if args.seed is not None and snr_value is None:
        raise IQTError(f"--seed {args.seed}: it seeds the noise of --snr, and none is added without it; give --snr too "
                       "or drop --seed")
    return 0 if args.seed is None else args.seed


def snr(value) -> float | None:
    """--snr S: a b0 signal-to-noise ratio in dmri/randomise.snr_value's range, or None; one clear line otherwise."""
    import warnings

    from ...dmri.randomise import checked_snr

    return checked_snr(value, lambda note: warnings.warn(note, IQTWarning, stacklevel=3))


def check_host(host: str, option: str = "--host", fix: str = "give one of this machine's addresses, e.g. 127.0.0.1, "
               "or 0.0.0.0 for every interface") -> None:
    """A host this machine can serve on, checked before any work: one of its addresses binds on port 0, as a server
    binds them (`localhost` whose IPv6 address the machine lacks is still served on 127.0.0.1). A name that does not
    resolve or another machine's address would end in an internal error after the input was read."""
    import socket

    try:
        infos = socket.getaddrinfo(host or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise IQTError(f"{option}: the host {host} cannot be resolved ({why}); {fix}") from None
    failed = None
    for family, kind, proto, _, where in infos:  # one is enough, as Tornado skips an address it cannot bind
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.bind((where[0], 0, *where[2:]))
            return
        except OSError as exc:
            failed = exc
    raise IQTError(f"{option}: {host} is not an address of this machine ({failed.strerror or failed}); {fix}")


def check_subject_names(folders) -> None:
    """The tables and the ratios to cubic are kept by subject name (the folder's): a folder given twice, or two that
    share a name, are refused before any work (T/A and T2/A would give one subject's cubic 1.555x cubic)."""
    from ...dmri.subject import subject_name

    seen = {}
    for d in folders:
        name = subject_name(d)  # as load_subject names it
        if name in seen:
            other = seen[name]
            raise IQTError(f"{d}: " + (f"given twice (also as {other})" if Path(other).resolve() == Path(d).resolve()
                                       else f"has the name of {other}, and the tables keep subjects by name") +
                           "; list each subject once, under a name of its own (e.g. a link: ln -s T2/A A2)")
        seen[name] = d


def mc_samples_used(method) -> int | None:
    """The Monte Carlo samples a variational CNN drew (its --mc-samples, else the default: the mean is theirs too), for
    the outputs' run record; None for a method that draws none."""
    if not method.takes_samples:
        return None
    from ...methods.cnn.inference import DEFAULT_SAMPLES

    return DEFAULT_SAMPLES if method.samples is None else int(method.samples)


def input_sha256(path) -> str:
    """SHA256 of the input as read: a NRRD header and the detached data file it names, one after the other."""
    from ...fileio.checksums import image_sha256

    return image_sha256(path)


def note_model_run(method, pred, f, args) -> tuple[str, str] | None:
    """Record in the run's record (fileio/records.py) the factors, the Monte Carlo samples drawn, the input's SHA256
    and, for a learned method, the model that ran (its file, origin and SHA256); return (model name, origin) for the
    'wrote' line, None for an interpolation. `iqt upsample` and `iqt propagate` alike."""
    from ...core import grid
    from ...fileio.records import note_run

    # the input's checksum: the same command typed in another subject's folder had read as the same run (evaluate)
    note_run(factors=list(grid.factors(f)), mc_samples=mc_samples_used(method), input_sha256=input_sha256(args.input))
    if not method.learned:
        return None
    from ...fileio.model_files import model_origin, model_sha256

    used = pred.tensor.meta.get("model_for")
    ran = pred.tensor.meta["model_file"] if used else method.model_file(f)
    origin = pred.tensor.meta.get("model_origin")  # named by predict (Method._model_named), as for every caller
    model = (str(ran) if origin == "given" else pred.tensor.meta["model_name"], origin) if origin else \
        model_origin(ran, given=getattr(args, "model", None) is not None and not used)
    note_run(model={"file": model[0], "origin": model[1], "sha256": model_sha256(ran)})
    return model


def add_method_models(sp, verb: str) -> None:
    """--model METHOD=PATH (repeatable), for the commands that run several methods (benchmark, report)."""
    sp.add_argument("--model", action="append", default=[], metavar="METHOD=PATH",
                    help=f"{verb} METHOD with this model file from 'iqt train' instead of its shipped one, e.g. "
                         "rf=my_rf.npz (repeatable; the method joins --methods)")


def method_models(given, f) -> dict:
    """{method: model file} from --model METHOD=PATH, each loaded (checked) before any work (so that a researcher can
    score a model of their own)."""
    import re

    from ... import methods

    out = {}
    for text in given:
        name, sep, path = text.partition("=")
        name = name.strip()
        if not sep or not path or not name:
            raise IQTError(f"--model {text}: give the method and its model file, e.g. --model rf=my_rf.npz")
        if name not in methods.names() or not methods.method_class(name).learned:
            raise IQTError(f"--model {text}: {name!r} is not a learned method; give one of "
                           f"{', '.join(n for n in methods.names() if methods.method_class(n).learned)}")
        if name in out:
            raise IQTError(f"--model {text}: {name} is given a model twice; give one per method")
        try:
            methods.get(name, model=path).load(f)
        except IQTError as exc:  # upsample's advice, put in this option's form
            raise IQTError(re.sub(r"use --method ([\w-]+) with it", lambda found: f"give it as --model {found[1]}={path}",
                                  str(exc))) from None
        out[name] = path
    return out
