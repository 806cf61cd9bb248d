"""A batch worker's method cache (apps/batch/subject.py `_method`): a model file replaced at the same path (retrained)
is loaded anew, not run with the weights a worker loaded before while the sidecars record the new file's SHA256 (a
code-health review)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ImageQualityTransferLib.apps.batch import subject
from ImageQualityTransferLib.apps.batch.records import Settings
from ImageQualityTransferLib.fileio import model_files


def put(stem: str, folder: Path) -> Path:
    """A copy of the shipped model `stem` as folder/mine.npz, unsealed (its sidecar names the new weights file)."""
    shutil.copy(Path(model_files.MODELS_DIR) / f"{stem}.npz", folder / "mine.npz")
    side = json.loads((Path(model_files.MODELS_DIR) / f"{stem}.json").read_text())
    side["weights"] = "mine.npz"
    side.pop(model_files.SEAL, None)
    (folder / "mine.json").write_text(json.dumps(side))
    return folder / "mine.npz"


def test_a_model_replaced_at_the_same_path_is_loaded_anew(tmp_path, monkeypatch):
    monkeypatch.setattr(subject, "_METHODS", {})
    path = put("biqt_x2", tmp_path)
    first = subject._method(Settings(method="biqt", model=str(path)))
    assert subject._method(Settings(method="biqt", model=str(path))) is first  # loaded once per worker
    before = first.model_record(2)[1]
    put("biqt_x2_noisy", tmp_path)  # retrained at the same path; no SHA256 given: the file's state tells
    again = subject._method(Settings(method="biqt", model=str(path)))
    assert again is not first and again.model_record(2)[1] != before
    # as `iqt batch` runs it: the SHA256 the main process hashed and records decides
    by_sha = subject._method(Settings(method="biqt", model=str(path), model_sha256="a" * 64))
    assert by_sha is not again and subject._method(Settings(method="biqt", model=str(path), model_sha256="a" * 64)) is by_sha
    assert subject._method(Settings(method="biqt", model=str(path), model_sha256="b" * 64)) is not by_sha
    assert len(subject._METHODS) == 1  # a replaced model's weights are not kept


def test_a_given_model_that_does_not_load_is_refused_for_what_it_is(tmp_path, capsys):
    """`iqt batch --model` of a damaged model (one byte flipped) is refused in one line saying so, before the cluster
    starts: it had been put as the factors its sidecar 'chose' for the cohort ('--model M's own factors chose factor 2
    for sub-x; M: checksum mismatch ...'), as a model for other factors is."""
    import pytest

    pytest.importorskip("distributed")
    from ImageQualityTransferLib.apps import cli
    from helpers import five_d_tensor

    weights = put("global-linear_x2", tmp_path)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    (tmp_path / "list.txt").write_text(f"{five_d_tensor(tmp_path / 'lr.nii.gz')}\n")
    code = cli.main(["batch", str(tmp_path / "list.txt"), "-o", str(tmp_path / "out"), "--model", str(weights),
                     "--workers", "1", "--dashboard-address", "127.0.0.1:0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"iqt: error: {weights}: checksum mismatch") and not (tmp_path / "out").exists(), err


def test_a_given_unsealed_model_is_said_once_per_run(tmp_path, monkeypatch, capsys):
    """`iqt batch --model` of an unsealed model: the main process says the advice to seal it as it loads the model,
    so the end of the run leaves it out of the subject's warnings (said twice before), while the subject's record
    keeps it with its other notes."""
    import warnings

    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.apps.batch import results as batch_results

    monkeypatch.setattr(model_files, "_UNSEALED_SAID", set())
    monkeypatch.chdir(tmp_path)
    path = put("global-linear_x2", tmp_path)
    with warnings.catch_warnings(record=True) as worker:  # a worker's load: the sidecar as the worker was sent it
        warnings.simplefilter("always")
        methods.get("global-linear", model=str(path)).load(2)
    [note] = [str(w.message) for w in worker]
    model_files._UNSEALED_SAID.clear()
    with warnings.catch_warnings(record=True) as main:  # the main process's load, of the path as typed
        warnings.simplefilter("always")
        methods.get("global-linear", model="mine.npz").load(2)
    assert [str(w.message) for w in main] == [note.replace(str(tmp_path) + "/", "")]
    other = "lr.nii.gz: the input holds tensors over the whole field of view"
    rows = [{"subject": "sub-01", "status": "done", "notes": [note, other]}]
    batch_results.say_results(rows, "")
    err = capsys.readouterr().err
    assert "iqt seal" not in err and err.strip() == f"iqt: warning: sub-01: {other}", err
    assert rows[0]["notes"] == [note, other]
