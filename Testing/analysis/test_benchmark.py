"""`iqt benchmark` over input styles: rows per subject, style and method, ratios to cubic on the same input, and the
summary over subjects; the non-physical-output figure of the evaluation."""

import json
import warnings

import numpy as np

from ImageQualityTransferLib.analysis import benchmark, evaluation


def test_benchmark_scores_each_style_against_cubic_on_the_same_input(small_subject, capsys):
    from ImageQualityTransferLib.apps.cli import main

    rows = benchmark.run([small_subject], ["linear"], styles=("own", "tight"), progress=False)
    assert [(r["style"], r["method"]) for r in rows] == [("own", "cubic"), ("own", "linear"),
                                                         ("tight", "cubic"), ("tight", "linear")]
    for r in rows:
        if r["method"] == "cubic":
            assert r["interior"]["ratio_to_cubic"] == 1.0
        else:
            cubic = next(c for c in rows if c["method"] == "cubic" and c["style"] == r["style"])
            assert np.isclose(r["interior"]["ratio_to_cubic"], r["interior"]["dt_rmse"] / cubic["interior"]["dt_rmse"])
    table = benchmark.summary_table(rows)
    assert "| linear | own | 1 |" in table and "| linear | tight | 1 |" in table
    # a row run with a method's model for noisy inputs says so in both tables
    marked = [dict(r, model_for="noisy") if r["method"] == "linear" and r["style"] == "tight" else r for r in rows]
    assert "| linear (1 with the noisy-input model) | tight | 1 |" in benchmark.summary_table(marked)
    assert benchmark.markdown_table(marked).count("linear (noisy-input model)") == 1
    # a subject the method's model was trained on is left out of its summary row and counted (it had set the range)
    trained = [dict(r, trained_on_subject=True) if r["method"] == "linear" and r["style"] == "tight" else r for r in rows]
    assert "| linear (without 1 it was trained on) | tight | 0 | – | – |" in benchmark.summary_table(trained)
    assert main(["benchmark", str(small_subject), "--methods", "linear", "--styles", "own,tight"]) == 0
    out = capsys.readouterr().out
    assert "| linear | tight | 1 |" in out and "[tight]" in out


def test_benchmark_warnings_name_the_input_once(small_subject):
    """Several subjects and styles run in a row: each engine warning names the input it is about, once per input
    (cubic and linear both estimate the brain of unmasked tensors run without a mask; one line says so)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        benchmark.run([small_subject], ["linear"], styles=("unmasked", "tight"), mask=False, progress=False)
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and said[0].startswith(f"{small_subject.name} (unmasked): the input holds tensors over "
                                                 "the whole field of view"), said


def test_benchmark_keeps_the_warnings_of_an_input_that_fails_and_other_warnings_once(small_subject, monkeypatch):
    """An input that fails still shows what the engine warned about it; another library's warning shows once per run."""
    import pytest

    from ImageQualityTransferLib.core.errors import IQTError, IQTWarning
    from ImageQualityTransferLib.methods import interpolation

    calls = []

    def warns_then_fails(self, lr, r, mask, progress):
        calls.append(1)
        warnings.warn("something about this input", IQTWarning)
        warnings.warn("a library's remark", RuntimeWarning)
        if len(calls) == 2:
            raise IQTError("linear gave non-finite values on this input")
        return interpolation.upsample_separable(lr, r, 1), {}

    monkeypatch.setattr(interpolation.Linear, "_predict", warns_then_fails)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(IQTError, match="non-finite"):
            benchmark.run([small_subject], ["linear"], styles=("own", "tight"), progress=False)
    said = [(w.category, str(w.message)) for w in caught]
    name = small_subject.name
    assert said.count((IQTWarning, f"{name} (own): something about this input")) == 1, said
    assert said.count((IQTWarning, f"{name} (tight): something about this input")) == 1, said
    assert said.count((RuntimeWarning, "a library's remark")) == 1, said


def test_benchmark_at_per_axis_factors(small_subject, capsys, tmp_path):
    """Thick slices (1,1,3): the ready methods are the interpolations and the learned ones with a model for those
    factors (or a reordering of them), and each is scored on the (1,1,3) grid."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.apps.cli import main

    ready = methods.ready((1, 1, 3))
    assert "cubic" in ready
    assert {n for n in ready if methods.method_class(n).learned} == {
        n for n in methods.trainable() if methods.runs_here(n) and methods.serves(methods.shipped_factors(n), (1, 1, 3))}
    assert methods.ready((1, 1, 3)) == methods.ready((3, 1, 1))  # one through-plane model serves any slice axis
    rows = benchmark.run([small_subject], ["nearest"], (1, 1, 3), progress=False)
    assert [r["method"] for r in rows] == ["cubic", "nearest"]
    assert all(r["interior"]["n_voxels"] > 0 for r in rows)
    assert rows[1]["interior"]["dt_rmse"] > rows[0]["interior"]["dt_rmse"]  # cubic beats nearest along z
    assert main(["benchmark", str(small_subject), "--methods", "nearest", "--factor", "1,1,3", "--json",
                 str(tmp_path / "b.json")]) == 0
    assert "| nearest |" in capsys.readouterr().out
    # the JSON says what ran and in which units, beside the rows
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["settings"]["factor"] == [1, 1, 3] and doc["settings"]["methods"] == ["nearest"]
    assert doc["settings"]["styles"] == ["own"] and doc["settings"]["mask"] is True and doc["version"]
    assert doc["settings"]["command"].startswith("iqt benchmark ") and "--factor 1,1,3" in doc["settings"]["command"]
    assert doc["units"]["dt_rmse"] == "1e-5 mm^2/s" and [r["method"] for r in doc["rows"]] == ["cubic", "nearest"]
    keys = set()
    for row in doc["rows"]:
        keys |= {k for k, v in row.items() if not isinstance(v, (dict, str))}
        keys |= {k for v in row.values() if isinstance(v, dict) for k in v}
    assert keys <= set(doc["units"]), keys - set(doc["units"])  # every figure has its unit or meaning
    assert doc["settings"]["models"] == {}  # interpolations only
    learned = benchmark.document([], methods=["rf"], factor=(1, 1, 3))["settings"]["models"]["rf"]
    assert learned["file"].endswith("rf_x1x1x3.json") and len(learned["weights_sha256"]) == 64


def test_every_figure_of_a_method_with_uncertainty_has_its_unit():
    """The benchmark JSON's units cover every figure `evaluate` gives with uncertainty and direction maps too (the test
    above runs interpolation only)."""
    from ImageQualityTransferLib.analysis import evaluation

    rng = np.random.default_rng(0)
    lr = np.zeros((8, 8, 8), bool)
    lr[1:7, 1:7, 1:7] = True
    hr = lr.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    truth = np.where(hr[..., None], np.array([1.5e-3, 0, 0.4e-3, 0, 0, 0.4e-3]), 0.0)
    pred = truth + rng.normal(0, 1e-5, truth.shape) * hr[..., None]
    res = evaluation.evaluate(pred, truth, hr, lr, 2, uncertainty=np.full(hr.shape, 1e-5),
                              direction=np.full(hr.shape, 5.0))
    keys = {k for row in res.values() for k in row}
    assert keys <= set(benchmark.UNITS), keys - set(benchmark.UNITS)


def test_nonphysical_outputs_are_counted_and_checked_against_the_edge_uncertainty():
    pred = np.zeros((4, 4, 4, 6))
    pred[...] = [1e-3, 0, 1e-3, 0, 0, 1e-3]
    pred[0, 0, 0] = [1e-3, 0, 1e-3, 0, 0, -3e-4]
    pred[1, 0, 0] = [1e-3, 0, 1e-3, 0, 0, -1e-4]
    u = np.full((4, 4, 4), 1e-4)
    u[0, 0, 0] = 2e-4
    u[1, 0, 0] = 5e-5
    edge = np.zeros((4, 4, 4), bool)
    edge[3] = True
    got = evaluation.nonphysical_flagged(pred, u, edge, np.ones((4, 4, 4), bool))
    assert got == {"n_nonphysical": 2, "nonphysical_flagged": 0.5}


def test_speed_times_each_method_end_to_end_and_with_tta_beside_it():
    from ImageQualityTransferLib.analysis import benchmark

    rows = benchmark.speed(["cubic", "global-linear"], shape=(12, 14, 10), tta=True)
    assert [r["method"] for r in rows] == ["cubic", "global-linear", "global-linear+tta", "(start-up + import only)"]
    assert all(r["seconds"] > 0 and r["shape"] == [12, 14, 10] for r in rows)
    assert "| global-linear+tta | 12×14×10 |" in benchmark.speed_table(rows)


def test_speed_runs_the_timed_upsample_under_the_threads_cap(monkeypatch):
    """`iqt --threads 1 benchmark --speed` had timed child processes that used every core (an audit of time and
    memory): the cap goes to each timed `iqt upsample`."""
    from ImageQualityTransferLib.core import threads

    seen = []
    monkeypatch.setattr(benchmark, "_timed", lambda cmd: (seen.append(cmd), (0.5, 0, "", 100.0))[1])
    monkeypatch.setattr(benchmark.subprocess, "run", lambda *a, **k: None)  # the start-up reference
    monkeypatch.setattr(threads, "_LIMIT", 1)
    benchmark.speed(["cubic"], shape=(8, 8, 8))
    assert seen and seen[0][3:6] == ["--threads", "1", "upsample"], seen
    monkeypatch.setattr(threads, "_LIMIT", None)
    benchmark.speed(["cubic"], shape=(8, 8, 8))
    assert seen[1][3] == "upsample" and "--threads" not in seen[1], seen


def test_speed_refuses_the_options_it_does_not_take(tmp_path, capsys, monkeypatch):
    """--speed had ignored --factor, --snr, --styles, --no-mask, --tracts and subject folders without a word, its JSON
    recording a factor it did not use; refused before any work, as --model is."""
    from ImageQualityTransferLib.apps.cli import main

    def no_speed(*a, **k):
        raise AssertionError("the speed run started")

    monkeypatch.setattr(benchmark, "speed", no_speed)
    (tmp_path / "subj").mkdir()
    for extra, named in ((["--factor", "3", "--snr", "10", "--styles", "tight", "--no-mask", "--tracts"],
                          "--factor 3, --snr 10, --styles tight, --no-mask, --tracts with --speed"),
                         ([str(tmp_path / "subj")], "subject folders with --speed"),
                         (["--snr", "20", "--seed", "4"], "--snr 20, --seed 4 with --speed")):
        code = main(["benchmark", "--speed", "--methods", "nearest", "--json", str(tmp_path / "sp.json"), *extra])
        out, err = capsys.readouterr()
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"iqt: error: {named}: the speed run times 'iqt upsample' at factor 2"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["subj"]


def test_a_learned_methods_row_gives_the_noise_index_it_chose_its_model_by(axial_subject):
    """Run without the mask, a learned method reads the noise index over the brain it estimates from the tensors; its
    row reports that figure (the one its model was chosen by), not the input's over the brain mask, which the 3 mm
    scan at ×3 (9 mm voxels) holds too little brain to read."""
    from ImageQualityTransferLib.dmri.subject import make_case

    case = make_case(axial_subject, 3, style="unmasked", snr=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = {r["method"]: r for r in benchmark.score_case(case, ["cubic", "global-linear"], mask=False)}
    assert rows["cubic"]["noise_index"] is None  # the brain mask eroded by two voxels: under 500 voxels
    learned = rows["global-linear"]
    assert learned["model_for"] == "noisy" and learned["noise_index"] > 0.075, learned["noise_index"]


def test_benchmark_scores_a_model_of_ones_own(small_subject, capsys, tmp_path):
    """--model METHOD=PATH scores that model in place of the shipped one, and the JSON names it (a
    researcher could not benchmark a model of their own); a wrong form or a method without models is one line."""
    import shutil
    from pathlib import Path

    from ImageQualityTransferLib.apps import cli
    from ImageQualityTransferLib.fileio import model_files

    for suffix in (".npz", ".json"):
        shutil.copy(Path(model_files.MODELS_DIR) / f"global-linear_x2{suffix}", tmp_path / f"mine{suffix}")
    side = json.loads((tmp_path / "mine.json").read_text())
    side["weights"] = "mine.npz"
    (tmp_path / "mine.json").write_text(json.dumps(side))
    args = ["benchmark", str(small_subject), "--methods", "cubic", "--json", str(tmp_path / "b.json")]
    assert cli.main(args + ["--model", f"global-linear={tmp_path / 'mine.npz'}"]) == 0
    doc = json.loads((tmp_path / "b.json").read_text())
    assert {r["method"] for r in doc["rows"]} == {"cubic", "global-linear"}
    assert doc["settings"]["models"]["global-linear"]["file"] == str(tmp_path / "mine.json")
    capsys.readouterr()
    for bad, words in (("global-linear", "give the method and its model file"), ("cubic=x.npz", "not a learned method"),
                       (f"rf={tmp_path / 'mine.npz'}", f"give it as --model global-linear={tmp_path / 'mine.npz'}"),
                       ("rf=C:\\models\\rf.npz", "model file not found")):  # a Windows path
        assert cli.main(args + ["--model", bad]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
    # the model's sidecar is an input of the run: --json onto it is refused, the model left as it was
    before = (tmp_path / "mine.json").read_bytes()
    assert cli.main(["benchmark", str(small_subject), "--methods", "cubic", "--json", str(tmp_path / "mine.json"),
                     "--model", f"global-linear={tmp_path / 'mine.npz'}"]) == 2
    err = capsys.readouterr().err
    assert "is an input of this run" in err and err.count("\n") == 1, err
    assert (tmp_path / "mine.json").read_bytes() == before


def test_a_model_from_before_sealed_sidecars_is_said_once(small_subject, capsys, tmp_path):
    """An unsealed sidecar (written before sidecars were sealed) was warned about at the model check and again for each
    subject; once per sidecar now."""
    import shutil
    from pathlib import Path

    from ImageQualityTransferLib.apps import cli
    from ImageQualityTransferLib.fileio import model_files

    for suffix in (".npz", ".json"):
        shutil.copy(Path(model_files.MODELS_DIR) / f"global-linear_x2{suffix}", tmp_path / f"old{suffix}")
    side = json.loads((tmp_path / "old.json").read_text())
    del side[model_files.SEAL]
    (tmp_path / "old.json").write_text(json.dumps({**side, "weights": "old.npz"}))
    assert cli.main(["benchmark", str(small_subject), "--methods", "cubic", "--model",
                     f"global-linear={tmp_path / 'old.npz'}"]) == 0
    err = capsys.readouterr().err
    assert err.count("cannot be verified") == 1, err


def test_a_subject_the_model_was_trained_on_is_said_once(small_subject, tmp_path, capsys):
    """A model whose sidecar lists the scored subject among its training subjects was scored on it with no
    word (interior 0.952 against 0.958 without it). Now one warning line names the subject and says that its figure
    is optimistic, and the JSON rows say so; a model not trained on it, nothing."""
    from pathlib import Path

    from ImageQualityTransferLib.apps import cli
    from ImageQualityTransferLib.fileio import checksums, model_files

    src = Path(model_files.MODELS_DIR) / "global-linear_x2"
    for name, subjects in (("seen", [small_subject.name, "other"]), ("unseen", ["other"])):
        with np.load(src.with_suffix(".npz"), allow_pickle=False) as z:  # saved again: not the shipped model's bytes,
            np.savez(tmp_path / f"{name}.npz", **{k: z[k] for k in z.files})  # whose settings cannot be edited
        side = json.loads(src.with_suffix(".json").read_text())
        side.pop(model_files.SEAL)
        side["weights"] = f"{name}.npz"
        side["sha256"] = checksums.sha256(tmp_path / f"{name}.npz")
        side["training"]["subjects"] = subjects
        model_files.write_sidecar(tmp_path / f"{name}.json", side)
    for name in ("seen", "unseen"):
        assert cli.main(["benchmark", str(small_subject), "--methods", "cubic", "--model",
                         f"global-linear={tmp_path / f'{name}.npz'}", "--json", str(tmp_path / f"{name}_rows.json")]) == 0
        said = capsys.readouterr()
        err = [line for line in said.err.splitlines() if "training subjects" in line]
        # the table names the method alone: a line above it says which model scored (a training audit)
        assert f"global-linear: scored with the model {tmp_path / f'{name}.npz'}, not the shipped one" in said.out
        rows = json.loads((tmp_path / f"{name}_rows.json").read_text())["rows"]
        flagged = [r["method"] for r in rows if r.get("trained_on_subject")]
        if name == "seen":
            assert len(err) == 1 and err[0].startswith(f"iqt: warning: {small_subject.name}: ") and "optimistic" in err[0] \
                and "seen.npz" in err[0], err
            assert flagged == ["global-linear"]
        else:
            assert err == [] and flagged == []
    # iqt report, the page most likely shared, says it too: on the terminal and on the page (a training audit)
    page = tmp_path / "r.html"
    assert cli.main(["report", "-o", str(page), "--subject", str(small_subject), "--methods", "global-linear",
                     "--model", f"global-linear={tmp_path / 'seen.npz'}", "--no-tracts"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "training subjects" in line]
    assert len(err) == 1 and "optimistic" in err[0] and "seen.npz" in err[0], err
    assert "global-linear figures are optimistic" in page.read_text()
    # and iqt demo --subject, with the shipped model, on a folder of a training subject's name (a review)
    import shutil

    named = tmp_path / "siemens_trio_2mm"
    shutil.copytree(small_subject, named)
    assert cli.main(["demo", "--subject", str(named), "--methods", "global-linear", "-o", str(tmp_path / "demo")]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "training subjects" in line]
    assert len(err) == 1 and "(global-linear_x2." in err[0], err
    assert (tmp_path / "demo" / "metrics.md").read_text().startswith("Warning: siemens_trio_2mm: a subject of this name")


def test_the_leakage_check_reads_sidecars_and_loads_no_model():
    """benchmark.trained_on loaded every learned model before the timed run, so torch's import and the
    load left the first subject's timing (espcn 1.58 s / 221 MB read 0.12 s / 42 MB). It reads the sidecars only."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.analysis import benchmark

    made = [methods.get(n) for n in ("cubic", "espcn", "biqt")]
    assert benchmark.trained_on("siemens_prisma_3mm_ortho", made, 2) == {}
    assert benchmark.trained_on("siemens_trio_2mm", made, 2).keys() == {"espcn", "biqt"}  # a training subject of both
    assert all(not getattr(m, "_loaded", None) for m in made)


def test_the_leakage_check_knows_a_scan_by_its_file_and_a_warm_start_by_its_subjects(tmp_path, capsys, monkeypatch):
    """A model trained on this very DWI under another folder name, or warm-started (--init) from one trained on a
    subject of this name, was scored without the warning (researcher audit, stop 57)."""

    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.analysis import benchmark
    from ImageQualityTransferLib.apps import cli
    from ImageQualityTransferLib.fileio.checksums import sha256

    import helpers

    first = tmp_path / "first"
    first.mkdir()
    helpers.save_phantom_dwi(first / "dwi.nii.gz", (32, 36, 28), 0)
    model = tmp_path / "gl.npz"
    assert cli.main(["train", "--method", "global-linear", "--subjects", str(first), "-o", str(model)]) == 0
    made = [methods.get("global-linear", model=str(model))]
    assert benchmark.trained_on("renamed", made, 2) == {}
    assert benchmark.trained_on("renamed", made, 2, sha256(first / "dwi.nii.gz")) == {"global-linear": "gl.npz"}
    # a subject of the same name whose DWI is another file (BIDS names repeat across sites: a training audit) is not
    # the training scan; the same name without a checksum to compare, or the same file, still is
    other = tmp_path / "other_site" / "first"
    other.mkdir(parents=True)
    helpers.save_phantom_dwi(other / "dwi.nii.gz", (32, 36, 28), 1)
    assert benchmark.trained_on("first", made, 2, sha256(other / "dwi.nii.gz"), other) == {}
    assert benchmark.trained_on("first", made, 2) == {"global-linear": "gl.npz"}
    assert benchmark.trained_on("first", made, 2, sha256(first / "dwi.nii.gz"), first) == {"global-linear": "gl.npz"}
    # the same scan stored uncompressed, under its name or another, is still that scan (a second review: its file's
    # checksum differs); so is one re-gzipped
    import gzip
    import shutil

    for where in ("plain/first", "plain/renamed"):
        (tmp_path / where).mkdir(parents=True)
        with gzip.open(first / "dwi.nii.gz", "rb") as src, open(tmp_path / where / "dwi.nii", "wb") as dst:
            shutil.copyfileobj(src, dst)
        d = tmp_path / where
        assert benchmark.trained_on(d.name, made, 2, sha256(d / "dwi.nii"), d) == {"global-linear": "gl.npz"}, where
    # a model trained before the decompressed bytes were recorded: another site's gzipped scan of that name is told
    # by its file, the same scan stored plain is taken for it (a third review)
    meta = json.loads(model.with_suffix(".json").read_text())
    for d in meta["training"]["data_sha256"]:
        d.pop("dwi_content_sha256")
    names, _, by_name = benchmark._training_names_and_files(meta)
    assert benchmark._another_scan(by_name["first"], "?", other, sha256(other / "dwi.nii.gz"))
    assert not benchmark._another_scan(by_name["first"], "?", tmp_path / "plain" / "first",
                                       sha256(tmp_path / "plain" / "first" / "dwi.nii"))
    assert not benchmark._another_scan(by_name["first"], "?", first, sha256(first / "dwi.nii.gz"))
    # and such a record needs no subject decompressed (the file pairs are compared)
    from ImageQualityTransferLib.fileio import checksums as mf

    model.with_suffix(".json").write_text(json.dumps(meta))
    read = []
    real = mf.content_sha256
    monkeypatch.setattr(mf, "content_sha256", lambda p: read.append(p) or real(p))
    old_made = [methods.get("global-linear", model=str(model))]
    assert benchmark.trained_on("first", old_made, 2, sha256(other / "dwi.nii.gz"), other) == {} and read == []
    # a name the --init model trained on (no checksum recorded here) is told by name, whatever this model's own
    # subject of that name holds (a second review: site A's sub-01 was dropped for site B's checksum)
    meta = json.loads(model.with_suffix(".json").read_text())
    meta["training"]["init"] = {"command": "iqt train --method global-linear --subjects /siteA/first -o a.npz"}
    names, _, by_name = benchmark._training_names_and_files(meta)
    assert "first" in names and "first" not in by_name
    warm = {"training": {"subjects": ["a"], "init": {"command": "iqt train --method espcn --subjects /x/b '/x/c d' -o m.pt"}}}
    assert benchmark._training_names_and_files(warm)[0] == {"a", "b", "c d"}
    capsys.readouterr()


def test_every_model_of_a_chain_of_warm_starts_is_told_trained_on_its_subjects():
    """A model warm-started from a model that was itself warm-started (its sidecar's training.init holds the base's own
    init record) has learnt from the first model's subjects too: only the nearest --init command's were read."""
    first = {"command": "iqt train --method espcn --subjects /x/first -o a.pt"}
    chain = {"training": {"subjects": ["a"], "init": {"command": "iqt train --method espcn --subjects /x/b --init a.pt "
                                                                 "-o b.pt", "init": first}}}
    assert benchmark._training_names_and_files(chain)[0] == {"a", "b", "first"}


def test_the_first_cnn_is_not_charged_torchs_start_up(monkeypatch):
    """torch's import went into the time of whichever CNN ran first (`iqt demo`'s table in the README: espcn 3.57 s,
    espcn-hetero 1.68 s; reordered, the other way): score_case starts torch before timing. A fake torch whose first
    start moves the timing clock (analysis/measure.py's perf_counter) on by 100 s, and two methods that start it as the
    CNNs do (methods/cnn require_torch); a real 0.6 s sleep against a 0.5 s bound had failed on a loaded machine."""
    import contextlib
    import time
    import types

    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.dmri.phantom import make_phantom
    from ImageQualityTransferLib.dmri.subject import Subject, make_case
    from ImageQualityTransferLib.methods import cnn

    from ImageQualityTransferLib.analysis import measure

    started = []
    fake = types.SimpleNamespace(no_grad=contextlib.nullcontext, zeros=lambda *shape: None,
                                 nn=types.SimpleNamespace(functional=types.SimpleNamespace(conv3d=lambda *a: None)))
    skipped = [0.0]  # seconds the first start "takes", on the clock the benchmark times with
    monkeypatch.setattr(measure, "time", types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + skipped[0]))

    def slow_first_start():
        if not started:
            started.append(True)
            skipped[0] += 100.0
        return fake

    monkeypatch.setattr(cnn, "require_torch", slow_first_start)

    class FakeCNN(methods.method_class("cubic")):
        requires_torch = True

        def predict(self, *args, **kwargs):
            cnn.require_torch()
            return super().predict(*args, **kwargs)

    case = make_case(Subject.from_dwi("p", make_phantom(shape=(16, 18, 14), voxel_mm=8.0, n_dirs=12)), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = benchmark.score_case(case, [FakeCNN(), FakeCNN()])
    assert started and [r["seconds"] < 50 for r in rows] == [True, True], [r["seconds"] for r in rows]
