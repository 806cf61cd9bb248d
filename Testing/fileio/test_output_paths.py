"""Output paths: the refusal of an output that is an input names that input (a hard link included)."""

from __future__ import annotations

import os

import pytest

from helpers import bundle_volume
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.errors import IQTError


def test_a_hard_link_to_an_input_is_refused_naming_the_input(tmp_path):
    """`-o out_hard.nii.gz`, a hard link to the input lr_copy.nii.gz, was refused as 'an input of this run
    (out_hard.nii.gz)', its own name; the message names the input it is."""
    src = tmp_path / "lr_copy.nii.gz"
    src.write_bytes(b"not read here")
    link = tmp_path / "out_hard.nii.gz"
    os.link(src, link)
    plan = fileio.Outputs(src)
    plan.add(link, what="tensor output")
    with pytest.raises(IQTError) as err:
        plan.check()
    message = str(err.value)
    assert message.startswith(f"{link}: is an input of this run ({src})"), message


@pytest.mark.parametrize("name", [".nii.gz", ".nii", ".NII.GZ", ".nrrd"])
def test_an_output_named_by_its_suffix_alone_is_refused(tmp_path, capsys, name):
    """`-o .nii.gz` had written a hidden file with no name."""
    from ImageQualityTransferLib.apps.cli import main

    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(bundle_volume(shape=(6, 6, 6)), lr)
    code = main(["upsample", str(lr), "--method", "cubic", "-o", str(tmp_path / name)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines() == [
        f"iqt: error: {tmp_path / name}: the tensor output's name is its suffix alone, a hidden file with no name; "
        f"give a name before it, e.g. {tmp_path / ('out' + name)}"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.nii.gz"]
    fileio.check_output(tmp_path / "x.nii.gz")  # one character before it: taken
