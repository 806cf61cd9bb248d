"""A DWI node holding a scanner's trace (isotropic) image, a volume with b > 0 and no gradient, is refused as `iqt fit`
refuses it, in the module's words (an audit: it had been fitted as a second b0, MD halved, with a note suggesting
another series' b0); a node whose b-values are one number throughout (a NRRD header's convention, where a zero gradient
is a b0) is fitted as before. NaN in a node is read as 0, with a note (README, Load a DTI). Real slicer-core."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")

from helpers import dwi_node  # noqa: E402
from ImageQualityTransferLib.core.errors import IQTError  # noqa: E402
from ImageQualityTransferLib.dmri.phantom import make_phantom  # noqa: E402
from ImageQualityTransferLib.slicer import processing  # noqa: E402


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape=(16, 18, 14), voxel_mm=4.0, n_dirs=12)


def _with_trace(dwi, b_trace=1000.0):
    """`dwi` with a trace image appended: the geometric mean of its weighted volumes, b `b_trace`, gradient 0 0 0."""
    d = np.asarray(dwi.data, np.float32)
    trace = np.exp(np.log(np.maximum(d[..., dwi.bvals > 50], 1)).mean(-1))
    return dwi.replace(data=np.concatenate([d, trace[..., None]], -1), bvals=np.r_[dwi.bvals, b_trace],
                       bvecs=np.r_[dwi.bvecs, [[0.0, 0.0, 0.0]]])


def test_a_trace_volume_in_a_dwi_node_is_refused_naming_it(phantom):
    scene = slicer.vtkMRMLScene()
    node = dwi_node(scene, _with_trace(phantom))
    node.SetName("philips")
    n = len(phantom.bvals)
    with pytest.raises(IQTError) as err:
        processing.input_volumes(node)
    said = str(err.value)
    assert said.startswith(f"node 'philips': volume {n} (counted from 0) has b = 1000 s/mm^2 but a zero gradient")
    assert "trace (isotropic) image" in said and "remove it from the DWI" in said and "\n" not in said


def test_a_node_with_one_b_value_throughout_reads_zero_gradients_as_b0s(phantom):
    """Its b0s listed at the series' b, as a NRRD header lists them: fitted as the same node with b0s at 0."""
    scene = slicer.vtkMRMLScene()
    as_header = phantom.replace(bvals=np.full(len(phantom.bvals), 1000.0))
    got = processing.dwi_volume_from_node(dwi_node(scene, as_header))
    want = processing.dwi_volume_from_node(dwi_node(scene, phantom))
    assert np.array_equal(got.bvals, want.bvals)


def test_nan_in_a_dwi_node_is_read_as_zero_with_a_note(phantom):
    scene = slicer.vtkMRMLScene()
    d = np.array(phantom.data, np.float32)
    d[0, 0, 0, 3] = np.nan
    vol = processing.dwi_volume_from_node(dwi_node(scene, phantom.replace(data=d)))
    assert vol.data[0, 0, 0, 3] == 0 and any("1 NaN/Inf values" in n for n in vol.meta["input_notes"])


def test_slicer_s_nrrd_reader_gives_each_volume_b_times_g_squared(tmp_path):
    """What `_refuse_trace`'s docstring says of Slicer's NRRD reader (a review had guessed b x |g| / max |g|): a header's
    b 1000 with |g| 0, 1, 0.5, 0.25 is read as b 0, 1000, 250, 62.5 with unit gradients, so its zero gradient is a b0
    and no trace volume."""
    nrrd = pytest.importorskip("nrrd")
    data = np.random.default_rng(0).uniform(10, 110, (4, 8, 8, 8)).astype(np.float32)
    g = {0: "0 0 0", 1: "1 0 0", 2: "0 0.5 0", 3: "0 0 0.25"}
    nrrd.write(str(tmp_path / "t.nhdr"), data, {
        "type": "float", "dimension": 4, "space": "right-anterior-superior", "sizes": [4, 8, 8, 8],
        "kinds": ["list", "domain", "domain", "domain"], "space directions": [[np.nan] * 3, [2, 0, 0], [0, 2, 0], [0, 0, 2]],
        "space origin": [0, 0, 0], "measurement frame": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "modality": "DWMRI",
        "DWMRI_b-value": "1000", **{f"DWMRI_gradient_{i:04d}": v for i, v in g.items()}})
    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLDiffusionWeightedVolumeNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLNRRDStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "t.nhdr"))
    assert storage.ReadData(node)
    vol = processing.dwi_volume_from_node(node)
    assert np.allclose(vol.bvals, [0, 1000, 250, 62.5])
    assert np.allclose(np.linalg.norm(vol.bvecs[1:], axis=1), 1.0)
