"""`iqt upsample ... --samples N --propagate`: the propagation outputs beside the output, the same
code and numbers as `iqt propagate`, and one-line errors with no partial output for bad combinations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps.cli import main

from helpers import bundle_file

MAPS = ("fa_mean", "fa_std", "md_mean", "md_std", "visitation")


@pytest.fixture()
def lr_path(tmp_path):
    return bundle_file(tmp_path / "lr.nii.gz")


def test_upsample_propagate_writes_maps_beside_the_output(tmp_path, lr_path, capsys):
    out = tmp_path / "hr.nii.gz"
    rc = main(["upsample", str(lr_path), "-o", str(out), "--method", "biqt", "--samples", "3", "--propagate",
               "--n-seeds", "40"])
    assert rc == 0, capsys.readouterr().err
    assert fileio.load_tensor(out).shape3 == (28, 20, 20)
    for name in MAPS:
        vol = fileio.load_scalar(tmp_path / f"hr_{name}.nii.gz")
        assert vol.shape3 == (28, 20, 20)
    assert fileio.load_scalar(tmp_path / "hr_fa_std.nii.gz").data.max() > 0
    vis = fileio.load_scalar(tmp_path / "hr_visitation.nii.gz").data
    assert 0 < vis.max() <= 1
    summary = json.loads((tmp_path / "hr_propagation.json").read_text())
    assert summary["n_samples"] == 3 and summary["method"] == "biqt"
    assert summary["tract_dice_between_samples"] is not None
    # the options that reproduce it, as iqt propagate records them, and the whole command's time
    assert summary["settings"]["n_seeds"] == 40 and summary["settings"]["fa_threshold"] == 0.2
    assert summary["settings"]["factor"] == 2 and summary["seconds"] >= summary["sampling_seconds"] > 0
    # the model that ran, defaulted (null had stood for it: a tractography audit)
    assert summary["settings"]["model"] == "biqt_x2.npz" and summary["settings"]["model_origin"] == "shipped"
    out = capsys.readouterr().out
    assert "hr_propagation.json" in out
    # fa_mean read as FA (a display audit: 0.289 where the prediction's FA is 0.136): the line says what to read
    assert "fa_mean is not an FA estimate" in out and "md_std counts no error shared between the elements" in out


def test_upsample_propagate_checks_the_tracking_settings_before_the_prediction(tmp_path, lr_path, capsys, monkeypatch):
    """--fa-threshold 1.5 was refused only after the prediction had run (10-12 s of work first)."""
    from ImageQualityTransferLib.apps.cli import options

    def predicted(*a, **k):
        raise AssertionError("the prediction ran")

    monkeypatch.setattr(options, "predict_with_mask", predicted)
    rc = main(["upsample", str(lr_path), "-o", str(tmp_path / "hr.nii.gz"), "--method", "biqt", "--samples", "3",
               "--propagate", "--fa-threshold", "1.5"])
    err = capsys.readouterr().err
    assert rc == 2 and "--fa-threshold 1.5" in err and err.count("\n") == 1, err


def test_upsample_propagate_matches_iqt_propagate(tmp_path, lr_path, capsys):
    """One code path: the same method, samples and seed give the same maps from both commands."""
    assert main(["upsample", str(lr_path), "-o", str(tmp_path / "a.nrrd"), "--method", "biqt", "--samples", "3",
                 "--propagate", "--no-tracts", "--seed", "4"]) == 0
    assert main(["propagate", str(lr_path), "-o", str(tmp_path / "b"), "--method", "biqt", "--samples", "3",
                 "--no-tracts", "--seed", "4"]) == 0
    capsys.readouterr()
    assert not (tmp_path / "a_visitation.nrrd").exists() and not (tmp_path / "b" / "visitation.nii.gz").exists()
    for name in MAPS[:4]:  # a NRRD output's maps are NRRD (fileio/nrrd.py save_scalar_nrrd)
        a = fileio.load_scalar(tmp_path / f"a_{name}.nrrd").data
        b = fileio.load_scalar(tmp_path / "b" / f"{name}.nii.gz").data
        assert np.array_equal(a, b), name


@pytest.mark.parametrize("extra, message", [
    (["--method", "cubic", "--samples", "5", "--propagate"], "gives no uncertainty to propagate"),
    (["--method", "biqt", "--samples", "1", "--propagate"], "at least 2 samples"),
    (["--method", "biqt", "--seeds", "roi.nii.gz"], "--seeds: applies only with --propagate"),
    (["--method", "biqt", "--no-tracts", "--n-seeds", "5"], "--n-seeds, --no-tracts: apply only with --propagate"),
    (["--method", "cubic", "--samples", "3"], "add --propagate"),
    (["--method", "biqt", "--mc-samples", "3", "--propagate"], "takes no Monte Carlo samples"),
    (["--method", "biqt", "--propagate", "--seeds", "missing.nii.gz"], "missing.nii.gz"),
    (["--method", "cubic", "--tta"], "--tta applies to the learned methods"),
])
def test_upsample_propagate_bad_combinations_fail_cleanly(tmp_path, lr_path, capsys, extra, message):
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(["upsample", str(lr_path), "-o", str(tmp_path / "hr.nii.gz"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no partial output


def test_upsample_propagate_variational_cnn(tmp_path, lr_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "hr.nii.gz"
    rc = main(["upsample", str(lr_path), "-o", str(out), "--method", "espcn-hetero-var1", "--samples", "2",
               "--mc-samples", "2", "--propagate", "--no-tracts"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "hr_propagation.json").read_text())["n_samples"] == 2
    assert fileio.load_scalar(tmp_path / "hr_md_std.nii.gz").data.max() > 0


def test_upsample_uncertainty_writes_the_monte_carlo_maps_beside_the_total(tmp_path, lr_path, capsys):
    pytest.importorskip("torch")
    out, unc = tmp_path / "hr.nii.gz", tmp_path / "sd.nii.gz"
    rc = main(["upsample", str(lr_path), "-o", str(out), "--method", "espcn-hetero-var1", "--samples", "3",
               "--uncertainty", str(unc)])
    assert rc == 0, capsys.readouterr().err
    total = fileio.load_scalar(unc).data
    parts = {k: fileio.load_scalar(tmp_path / f"sd_{k}.nii.gz").data for k in ("std_intrinsic", "std_parameter", "md_std", "fa_std", "direction")}
    inside = total > 0
    assert inside.any() and all(p.shape == total.shape for p in parts.values())
    assert (parts["std_intrinsic"][inside] <= total[inside] + 1e-12).all()
    assert parts["fa_std"][inside].max() > 0
    # an RMS angle between axes: degrees in (0, 90]
    assert (parts["direction"][inside] > 0).all() and parts["direction"].max() <= 90
    assert (parts["direction"][~inside] == 0).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["lr.nii.gz", "hr.nii.gz", "sd.nii.gz"] + [f"sd_{k}.nii.gz" for k in parts])


def test_upsample_tta_writes_the_averaged_prediction_and_its_maps(tmp_path, lr_path, capsys):
    """`iqt upsample --tta`: the method averaged over flips (the engine's own result), its uncertainty map too."""
    from ImageQualityTransferLib import methods

    out, unc = tmp_path / "hr.nii.gz", tmp_path / "sd.nii.gz"
    rc = main(["upsample", str(lr_path), "-o", str(out), "--method", "biqt", "--tta", "--uncertainty", str(unc)])
    said = capsys.readouterr()
    assert rc == 0, said.err
    assert "(biqt+tta, shipped model biqt_x2.npz)" in said.out
    want = methods.get("biqt", tta=True).predict(fileio.load_tensor(lr_path), 2)
    np.testing.assert_allclose(fileio.load_tensor(out).data, want.tensor.data, atol=1e-9)
    np.testing.assert_allclose(fileio.load_scalar(unc).data, want.std.data, atol=1e-9)
    plain = methods.get("biqt").predict(fileio.load_tensor(lr_path), 2).tensor.data
    assert np.abs(plain - want.tensor.data).max() > 0


def test_a_model_given_without_factor_runs_at_its_own(tmp_path, lr_path, capsys):
    """`--model M_x1x1x3` without --factor had run at 2 and been refused ('use --factor 1,1,3'); it runs at its own
    factors now, along the input's axis its model's slice axis (S) maps to (a review: an SLA input had been refined
    along R); a --factor given still wins (and its mismatch is said)."""
    from pathlib import Path

    from ImageQualityTransferLib.fileio import load_tensor, model_files

    model = str(Path(model_files.MODELS_DIR) / "global-linear_x1x1x3.npz")
    assert main(["upsample", str(lr_path), "-o", str(tmp_path / "o.nii.gz"), "--model", model]) == 0
    lr, out = load_tensor(lr_path), load_tensor(tmp_path / "o.nii.gz")
    assert out.shape3 == (lr.shape3[0], lr.shape3[1], 3 * lr.shape3[2])
    capsys.readouterr()
    assert main(["upsample", str(lr_path), "-o", str(tmp_path / "p.nii.gz"), "--model", model, "--factor", "2"]) == 2
    # its factor along the input's thick-slice axis, said so that the advice holds in every command
    assert "use --factor with 3 along the input's thick-slice voxel axis (1,1,3 where its slices are thick along k" in \
        capsys.readouterr().err
    from ImageQualityTransferLib.core.orientation import reorient

    fileio.save_tensor(reorient(lr, "SLA"), tmp_path / "sla.nii.gz")  # S stored as the first voxel axis
    assert main(["upsample", str(tmp_path / "sla.nii.gz"), "-o", str(tmp_path / "s.nii.gz"), "--model", model]) == 0
    sla = load_tensor(tmp_path / "sla.nii.gz")
    assert load_tensor(tmp_path / "s.nii.gz").shape3 == (3 * sla.shape3[0], sla.shape3[1], sla.shape3[2])
    # thick slices along R (a sagittal series): the through-plane model refines them, not the in-plane S axis (a
    # training audit: a 2.7x2.7x8.1 mm sagittal scan came out 2.71x0.902x8.1 mm)
    sag = lr.replace(affine=np.diag([6.0, 2.0, 2.0, 1.0]))
    fileio.save_tensor(sag, tmp_path / "sag.nii.gz")
    assert main(["upsample", str(tmp_path / "sag.nii.gz"), "-o", str(tmp_path / "g.nii.gz"), "--model", model]) == 0
    assert load_tensor(tmp_path / "g.nii.gz").shape3 == (3 * sag.shape3[0], sag.shape3[1], sag.shape3[2])


def test_a_through_plane_models_refusal_names_what_runs_it_along_the_inputs_thick_slices(tmp_path, lr_path, capsys):
    """A through-plane --model refused for the factors asked says to give its factor along the input's thick-slice
    voxel axis: a slice-first (SLA) or PSR input had been told '--factor 1,1,3', and (a review) '--factor 2,1,1' on LAS
    slices thick along k '3,1,1', both refining an in-plane axis; then 'leave --factor out', which looped in `iqt
    benchmark`, whose --factor defaults to 2 (a second review). Following the advice refines the thick slices (in
    upsample here); `iqt batch`, one --factor for every subject, says to leave --voxel-size or --factor out."""
    from pathlib import Path

    from ImageQualityTransferLib.core.orientation import reorient
    from ImageQualityTransferLib.fileio import load_tensor, model_files
    from ImageQualityTransferLib.slicer.processing import in_module_words

    model = str(Path(model_files.MODELS_DIR) / "global-linear_x1x1x3.npz")
    lr = load_tensor(lr_path)
    thick = lr.replace(affine=lr.affine @ np.diag([1.0, 1.0, 2.0, 1.0]))  # slices twice as thick along k (S)
    for codes, asked in (("SLA", ["--voxel-size"]), ("PSR", ["--voxel-size"]), ("LAS", ["--voxel-size"]),
                         ("LAS", ["--factor", "2,1,1"]), ("SLA", ["--factor", "1,1,2"])):
        vol = reorient(thick, codes)
        path = tmp_path / f"{codes}.nii.gz"
        fileio.save_tensor(vol, path)
        out = tmp_path / f"{codes}_up.nii.gz"
        if asked == ["--voxel-size"]:
            asked = ["--voxel-size", f"{max(vol.voxel_size) / 2:g}"]
        assert main(["upsample", str(path), "-o", str(out), *asked, "--model", model]) == 2
        err = capsys.readouterr().err
        said = "use --factor with 3 along the input's thick-slice voxel axis (1,1,3 where its slices are thick along k, " \
               "3,1,1 along i, 1,3,1 along j)"
        assert said in err and err.count("\n") == 1, err
        assert "Upsampling: Through-plane, factor 3" in in_module_words(err)  # the module's panel says the same
        assert not out.exists()
        k = int(np.argmax(vol.voxel_size))
        factor = ",".join("3" if i == k else "1" for i in range(3))  # the advice, followed for this input
        code, said = main(["upsample", str(path), "-o", str(out), "--factor", factor, "--model", model]), capsys.readouterr()
        assert code == 0, said.err
        np.testing.assert_allclose(load_tensor(out).voxel_size, [v / 3 if i == k else v
                                                                 for i, v in enumerate(vol.voxel_size)])
        out.unlink()
    (tmp_path / "list.txt").write_text("LAS.nii.gz\nSLA.nii.gz\n")
    size = max(thick.voxel_size) / 2
    assert main(["batch", str(tmp_path / "list.txt"), "-o", str(tmp_path / "d"), "--voxel-size", f"{size:g}",
                 "--model", model, "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "leave --voxel-size out" in err and "use --factor" not in err and err.count("\n") == 1, err
    assert not (tmp_path / "d").exists()
    # one --factor for subjects stored LAS and SLA cannot follow their thick slices both (a review: '1,1,3' ran, SLA's
    # in-plane axis refined): leave it out
    assert main(["batch", str(tmp_path / "list.txt"), "-o", str(tmp_path / "d"), "--factor", "2", "--model", model,
                 "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "leave --factor out" in err and "use --factor" not in err and err.count("\n") == 1, err
    assert not (tmp_path / "d").exists()


def _user_map(path, value):
    """A map another program wrote (pynrrd, nibabel: no iqt record); a .nhdr with its data file beside it."""
    data = np.full((4, 4, 4), value, np.float32)
    if str(path).endswith(".nhdr"):
        import nrrd

        nrrd.write(str(path), data, {"space": "left-posterior-superior", "encoding": "gzip"}, detached_header=True)
    else:
        import nibabel as nib

        nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("suffix", [".nii.gz", ".nhdr"])
def test_propagate_refuses_a_users_own_map_and_keeps_their_visitation(tmp_path, lr_path, capsys, suffix):
    """A user's X_fa_std beside -o X --propagate had been overwritten and their X_visitation (with --no-tracts) deleted,
    data file and all (a review of the NRRD maps): the first is refused in one line before any work, as --maps refuses
    dtifit's maps; the second, not this run's to write, stays."""
    out = tmp_path / f"X{suffix}"
    _user_map(tmp_path / f"X_fa_std{suffix}", 7)
    _user_map(tmp_path / f"X_visitation{suffix}", 1)
    before = _files(tmp_path)
    args = ["upsample", str(lr_path), "-o", str(out), "--method", "biqt", "--samples", "2", "--propagate", "--no-tracts"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"X_fa_std{suffix}: already there and not written by iqt" in err, err
    assert "--propagate would replace" in err and _files(tmp_path) == before
    for p in tmp_path.glob("X_fa_std*"):
        p.unlink()
    assert main(args) == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert "removed" not in said, said
    for name, data in before.items():
        if name.startswith("X_visitation"):
            assert (tmp_path / name).read_bytes() == data, name


def test_iqt_propagate_retires_only_its_own_earlier_visitation(tmp_path, lr_path, capsys):
    """`iqt propagate --no-tracts` into a folder: an earlier run's visitation.nii.gz is removed once the outputs are in
    place, and said; another program's file of that name stays (propagation.write had deleted either at once)."""
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.fileio.records import run_record

    folder = tmp_path / "b"
    folder.mkdir()
    with run_record({"options": {"output": str(folder)}}):  # as an earlier `iqt propagate -o b` wrote it
        fileio.save_scalar(Volume(np.ones((4, 4, 4), np.float32), np.eye(4), "scalar"), folder / "visitation.nii.gz",
                           "iqt biqt visitation unitless")
    args = ["propagate", str(lr_path), "-o", str(folder), "--method", "biqt", "--samples", "2"]
    assert main(args + ["--no-tracts"]) == 0
    assert not (folder / "visitation.nii.gz").exists() and "removed visitation.nii.gz" in capsys.readouterr().out
    _user_map(folder / "visitation.nii.gz", 1)
    before = (folder / "visitation.nii.gz").read_bytes()
    assert main(args + ["--no-tracts"]) == 0
    assert (folder / "visitation.nii.gz").read_bytes() == before and "removed" not in capsys.readouterr().out
