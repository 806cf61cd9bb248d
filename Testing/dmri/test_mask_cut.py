"""A brain mask that cuts the brain is said where the DWI is at hand: dipy's median_otsu with its tutorial settings on a
x2 low-res b0 left 12-37 % of each real subject's brain out of the fit with no line (docs/measurements.md, A mask that
cuts the brain). A fair mask (the scan's own, dilated, one voxel tighter, the benchmark's with its holes) says nothing."""

import warnings

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.errors import IQTWarning
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.dmri import dti
from ImageQualityTransferLib.dmri.degrade import block_average, block_majority
from ImageQualityTransferLib.dmri.mask_cut import CUT_SHARE, TISSUE_ADC, apparent_diffusion, brain_cut, warn_if_cut

from helpers import run_cli

BALL = ndimage.generate_binary_structure(3, 1)


@pytest.fixture(scope="module")
def low_res(axial_subject):
    """The 3 mm dev scan block-averaged by 2, as a user's low-res DWI."""
    dwi = axial_subject.dwi
    aff = dwi.affine.copy()
    aff[:3, :3] *= 2
    aff[:3, 3] += dwi.affine[:3, :3] @ np.full(3, 0.5)
    return Volume(block_average(np.asarray(dwi.data, np.float32), 2), aff, "dwi", bvals=dwi.bvals, bvecs=dwi.bvecs)


def _said(dwi, mask) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IQTWarning)
        warn_if_cut(dwi, mask, "--mask m.nii.gz")
    return [str(w.message) for w in caught if issubclass(w.category, IQTWarning)]


def test_dipys_tutorial_otsu_mask_on_a_low_res_b0_is_said_to_cut_the_brain(low_res):
    from dipy.segment.mask import median_otsu

    tutorial = median_otsu(dti.mean_b0(low_res), median_radius=4, numpass=4)[1]
    said = _said(low_res, tutorial)
    assert len(said) == 1 and said[0].startswith("--mask m.nii.gz cuts the brain: 14.7 % of the brain the DWI's b0 shows")
    assert "give a mask that covers the whole brain" in said[0]


@pytest.mark.parametrize("erode", [2, 3])
def test_a_mask_two_or_more_voxels_inside_the_brain_is_said(low_res, erode):
    own = dti.brain_mask(low_res).data
    assert len(_said(low_res, ndimage.binary_erosion(own, BALL, iterations=erode))) == 1


def test_fair_masks_say_nothing(low_res, axial_subject):
    own = dti.brain_mask(low_res).data
    fair = {"own": own, "dilated by 2": ndimage.binary_dilation(own, BALL, iterations=2),
            "one voxel tighter": ndimage.binary_erosion(own, BALL),
            "the benchmark's, its holes open": dti.brain_mask(low_res, fill_slices=False).data,
            "the high-res mask reduced to this grid": block_majority(axial_subject.mask.data, 2)}
    for name, mask in fair.items():
        assert _said(low_res, mask) == [], name
    assert brain_cut(low_res, fair["one voxel tighter"]).beyond < 0.02  # the line sits between one and two voxels
    # the b0's brain on this grid takes in the reduced mask's dim outer voxels: 3.5 % of it lies beyond a voxel
    assert 0 < brain_cut(low_res, fair["the high-res mask reduced to this grid"]).beyond < 0.01


def test_a_mask_made_on_the_mean_dwi_that_leaves_out_only_csf_says_nothing(axial_subject):
    """dipy's median_otsu on the mean diffusion-weighted image (radius 2, one pass) leaves out the CSF rim, bright on
    the b0: the bright voxels beyond it read as CSF by their ADC, so the line stays silent (it fired before)."""
    from dipy.segment.mask import median_otsu

    dwi = axial_subject.dwi
    mean_dw = np.asarray(dwi.data, np.float64)[..., dwi.bvals > 100].mean(-1)
    mask = median_otsu(mean_dw, median_radius=2, numpass=1)[1]
    cut = brain_cut(dwi, mask)
    assert cut.outside > 0.05 and _said(dwi, mask) == [], cut


@pytest.fixture(scope="module")
def noisy_low_res(low_res):
    """`low_res` with Rician noise at b0 SNR 5 added everywhere, as `iqt degrade --snr 5` adds it."""
    from ImageQualityTransferLib.dmri.randomise import rician

    data = rician(5, 0)(np.asarray(low_res.data, np.float32), np.asarray(dti.brain_mask(low_res).data, bool))
    return low_res.replace(data=data)


def test_a_mask_made_on_the_mean_dwi_of_a_noisy_scan_that_leaves_out_tissue_is_said(noisy_low_res, low_res):
    """At b0 SNR 5 the noisy mean DWI's median Otsu mask is tighter than the clean one's: what it leaves out beyond a
    voxel, bright on the b0, is tissue by the clean scan's ADC too (1.8 % of the brain, over CUT_SHARE), so the line is true and said."""
    from dipy.segment.mask import median_otsu

    dwi = noisy_low_res
    mean_dw = np.asarray(dwi.data, np.float64)[..., dwi.bvals > 100].mean(-1)
    mask = median_otsu(mean_dw, median_radius=2, numpass=1)[1]
    own = np.asarray(dti.brain_mask(dwi).data, bool)
    b0 = dti.mean_b0(dwi)
    near = ndimage.binary_dilation(dti.fill_slice_holes(ndimage.binary_fill_holes(mask)), BALL)
    bright = own & ~near & (b0 >= 0.7 * np.median(b0[own]))
    clean = np.count_nonzero(apparent_diffusion(low_res, bright, dti.mean_b0(low_res)) < TISSUE_ADC) / own.sum()
    said = _said(dwi, mask)
    assert clean >= CUT_SHARE and len(said) == 1 and "cuts the brain" in said[0], (clean, said)


def _phantom_masks(folder):
    dwi = fileio.load_dwi(folder / "dwi.nii.gz")
    own = dti.brain_mask(dwi).data
    for name, m in (("own", own), ("cut", ndimage.binary_erosion(own, BALL, iterations=3))):
        nib.save(nib.Nifti1Image(m.astype(np.uint8), dwi.affine), folder / f"{name}.nii.gz")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["fit", "degrade"])
def test_fit_and_degrade_say_a_cutting_mask_in_one_line(capsys, tmp_path, small_subject, command):
    _phantom_masks(small_subject)
    dwi = small_subject / "dwi.nii.gz"
    code, _, err = run_cli(capsys, command, dwi, "--mask", small_subject / "cut.nii.gz", "-o", tmp_path / "cut.nii.gz")
    lines = [x for x in err.splitlines() if "cuts the brain" in x]
    assert code == 0 and len(lines) == 1, err
    assert lines[0].startswith(f"iqt: warning: --mask {small_subject / 'cut.nii.gz'} cuts the brain: ")
    left = "fitted only within 2 low-res voxels of it and left zero farther out" if command == "degrade" else "left zero"
    assert f"{left}; give a mask" in lines[0], lines[0]
    code, _, err = run_cli(capsys, command, dwi, "--mask", small_subject / "own.nii.gz", "-o", tmp_path / "own.nii.gz")
    assert code == 0 and "cuts the brain" not in err


@pytest.mark.slow
@pytest.mark.parametrize("style", ["unmasked", "unmasked-ols"])
def test_degrade_fitted_over_the_whole_field_says_no_cut(capsys, tmp_path, small_subject, style):
    """`iqt degrade --style unmasked` fits every voxel whatever the mask: no tensor is left zero, so no line."""
    _phantom_masks(small_subject)
    code, _, err = run_cli(capsys, "degrade", small_subject / "dwi.nii.gz", "--mask", small_subject / "cut.nii.gz",
                           "--style", style, "-o", tmp_path / "cut.nii.gz")
    assert code == 0 and "cuts the brain" not in err, err


@pytest.fixture(scope="module")
def phantom_cut(small_subject):
    """The phantom's DWI and its own mask eroded by 3 voxels, a mask that cuts the brain."""
    dwi = fileio.load_dwi(small_subject / "dwi.nii.gz")
    own = dti.brain_mask(dwi)
    return dwi, own.replace(data=ndimage.binary_erosion(own.data, BALL, iterations=3))


def test_the_slicer_modules_fit_says_a_cutting_mask_in_its_notes(phantom_cut):
    from ImageQualityTransferLib.slicer.processing import fit_dwi

    dwi, cut = phantom_cut
    with warnings.catch_warnings():
        warnings.simplefilter("error", IQTWarning)  # nothing to the console: said in the notes
        notes = fit_dwi(dwi, cut)[0].meta["input_notes"]
    said = [n for n in notes if "cuts the brain" in n]
    assert len(said) == 1 and said[0].startswith("the chosen mask cuts the brain: ") and "choose a mask" in said[0]


def test_the_slicer_modules_mask_check_is_on_the_progress_bar_and_a_cancel_there_stops_before_the_fit(phantom_cut):
    """The check's median Otsu (seconds on a fine scan) shows its own message, not the fit's, and a Cancel pressed
    during it stops the run before any tensor is fitted (in-process; the worker's Cancel kills it within)."""
    from ImageQualityTransferLib.slicer.processing import Cancelled, fit_dwi

    check = "checking the chosen mask against the brain the b0 shows"
    steps = []
    with pytest.raises(Cancelled):
        fit_dwi(*phantom_cut, progress=lambda f, m: steps.append(m), cancel=lambda: check in steps)
    assert steps == [check]


def test_a_cancel_pressed_during_the_slicer_modules_mask_check_stops_before_the_fit(phantom_cut, monkeypatch):
    """A Cancel pressed while the check runs is seen as soon as it ends: no step of the fit (its b0 checks, the fit)
    starts. The real check and fit run, watched: the check's end turns the Cancel on, the fit's start is recorded."""
    from ImageQualityTransferLib.dmri import fit_checks, mask_cut
    from ImageQualityTransferLib.slicer.processing import Cancelled, fit_dwi

    done, fitted = [], []

    def check(*args, **kw):
        mask_cut_check(*args, **kw)
        done.append(True)

    def fit(*args, **kw):
        fitted.append(True)
        return fit_with_checks(*args, **kw)

    mask_cut_check, fit_with_checks = mask_cut.warn_if_cut, fit_checks.fit_with_checks
    monkeypatch.setattr(mask_cut, "warn_if_cut", check)
    monkeypatch.setattr(fit_checks, "fit_with_checks", fit)
    with pytest.raises(Cancelled):
        fit_dwi(*phantom_cut, cancel=lambda: bool(done))
    assert done and not fitted
