"""`iqt batch` on NRRD headers (.nhdr) with detached data: an input is hashed with its data file (fileio/checksums.py),
so a subject re-exported behind an unchanged header is redone on resume, and two subjects behind byte-identical
headers are not refused as copies (a code-health review: only the header was hashed)."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps.batch import items as batch_items
from ImageQualityTransferLib.apps.batch import records
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.fileio import checksums

from helpers import unblock_later


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


def _unblock_later(fifo, after: float = 0.2) -> tuple[threading.Event, list]:
    """The FIFO's unblocker (helpers.unblock_later) and the list it fills where a reader opened the FIFO."""
    opened: list = []
    return unblock_later(fifo, after, opened=opened)[0], opened


def test_a_data_file_that_is_a_fifo_is_not_opened_by_the_hashing(tmp_path):
    """A FIFO data file behind a .nhdr (input or mask) hung `iqt batch`: the hashing opened it before the reader's
    one-line refusal (a review)."""
    heads = [tensor_nhdr(tmp_path / x, 1.0) for x in ("a", "b")]
    stops, opened = [], []
    for head in heads:
        data = fileio.paths.nrrd_data_file(head)
        data.unlink()
        os.mkfifo(data)
        stop, opened_here = _unblock_later(data)
        stops.append(stop)
        opened.append(opened_here)
    try:
        assert checksums.first_copy(heads) is None  # its reader refuses each; neither is the other's copy
        item = batch_items.Item(prefix="sub-a", subdir="sub-a", path=str(heads[0]), kind="dti", mask=str(heads[1]))
        hashes = records.input_hashes(item)
        assert hashes["InputSHA256"] != checksums.sha256(heads[0])  # no record of a read image matches it
    finally:
        for stop in stops:
            stop.set()
    assert opened == [[], []], "opened the FIFO"


def test_a_missing_or_split_data_file_is_left_to_the_reader(tmp_path):
    """A header's missing data file, or data split over several ('data file: slice%03d.raw 1 36 1 3'), failed the
    subject as '<data file>: file not found' without naming the header: the reader's own line is what it gets (a
    review)."""
    missing = tensor_nhdr(tmp_path / "m", 1.0)
    fileio.paths.nrrd_data_file(missing).unlink()
    split = tensor_nhdr(tmp_path / "s", 1.0)
    text = split.read_text()
    split.write_text(text.replace(f"data file: {fileio.paths.nrrd_data_file(split).name}", "data file: s%03d.raw 1 4 1 3"))
    for head, said in ((missing, "its detached data file missing"), (split, "split over several files")):
        item = batch_items.Item(prefix="sub-a", subdir="sub-a", path=str(head), kind="dti")
        records.input_hashes(item)  # was an IQTError naming the data file alone
        with pytest.raises(IQTError, match=said) as exc:
            fileio.load_tensor(str(head))
        assert str(exc.value).startswith(str(head))


def test_a_moved_nhdr_input_with_an_old_header_only_record_is_redone_not_refused(tmp_path):
    """A .nhdr subject moved and resumed after the upgrade was refused as 'two subjects share the label': its outputs'
    InputSHA256, written before the data file was hashed, is the header's alone (a review)."""
    head = tensor_nhdr(tmp_path / "moved", 1.0)
    item = batch_items.Item(prefix="sub-01", subdir="sub-01", path=str(head), kind="dti")
    ident = {"InputSHA256": records.input_hashes(item)["InputSHA256"]}
    folder = tmp_path / "out" / "sub-01"
    folder.mkdir(parents=True)
    names = {"tensor": "sub-01_dti.nii.gz"}
    old = {"InputFile": str(tmp_path / "was" / "sub-01_dwi.nhdr"), "InputSHA256": checksums.sha256(head)}
    records.sidecar(folder / names["tensor"]).write_text(json.dumps(old))
    records.check_same_input(folder, names, item, ident)  # the same contents moved: redone
    other = dict(old, InputSHA256="0" * 64)
    records.sidecar(folder / names["tensor"]).write_text(json.dumps(other))
    with pytest.raises(IQTError, match="two subjects share the label"):
        records.check_same_input(folder, names, item, ident)


def test_a_record_without_an_input_hash_is_another_subjects_for_a_nifti_input(tmp_path):
    """A sidecar naming another InputFile but no InputSHA256 had been accepted for any NIfTI input (its header-only
    hash is None, and None matched None), so another scan's outputs were replaced (a review)."""
    nii = tmp_path / "b" / "sub-01_dti.nii.gz"
    nii.parent.mkdir()
    fileio.save_tensor(Volume(np.zeros((4, 4, 3, 6), np.float32), np.eye(4), kind="tensor"), str(nii))
    item = batch_items.Item(prefix="sub-01", subdir="sub-01", path=str(nii), kind="dti")
    ident = {"InputSHA256": records.input_hashes(item)["InputSHA256"]}
    folder = tmp_path / "out" / "sub-01"
    folder.mkdir(parents=True)
    names = {"tensor": "sub-01_dti.nii.gz"}
    records.sidecar(folder / names["tensor"]).write_text(json.dumps({"InputFile": str(tmp_path / "a" / "x.nii.gz")}))
    with pytest.raises(IQTError, match="two subjects share the label"):
        records.check_same_input(folder, names, item, ident)


def test_an_old_header_only_record_of_an_input_still_there_is_another_scans(tmp_path):
    """A record before 0.21.0 (header-only InputSHA256) matched another scan behind a byte-identical header, whose
    outputs were then replaced (a review): it matches only where its InputFile is gone (moved)."""
    there = tensor_nhdr(tmp_path / "a", 1.0)
    head = tensor_nhdr(tmp_path / "b", 1.5)  # another scan, the same header bytes
    assert there.read_bytes() == head.read_bytes()
    item = batch_items.Item(prefix="sub-01", subdir="sub-01", path=str(head), kind="dti")
    ident = {"InputSHA256": records.input_hashes(item)["InputSHA256"]}
    folder = tmp_path / "out" / "sub-01"
    folder.mkdir(parents=True)
    names = {"tensor": "sub-01_dti.nii.gz"}
    old = {"InputFile": str(there), "InputSHA256": checksums.sha256(there)}
    records.sidecar(folder / names["tensor"]).write_text(json.dumps(old))
    with pytest.raises(IQTError, match="two subjects share the label"):
        records.check_same_input(folder, names, item, ident)


@pytest.mark.parametrize("fifo", ["dwi.bval", "dwi.json"])
def test_a_fifo_bval_or_sidecar_is_not_opened_by_the_hashing(tmp_path, fifo):
    """A FIFO dwi.bval or dwi.json hung the batch worker, the hashing opening it (a review): it is
    left unopened, as fileio/checksums.py image_files leaves a FIFO, and its reader says what is wrong."""
    import warnings

    from ImageQualityTransferLib.core.errors import IQTWarning
    from ImageQualityTransferLib.fileio import gradients

    sub = tmp_path / "sub-01"
    sub.mkdir()
    for name, text in (("dwi.nii.gz", "x"), ("dwi.bval", "0 1000\n"), ("dwi.bvec", "0 1\n0 0\n0 0\n"), ("dwi.json", "{}")):
        (sub / name).write_text(text)
    (sub / fifo).unlink()
    os.mkfifo(sub / fifo)
    stop, opened = _unblock_later(sub / fifo)
    try:
        item = batch_items.Item(prefix="sub-01", subdir="sub-01", path=str(sub / "dwi.nii.gz"), kind="dwi")
        records.input_hashes(item)
        if fifo == "dwi.bval":
            with pytest.raises(IQTError, match="named pipe"):
                gradients.read_gradient_table(sub / fifo, "bval")
        else:
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always")
                assert gradients.sidecar_slices(sub / "dwi.nii.gz") == (None, None)
            assert [w for w in said if issubclass(w.category, IQTWarning) and "named pipe" in str(w.message)]
    finally:
        stop.set()
    assert opened == [], "opened the FIFO"
