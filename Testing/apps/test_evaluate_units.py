"""`iqt evaluate --uncertainty-unit` for a sigma map whose header names no unit (as Slicer saves the module's), on the
coarse phantom: it contradicts no header (a review: beside the map 'iqt upsample' wrote in mm^2/s it had divided that
map by 1000, exit 0), it goes with --uncertainty, and a NRRD naming its map but not its run is not taken for another
method's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ImageQualityTransferLib import fileio

from helpers import run_cli


@pytest.fixture(scope="module")
def scored(small_subject, tmp_path_factory):
    import contextlib
    import io

    from ImageQualityTransferLib.apps import cli

    d = tmp_path_factory.mktemp("units")
    dwi = small_subject / "dwi.nii.gz"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(["fit", str(dwi), "-o", str(d / "hr.nii.gz"), "--mask-out", str(d / "mask.nii.gz")]) == 0
        assert cli.main(["degrade", str(dwi), "-o", str(d / "lr.nii.gz"), "--mask-out", str(d / "lrmask.nii.gz")]) == 0
        assert cli.main(["upsample", str(d / "lr.nii.gz"), "--mask", str(d / "lrmask.nii.gz"), "--method", "biqt",
                         "--uncertainty", str(d / "sd.nii.gz"), "-o", str(d / "biqt.nii.gz")]) == 0
    return d


def _base(d):
    return ("evaluate", "--pred", d / "biqt.nii.gz", "--truth", d / "hr.nii.gz", "--mask", d / "mask.nii.gz")


def _nrrd(d, name, fields):
    import nrrd

    sd = fileio.load_scalar(d / "sd.nii.gz")
    lps = np.diag([-1.0, -1.0, 1.0])
    nrrd.write(str(d / name), np.asarray(sd.data * 1000, np.float32),
               {"space": "left-posterior-superior", "kinds": ["domain"] * 3,
                "space directions": (lps @ sd.affine[:3, :3]).T, "space origin": lps @ sd.affine[:3, 3], **fields},
               custom_field_map={k: "string" for k in fields})


def test_a_unit_that_contradicts_the_header_is_refused(scored, capsys):
    code, _, err = run_cli(capsys, *_base(scored), "--uncertainty", scored / "sd.nii.gz", "--uncertainty-unit", "um2/ms")
    assert code == 2 and err.count("\n") == 1 and "its header says its values are in mm2/s" in err, err
    code, _, err = run_cli(capsys, *_base(scored), "--uncertainty", scored / "sd.nii.gz", "--uncertainty-unit", "mm2/s",
                           "--json", scored / "same.json")
    assert code == 0, err
    code, _, err = run_cli(capsys, *_base(scored), "--uncertainty-unit", "um2/ms")
    assert code == 2 and "--uncertainty-unit goes with --uncertainty" in err, err
    # the direction map given as sigma, with a unit: refused as the wrong map, not for its unit (a review: "leave
    # --uncertainty-unit out" led only to that second refusal)
    code, _, err = run_cli(capsys, *_base(scored), "--uncertainty", scored / "sd_direction.nii.gz",
                           "--uncertainty-unit", "um2/ms")
    assert code == 2 and "not the standard deviation map" in err, err


def test_a_slicer_saved_map_scores_as_the_map_itself(scored, capsys):
    code, _, err = run_cli(capsys, *_base(scored), "--uncertainty", scored / "sd.nii.gz", "--json", scored / "own.json")
    assert code == 0, err
    own = json.loads((scored / "own.json").read_text())["brain"]
    _nrrd(scored, "saved.nrrd", {})  # as Slicer saves the module's node: no unit, no kind, no run
    _nrrd(scored, "norun.nrrd", {"ImageQualityTransfer.Unit": "um2/ms", "ImageQualityTransfer.Map": "std"})
    code, _, err = run_cli(capsys, *_base(scored), "--uncertainty", scored / "saved.nrrd")
    assert code == 2 and "--uncertainty-unit um2/ms" in err, err
    for name, extra in (("saved.nrrd", ("--uncertainty-unit", "um2/ms")), ("norun.nrrd", ())):
        code, _, err = run_cli(capsys, *_base(scored), "--uncertainty", scored / name, *extra,
                               "--json", scored / "other.json")
        assert code == 0, (name, err)  # the run-less NRRD had read as "iqt iqt std": another method's, refused
        got = json.loads((scored / "other.json").read_text())["brain"]
        assert got["spearman"] == pytest.approx(own["spearman"], rel=1e-5), name


def test_a_map_of_a_kind_this_tool_does_not_know_keeps_its_unit_check(scored, capsys):
    """A header naming a kind no map of this tool has ('iqt biqt foo mm2/s') is not refused as another kind below, so its
    unit still contradicts --uncertainty-unit (a review: it had been divided by 1000 and scored, exit 0)."""
    sd = fileio.load_scalar(scored / "sd.nii.gz")
    fileio.save_scalar(sd, scored / "foo.nii.gz", "iqt biqt foo mm2/s")
    code, _, err = run_cli(capsys, *_base(scored), "--uncertainty", scored / "foo.nii.gz", "--uncertainty-unit", "um2/ms")
    assert code == 2 and "its header says its values are in mm2/s" in err, err


def test_a_map_of_another_run_is_refused_by_the_run_records(scored, capsys):
    """Maps that another run wrote (same method, same grid) are refused by the run records both files carry (an audit:
    another run's sigma had been scored, whole-brain Spearman 0.387 against 0.525 with the prediction's own); a map
    without a record (another tool's, --no-record) is still scored."""
    code, _, err = run_cli(capsys, "upsample", scored / "lr.nii.gz", "--mask", scored / "lrmask.nii.gz", "--method",
                           "biqt", "--uncertainty", scored / "sd_again.nii.gz", "-o", scored / "biqt_again.nii.gz")
    assert code == 0, err
    for option, name, own in (("--uncertainty", "sd_again.nii.gz", "sd.nii.gz"),
                              ("--direction", "sd_again_direction.nii.gz", "sd_direction.nii.gz")):
        code, out, err = run_cli(capsys, *_base(scored), option, scored / name)
        assert code == 2 and err.count("\n") == 1 and "another run" in err and own in err and not out, err
    code, _, err = run_cli(capsys, "--no-record", "upsample", scored / "lr.nii.gz", "--mask", scored / "lrmask.nii.gz",
                           "--method", "biqt", "--uncertainty", scored / "sd_bare.nii.gz", "-o", scored / "bare.nii.gz")
    assert code == 0, err
    code, _, err = run_cli(capsys, *_base(scored), "--uncertainty", scored / "sd_bare.nii.gz",
                           "--direction", scored / "sd_direction.nii.gz")
    assert code == 0, err


def test_a_map_of_the_same_command_on_another_input_is_refused(scored, tmp_path, capsys, monkeypatch):
    """The same command typed in two subjects' folders (relative paths) had recorded the same run: s2's sigma scored
    against s1's prediction, exit 0 (a review: Spearman 0.479 against 0.539 with its own). The record now holds the
    input's SHA256; the same input in another folder is still the same run."""
    lr = fileio.load_tensor(scored / "lr.nii.gz")
    for name, scale in (("s1", 1.0), ("s2", 1.1), ("s3", 1.0)):
        (tmp_path / name).mkdir()
        fileio.save_tensor(lr.replace(data=lr.data * scale), tmp_path / name / "lr.nii.gz")
        monkeypatch.chdir(tmp_path / name)
        code, _, err = run_cli(capsys, "upsample", "lr.nii.gz", "--method", "biqt", "--uncertainty", "u.nii.gz",
                               "-o", "p.nii.gz")
        assert code == 0, err
    base = ("evaluate", "--pred", tmp_path / "s1" / "p.nii.gz", "--truth", scored / "hr.nii.gz", "--mask",
            scored / "mask.nii.gz", "--uncertainty")
    code, out, err = run_cli(capsys, *base, tmp_path / "s2" / "u.nii.gz")
    assert code == 2 and err.count("\n") == 1 and "run on another input" in err and not out, err
    code, _, err = run_cli(capsys, *base, tmp_path / "s3" / "u.nii.gz")
    assert code == 0, err


def test_a_map_of_a_run_differing_only_in_threads_is_scored(scored, tmp_path, capsys, monkeypatch):
    """The same command on the same input, only --threads other (before or after the command): its byte-identical
    maps had been refused as another run's (a review); another option is still another run."""
    import shutil

    for name, threads in (("a", ("--threads", "1", "upsample")), ("b", ("upsample", "--threads=2")),
                          ("c", ("upsample", "--threads", "2", "--maps"))):
        (tmp_path / name).mkdir()
        shutil.copy(scored / "lr.nii.gz", tmp_path / name / "lr.nii.gz")
        monkeypatch.chdir(tmp_path / name)
        code, _, err = run_cli(capsys, *threads, "lr.nii.gz", "--method", "biqt", "--uncertainty", "u.nii.gz",
                               "-o", "p.nii.gz")
        assert code == 0, err
    base = ("evaluate", "--pred", tmp_path / "a" / "p.nii.gz", "--truth", scored / "hr.nii.gz", "--mask",
            scored / "mask.nii.gz", "--uncertainty")
    code, _, err = run_cli(capsys, *base, tmp_path / "b" / "u.nii.gz")
    assert code == 0, err
    code, _, err = run_cli(capsys, *base, tmp_path / "c" / "u.nii.gz")
    assert code == 2 and "another run" in err, err


def test_a_record_without_the_input_checksum_is_said_another_run_not_another_input(monkeypatch):
    """A map written before the run record kept the input's SHA256, beside a prediction written after, with the same
    command: refused as another run's, not as "run on another input (SHA256 None...)" (a fact-check of the wording)."""
    from ImageQualityTransferLib.apps.cli import evaluate
    from ImageQualityTransferLib.core.errors import IQTError

    command = "iqt upsample lr.nii.gz --method biqt --uncertainty u.nii.gz -o p.nii.gz"
    records = {"u.nii.gz": {"command": command, "version": "0.18.0"},
               "p.nii.gz": {"command": command, "version": "0.19.0", "input_sha256": "ab" * 32}}
    monkeypatch.setattr(evaluate, "_run_of", lambda path: records[str(path)])
    with pytest.raises(IQTError) as refused:
        evaluate._same_run("u.nii.gz", "--uncertainty", "p.nii.gz")
    assert "records another run" in str(refused.value) and "None" not in str(refused.value)
    records["u.nii.gz"] = {**records["p.nii.gz"], "input_sha256": "cd" * 32}  # both kept: another input, said so
    with pytest.raises(IQTError) as refused:
        evaluate._same_run("u.nii.gz", "--uncertainty", "p.nii.gz")
    assert "run on another input (SHA256 cdcdcdcdcdcd..., the prediction's abababababab...)" in str(refused.value)


def test_nrrd_maps_iqt_upsample_wrote_score_as_its_nifti_maps(scored, capsys):
    """`iqt upsample --uncertainty U.nrrd` (its maps as NRRD for Slicer: Testing/fileio/test_nrrd_maps.py) gives maps
    that `iqt evaluate` reads with their kind, unit and run (a NRRD map name had been refused)."""
    code, _, err = run_cli(capsys, *_base(scored), "--uncertainty", scored / "sd.nii.gz", "--direction",
                           scored / "sd_direction.nii.gz", "--json", scored / "nifti.json")
    assert code == 0, err
    code, _, err = run_cli(capsys, "upsample", scored / "lr.nii.gz", "--mask", scored / "lrmask.nii.gz", "--method",
                           "biqt", "--uncertainty", scored / "sd.nrrd", "-o", scored / "biqt.nrrd")
    assert code == 0, err
    base = ("evaluate", "--pred", scored / "biqt.nrrd", *_base(scored)[3:])
    code, _, err = run_cli(capsys, *base, "--uncertainty", scored / "sd.nrrd", "--direction",
                           scored / "sd_direction.nrrd", "--json", scored / "nrrd.json")
    assert code == 0, err
    got, want = (json.loads((scored / n).read_text())["brain"] for n in ("nrrd.json", "nifti.json"))
    for k in ("spearman", "within_2sigma", "direction_spearman"):
        assert got[k] == pytest.approx(want[k], rel=1e-6), k
    code, _, err = run_cli(capsys, *base, "--uncertainty", scored / "sd_direction.nrrd")  # its kind is read
    assert code == 2 and "its header reads 'iqt biqt direction degrees', not the standard deviation map" in err, err
    code, _, err = run_cli(capsys, *base, "--uncertainty", scored / "sd.nrrd", "--uncertainty-unit", "um2/ms")
    assert code == 2 and "its header says its values are in mm2/s" in err, err  # and its unit
    code, _, err = run_cli(capsys, *_base(scored), "--uncertainty", scored / "sd.nrrd")  # and its run
    assert code == 2 and "another run" in err, err


def test_a_nrrd_map_holding_nan_is_refused_as_its_nifti_copy(scored, capsys):
    """Both formats are read through fileio.load_scalar (its NaN/Inf check): the NRRD branch had read the map itself,
    scored a map with NaN and Inf in the brain, exit 0, where the NIfTI copy was refused."""
    sd = fileio.load_scalar(scored / "sd.nii.gz")
    data = np.asarray(sd.data, np.float32).copy()
    inside = np.argwhere(data > 0)[:2]
    data[tuple(inside[0])], data[tuple(inside[1])] = np.nan, np.inf
    for name in ("nan.nrrd", "nan.nii.gz"):
        fileio.save_scalar(sd.replace(data=data), scored / name, sd.meta["descrip"])
        code, _, err = run_cli(capsys, *_base(scored), "--uncertainty", scored / name)
        assert code == 2 and err.count("\n") == 1 and "2 NaN/Inf values" in err, (name, err)


@pytest.mark.parametrize("option, unit", [("--uncertainty", None), ("--uncertainty", "um2/ms"), ("--direction", None)])
def test_a_v1_map_given_as_an_uncertainty_map_is_refused_as_one(tmp_path, option, unit):
    """`--uncertainty up_V1.nrrd` had been asked whether it was the _direction map, and with --uncertainty-unit
    told '(48, 48, 16, 3) is neither (X,Y,Z) nor (X,Y,Z,6)' without the file's name (a review of the NRRD maps: the map
    reader takes a 3-vector NRRD): one line naming the file says what it is."""
    from ImageQualityTransferLib.apps.cli.evaluate import _map
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.core.volume import Volume

    affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    v1 = np.zeros((4, 3, 2, 3), np.float32)
    v1[..., 0] = 0.987
    for name in ("up_V1.nrrd", "up_V1.nii.gz"):
        fileio.save_scalar(Volume(v1, affine, "scalar"), tmp_path / name, "iqt biqt V1 in RAS frame (a 3-vector NRRD)")
        pred = Volume(np.zeros((4, 3, 2, 6), np.float32), affine, "tensor")
        with pytest.raises(IQTError) as exc:
            _map(tmp_path / name, option, pred, unit)
        said = str(exc.value)
        assert said.startswith(f"{tmp_path / name}: a 3-vector map (a V1?), not ") and "\n" not in said, said


def test_the_reference_given_as_its_own_prediction_is_refused(scored, capsys, tmp_path):
    """`iqt evaluate --pred X --truth X` had scored the reference against itself: every error zero, PSNR '– (no error)',
    exit 0. The same file under another name (a symbolic or hard link, a second NRRD header naming its data file) is
    the same file: refused in one line, the --json not written."""
    import os
    import shutil

    hr = scored / "hr.nii.gz"
    (tmp_path / "sym.nii.gz").symlink_to(hr)
    os.link(hr, tmp_path / "hard.nii.gz")
    fileio.save_tensor(fileio.load_tensor(hr), tmp_path / "hr.nhdr")
    shutil.copy(tmp_path / "hr.nhdr", tmp_path / "again.nhdr")  # another header, the same data file
    for pred, truth in ((hr, hr), (tmp_path / "sym.nii.gz", hr), (tmp_path / "hard.nii.gz", hr),
                        (tmp_path / "again.nhdr", tmp_path / "hr.nhdr")):
        code, out, err = run_cli(capsys, "evaluate", "--pred", pred, "--truth", truth, "--mask", scored / "mask.nii.gz",
                                 "--json", tmp_path / "m.json")
        assert code == 2 and err.count("\n") == 1 and "is the reference's own file" in err and not out, (pred, err)
        assert not (tmp_path / "m.json").exists()


def test_a_sigma_map_whose_header_names_no_unit_is_judged_against_the_predictions_brain_md(scored, capsys):
    """A sigma map in um^2/ms (as Slicer's Save writes the module's node, with no unit) whose values all lay below 0.1
    had been read as mm^2/s: 1000 times too wide, 'within 2 sigma: 1.000', exit 0 (an audit's leftover: the 3 mm dev
    scan's espcn-hetero-var1 std_parameter so saved has its 99th percentile at 0.014). Such a map is refused unless
    --uncertainty-unit says um2/ms, and a map in mm^2/s given --uncertainty-unit um2/ms is refused too."""
    import nibabel as nib

    sd = nib.load(scored / "sd.nii.gz")
    mm = np.asarray(sd.dataobj, np.float32)
    um = mm * 1000 * np.float32(0.05 / np.percentile(mm[mm > 0] * 1000, 99))  # a narrower method's sigma, in um^2/ms
    nib.save(nib.Nifti1Image(um, sd.affine), scored / "um_bare.nii.gz")  # no descrip: no record of kind or unit
    nib.save(nib.Nifti1Image(mm, sd.affine), scored / "mm_bare.nii.gz")
    code, _, err = run_cli(capsys, *_base(scored), "--uncertainty", scored / "um_bare.nii.gz")
    assert code == 2 and err.count("\n") == 1 and "--uncertainty-unit um2/ms" in err and "brain median MD" in err, err
    code, _, err = run_cli(capsys, *_base(scored), "--uncertainty", scored / "mm_bare.nii.gz", "--uncertainty-unit",
                           "um2/ms")
    assert code == 2 and err.count("\n") == 1 and "leave --uncertainty-unit out" in err, err
    # each read in its own unit is scored: the Slicer-saved NRRD above (um2/ms given), and a bare map in mm^2/s
    # (Testing/analysis/test_evaluate_undefined.py)


def _bare(d, src, name, scale=1.0):
    """`src` saved without its header's record of kind and unit (as Slicer's Save or another tool writes a map)."""
    import nibabel as nib

    img = nib.load(d / src)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32) * np.float32(scale), img.affine), d / name)
    return d / name


@pytest.mark.parametrize("src", ["sd_direction.nii.gz", "fa_std.nii.gz"])
def test_a_map_of_another_kind_given_with_um2_ms_is_refused_as_not_sigma(scored, capsys, src):
    """A _direction map (degrees) saved without its record and given as --uncertainty with --uncertainty-unit um2/ms,
    as the refusal without the unit advised, had been scored as sigma, exit 0 (a review: 'within_2sigma 1.000'): the
    cap on the map's brain median over the prediction's MD holds in um^2/ms too, and each refusal that offers um2/ms
    says first that a direction, FA-SD or MD-SD map is not sigma."""
    if src == "fa_std.nii.gz":  # an FA's SD as the Slicer module saves it: 0.02-0.32, no unit (iqt upsample --propagate)
        img = fileio.load_scalar(scored / "sd.nii.gz")
        rng = np.random.default_rng(0)
        fa_sd = np.where(img.data > 0, rng.uniform(0.02, 0.32, img.data.shape), 0).astype(np.float32)
        fileio.save_scalar(img.replace(data=fa_sd, meta={}), scored / src)
    path = _bare(scored, src, "bare_" + src.replace("_", "-"))  # a name that does not say its kind
    said = "a direction, FA-SD or MD-SD map is not a tensor's sigma map"
    if src == "fa_std.nii.gz":  # read in um^2/ms it is as narrow as a sigma, so the line offering the unit says it
        code, _, err = run_cli(capsys, *_base(scored), "--uncertainty", path)
        assert code == 2 and err.count("\n") == 1 and 0 <= err.find(said[2:]) < err.find("um2/ms"), err
        return
    code, _, err = run_cli(capsys, *_base(scored), "--uncertainty", path, "--uncertainty-unit", "um2/ms")
    assert code == 2 and err.count("\n") == 1 and said in err and "times the prediction's brain median MD" in err, err


def test_a_sigma_map_up_to_one_and_a_half_times_the_md_is_scored(scored, capsys):
    """rf's sigma reaches 0.91 of the prediction's brain MD at SNR 3 (the dev scans): a bare map in mm^2/s at 1.2 times
    it had been refused as too wide (the cap was 1.0); the cap is 1.5."""
    from ImageQualityTransferLib.core import tensors

    sd = fileio.load_scalar(scored / "sd.nii.gz").data
    mask = fileio.load_mask(scored / "mask.nii.gz").data.astype(bool)
    pred = fileio.load_tensor(scored / "biqt.nii.gz").data
    md = np.median(tensors.md(np.asarray(pred, np.float64)[mask]))
    s = np.asarray(sd, np.float64)[mask]
    path = _bare(scored, "sd.nii.gz", "wide.nii.gz", 1.2 * md / np.median(s[s > 0]))
    code, out, err = run_cli(capsys, *_base(scored), "--uncertainty", path)
    assert code == 0 and "within_2sigma" in out, err


def test_a_prediction_in_another_unit_is_blamed_before_the_maps(scored, capsys):
    """A prediction in um^2/ms (1000 times mm^2/s) with a sigma map in um^2/ms and --uncertainty-unit um2/ms had the
    blame put on the map ('too narrow for any method's sigma'): the prediction's own unit refusal is said."""
    import nibabel as nib

    img = nib.load(scored / "biqt.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32) * 1000, img.affine, img.header), scored / "x1000.nii.gz")
    um = _bare(scored, "sd.nii.gz", "um.nii.gz", 1000)
    code, _, err = run_cli(capsys, "evaluate", "--pred", scored / "x1000.nii.gz", "--truth", scored / "hr.nii.gz",
                           "--mask", scored / "mask.nii.gz", "--uncertainty", um, "--uncertainty-unit", "um2/ms")
    assert code == 2 and err.count("\n") == 1 and "x1000.nii.gz: the prediction tensor values" in err, err


def test_a_copy_of_the_reference_given_as_the_prediction_is_refused(scored, capsys, tmp_path):
    """A byte copy or a NRRD conversion of the reference given as --pred (not its file, so not said as the same
    file) had scored every error zero, exit 0 (a review): refused where it equals the reference on every mask voxel."""
    import shutil

    hr = scored / "hr.nii.gz"
    shutil.copy(hr, tmp_path / "copy.nii.gz")
    fileio.save_tensor(fileio.load_tensor(hr), tmp_path / "hr.nrrd")
    for pred in (tmp_path / "copy.nii.gz", tmp_path / "hr.nrrd"):
        code, out, err = run_cli(capsys, "evaluate", "--pred", pred, "--truth", hr, "--mask", scored / "mask.nii.gz",
                                 "--json", tmp_path / "m.json")
        assert code == 2 and err.count("\n") == 1 and "scored against itself every error is zero" in err, (pred, err)
        assert not out and not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("name", ["saved_biqt_fa_std.nii.gz", "saved_biqt_fa_std_1.nii.gz"])
def test_a_bare_map_named_as_an_fa_sd_map_is_refused_as_not_sigma(scored, capsys, name):
    """An FA-SD map as Slicer's Save writes the module's node (X_fa_std.nii.gz, no unit, no kind) given with
    --uncertainty-unit um2/ms reads as narrow as a sigma and had been scored, exit 0 (a review: within 2 sigma 0.853):
    its name, the module's node name, says its kind; so does MRML's name for a second such node (X_fa_std_1: a review
    had it scored, within 2 sigma 0.853)."""
    img = fileio.load_scalar(scored / "sd.nii.gz")
    rng = np.random.default_rng(1)
    fa_sd = np.where(img.data > 0, rng.uniform(0.02, 0.32, img.data.shape), 0).astype(np.float32)
    fileio.save_scalar(img.replace(data=fa_sd, meta={}), scored / "subject_biqt_fa_std.nii.gz")
    path = _bare(scored, "subject_biqt_fa_std.nii.gz", name)
    code, _, err = run_cli(capsys, *_base(scored), "--uncertainty", path, "--uncertainty-unit", "um2/ms")
    assert code == 2 and err.count("\n") == 1 and "its name ends in '_fa_std" in err, err
