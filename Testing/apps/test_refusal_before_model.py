"""An input that cannot be read is refused before a model loads (`iqt upsample missing.nii.gz` imported torch
for the default CNN first, 2.6 s for a one-line refusal; every bad-input run paid it)."""

from __future__ import annotations

import subprocess
import sys

from helpers import REPO, bundle_volume

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


FACTOR_PROBE = """
import contextlib, io, json, sys
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps import cli

def read(*a, **k):
    raise AssertionError("the input was read")
fileio.load_tensor = read
lr, out = sys.argv[1], sys.argv[2]
said = []
for method in ("espcn", "deep", "espcn-hetero-var1", "deep-hetero-var1"):
    for argv in (["upsample", lr, "-o", out + "/o.nii.gz", "--method", method],
                 ["batch", out + "/list.txt", "-o", out + "/b", "--method", method], ["view", lr, "--method", method],
                 ["report", "--input", lr, "-o", out + "/r.html", "--methods", "cubic," + method]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main([*argv, "--factor", "1,1,4"])
        said.append([method, code, err.getvalue(), "torch" in sys.modules])
print(json.dumps(said))
"""


def test_a_factor_with_no_shipped_model_is_refused_without_torch_or_reading_the_input(tmp_path):
    """Which factors a CNN has is in the registry (JSON): `--factor 1,1,4` had imported torch (2 s) only to refuse, and
    `iqt report --input` read the input first. In a fresh process, so that any import of torch is seen (the CNN's
    networks, shuffle, inference, model_io and training_data modules import it directly, not only through
    methods/cnn require_torch; a review: `from . import model_io, networks` in `_model_io` had passed when
    require_torch alone was made to refuse): each command's one line, no torch, the input not read."""
    import json

    from ImageQualityTransferLib import fileio

    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(bundle_volume(shape=(14, 10, 10)), lr)
    (tmp_path / "list.txt").write_text(f"{lr}\n")
    run = subprocess.run([sys.executable, "-c", FACTOR_PROBE, str(lr), str(tmp_path)], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    for method, code, err, torch in json.loads(run.stdout):
        lines = [ln for ln in err.splitlines() if ln.strip() and "warning" not in ln]
        assert code == 2 and len(lines) == 1 and f"{method} has shipped models for" in lines[0], err
        assert not torch, (method, err)
    assert not [p.name for p in tmp_path.iterdir() if p.name not in ("lr.nii.gz", "list.txt")]
