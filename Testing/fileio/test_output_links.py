"""An output path that is a symbolic link is refused before any work, in one line, the link and its target left as
they were (written through, a target with another suffix or none got the wrong format or stayed empty, a .nhdr's
header and data were split, the target's earlier --maps kept); a device or FIFO refused as before; a new output takes
the umask, one replacing a regular file that file's permission bits."""

from __future__ import annotations

import os

import numpy as np
import pytest

from helpers import bundle_volume, refused_line
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.core.volume import Volume


@pytest.fixture
def lr(tmp_path):
    path = tmp_path / "lr.nii.gz"
    fileio.save_tensor(bundle_volume(shape=(6, 6, 6)), path)
    return path


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("target", ["t/plain.nii", "t/blob", "t/x.nrrd", "t/T.nii.gz", "t/new.nii.gz"])
def test_a_linked_tensor_output_is_refused_and_nothing_written(lr, tmp_path, capsys, target):
    (tmp_path / "t").mkdir()
    for name in ("plain.nii", "blob", "x.nrrd", "T.nii.gz"):
        (tmp_path / "t" / name).write_bytes(b"an earlier file")
    link = tmp_path / "link.nii.gz"
    link.symlink_to(target)
    before = _files(tmp_path)
    refused_line(capsys, ["upsample", lr, "--method", "cubic", "-o", link],
                 f"link.nii.gz: is a symbolic link (to {target}); give the file's own path, or remove the link")
    assert os.readlink(link) == target and _files(tmp_path) == before
    assert all((tmp_path / "t" / n).read_bytes() == b"an earlier file" for n in ("plain.nii", "blob", "x.nrrd"))


@pytest.mark.parametrize("which", ["map", "nhdr data"])
def test_every_linked_output_of_a_run_is_refused(lr, tmp_path, capsys, which):
    out = tmp_path / "up.nii.gz"
    argv = ["upsample", lr, "--method", "cubic", "-o", out]
    if which == "map":
        argv += ["--maps"]
        link = tmp_path / "up_FA.nii.gz"
    else:
        argv[-1] = out = tmp_path / "up.nhdr"
        link = tmp_path / "up.raw.gz"
    link.symlink_to(tmp_path / "elsewhere")  # a link to no file yet: no other rule refuses it
    refused_line(capsys, argv, f"{link.name}: is a symbolic link")
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == sorted([link.name, "lr.nii.gz"])


def test_a_replaced_regular_file_keeps_its_mode_and_a_new_one_takes_the_umask(lr, tmp_path):
    kept = tmp_path / "kept.nii.gz"
    assert main(["upsample", str(lr), "--method", "cubic", "-o", str(kept)]) == 0
    kept.chmod(0o600)
    assert main(["upsample", str(lr), "--method", "cubic", "-o", str(kept)]) == 0
    assert kept.stat().st_mode & 0o777 == 0o600
    old = os.umask(0o027)
    try:
        assert main(["upsample", str(lr), "--method", "cubic", "-o", str(tmp_path / "new.nii.gz")]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "new.nii.gz").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("device", ["/dev/null", "/dev/full"])
def test_a_link_to_a_device_is_refused_in_one_line(lr, tmp_path, capsys, device):
    link = tmp_path / "dev.nii.gz"
    link.symlink_to(device)
    refused_line(capsys, ["upsample", lr, "--method", "cubic", "-o", link],
                 f"dev.nii.gz: is a symbolic link (to {device})")
    assert link.is_symlink() and os.readlink(link) == device
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.nii.gz", "lr.nii.gz"]


def test_a_fifo_output_is_refused_in_one_line(lr, tmp_path, capsys):
    fifo = tmp_path / "pipe.nii.gz"
    os.mkfifo(fifo)
    refused_line(capsys, ["upsample", lr, "--method", "cubic", "-o", fifo], "pipe.nii.gz: is a named pipe (FIFO)")


def test_the_python_api_never_writes_through_a_link(tmp_path):
    for target in ("/dev/null", str(tmp_path / "t.nii.gz")):
        link = tmp_path / "m.nii.gz"
        link.symlink_to(target)
        with pytest.raises(IQTError, match=r"m.nii.gz: is a symbolic link \(to "):
            fileio.save_mask(Volume(np.ones((4, 4, 4), bool), np.eye(4), "mask"), link)
        assert link.is_symlink() and not (tmp_path / "t.nii.gz").exists()
        link.unlink()
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
