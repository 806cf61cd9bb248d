"""The Slicer module's worker process (slicer/worker.py) out of memory: one line in its JSON error, which the module
shows as the run's status (separate_process._run_worker raises it as an IQTError); it caught IQTError only, so a
MemoryError had reached the user as the tail of a traceback ("the processing process failed (exit status 1):
Traceback ...")."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import process_start_refused

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.slicer import processing, worker


@pytest.mark.parametrize("exc", [MemoryError(), RuntimeError("can't start new thread"),
                                 process_start_refused(),
                                 RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8")])
def test_a_worker_out_of_memory_says_so_in_one_line(tmp_path, monkeypatch, capsys, exc):
    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(Volume(np.broadcast_to(np.float32([7e-4, 0, 0, 5e-4, 0, 4e-4]), (6, 5, 4, 6)).copy(),
                              np.diag([-2.0, 2, 2, 1]), "tensor"), lr)

    def fails(*args, **kwargs):
        raise exc

    monkeypatch.setattr(processing, "predict_volumes", fails)
    code = worker.main(["--input", str(lr), "--method", "cubic", "--outdir", str(tmp_path / "out")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1 and lines == [{"error": worker.OUT_OF_MEMORY}], lines
    assert "\n" not in worker.OUT_OF_MEMORY and not (tmp_path / "out").exists()


def test_a_worker_bug_is_still_its_traceback(tmp_path, monkeypatch):
    """Only memory is said so: another failure is a bug, whose traceback the module shows (exit_words' tail)."""
    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(Volume(np.full((6, 5, 4, 6), 1e-4, np.float32), np.diag([-2.0, 2, 2, 1]), "tensor"), lr)
    monkeypatch.setattr(processing, "predict_volumes", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        worker.main(["--input", str(lr), "--method", "cubic", "--outdir", str(tmp_path / "out")])
