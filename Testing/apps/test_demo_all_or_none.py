"""`iqt demo` writes its files all or none (fileio.staging.all_or_none), each checked before any work: a disk that fills
up at the figure left the volumes and tables of a half-written run (and `metrics.json` named by a folder gave an
internal error after writing five files); a failed run leaves no folder it made."""

from __future__ import annotations

import errno

from ImageQualityTransferLib.apps import cli, demo
from ImageQualityTransferLib.fileio.writing import atomic_write


def _full_disk(case, predictions, path, title, factor):
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(b"\x89PNG")
        raise OSError(errno.ENOSPC, "No space left on device")

    atomic_write(path, write)


def test_a_demo_that_fails_at_its_last_file_leaves_none_and_no_folder(tmp_path, capsys, monkeypatch):
    """(On a coarse phantom, 32x36x28 voxels of 4 mm and 12 directions: what is left after a failed write does not
    depend on the phantom's size, and the full one's two runs took 8 s.)"""
    import functools

    from ImageQualityTransferLib.dmri import phantom

    monkeypatch.setattr(phantom, "make_phantom",
                        functools.partial(phantom.make_phantom, shape=(32, 36, 28), voxel_mm=4.0, n_dirs=12))
    monkeypatch.setattr(demo, "_figure", _full_disk)
    out = tmp_path / "demo"
    assert cli.main(["demo", "-o", str(out), "--methods", "cubic"]) == 2
    assert "no space is left on the device" in capsys.readouterr().err
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "metrics.md").write_text("an earlier run's table\n")
    assert cli.main(["demo", "-o", str(kept), "--methods", "cubic"]) == 2
    assert [p.name for p in kept.iterdir()] == ["metrics.md"]
    assert (kept / "metrics.md").read_text() == "an earlier run's table\n"


def test_an_output_name_taken_by_a_folder_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "d" / "metrics.json").mkdir(parents=True)
    assert cli.main(["demo", "-o", str(tmp_path / "d"), "--methods", "cubic"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("iqt: error: ") and "metrics.json: is a folder" in err and len(err.splitlines()) == 1
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["metrics.json"]
