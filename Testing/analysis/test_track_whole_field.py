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
    assert err.count("whole field of view") == 1 and "give --mask" in err, err
    assert main([*cmd, "--mask", str(d / "brain.nii.gz")]) == 0
    assert "whole field of view" not in capsys.readouterr().err
