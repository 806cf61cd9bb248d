"""An unknown MPLBACKEND in the environment ended 'iqt demo' (and 'iqt report') in an internal error after all their
work (a fresh-eyes audit): the figures use Agg canvases, never the environment's backend."""

from __future__ import annotations

import subprocess
import sys

from helpers import engine_env

# `iqt` (apps/entry.py's main, as `python -m ImageQualityTransferLib` runs it) on the demo's phantom made coarse (32x36x28
# voxels of 4 mm, 12 directions, as test_demo.py's _coarse_demo_phantom): the figure is drawn as on the full one, in
# a fraction of its time
COARSE_DEMO = """
import functools, sys
from ImageQualityTransferLib.dmri import phantom
phantom.make_phantom = functools.partial(phantom.make_phantom, shape=(32, 36, 28), voxel_mm=4.0, n_dirs=12)
from ImageQualityTransferLib.apps.entry import main
sys.exit(main())
"""


def test_the_demo_draws_its_figure_whatever_backend_the_environment_names(tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-c", COARSE_DEMO, "demo", "-o", str(out), "--methods", "cubic"],
                          env=engine_env() | {"MPLBACKEND": "bogus"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "internal error" not in done.stderr and (out / "fa_panels.png").stat().st_size > 10_000
    assert "phantom: high-res (32, 36, 28)" in done.stdout, done.stdout  # the coarse phantom ran
