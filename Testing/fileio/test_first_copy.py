"""`checksums.first_copy`: one subject copied under another name, as `iqt train`, `benchmark`, `lesion-check` and
`batch` refuse it: byte-identical files, and a plain file holding a gzipped one's bytes (a training audit: dwi.nii
beside the same scan's dwi.nii.gz was a second subject), without decompressing a cohort of one grid in full (reviews:
one plain file among gzipped ones of that size had every one read, then their first 64 KiB, alike on one grid)."""

from __future__ import annotations

import gzip

import numpy as np

from ImageQualityTransferLib.fileio import checksums


def test_copies_are_found_and_gzips_are_read_only_beside_a_plain_file_to_their_first_difference(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    zero = bytes(400_000)  # one grid: the same header and empty first slices, then each its own brain
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"s{i}.nii.gz")
        paths[-1].write_bytes(gzip.compress(zero + rng.integers(0, 255, 200_000, dtype=np.uint8).tobytes()))
    compared = []
    real = checksums._same_bytes
    monkeypatch.setattr(checksums, "_same_bytes", lambda a, b: compared.append((a, b)) or real(a, b))
    assert checksums.first_copy(paths) is None and compared == []  # gzips alone: none decompressed
    plain = tmp_path / "other.nii"  # another scan of that grid, stored plain
    plain.write_bytes(zero + rng.integers(0, 255, 200_000, dtype=np.uint8).tobytes())
    assert checksums.first_copy(paths + [plain]) is None and len(compared) == 5
    copy = tmp_path / "copy.nii"  # s2 decompressed
    copy.write_bytes(gzip.decompress(paths[2].read_bytes()))
    assert checksums.first_copy(paths + [plain, copy]) == (6, 2)
    twin = tmp_path / "twin.nii.gz"  # a byte-identical copy
    twin.write_bytes(paths[3].read_bytes())
    assert checksums.first_copy(paths + [twin]) == (5, 3)


def test_a_pair_read_side_by_side_stops_at_the_first_difference(tmp_path, monkeypatch):
    """Two scans of one grid differ within the first brain slices: the gzip is not read to its end."""
    body = bytes(2 << 20) + b"\x01" * (4 << 20)
    zipped = tmp_path / "a.nii.gz"
    zipped.write_bytes(gzip.compress(body))
    plain = tmp_path / "b.nii"
    plain.write_bytes(bytes(2 << 20) + b"\x02" * (4 << 20))
    read = []
    real_open = gzip.open

    class Counting:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def read(self, n):
            out = self.f.read(n)
            read.append(len(out))
            return out

    monkeypatch.setattr(gzip, "open", lambda *a, **k: Counting(real_open(*a, **k)))
    assert not checksums._same_bytes(zipped, plain)
    assert sum(read) <= 3 << 20 < len(body)
