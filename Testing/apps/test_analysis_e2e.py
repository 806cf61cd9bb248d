"""End to end on a small input: `iqt lesion-check` on a coarse phantom subject folder (32x36x28 voxels of 4 mm, 12
directions: a few seconds), plus the lesion table's helpers (`iqt report`'s end to end: Testing/apps/test_report.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ImageQualityTransferLib.analysis import lesion
from ImageQualityTransferLib.apps.cli import main


def _have_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
def test_lesion_check_end_to_end_reports_every_uncertainty_map(small_subject, tmp_path, capsys):
    names = ["espcn-hetero-var1", "biqt"] if _have_torch() else ["biqt"]
    out = tmp_path / "rows.json"
    samples = ["--mc-samples", "2"] if _have_torch() else []  # biqt alone draws none: the option would be refused
    rc = main(["lesion-check", str(small_subject), "--methods", ",".join(names), "--kinds", "edema,tumour",
               *samples, "--json", str(out)])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    doc = json.loads(out.read_text())
    rows = doc["rows"]  # beside what ran: a x1,1,3 file had been told from a x2 one by nothing
    assert doc["settings"]["factor"] == 2 and doc["settings"]["radius_mm"] == 8 and doc["version"]
    assert doc["settings"]["mc_samples"] == (2 if _have_torch() else None) and "biqt" in doc["settings"]["models"]
    assert "factor 2, lesions of 8 mm radius" in printed.out
    got = {(r["kind"], r["method"], r["component"]) for r in rows}
    for kind in ("edema", "tumour"):
        assert (kind, "biqt", "total") in got and (kind, "biqt", "direction") in got
        if "espcn-hetero-var1" in names:
            for c in ("total", "intrinsic", "parameter", "MD std", "FA std", "direction"):
                assert (kind, "espcn-hetero-var1", c) in got
        assert f"best uncertainty for the {kind} lesion:" in printed.out
    assert all(0.0 <= r["auc"] <= 1.0 and 0.0 <= r["angle_error_auc"] <= 1.0 and r["n_lesion"] > 10
               and r["n_control"] > 10 for r in rows)
    # raised isotropic diffusivity is far outside the training data: the total uncertainty flags it
    edema = [r["auc"] for r in rows if r["kind"] == "edema" and r["component"] == "total"]
    assert min(edema) > 0.8


def test_best_and_table_name_the_best_map_and_flag_a_miss():
    rows = [{"subject": s, "kind": k, "method": "m", "component": c, "auc": a, "error_auc": 0.5, "n_lesion": 5,
             "n_control": 5, "uncertainty_lesion_median": 1e-5, "uncertainty_control_median": 1e-5}
            for s, k, c, a in [("a", "edema", "total", 0.9), ("b", "edema", "total", 0.95), ("a", "edema", "parameter", 0.99),
                               ("b", "edema", "parameter", 0.7), ("a", "tumour", "total", 0.3), ("a", "tumour", "FA std", 0.45)]]
    b = lesion.best(rows)
    assert (b["edema"]["component"], b["edema"]["auc_mean"], b["edema"]["auc_min"]) == ("total", 0.925, 0.9)
    assert b["tumour"]["component"] == "FA std"
    text = lesion.table(rows)
    assert "best uncertainty for the edema lesion: m total (AUC 0.925" in text
    assert "below the 0.8 target" in text.split("tumour lesion")[1]


def test_components_reduce_and_skip_empty_maps():
    u = {"std": np.ones((2, 2, 2, 6)), "fa_std": np.zeros((2, 2, 2)), "std_parameter": np.full((2, 2, 2), 2.0)}
    got = lesion.components(u)
    assert [c for c, _ in got] == ["total", "parameter"]
    assert np.allclose(got[0][1], 1.0)


def test_glioma_lowers_fa_and_raises_md_as_cited():
    from ImageQualityTransferLib.core import tensors

    t = tensors.from_matrix(np.diag([1.7e-3, 0.3e-3, 0.3e-3]))[None]
    g = lesion.modify_tensor(t, "glioma")
    assert tensors.md(g)[0] == pytest.approx(1229.8 / 731.5 * tensors.md(t)[0])
    assert tensors.fa(g)[0] < 0.5 * tensors.fa(t)[0]


def test_lesion_check_json_names_each_rows_unit(small_subject, tmp_path, capsys):
    """Each --json row names the unit of its medians (mm^2/s for sigma maps, degrees for direction; an audit found them
    mixed under one key, unitless), and the file says what each figure is, as benchmark's does; the table is as it was."""
    out = tmp_path / "rows.json"
    assert main(["--threads", "1", "lesion-check", str(small_subject), "--methods", "biqt", "--kinds", "edema",
                 "--json", str(out)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    units = {r["component"]: r["uncertainty_unit"] for r in doc["rows"]}
    assert units == {"total": "mm^2/s", "direction": "degrees"}, units
    assert "uncertainty_unit" in doc["units"] and "uncertainty_lesion_median" in doc["units"]
    total = next(r for r in doc["rows"] if r["component"] == "total")
    assert f"{total['uncertainty_lesion_median'] * 1e5:.3g} / " in printed and "every other map in 1e-5 mm²/s" in printed


def test_lesion_check_says_what_the_checks_find_in_the_reference_fit(small_subject, tmp_path, capsys):
    """A subject with a slice's signal dropout: lesion-check says the fit check's line, as 'iqt report --subject' does
    (an audit: the sagittal AP dev scan's dropout went unsaid)."""
    import shutil

    import nibabel as nib

    subj = tmp_path / "subj"
    shutil.copytree(small_subject, subj)
    img = nib.load(subj / "dwi.nii.gz")
    d = np.asarray(img.dataobj).astype(np.float32)
    v = int(np.flatnonzero(np.loadtxt(subj / "dwi.bval") > 100)[3])
    d[:, :, d.shape[2] // 2, v] *= 0.2
    nib.save(nib.Nifti1Image(d, img.affine, img.header), subj / "dwi.nii.gz")
    assert main(["--threads", "1", "lesion-check", str(subj), "--methods", "biqt", "--kinds", "edema"]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if f"of volume {v}" in line]
    assert len(said) == 1 and "the reference's fit: " in said[0], said
    assert "lesion-check scores every map against this fit as it is" in said[0], said
