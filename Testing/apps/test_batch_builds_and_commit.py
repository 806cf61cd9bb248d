"""`iqt batch` over a long unattended run: a subject computed by a worker of another build than the run's (the code on
disk changed and a restarted worker imported it) is not "done"; a subject's outputs land all or none (a full disk or a
kill midway leaves its earlier set as it was); the QC table is written as each subject ends (a killed night leaves
one of what finished); a failed QC table still leaves the summary said; GeneratedBy names only builds whose outputs are
in the folder."""

from __future__ import annotations

import errno
import hashlib
import json
import time
import types
import warnings
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib.apps import batch  # noqa: E402
from ImageQualityTransferLib.apps.batch import cohort, results, scheduler, subject, tasks  # noqa: E402
from ImageQualityTransferLib.core.errors import IQTWarning  # noqa: E402
from ImageQualityTransferLib.fileio.model_files import build  # noqa: E402

import helpers  # noqa: E402

OTHER = "0123456789ab"  # a build that is not this tree's


# The phantom subjects' grid: smaller than make_bids's default 32x36x28, since what these tests check (which build
# computed a subject, which files land, the table's rows) does not depend on the scan's size (a third of the CPU).
SHAPE = (20, 22, 16)


def cohort_of(tmp_path, subjects=("01", "02")):
    ds = helpers.make_bids(tmp_path / "bids", subjects, shape=SHAPE)
    out = tmp_path / "deriv"
    out.mkdir()
    return batch.find_items(ds), out


def files(folder: Path) -> dict[str, str]:
    """Every file under `folder` by relative path, with its SHA256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def tensor_sidecar(out: Path, sub: str, method="cubic") -> dict:
    return json.loads((out / f"sub-{sub}" / "dwi" / f"sub-{sub}_space-orig_res-2x_model-{method}_param-tensor_dwimap.json")
                      .read_text())


def as_other_build(monkeypatch, prefixes):
    """The subjects `prefixes` run as a worker of build OTHER would run them (its build stamped, compared and returned),
    the others as this tree's: what a worker the nanny started again after the code on disk changed does."""
    real_process, real_build = tasks.process, subject.build
    now = {"other": False}

    def process(item, s, out_root):
        now["other"] = item.prefix in prefixes
        try:
            return real_process(item, s, out_root)
        finally:
            now["other"] = False

    monkeypatch.setattr(tasks, "process", process)
    monkeypatch.setattr(subject, "build", lambda: OTHER if now["other"] else real_build())


def test_a_subject_computed_by_another_build_is_not_done(tmp_path, monkeypatch):
    """Audit AB F1: one run wrote subjects from two builds, exit 0, '4 done', nothing said."""
    items, out = cohort_of(tmp_path)
    s = batch.Settings(method="cubic")
    as_other_build(monkeypatch, {"sub-02"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IQTWarning)
        rows = batch.run_cohort(items, s, out, progress=False)
    assert [r["status"] for r in rows] == ["done", "failed"]
    assert tensor_sidecar(out, "02")["SoftwareBuild"] == OTHER  # what the other build wrote, as it wrote it
    why = rows[1]["reason"]
    assert why.splitlines() == [why] and f"build {OTHER}" in why and build() in why
    assert "code on disk changed" in why and "rerun" in why
    lines = [str(w.message) for w in caught if issubclass(w.category, IQTWarning)]
    said = [w for w in lines if OTHER in w]
    assert len(said) == 1 and said[0].startswith(f"1 of 2 subjects computed by build {OTHER}, not this run's build {build()}")
    assert batch.summary(rows) == "2 subjects: 1 done, 0 skipped (already done), 1 failed"
    qc = (out / "qc.tsv").read_text().splitlines()
    assert [r.split("\t")[3] for r in qc[1:]] == ["done", "failed"]

    monkeypatch.undo()  # the rerun, all of this build: the other build's subject redone, the first skipped
    rows = batch.run_cohort(items, s, out, progress=False)
    assert [r["status"] for r in rows] == ["skipped", "done"]
    assert {tensor_sidecar(out, sub)["SoftwareBuild"] for sub in ("01", "02")} == {build()}


def test_a_subject_skipped_by_a_worker_of_another_build_is_not_done_either(tmp_path, monkeypatch):
    """A worker of another build skips the outputs of its own build (its identity names it): not this run's either."""
    items, out = cohort_of(tmp_path, ("01",))
    s = batch.Settings(method="cubic")
    as_other_build(monkeypatch, {"sub-01"})
    monkeypatch.setattr(batch.records, "build", lambda: OTHER)  # the identity the other build's worker compares
    with pytest.warns(IQTWarning, match="1 of 1 subject computed by build .* it counts as failed"):
        assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["failed"]
    with pytest.warns(IQTWarning, match="1 of 1 subject computed by build"):
        rows = batch.run_cohort(items, s, out, progress=False)
    assert [r["status"] for r in rows] == ["failed"] and "code on disk changed" in rows[0]["reason"]


def full_disk_at(monkeypatch, part: str) -> list:
    """The subject outputs whose name holds `part` fail as a full disk fails them (ENOSPC while the file is written,
    through fileio.atomic_write as a real write would); the names it failed returned."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.fileio.writing import atomic_write

    real, failed = fileio.save_scalar, []

    def no_room(tmp):
        raise OSError(errno.ENOSPC, "No space left on device", tmp)

    def save_scalar(vol, path, *args, **kwargs):
        if part in Path(path).name:
            failed.append(Path(path).name)
            return atomic_write(path, no_room)
        return real(vol, path, *args, **kwargs)

    monkeypatch.setattr(fileio, "save_scalar", save_scalar)
    return failed


def said_in_one_line(row) -> str:
    why = row["reason"]
    assert row["status"] == "failed" and why.splitlines() == [why] and "no space is left" in why
    assert "none of the subject's outputs was written" in why
    return why


def test_a_full_disk_midway_leaves_a_new_subject_no_file(tmp_path, monkeypatch):
    """Audit AB F5b: the tensor, FA and MD written before the map that met the full disk stayed, without sidecars,
    while the reason said 'no partial file was left'."""
    items, out = cohort_of(tmp_path, ("01",))
    failed = full_disk_at(monkeypatch, "desc-brain_mask")  # after the tensor, FA and MD
    rows = batch.run_cohort(items, batch.Settings(method="cubic"), out, progress=False)
    assert failed and said_in_one_line(rows[0])
    assert not (out / "sub-01").exists()  # no file, and no folder made for it
    assert set(files(out)) <= {"dataset_description.json", "qc.tsv", "qc.html", ".iqt_batch.lock"}


def test_a_full_disk_midway_leaves_a_redone_subject_as_it_was(tmp_path, monkeypatch):
    """Audit AB F5c: a subject being redone was replaced file by file, so a full disk (or a kill) midway left new
    images under the earlier run's sidecars and the earlier complete set gone. Also its earlier uncertainty maps, which
    a run without --uncertainty removes, stay when the run fails."""
    items, out = cohort_of(tmp_path, ("01",))
    assert [r["status"] for r in batch.run_cohort(items, batch.Settings(method="biqt", uncertainty=True), out,
                                                  progress=False)] == ["done"]
    before = files(out / "sub-01")
    assert any("desc-std" in name for name in before)
    from ImageQualityTransferLib import fileio

    dwi = fileio.load_dwi(items[0].path)
    fileio.save_dwi(dwi.replace(data=dwi.data * 1.01), items[0].path)  # the input corrected: the subject is redone
    failed = full_disk_at(monkeypatch, "param-md")
    for s in (batch.Settings(method="biqt", uncertainty=True), batch.Settings(method="biqt")):
        rows = batch.run_cohort(items, s, out, progress=False)
        assert failed and said_in_one_line(rows[0])
        assert files(out / "sub-01") == before  # every earlier file byte-identical, nothing new beside them
        failed.clear()
    monkeypatch.undo()
    rows = batch.run_cohort(items, batch.Settings(method="biqt"), out, progress=False)
    assert [r["status"] for r in rows] == ["done"]
    assert not any("desc-std" in name for name in files(out / "sub-01"))  # the earlier maps go with the commit


def test_a_subject_commits_all_or_none_in_a_dask_worker_thread(tmp_path, monkeypatch):
    """The same in a Dask worker (a thread of a worker, not the main thread: no signal is held there): a failed
    subject leaves nothing, the other one lands whole."""
    from distributed import Client

    items, out = cohort_of(tmp_path)
    failed = full_disk_at(monkeypatch, "sub-02_space-orig_res-2x_model-cubic_param-fa")
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as client:
        rows = batch.run_cohort(items, batch.Settings(method="cubic"), out, client=client, progress=False)
    assert failed and rows[0]["status"] == "done" and said_in_one_line(rows[1])
    assert not (out / "sub-02").exists()
    assert len([n for n in files(out / "sub-01") if n.endswith(".nii.gz")]) == 4
    assert not [n for n in files(out) if "/.iqt-" in n or n.startswith(".iqt-")]


def statuses(out: Path) -> dict[str, tuple[str, str]]:
    """qc.tsv's rows as {subject: (status, reason)}."""
    lines = (out / "qc.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    rows = [dict(zip(head, line.split("\t"))) for line in lines[1:]]
    return {r["subject"]: (r["status"], r["reason"]) for r in rows}


def test_a_killed_run_leaves_a_table_of_what_finished(tmp_path, monkeypatch):
    """Audit AB F6: the table was written only at the end, so a killed night left none, or the one before it that
    still listed as failed a subject since fixed and redone."""
    ds = helpers.make_bids(tmp_path / "bids", ("01", "02"), corrupt="03", shape=SHAPE)
    out = tmp_path / "deriv"
    out.mkdir()
    items = batch.find_items(ds)
    s = batch.Settings(method="cubic")
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["done", "done", "failed"]
    assert statuses(out)["sub-03"][0] == "failed"
    bad = Path(items[2].path)  # the damaged scan replaced by a good one
    bad.write_bytes(Path(items[0].path).read_bytes())
    real = tasks.process

    def killed_at_01(item, *args):
        if item.prefix == "sub-01":
            raise KeyboardInterrupt  # as SIGTERM stops a run (signals.Terminated), once sub-03 has ended
        return real(item, *args)

    monkeypatch.setattr(tasks, "process", killed_at_01)
    monkeypatch.setattr(cohort, "QC_WRITE_EVERY_S", 0.0)  # written as each subject ends (a run of minutes per subject)
    with pytest.raises(KeyboardInterrupt):
        batch.run_cohort(items[::-1], s, out, progress=False)
    rows = statuses(out)
    assert rows["sub-03"] == ("done", "") and rows["sub-02"] == ("skipped", "")  # run in that order
    assert rows["sub-01"] == ("done", "")  # not reached, its earlier outputs in place: its done row kept
    monkeypatch.undo()
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["skipped", "skipped", "skipped"]
    assert {st for st, _ in statuses(out).values()} == {"skipped"}


def test_a_table_that_cannot_be_written_still_leaves_the_summary_said(tmp_path, monkeypatch, capsys):
    """Audit AB F5a: a full disk when qc.tsv was written ended the run with that one error line: no summary, no
    subject's reason."""
    from ImageQualityTransferLib.core.errors import IQTError

    ds = helpers.make_bids(tmp_path / "bids", ("01",), corrupt="02", shape=SHAPE)
    out = tmp_path / "deriv"
    out.mkdir()

    def no_room(out_root, *args):
        raise IQTError(f"{out_root / 'qc.tsv'}: cannot be written: no space is left on the device")

    monkeypatch.setattr(cohort, "write_qc", no_room)
    with pytest.raises(IQTError, match="qc.tsv: cannot be written"):
        batch.run_cohort(batch.find_items(ds), batch.Settings(method="cubic"), out, progress=False)
    said = capsys.readouterr().out.splitlines()
    assert said[0] == "2 subjects: 1 done, 0 skipped (already done), 1 failed; the QC table was not written in full (below)"
    assert len(said) == 2 and said[1].startswith("  sub-02: ") and "truncated" in said[1]


def test_a_table_in_the_way_of_a_folder_is_one_line_after_the_summary(tmp_path, capsys):
    """Any failure to write the table, not only a full disk (review 52b: a folder named qc.tsv ended the run in an
    internal IsADirectoryError, no summary)."""
    from ImageQualityTransferLib.core.errors import IQTError

    ds = helpers.make_bids(tmp_path / "bids", ("01",), shape=SHAPE)
    out = tmp_path / "deriv"
    for table in ("qc.tsv", "qc.html"):  # the file in the way named (a cohort audit: qc.html's was called qc.tsv's)
        (out / table).mkdir(parents=True)
        with pytest.raises(IQTError, match="the QC table cannot be written") as info:
            batch.run_cohort(batch.find_items(ds), batch.Settings(method="cubic"), out, progress=False)
        assert str(info.value).startswith(f"{out / table}: "), str(info.value)
        assert capsys.readouterr().out.splitlines()[0].startswith("1 subject: ")
        (out / table).rmdir()
    # `iqt batch` refuses it before any work, its first factor set no longer run before it is found
    from ImageQualityTransferLib.apps.cli import main

    (out / "qc.html").mkdir()
    (out / "qc.tsv").unlink()
    assert main(["batch", str(ds), "-o", str(out), "--method", "linear", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"iqt: error: {out / 'qc.html'}: in the way of the cohort's QC table (qc.html), not a file; move it "
                   "and rerun"], err
    assert not (out / "qc.tsv").exists() and not list(out.rglob("*model-linear*"))


@pytest.mark.parametrize("table, fetched", [("qc.tsv", True), ("qc.html", True), ("qc.tsv", False)])
def test_a_linked_table_is_refused_before_any_work_saying_to_unlock_it(tmp_path, capsys, table, fetched):
    """A table or page that is a link (a DataLad or git-annex file, as a save leaves it) is refused before any work,
    not after every subject, saying to unlock it: the paths check's "give the file's own path, or remove the link"
    had been said, but batch takes no path for it and a removed link loses the earlier runs' rows (a review)."""
    from ImageQualityTransferLib.apps.cli import main

    out = helpers.tensor_list(tmp_path)
    annexed = out / ".git" / "annex" / "objects" / "XX" / "MD5E-s8--abc.tsv"
    annexed.parent.mkdir(parents=True)
    if fetched:
        annexed.write_text("subject\n")
    (out / table).symlink_to(annexed.relative_to(out))
    assert main(["batch", str(tmp_path / "list.txt"), "-o", str(out), "--method", "linear", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    what = "QC table" if table == "qc.tsv" else "QC page"
    assert len(err) == 1 and err[0].startswith(f"iqt: error: {out / table}: the cohort's {what} is a symbolic link"), err
    assert f"datalad unlock {out / table}" in err[0] and "give the file's own path" not in err[0], err
    assert ("copy the file over the link" in err[0]) == fetched and ("datalad get" in err[0]) != fetched, err
    assert (out / table).is_symlink() and (not fetched or annexed.read_text() == "subject\n")
    assert sorted(p.name for p in out.iterdir()) == [".git", table]


@pytest.mark.parametrize("to", ["folder", "itself"])
def test_a_table_linked_to_a_folder_or_to_itself_is_said_so(tmp_path, capsys, to):
    """qc.tsv a link to a folder had been told to "copy the file over the link", a link to itself "not there (a DataLad
    or git-annex file not fetched?)" (a review): each is said as what it is, before any work."""
    from ImageQualityTransferLib.apps.cli import main

    out = helpers.tensor_list(tmp_path)
    if to == "folder":
        (tmp_path / "tables").mkdir()
        (out / "qc.tsv").symlink_to(tmp_path / "tables")
    else:
        (out / "qc.tsv").symlink_to("qc.tsv")
    assert main(["batch", str(tmp_path / "list.txt"), "-o", str(out), "--method", "linear", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    said = "is a symbolic link to a folder" if to == "folder" else "leads back to itself"
    assert len(err) == 1 and said in err[0] and "datalad" not in err[0] and "copy the file" not in err[0], err
    assert (out / "qc.tsv").is_symlink() and sorted(p.name for p in out.iterdir()) == ["qc.tsv"]


def test_an_output_folder_under_a_file_says_the_folder_cannot_be_made(tmp_path, capsys):
    """`-o afile/deriv`, afile a plain file: the table's read check had said "qc.tsv: the cohort's QC table cannot be
    read (Not a directory) ..." (a review); the folder's own line is said, as before that check came in."""
    from ImageQualityTransferLib.apps.cli import main

    helpers.tensor_list(tmp_path)
    (tmp_path / "afile").write_text("x\n")
    out = tmp_path / "afile" / "deriv"
    assert main(["batch", str(tmp_path / "list.txt"), "-o", str(out), "--method", "linear", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"iqt: error: {out}: cannot create the folder (Not a directory); choose another output folder"], err
    assert (tmp_path / "afile").read_text() == "x\n"


def test_an_unreadable_table_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """An earlier qc.tsv that cannot be read (made unreadable; a user without the right) had been found at the end,
    after every subject had run, and told to make room (a review): one line before any work, nothing written."""
    import builtins

    from ImageQualityTransferLib.apps import cli
    from ImageQualityTransferLib.apps.cli import main

    ds = helpers.make_bids(tmp_path / "bids", ("01",), shape=SHAPE)
    out = tmp_path / "deriv"
    out.mkdir()
    (out / "qc.tsv").write_text("subject\n")

    def unreadable(path, *a, **k):
        if str(path) == str(out / "qc.tsv"):
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *a, **k)

    monkeypatch.setattr(cli.batch, "open", unreadable, raising=False)
    assert main(["batch", str(ds), "-o", str(out), "--method", "linear", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"iqt: error: {out / 'qc.tsv'}: the cohort's QC table cannot be read (Permission denied), and a run "
                   "adds its rows to the earlier runs' there: make it readable (or move it) and rerun"], err
    assert sorted(p.name for p in out.iterdir()) == ["qc.tsv"]


def test_the_table_is_written_at_most_every_few_seconds_as_subjects_end(tmp_path, monkeypatch):
    """Written after every subject, the table's writes grew with the square of the cohort (review 52b: 1000 quick
    subjects, 40 s of the run's 81 s; a resume of them 33 s against 1.9 s). The clock cohort.py reads is this test's,
    the subjects taking uneven times of it (a loaded machine's wall clock had made the count of writes vary; with
    every subject taking 4 s a throttle by count, every 3rd subject, had passed: a review)."""
    out = helpers.tensor_list(tmp_path)
    items = batch.find_items(tmp_path / "list.txt")
    now = [1000.0]
    monkeypatch.setattr(cohort, "time", types.SimpleNamespace(monotonic=lambda: now[0], sleep=time.sleep))
    real_process = tasks.process
    steps = iter([12.0, 1.0, 1.0, 4.0, 2.0, 2.0, 1.0, 11.0, 1.0])  # ending at 12, 13, 14, 18, 20, 22, 23, 34, 35 s

    def process(*a, **k):
        result = real_process(*a, **k)
        now[0] += next(steps)
        return result
    monkeypatch.setattr(tasks, "process", process)
    monkeypatch.setattr(subject, "qc_figure", lambda vols, s, item, path, estimated=False: path.write_bytes(b""))  # 0.6 s
    ended_at_writes = []
    real = cohort.write_qc
    monkeypatch.setattr(cohort, "write_qc", lambda out_root, rows, *a, **k: (
        ended_at_writes.append(sum(r["status"] != "pending" for r in rows)), real(out_root, rows, *a, **k))[1])
    many = [batch.Item(f"sub-{i:03d}", f"sub-{i:03d}/dwi", items[0].path, "dti", root=items[0].root) for i in range(9)]
    assert {r["status"] for r in batch.run_cohort(many, batch.Settings(method="nearest"), out, progress=False)} == {"done"}
    # once QC_WRITE_EVERY_S (10 s) has passed since the last write: after the 1st (12 s), 6th (22 s) and 8th (34 s)
    # subjects, and at the end (9th); by count (every 3rd) it would be [3, 6, 9]
    assert cohort.QC_WRITE_EVERY_S == 10.0 and ended_at_writes == [1, 6, 8, 9], ended_at_writes


def test_generated_by_names_only_builds_whose_outputs_are_there(tmp_path, monkeypatch):
    """Audit AB F7: after a later build redid every subject, GeneratedBy still listed the earlier build."""
    from ImageQualityTransferLib.fileio import model_files

    items, out = cohort_of(tmp_path)
    s = batch.Settings(method="cubic")
    for owner in (model_files, batch.records, subject):  # a whole run of an earlier build
        monkeypatch.setattr(owner, "build", lambda: OTHER)
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["done", "done"]
    gen = lambda: [e.get("Build") for e in json.loads((out / "dataset_description.json").read_text())["GeneratedBy"]]  # noqa: E731
    assert gen() == [OTHER]
    monkeypatch.undo()
    first = batch.run_cohort(items[:1], s, out, progress=False)  # the upgrade redoes one subject: both builds there
    assert [r["status"] for r in first] == ["done"] and gen() == [OTHER, build()]
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["skipped", "done"]
    assert gen() == [build()]
    cubic = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"]
    assert [r["status"] for r in batch.run_cohort(items, batch.Settings(method="linear"), out, progress=False)] \
        == ["done", "done"]  # another method into the same folder: both runs' entries stay, each has its outputs
    assert json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0] == cubic[0] and len(gen()) == 2


def test_a_worker_of_two_threads_keeps_each_subjects_notes_its_own(tmp_path, monkeypatch):
    """Fresh-eyes audit: on a worker with two threads (`dask worker`'s default is every core) a subject's notes went into
    another subject's sidecar and others were lost: the notes are the warnings caught while it runs, and Python's
    warnings are the whole process's. Each subject now runs alone in its process, and its notes are its own."""
    import warnings

    from distributed import Client
    from ImageQualityTransferLib.apps.batch import subject
    from ImageQualityTransferLib.core.errors import IQTWarning

    items, out = cohort_of(tmp_path, ("01", "02", "03", "04"))
    real = subject.compute

    def compute_with_a_note(item, s):
        time.sleep(0.1)  # the other thread's subject starts meanwhile (in milliseconds)
        warnings.warn(f"a note of {item.prefix} only", IQTWarning)
        time.sleep(0.1)
        return real(item, s)

    monkeypatch.setattr(subject, "compute", compute_with_a_note)
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as client:
        rows = batch.run_cohort(items, batch.Settings(method="cubic"), out, client=client, progress=False)
    assert [r["status"] for r in rows] == ["done"] * 4
    for r in rows:
        own = [n for n in r["notes"] if "a note of" in n]
        assert own == [f"a note of {r['subject']} only"], (r["subject"], r["notes"])


def test_an_interrupted_run_writes_the_table_of_what_ended(tmp_path, monkeypatch):
    """Researcher audit: the table was written at most every QC_WRITE_EVERY_S (10 s) as subjects ended, and not when the
    run was stopped: a Ctrl-C a few seconds in left no qc.tsv though subjects had ended, and an interrupted redo left
    the earlier run's table, describing outputs since replaced. The interruption now writes it, then stops."""
    ds = helpers.make_bids(tmp_path / "bids", ("01", "02", "03"), shape=SHAPE)
    out = tmp_path / "deriv"
    out.mkdir()
    items = batch.find_items(ds)
    real = tasks.process

    def stopped_at_03(item, *args):
        if item.prefix == "sub-03":
            raise KeyboardInterrupt
        return real(item, *args)

    monkeypatch.setattr(tasks, "process", stopped_at_03)
    with pytest.raises(KeyboardInterrupt):
        batch.run_cohort(items, batch.Settings(method="cubic"), out, progress=False)
    rows = statuses(out)
    assert rows["sub-01"] == ("done", "") and rows["sub-02"] == ("done", "") and rows["sub-03"][0] == "pending"
    assert "rerun the same command" in rows["sub-03"][1]
    page = (out / "qc.html").read_text()
    assert "<b>1 pending</b> (blue;" in page and page.count('<tr class="pending">') == 1  # coloured as failed rows are


def test_a_lost_scheduler_keeps_the_rows_of_subjects_done_before(tmp_path, monkeypatch):
    """After a lost scheduler the table had turned a subject an earlier run finished into "pending ... the run was
    working on it or had not reached it" (a cluster audit): where its outputs are in place its done row is kept; one
    whose outputs are gone is pending."""
    from ImageQualityTransferLib.core.errors import IQTError

    items, out = cohort_of(tmp_path, ("01", "02", "03", "04"))
    s = batch.Settings(method="cubic")
    assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["done"] * 4
    for p in (out / "sub-02" / "dwi").glob("*_dwimap.*"):
        p.unlink()
    # incomplete or changed outputs, which the rerun redoes (records.finished), are not kept done either
    next((out / "sub-03" / "dwi").glob("*param-fa_dwimap.nii.gz")).unlink()
    tensor = next((out / "sub-04" / "dwi").glob("*param-tensor_dwimap.nii.gz"))
    data = bytearray(tensor.read_bytes())
    data[-20] ^= 0xFF
    tensor.write_bytes(bytes(data))

    def lost(*args):
        raise IQTError("lost the connection to the scheduler")

    monkeypatch.setattr(cohort, "_run_items", lost)
    with pytest.raises(IQTError):
        batch.run_cohort(items, s, out, progress=False)
    rows = statuses(out)
    assert rows["sub-01"] == ("done", "") and [rows[f"sub-0{i}"][0] for i in (2, 3, 4)] == ["pending"] * 3, rows


def test_a_pending_rows_check_hashes_again_only_where_an_output_changed(tmp_path, monkeypatch):
    """The table written every few seconds asks each pending subject with an earlier done row whether its outputs are
    as written (records.finished, which hashes the input and every output: about 20 ms a dev subject, at every write,
    a review); it is asked again only where an output's file changed."""
    from ImageQualityTransferLib.apps.batch import records

    items, out = cohort_of(tmp_path, ("01",))
    s = batch.Settings(method="cubic")
    batch.run_cohort(items, s, out, progress=False)
    calls = []
    real = records.finished
    monkeypatch.setattr(records, "finished", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(results, "_FINISHED", {})
    row = results.pending(items[0], s, out)
    assert row["in_place"]() and row["in_place"]() and len(calls) == 1
    tensor = next((out / "sub-01" / "dwi").glob("*param-tensor_dwimap.nii.gz"))
    data = bytearray(tensor.read_bytes())
    data[-20] ^= 0xFF
    tensor.write_bytes(bytes(data))
    assert not row["in_place"]() and len(calls) == 2
    assert not row["in_place"]() and len(calls) == 2
    bval = next(Path(f) for f, what in records.input_files(items[0]) if what == "b-values")
    bval.write_text(bval.read_text() + " ")  # an input file changed too: asked again
    assert not row["in_place"]() and len(calls) == 3


def test_one_subject_is_said_in_the_singular():
    """'1 subjects: 1 done, ...' for a cohort of one (a newcomer's audit)."""
    assert batch.summary([{"status": "done"}]) == "1 subject: 1 done, 0 skipped (already done), 0 failed"


def test_a_worker_of_another_build_touches_nothing(tmp_path):
    """The task a cluster runs (tasks._guard, sent by value so that a worker of older code runs it too) refuses on a
    worker whose build is not the run's before it unpickles the subject or touches a file: a worker of another build
    that joined a scheduler mid-run had replaced a done subject's outputs with its own."""
    import pickle

    items, out = cohort_of(tmp_path, ("01",))
    s = batch.Settings(method="cubic")
    task = tasks._guard()
    res = task(pickle.dumps((items[0], s, str(out), None)), OTHER)
    assert res == {"status": "failed", "other_worker": "this process", "worker_address": None, "build": build()}
    assert list(out.iterdir()) == []
    row = tasks.refused_by_other_worker(items[0], res, OTHER)
    assert row["reason"].startswith(f"a worker's code or model registry differs from this run's (worker this process, "
                                    f"build {build()}, the run's {OTHER}); nothing of the subject was written by it"), row
    # the causes said neutrally: a local cluster's worker restarted after a registration had been told to be stopped
    assert "stop that worker" not in row["reason"] and "'iqt train --register'" in row["reason"], row
    batch.run_cohort(items, s, out, progress=False)  # done by this build: a worker of another is kept off it too
    before = files(out)
    assert task(b"not even read", OTHER)["other_worker"] and files(out) == before
    assert task(pickle.dumps((items[0], s, str(out), None)), build())["status"] == "skipped"  # this build: it runs


def test_a_worker_without_pytorch_is_named_and_touches_nothing(tmp_path, monkeypatch):
    """A worker without PyTorch that joined mid-run (the start-up probe had not seen it) had failed a CNN subject "the
    CNN methods need PyTorch, which is not installed", naming no worker: the guard refuses there as for another build
    (the subject is sent again to the other workers) and the row names the worker in the probe's words."""
    import pickle
    import sys

    items, out = cohort_of(tmp_path, ("01",))
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch fails
    res = tasks._guard()(pickle.dumps((items[0], batch.Settings(method="cubic"), str(out), None)), build(), True)
    assert res["other_worker"] == "this process" and res["no_torch"].startswith("ModuleNotFoundError"), res
    assert list(out.iterdir()) == []
    reason = tasks.refused_by_other_worker(items[0], res, build())["reason"]
    assert reason.startswith("worker this process cannot import PyTorch, which the CNN methods need (ModuleNotFoundError"), reason


def test_a_subject_a_worker_of_another_build_refused_runs_on_a_good_worker(tmp_path, monkeypatch):
    """On a cluster whose worker 0 is of another build: its subjects are sent again to the other worker, and every
    output names this build; with no good worker left within --wait-workers, each fails with the refusal's reason."""
    from distributed import Client, LocalCluster, get_worker

    from ImageQualityTransferLib.fileio import model_files

    real, odd = subject.build, {0}

    def worker_build():
        try:
            return OTHER if get_worker().name in odd else real()
        except ValueError:  # the client's thread
            return real()

    monkeypatch.setattr(subject, "build", worker_build)
    monkeypatch.setattr(model_files, "build", worker_build)
    items, out = cohort_of(tmp_path, ("01", "02", "03"))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        rows = batch.run_cohort(items, batch.Settings(method="cubic"), out, client=client, progress=False)
        assert [r["status"] for r in rows] == ["done"] * 3, [r["reason"] for r in rows]
        assert {tensor_sidecar(out, sub)["SoftwareBuild"] for sub in ("01", "02", "03")} == {real()}
        odd.add(1)  # none of this build left: each waits --wait-workers for one, then fails
        rows = batch.run_cohort(items, batch.Settings(method="linear"), out, client=client, progress=False,
                                wait_workers=1)
    assert [r["status"] for r in rows] == ["failed"] * 3
    assert all("(worker 0/inproc://" in r["reason"] or "(worker 1/inproc://" in r["reason"] for r in rows), rows[0]["reason"]
    assert not list(out.rglob("*model-linear*"))


def _worker_zero_of_another_build(monkeypatch):
    """The in-process cluster's worker named 0 reports another build (OTHER), the rest and the client this one's;
    returns this build's function."""
    from distributed import get_worker

    from ImageQualityTransferLib.fileio import model_files

    real = subject.build

    def worker_build():
        try:
            return OTHER if get_worker().name == 0 else real()
        except ValueError:  # the client's thread
            return real()

    monkeypatch.setattr(subject, "build", worker_build)
    monkeypatch.setattr(model_files, "build", worker_build)
    return real


def test_a_refused_subject_runs_on_a_good_worker_that_joined_after_the_one_it_was_sent_to_left(tmp_path, monkeypatch):
    """A subject refused by a worker of another build is sent again at once, to the workers of this build there then,
    and again where those all left: sent pinned to a good worker that then left (restarted at a new address), it had
    waited in Dask's no-worker state forever while another good worker idled, and --wait-workers never fired (the
    worker of another build counted as one)."""
    import threading

    from distributed import Client, Future, LocalCluster

    real = _worker_zero_of_another_build(monkeypatch)
    items, out = cohort_of(tmp_path, ("01",))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        submit, left = client.submit, []

        def leaving_submit(*a, **k):  # the good worker leaves and another joins as the subject is sent again
            if k.get("workers") and not left:
                left.extend(k["workers"])
                client.retire_workers(k["workers"], close_workers=True)
                cluster.scale(len(cluster.worker_spec) + 1)
                client.wait_for_workers(2, timeout=10)
            return submit(*a, **k)

        client.wait_for_workers(2, timeout=10)
        monkeypatch.setattr(client, "submit", leaving_submit)
        # the old code waited forever: its futures cancelled after 8 s end the run
        watchdog = threading.Timer(8, lambda: client.cancel([Future(k, client) for k in list(client.futures)]))
        watchdog.start()
        try:
            rows = batch.run_cohort(items, batch.Settings(method="nearest"), out, client=client, progress=False)
        finally:
            watchdog.cancel()
    assert left and [r["status"] for r in rows] == ["done"], [r.get("reason") for r in rows]
    assert tensor_sidecar(out, "01", "nearest")["SoftwareBuild"] == real()


def test_a_refused_subject_is_sent_again_pinned_to_this_builds_workers_even_while_they_are_busy(tmp_path, monkeypatch):
    """The re-send of a subject a worker of another build refused is pinned to this build's workers there then
    (tasks._run_items resend): sent loose or unrestricted, the idle worker of another build took it again and refused
    it until its tries were spent, while this build's worker was busy with other work."""
    from distributed import Client, LocalCluster

    real = _worker_zero_of_another_build(monkeypatch)
    items, out = cohort_of(tmp_path, ("01",))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(2, timeout=10)
        good = next(a for a, w in client.scheduler_info()["workers"].items() if w["name"] == 1)
        busy = client.submit(time.sleep, 1.0, workers=[good], pure=False)  # this build's worker busy: the other idles
        while not client.processing()[good]:
            time.sleep(0.01)
        submit, resent = client.submit, []

        def noted_submit(*a, **k):
            if "-r" in k["key"]:  # a re-send (tasks._run_items resend's keys)
                resent.append((k.get("workers"), k.get("allow_other_workers")))
            return submit(*a, **k)

        monkeypatch.setattr(client, "submit", noted_submit)
        rows = batch.run_cohort(items, batch.Settings(method="nearest"), out, client=client, progress=False)
        busy.result()
    assert [r["status"] for r in rows] == ["done"], [r.get("reason") for r in rows]
    # not loose either: Dask's work stealing may move a loosely restricted task to the idle worker
    assert resent == [([good], False)], resent
    assert tensor_sidecar(out, "01", "nearest")["SoftwareBuild"] == real()


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE])
def test_too_many_open_files_while_the_table_is_written_is_said_so(tmp_path, monkeypatch, capsys, code):
    """`iqt batch --workers 2` under ulimit -n 40 had ended "iqt: error: .../dmri/motion.py: the QC table cannot be
    written (Too many open files); make room for it" (a review): the EMFILE's file was an import's, taken for the
    table's. Now the line names the limit and what to do, exit 2 as before."""
    import resource

    from ImageQualityTransferLib.apps.cli import main

    out = helpers.tensor_list(tmp_path)
    source = str(Path(cohort.__file__).parents[2] / "dmri" / "motion.py")

    def write_qc(*a, **k):
        raise OSError(code, "Too many open files", source)
    monkeypatch.setattr(cohort, "write_qc", write_qc)
    monkeypatch.setattr(subject, "qc_figure", lambda vols, s, item, path, estimated=False: path.write_bytes(b""))  # 0.6 s
    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit", lambda which: (40, 4096) if which == resource.RLIMIT_NOFILE
                        else real(which))  # twice it is said; --workers 1: not "run fewer --workers"
    from ImageQualityTransferLib.apps.cli import batch as batch_command

    monkeypatch.setattr(batch_command, "check_open_files", lambda workers: None)  # the limit is faked for the line only
    helpers.batch_runs_in_process(monkeypatch, batch)  # the table is written by run_cohort, here as on a cluster
    assert main(["batch", str(tmp_path / "list.txt"), "-o", str(out), "--method", "nearest", "--workers", "1"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("iqt: warning: ")]
    assert len(err) == 1 and "motion.py" not in err[0] and "make room" not in err[0], err
    if code == errno.EMFILE:
        assert err[0] == ("iqt: error: too many open files: this process met its limit on open files (ulimit -n "
                          "40); raise it (e.g. ulimit -n 80), then rerun: the subjects "
                          "done are skipped"), err
    else:
        assert err[0].startswith("iqt: error: too many open files on this system: its table of open files is full"), err


def test_a_worker_outliving_a_run_reads_the_registry_again_at_the_next_start(tmp_path, monkeypatch):
    """A `dask worker` serving two runs had kept its first build after another process registered a model, and the
    second run was refused ("other code or models"): the start-up probe reads the registry again, as `iqt batch`
    does at its start (core/version.py forget_build)."""
    from ImageQualityTransferLib.core.version import build_digest, forget_build
    from ImageQualityTransferLib.fileio import paths

    monkeypatch.setattr(paths, "MODELS_DIR", tmp_path)
    reg = tmp_path / "registry.json"
    reg.write_text("{}")
    try:
        first = scheduler._probe()()[1]
        reg.write_text('{"models": {}}')  # another process's registration between the runs
        second = scheduler._probe()()[1]
        assert second != first
        forget_build()
        assert second == build_digest(str(reg))
    finally:
        monkeypatch.undo()
        forget_build()


def test_a_subject_runs_the_model_its_run_recorded_after_another_is_registered(tmp_path, monkeypatch):
    """A model registered for the run's method and factor after the run recorded its model (a worker that had not yet
    loaded one looks the shipped model up in the registry as it is then): its subjects had been computed with the new
    model and stamped with the first one's SHA256. Each runs the recorded file, verified by its SHA256, or fails."""
    import nibabel as nib
    import numpy as np

    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.fileio import model_files
    from ImageQualityTransferLib.methods.forest import model_io

    out = helpers.tensor_list(tmp_path)  # one small tensor file: no fit
    items = batch.find_items(tmp_path / "list.txt")
    file_a, sha_a = batch.model_record(methods.get("global-linear"), 2)
    s = batch.Settings(method="global-linear", model_file=file_a, model_sha256=sha_a)
    a = model_io.load(file_a)
    b = model_io.load(file_a)  # model B: A's linear map changed, put where the registry now points
    b.gl_W = (b.gl_W * 1.5 + 1e-4).astype(b.gl_W.dtype)
    side_b = model_io.save(b, tmp_path / "global-linear_x2_b.npz")
    real = model_files.shipped
    monkeypatch.setattr(model_files, "shipped", lambda m, f, *a, **k: side_b if m == "global-linear" else real(m, f, *a, **k))
    monkeypatch.setattr(subject, "_METHODS", {})  # a worker that had not loaded the model yet
    rows = batch.run_cohort(items, s, out, progress=False)
    assert rows[0]["status"] == "done", rows[0]["reason"]
    side = json.loads(next(out.rglob("*_param-tensor_dwimap.json")).read_text())
    assert side["ModelSHA256"] == sha_a
    (ran,) = [m for k, m in subject._METHODS.items() if k[0] == "global-linear"]  # the model the subject ran: A's
    assert np.array_equal(ran.load(2).gl_W, a.gl_W) and not np.array_equal(ran.load(2).gl_W, b.gl_W)
    got = nib.load(next(out.rglob("*_param-tensor_dwimap.nii.gz")))
    assert b"global-linear_x2_b" not in got.header["descrip"].tobytes()
    # the recorded file changed since (its SHA256 is not the run's): the subject fails in one line
    monkeypatch.setattr(subject, "_METHODS", {})
    with pytest.raises(batch.IQTError, match="changed since the run started") as err:
        subject._method(batch.Settings(method="global-linear", model_file=file_a, model_sha256="0" * 64))
    assert "\n" not in str(err.value)


def test_a_worker_installed_at_another_path_runs_its_own_copy_of_the_recorded_model(tmp_path, monkeypatch):
    """A cluster's worker of the same build installed elsewhere, where the client's model path does not exist: every
    subject had failed 'the model file ... is gone or changed since the run started; rerun the same command', which no
    rerun fixes. The worker's own registry entry serves where its SHA256 is the run's; where it is another, one line
    says the model is not at that path on that worker and what to do."""
    from ImageQualityTransferLib import methods

    out = helpers.tensor_list(tmp_path)
    items = batch.find_items(tmp_path / "list.txt")
    file_a, sha_a = batch.model_record(methods.get("global-linear"), 2)
    client_path = str(tmp_path / "client-install" / Path(file_a).name)  # the client's install: not on this worker
    monkeypatch.setattr(subject, "_METHODS", {})
    s = batch.Settings(method="global-linear", model_file=client_path, model_sha256=sha_a)
    row = batch.run_cohort(items, s, out, progress=False)[0]
    assert row["status"] == "done", row["reason"]
    side = json.loads(next(out.rglob("*_param-tensor_dwimap.json")).read_text())
    assert side["ModelSHA256"] == sha_a
    # the worker's own model is another: refused in one line naming the path, the worker and the fix
    for bad, fix in ((batch.Settings(method="global-linear", model_file=client_path, model_sha256="0" * 64),
                      "install the same build's models on every worker"),
                     (batch.Settings(method="global-linear", model=client_path, model_file=client_path,
                                     model_sha256=sha_a), "pass --model with a path every worker sees")):
        monkeypatch.setattr(subject, "_METHODS", {})
        with pytest.raises(batch.IQTError) as err:
            subject._method(bad)
        said = str(err.value)
        assert f"the model file {client_path} is not at that path on the worker" in said and fix in said, said
        assert "\n" not in said and "gone or changed" not in said
