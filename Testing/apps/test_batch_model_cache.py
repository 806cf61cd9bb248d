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
