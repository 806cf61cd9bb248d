"""Regression tree whose nodes hold linear models (IQT-RF, Alexander et al.).

Split criterion: information gain I = N log det S(parent) - N_L log det S(left) - N_R log det S(right),
S the residual covariance of the node's least-squares linear model. A split is kept only if the error
of the children's models on the node's validation examples is below the parent model's; children must
hold at least `min_leaf` (> input dimension) training examples; depth is capped.

Fast split search: for each feature the node's examples are sorted and cut into at most `bins` quantile
bins; per-bin sufficient statistics (X^T X, X^T Y, Y^T Y, n) are accumulated once, and their cumulative
sums give every candidate threshold's left and right statistics, hence the ridge least-squares fits and
residual covariances of all thresholds in one batched solve, without refitting on the data
(`split_gains`; `split_gains_bruteforce` is the slow reference the tests compare it with).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import bayes, linear

LOGDET_JITTER = 1e-8


def _logdet_cov(sse, n):
    m = sse.shape[-1]
    S = sse / np.maximum(np.asarray(n, np.float64), 1.0)[..., None, None] + LOGDET_JITTER * np.eye(m)
    sign, ld = np.linalg.slogdet(S)
    return np.where(sign > 0, ld, -np.inf)


def node_fit(XtX, XtY, YtY, n, ridge):
    W = linear.fit_stats(XtX, XtY, n, ridge)
    return W, _logdet_cov(linear.sse_matrix(XtX, XtY, YtY, W), n)


def candidate_cuts(values_sorted: np.ndarray, bins: int, min_leaf: int) -> np.ndarray:
    """Positions p (left = first p sorted examples) at quantiles, moved to ends of runs of ties."""
    n = len(values_sorted)
    if n < 2 * min_leaf:
        return np.zeros(0, int)
    q = np.unique(np.linspace(0, n, bins + 1)[1:-1].astype(int))
    q = q[(q > 0) & (q < n)]
    # threshold value_sorted[p-1]: everything <= it goes left
    pos = np.searchsorted(values_sorted, values_sorted[q - 1], side="right")
    pos = np.unique(pos)
    return pos[(pos >= min_leaf) & (pos <= n - min_leaf)]


def split_gains(Xa, Y, F, total, bins=24, min_leaf=10, ridge=linear.DEFAULT_RIDGE):
    """All candidate splits of a node from binned sufficient statistics.

    Returns a list of (feature, threshold, gain, (W_left, W_right)) for every candidate; `total` is the
    node's (XtX, XtY, YtY, n, logdet S)."""
    XtX, XtY, YtY, n, ld = total
    out = []
    for f in range(F.shape[1]):
        order = np.argsort(F[:, f], kind="stable")
        vs = F[order, f]
        pos = candidate_cuts(vs, bins, min_leaf)
        if len(pos) == 0:
            continue
        xs = Xa[order]
        ys = Y[order]
        edges = np.concatenate([[0], pos])
        segs_xx, segs_xy, segs_yy = [], [], []
        for a, b in zip(edges[:-1], edges[1:]):
            xa = xs[a:b]
            ya = ys[a:b]
            segs_xx.append(xa.T @ xa)
            segs_xy.append(xa.T @ ya)
            segs_yy.append(ya.T @ ya)
        LxX = np.cumsum(np.stack(segs_xx), 0)
        LxY = np.cumsum(np.stack(segs_xy), 0)
        LyY = np.cumsum(np.stack(segs_yy), 0)
        nL = pos.astype(np.float64)
        nR = n - nL
        WL, ldL = node_fit(LxX, LxY, LyY, nL, ridge)
        WR, ldR = node_fit(XtX - LxX, XtY - LxY, YtY - LyY, nR, ridge)
        gain = n * ld - nL * ldL - nR * ldR
        for k, p in enumerate(pos):
            out.append((f, float(vs[p - 1]), float(gain[k]), (WL[k], WR[k])))
    return out


def split_gains_bruteforce(Xa, Y, F, bins=24, min_leaf=10, ridge=linear.DEFAULT_RIDGE):
    """The same candidates as `split_gains`, each refitted from the data (slow; for tests)."""
    XtX, XtY, YtY, n = linear.stats(Xa, Y)
    _, ld = node_fit(XtX, XtY, YtY, n, ridge)
    out = []
    for f in range(F.shape[1]):
        vs = np.sort(F[:, f], kind="stable")
        for p in candidate_cuts(vs, bins, min_leaf):
            thr = vs[p - 1]
            left = F[:, f] <= thr
            gains = []
            for sel in (left, ~left):
                W = linear.fit(Xa[sel][:, :-1], Y[sel], ridge)
                res = Y[sel] - Xa[sel] @ W
                gains.append(sel.sum() * _logdet_cov(res.T @ res, sel.sum()))
            out.append((f, float(thr), float(n * ld - gains[0] - gains[1])))
    return out


@dataclass
class Tree:
    """Flat arrays: node k is a leaf when left[k] < 0; leaf[k] indexes the leaf models."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf: np.ndarray
    W: np.ndarray  # (L, d, m) least-squares leaf models
    val_var: np.ndarray  # (L,) mean validation residual variance of each leaf (least-squares model)
    bayes_W: np.ndarray | None = None  # (L, d, m) posterior means
    bayes_A_inv: np.ndarray | None = None  # (L, d, d)
    bayes_beta: np.ndarray | None = None  # (L,)
    bayes_alpha: np.ndarray | None = None
    bayes_val_var: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    bayes_root_: np.ndarray | None = None  # (L, d, d) lower Cholesky factors of A^-1 (float32), made on demand

    @property
    def bayes_root(self) -> np.ndarray:
        if self.bayes_root_ is None:
            d = self.bayes_A_inv.shape[1]
            jit = 1e-12 * np.eye(d)
            self.bayes_root_ = np.stack([np.linalg.cholesky(np.asarray(a, np.float64) + jit)
                                         for a in self.bayes_A_inv]).astype(np.float32)
        return self.bayes_root_

    @property
    def n_leaves(self) -> int:
        return len(self.W)

    @property
    def depth(self) -> int:
        return int(self.info.get("depth", 0))

    def check(self, n_features: int) -> None:
        """ValueError unless the arrays make a tree `apply` can descend: every child after its parent (as `grow` numbers
        them, so no descent loops), features and leaves in range, thresholds finite. A model whose children pointed
        back to the root made `iqt upsample` run for ever (a fresh-eyes audit)."""
        n = len(self.left)
        if n == 0 or any(len(a) != n for a in (self.feature, self.threshold, self.right, self.leaf)):
            raise ValueError("the tree's node arrays differ in length")
        inner, k = self.left >= 0, np.arange(n)
        if np.any(inner & ((self.left <= k) | (self.left >= n) | (self.right <= k) | (self.right >= n))):
            raise ValueError("a node's child index is not after it in the tree")
        if np.any(inner & ((self.feature < 0) | (self.feature >= n_features))) or not np.isfinite(self.threshold[inner]).all():
            raise ValueError("a split's feature or threshold is out of range")
        if np.any(~inner & ((self.leaf < 0) | (self.leaf >= self.n_leaves))):
            raise ValueError("a leaf index is out of range")

    def apply(self, F: np.ndarray) -> np.ndarray:
        """Leaf index reached by each row of features F (vectorised descent)."""
        node = np.zeros(len(F), np.int64)
        while True:
            inner = self.left[node] >= 0
            if not inner.any():
                break
            ni = node[inner]
            go_left = F[np.flatnonzero(inner), self.feature[ni]] <= self.threshold[ni]
            node[inner] = np.where(go_left, self.left[ni], self.right[ni])
        return self.leaf[node]


def _group_apply(leaf_ids, n_leaves, fn):
    """Call fn(leaf, rows) for each leaf with rows."""
    order = np.argsort(leaf_ids, kind="stable")
    bounds = np.searchsorted(leaf_ids[order], np.arange(n_leaves + 1))
    for L in range(n_leaves):
        a, b = bounds[L], bounds[L + 1]
        if b > a:
            fn(L, order[a:b])


def predict_leaves(W: np.ndarray, Xa: np.ndarray, leaf_ids: np.ndarray) -> np.ndarray:
    """Row i of the output: Xa[i] @ W[leaf_ids[i]] (batched per leaf)."""
    out = np.empty((len(Xa), W.shape[2]), np.float32)

    def fn(L, rows):
        out[rows] = Xa[rows] @ W[L].astype(np.float32)

    _group_apply(leaf_ids, len(W), fn)
    return out


def _finish_leaf(t: Tree, k: int, st, Xv, Yv, bayesian: bool, min_val: int) -> None:
    """Leaf k's validation variance (its least-squares model t.W[k]) and, if `bayesian`, its evidence-tuned
    Bayesian model, from its training statistics `st` = (X^T X, X^T Y, Y^T Y, n) and its validation rows."""
    XtX, XtY, YtY, n = st
    m = XtY.shape[1]

    def vvar(Wm, fallback):
        return float(np.mean((Yv - Xv @ Wm) ** 2)) if len(Yv) >= min_val else fallback

    t.val_var[k] = vvar(t.W[k], float(np.trace(linear.sse_matrix(XtX, XtY, YtY, t.W[k]))) / (n * m))
    if bayesian:
        b = bayes.evidence_fixed_point(XtX, XtY, YtY, n)
        t.bayes_W[k], t.bayes_A_inv[k], t.bayes_beta[k], t.bayes_alpha[k] = b.W, b.A_inv, b.beta, b.alpha
        t.bayes_val_var[k] = vvar(b.W, 1.0 / b.beta)


def grow(Xa, Y, F, Xv, Yv, Fv, max_depth=6, min_leaf=None, bins=24, ridge=linear.DEFAULT_RIDGE,
         min_gain=0.0, bayesian=True, min_val=20, log=None, leaf_ridge=None) -> Tree:
    """Grow one tree on training examples (Xa with bias column, Y, features F) with validation (Xv, Yv, Fv).

    `ridge` conditions the node models of the split search; `leaf_ridge` (default: `ridge`) those the
    finished leaves keep (the least-squares models; the Bayesian ones tune their own prior)."""
    Xa = np.asarray(Xa, np.float64)
    Y = np.asarray(Y, np.float64)
    Xv = np.asarray(Xv, np.float64)
    Yv = np.asarray(Yv, np.float64)
    d = Xa.shape[1]
    if min_leaf is None:
        min_leaf = 2 * d
    if min_leaf <= d - 1:
        raise ValueError(f"min_leaf {min_leaf} must exceed the input dimension {d - 1}")
    feature, threshold, left, right, leaf = [], [], [], [], []
    leaves = []  # (idx, vidx, stats, W)

    def new_node():
        for lst, v in ((feature, -1), (threshold, 0.0), (left, -1), (right, -1), (leaf, -1)):
            lst.append(v)
        return len(feature) - 1

    XtX, XtY, YtY, n = linear.stats(Xa, Y)
    W0, ld0 = node_fit(XtX, XtY, YtY, n, ridge)
    stack = [(new_node(), np.arange(len(Xa)), np.arange(len(Xv)), (XtX, XtY, YtY, n, ld0), W0, 0)]
    max_d = 0
    n_rejected_val = 0
    while stack:
        node, idx, vidx, st, W, depth = stack.pop()
        max_d = max(max_d, depth)
        best = None
        if depth < max_depth and len(idx) >= 2 * min_leaf:
            cands = split_gains(Xa[idx], Y[idx], F[idx], st, bins, min_leaf, ridge)
            if cands:
                best = max(cands, key=lambda c: c[2])
                if not np.isfinite(best[2]) or best[2] <= min_gain:
                    best = None
        if best is not None:
            f, thr, gain, (WL, WR) = best
            vl = Fv[vidx, f] <= thr
            ok = len(vidx) >= min_val
            if ok:
                parent_err = np.sum((Yv[vidx] - Xv[vidx] @ W) ** 2)
                child_err = (np.sum((Yv[vidx[vl]] - Xv[vidx[vl]] @ WL) ** 2)
                             + np.sum((Yv[vidx[~vl]] - Xv[vidx[~vl]] @ WR) ** 2))
                ok = child_err < parent_err
            if not ok:
                n_rejected_val += 1
                best = None
        if best is None:
            leaf[node] = len(leaves)
            leaves.append((idx, vidx, st, W))
            continue
        tl = F[idx, f] <= thr
        feature[node], threshold[node] = f, thr
        for side, sel, vsel, Wc in (("L", tl, vl, WL), ("R", ~tl, ~vl, WR)):
            ci = idx[sel]
            cst = linear.stats(Xa[ci], Y[ci])
            cst = cst + (node_fit(*cst, ridge)[1],)
            child = new_node()
            if side == "L":
                left[node] = child
            else:
                right[node] = child
            stack.append((child, ci, vidx[vsel], cst, Wc, depth + 1))

    L = len(leaves)
    if leaf_ridge is not None and leaf_ridge != ridge:
        leaves = [(i_, v_, st_, linear.fit_stats(st_[0], st_[1], st_[3], leaf_ridge)) for i_, v_, st_, _ in leaves]
    Ws = np.stack([lv[3] for lv in leaves])
    bW = np.empty_like(Ws) if bayesian else None
    bA = np.empty((L, d, d)) if bayesian else None
    beta, alpha, bval = (np.empty(L), np.empty(L), np.empty(L)) if bayesian else (None, None, None)
    t = Tree(np.array(feature, np.int16), np.array(threshold, np.float32), np.array(left, np.int32),
             np.array(right, np.int32), np.array(leaf, np.int32), Ws, np.empty(L), bW, bA, beta, alpha, bval,
             info={"depth": max_d, "n_leaves": L, "rejected_by_validation": n_rejected_val,
                   "n_train": len(Xa), "n_val": len(Xv)})
    for k, (_, vidx, st, _) in enumerate(leaves):
        _finish_leaf(t, k, st[:4], Xv[vidx], Yv[vidx], bayesian, min_val)
    if log:
        log(f"    tree: {L} leaves, depth {max_d}, {n_rejected_val} splits rejected by validation")
    return t


def refit_leaves(t: Tree, X, Y, F, rows, Xv, Yv, Fv, ridge=linear.DEFAULT_RIDGE, bayesian=True, min_val=20,
                 chunk: int = 100_000) -> Tree:
    """Refit the leaf models of a grown tree `t` in place on X[rows] (patches without the bias column), Y[rows],
    routed by F[rows]; the validation variances are recomputed on (Xv with bias, Yv, Fv). A leaf no row reaches
    keeps its model."""
    d, m = t.W.shape[1], t.W.shape[2]
    L = t.n_leaves
    XtX, XtY = np.zeros((L, d, d)), np.zeros((L, d, m))
    YtY, n = np.zeros((L, m, m)), np.zeros(L)
    for s in range(0, len(rows), chunk):
        r = rows[s : s + chunk]
        xa = linear.augment(np.asarray(X[r], np.float64))
        y = np.asarray(Y[r], np.float64)
        leaf = t.apply(F[r])

        def acc(k, sel):
            xs, ys = xa[sel], y[sel]
            XtX[k] += xs.T @ xs
            XtY[k] += xs.T @ ys
            YtY[k] += ys.T @ ys
            n[k] += len(sel)

        _group_apply(leaf, L, acc)
    vleaf = t.apply(Fv)
    Xv = np.asarray(Xv, np.float64)
    Yv = np.asarray(Yv, np.float64)
    for k in np.flatnonzero(n > 0):
        t.W[k] = linear.fit_stats(XtX[k], XtY[k], n[k], ridge)
        vrows = vleaf == k
        _finish_leaf(t, k, (XtX[k], XtY[k], YtY[k], n[k]), Xv[vrows], Yv[vrows], bayesian and t.bayes_W is not None,
                     min_val)
    t.bayes_root_ = None
    t.info["n_refit"] = int(n.sum())
    return t
