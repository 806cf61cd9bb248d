"""Output paths: the refusal of an output that is an input names that input (a hard link included)."""

from __future__ import annotations

import os

import pytest

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
