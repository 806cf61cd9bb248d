"""The principal direction's uncertainty (direction.spread) and its calibration in evaluate."""

import numpy as np
import pytest

from ImageQualityTransferLib.core import direction, tensors
from ImageQualityTransferLib.analysis import evaluation
from ImageQualityTransferLib import methods
from ImageQualityTransferLib.dmri.subject import make_case


def _diag(l1, l2, l3, n):
    t = np.zeros((n, 1, 1, 6), np.float32)
    t[..., 0], t[..., 2], t[..., 5] = l1, l2, l3
    return t


def test_axis_angle_is_sign_free_and_known():
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([np.cos(np.radians(30)), np.sin(np.radians(30)), 0.0])
    assert direction.axis_angle(a, b) == pytest.approx(30.0)
    assert direction.axis_angle(a, -b) == pytest.approx(30.0)
    assert direction.axis_angle(a, np.zeros(3)) == 90.0  # no direction: the worst case
    rot = np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]])
    t = _diag(1.7e-3, 0.3e-3, 0.2e-3, 1)[0, 0]
    assert direction.angular_error(tensors.rotate(t, rot), t)[0] == pytest.approx(np.degrees(0.3), abs=1e-3)


def test_spread_matches_first_order_theory_for_small_noise():
    # e1 = x; a perturbation turns it by dD_xy / (l1 - l2) towards y and dD_xz / (l1 - l3) towards z
    l1, l2, l3, sd, n = 1.5e-3, 0.4e-3, 0.3e-3, 3e-5, 20000
    t = _diag(l1, l2, l3, n)
    s = direction.spread(t, np.full((n, 1, 1), sd, np.float32))
    theory = np.degrees(np.sqrt((sd / (l1 - l2)) ** 2 + (sd / (l1 - l3)) ** 2))
    assert np.sqrt(np.mean(s**2)) == pytest.approx(theory, rel=0.03)


def test_spread_saturates_for_isotropic_tensors_and_is_zero_without_noise():
    n = 20000
    iso = _diag(0.8e-3, 0.8e-3, 0.8e-3, n) + np.float32(1e-9) * np.random.default_rng(1).standard_normal((n, 1, 1, 6)).astype(np.float32)
    s = direction.spread(iso, np.full((n, 1, 1), 1e-4, np.float32))
    # a uniformly random axis against a fixed one: RMS angle sqrt(pi - 2) rad
    assert np.sqrt(np.mean(s**2)) == pytest.approx(np.degrees(np.sqrt(np.pi - 2)), rel=0.03)
    assert not direction.spread(_diag(1.5e-3, 0.4e-3, 0.3e-3, 10), np.zeros((10, 1, 1), np.float32)).any()


def test_spread_respects_mask_seed_and_per_element_std():
    rng = np.random.default_rng(0)
    t = _diag(1.2e-3, 0.5e-3, 0.4e-3, 50) + np.float32(5e-5) * rng.standard_normal((50, 1, 1, 6)).astype(np.float32)
    sd = np.full((50, 1, 1), 4e-5, np.float32)
    mask = np.zeros((50, 1, 1), bool)
    mask[:25] = True
    a = direction.spread(t, sd, mask)
    assert (a[:25] > 0).all() and not a[25:].any()
    assert np.array_equal(a, direction.spread(t, sd, mask))
    assert not np.array_equal(a, direction.spread(t, sd, mask, seed=1))
    per_element = np.repeat(sd[..., None], 6, axis=-1)
    assert np.array_equal(a, direction.spread(t, per_element, mask))


def test_direction_calibration_tells_a_calibrated_map_from_a_shuffled_one():
    rng = np.random.default_rng(2)
    n = 4000
    gap = rng.uniform(0.2e-3, 1.2e-3, n).astype(np.float32)
    truth = _diag((0.4e-3 + gap)[:, None, None], 0.4e-3, 0.35e-3, n)
    sd = rng.uniform(1e-5, 8e-5, (n, 1, 1)).astype(np.float32)
    pred = truth + sd[..., None] * rng.standard_normal(truth.shape).astype(np.float32)
    vox = np.ones((n, 1, 1), bool)
    honest = direction.spread(pred, sd)
    good = evaluation.direction_calibration(pred, truth, honest, vox)
    assert good["direction_spearman"] > 0.6 and good["direction_within_2"] > 0.93 and good["n_tracked"] == n
    bad = evaluation.direction_calibration(pred, truth, rng.permutation(honest.ravel()).reshape(honest.shape), vox)
    assert abs(bad["direction_spearman"]) < 0.1 and bad["direction_within_2"] < good["direction_within_2"]
    with pytest.raises(Exception, match="direction uncertainty map"):
        evaluation.direction_calibration(pred, truth, honest[:10], vox)


@pytest.mark.slow
def test_predict_adds_the_direction_map_when_asked_to_methods_with_uncertainty_only(axial_subject):
    case = make_case(axial_subject, 2)  # a real dev subject
    biqt = methods.get("biqt").predict(case.lr, 2, case.lr_mask, direction=True)
    cubic = methods.get("cubic").predict(case.lr, 2, case.lr_mask, direction=True)
    assert cubic.direction is None and cubic.std is None
    plain = methods.get("biqt").predict(case.lr, 2, case.lr_mask)  # not asked: not computed
    assert plain.direction is None and plain.std is not None
    assert methods.get("biqt").predict(case.lr, 2, case.lr_mask, uncertainty=False).maps() == {}
    d = biqt.direction.data
    inside = np.any(biqt.tensor.data != 0, axis=-1)
    assert d.shape == inside.shape and (d[inside] > 0).all() and not d[~inside].any() and d.max() <= 90
    # the calibration figures appear in the evaluation's whole-brain entry
    res = evaluation.evaluate(biqt.tensor.data, case.truth, case.hr_mask, case.lr_mask.data, 2,
                              uncertainty=biqt.std.data, direction=d)
    assert {"direction_spearman", "direction_within_2", "n_tracked"} <= set(res["brain"])
    assert np.isfinite(res["interior"]["angle_error"])
    # on real data the map ranks the real direction errors (measured 0.48 on this subject)
    assert res["brain"]["direction_spearman"] > 0.3
