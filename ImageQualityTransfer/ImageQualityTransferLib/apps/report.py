"""`iqt report`: one self-contained HTML page for a run (every image embedded as a base64 PNG data URI,
no script, no external file), which opens offline in any browser.

Sections: axial, coronal and sagittal FA and colour-FA views of the low-res input (shown by nearest
neighbour on the high-res grid), the interpolation baseline, each IQT method and the ground truth
where known; each uncertainty map as an overlay on FA with its colour bar; error maps (per-voxel RMS
element error against the truth) on one shared scale; the metrics table; tractography snapshots
(streamline projections, coloured by direction) with the tract-density comparison table.

Views are drawn in canonical RAS axes whatever the storage order, radiological for axial and coronal
views (patient right on screen left, as in 3D Slicer), with the orientation letters on every panel.
matplotlib draws on its Agg canvas without pyplot.
"""

from __future__ import annotations

import base64
import html
import io as _io
import time
from pathlib import Path

import numpy as np

from ..core import grid, tensors
from ..core.direction import RANDOM_AXIS_DEGREES, SHOWN_TOP_DEGREES
from ..core.errors import IQTError
from ..core.orientation import Reorientation
from ..core.volume import Volume
from ..dmri.dti import SCALE_MIN_VOXELS
from .figures import PLANES, centre_voxel, draw_letters, view

# ---------------------------------------------------------------- slicing: apps/figures.py (view, centre_voxel, draw_letters)


def _aspect(plane, vox):
    # imshow aspect = height of a pixel / width of a pixel
    return {"axial": vox[1] / vox[0], "coronal": vox[2] / vox[0], "sagittal": vox[2] / vox[1]}[plane]


def _png(fig) -> str:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor="white")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _new_figure(nrows, ncols, panel=2.1, extra_w=0.0, title=None):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(panel * ncols + 0.6 + extra_w, panel * nrows + (0.6 if title else 0.3)), dpi=90)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig, axes


# ---------------------------------------------------------------- panels


def fa_views(columns, mask, vox, centre) -> str:
    """FA and colour FA of each (name, canonical tensor array) column in the three planes: base64 PNG."""
    fig, axes = _new_figure(6, len(columns))
    for c, (name, t) in enumerate(columns):
        for p, plane in enumerate(PLANES):
            k = centre[{"axial": 2, "coronal": 1, "sagittal": 0}[plane]]
            sl = np.asarray(view(t, plane, k), np.float64)
            ok = view(mask, plane, k) & tensors.plausible(sl)
            fa = np.where(ok, tensors.fa(sl), 0.0)
            rgb = np.where(ok[..., None], tensors.color_fa(sl), 0.0)
            a1, a2 = axes[2 * p, c], axes[2 * p + 1, c]
            a1.imshow(fa, cmap="gray", vmin=0, vmax=1, aspect=_aspect(plane, vox), interpolation="nearest")
            a2.imshow(rgb, aspect=_aspect(plane, vox), interpolation="nearest")
            draw_letters(a1, plane)
            draw_letters(a2, plane)
            if c == 0:
                a1.set_ylabel(f"{plane}\nFA", fontsize=8)
                a2.set_ylabel(f"{plane}\ncolour FA", fontsize=8)
        axes[0, c].set_title(name, fontsize=9)
    fig.subplots_adjust(left=0.5 / fig.get_figwidth(), right=0.99, bottom=0.01, top=1 - 0.3 / fig.get_figheight(),
                        wspace=0.03, hspace=0.03)
    return _png(fig)


def scalar_views(maps, background, mask, vox, centre, label, cmap="inferno", overlay=True, scale_mask=None,
                 top: float | None = None) -> str:
    """Each named (X,Y,Z) map in the three planes, on one shared colour scale (0 to `top`, default the 99th percentile
    in `scale_mask`, default `mask`) with a colour bar; with `overlay`, drawn semi-transparent over the FA `background`
    (canonical arrays)."""
    names = list(maps)
    fig, axes = _new_figure(3, len(names), extra_w=0.9)
    scaled = mask if scale_mask is None else scale_mask & mask
    inside = np.concatenate([np.asarray(maps[n])[scaled].ravel() for n in names]) if scaled.any() else np.zeros(1)
    inside = inside[np.isfinite(inside)]
    vmax = float(np.percentile(inside, 99)) if inside.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    vmax = vmax if top is None else float(top)
    im = None
    for c, n in enumerate(names):
        for p, plane in enumerate(PLANES):
            k = centre[{"axial": 2, "coronal": 1, "sagittal": 0}[plane]]
            ax = axes[p, c]
            m = view(mask, plane, k)
            if overlay and background is not None:
                ax.imshow(np.where(m, view(background, plane, k), 0), cmap="gray", vmin=0, vmax=1,
                          aspect=_aspect(plane, vox), interpolation="nearest")
            else:
                ax.set_facecolor("black")
            im = ax.imshow(np.where(m, view(np.asarray(maps[n]), plane, k), np.nan), cmap=cmap, vmin=0, vmax=vmax,
                           alpha=0.75 if overlay else 1.0, aspect=_aspect(plane, vox), interpolation="nearest")
            draw_letters(ax, plane)
            if c == 0:
                ax.set_ylabel(plane, fontsize=8)
        axes[0, c].set_title(n, fontsize=9)
    w = fig.get_figwidth()
    fig.subplots_adjust(left=0.4 / w, right=1 - 1.0 / w, bottom=0.01, top=1 - 0.3 / fig.get_figheight(), wspace=0.03, hspace=0.03)
    if im is not None:
        cax = fig.add_axes([1 - 0.85 / w, 0.1, 0.15 / w, 0.8])
        cb = fig.colorbar(im, cax=cax)
        cb.set_label(label, fontsize=8)
        cb.ax.tick_params(labelsize=7)
    return _png(fig)


def tract_views(tracts: dict, max_lines: int = 1500) -> str:
    """Streamline projections (world RAS mm) seen from above, the front and the left, coloured by direction."""
    from matplotlib.collections import LineCollection

    names = list(tracts)
    fig, axes = _new_figure(3, len(names))
    allpts = [np.concatenate(v) for v in tracts.values() if len(v)]
    lo = np.min([p.min(0) for p in allpts], 0) if allpts else np.zeros(3)
    hi = np.max([p.max(0) for p in allpts], 0) if allpts else np.ones(3)
    proj = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}
    for c, n in enumerate(names):
        lines = tracts[n]
        if len(lines) > max_lines:
            pick = np.random.default_rng(0).choice(len(lines), max_lines, replace=False)
            lines = [lines[i] for i in pick]
        segs = [np.stack([sl[:-1], sl[1:]], 1) for sl in lines if len(sl) > 1]
        seg = np.concatenate(segs) if segs else np.zeros((0, 2, 3))
        d = seg[:, 1] - seg[:, 0]
        col = np.abs(d) / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        for p, plane in enumerate(PLANES):
            a, b = proj[plane]
            ax = axes[p, c]
            ax.set_facecolor("black")
            xs = -seg[:, :, a]  # patient right (axial, coronal) or anterior (sagittal) on screen left
            ax.add_collection(LineCollection(np.stack([xs, seg[:, :, b]], -1), colors=col, linewidths=0.3))
            ax.set_xlim(-hi[a], -lo[a])
            ax.set_ylim(lo[b], hi[b])
            ax.set_aspect("equal")
            draw_letters(ax, plane)
            if c == 0:
                ax.set_ylabel(plane, fontsize=8)
        axes[0, c].set_title(f"{n} ({len(tracts[n])})", fontsize=9)
    fig.subplots_adjust(left=0.4 / fig.get_figwidth(), right=0.99, bottom=0.01, top=1 - 0.3 / fig.get_figheight(),
                        wspace=0.03, hspace=0.03)
    return _png(fig)


# ---------------------------------------------------------------- HTML


def _figure_html(png_b64: str, caption: str) -> str:
    return (f'<figure><img alt="{html.escape(caption[:80])}" src="data:image/png;base64,{png_b64}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


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


CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1400px;color:#222}
figure{margin:1em 0;display:inline-block}img{max-width:100%;border:1px solid #ccc}
figcaption{font-size:0.9em;color:#444;max-width:1100px}table{border-collapse:collapse;font-size:0.9em;margin:0.5em 0}
td,th{border:1px solid #bbb;padding:3px 7px;text-align:right}th{background:#eee}h2{border-bottom:1px solid #ccc}"""


def write_report(path, title: str, columns, mask, voxel_mm, affine, uncertainty=None, truth=None, metrics_rows=None,
                 tract_rows=None, tracts=None, notes=(), direction=None, scale_region=None) -> Path:
    """Write the HTML page. columns: [(name, (X,Y,Z,6) tensors on the high-res grid of `affine`)];
    uncertainty: {name: (X,Y,Z) std map, mm^2/s}; direction: {name: (X,Y,Z) direction uncertainty, degrees}; truth: (X,Y,Z,6) or None; metrics_rows: benchmark rows;
    tract_rows: {name: tractography.compare_case entry}; tracts: {name: streamlines (world mm)}; scale_region: where the
    uncertainty maps' colour scales are read (default the mask: dmri.dti.inside_rim for an estimated brain)."""
    reo = Reorientation.to_canonical(affine)
    canon = lambda a: reo.apply(Volume(np.asarray(a, np.float32), affine, "tensor" if np.ndim(a) == 4 and np.shape(a)[3] == 6 else "scalar")).data
    m = reo.apply(Volume(np.asarray(mask, bool), affine, "mask")).data
    vox = np.asarray(voxel_mm, float)[list(np.argsort(reo.ornt[:, 0]))]
    cols = [(n, canon(t)) for n, t in columns]
    centre = centre_voxel(m)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p>Generated {time.strftime('%Y-%m-%d %H:%M')} by ImageQualityTransfer {_software()} (iqt report). Slices through the centre of "
             f"the brain mask (voxel {centre} in canonical RAS axes); axial and coronal views radiological (patient right on "
             f"screen left), sagittal with anterior on the left; orientation letters on every panel.</p>"]
    for note in notes:
        parts.append(f"<p>{html.escape(note)}</p>")
    parts.append("<h2>FA and colour FA</h2>")
    parts.append(_figure_html(fa_views(cols, m, vox, centre),
                              "Fractional anisotropy (grey, 0 to 1) and colour FA (red left-right, green anterior-posterior, blue "
                              "superior-inferior, brightness FA) in axial, coronal and sagittal slices, one column per volume: "
                              + ", ".join(n for n, _ in cols) + ". Black: outside the brain mask or implausible fits."))
    fa_bg = {n: tensors.fa(t) for n, t in cols}
    scale_in = None if scale_region is None else reo.apply(Volume(np.asarray(scale_region, bool), affine, "mask")).data
    if scale_in is not None and (scale_in & m).sum() < SCALE_MIN_VOXELS:  # too little inside it to read a scale
        scale_in = None

    def overlay(maps: dict, scale: float, heading: str, label: str, caption: str, top: float | None = None) -> None:
        """One figure of per-method scalar maps on the first method's FA (a shared colour scale)."""
        canon_maps = {n: reo.apply(Volume(np.asarray(u, np.float32), affine, "scalar")).data * scale for n, u in maps.items()}
        bg = fa_bg.get(next(iter(canon_maps)), next(iter(fa_bg.values())))
        parts.append(f"<h2>{heading}</h2>")
        if scale_in is not None:
            caption = caption.replace("inside the mask", f"more than {tensors.ESTIMATED_BRAIN_RIM_MM:g} mm inside the "
                                                         "edge of the brain estimated from the tensors, whose rim of noise "
                                                         "fits shows saturated")
        parts.append(_figure_html(scalar_views(canon_maps, bg, m, vox, centre, label, scale_mask=scale_in, top=top),
                                  caption.format(", ".join(canon_maps))))

    if uncertainty:
        overlay(uncertainty, tensors.SHOWN_UNIT, "Uncertainty", f"predictive std ({tensors.SHOWN_UNIT_LABEL})",
                "Per-voxel predictive standard deviation of each method with uncertainty ({}), overlaid on FA; one shared "
                f"colour scale (0 to the 99th percentile inside the mask), colour bar in {tensors.SHOWN_UNIT_LABEL} "
                "(10⁻³ mm²/s, as in Slicer).")
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
                for n, a in cols if n != "ground truth"}
        ok = m & tensors.plausible(t)
        parts.append("<h2>Errors</h2>")
        parts.append(_figure_html(scalar_views(errs, None, ok, vox, centre, f"RMS element error ({tensors.SHOWN_UNIT_LABEL})",
                                               cmap="magma", overlay=False),
                                  "Per-voxel root-mean-square error of the 6 tensor elements against the ground truth, one shared "
                                  f"colour scale (0 to the 99th percentile), colour bar in {tensors.SHOWN_UNIT_LABEL}, the "
                                  "uncertainty maps' unit (1 of it is 100 in the Metrics table's 10⁻⁵ mm²/s); voxels outside the mask or with an implausible reference fit are "
                                  "black."))
    if metrics_rows:
        parts.append("<h2>Metrics</h2>")
        hdr = ["method", "interior DT-RMSE (10⁻⁵ mm²/s)", "× cubic", "exterior DT-RMSE (10⁻⁵ mm²/s)", "× cubic",
               "FA RMSE (int)", "uncert. ρ (int)", "time (s)"]
        body = [[_shown(r["method"]), _f(r["interior"]["dt_rmse"]), _f(r["interior"].get("ratio_to_cubic"), 3),
                 _f(r["exterior"]["dt_rmse"]), _f(r["exterior"].get("ratio_to_cubic"), 3), _f(r["interior"]["fa_rmse"], 4),
                 _f(r["interior"].get("spearman")), _f(r["seconds"])] for r in metrics_rows]
        parts.append("<p>DT-RMSE: the root-mean-square error of the tensor's six elements against the ground truth, in "
                     f"10⁻⁵ mm²/s as benchmarks report it (100 of these make 1 {tensors.SHOWN_UNIT_LABEL}, the unit of "
                     f"the error maps' colour bar above: 13.4 in the table is 0.134 {tensors.SHOWN_UNIT_LABEL}), over plausible reference voxels (eigenvalues within [-1e-3, 5e-3] mm²/s); interior: the "
                     "brain more than two low-res voxels from the mask's edge, exterior: the rest of the brain; × cubic: "
                     "that error over cubic interpolation's (below 1 beats cubic); uncert. ρ: how well the method's "
                     "uncertainty ranks its own errors in the interior (Spearman correlation, 1 at best).</p>")
        parts.append(_table_html(hdr, body))
    if tracts:
        parts.append("<h2>Tractography</h2>")
        parts.append(_figure_html(tract_views(tracts),
                                  "Deterministic tractography (principal direction, FA stop) from the same seeds on each volume: "
                                  "streamlines projected from above (axial), the front (coronal) and the side (sagittal), coloured "
                                  "by local direction (red left-right, green anterior-posterior, blue superior-inferior); number "
                                  "of streamlines in brackets. Drawn: " + ", ".join(tracts) + _tract_caption(tracts, tract_rows)
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


def run(path, subject_dir=None, factor=2, method_names=None, tracts: bool = True, n_seeds: int = 2000) -> Path:
    """The whole run behind `iqt report`: degrade the subject (default the phantom), upsample with each
    method, score, track, and write the page."""
    from ..analysis import benchmark, tractography
    from .. import methods
    from .demo import chosen_methods
    from ..dmri.subject import load_subject, make_case, phantom_subject

    names = chosen_methods(method_names, factor)
    if "cubic" not in names:
        names.insert(0, "cubic")
    subject = load_subject(subject_dir) if subject_dir else phantom_subject()
    case = make_case(subject, factor)
    preds = {}
    rows = benchmark.score_case(case, names, keep=preds)
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
                                                         mask=case.hr_mask & tensors.plausible(case.truth)),
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
    voxel = Volume(case.truth, case.hr_affine, "tensor").voxel_size
    return write_report(path, f"{subject.name}: ×{grid.text(factor)} super-resolution", columns, case.hr_mask, voxel, case.hr_affine,
                        uncertainty=unc or None, direction=direc or None, truth=case.truth, metrics_rows=rows, tract_rows=tract_rows, tracts=lines,
                        notes=notes)


def run_input(path, lr: Volume, mask: Volume | None = None, factor=2, method_names=None, tracts: bool = True,
              n_seeds: int = 2000, read_notes=()) -> Path:
    """`iqt report --input`: the page for a user's own low-res tensors, with no reference: the input, cubic and each
    method's output with its uncertainty maps, and their tracts from the same seeds (white matter of cubic's output,
    inside the rim of a brain estimated from the tensors); `mask` on the input's or the output's grid (as `iqt upsample
    --mask`). The engine's warnings about the input (`read_notes`: those its reading gave) head the page."""
    import warnings

    from .. import methods
    from ..analysis import tractography
    from ..core.errors import IQTWarning
    from ..dmri.dti import inside_rim
    from ..methods.base import predict_within
    from .demo import chosen_methods

    f = grid.factors(factor)
    names = chosen_methods(method_names, f)
    names = ["cubic"] + [n for n in names if n not in ("cubic", "nearest")]
    preds = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IQTWarning)
        for name in names:
            preds[name], lr_mask = predict_within(methods.get(name), lr, f, mask, direction=True)
        nearest = methods.get("nearest").predict(lr, f, lr_mask).tensor.data
    notes = list(dict.fromkeys([*read_notes, *(str(w.message) for w in caught if issubclass(w.category, IQTWarning))]))
    for w in caught:  # each of the engine's lines once (every method says the input's), on the terminal too
        if not issubclass(w.category, IQTWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for note in notes:
        warnings.warn(note, IQTWarning, stacklevel=2)
    first = preds["cubic"].tensor
    support = np.any(np.stack([np.any(p.tensor.data != 0, axis=-1) for p in preds.values()]), axis=0)
    estimated = any(p.tensor.meta.get("support") == "estimated" for p in preds.values())
    scale = inside_rim(support, first.voxel_size) if estimated else None  # the rim's noise fits would set the scales
    brain = support if scale is None or scale.sum() < SCALE_MIN_VOXELS else scale
    columns = [(NEAREST, nearest)] + [(n, p.tensor.data) for n, p in preds.items()]
    unc = {n: p.std.data for n, p in preds.items() if p.std is not None}
    direc = {n: p.direction.data for n, p in preds.items() if p.direction is not None}
    lines = None
    if tracts:
        try:
            wm = brain & (tensors.fa_fast(first.data) >= 0.3) & tensors.plausible(first.data)
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
    notes = [f"Warning: {n}" for n in notes]
    source = lr.meta.get("path", "the input")
    notes.insert(0, f"{source}: no reference is known for these tensors, so the page shows no errors or scores; "
                    "read the uncertainty maps for where each method is unsure.")
    return write_report(path, f"{Path(str(source)).name}: ×{grid.text(f)} super-resolution", columns, support,
                        first.voxel_size, first.affine, uncertainty=unc or None, direction=direc or None, tracts=lines,
                        notes=notes, scale_region=None if brain is support else scale)


def _software() -> str:
    """The version and build that made the page ("0.2.0, build 1a2b3c4d5e6f"), as `iqt --version` prints them."""
    from ..fileio.model_files import software

    made = software()
    return f"{made['version']}, build {made['build']}"
