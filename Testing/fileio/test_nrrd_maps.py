"""`iqt upsample --uncertainty U.nrrd` (or .nhdr) writes its maps as scalar NRRD for Slicer (fileio/nrrd.py
save_scalar_nrrd): the values of the NIfTI maps of the same run, on the tensor NRRD's grid lines (space, space
directions, space origin), with the record a NIfTI map carries (its kind, unit and method; the run) in key/value fields (not the Slicer module's node fields),
read back by this project's reader, by ITK's (SimpleITK where installed; Slicer's volumes logic in
Testing/slicer/test_mrml.py) and by `iqt evaluate` (Testing/apps/test_evaluate_units.py), written all or none. Before,
a NRRD map name was refused ('NRRD is written for tensor outputs only'); a mask is still NIfTI
(Testing/fileio/test_output_paths.py)."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from helpers import PSR, bundle_volume, make_affine, random_tensors, rot, run_cli
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.volume import Volume

GRID = make_affine(rot(-8, 15, 5) @ PSR, (2.0, 2.0, 2.0), (0.5, 60.0, -22.0))  # sagittal, oblique: no axis is trivial
MAPS = ("std", "direction")


def _upsample(capsys, d, out: str, unc: str):
    code, _, err = run_cli(capsys, "upsample", d / "lr.nii.gz", "--method", "biqt", "--factor", "2", "-o", d / out,
                           "--uncertainty", d / unc, "--threads", "1")
    assert code == 0, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run written as NRRD (u.nrrd beside o.nrrd), NIfTI (n.nii.gz beside n_t.nii.gz) and detached NRRD."""
    d = tmp_path_factory.mktemp("nrrd_maps")
    fileio.save_tensor(bundle_volume(GRID, shape=(8, 8, 8)), d / "lr.nii.gz")
    capsys = _Quiet()
    for out, unc in (("o.nrrd", "u.nrrd"), ("n_t.nii.gz", "n.nii.gz"), ("h.nrrd", "h.nhdr")):
        _upsample(capsys, d, out, unc)
    return d


class _Quiet:
    """run_cli's capsys for a module fixture: the output is left to pytest's capture."""

    def readouterr(self):
        return "", ""


def _header_lines(path) -> dict:
    text = path.read_bytes().split(b"\n\n")[0].decode("ascii")
    return dict(line.split(": ", 1) for line in text.splitlines()[1:] if ": " in line and ":=" not in line)


def test_nrrd_maps_hold_the_nifti_maps_on_the_tensor_grid_with_their_record(runs):
    tensor = fileio.load_tensor(runs / "o.nrrd")
    t_hdr = _header_lines(runs / "o.nrrd")
    for key, name in zip(MAPS, ("u.nrrd", "u_direction.nrrd")):
        got, want = fileio.load_scalar(runs / name), fileio.load_scalar(runs / name.replace("u", "n", 1)
                                                                       .replace(".nrrd", ".nii.gz"))
        np.testing.assert_array_equal(got.data, want.data)
        assert got.data.max() > 0
        np.testing.assert_array_equal(got.affine, tensor.affine)  # the tensor NRRD's affine, exactly
        assert got.meta["descrip"] == want.meta["descrip"] == f"iqt biqt {key} {'degrees' if key == 'direction' else 'mm2/s'}"
        hdr = _header_lines(runs / name)
        assert hdr["space"] == t_hdr["space"] and hdr["space origin"] == t_hdr["space origin"]
        assert "none " + hdr["space directions"] == t_hdr["space directions"]
        import nrrd

        fields = nrrd.read_header(str(runs / name))
        # not the module's node fields (um2/ms values there, mm2/s here): loaded as node attributes, such a map had
        # joined the module's maps and shared their scale (fileio/nrrd.py MAP_FIELDS)
        assert not any(k.startswith("ImageQualityTransfer.") for k in fields), fields
        from ImageQualityTransferLib.fileio.nifti import run_record_of
        from ImageQualityTransferLib.fileio.records import RUN_KEY, read_run

        run, nifti_run = read_run(fields[RUN_KEY]), run_record_of(runs / name.replace("u", "n", 1).replace(".nrrd", ".nii.gz"))
        assert run["options"]["uncertainty"] == str(runs / "u.nrrd") and run["model"] == nifti_run["model"]


def test_a_detached_header_map_reads_back_with_its_data_file(runs):
    for key, name in zip(MAPS, ("h.nhdr", "h_direction.nhdr")):
        assert (runs / name.replace(".nhdr", ".raw.gz")).is_file()
        got = fileio.load_scalar(runs / name)
        want = fileio.load_scalar(runs / ("n.nii.gz" if key == "std" else "n_direction.nii.gz"))
        np.testing.assert_array_equal(got.data, want.data)
        np.testing.assert_array_equal(got.affine, fileio.load_tensor(runs / "h.nrrd").affine)
        assert got.meta["descrip"] == want.meta["descrip"]


def test_simpleitk_reads_the_nrrd_maps(runs):
    sitk = pytest.importorskip("SimpleITK", reason="SimpleITK is no dependency; Slicer's ITK reader: Testing/slicer/test_mrml.py")
    for name in ("u.nrrd", "h.nhdr"):
        img = sitk.ReadImage(str(runs / name))
        ours = fileio.load_scalar(runs / name)
        affine = np.eye(4)
        affine[:3, :3] = np.reshape(img.GetDirection(), (3, 3)) * np.asarray(img.GetSpacing())
        affine[:3, 3] = img.GetOrigin()
        np.testing.assert_allclose(np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine, ours.affine, atol=1e-12)  # LPS -> RAS
        np.testing.assert_array_equal(sitk.GetArrayFromImage(img).transpose(2, 1, 0), ours.data)
        assert img.GetMetaData("iqt_made_by") == "iqt biqt std mm2/s"


def test_a_failed_nrrd_map_write_leaves_no_output(runs, tmp_path, capsys, monkeypatch):
    """The direction map's write fails as a full disk does, after the tensor and the std map: none is left (all or
    none, fileio/staging.py), nor a temporary file."""
    from ImageQualityTransferLib.fileio import nrrd as nrrd_io

    (tmp_path / "lr.nii.gz").write_bytes((runs / "lr.nii.gz").read_bytes())
    real, calls = nrrd_io._write_data, []

    def write(f, arr, compress, level):
        calls.append(arr.shape)
        if len(calls) == 3:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(f, arr, compress, level)

    monkeypatch.setattr(nrrd_io, "_write_data", write)
    code, _, err = run_cli(capsys, "upsample", tmp_path / "lr.nii.gz", "--method", "biqt", "--factor", "2", "-o",
                           tmp_path / "o.nrrd", "--uncertainty", tmp_path / "u.nrrd", "--threads", "1")
    assert len(calls) == 3 and code != 0 and "no space is left" in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.nii.gz"]


def test_a_mask_and_a_map_round_trip_through_save_scalar(tmp_path):
    vol = bundle_volume(GRID, shape=(3, 4, 5))
    data = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    for name, values in (("m.nrrd", data), ("b.nhdr", data > 30)):
        fileio.save_scalar(vol.replace(data=values, kind="scalar"), tmp_path / name, "iqt biqt fa_std unitless")
        got = fileio.load_scalar(tmp_path / name)
        np.testing.assert_array_equal(got.data, values.astype(np.float32))
        np.testing.assert_array_equal(got.affine, GRID)
        assert got.meta["descrip"] == "iqt biqt fa_std unitless"


def test_a_map_file_carries_its_record_not_the_module_node_fields(tmp_path):
    """The module's map node fields (ImageQualityTransfer.Map/.Unit/.Run) name um2/ms values (slicer/mrml.py
    NODE_UNITS); a file's map is in mm2/s: written under them, it joined the module's maps once they were node
    attributes and shared their scale. The record stays in iqt_made_by, which load_scalar and evaluate read."""
    import nrrd

    vol = bundle_volume(GRID, shape=(3, 4, 5))
    fileio.save_scalar(vol.replace(data=np.full((3, 4, 5), 1e-4, np.float32), kind="scalar"), tmp_path / "u.nrrd",
                       "iqt biqt std mm2/s")
    fields = nrrd.read_header(str(tmp_path / "u.nrrd"))
    assert not any(k.startswith("ImageQualityTransfer.") for k in fields), fields
    got = fileio.load_scalar(tmp_path / "u.nrrd")
    assert got.meta["descrip"] == "iqt biqt std mm2/s" and got.meta["module_fields"] == {}


def test_an_unreadable_map_is_told_what_to_do_with_a_map(tmp_path):
    """A truncated map, a detached map without its data file, a tensor given as a map: each refusal speaks of a map
    (they had said to re-save it as a diffusion tensor NRRD, or to save a mask as a label map)."""
    from ImageQualityTransferLib.core.errors import IQTError

    vol = bundle_volume(GRID, shape=(3, 4, 5))
    fileio.save_scalar(vol.replace(data=np.ones((3, 4, 5), np.float32), kind="scalar"), tmp_path / "u.nrrd")
    raw = (tmp_path / "u.nrrd").read_bytes()
    (tmp_path / "cut.nrrd").write_bytes(raw[: len(raw) - 20])
    fileio.save_scalar(vol.replace(data=np.ones((3, 4, 5), np.float32), kind="scalar"), tmp_path / "h.nhdr")
    (tmp_path / "h.raw.gz").unlink()
    fileio.save_tensor(vol, tmp_path / "t.nrrd")
    for name in ("cut.nrrd", "h.nhdr", "t.nrrd"):
        with pytest.raises(IQTError) as refused:
            fileio.load_scalar(tmp_path / name)
        said = str(refused.value)
        assert "iqt upsample --uncertainty" in said and "tensor NRRD" not in said and "label map" not in said, said
    assert "(a tensor volume), not a 3D map; give the map 'iqt upsample --uncertainty' wrote, not the tensor" in said
    with pytest.raises(IQTError) as refused:  # a mask is still told of a label map
        fileio.load_mask(tmp_path / "t.nrrd")
    assert "not a 3D label map; save the mask from Slicer as a label map" in str(refused.value)


def test_an_unreadable_mask_nrrd_is_told_of_a_label_map_and_a_tensor_of_a_tensor_nrrd(tmp_path):
    """As CHANGELOG.md says: a truncated mask.nrrd, or a folder at its name, had been told to re-save it as a
    diffusion tensor NRRD (or to give a tensor NRRD file); a tensor's lines are unchanged."""
    import os

    from ImageQualityTransferLib.core.errors import IQTError

    vol = bundle_volume(GRID, shape=(3, 4, 5))
    fileio.save_scalar(vol.replace(data=np.ones((3, 4, 5), np.float32), kind="scalar"), tmp_path / "m.nrrd")
    fileio.save_tensor(vol, tmp_path / "t.nrrd")
    for name in ("m.nrrd", "t.nrrd"):
        raw = (tmp_path / name).read_bytes()
        (tmp_path / ("cut_" + name)).write_bytes(raw[: len(raw) - 20])
    os.mkdir(tmp_path / "folder.nrrd")
    for name in ("cut_m.nrrd", "folder.nrrd"):
        with pytest.raises(IQTError) as refused:
            fileio.load_mask(tmp_path / name)
        said = str(refused.value)
        assert said.endswith("save the mask from Slicer as a label map (.nrrd or .nii.gz)") and "tensor" not in said, said
    for name in ("cut_t.nrrd", "folder.nrrd"):
        with pytest.raises(IQTError) as refused:
            fileio.load_tensor(tmp_path / name)
        assert "a diffusion tensor NRRD as Slicer saves it" in str(refused.value), refused.value


# ---------------------------------------------------------------- --maps beside a NRRD output


def test_maps_beside_a_nrrd_output_are_nrrd_on_its_grid_with_v1_a_3_vector_volume(tmp_path, capsys):
    """`-o X.nrrd --maps` (or X.nhdr) wrote X_FA.nii.gz ... (NIfTI beside the Slicer output); now X_FA.nrrd ... on the
    tensor NRRD's grid lines, the NIfTI run's values at the same RAS voxel centres, V1 a spatial vector volume as Slicer
    writes one (LPS components; read back in RAS: the NIfTI V1 turned by the grid's rotation), read back by this
    project's reader and by pynrrd."""
    nrrd = pytest.importorskip("nrrd")
    from ImageQualityTransferLib.fileio.nrrd import direction_rotation

    fileio.save_tensor(Volume(random_tensors((6, 6, 5), seed=3), GRID, "tensor"), tmp_path / "lr.nii.gz")
    for out in ("n.nii.gz", "o.nrrd", "h.nhdr"):
        code, _, err = run_cli(capsys, "upsample", tmp_path / "lr.nii.gz", "--method", "cubic", "--factor", "2", "-o",
                               tmp_path / out, "--maps", "--threads", "1")
        assert code == 0, err
    assert not list(tmp_path.glob("[oh]_*.nii*"))
    assert (tmp_path / "h_FA.raw.gz").is_file()
    rot_ = direction_rotation(GRID)
    for key in ("FA", "MD", "L1", "L2", "L3", "V1"):
        want = fileio.load_scalar(tmp_path / f"n_{key}.nii.gz")
        for name in (f"o_{key}.nrrd", f"h_{key}.nhdr"):
            got = fileio.load_scalar(tmp_path / name)
            data, hdr = nrrd.read(str(tmp_path / name), index_order="F")
            dirs = np.asarray(hdr["space directions"], float)
            to_ras = np.ones(3)
            if key == "V1":  # as Slicer writes a spatial vector volume: LPS components, kinds vector, a frame
                assert hdr["space"] == "left-posterior-superior" and np.isnan(dirs[0]).all()
                assert hdr["kinds"] == ["vector", "domain", "domain", "domain"]
                np.testing.assert_array_equal(hdr["measurement frame"], np.eye(3))
                to_ras = np.array([-1.0, -1.0, 1.0])
                data, dirs = np.moveaxis(data, 0, -1) * to_ras, dirs[1:]
            else:
                assert hdr["space"] == "right-anterior-superior"
            np.testing.assert_allclose(to_ras[:, None] * dirs.T, want.affine[:3, :3], atol=1e-6)
            np.testing.assert_allclose(to_ras * hdr["space origin"], want.affine[:3, 3], atol=1e-6)
            np.testing.assert_allclose(got.affine, want.affine, atol=1e-6)
            np.testing.assert_array_equal(got.data, data)
            if key != "V1":
                # eigenvalues of the tensors turned to RAS for V1 (upsample.file_maps): float32 rounding apart
                np.testing.assert_allclose(got.data, want.data, rtol=1e-4, atol=1e-6 * np.abs(want.data).max())
                continue
            flip = np.diag([-1.0 if np.linalg.det(GRID[:3, :3]) > 0 else 1.0, 1, 1])  # the NIfTI V1: FSL's frame
            ras = want.data @ (rot_ @ flip).T
            inside = np.any(ras != 0, axis=-1)
            assert inside.mean() > 0.9 and np.array_equal(inside, np.any(got.data != 0, axis=-1))
            np.testing.assert_allclose(np.abs(np.sum(got.data * ras, axis=-1))[inside], 1.0, atol=1e-4)


def test_a_map_name_a_nrrd_output_cannot_write_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """A folder at a `.nhdr` map's data file name (X_FA.raw.gz): one line, before the prediction, nothing written."""
    from ImageQualityTransferLib.apps.cli import options

    fileio.save_tensor(bundle_volume(GRID, shape=(6, 6, 5)), tmp_path / "lr.nii.gz")
    (tmp_path / "h_FA.raw.gz").mkdir()
    monkeypatch.setattr(options, "predict_with_mask", lambda *a, **k: pytest.fail("the prediction ran"))
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run_cli(capsys, "upsample", tmp_path / "lr.nii.gz", "--method", "cubic", "--factor", "2", "-o",
                           tmp_path / "h.nhdr", "--maps", "--threads", "1")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "h_FA.raw.gz: is a folder" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("space, frame", [("right-anterior-superior", None), ("left-posterior-superior", "identity"),
                                          ("left-anterior-superior", "turned")])
def test_a_3_vector_map_is_read_in_ras_by_its_space_and_measurement_frame(tmp_path, space, frame):
    """A vector NRRD's components are in its measurement frame (else its space's axes, the format's default): read as
    RAS components (a V1 re-saved by Slicer, LPS, had been read as RAS: a review of the NRRD maps)."""
    nrrd = pytest.importorskip("nrrd")
    ras = np.random.default_rng(2).normal(size=(4, 3, 2, 3))
    flip = {"right-anterior-superior": [1, 1, 1], "left-posterior-superior": [-1, -1, 1],
            "left-anterior-superior": [-1, 1, 1]}[space]
    mf = {None: np.eye(3), "identity": np.eye(3), "turned": np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])}[frame]
    stored = (ras * flip) @ np.linalg.inv(mf).T  # world components = MF @ stored
    header = {"space": space, "kinds": ["vector", "domain", "domain", "domain"],
              "space directions": np.vstack([[np.nan] * 3, np.diag(flip) * 2.0])}
    if frame is not None:
        header["measurement frame"] = mf.T  # pynrrd writes the rows it is given as the header's vectors (columns)
    nrrd.write(str(tmp_path / "v.nrrd"), np.moveaxis(stored, -1, 0).astype(np.float32), header, index_order="F")
    got = fileio.load_scalar(tmp_path / "v.nrrd")
    np.testing.assert_allclose(got.data, ras, atol=1e-6)
    np.testing.assert_allclose(got.affine[:3, :3], np.eye(3) * 2.0)
