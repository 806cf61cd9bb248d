"""IQT-RF / BIQT-RF / global-linear: trees, fast split search, evidence fixed point, forests, model files."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.fileio import checksums
from ImageQualityTransferLib.fileio import model_files
from ImageQualityTransferLib.methods.forest import bayes, completion, features, linear, model_io, patches, tree
from ImageQualityTransferLib.methods.forest.forest import Forest


def _piecewise(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    F = np.stack([rng.integers(0, 10, n) / 10.0, rng.random(n)], 1)  # the truth's threshold is a data value
    truth = np.random.default_rng(99)  # the same two linear pieces for every sample
    A1, A2 = truth.normal(size=(3, 2)), truth.normal(size=(3, 2))
    b1, b2 = np.array([1.0, -2.0]), np.array([-3.0, 0.5])
    left = F[:, 0] <= 0.3
    Y = np.where(left[:, None], X @ A1 + b1, X @ A2 + b2)
    return X, F, Y


def test_tree_recovers_piecewise_linear_truth():
    X, F, Y = _piecewise()
    Xv, Fv, Yv = _piecewise(seed=1)
    t = tree.grow(linear.augment(X), Y, F, linear.augment(Xv), Yv, Fv, max_depth=3, min_leaf=20, bins=32,
                  ridge=1e-10, bayesian=False)
    assert t.feature[0] == 0 and t.threshold[0] == pytest.approx(0.3)
    Xt, Ft, Yt = _piecewise(seed=2)
    pred = tree.predict_leaves(t.W, linear.augment(Xt).astype(np.float32), t.apply(Ft))
    np.testing.assert_allclose(pred, Yt, atol=1e-3)


def test_fast_split_search_equals_bruteforce():
    rng = np.random.default_rng(3)
    n = 240
    X = rng.normal(size=(n, 3))
    F = np.round(rng.random((n, 2)), 2)  # ties included
    Y = X @ rng.normal(size=(3, 2)) + np.where(F[:, :1] > 0.5, 1.0, -1.0) + 0.3 * rng.normal(size=(n, 2))
    Xa = linear.augment(X)
    st = linear.stats(Xa, Y)
    st = st + (tree.node_fit(*st, 1e-3)[1],)
    fast = tree.split_gains(Xa, Y, F, st, bins=8, min_leaf=10, ridge=1e-3)
    slow = tree.split_gains_bruteforce(Xa, Y, F, bins=8, min_leaf=10, ridge=1e-3)
    assert len(fast) == len(slow) > 5
    for (f1, t1, g1, _), (f2, t2, g2) in zip(fast, slow):
        assert f1 == f2 and t1 == t2
        assert g1 == pytest.approx(g2, rel=1e-6, abs=1e-6)


def test_evidence_fixed_point_matches_direct_optimisation():
    from scipy.optimize import minimize

    rng = np.random.default_rng(4)
    n, d, m = 300, 6, 3
    Xa = linear.augment(rng.normal(size=(n, d - 1)))
    Y = Xa @ (0.5 * rng.normal(size=(d, m))) + 0.4 * rng.normal(size=(n, m))
    XtX, XtY, YtY, _ = linear.stats(Xa, Y)
    leaf = bayes.evidence_fixed_point(XtX, XtY, YtY, n, iters=2000, tol=1e-12)

    def neg(p):
        return -bayes.log_evidence(np.exp(p[0]), np.exp(p[1]), XtX, XtY, YtY, n)

    res = minimize(neg, x0=[0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
    assert leaf.alpha == pytest.approx(np.exp(res.x[0]), rel=1e-3)
    assert leaf.beta == pytest.approx(np.exp(res.x[1]), rel=1e-3)
    assert -res.fun == pytest.approx(bayes.log_evidence(leaf.alpha, leaf.beta, XtX, XtY, YtY, n), abs=1e-6)
    # posterior mean is the ridge solution with lambda = alpha / beta
    W = np.linalg.solve(XtX + leaf.alpha / leaf.beta * np.eye(d), XtY)
    np.testing.assert_allclose(leaf.W, W, rtol=1e-8, atol=1e-10)


def _synthetic(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 12)).astype(np.float32)
    F = rng.random((n, 3)).astype(np.float32)
    Y = (X[:, :4] * np.where(F[:, :1] > 0.5, 1.0, -1.0) + 0.1 * rng.normal(size=(n, 4))).astype(np.float32)
    g = (np.arange(n) % 3).astype(np.int16)
    return X, F, Y, g


def _forest(seed=0):
    X, F, Y, g = _synthetic()
    return Forest(n_trees=3, n_train=2000, n_val=500, max_depth=3, min_leaf=40, bins=8, ridge=1e-4, seed=seed).fit(
        X, F, Y, groups=g), X, F, Y


def test_forest_deterministic_for_a_seed_and_beats_linear():
    f1, X, F, Y = _forest(0)
    f2, *_ = _forest(0)
    for kind in ("rf", "biqt"):
        m1, v1 = f1.predict(X[:500], F[:500], kind)
        m2, v2 = f2.predict(X[:500], F[:500], kind)
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(v1, v2)
        assert np.all(v1 >= 0)
    gl = linear.GlobalLinear().fit(X, Y)
    assert np.mean((f1.predict(X, F)[0] - Y) ** 2) < 0.5 * np.mean((gl.predict(X) - Y) ** 2)


def _model(method):
    f, X, F, Y = _forest(0)
    comp = completion.GaussianCompletion().fit(X, np.zeros((len(X), 2), bool))
    gl = np.zeros((X.shape[1] + 1, Y.shape[1]), np.float32)
    return model_io.ForestModel(method, 2, 1, comp, gl, None if method == "global-linear" else f, {"version": "test"}), X, F


@pytest.mark.parametrize("method", ["rf", "biqt", "global-linear"])
def test_save_load_round_trip(tmp_path, method):
    model, X, F = _model(method)
    # float32 leaves round-trip exactly; float16 leaves with int8 biqt covariance factors closely
    cases = [(np.float32, 1e-5, 1e-4)] + ([(np.float16, 2e-3, 1e-2)] if method == "biqt" else [])
    for dtype, rtol_m, rtol_v in cases:
        side = model_io.save(model, tmp_path / f"{method}.npz", dtype=dtype)
        back = model_io.load(side)
        assert back.method == method and back.factor == (2, 2, 2)
        np.testing.assert_array_equal(back.gl_W, model.gl_W)
        if method != "global-linear":
            m1, v1 = model.forest.predict(X, F, method)
            m2, v2 = back.forest.predict(X, F, method)
            np.testing.assert_allclose(m2, m1, rtol=0, atol=max(1e-5, rtol_m * float(np.abs(m1).max())))
            np.testing.assert_allclose(v2, v1, rtol=rtol_v, atol=1e-6)


def test_corrupted_or_tampered_model_gives_iqterror(tmp_path):
    model, *_ = _model("rf")
    side = model_io.save(model, tmp_path / "rf.npz")
    weights = tmp_path / "rf.npz"
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(IQTError, match="checksum"):
        model_io.load(side)
    weights.write_bytes(bytes(raw[:100]))  # truncated
    with pytest.raises(IQTError, match="checksum"):
        model_io.load(side)
    # a pickled object array with a matching checksum still cannot load (allow_pickle=False)
    np.savez(weights, gl_W=np.array([{"evil": 1}], dtype=object))
    meta = json.loads(side.read_text())
    meta.pop(model_files.SEAL)
    meta["sha256"] = checksums.sha256(weights)
    model_files.write_sidecar(side, meta)  # sealed anew, as a deliberate forger would
    with pytest.raises(IQTError, match="valid") as said:
        model_io.load(side)
    assert "Python objects, which are never loaded" in str(said.value) and "unsafe" not in str(said.value)
    meta["sha256"] = None  # no checksum at all: said as such
    model_files.write_sidecar(side, meta)
    with pytest.raises(IQTError, match="gives no sha256"):
        model_io.load(side)
    # a setting edited by hand: refused by the sidecar's own checksum (input_unit changed 482,976 voxels)
    side.write_text(json.dumps({**json.loads(side.read_text()), "input_unit": "md-mode"}))
    with pytest.raises(IQTError, match="do not match its checksum"):
        model_io.load(side)
    side.write_text("{not json")
    with pytest.raises(IQTError, match="JSON"):
        model_io.load(side)
    side.unlink()
    with pytest.raises(IQTError, match="sidecar not found"):
        model_io.load(side)
    weights.unlink()
    with pytest.raises(IQTError):
        model_io.load(weights)


def test_completion_and_features_on_a_volume():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 2 * 6)).astype(np.float32)
    X[:, 6:] = X[:, :6] * 2 + 0.01 * rng.normal(size=(2000, 6))
    comp = completion.GaussianCompletion().fit(X, np.zeros((2000, 2), bool))
    miss = np.zeros((5, 2), bool)
    miss[:, 1] = True
    out = comp.complete(np.where(np.repeat(miss, 6, 1), 0, X[:5]), miss)
    np.testing.assert_allclose(out[:, 6:], 2 * X[:5, :6], atol=0.1)
    t = np.zeros((6, 6, 6, 6), np.float32)
    t[..., 0], t[..., 2], t[..., 5] = 1.5, 0.5, 0.5
    for n, k in features.N_FEATURES.items():
        f = features.volume_features(t, n)
        assert f.shape == (6, 6, 6, k)
    f = features.volume_features(t, 2)[3, 3, 3]
    assert f[0] == pytest.approx(1.5) and f[6] == pytest.approx(2.5) and f[14] == pytest.approx(1.0, abs=1e-5)
    b = rng.normal(size=(4, 6, 8, 6)).astype(np.float32)
    np.testing.assert_array_equal(patches.from_blocks(patches.to_blocks(b, 2), 2), b)
    for f in ((1, 1, 2), (2, 3, 1)):  # per-axis blocks: block (i, j, k) holds high-res (fx i + a, fy j + b, fz k + c)
        blocks = patches.to_blocks(b[:, :, :, :], f)
        assert blocks.shape == (4 // f[0], 6 // f[1], 8 // f[2], np.prod(f) * 6)
        np.testing.assert_array_equal(blocks[1, 1, 1, :6], b[f[0], f[1], f[2]])
        np.testing.assert_array_equal(patches.from_blocks(blocks, f), b[: 4 // f[0] * f[0], : 6 // f[1] * f[1], : 8 // f[2] * f[2]])


def test_completion_is_the_conditional_mean_for_few_and_many_missing():
    """Both solves (the precision's blocks where few entries are missing, the covariance's where many) give
    mu_m + S_mo (S_oo + ridge)^-1 (x_o - mu_o) row by row; a fully missing row gets the mean; present entries and
    complete rows are kept to the bit."""
    rng = np.random.default_rng(3)
    A = rng.normal(size=(5 * 6, 5 * 6))
    train = rng.normal(size=(4000, 30)) @ A.T
    comp = completion.GaussianCompletion().fit(train, np.zeros((4000, 5), bool))
    X = (rng.normal(size=(40, 30)) @ A.T).astype(np.float32)
    miss = np.zeros((40, 5), bool)
    miss[:10, 0] = True  # few missing: the precision's 6 x 6 block
    miss[10:20, 1:] = True  # many: the covariance's 6 x 6 block
    miss[20:25, [1, 3]] = True
    miss[25:28] = True  # all missing
    out = comp.complete(X, miss)
    jitter = comp.ridge * np.mean(np.diag(comp.cov))
    for r in range(40):
        mi = np.repeat(miss[r], 6)
        if not mi.any():
            np.testing.assert_array_equal(out[r], X[r])
            continue
        np.testing.assert_array_equal(out[r, ~mi], X[r, ~mi])
        want = comp.mean[mi]
        if not mi.all():
            oi = ~mi
            S_oo = comp.cov[np.ix_(oi, oi)] + jitter * np.eye(oi.sum())
            want = want + comp.cov[np.ix_(mi, oi)] @ np.linalg.solve(S_oo, X[r, oi] - comp.mean[oi])
        np.testing.assert_allclose(out[r, mi], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_shipped_models_beat_cubic_on_a_dev_crop(axial_subject):
    from ImageQualityTransferLib.analysis import evaluation
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.dmri.subject import Subject, make_case

    for name in ("global-linear", "rf", "biqt"):
        try:
            model_io.shipped(name, 2)
        except IQTError:
            pytest.skip(f"no shipped {name} model")
    s = axial_subject
    box = tuple(slice(a // 4, a // 4 + a // 2) for a in s.dwi.shape3)  # central half of each axis
    crop = Subject(s.name, s.dwi.replace(data=s.dwi.data[box]), s.mask.replace(data=s.mask.data[box]),
                   s.tensor.replace(data=s.tensor.data[box]))
    case = make_case(crop, 2)
    cubic = methods.get("cubic").predict(case.lr, 2, case.lr_mask)
    ref = evaluation.evaluate(cubic.tensor.data, case.truth, case.hr_mask, case.lr_mask.data, 2)
    for name in ("global-linear", "rf", "biqt"):
        pred = methods.get(name).predict(case.lr, 2, case.lr_mask)
        res = evaluation.evaluate(pred.tensor.data, case.truth, case.hr_mask, case.lr_mask.data, 2)
        assert res["interior"]["dt_rmse"] < ref["interior"]["dt_rmse"], name
        if name != "global-linear":
            assert pred.std.data.shape == pred.tensor.data.shape[:3]


def _patch_data(n=3000, seed=0):
    """3^3 x 6 patches whose targets are noisier where the patch is heterogeneous (as at tissue edges)."""
    rng = np.random.default_rng(seed)
    base = np.array([0.8, 0.0, 0.7, 0.0, 0.0, 0.7], np.float32)
    spread = rng.choice([0.01, 0.3], n).astype(np.float32)  # homogeneous or heterogeneous patch
    X = (base + spread[:, None, None] * rng.normal(size=(n, 27, 6))).astype(np.float32).reshape(n, -1)
    F = rng.random((n, 15)).astype(np.float32)
    clean = X[:, 13 * 6 : 13 * 6 + 4] * np.where(F[:, :1] > 0.5, 1.0, -1.0)
    Y = (clean + spread[:, None] * rng.normal(size=(n, 4))).astype(np.float32)
    g = (np.arange(n) % 3).astype(np.int16)
    return X, F, Y, g, spread


@pytest.mark.slow
def test_uncertainty_calibration_rf_coverage_and_biqt_noise_scale(tmp_path):
    from scipy.stats import spearmanr

    X, F, Y, g, spread = _patch_data()
    kw = dict(n_trees=3, n_train=2000, n_val=500, max_depth=3, min_leaf=200, bins=8, ridge=1e-4, seed=0)
    rf = Forest(bayesian=False, **kw).fit(X, F, Y, groups=g)
    rf.calibrate(X, F, Y, "rf", block=1)
    mu, var = rf.predict(X, F, "rf")
    cover = np.mean(np.abs(Y - mu) <= 2 * np.sqrt(var.mean(1, keepdims=True)))
    assert cover == pytest.approx(0.954, abs=0.02)
    bq = Forest(bayesian=True, **kw).fit(X, F, Y, groups=g)
    _, v0 = bq.predict(X, F, "biqt")
    bq.calibrate(X, F, Y, "biqt", block=1)
    mu, v1 = bq.predict(X, F, "biqt")
    assert np.mean(bq.noise(X, F)) == pytest.approx(1.0, rel=1e-3)
    err = np.sqrt(np.mean((Y - mu) ** 2, 1))
    assert spearmanr(v1.mean(1), err)[0] > spearmanr(v0.mean(1), err)[0] + 0.05
    assert np.median(v1.mean(1)[spread > 0.1]) > 10 * np.median(v1.mean(1)[spread < 0.1])
    # the noise features are invariant to a flip of the patch axes with the tensor components
    P = X.reshape(-1, 3, 3, 3, 6)[:, ::-1]
    P = P * np.array([1, -1, 1, -1, 1, 1], np.float32)  # x flip: Dxy, Dxz change sign
    np.testing.assert_allclose(bayes.noise_design(P.reshape(len(X), -1), F), bayes.noise_design(X, F), rtol=1e-4, atol=1e-4)
    # both calibrations survive save/load
    for method, f in (("rf", rf), ("biqt", bq)):
        comp = completion.GaussianCompletion().fit(X, np.zeros((len(X), 27), bool))
        gl = np.zeros((X.shape[1] + 1, Y.shape[1]), np.float32)
        m = model_io.ForestModel(method, 2, 1, comp, gl, f, {"version": "test"})
        back = model_io.load(model_io.save(m, tmp_path / f"{method}.npz", dtype=np.float32))
        a, b = f.predict(X[:300], F[:300], method), back.forest.predict(X[:300], F[:300], method)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-4, atol=1e-7)


def test_leaf_ridge_refits_leaves_only():
    X, F, Y, g = _synthetic()
    Xa = linear.augment(X)
    kw = dict(max_depth=3, min_leaf=40, bins=8, ridge=1.0, bayesian=False)
    a = tree.grow(Xa[:3000], Y[:3000], F[:3000], Xa[3000:], Y[3000:], F[3000:], **kw)
    b = tree.grow(Xa[:3000], Y[:3000], F[:3000], Xa[3000:], Y[3000:], F[3000:], leaf_ridge=1e-6, **kw)
    np.testing.assert_array_equal(a.feature, b.feature)
    np.testing.assert_array_equal(a.threshold, b.threshold)
    assert np.abs(a.W - b.W).max() > 1e-3
    W = linear.fit_stats(*[s for k, s in enumerate(linear.stats(Xa[:3000][a.apply(F[:3000]) == 0],
                                                               Y[:3000][a.apply(F[:3000]) == 0])) if k != 2], 1e-6)
    np.testing.assert_allclose(b.W[0], W, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- target kind, inputs, compact model files


def _tensor_volume(shape=(8, 9, 7), seed=0):
    rng = np.random.default_rng(seed)
    t = np.zeros(shape + (6,), np.float32)
    t[..., 0], t[..., 2], t[..., 5] = 1.2e-3, 0.6e-3, 0.5e-3
    t += (0.05e-3 * rng.normal(size=t.shape)).astype(np.float32)
    mask = np.zeros(shape, bool)
    mask[2:-2, 2:-2, 2:-2] = True
    return t, mask


def _volume_model(inputs, method="global-linear"):
    """A factor-2, n=1 model whose global-linear map is zero on the patch (and -1 on the cubic regressors)."""
    P, m = 27 * 6, 8 * 6
    comp = completion.GaussianCompletion(np.zeros(P), np.eye(P))
    d = P + (m if inputs == "patch+cubic" else 0) + 1
    gl = np.zeros((d, m), np.float32)
    if inputs == "patch+cubic":
        gl[P : P + m] = -np.eye(m)
    return model_io.ForestModel(method, 2, 1, comp, gl, None, {"version": "test"}, inputs=inputs)


def test_prediction_is_cubic_plus_the_models_residual(tmp_path):
    from ImageQualityTransferLib.methods.forest.training import predict_volume
    from ImageQualityTransferLib.methods.interpolation import Cubic

    lr, mask = _tensor_volume()
    cubic = Cubic()._predict(lr, 2, mask, None)[0]
    # residual-over-cubic target: a zero residual model gives exactly the cubic B-spline interpolation
    hr, _ = predict_volume(_volume_model("patch"), lr, mask)
    np.testing.assert_allclose(hr, cubic, rtol=1e-5, atol=1e-9)
    # with the cubic block values as extra regressors, -1 times them cancels the cubic: zero everywhere
    model = _volume_model("patch+cubic")
    hr, _ = predict_volume(model, lr, mask)
    np.testing.assert_allclose(hr, 0.0, atol=1e-8)
    # the target kind and inputs survive save/load (sidecar fields) and give the same volume
    side = model_io.save(model, tmp_path / "gl.npz")
    meta = json.loads(side.read_text())
    assert meta["target"] == "residual-over-cubic" and meta["inputs"] == "patch+cubic"
    back = model_io.load(side)
    assert back.inputs == "patch+cubic" and back.target == "residual-over-cubic"
    np.testing.assert_array_equal(predict_volume(back, lr, mask)[0], hr)


@pytest.mark.filterwarnings("ignore:.*cannot be verified")  # the unsealed sidecars edited below: said once, above
def test_old_sidecars_load_and_unknown_target_kinds_fail_clearly(tmp_path):
    model, X, F = _model("rf")
    side = model_io.save(model, tmp_path / "rf.npz")
    meta = json.loads(side.read_text())
    # sidecars from before the fields (and before sidecars were sealed): residual over cubic from the patch, as every
    # earlier model was
    del meta["target"], meta["inputs"], meta[model_files.SEAL]
    side.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="cannot be verified"):
        back = model_io.load(side)
    assert (back.target, back.inputs) == ("residual-over-cubic", "patch")
    for key, value in (("target", "reference"), ("inputs", "patch+log")):
        side.write_text(json.dumps({**meta, key: value}))
        with pytest.raises(IQTError, match=re.escape(f"{key} '{value}'") + ".*does not know"):
            model_io.load(side)
    # regressors that do not match the global-linear map: a clear error, not a shape crash at prediction
    side.write_text(json.dumps({**meta, "inputs": "patch+cubic"}))
    with pytest.raises(IQTError, match="valid rf model"):
        model_io.load(side)


def test_int8_leaf_maps_keep_each_row_within_its_rounding_and_predict_closely(tmp_path):
    rng = np.random.default_rng(3)
    # rows of very different magnitude, as the patch centre, its corners and the bias give
    W = rng.standard_normal((4, 7, 5)) * np.logspace(-4, 0, 7)[None, :, None]
    W[1, 2] = 0.0  # an all-zero row keeps a usable scale
    q, s = model_io.pack_rows(W)
    assert q.dtype == np.int8 and q.shape == W.shape and s.shape == (4, 7)
    back = model_io.unpack_rows(q, s)
    assert np.all(np.abs(back - W) <= np.abs(W).max(-1, keepdims=True) / 254 + 1e-12)
    assert np.all(back[1, 2] == 0)
    with pytest.raises(ValueError, match="row scales"):
        model_io.unpack_rows(q, s[:, :3])
    for method in ("rf", "biqt"):
        model, X, F = _model(method)
        m0, v0 = model.forest.predict(X, F, method)
        side = model_io.save(model, tmp_path / f"{method}.npz", dtype=np.int8)
        with np.load(tmp_path / f"{method}.npz", allow_pickle=False) as z:
            assert z["tree0_W_q"].dtype == np.int8 and "tree0_W" not in z.files
        assert json.loads(side.read_text())["precision"].startswith("int8")
        m1, v1 = model_io.load(side).forest.predict(X, F, method)
        # each tree's mean moves by at most sum_i |x_i| * (row i's largest weight) / 254 ...
        Xa = np.abs(linear.augment(X))
        moves = [np.einsum("ni,ni->n", Xa, np.abs(t.bayes_W if method == "biqt" else t.W)
                 .max(-1)[t.apply(F)]) / 254 for t in model.forest.trees]
        bound = np.max(moves, axis=0)[:, None]
        assert np.all(np.abs(m1 - m0) <= bound * 1.001 + 1e-6)
        # ... so the trees' weighted spread (a seminorm of their means) by at most as much; biqt's within-tree
        # variance moves only through its int8 covariance factors (a small part of it: within 1 % here)
        slack = 0.0 if method == "rf" else 0.01 * np.sqrt(v0)
        scale = np.sqrt(model.forest.variance_scale)
        assert np.all(np.abs(np.sqrt(v1) - np.sqrt(v0)) <= scale * bound * 1.001 + slack + 1e-6)


def test_biqt_covariance_factors_packed_int8_and_old_full_factors_load(tmp_path):
    model, X, F = _model("biqt")
    m0, v0 = model.forest.predict(X, F, "biqt")
    R = np.stack([t.bayes_root for t in model.forest.trees[:1]])[0]
    q, s = model_io.pack_root(R)
    assert q.dtype == np.int8 and q.shape == (len(R), R.shape[1] * (R.shape[1] + 1) // 2)
    Rq = model_io.unpack_root(q, s)
    assert np.all(np.triu(Rq, 1) == 0)
    np.testing.assert_allclose(Rq, R, atol=float(np.abs(R).max()) / 127)
    exact = model_io.unpack_root(*model_io.pack_root(R, exact=True))
    np.testing.assert_allclose(exact, R, rtol=1e-6, atol=1e-12)
    # compact file (float16 leaves, int8 factors): the mean barely moves, the variance within 1 %
    side = model_io.save(model, tmp_path / "biqt.npz", dtype=np.float16)
    m1, v1 = model_io.load(side).forest.predict(X, F, "biqt")
    np.testing.assert_allclose(m1, m0, rtol=0, atol=2e-3 * float(np.abs(m0).max()))
    np.testing.assert_allclose(v1, v0, rtol=1e-2)
    # a file in the earlier layout (full float32 factors under "root") still loads and predicts the same
    with np.load(tmp_path / "biqt.npz", allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    for k, t in enumerate(model.forest.trees):
        del a[f"tree{k}_root_q"], a[f"tree{k}_root_scale"]
        a[f"tree{k}_root"] = t.bayes_root.astype(np.float32)
        a[f"tree{k}_W"] = t.bayes_W.astype(np.float32)
    np.savez_compressed(tmp_path / "biqt.npz", **a)
    meta = json.loads(side.read_text())
    meta["sha256"] = checksums.sha256(tmp_path / "biqt.npz")
    model_files.write_sidecar(side, {k: v for k, v in meta.items() if k != model_files.SEAL})
    m2, v2 = model_io.load(side).forest.predict(X, F, "biqt")
    np.testing.assert_allclose(m2, m0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v2, v0, rtol=1e-4, atol=1e-7)


def test_a_model_for_r_serves_r_r_r_and_refuses_per_axis_factors(tmp_path):
    """Models are per integer factor r; per-axis factors are converted at the method's boundary."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.core.volume import Volume

    side = model_io.save(_volume_model("patch"), tmp_path / "gl.npz")
    lr, mask = _tensor_volume()
    vol, m = Volume(lr, np.diag([-2.0, 2, 2, 1]), "tensor"), Volume(mask, np.diag([-2.0, 2, 2, 1]), "mask")
    method = methods.get("global-linear", model=str(side))
    a = method.predict(vol, 2, m).tensor
    b = methods.get("global-linear", model=str(side)).predict(vol, (2, 2, 2), m).tensor
    np.testing.assert_array_equal(a.data, b.data)
    assert a.meta["factor"] == b.meta["factor"] == 2
    with pytest.raises(IQTError, match=re.escape("model is for factor 2, not 1,1,3; use --factor 2, or leave --model "
                                                 "out for the shipped model")):  # one ships for 1,1,3
        methods.get("global-linear", model=str(side)).predict(vol, (1, 1, 3), m)


def test_train_takes_the_randomisation_shares_and_records_them(small_subject, tmp_path, capsys):
    """`iqt train --subset-fraction/--noise-fraction` reach the training data and the sidecar, and change the model."""
    import json

    from ImageQualityTransferLib.apps.cli import main

    runs = (("plain", []), ("noisy", ["--subset-fraction", "1", "--noise-fraction", "1"]), ("flips", ["--flips"]))
    for name, extra in runs:
        assert main(["train", "--method", "global-linear", "--subjects", str(small_subject), "-o",
                     str(tmp_path / f"{name}.npz"), *extra]) == 0
    settings = {n: json.loads((tmp_path / f"{n}.json").read_text())["training"]["settings"] for n, _ in runs}
    assert settings["plain"]["noise_fraction"] == 0.0 and settings["noisy"]["noise_fraction"] == 1.0
    assert settings["noisy"]["subset_fraction"] == 1.0
    assert settings["flips"]["flips"] is True and settings["plain"]["flips"] is False
    assert "--flips" in json.loads((tmp_path / "flips.json").read_text())["training"]["command"]
    plain, noisy, flips = (np.load(tmp_path / f"{n}.npz") for n, _ in runs)
    assert not np.allclose(plain["gl_W"], noisy["gl_W"])
    assert not np.allclose(plain["gl_W"], flips["gl_W"])
    assert main(["train", "--method", "espcn", "--subjects", str(small_subject), "-o", str(tmp_path / "e.pt"),
                 "--flips"]) == 2  # the CNNs always train on flips: the option is refused for them
    assert "--flips: does not apply to 'espcn'" in capsys.readouterr().err


def test_train_takes_the_forest_size_and_records_it(small_subject, tmp_path, capsys):
    """`iqt train --n-trees/--max-depth/--min-leaf/--n-train/--refit-leaves/--leaf-ridge` shape the forest and reach the sidecar; CNNs and
    nonsense values are refused in one line. 1,500 examples a tree: enough for depth-2 splits of 300-example leaves,
    and the split search's time grows with them."""
    import json

    from ImageQualityTransferLib.apps.cli import main

    out = tmp_path / "rf.npz"
    assert main(["train", "--method", "rf", "--subjects", str(small_subject), "-o", str(out), "--n-trees", "3",
                 "--max-depth", "2", "--min-leaf", "300", "--n-train", "1500", "--refit-leaves", "--leaf-ridge", "0.01"]) == 0
    side = json.loads((tmp_path / "rf.json").read_text())
    settings = side["training"]["settings"]
    assert (settings["n_trees"], settings["max_depth"], settings["min_leaf"], settings["n_train"]) == (3, 2, 300, 1500)
    assert settings["refit_leaves"] is True and settings["leaf_ridge"] == 0.01
    assert side["n_trees"] == 3 and "--n-trees 3" in side["training"]["command"]
    assert side["training"]["directory"] == os.getcwd()  # where the command's relative paths are read from
    assert all(t.n_leaves <= 4 for t in model_io.load(tmp_path / "rf.json").forest.trees)  # depth 2
    capsys.readouterr()
    assert main(["train", "--method", "rf", "--subjects", str(small_subject), "-o", str(tmp_path / "x.npz"),
                 "--n-trees", "0"]) == 2
    assert "--n-trees 0: give a positive whole number" in capsys.readouterr().err
    # rf's std is the spread between its trees: one tree has none (calibrated by ~1e18, its map was noise: an audit)
    assert main(["train", "--method", "rf", "--subjects", str(small_subject), "-o", str(tmp_path / "x.npz"),
                 "--n-trees", "1"]) == 2
    err = capsys.readouterr().err
    assert "--n-trees 1: rf's uncertainty is the spread between its trees" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x.npz").exists()
    assert main(["train", "--method", "biqt", "--subjects", str(small_subject), "-o", str(tmp_path / "x.npz"),
                 "--min-leaf", "100"]) == 2
    assert "--min-leaf 100: each leaf fits a linear map of 162 inputs" in capsys.readouterr().err
    assert main(["train", "--method", "rf", "--subjects", str(small_subject), "-o", str(tmp_path / "x.npz"),
                 "--n-train", "300", "--min-leaf", "200"]) == 2  # trees of one leaf each, said nowhere (an audit)
    assert "--n-train 300 with --min-leaf 200: no split leaves 200 examples on each side" in capsys.readouterr().err
    assert main(["train", "--method", "espcn", "--subjects", str(small_subject), "-o", str(tmp_path / "e.pt"),
                 "--max-depth", "4"]) == 2
    assert "--max-depth: does not apply to 'espcn'" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "e.pt").exists()


def test_refit_leaves_fits_each_leaf_on_every_example_of_the_trees_training_subjects():
    """With `refit_leaves` the splits are the subsample's and each leaf's map is the least-squares (and the
    evidence-tuned Bayesian) fit on every example of the other subjects reaching it; the validation subject's
    examples never enter it; off, the forest is the one grown on the subsample alone."""
    from ImageQualityTransferLib.methods.forest import bayes, linear

    X, F, Y, g = _synthetic()
    kw = dict(n_trees=3, n_train=1500, n_val=500, max_depth=3, min_leaf=40, bins=8, ridge=1e-4, seed=0)
    plain = Forest(**kw).fit(X, F, Y, groups=g)
    refit = Forest(**kw, refit_leaves=True).fit(X, F, Y, groups=g)
    for t, (tp, tr) in enumerate(zip(plain.trees, refit.trees)):
        np.testing.assert_array_equal(tp.feature, tr.feature)  # the same splits
        np.testing.assert_array_equal(tp.threshold, tr.threshold)
        pool = np.flatnonzero(g != t % 3)  # tree t validates on subject t mod 3
        leaf = tr.apply(F[pool])
        for k in range(tr.n_leaves):
            rows = pool[leaf == k]
            np.testing.assert_allclose(tr.W[k], linear.fit(X[rows], Y[rows], 1e-4), rtol=1e-6, atol=1e-8)
            st = linear.stats(linear.augment(X[rows]), Y[rows])
            np.testing.assert_allclose(tr.bayes_W[k], bayes.evidence_fixed_point(*st).W, rtol=1e-6, atol=1e-8)
        assert tr.info["n_refit"] == len(pool) > tr.info["n_train"]
        assert not np.allclose(tp.W, tr.W)
    m_plain, _ = plain.predict(X[:300], F[:300], "biqt")
    m_ref, _ = refit.predict(X[:300], F[:300], "biqt")
    assert not np.allclose(m_plain, m_ref)
    ridged = Forest(**kw, refit_leaves=True, leaf_ridge=0.05, bayesian=False).fit(X, F, Y, groups=g)
    t = ridged.trees[0]  # the refit keeps the leaves' own ridge, not the split search's
    rows = np.flatnonzero(g != 0)[t.apply(F[g != 0]) == 0]
    np.testing.assert_allclose(t.W[0], linear.fit(X[rows], Y[rows], 0.05), rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def through_plane_rf(small_subject, tmp_path_factory):
    """A small rf trained for thick axial slices (factors 1,1,2 on canonical axes) on the phantom subject: its tests
    check the axes' handling (exact), not the model's quality, so it is trained on a few examples."""
    from ImageQualityTransferLib import methods

    path = tmp_path_factory.mktemp("tp") / "rf_x1x1x2.npz"
    m = methods.get("rf").fit([small_subject], (1, 1, 2), seed=0, progress=False, n_trees=2, n_train=2000,
                              n_val=500, min_leaf=200, n_calibration=2000)
    m.save(path, (1, 1, 2))
    return path


@pytest.mark.filterwarnings("ignore:the input holds tensors over the whole field of view")
def test_through_plane_model_serves_a_slice_axis_stored_in_any_voxel_axis(through_plane_rf):
    """One (1, 1, 2) model serves thick slices along R or A: the input's axes are permuted so that the thick one is
    the model's, tensor components with them, and back. A volume rotated so that its S axis lies along R gives the
    rotated output of the original, exactly; and the output grid refines the thick axis only."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.core import grid, tensors
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.dmri.phantom import make_phantom
    from ImageQualityTransferLib.dmri.dti import fit_dti

    hr = fit_dti(make_phantom(shape=(16, 18, 20), voxel_mm=3.0, n_dirs=12))
    lr = Volume(hr.data[:, :, ::2].copy(), np.diag([3.0, 3.0, 6.0, 1.0]), "tensor")
    rf = methods.get("rf", model=through_plane_rf)
    ref = rf.predict(lr, (1, 1, 2))
    assert ref.tensor.shape3 == (16, 18, 20) and np.allclose(ref.tensor.affine, grid.hr_affine(lr.affine, (1, 1, 2)))
    assert float(np.abs(ref.std.data).max()) > 0
    for order in ((2, 0, 1), (1, 2, 0)):  # the patient turned (a rotation) so that S runs along R, or along A
        P = np.eye(3)[list(order)]  # new axis k = old axis order[k]
        turned = Volume(tensors.rotate(np.transpose(lr.data, order + (3,)), P).astype(np.float32),
                        np.diag([*(np.array([3.0, 3.0, 6.0])[list(order)]), 1.0]), "tensor")
        f = tuple((1, 1, 2)[i] for i in order)
        out = methods.get("rf", model=through_plane_rf).predict(turned, f)
        assert out.tensor.shape3 == tuple(ref.tensor.shape3[i] for i in order)
        np.testing.assert_allclose(out.tensor.data, tensors.rotate(np.transpose(ref.tensor.data, order + (3,)), P),
                                   rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(out.std.data, np.transpose(ref.std.data, order), rtol=1e-5, atol=1e-9)
    with pytest.raises(IQTError, match="factors 1,1,2.*not 2,2,1"):
        methods.get("rf", model=through_plane_rf).predict(lr, (2, 2, 1))


def test_through_plane_model_through_the_cli(capsys, tmp_path, through_plane_rf):
    """`iqt upsample --factor 2,1,1 --model M` with a (1, 1, 2) model: checked before any work, run with the axes
    permuted, and the output refines voxel axis i only."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.apps.cli import main
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.dmri.dti import fit_dti
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    hr = fit_dti(make_phantom(shape=(16, 18, 20), voxel_mm=3.0, n_dirs=12))
    lr = Volume(np.ascontiguousarray(hr.data[::2]), np.diag([6.0, 3.0, 3.0, 1.0]), "tensor")
    fileio.save_tensor(lr, tmp_path / "lr.nii.gz")
    out = tmp_path / "hr.nii.gz"
    assert main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(out), "--method", "rf", "--model",
                 str(through_plane_rf), "--factor", "2,1,1"]) == 0, capsys.readouterr().err
    assert fileio.load_tensor(out).shape3 == (16, 18, 20)
    assert "factors 2,1,1: 2 along voxel axis i, R (left-right); its model for factors 1,1,2 (along S) ran with the " \
           "axes turned" in capsys.readouterr().out


@pytest.mark.parametrize("f", [(2, 2, 2), (1, 1, 3)])
def test_flipped_examples_are_the_examples_of_the_flipped_volume(f):
    """`flip_examples` turns a patch, its missing map and its target block exactly as extracting them from the turned
    volumes at the moved centre would; the split features do not change."""
    from ImageQualityTransferLib.methods import symmetry
    from ImageQualityTransferLib.methods.forest import features, patches

    rng = np.random.default_rng(4)
    lr = rng.normal(size=(7, 8, 6, 6)).astype(np.float32)
    lr[0, :, :] = 0  # missing voxels at one face
    hr = rng.normal(size=(7 * f[0], 8 * f[1], 6 * f[2], 6)).astype(np.float32)
    centres = np.argwhere(np.ones(lr.shape[:3], bool))
    X, miss = patches.extract(lr, centres, 1)
    Y = patches.to_blocks(hr, f)[tuple(centres.T)]
    F = features.volume_features(lr, 1)[tuple(centres.T)]
    ps = symmetry.transforms(f)
    which = rng.integers(len(ps), size=len(X))
    X2, miss2, Y2, C2 = patches.flip_examples(X, miss, Y, Y, f, 1, which)
    np.testing.assert_array_equal(Y2, C2)
    for t, p in enumerate(ps):
        rows = np.flatnonzero(which == t)
        lr_t, hr_t = symmetry.apply(lr, p, True), symmetry.apply(hr, p, True)
        shape = np.array(lr.shape[:3])
        moved = ((centres[rows] - (shape - 1) / 2) @ p.T + (np.array(lr_t.shape[:3]) - 1) / 2).round().astype(int)
        Xt, misst = patches.extract(lr_t, moved, 1)
        np.testing.assert_allclose(X2[rows], Xt, atol=1e-6)
        np.testing.assert_array_equal(miss2[rows], misst)
        np.testing.assert_allclose(Y2[rows], patches.to_blocks(hr_t, f)[tuple(moved.T)], atol=1e-6)
        np.testing.assert_allclose(features.volume_features(lr_t, 1)[tuple(moved.T)], F[rows], rtol=1e-4, atol=1e-5)


def test_global_linear_sidecar_says_its_map_is_float32(tmp_path):
    model, *_ = _model("global-linear")
    side = model_io.save(model, tmp_path / "gl.npz")
    assert json.loads(side.read_text())["precision"] == "float32"


def test_an_md_mode_forest_sees_every_input_in_the_same_unit(small_subject, tmp_path, capsys):
    """`iqt train --input-unit md-mode` reaches the model and its sidecar, and such a model answers an input scaled by
    k (another b-value's or scanner's overall diffusivity) with its answer to the input scaled by k, its std too (to
    the few splits that the MD mode's histogram bins move), where a "fixed"-unit model's own part of the answer
    changes by 28 %. An unknown unit is refused in one line. 2,500 examples a tree (the split search's time grows with
    them; at 4,000 the gaps were 0.015 and 0.070 against 0.39 and 0.43)."""
    import json

    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.apps.cli import main
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.dmri.subject import load_subject, make_case

    paths = {}
    for unit in ("md-mode", "fixed"):
        paths[unit] = tmp_path / f"rf_{unit}.npz"
        assert main(["train", "--method", "rf", "--subjects", str(small_subject), "-o", str(paths[unit]), "--n-trees",
                     "2", "--n-train", "2500", "--input-unit", unit]) == 0
    side = json.loads(paths["md-mode"].with_suffix(".json").read_text())
    assert side["input_unit"] == "md-mode" and side["training"]["settings"]["input_unit"] == "md-mode"
    assert "MD mode" in side["domain"] and model_io.load(paths["fixed"]).input_unit == "fixed"
    case = make_case(load_subject(small_subject), 2)
    k = 1.3
    scaled = Volume(case.lr.data * k, case.lr.affine, "tensor")
    gap = {}
    for unit in ("md-mode", "fixed"):
        rf = methods.get("rf", model=paths[unit])
        a, b = rf.predict(case.lr, 2, case.lr_mask), rf.predict(scaled, 2, case.lr_mask)
        res_a = a.tensor.data - methods.get("cubic").predict(case.lr, 2, case.lr_mask).tensor.data  # the model's part
        gap[unit] = (np.sqrt(np.mean((b.tensor.data - k * a.tensor.data) ** 2) / np.mean((k * res_a) ** 2)),
                     np.sqrt(np.mean((b.std.data - k * a.std.data) ** 2) / np.mean((k * a.std.data) ** 2)))
    assert gap["md-mode"][0] < 0.05 and gap["md-mode"][1] < 0.1  # measured 0.002 and 0.001 (a few splits flip)
    assert gap["fixed"][0] > 0.2 and gap["fixed"][1] > 0.2  # measured 0.28 and 0.37
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # argparse's choices
        main(["train", "--method", "rf", "--subjects", str(small_subject), "-o", str(tmp_path / "x.npz"),
              "--input-unit", "b-value"])
    assert exit_.value.code == 2 and "--input-unit" in capsys.readouterr().err and not (tmp_path / "x.npz").exists()
    with pytest.raises(IQTError, match="--input-unit b-value"):  # the Python API
        methods.get("rf").fit([small_subject], 2, progress=False, input_unit="b-value")


def test_a_tight_input_edge_is_answered_from_filled_context(axial_subject, monkeypatch):
    """A tightly masked fit (zeros right beside the brain): the forests fill the missing context as the CNNs do
    (methods.context), so the ring they answer beyond the input is tissue-like, not the half non-physical tensors
    that interpolating towards zeros gives, and the brain's edge (exterior) is closer to the reference."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.analysis import evaluation
    from ImageQualityTransferLib.core import tensors
    from ImageQualityTransferLib.core.grid import repeat_blocks
    from ImageQualityTransferLib.dmri.subject import Subject, make_case

    try:
        model_io.shipped("biqt", 2)
    except IQTError:
        pytest.skip("no shipped biqt model")
    s = axial_subject
    box = tuple(slice(a // 4, a // 4 + a // 2) for a in s.dwi.shape3[:2]) + (slice(None),)  # the brain's top too
    crop = Subject(s.name, s.dwi.replace(data=s.dwi.data[box]), s.mask.replace(data=s.mask.data[box]),
                   s.tensor.replace(data=s.tensor.data[box]))
    case = make_case(crop, 2, style="tight")
    given = repeat_blocks(np.any(case.lr.data != 0, axis=-1), 2)
    real = patches.prepare_input
    found = {}
    for fill in (False, True):
        monkeypatch.setattr(patches, "prepare_input", lambda lr, r, unit="fixed", fill=False, _f=fill: real(lr, r, unit, _f))
        t = methods.get("biqt").predict(case.lr, 2).tensor.data
        ring = np.any(t != 0, axis=-1) & ~given
        res = evaluation.evaluate(t, case.truth, case.hr_mask, case.lr_mask.data, 2)
        found[fill] = (float(np.mean(tensors.distance_to_physical(t)[ring] > 0)), res["exterior"]["dt_rmse"])
    assert found[False][0] > 0.2 and found[True][0] < 0.05, found
    assert found[True][1] < 0.9 * found[False][1], found


def test_a_forest_is_less_sure_where_it_answers_from_filled_context(axial_subject, monkeypatch):
    """The forests train without the context fill, so their std where a tight input was filled is raised
    (training.FILLED_STD_SCALE, measured on the training subjects): on a dev crop the error-to-std ratio there comes
    close to the one at the rest of the brain's edge, where without the raise it was well above it."""
    from helpers import filled_context_ratio
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.methods.forest import training

    raised = filled_context_ratio(axial_subject, methods.get("biqt"))
    monkeypatch.setitem(training.FILLED_STD_SCALE, "biqt", 1.0)
    plain = filled_context_ratio(axial_subject, methods.get("biqt"))
    assert plain > 1.3 and 0.6 < raised < 1.3 and raised < plain, (plain, raised)


def test_a_shipped_model_replaced_in_the_install_is_refused(tmp_path, monkeypatch):
    """A model whose weights differ from its registry entry's (written over by 'iqt train -o' into Resources/Models)
    was used as the default without a word; it is refused, naming the registry. A model outside the install's
    folder is not looked up."""
    models = tmp_path / "Models"
    models.mkdir()
    model, *_ = _model("global-linear")
    side = model_io.save(model, models / "global-linear_x2.npz")
    model_files.register(json.loads(side.read_text()), side, models)
    monkeypatch.setattr(model_files, "MODELS_DIR", models)
    model_io.load(side)  # as registered
    weights = models / "global-linear_x2.npz"
    with np.load(weights) as z:
        a = {k: z[k] for k in z.files}
    np.savez_compressed(weights, **{**a, "gl_W": a["gl_W"] + 1})
    meta = {k: v for k, v in json.loads(side.read_text()).items() if k != model_files.SEAL}
    model_files.write_sidecar(side, {**meta, "sha256": checksums.sha256(weights)})  # consistent, but not registered
    with pytest.raises(IQTError, match="it was replaced"):
        model_io.load(side)
    (tmp_path / "mine").mkdir()
    for suffix in (".npz", ".json"):
        (tmp_path / "mine" / f"global-linear_x2{suffix}").write_bytes((models / f"global-linear_x2{suffix}").read_bytes())
    model_io.load(tmp_path / "mine" / "global-linear_x2.npz")


def test_an_interrupted_save_leaves_no_weights_without_their_sidecar(tmp_path, monkeypatch):
    """A signal between the weights and the sidecar left the weights alone on disk, under 'no partial output was
    left' (training over processes); the weights go with it."""
    model, *_ = _model("global-linear")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_files, "write_sidecar", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model_io.save(model, tmp_path / "gl.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_sidecar_is_sealed_as_written(tmp_path):
    """A value JSON writes otherwise (an infinite --minutes budget as null, numpy numbers as plain ones) was sealed as
    given, so a freshly trained model was refused as edited, or the seal failed on a numpy float."""
    weights = tmp_path / "m.npz"
    weights.write_bytes(b"x")
    side = model_files.write_model(weights, lambda tmp: open(tmp, "wb").write(b"x"),
                                   {"format": "f", "budget": float("inf"), "lr": np.float32(1e-3)})
    meta = json.loads(side.read_text())
    assert meta["budget"] is None and meta[model_files.SEAL] == model_files.settings_digest(meta)


def test_a_model_over_the_load_bound_is_not_written(tmp_path, monkeypatch):
    """A forest trained past the 2 GiB every load refuses was written with exit 0 and refused at each use (a review):
    its save is refused in one line naming the options that make it smaller, and the model at that path is kept."""
    from ImageQualityTransferLib.core.errors import IQTError

    weights = tmp_path / "m.npz"
    model_files.write_model(weights, lambda tmp: open(tmp, "wb").write(b"old"), {"format": "f"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(model_files, "MAX_WEIGHTS_BYTES", 4)
    with pytest.raises(IQTError, match=r"m\.npz: the trained model's weights are 5 bytes, over .* --n-trees") as e:
        model_files.write_model(weights, lambda tmp: open(tmp, "wb").write(b"newer"), {"format": "f"})
    assert "\n" not in str(e.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_an_rf_model_of_one_tree_is_said_with_each_prediction_that_makes_maps(tmp_path, small_subject):
    """A model of one tree (trained before that was refused) gave a std map of noise, scored by `iqt benchmark` with
    exit 0 (a review): a warning names it with each prediction that makes maps; the Python API refuses 0 trees (it had
    trained the default 8)."""
    import warnings
    from pathlib import Path

    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.core.errors import IQTWarning

    model = model_io.load(Path(model_files.MODELS_DIR) / "rf_x2.npz")
    model.forest.trees = model.forest.trees[:1]
    model_io.save(model, tmp_path / "one.npz")
    from ImageQualityTransferLib.dmri import degrade, dti
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=(16, 18, 14), voxel_mm=4.0, n_dirs=12)
    lr = degrade.degrade(dwi, dti.brain_mask(dwi).data, 2).tensor
    one = methods.get("rf", model=str(tmp_path / "one.npz"))
    for uncertainty, n in ((True, 1), (True, 1), (False, 0)):  # each prediction with maps (each subject of a batch)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            one.predict(lr, 2, uncertainty=uncertainty)
        said = [str(w.message) for w in caught if issubclass(w.category, IQTWarning) and "tree" in str(w.message)]
        assert len(said) == n, said
        assert all("this rf model has 1 tree" in x and "uncertainty maps mean nothing" in x for x in said), said
    with pytest.raises(IQTError, match="--n-trees 0: give a positive whole number"):
        methods.get("rf").fit([small_subject], 2, n_trees=0, progress=False)


def test_an_rf_model_whose_uncertainty_is_off_the_inputs_scale_is_refused(tmp_path):
    """The shipped rf_x2 with variance_scale 1e38 (an audit's crafted model) wrote an SD map of median 1.5e14 mm^2/s
    and a direction map of 90 degrees everywhere with exit 0: refused in one line naming the model; a scale of 1e-30
    (falsely certain) too; the shipped scale runs."""
    from pathlib import Path

    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.dmri import degrade, dti
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=(16, 18, 14), voxel_mm=4.0, n_dirs=12)
    lr = degrade.degrade(dwi, dti.brain_mask(dwi).data, 2).tensor
    model = model_io.load(Path(model_files.MODELS_DIR) / "rf_x2.npz")
    shipped = model.forest.variance_scale
    for scale, name in ((1e38, "huge"), (1e-30, "tiny"), (shipped, "same")):
        model.forest.variance_scale = scale
        model_io.save(model, tmp_path / f"{name}.npz")
        rf = methods.get("rf", model=str(tmp_path / f"{name}.npz"))
        if name == "same":
            assert rf.predict(lr, 2, direction=True).std is not None
            continue
        with pytest.raises(IQTError, match=f"the model {tmp_path / name}.npz's uncertainty is not plausible"):
            rf.predict(lr, 2, direction=True)
