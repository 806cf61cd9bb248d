"""A DWI's tensor fit with the checks `iqt fit`, `iqt batch` and the Slicer module run around it, in the order their
warnings are said: the volumes' order against the bval file (refused), the b0's place (the brain mask was made from
it), the fit, the slices and volumes it does not
explain (left out with `exclude`), the gradient table's frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.volume import Volume
from .dti import fit_dti
from .gradcheck import GradCheck, check_gradients
from .b0s import check_b0_order
from .motion import check_b0
from .outliers import Outliers, checked_fit, say_poor_condition


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
    check_b0_order(dwi, mask)
    shift = check_b0(dwi)
    tensor, found = checked_fit(dwi, mask, fit(dwi, mask), exclude=exclude)
    # volumes or slices the fit does not explain, kept in it, end the fibres the table is judged by: the outliers'
    # line already says the tensors are wrong and to refit with --exclude-outliers, whose fit is judged again
    kept = bool(found) and not exclude
    return CheckedFit(tensor, found, check_gradients(dwi, mask, tensor, table, say_noise=not kept), shift)


def check_before_degrade(dwi: Volume, mask: Volume) -> None:
    """What `fit_with_checks` says of the gradient table before its fit, for `iqt degrade`, which fits the same table
    block-averaged: the volumes' order (refused) and a poorly conditioned table (its line)."""
    check_b0_order(dwi, mask)
    say_poor_condition(dwi, stacklevel=3)


def check_degraded_table(dwi: Volume, mask: Volume, lr_tensor: Volume, lr_mask: Volume, table: str | None = None) -> GradCheck:
    """`fit_with_checks`' gradient-table check for `iqt degrade` (it had said nothing of a table `iqt fit` warns of),
    on the low-res tensors it fitted, at no second fit: at x2 it named what the high-res check names on the eight
    shared scans (nothing) and on five of six tables in a wrong frame (the sixth, a 12-slice slab, by the fallback below). Where they hold too little white matter to judge (x3
    of a 3 mm scan), the high-res DWI is fitted in `mask` and checked as `iqt fit` checks it. Give it noise-free
    tensors: with `--snr 5` added, a clean 3 mm scan's x3 fit held ~1180 white-matter voxels, not 156, and other tables
    scored 1.12-1.24x the given one (a false warning; apps/cli/fit.py degrade passes its fit without the noise)."""
    found = check_gradients(dwi, lr_mask, lr_tensor, table)
    if found.judged:
        return found
    return check_gradients(dwi, mask, fit_dti(dwi, mask, say_shells=False), table)
