"""`iqt report`'s figures: the FA and colour-FA views, the scalar maps (uncertainty each on its own colour scale,
direction uncertainty and errors on one shared scale) and the streamline projections, each returned as a base64 PNG for
the page (`apps.report_page`).

Views are drawn in canonical RAS axes whatever the storage order, radiological for axial and coronal
views (patient right on screen left, as in 3D Slicer), with the orientation letters on every panel.
matplotlib draws on its Agg canvas without pyplot.
"""

from __future__ import annotations

import base64
import io as _io

import numpy as np

from ..core import tensors
from ..dmri.dti import unflagged
from .figures import PLANES, draw_letters, view


# sized for reading at a glance in a browser (a radiologist's audit found the first sizes, 8-point labels at 90 dpi,
# too small to read)
DPI = 120
TITLE, LABEL, TICKS = 11, 10, 9


def _aspect(plane, vox):
    # imshow aspect = height of a pixel / width of a pixel
    return {"axial": vox[1] / vox[0], "coronal": vox[2] / vox[0], "sagittal": vox[2] / vox[1]}[plane]


def _png(fig) -> str:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor="white")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _new_figure(nrows, ncols, panel=2.1, extra_w=0.0, title=None, extra_h=0.0):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(panel * ncols + 0.6 + extra_w, panel * nrows + (0.6 if title else 0.3) + extra_h), dpi=DPI)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=TITLE)
    return fig, axes


# ---------------------------------------------------------------- panels


def fa_views(columns, mask, vox, centre, frame=None) -> str:
    """FA and colour FA of each (name, canonical tensor array) column in the three planes: base64 PNG. `frame`: the
    rotation from the canonical voxel axes to world RAS, so that red is left-right in the world on an oblique scan too
    (in voxel axes the colours of a scan 19 degrees off axis had disagreed with the tract panel's; a tractography audit)."""
    fig, axes = _new_figure(6, len(columns))
    for c, (name, t) in enumerate(columns):
        for p, plane in enumerate(PLANES):
            k = centre[{"axial": 2, "coronal": 1, "sagittal": 0}[plane]]
            sl = np.asarray(view(t, plane, k), np.float64)
            ok = view(mask, plane, k) & tensors.plausible(sl)
            fa = np.where(ok, tensors.fa(sl), 0.0)
            rgb = np.where(ok[..., None], tensors.color_fa(sl if frame is None else tensors.rotate(sl, frame)), 0.0)
            a1, a2 = axes[2 * p, c], axes[2 * p + 1, c]
            a1.imshow(fa, cmap="gray", vmin=0, vmax=1, aspect=_aspect(plane, vox), interpolation="nearest")
            a2.imshow(rgb, aspect=_aspect(plane, vox), interpolation="nearest")
            draw_letters(a1, plane)
            draw_letters(a2, plane)
            if c == 0:
                a1.set_ylabel(f"{plane}\nFA", fontsize=LABEL)
                a2.set_ylabel(f"{plane}\ncolour FA", fontsize=LABEL)
        axes[0, c].set_title(name, fontsize=TITLE)
    fig.subplots_adjust(left=0.5 / fig.get_figwidth(), right=0.99, bottom=0.01, top=1 - 0.3 / fig.get_figheight(),
                        wspace=0.03, hspace=0.03)
    return _png(fig)


def scalar_views(maps, background, mask, vox, centre, label, cmap="inferno", overlay=True, scale_mask=None,
                 top: float | None = None, bottom: float | None = None) -> str:
    """Each named (X,Y,Z) map in the three planes with one colour bar; with `overlay`, drawn semi-transparent over the FA
    `background` (canonical arrays). One shared colour scale, 0 to `top` (default the 99th percentile in `scale_mask`,
    default `mask`); with `bottom`, logarithmic from `bottom` to `top` and each column titled with its map's median: on
    a linear scale a map several times lower than another was one flat dark colour, while one colour must stay one
    value across columns for a side-by-side reading."""
    names = list(maps)
    fig, axes = _new_figure(3, len(names), extra_w=0.9)
    top = shared_top(maps, mask, scale_mask) if top is None else float(top)
    if bottom is not None:
        from matplotlib.colors import LogNorm

        bottom = min(float(bottom), top / 10)
        norm = dict(norm=LogNorm(vmin=bottom, vmax=top))
    else:
        norm = dict(vmin=0, vmax=top)
    shown = None
    for c, n in enumerate(names):
        values = np.asarray(maps[n], float)
        if bottom is not None:
            values = np.maximum(values, bottom)  # at or below the scale's foot: its bottom colour, not left blank
        for p, plane in enumerate(PLANES):
            k = centre[{"axial": 2, "coronal": 1, "sagittal": 0}[plane]]
            ax = axes[p, c]
            m = view(mask, plane, k)
            if overlay and background is not None:
                ax.imshow(np.where(m, view(background, plane, k), 0), cmap="gray", vmin=0, vmax=1,
                          aspect=_aspect(plane, vox), interpolation="nearest")
            else:
                ax.set_facecolor("black")
            shown = ax.imshow(np.where(m, view(values, plane, k), np.nan), cmap=cmap, alpha=0.75 if overlay else 1.0,
                              aspect=_aspect(plane, vox), interpolation="nearest", **norm)
            draw_letters(ax, plane)
            if c == 0:
                ax.set_ylabel(plane, fontsize=LABEL)
        axes[0, c].set_title(n if bottom is None else f"{n}\n{median_label(maps[n], mask, scale_mask)}", fontsize=TITLE)
    w, h = fig.get_figwidth(), fig.get_figheight()
    fig.subplots_adjust(left=0.4 / w, right=1 - 1.0 / w, bottom=0.01, top=1 - (0.45 if bottom is not None else 0.3) / h,
                        wspace=0.03, hspace=0.03)
    if shown is not None:
        # a pointed top where a map reaches above its scale (a radiologist's audit: the top colour read as the top's
        # value where the rim was several times higher; slicer/legends.py says it in the legend's title)
        above = any(np.nanmax(np.where(mask, np.asarray(maps[n], float), np.nan), initial=-np.inf) > top for n in names)
        cax = fig.add_axes([1 - 0.85 / w, 0.1, 0.15 / w, 0.8])
        cb = fig.colorbar(shown, cax=cax, extend="max" if above else "neither")
        cb.set_label(label, fontsize=LABEL)
        cb.ax.tick_params(labelsize=TICKS, which="both")
        if bottom is not None:
            cb.ax.yaxis.set_major_formatter(_plain_log_labels())
            cb.ax.yaxis.set_minor_formatter(_plain_log_labels())
    return _png(fig)


# the decade ticks past which the logarithmic bar labels only decades, and the decades past which only its ticks at 2,
# 3, 4 and 6 (matplotlib's LogFormatter `minor_thresholds`): every tick labelled, labels overlapped from two decades on
# (docs/measurements.md, "iqt report")
LOG_LABEL_THRESHOLDS = (3, 1.2)


def _plain_log_labels():
    """A logarithmic colour bar's tick labels as plain numbers (0.2, not 2×10⁻¹, as on the linear bars), fewer of
    them over a wider span so that none overlap (`LOG_LABEL_THRESHOLDS`)."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):
        def __call__(self, x, pos=None):  # the formatter decides which ticks get a label; the label is plain
            return self.fix_minus(f"{x:g}") if super().__call__(x, pos) else ""

    return Plain(labelOnlyBase=False, minor_thresholds=LOG_LABEL_THRESHOLDS)


def map_median(values, mask, scale_mask=None) -> float | None:
    """A map's median over `scale_mask` (default `mask`), its flagged voxels left out (`dmri.dti.unflagged`); None where
    nothing there is above 0."""
    inside = scaled_values({"map": values}, mask, scale_mask)
    inside = inside[inside > 0]
    return float(np.median(inside)) if inside.size else None


def median_label(values, mask, scale_mask=None) -> str:
    """A column's second title line on a logarithmic scale: its map's median, two significant digits ("median 0.10")."""
    med = map_median(values, mask, scale_mask)
    return "median –" if med is None else f"median {med:#.2g}"


def shared_bottom(maps, mask, scale_mask=None) -> float:
    """The foot of the maps' one logarithmic scale: the 1st percentile of their values above 0 in `scale_mask`
    (default `mask`), flagged voxels left out; 1e-3 where nothing is above 0."""
    inside = scaled_values(maps, mask, scale_mask)
    inside = inside[inside > 0]
    return float(np.percentile(inside, 1)) if inside.size else 1e-3


def shared_top(maps, mask, scale_mask=None) -> float:
    """The top of the maps' one colour scale: the 99th percentile of them all in `scale_mask` (default `mask`), each
    map's flagged voxels left out (dmri.dti.unflagged: a few of them had set the scale); 1 where nothing is above 0."""
    inside = scaled_values(maps, mask, scale_mask)
    vmax = float(np.percentile(inside, 99)) if inside.size else 1.0
    return vmax if vmax > 0 else 1.0


def scaled_values(maps, mask, scale_mask=None) -> np.ndarray:
    """The finite values of all `maps` in `scale_mask` (default `mask`), each map's flagged voxels left out
    (dmri.dti.unflagged), that the colour scales and medians are read from."""
    scaled = mask if scale_mask is None else scale_mask & mask
    if not scaled.any():
        return np.zeros(0)
    inside = np.concatenate([unflagged(np.asarray(m)[scaled]) for m in maps.values()])
    return inside[np.isfinite(inside)]


MAX_DRAWN = 1500  # streamlines drawn per tract panel (a random choice of them where there are more)


def tract_views(tracts: dict, max_lines: int = MAX_DRAWN) -> str:
    """Streamline projections (world RAS mm) seen from below (radiological axial), the front and the left, coloured by
    direction."""
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
                ax.set_ylabel(plane, fontsize=LABEL)
        axes[0, c].set_title(f"{n} ({len(tracts[n])})", fontsize=TITLE)
    fig.subplots_adjust(left=0.4 / fig.get_figwidth(), right=0.99, bottom=0.01, top=1 - 0.3 / fig.get_figheight(),
                        wspace=0.03, hspace=0.03)
    return _png(fig)
