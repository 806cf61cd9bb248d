"""The memory check of `iqt fit`, `mask` and `degrade` counts what `--bmax` keeps: the DWI is read whole once, and
the rest of the run's peak is on the volumes kept (a 144x144x36x141 multi-shell series under --bmax 1000 peaked at
0.58 GB, and the check, counting every volume, refused it under a 2 GiB limit)."""

from __future__ import annotations

import numpy as np

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core import memory
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.dmri.phantom import make_phantom
from ImageQualityTransferLib.fileio.sizes import READ_PEAK

from helpers import run_cli


def test_fit_under_bmax_is_judged_on_the_volumes_it_keeps(tmp_path, capsys, monkeypatch):
    low = make_phantom(shape=(20, 22, 16), voxel_mm=4.0, n_dirs=12, bval=1000.0)
    high = make_phantom(shape=(20, 22, 16), voxel_mm=4.0, n_dirs=12, bval=3000.0)
    dwi_b = high.bvals > 50  # the b = 3000 shell twice over: a third of the series is kept under --bmax 1000
    data = np.concatenate([low.data, high.data[..., dwi_b], high.data[..., dwi_b]], axis=-1)
    bvals = np.concatenate([low.bvals, high.bvals[dwi_b], high.bvals[dwi_b]])
    bvecs = np.concatenate([low.bvecs, high.bvecs[dwi_b], high.bvecs[dwi_b]])
    fileio.save_dwi(Volume(data, low.affine, "dwi", bvals=bvals, bvecs=bvecs), tmp_path / "dwi.nii.gz")
    whole = data.size * 4
    kept = (bvals <= 1000 + 50).mean()
    m = READ_PEAK["fit"]
    with_bmax = whole * (1 + (m - 1) * kept) + memory.PEAK_FIXED_BYTES
    every = whole * m + memory.PEAK_FIXED_BYTES
    monkeypatch.setattr(memory, "memory_limit", lambda: int((with_bmax + every) / 2))  # fits with --bmax only
    monkeypatch.setattr(memory, "memory_available", lambda: None)
    code, _, err = run_cli(capsys, "fit", tmp_path / "dwi.nii.gz", "--bmax", "1000", "-o", tmp_path / "a.nii.gz")
    assert code == 0, err
    code, _, err = run_cli(capsys, "fit", tmp_path / "dwi.nii.gz", "-o", tmp_path / "b.nii.gz")
    assert code == 2 and "needs about" in err and not (tmp_path / "b.nii.gz").exists(), err
