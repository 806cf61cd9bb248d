"""`iqt view`'s runs name its own options (apps/view/engine.py viewer_options) through the engine's option words, as
the Slicer module's name its controls: the factor rule's advice names `iqt view`'s --voxel-size, where the page had
rewritten iqt upsample's English after the line was made."""

from __future__ import annotations

import threading
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from ImageQualityTransferLib.core.volume import Volume


def test_a_page_s_run_names_iqt_view_s_voxel_size(monkeypatch):
    """The page's worker-thread run (Viewer._compute) with the engine's far-from-isotropic line (the learned
    method's own check, `_warn_off_training`) said as its run would say it; the prediction itself left out (a whole
    run took 40 s here)."""
    pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the viewer")
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.apps.view.viewer import Viewer
    from ImageQualityTransferLib.slicer import processing

    t = np.tile(np.array([7e-4, 0, 7e-4, 0, 0, 7e-4], np.float32), (16, 16, 6, 1))
    lr = Volume(t, np.diag([1.0, 1.0, 6.0, 1.0]), "tensor", meta={"path": "thick.nii.gz"})

    def said_by_the_method(lr, request, mask=None, **kw):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            methods.get(request.method)._warn_off_training(lr, mask, (2, 2, 2))
        return {"tensor": lr.replace(meta={"notes": [str(w.message) for w in caught]}), "interpolated": lr}

    monkeypatch.setattr(processing, "predict_volumes", said_by_the_method)
    page = SimpleNamespace(lr=lr, mask=None, _stop=threading.Event(), _report=lambda *a: None)
    results, _fas = Viewer._compute(page, processing.Request("global-linear", 2))
    notes = [n for n in results["tensor"].meta["notes"] if "picks them" in n]
    assert len(notes) == 1 and "(--voxel-size MM picks them)" in notes[0] and "iqt upsample" not in notes[0], notes
