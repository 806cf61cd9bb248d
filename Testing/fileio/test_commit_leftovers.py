"""A commit that fails where the run's temporary files cannot be removed either (a folder made read-only as the outputs
were to be put in place) names them in its one line instead of saying that nothing was changed ('nothing
was changed: ...' while seven hidden .iqt-*.nii.gz stayed beside the outputs; fileio/staging._remove swallowed
every failure)."""

from __future__ import annotations

import errno
import os

import pytest

from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.fileio import paths, staging
from ImageQualityTransferLib.fileio.paths import JSON_SUFFIXES, Outputs
from ImageQualityTransferLib.fileio.staging import all_or_none
from ImageQualityTransferLib.fileio.writing import write_json


def _read_only(monkeypatch):
    """The folder as a read-only one is, from the commit on: no file in it can be created, renamed or removed."""
    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    for name in ("replace", "remove"):
        monkeypatch.setattr(paths.os, name, refuse)
    monkeypatch.setattr(paths.tempfile, "mkstemp", refuse)


@pytest.mark.parametrize("earlier", [True, False], ids=["replacing", "new"])
def test_temporaries_that_cannot_be_removed_are_named(tmp_path, monkeypatch, earlier):
    if earlier:
        (tmp_path / "a.json").write_text("earlier")
    real_commit = staging._Stage.commit

    def commit(self):
        _read_only(monkeypatch)
        return real_commit(self)

    monkeypatch.setattr(staging._Stage, "commit", commit)
    with pytest.raises(IQTError) as said:
        with all_or_none():
            plan = Outputs()
            a, b = plan.add(tmp_path / "a.json", JSON_SUFFIXES), plan.add(tmp_path / "b.json", JSON_SUFFIXES)
            write_json(a, {"a": 1})
            write_json(b, {"b": 2})
    monkeypatch.undo()
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".iqt-"))
    assert len(left) == 2  # the two temporaries, as a read-only folder keeps them
    line = str(said.value)
    assert "nothing was changed" not in line  # before: 'nothing was changed: none of this run's outputs was kept ...'
    assert f"this run's temporary files could not be removed (in {tmp_path}: " in line
    assert all(name in line for name in left) and "delete those temporary files" in line
    assert "none of this run's outputs was kept and every file that was at their paths is as it was" in line
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".iqt-")) == (["a.json"] if earlier else [])
    for name in left:
        os.remove(tmp_path / name)
