"""Multi-shell series (HCP-like): DTI fitted to every shell says so in one warning naming --bmax, and --bmax fits the
lower shell only (iqt fit, mask, degrade, batch); too high a cut is refused in one line; the Slicer module's note
says it in the panel's words."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.core.errors import IQTError, IQTWarning
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.dmri import dti
from ImageQualityTransferLib.dmri.phantom import make_phantom


@pytest.fixture(scope="module")
def two_shells():
    a = make_phantom(shape=(16, 18, 14), voxel_mm=4.0, n_dirs=12, bval=1000.0, seed=1)
    b = make_phantom(shape=(16, 18, 14), voxel_mm=4.0, n_dirs=12, bval=3000.0, seed=2)
    b_dw = b.bvals > dti.B0_THRESHOLD  # one b0, then the two shells
    return Volume(np.concatenate([a.data, b.data[..., b_dw]], -1), a.affine, "dwi",
                  bvals=np.r_[a.bvals, b.bvals[b_dw] + 5.0], bvecs=np.r_[a.bvecs, b.bvecs[b_dw]])


def test_shells_and_the_lower_shell(two_shells):
    assert dti.shells(two_shells.bvals) == [1000.0, 3000.0]
    low = dti.keep_bmax(two_shells, 1000)
    assert dti.shells(low.bvals) == [1000.0] and (low.bvals <= dti.B0_THRESHOLD).sum() == (two_shells.bvals <= 50).sum()
    with pytest.raises(IQTError, match="a tensor needs at least 6"):
        dti.keep_bmax(two_shells, 500)
    for bmax in (float("nan"), 0.0):  # nan had been told to give a higher --bmax (a fresh-eyes audit)
        with pytest.raises(IQTError, match=r"give the highest b-value to fit"):
            dti.keep_bmax(two_shells, bmax)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dti.fit_dti(two_shells, dti.brain_mask(two_shells))
        dti.fit_dti(low, dti.brain_mask(low))  # one shell: nothing to say
    said = [str(w.message) for w in caught if issubclass(w.category, IQTWarning)]
    assert len(said) == 1 and "b = 1000, 3000" in said[0] and "--bmax 1000" in said[0]
    high = two_shells.replace(bvals=np.where(two_shells.bvals > dti.B0_THRESHOLD, two_shells.bvals * 2, 0.0))
    with pytest.warns(IQTWarning, match=r"b = 2000, 6000 .* give --bmax 2000"):  # every shell high
        dti.check_shells(high)


def test_iqt_fit_with_and_without_bmax(two_shells, tmp_path, capsys):
    fileio.save_dwi(two_shells, tmp_path / "dwi.nii.gz")
    assert cli.main(["fit", str(tmp_path / "dwi.nii.gz"), "-o", str(tmp_path / "all.nii.gz")]) == 0
    err = capsys.readouterr().err
    assert err.count("iqt: warning:") == 1 and "--bmax 1000" in err
    assert cli.main(["fit", str(tmp_path / "dwi.nii.gz"), "--bmax", "1000", "-o", str(tmp_path / "low.nii.gz")]) == 0
    assert "warning" not in capsys.readouterr().err
    code = cli.main(["fit", str(tmp_path / "dwi.nii.gz"), "--bmax", "300", "-o", str(tmp_path / "none.nii.gz")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("iqt: error: --bmax 300") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "none.nii.gz").exists()


def test_the_slicer_note_names_the_panel_s_way(two_shells):
    pytest.importorskip("slicer", reason="slicer-core is not installed")
    from ImageQualityTransferLib.core.i18n import options_named
    from ImageQualityTransferLib.slicer.processing import in_module_words, module_options

    with pytest.warns(IQTWarning) as said, options_named(module_options()):  # as the module's fit says it
        dti.check_shells(two_shells)
    text = in_module_words(str(said[0].message))
    assert "iqt fit" not in text and "commands" not in text  # the module runs none of them
    assert "--bmax" not in text and "b up to 1000" in text


def test_batch_fits_the_lower_shell_with_bmax(two_shells, tmp_path):
    import json

    from ImageQualityTransferLib.apps import batch

    (tmp_path / "P01").mkdir()
    fileio.save_dwi(two_shells, tmp_path / "P01" / "dwi.nii.gz")
    (tmp_path / "list.txt").write_text("P01\n")
    items = batch.find_items(tmp_path / "list.txt")
    out = tmp_path / "deriv"
    out.mkdir()
    plain = batch.run_cohort(items, batch.Settings(method="cubic"), out, progress=False)
    assert any("--bmax 1000" in n for n in plain[0]["notes"])
    low = batch.run_cohort(items, batch.Settings(method="cubic", bmax=1000.0), out, progress=False)
    assert low[0]["status"] == "done" and not low[0]["notes"]  # redone: the request changed
    side = next(out.rglob("*param-tensor_dwimap.json"))
    assert json.loads(side.read_text())["BMax"] == 1000.0


def test_batch_bmax_on_tensor_files_is_said(two_shells, tmp_path, capsys, monkeypatch):
    """--bmax selects a DWI's shells before its fit: on a list of tensor files alone it is refused, beside DWI subjects
    one warning names the tensor files it does not touch (it was ignored without a word). The cohort runs in this
    process (the warning is the command's, said before any cluster starts)."""
    from helpers import batch_runs_in_process
    from ImageQualityTransferLib.apps import batch, cli
    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti

    seen = batch_runs_in_process(monkeypatch, batch)

    low = dti.keep_bmax(two_shells, 1000)
    fileio.save_tensor(fit_dti(low, brain_mask(low)), tmp_path / "t.nii.gz")
    (tmp_path / "tensors.txt").write_text("t.nii.gz\n")
    args = ["-o", str(tmp_path / "out"), "--method", "cubic", "--workers", "1", "--bmax", "1000"]
    assert cli.main(["batch", str(tmp_path / "tensors.txt")] + args) == 2
    assert "every listed subject is a tensor file" in capsys.readouterr().err
    (tmp_path / "P01").mkdir()
    fileio.save_dwi(two_shells, tmp_path / "P01" / "dwi.nii.gz")
    (tmp_path / "both.txt").write_text("P01\nt.nii.gz\n")
    assert cli.main(["batch", str(tmp_path / "both.txt")] + args) == 0
    err = capsys.readouterr().err
    assert "applies to the DWI subjects only; the 1 listed tensor file is upsampled as fitted" in err
    assert [s.bmax for s in seen] == [1000.0]


def test_training_on_a_multi_shell_subject_says_it_once(two_shells, tmp_path, capsys):
    """Training fitted each degraded copy too, whose warning named no file: the same warning came twice, once without
    the path. The copies keep their source's path, so it is said once. In this process (cli.main resets the registry
    of warnings shown on entry and says each IQTWarning as `iqt` does, so a second line would show here as in a child
    process)."""
    subject = tmp_path / "multi"
    subject.mkdir()
    fileio.save_dwi(two_shells, subject / "dwi.nii.gz")
    capsys.readouterr()
    code = cli.main(["train", "--method", "global-linear", "--subjects", str(subject), "--factor", "2", "-o",
                     str(tmp_path / "m.npz"), "--seed", "0"])
    err = capsys.readouterr().err
    assert code == 0, err
    said = [line for line in err.splitlines() if "shells" in line]
    assert len(said) == 1 and str(subject / "dwi.nii.gz") in said[0], err


@pytest.mark.parametrize("command", [["fit"], ["degrade", "--factor", "2"]])
def test_with_bmax_a_zero_gradient_is_named_by_its_number_in_the_file(two_shells, tmp_path, capsys, command):
    """The b = 3000 shell first in the file and a b = 1000 volume with no direction (a trace image): `iqt fit --bmax
    1000` and `iqt degrade --bmax 1000` refuse it naming its number in the file, where a user removes it (they had
    named its place among the volumes --bmax kept, another volume of the file)."""
    b = np.asarray(two_shells.bvals, float)
    order = np.r_[np.flatnonzero(b > 2000), np.flatnonzero(b <= 2000)]  # the high shell first, then b0 and b = 1000
    bvecs = np.asarray(two_shells.bvecs, float)[order]
    trace = len(order) - 3  # a b = 1000 volume
    bvecs[trace] = 0.0
    fileio.save_dwi(two_shells.replace(data=np.asarray(two_shells.data)[..., order], bvals=b[order], bvecs=bvecs),
                    tmp_path / "dwi.nii.gz")
    code = cli.main([*command, str(tmp_path / "dwi.nii.gz"), "--bmax", "1000", "-o", str(tmp_path / "t.nii.gz")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"volume {trace} (counted from 0) has a zero gradient direction" in err, err
    assert not (tmp_path / "t.nii.gz").exists()


def test_file_numbers_carried_onto_a_series_of_another_length_are_refused(two_shells):
    """keep_bmax's file numbers copied (Volume.replace copies meta) onto a series cut again would name other volumes of
    the file: refused, never read."""
    low = dti.keep_bmax(two_shells, 1000)
    assert list(dti.file_volumes(low)) == list(np.flatnonzero(np.asarray(two_shells.bvals) <= 1000 + dti.SHELL_STEP / 2))
    cut = low.replace(data=np.asarray(low.data)[..., 1:], bvals=np.asarray(low.bvals)[1:], bvecs=np.asarray(low.bvecs)[1:])
    with pytest.raises(ValueError, match="carries the file numbers"):
        dti.file_volumes(cut)
