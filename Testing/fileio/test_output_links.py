"""An output path that is a symbolic link: written through to its target, the link kept (the rename onto the link's
name had replaced the link by a file, the target keeping its old content); one that leads to a device or FIFO refused
in one line (a link to /dev/full had made a world-writable output, its mode copied from the device)."""

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


def test_a_linked_output_updates_its_target_and_keeps_the_link(lr, tmp_path):
    (tmp_path / "t").mkdir()
    target = tmp_path / "t" / "target.nii.gz"
    target.write_bytes(b"an earlier output")
    target.chmod(0o600)
    link = tmp_path / "link.nii.gz"
    link.symlink_to(target)
    assert main(["upsample", str(lr), "--method", "cubic", "-o", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert fileio.load_tensor(target).shape3 == (12, 12, 12)
    assert target.stat().st_mode & 0o777 == 0o600  # the replaced file's mode kept
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["target.nii.gz"]  # no temporary left beside it


def test_a_new_target_of_a_link_takes_the_umask(lr, tmp_path):
    link = tmp_path / "link.nii.gz"
    link.symlink_to(tmp_path / "new.nii.gz")
    old = os.umask(0o027)
    try:
        assert main(["upsample", str(lr), "--method", "cubic", "-o", str(link)]) == 0
    finally:
        os.umask(old)
    assert link.is_symlink() and (tmp_path / "new.nii.gz").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("device", ["/dev/null", "/dev/full"])
def test_a_link_to_a_device_is_refused_in_one_line(lr, tmp_path, capsys, device):
    link = tmp_path / "dev.nii.gz"
    link.symlink_to(device)
    refused_line(capsys, ["upsample", lr, "--method", "cubic", "-o", link],
                 f"dev.nii.gz: is a symbolic link to a device ({device}), not a regular file")
    assert link.is_symlink() and os.readlink(link) == device
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.nii.gz", "lr.nii.gz"]


def test_a_fifo_output_is_refused_in_one_line(lr, tmp_path, capsys):
    fifo = tmp_path / "pipe.nii.gz"
    os.mkfifo(fifo)
    refused_line(capsys, ["upsample", lr, "--method", "cubic", "-o", fifo], "pipe.nii.gz: is a named pipe (FIFO)")


def test_the_python_api_never_replaces_a_device(tmp_path):
    link = tmp_path / "m.nii.gz"
    link.symlink_to("/dev/null")
    with pytest.raises(IQTError, match=r"/dev/null: is a device, not a regular file"):
        fileio.save_mask(Volume(np.ones((4, 4, 4), bool), np.eye(4), "mask"), link)
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
