"""`iqt upsample` checks memory before it reads the input, imports torch or loads a model (audit O, F6: a refusal
came after the input was read, torch imported and the model loaded: 4.6-20 s and 0.62 GB for one line), with the same
figures predict checks (`Method.check_memory`)."""

from __future__ import annotations

import subprocess
import sys

from helpers import bundle_volume
from ImageQualityTransferLib import fileio

CODE = """
import sys
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.core import grid
from ImageQualityTransferLib import fileio
grid.memory_limit = lambda: grid.PEAK_FIXED_BYTES  # any run passes it
read = []
load_tensor = fileio.load_tensor
fileio.load_tensor = lambda *a, **k: read.append(1) or load_tensor(*a, **k)
code = main(["upsample", sys.argv[1], "-o", sys.argv[2], "--method", sys.argv[3], "--uncertainty", sys.argv[4]])
print(code, "torch" in sys.modules, bool(read))
"""


def test_a_refusal_for_memory_comes_before_the_input_is_read_or_torch_imported(tmp_path):
    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(bundle_volume(shape=(14, 10, 10)), lr)
    run = subprocess.run([sys.executable, "-c", CODE, str(lr), str(tmp_path / "hr.nii.gz"), "espcn-hetero-var1",
                          str(tmp_path / "u.nii.gz")], capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["2", "False", "False"], (run.stdout, run.stderr)
    assert "with its uncertainty maps, more than this process's 0.5 GiB of memory" in run.stderr, run.stderr
    assert run.stderr.count("\n") == 1 and not list(tmp_path.glob("hr*")), run.stderr
