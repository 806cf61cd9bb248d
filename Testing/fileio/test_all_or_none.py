"""A run's outputs are written all or none (fileio.staging.all_or_none, held by the `iqt` dispatch): a write that fails
after the first output leaves no new file and every file already at those paths as it was (a full disk left
`iqt fit`'s tensors without its mask, `iqt upsample --uncertainty` up to six of its seven maps)."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import subprocess
import sys

import pytest

from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.fileio import volumes

from helpers import engine_env


@pytest.fixture(scope="module")
def inputs(small_subject, tmp_path_factory):
    d = tmp_path_factory.mktemp("all_or_none")
    shutil.copytree(small_subject, d / "subj")
    assert main(["degrade", str(d / "subj" / "dwi.nii.gz"), "-o", str(d / "lr.nii.gz"), "--mask-out",
                 str(d / "lrm.nii.gz")]) == 0
    return d


def _fail_on_write(monkeypatch, n: int, code: int = errno.ENOSPC):
    """The n-th NIfTI written fails as a full disk does (or a spent quota, a file-size limit: `code`), after some bytes."""
    real, calls = volumes.save_nifti, []

    def save(img, tmp):
        calls.append(tmp)
        if len(calls) == n:
            with open(tmp, "wb") as f:
                f.write(b"\x1f\x8b partial")
            raise OSError(code, os.strerror(code))
        return real(img, tmp)

    monkeypatch.setattr(volumes, "save_nifti", save)  # where the writers look it up (defined in fileio.nifti)
    return calls


def _state(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


CASES = {
    "fit --mask-out": (["fit", "{i}/subj/dwi.nii.gz", "-o", "{o}/dti.nii.gz", "--mask-out", "{o}/mask.nii.gz"], 2,
                       ["dti.nii.gz", "mask.nii.gz"]),
    "upsample --uncertainty": (["upsample", "{i}/lr.nii.gz", "--mask", "{i}/lrm.nii.gz", "--method", "biqt", "-o",
                                "{o}/hr.nii.gz", "--uncertainty", "{o}/u.nii.gz"], 3,
                               ["hr.nii.gz", "u.nii.gz", "u_direction.nii.gz"]),
    "upsample --maps": (["upsample", "{i}/lr.nii.gz", "--mask", "{i}/lrm.nii.gz", "--method", "cubic", "-o",
                         "{o}/hr.nii.gz", "--maps"], 3, ["hr.nii.gz", "hr_FA.nii.gz", "hr_V1.nii.gz"]),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("existing", [False, True], ids=["new", "replacing"])
def test_a_write_that_fails_after_the_first_output_leaves_nothing_new(inputs, tmp_path, monkeypatch, case, existing):
    argv, fail_at, names = CASES[case]
    out = tmp_path / "out"
    out.mkdir()
    if existing:  # an earlier run's outputs: kept whole, not a mix of old and new
        for name in names:
            if name.endswith(".nii.gz"):  # an earlier iqt run's (its header says so: --maps keeps other tools' files)
                import nibabel as nib
                import numpy as np

                img = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4))
                img.header["descrip"] = f"iqt earlier {name}".encode()
                nib.save(img, out / name)
            else:
                (out / name).write_bytes(f"earlier {name}".encode())
    before = _state(out)
    calls = _fail_on_write(monkeypatch, fail_at)
    rc = main([a.format(i=inputs, o=out) for a in argv])
    assert len(calls) == fail_at and rc != 0
    assert _state(out) == before  # no temporary file either
    monkeypatch.undo()
    assert main([a.format(i=inputs, o=out) for a in argv]) == 0  # and the same run without the fault writes them all
    assert all((out / name).read_bytes() != before.get(name) for name in names)
    assert not [p for p in out.iterdir() if p.name.startswith(".iqt-")]


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space is left on the device in"),
                                         (errno.EDQUOT, "your disk quota is spent in"),
                                         (errno.EFBIG, "it would pass the largest file its file system takes")],
                         ids=["ENOSPC", "EDQUOT", "EFBIG"])
def test_a_full_disk_is_one_line_naming_the_output_and_the_fix(inputs, tmp_path, monkeypatch, capsys, code, words):
    """'iqt: internal error: OSError: [Errno 28] No space left on device (rerun with --debug and report it)',
    exit 1, in fit, degrade, upsample and track."""
    out = tmp_path / "out"
    out.mkdir()
    _fail_on_write(monkeypatch, 2, code)
    rc = main(["fit", str(inputs / "subj" / "dwi.nii.gz"), "-o", str(out / "dti.nii.gz"), "--mask-out",
               str(out / "mask.nii.gz")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith(f"iqt: error: {out / 'mask.nii.gz'}: cannot be written: {words}"), err
    assert ("ulimit -f" in err) == (code == errno.EFBIG) and "another" in err
    assert not list(out.iterdir())


@pytest.fixture(scope="module")
def tensors(inputs):
    """The phantom's fit and brain mask, and seeds.nii.gz: the mask's middle plane (k), whose few hundred seeds write
    tractograms of 200 KB and more, far past the 4 KiB limit, in a fraction of the whole brain's tracking time."""
    from ImageQualityTransferLib import fileio

    assert main(["fit", str(inputs / "subj" / "dwi.nii.gz"), "-o", str(inputs / "dti.nii.gz"), "--mask-out",
                 str(inputs / "mask.nii.gz")]) == 0
    mask = fileio.load_mask(inputs / "mask.nii.gz")
    plane = mask.data.copy()
    k = plane.shape[2] // 2
    plane[..., :k] = plane[..., k + 1:] = False
    assert plane.sum() >= 100, plane.sum()
    fileio.save_mask(mask.replace(data=plane), inputs / "seeds.nii.gz")
    return inputs


@pytest.mark.parametrize("suffix", [".trk", ".vtk", ".vtp"])
def test_a_tractogram_past_the_file_size_limit_is_one_line_and_leaves_nothing(tensors, tmp_path, suffix):
    """Under `ulimit -f` (and on a full disk) a tractogram failed as an internal error (exit 1), and a .vtp was even
    said to be written (VTK's XML writer reports success) and left truncated, exit 0."""
    out = tmp_path / f"t{suffix}"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    proc = subprocess.run([sys.executable, "-m", "ImageQualityTransferLib", "track", str(tensors / "dti.nii.gz"),
                           "--seeds", str(tensors / "seeds.nii.gz"), "-o", str(out), "--min-length", "4"],
                          capture_output=True, text=True, env=engine_env(), preexec_fn=limit, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"iqt: error: {out}: cannot be written: it would pass this shell's file-size limit "
                                  "(ulimit -f: 4 KiB)"), proc.stderr
    assert not list(tmp_path.iterdir())


def test_failed_run_removes_nested_folders_deepest_first(tmp_path):
    """Folders made in the order sub-X/dwi, sub-X, sub-X/figures are all removed when the run fails: sub-X had been
    tried while figures/ was still in it, and stayed (a cohort audit after a stopped cluster run)."""
    from ImageQualityTransferLib.fileio.staging import all_or_none, make_folder

    with pytest.raises(RuntimeError):
        with all_or_none():
            make_folder(tmp_path / "sub-X" / "dwi")
            make_folder(tmp_path / "sub-X" / "figures")
            raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []
