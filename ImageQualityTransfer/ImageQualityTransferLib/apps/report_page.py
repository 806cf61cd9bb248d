"""`iqt report`'s page: one self-contained HTML page for a run (every image embedded as a base64 PNG data URI,
no script, no external file), which opens offline in any browser.

Sections: axial, coronal and sagittal FA and colour-FA views of the low-res input (shown by nearest
neighbour on the high-res grid), the interpolation baseline, each IQT method and the ground truth
where known; each uncertainty map as an overlay on FA with its colour bar; error maps (per-voxel RMS
element error against the truth) on one shared scale; the metrics table; tractography snapshots
(streamline projections, coloured by direction) with the tract-density comparison table. The figures
are drawn by `apps.report_figures`; the runs that fill the page are in `apps.report`.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import numpy as np

from ..analysis.evaluation import evaluation_voxels
from ..core import noise_level, tensors
from ..core.direction import RANDOM_AXIS_DEGREES, SHOWN_TOP_DEGREES
from ..core.orientation import Reorientation
from ..core.volume import Volume
from ..dmri.dti import SCALE_MIN_VOXELS
from ..methods.base import NOISIER_TYPICAL
from .figures import centre_voxel, white_matter_centre
from .report_figures import MAX_DRAWN, fa_views, scalar_views, shared_bottom, shared_top, tract_views


def _figure_html(png_b64, caption: str) -> str:
    """One figure: its image, or its images one under another (`png_b64` a list: rows of at most MAX_COLUMNS volumes),
    and its caption."""
    images = "".join(f'<img alt="{html.escape(caption[:80])}" src="data:image/png;base64,{png}">'
                     for png in ([png_b64] if isinstance(png_b64, str) else png_b64))
    return f"<figure>{images}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _table_html(header, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


NEAREST = "low-res input (nearest)"  # the input's blocks on the high-res grid, as the FA figure shows it
SHOWN_NAMES = {"nearest": NEAREST, "reference": "ground truth"}  # the tables' names as the figures give them


def _shown(name: str) -> str:
    """A method or volume's name as every figure and table of the page gives it (else the Metrics table would say
    "nearest" of the FA figure's "low-res input", the tract table "reference" of the tract figure's "ground truth")."""
    return SHOWN_NAMES.get(name, name)


def _f(x, d=2):
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{d}f}"


# printed, the page is A4 whatever the browser's default paper (Chromium's is Letter), each figure within the page's
# width. A figure of one image shrinks it so that it, its caption and the heading above fit one page (273 mm high
# within the margins: the FA figure had been 1071 px of the page's 1032, its caption printed on the next page). A
# figure of several images (rows of volumes) is kept whole where it fits a page, else breaks between them, each at the
# page's width unless over 240 mm high, none cut, its heading kept with the first and its caption with the last: shrunk
# together to one page they had printed at 28 % of the page's width. Testing/apps/test_report.py reads the PDF
# Chromium prints.
CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1400px;color:#222}
figure{margin:1em 0;display:inline-block}img{max-width:100%;box-sizing:border-box;border:1px solid #ccc;display:block}
figcaption{font-size:0.9em;color:#444;max-width:1100px}table{border-collapse:collapse;font-size:0.9em;margin:0.5em 0}
td,th{border:1px solid #bbb;padding:3px 7px;text-align:right}th{background:#eee}h2{border-bottom:1px solid #ccc}
p.warning{background:#fff3cd;border-left:5px solid #e0a000;padding:0.5em 0.8em;color:#4d3800}
p.caution{border-left:5px solid #9aa5b1;padding:0.2em 0.8em}
@page{size:A4;margin:12mm}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}
figure{display:flex;flex-direction:column;break-inside:avoid;max-height:240mm}
figure img{flex:0 1 auto;min-height:0;object-fit:contain;object-position:left top;border:none}
figure:has(img+img){display:block;max-height:none}
figure:has(img+img) img{max-height:240mm;width:auto;break-inside:avoid}
figcaption{flex:none;break-before:avoid}p.warning{-webkit-print-color-adjust:exact;print-color-adjust:exact}}"""


def _note_html(note: str) -> str:
    """A note as a paragraph; a warning (a noisy or unmasked input, a model shown on a scan it learned from) marked out
    as `iqt view` marks its notes: in plain text beside the run's other notes it had read as one more of them (a report
    audit). A noise line within the clean scans' own range (the clean Trio's 0.080) is set apart without the amber, as
    Slicer's legend calls such a scan not noisy (a review: the clean Trio's page had an amber box)."""
    marked = "" if not note.startswith("Warning:") else ' class="caution"' if NOISIER_TYPICAL in note else ' class="warning"'
    return f"<p{marked}>{html.escape(note)}</p>"


# at most this many volumes side by side in one FA figure, more in further rows: twelve in one (cubic and every shipped
# method) were drawn at 44 % of their size on a 1400 px page, their names in 5-point type (a report audit)
MAX_COLUMNS = 6


def _rows(items: list) -> list[list]:
    """`items` in rows of at most MAX_COLUMNS, the rows as even as they can be (12: 6 and 6; 8: 4 and 4)."""
    if not items:
        return [items]
    size = -(-len(items) // -(-len(items) // MAX_COLUMNS))
    return [items[i:i + size] for i in range(0, len(items), size)]


def write_report(path, title: str, columns, mask, voxel_mm, affine, uncertainty=None, truth=None, metrics_rows=None,
                 tract_rows=None, tracts=None, notes=(), direction=None, scale_region=None, mask_words=None,
                 std_scales=None) -> Path:
    """Write the HTML page. columns: [(name, (X,Y,Z,6) tensors on the high-res grid of `affine`)];
    uncertainty: {name: (X,Y,Z) std map, mm^2/s}; direction: {name: (X,Y,Z) direction uncertainty, degrees}; truth: (X,Y,Z,6) or None; metrics_rows: benchmark rows;
    tract_rows: {name: tractography.compare_case entry}; tracts: {name: streamlines (world mm)}; scale_region: where the
    uncertainty maps' colour scales are read (default the mask: dmri.dti.inside_rim for an estimated brain); mask_words:
    what `mask` is, where it is not a subject's brain mask (`iqt report --input`: the mask given, or the outputs'
    support); std_scales: {name: g}, the factor a noisy input's map was raised by (methods/base.py `_for_noise`), said in
    its title as the viewer's legend says it. The column named "ground truth" is drawn, and the errors are shown, on
    `truth`'s evaluation voxels (analysis.evaluation.evaluation_voxels), as the metrics read them."""
    reo = Reorientation.to_canonical(affine)
    canon = lambda a: reo.apply(Volume(np.asarray(a, np.float32), affine, "tensor" if np.ndim(a) == 4 and np.shape(a)[3] == 6 else "scalar")).data
    masked = reo.apply(Volume(np.asarray(mask, bool), affine, "mask"))
    m = masked.data
    frame = masked.affine[:3, :3] / np.linalg.norm(masked.affine[:3, :3], axis=0)  # canonical voxel axes -> world RAS
    vox = np.asarray(voxel_mm, float)[list(np.argsort(reo.ornt[:, 0]))]
    # the reference drawn, and its errors, on the voxels iqt evaluate scores (evaluation.evaluation_voxels): an OLS
    # reference's MD <= 0 voxels, left out of every figure in the table, had been drawn
    scored = None if truth is None else evaluation_voxels(canon(truth), m)
    truth_name = SHOWN_NAMES["reference"]  # the column the errors are taken against, whichever array it holds
    cols = [(n, np.where(scored[..., None], canon(t), 0) if scored is not None and n == truth_name else canon(t))
            for n, t in columns]
    scale_in = None if scale_region is None else reo.apply(Volume(np.asarray(scale_region, bool), affine, "mask")).data
    if scale_in is not None and (scale_in & m).sum() < SCALE_MIN_VOXELS:  # too little inside it to read a scale
        scale_in = None
    # an estimated brain takes in the scalp, face and neck fits: its median voxel had put the axial and coronal
    # slices through the orbits and skull base (a display audit); the middle of its white matter instead
    wm = None if scale_in is None else white_matter_centre(cols[0][1], scale_in & m)
    centre = centre_voxel(m) if wm is None else wm
    middle = ((mask_words or "the brain mask") if wm is None else "the white matter of the brain estimated from the tensors (fitted "
              "without a mask, its estimate takes in scalp and background fits)")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p>Generated {time.strftime('%Y-%m-%d %H:%M')} by ImageQualityTransfer {_software()} (iqt report). Slices through the middle of "
             f"{middle} (its median voxel, {centre} in canonical RAS axes); axial and coronal views radiological (patient right on "
             f"screen left), sagittal with anterior on the left; orientation letters on every panel.</p>"]
    parts.extend(_note_html(note) for note in notes)
    parts.append("<h2>FA and colour FA</h2>")
    parts.append(_figure_html([fa_views(row, m, vox, centre, frame) for row in _rows(cols)],
                              "Fractional anisotropy (grey, 0 to 1) and colour FA (red left-right, green anterior-posterior, blue "
                              "superior-inferior, brightness FA) in axial, coronal and sagittal slices, one column per volume: "
                              + ", ".join(n for n, _ in cols) + ". Black: outside "
                              + (mask_words or "the brain mask (a subject's own mask may leave out parts of the "
                                                "ventricles, on one side only)") + " or implausible fits."))
    fa_bg = {n: tensors.fa(t) for n, t in cols}

    def overlay(maps: dict, scale: float, heading: str, label: str, caption: str, top: float | None = None,
                titles: dict | None = None, log: bool = False) -> None:
        """One figure of per-method scalar maps on the first method's FA on one colour scale (with `log`, logarithmic
        and each column titled with its median); `titles`: a map's title where it is not its method's name."""
        canon_maps = {n: reo.apply(Volume(np.asarray(u, np.float32), affine, "scalar")).data * scale for n, u in maps.items()}
        bg = fa_bg.get(next(iter(canon_maps)), next(iter(fa_bg.values())))
        parts.append(f"<h2>{heading}</h2>")
        if scale_in is not None:
            caption = caption.replace("inside the mask", f"more than {noise_level.ESTIMATED_BRAIN_RIM_MM:g} mm inside the "
                                                         "edge of the brain estimated from the tensors, whose rim of noise "
                                                         "fits shows saturated")
        if top is None:
            top = shared_top(canon_maps, m, scale_in)  # one scale over the figure's rows
        bottom = shared_bottom(canon_maps, m, scale_in) if log else None
        titles = titles or {}
        parts.append(_figure_html([scalar_views({titles.get(n, n): canon_maps[n] for n in row}, bg, m, vox, centre,
                                                label, scale_mask=scale_in, top=top, bottom=bottom)
                                   for row in _rows(list(canon_maps))],
                                  caption.format(", ".join(canon_maps))))

    if uncertainty:
        # a noisy input's raised maps said on the figure, as the viewer's legend says "noisy input: SD ×1.21": the page
        # had said it only in the warning at its top (a report audit)
        raised = {n: f"{g:.2f}" for n, g in (std_scales or {}).items() if n in uncertainty and f"{g:.2f}" != "1.00"}
        overlay(uncertainty, tensors.SHOWN_UNIT, "Uncertainty", f"predictive std ({tensors.SHOWN_UNIT_LABEL})",
                "Per-voxel predictive standard deviation of each method with uncertainty ({}), overlaid on FA, in "
                f"{tensors.SHOWN_UNIT_LABEL} (10⁻³ mm²/s, as in Slicer), on one logarithmic colour scale from the maps' "
                "1st to their 99th percentile inside the mask, so that a map several times lower than another still "
                "shows its structure and one colour is one value in every column; each column's title gives its "
                "map's median over the same voxels."
                + (" SD ×g in a title: that map raised by g for the input's noise, as the warning above says." if raised
                   else ""), titles={n: f"{n}, SD ×{g}" for n, g in raised.items()}, log=True)
    if direction:
        overlay(direction, 1.0, "Fibre direction uncertainty", "direction uncertainty (degrees)",
                "How far the principal direction, which tractography follows, may be from the one shown: the RMS angle "
                "between the principal eigenvector of draws from each method's predictive distribution and that of its "
                "prediction ({}), overlaid on FA; colour bar in degrees, 0 to " f"{SHOWN_TOP_DEGREES:g} for every run (a direction "
                f"no draw determines reads about {RANDOM_AXIS_DEGREES:.0f}, the top). High in grey matter and wherever "
                "anisotropy is lost: tracts through bright regions are not reliable.", top=SHOWN_TOP_DEGREES)
    if truth is not None:
        t = canon(truth)
        errs = {n: np.sqrt(np.mean((a.astype(np.float64) - t) ** 2, axis=-1)) * tensors.SHOWN_UNIT
                for n, a in cols if n != truth_name}
        ok = scored
        parts.append("<h2>Errors</h2>")
        top = shared_top(errs, ok)
        parts.append(_figure_html([scalar_views({n: errs[n] for n in row}, None, ok, vox, centre,
                                                f"RMS element error ({tensors.SHOWN_UNIT_LABEL})", cmap="magma",
                                                overlay=False, top=top) for row in _rows(list(errs))],
                                  "Per-voxel root-mean-square error of the 6 tensor elements against the ground truth, one shared "
                                  f"colour scale (0 to the 99th percentile), colour bar in {tensors.SHOWN_UNIT_LABEL}, the "
                                  "uncertainty maps' unit (1 of it is 100 in the Metrics table's 10⁻⁵ mm²/s); voxels outside the mask or with an implausible reference fit (MD at or "
                                  "below zero too), which the Metrics leave out, are black."))
    if metrics_rows:
        parts.append("<h2>Metrics</h2>")
        hdr = ["method", "interior DT-RMSE (10⁻⁵ mm²/s)", "× cubic", "exterior DT-RMSE (10⁻⁵ mm²/s)", "× cubic",
               "FA RMSE (int)", "uncert. ρ (int)", "time (s)"]
        body = [[_shown(r["method"]), _f(r["interior"]["dt_rmse"]), _f(r["interior"].get("ratio_to_cubic"), 3),
                 _f(r["exterior"]["dt_rmse"]), _f(r["exterior"].get("ratio_to_cubic"), 3), _f(r["interior"]["fa_rmse"], 4),
                 _f(r["interior"].get("spearman")), _f(r["seconds"])] for r in metrics_rows]
        parts.append("<p>DT-RMSE: the root-mean-square error of the tensor's six elements against the ground truth, in "
                     f"10⁻⁵ mm²/s as benchmarks report it (100 of these make 1 {tensors.SHOWN_UNIT_LABEL}, the unit of "
                     f"the error maps' colour bar above: 13.4 in the table is 0.134 {tensors.SHOWN_UNIT_LABEL}), over plausible reference voxels (eigenvalues within [-1e-3, 5e-3] mm²/s, MD above zero); interior: the "
                     "brain more than two low-res voxels from the mask's edge, exterior: the rest of the brain; × cubic: "
                     "that error over cubic interpolation's (below 1 beats cubic); uncert. ρ: how well the method's "
                     "uncertainty ranks its own errors in the interior (Spearman correlation, 1 at best).</p>")
        parts.append(_table_html(hdr, body))
    if tracts:
        parts.append("<h2>Tractography</h2>")
        parts.append(_figure_html(tract_views(tracts),
                                  "Deterministic tractography (principal direction, FA stop) from the same seeds on each volume: "
                                  "streamlines projected as seen from below (axial, radiological: the patient's right on the left), from the front "
                                  "(coronal) and from the left (sagittal), coloured "
                                  "by local direction (red left-right, green anterior-posterior, blue superior-inferior); number "
                                  f"of streamlines in brackets, of which each panel draws at most {MAX_DRAWN:,}, chosen at random. Drawn: " + ", ".join(tracts) + _tract_caption(tracts, tract_rows)
                                  + ("; the table below scores every method." if tract_rows else ".")))
    if tract_rows:
        hdr = ["volume", "tract-density Dice", "false-positive density", "streamlines"]
        body = [[_shown(n), _f(v["tract_dice"], 3), _f(v["tract_fp_fraction"], 3), v["n_streamlines"]] for n, v in tract_rows.items()]
        parts.append("<p>Tract-density maps on the high-res grid, binarised (visited or not), compared with the ground truth's.</p>")
        parts.append(_table_html(hdr, body))
    parts.append("</body></html>")
    path = Path(path)
    from ..fileio.writing import write_text

    write_text(path, "\n".join(parts))
    return path


def tract_methods(names, tract_rows: dict | None = None) -> list[str]:
    """The methods whose streamlines the tract figure draws besides cubic: the default method (`methods.default_method`)
    and, where the page scores tracts, the best by its tract-density Dice; without either, the first learned one."""
    from .. import methods

    learned = [n for n in names if methods.method_class(n).learned]
    show = [n for n in [methods.default_method()] if n in learned]
    scored = [n for n in learned if tract_rows and n in tract_rows and np.isfinite(tract_rows[n]["tract_dice"])]
    if scored:
        show.append(max(scored, key=lambda n: tract_rows[n]["tract_dice"]))
    if not show and learned:
        show.append(learned[0])
    return list(dict.fromkeys(show))


def _tract_caption(drawn, tract_rows: dict | None) -> str:
    """Which of the drawn methods is the default and which the best by the tract table's Dice (`tract_methods`)."""
    from .. import methods

    learned = [n for n in drawn if n in methods.names() and methods.method_class(n).learned]
    scored = [n for n in learned if tract_rows and n in tract_rows and np.isfinite(tract_rows[n]["tract_dice"])]
    said = []
    if methods.default_method() in learned:
        said.append(f"{methods.default_method()}, the default method")
    if scored:
        said.append(f"{max(scored, key=lambda n: tract_rows[n]['tract_dice'])}, the best learned method by "
                    "tract-density Dice in the table")
    return f" ({'; '.join(said)})" if said else ""


def _software() -> str:
    """The version and build that made the page ("0.2.0, build 1a2b3c4d5e6f"), as `iqt --version` prints them."""
    from ..fileio.model_files import software

    made = software()
    return f"{made['version']}, build {made['build']}"
