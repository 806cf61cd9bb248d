"""The overall progress a run reports never goes back: the method (and the comparison interpolation, when there is
one) end at or below the fraction where the output nodes are made (cubic reported 1.0, then 0.95)."""

from __future__ import annotations

import numpy as np
import pytest

from ImageQualityTransferLib.core.volume import Volume

from helpers import random_tensors

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")

from ImageQualityTransferLib.slicer import mrml, processing  # noqa: E402


@pytest.mark.filterwarnings("ignore:the input holds tensors over the whole field of view")
@pytest.mark.parametrize("method, interpolate", [("cubic", True), ("cubic", False), ("linear", True)])
def test_progress_goes_forward(method, interpolate):
    scene = slicer.vtkMRMLScene()
    node = mrml.add_tensor_node(scene, Volume(random_tensors((6, 7, 5), seed=1), np.diag([2.0, 2.0, 2.0, 1.0]), "tensor"), "in")
    seen = []
    processing.run_on_nodes(scene, node, method, (2, 2, 2), interpolate=interpolate,
                            progress=lambda fraction, message: seen.append((fraction, message)))
    fractions = [f for f, _ in seen if f is not None]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert all(b >= a for a, b in zip(fractions, fractions[1:])), seen
    made = [f for f, m in seen if m == "creating output nodes"]
    assert made == [processing.OUTPUT_PROGRESS]
