"""The module's run folders (the patient's input and outputs, in the temporary folder) do not outlive a Slicer that was
killed mid-run: the next run removes those of this user whose owning process has ended, and leaves running ones'."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from ImageQualityTransferLib.dmri.phantom import make_phantom
from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti
from ImageQualityTransferLib.slicer import processing, separate_process

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the sweep probes process ids, POSIX only")


def _folder(root, pid):
    path = root / f"{separate_process.work_prefix(pid)}ab12_x"
    path.mkdir()
    (path / "input.nii").write_bytes(b"patient")
    return path


def test_a_killed_owner_s_folder_is_removed_and_a_running_one_s_kept(tmp_path, monkeypatch):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead, alive, mine = _folder(tmp_path, ended.pid), _folder(tmp_path, running.pid), _folder(tmp_path, os.getpid())
        other = tmp_path / "elsewhere"
        other.mkdir()
        link = tmp_path / f"{separate_process.work_prefix(ended.pid)}link"
        link.symlink_to(other, target_is_directory=True)  # not followed, not removed
        unrelated = tmp_path / f"iqt-{ended.pid}-ab12"
        unrelated.mkdir()
        elsewhere = tmp_path / f"{separate_process.WORK_PREFIX}othermachine9-{ended.pid}-ab12_x"
        elsewhere.mkdir()  # another host's run sharing this temporary folder: its pid means nothing here
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        seen = []

        def progress(fraction, *rest):
            seen.extend(p.name for p in tmp_path.glob(f"{separate_process.work_prefix()}*") if p != mine)

        dwi = make_phantom(shape=(12, 14, 10), voxel_mm=4.0, n_dirs=12)
        lr = fit_dti(dwi, brain_mask(dwi))
        out = processing.predict_in_subprocess(lr, processing.Request("cubic", 2), progress=progress)
        assert out["tensor"].shape3 == (24, 28, 20)
        assert not dead.exists()
        assert (alive / "input.nii").exists() and (mine / "input.nii").exists() and other.exists() and link.is_symlink()
        assert unrelated.exists() and elsewhere.exists()
        assert seen  # the run's own folder carries this process's id while it works, and is gone after
        assert not [p for p in tmp_path.glob(f"{separate_process.work_prefix()}*") if p != mine]
    finally:
        running.kill()
        running.wait()
