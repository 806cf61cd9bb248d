"""`iqt evaluate` prints an undefined figure as the benchmark's tables do ("–"; "no voxels" for an empty region), never
nan or inf, with null in the JSON; rounding-level angles of an exact prediction are no ranking to correlate; the
reference's noise floor carries its unit."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.analysis import evaluation
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.volume import Volume

from helpers import changed_copy, run_cli


def test_rounding_level_angles_are_no_direction_ranking():
    rng = np.random.default_rng(0)
    n = 2000
    lam = np.sort(rng.uniform(0.2e-3, 1.7e-3, size=(n, 3)), axis=1)
    rot = np.linalg.qr(rng.normal(size=(n, 3, 3)))[0]
    truth = tensors.from_matrix(rot @ (lam[:, :, None] * np.eye(3)) @ np.swapaxes(rot, 1, 2)).reshape(20, 10, 10, 6)
    pred = truth * (1 + 1e-9 * rng.standard_normal(truth.shape))  # the same tensors, but for the last bits
    voxels = np.ones(truth.shape[:3], bool)
    direction = rng.uniform(1, 20, truth.shape[:3])
    from ImageQualityTransferLib.core.direction import angular_error

    raw = angular_error(pred[evaluation.tracked(truth, voxels)], truth[evaluation.tracked(truth, voxels)])
    assert 0 < raw.max() < 1e-3  # degrees: what was ranked against the map before
    got = evaluation.direction_calibration(pred, truth, direction, voxels)
    assert np.isnan(got["direction_spearman"]) and got["direction_within_2"] == 1.0
    assert evaluation.angle_error(pred, truth, voxels) == 0.0
    # a real error is untouched
    off = truth.copy()
    off[..., 1] += 2e-4
    assert np.isfinite(evaluation.direction_calibration(off, truth, direction, voxels)["direction_spearman"])


def test_evaluate_prints_no_nan_or_inf(capsys, tmp_path, small_subject):
    dwi = small_subject / "dwi.nii.gz"
    assert run_cli(capsys, "fit", dwi, "-o", tmp_path / "hr.nii.gz", "--mask-out", tmp_path / "mask.nii.gz")[0] == 0
    truth = fileio.load_tensor(tmp_path / "hr.nii.gz")
    mask = fileio.load_mask(tmp_path / "mask.nii.gz")
    grid = truth.shape3
    fileio.save_scalar(Volume(np.full(grid, 1e-5, np.float32), truth.affine, "scalar"), tmp_path / "u.nii.gz")
    fileio.save_scalar(Volume(np.full(grid, 5.0, np.float32), truth.affine, "scalar"), tmp_path / "u_dir.nii.gz")
    # a prediction equal to the reference in the interior (a copy of it is refused): no error to set a PSNR, no
    # ranking of errors
    changed_copy(tmp_path / "hr.nii.gz", tmp_path / "pred.nii.gz", tmp_path / "mask.nii.gz")
    code, out, err = run_cli(capsys, "evaluate", "--pred", tmp_path / "pred.nii.gz", "--truth", tmp_path / "hr.nii.gz",
                          "--mask", tmp_path / "mask.nii.gz", "--dwi", dwi, "--uncertainty", tmp_path / "u.nii.gz",
                          "--direction", tmp_path / "u_dir.nii.gz", "--json", tmp_path / "same.json")
    assert code == 0, err
    assert "nan" not in out.lower() and "inf" not in out.lower(), out
    assert "PSNR – (no error)" in out and "spearman –" in out and "direction_spearman –" in out, out
    assert len(re.findall(r"noise_floor [0-9.]+ \(1e-5 mm\^2/s\)", out)) == 2 == out.count("noise_floor"), out
    got = json.loads((tmp_path / "same.json").read_text())
    assert got["interior"]["psnr"] is None and got["interior"]["spearman"] is None
    assert got["brain"]["direction_spearman"] is None and got["brain"]["direction_within_2"] == 1.0
    # a mask too small for an interior: said, not printed as nan
    tiny = np.zeros(grid, bool)
    c = np.argwhere(np.asarray(mask.data, bool)).mean(axis=0).astype(int)
    tiny[c[0] - 2:c[0] + 2, c[1] - 2:c[1] + 2, c[2] - 2:c[2] + 2] = True
    fileio.save_mask(Volume(tiny, truth.affine, "mask"), tmp_path / "tiny.nii.gz")
    changed_copy(tmp_path / "hr.nii.gz", tmp_path / "pred.nii.gz", tmp_path / "tiny.nii.gz")  # not equal in this mask
    code, out, err = run_cli(capsys, "evaluate", "--pred", tmp_path / "pred.nii.gz", "--truth", tmp_path / "hr.nii.gz",
                          "--mask", tmp_path / "tiny.nii.gz", "--uncertainty", tmp_path / "u.nii.gz", "--json",
                          tmp_path / "tiny.json")
    assert code == 0, err
    assert "nan" not in out.lower() and "inf" not in out.lower(), out
    assert "interior: no voxels" in out, out
    got = json.loads((tmp_path / "tiny.json").read_text())
    assert got["interior"]["n_voxels"] == 0 and got["interior"]["dt_rmse"] is None


def test_a_prediction_stored_in_another_voxel_order_is_scored_as_the_same(capsys, tmp_path, small_subject):
    """A prediction (and its maps) re-stored PSR, as fslreorient2std and other tools re-store files, had been refused
    as 'not the factor grid of the reference'; it is re-stored as the reference is and scores the same, --factor 1,1,3
    read along the low-res input's (the reference's) axes, as for the prediction stored as it was."""
    from ImageQualityTransferLib.core.orientation import reorient

    dwi = small_subject / "dwi.nii.gz"
    assert run_cli(capsys, "fit", dwi, "-o", tmp_path / "hr.nii.gz", "--mask-out", tmp_path / "mask.nii.gz")[0] == 0
    assert run_cli(capsys, "degrade", dwi, "--factor", "1,1,3", "-o", tmp_path / "lr.nii.gz")[0] == 0
    assert run_cli(capsys, "upsample", tmp_path / "lr.nii.gz", "--method", "biqt", "--factor", "1,1,3", "-o",
                   tmp_path / "p.nii.gz", "--uncertainty", tmp_path / "u.nii.gz")[0] == 0
    for name, kind in (("p", "tensor"), ("u", "scalar"), ("u_direction", "scalar")):
        vol = fileio.load_tensor(tmp_path / f"{name}.nii.gz") if kind == "tensor" else fileio.load_scalar(tmp_path / f"{name}.nii.gz")
        moved = reorient(vol, "PSR")
        (fileio.save_tensor if kind == "tensor" else fileio.save_scalar)(moved, tmp_path / f"psr_{name}.nii.gz")
    scores = {}
    for tag, factor in (("", "1,1,3"), ("psr_", "1,1,3")):
        code, out, err = run_cli(capsys, "evaluate", "--pred", tmp_path / f"{tag}p.nii.gz", "--truth", tmp_path / "hr.nii.gz",
                                 "--mask", tmp_path / "mask.nii.gz", "--uncertainty", tmp_path / f"{tag}u.nii.gz",
                                 "--direction", tmp_path / f"{tag}u_direction.nii.gz", "--json", tmp_path / f"{tag}s.json",
                                 "--factor", factor)
        assert code == 0, err
        scores[tag] = json.loads((tmp_path / f"{tag}s.json").read_text())
    assert "re-stored in the reference voxel order" in out
    for region in ("interior", "exterior", "brain"):
        for k, v in scores[""][region].items():
            got = scores["psr_"][region][k]
            assert got == v if v is None or isinstance(v, (str, list, dict)) else got == pytest.approx(v, rel=1e-6, abs=1e-9), \
                (region, k, v, got)
    assert scores["psr_"]["factor"] == scores[""]["factor"] == [1, 1, 3]


def test_a_dwi_of_another_position_is_refused_for_the_noise_floor(capsys, tmp_path, small_subject):
    """--dwi of another scan of the reference's shape (the 3 mm ortho scan against the yaw one's reference) printed a
    noise floor 24x too high, exit 0 (an input audit): its affine is checked as a mask's is, one line, exit 2."""
    import shutil

    import nibabel as nib

    dwi = small_subject / "dwi.nii.gz"
    assert run_cli(capsys, "fit", dwi, "-o", tmp_path / "hr.nii.gz", "--mask-out", tmp_path / "mask.nii.gz")[0] == 0
    img = nib.load(dwi)
    turned = img.affine.copy()
    turned[:3, 3] += [0.0, 12.0, 0.0]  # the same grid 12 mm further forward
    other = tmp_path / "other"
    other.mkdir()
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), turned, img.header), other / "dwi.nii.gz")
    for ext in ("bval", "bvec"):
        shutil.copy(small_subject / f"dwi.{ext}", other / f"dwi.{ext}")
    changed_copy(tmp_path / "hr.nii.gz", tmp_path / "pred.nii.gz", tmp_path / "mask.nii.gz")  # its copy is refused
    args = ("evaluate", "--pred", tmp_path / "pred.nii.gz", "--truth", tmp_path / "hr.nii.gz", "--mask",
            tmp_path / "mask.nii.gz", "--dwi")
    assert run_cli(capsys, *args, dwi)[0] == 0
    code, out, err = run_cli(capsys, *args, other / "dwi.nii.gz")
    assert code == 2 and not out and len(err.strip().splitlines()) == 1, err
    assert "another position or orientation" in err and "12 mm apart" in err, err
