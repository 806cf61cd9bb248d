"""`iqt batch --output-format mif`: an MRtrix lab's cohort gets .mif outputs (fileio/mif.py), with the same sidecars,
QC and resume as NIfTI outputs (apps/batch/records.py output_names)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib import fileio  # noqa: E402
from ImageQualityTransferLib.apps import batch  # noqa: E402
from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti  # noqa: E402
from ImageQualityTransferLib.dmri.phantom import make_phantom  # noqa: E402

from helpers import run_cli  # noqa: E402

STEM = "sub-adti_space-orig_res-2x_model-linear_param-"


@pytest.fixture
def mif_list(tmp_path):
    dwi = make_phantom(shape=(16, 18, 12), voxel_mm=4.0, n_dirs=12)
    fileio.save_tensor(fit_dti(dwi, brain_mask(dwi)), tmp_path / "a_dti.mif")
    (tmp_path / "list.txt").write_text("a_dti.mif\n")
    return tmp_path / "list.txt"


def test_a_mif_cohort_gets_mif_outputs_with_the_same_sidecars_and_resume(tmp_path, mif_list):
    items = batch.find_items(mif_list)
    runs = {}
    for fmt in ("nifti", "mif"):
        out = tmp_path / fmt
        out.mkdir()
        s = batch.Settings(method="linear", output_format=fmt)
        assert [r["status"] for r in batch.run_cohort(items, s, out, client=None, progress=False)] == ["done"]
        runs[fmt] = (out / "sub-adti" / "dwi", s)
    folder, s = runs["mif"]
    assert sorted(p.name for p in folder.glob("*_dwimap.*")) == sorted(
        f"{STEM}{p}_dwimap.{e}" for p in ("tensor", "fa", "md") for e in ("mif", "json"))
    assert (folder / "sub-adti_space-orig_res-2x_model-linear_desc-brain_mask.mif").is_file()
    assert (folder.parent / "figures" / "sub-adti_space-orig_res-2x_model-linear_desc-qc_dwimap.png").is_file()
    for p in ("tensor", "fa", "md"):  # the values the NIfTI run wrote
        load = fileio.load_tensor if p == "tensor" else fileio.load_scalar
        ours, theirs = (load(runs[f][0] / f"{STEM}{p}_dwimap.{e}") for f, e in (("mif", "mif"), ("nifti", "nii.gz")))
        assert np.array_equal(ours.data, theirs.data) and np.allclose(ours.affine, theirs.affine)
    side = json.loads((folder / f"{STEM}tensor_dwimap.json").read_text())
    assert side["OutputOrder"] == "mrtrix" and "QC" in side and side["FileSHA256"]
    assert [r["status"] for r in batch.run_cohort(items, s, tmp_path / "mif", progress=False)] == ["skipped"]
    # the NIfTI run's files in the same folder are replaced, not left beside .mif outputs sharing their sidecars
    nifti = batch.Settings(method="linear")
    assert [r["status"] for r in batch.run_cohort(items, nifti, tmp_path / "mif", progress=False)] == ["done"]
    assert not list(folder.glob("*.mif")) and len(list(folder.glob("*.nii.gz"))) == 4


def test_an_order_a_mif_cannot_hold_is_refused_before_any_work(tmp_path, mif_list, capsys):
    code, _, err = run_cli(capsys, *["batch", str(mif_list), "-o", str(tmp_path / "out"), "--output-format", "mif",
                            "--output-order", "fsl"])
    assert code == 2 and "dwi2tensor's order only" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("record", [True, False])
def test_a_mif_output_keeps_its_mif_inputs_command_history_and_names_iqt_batch(tmp_path, record):
    """The lab's history of a listed .mif (mrconvert's, dwi2tensor's) goes on in each .mif output, as `iqt upsample`
    keeps it, then one line naming iqt batch and the output's sidecar (the run's record), no path; under
    `iqt --no-record` no history at all, as `iqt upsample --no-record` writes none."""
    import shutil
    from pathlib import Path

    from ImageQualityTransferLib.fileio.mif import read_header

    fixture = Path(__file__).parents[1] / "fileio" / "mif_fixtures" / "dt.mif"
    shutil.copy(fixture, tmp_path / "p_dt.mif")
    (tmp_path / "list.txt").write_text("p_dt.mif\n")
    out = tmp_path / "out"
    out.mkdir()
    s = batch.Settings(method="linear", output_format="mif", record=record)
    assert [r["status"] for r in batch.run_cohort(batch.find_items(tmp_path / "list.txt"), s, out, client=None,
                                                  progress=False)] == ["done"]
    before = read_header(fixture)["command_history"]
    outputs = sorted(out.rglob("*.mif"))
    assert len(outputs) == 4
    for p in outputs:
        history = read_header(p).get("command_history")
        if not record:
            assert history is None, (p.name, history)
            continue
        assert history == [*before, f"iqt batch (run record: {p.name[:-len('.mif')]}.json)"], (p.name, history)
        assert (p.parent / f"{p.name[:-len('.mif')]}.json").is_file() and str(tmp_path) not in history[-1]


def test_a_file_of_an_outputs_name_in_the_other_format_that_no_run_wrote_stays(tmp_path, mif_list):
    """A lab's own NIfTI copy of a .mif output beside it (mrconvert X.mif X.nii.gz), or an earlier output edited since,
    is not the earlier format's output that the shared sidecar describes: a subject redone keeps it (it had been
    removed as stale, without a word)."""
    items = batch.find_items(mif_list)
    s = batch.Settings(method="linear", output_format="mif")
    assert [r["status"] for r in batch.run_cohort(items, s, tmp_path / "out", progress=False)] == ["done"]
    folder = tmp_path / "out" / "sub-adti" / "dwi"
    fa = fileio.load_scalar(folder / f"{STEM}fa_dwimap.mif")
    fileio.save_scalar(fa, folder / f"{STEM}fa_dwimap.nii.gz")  # the lab's copy, for FSLeyes
    copy = (folder / f"{STEM}fa_dwimap.nii.gz").read_bytes()
    dti = fileio.load_tensor(tmp_path / "a_dti.mif")
    fileio.save_tensor(dti.replace(data=dti.data * 1.01), tmp_path / "a_dti.mif")  # refitted: the subject is redone
    assert [r["status"] for r in batch.run_cohort(items, s, tmp_path / "out", progress=False)] == ["done"]
    assert (folder / f"{STEM}fa_dwimap.nii.gz").read_bytes() == copy


def test_an_earlier_nifti_runs_mask_given_as_a_mif_runs_mask_is_named_as_that_output(tmp_path, mif_list):
    """A NIfTI run's brain mask given as a list line's --mask to a .mif run into the same folder (which would remove
    it as the other format's output) is refused naming it the subject's mask output, not "an earlier map"."""
    items = batch.find_items(mif_list)
    assert [r["status"] for r in batch.run_cohort(items, batch.Settings(method="linear"), tmp_path / "out",
                                                  progress=False)] == ["done"]
    mask = "out/sub-adti/dwi/sub-adti_space-orig_res-2x_model-linear_desc-brain_mask.nii.gz"
    mif_list.write_text(f"a_dti.mif --mask {mask}\n")
    with pytest.raises(batch.IQTError) as err:
        batch.check_inputs_kept(tmp_path / "out", batch.find_items(mif_list), batch.Settings(method="linear",
                                                                                            output_format="mif"))
    said = str(err.value)
    assert f"{mask} is sub-adti's mask output of an earlier --output-format nifti run, which this run would remove" in \
        said and "map" not in said, said


@pytest.mark.parametrize("first", [True, False])
def test_a_rerun_with_the_other_record_setting_redoes_the_mif_outputs(tmp_path, first):
    """A .mif run under `iqt --no-record` into a folder a recorded run wrote (or the reverse) redoes the subject: its
    outputs had been skipped as done, keeping the other run's command_history (the input's paths under --no-record)."""
    import shutil
    from pathlib import Path

    from ImageQualityTransferLib.fileio.mif import read_header

    shutil.copy(Path(__file__).parents[1] / "fileio" / "mif_fixtures" / "dt.mif", tmp_path / "p_dt.mif")
    (tmp_path / "list.txt").write_text("p_dt.mif\n")
    items = batch.find_items(tmp_path / "list.txt")
    for record, status in ((first, "done"), (not first, "done"), (not first, "skipped")):
        s = batch.Settings(method="linear", output_format="mif", record=record)
        assert [r["status"] for r in batch.run_cohort(items, s, tmp_path / "out", client=None, progress=False)] == [status]
    outputs = sorted((tmp_path / "out").rglob("*.mif"))
    assert len(outputs) == 4 and all(("command_history" in read_header(p)) == (not first) for p in outputs)
