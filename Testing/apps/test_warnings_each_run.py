"""Each in-process run of the command line says its warnings: Python's registry of warnings already shown kept a
second run of the same input silent (a test or a notebook calling `main` twice), unless something in between happened
to change the warning filters."""

from __future__ import annotations

from helpers import bundle_volume
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps.cli import main


def test_a_second_run_says_the_same_warning(tmp_path, capsys):
    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(bundle_volume(shape=(14, 10, 10)), lr)  # whole field of view, no mask: one warning
    said = []
    for i in range(2):
        capsys.readouterr()
        assert main(["upsample", str(lr), "-o", str(tmp_path / f"hr{i}.nii.gz"), "--method", "cubic"]) == 0
        said.append([line for line in capsys.readouterr().err.splitlines() if line.startswith("iqt: warning:")])
    assert len(said[0]) == 1 and said[1] == said[0], said
