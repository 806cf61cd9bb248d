"""`iqt track` on tensors fitted over the whole field of view (no brain mask) and no --mask: streamlines are seeded and
carried through the scalp and the background's noise fits, which it says in one warning; with --mask it is quiet."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps.cli import main

from helpers import low_res_case


@pytest.fixture(scope="module")
def unmasked(axial_subject, tmp_path_factory):
    d = tmp_path_factory.mktemp("whole_field")
    case = low_res_case(axial_subject, 2, "unmasked")
    fileio.save_tensor(case.lr, d / "lr.nii.gz")
    fileio.save_mask(case.lr_mask, d / "brain.nii.gz")
    seeds = np.zeros(case.lr.shape3, np.uint8)
    seeds[tuple(s // 2 for s in case.lr.shape3)] = 1  # one voxel: the warning is of the input, not of the seeds
    nib.save(nib.Nifti1Image(seeds, case.lr.affine), d / "seeds.nii.gz")
    return d


def test_tracking_a_whole_field_fit_without_a_mask_is_said(unmasked, capsys):
    d = unmasked
    cmd = ["track", str(d / "lr.nii.gz"), "--seeds", str(d / "seeds.nii.gz"), "-o", str(d / "t.trk")]
    assert main(cmd) == 0
    err = capsys.readouterr().err
    assert err.count("reach well beyond the brain") == 1 and "give --mask" in err, err
    assert main([*cmd, "--mask", str(d / "brain.nii.gz")]) == 0
    assert "beyond the brain" not in capsys.readouterr().err


def test_an_upsampled_unmasked_fit_is_said_and_a_masked_one_is_not(unmasked, capsys):
    """iqt upsample keeps its output of a whole-field fit to the brain and the tissue-like fits around it, no longer a
    whole field: tracked without --mask it had gone unsaid (a review); the same fit masked stays quiet."""
    d = unmasked
    assert main(["upsample", str(d / "lr.nii.gz"), "--method", "cubic", "-o", str(d / "up.nii.gz")]) == 0
    lr = fileio.load_tensor(d / "lr.nii.gz")
    brain = np.asarray(fileio.load_mask(d / "brain.nii.gz").data, bool)
    fileio.save_tensor(lr.replace(data=np.where(brain[..., None], lr.data, 0)), d / "masked.nii.gz")
    capsys.readouterr()
    for name, said in (("up.nii.gz", True), ("masked.nii.gz", False)):
        seeds = d / ("seeds_hr.nii.gz" if name == "up.nii.gz" else "seeds.nii.gz")
        if name == "up.nii.gz":
            up = fileio.load_tensor(d / name)
            one = np.zeros(up.shape3, np.uint8)
            one[tuple(s // 2 for s in up.shape3)] = 1
            nib.save(nib.Nifti1Image(one, up.affine), seeds)
        assert main(["track", str(d / name), "--seeds", str(seeds), "-o", str(d / f"{name}.trk")]) == 0
        err = capsys.readouterr().err
        assert ("reach well beyond the brain" in err) == said, (name, err)
