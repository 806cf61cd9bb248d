"""A series of a b0 and 6 directions (a common clinical protocol) is fitted exactly, leaving no residual for the
reference's noise floor: `iqt benchmark` and `iqt demo --subject` score it without the floor, in one warning naming the
subject (an audit: both refused the whole subject in a line naming neither it nor a fix); `iqt evaluate --dwi`, which
asks for the floor alone, refuses naming the DWI and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.dmri.phantom import make_phantom

from helpers import changed_copy


@pytest.fixture(scope="module")
def six_dirs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("six") / "six_dirs"
    folder.mkdir()
    dwi = make_phantom(shape=(24, 26, 20), voxel_mm=4.0, n_dirs=6)
    keep = np.r_[0, np.flatnonzero(dwi.bvals > 50)]  # one b0 and the 6 directions: 7 volumes
    fileio.save_dwi(dwi.replace(data=dwi.data[..., keep], bvals=dwi.bvals[keep], bvecs=dwi.bvecs[keep]),
                    folder / "dwi.nii.gz")
    return folder


def test_the_benchmark_scores_a_six_direction_subject_without_its_noise_floor(six_dirs, capsys):
    code = cli.main(["--threads", "1", "benchmark", str(six_dirs), "--methods", "cubic"])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 0 and len(lines) == 1, err
    assert lines[0].startswith("iqt: warning: six_dirs: no reference noise floor") and "7 volumes" in lines[0]
    row = next(line for line in out.splitlines() if line.startswith("| six_dirs | cubic |"))
    assert "| – / – |" in row


def test_the_benchmark_says_it_once_per_subject_whatever_the_styles(six_dirs, capsys):
    """Two styles of one subject had said it twice, once per style (a review): it is the series', said once."""
    code = cli.main(["--threads", "1", "benchmark", str(six_dirs), "--methods", "cubic,linear", "--styles", "own,tight"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 0 and len(lines) == 1 and lines[0].startswith("iqt: warning: six_dirs: no reference noise floor"), err


def test_evaluate_dwi_refuses_a_six_direction_dwi_naming_it_and_the_fix(six_dirs, tmp_path, capsys):
    dwi = six_dirs / "dwi.nii.gz"
    assert cli.main(["--threads", "1", "fit", str(dwi), "-o", str(tmp_path / "hr.nii.gz"),
                     "--mask-out", str(tmp_path / "mask.nii.gz")]) == 0
    capsys.readouterr()
    changed_copy(tmp_path / "hr.nii.gz", tmp_path / "pred.nii.gz", tmp_path / "mask.nii.gz")  # it or its copy: refused
    code = cli.main(["--threads", "1", "evaluate", "--pred", str(tmp_path / "pred.nii.gz"), "--truth",
                     str(tmp_path / "hr.nii.gz"), "--mask", str(tmp_path / "mask.nii.gz"), "--dwi", str(dwi)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{dwi}: its 7 volumes" in err and "leave --dwi out" in err


def test_the_demo_on_a_six_direction_subject_says_so_once_and_writes_its_outputs(six_dirs, tmp_path, capsys):
    out_dir = tmp_path / "demo"
    code = cli.main(["--threads", "1", "demo", "--subject", str(six_dirs), "--methods", "cubic", "-o", str(out_dir)])
    err = capsys.readouterr().err
    assert code == 0 and err.strip().splitlines() == [line for line in err.strip().splitlines()
                                                      if line.startswith("iqt: warning: six_dirs: no reference noise")]
    assert len(err.strip().splitlines()) == 1 and (out_dir / "metrics.json").exists(), err
