"""A detached NRRD header's data file is a file of the run: an input `.nhdr` whose data file is `x.raw.gz`
and the output `x.nhdr` (written beside `x.raw.gz`) replaced the input's data with exit 0; the data file an input header
names is an input, the one an output header is written beside an output, both checked before any work."""

from __future__ import annotations

import pytest

from helpers import five_d_tensor
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.fileio.paths import Outputs


def _state(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def nhdr_input(tmp_path):
    """in.nhdr, its data in x.raw.gz (a header renamed after it was written, as the audit's was)."""
    five_d_tensor(tmp_path / "lr.nii.gz")
    assert main(["upsample", str(tmp_path / "lr.nii.gz"), "--method", "linear", "-o", str(tmp_path / "src.nhdr")]) == 0
    (tmp_path / "src.raw.gz").rename(tmp_path / "x.raw.gz")
    text = (tmp_path / "src.nhdr").read_text().replace("data file: src.raw.gz", "data file: x.raw.gz")
    (tmp_path / "in.nhdr").write_text(text)
    (tmp_path / "src.nhdr").unlink()
    (tmp_path / "lr.nii.gz").unlink()
    return tmp_path / "in.nhdr"


@pytest.mark.filterwarnings("ignore")
def test_an_nhdr_output_never_replaces_the_data_file_of_an_input(nhdr_input, tmp_path, capsys):
    before = _state(tmp_path)
    capsys.readouterr()
    rc = main(["upsample", str(nhdr_input), "--method", "linear", "-o", str(tmp_path / "x.nhdr")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert _state(tmp_path) == before  # nothing written, the input's data as it was
    line = [ln for ln in err.splitlines() if ln.strip()]
    assert len(line) == 1 and "x.raw.gz" in line[0] and "in.nhdr" in line[0] and "input" in line[0], err


@pytest.mark.filterwarnings("ignore")
def test_the_wrote_line_names_the_data_file(nhdr_input, tmp_path, capsys):
    capsys.readouterr()
    assert main(["upsample", str(nhdr_input), "--method", "linear", "-o", str(tmp_path / "y.nhdr")]) == 0
    out = capsys.readouterr().out
    assert "y.raw.gz" in out and (tmp_path / "y.raw.gz").is_file()
    assert (tmp_path / "x.raw.gz").is_file()


def test_the_data_file_a_header_names(tmp_path):
    from ImageQualityTransferLib.fileio.paths import nrrd_data_file

    h = tmp_path / "a.nhdr"
    h.write_bytes(b"NRRD0004\n# data file: no.raw\ntype: float\nkey:=data file: no\ndatafile: sub/d.raw.gz\n\nxx")
    assert nrrd_data_file(h) == tmp_path / "sub" / "d.raw.gz"
    h.write_bytes(b"NRRD0004\ntype: float\ndata file: /abs/d.raw\n\n")
    assert str(nrrd_data_file(h)) == "/abs/d.raw"
    h.write_bytes(b"NRRD0004\ntype: float\n\ndata file: after.raw\n")  # after the header: data, not a field
    assert nrrd_data_file(h) is None
    assert Outputs(h).inputs == [h]
    h.write_bytes(b"NRRD0004\ntype: float\ndata file: b.raw.gz\n\n")
    assert Outputs(h).inputs == [h, tmp_path / "b.raw.gz"]
    with pytest.raises(IQTError, match="b.raw.gz .the data file of the tensor output .*b.nhdr.: is an input"):
        Outputs(h).add(tmp_path / "b.nhdr", (".nhdr",), "tensor output")
