"""brain_mask keeps median Otsu's mask of the last few b0 images (dti._otsu_brain): the same scan's mask asked again
(the Slicer module's and iqt view's runs, commands run in one process) costs no second median filter, and gives the same
mask, a copy its caller may change."""

from collections import OrderedDict

import dipy.segment.mask
import numpy as np

from ImageQualityTransferLib.dmri import dti


def test_the_same_b0_s_mask_is_made_once_and_handed_out_as_a_copy(coarse_phantom, monkeypatch):
    calls = []
    real = dipy.segment.mask.median_otsu

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(dipy.segment.mask, "median_otsu", counted)
    monkeypatch.setattr(dti, "_otsu_kept", OrderedDict(), raising=False)  # none kept from other tests
    first = dti.brain_mask(coarse_phantom).data
    expected = first.copy()
    first[:] = False  # a caller's change reaches no later caller
    second = dti.brain_mask(coarse_phantom).data
    assert len(calls) == 1 and np.array_equal(second, expected) and second.any()
    other = coarse_phantom.replace(data=np.asarray(coarse_phantom.data) * 2)  # other bytes: made again
    assert np.array_equal(dti.brain_mask(other).data, expected) and len(calls) == 2
    assert np.array_equal(dti.brain_mask(coarse_phantom, fill_slices=False).data,
                          dti._largest_filled(real(dti.mean_b0(coarse_phantom).astype(np.float64), median_radius=2,
                                                   numpass=1)[1], False)) and len(calls) == 3
