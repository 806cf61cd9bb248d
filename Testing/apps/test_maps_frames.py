"""`iqt upsample --maps`: `_V1` read as its viewer reads it points along the tensor's principal direction in the world
(on a positive-determinant grid this tool's 5D output's V1 was in voxel axes, and FSLeyes, which negates x
there as dtifit's V1 needs, showed it mirrored, a median 44.6 degrees off in white matter)."""

from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.volume import Volume

C, S = np.cos(np.radians(20.0)), np.sin(np.radians(20.0))
GRIDS = {  # an oblique grid with a positive determinant (neurological storage), and the usual LAS one (negative)
    "pos": np.array([[2.0 * C, -2.0 * S, 0, -20], [2.0 * S, 2.0 * C, 0, -30], [0, 0, 2.5, -10], [0, 0, 0, 1]]),
    "las": np.array([[-2.0 * C, -2.0 * S, 0, 20], [-2.0 * S, 2.0 * C, 0, -30], [0, 0, 2.5, -10], [0, 0, 0, 1]]),
}
V1_VOXEL = np.array([0.8, 0.5, 0.33]) / np.linalg.norm([0.8, 0.5, 0.33])  # the principal direction, voxel axes


def _tensor_voxel_axes() -> np.ndarray:
    """One tensor (lower-triangular, voxel axes) whose principal vector is V1_VOXEL, off every axis and plane."""
    basis, _ = np.linalg.qr(np.column_stack([V1_VOXEL, [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    basis[:, 0] *= np.sign(basis[:, 0] @ V1_VOXEL)
    return tensors.from_matrix(basis @ np.diag([1.7e-3, 0.4e-3, 0.3e-3]) @ basis.T)


def _seen_in_world(v1: np.ndarray, affine: np.ndarray, viewer: str) -> np.ndarray:
    """V1's components as the viewer turns them to the world: FSLeyes (VectorOpts.orientFlip) and dipy read them in
    FSL's image frame, the voxel axes with x negated where the affine's determinant is positive; MRtrix (mrview,
    peaksconvert's default "xyz") reads them as scanner (RAS) coordinates."""
    if viewer in ("mrtrix", "slicer"):  # a NRRD's spatial vectors, read back in RAS (fileio/nrrd.py _vectors_in_ras)
        return v1
    rot = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    flip = np.diag([-1.0 if np.linalg.det(affine[:3, :3]) > 0 else 1.0, 1.0, 1.0])
    return v1 @ (rot @ flip).T


CASES = {  # grid, output name, --output-order, the viewer of that output
    "5d-pos": ("pos", "up.nii.gz", "nifti", "fsleyes"),
    "5d-las": ("las", "up.nii.gz", "nifti", "fsleyes"),
    "nrrd-pos": ("pos", "up.nrrd", "input", "slicer"),
    "fsl-pos": ("pos", "up.nii.gz", "fsl", "fsleyes"),
    "dipy-pos": ("pos", "up.nii.gz", "dipy", "fsleyes"),
    "mrtrix-pos": ("pos", "up.nii.gz", "mrtrix", "mrtrix"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_v1_read_as_its_viewer_reads_it_points_along_the_tensor_in_the_world(tmp_path, capsys, case):
    grid, name, order, viewer = CASES[case]
    affine = GRIDS[grid]
    field = np.broadcast_to(_tensor_voxel_axes(), (6, 7, 5, 6)).astype(np.float32)
    fileio.save_tensor(Volume(field, affine, "tensor"), tmp_path / "lr.nii.gz")  # this tool's 5D file, voxel axes
    code = cli.main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / name), "--method", "cubic", "--maps",
                     "--output-order", order])
    out, err = capsys.readouterr()
    assert code == 0, err
    if viewer == "slicer":  # beside a NRRD output V1 is a NRRD spatial vector volume, as Slicer saves one
        v1 = fileio.load_scalar(tmp_path / "up_V1.nrrd")
        img = SimpleNamespace(dataobj=v1.data, affine=v1.affine, header={"descrip": v1.meta["descrip"].encode()})
    else:
        img = nib.load(tmp_path / "up_V1.nii.gz")
    v1 = np.asarray(img.dataobj, np.float64)
    inside = np.any(v1 != 0, axis=-1)
    assert inside.mean() > 0.9
    world = _seen_in_world(v1[inside], img.affine, viewer)
    expected = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0) @ V1_VOXEL  # the tensor's, turned to the world
    np.testing.assert_allclose(np.abs(world @ expected), 1.0, atol=1e-4)
    descrip = bytes(img.header["descrip"]).split(b"\0")[0].decode()
    if viewer == "slicer":
        assert "RAS frame" in descrip and "RAS coordinates in Slicer (a spatial vector volume" in out
    elif viewer == "mrtrix":
        assert "scanner" in descrip and "scanner (RAS) coordinates" in out
    else:
        assert "FSL frame" in descrip and "FSL's image frame" in out
        assert ("x negated" in descrip) == (grid == "pos")
