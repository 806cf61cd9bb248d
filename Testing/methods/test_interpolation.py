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


# ---------------------------------------------------------------- per-axis factors

INTERPOLATORS = ["nearest", "linear", "cubic", "logeuclid-cubic"]
PER_AXIS = [(1, 1, 3), (2, 1, 3), (3, 2, 1)]


@pytest.mark.parametrize("f", PER_AXIS)
def test_per_axis_output_grid_shape_and_affine(f):
    lr, _, _ = ramp_volume((6, 7, 5))
    hr = methods.get("cubic").predict(lr, f).tensor
    assert hr.shape3 == tuple(k * n for k, n in zip(f, lr.shape3))
    assert np.allclose(hr.affine, grid.hr_affine(lr.affine, f))
    assert np.allclose(hr.voxel_size, lr.voxel_size / f)
    assert hr.meta["factor"] == list(f)


@pytest.mark.parametrize("name", INTERPOLATORS)
@pytest.mark.parametrize("f", PER_AXIS)
def test_degrading_then_upsampling_a_constant_field_is_exact(name, f):
    from ImageQualityTransferLib.dmri.degrade import block_average

    t = np.array([1.0, 0.1, 0.8, 0.05, -0.02, 0.7]) * 1e-3
    hr_aff = np.diag([-1.5, 1.5, 1.5, 1.0])
    const = np.broadcast_to(t, (18, 16, 15, 6)).astype(np.float32)
    lr = Volume(block_average(const, f).astype(np.float32), grid.lr_affine(hr_aff, f), "tensor")
    out = methods.get(name).predict(lr, f).tensor
    assert out.shape3 == (18, 16, 15) and np.allclose(out.affine, hr_aff)
    np.testing.assert_allclose(out.data, const, rtol=2e-6 if name == "logeuclid-cubic" else 1e-6, atol=1e-12)


@pytest.mark.parametrize("f", PER_AXIS)
def test_linear_field_degraded_then_linear_upsampled_is_exact_in_the_interior(f):
    """Block averaging a linear field gives its value at the block centre; linear interpolation between those
    centres gives the field back one low-res voxel away from the edge."""
    from ImageQualityTransferLib.dmri.degrade import block_average

    truth, base, slope = ramp_volume((18, 16, 15))
    lr = Volume(block_average(truth.data.astype(np.float64), f).astype(np.float32),
                grid.lr_affine(truth.affine, f), "tensor")
    hr = methods.get("linear").predict(lr, f).tensor
    inner = tuple(slice(k, -k) for k in f)
    scale = np.abs(truth.data).max()
    assert np.abs(hr.data[inner] - truth.data[inner]).max() < 1e-5 * scale


@pytest.mark.parametrize("name", INTERPOLATORS)
def test_a_factor_of_one_leaves_that_axis_unchanged(name):
    lr, _, _ = ramp_volume((5, 6, 4))
    hr = methods.get(name).predict(lr, (1, 1, 3)).tensor.data
    z = methods.get(name).predict(lr, (3, 3, 3)).tensor.data  # the z interpolation, isotropically
    if name != "logeuclid-cubic":  # separable: the x and y passes are skipped, z is as in the isotropic run
        np.testing.assert_array_equal(hr[:, :, :], upsample_separable(lr.data, (1, 1, 3), methods.get(name).order))
        np.testing.assert_allclose(hr, z[1::3, 1::3, :], rtol=1e-5, atol=1e-12)
    # the nearest copy along z only
    if name == "nearest":
        assert np.array_equal(hr, lr.data.repeat(3, 2))


@pytest.mark.parametrize("axcodes", ["PSR", "LPI"])
def test_per_axis_factors_follow_the_storage_order(axcodes):
    """Factors are given in the input's own voxel axes: a reoriented input with its factors permuted the same way
    gives the same answer."""
    from ImageQualityTransferLib.core.orientation import reorient

    lr, _, _ = ramp_volume((6, 7, 5), np.diag([-2.0, 1.5, 2.5, 1.0]))  # LAS, one voxel size per axis
    f = (1, 2, 3)
    ref = methods.get("cubic").predict(lr, f).tensor
    moved = reorient(lr, axcodes)
    by_size = {round(float(v), 3): k for v, k in zip(lr.voxel_size, f)}
    f_moved = tuple(by_size[round(float(v), 3)] for v in moved.voxel_size)
    assert f_moved != f or axcodes == "LPI"
    out = reorient(methods.get("cubic").predict(moved, f_moved).tensor, "LAS")
    assert np.allclose(out.affine, ref.affine)
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-5, atol=1e-12)


def test_learned_methods_without_a_model_for_the_factors_say_what_they_have():
    from ImageQualityTransferLib.core import grid
    from ImageQualityTransferLib.methods import shipped_factors

    lr, _, _ = ramp_volume((4, 4, 4))
    for name, f, words in (("biqt", (1, 1, 4), "factors 1,1,4"), ("rf", 4, "factor 4"),
                           ("global-linear", (2, 2, 1), "factors 2,2,1"), ("espcn", (1, 4, 1), "factors 1,4,1")):
        have = [grid.describe(h) for h in shipped_factors(name)]
        with pytest.raises(IQTError) as info:
            methods.get(name).predict(lr, f)
        msg = str(info.value)
        assert words in msg and "--model" in msg and "cubic" in msg, msg
        assert f"has shipped models for {', '.join(have)} only" in msg, msg
    with pytest.raises(IQTError) as info:  # no x3 model of its own: the learned methods that have one are named
        methods.get("espcn-hetero-var1").predict(lr, 3)
    assert "another method (" in str(info.value) and "biqt" in str(info.value) and "cubic" in str(info.value), info.value
    assert "biqt" not in methods.ready((1, 1, 4)) and "cubic" in methods.ready((1, 1, 4))
    assert "biqt" in methods.ready((2, 2, 2)) and methods.ready(2) == methods.ready((2, 2, 2))



def test_cubic_does_not_ring_against_the_zeros_beyond_a_tight_mask():
    """A fit with zeros right beyond its mask (FSL, MRtrix, dipy, the module's own fit): interpolated towards them, cubic
    rang into non-physical tensors along the brain's edge (56 % of a native 3 mm fit's edge band); it now
    sees the context filled as the learned methods do. On a constant brain: non-physical 0.4 % of the written voxels
    (24 % before), inside the mask within 5 % of the constant (52 % before)."""
    t = np.array([1.2e-3, 1e-4, 0.6e-3, 0.0, 0.0, 0.5e-3], np.float32)
    brain = np.zeros((12, 12, 12), bool)
    brain[2:10, 2:10, 2:10] = True
    lr = Volume(np.where(brain[..., None], t, 0).astype(np.float32), np.diag([-2.0, 2.0, 2.0, 1.0]), "tensor")
    out = methods.get("cubic").predict(lr, 2, Volume(brain, lr.affine, "mask")).tensor.data
    inside = grid.repeat_blocks(brain, 2)
    assert np.abs(out[inside] - t).max() < 0.1 * t.max()
    present = np.any(out != 0, axis=-1)
    assert (tensors.eig(out[present])[0].min(axis=-1) < 0).mean() < 0.01


def test_cubic_leaves_no_tensor_of_md_at_or_below_zero_at_the_support_s_corners():
    """The support reaches one low-res voxel beyond the brain, diagonally too, beyond two 6-connected context rings:
    interpolated towards the zeros there, cubic left tensors of MD <= 0 (41 % of those voxels on a 3 mm training scan's
    clean own-style fit), which iqt track warned of as 1.0-1.3 % of the brain in 4 of the 8 subjects (a review). Every
    empty voxel is filled from the nearest brain voxel now. Here a sphere of varied tensors: 336 of 23,552 before."""
    rng = np.random.default_rng(0)
    ijk = np.indices((20, 20, 20))
    brain = ((ijk - 9.5) ** 2).sum(0) <= 7.5**2
    e = rng.normal(size=(20, 20, 20, 3))
    e /= np.linalg.norm(e, axis=-1, keepdims=True)
    d = tensors.from_matrix(0.3e-3 * np.eye(3) + 1.2e-3 * e[..., :, None] * e[..., None, :])
    lr = Volume(np.where(brain[..., None], d, 0).astype(np.float32), np.diag([-2.0, 2.0, 2.0, 1.0]), "tensor")
    out = methods.get("cubic").predict(lr, 2, Volume(brain, lr.affine, "mask")).tensor.data
    written = out[np.any(out != 0, axis=-1)]
    assert len(written) == 23552 and int((tensors.md(written) <= 0).sum()) == 0


def test_the_batched_products_run_on_one_blas_thread_and_give_the_same_bytes(monkeypatch):
    """Axes 2 and 1 are one small matrix product per row or plane: with the BLAS pool's threads woken for each, a
    72x72x36 volume at x2 took 2.9 s of wall and 0.94 s of CPU on a busy machine, against 0.10 s and 0.04 s on one
    thread (docs/measurements.md, Speed). The `iqt` command keeps the pool's own count, so they run on one thread
    themselves; the single large product of axis 0 keeps the pool. The bytes are those of a run on the pool's threads.
    Each product is seen through its weights (numpy's __array_ufunc__ on them), however the code spells it."""
    import contextlib

    from threadpoolctl import threadpool_info, threadpool_limits

    from ImageQualityTransferLib.methods import interpolation

    def blas_threads():
        return max(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")

    seen = []

    class SeenWeights(np.ndarray):
        """An axis's weights that note the BLAS threads of each matrix product they enter."""

        def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
            if ufunc is np.matmul:
                seen.append(blas_threads())
            return getattr(ufunc, method)(*(np.asarray(a) for a in inputs), **kwargs)

    x = np.random.default_rng(0).random((12, 10, 8, 6)).astype(np.float32)
    with threadpool_limits(limits=2, user_api="blas"):
        if blas_threads() < 2:
            pytest.skip("the BLAS pool here runs one thread: nothing to tell apart")
        with monkeypatch.context() as pool:  # every product on the pool's threads
            pool.setattr(interpolation, "small_solves", contextlib.nullcontext, raising=False)
            reference = upsample_separable(x, 2, 3)
        weights = interpolation.axis_weights
        monkeypatch.setattr(interpolation, "axis_weights", lambda *args: weights(*args).view(SeenWeights))
        out = upsample_separable(x, 2, 3)
        assert seen == [1, 1, 2] and blas_threads() == 2, seen  # axes 2 and 1, then axis 0 on the pool; its count back
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, reference)
