"""A model sidecar in another format version of its own family (a model from a later or earlier iqt) is refused in
one line naming the format and the version that wrote it: it had advised 'run it with --method espcn' of an espcn
model, which changes nothing."""

from __future__ import annotations

import json

import pytest

from ImageQualityTransferLib import IQTError
from ImageQualityTransferLib.fileio import model_files


@pytest.mark.parametrize("fmt", ["iqt-cnn-model/2", "iqt-cnn-model/0"])
def test_another_format_version_names_it_and_gives_no_method_advice(tmp_path, fmt):
    """A shipped CNN sidecar in another format: its "version" is the sidecar's own (1.0.0, methods/cnn/training.py
    SIDECAR_VERSION), the iqt version its "engine_version" (a review: the refusal had named 1.0.0 as the iqt version)."""
    meta = json.loads((model_files.MODELS_DIR / "espcn_x2.json").read_text())
    assert meta["version"] == "1.0.0" and meta["engine_version"] != "1.0.0"
    (tmp_path / "m.pt").write_bytes(b"weights")
    (tmp_path / "m.json").write_text(json.dumps({**meta, "format": fmt, "engine_version": "9.0.0", "weights": "m.pt"}))
    with pytest.raises(IQTError) as err:
        model_files.read_sidecar(tmp_path / "m.pt", "iqt-cnn-model/1", "CNN", ".pt")
    said = str(err.value)
    assert f"format {fmt!r}, written by version 9.0.0," in said and "1.0.0" not in said, said
    assert "--method" not in said, said


@pytest.mark.parametrize("family, fmt, suffix", [("CNN", "iqt-cnn-model/1", ".pt"),
                                                 ("forest", "iqt-forest-model/1", ".npz")])
def test_a_sidecar_naming_no_iqt_version_is_refused_without_one(tmp_path, family, fmt, suffix):
    """No "engine_version" (nor a forest's "version"): the clause is left out, where it had read "written by version
    None"; a CNN's "version" (its sidecar format's) is not named as the iqt version, a forest's is (it is the iqt
    version there: methods/forest/training.py)."""
    other = fmt.replace("/1", "/2")
    (tmp_path / f"m{suffix}").write_bytes(b"weights")
    side = {"format": other, "method": "rf", "weights": f"m{suffix}", **({"version": "1.0.0"} if family == "CNN" else {})}
    (tmp_path / "m.json").write_text(json.dumps(side))
    with pytest.raises(IQTError) as err:
        model_files.read_sidecar(tmp_path / f"m{suffix}", fmt, family, suffix)
    said = str(err.value)
    assert f"format {other!r}, which this version" in said and "written by" not in said, said
    if family == "forest":
        (tmp_path / "m.json").write_text(json.dumps({**side, "version": "9.0.0"}))
        with pytest.raises(IQTError, match=f"format '{other}', written by version 9.0.0, which"):
            model_files.read_sidecar(tmp_path / f"m{suffix}", fmt, family, suffix)


def test_another_family_still_names_its_method(tmp_path):
    (tmp_path / "m.npz").write_bytes(b"weights")
    (tmp_path / "m.json").write_text(json.dumps({"format": "iqt-forest-model/1", "method": "rf", "weights": "m.npz"}))
    with pytest.raises(IQTError, match="it is an rf model: run it with --method rf"):
        model_files.read_sidecar(tmp_path / "m.npz", "iqt-cnn-model/1", "CNN", ".pt")
