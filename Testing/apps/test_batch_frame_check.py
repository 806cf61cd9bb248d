"""`iqt batch` runs `iqt upsample`'s frame check (methods/inputs.py check_frame) on each tensor file read in another
tool's order (--tensor-order fsl, mrtrix, dipy, on the command line or the subject's list line): a dtifit file with
mirrored directions had run without a word in batch while upsample warned of it (a cohort audit). The warning is one
of the subject's notes; qc.tsv's bvec_check names the correction (orange on the page), ok, or n/a where nothing is
judged; --no-frame-check skips it. In-process on the ring phantom of test_frame_check.py (the cluster's path is
`process` too: test_batch.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib import fileio  # noqa: E402
from ImageQualityTransferLib.apps import batch, cli  # noqa: E402
from ImageQualityTransferLib.methods.inputs import FRAME_MIN_EXTENT  # noqa: E402

import helpers  # noqa: E402
from helpers import ring_of_fibres  # noqa: E402


def _qc(out) -> dict:
    lines = (out / "qc.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    return {row[0]: dict(zip(head, row)) for row in (line.split("\t") for line in lines[1:])}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A list of dtifit-order files: good/ as fitted, bad/ with x negated, slab/ mirrored but thinner than check_frame
    judges, own/ mirrored in a 5D file iqt did not upsample (checked, as upsample checks it: a dipy_fit_dti file on an
    LAS grid needs no --tensor-order); the derivatives folder."""
    root = tmp_path_factory.mktemp("frames")
    for name, mirrored, slices, order in (("good", False, 16, "fsl"), ("bad", True, 16, "fsl"),
                                          ("slab", True, FRAME_MIN_EXTENT - 1, "fsl"), ("own", True, 16, "nifti")):
        (root / name).mkdir()
        fileio.save_tensor(ring_of_fibres(mirrored, slices), root / name / "dti.nii.gz", order=order)
    (root / "list.txt").write_text("good/dti.nii.gz --tensor-order fsl\nbad/dti.nii.gz --tensor-order fsl\n"
                                   "slab/dti.nii.gz --tensor-order fsl\nown/dti.nii.gz\n")
    return root


@pytest.mark.slow  # four subjects in-process: 1-4 s
def test_a_mirrored_dtifit_file_is_said_and_recorded_per_subject(cohort, tmp_path):
    out = tmp_path / "deriv"
    out.mkdir()
    res = {r["subject"]: r for r in batch.run_cohort(batch.find_items(cohort / "list.txt"),
                                                      batch.Settings(method="linear"), out, progress=False)}
    assert [r["status"] for r in res.values()] == ["done"] * 4, res
    said = {k: [n for n in r["notes"] if "look mirrored" in n] for k, r in res.items()}
    assert said["sub-good"] == said["sub-slab"] == [] and len(said["sub-bad"]) == len(said["sub-own"]) == 1, said
    notes = res["sub-bad"]["notes"]  # the warning said over notes of whole pieces (methods/base.py warning_lines)
    whole = "; ".join(notes[notes.index(said["sub-bad"][0]):])
    assert "x components look negated" in whole and "with --tensor-order fsl" in whole
    assert "iqt batch --no-frame-check skips this check" in whole
    table = _qc(out)
    assert {k: table[k]["bvec_check"] for k in table} == {"sub-good": "ok", "sub-bad": "x-flipped",
                                                           "sub-slab": "n/a", "sub-own": "x-flipped"}
    assert "look mirrored" in table["sub-bad"]["notes"]
    assert '<tr class="check">' in (out / "qc.html").read_text()  # the failed check's orange row
    # rerun with --no-frame-check: the skipped subjects' stored frame warnings are not said again (they had been); the
    # rows keep the verdicts their sidecars record
    quiet = batch.run_cohort(batch.find_items(cohort / "list.txt"), batch.Settings(method="linear", frame_check=False),
                             out, progress=False)
    assert [r["status"] for r in quiet] == ["skipped"] * 4, quiet
    assert not [n for r in quiet for n in r["notes"] if "look mirrored" in n], quiet
    assert {k: v["bvec_check"] for k, v in _qc(out).items()}["sub-bad"] == "x-flipped"


def test_no_frame_check_skips_it_and_reaches_the_settings(cohort, tmp_path, monkeypatch):
    out = tmp_path / "deriv"
    out.mkdir()
    items = [it for it in batch.find_items(cohort / "list.txt") if it.prefix == "sub-bad"]
    res = batch.run_cohort(items, batch.Settings(method="linear", frame_check=False), out, progress=False)
    assert res[0]["status"] == "done" and res[0]["qc"]["bvec_check"] == "not checked"
    assert not [n for n in res[0]["notes"] if "look mirrored" in n]
    # a later run without the option checks it on its input, without redoing it (it had stayed "not checked" for good)
    (again,) = batch.run_cohort(items, batch.Settings(method="linear"), out, progress=False)
    assert again["status"] == "skipped" and again["qc"]["bvec_check"] == "x-flipped", again
    assert [n for n in again["notes"] if "look mirrored" in n] and _qc(out)["sub-bad"]["bvec_check"] == "x-flipped"
    seen = helpers.settings_batch_runs_with(monkeypatch, batch)
    for extra in ((), ("--no-frame-check",)):
        assert cli.main(["batch", str(cohort / "list.txt"), "-o", str(tmp_path / "o"), "--method", "linear", *extra]) == 0
    assert [s.frame_check for s in seen] == [True, False]


def test_a_5d_file_refusing_the_command_line_s_order_says_how_to_keep_it_for_the_others(tmp_path):
    """A 5D file in a list run with --tensor-order fsl for its dtifit files was refused "leave it out", which would
    have refused every dtifit file (a cohort audit); the reason now names the line's own order (dipy for
    dipy_fit_dti's file, nifti for this tool's: the one here runs with it)."""
    out = helpers.tensor_list(tmp_path, "a_dti.nii.gz", shape=(10, 12, 8))  # this tool's 5D file
    fsl = batch.Settings(method="nearest", tensor_order="fsl", order_stated=True)
    res = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), fsl, out, progress=False)
    assert res[0]["status"] == "failed" and "leave it out" in res[0]["reason"], res
    # a dipy_fit_dti file read as nifti runs with every fibre mirrored and no check (a review): both orders named
    assert res[0]["reason"].endswith("end this subject's line with its own order: --tensor-order dipy for "
                                     "dipy_fit_dti's file, nifti for a file iqt or ANTs wrote"), res[0]["reason"]
    (tmp_path / "list.txt").write_text("a_dti.nii.gz --tensor-order nifti\n")
    res = batch.run_cohort(batch.find_items(tmp_path / "list.txt"), fsl, out, progress=False)
    assert res[0]["status"] == "done", res


def test_no_frame_check_on_a_skipped_subject_drops_every_line_of_its_frame_warning_and_no_other_note(monkeypatch):
    """The frame warning is stored as several notes (methods/base.py warning_lines): a rerun with --no-frame-check drops
    each of them, from its opening to its end, and keeps the subject's notes before and after it (only its last note
    had been dropped, which a test asking for the opening's words alone would not see)."""
    import warnings

    from ImageQualityTransferLib.apps.batch import subject
    from ImageQualityTransferLib.methods import inputs
    from ImageQualityTransferLib.methods.base import warning_lines

    monkeypatch.setattr(inputs, "FRAME_SEEDS", 200)  # the ring's verdict in a fifth of the time (test_frame_check.py)
    ring = helpers.ring_of_fibres(True)
    ring = ring.replace(meta={**ring.meta, "path": "bad/dti.nii.gz"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inputs.check_frame(ring, "fsl")
    [said] = [str(w.message) for w in caught]
    frame = warning_lines(subject._in_batch_words(said))  # as run_subject stores it
    assert len(frame) > 2 and frame[-1].endswith(subject.FRAME_NOTE_END), frame
    before, after = "bad/dti.nii.gz: a note said before it", "bad/dti.nii.gz: a note said after it"
    for notes, kept in (([before, *frame, after], [before, after]), ([*frame], []),
                        ([before, subject._in_batch_words(said)], [before]),  # an earlier build's one note
                        ([before, after], [before, after])):
        _, left = subject._frame_on_skip(None, batch.Settings(method="linear", frame_check=False), {}, notes)
        assert left == kept, left
