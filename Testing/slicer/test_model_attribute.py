"""The Slicer module names the model a learned method ran (its notes and nodes did not): the
tensor output node's ImageQualityTransfer.Model attribute and the status line after the run ("Done: dti_rf (shipped
model rf_x2.npz)"), as the header of a file iqt writes names it; nothing for interpolation."""

from __future__ import annotations

import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")

from ImageQualityTransferLib.dmri import degrade, dti  # noqa: E402
from ImageQualityTransferLib.dmri.phantom import make_phantom  # noqa: E402
from ImageQualityTransferLib.slicer import mrml, processing, results  # noqa: E402


def test_the_tensor_node_names_the_model_that_ran_and_interpolation_names_none():
    dwi = make_phantom(shape=(20, 22, 16), voxel_mm=2.0, n_dirs=12)
    lr = degrade.degrade(dwi, dti.brain_mask(dwi).data, 2).tensor
    scene = slicer.vtkMRMLScene()
    node = mrml.add_tensor_node(scene, lr, "dti")
    rf = processing.run_on_nodes(scene, node, "rf", 2)["tensor"]
    assert rf.GetAttribute(mrml.MODEL_ATTRIBUTE) == "shipped model rf_x2.npz"
    linear = processing.run_on_nodes(scene, node, "linear", 2)["tensor"]
    assert linear.GetAttribute(mrml.MODEL_ATTRIBUTE) is None


def test_a_result_from_the_worker_process_names_its_model_from_the_header_record():
    """The CNNs run in a worker process whose files come back with their header's record (records.made_by)."""
    assert results.model_words({"made_by": "iqt espcn factor 2 shipped model espcn_x2.pt"}) == \
        "shipped model espcn_x2.pt"
    assert results.model_words({"made_by": "iqt cubic factor 2"}) == ""
    assert results.model_words({"model_name": "h.pt", "model_origin": "given"}) == "given model h.pt"


@pytest.mark.slow
def test_the_worker_process_passes_a_long_model_name_the_header_cannot_hold():
    """'iqt espcn-hetero-var1 factors 1,1,2 RAS shipped model espcn-hetero-var1_x1x1x2_noisy.pt' is over
    NIfTI's and the record's 80 bytes, so the header dropped the model and the Slicer node named none."""
    import sys

    pytest.importorskip("torch", reason="PyTorch (the cnn extra) runs the CNNs")
    dwi = make_phantom(shape=(20, 22, 24), voxel_mm=2.0, n_dirs=12)
    lr = degrade.degrade(dwi, dti.brain_mask(dwi).data, (1, 1, 2)).tensor
    scene = slicer.vtkMRMLScene()
    node = mrml.add_tensor_node(scene, lr, "dti")
    out = processing.run_on_nodes(scene, node, "espcn-hetero-var1", (1, 1, 2), samples=2,
                                  python_executable=sys.executable)["tensor"]
    assert out.GetAttribute(mrml.MODEL_ATTRIBUTE).startswith("shipped model espcn-hetero-var1_x1x1x2")
