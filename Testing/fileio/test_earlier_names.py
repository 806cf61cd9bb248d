"""A run killed (SIGKILL, a power loss) after its commit moved the earlier outputs aside and before the new ones were
renamed in leaves each earlier file as a hidden `.iqt-earlier-<its name>.<random>.tmp` beside it, so the README's advice
(an output missing and an .iqt-earlier-* file beside it: rename it back) can be followed (the names were
random, .iqt-earlier-1xztnc2i.tmp, seven alike)."""

from __future__ import annotations

import os

import pytest

from ImageQualityTransferLib.fileio import paths, staging
from ImageQualityTransferLib.fileio.paths import JSON_SUFFIXES, Outputs
from ImageQualityTransferLib.fileio.staging import all_or_none
from ImageQualityTransferLib.fileio.writing import write_json


class Killed(BaseException):
    """The process ending where it stands: nothing after it runs (the stage's undo and discard are made no-ops)."""


def test_each_earlier_file_set_aside_is_named_after_its_output(tmp_path, monkeypatch):
    names = ["a.json", "b.json", "c" * 240 + ".json"]  # the last too long to keep whole in the hidden name
    for name in names:
        (tmp_path / name).write_text(f"earlier {name}")
    real = os.replace

    def replace(src, dst):  # killed as the first new output would be renamed in
        if ".iqt-earlier-" not in os.path.basename(dst):
            raise Killed
        return real(src, dst)

    monkeypatch.setattr(paths.os, "replace", replace)
    monkeypatch.setattr(staging._Stage, "_undo", lambda self, *a: ([], [], []))  # nothing undone, as when killed
    monkeypatch.setattr(staging._Stage, "discard", lambda self: None)
    with pytest.raises(Killed):
        with all_or_none():
            plan = Outputs()
            for name in names:
                write_json(plan.add(tmp_path / name, JSON_SUFFIXES), {"new": name})
    monkeypatch.undo()
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".iqt-earlier-"))
    assert not any((tmp_path / name).exists() for name in names) and len(left) == 3
    for name in names:  # before: .iqt-earlier-<8 random characters>.tmp, none telling which output it was
        kept = [n for n in left if n.startswith(f".iqt-earlier-{name[:staging.ASIDE_NAME_BYTES]}.")]
        assert len(kept) == 1 and kept[0].endswith(".tmp") and len(kept[0]) <= 255, (name, left)
        assert (tmp_path / kept[0]).read_text() == f"earlier {name}"
