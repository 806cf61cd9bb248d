"""`iqt seal`: a model from before sealed sidecars is sealed as it is, once its weights check; nothing else is. Several
sidecars are written all or none, and a model named twice is sealed once."""

from __future__ import annotations

import errno
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from ImageQualityTransferLib import IQTError
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.fileio import checksums
from ImageQualityTransferLib.fileio import model_files
from ImageQualityTransferLib.fileio.writing import atomic_write
from ImageQualityTransferLib.methods.forest import model_io


def _old_model(d: Path, name: str = "gl") -> Path:
    """A copy of a shipped global-linear model whose sidecar has no seal, as 'iqt train' wrote it before sidecars were
    sealed."""
    src = Path(model_files.MODELS_DIR) / "global-linear_x2"
    shutil.copy(src.with_suffix(".npz"), d / f"{name}.npz")
    side = json.loads(src.with_suffix(".json").read_text())
    side.pop(model_files.SEAL)
    side["weights"] = f"{name}.npz"
    (d / f"{name}.json").write_text(json.dumps(side, indent=2))
    return d / f"{name}.npz"


def test_an_old_model_is_sealed_and_then_loads_without_the_warning(tmp_path, capsys):
    weights = _old_model(tmp_path)
    model_files._UNSEALED_SAID.clear()
    with pytest.warns(UserWarning, match="iqt seal"):
        model_io.load(weights)
    assert main(["seal", str(weights)]) == 0
    assert "sealed" in capsys.readouterr().out
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta[model_files.SEAL] == model_files.settings_digest(meta)
    model_files._UNSEALED_SAID.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model_io.load(weights)
    before = weights.with_suffix(".json").read_bytes()
    assert main(["seal", str(weights.with_suffix(".json"))]) == 0  # again: said, left as it was
    assert "already sealed" in capsys.readouterr().out
    assert weights.with_suffix(".json").read_bytes() == before


@pytest.mark.parametrize("damage", ["weights", "edited_seal", "format", "missing", "contradicts", "deleted"])
def test_a_model_that_does_not_check_is_not_sealed_and_nothing_changes(tmp_path, capsys, damage):
    good, bad = _old_model(tmp_path, "good"), _old_model(tmp_path, "bad")
    side = bad.with_suffix(".json")
    if damage == "weights":
        data = bytearray(bad.read_bytes())
        data[len(data) // 2] ^= 1
        bad.write_bytes(bytes(data))
    elif damage == "edited_seal":
        meta = json.loads(side.read_text())
        model_files.write_sidecar(side, meta)
        meta = json.loads(side.read_text())
        meta["input_unit"] = "m2/s"
        side.write_text(json.dumps(meta))
    elif damage == "contradicts":  # the unit it reads its input in edited at the top only (a training audit: sealed,
        meta = json.loads(side.read_text())  # it then ran as edited, up to 3.6e-4 mm²/s off the model as trained)
        assert meta["training"]["settings"]["input_unit"] == "md-mode"
        with np.load(bad, allow_pickle=False) as z:  # saved again: not the shipped weights' bytes, refused as such
            np.savez(bad, **{k: z[k] for k in z.files})
        side.write_text(json.dumps({**meta, "input_unit": "fixed", "sha256": checksums.sha256(bad)}))
    elif damage == "deleted":  # deleted at the top, it is read as the default, fixed (a review: sealed so)
        meta = json.loads(side.read_text())
        with np.load(bad, allow_pickle=False) as z:
            np.savez(bad, **{k: z[k] for k in z.files})
        meta.pop("input_unit")
        side.write_text(json.dumps({**meta, "sha256": checksums.sha256(bad)}))
    elif damage == "format":
        side.write_text(json.dumps({**json.loads(side.read_text()), "format": "something/1"}))
    else:
        bad.unlink()
    files = {p: p.read_bytes() for p in tmp_path.iterdir()}
    assert main(["seal", str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad" in err[0], err
    if damage in ("contradicts", "deleted"):
        assert "'fixed' at the sidecar's top and 'md-mode' in training.settings" in err[0], err
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == files  # the good one is not sealed either


def test_a_shipped_model_is_not_resealed(capsys):
    assert main(["seal", str(Path(model_files.MODELS_DIR) / "espcn_x2.pt")]) == 0
    assert "already sealed" in capsys.readouterr().out


def test_a_sealed_model_in_a_read_only_folder_is_checked_not_refused(tmp_path, capsys, monkeypatch):
    """A sealed model needs no write: checked on a read-only share (a provenance audit, a read-only bind mount), it had
    been refused as 'cannot write in …; choose a folder you can write to'. An old one there is still refused so."""
    from ImageQualityTransferLib.fileio import paths

    for suffix in (".npz", ".json"):
        shutil.copy(Path(model_files.MODELS_DIR) / f"global-linear_x2{suffix}", tmp_path / f"global-linear_x2{suffix}")
    old = _old_model(tmp_path)

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(paths.tempfile, "TemporaryFile", read_only)
    assert main(["seal", str(tmp_path / "global-linear_x2.npz")]) == 0
    assert "already sealed" in capsys.readouterr().out
    assert main(["seal", str(old)]) == 2
    assert "cannot write in" in capsys.readouterr().err


def _resum(weights: Path) -> None:
    """Make the (unsealed) sidecar's sha256 and size match the weights as they now are."""
    side = weights.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta.update(sha256=checksums.sha256(weights), size_bytes=weights.stat().st_size)
    side.write_text(json.dumps(meta, indent=2))


def _damage(weights: Path, how: str) -> None:
    side = weights.with_suffix(".json")
    if how in ("sealed_truncated", "sealed_flipped", "truncated_resummed"):
        data = weights.read_bytes()
        if how == "sealed_flipped":
            data = bytearray(data)
            data[len(data) // 2] ^= 0xFF
            data = bytes(data)
        else:
            data = data[: len(data) // 2]
        weights.write_bytes(data)
        if how == "truncated_resummed":
            _resum(weights)
    elif how == "pickled_resummed":
        np.savez(weights.with_suffix(""), a=np.array([object()], dtype=object))  # writes weights (.npz)
        _resum(weights)
    elif how == "factor_edited":
        meta = json.loads(side.read_text())
        meta["factor"] = 3
        side.write_text(json.dumps(meta, indent=2))


@pytest.mark.parametrize("how", ["sealed_truncated", "sealed_flipped", "truncated_resummed", "pickled_resummed",
                                 "factor_edited"])
def test_seal_refuses_a_model_upsample_refuses(tmp_path, capsys, how):
    """A sealed model with truncated or flipped weights was 'already sealed, left as it was' (exit 0) and an
    unsealed one whose sha256 matched a truncated file or a pickled payload, or with an edited factor, was sealed;
    'iqt upsample' refused each. Now each is refused, in one line, and nothing is sealed (nor the good one beside it)."""
    good, bad = _old_model(tmp_path, "good"), _old_model(tmp_path, "bad")
    if how.startswith("sealed_"):
        assert main(["seal", str(bad)]) == 0
        capsys.readouterr()
    _damage(bad, how)
    files = {p: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(IQTError):
        model_io.check_outputs(model_io.load(bad))  # as 'iqt upsample' reads it before predicting
    capsys.readouterr()  # its warning that the sidecar is unsealed
    model_files._UNSEALED_SAID.clear()
    assert main(["seal", str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad" in err[0], err
    assert ("left as it was" if how.startswith("sealed_") else "not sealed") in err[0], err
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == files


def test_seal_refuses_a_weights_file_its_sidecar_does_not_name(tmp_path, capsys):
    _old_model(tmp_path, "a")
    b = _old_model(tmp_path, "b")
    meta = json.loads(b.with_suffix(".json").read_text())
    meta["weights"] = "a.npz"  # b's sidecar swapped for a's
    b.with_suffix(".json").write_text(json.dumps(meta))
    assert main(["seal", str(b)]) == 2
    assert "b.json names a.npz as its weights, not b.npz" in capsys.readouterr().err


def test_a_seal_that_fails_at_the_second_sidecar_leaves_both_as_they_were(tmp_path, capsys, monkeypatch):
    a, b = _old_model(tmp_path, "a"), _old_model(tmp_path, "b")
    before = {p: p.with_suffix(".json").read_bytes() for p in (a, b)}
    real = model_files.write_json

    def full_at_b(path, obj):
        if str(path).endswith("b.json"):
            atomic_write(path, lambda tmp: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
        real(path, obj)

    monkeypatch.setattr(model_files, "write_json", full_at_b)
    assert main(["seal", str(a), str(b)]) == 2
    out, err = capsys.readouterr()
    assert "no space is left" in err and "sealed" not in out
    assert {p: p.with_suffix(".json").read_bytes() for p in (a, b)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.npz", "b.json", "b.npz"]


def test_a_model_named_twice_is_sealed_once(tmp_path, capsys):
    a = _old_model(tmp_path, "a")
    assert main(["seal", str(a), str(a.with_suffix(".json"))]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"{a.with_suffix('.json')}: sealed"]
    meta = json.loads(a.with_suffix(".json").read_text())
    assert meta[model_files.SEAL] == model_files.settings_digest(meta)


def test_an_image_given_to_seal_is_said_to_be_an_image(tmp_path, capsys):
    """`iqt seal dti.nii.gz` named a sidecar 'dti.nii.json' the user never gave; now it says what was given."""
    image = tmp_path / "dti.nii.gz"
    image.write_bytes(b"not read")
    assert main(["seal", str(image)]) == 2
    err = capsys.readouterr().err
    assert f"{image}: an image, not a model" in err and err.count("\n") == 1, err


def test_a_refused_old_model_is_not_first_told_to_be_sealed(tmp_path, capsys):
    """An unsealed sidecar of the shipped weights with another setting: 'seal it with iqt seal' came before the refusal,
    which 'iqt seal' then repeats (a bad-input audit); now the refusal is the only line."""
    weights = _old_model(tmp_path, "edited")
    side = weights.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["created"] = "another day"  # a setting the shipped sidecar records otherwise
    side.write_text(json.dumps(meta, indent=2))
    _refused_without_the_seal_advice(model_io.load, weights, "the sidecar was edited")


def _refused_without_the_seal_advice(load, weights, refusal):
    """`load(weights)` refused with `refusal`, and no advice to seal the model said before it."""
    model_files._UNSEALED_SAID.clear()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with pytest.raises(IQTError, match=refusal):
            load(weights)
    assert not [w for w in said if "iqt seal" in str(w.message)], [str(w.message) for w in said]


def test_seal_of_a_folder_says_it_is_a_folder(tmp_path, capsys):
    """`iqt seal FOLDER` read "FOLDER.json: model sidecar not found" (a hostile-input audit)."""
    (tmp_path / "s1").mkdir()
    assert main(["seal", str(tmp_path / "s1")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "s1: a folder; give the model file" in err, err


def test_an_old_sidecar_beside_a_pickle_is_refused_without_being_told_to_be_sealed(tmp_path):
    """`iqt batch --model evil.pt`, an unsealed sidecar whose checksum matches a plain pickle: the advice to seal it
    came before the CNN loader's refusal of the pickle, which 'iqt seal' would repeat (a review); now the refusal is the
    only line. Said once the weights have loaded, the advice still comes for a good old model (the test above)."""
    import pickle

    pytest.importorskip("torch")
    from ImageQualityTransferLib.methods.cnn import model_io as cnn_io

    weights = tmp_path / "evil.pt"
    weights.write_bytes(pickle.dumps({"conv.weight": [0.0]}))
    side = json.loads((Path(model_files.MODELS_DIR) / "espcn_x2.json").read_text())
    side.pop(model_files.SEAL)
    side.update(weights="evil.pt", sha256=checksums.sha256(weights), size_bytes=weights.stat().st_size)
    (tmp_path / "evil.json").write_text(json.dumps(side, indent=2))
    _refused_without_the_seal_advice(cnn_io.load, weights, "a plain pickle")
