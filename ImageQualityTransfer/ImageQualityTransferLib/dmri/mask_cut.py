"""Whether a given brain mask cuts the brain: the brain the DWI's own b0 shows (`dti.brain_mask`) lying beyond the
mask's outline by more than a voxel, said in one warning where a DWI is fitted in a user's mask (`iqt fit`, `degrade`,
`batch`, the Slicer module). The tensors are zero beyond the mask, so only the DWI can tell (docs/inputs.md)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..core.errors import IQTError, IQTWarning
from ..core.i18n import _
from ..core.volume import Volume
from .dti import B0_THRESHOLD, brain_mask, fill_slice_holes, mean_b0

MARGIN = 1  # voxels beyond the mask's outline not counted: a mask one voxel tighter than the b0's brain is a fair one
BRIGHT = 0.7  # of the b0's median over its brain: a voxel this bright is brain, not the partial-volume edge or scalp
# the share of the b0's brain beyond that margin, that bright and tissue (TISSUE_ADC) said, on the 8 real subjects: the
# fair masks at most 0.012, dipy's median_otsu on the mean DWI at most 0.008, its tutorial settings on x2 low-res b0s
# from 0.023, eroded by 2 at native resolution from 0.012 (docs/measurements.md, A mask that cuts the brain)
CUT_SHARE = 0.015
MIN_VOXELS = 50  # fewer voxels beyond it are not said, whatever their share (a slab's few)
# of those bright voxels only tissue counts: an apparent diffusion coefficient (-ln(S / b0) / b over the diffusion-
# weighted volumes) under this, in mm^2/s; CSF reads about 3e-3, so a fair mask made on the mean DWI, which leaves out the CSF
# rim, is not said (docs/measurements.md, A mask that cuts the brain)
TISSUE_ADC = 1.2e-3


@dataclass
class Cut:
    """What of the b0's brain (`brain` voxels) the mask leaves out: `outside` its outline, `beyond` that by more
    than MARGIN voxels, as bright as brain (BRIGHT) and tissue by its ADC (TISSUE_ADC), as shares of `brain`."""

    brain: int
    outside: float
    beyond: float
    beyond_voxels: int

    @property
    def cuts(self) -> bool:
        return self.beyond >= CUT_SHARE and self.beyond_voxels >= MIN_VOXELS


def brain_cut(dwi: Volume, mask) -> Cut | None:
    """How much of the brain median Otsu finds on `dwi`'s b0 lies outside `mask` (on the DWI's grid), its enclosed
    holes (an `--as-benchmark` mask's ventricles) counted as inside; None where no brain is found on the b0. Beyond
    the margin only voxels as bright as brain count: at x2 of the 3 mm scans the b0's brain takes in the dim outer
    voxels of a high-res mask reduced to that grid, 3.5-4.9 % of it beyond a voxel (the tutorial mask: 6.8 % from)."""
    from scipy import ndimage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IQTWarning)  # a skull-stripped DWI's line: the fit says its own
            own = np.asarray(brain_mask(dwi).data, bool)
    except IQTError:  # a b0 without contrast: the fit in the given mask goes on, and nothing is judged
        return None
    m = fill_slice_holes(ndimage.binary_fill_holes(np.asarray(getattr(mask, "data", mask), bool)))
    n = int(own.sum())
    if n == 0 or m.shape != own.shape:
        return None
    near = ndimage.binary_dilation(m, ndimage.generate_binary_structure(3, 1), iterations=MARGIN)
    b0 = mean_b0(dwi)
    bright = own & ~near & (b0 >= BRIGHT * float(np.median(b0[own])))
    beyond = int(np.count_nonzero(apparent_diffusion(dwi, bright, b0) < TISSUE_ADC))
    return Cut(n, float((own & ~m).sum()) / n, beyond / n, beyond)


def apparent_diffusion(dwi: Volume, where, b0) -> np.ndarray:
    """Each voxel of `where`: the mean over diffusion-weighted volumes of -ln(S / b0) / b (mm^2/s), a signal at or
    under zero read as CSF-like (infinite): cheap, as only the voxels beyond a mask are read."""
    dw = dwi.bvals > B0_THRESHOLD
    if not dw.any():
        return np.full(int(np.count_nonzero(where)), np.inf)
    s = np.asarray(dwi.data[where][:, dw], np.float64)
    ref = np.asarray(b0[where], np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        adc = -np.log(s / ref) / dwi.bvals[dw].astype(np.float64)
    return np.nan_to_num(adc, nan=np.inf, posinf=np.inf, neginf=np.inf).mean(axis=1)


def warn_if_cut(dwi: Volume, mask, name: str, way: str = "give a mask that covers the whole brain (e.g. from "
                "'iqt mask'), or leave --mask out to fit in that estimate", left: str | None = None) -> Cut | None:
    """One warning where `mask` (called `name`) cuts the brain `dwi`'s b0 shows (`Cut.cuts`); `way`: what to do;
    `left`: what becomes of the tensors there (None: they are left zero)."""
    found = brain_cut(dwi, mask)
    if found is not None and found.cuts:
        left = _("where the tensors are left zero") if left is None else left
        warnings.warn(_("{name} cuts the brain: {outside} % of the brain the DWI's b0 shows (median Otsu) lies outside "
                        "it ({beyond} % tissue as bright as brain and more than a voxel beyond its edge), {left}; "
                        "{way}").format(name=name, outside=f"{100 * found.outside:.1f}",
                                        beyond=f"{100 * found.beyond:.1f}", left=left, way=way),
                      IQTWarning, stacklevel=2)
    return found
