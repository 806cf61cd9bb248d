"""Two series of one subject folder (BIDS run-1 and run-2 both write to sub-01/dwi) computed at the same time: one
removing the folder's temporaries as it began writing deleted the files the other held until its commit, which then
failed with an internal FileNotFoundError (exit 1; review 52b: 3 runs of 3 on one worker with two threads)."""

from __future__ import annotations

import contextvars

import numpy as np
import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib import fileio  # noqa: E402
from ImageQualityTransferLib.apps import batch  # noqa: E402
from ImageQualityTransferLib.apps.batch import subject  # noqa: E402
from ImageQualityTransferLib.core.volume import Volume  # noqa: E402

import helpers  # noqa: E402


def test_a_series_starting_to_write_keeps_the_files_another_series_of_its_folder_holds(tmp_path, monkeypatch):
    items = []
    for run in (1, 2):
        p = tmp_path / f"run{run}.nii.gz"
        fileio.save_tensor(Volume(helpers.random_tensors((8, 9, 7), seed=run), np.diag([2.0, 2.0, 2.0, 1.0]), "tensor"), p)
        items.append(batch.Item(f"sub-01_run-{run}", "sub-01/dwi", str(p), "dti", root=str(tmp_path)))
    out = tmp_path / "deriv"
    out.mkdir()
    s = batch.Settings(method="cubic")
    real_save, inside = fileio.save_scalar, []

    def save_scalar(vol, path, *a, **k):  # run-2 does all its work while run-1 holds its first staged files
        real_save(vol, path, *a, **k)
        if not inside and "run-1" in str(path):
            # in a context of its own, as another worker thread's task runs: its own stage, not run-1's
            inside.append(contextvars.Context().run(subject.process, items[1], s, out))
    monkeypatch.setattr(fileio, "save_scalar", save_scalar)
    first = subject.process(items[0], s, out)
    assert (first["status"], inside[0]["status"]) == ("done", "done"), (first.get("reason"), inside[0].get("reason"))
    d = out / "sub-01" / "dwi"
    assert sorted(p.name for p in d.iterdir() if p.name.startswith(".iqt-")) == []
    assert len([p for p in d.iterdir() if p.name.endswith("tensor_dwimap.nii.gz")]) == 2
