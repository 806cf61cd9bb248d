"""`iqt batch -o` may not be an input's own folder nor hold one: the run wrote its QC table, dataset description and
subject folders beside a listed subject's dwi.nii.gz (researcher audit, stop 57), where a BIDS dataset's raw folders
were already refused. A folder of their own beside the inputs, or inside an input's folder, is fine."""

from __future__ import annotations

import pytest

pytest.importorskip("distributed")

import helpers  # noqa: E402
from helpers import run_cli  # noqa: E402


def test_an_output_among_the_inputs_is_refused_before_any_work(tmp_path, capsys):
    subject = tmp_path / "cohort" / "P01"
    subject.mkdir(parents=True)
    helpers.tensor_list(subject)  # P01/a_dti.nii.gz, P01/list.txt, P01/deriv
    listed = tmp_path / "cohort" / "list.txt"
    listed.write_text("P01/a_dti.nii.gz\n")
    before = sorted(p.name for p in subject.iterdir())
    for out, where in ((subject, "is the folder of an input"), (tmp_path / "cohort", "holds the folder of an input")):
        code, _, err = run_cli(capsys, "batch", listed, "-o", out, "--method", "cubic", "--workers", "1")
        assert code == 2 and err.startswith("iqt: error: ") and len(err.strip().splitlines()) == 1, err
        assert where in err and "derivatives" in err, err
    assert sorted(p.name for p in subject.iterdir()) == before
    assert not (tmp_path / "cohort" / "qc.tsv").exists()
    from ImageQualityTransferLib.apps import batch

    items = batch.find_items(listed)
    batch.check_apart_from_inputs(subject / "deriv", items)  # a folder of their own inside it: allowed
    batch.check_apart_from_inputs(tmp_path / "cohort" / "derivatives" / "iqt", items)
