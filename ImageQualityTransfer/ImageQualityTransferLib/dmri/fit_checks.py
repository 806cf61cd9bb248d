"""A DWI's tensor fit with the checks `iqt fit`, `iqt batch` and the Slicer module run around it, in the order their
warnings are said: the b0's place (the brain mask was made from it), the fit, the slices and volumes it does not
explain (left out with `exclude`), the gradient table's frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.volume import Volume
from .dti import fit_dti
from .gradcheck import GradCheck, check_gradients
from .motion import check_b0
from .outliers import Outliers, checked_fit


@dataclass
class CheckedFit:
    """The tensors (refitted without the outliers where `exclude` asked for it) and what each check found."""

    tensor: Volume
    outliers: Outliers
    gradients: GradCheck
    b0_shift: np.ndarray  # voxels, from the b0 to the mean diffusion-weighted volume


def fit_with_checks(dwi: Volume, mask: Volume, exclude: bool = False, table: str | None = None,
                    fit=fit_dti) -> CheckedFit:
    """Fit `dwi` in `mask` with `fit(dwi, mask)` and say what the checks find, one warning line each; `table` names the
    bvec file in the gradient check's advice (None: a DWI node's gradients)."""
    shift = check_b0(dwi)
    tensor, found = checked_fit(dwi, mask, fit(dwi, mask), exclude=exclude)
    return CheckedFit(tensor, found, check_gradients(dwi, mask, tensor, table), shift)
