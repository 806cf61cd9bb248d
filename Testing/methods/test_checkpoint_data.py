"""A training checkpoint resumes only on the files it was trained on: one resumed on another scan in a folder of the
same name went on training on it, and the model's sidecar named only the new data (researcher audit, stop 57)."""

from __future__ import annotations

import pytest

import helpers

torch = pytest.importorskip("torch")

from ImageQualityTransferLib.core.errors import IQTError  # noqa: E402
from ImageQualityTransferLib.methods.cnn import training, training_data  # noqa: E402

KW = dict(method="espcn", epochs=1, iters_per_epoch=4, batch_size=4, patch=6, val_patches=4, patience=10, progress=False)


def _data(digest):
    return [{"subject": name, "folder": f"/data/{name}", "sha256": {"dwi.nii.gz": digest, "dwi.bval": "b", "dwi.bvec": "v"}}
            for name in sorted({it.name for it in helpers.synthetic_items()})]


def test_a_checkpoint_is_not_resumed_on_other_files_under_the_same_name(tmp_path):
    ck = tmp_path / "ck.pt"
    training.train(helpers.synthetic_items(), seed=0, checkpoint=str(ck), data=_data("aa"), **KW)
    training.train(helpers.synthetic_items(), seed=0, checkpoint=str(ck), data=_data("aa"), **{**KW, "epochs": 2})
    with pytest.raises(IQTError, match="a checkpoint of another training .*other files for subject"):
        training.train(helpers.synthetic_items(), seed=0, checkpoint=str(ck), data=_data("bb"), **{**KW, "epochs": 3})


def test_a_checkpoint_is_resumed_only_in_its_subjects_order_and_folders(tmp_path):
    """The data are compared per folder in the order given: a resume with the subjects in another order (which draws
    other batches: another model that no recorded command makes) had been taken, and so had one where a subject of
    the same name as another (siteA/P01, siteB/P01) was a third scan, the two having been one entry (a training audit)."""
    ck = tmp_path / "ck.pt"
    data = _data("aa")
    training.train(helpers.synthetic_items(), seed=0, checkpoint=str(ck), data=data, **KW)
    with pytest.raises(IQTError, match=r"subjects s0, s1, s2 \(in that order\)"):
        training.train(helpers.synthetic_items(), seed=0, checkpoint=str(ck), data=data[::-1], **{**KW, "epochs": 2})
    twins = [dict(data[0], folder="/siteA/s0"), dict(data[0], folder="/siteB/s0", sha256={**data[0]["sha256"], "dwi.nii.gz": "b1"})]
    ck2 = tmp_path / "ck2.pt"
    training.train(helpers.synthetic_items(), seed=0, checkpoint=str(ck2), data=twins, **KW)
    third = [twins[0], dict(twins[1], sha256={**twins[1]["sha256"], "dwi.nii.gz": "c1"})]
    with pytest.raises(IQTError, match="other files for subject s0"):
        training.train(helpers.synthetic_items(), seed=0, checkpoint=str(ck2), data=third, **{**KW, "epochs": 2})


def test_a_checkpoint_of_an_earlier_version_still_resumes(tmp_path):
    """A checkpoint whose record holds the earlier form (names sorted once, data by name) resumes where that form is
    unambiguous (no two subjects of one name)."""
    ck = tmp_path / "ck.pt"
    data = _data("aa")
    training.train(helpers.synthetic_items(), seed=0, checkpoint=str(ck), data=data, **KW)
    saved = torch.load(ck, weights_only=True)
    rec = saved["training"]
    rec["subjects"] = sorted(set(rec["subjects"]))
    rec["data"] = {name: files for name, files in rec["data"]}
    torch.save(saved, ck)
    training.train(helpers.synthetic_items(), seed=0, checkpoint=str(ck), data=data, **{**KW, "epochs": 2})


def test_the_command_line_hands_the_training_its_files(tmp_path, capsys, monkeypatch):
    subject = tmp_path / "subj"
    subject.mkdir()
    helpers.save_phantom_dwi(subject / "dwi.nii.gz", (32, 36, 28), 0)
    seen = []

    def stop(items, **kw):
        seen.append(kw.get("data"))
        raise IQTError("stopped here")

    monkeypatch.setattr(training, "train", stop)
    code, _, err = helpers.run_cli(capsys, "train", "--method", "espcn", "--subjects", subject, "-o", tmp_path / "m.pt",
                                   "--epochs", "1")
    assert code == 2 and "stopped here" in err
    assert [d["subject"] for d in seen[0]] == ["subj"] and set(seen[0][0]["sha256"]) >= {"dwi.nii.gz"}


def test_a_pickle_given_as_checkpoint_is_one_line(tmp_path, capsys):
    """PyTorch's own warning about the pickle came first, a second line before the refusal (researcher audit, stop 57)."""
    import pickle

    subject = tmp_path / "subj"
    subject.mkdir()
    helpers.save_phantom_dwi(subject / "dwi.nii.gz", (32, 36, 28), 0)
    ck = tmp_path / "ck.pt"
    ck.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    code, _, err = helpers.run_cli(capsys, "train", "--method", "espcn", "--subjects", subject, "-o", tmp_path / "m.pt",
                                   "--epochs", "1", "--checkpoint", ck)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not a training checkpoint" in err, err


def test_a_junk_checkpoint_is_refused_before_the_data_are_prepared(tmp_path, capsys, monkeypatch, small_subject):
    """Researcher audit: a damaged or unrelated --checkpoint was refused only after the training data were prepared
    (8-11 s on one 3 mm subject, minutes on the four training subjects); now at once."""
    from ImageQualityTransferLib.apps import cli

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")

    def prepared(*a, **k):
        raise AssertionError("the data were prepared before the checkpoint was read")

    monkeypatch.setattr(training_data, "load_items", prepared)
    code = cli.main(["train", "--method", "espcn", "--subjects", str(small_subject), "-o", str(tmp_path / "m.pt"),
                     "--epochs", "1", "--checkpoint", str(junk)])
    err = capsys.readouterr().err
    assert code == 2 and "not a training checkpoint" in err and len(err.strip().splitlines()) == 1, err


def test_a_checkpoint_is_not_resumed_with_another_init(tmp_path):
    """A researcher's audit: a checkpoint trained without --init, resumed with one, went on as it was while the
    sidecar named that model, so its recorded command trained another network. Refused now, naming the difference."""
    from ImageQualityTransferLib.methods.cnn import model_io

    net, meta, _ = training.train(helpers.synthetic_items(), seed=0, **KW)
    start = tmp_path / "start.pt"
    model_io.save(net, meta, start)
    ck = tmp_path / "ck.pt"
    training.train(helpers.synthetic_items(), seed=0, checkpoint=str(ck), **KW)
    with pytest.raises(IQTError, match="a checkpoint of another training .*--init none"):
        training.train(helpers.synthetic_items(), seed=0, checkpoint=str(ck), init=str(start), **{**KW, "epochs": 2})
    training.train(helpers.synthetic_items(), seed=0, checkpoint=str(ck), **{**KW, "epochs": 2})  # as it began: goes on


def test_a_training_that_diverged_is_refused():
    """`iqt train --lr 1e30`: every validation loss NaN, the untrained weights had been written as the model (exit 0,
    'best validation loss nan'; a researcher's audit). The training raises one line instead, before anything is
    written (the command line writes the model after `train` returns)."""
    with pytest.raises(IQTError, match=r"the training diverged: no validation loss of its mse phase was a number .*"
                                       r"learning rate of 1e\+30.*lower --lr.*no model was written"):
        training.train(helpers.synthetic_items(), seed=0, lr=1e30, **KW)


def test_a_diverged_runs_checkpoint_resumed_writes_no_model(tmp_path):
    """The review's case: the diverged run's checkpoint is saved, its phase finished, before the refusal; the same
    command again resumed it, skipped the phase and returned the untrained weights. Refused on resuming too."""
    ck = tmp_path / "ck.pt"
    with pytest.raises(IQTError, match="the training diverged"):
        training.train(helpers.synthetic_items(), seed=0, lr=1e30, checkpoint=str(ck), **KW)
    assert ck.exists()
    with pytest.raises(IQTError, match="the training diverged in this checkpoint.*another --checkpoint path"):
        training.train(helpers.synthetic_items(), seed=0, lr=1e30, checkpoint=str(ck), **KW)


@pytest.mark.parametrize("damage", ["no_method", "epoch_text", "other_net"])
def test_a_crafted_checkpoint_is_one_line(tmp_path, damage):
    """Fields missing or of the wrong kind had ended in an internal error (KeyError, ValueError, PyTorch's
    RuntimeError): a security audit."""
    ck = tmp_path / "ck.pt"
    data = _data("aa")
    training.train(helpers.synthetic_items(), seed=0, checkpoint=str(ck), data=data, **KW)
    saved = torch.load(ck, weights_only=True)
    if damage == "no_method":
        del saved["method"]
    elif damage == "epoch_text":
        saved["epoch"] = "abc"
    else:
        saved["net"] = {"x": torch.zeros(2)}
    torch.save(saved, ck)
    with pytest.raises(IQTError, match="a damaged or foreign training checkpoint"):
        training.train(helpers.synthetic_items(), seed=0, checkpoint=str(ck), data=data, **{**KW, "epochs": 2})


def test_a_training_is_refused_where_its_model_would_not_fit_on_the_disk(tmp_path, capsys, monkeypatch):
    """A full disk had thrown the trained weights away after the whole training (a training audit): refused before."""
    import shutil
    from collections import namedtuple

    subject = tmp_path / "subj"
    subject.mkdir()
    helpers.save_phantom_dwi(subject / "dwi.nii.gz", (32, 36, 28), 0)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 36_000, 36_000))
    code, _, err = helpers.run_cli(capsys, "train", "--method", "espcn", "--subjects", subject, "-o", tmp_path / "m.pt",
                                   "--epochs", "1")
    assert code == 2 and "MiB free, less than the 64 MiB" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the checkpoint hold is POSIX's fcntl")
def test_a_checkpoint_in_use_by_another_training_is_refused(tmp_path, capsys):
    """Two trainings given one --checkpoint had both run, each writing the other's checkpoint (a training audit)."""
    import fcntl

    subject = tmp_path / "subj"
    subject.mkdir()
    helpers.save_phantom_dwi(subject / "dwi.nii.gz", (32, 36, 28), 0)
    ck = tmp_path / "run.ckpt"
    with open(tmp_path / ".run.ckpt.lock", "a") as held:  # as the first training holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        code, _, err = helpers.run_cli(capsys, "train", "--method", "espcn", "--subjects", subject, "-o",
                                       tmp_path / "m.pt", "--epochs", "1", "--checkpoint", ck)
    assert code == 2 and "another training is using this checkpoint now" in err and len(err.strip().splitlines()) == 1
    assert not ck.exists() and not (tmp_path / "m.pt").exists()


def test_a_hold_taken_on_a_lock_file_its_last_holder_removed_is_taken_again(tmp_path, monkeypatch):
    """The last holder removes the lock file as it ends: a training that locked the removed file (opened just before)
    held nothing another could see, so it opens the file at the name again (its inode compared), and then holds it."""
    import fcntl

    from ImageQualityTransferLib.apps.cli.train import checkpoint_held

    ck = tmp_path / "run.ckpt"
    lock = tmp_path / ".run.ckpt.lock"
    real, calls = fcntl.flock, []

    def flock(handle, op):
        if op & fcntl.LOCK_EX and not calls:  # the holder ends between this training's open and its lock
            lock.unlink()
            lock.touch()
        calls.append(op)
        return real(handle, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    with checkpoint_held(ck):
        assert sum(bool(op & fcntl.LOCK_EX) for op in calls) == 2  # locked, found replaced, locked again
        with open(lock, "a") as other, pytest.raises(OSError):  # the file at the name is the one held
            real(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert not lock.exists()


def test_the_sidecar_lists_the_coarser_copies_trained_on(tmp_path):
    """--coarsen's copies (<name>_at3mm) are trained on but not in the data record (their folder's files are recorded
    once): the sidecar had dropped them from training.subjects (a review); they follow the folders given."""
    data = _data("aa")
    items = helpers.synthetic_items()
    named = [d for d in data if d["subject"] != "s2"]  # s2 stands for a coarser copy: trained on, not a folder given
    _, side, _ = training.train(items, seed=0, data=named, **KW)
    assert side["training"]["subjects"] == ["s0", "s1", "s2"]
