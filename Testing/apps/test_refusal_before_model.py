"""An input that cannot be read is refused before a model loads (`iqt upsample missing.nii.gz` imported torch
for the default CNN first, 2.6 s for a one-line refusal; every bad-input run paid it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import REPO, bundle_volume, refused_line

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


@pytest.mark.parametrize("method", ["espcn", "deep", "espcn-hetero-var1", "deep-hetero-var1"])
def test_a_factor_with_no_shipped_model_is_refused_without_torch_or_reading_the_input(tmp_path, monkeypatch, capsys,
                                                                                     method):
    """Which factors a CNN has is in the registry (JSON): `--factor 1,1,4` had imported torch (2 s) only to refuse, and
    `iqt report --input` read the input first. Every import of torch goes through require_torch (methods/cnn), which
    here refuses: the factor's line must come first."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.methods import cnn

    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(bundle_volume(shape=(14, 10, 10)), lr)
    (tmp_path / "list.txt").write_text(f"{lr}\n")

    def no_torch():
        raise IQTError("torch was imported")
    monkeypatch.setattr(cnn, "require_torch", no_torch)
    monkeypatch.setattr(fileio, "load_tensor", lambda *a, **k: pytest.fail("the input was read"))
    said = f"{method} has shipped models for"
    for argv in (["upsample", lr, "-o", tmp_path / "o.nii.gz"], ["batch", tmp_path / "list.txt", "-o", tmp_path / "b"],
                 ["view", lr], ["report", "--input", lr, "-o", tmp_path / "r.html", "--methods", f"cubic,{method}"]):
        refused_line(capsys, [*argv, "--factor", "1,1,4", *(["--method", method] if argv[0] != "report" else [])], said)
    assert not [p.name for p in tmp_path.iterdir() if p.name not in ("lr.nii.gz", "list.txt")]
