"""`iqt batch` at factors without a model, by the engine's rule (methods/factor_choice.py) as `iqt upsample` and the
Slicer module apply it: a learned method named for them is refused in one line that says what --voxel-size chose and a
coarser one whose factors have a model, nothing written; the default that runs the interpolation baseline says so in
each subject's row; interpolation and a method with its own --model are never refused for the factors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib import fileio  # noqa: E402
from ImageQualityTransferLib.core import tensors  # noqa: E402
from ImageQualityTransferLib.core.volume import Volume  # noqa: E402

from helpers import refused_line  # noqa: E402


def _six_mm(tmp_path):
    """A list naming one 6 mm isotropic tensor file (--voxel-size 1.5 gives factor 4, which no model has)."""
    d = np.broadcast_to(tensors.from_matrix(np.diag([1.7e-3, 3e-4, 3e-4])), (6, 6, 5, 6)).astype(np.float32)
    fileio.save_tensor(Volume(d, np.diag([-6.0, 6.0, 6.0, 1.0]), "tensor"), tmp_path / "six_dti.nii.gz")
    (tmp_path / "list.txt").write_text("six_dti.nii.gz\n")
    return tmp_path / "list.txt"


@pytest.mark.parametrize("args, said", [
    (["--method", "deep", "--voxel-size", "1.5"],
     ["--voxel-size 1.5 chose factor 4 for sub-sixdti: output voxel size 1.5x1.5x1.5 mm (input 6x6x6 mm); deep has shipped "
      "models for factor 2", "; --voxel-size 2 gives factor 3 (2x2x2 mm voxels), for which models ship"]),
    (["--method", "espcn-hetero", "--voxel-size", "2"],  # x3: espcn-hetero ships none, deep does
     ["chose factor 3 for sub-sixdti: output voxel size 2x2x2 mm", "espcn-hetero has shipped models for factor 2",
      "; --voxel-size 3 gives factor 2 (3x3x3 mm voxels), for which models ship"]),
    (["--uncertainty", "--voxel-size", "1.5"],  # the default with a map: none has a model for factor 4
     ["--voxel-size 1.5 chose factor 4 for sub-sixdti: output voxel size 1.5x1.5x1.5 mm",
      "no method with an uncertainty map has a model for factor 4", "--voxel-size 2 gives factor 3"]),
    (["--method", "cubic", "--uncertainty", "--voxel-size", "1.5"],
     ["method 'cubic' gives no uncertainty; drop --uncertainty", "--voxel-size 2 gives factor 3"]),
    (["--method", "rf", "--factor", "4"], ["rf has shipped models for factor 2", "give --model for factor 4"]),
])
def test_a_learned_method_without_a_model_is_refused_as_upsample_refuses_it(tmp_path, capsys, args, said):
    """The line had named neither the output voxel size --voxel-size chose nor a coarser one with a model (iqt upsample
    names both), and the default asked for a map had not said what --voxel-size chose: one line, exit 2, no folder."""
    listing = _six_mm(tmp_path)
    refused_line(capsys, ["batch", listing, "-o", tmp_path / "out", *args], *said)
    assert not (tmp_path / "out").exists()


def test_the_default_that_runs_interpolation_says_so_for_its_subjects_and_other_runs_are_not_refused(tmp_path):
    """Without --method, factor 4 ran cubic without a word (iqt upsample says it, the Slicer module notes it): the plan
    carries the line, with the coarser --voxel-size, and a subject's row and sidecar hold it (its notes); interpolation
    asked by name at any factors, and the default where a model ships, carry none."""
    import argparse

    from ImageQualityTransferLib.apps import batch
    from ImageQualityTransferLib.apps.cli import build_parser
    from ImageQualityTransferLib.apps.cli.batch_plan import _method_for, factor_groups

    listing = _six_mm(tmp_path)
    items = batch.find_items(listing)

    def plan(*argv):
        args = build_parser().parse_args(["batch", str(listing), "-o", str(tmp_path / "o"), *argv])
        assert isinstance(args, argparse.Namespace)
        (f, group), = factor_groups(args, items) if args.voxel_size is not None else [((4, 4, 4), items)]
        return f, _method_for(args, f, group if args.voxel_size is not None else ())

    f, (name, _, note) = plan("--voxel-size", "1.5")
    assert f == (4, 4, 4) and name == "cubic", (f, name)
    assert note == ("no learned model ships for factor 4, so the default ran the interpolation baseline (cubic); for a "
                    "learned one give --method and --model with a model trained for these factors ('iqt train'); "
                    "--voxel-size 2 gives factor 3 (2x2x2 mm voxels), for which models ship"), note
    assert plan("--method", "cubic", "--voxel-size", "1.5")[1][2] == ""
    assert plan("--method", "linear", "--factor", "4")[1][:3:2] == ("linear", "")
    f, (name, _, note) = plan("--voxel-size", "2")
    assert f == (3, 3, 3) and name == "deep" and note == "", (f, name, note)
    res = batch.run_cohort(items, batch.Settings(method="cubic", factor=4, note=plan("--voxel-size", "1.5")[1][2]),
                           tmp_path / "o", progress=False)
    assert res[0]["status"] == "done" and any("so the default ran the interpolation baseline" in n
                                              for n in res[0]["notes"]), res
    row = dict(zip(*[line.split("\t") for line in (tmp_path / "o" / "qc.tsv").read_text().splitlines()[:2]]))
    assert "no learned model ships for factor 4" in row["notes"] and "--voxel-size 2 gives factor 3" in row["notes"], row


def test_a_group_of_subjects_of_different_voxel_sizes_is_told_no_coarser_voxel_size_true_for_one_only(tmp_path):
    """3x3x6 mm and 2.7x2.7x5.4 mm subjects both get factors 2,2,4 at --voxel-size 1.5; the note had told both
    "--voxel-size 2.7 gives factors 1,1,2", the first's, which gives the 3x3x6 mm one 2,2,3 (no model): the group's
    note then names no coarser voxel size."""
    from ImageQualityTransferLib.apps import batch
    from ImageQualityTransferLib.apps.cli import build_parser
    from ImageQualityTransferLib.apps.cli.batch_plan import _method_for, factor_groups

    d = np.broadcast_to(tensors.from_matrix(np.diag([1.7e-3, 3e-4, 3e-4])), (6, 6, 5, 6)).astype(np.float32)
    for name, mm in (("thin_dti", (2.7, 2.7, 5.4)), ("thick_dti", (3.0, 3.0, 6.0))):
        fileio.save_tensor(Volume(d, np.diag([-mm[0], mm[1], mm[2], 1.0]), "tensor"), tmp_path / f"{name}.nii.gz")
    (tmp_path / "list.txt").write_text("thin_dti.nii.gz\nthick_dti.nii.gz\n")
    args = build_parser().parse_args(["batch", str(tmp_path / "list.txt"), "-o", str(tmp_path / "o"),
                                      "--voxel-size", "1.5"])
    (f, group), = factor_groups(args, batch.find_items(tmp_path / "list.txt"))
    name, _, note = _method_for(args, f, group)
    assert f == (2, 2, 4) and len(group) == 2 and name == "cubic", (f, group, name)
    assert note.endswith("trained for these factors ('iqt train')") and "--voxel-size 2.7" not in note, note


def test_a_model_given_for_other_factors_gets_no_coarser_voxel_size_from_upsample_or_batch(tmp_path, capsys):
    """With --model, the coarser --voxel-size is the factor rule's to name (methods/factor_choice.py, which names none
    for a given model): iqt upsample had added its own, "--voxel-size 2 gives factor 3 ..., for which models ship",
    to the loader's line where iqt batch and the Slicer Logic said none, though the x2 model given fails at factor 3 too."""
    from ImageQualityTransferLib.fileio.paths import MODELS_DIR

    listing = _six_mm(tmp_path)
    model = ["--method", "biqt", "--model", MODELS_DIR / "biqt_x2.npz", "--voxel-size", "1.5"]
    said = [refused_line(capsys, ["upsample", tmp_path / "six_dti.nii.gz", "-o", tmp_path / "hr.nii.gz", *model],
                         "--voxel-size 1.5 chose factor 4: output voxel size 1.5x1.5x1.5 mm"),
            refused_line(capsys, ["batch", listing, "-o", tmp_path / "out", *model], "--voxel-size 1.5 chose factor 4")]
    for line in said:
        assert "this biqt model is for factor 2, not 4" in line and "for which models ship" not in line, line
    assert not (tmp_path / "hr.nii.gz").exists() and not (tmp_path / "out").exists()


@pytest.mark.slow  # torch loads the --model (about 6 s)
def test_iqt_propagate_names_a_coarser_voxel_size_only_where_the_method_has_no_model_for_the_factors(tmp_path, capsys):
    """iqt propagate had added "--voxel-size 3 gives factors 1,1,2 ..., for which models ship" to refusals that are not
    about the factors (--samples 1 at factors 1,1,3, which ship) and to a --model given for other factors, which fails at
    those too (a review); iqt upsample names one only as the factor rule does (methods/factor_choice.py). Where the
    method has no model for the factors chosen, the coarser voxel size is still named."""
    from ImageQualityTransferLib.fileio.paths import MODELS_DIR

    d = np.broadcast_to(tensors.from_matrix(np.diag([1.7e-3, 3e-4, 3e-4])), (6, 6, 5, 6)).astype(np.float32)
    fileio.save_tensor(Volume(d, np.diag([-2.0, 2.0, 6.0, 1.0]), "tensor"), tmp_path / "thick.nii.gz")
    _six_mm(tmp_path)
    run = ["propagate", "-o", tmp_path / "out", "--method", "deep-hetero-var1", "--no-tracts"]
    said = [refused_line(capsys, [*run, tmp_path / "thick.nii.gz", "--voxel-size", "2", "--samples", "1"],
                         "--voxel-size 2 chose factors 1,1,3", "--samples 1: "),
            refused_line(capsys, [*run, tmp_path / "six_dti.nii.gz", "--voxel-size", "1.5", "--model",
                                  MODELS_DIR / "deep-hetero-var1_x2.pt"], "model is for factor 2, not 4")]
    for line in said:
        assert "for which models ship" not in line, line
    refused_line(capsys, [*run, tmp_path / "six_dti.nii.gz", "--voxel-size", "1.5"],
                 "--voxel-size 2 gives factor 3 (2x2x2 mm voxels), for which models ship")
    assert not (tmp_path / "out").exists()


def test_iqt_propagate_given_a_model_for_other_factors_advises_no_interpolation_method(tmp_path, capsys):
    """iqt propagate's refusal of a --model for other factors had ended "or an interpolation method (cubic) for
    factor 4", the loader's advice, and propagate then refused cubic (no uncertainty map: a review): it names only what
    propagate takes, with --factor as with --voxel-size; iqt upsample keeps the advice, where cubic runs."""
    from ImageQualityTransferLib.fileio.paths import MODELS_DIR

    _six_mm(tmp_path)
    run = ["propagate", tmp_path / "six_dti.nii.gz", "-o", tmp_path / "out", "--method", "biqt", "--model",
           MODELS_DIR / "biqt_x2.npz", "--no-tracts"]
    for size in (["--voxel-size", "1.5"], ["--factor", "4"]):
        line = refused_line(capsys, [*run, *size], "this biqt model is for factor 2, not 4; use --factor 2")
        assert "cubic" not in line and "interpolation" not in line, line
    assert not (tmp_path / "out").exists()
    refused_line(capsys, ["upsample", tmp_path / "six_dti.nii.gz", "-o", tmp_path / "hr.nii.gz", "--method", "biqt",
                          "--model", MODELS_DIR / "biqt_x2.npz", "--factor", "4"], "or an interpolation method (cubic)")


def test_the_loader_leaves_the_interpolation_advice_out_where_its_caller_asks():
    """The loader's refusal of a model for other factors advises cubic unless its caller cannot run it (`cubic=False`,
    iqt propagate's): the advice comes from the loader, not from a clause cut out of its text afterwards (a reworded
    clause would have stayed in propagate's line with no error)."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.fileio.paths import MODELS_DIR

    said = {}
    for cubic in (True, False):
        with pytest.raises(IQTError) as caught:
            methods.get("biqt", model=str(MODELS_DIR / "biqt_x2.npz")).load(4, cubic=cubic)
        said[cubic] = str(caught.value)
    assert said[True].endswith("; use --factor 2, or an interpolation method (cubic) for factor 4"), said[True]
    assert said[False].endswith("; use --factor 2"), said[False]
    assert said[True].startswith(said[False]), said


def test_a_model_given_for_other_factors_is_told_the_voxel_size_that_gives_its_own(tmp_path, capsys):
    """--model biqt_x1x1x3.npz --voxel-size 1.5 on a 2x2x6 mm scan (factors 2,2,4) had been refused naming no voxel size,
    where --voxel-size 2 gives the model's own factors 1,1,3 (a review): iqt upsample and iqt propagate name it, from
    the factor rule (methods/factor_choice.py); a model whose factors no voxel size gives (x2 on 2x2x6 mm) gets none."""
    from ImageQualityTransferLib.fileio.paths import MODELS_DIR
    from ImageQualityTransferLib.methods.factor_choice import choose

    d = np.broadcast_to(tensors.from_matrix(np.diag([1.7e-3, 3e-4, 3e-4])), (6, 6, 5, 6)).astype(np.float32)
    fileio.save_tensor(Volume(d, np.diag([-2.0, 2.0, 6.0, 1.0]), "tensor"), tmp_path / "thick.nii.gz")
    hint = "; --voxel-size 2 gives factors 1,1,3 (2x2x2 mm voxels), which the given model serves"
    model = ["--method", "biqt", "--model", MODELS_DIR / "biqt_x1x1x3.npz", "--voxel-size", "1.5"]
    for command in (["upsample", tmp_path / "thick.nii.gz", "-o", tmp_path / "hr.nii.gz"],
                    ["propagate", tmp_path / "thick.nii.gz", "-o", tmp_path / "out", "--no-tracts"]):
        line = refused_line(capsys, [*command, *model], "--voxel-size 1.5 chose factors 2,2,4",
                            "this biqt model is for factors 1,1,3, not 2,2,4")
        assert line.endswith(hint), line
    assert not (tmp_path / "hr.nii.gz").exists() and not (tmp_path / "out").exists()
    assert choose("biqt", voxel_size=(2.0, 2.0, 6.0), target=1.5, model=MODELS_DIR / "biqt_x1x1x3.npz").hint == hint
    assert choose("biqt", voxel_size=(2.0, 2.0, 6.0), target=1.5, model=MODELS_DIR / "biqt_x2.npz").hint == ""
    assert choose("biqt", voxel_size=(2.0, 2.0, 6.0), target=2, model=MODELS_DIR / "biqt_x1x1x3.npz").hint == ""


@pytest.mark.parametrize("named", [0, [1, 1, 100_000_000]])
def test_a_damaged_sidecars_factors_leave_its_refusal_to_the_loader(tmp_path, capsys, named):
    """A --model whose sidecar was edited to factors no --factor can be (0, or above 10,000) had been refused at
    --voxel-size as "--factor 0,0,0: every factor must be a positive integer", a --factor never given, before the
    loader's line that the sidecar is damaged (the voxel size hint read them first)."""
    import json
    import shutil

    from ImageQualityTransferLib.fileio.paths import MODELS_DIR

    shutil.copy(MODELS_DIR / "biqt_x2.npz", tmp_path / "edited.npz")
    sidecar = json.loads((MODELS_DIR / "biqt_x2.json").read_text())
    (tmp_path / "edited.json").write_text(json.dumps({**sidecar, "factor": named}))
    d = np.broadcast_to(tensors.from_matrix(np.diag([1.7e-3, 3e-4, 3e-4])), (6, 6, 5, 6)).astype(np.float32)
    fileio.save_tensor(Volume(d, np.diag([-2.0, 2.0, 6.0, 1.0]), "tensor"), tmp_path / "thick.nii.gz")
    line = refused_line(capsys, ["upsample", tmp_path / "thick.nii.gz", "-o", tmp_path / "hr.nii.gz", "--model",
                                 tmp_path / "edited.npz", "--voxel-size", "1.5"],
                        "--voxel-size 1.5 chose factors 2,2,4", "edited or damaged")
    assert "--factor" not in line.partition("edited or damaged")[0], line
    assert not (tmp_path / "hr.nii.gz").exists()


@pytest.mark.realdata
def test_a_model_for_other_factors_than_voxel_size_chose_names_the_voxel_size_that_runs_it(tmp_path, capsys):
    """--model biqt_x2 with --voxel-size 1 on a crop of the 3 mm dev scan (factor 3): the line had said the loader's
    refusal alone, where `iqt upsample` names --voxel-size 1.5, which gives the model's own factor 2 (one engine
    function, methods/factor_choice.py model_hint); nothing written."""
    import shutil

    import nibabel as nib

    from helpers import AXIAL, need_data
    from ImageQualityTransferLib.fileio.paths import MODELS_DIR

    folder = need_data(AXIAL)
    (tmp_path / "crop").mkdir()
    nib.save(nib.load(folder / "dwi.nii.gz").slicer[24:40, 24:40, 12:20], tmp_path / "crop" / "dwi.nii.gz")
    for ext in ("bval", "bvec"):
        shutil.copy(folder / f"dwi.{ext}", tmp_path / "crop" / f"dwi.{ext}")
    (tmp_path / "list.txt").write_text("crop\n")
    refused_line(capsys, ["batch", tmp_path / "list.txt", "-o", tmp_path / "out", "--model", MODELS_DIR / "biqt_x2.npz",
                          "--voxel-size", "1"],
                 "--voxel-size 1 chose factor 3 for sub-crop; ", "this biqt model is for factor 2, not 3",
                 "; --voxel-size 1.5 gives factor 2 (1.5x1.5x1.5 mm voxels), which the given model serves")
    assert not (tmp_path / "out").exists()
