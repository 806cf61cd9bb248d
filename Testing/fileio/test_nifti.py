"""NIfTI I/O conventions: tensor files (5-D symmetric matrix, or 4-D in a requested order) and DWI reading."""

import re
import warnings

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.core.volume import Volume

from helpers import random_spd, random_tensors


def test_tensor_nifti_is_5d_symmatrix_lower_triangular(tmp_path):
    t = random_spd(4 * 5 * 3).reshape(4, 5, 3, 6).astype(np.float32)
    aff = np.diag([-2.0, 2.0, 2.0, 1.0])
    path = tmp_path / "dti.nii.gz"
    fileio.save_tensor(Volume(t, aff, "tensor"), path)
    img = nib.load(path)
    assert img.shape == (4, 5, 3, 1, 6)
    assert img.header.get_intent()[0] == "symmetric matrix"
    assert np.allclose(np.asarray(img.dataobj)[:, :, :, 0, 1], t[..., 1])  # Dxy is the second element
    back = fileio.load_tensor(path)
    assert np.array_equal(back.data, t) and np.allclose(back.affine, aff)


# Affines where each tool's frame is the voxel axes: FSL's for a negative determinant, MRtrix's for RAS storage.
IDENTITY_FRAME = {"fsl": np.diag([-2.0, 2.0, 2.0, 1.0]), "mrtrix": np.diag([2.0, 2.0, 2.0, 1.0]),
                  "dipy": np.diag([-2.0, 2.0, 2.0, 1.0])}


@pytest.mark.parametrize("order", ["fsl", "mrtrix", "dipy"])
def test_4d_tensor_orders_on_request(tmp_path, order):
    t = random_spd(24).reshape(2, 3, 4, 6).astype(np.float32)
    path = tmp_path / f"{order}.nii.gz"
    fileio.save_tensor(Volume(t, IDENTITY_FRAME[order], "tensor"), path, order=order)
    raw = np.asarray(nib.load(path).dataobj)
    names = {"fsl": ["xx", "xy", "xz", "yy", "yz", "zz"], "mrtrix": ["xx", "yy", "zz", "xy", "xz", "yz"],
             "dipy": ["xx", "xy", "yy", "xz", "yz", "zz"]}[order]
    lower = ["xx", "xy", "yy", "xz", "yz", "zz"]
    for k, name in enumerate(names):
        assert np.allclose(raw[..., k], t[..., lower.index(name)])
    assert np.array_equal(fileio.load_tensor(path, order).data, t)
    with pytest.raises(IQTError, match="--tensor-order"):
        fileio.load_tensor(path)


def _fit_as_the_tool_does(d_world, rot, grad_frame):
    """Noiseless DWIs of one world-frame tensor on a 2^3 grid, fitted by dipy with the gradients as the tool holds
    them: `grad_frame` maps voxel-axis directions into the tool's frame (its tensors come out in that frame)."""
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    rng = np.random.default_rng(1)
    g_world = rng.normal(size=(30, 3))
    g_world /= np.linalg.norm(g_world, axis=1, keepdims=True)
    g_vox = g_world @ rot  # rows: R^T g, R orthogonal
    bvals = np.r_[0.0, np.full(30, 1000.0)]
    signal = 1000.0 * np.exp(-bvals[1:] * np.einsum("ni,ij,nj->n", g_world, d_world, g_world))
    data = np.tile(np.r_[1000.0, signal], (2, 2, 2, 1))
    gtab = gradient_table(bvals, bvecs=np.r_[np.zeros((1, 3)), g_vox @ grad_frame.T])
    return TensorModel(gtab, fit_method="OLS").fit(data).lower_triangular()


def _world_fibre():
    w = np.array([0.6, 0.64, 0.48])
    w /= np.linalg.norm(w)
    return w, 1.5e-3 * np.outer(w, w) + 0.3e-3 * (np.eye(3) - np.outer(w, w))


@pytest.mark.parametrize("order", ["fsl", "dipy"])
@pytest.mark.parametrize("affine", [np.diag([2.0, 2.0, 2.5, 1.0]), np.diag([-2.0, 2.0, 2.5, 1.0])],
                         ids=["positive-determinant", "negative-determinant"])
def test_an_fsl_tensor_file_is_read_in_fsl_bvec_frame(tmp_path, affine, order):
    """dtifit (and dipy given FSL bvecs) fits in FSL's bvec frame: voxel axes with x flipped where the affine's
    determinant is positive."""
    w, d_world = _world_fibre()
    rot = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    fsl_frame = np.diag([-1.0, 1.0, 1.0]) if np.linalg.det(affine[:3, :3]) > 0 else np.eye(3)
    fitted = _fit_as_the_tool_does(d_world, rot, fsl_frame)
    path = tmp_path / "dti_tensor.nii.gz"
    as_written = {"fsl": [0, 1, 3, 2, 4, 5], "dipy": [0, 1, 2, 3, 4, 5]}[order]  # dtifit's, dipy's lower triangle
    nib.save(nib.Nifti1Image(fitted[..., as_written].astype(np.float32), affine), path)
    vol = fileio.load_tensor(path, order)
    e1 = np.linalg.eigh(tensors.to_matrix(vol.data[0, 0, 0].astype(float)))[1][:, -1]
    assert abs(abs((rot @ e1) @ w) - 1) < 1e-5  # the fibre points where it does in the world
    fileio.save_tensor(vol, tmp_path / "again.nii.gz", order=order)
    np.testing.assert_allclose(np.asarray(nib.load(tmp_path / "again.nii.gz").dataobj), np.asarray(nib.load(path).dataobj))


def test_an_mrtrix_tensor_file_of_an_oblique_scan_is_read_in_scanner_frame(tmp_path):
    """dwi2tensor fits with its gradients in scanner (RAS) coordinates, so its tensors are in that frame."""
    c, s = np.cos(np.radians(25.0)), np.sin(np.radians(25.0))
    rot = np.array([[-c, -s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # LAS storage turned by 25 degrees about S
    affine = np.eye(4)
    affine[:3, :3] = rot * [2.0, 2.0, 3.0]
    w, d_world = _world_fibre()
    fitted = _fit_as_the_tool_does(d_world, rot, rot)
    path = tmp_path / "dt.nii.gz"
    nib.save(nib.Nifti1Image(fitted[..., [0, 2, 5, 1, 3, 4]].astype(np.float32), affine), path)  # D11 D22 D33 D12 D13 D23
    vol = fileio.load_tensor(path, "mrtrix")
    e1 = np.linalg.eigh(tensors.to_matrix(vol.data[0, 0, 0].astype(float)))[1][:, -1]
    assert abs(abs((rot @ e1) @ w) - 1) < 1e-5
    assert abs(abs(e1 @ w) - 1) > 0.05  # read as voxel-axis components, the fibre would point elsewhere
    fileio.save_tensor(vol, tmp_path / "again.nii.gz", order="mrtrix")
    np.testing.assert_allclose(np.asarray(nib.load(tmp_path / "again.nii.gz").dataobj), np.asarray(nib.load(path).dataobj),
                               rtol=0, atol=1e-9)


def test_dwi_reading_and_gradient_checks(tmp_path):
    data = np.random.default_rng(0).random((4, 4, 4, 8)).astype(np.float32) * 100
    dwi_path = tmp_path / "dwi.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([-2.0, 2, 2, 1])), dwi_path)
    bvecs = np.vstack([[0, 0, 0], np.eye(3), np.eye(3)[::-1], [[0.6, 0.8, 0]]])
    np.savetxt(tmp_path / "dwi.bval", [[0, 1000, 1000, 1000, 1000, 1000, 1000, 1000]], fmt="%g")
    np.savetxt(tmp_path / "dwi.bvec", bvecs.T)
    dwi = fileio.load_dwi(dwi_path)
    assert dwi.data.shape == (4, 4, 4, 8) and np.allclose(dwi.bvecs, bvecs)
    # positive determinant: FSL's x flip is undone so directions are in voxel axes
    pos = tmp_path / "pos.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2, 2, 1])), pos)
    assert np.allclose(fileio.load_dwi(pos, tmp_path / "dwi.bval", tmp_path / "dwi.bvec").bvecs[:, 0], -bvecs[:, 0])
    np.savetxt(tmp_path / "short.bval", [[0, 1000, 1000]], fmt="%g")
    with pytest.raises(IQTError, match="8 volumes but short.bval has 3"):
        fileio.load_dwi(dwi_path, tmp_path / "short.bval", tmp_path / "dwi.bvec")


def test_gz_outputs_are_gzip_members_that_every_reader_reads_as_one_file(tmp_path, monkeypatch):
    """`.nii.gz` outputs are compressed in parallel as concatenated gzip members: nibabel, Python's gzip and VTK's
    NIfTI reader (zlib's gzread, as ITK/Slicer, FSL and MRtrix read) all see the whole volume."""
    import gzip
    import zlib

    from ImageQualityTransferLib.fileio import nifti

    monkeypatch.setattr(nifti, "GZIP_MEMBER", 4096)  # many members on a small volume
    vol = Volume(random_tensors((9, 8, 7)), np.diag([-2.0, 2.0, 2.0, 1.0]), "tensor")
    path = tmp_path / "t.nii.gz"
    fileio.save_tensor(vol, path)
    blob, members = path.read_bytes(), 0
    while blob:
        d = zlib.decompressobj(31)
        d.decompress(blob)
        blob, members = d.unused_data, members + 1
    assert members > 1
    back = fileio.load_tensor(path)
    np.testing.assert_array_equal(back.data, vol.data)
    assert len(gzip.open(path).read()) == 352 + vol.data.size * 4  # header + extension marker, then the data
    vtk = pytest.importorskip("vtk", reason="VTK is not installed")
    from vtk.util.numpy_support import vtk_to_numpy

    reader = vtk.vtkNIFTIImageReader()
    reader.SetFileName(str(path))
    reader.Update()
    image = reader.GetOutput()
    assert image.GetDimensions() == (9, 8, 7) and image.GetNumberOfScalarComponents() == 6
    got = vtk_to_numpy(image.GetPointData().GetScalars())  # VTK orders the voxels its own way: compare all values
    np.testing.assert_array_equal(np.sort(got, axis=None), np.sort(vol.data, axis=None))


def test_a_label_map_is_a_mask_and_a_fractional_map_is_taken_with_a_warning(tmp_path):
    from ImageQualityTransferLib.core.errors import IQTWarning

    labels = np.zeros((6, 6, 6), np.int16)
    labels[1:3], labels[3:5] = 1, 2
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "labels.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fileio.load_mask(tmp_path / "labels.nii.gz").data.sum() == 4 * 36
    with pytest.warns(IQTWarning, match="the seed ROI holds labels 1, 2; they are seeded as one region"):
        assert fileio.load_mask(tmp_path / "labels.nii.gz", seeds=True).data.sum() == 4 * 36
    fa = np.where(labels > 0, 0.4, 0.0).astype(np.float32)
    nib.save(nib.Nifti1Image(fa, np.eye(4)), tmp_path / "fa.nii.gz")
    with pytest.warns(IQTWarning, match="fractional values"):
        assert fileio.load_mask(tmp_path / "fa.nii.gz").data.sum() == 4 * 36
    small = np.zeros((40, 40, 40), np.float32)  # a seed ROI of 32 voxels of 0.5: said as one, its size read
    small[:2, :4, :4] = 0.5
    nib.save(nib.Nifti1Image(small, np.eye(4)), tmp_path / "seeds.nii.gz")
    with pytest.warns(IQTWarning, match=r"the seed ROI holds fractional .* taken as a seed \(32 voxels, 0.05 % of the grid\)"):
        fileio.load_mask(tmp_path / "seeds.nii.gz", seeds=True)


def test_a_fractional_mask_on_another_grid_is_refused_without_its_warning_first(tmp_path):
    """A probability map on another grid: the refusal is the one line said (its fractional-values warning had come
    first, two lines for one bad input: a bad-input audit); on the grid it is still warned of."""
    from ImageQualityTransferLib.core.errors import IQTWarning

    ref = Volume(random_tensors((6, 5, 4)), np.eye(4), "tensor")
    nib.save(nib.Nifti1Image(np.full((5, 5, 4), 0.4, np.float32), np.eye(4)), tmp_path / "other.nii.gz")
    for load in (lambda p: fileio.load_mask(p, ref), lambda p: fileio.load_mask_refined(p, ref, "the tensor grid")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(IQTError, match="mask shape"):
                load(tmp_path / "other.nii.gz")
    nib.save(nib.Nifti1Image(np.full((6, 5, 4), 0.4, np.float32), np.eye(4)), tmp_path / "same.nii.gz")
    for load in (lambda p: fileio.load_mask(p, ref), lambda p: fileio.load_mask_refined(p, ref, "the tensor grid")):
        with pytest.warns(IQTWarning, match="fractional values"):
            assert load(tmp_path / "same.nii.gz").data.all()


def test_a_mask_file_stored_in_another_axis_order_is_read_onto_the_input_grid(tmp_path):
    """A mask written with the first axis reversed (its affine says so) is the same brain: read onto the input's grid;
    one half a voxel off is refused in one line."""
    aff = np.diag([-2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [30.0, -20.0, -10.0]
    ref = Volume(random_tensors((6, 5, 4)), aff, "tensor")
    mask = np.zeros((6, 5, 4), np.uint8)
    mask[1:4, 1:3, 1:3] = 1
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = 5
    nib.save(nib.Nifti1Image(np.ascontiguousarray(mask[::-1]), aff @ flip), tmp_path / "flipped.nii.gz")
    np.testing.assert_array_equal(fileio.load_mask(tmp_path / "flipped.nii.gz", ref).data, mask.astype(bool))
    off = aff.copy()
    off[0, 3] += 1.0
    nib.save(nib.Nifti1Image(mask, off), tmp_path / "off.nii.gz")
    with pytest.raises(IQTError, match="another position or orientation") as said:
        fileio.load_mask(tmp_path / "off.nii.gz", ref)
    assert "entries up to 1 mm apart, where 0.002 mm" in str(said.value)  # how far, and what passes (an audit)


def test_a_nan_background_reads_as_an_empty_one_and_any_other_nan_is_refused(tmp_path):
    """Tools that write NaN outside the brain (all six elements) mean no tensor there: read as zero, the way this
    project writes a background; a voxel with only some elements NaN, or an Inf, is a broken file and refused."""
    t = random_spd(4 * 5 * 3).reshape(4, 5, 3, 6).astype(np.float32)
    t[0] = np.nan
    aff = np.diag([-2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(t, aff), tmp_path / "nan.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a background: no warning
        back = fileio.load_tensor(tmp_path / "nan.nii.gz", "dipy")
    assert not back.data[0].any() and np.array_equal(back.data[1:], t[1:])
    t[2, 2, 1] = np.nan  # inside the tensors: a failed fit written as NaN, said
    nib.save(nib.Nifti1Image(t, aff), tmp_path / "hole.nii.gz")
    with pytest.warns(UserWarning, match="1 voxel inside the tensors holds NaN"):
        assert not fileio.load_tensor(tmp_path / "hole.nii.gz", "dipy").data[2, 2, 1].any()
    t[1, 0, 0, 2] = np.nan
    nib.save(nib.Nifti1Image(t, aff), tmp_path / "partial.nii.gz")
    with warnings.catch_warnings(), pytest.raises(IQTError, match="1 NaN/Inf value in"):
        warnings.simplefilter("ignore")  # the hole above, said again
        fileio.load_tensor(tmp_path / "partial.nii.gz", "dipy")


@pytest.mark.parametrize("writer, affine, warned", [
    ("dipy", np.diag([2.0, 2.0, 2.0, 1.0]), True),  # positive determinant: dipy's frame differs by an x flip
    ("dipy", np.diag([-2.0, 2.0, 2.0, 1.0]), False),  # the usual LAS storage: both frames agree
    ("iqt", np.diag([2.0, 2.0, 2.0, 1.0]), False),  # this tool's own file says so in its intent name
])
def test_a_5d_file_that_may_be_dipys_on_a_positive_grid_is_said(tmp_path, writer, affine, warned):
    """dipy_fit_dti writes 5D SYMMATRIX files in FSL's bvec frame; read without --tensor-order dipy on a grid with a
    positive determinant their fibres are mirrored and FA/MD do not show it: one warning names the flag."""
    t = random_spd(3 * 3 * 3).reshape(3, 3, 3, 6).astype(np.float32)
    path = tmp_path / "dti.nii.gz"
    if writer == "iqt":
        fileio.save_tensor(Volume(t, affine, "tensor"), path)
    else:  # as dipy.io.utils.nifti1_symmat writes it: symmetric-matrix intent, no name
        img = nib.Nifti1Image(t[:, :, :, None, :], affine)
        img.header.set_intent("symmetric matrix", (), name="")
        nib.save(img, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fileio.load_tensor(path)  # an engine caller that does not say whether the order was given
    said = [str(w.message) for w in caught if "--tensor-order dipy" in str(w.message)]
    assert len(said) == int(warned), said
    if warned:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fileio.load_tensor(path, "dipy", stated=True)  # the flag given: read in dipy's frame, nothing to say
            fileio.load_tensor(path, "nifti", stated=True)  # or voxel axes, said so
        # the command line without --tensor-order: refused, naming both (an audit: dipy_fit_dti's file had come out
        # mirrored, a median 41-49 degrees off, with this warning only)
        with pytest.raises(IQTError, match=r"say which: --tensor-order nifti \(voxel axes\) or --tensor-order dipy"):
            fileio.load_tensor(path, stated=False)
    else:
        fileio.load_tensor(path, stated=False)
    if writer == "iqt":  # this tool's own file read as dipy's, where the frames differ: refused (it was mirrored)
        with pytest.raises(IQTError, match="holds its components in voxel axes.*leave --tensor-order dipy out"):
            fileio.load_tensor(path, "dipy", stated=True)


@pytest.mark.parametrize("given, right", [("mrtrix", "fsl"), ("dipy", "fsl"), ("fsl", "mrtrix")])
def test_a_wrong_tensor_order_is_refused_naming_the_one_that_reads_it(tmp_path, capsys, given, right):
    """A 4D file read in the wrong order is refused, and the message names the order under which its tensors are
    positive definite."""
    import nibabel as nib

    from ImageQualityTransferLib.apps import cli
    from ImageQualityTransferLib.core import tensors
    from ImageQualityTransferLib.dmri import dti
    from ImageQualityTransferLib.dmri.phantom import make_phantom
    from ImageQualityTransferLib.fileio.volumes import file_frame

    dwi = make_phantom(shape=(24, 26, 20), voxel_mm=4.0, n_dirs=12)
    t = dti.fit_dti(dwi, dti.brain_mask(dwi))
    frame = file_frame(right, t.affine)
    in_file = t.data if frame is None else tensors.rotate(t.data, np.asarray(frame).T)
    nib.save(nib.Nifti1Image(tensors.to_order(in_file, right).astype(np.float32), t.affine), tmp_path / "t.nii.gz")
    code = cli.main(["upsample", str(tmp_path / "t.nii.gz"), "--tensor-order", given, "-o", str(tmp_path / "o.nii.gz"),
                     "--method", "cubic"])
    err = capsys.readouterr().err
    assert code == 2 and f"read with --tensor-order {right}, 100 % of them are" in err, err
    assert cli.main(["upsample", str(tmp_path / "t.nii.gz"), "--tensor-order", right, "-o", str(tmp_path / "o.nii.gz"),
                     "--method", "cubic"]) == 0


def test_track_and_evaluate_name_the_order_that_reads_a_file(tmp_path, capsys):
    """`iqt track` and `iqt evaluate` given a dtifit file read in MRtrix's order name the file and the order that
    reads it, as upsample does (they said only 'check --tensor-order'), with the option of that file."""
    from ImageQualityTransferLib.apps import cli
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    fileio.save_dwi(make_phantom(shape=(24, 26, 20), voxel_mm=4.0, n_dirs=12), tmp_path / "dwi.nii.gz")
    run = lambda *a: cli.main([str(x) for x in a])  # noqa: E731
    assert run("fit", tmp_path / "dwi.nii.gz", "-o", tmp_path / "hr.nii.gz", "--mask-out", tmp_path / "m.nii.gz") == 0
    assert run("degrade", tmp_path / "dwi.nii.gz", "-o", tmp_path / "lr.nii.gz") == 0
    assert run("upsample", tmp_path / "lr.nii.gz", "--method", "cubic", "-o", tmp_path / "up_fsl.nii.gz",
               "--output-order", "fsl") == 0
    fileio.save_tensor(fileio.load_tensor(tmp_path / "hr.nii.gz"), tmp_path / "hr_fsl.nii.gz", order="fsl")
    capsys.readouterr()
    runs = {
        "track": (["track", tmp_path / "hr_fsl.nii.gz", "--tensor-order", "mrtrix", "--seeds", tmp_path / "m.nii.gz",
                   "-o", tmp_path / "t.trk"], "hr_fsl.nii.gz", "read with --tensor-order fsl"),
        "pred": (["evaluate", "--pred", tmp_path / "up_fsl.nii.gz", "--tensor-order", "mrtrix", "--truth",
                  tmp_path / "hr.nii.gz", "--mask", tmp_path / "m.nii.gz"], "up_fsl.nii.gz", "read with --tensor-order fsl"),
        "truth": (["evaluate", "--pred", tmp_path / "up_fsl.nii.gz", "--tensor-order", "fsl", "--truth",
                   tmp_path / "hr_fsl.nii.gz", "--truth-order", "mrtrix", "--mask", tmp_path / "m.nii.gz"],
                  "hr_fsl.nii.gz", "read with --truth-order fsl"),
    }
    for name, (args, path, words) in runs.items():
        code = run(*args)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and path in err and words in err, (name, err)
    assert not (tmp_path / "t.trk").exists()


def test_bvecs_not_of_unit_length_and_a_header_without_orientation_are_said(tmp_path):
    """Both were read without a word: directions of another length (now read as MRtrix reads them, b scaled by their
    squared length), and a header whose qform and sform codes are 0, read on nibabel's default grid."""
    from ImageQualityTransferLib.core.errors import IQTWarning
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=(10, 10, 8), voxel_mm=4.0, n_dirs=12)
    fileio.save_dwi(dwi, tmp_path / "dwi.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fileio.load_dwi(tmp_path / "dwi.nii.gz")
    g = np.loadtxt(tmp_path / "dwi.bvec")
    np.savetxt(tmp_path / "dwi.bvec", g * np.where(np.loadtxt(tmp_path / "dwi.bval") > 0, 1.2, 1.0), fmt="%.6f")
    with pytest.warns(IQTWarning, match="directions of length 1.2 to 1.2, not 1: read as MRtrix"):
        fileio.load_dwi(tmp_path / "dwi.nii.gz")
    img = nib.load(tmp_path / "dwi.nii.gz")
    img.header["qform_code"], img.header["sform_code"] = 0, 0
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), None, header=img.header), tmp_path / "nocode.nii.gz")
    np.savetxt(tmp_path / "dwi.bvec", g, fmt="%.6f")
    (tmp_path / "dwi.bvec").rename(tmp_path / "nocode.bvec")
    (tmp_path / "dwi.bval").rename(tmp_path / "nocode.bval")
    with pytest.warns(IQTWarning, match="holds no orientation"):
        fileio.load_dwi(tmp_path / "nocode.nii.gz")


def test_directions_shortened_to_lower_b_fit_as_the_series_labelled_with_its_own_b_values(tmp_path):
    """A series labelled b=2000 throughout, its b=1000 volumes given by directions of length 0.707 (how scanners that
    allow one b per series take two shells; MRtrix scales b by |g|^2), fits the tensors of the same series labelled
    truly: read as labelled, its MD was 25 % low with one warning (an input audit)."""
    from ImageQualityTransferLib.core.errors import IQTWarning
    from ImageQualityTransferLib.dmri.dti import fit_dti
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=(10, 10, 8), voxel_mm=4.0, n_dirs=12)
    fileio.save_dwi(dwi, tmp_path / "dwi.nii.gz")
    truth = fit_dti(fileio.load_dwi(tmp_path / "dwi.nii.gz")).data
    b, g = np.loadtxt(tmp_path / "dwi.bval"), np.loadtxt(tmp_path / "dwi.bvec")
    weighted = b > 0
    assert np.allclose(b[weighted], 1000)
    np.savetxt(tmp_path / "dwi.bval", np.where(weighted, 2000, 0)[None], fmt="%d")
    np.savetxt(tmp_path / "dwi.bvec", g * np.where(weighted, np.sqrt(0.5), 1.0), fmt="%.8f")
    with pytest.warns(IQTWarning, match=r"length 0\.707 to 0\.707, not 1: read as MRtrix .* \(b 1000 to 1000\)"):
        shortened = fileio.load_dwi(tmp_path / "dwi.nii.gz")
    assert np.allclose(shortened.bvals[weighted], 1000) and np.allclose(np.linalg.norm(shortened.bvecs[weighted], axis=1), 1)
    assert np.allclose(fit_dti(shortened).data, truth, rtol=1e-5, atol=1e-9)


def test_a_gzipped_file_with_a_flipped_bit_is_refused_as_damaged(tmp_path):
    """gzip's checksum is verified: nibabel stops reading at the data's last byte, and a DWI with one flipped bit was
    fitted and upsampled as valid data. The intact file still reads exactly as nibabel reads it."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, (12, 12, 8, 7)).astype(np.int16)
    path = tmp_path / "dwi.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
    (tmp_path / "dwi.bval").write_text("0 1000 1000 1000 1000 1000 1000\n")
    (tmp_path / "dwi.bvec").write_text("\n".join(" ".join(["0"] + [f"{v:.4f}" for v in row]) for row in np.eye(3)[:, [0, 1, 2, 0, 1, 2]]) + "\n")
    assert np.array_equal(fileio.load_dwi(path).data, data.astype(np.float32))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (tmp_path / "flip.nii.gz").write_bytes(bytes(raw))
    for name in ("dwi.bval", "dwi.bvec"):
        (tmp_path / name.replace("dwi", "flip")).write_bytes((tmp_path / name).read_bytes())
    with pytest.raises(IQTError, match="truncated or damaged"):
        fileio.load_dwi(tmp_path / "flip.nii.gz")


def test_a_mask_on_another_grid_is_said_to_differ(tmp_path):
    """With one grid to compare, the refusal said the mask 'matches the input's grid' (iqt fit, degrade,
    track); it says that it differs."""
    ref = Volume(np.zeros((8, 8, 6), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    nib.save(nib.Nifti1Image(np.ones((4, 4, 3), np.uint8), np.diag([4.0, 4.0, 4.0, 1.0])), str(tmp_path / "m.nii.gz"))
    with pytest.raises(IQTError, match=r"mask shape \(4, 4, 3\) differs from the input's grid \(8, 8, 6\)"):
        fileio.load_mask(tmp_path / "m.nii.gz", reference=ref)


@pytest.mark.parametrize("which", ["bval", "bvec"])
def test_a_nan_in_the_gradient_table_names_the_file_that_holds_it(tmp_path, which):
    """A NaN in the bvec file was blamed on the bval file (a fresh-eyes audit)."""
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    fileio.save_dwi(make_phantom(shape=(8, 8, 8), voxel_mm=4.0, n_dirs=12), tmp_path / "dwi.nii.gz")
    path = tmp_path / f"dwi.{which}"
    values = np.atleast_2d(np.loadtxt(path))
    values[0, 3] = np.nan
    np.savetxt(path, values, fmt="%.6f")
    with pytest.raises(IQTError, match=rf"^{re.escape(str(path))}: NaN or Inf among its numbers"):
        fileio.load_dwi(tmp_path / "dwi.nii.gz")


def test_a_complex_valued_file_is_refused(tmp_path):
    """A complex tensor file was read with numpy's 'discards the imaginary part' warning (a fresh-eyes audit)."""
    path = tmp_path / "t.nii.gz"
    nib.save(nib.Nifti1Image(random_spd(4 * 4 * 4).reshape(4, 4, 4, 1, 6).astype(np.complex64), np.eye(4)), path)
    with pytest.raises(IQTError, match="complex-valued voxels"):
        fileio.load_tensor(path)


def test_which_direction_lengths_scale_b(tmp_path):
    """Scaled only where the bval file gives one b and some direction is more than 5 % short (a code review: lengths of
    0.975-1.025 had made three 'shells' of one, and a table listing two b-values had had them scaled twice)."""
    from ImageQualityTransferLib.core.errors import IQTWarning
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    fileio.save_dwi(make_phantom(shape=(8, 8, 8), voxel_mm=4.0, n_dirs=12), tmp_path / "dwi.nii.gz")
    b, g = np.loadtxt(tmp_path / "dwi.bval"), np.loadtxt(tmp_path / "dwi.bvec")
    weighted = b > 0
    half = weighted & (np.cumsum(weighted) % 2 == 0)

    def read(bvals, lengths):
        np.savetxt(tmp_path / "dwi.bval", bvals[None], fmt="%g")
        np.savetxt(tmp_path / "dwi.bvec", g * lengths, fmt="%.8f")
        with pytest.warns(IQTWarning, match="directions of length") as said:
            dwi = fileio.load_dwi(tmp_path / "dwi.nii.gz")
        assert np.allclose(np.linalg.norm(dwi.bvecs[weighted], axis=1), 1)
        return dwi.bvals, str(said[0].message)

    two = np.where(weighted, 2000.0, 0.0)
    bvals, said = read(two, np.where(half, np.sqrt(0.5), 1.0))  # two shells given by shortening: scaled
    assert np.allclose(bvals[half], 1000) and np.allclose(bvals[weighted & ~half], 2000) and "read as MRtrix" in said
    rounding = np.where(weighted, np.where(half, 0.975, 1.025), 1.0)
    bvals, said = read(two, rounding)  # lengths off by rounding: one shell, as labelled
    assert np.array_equal(bvals, two) and "with its b from the bval file" in said
    listed = np.where(half, 1000.0, two)
    bvals, said = read(listed, np.where(half, np.sqrt(0.5), 1.0))  # the table lists its shells already
    assert np.array_equal(bvals, listed) and "lists several b-values already" in said


def test_the_command_line_asks_which_frame_a_positive_grid_5d_file_is_in(tmp_path, capsys):
    """`iqt upsample` of a 5D file iqt did not write, on a positive-determinant grid, without --tensor-order: one line
    naming both orders, exit 2, nothing written; with either order given it runs."""
    from ImageQualityTransferLib.apps import cli

    t = random_spd(6 * 6 * 6).reshape(6, 6, 6, 6).astype(np.float32)
    img = nib.Nifti1Image(t[:, :, :, None, :], np.diag([2.0, 2.0, 2.0, 1.0]))
    img.header.set_intent("symmetric matrix", (), name="")  # as dipy.io.utils.nifti1_symmat writes it
    path = tmp_path / "dti.nii.gz"
    nib.save(img, path)
    out = tmp_path / "out.nii.gz"
    assert cli.main(["upsample", str(path), "--method", "cubic", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tensor-order nifti (voxel axes) or --tensor-order dipy" in err[0], err
    assert not out.exists()
    for order in ("nifti", "dipy"):
        assert cli.main(["upsample", str(path), "--method", "cubic", "--tensor-order", order, "-o", str(out)]) == 0
        assert "mirror" not in capsys.readouterr().err


def test_evaluate_asks_which_frame_a_positive_grid_reference_is_in(tmp_path, capsys):
    """The reference of `iqt evaluate`, a 5D file iqt did not write on a positive-determinant grid: read in voxel axes
    with nothing said where a 4D prediction was read with --tensor-order fsl (the review). Refused, naming
    --truth-order, unless --truth-order (or a --tensor-order that reads it too) says its frame."""
    from ImageQualityTransferLib.apps import cli

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    t = random_spd(12 * 12 * 12, seed=4).reshape(12, 12, 12, 6).astype(np.float32)
    img = nib.Nifti1Image(t[:, :, :, None, :], affine)
    img.header.set_intent("symmetric matrix", (), name="")  # as dipy.io.utils.nifti1_symmat writes it
    nib.save(img, tmp_path / "truth.nii.gz")
    # the predictions 1 % off the reference: its copy is refused as a prediction
    fileio.save_tensor(Volume(t * 1.01, affine, "tensor"), tmp_path / "pred_fsl.nii.gz", order="fsl")
    nib.save(nib.Nifti1Image(np.ones((12, 12, 12), np.uint8), affine), tmp_path / "mask.nii.gz")
    base = ["evaluate", "--pred", str(tmp_path / "pred_fsl.nii.gz"), "--truth", str(tmp_path / "truth.nii.gz"),
            "--mask", str(tmp_path / "mask.nii.gz")]
    assert cli.main(base + ["--tensor-order", "fsl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--truth-order nifti (voxel axes) or --truth-order dipy" in err, err
    assert cli.main(base + ["--tensor-order", "fsl", "--truth-order", "dipy"]) == 0
    # a 5D prediction read with --tensor-order nifti or dipy: the reference is another file, perhaps of another tool
    # (an ANTs reference beside a dipy prediction, a dipy one beside a voxel-axis one had been read in the
    # prediction's frame and scored mirrored, 43 degrees off, exit 0: a tool-inputs audit); refused until said
    off = nib.Nifti1Image(t[:, :, :, None, :] * np.float32(1.01), affine)
    off.header.set_intent("symmetric matrix", (), name="")
    nib.save(off, tmp_path / "pred5.nii.gz")
    five = ["evaluate", "--pred", str(tmp_path / "pred5.nii.gz"), "--truth", str(tmp_path / "truth.nii.gz"),
            "--mask", str(tmp_path / "mask.nii.gz")]
    capsys.readouterr()
    for order in ("nifti", "dipy"):
        assert cli.main(five + ["--tensor-order", order]) == 2
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]  # after the warnings this random field's MD gets
        assert err.count("iqt: error:") == 1 and "--truth-order nifti (voxel axes) or --truth-order dipy" in last, err
        assert cli.main(five + ["--tensor-order", order, "--truth-order", order]) == 0
