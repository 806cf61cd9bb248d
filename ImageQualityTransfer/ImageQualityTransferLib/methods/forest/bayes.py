"""Bayesian linear leaves (Tanno et al. 2016): Gaussian prior N(0, alpha^-1 I) on the weights, Gaussian
noise of precision beta shared by the m outputs; alpha and beta by evidence maximisation (MacKay's fixed
point). Everything follows from the sufficient statistics (X^T X, X^T Y, Y^T Y, n):

  A = alpha I + beta X^T X,  W = beta A^-1 X^T Y  (= (X^T X + alpha/beta I)^-1 X^T Y),
  gamma = sum_i beta l_i / (alpha + beta l_i)  (l_i eigenvalues of X^T X),
  alpha = m gamma / ||W||^2,  beta = m (n - gamma) / ||Y - X W||^2,
  predictive variance of each output at x: x^T A^-1 x + 1/beta.

`NoiseScale` (below) makes the noise term input-dependent, x^T A^-1 x + h(x)/beta, for the forest's
variance map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BayesLeaf:
    W: np.ndarray  # (d, m) posterior mean
    alpha: float
    beta: float
    A_inv: np.ndarray  # (d, d) posterior covariance of each output's weights
    iterations: int

    def variance(self, Xa: np.ndarray) -> np.ndarray:
        """Predictive variance x^T A^-1 x + 1/beta for each row of Xa (with bias column)."""
        return np.einsum("ij,jk,ik->i", Xa, self.A_inv, Xa) + 1.0 / self.beta


def _terms(alpha, beta, lam, Zq, YtY_tr):
    """Posterior mean in the eigenbasis, gamma, ||W||^2 and the data misfit for (alpha, beta)."""
    den = alpha + beta * lam
    Wq = beta * Zq / den[:, None]
    gamma = float(np.sum(beta * lam / den))
    Ew = float(np.sum(Wq**2))
    Ed = float(YtY_tr - 2.0 * np.sum(Wq * Zq) + np.sum(lam[:, None] * Wq**2))
    return Wq, gamma, Ew, max(Ed, 1e-300)


def evidence_fixed_point(XtX, XtY, YtY, n, alpha=1.0, beta=None, iters=200, tol=1e-7) -> BayesLeaf:
    """alpha, beta maximising the evidence; the posterior for them."""
    XtX = np.asarray(XtX, np.float64)
    XtY = np.asarray(XtY, np.float64)
    m = XtY.shape[1]
    lam, Q = np.linalg.eigh(XtX)
    lam = np.maximum(lam, 0.0)
    Zq = Q.T @ XtY
    YtY_tr = float(np.trace(YtY))
    if beta is None:
        beta = n * m / max(YtY_tr, 1e-300)
    it = 0
    for it in range(1, iters + 1):
        Wq, gamma, Ew, Ed = _terms(alpha, beta, lam, Zq, YtY_tr)
        a_new = m * gamma / max(Ew, 1e-300)
        b_new = m * max(n - gamma, 1e-9) / Ed
        done = abs(np.log(a_new / alpha)) < tol and abs(np.log(b_new / beta)) < tol
        alpha, beta = a_new, b_new
        if done:
            break
    Wq, gamma, Ew, Ed = _terms(alpha, beta, lam, Zq, YtY_tr)
    A_inv = (Q / (alpha + beta * lam)) @ Q.T
    return BayesLeaf(Q @ Wq, float(alpha), float(beta), A_inv, it)


def log_evidence(alpha, beta, XtX, XtY, YtY, n) -> float:
    """log p(Y | alpha, beta) of the m independent outputs sharing alpha, beta. Only the tests use it, to check that
    `evidence_fixed_point` finds its maximum."""
    XtX = np.asarray(XtX, np.float64)
    XtY = np.asarray(XtY, np.float64)
    d, m = XtY.shape
    lam, Q = np.linalg.eigh(XtX)
    lam = np.maximum(lam, 0.0)
    Zq = Q.T @ XtY
    Wq, _, Ew, Ed = _terms(alpha, beta, lam, Zq, float(np.trace(YtY)))
    logdetA = float(np.sum(np.log(alpha + beta * lam)))
    return float(m * (0.5 * d * np.log(alpha) + 0.5 * n * np.log(beta) - 0.5 * logdetA - 0.5 * n * np.log(2 * np.pi))
                 - 0.5 * beta * Ed - 0.5 * alpha * Ew)


# ------------------------------------------------------------------ input-dependent noise scale
# Input-dependent noise scale for the forests' uncertainty (heteroscedastic extension of BIQT-RF).
#
# A leaf's noise variance 1/beta is one number for every patch that reaches the leaf, yet the error of a
# prediction grows with the local heterogeneity of the tensor field (edges, CSF boundaries) and with the
# diffusivity itself (CSF is noisier). `NoiseScale` models the mean squared residual of a block as
# log E[r^2 | x] = phi(x) . v with phi = [log heterogeneity of the patch around its centre (all 26
# neighbours, the 6 face neighbours), log patch variance, log centre trace, the split features, 1], fitted
# by least squares on the training residuals of the forest, and normalised to mean 1 over the training
# examples, so that h(x) / beta keeps the leaf's calibration on average while ranking patches by how hard
# they are. All inputs are invariant to rotations of the tensor frame and to flips/permutations of the
# patch axes (the per-element weights (1, 2, 1, 2, 2, 1) make the squared differences Frobenius norms).

_FROB = np.array([1, 2, 1, 2, 2, 1], np.float32)  # lower-triangular Dxx Dxy Dyy Dxz Dyz Dzz
NOISE_EPS = 1e-4


def _central(X: np.ndarray) -> np.ndarray:
    """(N, P*6) patches (any odd radius) -> (N, 27, 6) central 3^3."""
    P = X.shape[1] // 6
    s = round(P ** (1 / 3))
    if s < 3 or s**3 != P:
        raise ValueError(f"the noise scale needs patches of radius >= 1, got {P} voxels")
    c = s // 2
    return np.asarray(X, np.float32).reshape(len(X), s, s, s, 6)[:, c - 1 : c + 2, c - 1 : c + 2, c - 1 : c + 2].reshape(len(X), 27, 6)


def noise_design(X: np.ndarray, F: np.ndarray) -> np.ndarray:
    """phi(x) for each row: (N, 5 + n_features)."""
    P = _central(X)
    c = P[:, 13]
    d = ((P - c[:, None]) ** 2 * _FROB).sum(-1)
    het = d.mean(1)
    face = d[:, [4, 10, 12, 14, 16, 22]].mean(1)
    pvar = (((P - P.mean(1, keepdims=True)) ** 2) * _FROB).sum(-1).mean(1)
    trace = np.maximum(c[:, 0] + c[:, 2] + c[:, 5], 1e-3)
    cols = [np.log(het + NOISE_EPS), np.log(face + NOISE_EPS), np.log(pvar + NOISE_EPS), np.log(trace)]
    return np.concatenate([np.stack(cols, 1), np.asarray(F, np.float32), np.ones((len(X), 1), np.float32)], 1).astype(np.float64)


class NoiseScale:
    """h(x) = k exp(phi(x) . v), mean 1 over the training examples; `v=None` gives h = 1."""

    def __init__(self, v=None, k: float = 1.0):
        self.v = None if v is None else np.asarray(v, np.float64)
        self.k = float(k)

    def fit(self, X, F, R, chunk: int = 200_000) -> "NoiseScale":
        """R: (N, m) residuals of the forest on its training examples."""
        A = b = None
        for s in range(0, len(X), chunk):
            D = noise_design(X[s : s + chunk], F[s : s + chunk])
            t = np.log(np.mean(np.asarray(R[s : s + chunk], np.float64) ** 2, axis=1) + NOISE_EPS * NOISE_EPS)
            A = D.T @ D if A is None else A + D.T @ D
            b = D.T @ t if b is None else b + D.T @ t
        self.v = np.linalg.solve(A + 1e-6 * len(X) * np.eye(len(A)), b)
        self.k = 1.0
        self.k = 1.0 / float(np.mean(self(X, F)))
        return self

    def __call__(self, X, F) -> np.ndarray:
        if self.v is None:
            return np.ones(len(X), np.float32)
        z = np.clip(noise_design(X, F) @ self.v, -30.0, 30.0)
        return (self.k * np.exp(z)).astype(np.float32)
