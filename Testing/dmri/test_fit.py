"""The DTI fit: the engine's weighted least squares (dti._wls, normal equations per voxel) gives dipy's WLS tensors,
in the brain, in background noise, in zeroed air and where part of a voxel's signal is clipped."""

import numpy as np
import pytest

from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.dmri import dti
from ImageQualityTransferLib.dmri.phantom import make_phantom


def dipy_wls(dwi: Volume, mask) -> np.ndarray:
    """dipy's own WLS, as fit_dti wraps it (zero outside the mask, non-finite to zero, float32)."""
    from dipy.reconst.dti import TensorModel

    data = np.maximum(np.asarray(dwi.data, dtype=np.float64), 0.0)
    with np.errstate(all="ignore"):
        fit = TensorModel(dti.gradient_table(dwi), fit_method="WLS", return_S0_hat=False).fit(data, mask=mask)
    tensor = np.nan_to_num(fit.lower_triangular(), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    if mask is not None:
        tensor[~mask] = 0.0
    return tensor


def assert_same_tensors(ours: np.ndarray, theirs: np.ndarray):
    """Equal to float32 precision, voxel by voxel, relative to the voxel's largest element."""
    rel = np.abs(ours - theirs) / (np.abs(theirs).max(axis=-1, keepdims=True) + 1e-12)
    assert rel.max() < 1e-5, (rel.max(), np.argwhere(rel > 1e-5)[:5])


def test_the_fit_is_dipys_wls_with_noise_air_and_clipped_signal(monkeypatch):
    monkeypatch.setattr(dti, "WLS_CHUNK", 997)  # several steps, the last one short
    dwi = make_phantom(shape=(24, 22, 16), voxel_mm=2.0, n_dirs=12)
    data = np.array(dwi.data, dtype=np.float32)
    data[:4] = 0.0  # zeroed air: every signal at the floor
    data[4:6, :, :, 3:5] = 0.0  # some directions clipped: near-singular weighted problems, decided by rounding
    data[6:8, :, :, 0] = 0.0  # the b0 clipped
    dwi = Volume(data, dwi.affine, "dwi", bvals=dwi.bvals, bvecs=dwi.bvecs)
    mask = dti.brain_mask(dwi).data
    for m in (mask, None):
        ours = dti.fit_dti(dwi, m).data
        assert_same_tensors(ours, dipy_wls(dwi, m))
    assert np.count_nonzero(ours[:4]) > 0  # zeroed air fits to dipy's floored isotropic tensor, not to nothing


def test_the_fit_is_dipys_wls_on_a_real_scan_unmasked(axial_subject):
    """A slab of a real 3 mm scan fitted over the whole field (background noise fits included) and in its mask:
    dipy's tensors wherever the b0 holds signal; where it holds none, the floor (test_fit_without_b0.py)."""
    dwi, mask = axial_subject.dwi, axial_subject.mask.data
    slab = Volume(np.asarray(dwi.data)[:, :, 14:22], dwi.affine, "dwi", bvals=dwi.bvals, bvecs=dwi.bvecs)
    s0 = dti.mean_b0(slab) > 0
    for m in (mask[:, :, 14:22], None):
        assert_same_tensors(dti.fit_dti(slab, m).data[s0], dipy_wls(slab, m)[s0])


def test_wls_refuses_nothing_dipy_accepts():
    """A single voxel and an all-constant signal (D = 0) come out as dipy's."""
    dwi = make_phantom(shape=(8, 8, 8), voxel_mm=2.0, n_dirs=12)
    one = Volume(np.asarray(dwi.data)[:1, :1, :1], dwi.affine, "dwi", bvals=dwi.bvals, bvecs=dwi.bvecs)
    assert_same_tensors(dti.fit_dti(one).data, dipy_wls(one, None))
    flat = Volume(np.full((2, 2, 2, len(dwi.bvals)), 500.0, np.float32), dwi.affine, "dwi", bvals=dwi.bvals,
                  bvecs=dwi.bvecs)
    assert_same_tensors(dti.fit_dti(flat).data, dipy_wls(flat, None))
    assert np.abs(dti.fit_dti(flat).data).max() <= 1e-8


def test_weights_spanning_more_than_the_normal_equations_hold_go_dipys_way():
    """A voxel with tiny but unclipped signal in half its directions (weights spanning 1e18), beside zeroed air that
    sets the floor below it: its normal matrix is nearly singular, so dipy solves it (the normal equations were 3.6e-2
    off)."""
    p = make_phantom(shape=(8, 8, 8), voxel_mm=2.0, n_dirs=12)  # 2 b0 + 12 directions at b = 1000
    v = [1000.0, 1000.0, 581.373047, 780.339478, 417.985046, 883.71405, 0.001432,
         634.673706, 0.000218, 0.003176, 0.000247, 0.000214, 0.00252, 0.001169]
    dwi = Volume(np.array([v, [0.0] * 14], np.float32)[:, None, None, :], p.affine, "dwi", bvals=p.bvals, bvecs=p.bvecs)
    assert_same_tensors(dti.fit_dti(dwi).data, dipy_wls(dwi, None))


@pytest.mark.parametrize("flatten, rank", [(0.0, 3), (1e-7, 3), (1e-2, 5), (0.1, 6)])
def test_directions_in_or_near_one_plane_are_refused_and_a_few_degrees_off_it_fitted_as_dipy_does(flatten, rank):
    """Every direction in (or within 0.6 degrees of) the x-y plane leaves the tensor's z elements undetermined: refused in
    one line naming how many of the 6 elements the directions determine (such tables were fitted silently,
    FA 0.17 -> 0.71; then fitted as dipy fits them). Six degrees off the plane is a tensor: dipy's
    answer, no error."""
    dwi = make_phantom(shape=(10, 10, 8), voxel_mm=2.0, n_dirs=12)
    g = np.array(dwi.bvecs, float)
    g[2:, 2] *= flatten
    g[2:] /= np.linalg.norm(g[2:], axis=1, keepdims=True)
    flat = Volume(np.asarray(dwi.data), dwi.affine, "dwi", bvals=dwi.bvals, bvecs=g)
    mask = dti.brain_mask(dwi).data
    if rank < 6:
        with pytest.raises(IQTError, match=f"determine only {rank} of the tensor's 6 elements"):
            dti.fit_dti(flat, mask)
    else:
        assert_same_tensors(dti.fit_dti(flat, mask).data, dipy_wls(flat, mask))


def test_one_direction_repeated_or_the_three_axes_are_refused():
    """A table of one direction repeated, or of the three axes only, fitted FA 1.00 / -85 % with no word."""
    dwi = make_phantom(shape=(8, 8, 8), voxel_mm=2.0, n_dirs=12)
    for g, rank in ((np.tile([0.6, 0.8, 0.0], (14, 1)), 1), (np.eye(3)[np.arange(14) % 3], 3)):
        with pytest.raises(IQTError, match=f"determine only {rank} of"):
            dti.fit_dti(dwi.replace(bvecs=g))


@pytest.mark.parametrize("method", dti.FIT_METHODS)
def test_fit_records_the_method(method):
    dwi = make_phantom(shape=(8, 8, 8), voxel_mm=2.0, n_dirs=12)
    assert dti.fit_dti(dwi, method=method).meta["fit"] == f"dipy {method}"


def test_a_series_in_memory_with_a_wrong_gradient_table_is_refused_as_a_file_is():
    """fit_dti on a DWI Volume with b-values in s/m^2 returned MD 7.3e-10 without a word (fileio.load_dwi
    refuses such a file); bvecs as FSL's file holds them (3, N), another count, or none gave IndexError/TypeError."""
    from ImageQualityTransferLib.core.errors import IQTError

    rng = np.random.default_rng(0)
    n = 13
    bvecs = rng.normal(size=(n, 3))
    bvecs /= np.linalg.norm(bvecs, axis=1, keepdims=True)
    bvecs[0] = 0.0
    dwi = Volume(rng.uniform(50, 100, (4, 4, 3, n)).astype(np.float32), np.diag([2.0, 2, 2, 1]), "dwi",
                 bvals=np.r_[0.0, np.full(n - 1, 1000.0)], bvecs=bvecs)

    def with_table(bvals, bvecs):
        return Volume(dwi.data, dwi.affine, "dwi", bvals=bvals, bvecs=bvecs)

    cases = [(dwi.bvals * 1e6, dwi.bvecs, "look like s/m\\^2"), (-dwi.bvals, dwi.bvecs, "negative b-values"),
             (dwi.bvals / 1e3, dwi.bvecs, "look like ms/um\\^2"), (dwi.bvals, dwi.bvecs.T, "transpose"),
             (dwi.bvals[:-1], dwi.bvecs, f"{n} volumes but {n - 1} b-values"),
             (dwi.bvals, dwi.bvecs[:-1], f"not \\({n}, 3\\)"), (None, dwi.bvecs, "no b-values"),
             (dwi.bvals, None, "no gradient directions")]
    for bvals, bvecs, said in cases:
        with pytest.raises(IQTError, match=said):
            dti.fit_dti(with_table(bvals, bvecs))


def test_gradient_refusals_name_the_series_file_the_threshold_and_the_volumes():
    """'no b=0 volume in the series' named neither the file nor the b0 threshold (a b0 written as 60
    s/mm^2), and a zero direction named no volume."""
    dwi = make_phantom(shape=(8, 8, 8), voxel_mm=2.0, n_dirs=12).replace(meta={"path": "sub/dwi.nii.gz"})
    b = np.array(dwi.bvals, float)
    b[b <= 50] = 60.0
    with pytest.raises(IQTError, match=r"^sub/dwi.nii.gz: no b=0 volume .*b <= 50 s/mm\^2; the lowest is 60"):
        dti.fit_dti(dwi.replace(bvals=b))
    with pytest.raises(IQTError, match=r"^sub/dwi.nii.gz: no b=0 volume"):
        dti.brain_mask(dwi.replace(bvals=b))
    g = np.array(dwi.bvecs, float)
    g[[3, 7]] = 0.0
    with pytest.raises(IQTError, match=r"^sub/dwi.nii.gz: diffusion-weighted volumes 3, 7 \(counted from 0\) have a zero"
                                      r".*usually the scanner's trace \(isotropic\) image; remove it"):  # said why (audit)
        dti.fit_dti(dwi.replace(bvecs=g))


@pytest.mark.parametrize("with_b0", [True, False])
def test_low_b_volumes_keep_their_weighting_in_the_fit(with_b0):
    """Volumes with 0 < b <= 50 s/mm^2 count as b0s for the mask and checks, but had entered the fit as b = 0 (their
    directions zeroed): noise-free signal of a known tensor came out with MD 4-5 % low (a tool-inputs audit); dipy,
    FSL and MRtrix fit them with their own b-value, and so does this fit now, exactly."""
    rng = np.random.default_rng(0)
    g = rng.normal(size=(23, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    b = np.array([50.0] * 3 + [1000.0] * 20)
    if with_b0:
        b, g = np.concatenate([[0.0], b]), np.vstack([[0.0, 0.0, 0.0], g])
    d = np.array([[1.4e-3, 0.1e-3, 0.05e-3], [0.1e-3, 0.5e-3, 0.0], [0.05e-3, 0.0, 0.4e-3]])
    signal = 1000.0 * np.exp(-b * np.einsum("ni,ij,nj->n", g, d, g))
    dwi = Volume(np.broadcast_to(signal, (4, 4, 4, b.size)).astype(np.float64), np.eye(4), "dwi", bvals=b, bvecs=g)
    fitted = dti.fit_dti(dwi).data[1, 1, 1]
    want = d[np.tril_indices(3)]  # Dxx Dxy Dyy Dxz Dyz Dzz
    np.testing.assert_allclose(fitted, want, atol=2e-7)


def test_the_noise_floor_reads_low_b_volumes_as_the_fit_does():
    """fit_noise's design took a low-b volume as b = 0 after the fit had stopped doing so: on noise-free signal with
    b = 50 volumes the floor read 1.7e-5 mm^2/s where it is 0 (a review)."""
    from ImageQualityTransferLib.dmri import fit_noise

    rng = np.random.default_rng(1)
    g = rng.normal(size=(26, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    b = np.array([0.0, 0.0] + [50.0] * 6 + [2000.0] * 18)
    g[:2] = 0.0
    d = np.array([[1.2e-3, 0.2e-3, 0.0], [0.2e-3, 0.6e-3, 0.1e-3], [0.0, 0.1e-3, 0.5e-3]])
    signal = 1000.0 * np.exp(-b * np.einsum("ni,ij,nj->n", g, d, g))
    dwi = Volume(np.broadcast_to(signal, (3, 3, 3, b.size)).astype(np.float64), np.eye(4), "dwi", bvals=b, bvecs=g)
    t = dti.fit_dti(dwi)
    floor = fit_noise.noise_floor(dwi.data, b, g, t.data, np.ones((3, 3, 3), bool))
    assert np.nanmax(np.abs(floor)) < 1e-9, np.nanmax(np.abs(floor))


def test_a_mask_volume_of_another_position_is_refused_by_the_fit():
    """fit_dti(dwi, mask) with a mask Volume of the DWI's shape but another scan's affine fitted inside the other brain
    (an input audit, through the Python API: Method.predict refused the same mask)."""
    dwi = make_phantom(shape=(16, 18, 14), voxel_mm=4.0, n_dirs=12)
    mask = dti.brain_mask(dwi)
    assert dti.fit_dti(dwi, mask).shape3 == dwi.shape3
    moved = mask.affine.copy()
    moved[1, 3] += 12.0
    with pytest.raises(IQTError, match="another position or orientation"):
        dti.fit_dti(dwi, Volume(mask.data, moved, "mask"))
    assert dti.fit_dti(dwi, mask.data).shape3 == dwi.shape3  # an array has no position: the DWI's
