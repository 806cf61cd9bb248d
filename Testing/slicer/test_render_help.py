"""`python -m ImageQualityTransferLib.slicer.render --help` says how it is run and what it draws in whole sentences: its
usage had read `render ...` and its description stopped at a colon, the docstring's first line (a new-user audit)."""

import pytest

from ImageQualityTransferLib.slicer import render


def test_the_help_names_the_command_as_typed_and_says_what_it_draws(capsys):
    with pytest.raises(SystemExit) as done:
        render.main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert out.startswith("usage: python -m ImageQualityTransferLib.slicer.render "), out
    description = " ".join(out.split("\n\n")[1].split())
    assert description.endswith("on a real subject."), description
