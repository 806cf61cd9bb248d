"""The command a CNN model records reproduces its weights: it names the CPU threads the run took where the user gave
none (the same command and seed at 1 and 2 threads gave weights up to 5.3e-3 apart, and a sidecar without
--threads reproduced them only on a machine with the same default)."""

from __future__ import annotations

import os

import pytest

from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.apps.cli import train as train_cli


def test_the_recorded_command_names_the_threads(small_subject, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    seen = {}
    monkeypatch.setattr(train_cli, "train_here", lambda args: seen.setdefault("command", args.command_line))
    assert main(["train", "--method", "espcn", "--subjects", str(small_subject), "-o", str(tmp_path / "m.pt")]) == 0
    assert seen["command"].endswith(f"--threads {torch.get_num_threads()}"), seen  # (a --threads given is kept as given)


def test_the_recorded_command_names_each_processs_threads_under_nproc(small_subject, tmp_path, monkeypatch):
    """'iqt train --nproc 2' without --threads recorded no thread count: its processes take this machine's cores / 2
    each, so the recorded command gave other weights on a machine with other cores (a researcher's scale-out audit)."""
    pytest.importorskip("torch")
    from ImageQualityTransferLib.methods.cnn import distributed

    seen = {}  # the threads each process takes: those given, else the cores shared out (distributed.spawn)
    monkeypatch.setattr(distributed, "spawn", lambda fn, nproc, args, threads=None, **_: seen.update(
        command=args.command_line, threads=threads or max(1, (os.cpu_count() or 1) // nproc)))
    assert main(["train", "--method", "espcn", "--subjects", str(small_subject), "-o", str(tmp_path / "m.pt"),
                 "--nproc", "2"]) == 0
    assert seen["command"].endswith(f"--nproc 2 --threads {seen['threads']}"), seen
