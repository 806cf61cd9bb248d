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


def test_the_suggested_folder_is_not_inside_a_subjects_folder(tmp_path):
    """Researcher audit: a list naming an earlier run's output (r1/sub-X/dwi/..._dti.nii.gz) with -o r1 was refused, as
    it should be, but the line suggested r1/sub-X/derivatives/iqt, which a rerun accepted, nesting a dataset in a
    subject's folder. The suggestion now climbs above the sub-*/ses-*/dwi folders."""
    from ImageQualityTransferLib.apps import batch
    from ImageQualityTransferLib.core.errors import IQTError

    r1 = tmp_path / "r1"
    dwi = r1 / "sub-P01" / "ses-1" / "dwi"
    dwi.mkdir(parents=True)
    helpers.tensor_list(dwi)
    listed = tmp_path / "list.txt"
    listed.write_text(f"{next(dwi.glob('*_dti.nii.gz'))}\n")
    items = batch.find_items(listed)
    with pytest.raises(IQTError) as caught:
        batch.check_apart_from_inputs(r1, items)
    suggested = str(caught.value).rsplit("e.g. ", 1)[1]
    assert suggested == str(r1 / "derivatives" / "iqt"), suggested


def test_a_tensor_order_on_a_dataset_of_dwis_is_refused(tmp_path, capsys):
    """Researcher audit: `iqt batch bids --tensor-order fsl` on a dataset of DWI series ran, the option accepted and without
    effect, recorded nowhere: it reads tensor files another tool wrote. One line, exit 2, nothing written."""
    ds = helpers.make_bids(tmp_path / "bids", ("01",))
    out = tmp_path / "deriv"
    code, _, err = run_cli(capsys, "batch", ds, "-o", out, "--method", "cubic", "--workers", "1", "--tensor-order", "fsl")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--tensor-order fsl: every subject is a DWI" in err, err
    assert not out.exists()
