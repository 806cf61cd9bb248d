"""`iqt upsample` of a file that is already its own upsampled output (its header records 'iqt cubic factor 2') runs,
with one warning line naming what the file is and why a second run is outside what the methods were made for (audit
S: it ran without a word); a first run says nothing of the kind."""

import numpy as np

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.volume import Volume

AFFINE = np.diag([2.0, 2.0, 2.5, 1.0])


def test_upsampling_an_upsampled_output_again_warns_once_and_runs(tmp_path, capsys):
    field = np.broadcast_to(tensors.from_matrix(np.diag([1.2e-3, 0.5e-3, 0.4e-3])), (6, 7, 5, 6)).astype(np.float32)
    fileio.save_tensor(Volume(field, AFFINE, "tensor"), tmp_path / "lr.nii.gz")
    assert cli.main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / "hr.nii.gz"), "--method", "cubic"]) == 0
    assert "upsampled output" not in capsys.readouterr().err
    assert cli.main(["upsample", str(tmp_path / "hr.nii.gz"), "-o", str(tmp_path / "hr2.nii.gz"), "--method", "cubic"]) == 0
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if "upsampled output" in line]
    assert len(lines) == 1, err
    assert "hr.nii.gz: its header reads 'iqt cubic factor 2'" in lines[0] and "block-averaged DWIs" in lines[0]
    assert fileio.load_tensor(tmp_path / "hr2.nii.gz").shape3 == (24, 28, 20)
    assert "wrote" in out
