"""Least-squares linear maps with a bias column, from data or from sufficient statistics.

`fit_stats` solves (X^T X + lambda n I') W = X^T Y (I' leaves the bias unpenalised; `ridge` = lambda is
per example, so node models of every size get the same small conditioning) and `sse_matrix` gives the
residual scatter (Y - XW)^T (Y - XW) from (X^T X, X^T Y, Y^T Y) without touching the data. Both work on
stacks of systems (leading batch axes), which is what the fast split search of `tree` uses.
"""

from __future__ import annotations

import numpy as np

DEFAULT_RIDGE = 1e-4


def augment(X: np.ndarray) -> np.ndarray:
    """Append the bias column."""
    X = np.asarray(X)
    return np.concatenate([X, np.ones((len(X), 1), X.dtype)], axis=1)


def stats(Xa: np.ndarray, Y: np.ndarray):
    """(X^T X, X^T Y, Y^T Y, n) in float64."""
    Xa = np.asarray(Xa, np.float64)
    Y = np.asarray(Y, np.float64)
    return Xa.T @ Xa, Xa.T @ Y, Y.T @ Y, len(Xa)


def _penalty(d: int) -> np.ndarray:
    p = np.ones(d)
    p[-1] = 0.0  # the bias column
    return p


def fit_stats(XtX, XtY, n, ridge: float = DEFAULT_RIDGE) -> np.ndarray:
    """Ridge-stabilised least squares W (d, m) from statistics; batched over leading axes."""
    XtX = np.asarray(XtX, np.float64)
    d = XtX.shape[-1]
    n = np.asarray(n, np.float64)
    reg = XtX + (ridge * np.maximum(n, 1.0))[..., None, None] * np.diag(_penalty(d))
    # tiny absolute jitter keeps empty or degenerate statistics solvable
    reg = reg + 1e-9 * np.eye(d)
    return np.linalg.solve(reg, np.asarray(XtY, np.float64))


def sse_matrix(XtX, XtY, YtY, W) -> np.ndarray:
    """(Y - X W)^T (Y - X W) from statistics, batched."""
    WtXtY = np.swapaxes(W, -1, -2) @ XtY
    return YtY - WtXtY - np.swapaxes(WtXtY, -1, -2) + np.swapaxes(W, -1, -2) @ XtX @ W


def fit(X, Y, ridge: float = DEFAULT_RIDGE) -> np.ndarray:
    """W (D+1, m) for the map [X, 1] -> Y."""
    XtX, XtY, _, n = stats(augment(X), Y)
    return fit_stats(XtX, XtY, n, ridge)


def predict(W, X) -> np.ndarray:
    X = np.asarray(X, np.float32)
    W = np.asarray(W, np.float32)
    return X @ W[:-1] + W[-1]


class GlobalLinear:
    """IQT-GL: one least-squares map from the whole patch (plus bias) to the r^3 block (numpy `fit`/`predict`)."""

    def __init__(self, ridge: float = DEFAULT_RIDGE):
        self.ridge = ridge
        self.W = None

    def fit(self, X, Y, chunk: int = 200_000) -> "GlobalLinear":
        XtX = XtY = None
        n = 0
        for s in range(0, len(X), chunk):
            xa = augment(np.asarray(X[s : s + chunk], np.float64))
            k = len(xa)
            a = xa.T @ xa
            b = xa.T @ np.asarray(Y[s : s + chunk], np.float64)
            XtX = a if XtX is None else XtX + a
            XtY = b if XtY is None else XtY + b
            n += k
        self.W = fit_stats(XtX, XtY, n, self.ridge)
        return self

    def predict(self, X) -> np.ndarray:
        return predict(self.W, X)
