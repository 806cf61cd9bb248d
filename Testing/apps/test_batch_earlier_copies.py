"""The `.iqt-earlier-*` copies of a subject's outputs that a batch killed while putting them in place leaves in the
subject's folder are removed once the subject's new outputs are in place (review 52b: they stayed for ever, about 14 MB
of the earlier build's outputs, with a warning on every run telling the user to rename them back); another file's
copies stay."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib.apps import batch  # noqa: E402

import helpers  # noqa: E402


def test_a_redone_subject_takes_away_its_own_earlier_copies_only(tmp_path):
    out = helpers.tensor_list(tmp_path)
    items = batch.find_items(tmp_path / "list.txt")
    s = batch.Settings(method="cubic")
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["done"]
    folder = next(p.parent for p in out.rglob("*_param-tensor_dwimap.nii.gz"))
    tensor = next(folder.glob("*_param-tensor_dwimap.nii.gz"))
    # as a SIGKILL during the commit leaves them: the earlier tensor and its sidecar set aside, the output missing
    copies = [folder / f".iqt-earlier-{tensor.name}.ab12cd34.tmp",
              folder / f".iqt-earlier-{tensor.name[:-len('.nii.gz')]}.json.ef56gh78.tmp"]
    tensor.rename(copies[0])
    tensor.with_name(tensor.name[:-len(".nii.gz")] + ".json").rename(copies[1])
    other = folder / ".iqt-earlier-notes.txt.ij90kl12.tmp"  # another command's: kept
    other.write_text("x")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["done"]
    assert any("set aside by a killed iqt run" in str(w.message) for w in said)  # said once, before the redo
    assert not any(p.exists() for p in copies) and other.exists() and tensor.exists()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["skipped"]
    assert [str(w.message) for w in said if "set aside" in str(w.message)] != []  # the other command's copy still said
