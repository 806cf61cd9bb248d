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


def probe(timeout: float = 60) -> tuple[bool, str]:
    """(True, "") where a child process renders off-screen; else (False, why: its exit status and last stderr)."""
    try:
        done = subprocess.run([sys.executable, "-c", OPENGL_PROBE], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"the probe took over {timeout:g} s"
    if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == ["1"]:
        return True, ""
    return False, f"exit {done.returncode}: {done.stderr.strip()[-300:]}"


def check_offscreen_opengl(who: str = "") -> None:
    """One line (IQTError) where VTK cannot draw off-screen here, naming what to install."""
    ok, _ = probe()
    if not ok:
        raise IQTError(f"{who + ': ' if who else ''}no off-screen OpenGL here (EGL or Mesa): install {PACKAGES} (Debian/Ubuntu; "
                       f"Fedora: mesa-libEGL mesa-libGL mesa-dri-drivers) and run it again")
