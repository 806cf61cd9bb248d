"""A `--mask` wider than a masked fit (one made by another tool, or `iqt mask`'s on a dipy fit): its voxels that hold no
tensor are not brain. Before, those zeros pushed the noise index over the noisy-model threshold (another model ran), made
the output-scale check refuse every learned method as "damaged", and let tensors spread several voxels beyond the fit
(audit, stop 57)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from ImageQualityTransferLib import fileio, methods
from ImageQualityTransferLib.core.errors import IQTError, IQTWarning
from ImageQualityTransferLib.core.volume import Volume

import helpers


def _ball_fit(n=16, radius=5.5):
    """A masked fit: smooth tensors in a ball, exact zeros outside (as FSL, MRtrix and dipy with a mask write)."""
    t, _ = helpers.smooth_tensors((n, n, n))
    ijk = np.indices((n, n, n)) - (n - 1) / 2
    ball = np.sqrt((ijk ** 2).sum(0)) <= radius
    return Volume(np.where(ball[..., None], t, 0).astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0]), "tensor"), ball


def _mask(lr, where):
    return Volume(where, lr.affine, "mask")


def _run(method, lr, mask):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IQTWarning)
        pred = method.predict(lr, 2, mask)
    return pred, [str(w.message) for w in caught if issubclass(w.category, IQTWarning)]


@pytest.mark.parametrize("name", ["cubic", "biqt"])
def test_a_wider_mask_gives_the_run_with_the_fits_own_mask_and_says_so_once(name):
    lr, ball = _ball_fit()
    method = methods.get(name)
    own, said_own = _run(method, lr, _mask(lr, ball))
    wide = ndimage.binary_dilation(ball, iterations=3)
    pred, said = _run(method, lr, _mask(lr, wide))
    assert said_own == []
    empty = int((wide & ~ball).sum())
    assert [s for s in said if "hold no tensor" in s] == [s for s in said if f"{empty} of the mask's {int(wide.sum())} voxels" in s]
    assert len([s for s in said if "hold no tensor" in s]) == 1, said
    for key, vol in [("tensor", pred.tensor), *pred.maps().items()]:
        assert np.array_equal(vol.data, getattr(own, key).data), key


def test_a_high_res_mask_s_count_says_it_is_in_the_input_s_blocks():
    """A wider mask on the output's grid is counted in its low-res blocks; the line had said "of the mask's 60515
    voxels" of a high-res mask of about 179k (a low-field audit), so a user looked for another file."""
    from ImageQualityTransferLib.core.grid import hr_affine, repeat_blocks
    from ImageQualityTransferLib.methods.base import predict_within

    lr, ball = _ball_fit()
    wide = ndimage.binary_dilation(ball, iterations=3)
    high = Volume(repeat_blocks(wide, (2, 2, 2)), hr_affine(lr.affine, (2, 2, 2)), "mask")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IQTWarning)
        predict_within(methods.get("cubic"), lr, 2, high)
    line = [str(w.message) for w in caught if "hold no tensor" in str(w.message)]
    assert len(line) == 1 and f"of the mask's {int(wide.sum())} voxels on the input's grid (the high-res mask's blocks)" \
        in line[0], line
    _, said = _run(methods.get("cubic"), lr, _mask(lr, wide))  # one on the input's grid: its own voxels
    assert not any("input's grid" in s for s in said), said


@pytest.mark.parametrize("name", ["cubic", "biqt"])
def test_holes_a_fit_leaves_inside_its_own_mask_are_said_only_as_holes(name):
    """Two voxels with no tensor inside the fit's own mask: no mask line; the holes' line, the same for interpolation
    as for the learned methods (interpolation had said nothing)."""
    lr, ball = _ball_fit()
    holes = np.zeros_like(ball)
    holes[7, 7, 7] = holes[8, 9, 7] = True  # 2 of 665 voxels: under 1 %
    lr = lr.replace(data=np.where(holes[..., None], 0, lr.data))
    _, said = _run(methods.get(name), lr, _mask(lr, ball))
    assert len(said) == 1 and said[0].startswith("2 low-res voxels hold no tensor"), said


@pytest.mark.parametrize("name", ["cubic", "biqt"])
def test_failed_fits_scattered_inside_its_own_mask_are_not_called_a_wider_mask(name):
    """2 % of the brain zeroed at random inside the fit's own mask (dtifit leaves zeros where a b0 is 0): the line had
    said the mask reaches beyond the tensors and to give the mask they were fitted in, which it was (an input audit);
    they are said in the holes' line, by interpolation as by the learned methods."""
    lr, ball = _ball_fit()
    inner = ndimage.binary_erosion(ball, iterations=2)
    rng = np.random.default_rng(0)
    holes = np.zeros_like(ball)
    holes[tuple(np.argwhere(inner)[rng.choice(int(inner.sum()), 14, replace=False)].T)] = True
    assert holes.sum() > 0.02 * ball.sum()
    lr = lr.replace(data=np.where(holes[..., None], 0, lr.data))
    pred, said = _run(methods.get(name), lr, _mask(lr, ball))
    line = [s for s in said if "hold no tensor" in s]
    assert len(line) == 1 and line[0].startswith("14 low-res voxels hold no tensor"), said
    assert "reaches beyond" not in line[0] and "give the mask the tensors were fitted in" not in line[0], line
    hr = np.repeat(np.repeat(np.repeat(holes, 2, 0), 2, 1), 2, 2)
    assert np.all(np.any(pred.tensor.data[hr] != 0, axis=-1))  # filled in the output


@pytest.mark.parametrize("name", ["cubic", "biqt"])
def test_a_cavity_the_fit_never_covered_is_said_as_a_region_left_out_of_the_fit(name):
    """A fit made without the ventricles, given the whole brain's mask: the cavity's heart is no failed fit (a review
    of a mend that had called all 360 such voxels failed fits the outputs fill); the holes' line says it, a region
    left out of the fit's mask, for interpolation as for the learned methods (interpolation's mask line had told to
    give the mask the tensors were fitted in)."""
    lr, ball = _ball_fit(n=20, radius=7.5)
    cavity = np.sqrt(((np.indices(ball.shape) - 9.5) ** 2).sum(0)) <= 4.5
    lr = lr.replace(data=np.where(cavity[..., None], 0, lr.data))
    _, said = _run(methods.get(name), lr, _mask(lr, ball))
    line = [s for s in said if "hold no tensor" in s]
    assert len(line) == 1 and line[0].startswith(f"{int(cavity.sum())} low-res voxels hold no tensor"), said
    assert "region left out of the fit's mask" in line[0] and "give the mask the tensors" not in line[0], line


def test_a_fit_s_floor_in_its_own_mask_is_told_apart_from_a_wider_mask():
    """A very noisy scan's fit leaves voxels of its own mask at the fit's floor (all elements below 1e-5 mm^2/s), read
    as no tensor: the line had advised giving the mask the tensors were fitted in, which it was (a cohort audit)."""
    lr, ball = _ball_fit()
    floor = ball & (np.indices(ball.shape)[2] < 6)  # a few slices' worth of the ball, over 1 % of it
    lr = lr.replace(data=np.where(floor[..., None], np.float32(1e-7), lr.data))
    _, said = _run(methods.get("cubic"), lr, _mask(lr, ball))
    line = [s for s in said if "hold no tensor" in s]
    assert len(line) == 1 and f"{int(floor.sum())} of them hold tensors below 1e-05 mm^2/s, a fit's floor" in line[0], said
    assert "give the mask the tensors were fitted in" not in line[0]
    wide = ndimage.binary_dilation(ball, iterations=3)  # a mask wider than the fit: the advice stays, floor or not
    _, said = _run(methods.get("cubic"), lr, _mask(lr, wide))
    line = [s for s in said if "hold no tensor" in s]
    assert len(line) == 1 and "give the mask the tensors were fitted in" in line[0] and "this noisy" not in line[0], said


def test_a_mask_mostly_off_the_fit_is_refused():
    lr, ball = _ball_fit()
    off = np.zeros_like(ball)
    off[:, :, :4] = True  # four slabs under the ball: they touch its lowest voxels
    with pytest.raises(IQTError, match="the mask is not on this input's brain"):
        methods.get("cubic").predict(lr, 2, _mask(lr, off))


def test_the_command_line_refuses_it_in_one_line_with_nothing_written(tmp_path, capsys):
    lr, ball = _ball_fit()
    fileio.save_tensor(lr, tmp_path / "lr.nii.gz")
    off = np.zeros(ball.shape, np.uint8)
    off[:, :, :4] = 1
    fileio.save_mask(Volume(off.astype(bool), lr.affine, "mask"), tmp_path / "m.nii.gz")
    helpers.refused_line(capsys, ["upsample", tmp_path / "lr.nii.gz", "--mask", tmp_path / "m.nii.gz", "--method",
                                  "cubic", "-o", tmp_path / "o.nii.gz"], "hold no tensor", "not on this input's brain")
    assert not (tmp_path / "o.nii.gz").exists()


@pytest.mark.realdata
def test_a_field_of_view_mask_on_a_tight_dev_fit_runs_deep_as_with_its_mask(axial_subject):
    """The audit's case: every learned method was refused ("the model's output is not plausible: its median MD is
    0.0241 times the input's; the model is damaged …") with a mask of the whole field on a tightly masked fit."""
    pytest.importorskip("torch", reason="PyTorch is not installed")
    case = helpers.low_res_case(axial_subject, 2, "tight")
    method = methods.get("deep")
    own, _ = _run(method, case.lr, case.lr_mask)
    whole = np.ones(case.lr.shape3, bool)
    pred, said = _run(method, case.lr, _mask(case.lr, whole))
    assert any("hold no tensor" in s for s in said), said
    assert np.array_equal(pred.tensor.data, own.tensor.data)
    assert pred.tensor.meta.get("noise_index") == own.tensor.meta.get("noise_index")
