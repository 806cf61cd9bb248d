"""Tractogram files (fileio/tracts.py): written and read back in world RAS mm, the file-size rule shared with every
other writer (fileio/writing.py file_size_limit)."""

from __future__ import annotations

import errno

import numpy as np

from ImageQualityTransferLib.analysis import tractography
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.fileio import tracts, writing


def test_tract_files_are_fileio_and_share_the_file_size_rule(tmp_path, monkeypatch):
    lines = [np.array([[0.0, 1, 2], [1, 2, 3], [2, 3, 5]]), np.array([[5.0, 5, 5], [6, 5, 4]])]
    reference = Volume(np.zeros((4, 4, 4, 6), np.float32), np.eye(4), "tensor")
    for suffix in (".vtk", ".vtp"):  # .trk: dipy, seconds to import (test_tractography.py round-trips it)
        back = tracts.load_tracts(tracts.save_tracts(lines, reference, tmp_path / f"t{suffix}"))
        assert len(back) == 2 and all(np.allclose(a, b, atol=1e-4) for a, b in zip(back, lines)), suffix
    assert not any(hasattr(tractography, n) for n in ("save_tracts", "load_tracts", "polydata", "TRACT_SUFFIXES"))
    monkeypatch.setattr(writing, "file_size_limit", lambda: 4096)  # a ulimit -f far below the folder's room
    assert writing.full_or_too_large(tmp_path / "t.vtk") == errno.EFBIG
    monkeypatch.setattr(writing, "file_size_limit", lambda: None)
    assert writing.full_or_too_large(tmp_path / "t.vtk") == errno.ENOSPC
