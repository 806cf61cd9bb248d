"""`Method.predict(progress=...)` is called with increasing fractions up to 1 by every family (`iqt
upsample` was silent for 5 min 10 s on a large input; the interpolation methods never called it)."""

from __future__ import annotations

import pytest
from helpers import bundle_volume
from ImageQualityTransferLib import methods


@pytest.mark.parametrize("name", ["cubic", "logeuclid-cubic", pytest.param("espcn", marks=pytest.mark.slow)])  # slow: imports torch
def test_predict_reports_increasing_fractions(name):
    seen = []
    method = methods.get(name)
    method.tile = 6  # a CNN's progress comes per tile: several tiles here
    method.predict(bundle_volume(shape=(14, 10, 10)), 2, uncertainty=False, progress=seen.append)
    assert len(seen) >= 2, seen
    assert all(0 <= a <= b <= 1 for a, b in zip(seen, seen[1:])), seen
    assert seen[-1] == 1.0, seen
