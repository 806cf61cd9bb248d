"""A high-res axis above NIfTI-1's 32,767 voxels (its dims are int16) is refused before any work, in one line naming
the limit and the fix: nibabel's writer had failed with "internal error: HeaderDataError" after the whole run
(19 s and 3.2 GB for `upsample --factor 1,1,1821`; in `iqt batch` each subject failed so after 30 s)."""

from __future__ import annotations

import pytest

from helpers import bundle_volume
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.core import grid
from ImageQualityTransferLib.core.errors import IQTError

TOO_LONG = "1,1,2048"  # 16 slices -> 32,768


@pytest.fixture
def lr(tmp_path):
    path = tmp_path / "lr.nii.gz"
    fileio.save_tensor(bundle_volume(shape=(6, 6, 16)), path)
    return path


def _refused(capsys, argv, *words):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "6x6x32768 voxels, more than the 32,767 voxels along an axis a NIfTI file can hold" in err, err
    for w in words:
        assert w in err, err


def test_upsample_to_nifti_is_refused_naming_a_nrrd_output(lr, tmp_path, capsys):
    _refused(capsys, ["upsample", str(lr), "--method", "cubic", "--factor", TOO_LONG, "-o", str(tmp_path / "o.nii.gz")],
             "give smaller factors", "a .nrrd or .mif tensor output")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.nii.gz"]


@pytest.mark.parametrize("name", ["o.mif", "o.mif.gz"])
def test_upsample_to_an_mrtrix_image_has_no_such_limit_and_reads_back(lr, tmp_path, capsys, name):
    """An MRtrix image's sizes are text: a .mif output of an axis over 32,767 voxels is written (it had been refused
    in NIfTI's words), and this tool reads it back (a NIfTI-2 in memory: the reader had failed with nibabel's
    HeaderDataError)."""
    code = main(["upsample", str(lr), "--method", "cubic", "--factor", TOO_LONG, "-o", str(tmp_path / name)])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert fileio.load_tensor(tmp_path / name).shape3 == (6, 6, 32768)


def test_a_nifti_map_beside_a_nrrd_output_is_refused(lr, tmp_path, capsys):
    """`--maps` beside a NRRD output are NRRD (no such limit); a NIfTI `--uncertainty` map is still refused."""
    _refused(capsys, ["upsample", str(lr), "--method", "biqt", "--factor", TOO_LONG, "-o", str(tmp_path / "o.nrrd"),
                      "--maps", "--uncertainty", str(tmp_path / "u.nii.gz")], "u.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.nii.gz"]


def test_propagate_is_refused(tmp_path, capsys):
    long = tmp_path / "long.nii.gz"  # at a factor a method with uncertainty ships a model for
    fileio.save_tensor(bundle_volume(shape=(6, 6, 16384)), long)
    _refused(capsys, ["propagate", str(long), "--method", "biqt", "--factor", "1,1,2", "-o", str(tmp_path / "p"),
                      "--no-tracts"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.nii.gz"]


def test_the_limit_itself():
    grid.check_nifti_grid((6, 6, 16), (1, 1, 2047), ["o.nii.gz"])  # 32,752: fits
    grid.check_nifti_grid((6, 6, 16), (1, 1, 2048), ["o.nrrd"])  # a NRRD has no such limit
    grid.check_nifti_grid((6, 6, 16), (1, 1, 2048), ["o.mif", "o_FA.mif.gz"])  # nor an MRtrix image
    with pytest.raises(IQTError, match="32,767"):
        grid.check_nifti_grid((6, 6, 16), (1, 1, 2048), ["o.nrrd", "o_FA.nii.gz"], nrrd_ok=True)


def test_batch_is_refused_before_its_folder_is_made(lr, tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "list.txt").write_text("lr.nii.gz\n")
    _refused(capsys, ["batch", "list.txt", "-o", "out", "--method", "cubic", "--factor", TOO_LONG, "--workers", "1"],
             "sub-lr (lr.nii.gz)", "leave that subject out", "unless --output-format mif")
    assert not (tmp_path / "out").exists()
