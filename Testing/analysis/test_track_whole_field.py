"""`iqt track` on tensors fitted over the whole field of view (no brain mask) and no --mask: streamlines are seeded and
carried through the scalp and the background's noise fits, which it says in one warning; with --mask it is quiet."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.dmri import degrade as deg
from ImageQualityTransferLib.dmri.randomise import added_noise

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


def test_an_upsampled_unmasked_fit_is_said_and_an_upsampled_masked_one_is_not(unmasked, axial_subject, capsys):
    """iqt upsample keeps its output of a whole-field fit to the brain and the tissue-like fits around it, no longer a
    whole field, and records so in its header: tracked without --mask it is said (a review). Its output of the masked
    own-style fit at SNR 5 stays quiet: the brain told from its MD had called 15-47 % of a masked fit's upsampled voxels
    outside it and warned 'fitted without a brain mask' (a review: real scans at SNR 5-10, and the Trio's clean fit)."""
    d = unmasked
    noisy = deg.degrade(axial_subject.dwi, axial_subject.mask.data, 2, style="own", noise=added_noise(5, 0))
    fileio.save_tensor(noisy.tensor, d / "noisy.nii.gz")  # as iqt degrade --snr 5 --seed 0 writes it
    for name in ("lr", "noisy"):
        assert main(["upsample", str(d / f"{name}.nii.gz"), "--method", "cubic", "-o", str(d / f"up_{name}.nii.gz")]) == 0
    up = fileio.load_tensor(d / "up_lr.nii.gz")
    one = np.zeros(up.shape3, np.uint8)
    one[tuple(s // 2 for s in up.shape3)] = 1
    nib.save(nib.Nifti1Image(one, up.affine), d / "seeds_hr.nii.gz")
    capsys.readouterr()
    for name, said in (("up_lr", True), ("up_noisy", False)):
        cmd = ["track", str(d / f"{name}.nii.gz"), "--seeds", str(d / "seeds_hr.nii.gz"), "-o", str(d / f"{name}.trk")]
        assert main(cmd) == 0
        err = capsys.readouterr().err
        if said:  # told from the header's record, not from the MD
            assert err.count("reach beyond the brain") == 1 and "as the file's header records" in err, err
        else:
            assert "beyond the brain" not in err and "without a brain mask" not in err, err


def test_track_judges_an_upsampled_file_s_tensors_inside_its_mask(tmp_path, capsys):
    """iqt track checked the tensors before reading --mask, so its warning of an upsampled file's MD <= 0 tensors
    outside the brain advised 'give --mask' and said it again when --mask was given (a review): they are judged
    inside the mask, as iqt upsample judges its input."""
    from ImageQualityTransferLib.core.volume import Volume

    t = np.zeros((24, 24, 24, 6), np.float32)
    t[4:20, 4:20, 4:20] = [1.7e-3, 0, 0, 0.3e-3, 0, 0.3e-3]
    t[2:4, 4:20, 4:8] = [-1.7e-3, 0, 0, -0.3e-3, 0, -0.3e-3]  # 3 % of the filled voxels, all beyond the brain
    fileio.save_tensor(Volume(t, np.eye(4), "tensor", meta={"method": "cubic", "factor": 2}), tmp_path / "up.nii.gz")
    brain = np.zeros(t.shape[:3], np.uint8)
    brain[4:20, 4:20, 4:20] = 1
    nib.save(nib.Nifti1Image(brain, np.eye(4)), tmp_path / "brain.nii.gz")
    seeds = np.zeros_like(brain)
    seeds[12, 12, 12] = 1
    nib.save(nib.Nifti1Image(seeds, np.eye(4)), tmp_path / "seeds.nii.gz")
    cmd = ["track", str(tmp_path / "up.nii.gz"), "--seeds", str(tmp_path / "seeds.nii.gz"), "-o", str(tmp_path / "t.trk")]
    assert main(cmd) == 0
    err = capsys.readouterr().err
    assert err.count("mean diffusivity at or below zero") == 1 and "give --mask" in err, err
    assert main([*cmd, "--mask", str(tmp_path / "brain.nii.gz")]) == 0
    assert "mean diffusivity" not in capsys.readouterr().err


@pytest.mark.parametrize("support", [None, "estimated"])
def test_a_learned_method_s_negative_md_inside_the_brain_is_not_blamed_on_a_missing_mask(tmp_path, capsys, support):
    """A learned method's MD <= 0 tensors inside the brain of a masked input (global-linear's noisy model: 2.0-2.7 % on
    own-style SNR-5 inputs, which hold none) had been blamed on 'an unmasked fit's scalp and background' with the advice
    'upsample again with --mask', repeated with --mask given to both commands (a review). Counted in the brain (the
    mask's, the input's, or the one estimated for an output of an unmasked fit: its header's support record), they are
    the method's own prediction, with or without --mask."""
    from ImageQualityTransferLib.core.volume import Volume

    z, y, x = np.mgrid[:24, :24, :24] - 11.5
    ball = x**2 + y**2 + z**2 < 9**2  # a masked fit's brain
    t = np.zeros((24, 24, 24, 6), np.float32)
    t[ball] = [1.7e-3, 0, 0, 0.3e-3, 0, 0.3e-3]
    t[ball & (np.abs(z) < 1) & (x**2 + y**2 < 5**2)] = [-1.7e-3, 0, 0, -0.3e-3, 0, -0.3e-3]  # 3 % of it, deep inside
    meta = {"method": "global-linear", "factor": 2, "model_name": "global-linear_x2_noisy.npz", "model_origin": "shipped",
            "support": support}
    fileio.save_tensor(Volume(t, np.eye(4), "tensor", meta=meta), tmp_path / "up.nii.gz")
    brain = ball.astype(np.uint8)
    nib.save(nib.Nifti1Image(brain, np.eye(4)), tmp_path / "brain.nii.gz")
    seeds = np.zeros_like(brain)
    seeds[12, 12, 16] = 1
    nib.save(nib.Nifti1Image(seeds, np.eye(4)), tmp_path / "seeds.nii.gz")
    cmd = ["track", str(tmp_path / "up.nii.gz"), "--seeds", str(tmp_path / "seeds.nii.gz"), "-o", str(tmp_path / "t.trk")]
    for masked in (False, True):
        assert main([*cmd, "--mask", str(tmp_path / "brain.nii.gz")] if masked else cmd) == 0
        err = capsys.readouterr().err
        lines = err.splitlines()
        said = [line for line in lines if "mean diffusivity at or below zero" in line]
        assert len(said) == 1, err
        end = next(i for i, line in enumerate(lines) if line.endswith("keeps every tensor positive definite"))
        said = ["; ".join(lines[lines.index(said[0]):end + 1])]  # over lines of whole pieces (methods/base.py warning_lines)
        assert "global-linear_x2_noisy" in said[0], err
        assert "--mask" not in said[0] and "scalp" not in said[0], said
        assert "global-linear's own prediction from a noisy input" in said[0] and "no tissue (FA 0)" in said[0], said
