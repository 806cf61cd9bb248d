"""The brain estimated from tensors fitted without a mask (dmri.dti.brain_from_tensors): it keeps every brain voxel
within the support's one-voxel margin, leaves the noise background out, and finds nothing to remove in a field of
tissue; a method run without a mask on such input writes zero outside it and says so in one line."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from ImageQualityTransferLib import methods
from ImageQualityTransferLib.core.errors import IQTWarning
from ImageQualityTransferLib.core.grid import repeat_blocks
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.dmri.dti import brain_from_tensors

import helpers
from helpers import low_res_case

CUBE = np.ones((3, 3, 3), bool)
_MADE: dict = {}  # what several tests here compute from the same scan, made once per module


def unmasked_fit(subject):
    """The subject's DWI fitted over the whole field of view (dti.fit_dti without a mask)."""
    from ImageQualityTransferLib.dmri.dti import fit_dti

    if ("fit", subject.name) not in _MADE:
        _MADE["fit", subject.name] = fit_dti(subject.dwi, None)
    return _MADE["fit", subject.name]


def estimated_mask(subject):
    """dti.brain_mask of the subject's DWI (slice holes filled, as iqt fit and the Slicer module make it)."""
    from ImageQualityTransferLib.dmri.dti import brain_mask

    if ("mask", subject.name) not in _MADE:
        _MADE["mask", subject.name] = brain_mask(subject.dwi)
    return _MADE["mask", subject.name]


def check_estimate(lr, brain_mask, max_share):
    est = brain_from_tensors(lr)
    assert est is not None
    brain = np.asarray(brain_mask.data, bool)
    assert not (brain & ~ndimage.binary_dilation(est.data, CUBE)).any()  # within the support's margin
    assert est.data.mean() < max_share  # the background is left out
    return est


def test_the_brain_of_an_unmasked_phantom_is_found(small_subject):
    from ImageQualityTransferLib.dmri.subject import load_subject, make_case

    case = make_case(load_subject(small_subject), 2, style="unmasked")
    assert np.all(np.any(case.lr.data != 0, axis=-1))  # tensors over the whole field of view
    check_estimate(case.lr, case.lr_mask, 0.8)


def test_a_native_unmasked_fit_leaves_its_noise_background_out(axial_subject):
    """Fitted over the whole field of view at the scan's own resolution (what MRtrix or dipy without a mask give),
    the 3 mm Prisma's background fits have tissue-like MD in most voxels but vary from voxel to voxel: the estimate
    kept 89 % of the field of view before they were told apart, 61 % now (its brain mask: 24 %)."""
    fit = unmasked_fit(axial_subject)
    assert np.mean(np.any(fit.data != 0, axis=-1)) > 0.95  # tensors over the whole field of view
    check_estimate(fit, estimated_mask(axial_subject), 0.65)


def test_a_field_of_tissue_has_no_background_to_remove():
    t = np.zeros((12, 12, 12, 6), np.float32)
    t[..., [0, 2, 5]] = [1.2e-3, 0.6e-3, 0.5e-3]
    assert brain_from_tensors(Volume(t, np.eye(4), "tensor")) is None


def test_on_a_real_unmasked_subject_the_output_is_zero_outside_the_estimated_brain(axial_subject):
    from ImageQualityTransferLib.dmri.subject import make_case

    case = make_case(axial_subject, 2, style="unmasked")
    est = check_estimate(case.lr, case.lr_mask, 0.75)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = methods.get("cubic").predict(case.lr, 2)
    said = [str(w.message) for w in caught if "estimated from the tensors" in str(w.message)]
    assert len(said) == 1 and f"{int(est.data.sum())} of the field's {est.data.size} low-res voxels" in said[0]
    support = repeat_blocks(ndimage.binary_dilation(est.data, CUBE), 2)
    assert not pred.tensor.data[~support].any()
    assert np.all(np.any(pred.tensor.data[case.hr_mask] != 0, axis=-1))


def test_an_unmasked_fit_that_is_mostly_zeroed_background_runs_without_a_mask(zeroed_background_subject):
    """Most of this unmasked fit is background of near-zero MD (the scanner zeroed it): the input is taken as mm^2/s
    (it was refused as m^2/s before), the brain is estimated, and inside it the output is the masked run's."""
    case = low_res_case(zeroed_background_subject, 2, "unmasked")
    md = np.asarray(case.lr.data).reshape(-1, 6)[:, [0, 2, 5]].mean(axis=1)
    assert np.median(md) < 1e-8
    est = check_estimate(case.lr, case.lr_mask, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        free = methods.get("espcn").predict(case.lr, 2).tensor.data
    masked = methods.get("espcn").predict(case.lr, 2, case.lr_mask).tensor.data
    assert not free[~repeat_blocks(ndimage.binary_dilation(est.data, CUBE), 2)].any()
    inner = repeat_blocks(ndimage.binary_erosion(case.lr_mask.data, CUBE, iterations=2), 2)
    np.testing.assert_allclose(free[inner], masked[inner], atol=1e-8)  # outputs reach 4e-3 mm^2/s


def test_the_cnn_unit_of_a_noisy_unmasked_fit_is_the_brains(noisy_background_subject):
    """The CNNs see their input in units of the MD mode; on this unmasked fit the clipped background noise fits
    set it 1.7x too high (interior DT-RMSE 0.958x cubic against 0.893x on the masked fit): now within 1 %."""
    from ImageQualityTransferLib.methods.inputs import clip_input
    from ImageQualityTransferLib.methods.cnn.inference import fill_context, subject_scale

    units = {style: subject_scale(fill_context(clip_input(np.asarray(low_res_case(noisy_background_subject, 2,
                                                                                   style).lr.data))), None)
             for style in ("own", "unmasked")}
    assert abs(units["unmasked"] / units["own"] - 1) < 0.01


def test_an_unmasked_least_squares_fit_that_is_mostly_not_positive_definite_runs(zeroed_background_subject):
    """OLS over the whole field of view (dipy or MRtrix OLS without a mask) of this scan gives 59 % of its voxels
    a negative eigenvalue, nearly all in the background: refused before as "not a diffusion tensor fit", now judged on its
    tissue-like voxels and run; inside the brain the output is the masked run's."""
    from ImageQualityTransferLib.core import tensors

    case = low_res_case(zeroed_background_subject, 2, "unmasked-ols")
    flat = np.asarray(case.lr.data).reshape(-1, 6)
    assert (tensors.eigenvalues(flat[np.any(flat != 0, axis=-1)])[:, 0] > 0).mean() < 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        free = methods.get("biqt").predict(case.lr, 2, uncertainty=False).tensor.data  # the tensors compared only
    with pytest.warns(IQTWarning, match="1 voxel in the mask holds a failed fit"):  # an OLS fit's lone failure, said
        masked = methods.get("biqt").predict(case.lr, 2, case.lr_mask, uncertainty=False).tensor.data
    inner = repeat_blocks(ndimage.binary_erosion(case.lr_mask.data, CUBE, iterations=2), 2)
    np.testing.assert_allclose(free[inner], masked[inner], atol=1e-8)


def test_a_native_scan_fitted_without_a_mask_chooses_the_model_its_masked_fit_does(axial_subject):
    """The brain estimated from a whole-field fit keeps a rim of scalp and background fits about as deep in mm at any
    voxel size, so its noise index is read inside a core that deep (noise_level.estimated_core): on this native 3 mm scan
    the unmasked fit read 0.082 with the 4-voxel core set on 6 mm inputs and ran the noise-trained models, where its
    masked fit reads 0.070 and runs the defaults."""
    from ImageQualityTransferLib.core import noise_level
    from ImageQualityTransferLib.dmri.dti import fit_dti

    dwi = axial_subject.dwi
    mask = estimated_mask(axial_subject)
    m = methods.get("global-linear")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        free = m.predict(unmasked_fit(axial_subject), 2, uncertainty=False).tensor.meta
        masked = m.predict(fit_dti(dwi, mask), 2, mask, uncertainty=False).tensor.meta
    assert noise_level.estimated_core(dwi.voxel_size) == (8, 8, 8)
    assert masked["noise_index"] < noise_level.NOISY_MODEL and free["noise_index"] < noise_level.NOISY_MODEL
    assert abs(free["noise_index"] - masked["noise_index"]) < 0.005
    assert "model_for" not in free and "model_for" not in masked


def test_a_thin_slab_fitted_without_a_mask_chooses_the_model_its_masked_fit_does(axial_subject):
    """A 10-slice slab of the scan: too thin for the core along its slices, which was then given up on every axis at
    once, so the estimated brain kept its scalp rim in-plane and read as noisy (0.085 against its masked fit's 0.067:
    the noise-trained model ran, a tool-inputs audit). The core is given up along the thinnest axis first."""
    from ImageQualityTransferLib.core import noise_level
    from ImageQualityTransferLib.dmri.dti import fit_dti

    mask = estimated_mask(axial_subject)
    k = axial_subject.dwi.shape3[2] // 2
    slab = axial_subject.dwi.replace(data=np.ascontiguousarray(axial_subject.dwi.data[:, :, k - 5:k + 5]))
    slab_mask = mask.replace(data=np.ascontiguousarray(mask.data[:, :, k - 5:k + 5]))
    m = methods.get("global-linear")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        free = m.predict(fit_dti(slab, None), 2, uncertainty=False).tensor.meta
        masked = m.predict(fit_dti(slab, slab_mask), 2, slab_mask, uncertainty=False).tensor.meta
    assert masked["noise_index"] < noise_level.NOISY_MODEL and free["noise_index"] < noise_level.NOISY_MODEL, (free, masked)
    assert abs(free["noise_index"] - masked["noise_index"]) < 0.01, (free["noise_index"], masked["noise_index"])
    assert "model_for" not in free and "model_for" not in masked


def test_holes_enclosed_within_a_slice_are_filled():
    """A hole open to the outside in 3D but enclosed within its slices (as median Otsu leaves by the ventricles)."""
    from ImageQualityTransferLib.dmri.dti import fill_slice_holes

    z, y, x = np.mgrid[:20, :20, :20]
    ball = (x - 10) ** 2 + (y - 10) ** 2 + (z - 10) ** 2 < 64
    hole = (abs(x - 10) <= 1) & (abs(y - 10) <= 1) & (z >= 10)  # a channel from the centre out through the top
    mask = ball & ~hole
    assert np.array_equal(ndimage.binary_fill_holes(mask), mask)  # a 3D fill leaves it
    filled = fill_slice_holes(mask)
    assert np.array_equal(filled, ball)  # within the ball, and every axial slice closed
    assert np.array_equal(fill_slice_holes(ball), ball)


def test_the_estimated_mask_of_a_real_scan_has_no_slice_holes(axial_subject):
    """Median Otsu left 5.8 % of the 3 mm scan's brain as holes within slices; the mask iqt fit and the
    Slicer module use fills them; the evaluation's own regions keep the mask the published figures used."""
    from ImageQualityTransferLib.dmri.dti import brain_mask, fill_slice_holes

    old = brain_mask(axial_subject.dwi, fill_slices=False).data
    new = estimated_mask(axial_subject).data
    assert np.array_equal(axial_subject.mask.data, old)
    assert (new >= old).all() and new.sum() > 1.03 * old.sum()
    assert np.array_equal(fill_slice_holes(new), new)


def test_the_line_about_an_unmasked_input_names_its_file(tmp_path, capsys):
    """The whole-field line was the one input warning without its file's name (a thick-slice audit's low item)."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.dmri.dti import fit_dti
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    from helpers import run_cli

    dwi = make_phantom(shape=(24, 26, 20), voxel_mm=4.0, n_dirs=12)
    fileio.save_tensor(fit_dti(dwi, None), tmp_path / "whole.nii.gz")
    code, _, err = run_cli(capsys, "upsample", tmp_path / "whole.nii.gz", "-o", tmp_path / "o.nii.gz", "--method", "cubic")
    said = [line for line in err.splitlines() if "the input holds tensors over the whole field" in line]
    assert code == 0 and len(said) == 1, err
    assert said[0].startswith(f"iqt: warning: {tmp_path / 'whole.nii.gz'}: the input holds"), said


def _ventricles_in_noise():
    """A whole-field fit: a tissue ball (MD 0.7e-3 mm^2/s) holding two noisy CSF blocks (MD 0.3e-3 and 3.2e-3 mm^2/s
    in a checkerboard: partial-volume fits at the ventricles' edges), one at the ball's middle and one reaching
    towards its edge, in background noise fits (MD log-uniform over 1e-5 to 3e-2 mm^2/s, a third not positive
    definite)."""
    rng = np.random.default_rng(3)
    shape = (40, 40, 40)
    r = np.linalg.norm(np.indices(shape) - 19.5, axis=0)
    md = np.exp(rng.uniform(np.log(1e-5), np.log(3e-2), shape))
    ball = r < 15
    md[ball] = 0.7e-3 * rng.uniform(0.95, 1.05, ball.sum())
    csf = np.zeros(shape, bool)
    csf[16:24, 16:24, 16:24] = True
    csf[16:22, 9:15, 17:23] = True
    checker = np.indices(shape).sum(axis=0) % 2 == 0
    md[csf] = np.where(checker[csf], 0.3e-3, 3.2e-3)
    t = np.zeros(shape + (6,))
    t[..., 0] = t[..., 2] = t[..., 5] = md  # isotropic (Dxx, Dxy, Dyy, Dxz, Dyz, Dzz)
    neg = ~ball & (rng.random(shape) < 1 / 3)
    t[neg, 5] = -md[neg]
    return Volume(t, np.diag([3.0, 3.0, 3.0, 1.0]), "tensor"), ball, csf


def test_in_brain_csf_flagged_as_noise_does_not_set_the_display_scale():
    """Without a mask, noise_fits flags every noise-like fit, the ventricles' CSF and its borders too (sparing the
    brain's core had left background noise fits unflagged and rendered as confident; CHANGELOG 0.21.0), and
    methods/flags.py raises the maps there to one level, the map's top; the display's scale (dti.unflagged) is read
    from the brain's own values, not that level."""
    from ImageQualityTransferLib.dmri.dti import noise_fits, unflagged
    from ImageQualityTransferLib.methods.flags import flag_noise

    lr, ball, csf = _ventricles_in_noise()
    flagged = noise_fits(lr)
    assert flagged[csf].mean() > 0.5 and flagged[~ball].mean() > 0.9
    rng = np.random.default_rng(1)
    std = rng.uniform(0.5e-4, 1.5e-4, ball.shape)
    raised = flag_noise(lr.data, std, 1, flagged & ball, top=9.87e-3)
    assert (raised[csf & flagged] == 9.87e-3).all() and np.percentile(raised[ball], 99) > 9e-3  # with them
    assert 1.4e-4 < np.percentile(unflagged(raised[ball]), 99) < 1.5e-4


def test_a_display_scale_leaves_flag_levels_out():
    """dti.unflagged: a value many voxels hold exactly (methods/flags.py's flag level) is left out of a map's scale;
    a value a x4 block repeats (64 voxels) is a measurement; a map of one value, or flat but for a few voxels, is
    kept whole."""
    from ImageQualityTransferLib.dmri.dti import unflagged

    rng = np.random.default_rng(0)
    values = np.repeat(rng.uniform(1e-4, 2e-4, 2000), 64)  # block-constant: 64 voxels each
    flagged = np.concatenate([values, np.full(500, 9e-3)])
    np.testing.assert_array_equal(unflagged(flagged), values)
    np.testing.assert_array_equal(unflagged(values), values)
    np.testing.assert_array_equal(unflagged(np.full(5000, 3e-4)), np.full(5000, 3e-4))
    flat = np.concatenate([np.full(5000, 3e-4), [4e-3]])
    np.testing.assert_array_equal(unflagged(flat), flat)


def test_a_maps_exact_zeros_are_not_a_flag_level():
    """dti.unflagged keeps a map's zeros (iqt report's scalar_views passes every voxel in the mask): a map with 30 %
    exact zeros had lost them, its 99th percentile read over the rest alone."""
    from ImageQualityTransferLib.dmri.dti import unflagged

    values = np.concatenate([np.zeros(3000), np.random.default_rng(0).uniform(1e-4, 2e-4, 7000), np.full(200, 9e-3)])
    kept = unflagged(values)
    assert (kept == 0).sum() == 3000 and not (kept == 9e-3).any()


def test_a_brain_outnumbered_by_a_smooth_background_is_found_in_its_own_unit():
    """The background's peak is the field's MD mode and the brain lies within TISSUE_MD of it, so every voxel read as
    tissue and no brain was found (the 3 mm Prisma scans at x3): the estimate is made again in the unit of the
    histogram's peak above it, the brain's, which its meta records."""
    from ImageQualityTransferLib.core import tensors

    lr, brain = helpers.brain_outnumbered_by_its_background()
    assert (~brain).sum() > 2 * brain.sum() and tensors.md_mode(lr.data) < 0.5e-3
    est = brain_from_tensors(lr)
    assert est is not None
    assert not (brain & ~est.data).any() and est.data.mean() < 0.5  # the background left out
    assert 0.65e-3 < est.meta["md_unit"] < 0.8e-3
