"""`iqt evaluate` reads a prediction or reference stored as integers through the input's step check
(core/tensor_checks.py integer_cause, methods/inputs.py warn_integer_step): a coarse step is said, with what it does
to the scores, where it had been scored as if exact; a plain cast that truncated every value to 0 is named, where the
reference's had been told its mask was another fit's; tensors in um^2/ms cast to whole numbers are told their unit
and the cast."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from helpers import changed_copy, masked_phantom_fit, run_cli


@pytest.fixture(scope="module")
def fit(tmp_path_factory):
    """(float32 reference, a prediction changed from it, the fit's mask) of one masked phantom fit."""
    d = tmp_path_factory.mktemp("int_eval")
    masked_phantom_fit(d, "truth.nii.gz")
    changed_copy(d / "truth.nii.gz", d / "pred.nii.gz", d / "mask.nii.gz")  # the reference or its copy is refused
    return d


def _stored(src, dst, values, dtype, slope=None):
    """`src`'s tensors as `values(x)` stored as `dtype`: a plain cast where `slope` is None, else at that scl_slope."""
    img = nib.load(src)
    x = img.get_fdata()
    with np.errstate(invalid="ignore"):
        raw = values(x) if slope is None else np.clip(np.round(values(x) / slope), -32768, 32767)
        out = nib.Nifti1Image(raw.astype(dtype), img.affine, img.header)
    out.set_data_dtype(dtype)
    out.header.set_slope_inter(1.0 if slope is None else slope, 0.0)
    nib.save(out, dst)
    return dst


def _evaluate(capsys, d, pred, truth):
    return run_cli(capsys, "evaluate", "--pred", pred, "--truth", truth, "--mask", d / "mask.nii.gz")


@pytest.mark.parametrize("which", ["prediction", "reference"])
def test_a_step_a_brain_rounds_to_is_said_with_what_it_does_to_the_scores(fit, tmp_path, capsys, which):
    coarse = _stored(fit / ("pred.nii.gz" if which == "prediction" else "truth.nii.gz"), tmp_path / "i.nii.gz",
                     lambda x: x, np.int16, 5e-4)
    pred, truth = (coarse, fit / "truth.nii.gz") if which == "prediction" else (fit / "pred.nii.gz", coarse)
    code, _, err = _evaluate(capsys, fit, pred, truth)
    assert code == 0, err
    said = [ln for ln in err.splitlines() if "stores integers" in ln or "stored as integers" in ln]
    assert len(said) == 1 and str(coarse) in said[0], err
    assert "0.0005" in said[0] and "scoring takes that rounding for" in said[0], said


def test_a_scaled_integer_file_is_scored_without_a_line(fit, tmp_path, capsys):
    for dtype in (np.int16, np.uint16):
        img = nib.load(fit / "pred.nii.gz")
        scaled = nib.Nifti1Image(np.asarray(img.dataobj, np.float32), img.affine, img.header)
        scaled.set_data_dtype(dtype)  # nibabel's scl_slope over the whole range
        nib.save(scaled, tmp_path / "p.nii.gz")
        code, _, err = _evaluate(capsys, fit, tmp_path / "p.nii.gz", fit / "truth.nii.gz")
        assert code == 0 and "integer" not in err, err


@pytest.mark.parametrize("which", ["prediction", "reference"])
def test_a_plain_cast_that_left_every_value_zero_is_named(fit, tmp_path, capsys, which):
    src = fit / ("pred.nii.gz" if which == "prediction" else "truth.nii.gz")
    cast = _stored(src, tmp_path / "c.nii.gz", lambda x: x, np.int16)
    pred, truth = (cast, fit / "truth.nii.gz") if which == "prediction" else (fit / "pred.nii.gz", cast)
    code, _, err = _evaluate(capsys, fit, pred, truth)
    lines = [ln for ln in err.splitlines() if "warning" not in ln]
    assert code == 2 and len(lines) == 1, err
    assert f"the {which} file stores integers without a scl_slope and every voxel is 0" in lines[0], err
    assert "save the tensors as float32, or store them scaled" in lines[0], err


def test_um2_per_ms_cast_to_whole_numbers_is_told_its_unit(fit, tmp_path, capsys):
    cast = _stored(fit / "pred.nii.gz", tmp_path / "u.nii.gz", lambda x: np.round(x * 1e3), np.int16)
    code, _, err = _evaluate(capsys, fit, cast, fit / "truth.nii.gz")
    lines = [ln for ln in err.splitlines() if "warning" not in ln]
    assert code == 2 and len(lines) == 1, err
    assert "um^2/ms cast to whole numbers" in lines[0] and "multiply them by 1e-3" in lines[0], err
