"""The `iqt` command's printed lines where stdout's encoding lacks a path's characters (Windows writes
redirected or piped stdout in the ANSI code page; a `wrote` line naming 患者 ended a finished run in an internal error,
exit 1, its outputs written)."""

from __future__ import annotations

import io
import sys

from ImageQualityTransferLib.apps import cli

import helpers


def test_a_wrote_line_the_console_cannot_encode_is_printed_escaped_and_the_exit_is_0(tmp_path, monkeypatch, capsys):
    helpers.tensor_list(tmp_path)
    out = tmp_path / "hr 患者.nii.gz"
    with capsys.disabled():
        buffer = io.BytesIO()
        stdout = io.TextIOWrapper(buffer, encoding="cp1252", write_through=True)  # PYTHONIOENCODING=cp1252, a pipe
        monkeypatch.setattr(sys, "stdout", stdout)
        code = cli.main(["--no-record", "upsample", str(tmp_path / "a_dti.nii.gz"), "-o", str(out), "--method", "cubic"])
        monkeypatch.undo()
    assert code == 0 and out.is_file()
    printed = buffer.getvalue().decode("cp1252")
    assert "wrote " in printed and "hr \\u60a3\\u8005.nii.gz" in printed
