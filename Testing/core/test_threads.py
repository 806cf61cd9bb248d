"""`--threads N` caps torch's threads without importing torch for the methods that do not use it (`iqt
--threads 1 upsample --method cubic` imported torch, +180 MB RSS and about 2 s of CPU, 334 -> 513 MB), and a CNN run
under it still uses N torch threads (torch imported after the cap)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import bundle_volume
from ImageQualityTransferLib import fileio


def _python(code: str, *args) -> str:
    run = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_the_thread_cap_does_not_import_torch():
    code = "import sys; from ImageQualityTransferLib.core import threads; threads.apply(1); print('torch' in sys.modules)"
    assert _python(code) == ["False"]


@pytest.mark.slow  # imports torch and runs a CNN in a fresh process
def test_a_cnn_run_under_the_cap_uses_that_many_torch_threads(tmp_path):
    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(bundle_volume(shape=(14, 10, 10)), lr)
    code = ("import sys\nfrom ImageQualityTransferLib.apps.cli import main\n"
            "code = main(['--threads', '3', 'upsample', sys.argv[1], '-o', sys.argv[2], '--method', 'espcn'])\n"
            "import torch\nprint(code, torch.get_num_threads())")
    assert _python(code, lr, tmp_path / "hr.nii.gz")[-2:] == ["0", "3"]  # 3, not the machine's cores (2 here)


def test_the_test_processes_let_openmp_wait_without_spinning():
    """The suite's processes (and the children they start) wait passively as `iqt` does, set by Testing/conftest.py
    before torch loads: two spinning xdist workers on two cores stretched the CNN tests' time."""
    import os

    assert os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
