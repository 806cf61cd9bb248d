"""A diffusion node's measurement frame as the module reads it, on real slicer-core (no mocks): a DTI NRRD written as
Slicer writes one (LPS space, an arbitrary measurement frame, components expressed in it) reads as the tensors it
was made from, and a NRRD whose frame is not a rotation, read by Slicer's loader, is refused in one line naming the
node and the file, as `iqt upsample` refuses the file (fileio/nrrd.py), for a DTI node and for a DWI node, where it
had changed every tensor's size or every gradient's direction unsaid."""

from __future__ import annotations

import numpy as np
import pytest

from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.dmri.phantom import make_phantom
from ImageQualityTransferLib.fileio.nrrd import direction_rotation

from helpers import rot

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")
nrrd = pytest.importorskip("nrrd")

from ImageQualityTransferLib.slicer import mrml, processing  # noqa: E402

LPS = np.diag([-1.0, -1.0, 1.0])
REFUSED = "is not a rotation (its vectors must be unit length and at right angles)"
SHEAR = np.array([[1, 0.2, 0], [0, 1, 0], [0, 0, 1.0]])


def slicer_style_nrrd(path, vol, mf_lps):
    """`vol` written as a DTI NRRD in LPS space with measurement frame `mf_lps` (its components expressed in it), kinds
    '3D-symmetric-matrix space space space'."""
    d_lps = tensors.rotate(tensors.rotate(vol.data.astype(np.float64), direction_rotation(vol.affine)), LPS)
    d_file = tensors.rotate(d_lps, np.linalg.inv(mf_lps))
    hdr = {"type": "float", "dimension": 4, "space": "left-posterior-superior",
           "kinds": ["3D-symmetric-matrix", "space", "space", "space"],
           "space directions": np.vstack([np.full(3, np.nan), (LPS @ vol.affine[:3, :3]).T]),
           "space origin": LPS @ vol.affine[:3, 3], "measurement frame": np.asarray(mf_lps).T, "encoding": "gzip"}
    nrrd.write(str(path), np.moveaxis(tensors.to_order(d_file, "fsl"), -1, 0).astype(np.float32), hdr, index_order="F")
    return path


def added_data(scene, path, kind="vtkMRMLDiffusionTensorVolumeNode"):
    """The node Slicer's Add Data (the volumes logic) makes from `path`, its storage node naming the file."""
    if not hasattr(slicer, "vtkSlicerVolumesLogic"):
        pytest.skip("vtkSlicerVolumesLogic is not in this MRML build")
    logic = slicer.vtkSlicerVolumesLogic()
    logic.SetMRMLScene(scene)
    node = logic.AddArchetypeVolume(str(path), path.stem)
    assert node is not None and node.IsA(kind) and node.GetStorageNode().GetFileName() == str(path)
    return node


@pytest.mark.slow
def test_a_dti_node_whose_measurement_frame_is_not_a_rotation_is_refused(tmp_path, sagittal_subject):
    full = sagittal_subject.tensor
    shift = np.eye(4)
    shift[2, 3] = 20
    vol = full.replace(data=np.ascontiguousarray(full.data[:, :, 20:28]), affine=full.affine @ shift)  # 8 slices
    scene = slicer.vtkMRMLScene()
    mf = rot(20, -35, 50)
    got = mrml.tensor_volume_from_node(added_data(scene, slicer_style_nrrd(tmp_path / "dti.nrrd", vol, mf)))
    # Slicer reverses the last voxel axis of this left-handed grid: compare the tensors in RAS at each voxel centre
    assert np.allclose(got.affine[:3, :3] @ np.diag([1, 1, -1]), vol.affine[:3, :3])
    ras = tensors.rotate(got.data.astype(np.float64), direction_rotation(got.affine))[:, :, ::-1]
    want = tensors.rotate(vol.data.astype(np.float64), direction_rotation(vol.affine))
    np.testing.assert_allclose(ras, want, rtol=0, atol=1e-7)  # float32 components of up to 3e-3 mm^2/s
    for name, skew in (("scaled", 1.5 * np.eye(3)), ("sheared", SHEAR)):
        path = slicer_style_nrrd(tmp_path / f"{name}.nrrd", vol, mf @ skew)
        node = added_data(scene, path)
        with pytest.raises(IQTError) as refused:
            processing.run_on_nodes(scene, node, "cubic", 2)
        said = str(refused.value)
        assert said.startswith(f"node '{name}': the measurement frame of {path}") and REFUSED in said
        assert "fix the header's 'measurement frame' line" in said and "\n" not in said
    assert scene.GetNodesByClass("vtkMRMLDiffusionTensorVolumeNode").GetNumberOfItems() == 3  # nothing added


def test_a_dwi_node_whose_measurement_frame_is_not_a_rotation_is_refused(tmp_path):
    dwi = make_phantom(shape=(12, 14, 10), voxel_mm=4.0, n_dirs=12)
    r_lps = LPS @ direction_rotation(dwi.affine)
    scene = slicer.vtkMRMLScene()
    for name, mf in (("right", r_lps), ("sheared", r_lps @ SHEAR)):
        hdr = {"type": "float", "dimension": 4, "space": "left-posterior-superior",
               "kinds": ["domain", "domain", "domain", "list"],
               "space directions": np.vstack([(LPS @ dwi.affine[:3, :3]).T, np.full(3, np.nan)]),
               "space origin": LPS @ dwi.affine[:3, 3], "measurement frame": mf.T, "modality": "DWMRI",
               "DWMRI_b-value": f"{max(dwi.bvals):g}"}
        for i, g in enumerate(np.asarray(dwi.bvecs) * np.sqrt(np.asarray(dwi.bvals) / max(dwi.bvals))[:, None]):
            hdr[f"DWMRI_gradient_{i:04d}"] = " ".join(f"{x:.8f}" for x in g)  # in the voxel axes, as MF = R says
        path = tmp_path / f"{name}.nrrd"
        nrrd.write(str(path), np.asarray(dwi.data, np.float32), hdr, index_order="F")
        node = added_data(scene, path, "vtkMRMLDiffusionWeightedVolumeNode")
        if name == "right":
            got = processing.dwi_volume_from_node(node)
            dw = np.asarray(dwi.bvals) > 0
            assert np.allclose(np.abs(np.sum(got.bvecs[dw] * np.asarray(dwi.bvecs)[dw], axis=1)), 1, atol=1e-5)
            continue
        with pytest.raises(IQTError) as refused:
            processing.dwi_volume_from_node(node)
        assert str(refused.value).startswith(f"node '{name}': the measurement frame of {path}")
        assert REFUSED in str(refused.value)
