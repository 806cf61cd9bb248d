"""Propagation (`iqt upsample --propagate`, `iqt propagate`): its maps cover every voxel the prediction fills (with
a low-res --mask, the one-voxel margin that the methods fill read 0, "certain", in every map), and options that
the others make idle are refused, not ignored (`--seeds` beside `--no-tracts`, `--n-seeds` beside `--seeds`)."""

from __future__ import annotations

import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.dmri.degrade import degrade
from ImageQualityTransferLib.dmri.dti import brain_mask
from ImageQualityTransferLib.dmri.phantom import make_phantom


@pytest.fixture(scope="module")
def lowres(tmp_path_factory):
    d = tmp_path_factory.mktemp("prop")
    dwi = make_phantom(shape=(20, 22, 16), voxel_mm=2.0, n_dirs=12)
    pair = degrade(dwi, brain_mask(dwi).data, 2)
    fileio.save_tensor(pair.tensor, d / "lr.nii.gz")
    fileio.save_mask(pair.mask, d / "m.nii.gz")
    return d


def test_the_maps_cover_every_voxel_the_prediction_fills(lowres, tmp_path, capsys):
    assert cli.main(["upsample", str(lowres / "lr.nii.gz"), "--mask", str(lowres / "m.nii.gz"), "-o",
                     str(tmp_path / "o.nii.gz"), "--method", "espcn-hetero-var1", "--mc-samples", "2", "--propagate",
                     "--samples", "3", "--no-tracts"]) == 0
    filled = np.any(fileio.load_tensor(tmp_path / "o.nii.gz").data != 0, axis=-1)
    from ImageQualityTransferLib.core.grid import repeat_blocks

    blocks = repeat_blocks(fileio.load_mask(lowres / "m.nii.gz").data.astype(bool), 2)
    assert (filled & ~blocks).sum() > 0  # the margin the method fills beyond the mask's blocks
    from ImageQualityTransferLib.core import tensors

    t = fileio.load_tensor(tmp_path / "o.nii.gz").data
    spread = filled & (tensors.fa(t) < 0.99)  # every sample of a voxel whose FA is clipped at 1 reads 1: no spread
    diffusing = filled & (tensors.md(t) > 0)  # md_mean reads 0 where the prediction's MD, or 3 samples' mean, is <= 0
    for name, where, share in (("md_std", filled, 0.99), ("md_mean", diffusing, 0.95), ("fa_std", spread, 0.9)):
        m = fileio.load_scalar(tmp_path / f"o_{name}.nii.gz").data
        assert (m[where] != 0).mean() > share, name  # before: 0.385 of them (the mask's blocks)
        assert not m[~filled].any(), name


@pytest.mark.parametrize("extra, words", [
    (["--seeds", "SEEDS", "--no-tracts"], "--no-tracts draws no tracts to seed"),
    (["--seeds", "SEEDS", "--n-seeds", "5"], "--n-seeds 5: --seeds"),
    (["--no-tracts", "--n-seeds", "5"], "--n-seeds 5: --no-tracts draws no tracts"),
    (["--no-tracts", "--fa-threshold", "0.5", "--step", "3"], "--fa-threshold, --step: --no-tracts draws no tracts"),
])
@pytest.mark.parametrize("command", ["upsample", "propagate"])
def test_options_made_idle_are_refused(lowres, tmp_path, capsys, extra, words, command):
    seeds = tmp_path / "roi.nii.gz"
    lr = fileio.load_tensor(lowres / "lr.nii.gz")
    fileio.save_mask(lr.replace(data=np.ones(lr.shape3, bool), kind="mask"), seeds)
    extra = [str(seeds) if a == "SEEDS" else a for a in extra]
    args = ([command, str(lowres / "lr.nii.gz"), "-o", str(tmp_path / ("o.nii.gz" if command == "upsample" else "d")),
             "--method", "espcn-hetero-var1"] + (["--propagate"] if command == "upsample" else []) + extra)
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("iqt: error: ") and words in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roi.nii.gz"]


def test_the_tracts_keep_inside_the_mask_s_blocks(lowres, tmp_path, capsys):
    """The maps cover the margin; the random seeds and the tracts do not (169 of 1000 seeds fell in it, and
    the tract Dice between samples changed)."""
    from ImageQualityTransferLib.core.grid import repeat_blocks

    assert cli.main(["upsample", str(lowres / "lr.nii.gz"), "--mask", str(lowres / "m.nii.gz"), "-o",
                     str(tmp_path / "o.nii.gz"), "--method", "espcn-hetero-var1", "--mc-samples", "2", "--propagate",
                     "--samples", "3", "--n-seeds", "200", "--fa-threshold", "0.1"]) == 0
    blocks = repeat_blocks(fileio.load_mask(lowres / "m.nii.gz").data.astype(bool), 2)
    visits = fileio.load_scalar(tmp_path / "o_visitation.nii.gz").data
    # a tract's last step may end in the voxel beyond (1.5 % of the visits here); with seeds and tracts in the margin
    # it held 87 % of them
    assert visits[blocks].any() and visits[~blocks].sum() < 0.05 * visits.sum()


def test_propagate_takes_voxel_size_and_a_models_own_factors(lowres, tmp_path, capsys):
    """`iqt propagate --voxel-size MM`, and a thick-slice --model without --factor, choose the factors from the input's
    grid as `iqt upsample` does (propagate had run a --model of factors 1,1,3 at 2, and been refused)."""
    import json
    from pathlib import Path

    from ImageQualityTransferLib.fileio import model_files

    lr = fileio.load_tensor(lowres / "lr.nii.gz")  # 4 mm voxels
    assert cli.main(["propagate", str(lowres / "lr.nii.gz"), "-o", str(tmp_path / "a"), "--method", "espcn-hetero-var1",
                     "--mc-samples", "2", "--samples", "2", "--no-tracts", "--voxel-size", "2"]) == 0
    said = capsys.readouterr().out
    assert "factor 2: output voxel size 2x2x2 mm (input 4x4x4 mm)" in said, said
    assert fileio.load_scalar(tmp_path / "a" / "fa_std.nii.gz").shape3 == tuple(2 * n for n in lr.shape3)
    model = str(Path(model_files.MODELS_DIR) / "espcn-hetero-var1_x1x1x3_noisy.pt")
    assert cli.main(["propagate", str(lowres / "lr.nii.gz"), "-o", str(tmp_path / "b"), "--model", model,
                     "--mc-samples", "2", "--samples", "2", "--no-tracts"]) == 0, capsys.readouterr().err
    assert fileio.load_scalar(tmp_path / "b" / "fa_std.nii.gz").shape3 == (*lr.shape3[:2], 3 * lr.shape3[2])
    assert json.loads((tmp_path / "b" / "propagation.json").read_text())["settings"]["factor"] == [1, 1, 3]


def test_a_refusal_after_voxel_size_chose_is_the_run_s_only_line(lowres, tmp_path, capsys):
    """`iqt upsample --voxel-size` printed the factors it chose, then refused the run (here a seed ROI that is not a
    mask): the refusal is now the only line (a thick-slice audit)."""
    bad = tmp_path / "seeds.nii.gz"
    bad.write_bytes(b"not an image")
    code = cli.main(["upsample", str(lowres / "lr.nii.gz"), "-o", str(tmp_path / "o.nii.gz"), "--voxel-size", "2",
                     "--method", "espcn-hetero-var1", "--propagate", "--samples", "2", "--seeds", str(bad)])
    said = capsys.readouterr()
    assert code == 2 and "seeds.nii.gz" in said.err, said
    assert "output voxel size" not in said.out, said.out


def test_factors_voxel_size_chose_without_a_model_are_said_with_what_chose_them(lowres, tmp_path, capsys):
    """A model refusal after --voxel-size chose the factors says so (upsample did, propagate did not), and no longer
    ends in an empty list of methods where none has a model for them (a review)."""
    code = cli.main(["propagate", str(lowres / "lr.nii.gz"), "-o", str(tmp_path / "o"), "--method",
                     "espcn-hetero-var1", "--voxel-size", "1", "--samples", "2", "--no-tracts"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("iqt: error: --voxel-size 1 chose factor 4: ") and not err.endswith(": "), err
    assert "nor has any other method with an uncertainty map (espcn-hetero-var1's models are for " in err, err


@pytest.mark.parametrize("command", ["propagate", "upsample"])
def test_factors_no_uncertainty_model_has_are_refused_naming_every_shipped_set(lowres, tmp_path, capsys, command):
    """Factors none of the methods with an uncertainty map has a model for: one sentence naming the factor sets their
    models are for, read from the registry (it had read "..., or no method with an uncertainty map ships one (give
    factors the shipped models have, e.g. 2 or 3)", leaving out 1,1,2 and 1,1,3: a wording audit)."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.core import grid
    from ImageQualityTransferLib.fileio.model_files import shipped_factor_sets

    out = tmp_path / ("o.nii.gz" if command == "upsample" else "o")
    code = cli.main([command, str(lowres / "lr.nii.gz"), "-o", str(out), "--factor", "1,1,4", "--method", "biqt",
                     "--samples", "2", "--no-tracts"] + (["--propagate"] if command == "upsample" else []))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    sets = []
    for name in methods.with_uncertainty():  # the registry's, each set once
        if methods.method_class(name).learned and methods.runs_here(name):
            sets += [f for f in shipped_factor_sets(name) if f not in sets]
    assert {(1, 1, 2), (1, 1, 3), (2, 2, 2)} <= set(sets), sets
    assert set(shipped_factor_sets("biqt")) == set(sets)  # biqt has every set: its own list names them all
    own = shipped_factor_sets("biqt")
    named = err.partition("(biqt's models are for ")[2].partition(", per-axis ones along any voxel axis)")[0]
    assert named == ", ".join(grid.describe(f) for f in own[:-1]) + " and " + grid.describe(own[-1]), err
    assert "e.g." not in err and "--model with a model trained for 1,1,4" in err and err.count(";") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("command", ["propagate", "upsample"])
def test_a_refusal_names_the_methods_own_factors_apart_from_the_others(lowres, tmp_path, capsys, command):
    """espcn-hetero at factors no uncertainty model has: its own shipped sets are named as its, and a set only other
    methods have (factor 3) with the methods that run it; "their models are for factor 2, factor 3, ..." had sent
    espcn-hetero to factor 3, where it has no model."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.core import grid
    from ImageQualityTransferLib.fileio.model_files import shipped_factor_sets

    own = shipped_factor_sets("espcn-hetero")
    assert own and (3, 3, 3) not in own, own
    out = tmp_path / ("o.nii.gz" if command == "upsample" else "o")
    code = cli.main([command, str(lowres / "lr.nii.gz"), "-o", str(out), "--factor", "4", "--method", "espcn-hetero",
                     "--samples", "2", "--no-tracts"] + (["--propagate"] if command == "upsample" else []))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    named = err.partition("(espcn-hetero's models are for ")[2].partition(", per-axis ones along any voxel axis")[0]
    assert named == ", ".join(grid.describe(f) for f in own[:-1]) + " and " + grid.describe(own[-1]), err
    three = methods.with_uncertainty(3)
    assert f"and factor 3 runs {', '.join(three[:-1])} or {three[-1]})" in err and "espcn-hetero" not in three, err
    assert not out.exists()


@pytest.mark.parametrize("command", ["propagate", "upsample"])
def test_samples_are_capped_as_mc_samples_are(lowres, tmp_path, capsys, monkeypatch, command):
    """--samples 100000000 --no-tracts was taken and ran on without end (--mc-samples had its cap already)."""
    from ImageQualityTransferLib.apps.cli import options
    from ImageQualityTransferLib.methods.base import MAX_SAMPLES

    def no_prediction(*a, **k):
        raise AssertionError("the prediction ran")

    monkeypatch.setattr(options, "predict_with_mask", no_prediction)
    out = tmp_path / ("p" if command == "propagate" else "o.nii.gz")
    more = [] if command == "propagate" else ["--propagate"]
    code = cli.main([command, str(lowres / "lr.nii.gz"), "--method", "biqt", "-o", str(out), "--no-tracts",
                     "--samples", str(MAX_SAMPLES + 1), *more])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines() == [
        f"iqt: error: --samples {MAX_SAMPLES + 1}: give at most {MAX_SAMPLES} (each sample is one more draw of the whole "
        "high-res volume, tracked unless --no-tracts; the default is 100)"], err
    assert list(tmp_path.iterdir()) == []
