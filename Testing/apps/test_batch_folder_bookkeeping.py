"""What `iqt batch` keeps of earlier runs in its output folder once a run is done: the `.iqt-earlier-*` copies of a
subject's outputs that a batch killed while putting them in place left (removed once the subject's new outputs are in
place: they stayed for ever, about 14 MB, with a warning on every run advising to rename them back; another file's
copies stay), and GeneratedBy's entries (kept while a sidecar matches the build, method, factor, model weights and
averaging over flips: an entry of a run with its own --model stayed after every subject was redone with the shipped
model)."""

from __future__ import annotations

import json
import warnings

import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib.apps import batch  # noqa: E402
from ImageQualityTransferLib.apps.batch.records import PIPELINE  # noqa: E402
from ImageQualityTransferLib.fileio.model_files import build  # noqa: E402

import helpers  # noqa: E402


@pytest.fixture()
def done_once(tmp_path):
    """(items, settings, output folder) of a one-subject cohort run once with cubic."""
    out = helpers.tensor_list(tmp_path)
    items, s = batch.find_items(tmp_path / "list.txt"), batch.Settings(method="cubic")
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["done"]
    return items, s, out


def _run(items, s, out) -> tuple[list[str], list[str]]:
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        statuses = [r["status"] for r in batch.run_cohort(items, s, out, progress=False)]
    return statuses, [str(w.message) for w in said]


def test_a_redone_subject_takes_away_its_own_earlier_copies_only(done_once):
    items, s, out = done_once
    tensor = next(out.rglob("*_param-tensor_dwimap.nii.gz"))
    folder = tensor.parent
    # as a SIGKILL during the commit leaves them: the earlier tensor and its sidecar set aside, the output missing
    copies = [folder / f".iqt-earlier-{tensor.name}.ab12cd34.tmp",
              folder / f".iqt-earlier-{tensor.name[:-len('.nii.gz')]}.json.ef56gh78.tmp"]
    tensor.rename(copies[0])
    tensor.with_name(tensor.name[:-len(".nii.gz")] + ".json").rename(copies[1])
    other = folder / ".iqt-earlier-notes.txt.ij90kl12.tmp"  # another command's: kept
    other.write_text("x")
    statuses, said = _run(items, s, out)
    assert statuses == ["done"] and any("set aside by a killed iqt run" in m for m in said)  # said before the redo
    assert not any(p.exists() for p in copies) and other.exists() and tensor.exists()
    statuses, said = _run(items, s, out)
    assert statuses == ["skipped"] and any("set aside" in m for m in said)  # the other command's copy still said


def test_an_entry_of_other_weights_goes_when_no_output_of_it_is_left(done_once):
    items, s, out = done_once
    path = out / "dataset_description.json"
    desc = json.loads(path.read_text())
    mine = desc["GeneratedBy"][0]
    gone = {**mine, "Model": "own/cubic.json", "ModelSHA256": "ab" * 32}  # as a run with its own weights wrote it
    flips = {**mine, "TTA": True}  # a run averaged over flips, whose outputs are not in the folder either
    path.write_text(json.dumps({**desc, "GeneratedBy": [gone, mine, flips]}))
    assert _run(items, s, out)[0] == ["skipped"]
    kept = json.loads(path.read_text())["GeneratedBy"]
    assert kept == [mine] and kept[0]["Name"] == PIPELINE and kept[0]["Build"] == build()
