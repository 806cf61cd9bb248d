"""An output kept to a brain estimated from a whole-field fit (meta["support"], Method.predict) records so in its
header, a NIfTI comment extension or a NRRD field (fileio/records.py support_json), and reads back so: `iqt track`
says from it that the output reaches beyond the brain, where the brain told from the MD had also named masked fits."""

from __future__ import annotations

import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.volume import Volume


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_an_estimated_support_reads_back_and_no_other_tensor_gains_one(tmp_path, suffix):
    t = np.zeros((4, 5, 6, 6), np.float32)
    t[..., [0, 3, 5]] = 1e-3
    meta = {"method": "cubic", "factor": 2}
    for name, support in (("est", "estimated"), ("plain", None)):
        vol = Volume(t, np.diag([2.0, 2.0, 2.0, 1.0]), "tensor", meta={**meta, **({"support": support} if support else {})})
        fileio.save_tensor(vol, tmp_path / f"{name}{suffix}")
        assert fileio.load_tensor(tmp_path / f"{name}{suffix}").meta.get("support") == support, name


def test_a_record_is_not_trusted_once_the_file_is_masked_again_keeping_its_header(tmp_path):
    """A user who masks an output again and keeps its header (nibabel's header=img.header) copies the record with it:
    it counts the voxels the output filled, so the masked file reads as one without a record (a review: `iqt track`
    warned of a fit without a brain mask on a masked file)."""
    import nibabel as nib

    t = np.zeros((4, 5, 6, 6), np.float32)
    t[..., [0, 3, 5]] = 1e-3
    fileio.save_tensor(Volume(t, np.diag([2.0, 2.0, 2.0, 1.0]), "tensor", meta={"method": "cubic", "factor": 2,
                                                                             "support": "estimated"}),
                       tmp_path / "up.nii.gz")
    img = nib.load(tmp_path / "up.nii.gz")
    d = np.asarray(img.dataobj)
    m = np.zeros(d.shape, np.float32)
    m[1:3, 1:4, 1:5] = 1
    nib.save(nib.Nifti1Image(d * m, img.affine, header=img.header), tmp_path / "remasked.nii.gz")
    nib.save(nib.Nifti1Image(d, img.affine, header=img.header), tmp_path / "resaved.nii.gz")
    assert fileio.load_tensor(tmp_path / "remasked.nii.gz").meta.get("support") is None
    assert fileio.load_tensor(tmp_path / "resaved.nii.gz").meta.get("support") == "estimated"


def test_a_record_written_without_its_count_is_trusted_as_before():
    """0.24.0's first build wrote {"iqt_support": "estimated"} without "filled": `iqt track` had ignored such an
    output's record and not said that it reaches beyond the brain (a review); a count that no longer matches, or
    is not a count, is still not trusted."""
    from ImageQualityTransferLib.fileio.records import read_support

    t = np.zeros((4, 5, 6, 6), np.float32)
    t[1:3, 1:3, 1:3] = 1e-3
    assert read_support('{"iqt_support":"estimated"}', t) == "estimated"
    assert read_support('{"iqt_support":"estimated","filled":8}', t) == "estimated"
    for text in ('{"iqt_support":"estimated","filled":9}', '{"iqt_support":"estimated","filled":"8"}',
                 '{"iqt_support":"other"}', '{"filled":8}'):
        assert read_support(text, t) is None, text
