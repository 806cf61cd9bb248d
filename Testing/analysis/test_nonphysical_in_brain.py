"""The benchmark's non-physical count ("output voxels inside the brain with a negative eigenvalue") and the share of
them flagged (σ at least the brain edge's median) are over the brain mask, not the whole output grid: beyond a tight
mask a method answers two rings of context, and those voxels were counted (audit: 271 counted on the 3 mm ortho
subject's tight input with espcn-hetero-var1, 1 inside the brain)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import cube_case
from ImageQualityTransferLib.analysis import evaluation

NEGATIVE = [1e-3, 0, 1e-3, 0, 0, -3e-4]


def test_nonphysical_voxels_are_counted_inside_the_brain_only():
    r = 2
    lr, hr, truth = cube_case(2, 8, r)
    ring = np.zeros(hr.shape, bool)
    ring[2:18, 2:18, 2:18] = True
    ring &= ~hr  # the context answered beyond the mask
    pred = np.where((hr | ring)[..., None], truth + 1e-5, 0.0)
    pred[ring] = [1e-3, 0, 0.7e-3, 0, 0, 0.5e-3]
    sigma = np.where(hr | ring, 1e-5, 0.0)
    outside = tuple(np.argwhere(ring)[:40].T)
    pred[outside] = NEGATIVE  # non-physical context outside the brain, not flagged
    inside = (9, 9, 9)
    assert hr[inside]
    pred[inside] = NEGATIVE
    sigma[inside] = 1e-3  # flagged
    res = evaluation.evaluate(pred, truth, hr, lr, r, uncertainty=sigma)
    assert res["brain"]["n_nonphysical"] == 1
    assert res["brain"]["nonphysical_flagged"] == 1.0
    # none inside the brain: none counted, the share undefined
    pred[inside] = truth[inside] + 1e-5
    res = evaluation.evaluate(pred, truth, hr, lr, r, uncertainty=sigma)
    assert res["brain"]["n_nonphysical"] == 0 and np.isnan(res["brain"]["nonphysical_flagged"])


def test_the_brain_mask_must_be_on_the_predictions_grid():
    pred = np.zeros((4, 4, 4, 6))
    with pytest.raises(Exception, match="brain mask"):
        evaluation.nonphysical_flagged(pred, np.zeros((4, 4, 4)), np.ones((4, 4, 4), bool), np.ones((4, 4, 5), bool))
