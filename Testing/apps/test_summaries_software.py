"""The JSON summaries and the report page say which code made them (version and build, as `iqt --version` prints
them): after an upgrade the same command and --seed give other figures (a count's definition, a propagation's
support), and a lab reading a file later could not tell (audit AB)."""

from __future__ import annotations

import json

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.core.version import __version__
from ImageQualityTransferLib.fileio.model_files import build


def test_propagation_evaluate_and_report_name_the_version_and_build(small_subject, tmp_path, capsys):
    dwi = str(small_subject / "dwi.nii.gz")
    assert main(["fit", dwi, "-o", str(tmp_path / "hr.nii.gz"), "--mask-out", str(tmp_path / "m.nii.gz")]) == 0
    assert main(["degrade", dwi, "--factor", "2", "-o", str(tmp_path / "lr.nii.gz")]) == 0
    assert main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / "up.nii.gz"), "--method", "biqt",
                 "--samples", "3", "--propagate", "--no-tracts"]) == 0
    assert main(["evaluate", "--pred", str(tmp_path / "up.nii.gz"), "--truth", str(tmp_path / "hr.nii.gz"), "--mask",
                 str(tmp_path / "m.nii.gz"), "--factor", "2", "--json", str(tmp_path / "e.json")]) == 0
    assert main(["--threads", "1", "report", "-o", str(tmp_path / "r.html"), "--input", str(tmp_path / "lr.nii.gz"),
                 "--methods", "cubic", "--no-tracts"]) == 0
    capsys.readouterr()
    for name in ("up_propagation.json", "e.json"):
        doc = json.loads((tmp_path / name).read_text())
        assert (doc["software"], doc["version"], doc["build"]) == ("ImageQualityTransfer", __version__, build()), name
    assert f"by ImageQualityTransfer {__version__}, build {build()} (iqt report)" in (tmp_path / "r.html").read_text()
    assert fileio.load_tensor(tmp_path / "up.nii.gz").shape3 == fileio.load_tensor(tmp_path / "hr.nii.gz").shape3
