"""`iqt mask --as-benchmark` and `iqt degrade --as-benchmark` make the brain mask `iqt benchmark` scores in
(dmri.subject.Subject.from_dwi: median Otsu, holes filled in 3D only), so that fit -> degrade -> upsample -> evaluate
from the command line reproduces the published regions; without it the in-slice holes are filled."""

from __future__ import annotations

import numpy as np

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.dmri.subject import make_case

from helpers import AXIAL, run_cli


def test_the_benchmark_mask_from_the_command_line_is_the_benchmarks(capsys, tmp_path, axial_subject):
    dwi = AXIAL / "dwi.nii.gz"
    ours = np.asarray(axial_subject.mask.data, bool)  # Subject.from_dwi's: the regions of every published figure
    code, out, err = run_cli(capsys, "mask", dwi, "--as-benchmark", "-o", tmp_path / "bench.nii.gz")
    assert code == 0, err
    assert "benchmark" in out
    got = fileio.load_mask(tmp_path / "bench.nii.gz").data
    np.testing.assert_array_equal(np.asarray(got, bool), ours)
    # the default fills the holes by the ventricles (2,657 voxels on this subject): another mask
    assert run_cli(capsys, "mask", dwi, "-o", tmp_path / "filled.nii.gz")[0] == 0
    filled = np.asarray(fileio.load_mask(tmp_path / "filled.nii.gz").data, bool)
    assert (filled & ~ours).sum() > 1000 and not (ours & ~filled).any()
    # degrade makes the benchmark's low-res input and mask from it too
    code, out, err = run_cli(capsys, "degrade", dwi, "--as-benchmark", "-o", tmp_path / "lr.nii.gz", "--mask-out",
                          tmp_path / "lrmask.nii.gz")
    assert code == 0, err
    case = make_case(axial_subject, 2)
    np.testing.assert_array_equal(np.asarray(fileio.load_mask(tmp_path / "lrmask.nii.gz").data, bool),
                                  np.asarray(case.lr_mask.data, bool))
    np.testing.assert_allclose(fileio.load_tensor(tmp_path / "lr.nii.gz").data, case.lr.data, rtol=0, atol=1e-9)
    # it makes the mask: given with --mask as well, refused before any work
    code, _, err = run_cli(capsys, "degrade", dwi, "--as-benchmark", "--mask", tmp_path / "bench.nii.gz", "-o",
                        tmp_path / "lr2.nii.gz")
    assert code == 2 and "--as-benchmark" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "lr2.nii.gz").exists()
