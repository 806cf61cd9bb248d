"""A 2D NIfTI, and one with an axis of length 0, in every slot an image is read from: one line saying the shape is no
tensor volume / mask / DWI (the slot's reader's own words), exit 2, never an internal error. The header checks every
read makes (fileio/nifti.py load_nifti) had indexed the third axis of a 2D image first ("IndexError: index 2 is out of
bounds"), and a zero-length axis reached the tensor reader as a 1-D array."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from helpers import bundle_volume, refused_line
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.volume import Volume

TENSOR = "is not a diffusion tensor volume"
MASK = "is not a 3D mask"
DWI = "is not a diffusion-weighted series"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("flat")
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    fileio.save_tensor(bundle_volume(shape=(8, 8, 8)), d / "t.nii.gz")
    fileio.save_tensor(bundle_volume(shape=(8, 8, 8)), d / "t_copy.nii.gz")  # a prediction equal to it, not its file
    fileio.save_mask(Volume(np.ones((8, 8, 8), bool), affine, "mask"), d / "m.nii.gz")
    (d / "dwi").mkdir()
    for name, shape in (("flat", (8, 8)), ("dwi/dwi", (8, 8)), ("empty5", (8, 8, 0, 1, 6)), ("empty3", (8, 8, 0))):
        img = nib.Nifti1Image(np.ones(shape, np.float32), affine)
        img.set_qform(affine, code=1)  # both codes set, as dcm2niix writes them: the qform/sform check reads the grid
        nib.save(img, d / f"{name}.nii.gz")
    return d


SLOTS = {
    "upsample": ("upsample {flat} --method cubic -o {o}.nii.gz", TENSOR),
    "upsample-mask": ("upsample {t} --mask {flat} --method cubic -o {o}.nii.gz", MASK),
    "track": ("track {flat} --seeds {m} -o {o}.trk", TENSOR),
    "track-seeds": ("track {t} --seeds {flat} -o {o}.trk", MASK),
    "fit": ("fit {dwi} -o {o}.nii.gz", DWI),
    "evaluate-mask": ("evaluate --pred {tc} --truth {t} --mask {flat}", MASK),
    "view": ("view {flat}", TENSOR),
    "report": ("report --input {flat} -o {o}.html", TENSOR),
    "propagate": ("propagate {flat} --voxel-size 1 -o {o}", TENSOR),  # the input read before the model
}


@pytest.mark.parametrize("argv, said", SLOTS.values(), ids=SLOTS.keys())
def test_a_2d_image_is_refused_by_its_slot_s_reader(files, tmp_path, capsys, argv, said):
    args = argv.format(flat=files / "flat.nii.gz", t=files / "t.nii.gz", m=files / "m.nii.gz",
                       dwi=files / "dwi" / "dwi.nii.gz", o=tmp_path / "out", tc=files / "t_copy.nii.gz").split()
    refused_line(capsys, args, "shape (8, 8) " + said)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, name", [("upsample {f} --method cubic -o {o}.nii.gz", "empty5"),
                                        ("upsample {t} --mask {f} --method cubic -o {o}.nii.gz", "empty3")],
                         ids=["tensor", "mask"])
def test_an_image_with_an_empty_axis_is_refused_saying_its_shape(files, tmp_path, capsys, argv, name):
    """The tensor volume had ended in an internal error, the mask been said as 'shape (0,) is not a 3D mask'."""
    shape = "(8, 8, 0, 1, 6)" if name == "empty5" else "(8, 8, 0)"
    args = argv.format(f=files / f"{name}.nii.gz", t=files / "t.nii.gz", o=tmp_path / "out").split()
    refused_line(capsys, args, f"{name}.nii.gz: shape {shape} holds no voxels (axis 2 is 0 long")
    assert list(tmp_path.iterdir()) == []
