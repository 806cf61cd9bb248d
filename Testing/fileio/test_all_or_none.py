"""A run's outputs are written all or none (fileio.paths.all_or_none, held by the `iqt` dispatch): a write that fails
after the first output leaves no new file and every file already at those paths as it was (audit E: a full disk left
`iqt fit`'s tensors without its mask, `iqt upsample --uncertainty` up to six of its seven maps)."""

from __future__ import annotations

import errno
import shutil

import pytest

from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.fileio import volumes


@pytest.fixture(scope="module")
def inputs(small_subject, tmp_path_factory):
    d = tmp_path_factory.mktemp("all_or_none")
    shutil.copytree(small_subject, d / "subj")
    assert main(["degrade", str(d / "subj" / "dwi.nii.gz"), "-o", str(d / "lr.nii.gz"), "--mask-out",
                 str(d / "lrm.nii.gz")]) == 0
    return d


def _fail_on_write(monkeypatch, n: int):
    """The n-th NIfTI written fails as a full disk does, after some bytes."""
    real, calls = volumes._save_nifti, []

    def save(img, tmp):
        calls.append(tmp)
        if len(calls) == n:
            with open(tmp, "wb") as f:
                f.write(b"\x1f\x8b partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(img, tmp)

    monkeypatch.setattr(volumes, "_save_nifti", save)
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
            (out / name).write_bytes(f"earlier {name}".encode())
    before = _state(out)
    calls = _fail_on_write(monkeypatch, fail_at)
    rc = main([a.format(i=inputs, o=out) for a in argv])
    assert len(calls) == fail_at and rc != 0
    assert _state(out) == before  # no temporary file either
    monkeypatch.undo()
    assert main([a.format(i=inputs, o=out) for a in argv]) == 0  # and the same run without the fault writes them all
    assert all((out / name).read_bytes() != f"earlier {name}".encode() for name in names)
    assert not [p for p in out.iterdir() if p.name.startswith(".iqt-")]
