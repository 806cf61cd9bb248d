"""FSL bval/bvec files as other tools and editors write them, and NIfTI files whose name's suffix does not match their
content: read where the meaning is plain, otherwise one refusal naming the file and what is wrong."""

from __future__ import annotations

import gzip
import shutil
import warnings

import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.errors import IQTError


@pytest.fixture
def subject(small_subject, tmp_path):
    d = tmp_path / "subj"
    shutil.copytree(small_subject, d)
    return d


def _rows(a, sep=" "):
    return "\n".join(sep.join(f"{x:.6g}" for x in r) for r in np.atleast_2d(a)) + "\n"


def _write(d, bval: bytes | str, bvec: bytes | str):
    for name, text in (("dwi.bval", bval), ("dwi.bvec", bvec)):
        (d / name).write_bytes(text if isinstance(text, bytes) else text.encode())


@pytest.mark.parametrize("variant", ["bom", "comma", "comma_space", "utf16_bom"])
def test_gradient_tables_with_a_byte_order_mark_or_commas_read_as_the_plain_ones(subject, variant):
    """A UTF-8 byte-order mark (Windows editors) was refused with "could not convert string '\\ufeff0'", and
    comma-separated tables as 'could not convert string'; both read now, to the same table."""
    clean = fileio.load_dwi(subject / "dwi.nii.gz")
    bvals, bvecs = np.loadtxt(subject / "dwi.bval"), np.loadtxt(subject / "dwi.bvec")
    if variant == "bom":
        _write(subject, b"\xef\xbb\xbf" + _rows(bvals).encode(), b"\xef\xbb\xbf" + _rows(bvecs).encode())
    elif variant == "utf16_bom":
        _write(subject, _rows(bvals).encode("utf-16"), _rows(bvecs).encode("utf-16"))
    else:
        sep = "," if variant == "comma" else ", "
        _write(subject, _rows(bvals, sep), _rows(bvecs, sep))
    dwi = fileio.load_dwi(subject / "dwi.nii.gz")
    assert np.allclose(dwi.bvals, clean.bvals) and np.allclose(dwi.bvecs, clean.bvecs, atol=1e-6)


def test_a_refusal_names_the_gradient_file_that_failed(subject):
    """The message named both files ('dwi.bval / dwi.bvec: not plain-text FSL gradient tables') whichever failed."""
    bvals = np.loadtxt(subject / "dwi.bval")
    _write(subject, _rows(bvals), "0 1 x\n")
    with pytest.raises(IQTError) as err:
        fileio.load_dwi(subject / "dwi.nii.gz")
    message = str(err.value)
    assert message.startswith(f"{subject / 'dwi.bvec'}: 'x' on line 1 is not a number"), message
    assert "dwi.bval" not in message
    _write(subject, "0,5 1000,5\n", (subject / "dwi.bvec").read_text())  # decimal commas: not guessed
    with pytest.raises(IQTError, match=r"dwi\.bval: line 1 has commas inside space-separated numbers"):
        fileio.load_dwi(subject / "dwi.nii.gz")


def test_an_empty_bval_is_one_error_and_no_warning(subject):
    """numpy's 'loadtxt: input contained no data' warning came out before the count error."""
    bvecs = np.loadtxt(subject / "dwi.bvec")
    _write(subject, "", _rows(bvecs))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(IQTError, match=r"dwi\.bval: holds no numbers"):
            fileio.load_dwi(subject / "dwi.nii.gz")
    assert not caught, [str(w.message) for w in caught]


def test_an_upper_case_suffix_finds_the_sidecars(subject):
    """DWI.NII.GZ looked for DWI.NII.bval."""
    (subject / "dwi.nii.gz").rename(subject / "DWI.NII.GZ")
    for ext in ("bval", "bvec"):
        (subject / f"dwi.{ext}").rename(subject / f"DWI.{ext}")
    assert fileio.bval_bvec_paths(subject / "DWI.NII.GZ") == (subject / "DWI.bval", subject / "DWI.bvec")
    assert fileio.load_dwi(subject / "DWI.NII.GZ").bvals.size == np.loadtxt(subject / "DWI.bval").size


def test_a_suffix_that_does_not_match_the_compression_is_said(subject, tmp_path):
    """A gzip file named .nii was 'Cannot work out file type', an uncompressed one named .nii.gz 'is not a gzip file'."""
    gz = subject / "dwi.nii.gz"
    named_nii = tmp_path / "gz_named.nii"
    shutil.copy(gz, named_nii)
    with pytest.raises(IQTError, match=r"gz_named\.nii: its content is gzip-compressed but its name ends in \.nii, not "
                                       r"\.nii\.gz; rename it to gz_named\.nii\.gz"):
        fileio.load_scalar(named_nii)
    named_gz = tmp_path / "plain_named.nii.gz"
    named_gz.write_bytes(gzip.decompress(gz.read_bytes()))
    with pytest.raises(IQTError, match=r"plain_named\.nii\.gz: its name ends in \.gz but its content is not "
                                       r"gzip-compressed \(it is an uncompressed NIfTI\); rename it to plain_named\.nii"):
        fileio.load_scalar(named_gz)
    page = tmp_path / "page.nii.gz"
    page.write_bytes(b"<html><body>403 Forbidden</body></html>\n")
    with pytest.raises(IQTError, match=r"page\.nii\.gz: cannot be read as NIfTI: its name ends in \.gz but its content is neither"):
        fileio.load_scalar(page)


def test_a_five_d_series_with_one_time_point_reads_as_the_four_d_one(subject):
    """(X, Y, Z, 1, N), as some tools save a series, was refused as 'not a diffusion-weighted series'; the
    volumes along the fifth axis are the series."""
    import nibabel as nib

    clean = fileio.load_dwi(subject / "dwi.nii.gz")
    img = nib.load(str(subject / "dwi.nii.gz"))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, :, None, :], img.affine, img.header), str(subject / "dwi.nii.gz"))
    five = fileio.load_dwi(subject / "dwi.nii.gz")
    np.testing.assert_array_equal(five.data, clean.data)
    np.testing.assert_array_equal(five.bvecs, clean.bvecs)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, :, None, :2], img.affine), str(subject / "dwi.nii.gz"))
    with pytest.raises(IQTError, match="at least 7 volumes"):
        fileio.load_dwi(subject / "dwi.nii.gz")
