"""Tensor NRRD files (fileio.nrrd): exact round trips on oblique and sagittal grids, .nhdr and the load/save
dispatch, and one clear IQTError for every bad file. Slicer's own reading of these files is in
Testing/slicer/test_mrml.py.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.fileio.nrrd import direction_rotation, load_tensor_nrrd, save_tensor_nrrd

from helpers import AFFINES, SHAPE, assert_same, tensor_volume

nrrd = pytest.importorskip("nrrd")


# ---------------------------------------------------------------- file round trips


@pytest.mark.parametrize("key", sorted(AFFINES))
def test_nrrd_round_trip_identical(tmp_path, key):
    vol = tensor_volume(key)
    path = tmp_path / "dti.nrrd"
    save_tensor_nrrd(vol, path)
    back = load_tensor_nrrd(path)
    assert_same(vol, back)
    assert back.meta["reoriented_components"] is False
    hdr = nrrd.read_header(str(path))
    assert hdr["kinds"] == ["3D-matrix", "domain", "domain", "domain"]
    assert hdr["space"] == "right-anterior-superior"
    np.testing.assert_allclose(hdr["measurement frame"].T, direction_rotation(vol.affine), atol=1e-15)
    assert not list(tmp_path.glob(".iqt-*")), "temporary files left behind"
    assert b".iqt-" not in path.read_bytes()  # gzip's header held the temporary file's name


def test_nhdr_and_io_dispatch(tmp_path):
    vol = tensor_volume("psr_oblique", seed=3)
    fileio.save_tensor(vol, tmp_path / "dti.nhdr")
    assert (tmp_path / "dti.raw.gz").exists()
    assert_same(vol, fileio.load_tensor(tmp_path / "dti.nhdr"))
    save_tensor_nrrd(vol, tmp_path / "raw.nrrd", compress=False)
    assert_same(vol, fileio.load_tensor(tmp_path / "raw.nrrd"))


# ---------------------------------------------------------------- bad files


def test_bad_files_raise_iqt_error(tmp_path):
    vol = tensor_volume("psr", seed=9)
    good = tmp_path / "good.nrrd"
    save_tensor_nrrd(vol, good)
    raw = good.read_bytes()
    head, _, body = raw.partition(b"\n\n")

    truncated = tmp_path / "truncated.nrrd"
    truncated.write_bytes(raw[: len(head) + 2 + len(body) // 2])
    with pytest.raises(IQTError, match="truncated or damaged"):
        load_tensor_nrrd(truncated)

    corrupted = tmp_path / "corrupted.nrrd"
    corrupted.write_bytes(head + b"\n\n" + bytes(b ^ 0x5A for b in body))
    with pytest.raises(IQTError, match="truncated or damaged"):
        load_tensor_nrrd(corrupted)

    garbage = tmp_path / "garbage.nrrd"
    garbage.write_bytes(b"not a nrrd at all\n" + gzip.compress(b"x" * 100))
    with pytest.raises(IQTError, match="cannot be read as NRRD"):
        load_tensor_nrrd(garbage)

    with pytest.raises(IQTError, match="not found"):
        load_tensor_nrrd(tmp_path / "missing.nrrd")

    scalar = tmp_path / "scalar.nrrd"
    nrrd.write(str(scalar), np.zeros(SHAPE, np.float32), {"space": "right-anterior-superior"})
    with pytest.raises(IQTError, match="not a diffusion tensor volume"):
        load_tensor_nrrd(scalar)

    dwi = tmp_path / "dwi.nrrd"
    nrrd.write(
        str(dwi),
        np.zeros((7,) + SHAPE, np.float32),
        {"kinds": ["list", "domain", "domain", "domain"], "modality": "DWMRI"},
        custom_field_map={"modality": "string"},
    )
    with pytest.raises(IQTError, match="diffusion-weighted"):
        load_tensor_nrrd(dwi)

    bad_space = tmp_path / "scanner.nrrd"
    bad_space.write_bytes(head.replace(b"space: right-anterior-superior", b"space: scanner-xyz") + b"\n\n" + body)
    with pytest.raises(IQTError, match="space 'scanner-xyz' is not supported"):
        load_tensor_nrrd(bad_space)


# ---------------------------------------------------------------- masks


@pytest.mark.parametrize("key", sorted(AFFINES))
def test_a_slicer_label_map_nrrd_is_read_as_the_mask_of_its_tensor_nrrd(tmp_path, key):
    """A label map saved by Slicer beside its tensor NRRD (LPS space, short labels) is a mask on the tensors' grid; it
    was refused as "NRRD is read only for tensor volumes" (input audit)."""
    vol = tensor_volume(key, seed=4)
    save_tensor_nrrd(vol, tmp_path / "dti.nrrd")
    labels = np.zeros(SHAPE, np.int16)
    labels[1:-1, 2:-1, 1:] = 1
    lps = np.diag([-1.0, -1.0, 1.0])
    nrrd.write(str(tmp_path / "mask.nrrd"), labels, {
        "space": "left-posterior-superior", "space directions": (lps @ vol.affine[:3, :3]).T,
        "space origin": lps @ vol.affine[:3, 3], "kinds": ["domain"] * 3})
    tensor = fileio.load_tensor(tmp_path / "dti.nrrd")
    mask = fileio.load_mask(tmp_path / "mask.nrrd", reference=tensor)
    np.testing.assert_array_equal(mask.data, labels > 0)
    np.testing.assert_allclose(mask.affine, tensor.affine, atol=1e-9)
    flipped = tmp_path / "flipped.nrrd"  # the same voxels stored along another direction land on the same voxels
    nrrd.write(str(flipped), labels[::-1], {
        "space": "left-posterior-superior", "space directions": (lps @ (vol.affine[:3, :3] @ np.diag([-1.0, 1, 1]))).T,
        "space origin": lps @ (vol.affine[:3, :3] @ [SHAPE[0] - 1, 0, 0] + vol.affine[:3, 3]), "kinds": ["domain"] * 3})
    np.testing.assert_array_equal(fileio.load_mask(flipped, reference=tensor).data, labels > 0)
    with pytest.raises(IQTError, match="not a 3D label map"):
        fileio.load_mask(tmp_path / "dti.nrrd")
    one = tmp_path / "one.nrrd"  # a trailing axis of one, as a NIfTI mask may have: read as the 3D map
    nrrd.write(str(one), labels[..., None], {
        "space": "left-posterior-superior", "kinds": ["domain"] * 3 + ["list"],
        "space directions": np.vstack([(lps @ vol.affine[:3, :3]).T, [np.nan] * 3]),
        "space origin": lps @ vol.affine[:3, 3]})
    np.testing.assert_array_equal(fileio.load_mask(one, reference=tensor).data, labels > 0)


@pytest.mark.parametrize("tensor_name", ["dti.nii.gz", "dti.nrrd"])
def test_upsample_takes_a_slicer_label_map_of_a_nifti_or_nrrd_input_and_refuses_one_on_another_grid(tmp_path, capsys,
                                                                                                 tensor_name):
    """`iqt upsample --mask` a label map as Slicer saves it (.nhdr, LPS space) of a NIfTI or NRRD tensor input on the same
    grid: the run's mask (the outputs zero outside it); one a voxel off: the mask refusal's one line, nothing written.
    The grid is larger than the mask with its margin, and the mask off-centre, so that a mask ignored or read mirrored
    changes the output (on a 5x4x3 grid the margin had covered every voxel: a review)."""
    from helpers import bundle_volume, run_cli

    shape = (10, 8, 6)
    vol = bundle_volume(AFFINES[sorted(AFFINES)[0]], shape=shape)
    fileio.save_tensor(vol, tmp_path / tensor_name)
    labels = np.zeros(shape, np.int16)
    labels[2:5, 1:3, 1:3] = 1
    lps = np.diag([-1.0, -1.0, 1.0])
    for name, shift in (("mask.nhdr", 0.0), ("off.nhdr", 1.0)):
        origin = vol.affine[:3, :3] @ [shift, 0, 0] + vol.affine[:3, 3]
        nrrd.write(str(tmp_path / name), labels, {"space": "left-posterior-superior", "kinds": ["domain"] * 3,
                                                  "space directions": (lps @ vol.affine[:3, :3]).T,
                                                  "space origin": lps @ origin, "encoding": "gzip"})
    code, _, err = run_cli(capsys, "upsample", tmp_path / tensor_name, "-o", tmp_path / "up.nii.gz", "--method", "nearest",
                           "--factor", "2", "--mask", tmp_path / "mask.nhdr", "--threads", "1")
    assert code == 0, err
    up = fileio.load_tensor(tmp_path / "up.nii.gz")
    margin = np.zeros(shape, bool)  # the mask widened by one input voxel, which the methods fill (propagate_within)
    for i, j, k in np.argwhere(labels > 0):
        margin[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2, max(k - 1, 0):k + 2] = True
    filled = np.repeat(np.repeat(np.repeat(margin, 2, 0), 2, 1), 2, 2)
    assert not filled.all() and np.array_equal(np.any(up.data != 0, axis=-1), filled)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_cli(capsys, "upsample", tmp_path / tensor_name, "-o", tmp_path / "up2.nii.gz", "--method",
                             "nearest", "--factor", "2", "--mask", tmp_path / "off.nhdr", "--threads", "1")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "off.nhdr: the mask has the shape of the input's grid but another position or orientation" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_dwi_nrrd_given_as_tensors_is_told_a_way_that_reads_it(tmp_path):
    """A DWI NRRD where a tensor file is wanted: the message named 'iqt fit', which refuses a NRRD DWI (a Slicer
    audit); it now names the conversion that 'iqt fit' reads, and Slicer's own ways."""
    import nrrd

    header = {"type": "float", "dimension": 4, "space": "left-posterior-superior",
              "kinds": ["list", "space", "space", "space"], "sizes": [7, 4, 4, 4],
              "space directions": [[np.nan] * 3, [2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]], "modality": "DWMRI",
              "DWMRI_b-value": "1000", "DWMRI_gradient_0000": "0 0 0"}
    nrrd.write(str(tmp_path / "dwi.nrrd"), np.ones((7, 4, 4, 4), np.float32), header)
    with pytest.raises(IQTError) as said:
        load_tensor_nrrd(tmp_path / "dwi.nrrd")
    assert "diffusion-weighted (DWI) NRRD" in str(said.value) and "--conversionMode NrrdToFSL" in str(said.value)


# ---------------------------------------------------------------- the grid check before any work


def test_the_grid_check_before_any_work_reads_a_nrrd_grid_and_refuses_an_unreadable_file(tmp_path):
    """`fileio.check_tensor_output(out.nrrd, file)` skipped the check, without a word, for any file nibabel could not
    open: a NRRD grid (a sheared one then refused only at the write, after the work), a damaged NIfTI header. Now a NRRD
    grid is read from its header and checked, and a file that cannot be read is refused in one line."""
    sheared = np.array([[2.0, 0.6, 0, -10], [0, 2.0, 0, -12], [0, 0, 2.0, 5], [0, 0, 0, 1]])
    lps = np.diag([-1.0, -1.0, 1.0])
    for name, axes in (("sheared.nrrd", sheared), ("straight.nhdr", AFFINES[sorted(AFFINES)[0]])):
        nrrd.write(str(tmp_path / name), np.zeros(SHAPE, np.float32), {
            "space": "left-posterior-superior", "space directions": (lps @ axes[:3, :3]).T,
            "space origin": lps @ axes[:3, 3], "kinds": ["domain"] * 3})
    with pytest.raises(IQTError, match="sheared"):
        fileio.check_tensor_output(tmp_path / "o.nrrd", tmp_path / "sheared.nrrd")
    fileio.check_tensor_output(tmp_path / "o.nrrd", tmp_path / "straight.nhdr")  # at right angles: passes
    fileio.check_tensor_output(tmp_path / "o.nii.gz", tmp_path / "sheared.nrrd")  # a NIfTI output takes any grid
    (tmp_path / "damaged.nii.gz").write_bytes(b"\x1f\x8b not a NIfTI")
    for name in ("damaged.nii.gz", "missing.nrrd"):
        with pytest.raises(IQTError, match=name):
            fileio.check_tensor_output(tmp_path / "o.nrrd", tmp_path / name)


def test_one_reading_of_a_nrrd_headers_grid_serves_batch_and_the_output_check(tmp_path, monkeypatch):
    """`fileio.sizes.header_affine` (iqt batch --voxel-size) read a NRRD's grid in its own copy of
    `fileio.nrrd.header_affine`: one reading now, a tensor NRRD's grid as its reader gives it, None for any other."""
    from ImageQualityTransferLib.fileio import nrrd as iqt_nrrd, sizes

    vol = tensor_volume(sorted(AFFINES)[0])
    save_tensor_nrrd(vol, tmp_path / "t.nrrd")
    np.testing.assert_allclose(sizes.header_affine(tmp_path / "t.nrrd"), load_tensor_nrrd(tmp_path / "t.nrrd").affine)
    nrrd.write(str(tmp_path / "s.nrrd"), np.zeros(SHAPE, np.float32), {"kinds": ["domain"] * 3})
    assert sizes.header_affine(tmp_path / "s.nrrd") is None  # no tensor axis: left to the reader's line
    monkeypatch.setattr(iqt_nrrd, "header_affine", lambda path, tensor=False: np.diag([7.0, 7.0, 7.0, 1.0]))
    assert sizes.header_affine(tmp_path / "t.nrrd")[0, 0] == 7.0


@pytest.mark.parametrize("units, factor", [('"mm" "mm" "mm"', None), ('"" "" ""', None), ('"cm" "cm" "cm"', "10"),
                                           ('"m" "m" "m"', "1000"), ('"um" "um" "um"', "0.001"),
                                           ('"mm" "cm" "mm"', "10"), ('"furlong" "furlong" "furlong"', "")])
def test_space_units_other_than_mm_are_refused_not_read_as_mm(tmp_path, units, factor):
    """A header's 'space units' had been ignored: a grid in cm was read with voxels ten times too small, and its output
    written so, exit 0 (an audit's leftover). mm, or units left empty, read as before; any other unit is refused in one
    line naming the factor that brings the grid to mm (Slicer reads the numbers as mm whatever the field says), by the
    tensor reader, the map and mask reader and the grid check before any work alike."""
    from ImageQualityTransferLib.fileio.nrrd import header_affine, load_scalar_nrrd

    vol = tensor_volume("las_oblique_aniso")
    paths = (tmp_path / "dti.nrrd", tmp_path / "map.nrrd")
    save_tensor_nrrd(vol, paths[0])
    fileio.save_scalar(vol.replace(data=vol.data[..., 0], kind="scalar"), paths[1])
    for path in paths:
        head, data = path.read_bytes().split(b"\n\n", 1)
        path.write_bytes(head + f"\nspace units: {units}".encode() + b"\n\n" + data)
    readers = (lambda: load_tensor_nrrd(paths[0]), lambda: header_affine(paths[0], tensor=True),
               lambda: load_scalar_nrrd(paths[1], "map"))
    for read in readers:
        if factor is None:
            read()
            continue
        with pytest.raises(IQTError) as exc:
            read()
        said = str(exc.value)
        assert "'space units'" in said and "\n" not in said and (f"by {factor} " in said if factor else "in mm" in said), said
    if factor is None:
        assert_same(load_tensor_nrrd(paths[0]), vol)


def test_space_units_differing_between_axes_name_the_axis_not_in_mm(tmp_path):
    """'space units: "mm" "mm" "cm"' had been refused naming one factor for all the axes ('multiply its space
    directions and space origin by 10'): the axis in cm is named, with its factor."""
    path = tmp_path / "dti.nrrd"
    save_tensor_nrrd(tensor_volume("las_oblique_aniso"), path)
    head, data = path.read_bytes().split(b"\n\n", 1)
    path.write_bytes(head + b'\nspace units: "mm" "mm" "cm"\n\n' + data)
    with pytest.raises(IQTError) as exc:
        load_tensor_nrrd(path)
    said = str(exc.value)
    assert "the third component (its space axis 3, in cm)" in said and "'space origin' by 10" not in said, said


def test_a_nrrd_without_a_space_line_is_refused_naming_the_line_to_add(tmp_path, capsys):
    """A NRRD with 'space dimension: 3' and no 'space' line gives its grid no anatomical directions (the NRRD format);
    Slicer's reader takes it as LPS and this reader had taken it as RAS, so `iqt upsample` and the Slicer module gave
    the same file mirrored in x and y, unsaid. Now it is refused in one line (exit 2, nothing written), a tensor file
    and a mask alike; with the line added it reads as before."""
    from helpers import run_cli

    vol = tensor_volume("las_oblique_aniso", seed=5)
    good = tmp_path / "dti.nrrd"
    save_tensor_nrrd(vol, good)
    spaceless = tmp_path / "spaceless.nrrd"
    spaceless.write_bytes(good.read_bytes().replace(b"space: right-anterior-superior\n", b"space dimension: 3\n", 1))
    labels = np.ones(SHAPE, np.int16)
    mask = tmp_path / "mask.nrrd"
    nrrd.write(str(mask), labels, {"space dimension": 3, "space directions": vol.affine[:3, :3].T,
                                   "space origin": vol.affine[:3, 3], "kinds": ["domain"] * 3})
    before = sorted(p.name for p in tmp_path.iterdir())
    for args, named in (((spaceless,), spaceless), ((good, "--mask", mask), mask)):
        code, out, err = run_cli(capsys, "upsample", *args, "-o", tmp_path / "up.nrrd", "--method", "nearest",
                                 "--factor", "2", "--threads", "1")
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert f"{named}: its header has no 'space' line (only 'space dimension: 3')" in err, err
        assert "add the line 'space: left-posterior-superior'" in err and "Traceback" not in err, err
        assert sorted(p.name for p in tmp_path.iterdir()) == before
    mended = tmp_path / "mended.nrrd"  # the line added: read as the file it was made from
    mended.write_bytes(spaceless.read_bytes().replace(b"space dimension: 3\n", b"space: right-anterior-superior\n"))
    assert_same(vol, load_tensor_nrrd(mended))
