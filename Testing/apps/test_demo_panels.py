"""`iqt demo`'s fa_panels.png reads its slice and its uncertainty scale as `iqt report` does, and letters every panel."""

from __future__ import annotations

import numpy as np

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
