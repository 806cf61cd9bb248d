"""Tensor invariants, log/exp and rotation (core.tensors)."""

import re
import warnings

import numpy as np
import pytest

from ImageQualityTransferLib.core import tensor_checks, tensors
from ImageQualityTransferLib.core.errors import IQTError, IQTWarning

from helpers import random_spd


def test_invariants_of_known_tensors():
    prolate = tensors.from_matrix(np.diag([1.7e-3, 0.3e-3, 0.3e-3]))
    iso = tensors.from_matrix(np.eye(3) * 0.8e-3)
    assert np.isclose(tensors.md(prolate), 0.7667e-3, rtol=1e-3)
    expected_fa = np.sqrt(0.5) * np.sqrt(2 * 1.4**2) / np.sqrt(1.7**2 + 2 * 0.3**2)
    assert np.isclose(tensors.fa(prolate), expected_fa, rtol=1e-6)
    assert np.isclose(tensors.fa(iso), 0.0, atol=1e-7)
    assert np.allclose(tensors.color_fa(prolate), [expected_fa, 0, 0], atol=1e-6)
    assert tensors.fa(np.zeros(6)) == 0.0


def test_one_fa_for_arrays_in_closed_form_that_agrees_with_the_eigenvalues(monkeypatch):
    """`fa` is the closed form (30x faster than eigh on a dev subject's tensors), the eigenvalues' FA to 1e-12 on
    positive-definite, indefinite, tiny, zero and non-finite tensors; the CNN's torch FA is the same
    `fa_closed_form`, and no second array FA (the old fa_fast) is left."""
    from pathlib import Path

    rng = np.random.default_rng(5)
    t = np.concatenate([random_spd(200), rng.normal(size=(200, 6)) * 1e-3, random_spd(5) * 1e-150, np.zeros((2, 6))])
    t[-1, 3], t[-2, 0] = np.nan, np.inf
    want = tensors.fa_from_evals(tensors.eig(t)[0])

    def no_eigen(*_a, **_k):
        raise AssertionError("fa decomposed the tensors: it is the closed form")

    with warnings.catch_warnings(), monkeypatch.context() as m:
        warnings.simplefilter("error")
        m.setattr(tensors, "eig", no_eigen)
        m.setattr(np.linalg, "eigh", no_eigen)
        m.setattr(np.linalg, "eigvalsh", no_eigen)
        got = tensors.fa(t)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert got.dtype == np.float64 and got[-1] == got[-2] == 0.0
    cnn = (Path(tensors.__file__).parents[1] / "methods" / "cnn" / "inference.py").read_text()  # read: no torch import
    assert not hasattr(tensors, "fa_fast") and "def fa_closed_form" not in cnn
    assert "from ...core.tensors import fa_closed_form," in cnn


def test_log_exp_and_plausibility():
    t = random_spd(50)
    assert np.allclose(tensors.expm(tensors.logm(t)), t, rtol=1e-6, atol=1e-12)
    assert tensors.plausible(t).all()
    assert not tensors.plausible(tensors.from_matrix(np.eye(3) * 1.0))  # a 1 mm^2/s fit failure
    assert not tensors.plausible(np.array([np.nan, 0, 0, 0, 0, 0]))
    clipped = tensors.clip_eigenvalues(tensors.from_matrix(np.diag([6e-3, -1e-3, 1e-3])), 0, 4e-3)
    assert np.allclose(tensors.eig(clipped)[0], [4e-3, 1e-3, 0], atol=1e-12)


def test_rotation_is_a_change_of_frame():
    t = random_spd(10)
    theta = 0.3
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    assert np.allclose(tensors.eig(tensors.rotate(t, rot))[0], tensors.eig(t)[0])
    assert np.allclose(tensors.rotate(tensors.rotate(t, rot), rot.T), t)


def test_distance_to_physical_is_the_rms_change_that_lifts_negative_eigenvalues_to_zero():
    rot = tensors.to_matrix(np.array([1.0, 0.3, 1.2, -0.2, 0.1, 0.9]))
    _, v = np.linalg.eigh(rot)
    bad = v @ np.diag([-2e-4, 5e-4, 1e-3]) @ v.T
    t = np.stack([tensors.from_matrix(bad), tensors.from_matrix(v @ np.diag([1e-4, 5e-4, 1e-3]) @ v.T), np.zeros(6)])
    d = tensors.distance_to_physical(t)
    change = tensors.from_matrix(v @ np.diag([-2e-4, 0, 0]) @ v.T)
    np.testing.assert_allclose(d, [np.sqrt(np.mean(change**2)), 0.0, 0.0], rtol=1e-5)


def test_closed_form_eigenvalues_match_lapack():
    """`tensors.eigenvalues` against numpy's eigvalsh on random symmetric tensors of brain scale (indefinite ones
    too), exactly isotropic and two-fold degenerate ones, and zeros."""
    rng = np.random.default_rng(5)
    m = rng.normal(size=(20000, 3, 3)) * 1e-3
    t = tensors.from_matrix(m + np.swapaxes(m, 1, 2))
    iso = tensors.from_matrix(np.eye(3) * 0.7e-3)
    prolate = tensors.from_matrix(np.diag([1.7e-3, 0.3e-3, 0.3e-3]))
    t = np.concatenate([t, iso[None], prolate[None], np.zeros((1, 6))])
    ref = np.linalg.eigvalsh(tensors.to_matrix(t))
    got = tensors.eigenvalues(t)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8 * np.abs(ref).max())
    np.testing.assert_allclose(got[-3], [0.7e-3] * 3, rtol=1e-12)
    np.testing.assert_array_equal(got[-1], 0.0)


def test_the_unit_check_reads_the_brain_of_a_fit_that_is_mostly_background():
    """An unmasked fit where the scanner zeroed the background holds mostly near-zero-MD fits (about 1e-9 mm^2/s,
    57 % of the voxels of the Elition training subject): still mm^2/s; the same volume in m^2/s or 1e-3 mm^2/s is not."""
    lam = np.random.default_rng(0).uniform(0.2e-3, 1.8e-3, size=(4000, 3))  # brain and some CSF
    brain = tensors.from_matrix(lam[:, :, None] * np.eye(3))
    background = np.tile(np.array([1e-9, 0, 1e-9, 0, 0, 1e-9]), (6000, 1))
    t = np.concatenate([brain, background]).reshape(100, 100, 1, 6)
    assert np.median(tensors.md(t.reshape(-1, 6))) < 1e-8  # what the check read before
    tensor_checks.check_scale(t)
    for factor in (1e-6, 1e3):  # m^2/s, 1e-3 mm^2/s
        with pytest.raises(IQTError, match=r"not in mm\^2/s"):
            tensor_checks.check_scale(t * factor)
    with pytest.raises(IQTError, match=r"not in mm\^2/s"):
        tensor_checks.check_scale(np.concatenate([brain[:200] * 1e-6, background]).reshape(-1, 1, 1, 6))


def test_the_md_mode_is_the_brains_beside_many_clipped_noise_fits():
    """Noise fits that input clipping turned into (0, 0, 4e-3) pile up at MD 1.33e-3; on a noisy unmasked scan they
    outnumbered the brain's peak and set the CNN's unit 1.7x too high (the Achieva training subject)."""
    rng = np.random.default_rng(1)
    lam = rng.uniform(0.3e-3, 1.5e-3, size=(3000, 3))
    brain = tensors.from_matrix(lam[:, :, None] * np.eye(3))
    m = rng.normal(size=(20000, 3, 3)) * 5e-3  # wild symmetric fits, as in a noisy background
    noise = tensors.clip_eigenvalues(tensors.from_matrix(m + np.swapaxes(m, 1, 2)), *tensors.INPUT_CLIP)
    noise = noise.astype(np.float32)  # as stored: the clipped zeros come back as +-1e-11
    t = np.concatenate([brain, noise]).reshape(-1, 1, 1, 6)
    assert abs(tensors.md_mode(t) / tensors.md_mode(brain.reshape(-1, 1, 1, 6)) - 1) < 0.02
    assert abs(tensors.md_mode(noise.reshape(-1, 1, 1, 6)) / tensors.md_mode(brain.reshape(-1, 1, 1, 6)) - 1) > 0.3


def test_a_wrong_unit_is_named_with_the_factor_that_mends_it():
    lam = np.random.default_rng(2).uniform(0.3e-3, 1.5e-3, size=(2000, 3))
    t = tensors.from_matrix(lam[:, :, None] * np.eye(3)).reshape(-1, 1, 1, 6)
    for factor, said in ((1e3, "multiply them by 1e-3 to get mm^2/s (DTI-TK"), (1e-6, "multiply them by 1e6 to get "
                         "mm^2/s (m^2/s, as Camino"), (1e-3, "multiply them by 1e3 to get mm^2/s"),
                         # twenty times too small had passed without a word (an input audit)
                         (0.05, "multiply them by 1e1 to get mm^2/s")):
        with pytest.raises(IQTError, match=re.escape(said)):
            tensor_checks.check_scale(t * factor)
    # ten times too small reads partly as tissue: one warning naming the factor (it too had passed without a word)
    # and names noise, which reads as low (a noise-floor scan had read as a unit slip alone)
    with pytest.warns(IQTWarning, match=r"below any living brain's.*multiply them by 1e1 to get mm\^2/s.*noise floor"):
        tensor_checks.check_scale(t * 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor_checks.check_scale(t * 0.4)  # a low MD within tissue's (ex vivo), and the brain's own: nothing said
        tensor_checks.check_scale(t)
    # where the voxels are the brain (a mask, or a tightly masked input), their own median is read: ten times too small
    # is refused (a real subject's tight fit x0.1, brain median 7.6e-5, had passed with a warning: a bad-input audit),
    # and a factor that is no power of ten is said as such
    with pytest.raises(IQTError, match=r"typical MD 9.*multiply them by 1e1 to get mm\^2/s$"):
        tensor_checks.check_scale(t * 0.1, brain=True)
    with pytest.raises(IQTError, match=r"multiply them by 1e1 to get mm\^2/s \(they read about 1[5-9] times below a "
                                       r"brain's, not a power of ten"):
        tensor_checks.check_scale(t * 0.04, brain=True)  # this brain's median MD 0.9e-3: 25 times too small
    assert "(they read about 5.1 times above a brain's" in tensor_checks._rescale_hint(3.6e-3)  # not "0.19" (review)


def test_positive_definiteness_is_judged_on_the_tissue_like_voxels():
    """Mostly background fits with negative eigenvalues (least squares without a mask) pass; the same tissue read in
    another element order does not."""
    rng = np.random.default_rng(3)
    lam = rng.uniform(0.3e-3, 1.5e-3, size=(3000, 3))
    rot = np.linalg.qr(rng.normal(size=(3000, 3, 3)))[0]
    brain = tensors.from_matrix(rot @ (lam[:, :, None] * np.eye(3)) @ np.swapaxes(rot, 1, 2))
    m = rng.normal(size=(6000, 3, 3)) * 2e-5
    background = tensors.from_matrix(m + np.swapaxes(m, 1, 2))  # noise fits of near-zero MD, half not PD
    t = np.concatenate([brain, background]).reshape(-1, 1, 1, 6)
    assert (tensors.eigenvalues(t.reshape(-1, 6))[:, 0] > 0).mean() < 0.5
    tensor_checks.check_scale(t)
    with pytest.raises(IQTError, match="positive definite"):
        tensor_checks.check_scale(tensors.from_order(t, "mrtrix"))


def test_dtifit_maps_match_the_eigen_decomposition_and_are_zero_where_the_tensor_is():
    """FA, MD, L1-L3 and V1 in closed form, in chunks: LAPACK's values over more than one chunk (250,000 tensors, a
    non-physical one among them), V1 up to sign wherever L1 exceeds L2 by 0.1 %, and every map zero at a zero tensor."""
    t = random_spd(250_000, seed=3).reshape(500, 500, 1, 6)
    t[0, 0, 0] = tensors.from_matrix(np.diag([1e-3, 2e-4, -1e-4]))
    t[1:3, 5] = 0
    maps = tensors.dtifit_maps(t)
    w, v = tensors.eig(t.astype(np.float64))
    present = np.any(t != 0, axis=-1)
    np.testing.assert_allclose(maps["FA"][present], tensors.fa_from_evals(w[present]), atol=1e-6)
    np.testing.assert_allclose(maps["MD"][present], w[present].mean(-1), rtol=1e-5)
    for k in range(3):
        np.testing.assert_allclose(maps[f"L{k + 1}"][present], w[present][:, k], rtol=1e-5, atol=1e-10)
    with np.errstate(invalid="ignore"):  # 0 / 0 at the zero tensors
        gap = (w[..., 0] - w[..., 1]) / np.abs(w[..., 0]) > 1e-3
    dots = np.abs((maps["V1"] * v[..., :, 0]).sum(-1))
    assert dots[present & gap].min() > 1 - 1e-5
    assert maps["L3"][0, 0, 0] < 0 and maps["FA"][0, 0, 0] <= 1
    for k, m in maps.items():
        assert m.dtype == np.float32 and np.all(m[~present] == 0), k


def test_a_negated_int16_whole_field_fit_is_told_its_sign(tmp_path):
    """A whole-field fit stored as int16 and negated (-D: every diagonal element negative) had been told to rescale it
    ("multiply them by 1e3"), or that it was perhaps no tensor fit (a review): the line says the sign is inverted and
    what to do; the same fit unnegated passes."""
    import nibabel as nib

    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.methods.inputs import check_tensor_input

    rng = np.random.default_rng(3)
    shape = (16, 16, 12)
    m = rng.normal(size=(int(np.prod(shape)), 3, 3)) * 2e-5
    t = tensors.from_matrix(m + np.swapaxes(m, 1, 2)).reshape(shape + (6,))  # a whole field of noise fits
    brain = np.zeros(shape, bool)
    brain[4:12, 4:12, 3:9] = True
    lam = rng.uniform(0.3e-3, 1.5e-3, size=(int(brain.sum()), 3))
    rot = np.linalg.qr(rng.normal(size=(len(lam), 3, 3)))[0]
    t[brain] = tensors.from_matrix(rot @ (lam[:, :, None] * np.eye(3)) @ np.swapaxes(rot, 1, 2))
    for sign in (1, -1):
        img = nib.Nifti1Image((sign * t).astype(np.float32), np.diag([2.0, 2, 2, 1]))
        img.set_data_dtype(np.int16)  # stored as int16 with a scale factor
        nib.save(img, tmp_path / f"t{sign}.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IQTWarning)
        check_tensor_input(fileio.load_tensor(tmp_path / "t1.nii.gz", "dipy", True))
    with pytest.raises(IQTError, match=r"t-1.nii.gz: the input tensors' sign is inverted: .* multiply them by -1"):
        check_tensor_input(fileio.load_tensor(tmp_path / "t-1.nii.gz", "dipy", True))
