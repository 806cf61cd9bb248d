"""A b0 that is not where the diffusion-weighted volumes are (dmri/motion.py): `iqt fit` says so in one warning line
(the brain mask is made from the b0, so it is off too); a b0 in place says nothing."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import AXIAL, need_data
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.core.errors import IQTWarning
from ImageQualityTransferLib.dmri import motion
from ImageQualityTransferLib.dmri.dti import B0_THRESHOLD
from ImageQualityTransferLib.dmri.phantom import make_phantom


def _b0_moved(dwi, voxels, axis=1):
    d = np.array(dwi.data)
    b0 = np.asarray(dwi.bvals) <= B0_THRESHOLD
    d[..., b0] = np.roll(d[..., b0], voxels, axis=axis)
    return dwi.replace(data=d)


def test_iqt_fit_says_when_the_b0_is_not_where_the_other_volumes_are(tmp_path, capsys):
    dwi = make_phantom(shape=(32, 36, 28), voxel_mm=4.0, n_dirs=12)
    assert np.linalg.norm(motion.b0_shift(dwi)) < 0.1
    fileio.save_dwi(dwi, tmp_path / "clean.nii.gz")
    fileio.save_dwi(_b0_moved(dwi, 3), tmp_path / "moved.nii.gz")
    assert cli.main(["fit", str(tmp_path / "clean.nii.gz"), "-o", str(tmp_path / "a.nii.gz")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert cli.main(["fit", str(tmp_path / "moved.nii.gz"), "-o", str(tmp_path / "b.nii.gz")]) == 0
    err = capsys.readouterr().err
    lines = err.splitlines()  # one warning, over lines of at most about 120 characters after the file's name
    assert err.count("the b0 lies") == 1 and "voxels from the mean of the diffusion" in err and len(lines) == 4, err
    assert "brain mask" in err and "eddy" in err and max(len(line.split(".nii.gz: ")[1]) for line in lines) <= 130, err


@pytest.mark.realdata
def test_the_axial_dev_scan_s_b0_is_in_place_and_a_shift_of_it_is_measured():
    """The 3 mm ortho dev scan: its b0 within 0.1 voxel of its mean DWI, no warning; the audit's b0 moved by 4 voxels
    along j reads 4 (to 0.1) and is said; by 1 voxel (MD then off by a median 9 %) it is measured too."""
    dwi = fileio.load_dwi(need_data(AXIAL) / "dwi.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error", IQTWarning)
        assert np.linalg.norm(motion.check_b0(dwi)) < 0.1
    with pytest.warns(IQTWarning, match=r"the b0 lies 4\.0 voxels .*j \+4\.0"):
        motion.check_b0(_b0_moved(dwi, 4))
    np.testing.assert_allclose(motion.b0_shift(_b0_moved(dwi, 1)), [0, 1, 0], atol=0.1)


@pytest.mark.parametrize("shift, said", [(1.004, None), (1.0052, None), (1.03, "1.03"), (1.26, "1.3")])
def test_the_warning_and_qc_tsv_agree_on_a_shift_near_one_voxel(monkeypatch, shift, said):
    """A shift of 1.004 voxels was warned of as "lies 1.0 voxels" (above 1) while qc.tsv showed 1.00: both now judge
    it as shown to two decimals, and the warning never reads 1.0."""
    from ImageQualityTransferLib.apps.batch.qc import failed_checks

    dwi = make_phantom(shape=(16, 16, 12), voxel_mm=4.0, n_dirs=6)
    monkeypatch.setattr(motion, "b0_shift", lambda dwi, skip=(): np.array([shift, 0.0, 0.0]))
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always", IQTWarning)
        motion.check_b0(dwi)
    lines = [str(w.message) for w in got if issubclass(w.category, IQTWarning)]
    assert lines == ([] if said is None else [lines[0]]) and (said is None or f"lies {said} voxels" in lines[0]), lines
    # the row as qc.tsv writes it (batch/subject.py records the shift to 3 decimals, qc_rows writes it): not a copy
    # of its rule (a review)
    from ImageQualityTransferLib.apps.batch.qc import qc_rows

    (row,) = qc_rows([{"subject": "sub-01", "status": "done", "qc": {"b0_shift_vox": round(float(shift), 3)}}])
    assert ("b0_shift_vox" in failed_checks(row)) == (said is not None)
