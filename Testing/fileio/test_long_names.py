"""An output name longer than a file name may be (255 bytes) is one line and exit 2 before any work, for the output and
for the maps named after it; a long name that fits runs (both were an internal error, exit 1)."""

from __future__ import annotations

import numpy as np

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.core.volume import Volume

import helpers


def test_names_too_long_are_refused_in_one_line_and_long_ones_that_fit_run(tmp_path, capsys):
    fileio.save_tensor(Volume(helpers.random_tensors((6, 7, 5)), np.diag([2.0, 2.0, 2.0, 1.0]), "tensor"),
                       tmp_path / "lr.nii.gz")
    run = ["upsample", str(tmp_path / "lr.nii.gz"), "--method", "cubic"]
    for stem, extra, what in (("a" * 250, [], "the tensor output's"), ("b" * 248, ["--maps"], "the FA map's")):
        code = main([*run, "-o", str(tmp_path / f"{stem}.nii.gz"), *extra])
        out, err = capsys.readouterr()
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert f"{what} file name is" in err and "give a shorter name" in err, err
    assert main([*run, "-o", str(tmp_path / ("c" * 240 + ".nii.gz")), "--maps"]) == 0  # every map's name fits
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 8 and names[-1] == "lr.nii.gz" and all(len(n) <= 255 for n in names)
