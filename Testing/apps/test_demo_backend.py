"""An unknown MPLBACKEND in the environment ended 'iqt demo' (and 'iqt report') in an internal error after all their
work (a fresh-eyes audit): the figures use Agg canvases, never the environment's backend."""

from __future__ import annotations

import subprocess
import sys

from helpers import engine_env


def test_the_demo_draws_its_figure_whatever_backend_the_environment_names(tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "ImageQualityTransferLib", "demo", "-o", str(out), "--methods", "cubic"],
                          env=engine_env() | {"MPLBACKEND": "bogus"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "internal error" not in done.stderr and (out / "fa_panels.png").stat().st_size > 10_000
