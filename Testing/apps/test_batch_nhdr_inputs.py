"""`iqt batch` on NRRD headers (.nhdr) with detached data: an input is hashed with its data file (fileio/checksums.py),
so a subject re-exported behind an unchanged header is redone on resume, and two subjects behind byte-identical
headers are not refused as copies (a code-health review: only the header was hashed)."""

from __future__ import annotations

import numpy as np

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps.batch import items as batch_items
from ImageQualityTransferLib.apps.batch import records
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.fileio import checksums


def tensor_nhdr(folder, scale: float):
    """A small DTI saved as sub-01_dwi.nhdr with its data file beside it (the header the same whatever `scale`)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = np.zeros((6, 6, 4, 6), np.float32)
    data[..., 0] = data[..., 3] = data[..., 5] = 7e-4 * scale
    path = folder / "sub-01_dwi.nhdr"
    fileio.save_tensor(Volume(data, np.diag([2.0, 2.0, 2.0, 1.0]), kind="tensor"), str(path))
    return path


def test_a_changed_data_file_behind_the_same_header_changes_the_inputs_hash(tmp_path):
    a = tensor_nhdr(tmp_path / "a", 1.0)
    header = a.read_bytes()
    item = batch_items.Item(prefix="sub-a", subdir="sub-a", path=str(a), kind="dti")
    before = records.input_hashes(item)["InputSHA256"]
    tensor_nhdr(tmp_path / "a", 1.5)  # re-exported: new data, the same header
    assert a.read_bytes() == header
    assert records.input_hashes(item)["InputSHA256"] != before  # a resumed run redoes it (records.finished)
    data = fileio.paths.nrrd_data_file(a)
    assert (str(data), "input's data file") in records.input_files(item)  # kept apart from the outputs too


def test_two_subjects_behind_byte_identical_headers_are_no_copies(tmp_path):
    a, b = tensor_nhdr(tmp_path / "a", 1.0), tensor_nhdr(tmp_path / "b", 1.5)
    assert a.read_bytes() == b.read_bytes()
    listed = tmp_path / "list.txt"
    listed.write_text(f"{a}\n{b}\n")
    assert len(batch_items.find_items(listed)) == 2  # was refused: 'one subject copied under another name'
    c = tensor_nhdr(tmp_path / "c", 1.5)  # b's data too: a copy
    assert checksums.first_copy([a, b, c]) == (2, 1)
