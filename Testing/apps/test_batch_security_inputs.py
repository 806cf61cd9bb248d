"""`iqt batch` never writes or removes a file of its own cohort's inputs (a list line naming the tensor output
the run would write was replaced by its own upsampled tensor, exit 0, the input lost): every subject's planned outputs
and the earlier maps it removes are compared with every input, gradient file, sidecar and mask of the cohort, by real
path and by inode, before any work; refused in one line naming the list line, exit 2, nothing written."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib import fileio  # noqa: E402
from ImageQualityTransferLib.apps import batch, cli  # noqa: E402

import helpers  # noqa: E402

BASE = "space-orig_res-2x_model-cubic"


def tree(folder: Path) -> dict[str, str]:
    """Every file (and symlink) under `folder` with its content's SHA256: what a refused run must leave as it was."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "link"
            for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink()}


def refused(capsys, tmp_path: Path, *args) -> str:
    """Run `iqt batch` (a local cluster it never gets to start), check it is refused in one line, exit 2, with every
    file under tmp_path as it was; return the line."""
    before = tree(tmp_path)
    code = cli.main(["batch", *map(str, args), "--method", "cubic", "--workers", "1",
                     "--dashboard-address", "127.0.0.1:0"])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert tree(tmp_path) == before
    return err.strip()


@pytest.fixture
def cohort(tmp_path, monkeypatch):
    """A phantom tensor file in tmp_path/deriv/sub-X/dwi under the name of the tensor output a cubic x2 run writes
    there, as an earlier run left it; the run's folder is tmp_path."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "deriv" / "sub-X" / "dwi"
    folder.mkdir(parents=True)
    helpers.tensor_list(folder, f"sub-X_{BASE}_param-tensor_dwimap.nii.gz")
    (folder / "list.txt").unlink()
    (folder / "deriv").rmdir()
    return folder


def test_a_list_line_naming_an_output_of_the_run_is_refused(tmp_path, capsys, cohort):
    line = f"deriv/sub-X/dwi/sub-X_{BASE}_param-tensor_dwimap.nii.gz"
    (tmp_path / "list.txt").write_text(f"# earlier outputs\n{line}\n")
    err = refused(capsys, tmp_path, "list.txt", "-o", "deriv")
    assert err == (f"iqt: error: list.txt line 2 ({line!r}): its input {line} is sub-X's tensor output, which this run "
                   "would write; inputs are never overwritten: move it out of deriv or write the outputs to another folder")


def test_an_output_reached_through_a_symlinked_folder_or_a_hard_link_is_refused(tmp_path, capsys, cohort):
    name = f"sub-X_{BASE}_param-tensor_dwimap.nii.gz"
    (tmp_path / "link").symlink_to(tmp_path / "deriv")  # the same file by another path
    (tmp_path / "list.txt").write_text(f"link/sub-X/dwi/{name}\n")
    err = refused(capsys, tmp_path, "list.txt", "-o", "deriv")
    assert "list.txt line 1" in err and f"is sub-X's tensor output (deriv/sub-X/dwi/{name})" in err

    raw = tmp_path / "raw" / "X"  # a hard link: the input is the output's file under another name
    raw.mkdir(parents=True)
    os.link(cohort / name, raw / "t.nii.gz")
    (tmp_path / "list.txt").write_text("raw/X/t.nii.gz\n")
    err = refused(capsys, tmp_path, "list.txt", "-o", "deriv")
    assert "list.txt line 1 ('raw/X/t.nii.gz'): its input raw/X/t.nii.gz is sub-X's tensor output" in err


def test_a_line_s_mask_that_is_an_earlier_brain_mask_output_is_refused(tmp_path, capsys, cohort):
    """A line's --mask naming the brain mask the run writes for that subject (an earlier run's, reused) was replaced."""
    tensor = cohort / f"sub-X_{BASE}_param-tensor_dwimap.nii.gz"
    x = tmp_path / "X"
    x.mkdir()
    tensor.rename(x / "dti.nii.gz")
    lr = fileio.load_tensor(x / "dti.nii.gz")
    fileio.save_mask(lr.replace(data=lr.data[..., 0] != 0, kind="mask"), cohort / f"sub-X_{BASE}_desc-brain_mask.nii.gz")
    line = f"X/dti.nii.gz --mask deriv/sub-X/dwi/sub-X_{BASE}_desc-brain_mask.nii.gz"
    (tmp_path / "list.txt").write_text(line + "\n")
    err = refused(capsys, tmp_path, "list.txt", "-o", "deriv")
    assert err.startswith(f"iqt: error: list.txt line 1 ({line!r}): its mask ") and "is sub-X's mask output" in err


def test_an_input_that_the_run_would_remove_as_an_earlier_map_is_refused(tmp_path, capsys, cohort):
    """An earlier --uncertainty map listed as a tensor file: a run without --uncertainty removes the subject's maps
    it does not write (records.stale_maps), the input among them."""
    std = cohort / f"sub-X_{BASE}_param-tensor_desc-std_dwimap.nii.gz"
    (cohort / f"sub-X_{BASE}_param-tensor_dwimap.nii.gz").rename(std)
    (tmp_path / "list.txt").write_text(f"deriv/sub-X/dwi/{std.name}\n")
    err = refused(capsys, tmp_path, "list.txt", "-o", "deriv")
    assert f"its input deriv/sub-X/dwi/{std.name} is an earlier uncertainty map of sub-X, which this run would remove" in err


def test_the_in_process_cohort_run_refuses_it_too(tmp_path, cohort):
    """batch.run_cohort (the API the command runs, also without Dask) checks the same before any work."""
    line = f"deriv/sub-X/dwi/sub-X_{BASE}_param-tensor_dwimap.nii.gz"
    (tmp_path / "list.txt").write_text(line + "\n")
    before = tree(tmp_path)
    with pytest.raises(batch.IQTError, match="line 1 .* is sub-X's tensor output"):
        batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="cubic"), tmp_path / "deriv",
                         progress=False)
    assert tree(tmp_path) == before


def test_a_cohort_beside_its_outputs_still_runs(tmp_path, capsys):
    """Inputs listed from a folder that also holds the derivatives (not among the outputs) run as before."""
    out = helpers.tensor_list(tmp_path)
    items = batch.find_items(tmp_path / "list.txt")
    batch.check_inputs_kept(out, items, batch.Settings(method="cubic"))
    res = batch.run_cohort(items, batch.Settings(method="cubic"), out, progress=False)
    assert [r["status"] for r in res] == ["done"]
    batch.check_inputs_kept(out, items, batch.Settings(method="cubic"))  # its own outputs are no inputs
