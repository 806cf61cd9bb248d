"""A fit over the whole field of view whose edge planes hold nothing (a resample's zero padding, zeroed first and last
slices, all-NaN planes as read) is the same input as without those planes: read as a whole-field fit (the brain
estimated from its tensors, with the warning), the same estimate, the same noise index and model, the same output
inside the original field and exactly zero in the empty planes. Before, the empty planes counted against the share
of non-zero voxels (`methods/inputs.py`, `whole_field`) and the fit was taken for a masked one: no brain estimated,
every non-zero voxel kept and the noise index read over the whole head (an audit: on the 3 mm ortho scan's native
unmasked fit padded by one plane at each end, noise index 0.145 against about 0.06, the noise-trained espcn model
chosen, 6.4 % median change inside the brain)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ImageQualityTransferLib import methods
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.methods.inputs import whole_field


def _padded(lr: Volume, axis: int, planes: int) -> Volume:
    """`lr` with `planes` all-zero planes added at each end of `axis`, its origin moved so that the old voxels keep
    their place in the world (as a resample onto a larger grid writes it)."""
    widths = [(0, 0)] * 4
    widths[axis] = (planes, planes)
    affine = np.array(lr.affine, float)
    affine[:3, 3] -= affine[:3, axis] * planes
    return Volume(np.pad(np.asarray(lr.data), widths), affine, "tensor", meta=dict(lr.meta))


def _run(method, lr):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = methods.get(method).predict(lr, 2, None, uncertainty=False)
    return pred, [str(w.message) for w in caught]


def _check_same(lr, padded, axis, planes, method):
    pred, said = _run(method, lr)
    got, said_padded = _run(method, padded)
    assert any("whole field of view" in s for s in said_padded), said_padded
    assert [s for s in said_padded if "noisier" in s] == [s for s in said if "noisier" in s]
    assert got.tensor.meta.get("noise_index") == pred.tensor.meta.get("noise_index")
    inside = [slice(None)] * 3
    inside[axis] = slice(2 * planes, got.tensor.shape3[axis] - 2 * planes)
    np.testing.assert_array_equal(got.tensor.data[tuple(inside)], pred.tensor.data)  # the same arrays
    assert np.count_nonzero(got.tensor.data) == np.count_nonzero(pred.tensor.data)  # zero in the empty planes
    want = np.array(pred.tensor.affine, float)
    moved = np.array(got.tensor.affine, float)
    moved[:3, 3] += moved[:3, axis] * 2 * planes
    np.testing.assert_allclose(moved, want, atol=1e-9)


@pytest.mark.parametrize("axis,planes", [(2, 1), (2, 2), (0, 2)])
def test_a_whole_field_fit_padded_with_empty_planes_is_read_as_without_them(small_subject, axis, planes, tmp_path):
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.dmri.subject import load_subject, make_case

    lr = make_case(load_subject(small_subject), 2, style="unmasked").lr
    assert whole_field(lr)
    padded = _padded(lr, axis, planes)
    assert np.any(padded.data != 0, axis=-1).mean() <= 0.95  # the share that read it as a masked fit before
    assert whole_field(padded)
    # the padding as all-NaN planes in a file (as some tools write the background): read as empty (zero) by the file
    # reader, so the same input as the zero padding
    nan_planes = np.array(padded.data)
    n = nan_planes.shape[axis]
    index = [slice(None)] * 3
    index[axis] = np.r_[0:planes, n - planes:n]
    nan_planes[tuple(index)] = np.nan
    assert np.isnan(nan_planes).all(axis=-1).sum() == 2 * planes * nan_planes.size // (6 * n)
    path = tmp_path / "nan_planes.nii.gz"
    fileio.save_tensor(padded.replace(data=nan_planes), path)
    read = fileio.load_tensor(path)
    np.testing.assert_array_equal(read.data, padded.data)
    assert whole_field(read)
    _check_same(lr, padded, axis, planes, "cubic")


def test_a_masked_fit_with_empty_planes_stays_a_masked_fit(small_subject):
    """The box of a masked fit's non-empty voxels is its brain's, which it fills far less than a whole field: with
    empty planes added, or cut to that box, it is still read as a masked fit."""
    from ImageQualityTransferLib.dmri.subject import load_subject, make_case

    lr = make_case(load_subject(small_subject), 2, style="tight").lr
    at = np.argwhere(np.any(lr.data != 0, axis=-1))
    box = tuple(slice(a, b + 1) for a, b in zip(at.min(0), at.max(0)))
    assert not whole_field(lr) and not whole_field(_padded(lr, 2, 2))
    assert not whole_field(lr.replace(data=np.ascontiguousarray(lr.data[box])))


def test_a_real_whole_field_fit_padded_with_empty_planes_gives_the_unpadded_output(axial_subject):
    """The 3 mm ortho dev subject's unmasked x2 input with two empty planes at each end of the slice axis: espcn's
    output inside the original field is the unpadded run's to the bit, the same noise index, zero in the padding."""
    pytest.importorskip("torch", reason="PyTorch is not installed: the CNN methods need it")
    from ImageQualityTransferLib.dmri.subject import make_case

    lr = make_case(axial_subject, 2, style="unmasked").lr
    padded = _padded(lr, 2, 2)
    assert whole_field(padded)
    zeroed = np.array(lr.data)  # zeroed first and last slices: a whole-field fit still
    zeroed[:, :, :2] = zeroed[:, :, -2:] = 0
    assert whole_field(lr.replace(data=zeroed))
    _check_same(lr, padded, 2, 2, "espcn")
