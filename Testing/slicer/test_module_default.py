"""The module preselects a method whose uncertainty map it shows after Apply (README, Use it in 3D Slicer): the best
with one that has a model for the factors, deep-hetero-var1 at every shipped factor set (it preselected the command
line's `deep`, which has no map, so the overlay the panel promises never came with the defaults; picture audit, stop
57); cubic where no learned method has a model. The module file runs in Testing/slicer/self_test_in_batch.py's
application shell, in a child process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).with_name("self_test_in_batch.py")

SCRIPT = r"""
import sys
sys.path[:0] = [{testing!r}, {helpers!r}]
import self_test_in_batch as shell
shell.application_shell()
sys.path.insert(0, str(shell.MODULE_DIR))
import ImageQualityTransfer as module

logic = module.ImageQualityTransferLogic()
for f in [(2, 2, 2), (1, 1, 3), (3, 3, 3), (5, 5, 5)]:
    print("default", f, logic.defaultMethod(f))
"""


def test_the_module_preselects_the_best_method_with_an_uncertainty_map(tmp_path):
    pytest.importorskip("torch", reason="PyTorch is not installed: without it the module's default is biqt")
    code = SCRIPT.format(testing=str(DRIVER.parent), helpers=str(DRIVER.parent.parent))
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    said = [line for line in run.stdout.splitlines() if line.startswith("default")]
    assert said == ["default (2, 2, 2) deep-hetero-var1", "default (1, 1, 3) deep-hetero-var1",
                    "default (3, 3, 3) deep-hetero-var1", "default (5, 5, 5) cubic"], run.stdout[-2000:]
