"""Every command that reads a large image judges the memory it needs from the image's header, before any data is read
(a 4.3 MB .nii.gz DWI whose header said 4.4 GB, zero-filled and so highly compressible, reached 4.37 GB RSS
under `iqt fit` before failing under ulimit -v): one line, exit 2, nothing written, in a moment. The crafted files
here are a header whose sizes say terabytes followed by a few bytes of data; the memory this process may use is held
at 64 GiB (`memory.memory_limit`), so the refusal does not depend on the machine."""

from __future__ import annotations

import gzip
import time

import nibabel as nib
import numpy as np
import pytest

from helpers import bundle_volume, refused_line
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core import memory

LIMIT = 64 * 2**30
HUGE = (2000, 2000, 1000)  # 4e9 voxels: 16 GB a value as float32; a DWI of 100 volumes 1.5 TiB


@pytest.fixture(autouse=True)
def _limit(monkeypatch):
    monkeypatch.setattr(memory, "memory_limit", lambda: LIMIT)
    monkeypatch.setattr(memory, "memory_available", lambda: LIMIT)


def crafted_nifti(path, shape, dtype=np.int16, data: bytes = b"\0" * 64, intent=None):
    """A gzipped NIfTI whose header says `shape` of `dtype`, followed by only `data` (the reader never gets there)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(dtype)
    hdr.set_data_shape(shape)
    hdr.set_qform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    hdr.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    hdr["vox_offset"] = 352
    if intent is not None:
        hdr.set_intent(intent)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(hdr.binaryblock + b"\0" * 4 + data)
    return path


def crafted_subject(folder, n=100):
    """A subject folder whose dwi.nii.gz's header says HUGE x n volumes, with its bval and bvec."""
    folder.mkdir()
    crafted_nifti(folder / "dwi.nii.gz", HUGE + (n,))
    bvals = np.r_[0, np.full(n - 1, 1000)]
    dirs = np.random.default_rng(0).normal(size=(n, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    np.savetxt(folder / "dwi.bval", bvals[None], fmt="%d")
    np.savetxt(folder / "dwi.bvec", dirs.T, fmt="%.6f")
    return folder


def refused(capsys, argv, *said, outputs=()):
    """Refused in one line naming the memory, in a moment, nothing written."""
    t0 = time.perf_counter()
    line = refused_line(capsys, argv, *said, "more than this process's 64.0 GiB of memory")
    assert time.perf_counter() - t0 < 20, "the refusal came late: the data was read"  # torch's import at most
    for out in outputs:
        assert not out.exists() and not list(out.parent.glob(f".iqt-*{out.name}*")), out
    return line


@pytest.fixture
def subject(tmp_path):
    return crafted_subject(tmp_path / "P01")


@pytest.mark.parametrize("command", ["fit", "mask", "degrade"])
def test_a_dwi_whose_header_says_terabytes_is_refused_from_its_header(capsys, tmp_path, subject, command):
    out = tmp_path / "out.nii.gz"
    line = refused(capsys, [command, subject / "dwi.nii.gz", "-o", out], f"{subject / 'dwi.nii.gz'}: its header says "
                   "2000x2000x1000x100 voxels (1,490.1 GiB as float32)", f"'iqt {command}' needs about", outputs=[out])
    assert "crop it" in line and "more memory" in line


def test_fit_of_a_zero_filled_dwi_as_audit_z_made_it(capsys, tmp_path, monkeypatch):
    """The zero-filled DWI itself: real zeros, 268 MB of int16 in 0.3 MB of gzip (0.5 GiB as float32: about 3.2 GiB to
    fit, against 2 GiB allowed here)."""
    monkeypatch.setattr(memory, "memory_limit", lambda: 2 * 2**30)
    folder = tmp_path / "Z"
    folder.mkdir()
    n = 512
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.int16)
    hdr.set_data_shape((64, 64, 64, n))
    hdr.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    hdr["vox_offset"] = 352
    with gzip.open(folder / "dwi.nii.gz", "wb", compresslevel=1) as f:
        f.write(hdr.binaryblock + b"\0" * 4)
        zeros = b"\0" * (64 * 64 * 64 * 2)
        for _ in range(n):
            f.write(zeros)
    assert (folder / "dwi.nii.gz").stat().st_size < 2e6
    np.savetxt(folder / "dwi.bval", np.r_[0, np.full(n - 1, 1000)][None], fmt="%d")
    dirs = np.random.default_rng(0).normal(size=(n, 3))
    np.savetxt(folder / "dwi.bvec", (dirs / np.linalg.norm(dirs, axis=1, keepdims=True)).T, fmt="%.6f")
    out = tmp_path / "t.nii.gz"
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(fileio.volumes, "read_data", lambda *a, **k: pytest.fail("the data was read"))
        refused_line(capsys, ["fit", folder / "dwi.nii.gz", "-o", out], "64x64x64x512 voxels (0.5 GiB as float32)",
                     "'iqt fit' needs about 3.2 GiB", "more than this process's 2.0 GiB of memory")
    assert not out.exists()


@pytest.fixture
def huge_tensor(tmp_path):
    return crafted_nifti(tmp_path / "huge_tensor.nii.gz", HUGE + (1, 6), np.float32, intent="symmetric matrix")


@pytest.fixture
def small_files(tmp_path):
    small = tmp_path / "small.nii.gz"
    fileio.save_tensor(bundle_volume(shape=(8, 8, 8)), small)
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.uint8), np.diag([-2.0, 2.0, 2.0, 1.0])), mask)
    return small, mask


def test_evaluate_counts_every_image_it_reads(capsys, tmp_path, huge_tensor, small_files):
    small, mask = small_files
    out = tmp_path / "m.json"
    line = refused(capsys, ["evaluate", "--pred", small, "--truth", huge_tensor, "--mask", mask, "--json", out],
                   f"{huge_tensor}: its header says 2000x2000x1000x1x6 voxels (89.4 GiB as float32; 89.4 GiB with the "
                   "other 2 images it reads)", "'iqt evaluate' needs about", outputs=[out])
    assert "crop it" in line


def test_track_judges_its_tensors_and_a_tensor_nrrd_too(capsys, tmp_path, huge_tensor, small_files):
    small, mask = small_files
    out = tmp_path / "t.trk"
    refused(capsys, ["track", huge_tensor, "--seeds", mask, "-o", out], f"{huge_tensor}: its header says "
            "2000x2000x1000x1x6", "'iqt track' needs about", outputs=[out])
    nrrd = tmp_path / "huge.nrrd"
    nrrd.write_bytes(b"NRRD0004\ntype: float\ndimension: 4\nspace: right-anterior-superior\nsizes: 9 2000 2000 1000\n"
                     b"space directions: none (2,0,0) (0,2,0) (0,0,2)\nkinds: 3D-matrix domain domain domain\n"
                     b"endian: little\nencoding: gzip\nspace origin: (0,0,0)\n\n" + gzip.compress(b"\0" * 64))
    refused(capsys, ["track", nrrd, "--seeds", mask, "-o", out], f"{nrrd}: its header says 9x2000x2000x1000 voxels",
            outputs=[out])


@pytest.mark.parametrize("argv", [["benchmark", "{s}", "--methods", "cubic"],
                                  ["lesion-check", "{s}", "--methods", "biqt"],
                                  ["demo", "--subject", "{s}", "--methods", "cubic", "-o", "{o}"],
                                  ["report", "--subject", "{s}", "--methods", "cubic", "--no-tracts", "-o", "{o}.html"]])
def test_the_subject_commands_judge_each_dwi_from_its_header(capsys, tmp_path, subject, argv):
    out = tmp_path / "out"
    argv = [a.format(s=subject, o=out) for a in argv]
    refused(capsys, argv, f"{subject / 'dwi.nii.gz'}: its header says 2000x2000x1000x100 voxels",
            f"'iqt {argv[0]}' needs about", "crop its DWI", outputs=[out, tmp_path / "out.html"])


@pytest.mark.parametrize("argv", [["propagate", "{t}", "-o", "{o}", "--method", "biqt", "--no-tracts"],
                                  ["report", "--input", "{t}", "--methods", "cubic", "--no-tracts", "-o", "{o}.html"]])
def test_the_low_res_input_commands_judge_their_high_res_grid_from_the_header(capsys, tmp_path, huge_tensor, argv):
    """As 'iqt upsample' does (Method.check_memory), before the input is read or a model loaded."""
    out = tmp_path / "out"
    refused(capsys, [a.format(t=huge_tensor, o=out) for a in argv], "a high-res grid of 4000x4000x2000 voxels",
            outputs=[out, tmp_path / "out.html"])


def test_an_honest_input_that_fits_still_runs(capsys, tmp_path, small_files):
    small, mask = small_files
    out = tmp_path / "t.trk"
    from ImageQualityTransferLib.apps.cli import main

    assert main(["track", str(small), "--seeds", str(mask), "-o", str(out)]) == 0, capsys.readouterr().err
    assert out.exists()


def test_a_small_image_is_not_said_to_be_0_gib(tmp_path, monkeypatch, capsys):
    """A 15.7 MB image under a tight limit had been said as "(0.0 GiB as float32)" (a review: iqt fit on the 3 mm
    dev DWI under ulimit -v); its size is said to the decimals that tell it from nothing, as the limit is."""
    from ImageQualityTransferLib.fileio import sizes

    monkeypatch.setattr(memory, "memory_limit", lambda: 2**20)
    monkeypatch.setattr(memory, "memory_available", lambda: 2**20)
    dwi = crafted_nifti(tmp_path / "dwi.nii.gz", (72, 72, 36, 21))
    with pytest.raises(Exception) as e:
        sizes.check_inputs("fit", [dwi])
    assert "72x72x36x21 voxels (0.01 GiB as float32)" in str(e.value), e.value
