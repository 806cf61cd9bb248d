"""An output that replaces a file keeps that file's permission bits (a file kept private, 600, became 644, the
umask's, when a run wrote it again); a new output gets the umask's."""

from __future__ import annotations

import os
import stat

import pytest

from helpers import five_d_tensor
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.fileio.writing import write_text


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def lr(tmp_path):
    return five_d_tensor(tmp_path / "lr.nii.gz")


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", ["up.nii.gz", "up.nhdr"])
def test_a_replaced_output_keeps_its_mode(tmp_path, lr, umask_022, name):
    out = tmp_path / name
    files = [out] + ([tmp_path / "up.raw.gz"] if name.endswith(".nhdr") else [])
    assert main(["upsample", str(lr), "--method", "linear", "-o", str(out)]) == 0
    assert [_mode(f) for f in files] == [0o644] * len(files)  # new: the umask's
    for f in files:
        os.chmod(f, 0o600)
    assert main(["upsample", str(lr), "--method", "cubic", "-o", str(out)]) == 0
    assert [_mode(f) for f in files] == [0o600] * len(files)


def test_write_text_keeps_the_mode_and_a_new_file_gets_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        write_text(tmp_path / "new.txt", "a")
        (tmp_path / "kept.txt").write_text("b")
        os.chmod(tmp_path / "kept.txt", 0o640)
        write_text(tmp_path / "kept.txt", "c")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "new.txt") == 0o600
    assert _mode(tmp_path / "kept.txt") == 0o640 and (tmp_path / "kept.txt").read_text() == "c"
