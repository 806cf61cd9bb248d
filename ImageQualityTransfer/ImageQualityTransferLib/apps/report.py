"""`iqt report`: the two runs behind the page, `run` (degrade a subject, default the phantom, upsample with each
method, score and track against its own fit) and `run_input` (a user's own low-res tensors, no reference); each
writes one self-contained HTML page (`apps.report_page`, its figures `apps.report_figures`).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np

from ..core import grid, orientation, tensors
from ..core.errors import IQTError, IQTWarning
from ..core.volume import Volume
from ..dmri.dti import ESTIMATED_SUPPORT, SCALE_MIN_VOXELS
from .report_page import NEAREST, tract_methods, write_report


def run(path, subject_dir=None, factor=2, method_names=None, tracts: bool = True, n_seeds: int = 2000,
        models: dict | None = None, names_only: bool = False) -> Path:
    """The whole run behind `iqt report`: degrade the subject (default the phantom), upsample with each
    method, score, track, and write the page; `models`: {method: model file} run instead of the shipped ones;
    `names_only` (`iqt --no-record`): the page names files, no folders (`file_names`)."""
    from ..analysis import benchmark, tractography
    from .. import methods
    from .demo import chosen_methods
    from ..dmri.subject import load_subject, make_case, phantom_subject

    models = models or {}
    skipped = []
    names = chosen_methods(method_names, factor, models, say=skipped.append)
    if "cubic" not in names:
        names.insert(0, "cubic")
    subject = load_subject(subject_dir) if subject_dir else phantom_subject()
    fit_notes = reference_fit_notes(subject) if subject_dir else []
    case = make_case(subject, factor)
    for line in skipped:  # once the subject is read: a refusal of it is then the run's only line
        print(line)
    made = [methods.get(n, model=models.get(n)) for n in names]
    # a model shown on a scan it learned from: said as `iqt benchmark` says it, here and on the page (a training audit)
    trained = benchmark.trained_on_lines(subject.name, made, factor, subject_dir)
    for line in trained:
        warnings.warn(line, IQTWarning, stacklevel=2)
    preds = {}
    try:
        with warnings.catch_warnings(record=True) as caught:  # the engine's lines (a noisy input's model) go on the page
            warnings.simplefilter("always", IQTWarning)
            rows = benchmark.score_case(case, made, keep=preds)
    finally:  # also when a method fails: its warnings may say why (as apps/demo.py says them)
        engine = _said_once(caught)
    benchmark.add_ratios(rows)
    nearest = methods.get("nearest").predict(case.lr, factor).tensor.data
    order = ["cubic"] + [n for n in preds if n not in ("cubic", "nearest")]  # the columns in --input's order
    columns = [(NEAREST, nearest)] + [(n, preds[n].tensor.data) for n in order]
    columns.append(("ground truth", case.truth))
    unc = {n: p.std.data for n, p in preds.items() if p.std is not None}
    direc = {n: p.direction.data for n, p in preds.items() if p.direction is not None}
    tract_rows = lines = None
    if tracts:
        try:
            tract_rows = tractography.compare_case(case, preds, n_seeds=n_seeds)
            seeds = tractography.comparison_seeds(case, n_seeds)
            show = ["cubic"] + tract_methods(list(preds), tract_rows)
            lines = {"ground truth": tractography.track(Volume(case.truth, case.hr_affine, "tensor"), seeds,
                                                         mask=tractography.reference_voxels(case)),
                     "low-res input": tractography.track(case.lr, seeds, mask=case.lr_mask.data)}
            for n in show:
                lines[n] = tractography.track(preds[n].tensor, seeds, mask=case.hr_mask)
        except (IQTError, MemoryError) as exc:  # tractography is an extra: the page is still written without it (a bug
            # such as a TypeError is not hidden in a note)
            tract_rows, lines = None, None
            notes = [f"Tractography left out: {exc}"]
        else:
            notes = []
    else:
        notes = []
    notes[:0] = given_model_notes(models) + [f"Warning: {n}" for n in trained] + \
        [f"Warning: the reference's fit: {n}" for n in fit_notes] + [f"Warning: {n}" for n in engine]
    said = ran_note(names, factor, models, tractography.comparison_settings(case) if lines else None, n_seeds,
                    len(seeds) if lines else None, preds=preds)
    if said:
        notes.insert(0, said)
    notes.insert(0, degrade_note(factor, subject.dwi.affine, "subject's" if subject_dir else "phantom's",
                                 "made from its b0" if subject_dir else "its own"))
    if names_only:
        from ..dmri.subject import dwi_path

        notes = file_names(notes, [subject_dir, dwi_path(subject_dir) if subject_dir else None, *models.values()])
    voxel = Volume(case.truth, case.hr_affine, "tensor").voxel_size
    return write_report(path, f"{subject.name}: ×{grid.text(factor)} super-resolution", columns, case.hr_mask, voxel, case.hr_affine,
                        uncertainty=unc or None, direction=direc or None, truth=case.truth, metrics_rows=rows, tract_rows=tract_rows, tracts=lines,
                        notes=notes, std_scales=std_scales(preds))


# an absolute path in a note (a shipped model's, one resolved by the engine): from "/" at a word's start, two parts or more
_ABSOLUTE = re.compile(r"(?<![^\s('\"])/(?:[^\s/:;,'\"()<>]+/)+[^\s/:;,'\"()<>]+")


def file_names(notes, paths=()) -> list[str]:
    """`notes` with each of `paths` (as given, and made absolute) and any other absolute path cut to its file or folder
    name: the page of `iqt --no-record report` names the input, mask, models and subject without their folders, which
    in a hospital often name the patient (docs/command-line.md, Sharing outputs)."""
    given = {str(p).rstrip("/") for p in paths if p} - {""}
    given |= {os.path.abspath(p) for p in given}
    out = []
    for note in notes:
        for p in sorted(given, key=len, reverse=True):  # the longest first: a folder's path is the start of its files'
            note = note.replace(p, Path(p).name)
        out.append(_ABSOLUTE.sub(lambda m: Path(m.group(0)).name, note))
    return out


# the factors' axes in words: one sentence with `iqt upsample`'s (core/orientation.py)
factor_axes = orientation.factor_axes


def degrade_note(f, affine, whose: str, mask_made: str) -> str:
    """How the page's low-res input was made in --subject mode (dmri/subject.py make_case: the default style)."""
    from ..dmri.degrade import STYLES

    axes = factor_axes(f, affine)
    return (f"Low-res input: the {whose} DWIs block-averaged at ×{grid.text(f)}{f' ({axes})' if axes else ''}, then "
            f"fitted as 'iqt degrade --style own' does: {STYLES['own']}; its mask: the low-res voxels whose block is "
            f"more than half inside the {whose} high-res brain mask ({mask_made}).")


def input_note(lr: Volume, mask_path, f) -> str:
    """How --input was read and with which mask (the file's name only: its folders may name a patient), and the axes of
    per-axis factors: the page had said none of them (an audit)."""
    from ..fileio.nifti import is_nrrd
    from ..fileio.volumes import as_read, layout_words

    source = lr.meta.get("path")
    name = Path(str(source)).name if source else "the input"
    if source and is_nrrd(source):
        read = "Slicer's tensor NRRD"
    else:
        order = as_read(lr)
        read = f"{layout_words(order)} (--tensor-order {order['order']})"
    mask = f"mask {Path(str(mask_path)).name}" if mask_path else \
        "no mask: each method's support is the input's non-zero tensors (a brain estimated from them where they fill " \
        "the field of view)"
    axes = factor_axes(f, lr.affine)
    return f"Input: {name}, read as {read}; {mask}" + (f"; ×{grid.text(f)}: {axes}" if axes else "") + "."


def _said_once(caught, first=()) -> list[str]:
    """The IQTWarnings among `caught`, each once (every method says the input's: `noise_clause_once`), after the lines
    `first`, said again on the terminal with the other warnings; their texts for the page."""
    from ..methods.base import noise_clause_once

    notes = noise_clause_once([*first, *(str(w.message) for w in caught if issubclass(w.category, IQTWarning))])
    for w in caught:
        if not issubclass(w.category, IQTWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for note in notes:
        warnings.warn(note, IQTWarning, stacklevel=3)
    return notes


def noisy_models(preds) -> set[str]:
    """The methods whose prediction ran the model trained with added noise (methods/base.py `_for_noise`)."""
    return {n for n, p in preds.items() if p.tensor.meta.get("model_for")}


def std_scales(preds) -> dict[str, float]:
    """{method: g} for the uncertainty maps a noisy input raised by g (methods/base.py `_for_noise`)."""
    return {n: float(p.tensor.meta["noise_std_scale"]) for n, p in preds.items()
            if p.std is not None and "noise_std_scale" in p.tensor.meta}


def noise_index_of(preds) -> float | None:
    """The input's noise index as the learned methods read it (methods/base.py `_for_noise`), None where none did."""
    return max((p.tensor.meta["noise_index"] for p in preds.values() if "noise_index" in p.tensor.meta), default=None)


def reference_fit_notes(subject, scored: str = "the page scores every method against this fit as it is",
                        said: str = "") -> list[str]:
    """What `iqt fit`'s checks say of the subject's own fit, the reference every method is scored against (a slice's
    signal dropout, a moved b0, a gradient table in another frame), said on the terminal too (each line after `said`):
    the page had scored methods against a reference fitted through a dropout without a word (a tractography audit).
    `scored`: what the command does with that fit (`iqt lesion-check` says it too)."""
    from ..dmri.fit_checks import fit_with_checks

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IQTWarning)
        fit_with_checks(subject.dwi, subject.mask, fit=lambda dwi, mask: subject.tensor)
    # iqt report has no --exclude-outliers: its page scores against the fit as it is
    notes = [str(w.message).replace("rerun 'iqt fit' with --exclude-outliers to fit without them",
                                    scored)
             for w in caught if issubclass(w.category, IQTWarning)]
    for note in notes:
        warnings.warn(said + note, IQTWarning, stacklevel=3)
    return notes


def given_model_notes(models: dict | None) -> list[str]:
    """One line per method run with a model file given instead of its shipped one (the page says which model ran)."""
    return [f"{name}: the model {path} (given), not the shipped one" for name, path in (models or {}).items()]


def ran_note(names, f, models: dict | None = None, tracking=None, n_seeds: int | None = None,
             seeded: int | None = None, preds: dict | None = None) -> str:
    """What ran, in one line for the page: each learned method's model file and the start of its weights' SHA256,
    the Monte Carlo samples, and the tracking's settings (the page had named the methods only; a tractography audit).
    `seeded`: the seeds drawn, fewer than `n_seeds` asked where the white matter has fewer voxels (one seed each).
    `preds`: the predictions that ran (None: not known, both models named). The methods that ran their model trained
    with added noise (`noisy_models`) are named with it, not the clean one (a noisy scan's page had given the clean
    model's SHA256), and why is worded by the input's noise index (`noise_index_of`; methods/base.py `_noisier`), left
    unsaid where no index was read. Both are read here, not by each page's call: a call that dropped the index had
    worded a 0.08 input as one outside the clean scans' range and no test saw it."""
    from .. import methods
    from ..analysis.benchmark import model_records
    from ..methods.base import _noisier
    from ..core.words import listed

    noisy = None if preds is None else noisy_models(preds)
    index = None if preds is None else noise_index_of(preds)
    sampled = [n for n in names if methods.method_class(n).takes_samples]
    if sampled:
        from ..methods.cnn.inference import DEFAULT_SAMPLES
    records = model_records(names, f, models)
    parts, switched = [], []
    for name, rec in records.items():
        if noisy is not None and name in noisy and "noisy_inputs" in rec:
            rec, extra = rec["noisy_inputs"], ""  # trained with added noise: said once for all, below
            switched.append(name)
        else:
            extra = f"; on noisy inputs {Path(rec['noisy_inputs']['file']).name}" \
                if "noisy_inputs" in rec and noisy is None else ""
        # the samples in the method's own brackets (a part of their own had named the method again)
        drawn = f", {DEFAULT_SAMPLES} Monte Carlo samples" if name in sampled else ""
        parts.append(f"{name}: {Path(rec['file']).name} (weights SHA256 {str(rec['weights_sha256'])[:12]}{drawn}){extra}")
    if switched:  # why, said once for all of them (the page had said it once per method); "each" where every model
        # named is one (the line had named the three methods a second time: 389 characters)
        who = "each" if len(switched) == len(parts) > 1 else listed(switched)
        parts.append(f"{who} ran {'their noise-trained models' if who != 'each' and len(switched) > 1 else 'its noise-trained model'}"
                     + ("" if index is None else f": {_noisier(index)}"))
    if unnamed := [n for n in sampled if n not in records]:
        parts.append(f"{', '.join(unnamed)}: {DEFAULT_SAMPLES} Monte Carlo samples")
    if tracking is not None:
        drawn = n_seeds if seeded is None or seeded == n_seeds else \
            f"{seeded} (one in each white-matter voxel: --n-seeds {n_seeds} asked for more than there are)"
        parts.append(f"tracts: {drawn} random seeds, FA stop {tracking.fa_threshold:g}, at most {tracking.angle:g}° a "
                     f"step, steps of {tracking.step:g} mm, streamlines of {tracking.min_length:g} to "
                     f"{tracking.max_length:g} mm kept")
    return "What ran: " + "; ".join(parts) + "." if parts else ""


def run_input(path, lr: Volume, mask: Volume | None = None, factor=2, method_names=None, tracts: bool = True,
              n_seeds: int = 2000, read_notes=(), models: dict | None = None, mask_path=None,
              names_only: bool = False) -> Path:
    """`iqt report --input`: the page for a user's own low-res tensors, with no reference: the input, cubic and each
    method's output with its uncertainty maps, and their tracts from the same seeds (white matter of cubic's output,
    inside the rim of a brain estimated from the tensors); `mask` on the input's or the output's grid (as `iqt upsample
    --mask`, read from `mask_path`). The engine's warnings about the input (`read_notes`: those its reading gave) head
    the page; `models` and `names_only`: as `run`."""
    import warnings

    from .. import methods
    from ..analysis import tractography
    from ..core.errors import IQTWarning
    from ..dmri.dti import inside_rim
    from ..methods.base import predict_within
    from .demo import chosen_methods

    f = grid.factors(factor)
    models = models or {}
    names = chosen_methods(method_names, f, models)
    names = ["cubic"] + [n for n in names if n not in ("cubic", "nearest")]
    preds = {}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IQTWarning)
            for name in names:
                preds[name], lr_mask = predict_within(methods.get(name, model=models.get(name)), lr, f, mask,
                                                      direction=True)
            nearest = methods.get("nearest").predict(lr, f, lr_mask).tensor.data
    finally:  # each of the engine's lines once (every method says the input's), on the terminal too, if one fails
        notes = _said_once(caught, read_notes)
    first = preds["cubic"].tensor
    support = np.any(np.stack([np.any(p.tensor.data != 0, axis=-1) for p in preds.values()]), axis=0)
    estimated = any(p.tensor.meta.get("support") == ESTIMATED_SUPPORT for p in preds.values())
    scale = inside_rim(support, first.voxel_size) if estimated else None  # the rim's noise fits would set the scales
    brain = support if scale is None or scale.sum() < SCALE_MIN_VOXELS else scale
    columns = [(NEAREST, nearest)] + [(n, p.tensor.data) for n, p in preds.items()]
    unc = {n: p.std.data for n, p in preds.items() if p.std is not None}
    direc = {n: p.direction.data for n, p in preds.items() if p.direction is not None}
    lines = None
    if tracts:
        try:
            wm = brain & (tensors.fa(first.data) >= 0.3) & tensors.plausible(first.data)
            if not wm.any():
                raise IQTError("no voxel of cubic's output with FA >= 0.3 to seed from")
            seeds = tractography.random_seeds(wm, first.affine, n_seeds, 0)
            f_lr = tuple(slice(None, None, k) for k in f)  # the support on the input's grid (it is made of its blocks)
            lines = {"low-res input": tractography.track(lr, seeds, mask=support[f_lr])}
            for n in ["cubic"] + tract_methods(list(preds)):
                lines[n] = tractography.track(preds[n].tensor, seeds, mask=support)
        except (IQTError, MemoryError) as exc:  # tractography is an extra: the page is still written without it (a bug
            # such as a TypeError is not hidden in a note)
            lines = None
            notes.append(f"Tractography left out: {exc}")
    notes = given_model_notes(models) + [f"Warning: {n}" for n in notes]
    tracking = tractography.TrackingSettings().check().resolved(support, first.affine) if lines else None
    said = ran_note(names, f, models, tracking, n_seeds, len(seeds) if lines else None, preds=preds)
    if said:
        notes.insert(0, said)
    notes.insert(0, input_note(lr, mask_path, f))
    source = lr.meta.get("path", "the input")
    notes.insert(0, f"{source}: no reference is known for these tensors, so the page shows no errors or scores; "
                    "read the uncertainty maps for where each method is unsure.")
    if names_only:
        notes = file_names(notes, [source, mask_path, *models.values()])
    # what the page's black is: the page had called it "the brain mask (a subject's own mask may leave out parts of the
    # ventricles ...)" on an input given no mask (a report audit)
    black = f"the mask {Path(str(mask_path)).name}" if mask_path else \
        "the brain estimated from the input's tensors" if estimated else "the input's non-zero tensors"
    return write_report(path, f"{Path(str(source)).name}: ×{grid.text(f)} super-resolution", columns, support,
                        first.voxel_size, first.affine, uncertainty=unc or None, direction=direc or None, tracts=lines,
                        notes=notes, scale_region=None if brain is support else scale, mask_words=black,
                        std_scales=std_scales(preds))
