"""`iqt demo`: the main job end to end on a built-in phantom (or a real subject folder).

Degrade, upsample by every available method, score against the truth, and write to one folder: the
metrics table (markdown and JSON), the volumes (NIfTI) and a PNG of FA / colour-FA panels.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ..analysis import benchmark
from .. import fileio, methods
from ..core import grid
from ..core.errors import IQTWarning, pip_install
from ..dmri.subject import check_subject_table, load_subject, make_case, phantom_subject
from ..core.volume import Volume


def chosen_methods(names=None, factor=2, models: dict | None = None, say=print) -> list[str]:
    """The methods asked for by name (learned ones load their model now, so a missing model or torch fails
    before any work), or every method ready here at `factor` (`methods.ready`), saying which are left out (`say`: a
    caller that reads its input after this keeps the lines until it has, so that a refusal of it is its only line);
    `models`: {method: model file} given instead of the shipped ones."""
    if names:
        for name in names:
            method = methods.get(name, model=(models or {}).get(name))
            if method.learned:
                method.load(factor)
        return list(names)
    ready = methods.ready(factor)
    left = {}  # reason -> names, so that the reasons take one line each
    for name in methods.names():
        if name not in ready:
            # a newcomer read 'no shipped model for factor 2' as a fault: they are trainable, and said how
            why = f"PyTorch is not installed (install it with {pip_install('torch')})" if not methods.runs_here(name) \
                else \
                (f"trainable methods with no shipped model for {grid.describe(factor)}; 'iqt train' makes one "
                 "('iqt methods' lists every method)")
            left.setdefault(why, []).append(name)
    for why, names_left in left.items():
        say(f"skipping {', '.join(names_left)}: {why}")
    return ready


def run(out_dir="iqt-demo", subject_dir=None, factor=2, method_names=None) -> dict:
    """Under the `iqt` command its files are written all or none (fileio.staging.all_or_none: a failure leaves none of
    them, and no folder it made), each declared and checked before any work."""
    from ..fileio.staging import make_folder

    out = Path(out_dir)
    skipped = []
    names = chosen_methods([m.strip() for m in method_names.split(",")] if isinstance(method_names, str) else method_names,
                           factor, say=skipped.append)
    if "cubic" not in names:
        names.insert(0, "cubic")
    plan = fileio.Outputs(subject_dir)
    for name in ("lowres", "truth", "mask", *names):
        plan.add(out / f"{name}.nii.gz", what="demo volume", folder_checked=True)
    plan.add(out / "metrics.md", (".md",), "metrics table", folder_checked=True)
    plan.add(out / "metrics.json", fileio.JSON_SUFFIXES, "metrics", folder_checked=True)
    figure = plan.add(out / "fa_panels.png", (".png",), "figure", folder_checked=True)
    plan.check()
    subject = load_subject(subject_dir) if subject_dir else phantom_subject()
    if subject_dir:  # as iqt fit and benchmark check it (the phantom's table is its own)
        check_subject_table(subject_dir, subject)
    case = make_case(subject, factor)
    for line in skipped:  # once the subject is read: a refusal of it is then the run's only line
        print(line)
    print(f"{subject.name}: high-res {subject.dwi.shape3} -> low-res {case.lr.shape3} ({grid.describe(factor)})")

    # a model shown on a scan it learned from, said as `iqt benchmark` and `report` say it (a review)
    trained = benchmark.trained_on_lines(subject.name, [methods.get(n) for n in names], factor, subject_dir)
    for line in trained:
        warnings.warn(line, IQTWarning, stacklevel=2)
    predictions = {}
    try:  # each method's line on a noisy input: the clause said once (methods/base.py noise_clause_once)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IQTWarning)
            rows = benchmark.score_case(case, names, keep=predictions)
    finally:  # also when a method fails: its warnings may say why
        benchmark.say_once(caught, None, set())
    benchmark.add_ratios(rows)
    for name, pred in predictions.items():  # the maps' names are known now
        for key in pred.maps():
            plan.add(out / f"{name}_{key}.nii.gz", what="uncertainty map", folder_checked=True)
    plan.check()
    earlier = _earlier_volumes(out, plan)
    if earlier:
        print(f"{out}: {len(earlier)} volume{'s' if len(earlier) != 1 else ''} of an earlier demo's other methods "
              f"({', '.join(sorted(p.name for p in earlier))}) to be removed once this run's outputs are in place")

    make_folder(out)  # only now: a failed run leaves no empty folder
    hr_aff = case.hr_affine
    fileio.save_tensor(case.lr, out / "lowres.nii.gz")
    fileio.save_tensor(Volume(case.truth, hr_aff, "tensor"), out / "truth.nii.gz")
    fileio.save_mask(Volume(case.hr_mask, hr_aff, "mask"), out / "mask.nii.gz")
    for name, pred in predictions.items():
        fileio.save_tensor(pred.tensor, out / f"{name}.nii.gz")
        for key, vol in pred.maps().items():
            fileio.save_scalar(vol, out / f"{name}_{key}.nii.gz")

    table = benchmark.markdown_table(rows)
    fileio.write_text(out / "metrics.md", "".join(f"Warning: {line}\n\n" for line in trained) + table + "\n")
    fileio.write_json(out / "metrics.json", rows)
    _figure(case, predictions, figure, subject.name, factor)
    print(table)
    print(wrote_line(out, predictions))
    if not subject_dir:  # its smooth edge flatters the learned methods (docs/measurements.md, The phantom)
        print("the phantom is synthetic (smooth tissue, no sulci): this run shows that everything works; for figures on "
              "a real scan run 'iqt demo --subject DIR' (docs/accuracy.md, Measured on the dev subjects)")
    return {"rows": rows, "figure": str(figure), "out": str(out)}


def wrote_line(out: Path, predictions: dict) -> str:
    """What the run wrote, every kind of file named: the mask and the methods' maps had been left out (a new-user
    audit found files in the folder the line did not name)."""
    keys = sorted({key for pred in predictions.values() for key in pred.maps()})
    n = sum(len(pred.maps()) for pred in predictions.values())
    maps = f", {n} uncertainty map{'s' if n != 1 else ''} (<method>_{'/'.join(keys)}.nii.gz)" if n else ""
    return f"wrote {out}/: metrics.md, metrics.json, fa_panels.png, lowres/truth/mask/<method>.nii.gz{maps}"


def _earlier_volumes(out: Path, plan) -> list[Path]:
    """The volumes an earlier demo into `out` wrote of methods (and their maps) this run does not write, retired with
    the plan's commit: they had stayed beside this run's, of another subject, grid or factor (a first-run audit). Only
    those whose header's run record says 'iqt demo' wrote them: another command's file of such a name is the user's
    (a review: an 'iqt upsample' output named biqt.nii.gz had been removed)."""
    from ..fileio.nifti import run_record_of
    from ..fileio.records import MAP_UNITS

    if not out.is_dir():
        return []
    found = []
    for p in out.iterdir():
        stem = p.name[: -len(".nii.gz")] if p.name.endswith(".nii.gz") else None
        if stem is None or stem in ("lowres", "truth", "mask"):
            continue
        named = any(stem == m or (stem.startswith(m + "_") and stem[len(m) + 1:] in MAP_UNITS) for m in methods.names())
        if named and _by_demo(p, run_record_of) and plan.retire(p):
            found.append(p)
    return found


def _by_demo(path: Path, run_record_of) -> bool:
    try:
        record = run_record_of(path) or {}
    except Exception:  # noqa: BLE001 - not a NIfTI file this reads: not a demo's either
        return False
    # the subcommand as parsed: the command line may hold global options before it (`iqt --threads 1 demo`: a review)
    options = record.get("options") if isinstance(record, dict) else None
    return isinstance(options, dict) and options.get("command") == "demo"


def _figure(case, predictions, path, title, factor):
    """FA / colour-FA panels in canonical axes: low-res (shown by nearest), each method, truth."""
    from . import figures

    nearest = methods.get("nearest").predict(case.lr, factor).tensor.data
    columns = [("low-res input (nearest)", nearest)]  # the names the report gives them (apps/report_page.py)
    columns += [(name, p.tensor.data) for name, p in predictions.items() if name != "nearest"]
    columns.append(("ground truth", case.truth))
    uncertainty = {n: p.std.data for n, p in predictions.items() if p.std is not None}
    figures.stored_panels(columns, case.hr_affine, path, case.hr_mask, uncertainty,
                          title=f"{title}: x{grid.text(factor)} super-resolution")
