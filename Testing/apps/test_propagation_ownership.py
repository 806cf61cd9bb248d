"""The propagation outputs replace only files iqt wrote: a user's own X_propagation.json beside `iqt upsample
--propagate`'s output, and another tool's map or JSON in `iqt propagate`'s folder, are refused in one line (exit 2)
before any work, and stay as they were; this tool's own summary, as a rerun meets it, is written over."""

from __future__ import annotations

import numpy as np
import nibabel as nib
import pytest

from ImageQualityTransferLib.apps.cli import main

from helpers import bundle_file

FOREIGN = '{"my": "results of my own analysis"}\n'


@pytest.fixture()
def lr_path(tmp_path):
    return bundle_file(tmp_path / "lr.nii.gz")


def _refused(capsys, rc, name):
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and name in err and "not" in err and "written by iqt" in err, err


def test_upsample_propagate_keeps_a_users_own_summary(tmp_path, lr_path, capsys):
    summary = tmp_path / "hr_propagation.json"
    summary.write_text(FOREIGN)
    cmd = ["upsample", str(lr_path), "-o", str(tmp_path / "hr.nii.gz"), "--method", "biqt", "--samples", "2",
           "--propagate", "--no-tracts"]
    rc = main(cmd)
    _refused(capsys, rc, "hr_propagation.json")
    assert summary.read_text() == FOREIGN
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr_propagation.json", "lr.nii.gz"]  # nothing written
    summary.unlink()  # this tool's own summary, as a rerun meets it, is written over
    for seed in ("1", "3"):
        assert main([*cmd, "--seed", seed]) == 0, capsys.readouterr().err
    assert '"seed": 3' in summary.read_text()


@pytest.mark.parametrize("name", ["propagation.json", "fa_std.nii.gz"])
def test_propagate_keeps_another_tools_file_in_its_folder(tmp_path, lr_path, capsys, name):
    out = tmp_path / "prop"
    out.mkdir()
    theirs = out / name
    if name.endswith(".json"):
        theirs.write_text(FOREIGN)
    else:  # a map another program wrote (no run record, no iqt description)
        nib.save(nib.Nifti1Image(np.ones((28, 20, 20), np.float32), np.eye(4)), theirs)
    before = theirs.read_bytes()
    rc = main(["propagate", str(lr_path), "-o", str(out), "--method", "biqt", "--samples", "2", "--no-tracts"])
    _refused(capsys, rc, name)
    assert theirs.read_bytes() == before and [p.name for p in out.iterdir()] == [name]


def test_a_file_with_the_summary_keys_but_other_values_is_not_taken_for_ours(tmp_path):
    """A user's JSON holding the four keys (a review: `"approximation": "my notes"`) had been written over."""
    import json

    from ImageQualityTransferLib.analysis.propagation import is_summary

    ours = {"method": "biqt", "n_samples": 100, "approximation": "diagonal Gaussian per element (independent elements "
            "and voxels)", "tract_dice_between_samples": None}
    theirs = {"method": ["a"], "n_samples": [3], "approximation": "my notes", "tract_dice_between_samples": [1]}
    for summary, want in ((ours, True), (theirs, False), ({**ours, "approximation": "my notes"}, False)):
        (tmp_path / "s.json").write_text(json.dumps(summary))
        assert is_summary(tmp_path / "s.json") == want, summary
