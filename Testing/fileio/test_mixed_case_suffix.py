"""Names from other machines: a mixed-case NIfTI suffix (x.Nii, x.Nii.gz) is written and read as that very file (nibabel
maps such a name to its lower-case twin: the output was an empty file beside a hidden temporary, exit 0, and an input
was read from x.nii), and two outputs whose names differ only in case, one file on macOS and Windows, are refused."""

from __future__ import annotations

import numpy as np

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.core.volume import Volume

import helpers


def _tensors(seed, shape=(6, 7, 5)):
    return Volume(helpers.random_tensors(shape, seed=seed), np.diag([2.0, 2.0, 2.0, 1.0]), "tensor")


def test_a_mixed_case_suffix_is_written_as_that_file_and_read_back(tmp_path):
    vol = _tensors(0)
    for name in ("x.Nii", "y.Nii.gz", "z.nii.GZ", "w.NII"):
        fileio.save_tensor(vol, tmp_path / name)
        assert (tmp_path / name).stat().st_size > 1000, name
        np.testing.assert_array_equal(fileio.load_tensor(tmp_path / name).data, vol.data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.NII", "x.Nii", "y.Nii.gz", "z.nii.GZ"]  # no temporaries


def test_an_input_with_a_mixed_case_suffix_is_read_from_itself_not_its_lower_case_twin(tmp_path, capsys):
    fileio.save_tensor(_tensors(1), tmp_path / "in.Nii")
    fileio.save_tensor(_tensors(2), tmp_path / "in.nii")  # another scan, the name nibabel maps in.Nii to
    fileio.save_tensor(_tensors(1), tmp_path / "ref.nii")
    for src, out in (("in.Nii", "a.nii.gz"), ("ref.nii", "b.nii.gz")):
        assert main(["--no-record", "upsample", str(tmp_path / src), "-o", str(tmp_path / out), "--method", "cubic"]) == 0
    capsys.readouterr()
    np.testing.assert_array_equal(fileio.load_tensor(tmp_path / "a.nii.gz").data, fileio.load_tensor(tmp_path / "b.nii.gz").data)


def test_outputs_differing_only_in_case_are_refused(tmp_path, capsys):
    fileio.save_tensor(_tensors(3), tmp_path / "lr.nii.gz")
    code = main(["upsample", str(tmp_path / "lr.nii.gz"), "-o", str(tmp_path / "P01.nii.gz"), "--method", "biqt",
                 "--uncertainty", str(tmp_path / "p01.nii.gz")])
    out, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "only in upper and lower case" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.nii.gz"]


def test_an_output_differing_from_an_input_only_in_case_is_refused(tmp_path, capsys):
    """-o A.nii.gz for the input a.nii.gz had been taken (on macOS and Windows it replaces the input)."""
    fileio.save_tensor(_tensors(4), tmp_path / "a.nii.gz")
    before = (tmp_path / "a.nii.gz").read_bytes()
    line = helpers.refused_line(capsys, ["upsample", tmp_path / "a.nii.gz", "-o", tmp_path / "A.nii.gz", "--method",
                                         "cubic"], "only in upper and lower case, and on macOS and Windows the two "
                                "are one file", "inputs are never overwritten")
    assert line.startswith(f"iqt: error: {tmp_path / 'A.nii.gz'}: differs from the input {tmp_path / 'a.nii.gz'}"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"] and (tmp_path / "a.nii.gz").read_bytes() == before


def test_the_memory_check_reads_the_header_of_the_mixed_case_file_itself(tmp_path, capsys):
    """The header-only readers (the memory checks, the reference's order) read x.Nii.gz too, not x.nii.gz: a small
    twin whose header claims a huge grid made `iqt fit x.Nii.gz` refuse the real series as needing 275 GiB."""
    import gzip

    import nibabel as nib

    from ImageQualityTransferLib.dmri.phantom import make_phantom

    fileio.save_dwi(make_phantom(shape=(12, 14, 10), voxel_mm=4.0, n_dirs=12), tmp_path / "y.Nii.gz")
    header = nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape((512, 512, 512, 100))  # 50 GiB claimed, none of it there
    header["vox_offset"] = 352
    (tmp_path / "y.nii.gz").write_bytes(gzip.compress(header.binaryblock + bytes(4)))
    code = main(["--no-record", "fit", str(tmp_path / "y.Nii.gz"), "-o", str(tmp_path / "t.nii.gz")])
    assert code == 0, capsys.readouterr().err
    assert fileio.load_tensor(tmp_path / "t.nii.gz").shape3 == (12, 14, 10)


def test_unicode_names_are_compared_as_macos_and_windows_do(tmp_path, capsys):
    """straße and strasse are two files there (str.casefold() had refused them as one); Ärger written as one character
    (NFC) and as A + a combining diaeresis (NFD) are one file on macOS (the clash had been missed), not on Windows (NTFS
    keeps both forms; the line had said "on macOS and Windows")."""
    nfc, nfd = "\u00c4rger", "A\u0308rger"
    for name in ("straße", nfc):
        fileio.save_tensor(_tensors(5), tmp_path / f"{name}.nii.gz")
    assert main(["upsample", str(tmp_path / "straße.nii.gz"), "--method", "cubic", "-o",
                 str(tmp_path / "strasse.nii.gz")]) == 0
    for out in (nfd, nfd.lower()):
        helpers.refused_line(capsys, ["upsample", tmp_path / f"{nfc}.nii.gz", "--method", "cubic", "-o",
                                      tmp_path / f"{out}.nii.gz"], f"differs from the input {tmp_path / nfc}.nii.gz only "
                             "in how an accented letter is encoded", "on macOS the two are one file",
                             "inputs are never overwritten")
        assert not (tmp_path / f"{out}.nii.gz").exists()
