"""`iqt benchmark --tracts`: every row's tract figures with the tracking settings they were measured with, so that a
figure taken from the JSON says which lengths it tracked (scaled to a brain smaller than a human's)."""

from __future__ import annotations

import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.analysis import benchmark


@pytest.mark.parametrize("shrink", [1.0, 0.25])
def test_tract_rows_record_the_tracking_lengths_and_their_scale(small_subject, tmp_path, shrink):
    subject = small_subject
    if shrink != 1.0:  # the same phantom with its voxels a quarter as long: a brain about 40 mm long
        dwi = fileio.load_dwi(small_subject / "dwi.nii.gz")
        dwi.affine[:3, :3] *= shrink
        subject = tmp_path / "small"
        subject.mkdir()
        fileio.save_dwi(dwi, subject / "dwi.nii.gz")
    rows = benchmark.run([subject], ["linear"], tracts=True, tract_seeds=60, progress=False)
    assert {r["method"] for r in rows} == {"cubic", "linear"}
    for r in rows:
        t = r["tracts"]
        assert 0.0 <= t["tract_dice"] <= 1.0 and t["n_streamlines"] >= 0
        rec = t["tracking"]
        if shrink == 1.0:  # a human-sized head: the human lengths
            assert rec["scale"] == 1.0 and rec["scaled"] == [] and (rec["step"], rec["min_length"], rec["max_length"]) == (0.5, 10.0, 250.0)
        else:
            assert 0 < rec["scale"] < 0.5 and rec["brain_mm"] < 60
            assert rec["step"] == float(f"{0.5 * rec['scale']:.6g}") and rec["scaled"] == ["step", "min_length", "max_length"]
    assert "tracts_lowres" in next(r for r in rows if r["method"] == "cubic")
