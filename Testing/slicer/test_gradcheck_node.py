"""The Slicer module with a DWI input node whose gradients are in the wrong frame (dmri/gradcheck.py, as `iqt fit`
checks them): one note of the run says so, in a node's words (no bvec file to edit); a right table says nothing. Real
slicer-core, no mocks."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")

from helpers import dwi_node, run_notes, table_looks_wrong  # noqa: E402
from ImageQualityTransferLib.dmri.phantom import make_phantom  # noqa: E402
from ImageQualityTransferLib.slicer import processing  # noqa: E402

SAID = "the gradient table looks wrong"


@pytest.mark.slow
def test_a_dwi_node_with_its_x_gradients_negated_gets_a_note():
    dwi = make_phantom(shape=(32, 36, 28), voxel_mm=4.0, n_dirs=12)
    scene = slicer.vtkMRMLScene()
    nodes = processing.run_on_nodes(scene, dwi_node(scene, dwi), "cubic", 2)
    assert not any(SAID in n for n in run_notes(nodes["tensor"])), run_notes(nodes["tensor"])
    bad = dwi.replace(bvecs=np.asarray(dwi.bvecs) * [-1.0, 1.0, 1.0])
    nodes = processing.run_on_nodes(scene, dwi_node(scene, bad), "cubic", 2)
    said = table_looks_wrong(run_notes(nodes["tensor"]))
    assert len(said) == 1 and "the x components look negated" in said[0], run_notes(nodes["tensor"])
    assert "load the DWI again from a conversion whose gradients and measurement frame are right" in said[0]
    assert "bvec" not in said[0] and not said[0].startswith("/")
