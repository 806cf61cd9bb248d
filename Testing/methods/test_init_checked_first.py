"""An --init model that cannot warm-start the network (another factor, a network that does not fit, weights that fail
their checksum) is refused in one line before any training data are prepared: it had been said only after the data
preparation (44-49 s for the smallest training subject on a loaded machine, minutes for a full set)."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("torch")

from ImageQualityTransferLib import IQTError, methods  # noqa: E402
from ImageQualityTransferLib.apps.cli import main  # noqa: E402
from ImageQualityTransferLib.fileio import model_files  # noqa: E402
from ImageQualityTransferLib.methods.cnn import training_data  # noqa: E402

MODELS = model_files.MODELS_DIR


def tampered(tmp_path):
    """The shipped x2 espcn model, copied with one byte of its weights changed (its sidecar as shipped)."""
    for name in ("espcn_x2.pt", "espcn_x2.json"):
        shutil.copy(MODELS / name, tmp_path / name)
    data = bytearray((tmp_path / "espcn_x2.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "espcn_x2.pt").write_bytes(bytes(data))
    return tmp_path / "espcn_x2.pt"


CASES = {  # --method, --init, what the one line says
    "factor": ("espcn", lambda tmp: MODELS / "espcn_x3.pt", "--init model is for factor 3, not 2"),
    "network": ("espcn", lambda tmp: MODELS / "espcn-hetero_x2.pt", "cannot initialise a network of method 'espcn'"),
    "checksum": ("espcn", tampered, "checksum mismatch"),
}


@pytest.fixture
def no_data_preparation(monkeypatch):
    def prepared(*args, **kwargs):
        raise AssertionError("the training data were prepared before the --init model was checked")

    monkeypatch.setattr(training_data, "load_items", prepared)


@pytest.mark.parametrize("case", sorted(CASES))
def test_iqt_train_refuses_a_bad_init_before_preparing_data(case, small_subject, tmp_path, capsys, no_data_preparation):
    method, init, said = CASES[case]
    out = tmp_path / "out" / "m.pt"
    out.parent.mkdir()
    rc = main(["train", "--method", method, "--subjects", str(small_subject), "--factor", "2", "-o", str(out),
               "--epochs", "1", "--init", str(init(tmp_path))])
    err = capsys.readouterr().err
    assert rc == 2 and said in err and len(err.strip().splitlines()) == 1, err
    assert not any(out.parent.iterdir())


def test_fit_refuses_a_bad_init_before_preparing_data(small_subject, no_data_preparation):
    """The library's `fit` (as torchrun's and --nproc's processes run it) checks it as early."""
    with pytest.raises(IQTError, match="--init model is for factor 3, not 2"):
        methods.method_class("espcn")().fit([small_subject], 2, epochs=1, init=str(MODELS / "espcn_x3.pt"),
                                            progress=False)
