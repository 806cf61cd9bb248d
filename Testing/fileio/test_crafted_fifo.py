"""An input that is no regular file is refused in one line before it is opened: a NRRD header whose data file
was a FIFO hung until killed (rc 124 under timeout 60); the same for a FIFO given as the NRRD or NIfTI input itself or
as a bval file. Each test unblocks a reader that waits on the FIFO after UNBLOCK_S seconds, so it fails, not hangs,
without the check: a FIFO a reader opened fails the test at its end, however long the run took."""

from __future__ import annotations

import os
import threading

import nibabel as nib
import numpy as np
import pytest

from helpers import NRRD_TENSOR_HEADER, unblock_later
from ImageQualityTransferLib.apps.cli import main

UNBLOCK_S = 0.5


@pytest.fixture
def unblocking():
    """fifo -> after UNBLOCK_S, any reader waiting on it gets its end of file (a writer opens it and closes it); at the
    test's end, none may have opened it (a wall-clock bound had failed right code on a loaded machine)."""
    done = threading.Event()
    threads, opened = [], []

    def start(fifo):
        threads.append(unblock_later(fifo, UNBLOCK_S, done, opened)[1])
        return fifo

    yield start
    done.set()
    for t in threads:
        t.join(5)
    assert opened == [], f"opened the FIFO {opened[0]}"


def _refused(capsys, argv, *said):
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and "warning" not in ln]
    assert rc == 2, err
    assert len(lines) == 1 and all(s in lines[0] for s in said), err


HEADER = NRRD_TENSOR_HEADER.format(encoding="raw") + "data file: {data}\n\n"


@pytest.mark.filterwarnings("ignore")
def test_a_nrrd_whose_data_file_is_a_fifo(tmp_path, capsys, unblocking):
    unblocking(tmp_path / "d.raw")
    os.mkfifo(tmp_path / "d.raw")
    (tmp_path / "t.nhdr").write_text(HEADER.format(data="d.raw"))
    _refused(capsys, ["upsample", str(tmp_path / "t.nhdr"), "--method", "linear", "-o", str(tmp_path / "up.nii.gz")],
             "d.raw is a named pipe (FIFO)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.raw", "t.nhdr"]


@pytest.mark.filterwarnings("ignore")
def test_a_nrrd_whose_data_file_is_a_device(tmp_path, capsys):
    (tmp_path / "t.nhdr").write_text(HEADER.format(data="/dev/zero"))
    _refused(capsys, ["upsample", str(tmp_path / "t.nhdr"), "--method", "linear", "-o", str(tmp_path / "up.nii.gz")],
             "/dev/zero is a device")


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", ["t.nhdr", "t.nrrd", "t.nii.gz", "t.nii"])
def test_an_input_that_is_a_fifo(tmp_path, capsys, unblocking, name):
    unblocking(tmp_path / name)
    os.mkfifo(tmp_path / name)
    _refused(capsys, ["upsample", str(tmp_path / name), "--method", "linear", "-o", str(tmp_path / "up.nii.gz")],
             "is a named pipe (FIFO)")


@pytest.mark.filterwarnings("ignore")
def test_a_bval_file_that_is_a_fifo(tmp_path, capsys, unblocking):
    data = np.ones((6, 6, 6, 7), np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2, 2, 1])), tmp_path / "dwi.nii.gz")
    (tmp_path / "dwi.bvec").write_text("\n".join(" ".join(["1"] + ["0"] * 6) for _ in range(3)) + "\n")
    unblocking(tmp_path / "dwi.bval")
    os.mkfifo(tmp_path / "dwi.bval")
    _refused(capsys, ["fit", str(tmp_path / "dwi.nii.gz"), "-o", str(tmp_path / "dti.nii.gz")], "is a named pipe (FIFO)")


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("kind", ["fifo", "device", "big"])
def test_a_model_sidecar_that_is_no_regular_file(tmp_path, capsys, unblocking, kind):
    """A model's sidecar that was a FIFO hung 'iqt upsample --model' and the Slicer Logic's modelMethod; one linked to
    /dev/zero read until memory ran out; 'iqt seal' called the FIFO 'not found' (a provenance audit)."""
    import shutil

    from helpers import five_d_tensor
    from ImageQualityTransferLib.fileio import model_files

    weights = tmp_path / "m.pt"
    shutil.copy(model_files.MODELS_DIR / "espcn_x2.pt", weights)
    side = tmp_path / "m.json"
    if kind == "fifo":
        unblocking(side)
        os.mkfifo(side)
    elif kind == "device":
        os.symlink("/dev/null", side)  # a device that ends at once: /dev/zero, read, had filled memory
    else:
        side.write_text(" " * (model_files.MAX_SIDECAR_BYTES + 1))
    said = "over" if kind == "big" else "is not a regular file"
    lr = five_d_tensor(tmp_path / "lr.nii.gz")
    for argv in (["upsample", lr, "--model", weights, "-o", tmp_path / "up.nii.gz"],
                 ["upsample", lr, "--method", "espcn", "--model", weights, "-o", tmp_path / "up.nii.gz"],
                 ["seal", weights]):
        _refused(capsys, [str(a) for a in argv], str(side), "the model sidecar", "MiB" if kind == "big" else said)
    for read in (model_files.method_named, model_files.factors_named, model_files.model_sha256):
        with pytest.raises(model_files.IQTError, match="the model sidecar"):
            read(weights)
    assert not (tmp_path / "up.nii.gz").exists()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_model_weights_that_are_no_regular_file_are_said_to_be_so(tmp_path, capsys, unblocking, kind):
    """Weights that are a FIFO, or a link to a device, beside their sidecar had been called 'model weights not found'
    by 'iqt upsample --model' and 'iqt seal' (a provenance audit): they are there, and are not read."""
    import shutil

    from helpers import five_d_tensor
    from ImageQualityTransferLib.fileio import model_files

    weights = tmp_path / "espcn_x2.pt"
    shutil.copy(model_files.MODELS_DIR / "espcn_x2.json", tmp_path / "espcn_x2.json")
    if kind == "fifo":
        unblocking(weights)
        os.mkfifo(weights)
    else:
        os.symlink("/dev/zero", weights)
    lr = five_d_tensor(tmp_path / "lr.nii.gz")
    for argv in (["upsample", lr, "--model", weights, "-o", tmp_path / "up.nii.gz"], ["seal", weights]):
        _refused(capsys, [str(a) for a in argv], str(weights), "not a regular file")
    assert not (tmp_path / "up.nii.gz").exists()


@pytest.mark.filterwarnings("ignore")
def test_a_registry_that_is_a_fifo_is_named_as_the_registry(tmp_path, capsys, unblocking, small_subject):
    """A registry.json FIFO beside 'iqt train -o ... --register' was called 'the model sidecar', with a model sidecar's
    advice (a review)."""
    reg = tmp_path / "registry.json"
    unblocking(reg)
    os.mkfifo(reg)
    _refused(capsys, ["train", "--method", "global-linear", "--subjects", str(small_subject), "-o",
                      str(tmp_path / "m.npz"), "--register"], str(reg), "the model registry is not a regular file",
             "move it away")
    assert not (tmp_path / "m.npz").exists() and not (tmp_path / "m.json").exists()


@pytest.mark.filterwarnings("ignore")
def test_a_big_json_at_the_trained_models_sidecar_path_gets_trains_advice(tmp_path, capsys, small_subject):
    """A 1.4 MiB BIDS dwi.json beside 'iqt train -o dwi.npz' was told to 're-download or retrain the model' (a 0.95 MiB
    one, read, is told to give -o another name): a review."""
    from ImageQualityTransferLib.fileio import model_files

    side = tmp_path / "dwi.json"
    side.write_text('{"RepetitionTime": 3.2, "x": "' + " " * model_files.MAX_SIDECAR_BYTES + '"}')
    before = side.read_bytes()
    _refused(capsys, ["train", "--method", "global-linear", "--subjects", str(small_subject), "-o",
                      str(tmp_path / "dwi.npz")], str(side), "not a model's sidecar", "give -o another name")
    assert side.read_bytes() == before and not (tmp_path / "dwi.npz").exists()
