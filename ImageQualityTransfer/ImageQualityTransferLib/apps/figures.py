"""Figures: FA and colour-FA panels of several tensor volumes side by side, with an optional uncertainty row.

matplotlib is imported inside the functions and draws on its Agg canvas without pyplot, so importing this module costs nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core import tensors
from ..dmri.dti import unflagged
from ..fileio.writing import atomic_write



def letter_style(size: float) -> dict:
    """Orientation letters: white on a black outline, legible on the Inferno maps' yellow as on the dark background."""
    from matplotlib import patheffects

    return dict(color="white", fontsize=size, fontweight="bold",
                path_effects=[patheffects.withStroke(linewidth=1.5, foreground="black")])

TITLE_PAD = 0.1  # inches above the figure's title and below it
COLUMN_TITLE_PAD = 0.1  # inches between a column's title and its panel (matplotlib's axes.titlepad, 6 pt, and a margin)


def _height_in(fig, text) -> float:
    """The height of `text` as drawn in `fig`, in inches (0 for an empty one)."""
    if not text.get_text():
        return 0.0
    return text.get_window_extent().height / fig.dpi  # drawn as savefig draws it


def _voxel3(voxel_mm) -> np.ndarray:
    v = np.asarray(voxel_mm, dtype=float).reshape(-1)
    v = np.repeat(v, 3) if v.size == 1 else v
    if v.shape != (3,) or not np.all(v > 0):
        raise ValueError(f"voxel_mm must be one positive size or three, got {voxel_mm!r}")
    return v


# ---------------------------------------------------------------- slicing in canonical RAS arrays (also the report's)

PLANES = ("axial", "coronal", "sagittal")


def view(arr: np.ndarray, plane: str, index: int, radiological: bool = True) -> np.ndarray:
    """A 2D image (rows top to bottom) of a canonical RAS-ordered (X,Y,Z,...) array.

    axial: anterior at the top, patient right on screen left; coronal: superior at the top, patient right
    on screen left; sagittal: superior at the top, anterior on screen left. radiological=False puts patient right on
    screen right in axial and coronal views (neurological); sagittal views are the same either way."""
    if plane == "axial":
        img = np.swapaxes(arr[:, :, index], 0, 1)[::-1]
    elif plane == "coronal":
        img = np.swapaxes(arr[:, index, :], 0, 1)[::-1]
    elif plane == "sagittal":
        return np.swapaxes(arr[index, :, :], 0, 1)[::-1][:, ::-1]
    else:
        raise ValueError(f"plane must be one of {PLANES}")
    return img[:, ::-1] if radiological else img


def centre_voxel(mask: np.ndarray) -> tuple:
    """The mask's median voxel, half its voxels on either side of each slice through it (of the volume without one):
    the slices the figures show. The centre of its extent had cut the sagittal AP dev scan's axial view at the skull
    base, its mask reaching down the neck (a display audit)."""
    idx = np.argwhere(mask)
    if len(idx) == 0:
        return tuple(s // 2 for s in mask.shape)
    return tuple(int(v) for v in np.median(idx, axis=0).astype(int))


WHITE_MATTER_FA = 0.3
WHITE_MATTER_MD = (0.4e-3, 1.0e-3)  # mm^2/s
WHITE_MATTER_MIN = 100  # voxels of the largest piece
CENTRE_SLAB = 262_144  # voxels read at once by white_matter_centre


def white_matter_centre(tensor, region, exact: bool = False) -> tuple | None:
    """The median voxel of the largest connected piece of white-matter-like tensors (FA >= 0.3, MD 0.4-1.0e-3 mm^2/s)
    within `region`, in the array's own voxel order: where a brain estimated from unmasked tensors is shown, since that
    brain takes in scalp, face and neck fits, and its own median voxel had put a report's axial and coronal slices
    through the orbits (a display audit); scattered noise fits of that look make no large piece. None where the
    largest piece is under WHITE_MATTER_MIN voxels. `exact`: the medians as they are (floats), not cut to voxels."""
    from scipy import ndimage

    # every voxel read (a grid of every 2nd one starts at index 0, so a copy stored flipped read other planes and
    # showed another slice: a review), slab by slab along the first axis, so that the float64 FA of a large brain is
    # never held whole (read at once it had peaked at 4.9 times the tensors' bytes: a review)
    r = np.asarray(region, bool)
    t = np.asarray(tensor)
    wm = np.zeros(r.shape, bool)
    step = max(1, CENTRE_SLAB // max(1, r.shape[1] * r.shape[2]))
    for i in range(0, r.shape[0], step):
        inside = r[i:i + step]
        values = t[i:i + step][inside]
        md = tensors.md(values)
        wm[i:i + step][inside] = (tensors.fa(values) >= WHITE_MATTER_FA) & (md >= WHITE_MATTER_MD[0]) & \
            (md <= WHITE_MATTER_MD[1])
    pieces, n = ndimage.label(wm)
    if n == 0:
        return None
    sizes = np.bincount(pieces.ravel())[1:]
    if sizes.max() < WHITE_MATTER_MIN:
        return None
    medians = _axis_medians(pieces == np.argmax(sizes) + 1)
    return tuple(float(v) for v in medians) if exact else tuple(int(v) for v in medians)


def _axis_medians(mask: np.ndarray) -> list[float]:
    """np.median(np.argwhere(mask), axis=0), from the mask's counts per plane: the coordinates of a piece of millions
    of voxels had taken 24 bytes each."""
    n = int(mask.sum())
    out = []
    for axis in range(mask.ndim):
        cum = np.cumsum(mask.sum(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        lo, hi = (int(np.searchsorted(cum, k + 1)) for k in ((n - 1) // 2, n // 2))
        out.append((lo + hi) / 2)
    return out


LETTERS = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("A", "P", "S", "I")}
LETTER_MARGIN = 0.12  # of a panel's width and height, black, each side: the letters sit there, not on the tissue


def draw_letters(ax, plane):
    """The orientation letters in a black margin around the panel's image (on a field the brain fills, the S and
    I of coronal panels would sit on bright error and uncertainty pixels)."""
    left, right, top, bottom = LETTERS[plane]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    aspect = ax.get_aspect() if isinstance(ax.get_aspect(), (int, float)) else 1.0  # a y unit's height over an x unit's
    m = LETTER_MARGIN * max(x1 - x0, abs(y1 - y0) * aspect)  # one margin on screen all round, from the longer side
    ax.set_xlim(x0 - m, x1 + m)
    d = m / aspect if y0 > y1 else -m / aspect  # widened in the axis's own direction: down in an image, up in a plot
    ax.set_ylim(y0 + d, y1 - d)
    ax.set_facecolor("black")
    kw = dict(transform=ax.transAxes, **letter_style(7))
    ax.text(0.02, 0.5, left, va="center", **kw)
    ax.text(0.98, 0.5, right, va="center", ha="right", **kw)
    ax.text(0.5, 0.98, top, ha="center", va="top", **kw)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **kw)


# ---------------------------------------------------------------- panels


def _uncertainty_list(uncertainty, names, shape3):
    """Normalise the uncertainty argument to one (X,Y,Z) array or None per column."""
    if uncertainty is None:
        return None
    if isinstance(uncertainty, dict):
        unknown = set(uncertainty) - set(names)
        if unknown:
            raise ValueError(f"uncertainty maps for unknown columns {sorted(unknown)}; columns are {names}")
        maps = [uncertainty.get(n) for n in names]
    else:
        maps = list(uncertainty)
        if len(maps) != len(names):
            raise ValueError(f"{len(maps)} uncertainty maps for {len(names)} columns; give one per column (None where absent)")
    out = []
    for name, m in zip(names, maps):
        if m is None:
            out.append(None)
            continue
        m = np.asarray(getattr(m, "data", m), dtype=np.float64)
        if m.ndim == 4:  # per-element maps: root mean square over the elements
            m = np.sqrt(np.mean(m**2, axis=-1))
        if m.shape != shape3:
            raise ValueError(f"uncertainty map of {name!r} has shape {m.shape}, the columns have {shape3}")
        out.append(m)
    return out if any(m is not None for m in out) else None


def fa_panels(
    columns,
    path,
    mask=None,
    title=None,
    voxel_mm=1.0,
    uncertainty=None,
    slice_index=None,
    radiological=True,
    uncertainty_label=f"predictive std ({tensors.SHOWN_UNIT_LABEL})",
    uncertainty_scale=tensors.SHOWN_UNIT,
    dpi=100,
    frame=None,
):
    """Write a PNG: row 1 FA, row 2 colour FA, one column per named tensor volume; optional row 3 uncertainty.

    columns: list of (name, (X,Y,Z,6) tensor array) on one grid, in canonical RAS-ordered voxel axes
      (lower-triangular order, mm^2/s); upsample low-res inputs (e.g. nearest) to that grid before.
    mask: (X,Y,Z) bool; voxels outside it, and implausible fits (docs/conventions.md), are shown black.
    voxel_mm: one size or three (X,Y,Z) in mm, for the display aspect.
    uncertainty: {column name: (X,Y,Z) map} or a list aligned with columns (None where absent); shown in
      a third row with the 'inferno' colormap on one shared scale (0 to the 99th percentile of the maps in the mask,
      the whole volume's as `iqt report` reads it, not the slice's), multiplied by `uncertainty_scale`.
    slice_index: axial slice (default the middle of the mask's extent, the slice `iqt report` shows; without a mask
      the volume's middle one). radiological: patient right on screen left (the
      clinical and 3D Slicer default); False for neurological. The choice is written in the title.
    frame: the rotation from the canonical voxel axes to world RAS, so that colour FA is the world's on an oblique scan
      (as `iqt report` colours it: apps/report_figures.py fa_views).
    Returns the path written.
    """
    from matplotlib.figure import Figure  # Agg canvas, no pyplot: no global backend state, no GUI

    if not columns:
        raise ValueError("fa_panels needs at least one (name, tensor) column")
    names = [str(n) for n, _ in columns]
    arrays = [np.asarray(getattr(t, "data", t)) for _, t in columns]
    shape3 = arrays[0].shape[:3]
    for n, a in zip(names, arrays):
        if a.ndim != 4 or a.shape[3] != 6:
            raise ValueError(f"column {n!r}: expected a (X,Y,Z,6) tensor array, got shape {a.shape}")
        if a.shape[:3] != shape3:
            raise ValueError(f"column {n!r} has grid {a.shape[:3]}, the first column {shape3}; put every column on one grid")
    m = np.ones(shape3, bool) if mask is None else np.asarray(getattr(mask, "data", mask), bool)
    if m.shape != shape3:
        raise ValueError(f"mask shape {m.shape} differs from the columns' grid {shape3}")
    vox = _voxel3(voxel_mm)
    # default: the mask's centre, the report's slice (the volume's middle missed an off-centre brain)
    k = int(slice_index) if slice_index is not None else centre_voxel(m)[2]
    if not 0 <= k < shape3[2]:
        raise ValueError(f"slice_index {k} outside 0..{shape3[2] - 1}")
    unc = _uncertainty_list(uncertainty, names, shape3)

    # only the slice is needed: compute invariants on it
    fa_imgs, rgb_imgs, keep = [], [], []
    for a in arrays:
        sl = np.asarray(a[:, :, k : k + 1], dtype=np.float64)
        ok = m[:, :, k : k + 1] & tensors.plausible(sl)
        fa_imgs.append(view(np.where(ok, tensors.fa(sl), 0.0), "axial", 0, radiological))
        coloured = sl if frame is None else tensors.rotate(sl, frame)
        rgb_imgs.append(view(np.where(ok[..., None], tensors.color_fa(coloured), 0.0), "axial", 0, radiological))
        keep.append(view(ok, "axial", 0, radiological))

    nrows = 3 if unc is not None else 2
    ncol = len(columns)
    h_mm, w_mm = shape3[1] * vox[1], shape3[0] * vox[0]
    panel_w = 2.4
    panel_h = panel_w * h_mm / w_mm
    fig_w = panel_w * ncol + 0.9 + (0.9 if unc is not None else 0.0)
    fig_h = panel_h * nrows + 0.9
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    axes = fig.subplots(nrows, ncol, squeeze=False)
    aspect = vox[1] / vox[0]
    for c in range(ncol):
        axes[0, c].imshow(fa_imgs[c], cmap="gray", vmin=0.0, vmax=1.0, aspect=aspect, interpolation="nearest")
        axes[1, c].imshow(rgb_imgs[c], aspect=aspect, interpolation="nearest")
        axes[0, c].set_title(names[c], fontsize=10)
    axes[0, 0].set_ylabel("FA", fontsize=10)
    axes[1, 0].set_ylabel("colour FA", fontsize=10)
    left, right = ("R", "L") if radiological else ("L", "R")
    for ax in axes.ravel():  # on every panel, as the report's (only the first column had them)
        ax.text(0.02, 0.5, left, transform=ax.transAxes, va="center", **letter_style(8))
        ax.text(0.98, 0.5, right, ha="right", transform=ax.transAxes, va="center", **letter_style(8))

    if unc is not None:
        slices = [None if u is None else view(u, "axial", k, radiological) * uncertainty_scale for u in unc]
        # the scale from the whole volume inside the mask, each map's flagged voxels left out (dti.unflagged, as
        # report_figures.scalar_views): one slice's percentile had put the top elsewhere than the report's, and the
        # flag level (methods/flags.py) had set it
        inside = [unflagged(np.asarray(u, np.float64)[m]) * uncertainty_scale for u in unc if u is not None and m.any()]
        values = np.concatenate(inside) if inside else np.zeros(1)
        values = values[np.isfinite(values)]
        vmax = float(np.percentile(values, 99)) if values.size else 1.0
        vmax = vmax if vmax > 0 else 1.0
        im = None
        for c, s in enumerate(slices):
            ax = axes[2, c]
            if s is None:
                ax.set_facecolor("black")
                ax.text(0.5, 0.5, "no uncertainty", color="0.7", ha="center", va="center", fontsize=8, transform=ax.transAxes)
                ax.imshow(np.zeros_like(fa_imgs[c]), cmap="gray", vmin=0, vmax=1, aspect=aspect)
                continue
            im = ax.imshow(np.where(keep[c], s, np.nan), cmap="inferno", vmin=0.0, vmax=vmax, aspect=aspect,
                           interpolation="nearest")
            ax.set_facecolor("black")
        axes[2, 0].set_ylabel("uncertainty", fontsize=10)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    convention = "radiological (patient R on screen left)" if radiological else "neurological (patient R on screen right)"
    head = f"{title}\n" if title else ""
    # the room above the panels from the titles' rendered heights, in inches: a fixed 0.75 in under a title placed at a
    # share of the figure's height had a tall figure's title (the sagittal dev scan at x1,1,3) across the column titles
    sup = fig.suptitle(f"{head}axial slice {k}, {convention}", fontsize=10, va="top")
    top_in = TITLE_PAD + _height_in(fig, sup) + TITLE_PAD + max(_height_in(fig, ax.title) for ax in axes[0]) + COLUMN_TITLE_PAD
    fig_h = panel_h * nrows + 0.15 + top_in
    fig.set_size_inches(fig_w, fig_h)
    sup.set_y(1 - TITLE_PAD / fig_h)
    fig.subplots_adjust(left=0.3 / fig_w, right=1 - (0.9 if unc is not None else 0.1) / fig_w,
                        bottom=0.1 / fig_h, top=1 - top_in / fig_h, wspace=0.03, hspace=0.03)
    if unc is not None and im is not None:  # colour bar in the right margin, beside the uncertainty row
        box = axes[2, -1].get_position()
        cax = fig.add_axes([box.x1 + 0.12 / fig_w, box.y0 + 0.05 * box.height, 0.15 / fig_w, 0.9 * box.height])
        cbar = fig.colorbar(im, cax=cax)
        cbar.set_label(uncertainty_label, fontsize=8)
        cbar.ax.tick_params(labelsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, facecolor="white", format=path.suffix.lstrip(".") or "png"))
    return path


def stored_panels(columns, affine, path, mask, uncertainty=None, draw=None, **kwargs):
    """`fa_panels` (or `draw`, e.g. `qc_strip`) of tensor volumes stored on one grid of `affine` in any voxel order (a
    whole volume, or the one-voxel slab a cohort's QC figure shows): each put in canonical RAS axes first, colour FA
    in the world's frame. columns: (name, (X,Y,Z,6) array); mask: (X,Y,Z); uncertainty: {column name: (X,Y,Z) map}."""
    from ..core.orientation import Reorientation
    from ..core.volume import Volume

    reo = Reorientation.to_canonical(affine)
    masked = reo.apply(Volume(np.asarray(mask, bool), affine, "mask"))
    frame = masked.affine[:3, :3] / np.linalg.norm(masked.affine[:3, :3], axis=0)  # canonical voxel axes -> world
    canon = [(name, reo.apply(Volume(np.asarray(a, np.float32), affine, "tensor")).data) for name, a in columns]
    maps = {name: reo.apply(Volume(np.asarray(u), affine, "scalar")).data for name, u in (uncertainty or {}).items()}
    return (draw or fa_panels)(canon, path, mask=masked.data, voxel_mm=masked.voxel_size, uncertainty=maps or None,
                               frame=frame, **kwargs)


def qc_strip(columns, path, mask=None, voxel_mm=1.0, uncertainty=None, frame=None, title=None, radiological=True,
             dpi=100):
    """One row of panels, legible where a cohort's QC page shows it small: colour FA of each (name, tensor) column
    (canonical RAS arrays, as `fa_panels` takes them), then each column's uncertainty map, on the axial slice through
    the mask's centre; voxels outside the mask and implausible fits black, the maps on Inferno from 0 to their 99th
    percentile in the mask, flagged voxels left out (dti.unflagged), with a colour bar."""
    from matplotlib.figure import Figure

    arrays = [np.asarray(getattr(t, "data", t)) for _, t in columns]
    shape3 = arrays[0].shape[:3]
    m = np.ones(shape3, bool) if mask is None else np.asarray(getattr(mask, "data", mask), bool)
    k = centre_voxel(m)[2]
    vox = _voxel3(voxel_mm)
    panels = []  # (title, image, is a map)
    for (name, _), a in zip(columns, arrays):
        sl = np.asarray(a[:, :, k : k + 1], dtype=np.float64)
        ok = m[:, :, k : k + 1] & tensors.plausible(sl)
        coloured = sl if frame is None else tensors.rotate(sl, frame)
        panels.append((f"{name}: colour FA", view(np.where(ok[..., None], tensors.color_fa(coloured), 0.0), "axial", 0,
                                                  radiological), False))
    maps = {n: np.asarray(u, np.float64) for n, u in (uncertainty or {}).items() if u is not None}
    vmax = 1.0
    if maps:
        # flagged voxels left out (dti.unflagged): with a brain estimated from the tensors (apps/batch/subject.py) the noise
        # fits' flag level had set the top
        inside = np.concatenate([unflagged(u[m]) for u in maps.values()]) * tensors.SHOWN_UNIT
        inside = inside[np.isfinite(inside)]
        vmax = float(np.percentile(inside, 99)) if inside.size and np.percentile(inside, 99) > 0 else 1.0
        for name, u in maps.items():
            shown = np.where(m[:, :, k], u[:, :, k] * tensors.SHOWN_UNIT, np.nan)[:, :, None]
            panels.append((f"{name}: uncertainty", view(shown, "axial", 0, radiological), True))
    aspect = vox[1] / vox[0]
    panel_w = 2.0
    # a slab's slice can be a line: its panel kept between a quarter and four times as tall as wide (a review: 2 by
    # 400 voxels had made a 410 x 40,075 px figure); the image keeps its aspect inside
    panel_h = float(np.clip(panel_w * shape3[1] * vox[1] / (shape3[0] * vox[0]), panel_w / 4, 4 * panel_w))
    if title:  # on lines that fit the figure: a long subject label had been cut off (a review)
        import textwrap

        per_line = max(20, int((panel_w * len(panels) + (0.9 if maps else 0.1)) * 72 / 9 * 1.6))
        title = "\n".join(textwrap.wrap(title, per_line, break_on_hyphens=False))  # a label is one word
    lines = title.count("\n") + 1 if title else 0
    fig_w = panel_w * len(panels) + (0.9 if maps else 0.1)
    fig_h = panel_h + (0.45 + 0.16 * lines if title else 0.35)
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    im = None
    left, right = ("R", "L") if radiological else ("L", "R")
    for ax, (name, img, is_map) in zip(axes, panels):
        if is_map:
            im = ax.imshow(img, cmap="inferno", vmin=0.0, vmax=vmax, aspect=aspect, interpolation="nearest")
        else:
            ax.imshow(img, aspect=aspect, interpolation="nearest")
        ax.set_facecolor("black")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.02, 0.5, left, transform=ax.transAxes, va="center", **letter_style(7))
        ax.text(0.98, 0.5, right, ha="right", transform=ax.transAxes, va="center", **letter_style(7))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.05 / fig_w, right=1 - (0.9 if maps else 0.05) / fig_w, bottom=0.05 / fig_h,
                        top=1 - (0.4 + 0.16 * lines if title else 0.3) / fig_h, wspace=0.03)
    if im is not None:
        box = axes[-1].get_position()
        cax = fig.add_axes([box.x1 + 0.08 / fig_w, box.y0 + 0.05 * box.height, 0.12 / fig_w, 0.9 * box.height])
        bar = fig.colorbar(im, cax=cax)
        bar.set_label(f"std ({tensors.SHOWN_UNIT_LABEL})", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, facecolor="white", format="png"))
    return path


def uncertainty_panel(columns, uncertainty, path, **kwargs):
    """`fa_panels` with the uncertainty row: the same arguments, uncertainty required."""
    if uncertainty is None:
        raise ValueError("uncertainty_panel needs uncertainty maps")
    return fa_panels(columns, path, uncertainty=uncertainty, **kwargs)
