"""`iqt train` reads every subject's header and gradient files, and a gzip file's recorded length, before it prepares
any subject: a bad subject listed after good ones is refused in one line at once (a training audit: a bval of the
wrong length had come after the subjects before it were prepared, 24-55 s, and a truncated or damaged dwi.nii.gz as an
internal error, exit 1; a later audit: a trace volume, no b0 or five directions after 10 s to 1 min)."""

from __future__ import annotations

import pytest

from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.dmri import subject as subject_mod


def _bad(tmp_path, kind: str):
    """A subject of its own (another phantom: not a copy, which is refused as such) damaged as `kind` says."""
    import helpers

    bad = tmp_path / kind
    bad.mkdir()
    dwi = bad / "dwi.nii.gz"
    helpers.save_phantom_dwi(dwi, (20, 22, 16), 1)
    if kind == "truncated":
        dwi.write_bytes(dwi.read_bytes()[: dwi.stat().st_size // 2])
    elif kind == "damaged":  # one byte of the gzip's checksum changed: its recorded length still right
        raw = bytearray(dwi.read_bytes())
        raw[-5] ^= 0xFF
        dwi.write_bytes(bytes(raw))
    elif kind == "truncated_plain":
        import gzip

        raw = gzip.decompress(dwi.read_bytes())
        dwi.unlink()
        (bad / "dwi.nii").write_bytes(raw[: len(raw) // 2])
    elif kind == "short_bval":
        values = (bad / "dwi.bval").read_text().split()
        (bad / "dwi.bval").write_text(" ".join(values[:-1]) + "\n")
    elif kind in ("trace", "no_b0", "five_dirs", "one_direction", "b6000", "b1000_6000",
                  "b3051"):  # bval/bvec faults the fit's gradient table refuses
        import numpy as np

        b, g = np.loadtxt(bad / "dwi.bval"), np.loadtxt(bad / "dwi.bvec")
        if kind == "trace":  # the last volume a Philips trace image: b 1000, no direction
            g[:, -1] = 0
        elif kind == "no_b0":
            b[:] = 1000
        elif kind == "five_dirs":
            b[7:] = 0
        elif kind == "b6000":  # its one shell relabelled b=6000: a DTI fit there is biased by kurtosis
            b[b > 0] = 6000
        elif kind == "b1000_6000":  # half its volumes mislabelled b=6000: the lowest shell alone had passed
            b[np.flatnonzero(b > 0)[::2]] = 6000
        elif kind == "b3051":  # above 3000 by more than a shell's spread, said as read (it had said "b = 3100")
            b[b > 0] = 3051
        else:
            g[:, 2:] = g[:, 2:3]
        np.savetxt(bad / "dwi.bval", b[None], fmt="%g")
        np.savetxt(bad / "dwi.bvec", g, fmt="%.8g")
    return bad


@pytest.mark.parametrize("kind, said", [("truncated", "the file may be truncated or damaged"),
                                        ("truncated_plain", "the file may be truncated or damaged"),
                                        ("damaged", "the file may be truncated or damaged"),
                                        ("short_bval", "volumes but dwi.bval has"),
                                        ("trace", "has a zero gradient direction"),
                                        ("no_b0", "no b=0 volume"),
                                        ("five_dirs", "only 5 diffusion-weighted volumes"),
                                        ("one_direction", "determine only 1 of the tensor's 6 elements"),
                                        ("b6000", "holds b = 6000 s/mm^2, above the 3000"),
                                        ("b1000_6000", "holds b = 6000 s/mm^2, above the 3000"),
                                        ("b3051", "holds b = 3051 s/mm^2, above the 3000")])
def test_a_bad_subject_is_refused_before_any_subject_is_prepared(tmp_path, small_subject, capsys, monkeypatch, kind,
                                                                  said):
    bad = _bad(tmp_path, kind)
    prepared = []
    real = subject_mod.load_subject
    monkeypatch.setattr(subject_mod, "load_subject", lambda *a, **k: prepared.append(a) or real(*a, **k))
    out = tmp_path / "model.npz"
    code = cli.main(["--threads", "1", "train", "--method", "rf", "--subjects", str(small_subject), str(bad),
                     "--factor", "2", "-o", str(out), "--n-trees", "2", "--n-train", "2000"])
    err = capsys.readouterr().err
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err
    assert str(bad / "dwi.nii") in err, err  # the subject named
    assert not prepared and not out.exists() and not out.with_suffix(".json").exists()


def test_a_gzip_shorter_than_its_header_says_is_told_by_its_recorded_length(tmp_path, monkeypatch):
    """check_dwi reads a whole file only where its length disagrees with the header: a truncated gzip is refused by
    that read (its recorded length is not the header's), a whole one is not read at all."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.fileio import volumes

    good, cut = _bad(tmp_path, "good") / "dwi.nii.gz", _bad(tmp_path, "truncated") / "dwi.nii.gz"
    reads = []
    real = volumes.read_data
    monkeypatch.setattr(volumes, "read_data", lambda *a, **k: reads.append(a[1]) or real(*a, **k))
    fileio.check_dwi(good)
    assert reads == []
    with pytest.raises(IQTError, match="truncated or damaged"):
        fileio.check_dwi(cut)
    assert reads == [cut]


def test_a_training_subject_whose_bvec_looks_like_another_frame_is_said_once(tmp_path, small_subject, capsys):
    """Training runs `iqt fit`'s gradient-table check on each subject's fit as it prepares it (dmri/subject.py
    check_subject_table): one warning line naming the subject's bvec and its fix (an audit: it had trained on
    mirrored tensors without a word); the right table says nothing."""
    import numpy as np

    import helpers

    bad = tmp_path / "x_flipped"
    bad.mkdir()
    helpers.save_phantom_dwi(bad / "dwi.nii.gz", (32, 36, 28), 1)  # white matter enough to judge (20x22x16: not)
    bvec = bad / "dwi.bvec"
    np.savetxt(bvec, np.loadtxt(bvec) * [[-1.0], [1.0], [1.0]], fmt="%.10g")
    out = tmp_path / "model.npz"
    code = cli.main(["--threads", "1", "train", "--method", "global-linear", "--subjects", str(small_subject), str(bad),
                     "--factor", "2", "-o", str(out)])
    said = helpers.table_looks_wrong(capsys.readouterr().err.splitlines())
    assert code == 0 and len(said) == 1, said
    assert str(bad / "dwi.nii.gz") in said[0] and f"negate the first row (x) of {bvec}" in said[0]


def test_the_training_b_check_reads_the_highest_b_as_an_hcp_series_holds_it():
    """HCP's b = 1000/2000/3000 shells, read as scanned (5, 995 ... 3010), still train; b = 100 + 4000 had passed, the
    lowest shell alone checked."""
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.dmri.dti import check_training_shells

    check_training_shells([5, 995, 1005, 1990, 2005, 2995, 3000, 3010])
    with pytest.raises(IQTError, match=r"^dwi.bval: holds b = 4000 s/mm\^2, above the 3000 "):
        check_training_shells([0, 100, 100, 4000, 4000], "dwi.bval: ")


def test_the_training_b_refusal_says_the_limit_as_applied_and_a_tool_that_drops_the_volumes():
    """It told to "train on a series without the volumes above b = 3000", which iqt train (no --bmax) gives no way to do,
    and said 3000 where b up to 3050 passes (a review): the limit with its spread, and the cutoff to keep the volumes
    under, not shells: a 3000 shell spread to 3060 had been told 'dwiextract -shells 0,3000', which may group 2990 and
    3060 as one shell and keep 3060 (a review); a series with no volume up to it is told to check its bval file."""
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.dmri.dti import check_training_shells

    for bvals in ([5, 995, 1005, 1990, 2010, 3005, 4000, 4010], [0, 2990, 2990, 3060, 3060]):
        with pytest.raises(IQTError) as err:
            check_training_shells(bvals, "dwi.bval: ")
        said = str(err.value)
        assert "above the 3000 (3050 with a shell's spread)" in said, said
        assert "keeps only the b0s and the volumes with b at or under 3050 s/mm^2" in said and "-shells" not in said, said
        # no tool that selects by shell, as dwiextract and select_dwi_vols do (the same grouping trap: a review)
        assert "dwiextract" not in said and "select_dwi_vols" not in said and "a short script over the bval" in said, said
    with pytest.raises(IQTError) as err:
        check_training_shells([0, 6000, 6000], "dwi.bval: ")
    assert "dwiextract" not in str(err.value) and "check the bval file" in str(err.value), err.value
