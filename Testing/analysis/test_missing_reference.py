"""Voxels where the reference holds no tensor (zero: outside the mask it was fitted in; only a fit's floor; or NaN in
every element, which the file readers take as zero) are left out of every figure and counted, not scored against a
truth of zero, by `iqt evaluate` and `iqt benchmark` alike; `iqt evaluate` says how many in one warning line and
refuses a mask that lies mostly outside the reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.analysis import evaluation
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.core.volume import Volume

AFFINE = np.diag([-1.5, 1.5, 1.5, 1.0])


def _brain(r=2):
    lr = np.zeros((10, 10, 10), bool)
    lr[1:9, 1:9, 1:9] = True
    hr = lr.repeat(r, 0).repeat(r, 1).repeat(r, 2)
    truth = np.zeros(hr.shape + (6,))
    rng = np.random.default_rng(0)
    lam = rng.uniform(0.3e-3, 1.5e-3, size=hr.shape + (3,))
    truth[..., 0], truth[..., 2], truth[..., 5] = lam[..., 0], lam[..., 1], lam[..., 2]
    truth[~hr] = 0
    return lr, hr, truth


def test_zero_and_all_nan_reference_voxels_are_left_out_and_counted():
    lr, hr, truth = _brain()
    pred = truth + 1e-5
    interior = evaluation.regions(hr, lr, 2)["interior"]
    holes = np.zeros(hr.shape, bool)
    holes[8:12, 8:12, 8:12] = True  # a hole in the brain the reference was fitted in (the ventricles' in-slice holes)
    nan = np.zeros(hr.shape, bool)
    nan[6, 6:10, 6:10] = True  # failed fits written as NaN
    assert (holes & interior).any() and (nan & interior).any()
    cut = truth.copy()
    cut[holes] = 0
    cut[nan] = np.nan
    v = evaluation.evaluation_voxels(cut, hr)
    assert not v[holes].any() and not v[nan].any()
    assert v.sum() == hr.sum() - holes.sum() - nan.sum()
    res = evaluation.evaluate(np.where(nan[..., None], 0, pred), cut, hr, lr, 2)
    # the prediction is off by 1e-5 everywhere: exactly 1.0 where scored against a reference, not the truth of zero
    assert res["interior"]["dt_rmse"] == pytest.approx(1.0)
    assert res["exterior"]["dt_rmse"] == pytest.approx(1.0)
    assert res["interior"]["n_no_reference"] + res["exterior"]["n_no_reference"] == holes.sum() + nan.sum()
    assert res["interior"]["n_implausible"] == 0 and res["exterior"]["n_implausible"] == 0
    # the same voxels read from a file: all-NaN voxels come back as zero and are left out alike
    zeroed = np.where(nan[..., None], 0, cut)
    again = evaluation.evaluate(pred, zeroed, hr, lr, 2)
    assert again["interior"]["dt_rmse"] == pytest.approx(1.0)
    assert again["interior"]["n_no_reference"] == res["interior"]["n_no_reference"]


def _files(tmp_path, truth, hr, pred):
    fileio.save_tensor(Volume(truth.astype(np.float32), AFFINE, "tensor"), tmp_path / "truth.nii.gz")
    fileio.save_tensor(Volume(pred.astype(np.float32), AFFINE, "tensor"), tmp_path / "pred.nii.gz")
    fileio.save_mask(Volume(hr, AFFINE, "mask"), tmp_path / "mask.nii.gz")
    return ("evaluate", "--pred", tmp_path / "pred.nii.gz", "--truth", tmp_path / "truth.nii.gz", "--mask",
            tmp_path / "mask.nii.gz", "--factor", "2")


def test_evaluate_says_how_many_mask_voxels_have_no_reference(capsys, tmp_path):
    _, hr, truth = _brain()
    pred = truth + 1e-5
    cut = truth.copy()
    cut[8:12, 8:12, 8:12] = 0  # fitted in a mask with a hole
    cut[6, 6:10, 6:10] = np.nan
    args = _files(tmp_path, cut, hr, pred)
    code = cli.main([str(a) for a in (*args, "--json", tmp_path / "m.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 2 and all("truth.nii.gz: " in line for line in lines), err  # one warning, the readers' NaN
    # warning folded into it, said over two lines (methods/base.py warning_lines)
    assert "80 of the mask's" in lines[0] and "hold no reference tensor" in lines[0], lines[0]
    assert "interior: DT-RMSE 1.000" in out and "exterior: DT-RMSE 1.000" in out, out
    got = json.loads((tmp_path / "m.json").read_text())
    assert got["interior"]["n_no_reference"] + got["exterior"]["n_no_reference"] == 80


def test_a_share_below_one_percent_is_not_printed_as_zero(capsys, tmp_path):
    """1 of 4,096 voxels: "(0.024 %)", where it read "(0.0 %)" (a display audit: 21 of 47,669)."""
    _, hr, truth = _brain()
    cut = truth.copy()
    cut[8, 8, 8] = 0
    code = cli.main([str(a) for a in _files(tmp_path, cut, hr, truth + 1e-5)])
    err = capsys.readouterr().err
    assert code == 0 and "1 of the mask's 4096 voxels (0.024 %)" in err, err


def test_evaluate_refuses_a_mask_mostly_outside_the_reference(capsys, tmp_path):
    _, hr, truth = _brain()
    small = truth.copy()
    small[:, :13] = 0  # the reference fitted in a far smaller mask (11 of the brain's 16 planes missing)
    args = _files(tmp_path, small, hr, truth + 1e-5)
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("iqt: error: "), err
    assert "hold no reference tensor" in lines[0] and "mostly outside" in lines[0], lines[0]
    assert "DT-RMSE" not in out


def test_a_reference_in_another_unit_gets_the_refusal_alone(capsys, tmp_path):
    """A reference ×1e3 with holes in it: the units refusal, not first a warning counting the holes (audit, stop 57)."""
    _, hr, truth = _brain()
    cut = truth.copy()
    cut[8:12, 8:12, 8:12] = 0
    args = _files(tmp_path, cut * 1e3, hr, truth + 1e-5)
    code = cli.main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("iqt: error: "), err
    assert "hold no reference tensor" not in err, err


@pytest.mark.parametrize("whole", [True, False], ids=["whole-field", "masked"])
def test_a_reference_in_m2s_is_refused_for_its_unit_not_as_a_floor(capsys, tmp_path, whole):
    """A reference in m^2/s holds tensors below tensors.NEGLIGIBLE everywhere, which the rule for a fit's floor reads as
    no reference: its unit's refusal comes first, not "the mask is mostly outside the reference"."""
    _, hr, truth = _brain()
    if whole:  # fitted over the whole field of view, as without a mask
        truth = np.where(hr[..., None], truth, np.roll(truth, 1, axis=0) + 1e-4)
    code = cli.main([str(a) for a in _files(tmp_path, truth * 1e-6, hr, truth + 1e-5)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "multiply them by 1e6" in lines[0], err
    assert "mostly outside" not in err, err


def test_a_whole_field_reference_in_m2s_mostly_air_is_told_its_unit(capsys, tmp_path):
    """A whole-field fit whose air the scanner zeroed holds the fit's isotropic floor (1e-9 mm^2/s) there: in m^2/s
    with an all-ones mask, 70 % of it floor, the floor had read as the typical MD and the line said "multiply them by
    1e12"; 1e6 is right, as with the brain mask."""
    _, hr, truth = _brain()
    ball = np.sum((np.indices(hr.shape) - 9.5) ** 2, axis=0) < 8.5 ** 2
    brain = hr & ball
    pred = np.where(brain[..., None], truth + 1e-5, 0)  # kept to the brain, as iqt upsample writes it
    truth[~brain] = [1e-9, 0, 1e-9, 0, 0, 1e-9]
    everywhere = np.ones(hr.shape, bool)
    code = cli.main([str(a) for a in _files(tmp_path, truth * 1e-6, everywhere, pred)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "multiply them by 1e6 to get mm^2/s" in lines[0], err


def test_a_reference_with_md_at_or_below_zero_is_left_out_as_implausible(capsys, tmp_path):
    """An OLS reference keeps the failed voxels a WLS fit clips to its floor (left out as no reference) with negative
    eigenvalues, MD down to -0.66e-3 mm^2/s, yet within the plausible range: no tissue has MD <= 0, so they are left
    out as well, counted in n_implausible and said in one line, where they had been scored."""
    _, hr, truth = _brain()
    pred = truth + 1e-5
    ols = truth.copy()
    failed = np.zeros(hr.shape, bool)
    failed[4:6, 4:6, 4:6] = failed[9, 9, 9:11] = True  # 8 + 2 voxels
    ols[failed] = [-0.6e-3, 0, -0.5e-3, 0, 0, 0.2e-3]  # eigenvalues in [-1e-3, 5e-3], MD -0.3e-3
    ols[failed & (np.indices(hr.shape)[0] == 9)] = [-0.2e-3, 0, 0.1e-3, 0, 0, 0.1e-3]  # MD 0: none either
    code = cli.main([str(a) for a in (*_files(tmp_path, ols, hr, pred), "--json", tmp_path / "m.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "10 of the mask's" in lines[0] and "MD <= 0" in lines[0], err
    assert "n_implausible" in lines[0], lines[0]
    got = json.loads((tmp_path / "m.json").read_text())
    assert got["interior"]["n_implausible"] + got["exterior"]["n_implausible"] == 10, got
    assert got["interior"]["n_voxels"] + got["exterior"]["n_voxels"] == int(hr.sum()) - 10, got
    assert "interior: DT-RMSE 1.000" in out and "exterior: DT-RMSE 1.000" in out, out


def test_a_mask_off_the_reference_grid_is_named_against_the_reference(capsys, tmp_path):
    """evaluate has no input: its mask refusal named "the input's grid" (audit, stop 57)."""
    lr, hr, truth = _brain()
    args = list(_files(tmp_path, truth, hr, truth + 1e-5))
    fileio.save_mask(Volume(lr, AFFINE, "mask"), tmp_path / "lrmask.nii.gz")
    args[args.index(tmp_path / "mask.nii.gz")] = tmp_path / "lrmask.nii.gz"
    code = cli.main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and "the reference's (high-res) grid" in err and "input" not in err, err


def test_a_fits_floor_in_its_own_mask_is_named_as_such(capsys, tmp_path):
    """The README's own pipeline (iqt fit's reference, its --mask-out) warned that 21 voxels lay "outside the mask the
    reference was fitted in": 20 held the fit's floor, 5e-10 mm^2/s where the b0 is 0 (a first-contact audit)."""
    _, hr, truth = _brain()
    ball = np.sum((np.indices(hr.shape) - 9.5) ** 2, axis=0) < 7.5 ** 2  # a brain's edge, not the field's
    truth[~ball] = 0
    floor = truth.copy()
    floor[8, 8, 8:11] = [5e-10, 0, 5e-10, 0, 0, 5e-10]
    floor[9, 9, 9] = 0
    code = cli.main([str(a) for a in _files(tmp_path, floor, ball, truth + 1e-5)])
    err = capsys.readouterr().err
    assert code == 0 and f"4 of the mask's {int(ball.sum())} voxels" in err, err
    assert "3 of those voxels hold only tensors below 1e-05 mm^2/s, read as none" in err, err
    assert "such tensors may be a fit's floor" in err and "the others are zero" in err, err


def test_evaluate_and_benchmark_leave_out_a_fits_floor_alike(capsys, tmp_path):
    """One rule for both (docs/accuracy.md, Measured on the dev subjects): a reference holding only a fit's floor (every
    element below tensors.NEGLIGIBLE, where a voxel has no diffusion signal) is no truth, so `iqt benchmark` leaves it
    out and counts it in n_no_reference as `iqt evaluate` does; it had scored the prediction against it (3 mm ortho,
    cubic: exterior 20.465 against evaluate's 20.399)."""
    import warnings

    from ImageQualityTransferLib.analysis import benchmark
    from ImageQualityTransferLib.dmri.phantom import make_phantom
    from ImageQualityTransferLib.dmri.subject import Subject, make_case

    case = make_case(Subject.from_dwi("p", make_phantom(shape=(24, 28, 22), voxel_mm=6.0, n_dirs=12)), 2)
    regions = evaluation.regions(case.hr_mask, case.lr_mask.data, case.factor)
    floored = np.zeros(case.hr_mask.shape, bool)
    for name, region in regions.items():  # a few voxels of each region without signal
        floored[tuple(np.argwhere(region)[::29][:5].T)] = True
    case.truth[floored] = [5e-10, 0, 5e-10, 0, 0, 5e-10]
    kept = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = benchmark.score_case(case, ["cubic"], keep=kept)[0]
    affine = case.hr_affine
    fileio.save_tensor(Volume(case.truth.astype(np.float32), affine, "tensor"), tmp_path / "truth.nii.gz")
    fileio.save_tensor(kept["cubic"].tensor, tmp_path / "pred.nii.gz")
    fileio.save_mask(Volume(case.hr_mask, affine, "mask"), tmp_path / "mask.nii.gz")
    code = cli.main([str(a) for a in ("evaluate", "--pred", tmp_path / "pred.nii.gz", "--truth", tmp_path / "truth.nii.gz",
                                      "--mask", tmp_path / "mask.nii.gz", "--factor", "2", "--json", tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert code == 0, err
    got = json.loads((tmp_path / "m.json").read_text())
    for name, region in regions.items():
        n = int((floored & region).sum())
        assert n and row[name]["n_no_reference"] == got[name]["n_no_reference"] == n, name
        assert row[name]["n_voxels"] == got[name]["n_voxels"], name
        assert row[name]["dt_rmse"] == pytest.approx(got[name]["dt_rmse"], rel=1e-4), name
        assert row[name]["md_rmse"] == pytest.approx(got[name]["md_rmse"], rel=1e-4), name


def test_a_failed_fits_floor_is_named_as_a_failed_fit(capsys, tmp_path):
    """The WLS fit clips the eigenvalues of a voxel whose diffusion-weighted signal is at or above its b0 to 1e-9 mm^2/s,
    a floor tensor read as no reference: on the real subjects most such brain voxels hold signal (the Trio's interior
    ones a b0 of 113-171 against diffusion-weighted signal averaging 175), so the warning names a failed fit beside "no
    diffusion signal"."""
    from ImageQualityTransferLib.dmri.dti import fit_dti

    _, hr, truth = _brain()
    bvecs = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.7071, 0.7071, 0], [0.7071, 0, 0.7071],
                      [0, 0.7071, 0.7071]])
    bvals = np.array([0.0] + [1000.0] * 6)
    signal = np.exp(-bvals * 0.7e-3) * 1000.0
    dwi = np.where(hr[..., None], signal, 0.0)
    failed = np.zeros(hr.shape, bool)
    failed[9, 9, 8:11] = True  # the diffusion-weighted signal above the b0 (motion, a b0 dropped out)
    dwi[failed] = [1000.0] + [1150.0] * 6
    fitted = fit_dti(Volume(dwi.astype(np.float32), AFFINE, "dwi", bvals=bvals, bvecs=bvecs), hr, say_shells=False).data
    assert np.all(np.abs(fitted[failed]) <= 1e-5) and np.any(fitted[failed] != 0, axis=-1).all()  # the floor
    code = cli.main([str(a) for a in _files(tmp_path, fitted, hr, fitted + 1e-5)])
    err = capsys.readouterr().err
    assert code == 0 and "3 of the mask's" in err and "read as none" in err and "such tensors may be a fit's floor" in err
    assert "a fit's floor where a voxel's fit failed (diffusion-weighted signal at or above the b0)" in err, err
