"""Output paths: the refusal of an output that is an input names that input (a hard link included)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from helpers import bundle_volume
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.core.volume import Volume


def test_a_hard_link_to_an_input_is_refused_naming_the_input(tmp_path):
    """`-o out_hard.nii.gz`, a hard link to the input lr_copy.nii.gz, was refused as 'an input of this run
    (out_hard.nii.gz)', its own name; the message names the input it is."""
    src = tmp_path / "lr_copy.nii.gz"
    src.write_bytes(b"not read here")
    link = tmp_path / "out_hard.nii.gz"
    os.link(src, link)
    plan = fileio.Outputs(src)
    plan.add(link, what="tensor output")
    with pytest.raises(IQTError) as err:
        plan.check()
    message = str(err.value)
    assert message.startswith(f"{link}: is an input of this run ({src})"), message


@pytest.mark.parametrize("name", [".nii.gz", ".nii", ".NII.GZ", ".nrrd"])
def test_an_output_named_by_its_suffix_alone_is_refused(tmp_path, capsys, name):
    """`-o .nii.gz` had written a hidden file with no name."""
    from ImageQualityTransferLib.apps.cli import main

    lr = tmp_path / "lr.nii.gz"
    fileio.save_tensor(bundle_volume(shape=(6, 6, 6)), lr)
    code = main(["upsample", str(lr), "--method", "cubic", "-o", str(tmp_path / name)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines() == [
        f"iqt: error: {tmp_path / name}: the tensor output's name is its suffix alone, a hidden file with no name; "
        f"give a name before it, e.g. {tmp_path / ('out' + name)}"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.nii.gz"]
    fileio.check_output(tmp_path / "x.nii.gz")  # one character before it: taken


@pytest.mark.parametrize("argv, refused, given", [
    (["mask", "{lr}", "-o", "{d}/m.nrrd"], "the mask output", "{d}/m.nii.gz"),
    (["fit", "{lr}", "-o", "{d}/t.nrrd", "--mask-out", "{d}/m.nhdr"], "the mask output", "{d}/m.nii.gz"),
    (["fit", "{lr}", "-o", "{d}/t.nrrd", "--mask-out", "{d}/.nrrd"], "the mask output", "{d}/out.nii.gz"),
    (["degrade", "{lr}", "-o", "{d}/t.nii.gz", "--mask-out", "{d}/u.nii.nrrd"], "the mask output", "{d}/u.nii.gz"),
    (["mask", "{lr}", "-o", "{d}/x.nii.gz.nrrd"], "the mask output", "{d}/x.nii.gz"),  # was x.nii.gz.nii.gz
    (["mask", "{lr}", "-o", "{d}/..nrrd"], "the mask output", "{d}/out.nii.gz"),  # was the hidden ..nii.gz
])
def test_a_nrrd_name_for_a_nifti_output_says_what_it_is_and_gives_a_name_that_is_taken(tmp_path, capsys, argv,
                                                                                      refused, given):
    """A mask named .nrrd was told 'NRRD is written for the tensor output (-o) only; maps are NIfTI' (its -o, no
    map), '.nrrd' was given '.nii.gz' (itself refused) and 'u.nii.nrrd' 'u.nii.nii.gz'. A mask stays NIfTI: NRRD is
    written for tensors and `iqt upsample --uncertainty`'s maps (Testing/fileio/test_nrrd_maps.py)."""
    from ImageQualityTransferLib.apps.cli import main

    lr = tmp_path / "lr.nii.gz"
    lr.write_bytes(b"refused before it is read")
    code = main([a.format(lr=lr, d=tmp_path) for a in argv])
    lines = capsys.readouterr().err.strip().splitlines()
    given = given.format(d=tmp_path)
    assert code == 2 and len(lines) == 1 and f"; {refused} is NIfTI (which Slicer loads too) or MRtrix's .mif: give {given}" in lines[0] \
        and lines[0].endswith(given) and "NRRD is written for tensor outputs and 'iqt upsample --uncertainty' maps " \
        "only" in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.nii.gz"]
    fileio.check_output(given)  # the name given is taken


def _nhdr_plan(tmp_path, name="u.nhdr", what="std map"):
    return fileio.Outputs(tmp_path / "t.nii.gz").add(tmp_path / name, fileio.TENSOR_SUFFIXES, what)


def test_a_file_at_a_detached_outputs_data_file_name_is_kept_unless_the_header_there_names_it(tmp_path, capsys):
    """u.raw.gz, another program's file or another header's data file, had been replaced by `--uncertainty u.nhdr`
    (or `-o u.nhdr`) without a word; the data file u.nhdr names (an earlier run's) is still written over."""
    from helpers import run_cli

    (tmp_path / "u.raw.gz").write_bytes(b"precious")
    with pytest.raises(IQTError, match=r"u.raw.gz: already there, with no u.nhdr naming it as its data file, which "
                                       r"the std map .*u.nhdr would replace"):
        _nhdr_plan(tmp_path)
    (tmp_path / "other.nhdr").write_bytes(b"NRRD0004\ntype: float\ndimension: 1\nsizes: 2\nencoding: gzip\n"
                                          b"data file: u.raw.gz\n\n")
    with pytest.raises(IQTError, match="u.raw.gz: already there, the data file of other.nhdr"):
        _nhdr_plan(tmp_path)
    vol = bundle_volume(np.eye(4), shape=(2, 2, 2))
    fileio.save_tensor(vol, tmp_path / "t.nii.gz")
    code, _, err = run_cli(capsys, "upsample", tmp_path / "t.nii.gz", "--method", "cubic", "--factor", "2", "-o",
                           tmp_path / "u.nhdr")
    assert code == 2 and err.count("\n") == 1 and "already there, the data file of other.nhdr" in err, err
    assert (tmp_path / "u.raw.gz").read_bytes() == b"precious" and not (tmp_path / "u.nhdr").exists()
    fileio.save_scalar(vol.replace(data=np.ones((2, 2, 2), np.float32), kind="scalar"), tmp_path / "e.nhdr", "iqt x")
    assert _nhdr_plan(tmp_path, "e.nhdr") == tmp_path / "e.nhdr"  # an earlier run's own: rewritten


def _header(data: str, more: str = "") -> bytes:
    return f"NRRD0004\ntype: float\ndimension: 1\nsizes: 2\nencoding: gzip\n{more}data file: {data}\n\n".encode()


def test_a_rerun_replaces_the_data_file_its_header_names_whoever_wrote_the_header(tmp_path):
    """A .nhdr re-saved in place by Slicer (its volumes logic's storage node drops iqt_made_by and iqt_run, keeps
    'data file: o.raw.gz') or written by fileio.save_tensor had its rerun refused: 'o.raw.gz: already there, not the
    data file of an earlier iqt o.nhdr' (o.nhdr names it). The header is replaced as `-o` replaces any file."""
    vol = bundle_volume(np.eye(4), shape=(2, 2, 2))
    fileio.save_tensor(vol, tmp_path / "api.nhdr")  # no iqt_ fields
    assert b"iqt_" not in (tmp_path / "api.nhdr").read_bytes()
    assert _nhdr_plan(tmp_path, "api.nhdr", "tensor output") == tmp_path / "api.nhdr"
    (tmp_path / "o.raw.gz").write_bytes(b"the data")
    (tmp_path / "o.nhdr").write_bytes(_header("o.raw.gz"))  # as Slicer re-saves it
    assert _nhdr_plan(tmp_path, "o.nhdr", "tensor output") == tmp_path / "o.nhdr"
    (tmp_path / "o.nhdr").write_bytes(_header("elsewhere.raw.gz"))  # it names another file: o.raw.gz is not its
    with pytest.raises(IQTError, match=r"o.raw.gz: already there, not the data file o.nhdr names, which the tensor "):
        _nhdr_plan(tmp_path, "o.nhdr", "tensor output")


def test_a_data_file_another_header_names_too_is_kept_though_the_outputs_header_names_it(tmp_path):
    """`cp o.nhdr backup.nhdr`, then a rerun `-o o.nhdr`: o.raw.gz was replaced without a word, changing what
    backup.nhdr shows."""
    (tmp_path / "o.raw.gz").write_bytes(b"the data")
    (tmp_path / "o.nhdr").write_bytes(_header("o.raw.gz", "iqt_run:=an earlier run\n"))
    (tmp_path / "backup.nhdr").write_bytes((tmp_path / "o.nhdr").read_bytes())
    with pytest.raises(IQTError) as refused:
        _nhdr_plan(tmp_path, "o.nhdr", "tensor output")
    said = str(refused.value)
    assert said.startswith(f"{tmp_path / 'o.raw.gz'}: the data file of o.nhdr and also of backup.nhdr, which the "
                           f"tensor output {tmp_path / 'o.nhdr'} would replace") and "\n" not in said, said
    assert (tmp_path / "o.raw.gz").read_bytes() == b"the data"


def test_a_copy_of_the_header_is_found_however_many_files_the_folder_holds(tmp_path):
    """The scan for another header naming the data file stopped after 1000 entries in listing order: in a folder of
    3000 files a copy of o.nhdr beyond them was missed, and the rerun replaced o.raw.gz, which the copy shows."""
    (tmp_path / "o.raw.gz").write_bytes(b"the data")
    (tmp_path / "o.nhdr").write_bytes(_header("o.raw.gz"))
    real = os.scandir

    class Entry:  # a NIfTI file listed (none is there: the scan skips it by its name)
        def __init__(self, name):
            self.name, self.path = name, str(tmp_path / name)

    def copy_listed_last(folder):  # 1500 files listed first, the copy last (listing order is the disk's)
        with real(folder) as entries:
            listed = [Entry(f"sub{i:04d}.nii.gz") for i in range(1500)]
            listed += sorted(entries, key=lambda e: e.name == "backup.nhdr")

        class Listing(list):
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False
        return Listing(listed)

    (tmp_path / "backup.nhdr").write_bytes(_header("o.raw.gz"))
    from unittest import mock
    with mock.patch("os.scandir", copy_listed_last), pytest.raises(IQTError, match="also of backup.nhdr"):
        _nhdr_plan(tmp_path, "o.nhdr", "tensor output")
    assert (tmp_path / "o.raw.gz").read_bytes() == b"the data"


def test_the_scan_for_another_header_reads_only_each_files_header(tmp_path, monkeypatch):
    """Each rerun of a .nhdr output read 1 MiB of every .nrrd in the folder (a folder of 1000 attached .nrrd of 1.1 MB
    took 17 s, not 6 s); a file that does not start with 'NRRD' is not read past its first bytes."""
    import io

    from ImageQualityTransferLib.fileio import paths

    (tmp_path / "big.nrrd").write_bytes(_header("x").replace(b"data file: x\n", b"") + bytes(5 << 20))
    (tmp_path / "big_other.nhdr").write_bytes(b"not a NRRD header" + bytes(5 << 20))
    (tmp_path / "o.nhdr").write_bytes(_header("o.raw.gz"))
    (tmp_path / "o.raw.gz").write_bytes(b"the data")
    read = {}

    class Counting(io.FileIO):
        def readinto(self, b):
            n = super().readinto(b)
            read[Path(self.name).name] = read.get(Path(self.name).name, 0) + (n or 0)
            return n

    def counting_open(file, mode="r", buffering=-1, *args, **kwargs):
        assert mode == "rb"
        return io.BufferedReader(Counting(str(file), "r"), buffer_size=buffering if buffering > 0 else 8192)

    monkeypatch.setattr(paths, "open", counting_open, raising=False)
    assert _nhdr_plan(tmp_path, "o.nhdr", "tensor output") == tmp_path / "o.nhdr"
    assert read["big.nrrd"] <= 8192 and read["big_other.nhdr"] <= 8192, read


def test_an_output_header_linked_to_another_header_keeps_that_headers_data(tmp_path):
    """o.nhdr -> keep.nhdr, keep.nhdr naming o.raw.gz: the rerun `-o o.nhdr` replaced the link and o.raw.gz, and
    keep.nhdr showed the new data; a linked output is now refused as such (Testing/fileio/test_output_links.py)."""
    (tmp_path / "o.raw.gz").write_bytes(b"the data")
    (tmp_path / "keep.nhdr").write_bytes(_header("o.raw.gz"))
    (tmp_path / "o.nhdr").symlink_to("keep.nhdr")
    with pytest.raises(IQTError, match=r"o.nhdr: is a symbolic link \(to keep.nhdr\)"):
        _nhdr_plan(tmp_path, "o.nhdr", "tensor output")
    assert (tmp_path / "o.raw.gz").read_bytes() == b"the data"


def test_a_leftover_of_the_other_compression_is_replaced_where_no_header_names_it(tmp_path):
    """After Slicer re-saved o.nhdr uncompressed (it names o.raw), the first run's o.raw.gz is left over; the rerun
    had been refused 'o.raw.gz: already there, not the data file o.nhdr names'. Named after the output and named by no
    header, it is that output's earlier data, and is replaced; named by another header, it is kept."""
    (tmp_path / "o.raw.gz").write_bytes(b"the first run's data")
    (tmp_path / "o.raw").write_bytes(b"the re-saved data")
    (tmp_path / "o.nhdr").write_bytes(_header("o.raw"))
    assert _nhdr_plan(tmp_path, "o.nhdr", "tensor output") == tmp_path / "o.nhdr"
    (tmp_path / "backup.nhdr").write_bytes(_header("o.raw.gz"))
    with pytest.raises(IQTError, match=r"o.raw.gz: already there, the data file of backup.nhdr"):
        _nhdr_plan(tmp_path, "o.nhdr", "tensor output")


@pytest.mark.parametrize("name", ["é.nhdr", "a\nb.nhdr", " u.nhdr"])
def test_a_detached_output_whose_data_file_name_no_reader_reads_back_is_refused(tmp_path, name):
    """The data file's name is written into the header, which pynrrd reads as ASCII (dropping 'é': another file's
    name) and a newline ends; it had ended in 'internal error: UnicodeEncodeError' after the work, or written a header
    no reader reads. Refused before any work, in one line."""
    with pytest.raises(IQTError) as refused:
        _nhdr_plan(tmp_path, name, "tensor output")
    said = str(refused.value)
    assert "\n" not in said and "plain ASCII" in said and "give the tensor output such a name, or a .nrrd" in said, said
    assert _nhdr_plan(tmp_path, "é.nrrd") == tmp_path / "é.nrrd"  # one file: no name inside it


@pytest.mark.parametrize("name, given", [("LIST.nhdr", "List.nhdr"), ("LISTing.nhdr", "Listing.nhdr"),
                                         ("a%d.nhdr", "a_d.nhdr"), ("x%03d 1 2 1.nhdr", "x_03d 1 2 1.nhdr"),
                                         ("a%%%d.nhdr", "a___d.nhdr")])
def test_a_detached_output_whose_data_file_name_slicer_reads_as_a_file_list_is_refused(tmp_path, name, given):
    """`-o LIST.nhdr` wrote 'data file: LIST.raw.gz', which Teem (Slicer's NRRD reader) takes as a list of files:
    slicer-core's AddArchetypeVolume returned None, as for a '%d' pattern. Refused before any work, in one line, with
    a name to give."""
    with pytest.raises(IQTError) as refused:
        _nhdr_plan(tmp_path, name, "tensor output")
    said = str(refused.value)
    assert "\n" not in said and "as a list of files" in said and \
        f"give the tensor output another name, e.g. {tmp_path / given}, or a .nrrd" in said, said
    assert _nhdr_plan(tmp_path, given, "tensor output") == tmp_path / given


@pytest.mark.parametrize("name", ["LIST.nhdr", "a%d.nhdr", "é.nhdr"])
def test_the_python_api_refuses_a_detached_name_slicer_cannot_load_as_the_commands_do(tmp_path, name):
    """`fileio.save_tensor(vol, "LIST.nhdr")` (or save_scalar) called from Python wrote 'data file: LIST.raw.gz',
    which Slicer cannot load (the commands refuse it, `Outputs.add`): a ValueError now, in the commands' one line,
    nothing written."""
    from ImageQualityTransferLib.core.volume import Volume

    vol = bundle_volume(shape=(4, 4, 3))
    scalar = Volume(vol.data[..., 0], vol.affine, "scalar")
    for save, what in ((fileio.save_tensor, vol), (fileio.save_scalar, scalar), (fileio.save_mask, scalar)):
        with pytest.raises(ValueError) as refused:
            save(what, tmp_path / name)
        said = str(refused.value)
        assert isinstance(refused.value, IQTError) and "\n" not in said and said.startswith(str(tmp_path / name)), said
        assert "as a list of files" in said or "plain ASCII" in said, said
        assert list(tmp_path.iterdir()) == []
    fileio.save_tensor(vol, tmp_path / "list.nhdr")  # read as one data file: written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.nhdr", "list.raw.gz"]


@pytest.mark.parametrize("name", ["list.nhdr", "xLIST.nhdr", "100%.nhdr", "a%s%d.nhdr", "a%%d.nhdr", "a%-3d.nhdr",
                                  "LIST.nrrd", "a b.nhdr"])
def test_a_detached_output_name_slicer_reads_as_one_file_is_taken(tmp_path, name):
    """Teem reads these as one data file (slicer-core loaded each); a .nrrd names no data file."""
    assert _nhdr_plan(tmp_path, name, "tensor output") == tmp_path / name


@pytest.mark.parametrize("data", ["u.raw.gz", "u_direction.raw.gz"])
def test_a_folder_at_a_detached_outputs_data_file_name_is_refused_before_any_work(tmp_path, data):
    """It had been found at the final rename, after all the work."""
    (tmp_path / data).mkdir()
    name = data.replace(".raw.gz", ".nhdr")
    with pytest.raises(IQTError, match=f"{data}: is a folder, where the std map .*{name} writes its data file"):
        _nhdr_plan(tmp_path, name)


def test_the_output_checks_in_the_docs_name_the_data_file_name_refusals():
    """docs/command-line.md's list of output checks had the foreign-data-file rule only; the refusals of a data file
    name no reader reads back (check_data_name) and of a folder at it (check_data_file) were in CHANGELOG.md alone."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "command-line.md").read_text(encoding="utf-8")
    outputs = page.split("## Outputs", 1)[1].split("\n## ", 1)[0]
    for said in ("a folder at a `.nhdr` output's data file name", "is not plain ASCII, holds a line break or edge "
                 "spaces", "starting with `LIST`", "a `%d` pattern", "the data file the header already at that name "
                 "names"):
        assert said in outputs, said


@pytest.mark.parametrize("argv, says", [
    (["propagate", "{lr}", "-o", "{d}/s1", "--method", "biqt", "--samples", "2", "--mask", "{d}/s1/visitation.nii.gz"],
     "give another output folder (-o), or a copy of that input from another folder"),
    (["upsample", "{lr}", "-o", "{d}/hr.nii.gz", "--method", "biqt", "--propagate", "--samples", "2", "--mask",
      "{d}/hr_visitation.nii.gz"], "give the output another name (-o; its maps are named after it), or a copy of"),
])
def test_an_input_at_a_map_name_the_run_makes_is_told_what_can_be_changed(tmp_path, capsys, argv, says):
    """`iqt propagate --mask s1/visitation.nii.gz -o s1` had been told to "write the propagation visitation to another
    file", a name -o (a folder) does not give: it says to give another folder, or the input from elsewhere."""
    from ImageQualityTransferLib.apps.cli import main

    lr = tmp_path / "lr.nii.gz"
    vol = bundle_volume(shape=(6, 6, 6))
    fileio.save_tensor(vol, lr)
    (tmp_path / "s1").mkdir()
    for mask in ("s1/visitation.nii.gz", "hr_visitation.nii.gz"):
        fileio.save_scalar(Volume(np.ones(vol.shape3, np.float32), vol.affine, "mask"), tmp_path / mask)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = main([a.format(lr=lr, d=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is an input of this run" in err and says in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
