"""Forests of linear-leaf trees: IQT-RF (least-squares leaves) and BIQT-RF (Bayesian leaves).

Each tree grows on its own random subsample of the patch library with a disjoint validation subsample.
Trees are combined per example with weights 1 / (mean validation residual variance of the leaf reached).
With `refit_leaves`, once a tree has grown, each leaf's model is fitted again on every example of the
subjects the tree trained on that reaches it (not only the tree's subsample), and its validation variance
recomputed: the splits come from the subsample, the leaf maps from all the data.
`rf` reports the weighted spread between the trees as its uncertainty; `biqt` the forest predictive
variance: the weighted mean over trees of x^T A^-1 x + h(x)/beta plus the weighted spread of the tree means
(the variance of the mixture of the trees' Gaussian predictions), h the input-dependent noise scale of
`bayes.NoiseScale` (1 when absent). Either variance is multiplied by `variance_scale`, fitted after training
(`calibrate`) so that about 95 % of the training errors lie within 2 sigma (the raw spread of a few trees is
far narrower than the error).
"""

from __future__ import annotations

import time

import numpy as np

from . import block_sigma, linear, tree
from .bayes import NoiseScale

DEFAULTS = dict(n_trees=8, n_train=40_000, n_val=10_000, max_depth=6, min_leaf=None, bins=24,
                ridge=linear.DEFAULT_RIDGE, leaf_ridge=None, refit_leaves=False)


class Forest:
    """`fit(X, F, Y)` on completed patches X, split features F, residual targets Y; `predict(X, F, kind)`."""

    def __init__(self, n_trees=8, n_train=40_000, n_val=10_000, max_depth=6, min_leaf=None, bins=24,
                 ridge=linear.DEFAULT_RIDGE, seed=0, bayesian=True, leaf_ridge=None, refit_leaves=False):
        self.params = dict(n_trees=n_trees, n_train=n_train, n_val=n_val, max_depth=max_depth, min_leaf=min_leaf,
                           bins=bins, ridge=ridge, seed=seed, leaf_ridge=leaf_ridge, refit_leaves=bool(refit_leaves))
        self.bayesian = bayesian
        self.trees: list[tree.Tree] = []
        self.noise: NoiseScale | None = None  # biqt: input-dependent scale of the leaves' noise variance
        self.variance_scale = 1.0  # calibration of the returned variance (rf: spread between trees; biqt: total)
        self.patch_cols: int | None = None  # leading columns of X that form the patch (the noise scale's input); None = all

    def fit(self, X, F, Y, groups=None, log=None, progress=None) -> "Forest":
        """With `groups` (subject of each example) and at least two subjects, tree t validates on subject
        t mod G and trains on the others, so a split must help on a subject the tree has not seen."""
        p = self.params
        rng = np.random.default_rng(p["seed"])
        N = len(X)
        ug = np.unique(groups) if groups is not None else np.zeros(1)
        self.trees = []
        for t in range(p["n_trees"]):
            t0 = time.perf_counter()
            if len(ug) > 1:
                vg = ug[t % len(ug)]
                pool_t = rng.permutation(np.flatnonzero(groups != vg))
                pool_v = rng.permutation(np.flatnonzero(groups == vg))
                tr = np.sort(pool_t[: min(p["n_train"], len(pool_t))])
                va = np.sort(pool_v[: min(p["n_val"], len(pool_v))])
                pool = pool_t
            else:
                perm = rng.permutation(N)
                nt = min(p["n_train"], int(0.8 * N))
                nv = min(p["n_val"], N - nt)
                tr, va = np.sort(perm[:nt]), np.sort(perm[nt : nt + nv])
                pool = np.concatenate([perm[:nt], perm[nt + nv :]])
            self.trees.append(tree.grow(linear.augment(X[tr]), Y[tr], F[tr], linear.augment(X[va]), Y[va], F[va],
                                        max_depth=p["max_depth"], min_leaf=p["min_leaf"], bins=p["bins"],
                                        ridge=p["ridge"], bayesian=self.bayesian, leaf_ridge=p["leaf_ridge"]))
            if p["refit_leaves"]:
                tree.refit_leaves(self.trees[-1], X, Y, F, np.sort(pool), linear.augment(X[va]), Y[va], F[va],
                                  ridge=p["ridge"] if p["leaf_ridge"] is None else p["leaf_ridge"],
                                  bayesian=self.bayesian)
            if log:
                info = self.trees[-1].info
                log(f"tree {t + 1}/{p['n_trees']}: {info['n_leaves']} leaves, depth {info['depth']}, "
                    f"{time.perf_counter() - t0:.0f} s")
            if progress is not None:
                progress(t + 1, p["n_trees"])
        return self

    def predict(self, X, F, kind: str = "rf"):
        """Mean (N, m) and variance (N, m) in the target's units; kind "rf" or "biqt"."""
        Xa = linear.augment(np.asarray(X, np.float32))
        num = den = None
        means, weights, tvars = [], [], []
        h = self.noise(self._patch(X), F) if (kind == "biqt" and self.noise is not None) else None
        for t in self.trees:
            leaf = t.apply(F)
            if kind == "biqt":
                mu = np.empty((len(Xa), t.bayes_W.shape[2]), np.float32)
                w = 1.0 / np.maximum(t.bayes_val_var[leaf], 1e-12)
                var = np.empty(len(Xa), np.float32)
                W, roots = t.bayes_W, t.bayes_root

                def fn(L, rows, mu=mu, var=var, W=W, roots=roots):  # the mean and the variance from one gather of the rows
                    x = Xa[rows]
                    mu[rows] = x @ W[L].astype(np.float32)  # as tree.predict_leaves
                    z = x @ roots[L]
                    var[rows] = np.einsum("ij,ij->i", z, z)

                tree._group_apply(leaf, t.n_leaves, fn)
                noise = (1.0 / t.bayes_beta[leaf]).astype(np.float32)
                var += noise if h is None else noise * h
                tvars.append(var)
            else:
                mu = tree.predict_leaves(t.W, Xa, leaf)
                w = 1.0 / np.maximum(t.val_var[leaf], 1e-12)
            w = w.astype(np.float32)
            means.append(mu)
            weights.append(w)
            num = mu * w[:, None] if num is None else num + mu * w[:, None]
            den = w if den is None else den + w
        mean = num / den[:, None]
        spread = sum(w[:, None] * (mu - mean) ** 2 for mu, w in zip(means, weights)) / den[:, None]
        if kind == "biqt":
            within = sum(w * v for w, v in zip(weights, tvars)) / den
            spread = spread + within[:, None]
        return mean, spread * np.float32(self.variance_scale)

    def calibrate(self, X, F, R, kind: str, block: int, coverage: float = 0.954, base=None) -> None:
        """After training, on (a subsample of) the training examples with residual targets R: for biqt the
        input-dependent noise scale, then for either kind the variance scale that puts `coverage` of the
        element errors within 2 sigma (sigma per high-res voxel, as the uncertainty map gives it). `base` (N, block * 6):
        the prediction less the forest's part; given, sigma is spread within each block by the predicted tensor
        (`block_sigma.spread`) as the prediction spreads it."""
        self.variance_scale = 1.0
        if kind == "biqt":
            self.noise = None
            mu, _ = self.predict(X, F, "biqt")
            self.noise = NoiseScale().fit(self._patch(X), F, R - mu)
        mu, s = self.predict(X, F, kind)
        err = np.abs(R - mu).reshape(len(R), block, -1)
        sig = np.sqrt(np.maximum(s.reshape(len(R), block, -1).mean(-1, keepdims=True), 1e-20))
        if base is not None:
            t = (np.asarray(base, np.float32) + mu).reshape(len(R), block, -1)
            sig = np.maximum(block_sigma.spread(sig[..., 0], t), 1e-10)[..., None]
        c = float(np.quantile(err / sig, coverage)) / 2.0
        self.variance_scale = c * c

    def _patch(self, X):
        return X if self.patch_cols is None else X[:, : self.patch_cols]

    @property
    def n_leaves(self) -> int:
        return sum(t.n_leaves for t in self.trees)
