"""A model written over a model at the same path (a retraining into the same -o): its weights and sidecar are put in
place together or not at all (fileio.model_files.write_model). A sidecar write that failed after the weights were
replaced had removed the new weights, leaving the old sidecar naming weights no longer there: the old model was lost."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from ImageQualityTransferLib import IQTError
from ImageQualityTransferLib.fileio import checksums, model_files, staging
from ImageQualityTransferLib.fileio.writing import atomic_write


def _files(d: Path) -> dict:
    """Every file in `d` (hidden ones too: a temporary file left) with its SHA256."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def _forest(d: Path):
    """A global-linear model at d/m.npz (a copy of the shipped one) and a save of other weights to that path."""
    from ImageQualityTransferLib.methods.forest import model_io

    src = Path(model_files.MODELS_DIR) / "global-linear_x2"
    shutil.copy(src.with_suffix(".npz"), d / "m.npz")
    model_files.write_sidecar(d / "m.json", {**json.loads(src.with_suffix(".json").read_text()), "weights": "m.npz"})
    model = model_io.load(d / "m.json")
    model.gl_W = model.gl_W + 1  # retrained: other weights
    return lambda: model_io.save(model, d / "m.npz"), model_io.load


def _cnn(d: Path):
    """An espcn model at d/m.pt and a save of other weights to that path."""
    pytest.importorskip("torch", reason="PyTorch is not installed: the CNN methods need the 'cnn' extra")
    from helpers import random_cnn_model
    from ImageQualityTransferLib.methods.cnn import model_io

    model_io.save(*random_cnn_model("espcn", seed=1), d / "m.pt")
    again = random_cnn_model("espcn", seed=2)
    return lambda: model_io.save(*again, d / "m.pt"), model_io.load


FAMILIES = {"forest": _forest, "cnn": _cnn}


def _sidecar_fails(monkeypatch, exc):
    """The sidecar's write fails with `exc` inside its own atomic write, once the new weights are written."""
    real = model_files.write_json

    def failing(path, obj):
        if Path(path).suffix == ".json" and obj.get("format") in model_files.MODEL_FORMATS:
            atomic_write(path, lambda tmp: (_ for _ in ()).throw(exc))
        return real(path, obj)

    monkeypatch.setattr(model_files, "write_json", failing)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("how", ["full disk", "signal"])
def test_a_failed_sidecar_write_leaves_the_old_model_as_it_was(tmp_path, monkeypatch, family, how):
    save, load = FAMILIES[family](tmp_path)
    before = _files(tmp_path)
    exc = OSError(errno.ENOSPC, "No space left on device") if how == "full disk" else KeyboardInterrupt()
    _sidecar_fails(monkeypatch, exc)
    with pytest.raises(IQTError if how == "full disk" else KeyboardInterrupt):
        save()
    assert _files(tmp_path) == before  # byte for byte, and no temporary file left
    load(tmp_path / "m.json")


@pytest.mark.parametrize("family", FAMILIES)
def test_a_rename_that_fails_puts_the_old_weights_back(tmp_path, monkeypatch, family):
    """Both files written, the sidecar's rename into place failing (a permission, a folder of that name) once the
    weights' had been made: the old weights are put back."""
    save, load = FAMILIES[family](tmp_path)
    before = _files(tmp_path)
    real = os.replace

    def replace(src, dst):
        if Path(dst) == tmp_path / "m.json" and Path(src).name.startswith(".iqt-") and "earlier" not in Path(src).name:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(src, dst)

    monkeypatch.setattr(staging.os, "replace", replace)
    with pytest.raises(IQTError, match="cannot be put in place.*nothing was changed"):
        save()
    assert _files(tmp_path) == before
    load(tmp_path / "m.json")


@pytest.mark.parametrize("family", FAMILIES)
def test_a_model_written_over_another_replaces_both_files(tmp_path, family):
    save, load = FAMILIES[family](tmp_path)
    before = _files(tmp_path)
    side = save()
    after = _files(tmp_path)
    assert sorted(after) == sorted(before) and all(after[k] != before[k] for k in after)
    meta = json.loads(side.read_text())
    assert meta["sha256"] == checksums.sha256(tmp_path / meta["weights"])
    load(side)


def _registered(d: Path):
    """A global-linear model registered in d's registry, and the Method whose `save` writes other weights over it."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.methods.forest import model_io

    _forest(d)
    model_files.register(json.loads((d / "m.json").read_text()), d / "m.json", d)
    method = methods.get("global-linear")
    model = model_io.load(d / "m.json")
    model.gl_W = model.gl_W + 1
    method._loaded[(2, 2, 2)] = model
    return method


@pytest.mark.parametrize("how", ["full disk", "signal"])
def test_a_failed_registry_write_leaves_the_registered_model_as_it_was(tmp_path, monkeypatch, how):
    """'iqt train --register' over a registered model: the registry's write failing once the model had landed left the
    new weights with the old entry's SHA256 (in the install's folder, the default model then refused as replaced)."""
    from ImageQualityTransferLib.methods.forest import model_io

    method = _registered(tmp_path)
    before = _files(tmp_path)
    exc = OSError(errno.ENOSPC, "No space left on device") if how == "full disk" else KeyboardInterrupt()
    real = model_files.write_json

    def failing(path, obj):
        if Path(path).name == model_files.REGISTRY:
            atomic_write(path, lambda tmp: (_ for _ in ()).throw(exc))
        return real(path, obj)

    monkeypatch.setattr(model_files, "write_json", failing)
    with pytest.raises(IQTError if how == "full disk" else KeyboardInterrupt):
        method.save(tmp_path / "m.npz", 2, command="test", register=True)
    assert _files(tmp_path) == before
    monkeypatch.setattr(model_files, "MODELS_DIR", tmp_path)  # as the install's folder: its entry still names its weights
    model_io.load(tmp_path / "m.json")


def test_a_registered_model_written_again_is_registered_with_its_new_weights(tmp_path, monkeypatch):
    from ImageQualityTransferLib.methods.forest import model_io

    method = _registered(tmp_path)
    before = _files(tmp_path)
    side = method.save(tmp_path / "m.npz", 2, command="test", register=True)
    after = _files(tmp_path)
    assert sorted(after) == sorted(before) and after["m.npz"] != before["m.npz"]
    (entry,) = model_files.read_registry(tmp_path)
    assert entry["sha256"] == checksums.sha256(tmp_path / "m.npz") and entry["sidecar"] == side.name
    monkeypatch.setattr(model_files, "MODELS_DIR", tmp_path)
    model_io.load(side)


def test_two_registered_saves_inside_a_run_s_stage_keep_both_entries(tmp_path):
    """A save inside another `all_or_none` (a caller of the Python API) puts its model and registry entry in place at
    its own end, under the registry's lock: joined to the outer stage, the second save re-read the registry on disk
    and lost the first's entry, and the registry landed after the lock was let go."""
    from ImageQualityTransferLib.methods.forest import model_io

    method = _registered(tmp_path)
    method._loaded[(1, 1, 2)] = model_io.load(Path(model_files.MODELS_DIR) / "global-linear_x1x1x2.json")
    with staging.all_or_none():
        method.save(tmp_path / "a.npz", 2, command="test", register=True)
        method.save(tmp_path / "b.npz", (1, 1, 2), command="test", register=True)
        assert (tmp_path / "b.json").is_file()  # in place already, not held for the outer stage
    entries = {e["sidecar"]: e for e in model_files.read_registry(tmp_path)}
    assert sorted(entries) == ["a.json", "b.json"], entries  # the second save had kept its own alone
    assert entries["b.json"]["sha256"] == checksums.sha256(tmp_path / "b.npz")


def test_a_registered_save_into_a_missing_folder_says_so(tmp_path):
    method = _registered(tmp_path)
    with pytest.raises(IQTError, match="does not exist; create it"):  # it had been a FileNotFoundError (the lock file)
        method.save(tmp_path / "gone" / "m.npz", 2, command="test", register=True)
    assert not (tmp_path / "gone").exists()
    (tmp_path / "afile").write_text("")
    with pytest.raises(IQTError, match="afile is a file, not a folder"):
        method.save(tmp_path / "afile" / "m.npz", 2, command="test", register=True)


def test_a_signal_after_the_save_returned_names_the_model_written():
    """A signal between the save's end and the command's (its 'wrote' line, the lock let go): the model is written,
    which the closing line had denied ('no partial output was left', or with a checkpoint 'no model was written')."""
    import argparse

    from ImageQualityTransferLib.apps import cli

    args = argparse.Namespace(command="train", checkpoint=None, in_place=["m.pt", "m.json"])
    assert cli._what_is_kept(args, None, KeyboardInterrupt()) == \
        "it came once m.pt, m.json were in place: they are written whole"
    assert cli._what_is_kept(argparse.Namespace(command="train", checkpoint=None), None, KeyboardInterrupt()) == \
        "no partial output was left"


@pytest.fixture(scope="module")
def trio_crop(tmp_path_factory):
    """A central 50x50x30 crop of the real siemens_trio_2mm training subject (its bval, bvec and sidecar beside it),
    written once for the module: the two trainings below test the closing line of an interrupted `iqt train`, which
    does not depend on the scan's size; the whole scan's fit and degraded variants had taken 10-20 s of CPU each."""
    import nibabel as nib
    from helpers import TRAIN, need_data

    src = need_data(TRAIN / "siemens_trio_2mm")
    folder = tmp_path_factory.mktemp("trio_crop") / "siemens_trio_2mm"
    folder.mkdir()
    nib.save(nib.load(src / "dwi.nii.gz").slicer[26:76, 26:76, 15:45], folder / "dwi.nii.gz")
    for name in ("dwi.bval", "dwi.bvec", "dwi.json"):
        shutil.copy(src / name, folder / name)
    return folder


@pytest.mark.realdata
@pytest.mark.slow
def test_a_signal_once_the_model_is_in_place_is_said_so(tmp_path, monkeypatch, capsys, trio_crop):
    """A SIGTERM held while the model, its sidecar and the registry are renamed into place, taken right after: the
    closing line names them as written (it had said 'no partial output was left' of a model written whole)."""
    import signal

    from ImageQualityTransferLib.apps import cli

    real, sent = os.replace, []

    def replace(src, dst):
        if not sent and Path(src).name.startswith(".iqt-") and "earlier" not in Path(src).name:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
        return real(src, dst)

    monkeypatch.setattr(staging.os, "replace", replace)
    subject = trio_crop
    code = cli.main(["--threads", "1", "train", "--method", "global-linear", "--factor", "2", "--n-train", "3000",
                     "--register", "-o", str(tmp_path / "m.npz"), "--subjects", str(subject)])
    err = capsys.readouterr().err
    assert code == 143 and sent
    assert "no partial output" not in err and "m.npz" in err and "registry.json" in err and "written whole" in err, err
    assert {"m.npz", "m.json", "registry.json"} <= set(os.listdir(tmp_path))


def test_a_signal_as_the_registry_lock_is_let_go_names_the_model_in_place(tmp_path, monkeypatch):
    """The model and its entry in place, a signal as the registry's lock is let go (after the save's own stage): the
    exception names them, for the closing line (it had said 'no model was written')."""
    import contextlib

    method = _registered(tmp_path)
    real = model_files.registering

    @contextlib.contextmanager
    def registering(folder):
        with real(folder):
            yield
        raise KeyboardInterrupt

    monkeypatch.setattr(model_files, "registering", registering)
    with pytest.raises(KeyboardInterrupt) as caught:
        method.save(tmp_path / "n.npz", 2, command="test", register=True)
    assert sorted(Path(p).name for p in caught.value.in_place) == ["n.json", "n.npz", "registry.json"]
    assert (tmp_path / "n.npz").is_file() and (tmp_path / "n.json").is_file()


@pytest.mark.realdata
@pytest.mark.slow
def test_a_signal_at_the_wrote_line_of_a_training_names_the_model(tmp_path, monkeypatch, capsys, trio_crop):
    """`iqt train`, a signal once the save returned (at its 'wrote' line): the closing line names the model written."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.apps import cli

    subject = trio_crop

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(methods.get("global-linear")), "summary", interrupted)
    code = cli.main(["--threads", "1", "train", "--method", "global-linear", "--factor", "2", "--n-train", "3000",
                     "-o", str(tmp_path / "m.npz"), "--subjects", str(subject)])
    err = capsys.readouterr().err
    assert code == 130 and "no partial output" not in err and "m.npz" in err and "m.json" in err, err
