"""The unit check reads the tissue-like voxels for the 99th percentile of |Dii| as it does for the median MD: a fit with
failed voxels in the brain (dipy's WLS gives eigenvalues of 1e-2 to 2.5 mm^2/s in low-signal voxels, about 3 % of a
native scan's brain) is in mm^2/s, and the methods and the evaluation take those voxels as missing; a volume in another
unit is still refused, failed fits or not."""

from __future__ import annotations

import numpy as np
import pytest

from ImageQualityTransferLib.core import tensor_checks, tensors
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.methods.inputs import check_tensor_input


def _brain_with_failed_fits(n=4000, share=0.03, seed=0):
    rng = np.random.default_rng(seed)
    lam = rng.uniform(0.2e-3, 1.8e-3, size=(n, 3))
    rot = np.linalg.qr(rng.normal(size=(n, 3, 3)))[0]
    t = tensors.from_matrix(rot @ (lam[:, :, None] * np.eye(3)) @ np.swapaxes(rot, 1, 2))
    failed = rng.choice(n, int(share * n), replace=False)
    t[failed] = [1.0, 0, 1.0, 0, 0, 1.0]  # a blown-up fit at 1 mm^2/s, as the audit's inputs held
    return t.reshape(40, -1, 1, 6)


@pytest.mark.parametrize("share", [0.015, 0.03, 0.08])
def test_failed_fits_in_the_brain_do_not_read_as_another_unit(share):
    t = _brain_with_failed_fits(share=share)
    assert np.percentile(np.abs(t.reshape(-1, 6)[:, [0, 2, 5]]), 99) > 0.1  # what the check read before
    tensor_checks.check_scale(t)
    tensor_checks.check_scale(t, np.ones(t.shape[:3], bool), "reference", "--truth-order")
    check_tensor_input(Volume(t.astype(np.float32), np.eye(4), "tensor"))


@pytest.mark.parametrize("factor, said", [(1e3, "1e-3"), (1e-6, "1e6"), (1e-3, "1e3")])
def test_another_unit_is_still_refused_with_failed_fits_in_it(factor, said):
    t = _brain_with_failed_fits() * factor
    with pytest.raises(IQTError, match=rf"not in mm\^2/s.*multiply them by {said}"):
        tensor_checks.check_scale(t)
