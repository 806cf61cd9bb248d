"""The module installs missing engine packages only after asking (README, Install): without a main window (Slicer
--no-main-window, a batch script) there is no one to ask, and it ran pip unasked; now it installs nothing
and says how to. The module file runs in Testing/slicer/self_test_in_batch.py's application shell, in a child
process (the shell replaces parts of the slicer package)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DRIVER = Path(__file__).with_name("self_test_in_batch.py")

SCRIPT = r"""
import sys, types
sys.path[:0] = [{testing!r}, {helpers!r}]
import self_test_in_batch as shell
shell.application_shell()
import slicer
import slicer.util
sys.modules["slicer.packaging"] = None  # the older Slicer's path: slicer.util.pip_install after a dialog
sys.path.insert(0, str(shell.MODULE_DIR))
import ImageQualityTransfer as module

calls = []
slicer.util.pip_install = lambda req: calls.append(req)
logic = module.ImageQualityTransferLogic()
logic.missingPackages = lambda: [] if calls else ["fakepkg-iqt>=1"]
for window, answer in ((False, None), (True, False), (True, True)):
    slicer.app.commandOptions = lambda: types.SimpleNamespace(noMainWindow=not window)
    slicer.util.confirmOkCancelDisplay = lambda text: answer
    try:
        logic.engine()
        print("engine", window, answer, "ok", calls)
    except RuntimeError as exc:
        print("engine", window, answer, "error", calls, "|", exc)
"""


def test_without_a_main_window_nothing_is_installed_and_the_error_says_how(tmp_path):
    code = SCRIPT.format(testing=str(DRIVER.parent), helpers=str(DRIVER.parent.parent))
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if line.startswith("engine ")]
    assert len(lines) == 3, run.stdout
    batch, declined, accepted = lines
    assert batch.startswith("engine False None error [] |") and "PythonSlicer -m pip install 'fakepkg-iqt>=1'" in batch
    assert "installDependencies(askConfirmation=False)" in batch
    assert declined.startswith("engine True False error [] | Missing Python packages: fakepkg-iqt>=1")
    assert accepted == "engine True True ok ['fakepkg-iqt>=1']"
