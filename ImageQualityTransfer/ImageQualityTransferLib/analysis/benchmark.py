"""`iqt benchmark`: the whole protocol per subject (high-res fit, degrade, each method, metrics, time,
memory) and a markdown table of each method's ratio to cubic; plus a speed run on an HCP-sized volume."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

from . import evaluation
from .. import methods
from ..dmri import fit_noise
from ..core import grid, threads
from ..core.errors import IQTError, IQTWarning
from ..core.noise_level import NOISY_MODEL, noise_index
from ..dmri.subject import Case, check_subject_table, load_subject, make_case
from ..core.progress import progress_bar
from ..fileio.model_files import read_json, sidecar_path
from .measure import measure

HCP_LR_SHAPE = (72, 87, 72)


def score_case(case: Case, chosen, keep: dict | None = None, mask: bool = True, say_floor: bool = True) -> list[dict]:
    """Run each method (names, or `Method`s made with their settings) on one case and score it, the direction
    map included; returns one row per method (predictions go into `keep`). `mask=False` runs the methods without
    the brain mask, as a user without one would (the scores still use it). A series that leaves no residual for the
    reference's noise floor (a b0 and 6 directions) is scored without it, in one warning naming the subject unless
    `say_floor` is False (`run` says it once per subject, not once per style)."""
    no_floor = fit_noise.no_floor_reason(case.bvals)
    if no_floor:  # a common clinical protocol: its other figures still hold (it had been refused whole, an audit)
        if say_floor:
            warnings.warn(f"{case.subject}: no reference noise floor in its rows (–): {no_floor}", IQTWarning,
                          stacklevel=2)
        floor = None
    else:
        floor = fit_noise.noise_floor(case.dwi, case.bvals, case.bvecs, case.truth, case.hr_mask)
    # the input's over its brain mask; a learned method's row gets the figure it chose its model by (methods/base.py:
    # read over the brain it used, e.g. one estimated from the tensors when run without the mask)
    index = noise_index(case.lr.data, case.lr_mask.data)
    warm_torch(chosen)
    rows = []
    for method in chosen:
        method = methods.get(method) if isinstance(method, str) else method
        name = method.label
        with measure() as use:
            pred = method.predict(case.lr, case.factor, case.lr_mask if mask else None, direction=True)
        if keep is not None:
            keep[name] = pred
        unc, direc = pred.std, pred.direction
        metrics = evaluation.evaluate(
            pred.tensor.data, case.truth, case.hr_mask, case.lr_mask.data, case.factor,
            uncertainty=None if unc is None else unc.data, floor_std=floor,
            direction=None if direc is None else direc.data,
        )
        rows.append({"subject": case.subject, "style": case.style, "method": name, "seconds": use.seconds,
                     "peak_mb": None if use.peak_delta is None else use.peak_delta / 2**20,  # None: not measured here
                     "noise_index": pred.tensor.meta.get("noise_index", index),
                     **({"model_for": pred.tensor.meta["model_for"]} if pred.tensor.meta.get("model_for") else {}),
                     **metrics})
    return rows


def warm_torch(chosen) -> None:
    """torch imported and one small convolution run before the first timed CNN, where any of `chosen` (names or
    `Method`s) runs one: torch's start-up had been charged to whichever CNN ran first (`iqt demo`'s table in the
    README: espcn 3.57 s / 190 MB, espcn-hetero 1.68 s / 14 MB; the other order flipped it)."""
    if not any((methods.method_class(m) if isinstance(m, str) else m).requires_torch for m in chosen):
        return
    from ..methods.cnn import require_torch

    torch = require_torch()
    with torch.no_grad():
        torch.nn.functional.conv3d(torch.zeros(1, 1, 4, 4, 4), torch.zeros(1, 1, 3, 3, 3))


def run(subject_dirs, method_names, factor=2, progress=True, tracts=False, tract_seeds=2000,
        styles=("own",), mask: bool = True, tta: bool = False, snr: float | None = None, seed: int = 0,
        models: dict | None = None) -> list[dict]:
    """Score every method on every subject, its low-res input made in each of `styles` (dmri.degrade.STYLES; the
    ratios are to cubic on the same input). With `tracts` (opt-in), each row also gets a "tracts" entry
    (tract-density Dice to the reference, false-positive fraction, streamline count; tractography.compare_case)
    and the cubic row a "tracts_lowres" entry for the low-res input tracked on its own grid. `tta`: the learned
    methods averaged over the grid's symmetries (methods/symmetry.py), rows named METHOD+tta. `snr`: Rician noise
    added to the low-res DWIs at that b0 SNR before the fit, drawn from `seed` (randomise.added_noise; the reference stays
    the good fit).
    `models`: {method: model file} run instead of the shipped models."""
    from ..dmri.degrade import STYLES

    for style in styles:
        if style not in STYLES:
            raise IQTError(f"--styles {style}: choose among {', '.join(STYLES)}")
    names = list(method_names)
    if "cubic" not in names:
        names.insert(0, "cubic")
    models = models or {}  # {method: model file}: a model of one's own instead of the shipped one
    made = [methods.get(n, model=models.get(n), tta=tta and methods.method_class(n).learned)
            for n in names]  # unknown names fail first
    rows = []
    bar = progress_bar(total=len(subject_dirs) * len(styles), desc="inputs", enabled=progress)
    said = set()  # other libraries' warnings: once per run
    for folder in subject_dirs:
        subject = load_subject(folder)
        check_subject_table(folder, subject)  # as iqt fit: the reference is as mirrored as the input, unsaid before
        seen = trained_on(subject.name, made, factor, dwi_sha256(folder), folder)
        for label, model in seen.items():
            warnings.warn(trained_on_line(subject.name, label, model), IQTWarning, stacklevel=2)
        no_floor = fit_noise.no_floor_reason(subject.dwi.bvals)
        if no_floor:  # the series', whatever the style: one line per subject (it had been one per style, a review)
            warnings.warn(f"{subject.name}: no reference noise floor in its rows (–): {no_floor}", IQTWarning, stacklevel=2)
        for style in styles:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", IQTWarning)
                    case = make_case(subject, factor, style=style, snr=snr, seed=seed)
                    case_rows = _score_input(case, made, tracts, tract_seeds, mask)
                    for row in case_rows:
                        if row["method"] in seen:
                            row["trained_on_subject"] = True
                    rows.extend(case_rows)
            finally:  # also when the input fails: its warnings may say why
                say_once(caught, f"{subject.name} ({style})", said)
            bar.update(1)
    bar.close()
    add_ratios(rows)
    return rows


def _training_names_and_files(meta: dict) -> tuple[set, set, dict]:
    """(subject folder names, DWI SHA256s: of the files and of their decompressed bytes, {name: its DWI's decompressed
    SHA256s}) a sidecar records as trained on: its own subjects and files, and the subjects the recorded command of its
    --init model, and of that model's, names (a warm-started model has learnt from those too; they have no checksum here)."""
    import shlex

    t = meta.get("training") or {}
    names = set(t.get("subjects") or ())
    files, by_name = set(), {}
    for d in t.get("data_sha256") or ():
        if isinstance(d, dict):
            dwi = {(k, h) for k, h in (d.get("sha256") or {}).items() if k.startswith("dwi.nii")}
            files.update(h for _, h in dwi)
            if d.get("dwi_content_sha256"):  # the scan's bytes, however stored (newer sidecars)
                files.add(d["dwi_content_sha256"])
                by_name.setdefault(d.get("subject"), set()).add(d["dwi_content_sha256"])
            elif dwi:  # before: its file, compared with a file stored alike (a review)
                by_name.setdefault(d.get("subject"), set()).update(dwi)
    init = t.get("init")
    while isinstance(init, dict):  # every model of a chain of warm starts (each record holds its base's, cnn/training.py)
        command, init = init.get("command"), init.get("init")
        if not isinstance(command, str):
            continue
        try:
            words = shlex.split(command)
        except ValueError:
            words = []
        if "--subjects" in words:
            for w in words[words.index("--subjects") + 1:]:
                if w.startswith("-"):
                    break
                names.add(Path(w).name)
                by_name.pop(Path(w).name, None)  # a name the --init model trained on: told by name only (a review)
    return names, files, by_name


def trained_on(name: str, made, factor, dwi_sha256: str | None = None, folder=None) -> dict:
    """{method label: model file name} of the learned methods in `made` whose model for `factor` (or its model for
    noisy inputs) was trained on this subject: a training subject called `name` (its sidecar's training.subjects,
    folder names, and those of its --init model's command) unless the sidecar records another scan under that name, or
    the same DWI file (`dwi_sha256`, its sidecar's data_sha256: the same scan under another folder name) or the same
    decompressed bytes (the subject `folder`'s DWI, read where a sidecar records a training DWI's checksums). A model scored on one of
    its own training subjects read 0.952 in the interior against 0.958 without it."""
    out, read = {}, {}

    def _content(folder):  # the subject's DWI decompressed, read once
        if "sha" not in read:
            from ..dmri.subject import dwi_path
            from ..fileio.checksums import content_sha256

            try:
                read["sha"] = content_sha256(dwi_path(folder))
            except (IQTError, OSError, EOFError, zlib.error):
                read["sha"] = None
        return read["sha"]

    for m in made:
        if not m.learned:
            continue
        for one in (m, m.for_noisy_inputs(grid.factors(factor))):
            try:  # the sidecar alone: loading the models here took torch's import and their load out of the first
                # subject's timing (espcn 1.58 s / 221 MB read 0.12 s / 42 MB)
                file = Path(one.model_file(factor)) if one is not None else None
                meta = read_json(sidecar_path(file)) if file is not None else {}
            except (IQTError, OSError, ValueError):  # no model for these factors, or none readable: said where it runs
                continue
            file = file.name if file is not None else ""
            names, files, by_name = _training_names_and_files(meta) if isinstance(meta, dict) else (set(), set(), {})
            # a name recorded with its DWI's decompressed checksum matches only that scan: BIDS names such as sub-01
            # repeat across sites, and another site's held-out sub-01 had been left out of the summary (a training
            # audit); the decompressed bytes, so that the scan stored as dwi.nii or gzipped again still matches
            # the subject's DWI decompressed only where the sidecar records such bytes (a file pair needs none: the
            # shipped models' records had had every benchmarked subject decompressed in full for nothing)
            by_bytes = any(isinstance(r, str) for v in by_name.values() for r in v)
            content = _content(folder) if isinstance(folder, (str, os.PathLike)) and by_bytes else None
            other_scan = isinstance(folder, (str, os.PathLike)) and name in by_name and \
                _another_scan(by_name[name], content, folder, dwi_sha256)
            if (name in names and not other_scan) or (dwi_sha256 is not None and dwi_sha256 in files) or \
                    (content is not None and content in files):
                out[m.label] = file
                break
    return out


def _another_scan(recorded: set, content: str | None, folder, file_sha256: str | None) -> bool:
    """Whether the subject in `folder` (its DWI's decompressed SHA256 `content`, its file's `file_sha256`) is another
    scan than the one a sidecar records under its name: decompressed bytes (str) where recorded, else (file name,
    SHA256) pairs, compared only with a file stored alike (dwi.nii.gz with dwi.nii.gz)."""
    from ..dmri.subject import dwi_path

    by_bytes = {r for r in recorded if isinstance(r, str)}
    if by_bytes:
        return content is not None and content not in by_bytes
    try:
        stored = dwi_path(folder).name
    except (IQTError, OSError):
        return False
    alike = {h for k, h in recorded if k == stored}
    return bool(alike) and file_sha256 not in alike


def trained_on_lines(name: str, made, factor, folder) -> list[str]:
    """`trained_on_line` for each model of `made` trained on the subject called `name` in `folder` (None: a subject
    given otherwise, e.g. the phantom, said of none)."""
    if not isinstance(folder, (str, os.PathLike)):
        return []
    return [trained_on_line(name, label, model)
            for label, model in trained_on(name, made, factor, dwi_sha256(folder), folder).items()]


def trained_on_line(name: str, label: str, model: str) -> str:
    """The warning that subject `name` is among the training subjects of the `label` method's `model` (`trained_on`)."""
    return (f"{name}: a subject of this name or scan is among the training subjects of the {label} model ({model}), so "
            f"its {label} figures are optimistic (a model scored on a scan it learned from); score a model on subjects "
            "it was not trained on")


def dwi_sha256(folder) -> str | None:
    """The SHA256 of a subject folder's DWI file (None for a subject given otherwise, or unreadable)."""
    from ..dmri.subject import dwi_path
    from ..fileio.checksums import sha256

    try:
        return sha256(dwi_path(folder)) if isinstance(folder, (str, os.PathLike)) else None
    except (IQTError, OSError):
        return None


def say_once(caught, where: str | None, said: set) -> None:
    """The engine's warnings about one input again, each once (a noisy input's clause once for all the methods:
    methods/base.py `noise_clause_once`), naming the input (`where`: several subjects run in a row; None: not named);
    other libraries' warnings as they came, each once in the run (`said`); `iqt demo` says its input's so too."""
    from ..methods.base import noise_clause_once

    for w in caught:
        text = " ".join(str(w.message).split())
        if not issubclass(w.category, IQTWarning) and (w.category, w.filename, w.lineno, text) not in said:
            said.add((w.category, w.filename, w.lineno, text))
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for text in noise_clause_once(" ".join(str(w.message).split()) for w in caught if issubclass(w.category, IQTWarning)):
        warnings.warn(text if where is None else f"{where}: {text}", IQTWarning, stacklevel=3)


def _score_input(case, made, tracts, tract_seeds, mask=True) -> list[dict]:
    keep = {} if tracts else None
    case_rows = score_case(case, made, keep=keep, mask=mask, say_floor=False)
    if tracts:
        from . import tractography

        s = tractography.comparison_settings(case)
        res = tractography.compare_case(case, keep, n_seeds=tract_seeds, settings=s)
        for r in case_rows:  # with the lengths tracked (scaled to a brain smaller than a human's)
            r["tracts"] = {**res[r["method"]], "tracking": tractography.tracking_record(s)}
            if r["method"] == "cubic":
                r["tracts_lowres"] = res[tractography.LOWRES]
    return case_rows


def tract_table(rows) -> str:
    """Tract-density Dice to the reference (binarised density maps, same seeds), its ratio to cubic and
    the fraction of density outside the reference's, per subject and method (rows from run(tracts=True))."""
    lines = ["| subject | method | tract Dice | × cubic | false-positive density | streamlines |", "|---|---|---|---|---|---|"]
    cubic = {_input(r): r["tracts"]["tract_dice"] for r in rows if r["method"] == "cubic" and "tracts" in r}
    for r in rows:
        entries = [(r["method"], r.get("tracts"))]
        if "tracts_lowres" in r:
            entries.insert(0, ("low-res input", r["tracts_lowres"]))
        for name, t in entries:
            if t is None:
                continue
            ref = cubic.get(_input(r))
            ratio = t["tract_dice"] / ref if ref else None
            lines.append(f"| {_label(r)} | {name} | {_fmt(t['tract_dice'], 3)} | {_fmt(ratio, 3)} | "
                         f"{_fmt(t['tract_fp_fraction'], 3)} | {t['n_streamlines']} |")
    return "\n".join(lines)


def _input(row) -> tuple:
    """A row's input: the subject and the style its low-res tensors were made in."""
    return row["subject"], row.get("style", "own")


def _label(row) -> str:
    style = row.get("style", "own")
    return row["subject"] if style == "own" else f"{row['subject']} [{style}]"


def add_ratios(rows) -> None:
    """Each row gets interior/exterior DT-RMSE ratios to cubic on the same input (subject and style)."""
    cubic = {_input(r): r for r in rows if r["method"] == "cubic"}
    for r in rows:
        ref = cubic.get(_input(r))
        for region in ("interior", "exterior"):
            if ref and ref[region]["dt_rmse"] > 0:
                r[region]["ratio_to_cubic"] = r[region]["dt_rmse"] / ref[region]["dt_rmse"]


def _fmt(x, digits=2):
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def markdown_table(rows) -> str:
    """Subject, method, DT-RMSE per region (1e-5 mm^2/s) with ratio to cubic and the reference noise floor, FA and
    principal-direction errors, uncertainty calibration (element std; direction over tracked voxels), time, memory."""
    head = ("| subject | method | interior DT-RMSE (1e-5 mm²/s) | × cubic | exterior DT-RMSE (1e-5 mm²/s) | × cubic | "
            "ref. noise floor (int / ext) | FA RMSE (int) | e1 error ° (int) | uncert. ρ (int / ext / brain) | within ±2σ (int) | "
            "direction ρ / within 2× | non-physical voxels / share with σ ≥ edge median | time (s) | peak MB above start |")
    lines = [head, "|" + "---|" * 15]
    for r in rows:
        i, e, w = r["interior"], r["exterior"], r.get("brain", {})
        lines.append(
            f"| {_label(r)} | {r['method']}{' (noisy-input model)' if r.get('model_for') else ''} | {_fmt(i['dt_rmse'])} | "
            f"{_fmt(i.get('ratio_to_cubic'), 3)} | "
            f"{_fmt(e['dt_rmse'])} | {_fmt(e.get('ratio_to_cubic'), 3)} | "
            f"{_fmt(i.get('noise_floor'))} / {_fmt(e.get('noise_floor'))} | {_fmt(i['fa_rmse'], 4)} | {_fmt(i.get('angle_error'), 1)} | "
            f"{_fmt(i.get('spearman'))} / {_fmt(e.get('spearman'))} / {_fmt(w.get('spearman'))} | {_fmt(i.get('within_2sigma'))} | "
            f"{_fmt(w.get('direction_spearman'))} / {_fmt(w.get('direction_within_2'))} | "
            f"{w.get('n_nonphysical', '–')} / {_fmt(w.get('nonphysical_flagged'))} | "
            f"{_fmt(r['seconds'])} | {_fmt(r['peak_mb'], 0)} |"
        )
    return "\n".join(lines)


def summary_table(rows) -> str:
    """Per method and input style, over subjects: the range and median of the DT-RMSE ratio to cubic in each
    region, and of the whole-brain uncertainty figures (Spearman, ±2σ coverage) where the method has them. A subject
    the method's model was trained on (`trained_on_subject`) is left out of its row and counted apart: it had set the
    headline range (a researcher's audit)."""
    lines = ["| method | style | subjects | interior × cubic: range (median) | exterior × cubic: range (median) | "
             "uncert. ρ (brain): range | within ±2σ (brain): range |", "|---|---|---|---|---|---|---|"]
    keys = []
    for r in rows:
        k = (r["method"], r.get("style", "own"))
        if k not in keys and r["method"] != "cubic":
            keys.append(k)

    def span(values, median=True):
        v = [x for x in values if x is not None and np.isfinite(x)]
        if not v:
            return "–"
        text = f"{min(v):.3f}-{max(v):.3f}"
        return text + (f" ({np.median(v):.3f})" if median else "")

    for method, style in keys:
        every = [r for r in rows if r["method"] == method and r.get("style", "own") == style]
        sel = [r for r in every if not r.get("trained_on_subject")]
        brain = [r.get("brain", {}) for r in sel]
        noisy = sum(1 for r in sel if r.get("model_for"))  # ran the method's model trained with added noise
        name = method + (f" ({noisy} with the noisy-input model)" if noisy else "")
        if len(every) > len(sel):
            name += f" (without {len(every) - len(sel)} it was trained on)"
        lines.append(f"| {name} | {style} | {len(sel)} | {span([r['interior'].get('ratio_to_cubic') for r in sel])} | "
                     f"{span([r['exterior'].get('ratio_to_cubic') for r in sel])} | "
                     f"{span([b.get('spearman') for b in brain], False)} | {span([b.get('within_2sigma') for b in brain], False)} |")
    return "\n".join(lines)


UNITS = {
    "dt_rmse": "1e-5 mm^2/s", "md_rmse": "1e-5 mm^2/s", "noise_floor": "1e-5 mm^2/s", "fa_rmse": "FA (unitless)",
    "psnr": "dB", "angle_error": "degrees (principal eigenvector)", "ratio_to_cubic": "this method's dt_rmse over cubic's "
    "on the same input", "spearman": "Spearman correlation of the std map with the per-voxel error",
    "within_2sigma": "share of element errors within ±2 std", "direction_within_2": "share of voxels whose direction "
    "error is within twice the direction map", "n_nonphysical": "output voxels inside the brain (its high-res mask; not the "
    "context answered beyond it) with a negative eigenvalue", "nonphysical_flagged": "share of those whose std is at least the brain edge's median",
    "n_voxels": "voxels in the region", "n_uncovered": "of those, voxels with no prediction (exactly zero), left out "
    "of the uncertainty figures", "n_implausible": "region voxels left out of the scores (reference tensor not "
    "plausible)", "n_no_reference": "region voxels left out of the scores (no reference tensor there: zero, only a "
    "fit's floor (every element within 1e-5 mm^2/s of zero), or NaN in every element)", "direction_spearman": "Spearman correlation of the direction map with the principal-direction "
    "error", "n_tracked": "voxels the direction figures are over (reference FA >= 0.2)", "seconds": "wall seconds of "
    "the method's predict", "peak_mb": "MB of memory above the run's start (peak)", "tract_dice": "Dice of the "
    "binarised tract-density maps with the reference's (same seeds)", "tract_fp_fraction": "share of the tract "
    "density outside the reference's", "n_streamlines": "streamlines tracked", "shape": "low-res volume (voxels)",
    "noise_index": "the input tensors' roughness in the brain over their MD (core.noise_level.noise_index; unitless): "
    "a learned method's as it read it to choose its model, the others' over the brain mask; null where too little "
    "brain to read it",
}


def document(rows, given_models: dict | None = None, **settings) -> dict:
    """The JSON `iqt benchmark --json` writes: what ran (software, version, settings, each learned method's model file
    and the SHA256 of its weights: `given_models`' where a run was given its own) and each figure's unit, then the
    rows, so that a file read months later says what its numbers are."""
    from ..fileio.model_files import software

    return {**software(), "settings": {**settings, "models": model_records(settings.get("methods", ()),
                                                                            settings["factor"], given_models)},
            "units": UNITS, "rows": rows}


def model_records(names, factor, given_models: dict | None = None) -> dict:
    """{method: {"file": its sidecar, "weights_sha256": ...}} of the learned methods among `names` at `factor` (the
    given model where `given_models` names one; the noisy-input twin beside the shipped one)."""
    models = {}
    for name in names:
        m = methods.get(name, model=(given_models or {}).get(name))
        if m.learned:
            try:
                path, sha = m.model_record(factor)
            except IQTError:
                continue
            models[name] = {"file": path, "weights_sha256": sha}  # file: the sidecar that names the weights
            twin = m.for_noisy_inputs(grid.factors(factor))
            if twin is not None:  # run instead on inputs noisier than clean scans (rows with "model_for")
                path, sha = twin.model_record(factor)
                models[name]["noisy_inputs"] = {"file": path, "weights_sha256": sha, "above_noise_index": NOISY_MODEL}
    return models


# ---------------------------------------------------------------- speed on an HCP-sized volume


def speed_volume(shape=HCP_LR_SHAPE, seed=0):
    """A smooth, plausible low-res tensor field in an ellipsoidal brain, for timing only."""
    from scipy import ndimage

    from ..core import tensors
    from ..core.volume import Volume

    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"), -1)
    mask = (grid**2).sum(-1) < 0.85
    v = ndimage.gaussian_filter(rng.normal(size=shape + (3,)), (4, 4, 4, 0))
    v /= np.linalg.norm(v, axis=-1, keepdims=True) + 1e-12
    fa_like = 1.2e-3 * ndimage.gaussian_filter(rng.random(shape), 3)
    m = 0.5e-3 * np.eye(3) + fa_like[..., None, None] * v[..., :, None] * v[..., None, :]
    t = tensors.from_matrix(m).astype(np.float32)
    t[~mask] = 0
    affine = np.diag([-2.5, 2.5, 2.5, 1.0])
    return Volume(t, affine, "tensor"), Volume(mask, affine, "mask")


def speed(method_names, shape=HCP_LR_SHAPE, repeats=1, tta: bool = False) -> list[dict]:
    """Time `iqt upsample` end to end (fresh process: start-up, read, method, write) and its peak memory; with `tta`,
    each learned method also with `--tta` (rows METHOD+tta), right after its plain run."""
    from .. import fileio

    runs = []
    for name in method_names:
        runs.append((name, []))
        if tta and methods.method_class(name).learned:
            runs.append((name + "+tta", ["--tta"]))

    rows = []
    capped = [] if threads.cap() is None else ["--threads", str(threads.cap())]  # the timed runs keep this run's cap
    with tempfile.TemporaryDirectory(prefix="iqt-speed-") as tmp:
        lr, mask = speed_volume(shape)
        lr_path, mask_path = Path(tmp) / "lr.nii.gz", Path(tmp) / "mask.nii.gz"
        fileio.save_tensor(lr, lr_path)
        fileio.save_scalar(mask, mask_path)
        for label, extra in runs:
            name = label.split("+")[0]
            for _ in range(repeats):
                out = Path(tmp) / f"hr_{label}.nii.gz"
                cmd = [sys.executable, "-m", "ImageQualityTransferLib", *capped, "upsample", str(lr_path), "-o",
                       str(out), "--method", name, "--mask", str(mask_path), *extra]
                wall, status, err, peak_mb = _timed(cmd)
                if status != 0:
                    raise RuntimeError(f"iqt upsample --method {name} {' '.join(extra)} failed: {err.strip()}")
                rows.append({"method": label, "shape": list(shape), "seconds": wall, "peak_mb": peak_mb})
        # reference in the same run: the interpreter start-up with the engine imported
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import ImageQualityTransferLib.apps.cli"], check=True)
        rows.append({"method": "(start-up + import only)", "shape": list(shape), "seconds": time.perf_counter() - t0,
                     "peak_mb": float("nan")})
    return rows


def _timed(cmd) -> tuple[float, int, str, float | None]:
    """Run `cmd`: its wall seconds, exit status, stderr and peak resident memory in MB, None where the system does not
    report a child's (Windows has no os.wait4). ru_maxrss is in
    KiB on Linux and in bytes on macOS."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not hasattr(os, "wait4"):
        err = proc.communicate()[1]
        return time.perf_counter() - t0, proc.returncode, err.decode(errors="replace"), None
    err = proc.stderr.read()  # to its end before the wait: a child writing much to a full pipe would never end
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    proc.stderr.close()
    return wall, proc.returncode, err.decode(errors="replace"), ru.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def speed_table(rows) -> str:
    lines = ["| method | low-res shape | `iqt upsample` wall (s) | peak RSS (MB) |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {'×'.join(map(str, r['shape']))} | {r['seconds']:.2f} | {_fmt(r['peak_mb'], 0)} |")
    return "\n".join(lines)
