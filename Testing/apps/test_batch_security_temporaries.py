"""A batch's start removes only the stale temporaries of its own writers, in the subject folders it writes (it
removed every `.iqt-*` anywhere under -o, among them the `.iqt-earlier-*` copy that a SIGKILLed `iqt upsample`
left, maybe the only copy of its earlier output, and the held outputs of an `iqt upsample` writing into -o/manual/,
which then failed). The earlier copies are said in one line, as the README's advice after SIGKILL says."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib.apps import batch, cli  # noqa: E402
from ImageQualityTransferLib.apps.batch.records import remove_temporaries  # noqa: E402
from ImageQualityTransferLib.core.errors import IQTWarning  # noqa: E402

import helpers  # noqa: E402


def others(out: Path) -> dict[Path, bytes]:
    """What other runs keep under the derivatives folder: another command's outputs held in place while it runs, the
    earlier outputs SIGKILLed runs set aside, a file in a subfolder of a subject's folder."""
    files = {out / "manual" / ".iqt-k2x9qz1a.nii.gz": b"held output of a running iqt upsample",
             out / "manual" / ".iqt-earlier-up.nii.gz.abcd1234.tmp": b"the only copy of manual/up.nii.gz",
             out / ".iqt-earlier-up_FA.nii.gz.bzoojjgx.tmp": b"earlier up_FA.nii.gz",
             out / "sub-a" / "dwi" / ".iqt-earlier-mine.nii.gz.q1w2e3r4.tmp": b"earlier mine.nii.gz",
             out / "sub-a" / "dwi" / "extra" / ".iqt-zz9yy8xx.json": b"a subfolder's"}
    for p, data in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


@pytest.mark.slow
def test_the_start_removes_only_this_cohort_s_stale_temporaries(tmp_path, capsys):
    """Through `iqt batch` on a real local cluster: a rerun of a done subject (done by a first run in this process,
    without a cluster of its own: the start of the second run is what is checked)."""
    out = helpers.tensor_list(tmp_path, "a.nii.gz")
    args = ["batch", str(tmp_path / "list.txt"), "-o", str(out), "--method", "cubic", "--workers", "1",
            "--dashboard-address", "127.0.0.1:0"]
    first = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="cubic"), out,
                             progress=False)
    assert [r["status"] for r in first] == ["done"]
    capsys.readouterr()
    kept = others(out)
    stale = [out / "sub-a" / "dwi" / ".iqt-3hf8sd0q.nii.gz", out / "sub-a" / "dwi" / ".iqt-ow1tz_ab.json"]
    for p in stale:  # what a writer of the batch killed with SIGKILL leaves in its subject's folder
        p.write_bytes(b"")
    code = cli.main(args)
    stdout, err = capsys.readouterr()
    assert code == 0 and "1 subject:" in stdout, err  # skipped (or redone where the tree's build changed meanwhile)
    assert {p: p.read_bytes() for p in kept if p.exists()} == kept
    assert not any(p.exists() for p in stale)
    lines = [line for line in err.splitlines() if "earlier" in line]
    assert lines == [f"iqt: warning: 3 earlier outputs set aside by a killed iqt run lie in {out} ("
                     f"{out / '.iqt-earlier-up_FA.nii.gz.bzoojjgx.tmp'}, {out / 'manual' / '.iqt-earlier-up.nii.gz.abcd1234.tmp'}, "
                     f"{out / 'sub-a' / 'dwi' / '.iqt-earlier-mine.nii.gz.q1w2e3r4.tmp'}): where the output named after "
                     "'.iqt-earlier-' is missing, rename the file back to that name, else delete it; this run leaves them "
                     "alone"], err


def test_removing_a_subject_folder_s_temporaries_leaves_everything_else(tmp_path):
    folder = tmp_path / "sub-a" / "dwi"
    kept = others(tmp_path)
    (folder / ".iqt-abc.nii.gz").write_bytes(b"")
    (folder / ".iqt-def_1.json").write_bytes(b"")
    (folder / ".iqt-probe-x1").write_bytes(b"")  # fileio.paths.check_folder's probe: not a batch's
    (folder / ".iqt-linked.nii.gz").symlink_to(tmp_path / "manual" / ".iqt-k2x9qz1a.nii.gz")
    assert remove_temporaries(folder) == 2
    assert sorted(p.name for p in folder.iterdir()) == [".iqt-earlier-mine.nii.gz.q1w2e3r4.tmp", ".iqt-linked.nii.gz",
                                                        ".iqt-probe-x1", "extra"]
    assert {p: p.read_bytes() for p in kept} == kept
    assert remove_temporaries(tmp_path / "none") == 0


def test_an_in_process_run_says_the_earlier_copies_too(tmp_path):
    out = helpers.tensor_list(tmp_path, "a.nii.gz")
    kept = others(out)
    with pytest.warns(IQTWarning, match=r"^3 earlier outputs set aside by a killed iqt run"):
        res = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="cubic"), out,
                               progress=False)
    assert [r["status"] for r in res] == ["done"] and {p: p.read_bytes() for p in kept} == kept
