"""A DWI series given where tensors are expected is told as a DWI series, to be fitted with 'iqt fit' first, whatever
its volume count: six and nine volumes had been read as a tensor layout (a review: nine told to keep volumes
0,1,2,4,5,8 with --tensor-order fsl, six told to pick a --tensor-order and then refused as not positive definite)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import helpers


@pytest.mark.realdata
@pytest.mark.parametrize("count, order", [(6, None), (6, "fsl"), (7, None), (9, None)])
def test_a_real_dwi_s_first_volumes_are_told_as_a_dwi(tmp_path, capsys, count, order):
    img = nib.load(helpers.need_data(helpers.AXIAL) / "dwi.nii.gz")
    path = tmp_path / f"dwi{count}.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj[..., :count]), img.affine, img.header), path)
    argv = ["upsample", path, "-o", tmp_path / "o.nii.gz"] + (["--tensor-order", order] if order else [])
    line = helpers.refused_line(capsys, argv, "is a DWI series", "no negative value", "first with 'iqt fit")
    assert "full 3x3" not in line and "positive definite" not in line and "component order" not in line
    assert not (tmp_path / "o.nii.gz").exists()


def test_a_file_with_a_bval_and_bvec_beside_it_is_told_as_a_dwi(tmp_path, capsys):
    """The sidecars a DWI is read with tell it whatever its values (here a b0 and five directions, one negative)."""
    rng = np.random.default_rng(0)
    data = rng.uniform(100, 900, (6, 6, 4, 6)).astype(np.float32)
    data[0, 0, 0, 1] = -1.0
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2, 2, 1])), tmp_path / "scan.nii.gz")
    (tmp_path / "scan.bval").write_text("0 1000 1000 1000 1000 1000\n")
    (tmp_path / "scan.bvec").write_text("0 1 0 0 0.7071 0.7071\n0 0 1 0 0.7071 0\n0 0 0 1 0 0.7071\n")
    line = helpers.refused_line(capsys, ["upsample", tmp_path / "scan.nii.gz", "--tensor-order", "mrtrix",
                                         "-o", tmp_path / "o.nii.gz"],
                                "is a DWI series", "scan.bval and scan.bvec lie beside it", "'iqt fit scan.nii.gz -o")
    assert "positive definite" not in line and not (tmp_path / "o.nii.gz").exists()


def test_tensors_in_um2_per_ms_without_a_negative_value_are_still_read(tmp_path):
    """Diagonal tensors (no off-diagonal, no negative value) in um^2/ms stay below the DWI intensities the rule asks."""
    from ImageQualityTransferLib.fileio.volumes import load_tensor

    t = np.zeros((6, 6, 4, 6), np.float32)
    t[1:5, 1:5, 1:3, 0], t[1:5, 1:5, 1:3, 3], t[1:5, 1:5, 1:3, 5] = 1.7, 0.3, 0.3  # fsl: xx xy xz yy yz zz
    nib.save(nib.Nifti1Image(t, np.diag([-2.0, 2, 2, 1])), tmp_path / "dti6.nii.gz")
    assert load_tensor(tmp_path / "dti6.nii.gz", "fsl", stated=True).data.shape == (6, 6, 4, 6)
