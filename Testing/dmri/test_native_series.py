"""Native series as a hospital brings them (fresh-eyes audit of stop 58): a file stored at a small scale, a blank b0,
a single slice, a DWI NRRD."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import DEV, need_data
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.dmri import b0s, motion
from ImageQualityTransferLib.dmri.dti import B0_THRESHOLD, brain_mask as _brain_mask, fit_dti


def brain_mask(dwi) -> np.ndarray:
    return np.asarray(_brain_mask(dwi).data, bool)


@pytest.mark.parametrize("scale", [1e-2, 1e-5, 1e-9])
def test_the_fit_does_not_depend_on_the_files_scale(coarse_phantom, scale):
    """dipy clips the signal at an absolute 1e-4: at an scl_slope of 1e-5 a share of the brain was clipped and every
    sample of zero weighed differently, so the tensors changed with the file's scale (median FA 0.150 against 0.173 on
    the 3 mm ortho scan). A series is now brought up by a power of ten to a b0 99th percentile of at least 100: stored
    at a power-of-ten scale, one of the 3 mm scans' level (683) gives the same tensors."""
    d = np.array(coarse_phantom.data, np.float64)
    mask = brain_mask(coarse_phantom)
    rng = np.random.default_rng(0)
    inside = np.argwhere(mask)
    for i, j, k in inside[rng.choice(len(inside), 40, replace=False)]:
        d[i, j, k, rng.choice(np.flatnonzero(coarse_phantom.bvals > B0_THRESHOLD), 2)] = 0.0  # dropout to zero
    d *= 683.0 / np.percentile(d[::2, ::2, ::2][..., coarse_phantom.bvals <= B0_THRESHOLD], 99)  # the 3 mm scans'
    plain = fit_dti(coarse_phantom.replace(data=d), mask).data
    scaled = fit_dti(coarse_phantom.replace(data=d * scale), mask).data
    np.testing.assert_allclose(scaled, plain, rtol=1e-4, atol=1e-9)


def test_a_blank_b0_is_named_and_the_failed_fit_refused(coarse_phantom, tmp_path, capsys):
    """Two b0s, the first blank (zero everywhere): the b0 check divided by the first, found no voxel to judge and said
    nothing, and `iqt fit` wrote a tensor of MD 5e-10 in every voxel with exit 0, its one line blaming an ex-vivo brain.
    Now the b0s are compared with the brighter and the fit is refused in one line naming the blank b0; nothing
    written."""
    b0 = np.flatnonzero(coarse_phantom.bvals <= B0_THRESHOLD)
    assert len(b0) == 2
    d = np.array(coarse_phantom.data)
    d[..., b0[0]] = 0
    dwi = coarse_phantom.replace(data=d)
    r = b0s.b0_ratios(dwi, brain_mask(coarse_phantom))
    assert r[0] < 0.01 and r[1] == pytest.approx(1.0)
    fileio.save_dwi(dwi, tmp_path / "dwi.nii.gz")
    out = tmp_path / "dti.nii.gz"
    assert cli.main(["fit", str(tmp_path / "dwi.nii.gz"), "--mask", _mask_file(coarse_phantom, tmp_path),
                     "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the fit failed" in err[0] and "the first is 0.00x the second" in err[0], err
    assert not out.exists()


def _mask_file(dwi, tmp_path) -> str:
    from ImageQualityTransferLib.core.volume import Volume

    path = tmp_path / "mask.nii.gz"
    fileio.save_mask(Volume(brain_mask(dwi).astype(np.uint8), dwi.affine, "mask"), path)
    return str(path)


def test_a_failed_fits_tensors_are_not_called_a_unit(coarse_phantom, tmp_path, capsys):
    """The tensors of such a fit (the eigenvalue floor, one isotropic value) given to `iqt upsample` were said to be in
    m^2/s: "multiply them by 1e6", which gives a nonsense input that is then accepted."""
    from ImageQualityTransferLib.core.volume import Volume

    mask = brain_mask(coarse_phantom)
    t = np.zeros(mask.shape + (6,), np.float32)
    t[mask] = np.float32(5e-10) * np.array([1, 0, 1, 0, 0, 1], np.float32)
    path = tmp_path / "dti.nii.gz"
    fileio.save_tensor(Volume(t, coarse_phantom.affine, "tensor"), path)
    assert cli.main(["upsample", str(path), "-o", str(tmp_path / "x.nii.gz"), "--method", "cubic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "all one and the same isotropic value" in err[0] and "1e6" not in err[0], err
    assert not (tmp_path / "x.nii.gz").exists()


def test_a_two_slice_series_gives_no_numpy_warning():
    """The motion check's phase correlation divided zero by zero on an axis of two voxels (a Hann window of zeros): a raw
    'invalid value encountered in divide' reached the user."""
    a = np.random.default_rng(0).random((20, 22, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(motion.phase_shift(a, a), np.zeros(3))


@pytest.mark.realdata
def test_a_single_slice_is_not_judged_by_the_gradient_check(tmp_path, capsys):
    """One slice of the 3 mm ortho scan had its table called swapped ("its x and z rows look swapped"): following that
    would mis-orient every tensor. A brain a slice or two thick is too little to judge."""
    dwi = fileio.load_dwi(need_data(DEV / "siemens_prisma_3mm_ortho") / "dwi.nii.gz")
    one = dwi.replace(data=np.asarray(dwi.data)[:, :, 18:19])
    fileio.save_dwi(one, tmp_path / "dwi.nii.gz")
    assert cli.main(["fit", str(tmp_path / "dwi.nii.gz"), "-o", str(tmp_path / "dti.nii.gz")]) == 0
    assert "swapped" not in capsys.readouterr().err


def test_a_dwi_nrrd_gets_a_conversion(tmp_path, capsys):
    """`iqt fit dwi.nrrd` said only that NRRD is read for tensor volumes; now it names a conversion."""
    path = tmp_path / "dwi.nrrd"
    path.write_bytes(b"NRRD0004\ntype: short\ndimension: 4\nsizes: 2 2 2 2\nencoding: raw\n\n" + bytes(32))
    assert cli.main(["fit", str(path), "-o", str(tmp_path / "dti.nii.gz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mrconvert" in err[0] and "NrrdToFSL" in err[0], err


def test_the_fit_failure_is_an_error_not_a_warning(coarse_phantom):
    with pytest.raises(IQTError, match="the fit failed"):
        b0s.check_b0_levels(coarse_phantom, brain_mask(coarse_phantom),
                            fit_dti(coarse_phantom, brain_mask(coarse_phantom)).replace(
                                data=np.where(brain_mask(coarse_phantom)[..., None],
                                              np.float32(5e-10) * np.array([1, 0, 1, 0, 0, 1], np.float32), 0)))
