"""`model_files.first_copy`: one subject copied under another name, as `iqt train`, `benchmark`, `lesion-check` and
`batch` refuse it: byte-identical files, and a plain file holding a gzipped one's bytes (a training audit: dwi.nii
beside the same scan's dwi.nii.gz was a second subject), without decompressing a cohort of one protocol in full (a
review: one plain file among gzipped ones of that size had every one read)."""

from __future__ import annotations

import gzip

import numpy as np

from ImageQualityTransferLib.fileio import model_files


def test_copies_are_found_and_a_cohort_is_not_read_in_full(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):  # one protocol: one uncompressed size, each its own header
        data = bytes([i]) * 400 + rng.integers(0, 255, 200_000, dtype=np.uint8).tobytes()
        paths.append(tmp_path / f"s{i}.nii.gz")
        paths[-1].write_bytes(gzip.compress(data))
    plain = tmp_path / "other.nii"  # another scan of that size, stored plain
    plain.write_bytes(bytes([9]) * 400 + rng.integers(0, 255, 200_000, dtype=np.uint8).tobytes())
    read = []
    real = model_files.content_sha256
    monkeypatch.setattr(model_files, "content_sha256", lambda p: read.append(p) or real(p))
    assert model_files.first_copy(paths + [plain]) is None and read == []
    copy = tmp_path / "copy.nii"  # s2 decompressed
    copy.write_bytes(gzip.decompress(paths[2].read_bytes()))
    assert model_files.first_copy(paths + [plain, copy]) == (6, 2)
    read.clear()
    again = tmp_path / "again.nii.gz"  # s2 gzipped again (another time stamp, other bytes)
    again.write_bytes(gzip.compress(gzip.decompress(paths[2].read_bytes()), mtime=1))
    assert model_files.first_copy([paths[2], again]) == (1, 0)
    assert model_files.first_copy(paths) is None and len(read) == 2  # the two copies' pairs only, read in full
