"""An input that cannot be read is refused before a model loads (`iqt upsample missing.nii.gz` imported torch
for the default CNN first, 2.6 s for a one-line refusal; every bad-input run paid it)."""

from __future__ import annotations

import subprocess
import sys

from helpers import REPO

PROBE = """
import sys
from ImageQualityTransferLib.apps import cli
code = cli.main(["upsample", sys.argv[1], "-o", sys.argv[2]])
print(code, "torch" in sys.modules)
"""


def test_a_missing_input_is_refused_without_importing_torch(tmp_path):
    run = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "missing.nii.gz"), str(tmp_path / "out.nii.gz")],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.stdout.split() == ["2", "False"], (run.stdout, run.stderr)
    assert "missing.nii.gz: file not found" in run.stderr and not (tmp_path / "out.nii.gz").exists()
