"""`iqt report`'s logarithmic colour bar (apps/report_figures.py `scalar_views`): its tick labels stay apart whatever
the span of the uncertainty maps (every minor tick had been labelled, and over four decades the labels overlapped)."""

import numpy as np
import pytest

from ImageQualityTransferLib.apps import report_figures


def _drawn_labels(monkeypatch, bottom, top):
    """The colour bar's drawn tick labels of a scalar_views figure of two maps from `bottom` to `top`: (text, y0, y1)
    in display pixels, bottom first."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figs = []
    real = report_figures._png
    monkeypatch.setattr(report_figures, "_png", lambda fig: figs.append(fig) or real(fig))
    rng = np.random.default_rng(0)
    shape = (12, 12, 12)
    maps = {n: 10 ** rng.uniform(np.log10(bottom), np.log10(top), shape) for n in ("a", "b")}
    report_figures.scalar_views(maps, None, np.ones(shape, bool), (2, 2, 2), (6, 6, 6), "std", top=top, bottom=bottom)
    fig = figs[-1]
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    bar = fig.axes[-1]
    labels = [lab for tick in bar.yaxis._update_ticks() for lab in (tick.label1, tick.label2)
              if lab.get_visible() and lab.get_text()]
    boxes = [(lab.get_text(), *lab.get_window_extent(renderer).intervaly) for lab in labels]
    return sorted(boxes, key=lambda b: b[1])


@pytest.mark.parametrize("bottom, top", [(1e-3, 10.0), (0.015, 10.0), (0.02, 0.4)])
def test_log_colour_bar_labels_do_not_overlap(monkeypatch, bottom, top):
    """Four decades (0.001-10), just under three and just over one: no two drawn labels overlap, the decades are
    labelled, and the labels read as plain numbers."""
    boxes = _drawn_labels(monkeypatch, bottom, top)
    overlaps = [(p[0], q[0]) for p, q in zip(boxes, boxes[1:]) if q[1] < p[2]]
    assert not overlaps, f"overlapping colour-bar labels over {bottom}-{top}: {overlaps}"
    texts = [b[0] for b in boxes]
    decades = [f"{10.0 ** k:g}" for k in range(int(np.ceil(np.log10(bottom) - 1e-9)), int(np.floor(np.log10(top))) + 1)]
    assert set(decades) <= set(texts), texts
    assert not any("10^" in t or "times" in t or "×" in t for t in texts), texts
