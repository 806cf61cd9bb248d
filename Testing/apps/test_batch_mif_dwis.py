"""`iqt batch` fits an MRtrix DWI (.mif holding its dw_scheme) listed by file or as a folder's dwi.mif as it fits a
folder's dwi.nii.gz with its bval/bvec (apps/batch/items.py list_items): same tensors, QC row and outputs, its table's
changes redone on a rerun; a .mif that is neither tensors nor a DWI with its table fails its row in one line. The
.mif files are written by the project's own writer (fileio/mif.py), so the test runs without MRtrix."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib import fileio  # noqa: E402
from ImageQualityTransferLib.apps import batch  # noqa: E402
from ImageQualityTransferLib.dmri.phantom import make_phantom  # noqa: E402
from ImageQualityTransferLib.fileio.mif import write_mif  # noqa: E402

from helpers import run_cli  # noqa: E402

TENSOR = "_space-orig_res-2x_model-linear_param-tensor_dwimap"
OWN_COLUMNS = ("subject", "input", "status", "reason", "time_s", "seconds", "figure")  # what names or times it


def _oblique(dwi):
    """The phantom on an oblique LAS grid (rotated 20 degrees about z), so that the dw_scheme's scanner frame differs
    from the voxel axes the bvec file is in."""
    a = np.radians(20)
    turn = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    affine = dwi.affine.copy()
    affine[:3, :3] = turn @ affine[:3, :3]
    return dwi.replace(affine=affine)


def _scheme(dwi) -> list[str]:
    """The DWI's table as MRtrix's dw_scheme lines: x y z b per volume, the directions in the scanner frame."""
    rotation = dwi.affine[:3, :3] / np.linalg.norm(dwi.affine[:3, :3], axis=0)
    scanner = dwi.bvecs @ rotation.T
    return [",".join(f"{v:.10g}" for v in (*g, b)) for g, b in zip(scanner, dwi.bvals)]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """P01: a folder's dwi.nii.gz with bval/bvec; P02/dwi.mif listed as a file; P03: a folder holding only
    dwi.mif.gz; all the same scan."""
    root = tmp_path_factory.mktemp("mifdwis")
    dwi = _oblique(make_phantom(shape=(16, 18, 12), voxel_mm=4.0, n_dirs=12))
    (root / "P01").mkdir()
    fileio.save_dwi(dwi, root / "P01" / "dwi.nii.gz")
    dwi = fileio.load_dwi(root / "P01" / "dwi.nii.gz")  # as read back: the table the NIfTI subject is fitted with
    for name, file, history in (("P02", "dwi.mif", []), ("P03", "dwi.mif.gz", ["mrconvert dwi.nii.gz dwi.mif.gz"])):
        (root / name).mkdir()  # P03's history and compression make it another file (a copy is refused)
        write_mif(root / name / file, np.asarray(dwi.data, np.float32), dwi.affine,
                  {"dw_scheme": _scheme(dwi), "command_history": history})
    (root / "list.txt").write_text("P01\nP02/dwi.mif\nP03\n")
    return root, dwi


def _qc(out) -> dict:
    lines = (out / "qc.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    return {row[0]: dict(zip(head, row)) for row in (line.split("\t") for line in lines[1:])}


def test_a_mif_dwi_listed_or_in_a_folder_is_fitted_as_the_folders_nifti_is(tmp_path, cohort):
    root, dwi = cohort
    items = batch.find_items(root / "list.txt")
    assert [(it.prefix, it.kind) for it in items] == [("sub-P01", "dwi"), ("sub-P02", "dwi"), ("sub-P03", "dwi")]
    s = batch.Settings(method="linear")
    rows = batch.run_cohort(items, s, tmp_path, client=None, progress=False)
    assert [r["status"] for r in rows] == ["done"] * 3, [r.get("reason") for r in rows]
    want = fileio.load_tensor(tmp_path / "sub-P01" / "dwi" / f"sub-P01{TENSOR}.nii.gz")
    qc = _qc(tmp_path)
    for sub in ("sub-P02", "sub-P03"):
        got = fileio.load_tensor(tmp_path / sub / "dwi" / f"{sub}{TENSOR}.nii.gz")
        assert np.allclose(got.affine, want.affine)
        assert np.abs(got.data - want.data).max() <= 1e-6 * np.abs(want.data).max()
        assert {k: v for k, v in qc[sub].items() if k not in OWN_COLUMNS} == \
            {k: v for k, v in qc["sub-P01"].items() if k not in OWN_COLUMNS}
        side = json.loads((tmp_path / sub / "dwi" / f"{sub}{TENSOR}.json").read_text())
        assert side["InputFile"].endswith(("dwi.mif", "dwi.mif.gz")) and "GradientSHA256" not in side and len(side["Sources"]) == 1
    assert qc["sub-P02"]["bvec_check"] == qc["sub-P01"]["bvec_check"] != ""
    # a rerun skips them all; a .mif whose dw_scheme changed (x flipped) is redone, as a changed bvec file is
    assert [r["status"] for r in batch.run_cohort(items, s, tmp_path, client=None, progress=False)] == ["skipped"] * 3
    flipped = dwi.replace(bvecs=dwi.bvecs * np.array([-1, 1, 1]))
    write_mif(root / "P02" / "dwi.mif", np.asarray(dwi.data, np.float32), dwi.affine, {"dw_scheme": _scheme(flipped)})
    try:
        rows = batch.run_cohort(items, s, tmp_path, client=None, progress=False)
    finally:
        write_mif(root / "P02" / "dwi.mif", np.asarray(dwi.data, np.float32), dwi.affine, {"dw_scheme": _scheme(dwi)})
    assert [r["status"] for r in rows] == ["skipped", "done", "skipped"]


def test_a_wrong_dw_scheme_s_qc_value_names_the_scanner_column_its_warning_names(tmp_path):
    """Stored with its axes permuted (mrconvert -strides 2,3,1,4), the scanner's x negated in its dw_scheme: qc.tsv's
    bvec_check had recorded the voxel axes' key (the scanner's x recorded "y-flipped" on a real scan), not the
    column the subject's warning names."""
    dwi = make_phantom(shape=(32, 36, 28), voxel_mm=4.0, n_dirs=12)
    perm = (1, 2, 0)
    affine = np.array(dwi.affine, float)
    affine[:3, :3] = affine[:3, list(perm)]
    stored = dwi.replace(data=np.transpose(np.asarray(dwi.data, np.float32), (*perm, 3)), affine=affine,
                         bvecs=dwi.bvecs[:, list(perm)])  # the same scan, its voxel axes permuted
    bad = stored.replace(bvecs=stored.bvecs @ (np.linalg.inv(affine[:3, :3]) @ np.diag([-1.0, 1, 1]) @ affine[:3, :3]).T)
    write_mif(tmp_path / "S01_dwi.mif", np.asarray(stored.data), affine, {"dw_scheme": _scheme(bad)})
    (tmp_path / "list.txt").write_text("S01_dwi.mif\n")
    rows = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="linear"), tmp_path / "out",
                            client=None, progress=False)
    assert [r["status"] for r in rows] == ["done"], [r.get("reason") for r in rows]
    qc = _qc(tmp_path / "out")["sub-S01dwi"]
    assert "the x column of its dw_scheme (the scanner's x) looks negated" in qc["notes"], qc["notes"]
    assert qc["bvec_check"] == "scheme-x-flipped", qc


def test_a_mif_that_is_neither_tensors_nor_a_dwi_with_its_table_fails_its_row_in_one_line(tmp_path, cohort, capsys):
    """A DWI without its dw_scheme: its row fails saying how to add the table (iqt upsample: exit 2, one line); with
    its .bval and .bvec beside it, it is fitted."""
    root, dwi = cohort
    data = np.asarray(dwi.data, np.float32)
    write_mif(tmp_path / "Q01_dwi.mif", data, dwi.affine)  # a DWI without its dw_scheme, and no bval/bvec beside it
    (tmp_path / "list.txt").write_text("Q01_dwi.mif\n")
    items = batch.find_items(tmp_path / "list.txt")
    rows = batch.run_cohort(items, batch.Settings(method="linear"), tmp_path / "out", client=None, progress=False)
    assert [r["status"] for r in rows] == ["failed"]
    assert "no dw_scheme in its header" in rows[0]["reason"]
    assert f"mrconvert {tmp_path / 'Q01_dwi.mif'} -fslgrad" in rows[0]["reason"]
    assert "\n" not in rows[0]["reason"]
    code, _, err = run_cli(capsys, "upsample", tmp_path / "Q01_dwi.mif", "-o", tmp_path / "hr.mif")
    assert code == 2 and "no dw_scheme in its header" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "hr.mif").exists()
    # with its FSL files beside it, it is a DWI, as `iqt fit Q01_dwi.mif` reads it; their SHA256 in the sidecars
    shutil.copy(root / "P01" / "dwi.bval", tmp_path / "Q01_dwi.bval")
    shutil.copy(root / "P01" / "dwi.bvec", tmp_path / "Q01_dwi.bvec")
    items = batch.find_items(tmp_path / "list.txt")
    rows = batch.run_cohort(items, batch.Settings(method="linear"), tmp_path / "out", client=None, progress=False)
    assert [r["status"] for r in rows] == ["done"], [r.get("reason") for r in rows]
    side = json.loads((tmp_path / "out" / "sub-Q01dwi" / "dwi" / f"sub-Q01dwi{TENSOR}.json").read_text())
    assert set(side["GradientSHA256"]) == {"bval", "bvec"} and len(side["Sources"]) == 3


@pytest.mark.skipif(shutil.which("mrconvert") is None, reason="MRtrix3's mrconvert is not on PATH (apt-get install "
                    "mrtrix3)")
def test_mrconverts_dwi_mif_in_a_list_gives_the_nifti_subjects_tensors(tmp_path, cohort):
    root, _ = cohort
    folder = root / "P01"
    (tmp_path / "R01").mkdir()
    subprocess.run(["mrconvert", "-quiet", str(folder / "dwi.nii.gz"), "-fslgrad", str(folder / "dwi.bvec"),
                    str(folder / "dwi.bval"), str(tmp_path / "R01" / "dwi.mif")], check=True)
    (tmp_path / "list.txt").write_text(f"{folder}\nR01/dwi.mif\n")
    rows = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="linear"),
                            tmp_path / "out", client=None, progress=False)
    assert [r["status"] for r in rows] == ["done"] * 2, [r.get("reason") for r in rows]
    want, got = (fileio.load_tensor(tmp_path / "out" / s / "dwi" / f"{s}{TENSOR}.nii.gz") for s in ("sub-P01", "sub-R01"))
    assert np.allclose(got.affine, want.affine)
    assert np.abs(got.data - want.data).max() <= 1e-5 * np.abs(want.data).max()
