"""`iqt batch` runs `iqt fit`'s two checks on each DWI subject's fit (dmri/outliers.py, dmri/motion.py): the subject's
notes (its warning line and sidecar) name the slices and volumes the tensor model does not fit and a b0 moved from the
diffusion-weighted volumes, qc.tsv counts them, and --exclude-outliers fits without them, as part of what a rerun
compares. A tiny BIDS set of phantoms, in-process (the cluster's path is `process` too: test_batch.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib import fileio  # noqa: E402
from ImageQualityTransferLib.apps import batch, cli  # noqa: E402
from ImageQualityTransferLib.dmri.dti import B0_THRESHOLD  # noqa: E402

import helpers  # noqa: E402

BASE = "_space-orig_res-2x_model-cubic_param-"


def _corrupt(path: Path, how: str) -> np.ndarray:
    """The DWI at `path` rewritten with slices 14-15 of its 3rd diffusion-weighted volume at 20 % and its 6th zero
    ("dropout"), or its b0 moved 3 voxels along j ("b0"); returns the diffusion-weighted volumes' indices."""
    dwi = fileio.load_dwi(path)
    d = np.array(dwi.data)
    dw = np.flatnonzero(dwi.bvals > B0_THRESHOLD)
    if how == "dropout":
        d[:, :, [14, 15], dw[2]] *= 0.2
        d[..., dw[5]] = 0.0
    else:
        b0 = dwi.bvals <= B0_THRESHOLD
        d[..., b0] = np.roll(d[..., b0], 3, axis=1)
    fileio.save_dwi(dwi.replace(data=d), path)
    return dw


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """sub-01 clean, sub-02 with a dropout and a dead volume, sub-03 with its b0 moved."""
    ds = helpers.make_bids(tmp_path_factory.mktemp("fitchecks") / "bids", ("01", "02", "03"))
    dw = _corrupt(ds / "sub-02" / "dwi" / "sub-02_dwi.nii.gz", "dropout")
    _corrupt(ds / "sub-03" / "dwi" / "sub-03_dwi.nii.gz", "b0")
    return ds, dw


def _qc(out: Path) -> dict:
    lines = (out / "qc.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    return {row[0]: dict(zip(head, row)) for row in (line.split("\t") for line in lines[1:])}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_each_subject_s_fit_is_checked_counted_and_refitted_with_exclude_outliers(cohort, tmp_path):
    ds, dw = cohort
    items = batch.find_items(ds)
    out = tmp_path / "deriv"
    out.mkdir()
    res = {r["subject"]: r for r in batch.run_cohort(items, batch.Settings(method="cubic"), out, progress=False)}
    assert [r["status"] for r in res.values()] == ["done"] * 3
    # the subject's warning lines: each check once, in batch's words (its option, not iqt fit's)
    said = {k: [n for n in r["notes"] if "tensor model does not fit" in n or "the b0 lies" in n] for k, r in res.items()}
    assert said["sub-01"] == [] and len(said["sub-02"]) == 1 and len(said["sub-03"]) == 1, said
    notes = res["sub-02"]["notes"]  # the warning said over notes of whole pieces (methods/base.py warning_lines)
    whole = "; ".join(notes[notes.index(said["sub-02"][0]):])
    assert f"volume {dw[5]} in every slice" in whole and f"slices 14-15 of volume {dw[2]}" in whole
    assert "rerun this 'iqt batch' with --exclude-outliers" in whole and "'iqt fit'" not in whole
    assert "the b0 lies 2.5 voxels" in said["sub-03"][0] and "(i +0.0, j +2.5, k +0.0)" in said["sub-03"][0]  # moved 3
    # counted in the QC: the result, the tensor sidecar (kept for a rerun) and qc.tsv
    want = {"sub-01": (0, 0), "sub-02": (2, 1), "sub-03": (0, 0)}
    for sub, (pairs, volumes) in want.items():
        q = res[sub]["qc"]
        assert (q["fit_outlier_pairs"], q["fit_outlier_volumes"]) == (pairs, volumes), (sub, q)
        side = json.loads((out / sub / "dwi" / f"{sub}{BASE}tensor_dwimap.json").read_text())
        assert side["QC"]["fit_outlier_pairs"] == pairs and side["QC"]["b0_shift_vox"] == q["b0_shift_vox"]
    assert res["sub-01"]["qc"]["b0_shift_vox"] < 0.5 and res["sub-02"]["qc"]["b0_shift_vox"] < 0.5
    assert 2.4 < res["sub-03"]["qc"]["b0_shift_vox"] < 2.6  # as said
    assert any("tensor model does not fit" in n for n in json.loads(
        (out / "sub-02" / "dwi" / f"sub-02{BASE}tensor_dwimap.json").read_text())["Notes"])
    table = _qc(out)
    assert [(table[s]["fit_outlier_pairs"], table[s]["fit_outlier_volumes"]) for s in want] == [("0", "0"), ("2", "1"),
                                                                                                ("0", "0")]
    assert table["sub-03"]["b0_shift_vox"] == "2.51" and "b0_shift_vox" in (out / "qc.html").read_text()
    # the warnings in the table too (they reached only stderr and the sidecars: an input audit)
    assert "tensor model does not fit" in table["sub-02"]["notes"] and "the b0 lies 2.5 voxels" in table["sub-03"]["notes"]
    assert "tensor model does not fit" not in table["sub-01"]["notes"]
    assert "rerun this &#x27;iqt batch&#x27; with --exclude-outliers" in (out / "qc.html").read_text()
    first = {s: _sha(out / s / "dwi" / f"{s}{BASE}tensor_dwimap.nii.gz") for s in want}

    # a rerun skips them and keeps their counts and notes; --exclude-outliers is part of what it compares
    again = batch.run_cohort(items, batch.Settings(method="cubic"), out, progress=False)
    assert [r["status"] for r in again] == ["skipped"] * 3 and _qc(out)["sub-02"]["fit_outlier_volumes"] == "1"
    assert _qc(out)["sub-02"]["notes"] == table["sub-02"]["notes"]  # a skipped subject's notes stay in the table
    ex = batch.Settings(method="cubic", exclude_outliers=True)
    res = {r["subject"]: r for r in batch.run_cohort(items, ex, out, progress=False)}
    assert [r["status"] for r in res.values()] == ["done"] * 3
    notes = res["sub-02"]["notes"]  # the warning said over notes of whole pieces (methods/base.py warning_lines)
    note = "; ".join(notes[next(i for i, n in enumerate(notes) if "tensor model does not fit" in n):])
    assert "fitted without them" in note and f"volume {dw[5]} left out of every slice" in note and "2 slices refitted" in note
    side = json.loads((out / "sub-02" / "dwi" / f"sub-02{BASE}tensor_dwimap.json").read_text())
    assert side["ExcludeOutliers"] is True and side["QC"]["fit_outlier_volumes"] == 1
    now = {s: _sha(out / s / "dwi" / f"{s}{BASE}tensor_dwimap.nii.gz") for s in want}
    assert now["sub-01"] == first["sub-01"] and now["sub-03"] == first["sub-03"]  # nothing to leave out: the same bytes
    assert now["sub-02"] != first["sub-02"]
    assert res["sub-02"]["qc"]["noise_index"] < 0.8 * again[1]["qc"]["noise_index"]  # the dead volume no longer roughens it
    assert any(e.get("ExcludeOutliers") for e in json.loads((out / "dataset_description.json").read_text())["GeneratedBy"])
    assert [r["status"] for r in batch.run_cohort(items, ex, out, progress=False)] == ["skipped"] * 3
    back = batch.run_cohort(items, batch.Settings(method="cubic"), out, progress=False)  # off again: redone as first
    assert [r["status"] for r in back] == ["done"] * 3
    assert {s: _sha(out / s / "dwi" / f"{s}{BASE}tensor_dwimap.nii.gz") for s in want} == first


def test_a_tensor_file_has_no_fit_checks_and_an_older_qc_table_s_rows_are_kept(tmp_path):
    out = helpers.tensor_list(tmp_path, "c_dti.nii.gz", shape=(20, 22, 16))
    old = ("subject", "model", "res", "status", "input_voxel_mm", "snr", "brain_ml", "brain_from", "median_std_mm2s",
           "nonphysical_pct", "noise_index", "model_used", "outlier", "seconds", "reason")  # before the fit's checks
    (out / "qc.tsv").write_text("\t".join(old) + "\n" + "\t".join(
        ["sub-x", "linear", "2x", "done", "4.00x4.00x4.00", "50.0", "600.0", "dwi", "n/a", "0.10", "0.050", "default",
         "-", "1.0", ""]) + "\n")
    res = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="cubic"), out, progress=False)
    assert res[0]["status"] == "done" and "fit_outlier_pairs" not in res[0]["qc"]
    table = (out / "qc.tsv").read_text().splitlines()
    rows = {tuple(r.split("\t")[:2]): dict(zip(table[0].split("\t"), r.split("\t"))) for r in table[1:]}
    assert rows[("sub-cdti", "cubic")]["fit_outlier_pairs"] == "n/a" == rows[("sub-cdti", "cubic")]["b0_shift_vox"]
    assert rows[("sub-x", "linear")]["noise_index"] == "0.050" and rows[("sub-x", "linear")]["b0_shift_vox"] == "n/a"


def test_the_command_line_passes_exclude_outliers_to_the_fit(cohort, tmp_path, capsys, monkeypatch):
    """--exclude-outliers reaches the subjects' Settings (off by default); refused for a list of tensor files only."""
    ds, _ = cohort
    seen = helpers.settings_batch_runs_with(monkeypatch, batch)
    for extra in ((), ("--exclude-outliers",)):
        assert cli.main(["batch", str(ds), "-o", str(tmp_path / "o"), "--method", "cubic", *extra]) == 0
    assert [s.exclude_outliers for s in seen] == [False, True]
    fileio.save_tensor(_a_tensor(), tmp_path / "t_dti.nii.gz")
    (tmp_path / "list.txt").write_text("t_dti.nii.gz\n")
    capsys.readouterr()
    code = cli.main(["batch", str(tmp_path / "list.txt"), "-o", str(tmp_path / "o2"), "--method", "cubic",
                     "--exclude-outliers"])
    err = capsys.readouterr().err
    assert code == 2 and "--exclude-outliers: every listed subject is a tensor file" in err, err


def _a_tensor():
    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=(12, 12, 10), voxel_mm=4.0, n_dirs=12)
    return fit_dti(dwi, brain_mask(dwi))


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    """One cohort run with cubic for the three checks below, each on its own subject: sub-01 clean; sub-02 (make_bids'
    second phantom, as each check's own two-subject run had it) with its bvec file's x row negated; sub-03, a copy of
    that phantom, with its second b0 at 40 % of the first; sub-04 (make_bids' third: a byte-identical copy is refused
    as a subject given twice) with a sidecar whose SliceThickness is below the slices' spacing, a note of the sidecar
    and the grid alone. Each subject is fitted, checked and noted on its own (batch's `process`), so one run gives each
    check's subject what its own run gave it, and sub-01 is fitted once, not three times. (the dataset, the
    derivatives folder, {subject: result})."""
    import shutil

    root = tmp_path_factory.mktemp("faults")
    ds = helpers.make_bids(root / "bids", ("01", "02", "04"))
    (ds / "sub-03" / "dwi").mkdir(parents=True)
    for f in (ds / "sub-02" / "dwi").iterdir():
        shutil.copy(f, ds / "sub-03" / "dwi" / f.name.replace("sub-02_", "sub-03_"))
    bvec = ds / "sub-02" / "dwi" / "sub-02_dwi.bvec"
    np.savetxt(bvec, np.loadtxt(bvec) * [[-1.0], [1.0], [1.0]], fmt="%.10g")
    path = ds / "sub-03" / "dwi" / "sub-03_dwi.nii.gz"
    dwi = fileio.load_dwi(path)
    b0 = np.flatnonzero(dwi.bvals <= B0_THRESHOLD)
    d = np.array(dwi.data)
    d[..., b0[1]] *= 0.4
    fileio.save_dwi(dwi.replace(data=d), path)
    (ds / "sub-04" / "dwi" / "sub-04_dwi.json").write_text(json.dumps({"SliceThickness": 3, "SliceEncodingDirection": "k"}))
    out = root / "deriv"
    out.mkdir()
    res = {r["subject"]: r for r in batch.run_cohort(batch.find_items(ds), batch.Settings(method="cubic"), out,
                                                      progress=False)}
    assert [r["status"] for r in res.values()] == ["done"] * 4, res
    return ds, out, res


def _said(res: dict, words: str) -> dict:
    """{subject: its notes with `words`}."""
    return {k: [n for n in r["notes"] if words in n] for k, r in res.items()}


@pytest.mark.slow  # the shared four-subject run (faults): 2 s
def test_a_subject_s_gradient_table_in_the_wrong_frame_is_said_and_recorded(faults):
    """iqt fit's gradient-table check (dmri/gradcheck.py) on each DWI subject: sub-02's bvec file with its x row
    negated is named in its notes with the fix, and qc.tsv's bvec_check says x-flipped; sub-01's says ok."""
    ds, out, res = faults
    bvec = ds / "sub-02" / "dwi" / "sub-02_dwi.bvec"
    said = {k: helpers.table_looks_wrong(r["notes"]) for k, r in res.items()}
    assert said["sub-01"] == [] and len(said["sub-02"]) == 1, said
    assert f"negate the first row (x) of {bvec}" in said["sub-02"][0]
    assert res["sub-01"]["qc"]["bvec_check"] == "ok" and res["sub-02"]["qc"]["bvec_check"] == "x-flipped"
    assert res["sub-02"]["qc"]["bvec_ratio"] > 1.1 > 1 > res["sub-01"]["qc"]["bvec_ratio"]
    side = json.loads((out / "sub-02" / "dwi" / f"sub-02{BASE}tensor_dwimap.json").read_text())
    assert side["QC"]["bvec_check"] == "x-flipped"
    table = _qc(out)
    assert (table["sub-01"]["bvec_check"], table["sub-02"]["bvec_check"]) == ("ok", "x-flipped")
    assert "bvec_check" in (out / "qc.html").read_text()


@pytest.mark.slow  # the shared four-subject run (faults): 2 s
def test_a_subject_s_b0_of_another_brightness_is_said_and_recorded(faults):
    """dmri/b0s.py on each DWI subject: sub-03's second b0 at 40 % of the first (another series' b0) is named in its
    notes and qc.tsv's b0_check says which and how much; sub-01's says ok."""
    ds, out, res = faults
    b0 = np.flatnonzero(fileio.load_dwi(ds / "sub-03" / "dwi" / "sub-03_dwi.nii.gz").bvals <= B0_THRESHOLD)
    said = _said(res, "differ in brightness")
    assert said["sub-01"] == [] and len(said["sub-03"]) == 1, said
    assert res["sub-01"]["qc"]["b0_check"] == "ok"
    assert res["sub-03"]["qc"]["b0_check"] == f"b0 {b0[1]} 0.40x; MD 0.38e-3"  # the dark b0 lowers every MD too
    table = _qc(out)
    assert (table["sub-01"]["b0_check"], table["sub-03"]["b0_check"]) == ("ok", f"b0 {b0[1]} 0.40x; MD 0.38e-3")
    assert "b0_check" in (out / "qc.html").read_text()


def test_a_note_names_batch_s_own_voxel_size():
    """The anisotropy warning names batch's own --voxel-size, which chooses each subject's factors (it had told a
    batch user to use upsample's, when batch took none: a thick-slice audit)."""
    from ImageQualityTransferLib.apps.batch.subject import _in_batch_words

    said = _in_batch_words("give factors that make them near-isotropic (iqt upsample's --voxel-size MM picks them), or use cubic")
    assert "iqt upsample's" not in said and "iqt batch --voxel-size MM picks them for each subject" in said


def test_a_run_stopped_before_any_subject_ended_leaves_no_folder_it_made(cohort, tmp_path, capsys, monkeypatch):
    """Ctrl-C before any subject ended left the empty derivatives folder (and its parents) the run had made (a
    researcher's audit); a folder that was there before stays."""
    ds, _ = cohort

    class Client:
        dashboard_link = "http://127.0.0.1:0/status"

        def close(self):
            pass

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "start_client", lambda *a, **k: (Client(), None))
    monkeypatch.setattr(batch, "run_cohort", interrupted)
    out = tmp_path / "new" / "derivatives" / "iqt"
    assert cli.main(["batch", str(ds), "-o", str(out), "--method", "cubic"]) == 130
    assert not (tmp_path / "new").exists()
    (tmp_path / "there").mkdir()
    assert cli.main(["batch", str(ds), "-o", str(tmp_path / "there"), "--method", "cubic"]) == 130
    assert (tmp_path / "there").is_dir() and not any((tmp_path / "there").iterdir())


@pytest.mark.slow  # the shared four-subject run (faults): 2 s
def test_a_subject_s_slice_gap_is_one_of_its_notes(faults):
    """A BIDS sidecar whose SliceThickness is below the slices' spacing (fileio/slices.py): sub-04's notes say the gap
    and that the models were trained on contiguous slices (a thick-slice audit: nothing was said); sub-01's do not."""
    said = _said(faults[2], "contiguous slices")
    assert said["sub-01"] == [] and len(said["sub-04"]) == 1, said
    assert "3 mm thick 4 mm apart along voxel axis k" in said["sub-04"][0]


def _one_subject_row(tmp_path, name):
    """Run the one subject folder `tmp_path/name` through batch with cubic: the derivatives folder and its qc.tsv row."""
    (tmp_path / "list.txt").write_text(f"{name}\n")
    out = tmp_path / "deriv"
    out.mkdir()
    res = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="cubic"), out, progress=False)
    assert res[0]["status"] == "done", res
    return out, _qc(out)[res[0]["subject"]]


def test_a_six_direction_subject_s_fit_check_columns_say_n_a_not_0(tmp_path):
    """With 6 diffusion-weighted directions the tensor fits each volume exactly and the fit check sees nothing
    (dmri/outliers.py blind_count): qc.tsv had read 0 and 0, a clean subject's figures, beside the note saying it;
    n/a now, the warning in its notes, and the page says why."""
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    folder = tmp_path / "six_dirs"
    folder.mkdir()
    dwi = make_phantom(shape=(16, 18, 12), voxel_mm=4.0, n_dirs=6)
    keep = np.r_[0, np.flatnonzero(dwi.bvals > B0_THRESHOLD)]  # one b0 and the 6 directions
    fileio.save_dwi(dwi.replace(data=dwi.data[..., keep], bvals=dwi.bvals[keep], bvecs=dwi.bvecs[keep]),
                    folder / "dwi.nii.gz")
    out, row = _one_subject_row(tmp_path, "six_dirs")
    assert (row["fit_outlier_pairs"], row["fit_outlier_volumes"]) == ("n/a", "n/a"), row
    assert "fit check cannot see signal dropout or a moved volume" in row["notes"]
    assert "n/a with 6 diffusion-weighted directions" in (out / "qc.html").read_text()


def test_a_subject_whose_every_other_volume_disagrees_is_not_a_clean_0(tmp_path):
    """Every other of 20 DW volumes scaled by 1.5: iqt fit warns that the halves disagree and names none
    (dmri/outliers.py ALTERNATE_Z); qc.tsv had read fit_outlier_volumes 0, a clean subject's figure, and the page no
    flag (a review). It reads "every other", the row is a failed check, and the page says what that means."""
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    folder = tmp_path / "halves"
    folder.mkdir()
    dwi = make_phantom(shape=(32, 36, 28), voxel_mm=4.0, n_dirs=20)
    d = np.array(dwi.data)
    d[..., np.flatnonzero(dwi.bvals > B0_THRESHOLD)[1::2]] *= 1.5
    fileio.save_dwi(dwi.replace(data=d), folder / "dwi.nii.gz")
    out, row = _one_subject_row(tmp_path, "halves")
    assert row["fit_outlier_volumes"] == "every other", row
    assert "every other diffusion-weighted volume disagrees" in row["notes"]
    page = (out / "qc.html").read_text()
    assert 'class="check"' in page and "fit_outlier_volumes every other:" in page


@pytest.mark.slow
def test_a_dwi_subjects_mask_that_cuts_the_brain_is_in_its_notes(tmp_path):
    """A list line's --mask with a DWI is judged as `iqt fit --mask` judges it (dmri/mask_cut.py), in batch's words."""
    import dataclasses

    import nibabel as nib
    from scipy import ndimage

    from ImageQualityTransferLib.dmri.dti import brain_mask

    ds = helpers.make_bids(tmp_path / "bids", ("01",))
    item = batch.find_items(ds)[0]
    dwi = fileio.load_dwi(item.path)
    cut = ndimage.binary_erosion(brain_mask(dwi).data, ndimage.generate_binary_structure(3, 1), iterations=3)
    nib.save(nib.Nifti1Image(cut.astype(np.uint8), dwi.affine), tmp_path / "cut.nii.gz")
    out = tmp_path / "deriv"
    out.mkdir()
    res = batch.run_cohort([dataclasses.replace(item, mask=str(tmp_path / "cut.nii.gz"))], batch.Settings(method="cubic"),
                           out, progress=False)
    said = [n for n in res[0]["notes"] if "cuts the brain" in n]
    assert res[0]["status"] == "done" and len(said) == 1, res[0]["notes"]
    assert said[0].startswith(f"the mask {tmp_path / 'cut.nii.gz'} cuts the brain: ") and "give the subject a mask" in said[0]
