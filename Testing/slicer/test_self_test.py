"""The module's own Slicer self-test (ImageQualityTransferTest.test_Phantom, what Slicer's "Reload and Test" and the
extension's CTest run) on a real vtkMRMLScene, in a child process so that the application shell it is given
(Testing/slicer/self_test_in_batch.py) stays out of this one. test_DTIBrain downloads Slicer's sample data and is
left to Slicer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("slicer", reason="the self-test needs slicer-core (pip install slicer-core)")

DRIVER = Path(__file__).with_name("self_test_in_batch.py")


@pytest.mark.slow
def test_the_module_self_test_passes(tmp_path):
    pytest.importorskip("torch", reason="the self-test runs every method, the CNNs need torch (the cnn extra)")
    run = subprocess.run([sys.executable, str(DRIVER), "test_Phantom"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Phantom test passed" in run.stdout
