"""An input whose slices have a gap between them (thinner than their spacing: a BIDS sidecar's SliceThickness and
SpacingBetweenSlices, a NRRD's thicknesses, `iqt degrade --slice-gap`'s run record) is upsampled with one warning line
naming the axis, the thickness and the spacing, since every model was trained on contiguous slices (a thick-slice
audit: it ran without a word); contiguous or overlapping slices, or no such information, say nothing."""

import json

import numpy as np
import pytest

from helpers import save_phantom_dwi
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.errors import IQTWarning
from ImageQualityTransferLib.core.volume import Volume

FIELD = np.broadcast_to(tensors.from_matrix(np.diag([1.2e-3, 0.5e-3, 0.4e-3])), (6, 7, 5, 6)).astype(np.float32)


def _upsample(tmp_path, capsys, name, factor="1,1,2"):
    assert cli.main(["upsample", str(tmp_path / name), "-o", str(tmp_path / "hr.nii.gz"), "--method", "cubic",
                     "--factor", factor]) == 0
    return [line for line in capsys.readouterr().err.splitlines() if "contiguous" in line]


@pytest.mark.parametrize("sidecar, said", [
    ({"SliceThickness": 5, "SpacingBetweenSlices": 6}, "5 mm thick 6 mm apart along voxel axis k, S (superior-inferior), a 1 mm gap"),
    ({"SliceThickness": 5}, "5 mm thick 6 mm apart along voxel axis k, S (superior-inferior), a 1 mm gap"),  # spacing: the voxel size
    ({"SliceThickness": 6, "SpacingBetweenSlices": 6}, None),  # contiguous
    ({"SliceThickness": 7, "SpacingBetweenSlices": 6}, None),  # overlapping
    ({"SliceThickness": True, "SpacingBetweenSlices": 6}, None),  # JSON true is no thickness (it had read as 1 mm)
    ({"SpacingBetweenSlices": 6}, None),  # no thickness: nothing known
    (None, None),
])
def test_a_sidecar_with_a_gap_warns_once(tmp_path, capsys, sidecar, said):
    fileio.save_tensor(Volume(FIELD, np.diag([2.0, 2.0, 6.0, 1.0]), "tensor"), tmp_path / "lr.nii.gz")
    if sidecar is not None:
        (tmp_path / "lr.json").write_text(json.dumps(sidecar))
    lines = _upsample(tmp_path, capsys, "lr.nii.gz")
    if said is None:
        assert lines == []
    else:
        assert len(lines) == 1 and said in lines[0] and "lr.json" in lines[0] and "--method" not in lines[0], lines  # advice for any command


def test_the_warning_names_the_slice_axis_of_a_slice_first_file(tmp_path, capsys):
    field = np.ascontiguousarray(np.moveaxis(FIELD, 2, 0))
    affine = np.array([[0, 2.0, 0, 0], [0, 0, 2.0, 0], [6.0, 0, 0, 0], [0, 0, 0, 1]])  # voxel axes S, R, A
    fileio.save_tensor(Volume(field, affine, "tensor"), tmp_path / "lr.nii.gz")
    (tmp_path / "lr.json").write_text(json.dumps({"SliceThickness": 5, "SpacingBetweenSlices": 6}))
    lines = _upsample(tmp_path, capsys, "lr.nii.gz", "2,1,1")
    assert len(lines) == 1 and "along voxel axis i, S (superior-inferior)" in lines[0], lines


def test_the_warning_says_an_oblique_slice_axis_is_oblique(tmp_path, capsys):
    """Slices turned 45° about R (between S and A): the line had named the axis S-I all the same, as the factors' did
    (core/orientation.py axis_words)."""
    c = np.sqrt(0.5)
    affine = np.array([[2.0, 0, 0, 0], [0, 2 * c, -6 * c, 0], [0, 2 * c, 6 * c, 0], [0, 0, 0, 1]])
    fileio.save_tensor(Volume(FIELD, affine, "tensor"), tmp_path / "lr.nii.gz")
    (tmp_path / "lr.json").write_text(json.dumps({"SliceThickness": 5, "SpacingBetweenSlices": 6}))
    lines = _upsample(tmp_path, capsys, "lr.nii.gz")
    assert len(lines) == 1 and "along voxel axis k, oblique (45.0° from anterior-posterior, 45.0° from superior-inferior), a " \
        in lines[0], lines


def test_a_sheared_headers_axis_is_named_alike_by_the_gap_line_and_the_factors_line():
    """Voxel axis j sheared to 26.6° from R, 63.4° from A: the factors' line had named it R (the column's largest part)
    and the gap line A (nibabel's assignment, which gives R to axis i); one rule now (core/orientation.py axis_words):
    j is given A, 63.4° away, so it is oblique, with its angle to R, which it lies near but axis i has (naming it R had
    given i and j one name, a review)."""
    from ImageQualityTransferLib.core import orientation
    from ImageQualityTransferLib.fileio import slices

    affine = np.eye(4)
    affine[:3, :3] = [[2, 2, 0], [0.6, 1.0, 0], [0, 0, 4]]
    with pytest.warns(IQTWarning) as said:
        slices.warn_if_gapped("x.nii.gz", affine, [(1, 1.0, 2.236, "sidecar")])
    words = "oblique (26.6° from left-right, 63.4° from anterior-posterior)"
    assert orientation.factor_axes((1, 2, 1), affine) == f"2 along voxel axis j, {words}"
    assert f"along voxel axis j, {words}, a 1.24 mm gap" in str(said[0].message), str(said[0].message)
    assert orientation.axis_words(affine, 0) == "R (left-right)"


@pytest.mark.parametrize("degrees, words", [(30.0, "oblique (30.0° from left-right, 60.0° from superior-inferior)"),
                                            (5.0, "oblique (5.0° from left-right, 85.0° from superior-inferior)"),
                                            (60.0, "S (superior-inferior)"),
                                            (30.2, "oblique (30.2° from left-right, 59.8° from superior-inferior)"),
                                            (40.0, "oblique (40.0° from left-right, 50.0° from superior-inferior)")])
def test_a_sheared_axis_is_oblique_beyond_30_degrees_from_the_world_axis_it_is_given(degrees, words):
    """i along R, j along A, k sheared `degrees` from R toward S: k is given S (R is i's), so it is S within 30° of S
    and oblique beyond, with its angle to R and to S; naming it R where it lies near R had given i and k one name (a
    review: 165 of 5000 random sheared headers)."""
    from ImageQualityTransferLib.core import orientation
    from ImageQualityTransferLib.fileio import slices

    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    affine = np.eye(4)
    affine[:3, :3] = [[2, 0, 2 * c], [0, 2, 0], [0, 0, 2 * s]]
    assert orientation.axis_words(affine, 2) == words
    with pytest.warns(IQTWarning) as said:
        slices.warn_if_gapped("x.nii.gz", affine, [(2, 1.0, 2.0, "sidecar")])
    assert f"along voxel axis k, {words}, a " in str(said[0].message), str(said[0].message)
    assert orientation.factor_axes((1, 1, 2), affine) == f"2 along voxel axis k, {words}"


def test_a_nrrd_s_thicknesses_field_with_a_gap_warns(tmp_path, capsys):
    fileio.save_tensor(Volume(FIELD, np.diag([2.0, 2.0, 6.0, 1.0]), "tensor"), tmp_path / "lr.nrrd")
    head, data = (tmp_path / "lr.nrrd").read_bytes().split(b"\n\n", 1)
    (tmp_path / "lr.nrrd").write_bytes(head + b"\nthicknesses: NaN NaN NaN 4.5\n\n" + data)
    lines = _upsample(tmp_path, capsys, "lr.nrrd")
    assert len(lines) == 1 and "4.5 mm thick 6 mm apart along voxel axis k" in lines[0], lines


def test_degrade_with_a_slice_gap_warns_on_upsample(tmp_path, capsys):
    save_phantom_dwi(tmp_path / "dwi.nii.gz", (12, 12, 12), seed=3)
    for gap, out in ((1, "g.nii.gz"), (0, "c.nii.gz")):
        assert cli.main(["degrade", str(tmp_path / "dwi.nii.gz"), "--factor", "1,1,2", "--slice-gap", str(gap),
                         "-o", str(tmp_path / out)]) == 0
    capsys.readouterr()
    assert _upsample(tmp_path, capsys, "c.nii.gz") == []
    lines = _upsample(tmp_path, capsys, "g.nii.gz")
    assert len(lines) == 1 and "8 mm thick 12 mm apart along voxel axis k" in lines[0], lines
    assert "iqt degrade run record" in lines[0]


def test_a_dwi_sidecar_s_gap_is_kept_by_fit_and_said_on_upsample(tmp_path, capsys):
    save_phantom_dwi(tmp_path / "dwi.nii.gz", (12, 12, 12), seed=3)  # 4 mm voxels
    (tmp_path / "dwi.json").write_text(json.dumps({"SliceThickness": 3, "SliceEncodingDirection": "k"}))
    assert cli.main(["fit", str(tmp_path / "dwi.nii.gz"), "-o", str(tmp_path / "dti.nii.gz")]) == 0
    capsys.readouterr()
    lines = _upsample(tmp_path, capsys, "dti.nii.gz")
    assert len(lines) == 1 and "3 mm thick 4 mm apart along voxel axis k" in lines[0], lines
    assert "the DWI it was fitted from" in lines[0]


@pytest.mark.parametrize("command", [["fit"], ["degrade", "--factor", "1,1,2", "--slice-gap", "1"]])
def test_a_gap_is_kept_under_no_record_without_a_path(tmp_path, capsys, command):
    """`iqt --no-record fit` of a DWI whose sidecar says a gap, or `--no-record degrade --slice-gap`: upsample still
    says the gap, and the tensors' header names no path (under --no-record the gap had been lost with the run record,
    and upsample said nothing: a low-field clinic's audit); without a gap such a file carries no record at all."""
    from ImageQualityTransferLib.fileio.nifti import run_record_of

    save_phantom_dwi(tmp_path / "dwi.nii.gz", (12, 12, 12), seed=3)  # 4 mm voxels
    if command == ["fit"]:
        (tmp_path / "dwi.json").write_text(json.dumps({"SliceThickness": 3, "SliceEncodingDirection": "k"}))
    assert cli.main(["--no-record", *command[:1], str(tmp_path / "dwi.nii.gz"), *command[1:],
                     "-o", str(tmp_path / "dti.nii.gz")]) == 0
    capsys.readouterr()
    record = run_record_of(tmp_path / "dti.nii.gz")
    assert set(record) == {"options", "slices", "threads"} and record["options"] == {"command": command[0]}, record
    assert str(tmp_path) not in json.dumps(record)
    lines = _upsample(tmp_path, capsys, "dti.nii.gz")
    assert len(lines) == 1 and "mm apart along voxel axis k" in lines[0], lines
    # its upsampled output under --no-record still says the gap it was made across (input_slices had been dropped)
    assert cli.main(["--no-record", "upsample", str(tmp_path / "dti.nii.gz"), "-o", str(tmp_path / "hr2.nii.gz"),
                     "--method", "cubic", "--factor", "1,1,2"]) == 0
    kept = run_record_of(tmp_path / "hr2.nii.gz")
    assert kept and kept["input_slices"] == run_record_of(tmp_path / "hr.nii.gz")["input_slices"], kept
    assert str(tmp_path) not in json.dumps(kept) and "command" not in set(kept) - {"options"}, kept
    if command == ["fit"]:
        (tmp_path / "dwi.json").unlink()
        assert cli.main(["--no-record", "fit", str(tmp_path / "dwi.nii.gz"), "-o", str(tmp_path / "c.nii.gz")]) == 0
        assert run_record_of(tmp_path / "c.nii.gz") is None


@pytest.mark.parametrize("axes, said", [("LAS", "along voxel axis k, S (superior-inferior)"), ("SLA", "along voxel axis i, S (superior-inferior)")])
def test_an_older_degrade_record_names_the_slice_axis_of_a_file_re_stored_since(tmp_path, capsys, axes, said):
    """A record from before degrade kept its slices' axis codes (only --factor and --slice-gap, along the voxel axes of
    the file it wrote): a copy re-stored slice-first has the gap on its largest voxels, not on its third axis."""
    from ImageQualityTransferLib.core.orientation import reorient
    from ImageQualityTransferLib.fileio.records import run_record

    vol = reorient(Volume(FIELD, np.diag([-3.0, 3.0, 9.0, 1.0]), "tensor"), axes)
    with run_record({"command": "iqt degrade", "options": {"command": "degrade", "factor": "1,1,2", "slice_gap": 1}}):
        fileio.save_tensor(vol, tmp_path / "lr.nii.gz")
    lines = _upsample(tmp_path, capsys, "lr.nii.gz", "1,1,2" if axes == "LAS" else "2,1,1")
    assert len(lines) == 1 and f"6 mm thick 9 mm apart {said}" in lines[0], lines


@pytest.mark.parametrize("gap, said", [(0, "6 mm thick 8 mm apart along voxel axis k"),
                                       (1, "6 mm thick 12 mm apart along voxel axis k")])
def test_degrade_keeps_a_dwi_sidecar_s_gap_and_upsample_says_it(tmp_path, capsys, gap, said):
    """A DWI whose sidecar gives 3 mm slices 4 mm apart, degraded 1,1,2: the output's slices are 6 mm thick 8 mm apart
    (each spacing's measured share kept), 12 mm with --slice-gap 1; its run record says so, as fit's does. The gap had
    been dropped: upsample of the output said nothing."""
    save_phantom_dwi(tmp_path / "dwi.nii.gz", (12, 12, 12), seed=3)  # 4 mm voxels
    (tmp_path / "dwi.json").write_text(json.dumps({"SliceThickness": 3, "SpacingBetweenSlices": 4}))
    assert cli.main(["degrade", str(tmp_path / "dwi.nii.gz"), "--factor", "1,1,2", "--slice-gap", str(gap),
                     "-o", str(tmp_path / "lr.nii.gz")]) == 0
    capsys.readouterr()
    lines = _upsample(tmp_path, capsys, "lr.nii.gz")
    assert len(lines) == 1 and said in lines[0] and "iqt degrade run record" in lines[0], lines


@pytest.mark.parametrize("factor, gap, sidecar, said", [
    ("2,1,1", 0, True, {"k": "3 mm thick 4 mm apart"}),
    ("2,1,1", 1, True, {"i": "8 mm thick 12 mm apart", "k": "3 mm thick 4 mm apart"}),
    ("2", 1, False, {"i": "8 mm thick 12 mm apart", "j": "8 mm thick 12 mm apart", "k": "8 mm thick 12 mm apart"}),
])
def test_degrade_records_a_gap_on_an_axis_of_factor_one_and_of_isotropic_factors(tmp_path, capsys, factor, gap, sidecar,
                                                                                 said):
    """An axis of factor 1 keeps the sidecar's slices as they are (3 mm thick 4 mm apart on k at 2,1,1) and gets no
    --slice-gap (which acts on the refined axes only: fileio/slices.record_of_degrade); isotropic factors gap every
    axis. No test had covered them: a gap added on factor-1 axes (2 mm thick 4 mm apart on j) had passed."""
    save_phantom_dwi(tmp_path / "dwi.nii.gz", (12, 12, 12), seed=3)  # 4 mm voxels
    if sidecar:
        (tmp_path / "dwi.json").write_text(json.dumps({"SliceThickness": 3, "SpacingBetweenSlices": 4}))
    assert cli.main(["degrade", str(tmp_path / "dwi.nii.gz"), "--factor", factor, "--slice-gap", str(gap),
                     "-o", str(tmp_path / "lr.nii.gz")]) == 0
    capsys.readouterr()
    lines = _upsample(tmp_path, capsys, "lr.nii.gz")
    assert len(lines) == 1, lines
    parts = [p for p in lines[0].split(": its slices are ")[1].split(" (its iqt degrade")[0].split("; ")]
    got = {p.split("along voxel axis ")[1][0]: p.split(" along")[0] for p in parts}
    assert got == said, lines


@pytest.mark.parametrize("sidecar, gap, said", [
    ({"SliceThickness": 3, "SpacingBetweenSlices": 400}, 0, "6 mm thick 800 mm apart along voxel axis k"),
    ({"SliceThickness": 5, "SpacingBetweenSlices": 4}, 1, "9 mm thick 12 mm apart along voxel axis k, S (superior-inferior), a 3 mm gap"),
])
def test_degrade_records_k_t_thick_k_n_s_apart_as_readme_says(tmp_path, capsys, sidecar, gap, said):
    """A sidecar spacing other than the voxel size is kept as iqt fit keeps it (it had been scaled to the voxel: 0.06 mm
    thick 8 mm apart), and two overlapping 5 mm slices 4 mm apart span 9 mm, not 10."""
    save_phantom_dwi(tmp_path / "dwi.nii.gz", (12, 12, 12), seed=3)  # 4 mm voxels
    (tmp_path / "dwi.json").write_text(json.dumps(sidecar))
    assert cli.main(["degrade", str(tmp_path / "dwi.nii.gz"), "--factor", "1,1,2", "--slice-gap", str(gap),
                     "-o", str(tmp_path / "lr.nii.gz")]) == 0
    capsys.readouterr()
    lines = _upsample(tmp_path, capsys, "lr.nii.gz")
    assert len(lines) == 1 and said in lines[0], lines
