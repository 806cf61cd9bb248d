"""Uncertainty propagation tracks with lengths that follow the brain's size, and takes --step, --min-length and
--max-length as `iqt track` does: `iqt upsample --propagate` and `iqt propagate` built their
tracking settings from --fa-threshold alone, so on a rodent (0.3 mm voxels) the 10 mm minimum left 17.8 streamlines a
sample and a tract Dice between samples of 0.272 +- 0.056 (0.708 at 3 mm), reported as an uncertainty figure, and no
option could change it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import bundle_volume

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.analysis import tractography as tr
from ImageQualityTransferLib.apps.cli import main


def lr_file(tmp_path, voxel_mm):
    """A 20x10x10 low-res bundle with voxels of `voxel_mm` (x2: a brain 20 voxels of voxel_mm long)."""
    p = tmp_path / "lr.nii.gz"
    fileio.save_tensor(bundle_volume(affine=np.diag([-voxel_mm, voxel_mm, voxel_mm, 1.0]), shape=(20, 10, 10)), p)
    return p


def run(tmp_path, lr, command, *extra):
    if command == "propagate":
        args, js = ["propagate", str(lr), "-o", str(tmp_path / "p")], tmp_path / "p" / "propagation.json"
    else:
        args, js = ["upsample", str(lr), "-o", str(tmp_path / "hr.nii.gz"), "--propagate"], tmp_path / "hr_propagation.json"
    rc = main(args + ["--method", "biqt", "--samples", "3", "--n-seeds", "40", *extra])
    return rc, (json.loads(js.read_text()) if rc == 0 else None)


@pytest.mark.parametrize("command", ["propagate", "upsample"])
def test_a_small_brain_is_tracked_with_scaled_lengths_and_says_so(tmp_path, capsys, command):
    rc, js = run(tmp_path, lr_file(tmp_path, 0.5), command)  # a 10 mm brain, its bundle 10 mm less a voxel
    out = capsys.readouterr().out
    assert rc == 0 and js["streamlines_per_sample"]["min"] > 0, out
    t = js["settings"]["tracking"]
    assert t["brain_mm"] == 10.0 and t["scale"] == pytest.approx(10 / tr.HUMAN_BRAIN_MM, rel=1e-3)
    assert t["step"] == pytest.approx(0.5 * t["scale"]) and t["min_length"] == pytest.approx(10 * t["scale"])
    assert sum(line.startswith("tracking lengths scaled") for line in out.splitlines()) == 1, out
    assert js["settings"]["step"] is None and js["settings"]["min_length"] is None  # none given: scaled


@pytest.mark.parametrize("command", ["propagate", "upsample"])
def test_the_tracking_lengths_can_be_given(tmp_path, capsys, command):
    rc, js = run(tmp_path, lr_file(tmp_path, 0.5), command, "--step", "0.05", "--min-length", "2")
    out = capsys.readouterr().out
    assert rc == 0, out
    t = js["settings"]["tracking"]
    assert (t["step"], t["min_length"], t["scaled"]) == (0.05, 2.0, ["max_length"])
    assert (js["settings"]["step"], js["settings"]["min_length"], js["settings"]["max_length"]) == (0.05, 2.0, None)
    assert "max length" in out and "min length" not in out  # the line names only the lengths it scaled


def test_a_human_sized_brain_gets_the_human_lengths(tmp_path, capsys):
    rc, js = run(tmp_path, lr_file(tmp_path, 8.0), "propagate")  # 160 mm
    out = capsys.readouterr().out
    t = js["settings"]["tracking"]
    assert rc == 0 and (t["step"], t["min_length"], t["max_length"], t["scale"]) == (0.5, 10.0, 250.0, 1.0)
    assert "scaled" not in out


@pytest.mark.parametrize("option, value", [("--step", "-1"), ("--min-length", "300"), ("--max-length", "nan")])
def test_bad_lengths_are_refused_before_the_prediction(tmp_path, capsys, monkeypatch, option, value):
    from ImageQualityTransferLib.apps.cli import options

    def predicted(*a, **k):
        raise AssertionError("the prediction ran")

    monkeypatch.setattr(options, "predict_with_mask", predicted)
    rc, _ = run(tmp_path, lr_file(tmp_path, 0.5), "propagate", option, value)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"iqt: error: {option} {value}") and err.count("\n") == 1, err


def test_upsample_refuses_the_tracking_lengths_without_propagate(tmp_path, capsys):
    """They apply only with --propagate, as --seeds and --fa-threshold: without it they were silently ignored."""
    rc = main(["upsample", str(lr_file(tmp_path, 0.5)), "-o", str(tmp_path / "hr.nii.gz"), "--method", "cubic",
               "--step", "0.1", "--min-length", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "--step, --min-length: apply only with --propagate" in err and err.count("\n") == 1, err
    assert not (tmp_path / "hr.nii.gz").exists()
