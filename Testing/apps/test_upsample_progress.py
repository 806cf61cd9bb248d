"""`iqt upsample` shows the method's progress on a terminal (stderr), as train, benchmark and batch do, and nothing
where stderr is not one (a 5 min 10 s run was silent)."""

from __future__ import annotations

import sys

from helpers import bundle_volume
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps.cli import main


def _run(tmp_path, capsys, tty: bool, monkeypatch) -> str:
    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(bundle_volume(shape=(14, 10, 10)), lr)
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    assert main(["upsample", str(lr), "-o", str(tmp_path / f"hr{tty}.nii.gz"), "--method", "cubic"]) == 0
    return capsys.readouterr().err


def test_a_progress_bar_on_a_terminal_and_nothing_otherwise(tmp_path, capsys, monkeypatch):
    err = _run(tmp_path, capsys, True, monkeypatch)
    assert "\rcubic:" in err and "%|" in err, repr(err)
    err = _run(tmp_path, capsys, False, monkeypatch)
    assert "\r" not in err and "%|" not in err and err.startswith("iqt: warning:"), repr(err)  # its warning line only
