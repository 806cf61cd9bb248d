"""`iqt benchmark` and `iqt demo --subject` run `iqt fit`'s gradient-table check (dmri/gradcheck.py) on the subject's
fit, as `iqt train` does (dmri/subject.py check_subject_table): a bvec file in another frame had been scored without a
word (its reference mirrored as its input)."""

from __future__ import annotations

import numpy as np
import pytest

import helpers
from ImageQualityTransferLib.apps import cli


@pytest.fixture(scope="module")
def flipped(tmp_path_factory):
    """A phantom subject whose bvec file has its x row negated (white matter enough to judge: 32x36x28)."""
    folder = tmp_path_factory.mktemp("table") / "x_flipped"
    folder.mkdir()
    helpers.save_phantom_dwi(folder / "dwi.nii.gz", (32, 36, 28), 1)
    bvec = folder / "dwi.bvec"
    np.savetxt(bvec, np.loadtxt(bvec) * [[-1.0], [1.0], [1.0]], fmt="%.10g")
    return folder, bvec


def _said(err: str) -> list[str]:
    return helpers.table_looks_wrong(err.splitlines())


def test_benchmark_says_a_subject_s_table_looks_wrong(flipped, capsys):
    folder, bvec = flipped
    code = cli.main(["--threads", "1", "benchmark", str(folder), "--methods", "cubic"])
    said = _said(capsys.readouterr().err)
    assert code == 0 and len(said) == 1, said
    assert said[0].startswith("iqt: warning: ") and f"negate the first row (x) of {bvec}" in said[0]


def test_demo_subject_says_a_subject_s_table_looks_wrong(flipped, tmp_path, capsys):
    folder, bvec = flipped
    code = cli.main(["--threads", "1", "demo", "--subject", str(folder), "--methods", "cubic", "-o", str(tmp_path / "d")])
    said = _said(capsys.readouterr().err)
    assert code == 0 and len(said) == 1, said
    assert f"negate the first row (x) of {bvec}" in said[0] and (tmp_path / "d" / "metrics.md").is_file()
