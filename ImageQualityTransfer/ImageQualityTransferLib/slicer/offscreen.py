"""Whether VTK can draw off-screen here (EGL or Mesa), asked of a child process once per command: without those
libraries trame-slicer's first render segfaults (exit 139, nothing printed), so `iqt view` and `slicer.render` ask
before any work. Testing/apps/test_view.py and Testing/slicer/test_render.py skip on the same probe."""

from __future__ import annotations

import subprocess
import sys

from ..core.errors import IQTError

# a render, not only SupportsOpenGL(): that said 1 with libEGL/libGL hidden, and the first Render() segfaulted
OPENGL_PROBE = ("import vtkmodules.vtkRenderingOpenGL2; from vtkmodules.vtkRenderingCore import vtkRenderWindow, "
                "vtkRenderer; w = vtkRenderWindow(); w.SetOffScreenRendering(1); w.SetSize(8, 8); "
                "w.AddRenderer(vtkRenderer()); w.Render(); print(int(w.SupportsOpenGL()))")
# the packages .ci/run installs
PACKAGES = "libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri"
TOOK_OVER = "the probe took over"  # a slow machine, not missing libraries: the tests fail on it rather than skip


def probe(timeout: float = 60) -> tuple[bool, str]:
    """(True, "") where a child process renders off-screen; else (False, why: its exit status and the last line it
    wrote to stderr, which for a Python error is the error itself, or where it wrote none, the last line it printed)."""
    try:
        done = subprocess.run([sys.executable, "-c", OPENGL_PROBE], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"{TOOK_OVER} {timeout:g} s"
    if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == ["1"]:
        return True, ""
    said = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    if said:
        return False, f"exit {done.returncode}: {said[-1][:160]}"
    # nothing on stderr: its output's last line (a render that ran, SupportsOpenGL() printing 0, had read 'nothing printed')
    out = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return False, f"exit {done.returncode}, " + (f"printed {out[-1][:160]!r}" if out else "nothing printed")


def check_offscreen_opengl(who: str = "") -> None:
    """One line (IQTError) where VTK cannot draw off-screen here, naming what to install."""
    ok, why = probe()
    if ok:
        return
    lead = f"{who + ': ' if who else ''}"
    if why.startswith(TOOK_OVER):  # not proof of missing libraries: say what happened
        raise IQTError(f"{lead}the check that VTK can draw off-screen here did not answer ({why}); run it again on a "
                       f"less loaded machine")
    raise IQTError(f"{lead}no off-screen OpenGL here (EGL or Mesa; the check ended: {why}): install {PACKAGES} "
                   f"(Debian/Ubuntu; Fedora: mesa-libEGL mesa-libGL mesa-dri-drivers) and run it again")
