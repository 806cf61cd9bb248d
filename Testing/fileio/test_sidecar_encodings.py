"""A DWI's BIDS sidecar (dwi.json) is read in the encodings Windows tools write it, as the bval/bvec beside it are:
UTF-8 with or without a byte-order mark, UTF-16 with one (PowerShell 5's Out-File); its SliceEncodingDirection was
not used, with a warning, for a UTF-16 file."""

from __future__ import annotations

import json
import warnings

import pytest

from ImageQualityTransferLib.fileio.gradients import sidecar_slices


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le"])
def test_slice_encoding_direction_is_read_in_every_encoding_windows_tools_write(tmp_path, encoding):
    text = json.dumps({"SliceEncodingDirection": "j", "Manufacturer": "Siemens"})
    data = text.encode(encoding)
    if encoding == "utf-16-le":  # with its byte-order mark written first, as Out-File does
        data = b"\xff\xfe" + data
    (tmp_path / "dwi.json").write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sidecar_slices(tmp_path / "dwi.nii.gz")[0] == 1
