"""Where the b0 is not where the diffusion-weighted volumes are (`check_b0`): the head moved between them, and the
brain mask made from the b0, and every tensor's S0, are off near every edge. The shift is the phase correlation of the
two images' edge maps (numpy FFT), which a b0 and a diffusion-weighted image share though their contrasts differ."""

from __future__ import annotations

import warnings

import numpy as np

from ..core.errors import IQTWarning
from ..core.i18n import _
from ..core.volume import Volume
from .dti import B0_THRESHOLD

B0_SHIFT_VOXELS = 1.0  # b0 to mean DWI distance above which one warning is given (clean real subjects: up to 0.09,
# and 1.29 on a training scan whose head drifts 2 voxels over its series; a 1-voxel shift of the 3 mm ortho dev scan's
# b0 already moves MD by a median 9 % and its mask loses 3.8 % of the brain)
EDGE_SIGMA = 1.0  # voxels: the Gaussian of the edge maps that are registered


def _edges(image: np.ndarray) -> np.ndarray:
    """Gradient magnitude of log(1 + 10 x / its 99th percentile): the head's and the ventricles' edges, which a b0 and
    a diffusion-weighted image share though their contrasts differ (CSF bright in one, dark in the other)."""
    from scipy import ndimage

    x = np.maximum(np.asarray(image, np.float64), 0.0)
    top = float(np.percentile(x, 99))
    return ndimage.gaussian_gradient_magnitude(np.log1p(10.0 * x / top if top > 0 else x), EDGE_SIGMA)


def phase_shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3,) the translation d, in voxels, with a(x) ~ b(x - d): the peak of the phase correlation of the two (Hann
    windowed), refined to a fraction of a voxel by a parabola through it and its neighbours along each axis."""
    w = np.ones(a.shape)
    for ax, n in enumerate(a.shape):
        shape = [1] * a.ndim
        shape[ax] = n
        w = w * np.hanning(n).reshape(shape)
    cross = np.fft.fftn((a - a.mean()) * w) * np.conj(np.fft.fftn((b - b.mean()) * w))
    if not np.abs(cross).max() > 0:  # a window of zeros (an axis of two voxels) or flat images: nothing to measure
        return np.zeros(a.ndim)
    r = np.real(np.fft.ifftn(cross / np.maximum(np.abs(cross), 1e-12 * np.abs(cross).max())))
    peak = np.unravel_index(int(np.argmax(r)), r.shape)
    d = np.zeros(a.ndim)
    for ax, n in enumerate(r.shape):
        at = list(peak)
        at[ax] = (peak[ax] - 1) % n
        lo = r[tuple(at)]
        at[ax] = (peak[ax] + 1) % n
        hi = r[tuple(at)]
        curve = lo - 2 * r[peak] + hi
        p = peak[ax] + (0.5 * (lo - hi) / curve if curve != 0 else 0.0)
        d[ax] = p - n if p > n / 2 else p
    return d


def b0_shift(dwi: Volume, skip=()) -> np.ndarray:
    """(3,) how far, in voxels along the voxel axes, the mean b0 lies from the mean diffusion-weighted volume (the
    volumes `skip` left out): b0(x) ~ DW(x - d)."""
    bvals = np.asarray(dwi.bvals, float)
    data = np.asarray(dwi.data)
    b0 = bvals <= B0_THRESHOLD
    dwm = ~b0
    dwm[list(skip)] = False
    if not b0.any() or not dwm.any():
        return np.zeros(3)
    return phase_shift(_edges(data[..., b0].mean(-1)), _edges(data[..., dwm].mean(-1)))


def shown_shift(n: float) -> float:
    """A b0 shift as qc.tsv shows it: recorded to 3 decimals, written to 2 (judged twice otherwise, 1.0052 was warned of
    as 1.01 while the table read 1.00: a review)."""
    return float(format(round(float(n), 3), ".2f"))


def check_b0(dwi: Volume, skip=()) -> np.ndarray:
    """One warning where the b0 lies more than B0_SHIFT_VOXELS from the diffusion-weighted volumes (`b0_shift`): the
    brain mask made from it and every tensor's S0 are then off by as much. Returns the shift."""
    d = b0_shift(dwi, skip)
    n = float(np.linalg.norm(d))
    if shown_shift(n) > B0_SHIFT_VOXELS:  # as qc.tsv shows it: a shift of 1.004 read "lies 1.0 voxels" above 1
        i, j, k = np.round(d, 1) + 0.0  # no "-0.0"
        source = dwi.source
        said = f"{n:.1f}" if round(n, 1) > B0_SHIFT_VOXELS else f"{shown_shift(n):.2f}"
        warnings.warn(source + _("the b0 lies {shift} voxels from the mean of the diffusion-weighted volumes (i {i}, j "
                                 "{j}, k {k}); the head moved between them (or during the series), so the brain mask "
                                 "(made from the b0) and the tensors are off near every edge; the upsampling's "
                                 "uncertainty does not show it (a 4-voxel shift of a 3 mm dev scan's b0 left 14.6 % of "
                                 "the brain out of its mask); correct the motion (e.g. FSL eddy or mcflirt, MRtrix "
                                 "dwifslpreproc) before fitting").format(
            shift=said, i=f"{i:+.1f}", j=f"{j:+.1f}", k=f"{k:+.1f}"), IQTWarning, stacklevel=2)
    return d
