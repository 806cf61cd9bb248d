"""MRtrix's own images (.mif, .mif.gz, .mih) read and written (fileio/mif.py): the fixtures beside this file were made
by MRtrix3's own mrconvert and dwi2tensor from the phantom (mif_fixtures/make_fixtures.sh), each read as its
mrconvert'ed NIfTI is; what `iqt` writes is read back, by MRtrix's mrconvert too where it is installed."""

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers import refused_line
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.orientation import Reorientation
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.dmri.dti import fit_dti
from ImageQualityTransferLib.fileio.nifti import run_record_of

HERE = Path(__file__).parent / "mif_fixtures"


def _canonical(vol: Volume) -> np.ndarray:
    return Reorientation.to_canonical(vol.affine).apply(vol).data


@pytest.mark.parametrize("name, atol", [("dt.mif", 0.0), ("dt_int16.mih", 5.1e-6),
                                        ("dt_strides321_f64.mif.gz", 1e-9)])
def test_a_dwi2tensor_mif_reads_as_its_nifti_does_with_tensor_order_mrtrix(name, atol):
    mif = fileio.load_tensor(HERE / name)  # no --tensor-order: a six-volume MRtrix image is dwi2tensor's
    nii = fileio.load_tensor(HERE / "dt.nii", "mrtrix", stated=True)
    assert mif.meta["order"] == "mrtrix"
    assert np.allclose(Reorientation.to_canonical(mif.affine).apply(mif).affine,
                       Reorientation.to_canonical(nii.affine).apply(nii).affine)
    assert np.abs(_canonical(mif) - _canonical(nii)).max() <= atol


def test_a_dwi_mif_is_fitted_from_its_dw_scheme_as_the_nifti_with_bval_bvec():
    mif = fileio.load_dwi(HERE / "dwi.mif.gz")  # no bval/bvec beside it: its header's dw_scheme
    nii = fileio.load_dwi(HERE / "dwi_from_mif.nii")  # mrconvert -export_grad_fsl's files
    assert np.array_equal(mif.data, nii.data) and np.allclose(mif.affine, nii.affine)
    assert np.allclose(mif.bvals, nii.bvals) and np.allclose(mif.bvecs, nii.bvecs, atol=1e-6)
    assert np.allclose(fit_dti(mif).data, fit_dti(nii).data, atol=1e-9)


def test_a_dwi2mask_bit_mask_reads_as_its_uint8_nifti():
    mif, nii = fileio.load_mask(HERE / "mask.mif"), fileio.load_mask(HERE / "mask.nii")
    assert 0 < mif.data.sum() < mif.data.size  # a mask, not all one or none
    assert np.array_equal(mif.data, nii.data) and np.allclose(mif.affine, nii.affine)


@pytest.mark.parametrize("suffix", [".mif", ".mif.gz"])
def test_a_mif_written_reads_back_as_the_tensors_and_mask(tmp_path, suffix):
    vol = fileio.load_tensor(HERE / "dt.nii", "mrtrix", stated=True)
    fileio.save_tensor(vol, tmp_path / f"out{suffix}", "mrtrix")
    back = fileio.load_tensor(tmp_path / f"out{suffix}")
    assert np.allclose(back.affine, vol.affine) and np.array_equal(back.data, vol.data)
    mask = Volume(np.abs(vol.data[..., 0]) > 5e-4, vol.affine, "mask")
    fileio.save_mask(mask, tmp_path / f"mask{suffix}")
    assert np.array_equal(fileio.load_mask(tmp_path / f"mask{suffix}").data, mask.data)


def test_iqt_upsample_writes_a_mif_beside_its_maps(tmp_path, capsys):
    from ImageQualityTransferLib.apps.cli import main

    assert main(["upsample", str(HERE / "dt.mif"), "-o", str(tmp_path / "up.mif"), "--method", "linear",
                 "--maps"]) == 0
    said = capsys.readouterr().out
    assert "wrote" in said and "dwi2tensor's 4D order" in said and "--tensor-order" not in said  # read without it
    assert run_record_of(tmp_path / "up_FA.mif")["options"]["output"] == str(tmp_path / "up.mif")  # the run's record
    up = fileio.load_tensor(tmp_path / "up.mif")
    assert up.shape3 == (16, 16, 16) and (tmp_path / "up_FA.mif").is_file()
    fa = fileio.load_scalar(tmp_path / "up_FA.mif")
    assert fa.shape3 == up.shape3 and fa.meta.get("descrip") == "iqt linear FA"  # what the map holds, read back


@pytest.mark.skipif(shutil.which("mrconvert") is None, reason="MRtrix3's mrconvert is not on PATH (apt-get install "
                    "mrtrix3)")
def test_mrtrix_reads_the_mif_iqt_writes(tmp_path):
    vol = fileio.load_tensor(HERE / "dt.mif")
    fileio.save_tensor(vol, tmp_path / "out.mif.gz", "mrtrix")
    subprocess.run(["mrconvert", "-quiet", str(tmp_path / "out.mif.gz"), str(tmp_path / "out.nii")], check=True)
    back = fileio.load_tensor(tmp_path / "out.nii", "mrtrix", stated=True)
    assert np.allclose(_canonical(back), _canonical(vol), atol=1e-9)


def _header(path: Path, old: bytes, new: bytes) -> Path:
    raw = (HERE / "dt.mif").read_bytes()
    assert old in raw
    path.write_bytes(raw.replace(old, new, 1))
    return path


@pytest.mark.parametrize("edit, said", [
    ((b"datatype: Float32LE", b"datatype: CFloat32LE"), "datatype 'CFloat32LE' is not read"),
    ((b"dim: 8,8,8,6", b"dim: 8,8,9,6"), "(truncated)"),
    ((b"layout: -0,+1,+2,+3", b"layout: -0,+1,+1,+3"), "repeats a stride"),
    ((b"transform: -0, 0, 1, -14\n", b""), "no 3-row 'transform'"),
    ((b"mrtrix_version: 3.0.3", b"layout: +0,+1,+2,+3  "), "gives 'layout' more than once"),
])
def test_a_mif_not_read_is_one_line_and_nothing_written(tmp_path, capsys, edit, said):
    bad = _header(tmp_path / "bad.mif", *edit)
    refused_line(capsys, ["upsample", bad, "-o", tmp_path / "o.mif", "--method", "linear"], "bad.mif: ", said)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mif"]


def test_a_dwi_mif_without_a_gradient_table_is_one_line(tmp_path, capsys):
    from ImageQualityTransferLib.fileio.mif import write_mif

    dwi = fileio.load_dwi(HERE / "dwi_from_mif.nii")
    write_mif(tmp_path / "dwi.mif", dwi.data, dwi.affine)  # no dw_scheme
    refused_line(capsys, ["fit", tmp_path / "dwi.mif", "-o", tmp_path / "dt.mif"], "dwi.mif: ", "no dw_scheme",
                 "-fslgrad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dwi.mif"]


def _amp2sh(dwi, out) -> None:
    """MRtrix3's amp2sh of the DWI (lmax 4: 15 volumes), run where it is installed."""
    from ImageQualityTransferLib.fileio.mif import write_mif

    table = np.column_stack([dwi.bvecs @ (dwi.affine[:3, :3] / np.linalg.norm(dwi.affine[:3, :3], axis=0)).T, dwi.bvals])
    write_mif(out.with_name("dwi.mif"), np.asarray(dwi.data, np.float32), dwi.affine, {"dw_scheme": [",".join(map(str, r)) for r in table]})
    subprocess.run(["amp2sh", "-quiet", "-lmax", "4", str(out.with_name("dwi.mif")), str(out)], check=True)


def _sh_written(dwi, out) -> None:
    """What amp2sh writes, by this project's writer (CI has no MRtrix): 15 volumes, the DWI's table kept as
    prior_dw_scheme, amp2sh last in command_history."""
    from ImageQualityTransferLib.fileio.mif import write_mif

    write_mif(out, np.asarray(dwi.data, np.float32)[..., :15], dwi.affine,
              {"command_history": ["mrconvert dwi.nii -fslgrad dwi.bvec dwi.bval dwi.mif", "amp2sh dwi.mif sh.mif"],
               "prior_dw_scheme": ["0,0,0,0", "1,0,0,1000"]})


@pytest.mark.parametrize("make", [_sh_written, pytest.param(_amp2sh, marks=pytest.mark.skipif(
    shutil.which("amp2sh") is None, reason="MRtrix3's amp2sh is not on PATH (apt-get install mrtrix3)"))])
def test_an_amp2sh_image_is_told_what_it_is_and_what_to_give_instead(tmp_path, capsys, make):
    """Spherical-harmonic coefficients had been told "if it is a DWI, add its table"; a DWI whose dw_scheme was
    dropped (no prior_dw_scheme) still is."""
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    make(make_phantom(shape=(10, 10, 8), voxel_mm=4.0, n_dirs=16), tmp_path / "sh.mif")
    for argv in (["fit", tmp_path / "sh.mif", "-o", tmp_path / "dt.mif"],
                 ["upsample", tmp_path / "sh.mif", "-o", tmp_path / "hr.mif", "--method", "linear"]):
        refused_line(capsys, argv, "sh.mif: ", "15 volumes, the spherical-harmonic coefficients of lmax 4, written by "
                     "amp2sh", "not a DWI nor diffusion tensors", "give the DWI it was computed from")
    assert not (tmp_path / "dt.mif").exists() and not (tmp_path / "hr.mif").exists()


def _dkt_written(dwi, out) -> None:
    """What dwi2tensor -dkt writes, by this project's writer: 15 volumes, the DWI's table kept as prior_dw_scheme."""
    from ImageQualityTransferLib.fileio.mif import write_mif

    write_mif(out, np.asarray(dwi.data, np.float32)[..., :15], dwi.affine,
              {"command_history": ["mrconvert dwi.nii -fslgrad dwi.bvec dwi.bval dwi.mif",
                                   "dwi2tensor dwi.mif dt.mif -dkt dkt.mif"], "prior_dw_scheme": ["0,0,0,0", "1,0,0,1000"]})


def _dwi2tensor_dkt(dwi, out) -> None:
    """MRtrix3's dwi2tensor -dkt of the DWI, run where it is installed: its table given two shells (it takes three b
    values or more)."""
    from ImageQualityTransferLib.fileio.mif import write_mif

    bvals = np.where(dwi.bvals > 0, 1000.0 + 1000.0 * (np.arange(len(dwi.bvals)) % 2), 0.0)
    table = np.column_stack([dwi.bvecs @ (dwi.affine[:3, :3] / np.linalg.norm(dwi.affine[:3, :3], axis=0)).T, bvals])
    write_mif(out.with_name("dwi.mif"), np.asarray(dwi.data, np.float32), dwi.affine,
              {"dw_scheme": [",".join(map(str, r)) for r in table]})
    subprocess.run(["dwi2tensor", "-quiet", str(out.with_name("dwi.mif")), str(out.with_name("dt.mif")), "-dkt", str(out)],
                   check=True)


@pytest.mark.parametrize("make", [_dkt_written, pytest.param(_dwi2tensor_dkt, marks=pytest.mark.skipif(
    shutil.which("dwi2tensor") is None, reason="MRtrix3's dwi2tensor is not on PATH (apt-get install mrtrix3)"))])
def test_a_kurtosis_tensor_of_15_volumes_is_not_called_spherical_harmonics(tmp_path, capsys, make):
    """dwi2tensor -dkt's 15 volumes keep the DWI's table as prior_dw_scheme, as amp2sh's lmax 4 does: they had been
    called spherical-harmonic coefficients."""
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    make(make_phantom(shape=(10, 10, 8), voxel_mm=4.0, n_dirs=30), tmp_path / "dkt.mif")
    for argv in (["fit", tmp_path / "dkt.mif", "-o", tmp_path / "dt2.mif"],
                 ["upsample", tmp_path / "dkt.mif", "-o", tmp_path / "hr.mif", "--method", "linear"]):
        line = refused_line(capsys, argv, "dkt.mif: ", "15 volumes, the kurtosis tensor of dwi2tensor -dkt",
                            "give the DWI it was computed from")
        assert "spherical-harmonic" not in line, line
    assert not (tmp_path / "dt2.mif").exists() and not (tmp_path / "hr.mif").exists()


def _predicted_written(dwi, out) -> None:
    """What dwi2tensor -predicted_signal writes, by this project's writer: a DWI, its table kept as prior_dw_scheme."""
    from ImageQualityTransferLib.fileio.mif import write_mif

    write_mif(out, np.asarray(dwi.data, np.float32), dwi.affine,
              {"command_history": ["dwi2tensor dwi.mif dt.mif -predicted_signal dkt.mif"],
               "prior_dw_scheme": ["0,0,0,0", "1,0,0,1000"]})


def _dwi2tensor_predicted(dwi, out) -> None:
    """MRtrix3's dwi2tensor -predicted_signal of the DWI, run where it is installed."""
    from ImageQualityTransferLib.fileio.mif import write_mif

    table = np.column_stack([dwi.bvecs @ (dwi.affine[:3, :3] / np.linalg.norm(dwi.affine[:3, :3], axis=0)).T, dwi.bvals])
    write_mif(out.with_name("dwi.mif"), np.asarray(dwi.data, np.float32), dwi.affine,
              {"dw_scheme": [",".join(map(str, r)) for r in table]})
    subprocess.run(["dwi2tensor", "-quiet", str(out.with_name("dwi.mif")), str(out.with_name("dt.mif")),
                    "-predicted_signal", str(out)], check=True)


@pytest.mark.parametrize("make", [_predicted_written, pytest.param(_dwi2tensor_predicted, marks=pytest.mark.skipif(
    shutil.which("dwi2tensor") is None, reason="MRtrix3's dwi2tensor is not on PATH (apt-get install mrtrix3)"))])
def test_dwi2tensor_s_predicted_signal_of_15_volumes_is_told_to_add_its_table(tmp_path, capsys, make):
    """A DWI of 15 volumes whose table MRtrix kept as prior_dw_scheme had been told it is spherical-harmonic
    coefficients, not a DWI."""
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=(10, 10, 8), voxel_mm=4.0, n_dirs=13)
    assert dwi.data.shape[3] == 15
    make(dwi, tmp_path / "dkt.mif")  # named as the kurtosis tensor would be: what it holds decides
    line = refused_line(capsys, ["fit", tmp_path / "dkt.mif", "-o", tmp_path / "dt2.mif"], "dkt.mif: ",
                        "no dw_scheme in its header", "mrconvert ")
    assert "spherical-harmonic" not in line and "kurtosis" not in line, line
    assert not (tmp_path / "dt2.mif").exists()


def test_a_gzipped_dwi_mif_without_a_table_reads_the_bval_and_bvec_beside_it(tmp_path):
    """dwi.mif.gz's FSL files are dwi.bval and dwi.bvec, as for dwi.nii.gz (dwi.mif.bval had been looked for), and
    its BIDS sidecar dwi.json."""
    from ImageQualityTransferLib.fileio.gradients import sidecar_path
    from ImageQualityTransferLib.fileio.mif import write_mif

    dwi = fileio.load_dwi(HERE / "dwi_from_mif.nii")
    fileio.save_dwi(dwi, tmp_path / "dwi.nii.gz")  # writes dwi.bval and dwi.bvec
    write_mif(tmp_path / "dwi.mif.gz", dwi.data, dwi.affine)  # no dw_scheme
    got = fileio.load_dwi(tmp_path / "dwi.mif.gz")
    assert np.allclose(got.bvals, dwi.bvals) and np.allclose(got.bvecs, dwi.bvecs, atol=1e-6)
    assert sidecar_path(tmp_path / "dwi.mif.gz") == tmp_path / "dwi.json"


def test_a_scaling_on_float_data_is_left_unapplied_as_mrtrix_does(tmp_path):
    scaled = _header(tmp_path / "scaled.mif", b"mrtrix_version: 3.0.3", b"scaling: 0.5,2       ")  # same length
    plain = fileio.load_tensor(HERE / "dt.mif")
    assert np.array_equal(fileio.load_tensor(scaled).data, plain.data)
    if shutil.which("mrconvert"):  # MRtrix's own reading: its NIfTI holds the values unscaled
        subprocess.run(["mrconvert", "-quiet", str(scaled), str(tmp_path / "scaled.nii")], check=True)
        assert np.array_equal(fileio.load_tensor(tmp_path / "scaled.nii", "mrtrix", stated=True).data, plain.data)


def test_a_batch_list_line_naming_a_mih_is_a_tensor_file(tmp_path):
    from ImageQualityTransferLib.apps.batch.items import list_items

    (tmp_path / "list.txt").write_text(f"{HERE / 'dt_int16.mih'}\n")  # not a subject folder holding dwi.nii.gz
    assert [(i.kind, i.path) for i in list_items(tmp_path / "list.txt")] == [("dti", str(HERE / "dt_int16.mih"))]


def test_a_mih_is_hashed_with_its_data_file(tmp_path):
    """A .mih's data changed behind the same header is a changed input (iqt batch redoes it, as a .nhdr's), its data
    file is one a run reads, and two .mih behind byte-identical headers are no copies."""
    from ImageQualityTransferLib.apps.batch import items as batch_items
    from ImageQualityTransferLib.apps.batch import records
    from ImageQualityTransferLib.fileio.checksums import first_copy

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for file in ("dt_int16.mih", "dt_int16.dat"):
            shutil.copy(HERE / file, tmp_path / name / file)
    mih, dat = tmp_path / "a" / "dt_int16.mih", tmp_path / "a" / "dt_int16.dat"
    item = batch_items.Item(prefix="sub-a", subdir="sub-a", path=str(mih), kind="dti")
    before = records.input_hashes(item)["InputSHA256"]
    assert (str(dat), "input's data file") in records.input_files(item)
    data = np.fromfile(dat, "<i2")
    (data // 2).astype("<i2").tofile(dat)  # the data halved, the header untouched
    assert records.input_hashes(item)["InputSHA256"] != before
    assert first_copy([mih, tmp_path / "b" / "dt_int16.mih"]) is None


def test_iqt_degrade_to_a_mif_names_no_tensor_order_and_refuses_a_dtifit_style(tmp_path, capsys):
    from ImageQualityTransferLib.apps.cli import main

    assert main(["degrade", str(HERE / "dwi.mif.gz"), "--style", "mrtrix", "-o", str(tmp_path / "lr.mif")]) == 0
    said = capsys.readouterr().out
    assert "wrote" in said and "--tensor-order" not in said  # a .mif is read in dwi2tensor's order without it
    refused_line(capsys, ["degrade", HERE / "dwi.mif.gz", "--style", "fsl", "-o", tmp_path / "fsl.mif"],
                 "--style fsl", "give -o a .nii.gz")
    assert not (tmp_path / "fsl.mif").exists()


def test_iqt_degrade_writes_its_mask_out_as_mif_too(tmp_path):
    from ImageQualityTransferLib.apps.cli import main

    for mask in ("lrm.mif", "lrm.nii.gz"):  # the .mif had been refused: "must end in .nii or .nii.gz"
        assert main(["degrade", str(HERE / "dwi.mif.gz"), "-o", str(tmp_path / f"lr_{mask}.mif"),
                     "--mask-out", str(tmp_path / mask)]) == 0
    mif, nii = fileio.load_mask(tmp_path / "lrm.mif"), fileio.load_mask(tmp_path / "lrm.nii.gz")
    assert 0 < mif.data.sum() < mif.data.size
    assert np.array_equal(mif.data, nii.data) and np.allclose(mif.affine, nii.affine)


def test_a_mif_iqt_writes_keeps_its_input_mifs_command_history(tmp_path):
    from ImageQualityTransferLib.apps.cli import main
    from ImageQualityTransferLib.fileio.mif import read_header

    before = read_header(HERE / "dt.mif")["command_history"]  # mrconvert's, then dwi2tensor's
    assert len(before) == 2
    assert main(["upsample", str(HERE / "dt.mif"), "-o", str(tmp_path / "up.mif"), "--method", "linear"]) == 0
    after = read_header(tmp_path / "up.mif")["command_history"]
    assert after[:2] == before and len(after) == 3 and after[2].startswith("iqt upsample ")
    # under --no-record no history: the input's names the commands and paths (a patient's folder) that made it
    assert main(["--no-record", "upsample", str(tmp_path / "up.mif"), "-o", str(tmp_path / "quiet.mif"), "--method",
                 "linear"]) == 0
    quiet = read_header(tmp_path / "quiet.mif")
    assert "command_history" not in quiet and "iqt_run" not in quiet
    assert str(tmp_path) not in (tmp_path / "quiet.mif").read_bytes()[:4096].decode("latin-1")


def _five_volumes(path):
    from ImageQualityTransferLib.fileio.mif import read_mif, write_mif

    data, affine, _ = read_mif(HERE / "dt.mif")
    write_mif(path, data[..., :5], affine)
    return path


def _truncated(path):
    path.write_bytes((HERE / "dt_strides321_f64.mif.gz").read_bytes()[:3000])
    return path


@pytest.mark.parametrize("make, said, not_said", [
    (lambda p: HERE / "dwi.mif.gz", ("DWI series", "'iqt fit dwi.mif.gz -o dti.mif'", "dw_scheme"), ".bval"),
    (lambda p: _five_volumes(p / "v5.mif"), ("holds six volumes", "this one 5"), "--tensor-order"),
    (lambda p: _truncated(p / "t.mif.gz"), ("damaged", "write it again"), "convert it with mrconvert"),
])
def test_a_mif_given_as_tensors_is_told_in_mrtrix_terms(tmp_path, capsys, make, said, not_said):
    line = refused_line(capsys, ["upsample", make(tmp_path), "-o", tmp_path / "o.mif", "--method", "linear"], *said)
    assert not_said not in line
    assert not (tmp_path / "o.mif").exists()


def test_a_plain_mif_named_gz_is_read_as_mrtrix_reads_it_and_a_gzipped_one_named_mif_is_told_what_it_is(tmp_path,
                                                                                                          capsys):
    plain = tmp_path / "renamed.mif.gz"  # a plain .mif renamed: MRtrix's gz reader passes it through
    shutil.copy(HERE / "dt.mif", plain)
    with pytest.warns(Warning, match=r"renamed.mif.gz: a plain MRtrix image .*rename it to renamed.mif"):
        vol = fileio.load_tensor(plain)
    assert np.array_equal(vol.data, fileio.load_tensor(HERE / "dt.mif").data)
    zipped = tmp_path / "renamed.mif"  # a .mif.gz renamed .mif: MRtrix refuses it too
    zipped.write_bytes(gzip.compress((HERE / "dt.mif").read_bytes()))
    refused_line(capsys, ["upsample", zipped, "-o", tmp_path / "o.mif", "--method", "linear"], "renamed.mif: ",
                 "gzip-compressed", "rename it to renamed.mif.gz")
    assert not (tmp_path / "o.mif").exists()
