"""Two `iqt` runs in one process (threads of an in-process caller) keep apart: each run's outputs are staged in its own
stage (fileio.staging.all_or_none) and written with the codes of its own inputs (fileio.nifti.carried_codes), whichever
ends first (the second run's outputs were held in the first one's stage, and lost with it; the first run's
output took the codes the second run had read)."""

from __future__ import annotations

import json
import threading

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.fileio import nifti, volumes
from ImageQualityTransferLib.fileio.paths import JSON_SUFFIXES, Outputs
from ImageQualityTransferLib.fileio.staging import all_or_none
from ImageQualityTransferLib.fileio.writing import write_json
from ImageQualityTransferLib.fileio import staging

WAIT = 60  # s: generous, an event is set within milliseconds


def _temporaries(folder):
    return sorted(p.name for p in folder.rglob(".iqt-*"))


def test_a_run_in_another_thread_has_its_own_stage(tmp_path):
    (tmp_path / "A").mkdir()
    a_written, b_done, result = threading.Event(), threading.Event(), {}

    def run_a():
        try:
            with all_or_none():
                write_json(Outputs().add(tmp_path / "A" / "a.json", JSON_SUFFIXES), {"a": 1})
                a_written.set()
                b_done.wait(WAIT)
                raise RuntimeError("run A fails after run B has ended")
        except RuntimeError as exc:
            result["A"] = str(exc)

    a = threading.Thread(target=run_a)
    a.start()
    try:
        assert a_written.wait(WAIT)
        with all_or_none():  # run B, while A holds its stage
            b = Outputs().add(tmp_path / "b.json", JSON_SUFFIXES)
            write_json(b, {"b": 2})
        b_right_after = b.exists()
    finally:
        b_done.set()
        a.join(WAIT)
    assert b_right_after  # before: held in A's stage, so B returned without its file
    assert json.loads(b.read_text()) == {"b": 2}  # before: and removed with A's failure
    assert result == {"A": "run A fails after run B has ended"} and not (tmp_path / "A" / "a.json").exists()
    assert _temporaries(tmp_path) == []
    assert staging._STAGE.get() is None


def _tensor(path, n):
    t = np.zeros((n, n, n, 1, 6), np.float32)
    t[..., :] = [1.2e-3, 1e-4, 0.8e-3, 0, 0, 0.6e-3]
    img = nib.Nifti1Image(t, np.diag([-2.0, 2, 2, 1]))  # LAS, as scanners store: a positive grid asks for the frame
    img.header.set_intent("symmetric matrix")
    nib.save(img, path)


@pytest.mark.filterwarnings("ignore")
def test_two_iqt_upsample_runs_in_threads_each_write_their_outputs(tmp_path, monkeypatch, capsys):
    """The review's case through the dispatch: run B starts and ends while run A is writing; B's output is where B said
    it wrote it, and stays there when A then fails."""
    _tensor(tmp_path / "a.nii.gz", 8)
    _tensor(tmp_path / "b.nii.gz", 6)
    (tmp_path / "A").mkdir()
    a_writing, b_done, rc = threading.Event(), threading.Event(), {}
    real = volumes.save_nifti

    def save(img, tmp):
        if f"{tmp_path / 'A'}" in str(tmp):  # run A's first output: wait there for run B, then fail as a full disk
            a_writing.set()
            b_done.wait(WAIT)
            raise OSError(28, "No space left on device")
        return real(img, tmp)

    monkeypatch.setattr(volumes, "save_nifti", save)  # where the writers look it up (defined in fileio.nifti)
    a = threading.Thread(target=lambda: rc.setdefault("A", main(
        ["upsample", str(tmp_path / "a.nii.gz"), "--method", "cubic", "--maps", "-o", str(tmp_path / "A" / "up.nii.gz")])))
    a.start()
    try:
        assert a_writing.wait(WAIT)
        rc["B"] = main(["upsample", str(tmp_path / "b.nii.gz"), "--method", "cubic", "-o", str(tmp_path / "B_up.nii.gz")])
        b_right_after = (tmp_path / "B_up.nii.gz").exists()
    finally:
        b_done.set()
        a.join(WAIT)
    assert rc == {"B": 0, "A": 2}
    assert b_right_after and (tmp_path / "B_up.nii.gz").exists()
    assert nib.load(tmp_path / "B_up.nii.gz").shape[:3] == (12, 12, 12)
    assert list((tmp_path / "A").iterdir()) == [] and _temporaries(tmp_path) == []


def _codes(path):
    h = nib.load(path).header
    return int(h["qform_code"]), int(h["sform_code"])


def _coded_tensor(path, codes):
    t = np.zeros((6, 6, 6, 1, 6), np.float32)
    t[..., :] = [1.2e-3, 1e-4, 0.8e-3, 0, 0, 0.6e-3]
    img = nib.Nifti1Image(t, np.diag([-2.0, 2, 2, 1]))  # LAS, as scanners store: a positive grid asks for the frame
    img.header.set_intent("symmetric matrix")
    img.set_qform(img.affine, code=codes[0])
    img.set_sform(img.affine, code=codes[1])
    nib.save(img, path)


@pytest.mark.filterwarnings("ignore")
def test_runs_that_end_out_of_order_each_carry_their_own_inputs_codes(tmp_path):
    """Run A reads an MNI-space tensor (codes 1, 4), run B starts and reads a scanner-space one (1, 1), A writes and ends,
    then B writes and ends (A's output had (1, 1), and after both a library write
    outside any run had A's (1, 4) instead of (1, 1))."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.core.volume import Volume

    _coded_tensor(tmp_path / "mni.nii.gz", (1, 4))
    _coded_tensor(tmp_path / "scanner.nii.gz", (1, 1))
    a_read, b_read, a_done = threading.Event(), threading.Event(), threading.Event()
    errors = []

    def run(name, src, wait_before, read, wait_after, done=None):
        try:
            if wait_before is not None:
                assert wait_before.wait(WAIT)
            with nifti.carried_codes():
                v = fileio.load_tensor(tmp_path / src)
                read.set()
                assert wait_after.wait(WAIT)
                fileio.save_tensor(v, tmp_path / f"{name}.nii.gz")
        except BaseException as exc:  # said below; the other run is let go
            errors.append(exc)
            for e in (a_read, b_read, a_done):
                e.set()
        finally:
            if done is not None:
                done.set()

    runs = [threading.Thread(target=run, args=("A", "mni.nii.gz", None, a_read, b_read, a_done)),
            threading.Thread(target=run, args=("B", "scanner.nii.gz", a_read, b_read, a_done))]
    for t in runs:
        t.start()
    for t in runs:
        t.join(WAIT)
    assert not errors
    assert _codes(tmp_path / "A.nii.gz") == (1, 4)  # before: (1, 1), B's input's
    assert _codes(tmp_path / "B.nii.gz") == (1, 1)
    assert nifti._GRIDS.get() is None  # before: A's list outlived both runs
    fileio.save_scalar(Volume(np.ones((4, 4, 4), np.float32), np.eye(4)), tmp_path / "library.nii.gz")
    assert _codes(tmp_path / "library.nii.gz") == (1, 1)  # before: (1, 4)


@pytest.mark.filterwarnings("ignore")
def test_an_output_compressed_on_several_threads_is_staged_and_carries_its_codes(tmp_path, monkeypatch):
    """fileio.nifti.save_nifti compresses a .nii.gz on worker threads, which do not see the run's context: the run's own
    thread writes the temporary file, so the output is still held until the run ends, with the input's codes."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.core import threads

    monkeypatch.setattr(nifti, "GZIP_MEMBER", 1024)  # several gzip members, so several threads
    monkeypatch.setattr(threads, "available", lambda: 2)
    seen = set()
    import zlib

    real = zlib.compressobj

    def compressobj(*a, **k):
        seen.add(threading.get_ident())
        return real(*a, **k)

    monkeypatch.setattr(zlib, "compressobj", compressobj)
    _coded_tensor(tmp_path / "mni.nii.gz", (1, 4))
    with nifti.carried_codes(), all_or_none():
        v = fileio.load_tensor(tmp_path / "mni.nii.gz")
        out = Outputs(tmp_path / "mni.nii.gz").add(tmp_path / "out.nii.gz")
        fileio.save_tensor(v, out)
        held = out.exists()
    assert len(seen - {threading.get_ident()}) >= 1  # compressed off this thread
    assert not held and _codes(out) == (1, 4)
    assert np.array_equal(fileio.load_tensor(out).data, v.data)
    assert _temporaries(tmp_path) == []
