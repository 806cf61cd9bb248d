"""A detached NRRD header's 'data file' beyond one file beside it. Multi-file data ('data file: LIST', or a name
pattern 'slice%d.raw 0 3 1 3') is refused in one line saying so (before: pynrrd's "ValueError: not enough values to
unpack" and "FileNotFoundError: 'slice%d.raw 0 3 1 3'", each called a truncated or damaged file). A data file outside
the header's folder ('../other/x.raw', an absolute path) is read as SimpleITK and Slicer read it, to the same tensors
as the single-file NRRD, and is never replaced by an output (by '..', an absolute path or a symlinked folder)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from helpers import bundle_volume, refused_line
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.errors import IQTError


@pytest.fixture
def case(tmp_path):
    """single.nrrd, and its data in other/x.raw and in four slice files, with the header text to point at them."""
    import nrrd

    single = tmp_path / "single.nrrd"
    fileio.save_tensor(bundle_volume(shape=(4, 4, 4)), single)
    data, hdr = nrrd.read(str(single))
    raw = np.asarray(data, "<f4").tobytes(order="F")
    vec = lambda rows: " ".join("(" + ",".join(repr(float(x)) for x in r) + ")" for r in rows)  # noqa: E731
    header = ("NRRD0004\ntype: float\ndimension: 4\nspace: right-anterior-superior\nsizes: 9 4 4 4\n"
              f"space directions: none {vec(hdr['space directions'][1:])}\nkinds: 3D-matrix domain domain domain\n"
              f"endian: little\nencoding: raw\nspace origin: {vec([hdr['space origin']])}\n"
              f"measurement frame: {vec(hdr['measurement frame'])}\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "other" / "x.raw").write_bytes(raw)
    n = len(raw) // 4
    for i in range(4):
        (tmp_path / f"slice{i}.raw").write_bytes(raw[i * n:(i + 1) * n])
    return tmp_path, single, header


@pytest.mark.parametrize("field", ["LIST 3\nslice0.raw\nslice1.raw\nslice2.raw\nslice3.raw", "LIST",
                                   "slice%d.raw 0 3 1 3", "slice%d.raw 0 3 1"])
def test_multi_file_data_is_refused_in_one_line(capsys, case, field):
    tmp_path, _, header = case
    nhdr = tmp_path / "multi.nhdr"
    nhdr.write_text(header + f"data file: {field}\n")
    with pytest.raises(IQTError, match=r"its image data is split over several files \('data file: "):
        fileio.load_tensor(nhdr)
    out = tmp_path / "hr.nii.gz"
    line = refused_line(capsys, ["upsample", nhdr, "-o", out, "--method", "cubic", "--factor", "2"],
                        f"{nhdr}: its image data is split over several files", "join them into one file")
    assert "truncated" not in line and not out.exists()


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_a_data_file_outside_the_headers_folder_is_read_and_never_replaced(capsys, case, where):
    tmp_path, single, header = case
    data = tmp_path / "other" / "x.raw"
    nhdr = tmp_path / "sub" / "in.nhdr"
    nhdr.write_text(header + f"data file: {'../other/x.raw' if where == 'relative' else data}\n")
    a, b = fileio.load_tensor(single), fileio.load_tensor(nhdr)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.affine, b.affine)
    before = hashlib.sha256(data.read_bytes()).hexdigest()
    (tmp_path / "link").symlink_to(tmp_path / "other")
    for out in (tmp_path / "other" / "x.nhdr", tmp_path / "sub" / ".." / "other" / "x.nhdr", tmp_path / "link" / "x.nhdr"):
        refused_line(capsys, ["upsample", nhdr, "-o", out, "--method", "cubic", "--factor", "2"],
                     "is an input of this run", f"the data file of {nhdr}")
    assert hashlib.sha256(data.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["x.raw"]
