"""Completion of patches that reach outside the data (the brain's edge, the image border).

A low-res voxel is missing when its tensor is all zero (nothing was fitted there). The patch is modelled
as a Gaussian vector with the mean and covariance of the complete training patches; the missing entries
are replaced by their conditional mean given the present ones,
x_m = mu_m + S_mo S_oo^-1 (x_o - mu_o), solved once per distinct pattern of missing voxels.
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

    def complete(self, X, missing) -> np.ndarray:
        """X (N, P*6) with missing voxels (N, P) -> completed copy (rows without missing voxels unchanged)."""
        X = np.array(X, np.float32, copy=True)
        missing = np.asarray(missing, bool)
        rows = np.flatnonzero(missing.any(axis=1))
        if len(rows) == 0:
            return X
        K = X.shape[1] // missing.shape[1]
        packed = np.packbits(missing[rows], axis=1)
        patterns, inverse = np.unique(packed, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        jitter = self.ridge * np.mean(np.diag(self.cov))
        for p in range(len(patterns)):
            sel = rows[inverse == p]
            miss_vox = missing[sel[0]]
            mi = np.repeat(miss_vox, K)
            if mi.all():
                X[sel] = self.mean.astype(np.float32)
                continue
            oi = ~mi
            S_oo = self.cov[np.ix_(oi, oi)] + jitter * np.eye(oi.sum())
            S_mo = self.cov[np.ix_(mi, oi)]
            G = np.linalg.solve(S_oo, S_mo.T)  # (o, m)
            xo = X[np.ix_(sel, oi)].astype(np.float64) - self.mean[oi]
            X[np.ix_(sel, mi)] = (self.mean[mi] + xo @ G).astype(np.float32)
        return X
