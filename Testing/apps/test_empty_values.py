"""An empty value ("", what an unset "$VAR" gives) for any option or argument of `iqt`: refused in one line naming it,
exit 2, before any work. It had read as the option left out (no uncertainty map, no mask, no JSON, the sidecars for
--bval) or, for -o, as the current folder, where `iqt demo` replaced the user's mask.nii.gz; all with exit 0."""

from __future__ import annotations

import argparse

import pytest

from helpers import five_d_tensor
from ImageQualityTransferLib.apps.cli import build_parser, main

CASES = [
    (["upsample", "lr.nii.gz", "--method", "biqt", "--uncertainty", "", "-o", "up.nii.gz"], "--uncertainty ''"),
    (["upsample", "lr.nii.gz", "--mask", "", "-o", "up.nii.gz"], "--mask ''"),
    (["upsample", "lr.nii.gz", "--mask=", "-o", "up.nii.gz"], "--mask ''"),
    (["upsample", "", "-o", "up.nii.gz"], "input ''"),
    (["demo", "--methods", "cubic", "-o", ""], "-o/--output ''"),
    (["fit", "{subject}/dwi.nii.gz", "--mask-out", "", "-o", "dti.nii.gz"], "--mask-out ''"),
    (["fit", "{subject}/dwi.nii.gz", "--bval", "", "--bvec", "", "-o", "dti.nii.gz"], "--bval ''"),
    (["evaluate", "lr.nii.gz", "lr.nii.gz", "--json", ""], "--json ''"),
    (["propagate", "lr.nii.gz", "--seeds", "", "-o", "prop"], "--seeds ''"),
    (["batch", "lr.nii.gz", "-o", "out", "--participant-label", "01", ""], "--participant-label ''"),
]


@pytest.mark.parametrize("argv, named", CASES, ids=[f"{c[0][0]}:{c[1]}" for c in CASES])
def test_an_empty_value_is_refused_in_one_line_before_any_work(argv, named, tmp_path, monkeypatch, capsys,
                                                               small_subject):
    monkeypatch.chdir(tmp_path)
    five_d_tensor(tmp_path / "lr.nii.gz")
    (tmp_path / "mask.nii.gz").write_bytes(b"the user's own file")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    capsys.readouterr()
    rc = main([a.format(subject=small_subject) for a in argv])
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"iqt: error: {named}: an empty value") and "internal error" not in err, err
    assert out == ""
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_no_option_takes_an_empty_value():
    """The refusal holds for every option because none has "" as its default or its meaning."""
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sp in [("iqt", parser), *subs.choices.items()]:
        for action in sp._actions:
            assert action.default != "" and action.const != "", (name, action.option_strings or action.dest)
