"""A run's outputs are put in place all or none (fileio.staging._Stage.commit): a rename that fails puts every earlier file
back and removes the new ones, in one line with exit 2, and no 'wrote' line names a file that is then not there (review
48: the second rename failing left up.nii.gz new and its six maps old, 'internal error', exit 1, after 'wrote ...')."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.fileio import paths
from ImageQualityTransferLib.fileio.paths import JSON_SUFFIXES, Outputs
from ImageQualityTransferLib.fileio.staging import all_or_none, say
from ImageQualityTransferLib.fileio.writing import write_json


def _state(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def tensor(tmp_path):
    t = np.zeros((8, 8, 8, 1, 6), np.float32)
    t[..., :] = [1.2e-3, 1e-4, 0.8e-3, 0, 0, 0.6e-3]
    t *= (1 + 0.1 * np.random.default_rng(0).random((8, 8, 8, 1, 1))).astype(np.float32)
    img = nib.Nifti1Image(t, np.diag([-2.0, 2, 2, 1]))
    img.header.set_intent("symmetric matrix")
    nib.save(img, tmp_path / "lr.nii.gz")
    return tmp_path / "lr.nii.gz"


def _fail_rename_to(monkeypatch, name):
    """The first rename onto an output called `name` fails as a permission change at it would."""
    real, failed = os.replace, []

    def replace(src, dst):
        if os.path.basename(dst) == name and not failed:
            failed.append(dst)
            raise PermissionError(13, "Permission denied", str(src), None, str(dst))
        return real(src, dst)

    monkeypatch.setattr(paths.os, "replace", replace)
    return failed


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("earlier", [True, False], ids=["replacing", "new"])
def test_a_rename_that_fails_changes_nothing_and_announces_nothing(tensor, tmp_path, monkeypatch, capsys, earlier):
    out = tmp_path / "out"
    out.mkdir()
    if earlier:  # a first run's outputs
        assert main(["upsample", str(tensor), "--method", "cubic", "--maps", "-o", str(out / "up.nii.gz")]) == 0
    before = _state(out)
    capsys.readouterr()
    failed = _fail_rename_to(monkeypatch, "up_FA.nii.gz")
    rc = main(["upsample", str(tensor), "--method", "linear", "--maps", "-o", str(out / "up.nii.gz")])
    monkeypatch.undo()
    said = capsys.readouterr()
    assert failed and rc == 2  # before: 1, 'internal error: PermissionError'
    assert _state(out) == before  # before: up.nii.gz the new one, the maps the old ones; no temporary either
    assert "wrote" not in said.out  # before: 'wrote up.nii.gz ...', 'wrote up_FA.nii.gz, ...'
    lines = said.err.strip().splitlines()
    assert lines[-1].startswith("iqt: error: ") and "up_FA.nii.gz: cannot be put in place (Permission denied)" in lines[-1]
    assert "nothing was changed" in lines[-1] and not [l for l in lines if "internal error" in l]
    # the same run without the fault: every output in place, the earlier files gone, then said
    assert main(["upsample", str(tensor), "--method", "linear", "--maps", "-o", str(out / "up.nii.gz")]) == 0
    now = _state(out)
    assert sorted(now) == ["up.nii.gz", "up_FA.nii.gz", "up_L1.nii.gz", "up_L2.nii.gz", "up_L3.nii.gz", "up_MD.nii.gz",
                           "up_V1.nii.gz"]
    assert not earlier or all(now[k] != before[k] for k in ("up.nii.gz", "up_FA.nii.gz", "up_V1.nii.gz"))
    assert capsys.readouterr().out.startswith(f"wrote {out / 'up.nii.gz'}")


def _write_two(folder):
    """a.json and b.json declared, written and said within the caller's run."""
    plan = Outputs()
    a, b = plan.add(folder / "a.json", JSON_SUFFIXES), plan.add(folder / "b.json", JSON_SUFFIXES)
    write_json(a, {"a": 1})
    write_json(b, {"b": 2})
    say("wrote a.json, b.json")
    return a, b


def test_a_folder_made_at_an_output_path_during_the_run_leaves_every_earlier_file(tmp_path):
    """Moving the file at an output path aside fails (a folder is there now): the files already moved go back."""
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(f"earlier {name}")
    with pytest.raises(IQTError, match=r"b.json: cannot be put in place \(.*\); nothing was changed"):
        with all_or_none():
            a, b = _write_two(tmp_path)
            os.remove(b)
            (b / "inside").mkdir(parents=True)
    assert (tmp_path / "a.json").read_text() == "earlier a.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"] and (tmp_path / "b.json").is_dir()


def test_outputs_in_place_then_said_and_no_earlier_file_kept(tmp_path, capsys):
    (tmp_path / "a.json").write_text("earlier")
    with all_or_none():
        a, b = _write_two(tmp_path)
        assert capsys.readouterr().out == ""  # not yet: nothing is in place
    assert capsys.readouterr().out == "wrote a.json, b.json\n"
    assert json.loads(a.read_text()) == {"a": 1} and json.loads(b.read_text()) == {"b": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]
    say("outside a run: now")
    assert capsys.readouterr().out == "outside a run: now\n"
