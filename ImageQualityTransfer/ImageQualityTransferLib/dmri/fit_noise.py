"""The noise of a DTI fit: the per-voxel standard deviation of each fitted tensor element, from the residuals of its
DWIs. The benchmark reports the reference's as its noise floor (analysis/evaluation.py); the CNNs' training can
leave it out of their predicted variance (methods/cnn/training.py, reference noise)."""

from __future__ import annotations

import numpy as np

from ..core.errors import IQTError
from ..core.volume import as_array as _array
from .dti import B0_THRESHOLD, unit_design

_CHUNK = 32768  # voxels per block in `noise_floor`


def design_matrix(bvals, bvecs) -> np.ndarray:
    """(N,7) log-signal design: -b times `dti.unit_design` (the 6 elements of g g^T, lower-triangular, off-diagonals
    doubled; zero for a volume without a direction), and 1."""
    b = np.asarray(bvals, dtype=np.float64).ravel()
    g = np.asarray(bvecs, dtype=np.float64).reshape(-1, 3)
    if g.shape[0] != b.size:
        raise IQTError(f"{b.size} b-values but {g.shape[0]} gradient directions")
    dw = b > B0_THRESHOLD
    if dw.sum() < 6:  # with fewer the noise floor comes out NaN
        raise IQTError(f"only {dw.sum()} diffusion-weighted volumes (b > {B0_THRESHOLD:g}); the fit's noise floor needs "
                       "the DWI the reference tensors were fitted from, with at least 6 directions")
    if np.any(np.linalg.norm(g, axis=1)[dw] < 1e-6):
        raise IQTError("some diffusion-weighted volumes have a zero gradient direction; check the bvec file")
    # every volume at its own b-value and direction, as the fit takes them (a low-b one too: dti.gradient_table)
    return np.column_stack([-b[:, None] * unit_design(g), np.ones_like(b)])


def no_floor_reason(bvals) -> str | None:
    """Why a series' fit leaves no residual to estimate its noise floor from (7 volumes or fewer: 7 unknowns, e.g. a
    b0 and 6 directions, fitted exactly), None where it leaves some. `iqt benchmark`, `demo` and `report` then score
    without the floor (analysis/benchmark.py score_case); `iqt evaluate --dwi` refuses."""
    b = np.asarray(bvals, float).ravel()
    if b.size > 7:
        return None
    dw = int((b > B0_THRESHOLD).sum())
    return (f"its {b.size} volumes ({b.size - dw} b0 and {dw} directions) fit the tensor's 7 unknowns exactly, leaving "
            "no residual to estimate the reference's noise floor from (a second b0 or more directions would)")


def noise_floor(dwi_data, bvals, bvecs, tensor, mask) -> np.ndarray:
    """Per-voxel standard deviation (X,Y,Z,6, mm^2/s) of each fitted tensor element of a WLS log-signal fit.

    Error propagation: with the (N,7) design X (`design_matrix`), beta = (tensor, log S0), the predicted
    signal S_hat = exp(X beta), the residual noise sigma^2 = sum((S - S_hat)^2) / (N - 7) and
    Cov(beta) = sigma^2 (X^T diag(S_hat^2) X)^-1 (log-signal noise sigma / S_hat). log S0 is not stored
    with the tensor: it is the signal-space least-squares S0 given the tensor,
    S0 = sum(S e) / sum(e^2) with e = exp(X_D d). Voxels outside `mask` are 0; voxels where the system
    is singular (no signal) are NaN. Negative signal is clipped to 0, as for the fit itself.
    """
    data = _array(dwi_data)
    t = _array(tensor)
    m = _array(mask, bool)
    if data.ndim != 4 or t.shape[:3] != data.shape[:3] or m.shape != data.shape[:3] or t.shape[-1] != 6:
        raise IQTError(
            f"the DWI {data.shape}, tensors {t.shape} and mask {m.shape} must share one (X,Y,Z) grid"
        )
    X = design_matrix(bvals, bvecs)
    n = X.shape[0]
    if n != data.shape[3]:
        raise IQTError(f"the DWI has {data.shape[3]} volumes but the gradient table {n}")
    if no_floor_reason(bvals):
        raise IQTError(f"the DWI: {no_floor_reason(bvals)}")
    # Scale columns so that the 7x7 systems are well conditioned; undo on the variances.
    scale = np.abs(X).max(axis=0)
    scale[scale == 0] = 1.0
    Xs = X / scale
    XD = X[:, :6]
    out = np.zeros(m.shape + (6,), dtype=np.float64)
    idx = np.flatnonzero(m)
    flat_data = data.reshape(-1, n)
    flat_t = t.reshape(-1, 6)
    for start in range(0, idx.size, _CHUNK):
        sel = idx[start : start + _CHUNK]
        S = np.maximum(flat_data[sel].astype(np.float64), 0.0)  # (v,N)
        d = flat_t[sel].astype(np.float64)  # (v,6)
        with np.errstate(all="ignore"):
            e = np.exp(d @ XD.T)  # (v,N) attenuation
            s0 = (S * e).sum(axis=1) / (e * e).sum(axis=1)
            s_hat = s0[:, None] * e
            sigma2 = ((S - s_hat) ** 2).sum(axis=1) / (n - 7)
            A = np.einsum("ni,vn,nj->vij", Xs, s_hat**2, Xs)
            A = np.where(np.isfinite(A), A, 0.0)
            w, V = np.linalg.eigh(A)
            wmax = w[:, -1:]
            good = (w[:, 0] > 1e-12 * wmax[:, 0]) & (wmax[:, 0] > 0) & np.isfinite(sigma2)
            inv_w = np.where(w > 1e-12 * wmax, 1.0 / np.where(w > 0, w, 1.0), 0.0)
            diag = np.einsum("vik,vk->vi", V**2, inv_w)[:, :6] / scale[:6] ** 2
            var = sigma2[:, None] * diag
        var[~good] = np.nan
        out.reshape(-1, 6)[sel] = np.sqrt(np.maximum(var, 0.0))
    return out
