"""NIfTI headers: a qform and an sform that disagree, spatial units other than mm, the orientation codes carried
from an input to the outputs made on its grid, Analyze files."""

from __future__ import annotations

import glob
import struct
import sys
import warnings

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.errors import IQTError, IQTWarning

from helpers import DATA

AFFINE = np.array([[-2.0, 0, 0, 30], [0, 2, 0, -40], [0, 0, 2.5, -20], [0, 0, 0, 1]])


def _header_file(path, qform, sform, qcode=1, scode=1, shape=(10, 12, 8)):
    img = nib.Nifti1Image(np.ones(shape, np.float32), AFFINE)
    img.set_qform(qform, code=qcode)
    img.set_sform(sform, code=scode)
    nib.save(img, path)
    return path


def _mirrored(a):
    m = a.copy()
    m[:, 0] *= -1
    m[0, 3] = -a[0, 3]
    return m


@pytest.mark.parametrize("which", ["sform", "qform"])
def test_a_qform_and_sform_of_opposite_handedness_are_refused(tmp_path, which):
    """The sform flipped left-right was read without a word (tensors off by 1.04x their largest element)."""
    q, s = (AFFINE, _mirrored(AFFINE)) if which == "sform" else (_mirrored(AFFINE), AFFINE)
    path = _header_file(tmp_path / "a.nii.gz", q, s)
    with pytest.raises(IQTError, match=r"a\.nii\.gz: the header's qform \(code 1\) and sform \(code 1\) differ in "
                                       r"handedness.*fslorient -copysform2qform"):
        fileio.load_scalar(path)


def test_a_qform_and_sform_that_place_the_grid_apart_are_said_in_one_warning(tmp_path):
    shifted = AFFINE.copy()
    shifted[:3, 3] += 20
    path = _header_file(tmp_path / "a.nii.gz", AFFINE, shifted, scode=2)
    with pytest.warns(IQTWarning, match=r"qform \(code 1\) and sform \(code 2\) disagree, placing the grid up to 34\.6 mm "
                                        r"\(17 voxels\) apart; the sform is used") as caught:
        vol = fileio.load_scalar(path)
    assert len(caught) == 1 and np.allclose(vol.affine, shifted)


def _quiet(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fileio.load_scalar(path)


def test_a_qform_and_sform_within_the_tolerance_read_without_a_word(tmp_path):
    """One real scanner's file (Philips, the dstream subject) holds an sform turned 0.05 degrees from its qform (0.075
    voxels at the grid's corners); equal ones, as nibabel and dcm2niix write them, and a qform or an sform alone are
    plain too."""
    angle = np.deg2rad(0.05)
    turn = np.eye(4)
    turn[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    _quiet(_header_file(tmp_path / "turned.nii.gz", AFFINE, turn @ AFFINE, shape=(96, 96, 60)))
    _quiet(_header_file(tmp_path / "equal.nii.gz", AFFINE, AFFINE))
    _quiet(_header_file(tmp_path / "qonly.nii.gz", AFFINE, _mirrored(AFFINE), scode=0))
    _quiet(_header_file(tmp_path / "sonly.nii.gz", _mirrored(AFFINE), AFFINE, qcode=0))


@pytest.mark.realdata
def test_the_real_subjects_headers_read_without_a_word():
    paths = sorted(glob.glob(str(DATA / "*" / "*" / "dwi.nii.gz")))
    if not paths:
        pytest.skip(f"no subjects under {DATA}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for p in paths:
            fileio.voxel_size(p)


def test_a_sheared_sform_beside_its_closest_qform_reads_without_a_word(tmp_path):
    """nibabel (and so this tool's writers) keeps a sheared affine in the sform and the rigid grid closest to it in the
    qform: the qform cannot hold a shear, and the two do not disagree."""
    sheared = AFFINE.copy()
    sheared[0, 1] = 1.0
    img = nib.Nifti1Image(np.ones((10, 12, 8), np.float32), sheared)
    img.set_qform(sheared, code=1)  # strip_shears: the closest rigid grid
    img.set_sform(sheared, code=1)
    nib.save(img, tmp_path / "sheared.nii.gz")
    assert np.allclose(_quiet(tmp_path / "sheared.nii.gz").affine, sheared)


@pytest.mark.parametrize("unit, scale", [("micron", 1000.0), ("meter", 0.001)])
def test_a_voxel_size_in_microns_or_metres_is_read_in_mm(tmp_path, unit, scale):
    """xyzt_units micron or meter was read as mm (a 2000 micron voxel as 2000 mm) and written back labelled mm."""
    a = AFFINE.copy()
    a[:3] *= scale
    img = nib.Nifti1Image(np.ones((10, 12, 8), np.float32), a)
    img.set_qform(a, code=1)
    img.set_sform(a, code=1)
    img.header.set_xyzt_units(unit, "sec")
    nib.save(img, tmp_path / "a.nii.gz")
    with pytest.warns(IQTWarning, match=f"in {unit}s: read as 2 x 2 x 2.5 mm"):
        vol = fileio.load_scalar(tmp_path / "a.nii.gz")
    assert np.allclose(vol.affine, AFFINE)
    fileio.save_scalar(vol, tmp_path / "b.nii.gz")
    back = nib.load(tmp_path / "b.nii.gz")
    assert back.header.get_xyzt_units()[0] == "mm" and np.allclose(back.affine, AFFINE)


@pytest.mark.parametrize("unit", ["micron", "meter"])
def test_mm_labelled_micron_or_meter_are_refused(tmp_path, unit):
    """The audit's files: mm values under another unit's label (3 micron, 3 m voxels): no MRI voxel, so a wrong label."""
    img = nib.Nifti1Image(np.ones((10, 12, 8), np.float32), AFFINE)
    img.header.set_xyzt_units(unit, "sec")
    nib.save(img, tmp_path / "a.nii.gz")
    with pytest.raises(IQTError, match=rf"voxel size 2 x 2 x 2\.5 in {unit}s, which is .* mm, no MRI voxel; if those "
                                       r"numbers are mm, set the header's unit to mm"):
        fileio.load_scalar(tmp_path / "a.nii.gz")


@pytest.mark.parametrize("size, said", [(1e30, "1e+30"), (1e-30, "1e-30"), (0.004, "0.004"), (150.0, "150")])
@pytest.mark.parametrize("unit", ["mm", "unknown"])
def test_a_voxel_size_in_mm_that_is_no_mri_voxel_is_refused(tmp_path, capsys, size, said, unit):
    """1e30 mm and 1e-30 mm voxels had run to a written output with one warning, where 6 m ones were refused."""
    from helpers import refused_line

    a = np.diag([size, size, size, 1.0])
    img = nib.Nifti1Image(np.ones((10, 12, 8), np.float32), a)
    img.set_qform(a, code=1)
    img.header.set_xyzt_units(unit)
    nib.save(img, tmp_path / "a.nii.gz")
    refused_line(capsys, ["upsample", tmp_path / "a.nii.gz", "--method", "cubic", "-o", tmp_path / "o.nii.gz"],
                 f"a.nii.gz: the header gives the voxel size {said} x {said} x {said} mm, no MRI voxel (0.005 to 100 mm)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]


def test_the_smallest_and_largest_mri_voxels_are_read(tmp_path):
    """2 x 2 x 25 mm slabs and `iqt degrade --factor 1,1,7`'s 21 mm voxels of a 3 mm scan had been refused (20 mm)."""
    for size in ((0.005,) * 3, (2.0, 2.0, 25.0), (3.0, 3.0, 21.0), (100.0,) * 3):
        a = np.diag([*size, 1.0])
        nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), a), tmp_path / "a.nii.gz")
        assert np.allclose(fileio.load_scalar(tmp_path / "a.nii.gz").voxel_size, size)


@pytest.mark.parametrize("size, said", [(1e30, "1e+30"), (150.0, "150"), (0.004, "0.004")])
def test_a_nrrd_voxel_size_that_is_no_mri_voxel_is_refused_as_a_niftis(tmp_path, capsys, size, said):
    """A NRRD's space directions of 1e30 mm had run to an output; the NIfTI's range and words."""
    import dataclasses

    from helpers import bundle_volume, refused_line
    from ImageQualityTransferLib.fileio.nrrd import save_tensor_nrrd

    v = bundle_volume(shape=(6, 6, 6))
    save_tensor_nrrd(dataclasses.replace(v, affine=np.diag([2.0, 2.0, 25.0, 1.0])), tmp_path / "slab.nrrd")
    assert np.allclose(fileio.load_tensor(tmp_path / "slab.nrrd").voxel_size, (2, 2, 25))
    save_tensor_nrrd(dataclasses.replace(v, affine=np.diag([2.0, 2.0, size, 1.0])), tmp_path / "a.nrrd")
    refused_line(capsys, ["upsample", tmp_path / "a.nrrd", "--method", "cubic", "-o", tmp_path / "o.nii.gz"],
                 f"a.nrrd: the header gives the voxel size 2 x 2 x {said} mm, no MRI voxel (0.005 to 100 mm); fix its "
                 "voxel size (the header's 'space directions' line)")
    assert not (tmp_path / "o.nii.gz").exists()


def _header_codes(path):
    h = nib.load(path).header
    return int(h["qform_code"]), int(h["sform_code"])


@pytest.fixture
def recoded_subject(small_subject, tmp_path):
    """The phantom subject's DWI rewritten with given orientation codes, or as Analyze 7.5 (codes None)."""
    def make(codes):
        d = tmp_path / f"subj_{codes}"
        d.mkdir()
        src = nib.load(small_subject / "dwi.nii.gz")
        data = np.asarray(src.dataobj)
        if codes is None:
            nib.save(nib.AnalyzeImage(data, src.affine), d / "dwi.img")
            dwi = d / "dwi.img"
        else:
            img = nib.Nifti1Image(data, src.affine)
            img.set_qform(src.affine, code=codes[0])
            img.set_sform(src.affine, code=codes[1])
            dwi = d / "dwi.nii.gz"
            nib.save(img, dwi)
        for ext in ("bval", "bvec"):
            (d / f"dwi.{ext}").write_bytes((small_subject / f"dwi.{ext}").read_bytes())
        return dwi
    return make


@pytest.mark.parametrize("codes", [(1, 4), (1, 2), (0, 0), (1, 0), None], ids=["mni", "aligned", "none", "qform", "analyze"])
def test_the_inputs_orientation_codes_are_carried_to_the_outputs(recoded_subject, tmp_path, codes, capsys):
    """Every output was written with qform and sform codes 1: an input in MNI (4) or aligned (2) space came
    back as scanner space, and one with no orientation (codes 0, or Analyze) as if it had one. Through fit (its mask too),
    degrade and upsample (its maps too): each output has the input's codes; an input without them (codes 0, Analyze)
    gives an sform aligned (2) to the grid it was read on, which keeps a `degrade --shift` output's shift."""
    from ImageQualityTransferLib.apps.cli import main

    dwi = recoded_subject(codes)
    o = tmp_path / "out"
    o.mkdir()
    assert main(["fit", str(dwi), "-o", str(o / "dti.nii.gz"), "--mask-out", str(o / "mask.nii.gz")]) == 0
    assert main(["degrade", str(dwi), "-o", str(o / "lr.nii.gz"), "--mask-out", str(o / "lrm.nii.gz")]) == 0
    assert main(["upsample", str(o / "lr.nii.gz"), "--mask", str(o / "lrm.nii.gz"), "--method", "cubic", "-o",
                 str(o / "hr.nii.gz"), "--maps"]) == 0
    err = capsys.readouterr().err
    expected = (0, 2) if codes in ((0, 0), None) else codes
    for name in ("dti", "mask", "lr", "lrm", "hr", "hr_FA", "hr_V1"):
        assert _header_codes(o / f"{name}.nii.gz") == expected, name
    assert np.allclose(nib.load(o / "hr.nii.gz").affine, nib.load(o / "dti.nii.gz").affine, atol=1e-5)
    if codes is None:  # read without a word before
        assert "an Analyze 7.5 file holds no orientation" in err
    if codes == (0, 0):
        assert "holds no orientation (qform and sform codes 0)" in err
    if codes in ((0, 0), None):
        for shift in ("0,0,0", "1,0,1"):  # read again where written: a grid centred anew moves 1.5 voxels at x3
            assert main(["degrade", str(dwi), "--factor", "3", "--shift", shift, "-o", str(o / f"lr{shift}.nii.gz")]) == 0
        moved = nib.load(o / "lr1,0,1.nii.gz").affine[:3, 3] - nib.load(o / "lr0,0,0.nii.gz").affine[:3, 3]
        assert np.allclose(np.abs(moved), np.abs(nib.load(dwi).affine[:3, :3] @ [1, 0, 1]), atol=1e-4)


def test_codes_are_carried_within_a_run_only(tmp_path):
    """Within one command's run (carried_codes, as the `iqt` dispatch holds it) an output on an input's grid gets its
    codes; one made from no file, or written outside a run (the Slicer module, a library caller), is in scanner space."""
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.fileio.nifti import carried_codes

    tensor = Volume(np.tile(np.float32([1e-3, 0, 1e-3, 0, 0, 1e-3]), (4, 4, 4, 1)), AFFINE, "tensor")
    img = nib.Nifti1Image(tensor.data[:, :, :, None, :], AFFINE)
    img.set_qform(AFFINE, code=1)
    img.set_sform(AFFINE, code=4)
    nib.save(img, tmp_path / "mni.nii.gz")
    finer = AFFINE.copy()
    finer[:3, :3] /= 2
    with carried_codes():
        fileio.save_scalar(Volume(np.ones((4, 4, 4), np.float32), finer), tmp_path / "before.nii.gz")
        lr = fileio.load_tensor(tmp_path / "mni.nii.gz")
        fileio.save_scalar(Volume(np.ones((8, 8, 8), np.float32), finer), tmp_path / "hr.nii.gz")
        turned = AFFINE[:, [1, 0, 2, 3]]
        fileio.save_scalar(Volume(np.ones((4, 4, 4), np.float32), turned), tmp_path / "turned.nii.gz")
    fileio.save_tensor(lr, tmp_path / "outside.nii.gz")
    assert _header_codes(tmp_path / "before.nii.gz") == (1, 1)
    assert _header_codes(tmp_path / "hr.nii.gz") == (1, 4)
    assert _header_codes(tmp_path / "turned.nii.gz") == (1, 1)
    assert _header_codes(tmp_path / "outside.nii.gz") == (1, 1)


def test_batch_writes_in_scanner_space_whatever_runs_its_subjects():
    """`iqt batch` runs its subjects in this process or in worker processes outside the dispatch's run: codes are not
    carried there, so its outputs do not differ by --workers (both as before: codes 1 and 1)."""
    from types import SimpleNamespace

    from ImageQualityTransferLib.apps.cli import _Printed, _run
    from ImageQualityTransferLib.fileio import nifti

    seen = {}

    def func(args):
        seen[args.command] = nifti._GRIDS.get() is not None
        return 0

    for command in ("batch", "fit"):
        args = SimpleNamespace(command=command, func=func, threads=None, debug=False)
        assert _run(args, _Printed(sys.stdout)) == 0
    assert seen == {"batch": False, "fit": True}


def _patched(path, offset, value, fmt):
    """The gzipped NIfTI at `path` with one header field overwritten (as a damaged or hand-edited header holds it)."""
    import gzip
    import struct

    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, *value)
    path.write_bytes(gzip.compress(bytes(raw)))
    return path


def test_nibabel_s_own_log_lines_stay_off_stderr(tmp_path, capsys, caplog):
    """nibabel's logger wrote 'sizeof_hdr should be 348; set sizeof_hdr to 348' and 'data code 4096 not recognized'
    before the refusal's line (dim[0] 9), and 'pixdim[1,2,3] should be non-zero' four times on a run that succeeded:
    none of its records is made now (its handler writes to the stderr it found at import, which the capture may not
    see, so they are counted here), and the refusal is one line."""
    from helpers import bundle_volume

    from ImageQualityTransferLib.apps.cli import main

    def nibabel_lines():
        return [r.getMessage() for r in caplog.records if r.name.startswith("nibabel")]

    fileio.save_tensor(bundle_volume(shape=(6, 6, 6)), tmp_path / "lr.nii.gz")
    bad = _patched(tmp_path / "lr.nii.gz", 40, (9,), "<h")  # dim[0]: 9 dimensions, more than NIfTI's 7
    capsys.readouterr()
    assert main(["upsample", str(bad), "--method", "cubic", "-o", str(tmp_path / "o.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("iqt: error: ") and nibabel_lines() == [], (err, nibabel_lines())
    fileio.save_tensor(bundle_volume(shape=(6, 6, 6)), tmp_path / "p.nii.gz")
    _patched(tmp_path / "p.nii.gz", 252, (0,), "<h")  # qform_code 0: the sform gives the grid
    zero = _patched(tmp_path / "p.nii.gz", 80, (0.0, 0.0, 0.0), "<3f")  # pixdim[1:4]
    assert main(["upsample", str(zero), "--method", "cubic", "-o", str(tmp_path / "o.nii.gz")]) == 0
    assert nibabel_lines() == [] and "pixdim" not in capsys.readouterr().err


@pytest.mark.parametrize("qform, zeros, said", [(0, (1, 2, 3), "axes 1, 2 and 3"), (1, (3,), "axis 3")])
def test_a_header_with_no_voxel_size_is_warned_of(tmp_path, capsys, qform, zeros, said):
    """pixdim 0 with no sform: nibabel assumes 1 mm, and its line on it is kept off stderr, so nothing had been said."""
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), None)
    img.header["qform_code"], img.header["sform_code"] = qform, 0
    for axis in zeros:
        img.header["pixdim"][axis] = 0
    nib.save(img, tmp_path / "a.nii.gz")
    with pytest.warns(IQTWarning, match=rf"a.nii.gz: the header gives no voxel size \(pixdim 0 along {said}\); 1 mm "
                                        "assumed: fix the header"):
        assert np.allclose(fileio.load_scalar(tmp_path / "a.nii.gz").voxel_size, 1.0)


def test_a_header_with_its_voxel_size_or_an_sform_is_not_warned_of(tmp_path, recwarn):
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "a.nii.gz")
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    img.header["pixdim"][3] = 0  # the sform gives the grid
    nib.save(img, tmp_path / "b.nii.gz")
    for name in ("a", "b"):
        fileio.load_scalar(tmp_path / f"{name}.nii.gz")
    assert not [w for w in recwarn if "voxel size" in str(w.message)]


@pytest.mark.parametrize("zero", [False, True])
def test_a_nifti_pair_read_by_its_img_name_is_warned_of_by_its_header(tmp_path, recwarn, zero):
    """A .hdr/.img pair with a qform only, named by its .img data file: the voxel size was read right (2 mm), yet the
    data file's first bytes had been read as the header and 'pixdim 0 along axes 1, 2 and 3' said of it."""
    data = np.zeros((8, 8, 8), np.float32)  # the first 348 data bytes 0, as outside a brain
    data[4:, 4:, 4:] = 1
    img = nib.Nifti1Pair(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    img.set_qform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    img.set_sform(None, code=0)
    nib.save(img, tmp_path / "a.img")
    if zero:  # pixdim[3] 0 (nibabel's save sets it from the affine)
        raw = bytearray((tmp_path / "a.hdr").read_bytes())
        raw[88:92] = struct.pack("<f", 0.0)
        (tmp_path / "a.hdr").write_bytes(bytes(raw))
    for name in ("a.img", "a.hdr"):
        size = fileio.load_scalar(tmp_path / name).voxel_size
        said = [str(w.message) for w in recwarn if "voxel size" in str(w.message)]
        assert np.allclose(size, (2.0, 2.0, 1.0 if zero else 2.0)), size
        assert said == ([f"{tmp_path / name}: the header gives no voxel size (pixdim 0 along axis 3); 1 mm assumed: fix "
                         "the header (pixdim, e.g. with fslchpixdim or nibabel) where the voxel size matters"]
                        if zero else []), said
        recwarn.clear()
