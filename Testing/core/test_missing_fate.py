"""The readers' warning on tensors with NaN in every element (core.tensor_checks.nan_as_empty) ends with what becomes of
those voxels where they are read: every method's input fills them from the nearest fits (it had said interpolation
takes them as zero, against what it did: a tool-inputs audit); `iqt evaluate` scores a prediction's as a zero tensor (the uncertainty figures leave them out) and
leaves a reference's out of every figure, counted. It said the methods' line for evaluate's files too."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.core import tensor_checks
from ImageQualityTransferLib.core.errors import IQTWarning
from ImageQualityTransferLib.core.volume import Volume

AFFINE = np.diag([-1.5, 1.5, 1.5, 1.0])


def _said(t, **kw) -> list[str]:
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", IQTWarning)
        tensor_checks.nan_as_empty(t, "f.nii.gz: ", **kw)
    return [str(w.message) for w in said]


def _holed():
    t = np.zeros((6, 6, 6, 6))
    t[..., 0] = t[..., 2] = t[..., 5] = 1e-3
    t[3, 3, 3] = np.nan  # a failed fit written as NaN, inside the tensors
    return t


def test_the_warning_says_the_fate_the_reader_is_given():
    t = _holed()
    (default,) = _said(t)
    assert "NaN in every element" in default and default.endswith(tensor_checks.MISSING_AS_INPUT), default
    (given,) = _said(t, fate="left alone")
    assert given.endswith("read as missing (zero); left alone"), given
    with tensor_checks.missing_read_as(tensor_checks.MISSING_AS_PREDICTION):
        (inside,) = _said(t)
    assert inside.endswith(tensor_checks.MISSING_AS_PREDICTION) and "learned methods" not in inside, inside
    (after,) = _said(t)  # the context is left as it was
    assert after == default


def _brain(r=2):
    lr = np.zeros((10, 10, 10), bool)
    lr[1:9, 1:9, 1:9] = True
    hr = lr.repeat(r, 0).repeat(r, 1).repeat(r, 2)
    truth = np.zeros(hr.shape + (6,))
    lam = np.random.default_rng(0).uniform(0.3e-3, 1.5e-3, size=hr.shape + (3,))
    truth[..., 0], truth[..., 2], truth[..., 5] = lam[..., 0], lam[..., 1], lam[..., 2]
    truth[~hr] = 0
    return hr, truth


@pytest.mark.parametrize("nrrd", [False, True])
def test_evaluate_says_what_scoring_does_with_a_predictions_nan_voxels(capsys, tmp_path, nrrd):
    hr, truth = _brain()
    pred = truth + 1e-5
    pred[10, 10, 8:12] = np.nan  # NaN in every element inside the prediction
    ref = truth.copy()
    ref[6, 6:10, 6:10] = np.nan  # and in the reference
    p = tmp_path / ("pred.nrrd" if nrrd else "pred.nii.gz")
    fileio.save_tensor(Volume(pred.astype(np.float32), AFFINE, "tensor"), p)
    fileio.save_tensor(Volume(ref.astype(np.float32), AFFINE, "tensor"), tmp_path / "truth.nii.gz")
    fileio.save_mask(Volume(hr, AFFINE, "mask"), tmp_path / "mask.nii.gz")
    code = cli.main(["evaluate", "--pred", str(p), "--truth", str(tmp_path / "truth.nii.gz"), "--mask",
                     str(tmp_path / "mask.nii.gz"), "--factor", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 3, err  # the prediction's line, and the reference's folded into evaluate's count (two lines)
    said = next(line for line in lines if "pred." in line)
    assert "4 voxels inside the tensors hold NaN in every element" in said, said
    assert "score them as a zero tensor" in said and "uncertainty figures leave them out" in said, said
    assert "learned methods" not in said, said
    counted = next(line for line in lines if "truth.nii.gz" in line)
    assert "16 of the mask's" in counted and "hold no reference tensor" in counted, counted
    assert "learned methods" not in err


def test_a_file_refused_for_other_nan_or_inf_gets_no_warning_first():
    """A voxel of NaN in every element beside an Inf elsewhere: the file is refused for the Inf, and that refusal is the
    only line (the missing voxel's warning had come first: a tool-inputs audit)."""
    t = np.full((5, 5, 5, 6), 1e-4)
    t[2, 2, 2] = np.nan  # enclosed: would be said
    t[1, 1, 1, 0] = np.inf
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        tensor_checks.nan_as_empty(t, "f.nii.gz: ")
    assert said == []
    t[1, 1, 1, 0] = 1e-4
    with pytest.warns(IQTWarning, match="1 voxel inside the tensors holds NaN"):
        tensor_checks.nan_as_empty(t, "f.nii.gz: ")


@pytest.mark.parametrize("name", ["nearest", "cubic", "rf"])
def test_every_method_fills_a_hole_as_the_warning_says(name):
    from ImageQualityTransferLib import methods

    t = np.zeros((12, 12, 12, 6), np.float32)
    t[2:10, 2:10, 2:10, 0] = t[2:10, 2:10, 2:10, 2] = t[2:10, 2:10, 2:10, 5] = 7e-4
    t[6, 6, 6] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IQTWarning)
        lr = Volume(tensor_checks.nan_as_empty(t), AFFINE, "tensor")
        out = methods.get(name).predict(lr, 2, uncertainty=False).tensor.data
    hole = out[12:14, 12:14, 12:14]
    np.testing.assert_allclose(hole[..., [0, 2, 5]], 7e-4, rtol=0.05)
