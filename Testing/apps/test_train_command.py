"""The command a CNN model records reproduces its weights: it names the CPU threads the run took where the user gave
none (the same command and seed at 1 and 2 threads gave weights up to 5.3e-3 apart, and a sidecar without
--threads reproduced them only on a machine with the same default)."""

from __future__ import annotations

import pytest

from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.apps.cli import train as train_cli


def test_the_recorded_command_names_the_threads(small_subject, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    seen = {}
    monkeypatch.setattr(train_cli, "train_here", lambda args: seen.setdefault("command", args.command_line))
    assert main(["train", "--method", "espcn", "--subjects", str(small_subject), "-o", str(tmp_path / "m.pt")]) == 0
    assert seen["command"].endswith(f"--threads {torch.get_num_threads()}"), seen  # (a --threads given is kept as given)
