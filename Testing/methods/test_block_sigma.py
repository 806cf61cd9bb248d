"""biqt's std spread within each output block by the predicted tensor (methods/forest/block_sigma.py): the block's
variance is redistributed, not changed, so the models' calibration stands."""

from __future__ import annotations

import numpy as np
import pytest

from ImageQualityTransferLib.methods import flags
from ImageQualityTransferLib.methods.forest import block_sigma, patches
from ImageQualityTransferLib.methods.forest.forest import Forest


def _tensors(shape, seed=0):
    """Positive-definite tensors (1e-3 mm^2/s) with MD varying from voxel to voxel."""
    rng = np.random.default_rng(seed)
    t = np.zeros(shape + (6,), np.float32)
    t[..., [0, 2, 5]] = rng.uniform(0.3, 3.0, shape + (3,))
    t[..., [1, 3, 4]] = rng.normal(0.0, 0.05, shape + (3,))
    return t


def _blocks_mean_var(std, f):
    return (patches.to_blocks(std[..., None].astype(np.float64), f) ** 2).mean(-1)


@pytest.mark.parametrize("f", [(2, 2, 2), (1, 1, 3), (3, 3, 3)])
def test_each_blocks_mean_variance_is_kept_and_higher_md_gets_more(f):
    rng = np.random.default_rng(1)
    B = int(np.prod(f))
    t = _tensors((200, B))
    std = rng.uniform(0.05, 1.0, (200, 1)) * rng.uniform(0.9, 1.1, (200, B))  # near-constant within a block
    out = block_sigma.spread(std, t)
    assert out.dtype == np.float32 and out.shape == std.shape
    np.testing.assert_allclose((out.astype(np.float64) ** 2).mean(1), (std ** 2).mean(1), rtol=1e-5)
    assert np.abs(out - std).max() > 0.01  # redistributed
    # half the block isotropic at MD 1, half at 2 (each as far from the block's mean tensor): the higher MD gets more
    iso = np.zeros((B, 6), np.float32)
    iso[:, [0, 2, 5]] = np.where(np.arange(B) % 2, 2.0, 1.0)[:, None]
    even = block_sigma.spread(np.ones((1, B)), iso[None])[0]
    if B > 1:
        assert np.all(even[1::2] > 1.0) and np.all(even[::2] < 1.0)


def test_a_constant_block_a_one_voxel_block_and_a_block_of_no_positive_md_are_unchanged():
    t = _tensors((50, 8))
    std = np.random.default_rng(2).uniform(0.1, 1.0, (50, 8)).astype(np.float32)
    np.testing.assert_array_equal(block_sigma.spread(std, np.repeat(t[:, :1], 8, axis=1)), std)
    np.testing.assert_array_equal(block_sigma.spread(std[:, :1], t[:, :1]), std[:, :1])
    np.testing.assert_array_equal(block_sigma.spread(std, -t), std)
    np.testing.assert_array_equal(block_sigma.spread(np.zeros_like(std), t), 0.0)


def test_the_weights_of_a_2x2x2_block_by_hand():
    """w = MD_v / MD_b * (1 + 0.5 * |D_v - D_b|_F / MD_b), the Frobenius norm of the 3x3 matrices (off-diagonal
    elements count twice), std * w rescaled to keep the block's mean std^2."""
    t = np.array([[1.0, 0.3, 1.0, 0.0, 0.0, 1.0], [2.0, 0.0, 1.0, 0.2, 0.0, 1.5], [1.2, -0.4, 1.2, 0.0, 0.3, 1.2],
                  [1.0, 0.0, 1.0, 0.0, 0.0, 1.0], [1.5, 0.5, 0.8, 0.0, 0.0, 1.0], [0.9, 0.0, 1.1, -0.3, 0.0, 1.3],
                  [1.4, 0.1, 1.4, 0.1, 0.1, 1.4], [1.1, 0.0, 0.9, 0.0, -0.2, 1.0]], np.float32)
    std = np.array([0.5, 0.6, 0.4, 0.5, 0.7, 0.5, 0.55, 0.45])
    m = np.zeros((8, 3, 3))
    for (i, j), k in zip([(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)], range(6)):
        m[:, i, j] = m[:, j, i] = t[:, k]
    md = np.trace(m, axis1=1, axis2=2) / 3
    dev = np.linalg.norm(m - m.mean(0), axis=(1, 2))
    w = md / md.mean() * (1 + 0.5 * dev / md.mean())
    want = std * w * np.sqrt(np.mean(std**2) / np.mean((std * w) ** 2))
    np.testing.assert_allclose(block_sigma.spread(std[None], t[None])[0], want, rtol=1e-5)


def test_a_block_with_a_non_physical_or_a_near_zero_md_voxel_is_left_as_the_forest_gives_it():
    """Spread, such a block had lost its mean variance (the non-physical voxel's MD floored) and put its σ on its
    other voxels, and a physical voxel of near-zero MD at the support's edge fell ~20x below its block's σ."""
    t = np.tile(_tensors((1, 8)), (4, 1, 1))
    t[1, 3] = [-0.4, 0.0, 1.0, 0.0, 0.0, 1.0]  # a negative eigenvalue, MD still above LOW_MD of the block's
    t[2, 5] = [0.03, 0.0, 0.03, 0.0, 0.0, 0.03]  # physical, MD far below the block's
    t[3, 5] = [0.6, 0.0, 0.6, 0.0, 0.0, 0.6]  # physical, MD above LOW_MD of the block's (about 1.6)
    std = np.full((4, 8), 0.5, np.float32)
    out = block_sigma.spread(std, t)
    np.testing.assert_array_equal(out[1:3], std[1:3])
    assert np.abs(out[0] - 0.5).max() > 0.05 and np.abs(out[3] - 0.5).max() > 0.05
    np.testing.assert_allclose((out.astype(np.float64) ** 2).mean(1), 0.25, rtol=1e-5)


def _volume(f=(2, 2, 2), lr_shape=(6, 7, 5), seed=0):
    """A high-res prediction and its block-constant std on the blocks of a low-res support, zero elsewhere."""
    rng = np.random.default_rng(seed)
    sup = np.zeros(lr_shape, bool)
    sup[1:-1, 1:-1, 1:-1] = True
    hr_sup = np.repeat(np.repeat(np.repeat(sup, f[0], 0), f[1], 1), f[2], 2)
    t = _tensors(hr_sup.shape, seed) * hr_sup[..., None]
    lr_std = rng.uniform(0.05, 0.2, lr_shape).astype(np.float32) * sup
    std = np.repeat(np.repeat(np.repeat(lr_std, f[0], 0), f[1], 1), f[2], 2)
    return t, std, sup, hr_sup


def test_zero_outside_the_support_stays_zero_and_the_volume_is_reproducible():
    t, std, sup, hr_sup = _volume()
    out = block_sigma.spread_volume(std.copy(), t, sup, 2)
    assert out.shape == std.shape
    assert np.all(out[~hr_sup] == 0.0) and np.all(out[hr_sup] > 0)
    np.testing.assert_allclose(_blocks_mean_var(out, 2), _blocks_mean_var(std, 2), rtol=1e-5)
    np.testing.assert_array_equal(block_sigma.spread_volume(std.copy(), t, sup, 2), out)


def test_the_flags_still_raise_a_non_physical_voxel_and_a_noise_fit():
    """The spread comes before the flags (methods/flags.py): a non-physical voxel's block is left as the forest gives it,
    the voxel raised to its distance to a physical tensor and the edge bands' floor; a noise fit's block to the top."""
    t, std, sup, hr_sup = _volume(lr_shape=(10, 10, 10))
    bad = (9, 9, 9)
    t[bad] = [-0.5, 0.0, 0.2, 0.0, 0.0, 0.2]  # a negative eigenvalue, low MD in a block of higher MD
    spread = block_sigma.spread_volume(std.copy(), t, sup, 2)
    np.testing.assert_array_equal(spread[8:10, 8:10, 8:10], std[8:10, 8:10, 8:10])
    noise = np.zeros(sup.shape, bool)
    noise[2, 2, 2] = True
    out = flags.flag_maps(t, {"std": spread}, (2, 2, 2), noise)["std"]
    distance = float(flags.tensors.distance_to_physical(t[bad][None])[0])
    floor = flags.edge_floor(flags.edge_bands(np.any(t != 0, -1), (2, 2, 2)), spread)
    assert out[bad] >= max(distance, floor) > spread[bad]
    assert np.all(out[4:6, 4:6, 4:6] >= np.quantile(spread[hr_sup], 0.99) * 0.999)
    assert np.all(out[~hr_sup] == 0.0)


def _tiny_biqt(seed=0):
    """A two-tree Bayesian forest on 3^3 x 6 patches -> 2^3 x 6 residuals (the shape a x2 model predicts)."""
    rng = np.random.default_rng(seed)
    n = 1200
    X = (np.array([0.8, 0.0, 0.7, 0.0, 0.0, 0.7], np.float32) + 0.2 * rng.normal(size=(n, 27, 6))).reshape(n, -1)
    X = X.astype(np.float32)
    F = rng.random((n, 15)).astype(np.float32)
    Y = (0.1 * X[:, 78:84].repeat(8, 0).reshape(n, 48) + 0.05 * rng.normal(size=(n, 48))).astype(np.float32)
    g = (np.arange(n) % 2).astype(np.int16)
    f = Forest(n_trees=2, n_train=800, n_val=300, max_depth=1, min_leaf=200, bins=4, ridge=1e-2, seed=seed,
               bayesian=True).fit(X, F, Y, groups=g)
    return f, X, F, Y


@pytest.fixture(scope="module")
def tiny_biqt():
    return _tiny_biqt()


def test_calibration_spreads_sigma_as_the_prediction_does(tiny_biqt):
    """`Forest.calibrate` given the prediction less the forest's part puts its coverage of the element errors within
    2 sigma of the spread sigma, as the maps give it: a newly trained model is calibrated for the spread."""
    f, X, F, Y = tiny_biqt
    base = np.tile(np.array([0.8, 0.0, 0.7, 0.0, 0.0, 0.7], np.float32), 8) + X[:, :48]  # any plausible prediction
    f.calibrate(X, F, Y, "biqt", block=8, base=base)
    mu, var = f.predict(X, F, "biqt")
    sig = np.sqrt(var.reshape(len(X), 8, 6).mean(-1))
    spread = block_sigma.spread(sig, (base + mu).reshape(len(X), 8, 6))
    err = np.abs(Y - mu).reshape(len(X), 8, 6)
    assert np.mean(err <= 2 * spread[..., None]) == pytest.approx(0.954, abs=0.002)
    assert np.mean(err <= 2 * sig[..., None]) != pytest.approx(0.954, abs=1e-6)
    scale = f.variance_scale
    f.calibrate(X, F, Y, "biqt", block=8, base=base)
    assert f.variance_scale == scale  # reproducible


def test_predict_volume_spreads_biqt_std_and_keeps_each_blocks_variance(tiny_biqt, monkeypatch):
    from ImageQualityTransferLib.methods.forest import completion, model_io, training

    f, X, *_ = tiny_biqt
    comp = completion.GaussianCompletion(np.zeros(162), np.eye(162))
    model = model_io.ForestModel("biqt", 2, 1, comp, np.zeros((163, 48), np.float32), f, {"version": "test"})
    t, _, sup, _ = _volume(lr_shape=(7, 8, 6))
    lr = (t[::2, ::2, ::2] * 1e-3).astype(np.float32)
    mask = np.zeros(lr.shape[:3], bool)
    mask[2:-2, 2:-2, 2:-2] = True
    hr, unc = training.predict_volume(model, lr, mask, with_variance=True)
    hr2, unc2 = training.predict_volume(model, lr, mask, with_variance=True)
    np.testing.assert_array_equal(unc["std"], unc2["std"])
    monkeypatch.setattr(training, "SPREAD_IN_BLOCKS", set())
    hr0, unc0 = training.predict_volume(model, lr, mask, with_variance=True)
    np.testing.assert_array_equal(hr, hr0)  # the tensors are the same
    s, s0 = unc["std"], unc0["std"]
    np.testing.assert_array_equal(s == 0, s0 == 0)  # zero outside the support, nowhere else
    np.testing.assert_allclose(_blocks_mean_var(s, 2), _blocks_mean_var(s0, 2), rtol=1e-4)
    assert np.abs(s - s0).max() > 1e-3 * s0.max()


@pytest.mark.slow  # two small trainings: about 5 s
def test_training_calibrates_biqt_for_the_spread_and_rf_as_before(small_subject, monkeypatch):
    """`training.train` hands `Forest.calibrate` the prediction less the forest's part (the cubic block values plus the
    global-linear map) for the kinds whose std is spread (biqt), nothing for the others (rf)."""
    from ImageQualityTransferLib.methods.forest import training

    seen, fitted = {}, {}
    calibrate, fit = Forest.calibrate, training.linear.GlobalLinear.fit

    def fit_spy(self, X, Y):
        fitted.update(gl=self, rows={x.tobytes(): i for i, x in enumerate(np.asarray(X))})
        return fit(self, X, Y)

    def spy(self, X, F, R, kind, block, coverage=0.954, base=None):
        seen[kind] = None if base is None else np.asarray(base).shape
        if base is not None:  # the forest's full prediction less its own part: cubic plus global-linear
            cal = [fitted["rows"][x.tobytes()] for x in np.asarray(X)]
            np.testing.assert_allclose(base, lib.C[cal] + fitted["gl"].predict(X), rtol=1e-5, atol=1e-7)
        return calibrate(self, X, F, R, kind, block, coverage, base=base)

    monkeypatch.setattr(Forest, "calibrate", spy)
    monkeypatch.setattr(training.linear.GlobalLinear, "fit", fit_spy)
    lib = training.patches.build_library([small_subject], 2, n=1, seed=0, rate=0.2)
    kw = dict(n_trees=2, max_depth=1, min_leaf=200, n_train=500, n_val=100, n_calibration=500, library=lib)
    training.train("biqt", [small_subject], **kw)
    training.train("rf", [small_subject], **kw)
    assert seen == {"biqt": (min(500, len(lib)), 48), "rf": None}


def test_only_biqt_and_only_blocks_that_span_every_axis_are_spread():
    """rf's spread between trees lost on the dev subjects' tight inputs, and at x1,1,2 the weights moved biqt's
    Spearman both ways (docs/measurements.md, "Uncertainty"): neither is spread."""
    from ImageQualityTransferLib.methods.forest import training

    assert training.spreads_in_blocks("biqt", 2) and training.spreads_in_blocks("biqt", (3, 3, 3))
    assert not training.spreads_in_blocks("biqt", (1, 1, 2)) and not training.spreads_in_blocks("biqt", "1,1,3")
    assert not training.spreads_in_blocks("rf", 2)
