"""A wrong table in an MRtrix DWI's dw_scheme (dmri/scheme_advice.py): `iqt fit dwi.mif` names the dw_scheme's column
in the scanner frame it is kept in, whatever the storage order, and MRtrix's tools to mend it, not a bvec file that
does not exist; after the edit it asks for, nothing is said. A dw_scheme of fewer rows than volumes is told how to mend
the image, which an iqt batch line needs (it takes no --bval). The .mif files are written by the project's own writer
(fileio/mif.py), so the test runs without MRtrix."""

from __future__ import annotations

import re
import shlex

import numpy as np
import pytest
from helpers import table_looks_wrong
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.dmri.phantom import make_phantom
from ImageQualityTransferLib.dmri.scheme_advice import scheme_advice
from ImageQualityTransferLib.fileio.mif import write_mif


STUDY = "my study/sub 01's"  # a lab's folder: a space and a quote, which a shell splits and ends a word at


def _write(path, dwi, perm, scheme) -> None:
    """`dwi` stored with its voxel axes in the order `perm` (as mrconvert -strides permutes them), its table as the
    dw_scheme lines `scheme` (x y z b, scanner frame)."""
    data = np.transpose(np.asarray(dwi.data, np.float32), (*perm, 3))
    affine = np.array(dwi.affine, float)
    affine[:3, :3] = affine[:3, list(perm)]
    write_mif(path, data, affine, {"dw_scheme": [",".join(f"{v:.10g}" for v in row) for row in scheme]})


def _scheme(dwi) -> np.ndarray:
    rotation = dwi.affine[:3, :3] / np.linalg.norm(dwi.affine[:3, :3], axis=0)
    return np.column_stack([dwi.bvecs @ rotation.T, dwi.bvals])


def _fit(path, out, capsys) -> list[str]:
    assert cli.main(["fit", str(path), "-o", str(out)]) == 0
    return table_looks_wrong(capsys.readouterr().err.splitlines())


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape=(32, 36, 28), voxel_mm=4.0, n_dirs=12)


def _yaw(dwi, degrees=20.0):
    """The same voxels and voxel-axis directions on a grid turned about S (an oblique acquisition)."""
    t = np.radians(degrees)
    aff = np.array(dwi.affine, float)
    aff[:3, :3] = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]) @ aff[:3, :3]
    return dwi.replace(affine=aff)


@pytest.mark.parametrize("perm,oblique", [((0, 1, 2), False), ((1, 2, 0), False), ((1, 2, 0), True)])
def test_a_negated_scheme_column_is_named_in_the_scanner_frame_and_its_edit_mends_it(phantom, perm, oblique, tmp_path,
                                                                                     capsys):
    phantom = _yaw(phantom) if oblique else phantom
    scheme = _scheme(phantom)
    bad = scheme * [-1.0, 1.0, 1.0, 1.0]  # the scanner's x negated
    _write(tmp_path / "dwi.mif", phantom, perm, bad)
    said = _fit(tmp_path / "dwi.mif", tmp_path / "bad_dti.nii.gz", capsys)
    assert len(said) == 1, said
    assert "the x column of its dw_scheme (the scanner's x) looks negated" in said[0], said
    assert "negate the first column (x)" in said[0] and ".bvec" not in said[0], said
    assert f"'mrinfo {tmp_path / 'dwi.mif'} -export_grad_mrtrix grad.b'" in said[0], said
    assert f"'mrconvert {tmp_path / 'dwi.mif'} -grad grad.b {tmp_path / 'dwi_fixed.mif'}'" in said[0], said
    _write(tmp_path / "dwi_fixed.mif", phantom, perm, bad * [-1.0, 1.0, 1.0, 1.0])  # the edit it asks for
    assert _fit(tmp_path / "dwi_fixed.mif", tmp_path / "fixed_dti.nii.gz", capsys) == []


def test_swapped_scheme_columns_are_named_with_their_order(phantom, tmp_path, capsys):
    scheme = _scheme(phantom)
    _write(tmp_path / "dwi.mif", phantom, (2, 0, 1), scheme[:, [1, 0, 2, 3]])
    said = _fit(tmp_path / "dwi.mif", tmp_path / "bad_dti.nii.gz", capsys)
    assert len(said) == 1 and "the x and y columns of its dw_scheme (the scanner's) look swapped" in said[0], said
    assert "reorder the columns x y z to (y, x, z)" in said[0], said


def test_a_scheme_of_fewer_rows_than_volumes_is_told_how_to_mend_the_image(phantom, tmp_path, capsys):
    """The command names the user's image and its mended copy (it had named dwi.mif and fixed.mif), each one word."""
    (tmp_path / STUDY).mkdir(parents=True)
    path = tmp_path / STUDY / "run-1.dwi.mif"
    _write(path, phantom, (0, 1, 2), _scheme(phantom)[:-2])
    assert cli.main(["fit", str(path), "-o", str(tmp_path / "dti.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "its dw_scheme 12 rows" in err and "on an iqt batch line too" in err, err
    command = re.search(r"'(mrconvert .*? -fslgrad dwi\.bvec dwi\.bval .*?)' \(", err)
    assert command and shlex.split(command[1]) == ["mrconvert", str(path), "-fslgrad", "dwi.bvec", "dwi.bval",
                                                   str(path.with_name("run-1.dwi_fixed.mif"))], err
    assert "give run-1.dwi_fixed.mif" in err and not (tmp_path / "dti.nii.gz").exists()


def test_the_warning_of_a_mif_in_a_folder_with_a_space_is_said_over_lines_each_naming_it(phantom, tmp_path, capsys):
    """methods/base.py warning_lines finds the file a warning opens with: a .mif path holding a space had not been
    found, and the table's warning with its commands stood on one line of about 1,300 characters."""
    (tmp_path / STUDY).mkdir(parents=True)
    path = tmp_path / STUDY / "dwi.mif"
    _write(path, phantom, (0, 1, 2), _scheme(phantom) * [-1.0, 1.0, 1.0, 1.0])
    assert cli.main(["fit", str(path), "-o", str(tmp_path / "dti.nii.gz")]) == 0
    head = f"iqt: warning: {path}: "
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith(head)]
    assert lines and lines[0].startswith(f"{head}the gradient table looks wrong; "), lines
    assert len(lines) > 3, lines
    back = next(ln for ln in lines if "write it back: " in ln)
    assert shlex.split(re.search(r"write it back: '(mrconvert .*)', and give", back)[1])[1] == str(path), back


def test_the_commands_to_copy_read_a_path_with_a_space_and_a_quote_as_one_word(tmp_path):
    path = tmp_path / STUDY / "dwi.mif"
    _, fix = scheme_advice(np.diag([-1.0, 1.0, 1.0]), np.diag([-2.0, 2.0, 2.0, 1.0]), path)
    export = re.search(r"export it: '(mrinfo .*? grad\.b)'; ", fix)
    back = re.search(r"write it back: '(mrconvert .*)', and give dwi_fixed\.mif$", fix)
    assert export and shlex.split(export[1]) == ["mrinfo", str(path), "-export_grad_mrtrix", "grad.b"], fix
    assert back and shlex.split(back[1]) == ["mrconvert", str(path), "-grad", "grad.b",
                                             str(path.with_name("dwi_fixed.mif"))], fix


@pytest.mark.parametrize("name,fixed", [("sub-01.run-1.mif", "sub-01.run-1_fixed.mif"),
                                        ("sub-01.run-2.MIF.gz", "sub-01.run-2_fixed.mif"), ("dwi.mih", "dwi_fixed.mif")])
def test_the_mended_file_keeps_the_whole_name(name, fixed, tmp_path):
    """Two runs in one folder (run-1, run-2) are not both told to write the same file."""
    _, fix = scheme_advice(np.diag([-1.0, 1.0, 1.0]), np.diag([-2.0, 2.0, 2.0, 1.0]), tmp_path / name)
    assert f"-grad grad.b {tmp_path / fixed}', and give {fixed}" in fix, fix
