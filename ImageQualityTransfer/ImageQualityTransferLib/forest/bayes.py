"""Bayesian linear leaves (Tanno et al. 2016): Gaussian prior N(0, alpha^-1 I) on the weights, Gaussian
noise of precision beta shared by the m outputs; alpha and beta by evidence maximisation (MacKay's fixed
point). Everything follows from the sufficient statistics (X^T X, X^T Y, Y^T Y, n):

  A = alpha I + beta X^T X,  W = beta A^-1 X^T Y  (= (X^T X + alpha/beta I)^-1 X^T Y),
  gamma = sum_i beta l_i / (alpha + beta l_i)  (l_i eigenvalues of X^T X),
  alpha = m gamma / ||W||^2,  beta = m (n - gamma) / ||Y - X W||^2,
  predictive variance of each output at x: x^T A^-1 x + 1/beta.
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
    """log p(Y | alpha, beta) of the m independent outputs sharing alpha, beta (for checks and tests)."""
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
