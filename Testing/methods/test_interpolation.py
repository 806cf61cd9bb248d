"""Grid alignment and the interpolation baselines."""

import numpy as np
import pytest

from ImageQualityTransferLib import Volume, methods
from ImageQualityTransferLib.core import grid, tensors
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.methods.interpolation import upsample_separable

# Synthetic volumes fill the whole field of view: the engine's no-mask warning is expected here.
pytestmark = pytest.mark.filterwarnings("ignore::ImageQualityTransferLib.core.errors.IQTWarning")


def ramp_volume(shape=(10, 12, 9), affine=None):
    """Tensors whose elements are linear in the voxel index (plus a PD offset)."""
    i, j, k = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    base = np.array([1.0, 0.05, 0.9, 0.02, -0.03, 0.8]) * 1e-3
    slope = np.array([[2, 0.3, -1, 0.1, 0.2, 1], [1, -0.2, 2, 0.1, 0.0, -1], [-1, 0.1, 1, -0.2, 0.1, 2]]) * 1e-6
    t = base + i[..., None] * slope[0] + j[..., None] * slope[1] + k[..., None] * slope[2]
    return Volume(t.astype(np.float32), np.diag([-2.0, 2.0, 2.5, 1.0]) if affine is None else affine, "tensor"), base, slope


@pytest.mark.parametrize("r", [2, 3])
def test_hr_affine_puts_voxel_centres_where_design_says(r):
    lr_aff = np.array([[0.0, 0, 2.7, -60], [-2.7, 0, 0, 130], [0, 2.7, 0, -130], [0, 0, 0, 1]])
    hr_aff = grid.hr_affine(lr_aff, r)
    # high-res voxel r*i + (r-1)/2 sits at the centre of low-res voxel i
    for i in ([0, 0, 0], [3, 5, 7]):
        centre_hr = hr_aff @ np.r_[r * np.array(i) + (r - 1) / 2, 1]
        assert np.allclose(centre_hr, lr_aff @ np.r_[i, 1])
    assert np.allclose(np.abs(np.linalg.det(hr_aff[:3, :3])), np.abs(np.linalg.det(lr_aff[:3, :3])) / r**3)
    # the low-res grid made from blocks at a shift inverts the relation
    assert np.allclose(grid.hr_affine(grid.lr_affine(hr_aff, r, (0, 0, 0)), r), hr_aff)


@pytest.mark.parametrize("name", ["linear", "cubic"])
@pytest.mark.parametrize("r", [2, 3])
def test_linear_ramp_reproduced_exactly_in_the_interior(name, r):
    lr, base, slope = ramp_volume((22, 24, 21))
    hr = methods.get(name).predict(lr, r).tensor
    assert hr.shape3 == tuple(r * n for n in lr.shape3)
    coords = [grid.lr_coordinates(n, r) for n in lr.shape3]
    ci, cj, ck = np.meshgrid(*coords, indexing="ij")
    expected = base + ci[..., None] * slope[0] + cj[..., None] * slope[1] + ck[..., None] * slope[2]
    # linear is exact one voxel in; the cubic prefilter's edge effect decays by 0.268 per low-res voxel
    margin = r * (2 if name == "linear" else 8)
    inner = tuple(slice(margin, -margin) for _ in range(3))
    assert np.abs(hr.data[inner] - expected[inner]).max() < 1e-9 + 1e-5 * np.abs(expected).max()


def test_nearest_copies_each_voxel_into_its_block():
    lr, _, _ = ramp_volume((4, 5, 3))
    hr = methods.get("nearest").predict(lr, 3).tensor.data
    assert np.array_equal(hr, lr.data.repeat(3, 0).repeat(3, 1).repeat(3, 2))


def test_separable_equals_scipy_zoom_with_grid_mode():
    from scipy import ndimage

    x = np.random.default_rng(1).random((9, 7, 8)).astype(np.float32)
    for order in (0, 1, 3):
        ref = ndimage.zoom(x, 2, order=order, grid_mode=True, mode="nearest")
        assert np.abs(upsample_separable(x, 2, order) - ref).max() < 1e-5


def test_logeuclid_cubic_stays_positive_definite_and_is_exact_on_constant():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(6, 6, 6, 3, 3)) * 3e-4
    t = tensors.from_matrix(m @ np.swapaxes(m, -1, -2) + 1e-4 * np.eye(3))
    hr = methods.get("logeuclid-cubic").predict(Volume(t.astype(np.float32), np.eye(4), "tensor"), 2).tensor.data
    assert (tensors.eig(hr)[0] > 0).all()
    const = np.broadcast_to(t[0, 0, 0], (5, 5, 5, 6)).astype(np.float32)
    out = methods.get("logeuclid-cubic").predict(Volume(const.copy(), np.eye(4), "tensor"), 2).tensor.data
    assert np.allclose(out, const[0, 0, 0], rtol=1e-4, atol=1e-9)


def test_output_is_zero_outside_the_dilated_mask_and_input_is_untouched():
    lr, _, _ = ramp_volume((8, 8, 8))
    before = lr.data.copy()
    mask = np.zeros(lr.shape3, bool)
    mask[3:5, 3:5, 3:5] = True
    hr = methods.get("cubic").predict(lr, 2, Volume(mask, lr.affine, "mask")).tensor.data
    assert np.array_equal(lr.data, before)
    assert (hr[:2] == 0).all() and (hr[4:12, 4:12, 4:12] != 0).all()


def test_bad_requests_are_clear_errors():
    lr, _, _ = ramp_volume((4, 4, 4))
    with pytest.raises(IQTError, match="unknown method"):
        methods.get("bicubic-magic")
    with pytest.raises(IQTError, match="at least 2"):
        methods.get("cubic").predict(lr, 1)
    with pytest.raises(IQTError, match="NaN"):
        bad = lr.data.copy()
        bad[0, 0, 0, 0] = np.nan
        methods.get("cubic").predict(lr.replace(data=bad), 2)
    with pytest.raises(IQTError, match="empty"):
        methods.get("cubic").predict(lr, 2, Volume(np.zeros(lr.shape3, bool), lr.affine, "mask"))
    with pytest.raises(IQTError, match="mm\\^2/s"):
        methods.get("cubic").predict(lr.replace(data=lr.data * 1e6), 2)
