"""What qc.html shows a clinician (a cohort audit): a subject whose input failed a check (a mirrored gradient table, a
moved b0, slices the fit does not explain) was a plain white row, while the one yellow row was the cohort's best SNR;
and rows an earlier run wrote (a subject since removed from the dataset, failures of another factor) were counted as
this run's, against its own summary line. Failed checks are orange now, and earlier runs' rows grey and counted apart."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("distributed", reason="iqt batch needs Dask distributed")

from ImageQualityTransferLib.apps import batch  # noqa: E402
from ImageQualityTransferLib.apps.batch import qc  # noqa: E402

import helpers  # noqa: E402


# The phantom grid of the tests whose page does not depend on the scan's size (the failed-check test keeps
# make_bids's default 32x36x28, on which the gradient table's check was measured).
SMALL = (20, 22, 16)


def _classes(page: str) -> dict:
    return {m[2]: m[1] or "" for m in re.finditer(r'<tr(?: class="(\w+)")?><td>([^<]*)</td>', page)}


@pytest.mark.slow
def test_a_failed_check_is_orange_and_an_earlier_run_s_rows_are_grey_and_counted_apart(tmp_path):
    ds = helpers.make_bids(tmp_path / "bids", ("01", "02", "03"), None)
    bvec = ds / "sub-02" / "dwi" / "sub-02_dwi.bvec"
    table = np.loadtxt(bvec)
    table[0] *= -1  # x negated: every principal direction mirrored, the fit itself fine
    np.savetxt(bvec, table, fmt="%.6f")
    out = tmp_path / "deriv"
    res = batch.run_cohort(batch.find_items(ds), batch.Settings(method="cubic"), out, progress=False)
    assert [r["status"] for r in res] == ["done"] * 3
    assert res[1]["qc"]["bvec_check"] == "x-flipped", res[1]["qc"]
    page = (out / "qc.html").read_text()
    assert _classes(page) == {"sub-01": "", "sub-02": "check", "sub-03": ""}
    assert "<b>3 rows of this run</b>" in page and "<b>1 with a failed check</b> (orange" in page
    assert "earlier runs" not in page
    # sub-03 leaves the dataset; the rerun skips the other two, and its row is an earlier run's
    for p in (ds / "sub-03").rglob("*"):
        if p.is_file():
            p.unlink()
    for d in sorted((ds / "sub-03").rglob("*"), reverse=True) + [ds / "sub-03"]:
        d.rmdir()
    again = batch.run_cohort(batch.find_items(ds), batch.Settings(method="cubic"), out, progress=False)
    assert [r["status"] for r in again] == ["skipped"] * 2
    page = (out / "qc.html").read_text()
    assert _classes(page) == {"sub-01": "", "sub-02": "check", "sub-03": "earlier"}
    assert "<b>2 rows of this run</b> (subject, model, res): 0 done, 2 skipped" in page
    assert "; 1 row of earlier runs into this folder (grey" in page
    assert [r[0] for r in qc._read_qc(out / "qc.tsv")] == ["sub-01", "sub-02", "sub-03"]  # the table keeps them all
    # a subject's seconds are the same figure done and skipped: its sidecar's (36.6 s, then 36.4 s: the same audit)
    at = qc.QC_COLUMNS.index("seconds")
    assert [row[at] for row in qc.qc_rows(res[:2])] == [row[at] for row in qc.qc_rows(again)]
    later = [dict(r, seconds=r["qc"]["seconds"] + 5) for r in res[:2]]  # the run's end, after its writing
    assert [row[at] for row in qc.qc_rows(later)] == [format(r["qc"]["seconds"], ".1f") for r in res[:2]]


def test_which_checks_fail():
    row = dict.fromkeys(qc.QC_COLUMNS, "n/a")
    row.update(status="done", bvec_check="ok", b0_check="ok", b0_shift_vox="0.40", fit_outlier_pairs="0",
               fit_outlier_volumes="0", outlier="-")
    as_row = lambda r: [r[c] for c in qc.QC_COLUMNS]  # noqa: E731
    assert qc.failed_checks(as_row(row)) == []
    assert qc.failed_checks(as_row({**row, "bvec_check": "n/a", "b0_shift_vox": "n/a"})) == []  # not judged
    assert qc.failed_checks(as_row({**row, "bvec_check": "not checked"})) == []  # --no-frame-check: not a fault
    bad = as_row({**row, "b0_check": "b0 21 0.40x", "b0_shift_vox": "1.29", "fit_outlier_pairs": "2"})
    assert qc.failed_checks(bad) == ["b0_check", "b0_shift_vox", "fit_outlier_pairs"]
    # left out of the fit with --exclude-outliers: not a failed check (a review: orange, "tensors may be wrong"), and
    # the page's header says so (a second review: it still listed them)
    assert qc.failed_checks(bad, excluded=True) == ["b0_check", "b0_shift_vox"]
    # failed fits warned of (a cavity's, filled): a failed check; none (0), or a row an earlier version wrote (n/a), not
    cavity = "27 voxels in the mask hold a failed fit (...); 1.7 cm^3 of them in one cluster, a lesion's or a failed ..."
    assert qc.failed_checks(as_row({**row, "failed_fits_flagged": "27", "notes": cavity}), excluded=True) == \
        ["failed_fits_flagged"]
    assert qc.failed_checks(as_row({**row, "failed_fits_flagged": "0"})) == []
    # one voxel below the range on a clean OLS fit's mask edge, warned but no cavity: counted, not a failed check (a
    # review: the clean Elition's OLS row had read orange, "their tensors may be wrong")
    one = "1 voxel in the mask holds a failed fit (an eigenvalue outside -0.001 to 0.005 mm^2/s): ..."
    assert qc.failed_checks(as_row({**row, "failed_fits_flagged": "1", "notes": one})) == []
    # a skip of a subject whose sidecar records no time shows none, not the skip's own (a review)
    skipped = {"subject": "sub-01", "status": "skipped", "qc": {"snr": 20.0}, "seconds": 0.01}
    assert qc.qc_rows([skipped])[0][qc.QC_COLUMNS.index("seconds")] == "n/a"


@pytest.mark.slow
def test_an_earlier_run_s_rows_come_after_this_run_s_whatever_their_model(tmp_path):
    """Sorted by model first, an earlier cubic run's grey rows had come above this linear run's (a review)."""
    ds = helpers.make_bids(tmp_path / "bids", ("01",), None, shape=SMALL)
    out = tmp_path / "deriv"
    items = batch.find_items(ds)
    batch.run_cohort(items, batch.Settings(method="cubic"), out, progress=False)
    batch.run_cohort(items, batch.Settings(method="linear"), out, progress=False)
    page = (out / "qc.html").read_text()
    rows = re.findall(r'<tr(?: class="(\w+)")?><td>([^<]*)</td><td>([^<]*)</td>', page)
    assert [(c, m) for c, _, m in rows] == [("", "linear"), ("earlier", "cubic")], rows
    assert [r[1] for r in qc._read_qc(out / "qc.tsv")] == ["linear", "cubic"]


def test_one_command_s_factor_sets_are_all_this_run_s(tmp_path):
    """`iqt batch --voxel-size` runs one factor set after another: the first sets' rows were grey, counted as earlier
    runs' (a review); the command gives each later set the keys of those before it (`also`)."""
    out = helpers.tensor_list(tmp_path)
    items = batch.find_items(tmp_path / "list.txt")
    first = batch.run_cohort(items, batch.Settings(method="linear"), out, progress=False)
    second = batch.run_cohort(items, batch.Settings(method="linear", factor=3), out, progress=False,
                              also=qc.row_keys(first, batch.Settings(method="linear")))
    assert [r["status"] for r in first + second] == ["done", "done"]
    page = (out / "qc.html").read_text()
    assert "<b>2 rows of this run</b>" in page and "earlier runs" not in page, page[:600]


def test_a_table_that_cannot_be_written_names_itself_not_its_temporary(tmp_path, monkeypatch):
    """A failure before the rename (a share refusing chmod) named the temporary file, already removed (a review)."""
    import errno

    from ImageQualityTransferLib import fileio

    real = fileio.write_text

    def refused(path, text, *a, **k):
        if str(path).endswith(".html"):
            raise OSError(errno.EPERM, "Operation not permitted", str(path.with_name(".iqt-abc123.html")))
        return real(path, text, *a, **k)

    monkeypatch.setattr(fileio, "write_text", refused)
    with pytest.raises(OSError) as info:
        qc.write_qc(tmp_path, [], batch.Settings(method="cubic"))
    assert info.value.filename == str(tmp_path / "qc.html")


def test_a_stopped_run_s_outputs_that_landed_after_it_looked_get_a_description(tmp_path):
    """SIGTERM during a local cluster's first subject: the run found nothing, removed the new folder's description, and
    the worker then put its subject in place while the cluster stopped (a review). Settled once the cluster is gone."""
    ds = helpers.make_bids(tmp_path / "bids", ("01",), None, shape=SMALL)
    items, s = batch.find_items(ds), batch.Settings(method="cubic")
    out = tmp_path / "deriv"
    batch.run_cohort(items, s, out, progress=False)
    for name in ("dataset_description.json", "qc.tsv", "qc.html"):
        (out / name).unlink()
    batch.settle_after_stop(items, s, out)
    assert (out / "dataset_description.json").exists()
    assert [row[3] for row in qc._read_qc(out / "qc.tsv")] == ["pending"]
    empty = tmp_path / "empty"  # nothing landed: nothing written
    empty.mkdir()
    batch.settle_after_stop(items, s, empty)
    assert list(empty.iterdir()) == []


def test_the_header_says_which_checks_count_with_exclude_outliers(tmp_path):
    qc.write_qc(tmp_path, [], batch.Settings(method="cubic", exclude_outliers=True))
    page = (tmp_path / "qc.html").read_text()
    assert "in bvec_check, b0_check, b0_shift_vox and failed_fits_flagged; the notes say" in page
    assert "; slices and volumes the fit does not explain were left out of it with --exclude-outliers: not a failed" in page
    assert "fit_outlier_pairs, fit_outlier_volumes," not in page
    qc.write_qc(tmp_path, [], batch.Settings(method="cubic"))
    assert "b0_shift_vox, fit_outlier_pairs, fit_outlier_volumes and failed_fits_flagged;" in \
        (tmp_path / "qc.html").read_text()


@pytest.mark.slow
def test_participant_label_runs_those_participants_of_a_bids_dataset(tmp_path, capsys, monkeypatch):
    """A BIDS input had no way to leave a subject out (a cohort audit): --participant-label, as BIDS apps take it; the
    others' earlier rows stay in the table, grey; an unknown label, or the option with a list, is one line, exit 2.
    The command's cohort runs in this process (the labels choose its subjects before any cluster starts)."""
    from ImageQualityTransferLib.apps.cli import main

    helpers.batch_runs_in_process(monkeypatch, batch)

    ds = helpers.make_bids(tmp_path / "bids", ("01", "02", "03"), None, shape=SMALL)
    out = tmp_path / "deriv"
    # the earlier run in this process (its rows are what the second leaves grey; its own cluster is not what is checked)
    earlier = batch.run_cohort(batch.find_items(ds), batch.Settings(method="cubic"), out, progress=False)
    assert [r["status"] for r in earlier] == ["done"] * 3
    capsys.readouterr()
    assert main(["batch", str(ds), "-o", str(out), "--method", "linear", "--workers", "1",
                 "--participant-label", "02", "sub-03"]) == 0
    said = capsys.readouterr().out
    assert "2 subjects: 2 done" in said, said
    assert sorted(p.parent.parent.name for p in out.rglob("*model-linear*tensor_dwimap.nii.gz")) == ["sub-02", "sub-03"]
    assert "<b>2 rows of this run</b>" in (out / "qc.html").read_text()
    (tmp_path / "l").mkdir()
    helpers.tensor_list(tmp_path / "l")
    for target, label, words in ((ds, "04", "--participant-label 04: no such participant in"),
                                 (tmp_path / "l" / "list.txt", "01", "is a list, which names its subjects itself")):
        assert main(["batch", str(target), "-o", str(tmp_path / "d2"), "--method", "cubic", "--workers", "1",
                     "--participant-label", label]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


def test_the_figure_is_shown_beside_the_status_and_headings_can_wrap(tmp_path):
    """At 1600 px the figures had been off-screen, past 20 measure columns and the wide notes and reason (a cluster
    audit): on the page the figure comes after the status, then the reason (a failed row's, second to last, had been
    off-screen), and a heading may break at its underscores; qc.tsv's columns stay as they were."""
    row = {"subject": "sub-01", "input": "a", "status": "done", "qc": {"snr": 7.5}, "figure": "sub-01/figures/f.png",
           "reason": ""}
    qc.write_qc(tmp_path, [row], batch.Settings(method="cubic"))
    page = (tmp_path / "qc.html").read_text()
    cells = re.search(r"<tr><td>sub-01</td>(.*?)</tr>", page)[1]
    assert re.findall(r"<td>(.*?)</td>", cells)[3].startswith('<a href="sub-01/figures/f.png">'), cells
    assert "<th>figure</th><th>reason</th><th>input_<wbr>voxel_<wbr>mm</th>" in page  # a failed row's reason on screen
    assert (tmp_path / "qc.tsv").read_text().splitlines()[0].split("\t") == list(qc.QC_COLUMNS)


def test_a_table_that_cannot_be_read_is_not_written_over_without_its_earlier_rows(tmp_path, monkeypatch):
    """qc.tsv read while this process met ulimit -n (EMFILE) had been taken for no table: the table written next
    dropped every earlier run's rows (other subjects, methods or factors). The error is the caller's now (iqt batch
    says the limit in one line) and the table is left as it was."""
    import errno
    from pathlib import Path

    table = tmp_path / "qc.tsv"
    earlier = ["sub-09", "model-linear", "res-x2", "done"] + ["n/a"] * (len(qc.QC_COLUMNS) - 4)
    table.write_text("\t".join(qc.QC_COLUMNS) + "\n" + "\t".join(earlier) + "\n", encoding="utf-8")
    before = table.read_bytes()
    real = Path.read_text

    def read_text(self, *a, **k):
        if self.name == "qc.tsv":
            raise OSError(errno.EMFILE, "Too many open files", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(OSError) as err:
        qc.write_qc(tmp_path, [], batch.Settings(method="cubic"))
    assert err.value.errno == errno.EMFILE
    assert table.read_bytes() == before


# qc.tsv's columns as 0.26.0 wrote them: a lab's script reading them by position (awk's $10) must read the same ones
QC_COLUMNS_0_26_0 = ("subject", "model", "res", "status", "input_voxel_mm", "snr", "brain_ml", "brain_from",
                     "median_std_mm2s", "nonphysical_pct", "noise_index", "fit_outlier_pairs", "fit_outlier_volumes",
                     "b0_shift_vox", "b0_check", "bvec_check", "model_used", "outlier", "seconds", "figure", "notes",
                     "reason")


def test_new_columns_come_after_the_earlier_ones_and_n_a_is_said(tmp_path):
    """noise_std_scale had been put after median_std_mm2s, moving every later column by one: awk's $10 read 1.6077,
    not nonphysical_pct (a review). The page shows it beside the median and says what its n/a means (a row an earlier
    version wrote, or no --uncertainty: the review's resumed rows read n/a beside a scaled sigma, unexplained)."""
    row = {"subject": "sub-01", "input": "a", "status": "done", "reason": "",
           "qc": {"median_std": 1.99e-4, "noise_std_scale": 1.6077, "nonphysical_pct": 0.25, "noise_index": 0.172}}
    qc.write_qc(tmp_path, [row], batch.Settings(method="biqt", uncertainty=True))
    head, line = ((tmp_path / "qc.tsv").read_text().splitlines()[i].split("\t") for i in (0, 1))
    assert tuple(head[:len(QC_COLUMNS_0_26_0)]) == QC_COLUMNS_0_26_0, head
    assert line[9] == "0.25" and line[head.index("noise_std_scale")] == "1.6077", line  # awk -F'\t' '{print $10}'
    page = (tmp_path / "qc.html").read_text()
    assert "<th>median_<wbr>std_<wbr>mm2s</th><th>noise_<wbr>std_<wbr>scale</th>" in page
    assert "<td>0.000199</td><td>1.6077</td>" in page
    assert "n/a: no uncertainty maps (run without --uncertainty), or a row an earlier version wrote" in page


def test_a_cavity_of_failed_fits_is_counted_in_its_row_and_sidecars_and_shown_orange(tmp_path):
    """A subject whose input holds a cavity of failed fits (a cyst at the noise floor), filled and every uncertainty
    map raised there, had it said only in the notes: its row white, the count (`iqt upsample`'s run record's
    failed_fits_flagged) in no column or sidecar, so a lab sorting the table by a column could not find it (a cohort
    audit). The count is the last column and in the sidecars, the row a failed check (a clean subject's 0: in
    test_batch.py, the sigma noise factor's test)."""
    import json

    # 27 voxels of 4 mm, 1.7 cm^3 (methods/inputs.py CAVITY_CM3)
    out, head, row = _cohort_of_a_phantom_with_a_block(tmp_path, "c", [9e-3, 0, 6e-3, 0, 0, 6e-3])
    assert tuple(head) == qc.QC_COLUMNS and head[-2] == "failed_fits_flagged"  # new columns at the end
    at = dict(zip(head, row))
    assert at["failed_fits_flagged"] == "27", at
    assert "27 voxels in the mask hold a failed fit" in at["notes"] and "map raised to the top there" in at["notes"]
    page = (out / "qc.html").read_text()
    assert _classes(page) == {"sub-cdti": "check"}, _classes(page)
    assert "<b>1 with a failed check</b>" in page and "or failed fits (a cavity), in bvec_check" in page
    assert "<th>bvec_<wbr>check</th><th>failed_<wbr>fits_<wbr>flagged</th>" in page
    sides = {p.name.split("model-biqt_")[1]: json.loads(p.read_text()) for p in out.rglob("*.json")
             if "model-" in p.name}
    assert sides["param-tensor_dwimap.json"]["QC"]["failed_fits_flagged"] == 27
    assert sides["param-tensor_desc-std_dwimap.json"]["FailedFitsFlagged"] == 27
    assert sides["param-tensor_desc-direction_dwimap.json"]["FailedFitsFlagged"] == 27
    assert all("27 voxels in the mask hold a failed fit" in s["Notes"][0] for s in sides.values()), sides
    # as the table reads it from a skipped subject's sidecar
    skipped = {"subject": "sub-cdti", "status": "skipped", "qc": sides["param-tensor_dwimap.json"]["QC"]}
    assert qc.qc_rows([skipped])[0][-2] == "27"


def test_a_hole_in_the_tensors_is_counted_in_its_row_and_sidecars_and_old_rows_read(tmp_path):
    """A subject whose tensors hold a hole (a block with no tensor inside the brain, as a fit whose mask left out a
    lesion leaves it), filled and every uncertainty map raised there, is counted in holes_flagged (the last column,
    after failed_fits_flagged on the page) and its maps' sidecars, its row not orange (a review: a clean scan's fit mask
    a little wider than its brain encloses background, which had turned clean rows orange); a table an earlier version
    wrote, without the column, is read with it n/a."""
    import json

    from ImageQualityTransferLib.methods.inputs import HOLE_SAID

    out, head, row = _cohort_of_a_phantom_with_a_block(tmp_path, "h", 0)  # 27 voxels of 4 mm with no tensor, deep in it
    assert head[-1] == "holes_flagged" and tuple(head) == qc.QC_COLUMNS
    at = dict(zip(head, row))
    assert at["holes_flagged"] == "27" and at["failed_fits_flagged"] == "0", at
    assert "27 low-res voxels hold no tensor" in at["notes"] and HOLE_SAID in at["notes"]
    page = (out / "qc.html").read_text()
    assert _classes(page) == {"sub-hdti": ""}, _classes(page)
    assert "<th>failed_<wbr>fits_<wbr>flagged</th><th>holes_<wbr>flagged</th>" in page
    sides = {p.name.split("model-biqt_")[1]: json.loads(p.read_text()) for p in out.rglob("*.json")
             if "model-" in p.name}
    assert sides["param-tensor_dwimap.json"]["QC"]["holes_flagged"] == 27
    assert sides["param-tensor_desc-std_dwimap.json"]["HolesFlagged"] == 27
    # an earlier version's table, without the column: its rows read with it n/a, and are kept
    old = out / "old"
    old.mkdir()
    cols = qc.QC_COLUMNS[:-1]
    (old / "qc.tsv").write_text("\t".join(cols) + "\n" + "\t".join(dict(zip(head, row))[c] for c in cols) + "\n")
    back = qc._read_qc(old / "qc.tsv")
    assert len(back) == 1 and back[0][-1] == "n/a" and back[0][-2] == "0", back
    assert qc.failed_checks(back[0]) == [], qc.failed_checks(back[0])  # its n/a is no failed check


def _cohort_of_a_phantom_with_a_block(tmp_path, name: str, value):
    """`iqt batch` (biqt, --uncertainty) on a 4 mm phantom's fit whose 3x3x3 block deep in the brain is set to `value`
    (a failed fit's tensor, or 0: no tensor): its output folder, qc.tsv's header and its one row."""
    import warnings

    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.core.errors import IQTWarning
    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=(12, 14, 10), voxel_mm=4.0, n_dirs=12)
    t = fit_dti(dwi, brain_mask(dwi))
    data = np.array(t.data, copy=True)
    data[5:8, 6:9, 4:7] = value
    fileio.save_tensor(t.replace(data=data), tmp_path / f"{name}_dti.nii.gz")
    (tmp_path / "list.txt").write_text(f"{name}_dti.nii.gz\n")
    out = tmp_path / "deriv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IQTWarning)
        res = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), batch.Settings(method="biqt", uncertainty=True),
                               out, client=None, progress=False)
    assert [r["status"] for r in res] == ["done"], res
    head, row = [line.split("\t") for line in (out / "qc.tsv").read_text().splitlines()]
    return out, head, row
