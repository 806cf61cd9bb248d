"""A compressed NRRD's pixel type is read from the format's own table, not from a private pynrrd function: without
that function the bounded reader fell back to pynrrd's reading of all the data, silently (a 1 MB file with a GiB of
zeros after its image read whole); a type that holds no numbers or a multi-byte type without its byte order is one
line."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from helpers import NRRD_TENSOR_HEADER, refused_line
from ImageQualityTransferLib.fileio import nrrd as iqt_nrrd


def _gz(raw: bytes, trailing: int = 0) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    return z.compress(raw) + z.compress(bytes(trailing)) + z.flush()


def _file(tmp_path, header: str, trailing: int = 0, dtype="<f4"):
    d = np.zeros((4, 4, 4, 9), dtype)
    d[..., [0, 4, 8]] = [12, 8, 6] if np.dtype(dtype).kind in "iu" else [1.2e-3, 0.8e-3, 0.6e-3]
    path = tmp_path / "t.nrrd"
    path.write_bytes((header + "\n").encode() + _gz(d.tobytes(), trailing))
    return path


@pytest.mark.filterwarnings("ignore")
def test_the_bounded_read_needs_no_private_pynrrd_function(tmp_path, capsys, monkeypatch):
    import nrrd.reader

    header = NRRD_TENSOR_HEADER.format(encoding="gzip")
    with monkeypatch.context() as m:  # as if a pynrrd release renamed it (pynrrd's own read_data needs it: put back)
        m.delattr(nrrd.reader, "_determine_datatype", raising=False)
        refused_line(capsys, ["upsample", _file(tmp_path, header, trailing=4 << 20), "--method", "linear", "-o",
                              tmp_path / "up.nii.gz"], "more data follows the image its header describes")
    good = _file(tmp_path, header)
    np.testing.assert_allclose(iqt_nrrd.load_tensor_nrrd(good).data[..., 0], 1.2e-3, rtol=1e-6)


@pytest.mark.parametrize("swap,said", [("type: float\n", "type: block\n"), ("endian: little\n", "")],
                         ids=["block", "no-endian"])
def test_a_type_without_numbers_or_byte_order_is_one_line(tmp_path, capsys, swap, said):
    header = NRRD_TENSOR_HEADER.format(encoding="gzip").replace(swap, said)
    words = "not a number type NRRD defines" if said else "gives no byte order"
    refused_line(capsys, ["upsample", _file(tmp_path, header), "--method", "linear", "-o", tmp_path / "up.nii.gz"], words)
    assert not (tmp_path / "up.nii.gz").exists()


def test_big_endian_and_integer_pixels_read_as_pynrrd_reads_them(tmp_path):
    header = NRRD_TENSOR_HEADER.format(encoding="gzip").replace("endian: little", "endian: big")
    big = _file(tmp_path, header, dtype=">f4")
    np.testing.assert_allclose(iqt_nrrd.load_tensor_nrrd(big).data[..., 0], 1.2e-3, rtol=1e-6)


@pytest.mark.parametrize("axis,said", [("none", "space direction 'none'"), ("(nan,0.0,0.0)", "a non-finite space direction")],
                         ids=["none", "nan"])
def test_an_image_axis_without_a_finite_direction_is_said_as_it_is(tmp_path, capsys, axis, said):
    """A NaN in an image axis's direction had been reported as 'none' (a bad-input audit)."""
    header = NRRD_TENSOR_HEADER.format(encoding="gzip").replace("(-2.0,0.0,0.0)", axis)
    refused_line(capsys, ["upsample", _file(tmp_path, header), "--method", "linear", "-o", tmp_path / "up.nii.gz"], said)
    assert not (tmp_path / "up.nii.gz").exists()
