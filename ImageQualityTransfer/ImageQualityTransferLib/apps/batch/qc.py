"""The cohort's QC table: one row per subject and run in qc.tsv and qc.html, outliers flagged by median and MAD."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from .items import label
from .records import Settings, method_label, res_label

QC_METRICS = ("voxel_mm3", "snr", "brain_ml", "median_std", "nonphysical_pct", "noise_index")
# A metric measured in different ways by input kind is compared within each kind only: the brain volume is a DWI's
# median-Otsu mask, a tensor file's non-zero voxels (another tool's mask) or a brain estimated from the tensors.
QC_GROUPED_BY = {"brain_ml": "brain_from"}


# The least spread a metric is read with (MAD at least this share of the median): voxel volume at 0.1 % (a cohort of one
# protocol has MAD 0 or header rounding in it, and the scan at another resolution is then still the one flagged); the
# measured figures at 5 %, since three subjects 0.4 % apart in brain volume, or 3 % in median uncertainty, had been
# flagged otherwise. nonphysical_pct, a percentage, at least 0.5 points.
QC_MIN_SPREAD = {"voxel_mm3": 1e-3}
QC_MIN_SPREAD_DEFAULT = 0.05
QC_MIN_ABSOLUTE = {"nonphysical_pct": 0.5}
QC_MIN_SUBJECTS = 5  # fewer values than this flag nothing: median and MAD of 3 or 4 say little


def flag_outliers(results: list[dict], metrics=QC_METRICS, k: float = 3.0) -> None:
    """Mark each subject whose metric lies outside median ± k·MAD over the subjects that have it (MAD scaled by
    1.4826, a standard deviation for normal data, and at least QC_MIN_SPREAD of the median); fewer than
    QC_MIN_SUBJECTS values flag nothing. Metrics in QC_GROUPED_BY are compared within each group of subjects."""
    for r in results:
        r["outlier"] = []
    for m in metrics:
        groups: dict = {}
        for r in results:
            groups.setdefault(r["qc"].get(QC_GROUPED_BY[m]) if m in QC_GROUPED_BY else None, []).append(r)
        for members in groups.values():
            _flag(members, m, k)


def _flag(results: list[dict], m: str, k: float) -> None:
    """`flag_outliers` for metric `m` over `results`."""
    vals = [(r, r["qc"].get(m)) for r in results]
    vals = [(r, float(v)) for r, v in vals if v is not None and np.isfinite(float(v))]
    if len(vals) >= QC_MIN_SUBJECTS:
        x = np.array([v for _, v in vals])
        med = np.median(x)
        mad = max(1.4826 * np.median(np.abs(x - med)), QC_MIN_SPREAD.get(m, QC_MIN_SPREAD_DEFAULT) * abs(med),
                  QC_MIN_ABSOLUTE.get(m, 0.0))
        for r, v in vals:
            if mad > 0 and abs(v - med) > k * mad:
                r["outlier"].append(m)


# new columns go at the end: a lab's script reads them by position (awk's $10 had become noise_std_scale, not
# nonphysical_pct, when it was put after median_std_mm2s: a review); the page shows a column where it reads best (PAGE_AFTER)
QC_COLUMNS = ("subject", "model", "res", "status", "input_voxel_mm", "snr", "brain_ml", "brain_from", "median_std_mm2s",
              "nonphysical_pct", "noise_index", "fit_outlier_pairs", "fit_outlier_volumes", "b0_shift_vox", "b0_check", "bvec_check",
              "model_used", "outlier", "seconds", "figure", "notes", "reason", "noise_std_scale", "failed_fits_flagged",
              "holes_flagged")
# on qc.html beside the sigma it multiplied, and with the input's other checks
PAGE_AFTER = {"noise_std_scale": "median_std_mm2s", "failed_fits_flagged": "bvec_check",
              "holes_flagged": "failed_fits_flagged"}
# fit_outlier_pairs, fit_outlier_volumes, b0_shift_vox: iqt fit's checks of a DWI subject's fit (dmri/outliers.py,
# dmri/motion.py), the (slice, volume) pairs and whole volumes the tensor model does not explain and how far (voxels)
# the b0 lies from the mean DWI (the first two n/a with 6 diffusion-weighted directions, fitted exactly: the check
# cannot see dropout or motion there, dmri/outliers.py blind_count); b0_check (dmri/b0s.py): ok, or a b0 of another
# brightness than the others or a brain median MD no in-vivo brain has; bvec_check (dmri/gradcheck.py): ok, or the correction of the gradient table that makes
# the fibres clearly more continuous (x-flipped, rows(y,x,z), scanner-RAS, ...), n/a with too little white matter to
# judge; n/a for a tensor file (and a subject done before they were recorded), except that bvec_check holds iqt
# upsample's frame check of a tensor file read in another tool's order (subject.frame_record; "not checked" under
# --no-frame-check, "not judged (noise)" where noise ends the streamlines, neither ok nor failed); notes: the subject's warnings, as in its
# sidecars' Notes (they had reached only stderr and the sidecars: a cohort's table read "done, ok, ok" for a series
# read as two shells, an input audit); figure: the subject's QC figure (subject.qc_figure) from the table's folder;
# failed_fits_flagged: the low-res voxels of failed fits the subject's warning names (methods/inputs.py
# drop_failed_fits: a cavity, many, or any below the range), which the learned methods fill and raise every uncertainty
# map at (a cavity had been only a line in notes, its row white and its count in no column: a cohort audit)
# holes_flagged: the low-res voxels of holes the input's fitted tensors enclose (methods/inputs.py enclosed_holes: a
# lesion or ventricle its fit's mask left out), which the learned methods fill and raise every uncertainty map at


def _fmt(v, spec):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return format(v, spec) if np.isfinite(v) else "n/a"


def _volumes(q: dict) -> str:
    """fit_outlier_volumes: the count, with "every other" where the halves disagree and no volume could be named
    (dmri/outliers.py ALTERNATE_Z; a subject so had read a clean 0, a review)."""
    n = _fmt(q.get("fit_outlier_volumes"), ".0f")
    if not q.get("fit_halves_disagree"):
        return n
    return "every other" if n == "0" else f"{n}+every other"


def _model_used(r: dict) -> str:
    """"noisy" where the subject ran the method's model trained with added noise, "given" a model given with --model,
    "default" the shipped one, "-" if not run."""
    if r["status"] == "failed" or not r["qc"]:
        return "-"
    return r["qc"].get("model_used", "default")


def qc_rows(results: list[dict], model: str = "", res: str = "") -> list[list[str]]:
    """One QC row per subject of a run of `model` (the outputs' model- label) at `res` (their res- label)."""
    from ...methods.base import name_said_once

    rows = []
    for r in results:
        q = r["qc"]
        # the time its sidecar records, done or skipped (a done row had shown the time with the writing, a skip then
        # another figure: 36.6 s, then 36.4 s, a cohort audit); a failure's own
        if r["status"] == "skipped":
            seconds = q.get("seconds")
        elif r["status"] == "done":
            seconds = q.get("seconds", r.get("seconds"))
        else:
            seconds = r.get("seconds")
        rows.append([r["subject"], model, res, r["status"], q.get("voxel_mm", "n/a"), _fmt(q.get("snr"), ".1f"),
                     _fmt(q.get("brain_ml"), ".1f"), q.get("brain_from", "-") if q else "-",
                     _fmt(q.get("median_std"), ".3g"), _fmt(q.get("nonphysical_pct"), ".2f"),
                     _fmt(q.get("noise_index"), ".3f"), _fmt(q.get("fit_outlier_pairs"), ".0f"),
                     _volumes(q), _fmt(q.get("b0_shift_vox"), ".2f"),
                     str(q.get("b0_check", "n/a")), str(q.get("bvec_check", "n/a")), _model_used(r),
                     ",".join(r.get("outlier", [])) or "-", _fmt(seconds, ".1f"),
                     r.get("figure") or "n/a" if r["status"] != "failed" else "n/a",
                     " | ".join(name_said_once(" ".join(str(n).split()) for n in r.get("notes") or [])) or "-", r.get("reason", ""),
                     _fmt(q.get("noise_std_scale"), ".5g"), _fmt(q.get("failed_fits_flagged"), ".0f"),
                     _fmt(q.get("holes_flagged"), ".0f")])
    return rows


def row_keys(results: list[dict], s: Settings | None) -> set:
    """The (subject, model, res) of the QC rows `results` of a run with settings `s` make."""
    model = label(method_label(s)) if s is not None else ""
    res = res_label(s) if s is not None else ""
    return {(r["subject"], model, res) for r in results}


def write_qc(out_root: Path, results: list[dict], s: Settings | None = None, also: set = frozenset()) -> None:
    """qc.tsv and qc.html: one row per subject and run (model, res), outliers by `flag_outliers` within the run; the
    rows of other runs into the same folder (another method or factor) are kept. A run writes them as each subject
    ends, its subjects not ended yet with status "pending" (results.pending), so a killed run leaves what finished.
    `also`: the row keys (`row_keys`) the same command wrote before, at other factors, shown as this run's."""
    from ...core.noise_level import NOISY_INPUT, NOISY_MODEL
    from ...dmri.motion import B0_SHIFT_VOXELS
    from ...methods.inputs import FRAME_NOISE_ADVICE

    flag_outliers(results)
    model = label(method_label(s)) if s is not None else ""
    res = res_label(s) if s is not None else ""
    ran = {r["subject"] for r in results}  # an earlier run's rows of other subjects stay (another list into this folder)
    before = _read_qc(out_root / "qc.tsv")
    mine = qc_rows(results, model, res)
    # a subject not ended whose outputs are in place (results.pending) keeps its earlier done or skipped row
    kept = {r[0]: r for r in before if (r[1], r[2]) == (model, res) and r[3] in ("done", "skipped")}
    mine = [kept[r["subject"]] if r["status"] == "pending" and r["subject"] in kept and _in_place(r) else row
            for r, row in zip(results, mine)]
    rows = [r for r in before if (r[1], r[2]) != (model, res) or r[0] not in ran] + mine
    this = row_keys(results, s) | set(also)
    # this command's rows first, by run, its subjects in input order; then earlier runs' (review: an earlier run of a
    # model that sorts first had come above them)
    rows.sort(key=lambda r: (tuple(r[:3]) not in this, r[1], r[2]))
    tsv = "\t".join(QC_COLUMNS) + "\n" + "".join("\t".join(c.replace("\t", " ") for c in row) + "\n" for row in rows)
    _write(out_root / "qc.tsv", tsv)
    # on the page the figure and the reason come after the status, and a heading may break at its underscores: at
    # 1600 px the figures had been off-screen, past 20 measure columns and two wide text ones, and then a failed
    # row's reason, second to last (cluster audits)
    first = (QC_COLUMNS.index("figure"), QC_COLUMNS.index("reason"))
    shown = [*range(4), *first, *(i for i in range(4, len(QC_COLUMNS)) if i not in first and
                                  QC_COLUMNS[i] not in PAGE_AFTER)]
    for c, after in PAGE_AFTER.items():
        shown.insert(shown.index(QC_COLUMNS.index(after)) + 1, QC_COLUMNS.index(c))
    head = "".join(f"<th>{html.escape(QC_COLUMNS[i]).replace('_', '_<wbr>')}</th>" for i in shown)
    # rows an earlier run wrote (other subjects, another method or factor) are shown apart, as they were then: a
    # cohort audit's page counted a subject removed from the dataset, and failures of two, against the run's own line
    excluded = bool(s is not None and s.exclude_outliers)  # a fit's outliers left out of it: not a failed check
    classes = [_row_class(row, tuple(row[:3]) in this, excluded) for row in rows]
    body = "".join("<tr{}>{}</tr>".format(c, "".join(_cell(QC_COLUMNS[i], row[i]) for i in shown))
                   for c, row in zip(classes, rows))
    ours = [row for row in rows if tuple(row[:3]) in this]
    counts = {k: sum(row[3] == k for row in ours) for k in ("done", "skipped", "failed", "pending")}
    flagged = classes.count(' class="flag"')  # each row counted under the colour it is shown in (a review)
    checked = classes.count(' class="check"')
    earlier = len(rows) - len(ours)
    page = ("<!doctype html><meta charset='utf-8'><title>IQT cohort QC</title><style>body{font-family:sans-serif}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}tr.flag{background:#fff1c2}"
            "tr.failed{background:#fdd}tr.pending{background:#e4e9f5}tr.check{background:#ffd3a8}"
            "tr.earlier{color:#888;font-style:italic}td{vertical-align:top}"
            # the notes and reasons wrap in a wide column (squeezed, one subject's row had been 550 px tall: an audit)
            f"td:nth-child({shown.index(QC_COLUMNS.index('notes')) + 1}),"
            f"td:nth-child({shown.index(QC_COLUMNS.index('reason')) + 1})"
            "{min-width:24em}</style>"
            f"<h1>IQT cohort QC</h1><p><b>{_rows(len(ours))} of this run</b> (subject, model, res): {counts['done']} done, "
            f"{counts['skipped']} skipped (already done), <b>{counts['failed']} failed</b> (red), <b>{checked} with a "
            "failed check</b> (orange: " + (
                "the gradient table, a b0, head motion or failed fits (a cavity), in bvec_check, "
                "b0_check, b0_shift_vox and failed_fits_flagged" if excluded
                else "the gradient table, a b0, head motion, slices and volumes the fit does not explain or failed "
                "fits (a cavity), in bvec_check, b0_check, b0_shift_vox, fit_outlier_pairs, "
                "fit_outlier_volumes and failed_fits_flagged") +
            "; the notes say what and the fix: their tensors may be wrong; an outlier flag too is in the outlier "
            "column" + ("; slices and volumes the fit does not explain were left out of it with --exclude-outliers: "
                        "not a failed check" if excluded else "") +
            f"), {flagged} with an outlier flag (yellow)" +
            (f", <b>{counts['pending']} pending</b> (blue; not ended when the table was written: the run was "
             "working on them, or stopped before they ended)" if counts["pending"] else "") +
            (f"; {_rows(earlier)} of earlier runs into this folder (grey: other subjects, methods or factors, as those runs "
             "wrote them, not checked again)" if earlier else "") +
            f".</p><table><tr>{head}</tr>{body}</table>\n<p>SNR: mean b0 in the brain / std of the b0 "
            "background. brain_from: where the brain mask came from (dwi: median Otsu on the b0, or where a skull-stripped DWI is non-zero; tensor: the tensor file's "
            "non-zero voxels; mask: the list line's --mask; estimated: from unmasked tensors, generous, with scalp and "
            "background fits: not a brain volume to compare or average over). nonphysical_pct: share of the brain mask's "
            "output voxels with a negative eigenvalue (their MD/FA are not measurements). noise_index: the input tensors' "
            "roughness in the brain (the dev scans degraded x2: 0.049-0.070; above "
            f"{NOISY_MODEL:g} a method with a model trained with added noise runs it: model_used noisy; above {NOISY_INPUT:g} "
            "the others may do no better than cubic). noise_std_scale: the factor the uncertainty maps' sigma (median_std_mm2s "
            "included) was multiplied by for that noise (1: not scaled; docs/accuracy.md, Sigma on noisy inputs; n/a: no "
            "uncertainty maps (run without --uncertainty), or a row an earlier version wrote, before the factor was "
            "recorded, whose sigma may have been scaled: rerun it to have the factor). "
            "fit_outlier_pairs, fit_outlier_volumes: a DWI subject's (slice, "
            "volume) pairs and whole volumes its tensor fit does not explain (signal dropout, a dead or moved volume; "
            "named in its warning; left out of the fit with --exclude-outliers; n/a with 6 diffusion-weighted directions, which "
            "the tensor fits exactly, so that the check cannot see dropout or motion: check that series by eye; "
            "fit_outlier_volumes every other: every other diffusion-weighted volume disagrees with the rest, head motion "
            "or a change of scale between alternate volumes, none named or left out since which half is right the check "
            "cannot tell: a failed check, with --exclude-outliers too). b0_shift_vox: how far the b0 lies from "
            f"the mean diffusion-weighted volume, in voxels (said above {B0_SHIFT_VOXELS:g}: head motion; the brain mask "
            "made from the b0 is off as much). b0_check: ok, or a b0 whose brightness in the brain is beyond 1.25x of "
            "the series' other b0s (b0 21 0.40x) or a brain median MD outside an in-vivo brain's 0.4e-3 to 1.6e-3 "
            "mm&sup2;/s (MD 0.38e-3): every tensor's scale comes from the b0. bvec_check: ok where the gradient table as given makes the fibres the "
            "most continuous, else the correction that does (x-flipped: its x row negated; rows(y,x,z): rows reordered; "
            "scanner-RAS or -LPS: the directions were in the scanner's frame, not FSL's; obliquity-z: turned by the "
            "scan's obliquity about the file's z axis; named in the subject's warning "
            "with the fix), n/a with too little white matter to judge; for a tensor file read with --tensor-order fsl, "
            "mrtrix or dipy, or a 5D file iqt did not upsample, the same check of its directions as iqt upsample runs "
            "(not checked: run with "
            "--no-frame-check; not judged (noise): noise ends the streamlines within two voxels, the table as given's too, and "
            "no correction won or only one that such noise can favour, so the table is neither confirmed nor named "
            "wrong: "
            f"{FRAME_NOISE_ADVICE}; n/a for other tensor files). failed_fits_flagged: the input's low-res voxels "
            "of failed fits (an eigenvalue outside the plausible range) that the subject's warning names, a cavity of "
            "them (a cyst or a region at the noise floor), many, or any below the range; the learned methods fill them "
            "from the nearest fits and raise every uncertainty map to its top there (interpolation fills them too): look "
            "at the scan there (0: none warned of; n/a: a row an earlier version wrote; a failed check, orange, where the "
            "warning names a cluster of them, a cavity). holes_flagged: the input's low-res voxels that hold no tensor "
            "where its fitted tensors enclose them (a lesion, ventricle or region left out of the fit's mask, or "
            "background a wide mask closed over), which the learned methods fill from around them and raise every "
            "uncertainty map to its top at, named in a warning, failed fits in them counted in both columns (the "
            "warning says how many): look at the scan there (0: none, or run by "
            "interpolation, which makes no maps; n/a: a row an earlier version wrote; not a failed check: a clean "
            "scan's mask a little wider than its brain can enclose a few voxels of background). "
            "Outlier: outside median "
            "&plusmn; 3 MAD "
            "(scaled, at least 5 % of the median; 0.1 % for the voxel volume) on voxel volume, SNR, brain volume, median "
            f"uncertainty, nonphysical_pct or noise_index, within each run of at least {QC_MIN_SUBJECTS} subjects; brain "
            f"volumes only among inputs of one kind. figure: colour FA of the subject's input (by nearest) and output, "
            "and the output's uncertainty with --uncertainty, on the axial slice through the brain's centre "
            "(click it for full size; n/a for a subject that failed, or whose figure was removed since). notes: the "
            "subject's warnings (as in its sidecars' Notes), separated by |.</p>\n")
    _write(out_root / "qc.html", page)


def _cell(column: str, text: str) -> str:
    """One cell of the page: the subject's QC figure shown small, a link to it full size; any other as text."""
    if column == "figure" and text not in ("n/a", "-", "") and not text.startswith(("/", "..")) and "://" not in text:
        from urllib.parse import quote

        at = html.escape(quote(text))
        return f'<td><a href="{at}"><img src="{at}" alt="{html.escape(text)}" loading="lazy" style="height:10em"></a></td>'
    return f"<td>{html.escape(text)}</td>"


def _rows(n: int) -> str:
    return f"{n} row" + ("" if n == 1 else "s")


def failed_checks(row: list[str], excluded: bool = False) -> list[str]:
    """The columns of QC row `row` whose check of the input failed: a gradient table or b0 check other than ok (n/a:
    not judged; not checked: --no-frame-check; not judged (noise): methods.inputs.FRAME_NOISE), the b0 moved by more than dmri.motion.B0_SHIFT_VOXELS, slices or volumes the fit does not explain
    (not where they were `excluded` from the fit: --exclude-outliers), every other volume disagreeing (never left out),
    failed fits warned of as a cluster (failed_fits_flagged, its notes naming a cavity: filled, one had read as tissue;
    a clean OLS fit's one voxel below the range had turned the row orange, a review). Not holes_flagged: a clean scan's
    fit mask a little wider than its brain encloses background at the skull base (a review: orange rows of clean
    scans)."""
    from ...dmri.motion import B0_SHIFT_VOXELS
    from ...methods.inputs import CLUSTER_SAID, FRAME_NOISE

    at = {c: row[i] for i, c in enumerate(QC_COLUMNS)}
    found = [c for c in ("bvec_check", "b0_check") if at[c] not in ("ok", "n/a", "not checked", FRAME_NOISE, "-", "")]
    fit = () if excluded else (("fit_outlier_pairs", 0), ("fit_outlier_volumes", 0))
    cavity = (("failed_fits_flagged", 0),) if CLUSTER_SAID in at["notes"] else ()
    for c, limit in (("b0_shift_vox", B0_SHIFT_VOXELS), *fit, *cavity):
        try:
            if float(at[c]) > limit:
                found.append(c)
        except ValueError:  # n/a
            pass
    if "every other" in at["fit_outlier_volumes"] and "fit_outlier_volumes" not in found:  # never left out of the fit
        found.append("fit_outlier_volumes")
    return found


def _write(path: Path, text: str) -> None:
    """`text` to `path`, an error naming `path` (not the temporary it is written to first: a review)."""
    from ...fileio import write_text

    try:
        write_text(path, text)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def _row_class(row: list[str], ours: bool, excluded: bool = False) -> str:
    """The page's class of QC row `row`: a run's failed, pending, failed-check and flagged rows in that order; an
    earlier run's row (not `ours`) grey whatever its status."""
    if not ours:
        return ' class="earlier"'
    if row[3] in ("failed", "pending"):
        return f' class="{row[3]}"'
    if failed_checks(row, excluded):
        return ' class="check"'
    return ' class="flag"' if row[QC_COLUMNS.index("outlier")] != "-" else ""


def _read_qc(path: Path) -> list[list[str]]:
    """The rows of an earlier qc.tsv in this layout, or in one with fewer columns (before the fit's checks were
    recorded: theirs n/a); a layout without the run's columns (model, res) is dropped: its run is unknown. Read as the
    UTF-8 `write_qc` writes, not in the locale's encoding (on Windows a reason naming Pé09 would come back as PÃ©09,
    once more each run, and an ASCII locale would end the run in an internal error with the table unwritten)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):  # none yet, or a folder (said by the write)
        return []
    # any other failure (ulimit -n met: EMFILE, a table made unreadable) is the caller's: read as none, the earlier
    # runs' rows had been dropped from the table written next (a review's run under ulimit -n 41)
    head = tuple(lines[0].split("\t")) if lines else ()
    if not head or len(set(head)) != len(head) or not set(head) <= set(QC_COLUMNS) or \
            not {"subject", "model", "res", "status"} <= set(head):
        return []
    at = [head.index(c) if c in head else None for c in QC_COLUMNS]
    return [[row[i] if i is not None else "n/a" for i in at]
            for row in (line.split("\t") for line in lines[1:]) if len(row) == len(head)]


def _in_place(row: dict) -> bool:
    """A pending row's "in_place": a check (results.pending: it hashes the subject's files, so asked only here) or a
    bool."""
    found = row.get("in_place")
    return bool(found() if callable(found) else found)
