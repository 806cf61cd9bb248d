"""JSON nested too deeply for Python's parser (a RecursionError, not a ValueError) is read as unreadable JSON wherever
the engine reads a user's file: a DWI's BIDS sidecar 100000 '[' deep had made `iqt degrade` and `iqt fit` exit 1,
'internal error: RecursionError' (fileio/paths.json_sidecar, a review); fileio/slices.py had caught it already."""

from __future__ import annotations

import pytest

from ImageQualityTransferLib import IQTError
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.dmri.phantom import make_phantom
from ImageQualityTransferLib import fileio

DEEP = "[" * 100000 + "]" * 100000


@pytest.mark.parametrize("command", [["degrade", "--factor", "1,1,2"], ["fit"]])
def test_a_deep_dwi_sidecar_is_ignored(tmp_path, command, capsys):
    fileio.save_dwi(make_phantom(shape=(10, 10, 8), voxel_mm=2.0, n_dirs=12), tmp_path / "dwi.nii.gz")
    (tmp_path / "dwi.json").write_text(DEEP)
    rc = main([command[0], str(tmp_path / "dwi.nii.gz"), *command[1:], "-o", str(tmp_path / "out.nii.gz")])
    err = capsys.readouterr().err
    assert rc == 0 and (tmp_path / "out.nii.gz").is_file(), err
    assert "internal error" not in err and "not read as a BIDS sidecar" in err  # fileio/gradients.py's one warning
    assert (tmp_path / "dwi.json").read_text() == DEEP


def test_the_other_readers_take_it_as_unreadable(tmp_path):
    from ImageQualityTransferLib.apps.batch import lock, scheduler
    from ImageQualityTransferLib.fileio import model_files, paths, records

    side = tmp_path / "x.json"
    side.write_text(DEEP)
    (tmp_path / "x.nii.gz").write_bytes(b"")
    assert paths.json_sidecar(tmp_path / "x.nii.gz") == side
    assert records.read_run(DEEP) is None
    assert lock._read(side) is None
    with pytest.raises(ValueError):
        model_files.read_json(side)
    assert model_files.factors_named(side) is None
    with pytest.raises(IQTError, match="not a Dask scheduler file"):
        scheduler.scheduler_from_file(side)


def test_iqt_batchs_records_take_it_as_unreadable(tmp_path):
    """Each of apps/batch/records.py's reads of a deep output sidecar or dataset_description.json: a subject's is not
    done (redone), the folder's description refused in one line; a deep out/dataset_description.json had made
    `iqt batch` exit 1, 'internal error: RecursionError' (a review)."""
    from ImageQualityTransferLib.apps.batch import records

    names = {"tensor": "s_param-tensor_dwimap.nii.gz"}
    (tmp_path / names["tensor"]).write_bytes(b"x")
    side = tmp_path / "s_param-tensor_dwimap.json"
    side.write_text(DEEP)
    assert records.finished(tmp_path, names, {}) is None
    assert records.check_same_input(tmp_path, names, None, {}) is None
    assert records.other_build(tmp_path, names, {}) is None
    records.add_file_records(tmp_path, names)
    assert side.read_text() == DEEP
    desc = tmp_path / "dataset_description.json"
    desc.write_text('{"GeneratedBy": [{"Name": "x"}]}')
    records.generated_by_in_use(tmp_path)  # the deep subject sidecar skipped
    desc.write_text(DEEP)
    records.generated_by_in_use(tmp_path)
    with pytest.raises(IQTError, match="cannot be read as JSON"):
        records.check_source(tmp_path, [])
    records.dataset_description(tmp_path, records.Settings(method="cubic"))
    assert "GeneratedBy" in desc.read_text()  # written afresh


def test_iqt_batch_refuses_a_deep_description_in_one_line(tmp_path, capsys):
    fileio.save_dwi(make_phantom(shape=(10, 10, 8), voxel_mm=2.0, n_dirs=12), tmp_path / "dwi.nii.gz")
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'dwi.nii.gz'}\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "dataset_description.json").write_text(DEEP)
    rc = main(["batch", str(tmp_path / "list.txt"), "-o", str(tmp_path / "out"), "--method", "cubic"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "cannot be read as JSON" in err, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dataset_description.json"]
