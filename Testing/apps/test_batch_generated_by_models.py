"""GeneratedBy keeps an entry while some subject's sidecar was made by it: the build, method and factor, and the
model's weights and averaging over flips too (review 52b: an entry of a run with its own --model stayed listed after
every subject was redone with the shipped model, the build, method and factor being the same)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib.apps import batch  # noqa: E402
from ImageQualityTransferLib.apps.batch.records import PIPELINE  # noqa: E402
from ImageQualityTransferLib.fileio.model_files import build  # noqa: E402

import helpers  # noqa: E402


def test_an_entry_of_other_weights_goes_when_no_output_of_it_is_left(tmp_path):
    out = helpers.tensor_list(tmp_path)
    items = batch.find_items(tmp_path / "list.txt")
    s = batch.Settings(method="cubic")
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["done"]
    path = out / "dataset_description.json"
    desc = json.loads(path.read_text())
    mine = desc["GeneratedBy"][0]
    gone = {**mine, "Model": "own/cubic.json", "ModelSHA256": "ab" * 32}  # as a run with its own weights wrote it
    flips = {**mine, "TTA": True}  # a run averaged over flips, whose outputs are not in the folder either
    path.write_text(json.dumps({**desc, "GeneratedBy": [gone, mine, flips]}))
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["skipped"]
    kept = json.loads(path.read_text())["GeneratedBy"]
    assert kept == [mine] and kept[0]["Name"] == PIPELINE and kept[0]["Build"] == build()
