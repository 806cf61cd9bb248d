"""A gzipped NIfTI is read as far as its header says: a 3.3 MB file whose header says 36x36x18 followed by
3 GiB of zeros was read whole into memory (6.37 GB at its peak) and upsampled with exit 0; data after the image is now
refused in one line once a little of it is seen, and a run out of memory while reading says so."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from helpers import refused_line
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.fileio import nifti


def _tensor(tmp_path, trailing: int = 0, name="lr.nii.gz"):
    t = np.zeros((8, 8, 8, 1, 6), np.float32)
    t[..., :] = [1.2e-3, 1e-4, 0.8e-3, 0, 0, 0.6e-3]
    img = nib.Nifti1Image(t, np.diag([-2.0, 2, 2, 1]))
    img.header.set_intent("symmetric matrix")
    path = tmp_path / name
    with gzip.open(path, "wb") as f:  # one gzip stream: the image, then `trailing` zero bytes
        f.write(img.to_bytes())
        for _ in range(trailing >> 20):
            f.write(bytes(1 << 20))
        f.write(bytes(trailing % (1 << 20)))
    return path


@pytest.mark.filterwarnings("ignore")
def test_data_after_the_image_is_refused_without_reading_it(tmp_path, capsys, monkeypatch):
    path = _tensor(tmp_path, trailing=16 << 20)
    served = []
    real_open = gzip.open

    def counting_open(*a, **k):  # the bytes the reader takes from the gzip stream
        f = real_open(*a, **k)
        read = f.read

        def counted(n=-1):
            out = read(n)
            served.append(len(out))
            return out

        f.read = counted
        return f

    monkeypatch.setattr(gzip, "open", counting_open)
    before = sorted(p.name for p in tmp_path.iterdir())
    refused_line(capsys, ["upsample", path, "--method", "linear", "-o", tmp_path / "up.nii.gz"],
                 "more data follows the image its header describes")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert sum(served) < 4 << 20  # of the 16 MiB after the image, not more than nifti.TRAILING_READ was taken


@pytest.mark.filterwarnings("ignore")
def test_a_file_without_trailing_data_still_reads(tmp_path, capsys):
    path = _tensor(tmp_path)
    assert main(["upsample", str(path), "--method", "linear", "-o", str(tmp_path / "up.nii.gz")]) == 0


def test_out_of_memory_while_reading_says_so(tmp_path):
    path = tmp_path / "a.nii"
    path.write_bytes(b"\0" * 400)  # not gzipped: the proxy below is read

    class Proxy:  # a 4.4 GB DWI's data that does not fit
        shape, dtype, offset = (512, 512, 400, 21), np.dtype(np.int16), 352

        def __array__(self, dtype=None, copy=None):
            raise MemoryError()

    class Img:
        dataobj = Proxy()

    with pytest.raises(IQTError, match=r"not enough memory to read the image data \(512x512x400x21 float32, 8.81 GB"):
        nifti.read_data(Img(), path)
