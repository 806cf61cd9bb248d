"""`iqt benchmark`: the whole protocol on subject folders, or the speed of `iqt upsample` on an HCP-sized volume."""

from __future__ import annotations

import shlex
import sys

from ...core.errors import IQTError
from . import options


def add_parsers(sub) -> None:
    sp = sub.add_parser("benchmark", help="the whole protocol on subject folders, or --speed on an HCP-sized volume")
    sp.add_argument("subjects", nargs="*", help="folders holding dwi.nii.gz, dwi.bval, dwi.bvec")
    sp.add_argument("--methods", help="comma-separated method names (default: every method ready here); cubic is always included")
    options.add_factor(sp)
    sp.add_argument("--speed", action="store_true", help="time 'iqt upsample' end to end on a 72x87x72 low-res volume")
    sp.add_argument("--tracts", action="store_true",
                    help="also compare tractography: tract-density Dice to the reference and false-positive density (opt-in)")
    sp.add_argument("--styles", default="own",
                    help="comma-separated input styles (own, tight, unmasked, ols, unmasked-ols, fsl, mrtrix: see 'iqt degrade --help'); each "
                         "method is scored on the low-res input made in each style, against the same reference")
    sp.add_argument("--no-mask", action="store_true", help="run the methods without the brain mask (scored with it)")
    sp.add_argument("--snr", help=options.SNR_HELP + " (the reference stays the good fit)")
    options.add_noise_seed(sp)
    sp.add_argument("--tta", action="store_true", help=options.TTA_HELP + "; rows named METHOD+tta")
    options.add_method_models(sp, "score")
    sp.add_argument("--json", help="also write the rows as JSON")
    sp.set_defaults(func=run)


def run(args):
    from ... import fileio, methods
    from ...analysis import benchmark
    from ...core import grid
    from ...fileio.sizes import check_subjects

    f = grid.factors(args.factor)
    snr = options.snr(args.snr)
    if args.model and args.speed:  # said, not ignored
        raise IQTError("--model with --speed: the speed run times the shipped models; time a model of your own with "
                       "'iqt upsample --model' instead")
    if args.speed:  # analysis/benchmark.py speed(): upsample at its default factor 2 on a made-up volume; these were ignored
        idle = [w for w, on in (("subject folders", bool(args.subjects)), (f"--factor {args.factor}", f != (2, 2, 2)),
                                (f"--snr {args.snr}", snr is not None), (f"--seed {args.seed}", args.seed is not None),
                                (f"--styles {args.styles}", args.styles != "own"), ("--no-mask", args.no_mask),
                                ("--tracts", args.tracts)) if on]
        if idle:
            raise IQTError(f"{', '.join(idle)} with --speed: the speed run times 'iqt upsample' at factor 2 on a made-up "
                           f"{'x'.join(map(str, benchmark.HCP_LR_SHAPE))} volume, and would ignore "
                           f"{'it' if len(idle) == 1 and args.subjects == [] else 'them'}: drop "
                           f"{'it' if len(idle) == 1 and args.subjects == [] else 'them'}, or drop --speed to score "
                           "subject folders")
    seed = options.noise_seed(args, snr)
    models = options.method_models(args.model, f)
    names = options.method_list(args.methods) or methods.ready(f)
    names += [n for n in models if n not in names]
    if args.tta and not any(methods.method_class(n).learned for n in names):  # said, not ignored
        raise IQTError(f"--tta: {', '.join(names)} {'is' if len(names) == 1 else 'are'} unchanged by flips and swaps "
                       "(nothing to average); --tta applies to the learned methods: add one or drop it")
    plan = fileio.Outputs(*args.subjects, *(p for path in models.values() for p in options.model_files(path)))
    json_out = plan.add(args.json, fileio.JSON_SUFFIXES, "rows") if args.json else None
    plan.check()
    settings = {"command": shlex.join(["iqt", *getattr(args, "argv", sys.argv[1:])]),
                "factor": grid.record(f), "methods": names, "tta": args.tta}
    if args.speed:
        rows = benchmark.speed(names, tta=args.tta)
        print(benchmark.speed_table(rows))
        settings.update(speed=True, shape=list(benchmark.HCP_LR_SHAPE))
    else:
        if not args.subjects:
            raise IQTError("give one or more subject folders (each with dwi.nii.gz, dwi.bval, dwi.bvec), or --speed")
        options.check_subject_names(args.subjects)
        check_subjects("benchmark", args.subjects)  # each DWI from its header, before any data is read
        from ...dmri.subject import refuse_copies

        refuse_copies(args.subjects)  # one copied under another name was in the medians twice
        styles = [s.strip() for s in args.styles.split(",") if s.strip()]
        if len(set(styles)) < len(styles):  # every row twice (a bad-input audit)
            raise IQTError(f"--styles {args.styles}: a style named twice; name each once")
        rows = benchmark.run(args.subjects, names, f, progress=True, tracts=args.tracts, styles=styles,
                             mask=not args.no_mask, tta=args.tta, snr=snr, seed=seed, models=models)
        settings.update(subjects=[str(s) for s in args.subjects], styles=styles, mask=not args.no_mask,
                        tracts=args.tracts, snr=snr, **({} if snr is None else {"noise_seed": seed}))
        if snr is not None:
            index = sorted({f"{r['noise_index']:.3f}" for r in rows if r.get("noise_index") is not None}, key=float)
            # one input's index said once (it had read "0.167-0.167")
            print(f"inputs with Rician noise added at b0 SNR {snr:g}, seed {seed}"
                  + (f" (noise index {'-'.join(dict.fromkeys((index[0], index[-1])))})" if index else ""))
        for name, path in models.items():  # the rows named the method alone (a training audit)
            print(f"{name}: scored with the model {path}, not the shipped one")
        print(benchmark.markdown_table(rows))
        if len(args.subjects) > 1 or len(styles) > 1:
            print()
            print(benchmark.summary_table(rows))
        if args.tracts:
            print()
            print(benchmark.tract_table(rows))
    if json_out:
        fileio.write_json(json_out, benchmark.document(rows, given_models=models, **settings))
