"""A run that needs an uncertainty map picks the best method that gives one at the factors asked: `iqt propagate` (was
espcn-hetero, which has no ×3 model, so `--factor 3` failed), `iqt lesion-check` (was espcn-hetero-var1, the same),
`iqt upsample --uncertainty/--propagate` and `iqt batch --uncertainty` without `--method` (ran `deep`, which gives none,
and refused)."""

from __future__ import annotations

import json

import pytest

from ImageQualityTransferLib import methods
from ImageQualityTransferLib.analysis import lesion
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.core.errors import IQTError

from helpers import bundle_file

SHIPPED = [(2, 2, 2), (3, 3, 3), (1, 1, 2), (1, 1, 3), (3, 1, 1)]


@pytest.fixture()
def lr_path(tmp_path):
    return bundle_file(tmp_path / "lr.nii.gz", shape=(12, 10, 10))


def test_the_default_with_an_uncertainty_map_is_deep_hetero_var1_at_every_shipped_factor_set():
    pytest.importorskip("torch", reason="PyTorch is not installed: without it the default is biqt")
    for f in SHIPPED:
        assert methods.default_method(f, uncertainty=True) == "deep-hetero-var1", f
        assert lesion.default_methods(f) == ["deep-hetero-var1", "biqt"], f
    with pytest.raises(IQTError, match="no method with an uncertainty map has a model for factor 4"):
        methods.default_method((4, 4, 4), uncertainty=True)
    assert methods.default_method((4, 4, 4)) == "cubic"  # without the need, interpolation still runs


def test_propagate_without_method_runs_the_default_uncertainty_method_at_x3(tmp_path, lr_path, capsys):
    pytest.importorskip("torch", reason="PyTorch is not installed")
    out = tmp_path / "p"
    rc = main(["propagate", str(lr_path), "-o", str(out), "--factor", "3", "--samples", "2", "--no-tracts", "--mc-samples", "0"])
    text = capsys.readouterr()
    assert rc == 0, text.err
    assert "2 samples of deep-hetero-var1" in text.out, text.out
    assert json.loads((out / "propagation.json").read_text())["method"] == "deep-hetero-var1"


@pytest.mark.parametrize("need", [["--uncertainty", "sd.nii.gz"], ["--propagate", "--samples", "2", "--no-tracts"]])
def test_upsample_asked_for_an_uncertainty_without_method_runs_one_that_gives_it(tmp_path, lr_path, capsys, need):
    pytest.importorskip("torch", reason="PyTorch is not installed")
    need = [str(tmp_path / a) if a.endswith(".nii.gz") else a for a in need]
    rc = main(["upsample", str(lr_path), "-o", str(tmp_path / "o.nii.gz"), "--mc-samples", "0"] + need)
    text = capsys.readouterr()
    assert rc == 0, text.err
    assert "(deep-hetero-var1, shipped model deep-hetero-var1_x2.pt" in text.out, text.out


def test_a_method_without_a_model_for_the_factors_names_only_methods_with_an_uncertainty_map(tmp_path, lr_path, capsys):
    out = tmp_path / "p"
    rc = main(["propagate", str(lr_path), "-o", str(out), "--method", "espcn-hetero", "--factor", "3"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert "espcn-hetero has no shipped model for factor 3" in err, err
    offered = err.rsplit(": ", 1)[1].strip().split(", ")
    assert "biqt" in offered and all(methods.method_class(n).gives_uncertainty for n in offered), offered
    assert not out.exists()


def test_iqt_methods_marks_the_default_for_an_uncertainty_map(capsys):
    pytest.importorskip("torch", reason="PyTorch is not installed: without it the default is biqt")
    assert main(["methods"]) == 0
    marked = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.endswith("(default for an uncertainty map)")]
    assert marked == ["deep-hetero-var1"]


@pytest.mark.parametrize("need", [["--uncertainty", "u.nii.gz"], ["--propagate", "--samples", "2"]])
def test_a_missing_model_is_said_as_missing_when_an_uncertainty_map_is_asked_for(tmp_path, lr_path, capsys, need):
    """It blamed the default method for giving no uncertainty (researcher audit, stop 57)."""
    need = [str(tmp_path / a) if a.endswith(".nii.gz") else a for a in need]
    rc = main(["upsample", str(lr_path), "-o", str(tmp_path / "o.nii.gz"), "--model", str(tmp_path / "missing.npz")]
                        + need)
    err = capsys.readouterr().err
    assert rc == 2 and "missing.npz: model file not found" in err and "gives no uncertainty" not in err, err
    assert not (tmp_path / "o.nii.gz").exists()


def test_a_model_registered_for_factors_the_preferred_methods_lack_is_the_default_there(monkeypatch):
    """A user's global-linear x4 model put in the registry with 'iqt train --register' ran only with --method: the default
    at x4 was cubic, which said to give --method and --model (researcher audit, stop 57)."""
    from ImageQualityTransferLib.methods import registry

    ready = registry.ready
    monkeypatch.setattr(registry, "ready", lambda f=2: ready(f) + (["global-linear"] if registry.grid.factors(f) == (4, 4, 4) else []))
    assert methods.default_method((4, 4, 4)) == "global-linear"
    assert methods.viewer_default((4, 4, 4)) == "global-linear"  # none with an uncertainty map there
    with pytest.raises(IQTError):
        methods.default_method((4, 4, 4), uncertainty=True)
    assert methods.default_method((5, 5, 5)) == "cubic"


def test_the_viewers_default_is_cubic_where_the_factors_make_voxels_far_from_isotropic():
    """Factors 1,3,1 on a 2.7 mm isotropic scan give 2.71 x 0.90 x 2.70 mm voxels, which a learned method's run warns
    are off its training (use cubic): the viewers' default had been deep-hetero-var1 there (a clinician's audit)."""
    from ImageQualityTransferLib.methods.base import off_training_anisotropy

    sagittal = (2.7073, 2.7073, 2.7)
    assert off_training_anisotropy(sagittal, (1, 3, 1)) == pytest.approx(3.0, abs=0.01)
    assert methods.viewer_default((1, 3, 1), sagittal) == "cubic"
    assert off_training_anisotropy((2.0, 2.0, 6.0), (1, 1, 3)) is None
    assert methods.viewer_default((1, 1, 3), (2.0, 2.0, 6.0)) == methods.viewer_default((1, 1, 3))
    assert methods.viewer_default((2, 2, 2), sagittal) == methods.viewer_default((2, 2, 2))
