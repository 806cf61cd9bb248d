"""A voxel whose b0 holds no signal gets the fit's eigenvalue floor (1e-6 / b_max, isotropic) whatever the b-values:
with the b-values scanners write (1995 / 2005 about a 2000 shell) dipy's WLS set S0 from the diffusion-weighted
volumes alone there and reached 7.8e-2 mm^2/s in a brain voxel of a real scan, where one shell gives the
floor. Elsewhere the fit stays dipy's."""

import numpy as np
import pytest

from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.dmri import dti
from ImageQualityTransferLib.dmri.phantom import make_phantom


def dipy_wls(dwi: Volume) -> np.ndarray:
    from dipy.reconst.dti import TensorModel

    data = np.maximum(np.asarray(dwi.data, dtype=np.float64), 0.0)
    with np.errstate(all="ignore"):
        fit = TensorModel(dti.gradient_table(dwi), fit_method="WLS", return_S0_hat=False).fit(data)
    return np.nan_to_num(fit.lower_triangular()).astype(np.float32)


def series(jitter: float, b0s=(0.0, 0.0)) -> Volume:
    """A phantom (2 b0s, 12 directions at b = 1000, each b moved by +-jitter in turn) whose voxel (0, 0, 0) has the
    b0s `b0s` and diffusion-weighted signal that falls from the lower b-values to the higher ones (6 and 3: the
    pattern of the real scan's voxel), a steep decay over the jitter's few s/mm^2."""
    p = make_phantom(shape=(8, 8, 8), voxel_mm=2.0, n_dirs=12)
    bvals = np.array(p.bvals, float)
    dw = bvals > 0
    bvals[dw] += jitter * np.where(np.arange(dw.sum()) % 2, 1.0, -1.0)
    bvecs = np.array(p.bvecs, float)
    data = np.array(p.data, np.float32)
    data[0, 0, 0, ~dw] = b0s
    data[0, 0, 0, dw] = np.where(np.arange(dw.sum()) % 2, 3.0, 6.0)
    return Volume(data, p.affine, "dwi", bvals=bvals, bvecs=bvecs)


def floor_of(dwi: Volume) -> float:
    from dipy.reconst.dti import design_matrix

    return 1e-6 / -design_matrix(dti.gradient_table(dwi)).min()


@pytest.mark.parametrize("jitter", [0.0, 5.0])
@pytest.mark.parametrize("dipy_way", [False, True])
def test_a_voxel_without_b0_signal_gets_the_floor_whatever_the_b_values(jitter, dipy_way, monkeypatch):
    """Both ways the WLS fit solves: its normal equations, and dipy's for an ill-conditioned design (reached here by
    lowering the bound: directions nearly in one plane, which reached it before, are now refused)."""
    if dipy_way:
        monkeypatch.setattr(dti, "WLS_DESIGN_COND", 1.0)
    dwi = series(jitter)
    if jitter:  # the case itself: dipy's own fit reads S0 from the jittered b-values there, far above any tissue
        assert tensors.eigenvalues(dipy_wls(dwi)[0, 0, 0][None].astype(np.float64)).max() > 1e-2
    t = dti.fit_dti(dwi).data
    lam = tensors.eigenvalues(t[0, 0, 0][None].astype(np.float64))[0]
    np.testing.assert_allclose(lam, floor_of(dwi), rtol=1e-6)  # isotropic, at the floor (1e-9 at b = 1000)
    np.testing.assert_allclose(t[0, 0, 0], floor_of(dwi) * np.array([1, 0, 1, 0, 0, 1]), atol=1e-15)
    assert not tensors.failed_fits(t)[0, 0, 0]
    rest = np.ones(t.shape[:3], bool)
    rest[0, 0, 0] = False  # every other voxel (tissue, background) as dipy fits it
    ref = dipy_wls(dwi)
    rel = np.abs(t - ref)[rest] / (np.abs(ref[rest]).max(axis=-1, keepdims=True) + 1e-12)
    assert rel.max() < 1e-5


def test_one_b0_with_signal_is_enough_for_a_fit():
    """The floor is for a voxel whose every b0 is zero; with signal in one of two b0s the fit stays dipy's."""
    dwi = series(5.0, b0s=(0.0, 8.0))
    t, ref = dti.fit_dti(dwi).data[0, 0, 0], dipy_wls(dwi)[0, 0, 0]
    np.testing.assert_allclose(t, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    assert np.abs(t).max() > 10 * floor_of(dwi)


def test_the_b0_at_a_small_b_value_counts_as_a_b0():
    """A b0 written as b = 5 (below the b0 threshold) with no signal is a b0 without signal."""
    dwi = series(5.0)
    bvals = np.array(dwi.bvals)
    bvals[0] = 5.0
    t = dti.fit_dti(dwi.replace(bvals=bvals)).data[0, 0, 0]
    np.testing.assert_allclose(t, floor_of(dwi) * np.array([1, 0, 1, 0, 0, 1]), atol=1e-15)


@pytest.mark.parametrize("b, g", [(5.0, [1.0, 0.0, 0.0]), (50.0, [0.6, 0.8, 0.0]), (50.0, [0.36, 0.48, 0.8])])
def test_a_b0_at_a_small_b_value_with_a_direction_counts_as_a_b0(b, g):
    """HCP / CMRR series write their b0s as b = 5 with a direction; the fit takes a low-b volume at its own b-value and
    direction now, and the b0 rows are still found, by b-value (a review: found as rows without diffusion terms, they
    were missed, and such voxels reached 0.069 mm^2/s instead of the floor)."""
    dwi = series(5.0)
    bvals, bvecs = np.array(dwi.bvals), np.array(dwi.bvecs)
    b0 = bvals <= dti.B0_THRESHOLD
    bvals[b0], bvecs[b0] = b, g  # at b = 50 itself, b |g|^2 rounds above 50 for some directions (a second review)
    t = dti.fit_dti(dwi.replace(bvals=bvals, bvecs=bvecs)).data[0, 0, 0]
    np.testing.assert_allclose(tensors.eigenvalues(t[None].astype(np.float64))[0], floor_of(dwi), rtol=1e-3)
