"""Each file an `iqt` command writes records the run in its header (fileio/records.py `run_record`): the command, its
options, the version and build, the threads and, for a learned method, the model's checksum, so that two outputs can be
told apart and one redone (runs with 0, 5 and 10 Monte Carlo samples, and fits with and without
--exclude-outliers, carried the same header); a rerun still writes the same bytes; the Python API writes none."""

from __future__ import annotations

import json

import numpy as np
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.fileio import checksums
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.core.version import __version__
from ImageQualityTransferLib.fileio.model_files import build
from ImageQualityTransferLib.dmri.degrade import degrade
from ImageQualityTransferLib.dmri.dti import brain_mask
from ImageQualityTransferLib.dmri.phantom import make_phantom
from ImageQualityTransferLib.fileio.nifti import run_record_of
from ImageQualityTransferLib.fileio.records import read_run


def _input(tmp_path):
    dwi = make_phantom(shape=(20, 22, 16), voxel_mm=2.0, n_dirs=12)
    pair = degrade(dwi, brain_mask(dwi).data, 2)
    fileio.save_tensor(pair.tensor, tmp_path / "lr.nii.gz")
    fileio.save_dwi(dwi, tmp_path / "dwi.nii.gz")
    return tmp_path / "lr.nii.gz"


def test_an_upsampled_output_and_its_maps_record_the_run_and_a_rerun_writes_the_same_bytes(tmp_path, capsys):
    lr = _input(tmp_path)
    args = ["--threads", "1", "upsample", str(lr), "-o", str(tmp_path / "a.nii.gz"), "--method", "espcn-hetero-var1",
            "--mc-samples", "3", "--uncertainty", str(tmp_path / "u.nii.gz")]
    assert cli.main(args) == 0
    run = run_record_of(tmp_path / "a.nii.gz")
    assert run["command"].startswith("iqt --threads 1 upsample ") and run["command"].endswith("u.nii.gz")
    assert run["version"] == __version__ and run["build"] == build() and run["threads"] == 1
    assert run["options"]["method"] == "espcn-hetero-var1" and run["factors"] == [2, 2, 2] and run["mc_samples"] == 3
    sidecar = json.loads(fileio.model_files.sidecar_path(fileio.model_files.MODELS_DIR / run["model"]["file"])
                         .read_text())
    assert run["model"]["origin"] == "shipped" and run["model"]["sha256"] == sidecar["sha256"]
    assert run_record_of(tmp_path / "u_direction.nii.gz") == run  # every file of the run
    first = (tmp_path / "a.nii.gz").read_bytes()
    assert cli.main(args) == 0
    assert (tmp_path / "a.nii.gz").read_bytes() == first


def test_the_default_samples_and_a_fit_s_options_are_told_apart_and_nrrd_records_it_too(tmp_path, capsys):
    lr = _input(tmp_path)
    import torch

    assert cli.main(["upsample", str(lr), "-o", str(tmp_path / "a.nii.gz"), "--method", "espcn-hetero-var1",
                     "--device", "auto"]) == 0
    run = run_record_of(tmp_path / "a.nii.gz")
    assert run["mc_samples"] == 10  # the default that ran, not null
    assert run["options"]["device"] == "auto" and run["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert cli.main(["upsample", str(lr), "-o", str(tmp_path / "c.nrrd"), "--method", "cubic"]) == 0
    field = next(line for line in (tmp_path / "c.nrrd").read_bytes().split(b"\n\n")[0].decode().splitlines()
                 if line.startswith("iqt_run:="))
    run = read_run(field[len("iqt_run:="):])
    assert run["options"]["method"] == "cubic" and run["mc_samples"] is None and "model" not in run
    assert "device" not in run  # no network ran
    for name, extra in (("plain", []), ("excl", ["--exclude-outliers"])):
        assert cli.main(["fit", str(tmp_path / "dwi.nii.gz"), "-o", str(tmp_path / f"{name}.nii.gz"), *extra]) == 0
    assert run_record_of(tmp_path / "plain.nii.gz")["options"]["exclude_outliers"] is False
    assert run_record_of(tmp_path / "excl.nii.gz")["options"]["exclude_outliers"] is True


def test_files_written_from_python_carry_no_run_record(tmp_path):
    vol = fileio.load_tensor(_input(tmp_path))
    fileio.save_tensor(vol, tmp_path / "api.nii.gz")
    assert run_record_of(tmp_path / "api.nii.gz") is None
    assert b"iqt_run" not in (tmp_path / "api.nii.gz").read_bytes()  # gzip: nothing of it in plain text either
    assert np.array_equal(fileio.load_tensor(tmp_path / "api.nii.gz").data, vol.data)


def test_propagate_s_maps_record_the_model_factors_and_samples_as_upsample_s_do(tmp_path, capsys):
    lr = _input(tmp_path)
    assert cli.main(["propagate", str(lr), "-o", str(tmp_path / "p"), "--method", "espcn-hetero-var1", "--samples", "3",
                     "--mc-samples", "2", "--n-seeds", "20"]) == 0
    run = run_record_of(tmp_path / "p" / "fa_std.nii.gz")
    assert run["command"].startswith("iqt propagate ") and run["factors"] == [2, 2, 2] and run["mc_samples"] == 2
    assert run["input_sha256"] == checksums.sha256(lr)  # the input read, as upsample records it (evaluate)
    assert run["model"]["origin"] == "shipped" and run["model"]["file"].startswith("espcn-hetero-var1")
    assert run["model"]["sha256"] == json.loads(fileio.model_files.sidecar_path(
        fileio.model_files.MODELS_DIR / run["model"]["file"]).read_text())["sha256"]


def test_no_record_writes_none_for_files_shared_outside(tmp_path, capsys):
    """`iqt --no-record`: a file to share outside, whose paths may name a patient (the record holds the
    command as typed, /data/DOE_JOHN_19650312/dwi.nii.gz included), carries no run record; its values are the same."""
    lr = _input(tmp_path)
    assert cli.main(["upsample", str(lr), "-o", str(tmp_path / "a.nii.gz"), "--method", "cubic"]) == 0
    assert cli.main(["--no-record", "upsample", str(lr), "-o", str(tmp_path / "b.nii.gz"), "--method", "cubic"]) == 0
    assert cli.main(["--no-record", "upsample", str(lr), "-o", str(tmp_path / "c.nrrd"), "--method", "cubic"]) == 0
    assert run_record_of(tmp_path / "a.nii.gz") is not None and run_record_of(tmp_path / "b.nii.gz") is None
    assert str(lr.parent).encode() not in (tmp_path / "c.nrrd").read_bytes()[:20000]
    np.testing.assert_array_equal(fileio.load_tensor(tmp_path / "a.nii.gz").data,
                                  fileio.load_tensor(tmp_path / "b.nii.gz").data)


def test_no_record_report_and_lesion_check_name_files_not_folders(tmp_path, capsys, monkeypatch):
    """`iqt --no-record report` and `lesion-check --json`: file and folder names, no paths (the page had named the
    input by its absolute path and the reference fit's warning the subject's DWI, the JSON each subject's folder and
    each model's file by theirs: a radiologist's audit); the JSON's rows, read by nothing, are unchanged."""
    import nibabel as nib

    from ImageQualityTransferLib.analysis import lesion

    lr = _input(tmp_path)
    subj = tmp_path / "P01"
    subj.mkdir()
    for name in ("dwi.bval", "dwi.bvec"):
        (subj / name).write_bytes((tmp_path / name).read_bytes())
    img = nib.load(tmp_path / "dwi.nii.gz")  # a slice's dropout: the fit check's line names the DWI
    d = np.asarray(img.dataobj).astype(np.float32)
    v = int(np.flatnonzero(np.loadtxt(subj / "dwi.bval") > 100)[3])
    d[:, :, d.shape[2] // 2, v] *= 0.2
    nib.save(nib.Nifti1Image(d, img.affine, img.header), subj / "dwi.nii.gz")
    for source in (["--input", str(lr)], ["--subject", str(subj)]):
        page = tmp_path / f"{source[0][2:]}.html"
        assert cli.main(["--no-record", "--threads", "1", "report", "-o", str(page), *source, "--methods", "cubic",
                         "--no-tracts"]) == 0
        text = page.read_text()
        assert str(tmp_path) not in text, source
    assert "lr.nii.gz: no reference" in (tmp_path / "input.html").read_text()
    assert "fit: dwi.nii.gz: " in (tmp_path / "subject.html").read_text()  # the check's line kept, with the name
    monkeypatch.setattr(lesion, "check", lambda *a, **k: [])  # the settings alone are at stake
    assert cli.main(["--no-record", "lesion-check", str(subj), "--methods", "biqt", "--json",
                     str(tmp_path / "rows.json")]) == 0
    settings = json.loads((tmp_path / "rows.json").read_text())["settings"]
    assert settings["subjects"] == ["P01"], settings
    assert settings["models"]["biqt"]["file"] == "biqt_x2.json" and settings["models"]["biqt"]["weights_sha256"]
    assert "/" not in json.dumps(settings), settings


def test_no_record_leaves_the_paths_out_of_the_propagation_summary(tmp_path, capsys):
    """Under --no-record the propagation summary names no path either (its "input" was the one name
    of the input's folder left in such a run's outputs)."""
    lr = _input(tmp_path)
    assert cli.main(["--no-record", "upsample", str(lr), "-o", str(tmp_path / "o.nii.gz"), "--method",
                     "espcn-hetero-var1", "--mc-samples", "2", "--propagate", "--samples", "2", "--no-tracts"]) == 0
    text = (tmp_path / "o_propagation.json").read_text()
    assert str(tmp_path) not in text and json.loads(text)["input"] is None
    # the shipped model's name is no path of the user's: kept, as the samples drawn (a tractography audit: null)
    settings = json.loads(text)["settings"]
    assert settings["model"] == "espcn-hetero-var1_x2.pt" and settings["model_origin"] == "shipped", settings
    assert settings["mc_samples"] == 2
    assert cli.main(["upsample", str(lr), "-o", str(tmp_path / "d.nii.gz"), "--method", "espcn-hetero-var1",
                     "--propagate", "--samples", "2", "--no-tracts"]) == 0
    assert json.loads((tmp_path / "d_propagation.json").read_text())["settings"]["mc_samples"] == 10  # defaulted
