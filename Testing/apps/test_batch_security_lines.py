"""A list line that names no subject of its own ('..', '/', '.') or whose name holds no letter or digit is refused in
one line naming the list line ("'': cannot make a BIDS label" named no line), exit 2, nothing written."""

from __future__ import annotations

import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib.apps import batch, cli  # noqa: E402


@pytest.mark.parametrize("line", ["..", "/", ".", "../..", "P01/extra/../.."])
def test_a_line_naming_no_subject_is_refused_naming_the_line(tmp_path, capsys, monkeypatch, line):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cohort").mkdir()
    (tmp_path / "cohort" / "list.txt").write_text(f"# subjects\n{line}   # here\n")
    code = cli.main(["batch", "cohort/list.txt", "-o", "out", "--method", "cubic"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", err
    assert err.strip().splitlines() == [
        f"iqt: error: cohort/list.txt line 2 ({line!r}): names no subject's folder or file of its own, so the subject "
        f"cannot be named after it; give the subject's folder itself (e.g. {line.rstrip('/')}/P01)"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cohort", "list.txt"]


def test_a_name_without_letters_or_digits_is_refused_naming_the_line(tmp_path):
    (tmp_path / "P01").mkdir()
    (tmp_path / "list.txt").write_text("P01\n___/dti.nii.gz\n")
    with pytest.raises(batch.IQTError) as exc:
        batch.find_items(tmp_path / "list.txt")
    assert str(exc.value) == (f"{tmp_path / 'list.txt'} line 2 ('___/dti.nii.gz'): '___': cannot make a BIDS label "
                              "(letters and digits) from this name; rename it")


def test_a_line_is_named_after_the_folder_it_leads_to(tmp_path):
    """P01/extra/.. is P01's folder (it was named sub-extra)."""
    (tmp_path / "P01" / "extra").mkdir(parents=True)
    (tmp_path / "list.txt").write_text("P01/extra/..\n")
    items = batch.find_items(tmp_path / "list.txt")
    assert [it.prefix for it in items] == ["sub-P01"]


def test_a_dwi_line_with_a_tensor_order_is_refused_before_the_run(tmp_path, capsys, monkeypatch):
    """--tensor-order on a DWI subject's line had failed that subject inside the run; it is said before any work."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "P01").mkdir()
    (tmp_path / "list.txt").write_text("P01 --tensor-order fsl\n")
    code = cli.main(["batch", "list.txt", "-o", "out", "--method", "cubic"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", err
    assert err.strip().splitlines() == [
        "iqt: error: list.txt line 1 ('P01 --tensor-order fsl'): --tensor-order fsl is for a line naming a tensor file; "
        "this line names a DWI subject's folder, fitted here: drop it from the line"]
    assert not (tmp_path / "out").exists()


def test_a_subject_copied_under_another_name_is_refused(tmp_path):
    """A byte-identical copy of a subject's image under another folder name had been computed twice (a cohort audit),
    where train, benchmark and lesion-check refuse it."""
    import shutil

    import helpers

    (tmp_path / "P01").mkdir()
    helpers.save_phantom_dwi(tmp_path / "P01" / "dwi.nii.gz", (16, 18, 14), 0)
    shutil.copytree(tmp_path / "P01", tmp_path / "P02")
    (tmp_path / "list.txt").write_text("P01\nP02\n")
    with pytest.raises(batch.IQTError, match="P02/dwi.nii.gz is byte-identical to .*P01/dwi.nii.gz: one subject copied"):
        batch.find_items(tmp_path / "list.txt")


@pytest.mark.parametrize("line, option", [("lr.nii.gz --mask", "--mask"), ("lr.nii.gz --tensor-order", "--tensor-order"),
                                          ("lr.nii.gz --mask --tensor-order fsl", "--mask"),
                                          ("lr.nii.gz --mask m.nii.gz --tensor-order", "--tensor-order"),
                                          ('lr.nii.gz --mask ""', "--mask"), ("lr.nii.gz --mask ''", "--mask"),
                                          ('lr.nii.gz --tensor-order "" --mask m.nii.gz', "--tensor-order"),
                                          ('lr.nii.gz --mask " "', "--mask")])
def test_a_line_option_without_its_value_is_refused_before_any_work(tmp_path, capsys, monkeypatch, line, option):
    """'lr.nii.gz --mask' had been read as the path 'lr.nii.gz --mask', failing its subject after the run began and
    leaving the output folder behind."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "list.txt").write_text(line + "\n")
    code = cli.main(["batch", "list.txt", "-o", "out", "--method", "cubic"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", err
    assert err.strip().splitlines() == [f"iqt: error: list.txt: the line {line!r} gives {option} without its value; "
                                        f"give it after the option ({option} "
                                        f"{'fsl' if option == '--tensor-order' else 'mask.nii.gz'}) or drop {option}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.txt"]
