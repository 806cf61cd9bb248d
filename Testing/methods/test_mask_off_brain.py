"""A --mask given with a fit over the whole field of view (tensors everywhere, so none of the mask's voxels is empty and
mask_within_fit says nothing) that is not on the brain (flipped, shifted, another scan's) had run without a word,
losing 7.9-14.2 % of the brain (a tool-inputs audit): one warning where its edge holds noise fits about as often as
the band outside it (methods/inputs.py warn_mask_off_brain); the right mask gets none."""

from __future__ import annotations

import warnings

import numpy as np

from ImageQualityTransferLib import methods
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.errors import IQTWarning
from ImageQualityTransferLib.core.volume import Volume


def _head(n=30):
    """A whole-field fit: a ball of brain tensors (MD about 0.75e-3), scalp fits around it, background noise fits beyond."""
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:n, :n, :n] - (n - 1) / 2
    r = np.sqrt(x**2 + y**2 + z**2)
    brain, head = r < 0.3 * n, r < 0.3 * n + 3  # the brain, and the scalp's tissue-like fits around it
    lam = rng.uniform(0.6e-3, 0.9e-3, size=brain.shape + (3,))
    m = rng.normal(size=brain.shape + (3, 3)) * 1e-4
    t = np.where(head[..., None], tensors.from_matrix(lam[..., :, None] * np.eye(3)),
                 tensors.from_matrix(m + np.swapaxes(m, -1, -2)))
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    return Volume(t.astype(np.float32), affine, "tensor"), lambda b: Volume(b, affine, "mask"), brain


def _said(lr, mask):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        methods.get("cubic").predict(lr, 2, mask, uncertainty=False)
    return [str(w.message) for w in caught if issubclass(w.category, IQTWarning) and "mask's edge" in str(w.message)]


def test_a_mask_off_the_brain_of_a_whole_field_fit_is_said_and_the_right_one_not():
    lr, mask, brain = _head()
    assert _said(lr, mask(brain)) == []
    shifted = np.roll(brain, 6, axis=1)  # 12 mm
    said = _said(lr, mask(shifted))
    assert len(said) == 1 and "the mask looks not to lie on this input's brain" in said[0], said
