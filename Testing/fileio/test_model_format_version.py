"""A model sidecar in another format version of its own family (a model from a later or earlier iqt) is refused in
one line naming the format and the version that wrote it: it had advised 'run it with --method espcn' of an espcn
model, which changes nothing."""

from __future__ import annotations

import json

import pytest

from ImageQualityTransferLib import IQTError
from ImageQualityTransferLib.fileio import model_files


@pytest.mark.parametrize("fmt", ["iqt-cnn-model/2", "iqt-cnn-model/0"])
def test_another_format_version_names_it_and_gives_no_method_advice(tmp_path, fmt):
    (tmp_path / "m.pt").write_bytes(b"weights")
    (tmp_path / "m.json").write_text(json.dumps({"format": fmt, "method": "espcn", "version": "9.0.0",
                                                 "weights": "m.pt"}))
    with pytest.raises(IQTError) as err:
        model_files.read_sidecar(tmp_path / "m.pt", "iqt-cnn-model/1", "CNN", ".pt")
    said = str(err.value)
    assert f"format {fmt!r}, written by version 9.0.0" in said and "--method" not in said, said


def test_another_family_still_names_its_method(tmp_path):
    (tmp_path / "m.npz").write_bytes(b"weights")
    (tmp_path / "m.json").write_text(json.dumps({"format": "iqt-forest-model/1", "method": "rf", "weights": "m.npz"}))
    with pytest.raises(IQTError, match="it is an rf model: run it with --method rf"):
        model_files.read_sidecar(tmp_path / "m.npz", "iqt-cnn-model/1", "CNN", ".pt")
