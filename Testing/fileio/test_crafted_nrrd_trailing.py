"""A compressed NRRD is decompressed only as far as its header says (as for NIfTI): pynrrd decompressed all of
it into memory, so a 1 MB .nrrd whose header says 9x4x4x4 followed by 1 GiB of zeros took 2.16 GB before it was refused;
data after the image is now refused in one line once a little of it is seen."""

from __future__ import annotations

import gzip
import zlib

import numpy as np
import pytest

from helpers import NRRD_TENSOR_HEADER, refused_line
from ImageQualityTransferLib.fileio import nrrd as iqt_nrrd

HEADER = NRRD_TENSOR_HEADER.format(encoding="gzip")


def _payload() -> bytes:
    d = np.zeros((4, 4, 4, 9), "<f4")
    d[..., [0, 4, 8]] = [1.2e-3, 0.8e-3, 0.6e-3]
    return d.tobytes()


def _gz(raw: bytes, trailing: int) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    out = [z.compress(raw)]
    for _ in range(trailing >> 20):
        out.append(z.compress(bytes(1 << 20)))
    return b"".join(out + [z.flush()])


def _counting(monkeypatch):
    """The bytes taken out of every gzip stream the reader opens."""
    served, real = [], gzip.GzipFile.read

    def read(self, size=-1):
        out = real(self, size)
        served.append(len(out))
        return out

    monkeypatch.setattr(gzip.GzipFile, "read", read)
    return served


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("detached", [False, True], ids=["nrrd", "nhdr"])
def test_data_after_the_image_is_refused_without_decompressing_it(tmp_path, capsys, monkeypatch, detached):
    data = _gz(_payload(), 16 << 20)
    if detached:
        path = tmp_path / "t.nhdr"
        path.write_text(HEADER + "data file: t.raw.gz\n\n")
        (tmp_path / "t.raw.gz").write_bytes(data)
    else:
        path = tmp_path / "t.nrrd"
        path.write_bytes((HEADER + "\n").encode() + data)
    served = _counting(monkeypatch)
    before = sorted(p.name for p in tmp_path.iterdir())
    refused_line(capsys, ["upsample", path, "--method", "linear", "-o", tmp_path / "up.nii.gz"],
                 "more data follows the image its header describes")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert sum(served) < 4 << 20, sum(served)  # of the 16 MiB after the image, at most TRAILING_READ


@pytest.mark.filterwarnings("ignore")
def test_a_compressed_nrrd_without_trailing_data_still_reads(tmp_path):
    path = tmp_path / "t.nrrd"
    path.write_bytes((HEADER + "\n").encode() + _gz(_payload(), 0))
    vol = iqt_nrrd.load_tensor_nrrd(path)
    assert vol.shape3 == (4, 4, 4)
    assert np.allclose(vol.data[0, 0, 0], [1.2e-3, 0, 0.8e-3, 0, 0, 0.6e-3], atol=1e-9)
    short = tmp_path / "s.nrrd"  # data cut short: refused as before
    short.write_bytes((HEADER + "\n").encode() + _gz(_payload()[:-36], 0))
    with pytest.raises(Exception, match="cannot be read as NRRD"):
        iqt_nrrd.load_tensor_nrrd(short)
