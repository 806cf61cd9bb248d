"""The Slicer module with a DWI input node: `iqt fit`'s two checks (dmri/outliers.py, dmri/motion.py) on the fit it
makes (`processing.fit_dwi`), said in the run's notes, which the module shows under its status line ("Note: ..."), in
the module's words; the same in the worker process (the module's path for the CNNs). Real slicer-core, no mocks."""

from __future__ import annotations

import sys

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")

from helpers import dwi_node, run_notes as _notes  # noqa: E402
from ImageQualityTransferLib.dmri.dti import B0_THRESHOLD  # noqa: E402
from ImageQualityTransferLib.dmri.phantom import make_phantom  # noqa: E402
from ImageQualityTransferLib.slicer import processing  # noqa: E402

OUTLIERS = "the tensor model does not fit parts of the series"
MOVED = "the b0 lies"


@pytest.fixture(scope="module")
def series():
    """(clean, corrupted): a phantom DWI, and it with slices 14-15 of its 3rd diffusion-weighted volume at 20 %, its
    6th zero and its b0 moved 3 voxels along j; with the diffusion-weighted volumes' indices."""
    dwi = make_phantom(shape=(32, 36, 28), voxel_mm=4.0, n_dirs=12)
    d = np.array(dwi.data)
    dw = np.flatnonzero(dwi.bvals > B0_THRESHOLD)
    d[:, :, [14, 15], dw[2]] *= 0.2
    d[..., dw[5]] = 0.0
    b0 = dwi.bvals <= B0_THRESHOLD
    d[..., b0] = np.roll(d[..., b0], 3, axis=1)
    return dwi, dwi.replace(data=d), dw


@pytest.mark.slow
def test_a_dwi_node_s_fit_is_checked_and_said_in_the_run_s_notes(series):
    clean, bad, dw = series
    scene = slicer.vtkMRMLScene()
    nodes = processing.run_on_nodes(scene, dwi_node(scene, clean), "cubic", 2)
    assert not any(OUTLIERS in n or MOVED in n for n in _notes(nodes["tensor"])), _notes(nodes["tensor"])
    node = dwi_node(scene, bad)
    node.SetName("dropout")
    nodes = processing.run_on_nodes(scene, node, "cubic", 2)
    notes = _notes(nodes["tensor"])
    said = [n for n in notes if OUTLIERS in n]
    moved = [n for n in notes if MOVED in n]
    assert len(said) == 1 and len(moved) == 1, notes
    whole = "; ".join(notes[notes.index(said[0]):])  # said over lines of whole pieces (methods/base.py warning_lines)
    assert f"volume {dw[5]} in every slice" in whole and f"slices 14-15 of volume {dw[2]}" in whole
    # the module's own control (Inputs > Exclude outliers), not "rerun 'iqt fit' with --exclude-outliers"
    assert "or tick Inputs > Exclude outliers and apply again to fit without them" in whole and "rerun" not in whole
    assert "voxels from the mean of the diffusion-weighted volumes" in moved[0] and "brain mask" in notes[
        notes.index(moved[0]) + 1]  # said over lines of whole pieces (methods/base.py warning_lines)
    assert notes.index(moved[0]) < notes.index(said[0])  # as iqt fit: the b0 (the mask's) first
    assert not any(n.startswith("/") for n in notes)  # a node, not a file


@pytest.mark.slow
def test_the_worker_process_says_the_same(series):
    """With a separate process (the module's path for the CNNs) the worker fits the DWI: the same notes, no temporary
    file named."""
    _, bad, _ = series
    scene = slicer.vtkMRMLScene()
    node = dwi_node(scene, bad)
    dwi, mask = processing.input_volumes(node, fit=False)
    request = processing.Request("cubic", 2)
    there = processing.predict_in_subprocess(dwi, request, python_executable=sys.executable)
    lr, fit_mask = processing.input_volumes(node)
    here = processing.predict_volumes(lr, request, fit_mask)
    notes = here["tensor"].meta["notes"]
    assert there["tensor"].meta["notes"] == notes
    assert any(OUTLIERS in n for n in notes) and any(MOVED in n for n in notes), notes
    assert not any("iqt-" in n or "input.nii" in n for n in notes)


@pytest.mark.slow
def test_a_dwi_node_gives_what_its_fitted_tensors_give_failed_fits_included():
    """A DWI node fitted in the module and the same series' `iqt fit` tensors loaded as a DTI node give the same
    result and the same note on failed fits: the module's fit had clipped its tensors before the method read them, so
    failed fits were clipped unseen, not filled from the nearest fits, and not said (a Slicer audit: biqt x2 on the yaw
    dev scan's DWI differed from its DTI in 1,453 high-res voxels by more than 0.1 um^2/ms in MD)."""
    from ImageQualityTransferLib.dmri import dti
    from ImageQualityTransferLib.slicer import mrml

    dwi = make_phantom(shape=(24, 26, 20), voxel_mm=4.0, n_dirs=12)
    d = np.array(dwi.data)
    dw = np.flatnonzero(dwi.bvals > B0_THRESHOLD)
    mask = dti.brain_mask(dwi)
    inside = np.argwhere(mask.data)[::40]  # one brain voxel in 40, apart: more than inputs.USUAL_FAILED, so warned
    for i, j, k in inside:
        d[i, j, k, dw] = 1e-3 * d[i, j, k, dw]  # no diffusion-weighted signal: a fit far faster than free water
    dwi = dwi.replace(data=d)
    scene = slicer.vtkMRMLScene()
    mask_node = slicer.vtkMRMLLabelMapVolumeNode()
    mask_node.SetIJKToRASMatrix(mrml._numpy_to_matrix(mask.affine))
    mask_node.SetAndObserveImageData(mrml._image_data(mask.data.astype(np.int16)[..., None], as_tensors=False))
    scene.AddNode(mask_node)
    from_dwi = processing.run_on_nodes(scene, dwi_node(scene, dwi), "biqt", 2, mask_node=mask_node)
    fitted = dti.fit_dti(dwi, mask)
    from_dti = processing.run_on_nodes(scene, mrml.add_tensor_node(scene, fitted, "dti"), "biqt", 2, mask_node=mask_node)
    a, b = (mrml.tensor_volume_from_node(n["tensor"]).data for n in (from_dwi, from_dti))
    np.testing.assert_allclose(a, b, atol=1e-9)
    said = [[n for n in _notes(nodes["tensor"]) if "hold a failed fit" in n] for nodes in (from_dwi, from_dti)]
    assert said[0] == said[1] and len(said[0]) == 1, said
    assert int(said[0][0].split()[0]) >= len(inside), said  # those made here (and the phantom's own)
