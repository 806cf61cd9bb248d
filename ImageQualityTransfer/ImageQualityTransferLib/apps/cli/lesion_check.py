"""`iqt lesion-check`: synthetic lesions injected before degrading; how well each uncertainty map flags them."""

from __future__ import annotations

import time
from pathlib import Path

from ...core.errors import IQTError
from . import options


def add_parsers(sub) -> None:
    sp = sub.add_parser("lesion-check", help="inject synthetic lesions, report the ROC AUC of each uncertainty map (lesion vs mirrored tissue)")
    sp.add_argument("subjects", nargs="+", help="subject folders (dwi.nii.gz, dwi.bval, dwi.bvec)")
    sp.add_argument("--methods", help="uncertainty methods; every uncertainty map of each is scored (default: the best "
                                      "with an uncertainty map for the factors, deep-hetero-var1 where it has a model, "
                                      "and biqt)")
    sp.add_argument("--kinds", default="edema,tumour,glioma",
                    help="lesion kinds: edema, tumour (lower FA, same MD), glioma (lower FA, MD x1.68) (default all)")
    sp.add_argument("--mc-samples", type=int, help="Monte Carlo samples of the variational methods (default 10)")
    sp.add_argument("--radius", type=float, default=8.0, help="lesion radius in mm (default 8)")
    options.add_factor(sp)
    sp.add_argument("--json", help="also write the rows as JSON")
    sp.set_defaults(func=run)


def run(args):
    from ... import fileio, methods
    from ...analysis import lesion
    from ...core import grid
    from ...dmri.subject import load_subject, refuse_copies
    from ...fileio.sizes import check_subjects
    from ..report import reference_fit_notes

    f = grid.factors(args.factor)
    names = options.method_list(args.methods) or lesion.default_methods(f)
    for n in names:
        if not methods.method_class(n).gives_uncertainty:
            raise IQTError(f"method {n!r} gives no uncertainty; choose methods that do (see 'iqt methods')")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for k in kinds:
        if k not in lesion.KINDS:
            raise IQTError(f"--kinds {k}: lesion kinds are {', '.join(lesion.KINDS)}")
    if len(set(kinds)) < len(kinds):
        raise IQTError(f"--kinds {args.kinds}: a kind named twice; name each once")
    if args.mc_samples is not None and args.mc_samples < 0:
        raise IQTError(f"--mc-samples {args.mc_samples}: give a number of Monte Carlo samples >= 0")
    if args.mc_samples is not None and not any(methods.method_class(n).takes_samples for n in names):
        raise IQTError(f"--mc-samples {args.mc_samples}: none of {', '.join(names)} draws Monte Carlo samples (only "
                       "espcn-hetero-var1/-var2 and deep-hetero-var1 do); drop it")  # it was ignored (a bad-input audit)
    options.check_subject_names(args.subjects)  # the rows are kept by subject name: one given twice was counted twice
    plan = fileio.Outputs(*args.subjects)
    json_out = plan.add(args.json, fileio.JSON_SUFFIXES, "rows") if args.json else None
    plan.check()
    check_subjects("lesion-check", args.subjects)  # each DWI from its header, before any data is read
    refuse_copies(args.subjects)  # one copied under another name was averaged over twice (a lesion-check audit)
    chosen = [methods.get(n, samples=args.mc_samples if methods.method_class(n).takes_samples else None) for n in names]
    rows = []
    t0 = time.perf_counter()
    for folder in args.subjects:
        subject = load_subject(folder)
        # the reference's faults (a slice's dropout) said as 'iqt report --subject' says them (apps/report.py)
        reference_fit_notes(subject, "lesion-check scores every map against this fit as it is", "the reference's fit: ")
        rows.extend(lesion.check(subject, chosen, kinds, f, args.radius))
    print(f"{grid.describe(f)}, lesions of {args.radius:g} mm radius")
    print(lesion.table(rows))
    print(f"{len(args.subjects)} subject{'s' if len(args.subjects) != 1 else ''} in {time.perf_counter() - t0:.1f} s")
    if json_out:  # what ran beside the rows: a x1,1,3 file had been told from a x2 one by nothing (a lesion-check audit)
        from ...analysis.benchmark import model_records
        from ...fileio.model_files import software

        sampled = any(m.takes_samples for m in chosen)
        if sampled and args.mc_samples is None:
            from ...methods.cnn.inference import DEFAULT_SAMPLES
        # under `iqt --no-record` names, not paths: nothing reads them back, and a folder can name the patient
        named = (lambda p: Path(p).name) if getattr(args, "no_record", False) else str
        settings = {"subjects": [named(s) for s in args.subjects], "methods": names, "kinds": kinds,
                    "factor": grid.record(f), "radius_mm": args.radius,
                    "mc_samples": (args.mc_samples if args.mc_samples is not None else DEFAULT_SAMPLES) if sampled else None}
        models = model_records(names, f)
        for record in [r for m in models.values() for r in (m, m.get("noisy_inputs")) if r]:
            record["file"] = named(record["file"])
        fileio.write_json(json_out, {**software(), "settings": {**settings, "models": models},
                                     "units": lesion.UNITS, "rows": rows})
