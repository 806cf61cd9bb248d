"""A DTI node read from a file whose slices have a gap (a NRRD's thicknesses, a NIfTI's BIDS sidecar) runs with that
said in the run's notes, shown with the result, as the command line says it (fileio/slices.py; a thick-slice audit:
nothing was said); a file without a gap notes nothing of it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.volume import Volume

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")

from ImageQualityTransferLib.slicer import mrml, processing  # noqa: E402

FIELD = np.broadcast_to(tensors.from_matrix(np.diag([1.2e-3, 0.5e-3, 0.4e-3])), (6, 7, 5, 6)).astype(np.float32)


def _read(scene, path, storage_class, node_class=None):
    node = (node_class or slicer.vtkMRMLDiffusionTensorVolumeNode)()
    scene.AddNode(node)
    storage = storage_class()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    node.SetAndObserveStorageNodeID(storage.GetID())
    return node


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
@pytest.mark.parametrize("gap", [True, False])
def test_a_file_s_slice_gap_is_one_of_the_run_s_notes(tmp_path, suffix, gap):
    path = tmp_path / f"lr{suffix}"
    fileio.save_tensor(Volume(FIELD, np.diag([2.0, 2.0, 6.0, 1.0]), "tensor"), path)
    thickness = 4.5 if gap else 6
    if suffix == ".nrrd":
        head, data = path.read_bytes().split(b"\n\n", 1)
        path.write_bytes(head + f"\nthicknesses: NaN NaN NaN {thickness}\n\n".encode() + data)
        storage = slicer.vtkMRMLNRRDStorageNode
    else:
        (tmp_path / "lr.json").write_text(json.dumps({"SliceThickness": thickness, "SpacingBetweenSlices": 6}))
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode
    scene = slicer.vtkMRMLScene()
    node = _read(scene, path, storage)
    out = processing.run_on_nodes(scene, node, "cubic", (1, 1, 2))["tensor"]
    notes = out.GetAttribute(mrml.NOTES_ATTRIBUTE) or ""
    if gap:
        assert notes.count("contiguous slices") == 1, notes
        assert "4.5 mm thick 6 mm apart along voxel axis k" in notes and "--" not in notes, notes
    else:
        assert "contiguous" not in notes, notes


@pytest.mark.parametrize("thickness", [3, 4])
def test_a_dwi_node_s_file_sidecar_gap_is_one_of_the_run_s_notes(tmp_path, thickness):
    """A DWI node read from a NRRD with a BIDS sidecar beside it (dwi.json: 3 mm slices 4 mm apart) and fitted by the
    module notes the gap, as `iqt fit` of the file keeps it and a DTI node's file says it; its DWI path had read
    nothing. Contiguous slices (4 mm) note nothing."""
    from helpers import dwi_node

    from ImageQualityTransferLib.dmri.phantom import make_phantom

    scene = slicer.vtkMRMLScene()
    writer = slicer.vtkMRMLNRRDStorageNode()
    scene.AddNode(writer)
    writer.SetFileName(str(tmp_path / "dwi.nrrd"))
    assert writer.WriteData(dwi_node(scene, make_phantom((12, 12, 12), 4.0, 12, seed=3))) == 1
    (tmp_path / "dwi.json").write_text(json.dumps({"SliceThickness": thickness, "SpacingBetweenSlices": 4}))
    node = _read(scene, tmp_path / "dwi.nrrd", slicer.vtkMRMLNRRDStorageNode, slicer.vtkMRMLDiffusionWeightedVolumeNode)
    out = processing.run_on_nodes(scene, node, "cubic", (1, 1, 2))["tensor"]
    notes = out.GetAttribute(mrml.NOTES_ATTRIBUTE) or ""
    if thickness < 4:
        assert notes.count("contiguous slices") == 1, notes
        assert "3 mm thick 4 mm apart along voxel axis k" in notes and "dwi.json" in notes, notes
    else:
        assert "contiguous" not in notes, notes
