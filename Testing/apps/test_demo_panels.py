"""`iqt demo`'s fa_panels.png reads its slice and its uncertainty scale as `iqt report` does, and letters every panel."""

from __future__ import annotations

import numpy as np
import pytest

from ImageQualityTransferLib.apps import figures
from ImageQualityTransferLib.core import tensors


def test_the_demo_figure_shows_what_the_report_shows(tmp_path, monkeypatch):
    """The mask's centre slice (the report's `centre_voxel`), not the volume's middle; the uncertainty scale from the whole
    volume in the mask (the report's), not from the slice drawn; R and L on every panel, not the first column's only."""
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ImageQualityTransferLib.apps.figures import centre_voxel

    shape = (12, 14, 16)
    rng = np.random.default_rng(0)
    v = rng.normal(size=shape + (3,))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    t = tensors.from_matrix(0.4e-3 * np.eye(3) + 1.0e-3 * v[..., :, None] * v[..., None, :]).astype(np.float32)
    mask = np.zeros(shape, bool)
    mask[2:-2, 2:-2, 1:8] = True  # an off-centre brain: its centre slice is 4, the volume's middle 8
    unc = np.full(shape, 1e-4, np.float32)
    unc[:, :, 6:8] = 9e-4  # the volume's top sits off the slice drawn

    tops, titles, letters = [], [], []
    real_colorbar, real_suptitle, real_text = Figure.colorbar, Figure.suptitle, Axes.text
    monkeypatch.setattr(Figure, "colorbar", lambda self, im, *a, **k: tops.append(im.norm.vmax) or
                        real_colorbar(self, im, *a, **k))
    monkeypatch.setattr(Figure, "suptitle", lambda self, text, *a, **k: titles.append(text) or
                        real_suptitle(self, text, *a, **k))
    monkeypatch.setattr(Axes, "text", lambda self, x, y, s, *a, **k: letters.append((id(self), s)) or
                        real_text(self, x, y, s, *a, **k))
    figures.fa_panels([("cubic", t), ("method", t), ("truth", t)], tmp_path / "p.png", mask=mask,
                      uncertainty={"method": unc})
    k = centre_voxel(mask)[2]
    assert k == 4 and f"axial slice {k}," in titles[0], titles
    expected = float(np.percentile(unc[mask] * tensors.SHOWN_UNIT, 99))
    assert tops == [np.float64(expected)] or np.allclose(tops, [expected]), (tops, expected)
    lettered = {a for a, s in letters if s == "R"} & {a for a, s in letters if s == "L"}
    assert len(lettered) == 3 * 3, f"{len(lettered)} of 9 panels have R and L"


def test_the_slices_go_through_the_brain_not_the_middle_of_a_mask_reaching_down_the_neck():
    """The sagittal AP dev scan's mask reaches from the vertex down the neck: the centre of its extent cut the report's
    axial view at the skull base (a display audit). The median voxel lies in the brain's bulk."""
    mask = np.zeros((40, 40, 60), bool)
    mask[5:35, 5:35, 30:58] = True  # the brain
    mask[17:23, 17:23, 0:30] = True  # the brainstem and neck, thin and long
    z = np.argwhere(mask)[:, 2]
    assert (z.min() + z.max()) // 2 < 30 <= figures.centre_voxel(mask)[2]  # the extent's centre: in the neck


def _drawn_figures(monkeypatch):
    from matplotlib.figure import Figure

    drawn, real_savefig = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: drawn.append(self) or real_savefig(self, *a, **k))
    return drawn


def _overlaps(fig):
    """The figure title's box against each panel title's and each panel's, as rendered; and whether it is inside the
    figure."""
    fig.draw_without_rendering()
    title = fig._suptitle.get_window_extent()
    boxes = [ax.title.get_window_extent() for ax in fig.axes if ax.get_title()] + \
            [ax.get_window_extent() for ax in fig.axes]
    inside = title.y1 <= fig.bbox.y1 + 0.5 and title.y0 >= 0
    return [b for b in boxes if b.overlaps(title)], inside


@pytest.mark.parametrize("shape, voxel", [((20, 90, 4), (1.0, 1.0, 3.0)),  # tall: a sagittal scan's axial view
                                          ((90, 20, 4), (1.0, 1.0, 3.0)),  # wide
                                          ((40, 40, 4), (1.0, 1.0, 1.0))])
@pytest.mark.parametrize("with_uncertainty", [False, True])
def test_the_demo_title_never_overlaps_the_column_titles(tmp_path, monkeypatch, shape, voxel, with_uncertainty):
    """A tall figure (the sagittal dev scan's axial view at x1,1,3) had its two-line title across the column titles:
    the title hung from a fraction of the figure's height, the panels from a fixed 0.75 in (a display audit)."""
    t = np.broadcast_to(tensors.from_matrix(np.diag([1.2e-3, 0.5e-3, 0.4e-3])), shape + (6,)).astype(np.float32)
    unc = {"deep-hetero-var1": np.full(shape, 1e-4, np.float32)} if with_uncertainty else None
    drawn = _drawn_figures(monkeypatch)
    figures.fa_panels([("low-res input (nearest)", t), ("cubic", t), ("deep-hetero-var1", t), ("ground truth", t)],
                      tmp_path / "p.png", title="siemens_prisma_sag_2p7mm_ap: x1,1,3 super-resolution",
                      voxel_mm=voxel, uncertainty=unc)
    hit, inside = _overlaps(drawn[-1])
    assert not hit and inside, (hit, drawn[-1]._suptitle.get_window_extent())



@pytest.mark.parametrize("draw", ["fa_panels", "qc_strip"])
def test_flagged_voxels_do_not_set_the_demo_or_qc_scale(tmp_path, monkeypatch, draw):
    """methods/flags.py raises the voxels it flags (noise fits of a brain estimated from the tensors, which `iqt batch`
    passes as the strip's mask) to one value, the map's top: 3 % of them had set the figure's top, as they had the
    Slicer legend's (dti.unflagged); the scale is read from the unflagged voxels."""
    from matplotlib.figure import Figure

    shape = (20, 20, 12)
    rng = np.random.default_rng(0)
    t = np.zeros(shape + (6,), np.float32)
    t[..., 0] = t[..., 2] = t[..., 5] = 0.7e-3
    mask = np.ones(shape, bool)
    unc = rng.uniform(0.5e-4, 1.5e-4, shape)
    unc[rng.random(shape) < 0.03] = 9.87e-3
    tops = []
    real_colorbar = Figure.colorbar
    monkeypatch.setattr(Figure, "colorbar", lambda self, im, *a, **k: tops.append(im.norm.vmax) or
                        real_colorbar(self, im, *a, **k))
    getattr(figures, draw)([("method", t)], tmp_path / "p.png", mask=mask, uncertainty={"method": unc})
    assert np.percentile(unc, 99) > 9e-3  # with them
    assert len(tops) == 1 and 1.4e-4 * tensors.SHOWN_UNIT < tops[0] < 1.5e-4 * tensors.SHOWN_UNIT, tops
