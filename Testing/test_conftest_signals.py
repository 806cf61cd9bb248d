"""The suite's own handling of the stop signals it was started ignoring (conftest.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import os, signal, subprocess, sys, time
for sig in (signal.SIGHUP, signal.SIGTERM):
    signal.signal(sig, signal.SIG_IGN)  # as `nohup pytest ...` (SIGHUP) or a parent that ignored SIGTERM starts it
import conftest
for sig in (signal.SIGHUP, signal.SIGTERM):
    os.kill(os.getpid(), sig)  # the terminal closed, a stop sent: outlived, as when started ignoring them
time.sleep(0.05)
execed = subprocess.run([sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGHUP).name, "
                         "signal.getsignal(signal.SIGTERM).name)"], capture_output=True, text=True).stdout.split()
pid = os.fork()
if pid == 0:
    os._exit(0 if all(signal.getsignal(s) == signal.SIG_DFL for s in (signal.SIGHUP, signal.SIGTERM)) else 1)
print("alive", *execed, "forked-default" if os.waitpid(pid, 0)[1] == 0 else "forked-not-default")
"""


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGHUP"), reason="no SIGHUP on this platform")
def test_a_suite_started_ignoring_sighup_outlives_it_and_its_children_take_the_default():
    """`nohup pytest ... &` had died at a hangup (129): conftest set SIGHUP back to the default in the test process
    itself, where the children the tests start were to have it. The process outlives SIGHUP and SIGTERM it was started
    ignoring; a child, exec'd or forked, takes them by default (a terminal's foreground run)."""
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=Path(__file__).parent, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split() == ["alive", "SIG_DFL", "SIG_DFL", "forked-default"], done.stdout
