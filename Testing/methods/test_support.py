"""Every method writes exactly zero outside its support (the mask, else the input's non-zero voxels, grown by one
low-res voxel), its uncertainty maps too: the background a viewer shows stays clean, whatever tool made the input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ImageQualityTransferLib import methods
from ImageQualityTransferLib.core.grid import repeat_blocks


@pytest.fixture(scope="module")
def tight_case(small_subject):
    from ImageQualityTransferLib.dmri.subject import load_subject, make_case

    return make_case(load_subject(small_subject), 2, style="tight")  # zeros outside the brain, as FSL/MRtrix write


@pytest.mark.parametrize("name", methods.ready(2))
def test_zero_outside_the_support_without_a_mask(tight_case, name):
    lr = tight_case.lr
    present = np.any(lr.data != 0, axis=-1)
    support = repeat_blocks(ndimage.binary_dilation(present, structure=np.ones((3, 3, 3), bool)), 2)
    assert not support.all()
    pred = methods.get(name).predict(lr, 2, direction=True)
    assert not pred.tensor.data[~support].any()
    assert np.any(pred.tensor.data[repeat_blocks(present, 2)] != 0, axis=-1).mean() > 0.99
    for key, vol in pred.maps().items():
        assert not vol.data[~support].any(), key


@pytest.mark.parametrize("name", [n for n in methods.ready(2) if methods.method_class(n).gives_uncertainty])
def test_a_nonphysical_output_voxel_is_at_least_as_uncertain_as_its_distance_to_a_physical_tensor(tight_case, name):
    from ImageQualityTransferLib.core import tensors

    pred = methods.get(name).predict(tight_case.lr, 2)
    distance = tensors.distance_to_physical(pred.tensor.data)
    assert np.all(pred.std.data >= distance)
