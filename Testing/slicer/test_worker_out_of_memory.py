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
    """Under ulimit -v (as the CLI, core/errors.start_refused_said) every one is the memory line; without it a thread or
    process refused is named, as the CLI names it (the worker had said only 'out of memory', a review)."""
    import resource

    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(Volume(np.broadcast_to(np.float32([7e-4, 0, 0, 5e-4, 0, 4e-4]), (6, 5, 4, 6)).copy(),
                              np.diag([-2.0, 2, 2, 1]), "tensor"), lr)

    def fails(*args, **kwargs):
        raise exc

    monkeypatch.setattr(processing, "predict_volumes", fails)
    for limit in (8 * 2**30, resource.RLIM_INFINITY):
        monkeypatch.setattr(resource, "getrlimit", lambda which: (limit, resource.RLIM_INFINITY))
        code = worker.main(["--input", str(lr), "--method", "cubic", "--outdir", str(tmp_path / "out")])
        [line] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert code == 1 and not (tmp_path / "out").exists()
        refused = isinstance(exc, OSError) or "can't start new thread" in str(exc)
        if limit != resource.RLIM_INFINITY or not refused:
            assert line == {"error": worker.OUT_OF_MEMORY}, line
            continue
        what = ("processes: a process" if isinstance(exc, OSError) else "threads: a thread")
        assert line["error"].startswith(f"out of memory or of {what} could not start (a limit on threads or processes: "
                                        "ulimit -u"), line
        assert line["error"].endswith(": close other programs, raise that limit, or run on a machine with more memory")
        assert "--threads" not in line["error"] and "\n" not in line["error"]


def test_a_worker_bug_is_still_its_traceback(tmp_path, monkeypatch):
    """Only memory is said so: another failure is a bug, whose traceback the module shows (exit_words' tail)."""
    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(Volume(np.full((6, 5, 4, 6), 1e-4, np.float32), np.diag([-2.0, 2, 2, 1]), "tensor"), lr)
    monkeypatch.setattr(processing, "predict_volumes", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        worker.main(["--input", str(lr), "--method", "cubic", "--outdir", str(tmp_path / "out")])
