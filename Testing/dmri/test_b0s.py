"""A b0 that disagrees with the series' other b0s, or a fit whose brain MD is no in-vivo brain's, is said in one warning
line (dmri/b0s.py; both fitted silently, MD -31 % to -93 %)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import TRAIN, need_data
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.core.errors import IQTError, IQTWarning
from ImageQualityTransferLib.dmri import b0s
from ImageQualityTransferLib.dmri.dti import B0_THRESHOLD, brain_mask, fit_dti


def _said(dwi):
    mask = brain_mask(dwi)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b0s.check_b0_levels(dwi, mask, fit_dti(dwi, mask))
    return [str(w.message) for w in caught if issubclass(w.category, IQTWarning)]


def test_b0s_that_agree_say_nothing_and_a_darker_one_is_named(coarse_phantom):
    assert _said(coarse_phantom) == []
    b0 = np.flatnonzero(coarse_phantom.bvals <= B0_THRESHOLD)
    d = np.array(coarse_phantom.data)
    d[..., b0[1]] *= 0.4  # a b0 of another series beside the series' own
    said = _said(coarse_phantom.replace(data=d))
    assert len(said) == 1 and f"the two b0 volumes ({b0[0]} and {b0[1]}) differ" in said[0] and "0.40x" in said[0]


def test_three_b0s_name_the_odd_one_and_a_scaled_b0_is_read_in_the_md(coarse_phantom):
    b0 = np.flatnonzero(coarse_phantom.bvals <= B0_THRESHOLD)
    d = np.concatenate([coarse_phantom.data, coarse_phantom.data[..., b0[:1]] * 1.6], -1)
    three = coarse_phantom.replace(data=d, bvals=np.append(coarse_phantom.bvals, 0),
                                   bvecs=np.vstack([coarse_phantom.bvecs, [0, 0, 0]]))
    said = _said(three)
    assert len(said) == 1 and f"b0 volume {d.shape[-1] - 1} is 1.60x the other b0s'" in said[0], said
    d = np.array(coarse_phantom.data)
    d[..., b0] *= 0.6  # every b0 scaled: no b0 to compare with, the MD says it
    said = _said(coarse_phantom.replace(data=d))
    assert len(said) == 1 and "the brain's median MD is" in said[0] and "of an in-vivo brain" in said[0], said
    assert "check that the b0s are this series'" in said[0]
    d[..., b0] *= 0.2 / 0.6  # so dark that no voxel is fitted (the eigenvalue floor everywhere): refused since stop 58
    with pytest.raises(IQTError, match="the fit failed: the brain's median MD is 1e-09 mm"):
        _said(coarse_phantom.replace(data=d))


def test_an_ex_vivo_md_is_said_as_such_not_blamed_on_a_b0(coarse_phantom):
    """Every b-value times 1 / 0.3 gives tensors 0.3 times the in-vivo ones, as an ex-vivo brain's are (the
    warning then said only to leave a b0 out): the line says such an MD is right for an ex-vivo brain or a neonate's."""
    said = _said(coarse_phantom.replace(bvals=np.asarray(coarse_phantom.bvals) / 0.3))
    assert len(said) == 1 and "right for an ex-vivo brain" in said[0] and "neonate" in said[0], said
    assert "leave such a b0 out" not in said[0]
    # MD above the range: no ex-vivo brain's
    said = _said(coarse_phantom.replace(bvals=np.asarray(coarse_phantom.bvals) * 0.4))
    assert len(said) == 1 and "ex-vivo" not in said[0], said


def test_iqt_fit_says_it_in_one_line(coarse_phantom, tmp_path, capsys):
    b0 = np.flatnonzero(coarse_phantom.bvals <= B0_THRESHOLD)
    d = np.array(coarse_phantom.data)
    d[..., b0[1]] *= 0.4
    fileio.save_dwi(coarse_phantom.replace(data=d), tmp_path / "dwi.nii.gz")
    assert cli.main(["fit", str(tmp_path / "dwi.nii.gz"), "-o", str(tmp_path / "dti.nii.gz")]) == 0
    err = capsys.readouterr().err
    assert err.count("iqt: warning:") == 1 and "differ in brightness" in err, err


@pytest.mark.realdata
def test_the_real_subjects_two_b0s_agree():
    """The shared subjects' brain median MD is 0.69-0.89e-3 mm^2/s; the 2 mm Trio's two b0s agree (ratio 1.00): read on
    its 16 middle slices."""
    dwi = fileio.load_dwi(need_data(TRAIN / "siemens_trio_2mm") / "dwi.nii.gz")
    k = dwi.shape3[2] // 2
    dwi = dwi.replace(data=np.asarray(dwi.data)[:, :, k - 8:k + 8])
    assert _said(dwi) == []
    b0 = np.flatnonzero(dwi.bvals <= B0_THRESHOLD)
    d = np.array(dwi.data)
    d[..., b0[1]] *= 0.4
    said = _said(dwi.replace(data=d))
    assert len(said) == 1 and "0.40x the first" in said[0], said
