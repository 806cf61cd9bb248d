"""Engine calls leave the process's random state as they found it (README, "Python API"): loading a CNN built its
layers with random initial weights from torch's global generator before its trained weights replaced them, so a
caller's seeded torch draws moved after a first predict (a cohort audit)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ImageQualityTransferLib import methods  # noqa: E402
from ImageQualityTransferLib.core.errors import IQTWarning  # noqa: E402

from helpers import bundle_volume  # noqa: E402


@pytest.mark.parametrize("name", ["espcn", "espcn-hetero-var1", "deep"])
def test_a_cnn_s_first_predict_leaves_torch_s_and_numpy_s_generators_alone(name):
    if name not in methods.ready(2):
        pytest.skip(f"{name} has no shipped model for factor 2 here")
    lr = bundle_volume(shape=(14, 10, 10))
    torch.manual_seed(123)
    np.random.seed(7)
    want_torch, want_np = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(7)
    with pytest.warns(IQTWarning, match="whole field of view"):  # the bundle fills its field: said, and run
        methods.get(name).predict(lr, 2, uncertainty=False)
    assert torch.equal(torch.rand(3), want_torch)
    assert np.array_equal(np.random.rand(3), want_np)
