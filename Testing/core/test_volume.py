"""`Volume`: the geometry every engine part relies on is checked where a Volume is made."""

import numpy as np
import pytest

from ImageQualityTransferLib.core.volume import Volume


def test_a_non_finite_or_singular_affine_is_refused():
    """A NaN affine was accepted (the output's affine came back all NaN), a singular one ended in nibabel's
    'Unable to find out axis'."""
    data = np.zeros((3, 4, 5, 6), np.float32)
    nan = np.diag([2.0, 2.0, 2.0, 1.0])
    nan[0, 3] = np.nan
    inf = np.diag([2.0, np.inf, 2.0, 1.0])
    flat = np.diag([2.0, 0.0, 2.0, 1.0])
    dependent = np.diag([2.0, 2.0, 2.0, 1.0])
    dependent[:3, 2] = dependent[:3, 0]
    for bad, said in ((nan, "non-finite"), (inf, "non-finite"), (flat, "zero or dependent"), (dependent, "zero or dependent")):
        with pytest.raises(ValueError, match=said):
            Volume(data, bad, "tensor")
    sheared = np.array([[2.0, 0.3, 0, 10], [0, 2.0, 0.1, -5], [0, 0, 3.0, 7], [0, 0, 0, 1]])
    oblique = np.diag([-1.75, 1.75, 2.5, 1.0])
    for good in (sheared, oblique):
        assert Volume(data, good, "tensor").replace(data=data[..., 0], kind="scalar").shape3 == (3, 4, 5)
