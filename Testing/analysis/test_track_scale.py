"""Tracking lengths follow the brain's size: `iqt track` kept min_length 10 mm and step 0.5 mm on
any brain, so a rodent's (0.3 mm voxels, ~15-20 mm long) kept 124 of 4536 seeds' streamlines against 4021 for the same
voxels at 3 mm, silently. The lengths not given are now the human ones on a brain at least HUMAN_BRAIN_MM long (exactly
as before) and scaled by its length on a smaller one, said in one line."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import bundle_volume

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.analysis import tractography as tr
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.core.volume import Volume


def scaled_bundle(voxel_mm):
    """The test bundle (40x16x16 voxels, the bundle along x) with voxels of `voxel_mm`, and its seed ROI."""
    vol = bundle_volume(affine=np.diag([-voxel_mm, voxel_mm, voxel_mm, 1.0]))
    roi = np.zeros(vol.shape3, bool)
    roi[20, 7:9, 7:9] = True
    return vol, Volume(roi, vol.affine, "mask")


HUMAN = tr.TrackingSettings(step=0.5, min_length=10.0, max_length=250.0)  # the lengths every brain got before


def test_a_human_sized_brain_gets_exactly_the_human_lengths():
    vol, roi = scaled_bundle(4.0)  # 160 mm long
    s = tr.TrackingSettings().resolved(tr.tensor_support(vol), vol.affine)
    assert (s.step, s.min_length, s.max_length, s.scale, s.scaled) == (0.5, 10.0, 250.0, 1.0, ())
    assert s.brain_mm == 160.0 and tr.scaling_line(s) is None
    got, before = tr.track(vol, roi), tr.track(vol, roi, HUMAN)
    assert len(got) == len(before) == 4
    assert all(np.array_equal(a, b) for a, b in zip(got, before))


def test_a_rodent_sized_brain_keeps_its_streamlines():
    """The same voxels at 0.2 mm (an 8 mm brain): the 10 mm minimum dropped every streamline."""
    big, big_roi = scaled_bundle(4.0)
    small, small_roi = scaled_bundle(0.2)
    assert tr.track(small, small_roi, HUMAN) == []  # what the fixed lengths gave
    lines = tr.track(small, small_roi)
    assert len(lines) == len(tr.track(big, big_roi)) == 4
    s = tr.TrackingSettings().resolved(tr.tensor_support(small), small.affine)
    assert s.scale == pytest.approx(8.0 / tr.HUMAN_BRAIN_MM, rel=1e-3) and s.scaled == ("step", "min_length", "max_length")
    assert s.step == pytest.approx(0.5 * s.scale) and s.min_length == pytest.approx(10 * s.scale)
    # each streamline runs the bundle (8 mm less the voxel at each end) in steps of the scaled length
    for sl in lines:
        assert tr._length(sl) > 0.9 * 39 * 0.2
        assert np.median(np.linalg.norm(np.diff(sl, axis=0), axis=1)) == pytest.approx(s.step, rel=1e-3)


def test_given_lengths_are_kept_and_only_the_others_scaled():
    small, _ = scaled_bundle(0.2)
    where = tr.tensor_support(small)
    s = tr.TrackingSettings(min_length=10.0).resolved(where, small.affine)
    assert s.min_length == 10.0 and s.scaled == ("step", "max_length")
    with pytest.raises(Exception, match="--min-length 20: at or above the longest streamline kept"):
        tr.TrackingSettings(min_length=20.0).resolved(where, small.affine)


def _cli(tmp_path, capsys, voxel_mm, *extra):
    vol, roi = scaled_bundle(voxel_mm)
    fileio.save_tensor(vol, tmp_path / "dti.nii.gz")
    fileio.save_mask(roi, tmp_path / "roi.nii.gz")
    rc = main(["track", str(tmp_path / "dti.nii.gz"), "--seeds", str(tmp_path / "roi.nii.gz"), "-o",
               str(tmp_path / "t.trk"), *extra])
    return rc, capsys.readouterr()


def test_cli_track_scales_the_lengths_to_a_small_brain_and_says_so(tmp_path, capsys):
    rc, cap = _cli(tmp_path, capsys, 0.2)
    said = [line for line in cap.out.splitlines() if line.startswith("tracking lengths scaled")]
    assert rc == 0 and "4 streamlines from 4 seeds" in cap.out and len(said) == 1, cap
    assert "8 mm long" in said[0] and "min length 0.667 mm" in said[0] and "--min-length" in said[0], said
    rc, cap = _cli(tmp_path, capsys, 0.2, "--step", "0.5", "--min-length", "10", "--max-length", "250")
    assert rc == 0 and "0 streamlines" in cap.out and "scaled" not in cap.out, cap  # the lengths given are kept


def test_cli_track_on_a_human_sized_brain_is_as_before(tmp_path, capsys):
    rc, cap = _cli(tmp_path, capsys, 4.0)
    assert rc == 0 and "4 streamlines from 4 seeds" in cap.out and "scaled" not in cap.out, cap
    first = (tmp_path / "t.trk").read_bytes()
    rc, cap = _cli(tmp_path, capsys, 4.0, "--step", "0.5", "--min-length", "10", "--max-length", "250")
    assert rc == 0 and (tmp_path / "t.trk").read_bytes() == first
