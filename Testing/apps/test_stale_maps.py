"""Maps named after an output that an earlier run wrote and this run does not (`--propagate`'s fa_mean ... and
propagation.json, `--maps`' FA ...) are removed once this run's outputs are in place, and said: they would pass for the
new output's (a run without --propagate left them beside it, silently). Another tool's file of such a name
stays, and a run that fails keeps them."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.dmri.degrade import degrade
from ImageQualityTransferLib.dmri.dti import brain_mask
from ImageQualityTransferLib.dmri.phantom import make_phantom

STALE = ["o_fa_mean.nii.gz", "o_fa_std.nii.gz", "o_md_mean.nii.gz", "o_md_std.nii.gz", "o_propagation.json",
         "o_FA.nii.gz", "o_MD.nii.gz", "o_V1.nii.gz"]


def _first_run(tmp_path, capsys):
    dwi = make_phantom(shape=(20, 22, 16), voxel_mm=2.0, n_dirs=12)
    fileio.save_tensor(degrade(dwi, brain_mask(dwi).data, 2).tensor, tmp_path / "lr.nii.gz")
    assert cli.main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / "o.nii.gz"), "--method",
                     "espcn-hetero-var1", "--mc-samples", "2", "--propagate", "--samples", "2", "--no-tracts",
                     "--maps"]) == 0
    capsys.readouterr()
    assert all((tmp_path / n).is_file() for n in STALE)


def test_a_rerun_without_them_removes_the_earlier_run_s_maps_and_says_so(tmp_path, capsys):
    _first_run(tmp_path, capsys)
    (tmp_path / "o_L1.nii.gz").unlink()
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), str(tmp_path / "o_L1.nii.gz"))  # another tool's
    assert cli.main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / "o.nii.gz"), "--method", "cubic"]) == 0
    out = capsys.readouterr().out
    assert not [n for n in STALE if (tmp_path / n).exists()], sorted(p.name for p in tmp_path.iterdir())
    assert (tmp_path / "o_L1.nii.gz").is_file() and "o_L1" not in out
    said = [line for line in out.splitlines() if line.startswith("removed ")]
    assert len(said) == 1 and "o_fa_mean.nii.gz" in said[0] and "o_FA.nii.gz" in said[0], out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".iqt")) == []


def test_a_run_that_fails_keeps_them(tmp_path, capsys, monkeypatch):
    _first_run(tmp_path, capsys)
    before = {n: (tmp_path / n).read_bytes() for n in STALE}

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio, "save_tensor", full)
    assert cli.main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / "o.nii.gz"), "--method",
                     "cubic"]) != 0
    assert {n: (tmp_path / n).read_bytes() for n in STALE} == before


def test_maps_of_another_output_of_that_stem_stay(tmp_path, capsys):
    """A run writing X.nrrd leaves X.nii.gz's maps (X_FA.nii.gz ...; its own are X_FA.nrrd ...): it had removed them,
    and the propagation maps of an X.nii.gz run."""
    _first_run(tmp_path, capsys)
    (tmp_path / "o.nii.gz").rename(tmp_path / "kept.nii.gz")
    assert cli.main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / "o.nrrd"), "--method", "cubic"]) == 0
    assert all((tmp_path / n).is_file() for n in STALE)
    assert "removed" not in capsys.readouterr().out


def test_a_rerun_from_another_folder_removes_them_too(tmp_path, capsys, monkeypatch):
    """The record keeps `-o` as typed: `-o o.nii.gz` typed in the output's folder, then `-o out/o.nii.gz` from the
    folder above, had kept cubic's FA ... beside deep's output, with no word (a first-contact audit)."""
    out = tmp_path / "out"
    out.mkdir()
    dwi = make_phantom(shape=(20, 22, 16), voxel_mm=2.0, n_dirs=12)
    fileio.save_tensor(degrade(dwi, brain_mask(dwi).data, 2).tensor, tmp_path / "lr.nii.gz")
    monkeypatch.chdir(out)
    assert cli.main(["upsample", "../lr.nii.gz", "-o", "o.nii.gz", "--method", "cubic", "--maps"]) == 0
    assert (out / "o_FA.nii.gz").is_file()
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert cli.main(["upsample", "lr.nii.gz", "-o", "out/o.nii.gz", "--method", "nearest"]) == 0
    assert "removed o_FA.nii.gz" in capsys.readouterr().out
    assert not (out / "o_FA.nii.gz").exists()


def test_one_output_under_two_names_is_one_output(tmp_path, capsys):
    """One file under two names (hard links here; names differing in case on macOS's and Windows's disks): the maps'
    record names o.nii.gz, this run writes O.nii.gz, the same file; the rerun replaces them, refusing nothing, and the
    first folder's files stay as they were (a review: by path alone, it was refused as another output's maps)."""
    import os

    _first_run(tmp_path, capsys)
    twin = tmp_path / "twin"
    twin.mkdir()
    for src, dst in (("o.nii.gz", "o.nii.gz"), ("o.nii.gz", "O.nii.gz"), ("o_FA.nii.gz", "O_FA.nii.gz")):
        os.link(tmp_path / src, twin / dst)
    before = (tmp_path / "o_FA.nii.gz").read_bytes()
    assert cli.main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(twin / "O.nii.gz"), "--method", "cubic",
                     "--maps"]) == 0, capsys.readouterr().err
    assert (tmp_path / "o_FA.nii.gz").read_bytes() == before


def test_maps_would_not_replace_those_of_another_output_still_there(tmp_path, capsys):
    """`-o o.nrrd --maps` beside o.nii.gz and its maps had replaced them (o.nii.gz then lay beside another run's maps,
    which a later run writing o.nii.gz kept, since their record names o.nrrd): its maps are o_FA.nrrd ... now, and
    o.nii.gz's stay; `--propagate` shares o_propagation.json with o.nii.gz's run: refused in one line, nothing
    written; once o.nii.gz is gone its maps are free."""
    _first_run(tmp_path, capsys)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert cli.main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / "o.nrrd"), "--method", "cubic",
                     "--maps"]) == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before} == before
    assert (tmp_path / "o_FA.nrrd").is_file()
    capsys.readouterr()
    for p in tmp_path.iterdir():
        if p.name not in before:
            p.unlink()
    for extra in (["--propagate", "--samples", "2", "--no-tracts"],):
        code = cli.main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / "o.nrrd"), "--method",
                         "biqt", *extra])
        out, err = capsys.readouterr()
        assert code == 2 and len(err.strip().splitlines()) == 1 and "a map of o.nii.gz" in err, err
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    (tmp_path / "o.nii.gz").unlink()
    assert cli.main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / "o.nrrd"), "--method", "cubic",
                     "--maps"]) == 0


def test_a_file_another_program_writes_meanwhile_stays(tmp_path, capsys, monkeypatch):
    """Checked again when the outputs are put in place: an FSL o_FA.nii.gz written while the run worked stays (review
    51a: the check was made before the prediction only)."""
    _first_run(tmp_path, capsys)
    real = fileio.save_tensor

    def meanwhile(*a, **k):
        nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), str(tmp_path / "o_FA.nii.gz"))
        return real(*a, **k)

    monkeypatch.setattr(fileio, "save_tensor", meanwhile)
    assert cli.main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / "o.nii.gz"), "--method", "cubic"]) == 0
    assert (tmp_path / "o_FA.nii.gz").is_file() and not (tmp_path / "o_MD.nii.gz").exists()
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("removed ")]
    assert len(said) == 1 and "o_MD.nii.gz" in said[0] and "o_FA.nii.gz" not in said[0]


def test_maps_would_not_replace_another_tools_file(tmp_path, capsys):
    """`iqt upsample dti_tensor.nii.gz --tensor-order fsl -o dti.nii.gz --maps` in a dtifit folder replaced dtifit's
    own dti_FA, dti_MD ... without a word (a bad-input audit): refused in one line, the file kept; this tool's own maps
    of the output are still written over, as a rerun does."""
    from helpers import refused_line

    _first_run(tmp_path, capsys)
    args = ["upsample", tmp_path / "lr.nii.gz", "-o", tmp_path / "o.nii.gz", "--method", "cubic", "--maps"]
    assert cli.main([str(a) for a in args]) == 0  # its own maps of o.nii.gz: written again
    capsys.readouterr()
    (tmp_path / "o_L1.nii.gz").unlink()
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), str(tmp_path / "o_L1.nii.gz"))  # dtifit's
    before = (tmp_path / "o_L1.nii.gz").read_bytes()
    refused_line(capsys, args, "o_L1.nii.gz: already there and not written by iqt")
    assert (tmp_path / "o_L1.nii.gz").read_bytes() == before
    # this tool's maps written without a run record (--no-record) are its own: a rerun writes them again (the review)
    (tmp_path / "o_L1.nii.gz").unlink()
    norecord = ["--no-record", *[str(a) for a in args]]
    assert cli.main(norecord) == 0 and cli.main(norecord) == 0


def test_output_and_uncertainty_would_not_replace_another_tools_file(tmp_path, capsys):
    """`-o dti_V1.nii.gz` and `--uncertainty dti_MD.nii.gz` in a dtifit folder replaced dtifit's maps without a word
    where --maps refuses it (a tool-inputs audit): refused in one line naming the file, nothing written; this tool's own
    outputs, with a run record or without (--no-record), are written over as a rerun does."""
    from helpers import refused_line

    fileio.save_tensor(Volume(np.tile(np.float32([7e-4, 0, 0, 7e-4, 0, 7e-4]), (6, 6, 6, 1)), np.eye(4), "tensor"),
                       tmp_path / "lr.nii.gz")
    for name in ("dti_V1.nii.gz", "dti_MD.nii.gz"):
        nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), str(tmp_path / name))  # dtifit's
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    up = ["upsample", tmp_path / "lr.nii.gz", "--method", "cubic"]
    refused_line(capsys, [*up, "-o", tmp_path / "dti_V1.nii.gz"], "dti_V1.nii.gz: already there and not written by "
                 "iqt", "give -o another name")
    unc = [*up[:-1], "biqt", "-o", tmp_path / "o.nii.gz", "--uncertainty", tmp_path / "dti_MD.nii.gz"]
    refused_line(capsys, unc, "dti_MD.nii.gz: already there and not written by iqt", "give --uncertainty another name")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    for argv in ([*up, "-o", tmp_path / "o.nii.gz"], ["--no-record", *up, "-o", tmp_path / "n.nii.gz"]):
        assert cli.main([str(a) for a in argv]) == 0 and cli.main([str(a) for a in argv]) == 0


def test_a_models_sidecar_would_not_replace_another_files_json(tmp_path, capsys, small_subject):
    """`iqt train -o subjK/dwi.npz` replaced subjK's BIDS dwi.json with the model's sidecar (a bad-input audit): a JSON
    there with no model beside it is refused, kept as it was."""
    from helpers import refused_line

    (tmp_path / "dwi.json").write_text('{"SliceEncodingDirection": "k"}')
    refused_line(capsys, ["train", "--method", "global-linear", "--subjects", small_subject, "-o", tmp_path / "dwi.npz"],
                 "dwi.json: already there and not a model's sidecar")
    assert (tmp_path / "dwi.json").read_text() == '{"SliceEncodingDirection": "k"}' and not (tmp_path / "dwi.npz").exists()
    # another model's sidecar (model.pt beside it) is refused too; a model's own, its weights deleted, is written over
    import shutil

    from ImageQualityTransferLib.fileio import model_files

    shutil.copy(Path(model_files.MODELS_DIR) / "global-linear_x2.json", tmp_path / "gl.json")
    (tmp_path / "gl.pt").write_bytes(b"")  # the weights gl.json belongs to, in another model file
    refused_line(capsys, ["train", "--method", "global-linear", "--subjects", small_subject, "-o", tmp_path / "gl.npz"],
                 "gl.json: the sidecar of the model")
    (tmp_path / "gl.pt").unlink()  # a model sidecar whose weights are gone: written over
    assert cli.main(["train", "--method", "global-linear", "--subjects", str(small_subject), "-o",
                     str(tmp_path / "gl.npz")]) == 0


def test_nifti_maps_an_earlier_version_wrote_beside_a_nrrd_output_are_retired_by_its_nrrd_maps(tmp_path, capsys):
    """An earlier version wrote `-o o.nrrd --maps`' maps as o_FA.nii.gz ... (their record naming o.nrrd); its rerun
    writes o_FA.nrrd ... and removes those, which would pass for the new output's; o.nii.gz's own maps stay."""
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.fileio.records import run_record

    dwi = make_phantom(shape=(12, 12, 8), voxel_mm=2.0, n_dirs=12)
    fileio.save_tensor(degrade(dwi, brain_mask(dwi).data, 2).tensor, tmp_path / "lr.nii.gz")
    assert cli.main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / "o.nrrd"), "--method", "cubic"]) == 0
    old = Volume(np.ones((12, 12, 8), np.float32), fileio.load_tensor(tmp_path / "o.nrrd").affine, "scalar")
    with run_record({"options": {"output": "o.nrrd"}}):
        for key in ("FA", "MD"):
            fileio.save_scalar(old, tmp_path / f"o_{key}.nii.gz", f"iqt cubic {key}")
    with run_record({"options": {"output": "p.nii.gz"}}):  # another output's map of another stem: stays
        fileio.save_scalar(old, tmp_path / "p_FA.nii.gz", "iqt cubic FA")
    capsys.readouterr()
    assert cli.main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / "o.nrrd"), "--method", "cubic",
                     "--maps"]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "o_FA.nii.gz").exists() and not (tmp_path / "o_MD.nii.gz").exists()
    assert (tmp_path / "o_FA.nrrd").is_file() and (tmp_path / "p_FA.nii.gz").is_file()
    assert "removed o_FA.nii.gz, o_MD.nii.gz: an earlier run's maps of o.nrrd" in out, out


def _small_lr(tmp_path):
    from helpers import bundle_volume

    fileio.save_tensor(bundle_volume(shape=(14, 10, 10)), tmp_path / "lr.nii.gz")
    return str(tmp_path / "lr.nii.gz")


def test_a_nhdr_outputs_earlier_maps_go_with_their_data_files(tmp_path, capsys):
    """`-o X.nhdr --maps`, then `-o X.nhdr`, had left six orphan X_*.raw.gz (no test held the data files' removal,
    a review of the NRRD maps): each retired header's data file goes with it, --propagate's too, and is said."""
    lr = _small_lr(tmp_path)
    out = str(tmp_path / "X.nhdr")
    assert cli.main(["upsample", lr, "-o", out, "--method", "biqt", "--maps", "--propagate", "--samples", "2",
                     "--no-tracts"]) == 0
    assert len(list(tmp_path.glob("X_*.raw.gz"))) == 10  # dtifit's 6 maps, the propagation's 4
    capsys.readouterr()
    assert cli.main(["upsample", lr, "-o", out, "--method", "cubic"]) == 0
    said = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X.nhdr", "X.raw.gz", "lr.nii.gz"]
    for name in ("X_FA", "X_fa_mean"):
        assert f"{name}.nhdr" in said and f"{name}.raw.gz" in said, said


def test_an_earlier_visitation_goes_with_its_data_file_once_the_outputs_are_in_place(tmp_path, capsys, monkeypatch):
    """`--propagate` then `--propagate --no-tracts` beside a .nhdr: the first run's X_visitation.nhdr and its data file
    are removed (they were unlinked at once, the data file unsaid, a review), but only at the commit: a run that fails
    keeps them."""
    lr = _small_lr(tmp_path)
    out = str(tmp_path / "X.nhdr")
    args = ["upsample", lr, "-o", out, "--method", "biqt", "--samples", "2", "--propagate"]
    assert cli.main(args + ["--n-seeds", "20"]) == 0
    vis = [tmp_path / "X_visitation.nhdr", tmp_path / "X_visitation.raw.gz"]
    before = {p: p.read_bytes() for p in vis}
    capsys.readouterr()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(fileio, "save_tensor", full)
        assert cli.main(args + ["--no-tracts"]) != 0
    assert {p: p.read_bytes() for p in vis} == before
    capsys.readouterr()
    assert cli.main(args + ["--no-tracts"]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("removed ")]
    assert not any(p.exists() for p in vis)
    assert len(said) == 1 and "X_visitation.nhdr" in said[0] and "X_visitation.raw.gz" in said[0], said


def test_an_earlier_visitation_given_as_the_mask_of_a_run_without_tracts_is_refused(tmp_path, capsys):
    """`iqt propagate -o P` then `iqt propagate -o P --mask P/visitation.nii.gz --no-tracts`: the earlier run's
    visitation, an input, cannot be removed, and had stayed beside the new maps as if this run's (a review). Refused in
    one line before any work; the folder stays as it was."""
    from ImageQualityTransferLib.fileio.records import run_record

    lr = _small_lr(tmp_path)
    folder = tmp_path / "P"
    folder.mkdir()
    with run_record({"command": "iqt propagate", "options": {"output": str(folder)}}):  # as the earlier run wrote it
        tensor = fileio.load_tensor(lr)  # on the input's grid: a mask the run would take
        fileio.save_scalar(Volume(np.ones(tensor.shape3, np.float32), tensor.affine, "scalar"), folder / "visitation.nii.gz")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert cli.main(["propagate", lr, "-o", str(folder), "--method", "biqt", "--samples", "2",
                     "--mask", str(folder / "visitation.nii.gz"), "--no-tracts"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "visitation.nii.gz" in err and "earlier run's" in err, err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def _stale_visitation(tmp_path):
    """An input and a folder holding an earlier propagation's visitation on the input's grid (a mask the run takes)."""
    from ImageQualityTransferLib.fileio.records import run_record

    lr = _small_lr(tmp_path)
    folder = tmp_path / "P"
    folder.mkdir()
    with run_record({"command": "iqt propagate", "options": {"output": str(folder)}}):  # as the earlier run wrote it
        tensor = fileio.load_tensor(lr)
        fileio.save_scalar(Volume(np.ones(tensor.shape3, np.float32), tensor.affine, "scalar"), folder / "visitation.nii.gz")
    return lr, folder


def test_an_earlier_visitation_under_a_name_differing_in_case_only_as_the_mask_is_refused(tmp_path, capsys,
                                                                                          monkeypatch):
    """Where names ignore case (macOS, Windows) `--mask P/Visitation.nii.gz -o P --no-tracts` names the stale
    P/visitation.nii.gz itself, which had been removed at the commit: the same file under a case-only other name is
    refused, the folder kept as it was. That disk stands in here as a hard link its folder's listing does not show
    (such a disk lists the one name the file was made with)."""
    from ImageQualityTransferLib.fileio import paths

    lr, folder = _stale_visitation(tmp_path)
    mask = folder / "Visitation.nii.gz"
    os.link(folder / "visitation.nii.gz", mask)
    listing = paths._listing
    monkeypatch.setattr(paths, "_listing", lambda d: listing(d) - ({mask.name} if d == os.path.realpath(folder) else set()))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert cli.main(["propagate", lr, "-o", str(folder), "--method", "biqt", "--samples", "2", "--mask", str(mask),
                     "--no-tracts"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"inputs (as {mask})" in err and "earlier run's" in err, err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize("given", ["a hard link elsewhere", "another file differing in case only",
                                   "a hard link differing in case only"])
def test_an_input_that_is_another_entry_than_the_earlier_visitation_runs_and_is_kept(tmp_path, capsys, given):
    """A hard link to P/visitation.nii.gz under another name, or (on a disk that keeps case, as here) the user's own
    other file P/Visitation.nii.gz or a hard link of that name, listed beside it, is not the stale name: the run goes
    on, removes P/visitation.nii.gz and keeps the input as it was (405cd33a had refused the first two, a review; the
    hard link differing in case only was refused as the same entry, a review)."""
    lr, folder = _stale_visitation(tmp_path)
    if given == "a hard link elsewhere":
        mask = tmp_path / "mask.nii.gz"
        os.link(folder / "visitation.nii.gz", mask)
    elif given == "a hard link differing in case only":
        mask = folder / "Visitation.nii.gz"
        os.link(folder / "visitation.nii.gz", mask)
    else:
        mask = folder / "Visitation.nii.gz"
        shutil.copyfile(folder / "visitation.nii.gz", mask)
    kept = mask.read_bytes()
    assert cli.main(["propagate", lr, "-o", str(folder), "--method", "biqt", "--samples", "2", "--mask", str(mask),
                     "--no-tracts"]) == 0, capsys.readouterr().err
    assert not (folder / "visitation.nii.gz").exists() and mask.read_bytes() == kept
