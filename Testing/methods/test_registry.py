"""The registry: one list says what runs, what trains and what ships, and every learned method does all of it
(a tiny `fit` on a phantom subject, `save`, then `iqt upsample --model` with the file)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from ImageQualityTransferLib import IQTError, fileio, methods
from ImageQualityTransferLib.apps.cli import main


HAVE_TORCH = importlib.util.find_spec("torch") is not None
TINY = {  # settings small enough for seconds, per family
    ".pt": dict(epochs=1, iters_per_epoch=2, batch_size=2, patch=6, val_patches=2),
    ".npz": dict(n_trees=2, n_train=1500, n_val=500, min_leaf=200, max_depth=2, n_calibration=1500),
}


def test_learned_means_trainable_and_every_name_is_made_by_the_registry():
    assert set(methods.trainable()) == {n for n in methods.names() if methods.method_class(n).learned}
    for entry in methods.describe():
        cls = methods.method_class(entry["name"])
        assert cls.name == entry["name"] and methods.get(entry["name"]).name == entry["name"]
        assert entry["shipped"] == (methods.shipped_factors(cls.name) if cls.learned else [])
    # what runs without a model file: interpolation and the learned methods with a shipped model
    ready = methods.ready(2)
    assert {"cubic", "rf", "biqt"} <= set(ready) and "espcn-hetero-var2" not in ready
    assert methods.default_method() in ready


@pytest.fixture(scope="module")
def degraded_input(small_subject, tmp_path_factory):
    """`iqt degrade` of the phantom subject's DWI, once for every method's `iqt upsample` below (each only reads it)."""
    lr = tmp_path_factory.mktemp("degraded") / "lr.nii.gz"
    assert main(["degrade", str(small_subject / "dwi.nii.gz"), "-o", str(lr)]) == 0
    return lr


@pytest.fixture(scope="module")
def loaded_subject(small_subject):
    """small_subject loaded once (its DWI read and fitted) for every method's training below, its arrays read-only:
    a training that changed its subject would fail here. The folder itself is trained from in the first test below
    and by `iqt train` (test_forest.py)."""
    from ImageQualityTransferLib.dmri.subject import load_subject

    subject = load_subject(small_subject)
    for vol in (subject.dwi, subject.mask, subject.tensor):
        vol.data.flags.writeable = False
    return subject


@pytest.mark.slow
@pytest.mark.parametrize("name", methods.trainable())
def test_every_trainable_method_trains_saves_and_runs(name, small_subject, loaded_subject, degraded_input, tmp_path,
                                                      capsys):
    """Each trains from a folder (the first) or its loaded subject (the others: the folder is read as the first reads
    it), saves, and runs through `iqt upsample` with its model."""
    cls = methods.method_class(name)
    if cls.requires_torch and not HAVE_TORCH:
        pytest.skip("PyTorch is not installed")
    out = tmp_path / f"m{cls.model_suffix}"
    subject = small_subject if name == methods.trainable()[0] else loaded_subject
    method = methods.get(name).fit([subject], 2, seed=0, progress=False, **TINY[cls.model_suffix])
    side = method.save(out, 2, command="test")
    assert side.exists() and out.exists()
    args = ["upsample", str(degraded_input), "-o", str(tmp_path / "hr.nii.gz"), "--method", name, "--model", str(out)]
    if cls.gives_uncertainty:
        args += ["--uncertainty", str(tmp_path / "u.nii.gz")]
    if cls.takes_samples:  # the maps are checked written, not their values: 2 Monte Carlo draws, not the default 10
        args += ["--samples", "2"]
    assert main(args) == 0, capsys.readouterr().err
    hr = fileio.load_tensor(tmp_path / "hr.nii.gz")
    assert np.isfinite(hr.data).all() and np.any(hr.data)
    assert (tmp_path / "u.nii.gz").exists() == cls.gives_uncertainty


def test_fit_refuses_what_a_method_cannot_take(small_subject):
    with pytest.raises(IQTError, match="nothing to learn"):
        methods.get("cubic").fit([small_subject])
    with pytest.raises(IQTError, match="--epochs: does not apply to 'rf'"):
        methods.get("rf").fit([small_subject], epochs=3)
    with pytest.raises(IQTError, match="takes no Monte Carlo samples"):
        methods.get("espcn", samples=3)
    with pytest.raises(IQTError, match="has no model"):
        methods.get("cubic", model="m.pt")
    with pytest.raises(IQTError, match=r"'rf' runs on the CPU only; drop --device cuda \(it applies to the CNNs: espcn"):
        methods.get("rf", device="cuda")
    assert methods.get("rf", device="auto").device == "auto"


def test_the_module_runs_a_cpu_method_with_use_gpu_ticked():
    """Advanced > Use GPU stays ticked across methods: a forest or cubic then runs on the CPU, as it always does."""
    from ImageQualityTransferLib.slicer import processing

    assert processing.Request("cubic", 2, device="cuda").make().device == "cpu"
    assert processing.Request("espcn", 2, device="cuda").make().device == "cuda"


def test_a_model_registered_in_this_process_changes_the_build_it_records(tmp_path, monkeypatch):
    """The build (core/version.py build_digest, over the code and the install's registry) was cached for the process:
    a process that registered a model went on recording the build from before (a code-health review)."""
    from ImageQualityTransferLib.fileio import model_files

    monkeypatch.setattr(model_files, "MODELS_DIR", tmp_path)
    before = model_files.build()
    assert model_files.build() == before
    model_files.register({"method": "rf", "factor": 2, "sha256": "m"}, tmp_path / "m_x2.json", tmp_path)
    assert model_files.build() != before


def test_a_registry_changed_by_another_process_leaves_this_process_build(tmp_path, monkeypatch):
    """The build was read again whenever registry.json changed: a registration elsewhere during `iqt batch` failed
    the remaining subjects as computed by another build (a review). A run's build is the one it started with."""
    import json

    from ImageQualityTransferLib.fileio import model_files

    monkeypatch.setattr(model_files, "MODELS_DIR", tmp_path)
    (tmp_path / "registry.json").write_text(json.dumps({"format": model_files.REGISTRY_FORMAT, "models": []}))
    before = model_files.build()
    (tmp_path / "registry.json").write_text(json.dumps({"format": model_files.REGISTRY_FORMAT, "models": []}) + " ")
    assert model_files.build() == before


def test_registry_holds_per_axis_factor_sets(tmp_path):
    """Entries for r and for [fx, fy, fz]: each found by its own factors only, isotropic first, re-registering
    replaces, and a missing set is named with what exists."""
    from ImageQualityTransferLib.fileio import model_files

    for factor, name in (([1, 1, 3], "m_x1x1x3.json"), (2, "m_x2.json"), ([1, 1, 3], "m_x1x1x3b.json")):
        model_files.register({"method": "rf", "factor": factor, "sha256": name}, tmp_path / name, tmp_path)
    assert model_files.shipped_factor_sets("rf", tmp_path) == [(2, 2, 2), (1, 1, 3)]
    assert model_files.shipped("rf", (1, 1, 3), ".npz", tmp_path).name == "m_x1x1x3b.json"
    assert model_files.shipped("rf", 2, ".npz", tmp_path).name == "m_x2.json"
    with pytest.raises(IQTError, match="rf has shipped models for factor 2, factors 1,1,3 only; give --model for factors 3,1,1"):
        model_files.shipped("rf", (3, 1, 1), ".npz", tmp_path)  # a reordering is the method's to serve, not the file's


def test_a_model_trained_with_added_noise_is_registered_beside_the_default(tmp_path):
    """A sidecar whose training added noise registers as the model for noisy inputs: it neither replaces the default
    model for its factors nor adds factors; the default one does not replace it either."""
    from ImageQualityTransferLib.fileio import model_files

    noisy = {"method": "biqt", "factor": 2, "sha256": "n", "training": {"settings": {"noise_fraction": 0.5}}}
    cnn_noisy = {"method": "espcn", "factor": 2, "sha256": "c", "training": {"options": {"noise_fraction": 0.5}}}
    for meta, name in ((noisy, "b_x2_noisy.json"), ({"method": "biqt", "factor": 2, "sha256": "d"}, "b_x2.json"),
                       (cnn_noisy, "e_x2_noisy.json")):
        model_files.register(meta, tmp_path / name, tmp_path)
    assert model_files.input_kind(noisy) == model_files.input_kind(cnn_noisy) == model_files.NOISY
    assert model_files.shipped("biqt", 2, ".npz", tmp_path).name == "b_x2.json"
    assert model_files.shipped_for("biqt", 2, model_files.NOISY, tmp_path).name == "b_x2_noisy.json"
    assert model_files.shipped_for("biqt", 3, model_files.NOISY, tmp_path) is None
    assert model_files.shipped_factor_sets("biqt", tmp_path) == [(2, 2, 2)]
    assert model_files.shipped_factor_sets("espcn", tmp_path) == []  # only a noisy-input model: no default
    entries = model_files.read_registry(tmp_path)
    assert [(e["sidecar"], e.get("input")) for e in entries] == [
        ("b_x2.json", None), ("b_x2_noisy.json", "noisy"), ("e_x2_noisy.json", "noisy")]


def test_a_fractional_number_of_samples_is_refused():
    """methods.get('espcn-hetero-var1', samples=2.7) ran with 2 samples without a word."""
    cls = methods.method_class("espcn-hetero-var1")
    for bad in (2.7, "3", True):
        with pytest.raises(IQTError, match="whole number"):
            cls(samples=bad)
    assert cls(samples=3.0).samples == 3 and cls(samples=np.int64(4)).samples == 4


def _register_many(who: int, folder: str) -> None:
    import time
    from pathlib import Path

    from ImageQualityTransferLib.fileio.model_files import register

    (Path(folder) / f"ready{who}").touch()
    while not (Path(folder) / "go").exists():  # both start together
        time.sleep(0.001)
    for k in range(2, 62):
        register({"method": "rf" if who == 0 else "biqt", "factor": [1, 1, k], "sha256": "0" * 64, "version": "1"},
                 f"{folder}/m{who}_{k}.json", models_dir=folder)


@pytest.mark.skipif(sys.platform == "win32", reason="the registry lock is POSIX's fcntl")
def test_two_processes_registering_at_once_keep_every_entry(tmp_path):
    """Two trainings' --register at the same moment: the registry's read-modify-write had lost entries (85 of 156 in a
    training audit's stress run); under its lock every one is kept."""
    import json
    import multiprocessing
    import time

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_register_many, args=(who, str(tmp_path))) for who in (0, 1)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 60  # both waiting (a spawned process's start-up is seconds on a loaded machine)
    while not all((tmp_path / f"ready{who}").exists() for who in (0, 1)) and time.monotonic() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(json.loads((tmp_path / "registry.json").read_text())["models"]) == 120
    # its lock file is hidden beside it, as a checkpoint's (a visible registry.json.lock was left in a lab's folder)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")) == [".registry.json.lock"]
