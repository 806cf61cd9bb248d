"""Completion of patches that reach outside the data (the brain's edge, the image border).

A low-res voxel is missing when its tensor is all zero (nothing was fitted there). The patch is modelled
as a Gaussian vector with the mean and covariance of the complete training patches; the missing entries
are replaced by their conditional mean given the present ones,
x_m = mu_m + S_mo S_oo^-1 (x_o - mu_o), solved once per distinct pattern of missing voxels, through the
precision matrix's blocks where fewer entries are missing than present.
"""

from __future__ import annotations

import numpy as np


class GaussianCompletion:
    def __init__(self, mean=None, cov=None, ridge: float = 1e-4):
        self.mean = None if mean is None else np.asarray(mean, np.float64)
        self.cov = None if cov is None else np.asarray(cov, np.float64)
        self.ridge = ridge

    def fit(self, X, missing) -> "GaussianCompletion":
        full = np.asarray(X)[~np.asarray(missing).any(axis=1)].astype(np.float64)
        if len(full) < 2:
            raise ValueError("no complete patch to learn the completion from")
        self.mean = full.mean(0)
        c = full - self.mean
        self.cov = c.T @ c / (len(full) - 1)
        return self

    def _precision(self) -> np.ndarray:
        """Inverse of the ridged covariance, once per model: its blocks give the same conditional mean with a
        solve the size of the missing entries (the Schur complement), cheaper where fewer are missing."""
        if getattr(self, "_prec_of", None) is not self.cov:
            jitter = self.ridge * np.mean(np.diag(self.cov))
            self._prec = np.linalg.inv(self.cov + jitter * np.eye(len(self.cov)))
            self._prec_of = self.cov
        return self._prec

    def complete(self, X, missing) -> np.ndarray:
        """X (N, P*6) with missing voxels (N, P) -> completed copy (rows without missing voxels unchanged)."""
        X = np.array(X, np.float32, copy=True)
        missing = np.asarray(missing, bool)
        rows = np.flatnonzero(missing.any(axis=1))
        if len(rows) == 0:
            return X
        K = X.shape[1] // missing.shape[1]
        patterns, inverse = np.unique(np.packbits(missing[rows], axis=1), axis=0, return_inverse=True)
        dims = np.repeat(np.unpackbits(patterns, axis=1, count=missing.shape[1]).astype(bool), K, axis=1)
        order = np.argsort(inverse.ravel(), kind="stable")
        bounds = np.searchsorted(inverse.ravel()[order], np.arange(len(patterns) + 1))
        jitter = self.ridge * np.mean(np.diag(self.cov))
        for p, mi in enumerate(dims):
            sel = rows[order[bounds[p]:bounds[p + 1]]]
            if mi.all():
                X[sel] = self.mean.astype(np.float32)
                continue
            m, o = np.flatnonzero(mi), np.flatnonzero(~mi)
            xo = X[np.ix_(sel, o)].astype(np.float64) - self.mean[o]
            if len(m) < len(o):
                # x_m = mu_m - P_mm^-1 P_mo (x_o - mu_o), P the precision of the ridged covariance
                P = self._precision()
                fill = -np.linalg.solve(P[np.ix_(m, m)], P[np.ix_(m, o)] @ xo.T).T
            else:
                # x_m = mu_m + S_mo (S_oo + ridge)^-1 (x_o - mu_o)
                S_oo = self.cov[np.ix_(o, o)] + jitter * np.eye(len(o))
                fill = xo @ np.linalg.solve(S_oo, self.cov[np.ix_(m, o)].T)
            X[np.ix_(sel, m)] = (self.mean[m] + fill).astype(np.float32)
        return X
