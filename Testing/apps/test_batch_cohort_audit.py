"""What a research-computing audit found `iqt batch` took that it should not, or refused that it should take: the
dataset's derivatives folder itself as the output (not a BIDS layout: each pipeline has its folder in there), one
subject given twice through a link to its folder (computed twice), and a scheduler file in place of an address (the
usual way to reach a scheduler on an HPC cluster)."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("distributed", reason="iqt batch needs Dask distributed")

from ImageQualityTransferLib.apps import batch  # noqa: E402

import helpers  # noqa: E402


def test_the_datasets_derivatives_folder_itself_is_refused(tmp_path, capsys):
    ds = helpers.make_bids(tmp_path / "bids", ("01",), None)
    line = helpers.refused_line(capsys, ["batch", ds, "-o", ds / "derivatives", "--method", "cubic"],
                                "the dataset's derivatives folder itself", str(ds / "derivatives" / "iqt"))
    assert "Traceback" not in line and not (ds / "derivatives").exists()


def test_a_subject_given_again_through_a_link_is_refused(tmp_path, capsys):
    import shutil

    ds = helpers.make_bids(tmp_path / "bids", ("01",), None)
    folder = tmp_path / "patient7"  # a subject folder (dwi.nii.gz, dwi.bval, dwi.bvec) and a link to it: two names
    folder.mkdir()
    for ext in ("nii.gz", "bval", "bvec"):
        shutil.copy(ds / "sub-01" / "dwi" / f"sub-01_dwi.{ext}", folder / f"dwi.{ext}")
    alias = tmp_path / "scan_b"
    os.symlink(folder, alias)
    listed = tmp_path / "subjects.txt"
    listed.write_text(f"{folder}\n{alias}\n")
    helpers.refused_line(capsys, ["batch", listed, "-o", tmp_path / "out", "--method", "cubic"],
                         "are the same file", "one subject given twice")
    assert not (tmp_path / "out").exists()


def test_a_scheduler_file_gives_its_address(tmp_path):
    good = tmp_path / "scheduler.json"  # as 'dask scheduler --scheduler-file' writes it
    good.write_text(json.dumps({"type": "Scheduler", "id": "Scheduler-1", "address": "tcp://10.0.0.5:8786",
                                "services": {"dashboard": 8787}, "started": 1.0, "workers": {}}))
    assert batch.scheduler_from_file(good) == "tcp://10.0.0.5:8786"
    for text in ("not json", json.dumps({"type": "Scheduler"}), json.dumps(["tcp://x:1"])):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(batch.IQTError, match="not a Dask scheduler file"):
            batch.scheduler_from_file(bad)


def test_a_run_whose_every_subject_failed_keeps_its_generated_by(tmp_path):
    """BIDS derivatives name what generated them: a run whose subjects all failed had left GeneratedBy empty."""
    ds = helpers.make_bids(tmp_path / "bids", (), corrupt="09")
    out = tmp_path / "deriv"
    (res,) = batch.run_cohort(batch.find_items(ds), batch.Settings(method="cubic"), out, progress=False)
    assert res["status"] == "failed"
    desc = json.loads((out / "dataset_description.json").read_text())
    assert [e["Name"] for e in desc["GeneratedBy"]] == ["ImageQualityTransfer"]
    assert desc["DatasetType"] == "derivative" and desc.get("SourceDatasets")


def test_two_lists_naming_different_scans_by_one_label_do_not_replace_each_others(tmp_path):
    """siteA/P01 in one list, siteB/P01 (another scan) in a second list of the same folder: both are sub-P01, and
    the second run had replaced the first's outputs saying 'done'; it fails that subject now, the first's outputs
    kept. The same list run again is still skipped."""
    import shutil

    ds = helpers.make_bids(tmp_path / "bids", ("01", "02"), None)
    for site, sub in (("siteA", "01"), ("siteB", "02")):
        folder = tmp_path / site / "P01"
        folder.mkdir(parents=True)
        for ext in ("nii.gz", "bval", "bvec"):
            shutil.copy(ds / f"sub-{sub}" / "dwi" / f"sub-{sub}_dwi.{ext}", folder / f"dwi.{ext}")
        (tmp_path / f"{site}.txt").write_text(f"{site}/P01\n")
    out = tmp_path / "deriv"
    s = batch.Settings(method="cubic")
    (first,) = batch.run_cohort(batch.find_items(tmp_path / "siteA.txt"), s, out, progress=False)
    assert first["status"] == "done"
    written = {p: p.read_bytes() for p in out.rglob("sub-P01/**/*") if p.is_file()}
    (second,) = batch.run_cohort(batch.find_items(tmp_path / "siteB.txt"), s, out, progress=False)
    assert second["status"] == "failed" and "made from another input" in second["reason"], second
    assert str(tmp_path / "siteA" / "P01" / "dwi.nii.gz") in second["reason"]
    assert {p: p.read_bytes() for p in out.rglob("sub-P01/**/*") if p.is_file()} == written
    (again,) = batch.run_cohort(batch.find_items(tmp_path / "siteA.txt"), s, out, progress=False)
    assert again["status"] == "skipped"


def test_a_listed_input_that_is_not_there_is_refused_before_the_cluster_starts(tmp_path, capsys, monkeypatch):
    """A missing listed file had been found by its subject's worker, once the cluster had started (10-16 s): the run
    ended with exit 1 and a partial derivatives folder. Now one line naming the first and how many, nothing made."""
    from ImageQualityTransferLib import fileio

    fileio.save_tensor(helpers.bundle_volume(shape=(6, 6, 6)), tmp_path / "a_dti.nii.gz")
    (tmp_path / "b_dti.nii.gz").mkdir()
    listed = tmp_path / "subjects.txt"
    listed.write_text("a_dti.nii.gz\nnone_dti.nii.gz\nb_dti.nii.gz\nP04\n")
    monkeypatch.setattr(batch, "start_client", lambda *a, **k: pytest.fail("the cluster was started"))
    line = helpers.refused_line(capsys, ["batch", listed, "-o", tmp_path / "out", "--method", "cubic"],
                                f"{listed} line 2 ('none_dti.nii.gz'): {tmp_path / 'none_dti.nii.gz'}: not found; 3 of "
                                "the 4 subjects have an input missing or unreadable")
    assert "line 3" not in line and not (tmp_path / "out").exists()


def test_participants_are_chosen_before_the_subjects_are_compared(tmp_path, capsys):
    """A BIDS dataset whose sub-02 is a link to sub-01's scan: --participant-label 99 had been refused as 'one subject
    given twice', and --participant-label 01 too, for a participant the run leaves out."""
    ds = helpers.make_bids(tmp_path / "bids", ("01", "02"), None, shape=(8, 8, 8))
    image = ds / "sub-02" / "dwi" / "sub-02_dwi.nii.gz"
    image.unlink()
    image.symlink_to(ds / "sub-01" / "dwi" / "sub-01_dwi.nii.gz")
    helpers.refused_line(capsys, ["batch", ds, "-o", tmp_path / "out", "--method", "cubic", "--participant-label", "99"],
                         "--participant-label 99: no such participant")
    assert [it.prefix for it in batch.find_items(ds, ["01"])] == ["sub-01"]
    with pytest.raises(batch.IQTError, match="one subject given twice"):
        batch.find_items(ds)


@pytest.mark.parametrize("gone, what", [("bval", "b-values"), ("bvec", "b-vectors")])
def test_a_dwi_without_its_gradient_table_is_refused_before_the_cluster_starts(tmp_path, capsys, monkeypatch, gone,
                                                                                   what):
    """A BIDS subject without its .bval had failed in its worker after the cluster's start (exit 1, a partial
    derivatives folder); its JSON sidecar is optional (removed here, the run still refused for the table alone)."""
    ds = helpers.make_bids(tmp_path / "bids", ("01", "02"), None)
    dwi = ds / "sub-02" / "dwi"
    (dwi / f"sub-02_dwi.{gone}").unlink()
    (dwi / "sub-02_dwi.json").unlink(missing_ok=True)
    monkeypatch.setattr(batch, "start_client", lambda *a, **k: pytest.fail("the cluster was started"))
    helpers.refused_line(capsys, ["batch", ds, "-o", tmp_path / "out", "--method", "cubic"],
                         f"{dwi / f'sub-02_dwi.{gone}'} (the {what} of {dwi / 'sub-02_dwi.nii.gz'}): not found; 1 of "
                         "the 2 subjects has its input missing or unreadable")
    assert not (tmp_path / "out").exists()
