"""A model's weights are loaded from the very bytes whose SHA256 was checked: the loaders had hashed the file, then
opened it again to read it (torch.load, np.load), so a file replaced in between (a model folder synced or rewritten
while a run starts) ran weights no checksum had vouched for, without a word (a provenance audit: the shipped
`_noisy` model's weights swapped in under a copy of the default one's sidecar, right after the check, ran)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ImageQualityTransferLib.fileio import model_files
from ImageQualityTransferLib.fileio.model_files import MODELS_DIR


def _swapped_after_the_check(monkeypatch, weights, other):
    """Replace `weights` by `other`'s bytes once its checksum has been taken (the registry check that follows it)."""
    checked = model_files._check_registered

    def swap(meta, sp, digest):
        checked(meta, sp, digest)
        shutil.copy(other, weights)

    monkeypatch.setattr(model_files, "_check_registered", swap)


def test_a_cnn_runs_the_weights_its_checksum_verified(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from ImageQualityTransferLib.methods.cnn import model_io

    for suffix in (".pt", ".json"):
        shutil.copy(MODELS_DIR / f"espcn_x2{suffix}", tmp_path / f"espcn_x2{suffix}")
    _swapped_after_the_check(monkeypatch, tmp_path / "espcn_x2.pt", MODELS_DIR / "espcn_x2_noisy.pt")
    net = model_io.load(tmp_path / "espcn_x2.pt").net
    shipped = torch.load(MODELS_DIR / "espcn_x2.pt", weights_only=True)
    assert all(torch.equal(v, shipped[k]) for k, v in net.state_dict().items())


def test_a_forest_runs_the_arrays_its_checksum_verified(tmp_path, monkeypatch):
    from ImageQualityTransferLib.methods.forest import model_io

    for suffix in (".npz", ".json"):
        shutil.copy(MODELS_DIR / f"global-linear_x2{suffix}", tmp_path / f"global-linear_x2{suffix}")
    _swapped_after_the_check(monkeypatch, tmp_path / "global-linear_x2.npz", MODELS_DIR / "global-linear_x2_noisy.npz")
    model = model_io.load(tmp_path / "global-linear_x2.npz")
    with np.load(MODELS_DIR / "global-linear_x2.npz", allow_pickle=False) as z:
        assert np.array_equal(model.gl_W, z["gl_W"])


def test_weights_larger_than_any_model_are_refused_before_they_are_read(tmp_path, capsys):
    """The weights are read into memory to be hashed and loaded: a sparse file of 2 GiB and more behind a sidecar (no
    disk space, no model 'iqt train' writes) is refused by its size, before a byte is read."""
    from ImageQualityTransferLib.apps.cli import main
    from helpers import five_d_tensor

    shutil.copy(MODELS_DIR / "espcn_x2.json", tmp_path / "espcn_x2.json")
    with open(tmp_path / "espcn_x2.pt", "wb") as f:
        f.truncate(model_files.MAX_WEIGHTS_BYTES + 1)
    lr = five_d_tensor(tmp_path / "lr.nii.gz")
    assert main(["upsample", str(lr), "--model", str(tmp_path / "espcn_x2.pt"), "-o", str(tmp_path / "up.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "2,147,483,649 bytes of model weights, over the 2,147,483,648 (2 GiB)" in err, err
    assert "Traceback" not in err and not (tmp_path / "up.nii.gz").exists()


def test_a_model_load_sets_aside_about_its_own_size():
    """A review: reading the weights up to the 2 GiB bound had every load set aside 2 GiB first (a 0.55 MB model's
    load peaked at 2048 MiB), so a shipped model failed under `ulimit -v 2000000` as 'out of memory'."""
    import tracemalloc

    weights = MODELS_DIR / "espcn_x2.pt"
    tracemalloc.start()
    try:
        data = model_files._read_weights(weights)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(data) == weights.stat().st_size and peak < 4 * len(data) + 2**20, (peak, len(data))


def test_weights_are_opened_in_binary_mode_where_the_platform_has_one(monkeypatch):
    """Windows' os.open reads text unless told O_BINARY (CRLF to LF, Ctrl-Z ends the read): every shipped model's
    checksum would have failed there (a review, simulated on the shipped files)."""
    import os

    flags = []
    real = os.open
    monkeypatch.setattr(os, "O_BINARY", 0x8000, raising=False)
    monkeypatch.setattr(os, "open", lambda path, f, *a: flags.append(f) or real(path, f & ~0x8000, *a))
    model_files._read_weights(MODELS_DIR / "global-linear_x2.npz")
    assert flags and all(f & 0x8000 for f in flags), flags
