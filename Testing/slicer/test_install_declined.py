"""Cancel in the install dialog of Slicer's `slicer.packaging.pip_ensure` (the route the module takes where Slicer has
it) is a decline, as Cancel in the older route's confirmOkCancelDisplay is: pip_ensure raises
RuntimeError("User declined package installation") for it (Slicer Base/Python/slicer/packaging.py, "raises
RuntimeError: If user declines installation"), and installDependencies returned nothing but that error, so Apply
showed "Installing the Python packages failed." instead of the status line naming the packages it needs (audit AD,
item 8). The module file runs in Testing/slicer/self_test_in_batch.py's application shell, in a child process, with a
stand-in slicer.packaging whose pip_ensure behaves as Slicer's does on OK and on Cancel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DRIVER = Path(__file__).with_name("self_test_in_batch.py")

SCRIPT = r"""
import contextlib, sys, types
sys.path[:0] = [{testing!r}, {helpers!r}]
import self_test_in_batch as shell
shell.application_shell()
import slicer
import slicer.util
sys.path.insert(0, str(shell.MODULE_DIR))
import ImageQualityTransfer as module

calls, answer = [], [None]


def pip_ensure(requirements, prompt_install=True, requester=None, skip_in_testing=True, **kwargs):
    # Slicer's pip_ensure: a dialog when prompt_install, Cancel raises, OK installs
    if prompt_install and not answer[0]:
        raise RuntimeError(answer[1] if len(answer) > 1 else "User declined package installation")
    calls.extend(requirements)


packaging = types.ModuleType("slicer.packaging")
packaging.pip_ensure = pip_ensure
sys.modules["slicer.packaging"] = packaging
slicer.packaging = packaging
slicer.app.commandOptions = lambda: types.SimpleNamespace(noMainWindow=False)  # a main window: it asks

errors = []


@contextlib.contextmanager
def tryWithErrorDisplay(message=None, show=True, waitCursor=False):  # Slicer's: shows the error, raises it again
    try:
        yield
    except Exception as exc:
        errors.append(message)
        raise


slicer.util.tryWithErrorDisplay = tryWithErrorDisplay
logic = module.ImageQualityTransferLogic()
logic.missingPackages = lambda: [] if calls else ["fakepkg-iqt>=1"]

answer[:] = [False]
print("install", repr(logic.installDependencies(askConfirmation=True)), calls)
try:
    logic.engine()
    print("engine ok")
except RuntimeError as exc:
    print("engine error |", exc)

label = types.SimpleNamespace(text="")
panel = types.SimpleNamespace(_running=False, logic=logic, ui=types.SimpleNamespace(statusLabel=label))
try:
    module.ImageQualityTransferWidget.onApplyButton(panel)
    print("apply returned | " + label.text + " | errors", errors)
except RuntimeError as exc:
    print("apply raised |", exc, "| errors", errors)

answer[:] = [False, "pip failed for another reason"]  # any other RuntimeError is an error, as before
try:
    logic.installDependencies(askConfirmation=True)
    print("other returned")
except RuntimeError as exc:
    print("other raised |", exc)

answer[:] = [True]
print("accepted", repr(logic.installDependencies(askConfirmation=True)), calls)
"""


def test_cancel_in_pip_ensures_dialog_is_a_decline_not_an_error(tmp_path):
    code = SCRIPT.format(testing=str(DRIVER.parent), helpers=str(DRIVER.parent.parent))
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout.splitlines()
    assert "install False []" in out, run.stdout
    assert "engine error | Missing Python packages: fakepkg-iqt>=1" in out, run.stdout
    assert ("apply returned | Image Quality Transfer needs these Python packages: fakepkg-iqt>=1 | errors []"
            in out), run.stdout
    assert "other raised | pip failed for another reason" in out, run.stdout
    assert "accepted True ['fakepkg-iqt>=1']" in out, run.stdout
