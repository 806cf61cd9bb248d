"""A signal that comes while a run's outputs are renamed into place (fileio.staging._Stage.commit holds SIGINT, SIGTERM and
SIGHUP for the renames) is taken once they are all done: the earlier files set aside are removed first and the 'wrote'
lines are printed, then the run stops with 128 + the signal (the signal, taken before the earlier files were
removed, left seven hidden .iqt-earlier-*.tmp copies beside the outputs and no 'wrote' line, exit 143)."""

from __future__ import annotations

import os
import signal

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.fileio import paths

MAPS = ["up.nii.gz", "up_FA.nii.gz", "up_L1.nii.gz", "up_L2.nii.gz", "up_L3.nii.gz", "up_MD.nii.gz", "up_V1.nii.gz"]


@pytest.fixture
def tensor(tmp_path):
    t = np.zeros((6, 6, 6, 1, 6), np.float32)
    t[..., :] = [1.2e-3, 1e-4, 0.8e-3, 0, 0, 0.6e-3]
    img = nib.Nifti1Image(t, np.diag([-2.0, 2, 2, 1]))
    img.header.set_intent("symmetric matrix")
    nib.save(img, tmp_path / "lr.nii.gz")
    return tmp_path / "lr.nii.gz"


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="signals are held with pthread_sigmask")
@pytest.mark.filterwarnings("ignore")
def test_a_signal_during_the_renames_leaves_the_outputs_whole_and_said(tensor, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    run = ["upsample", str(tensor), "--method", "cubic", "--maps", "-o", str(out / "up.nii.gz")]
    assert main(run) == 0  # a first run's outputs: the second run sets them aside
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    real, sent = os.replace, []

    def replace(src, dst):  # SIGTERM as the first new output is renamed in
        if not sent and os.path.basename(src).startswith(".iqt-") and ".iqt-earlier-" not in str(dst):
            sent.append(dst)
            os.kill(os.getpid(), signal.SIGTERM)
        return real(src, dst)

    monkeypatch.setattr(paths.os, "replace", replace)
    rc = main(run[:-2] + ["--factor", "3", "-o", str(out / "up.nii.gz")])
    monkeypatch.undo()
    said = capsys.readouterr()
    assert sent and rc == 128 + signal.SIGTERM
    assert sorted(p.name for p in out.iterdir()) == MAPS  # before: and seven .iqt-earlier-*.tmp
    assert all((out / name).read_bytes() != first[name] for name in ("up.nii.gz", "up_FA.nii.gz"))  # the new run's
    assert said.out.startswith(f"wrote {out / 'up.nii.gz'}")  # before: nothing printed
    last = said.err.strip().splitlines()[-1]
    assert last.startswith("iqt: stopped by SIGTERM")
    # it had added "no partial output was left", over every output written (a first-contact audit)
    assert "all were written" in last and "no partial output" not in last, last


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="signals are held with pthread_sigmask")
@pytest.mark.filterwarnings("ignore")
def test_a_signal_while_the_wrote_lines_are_printed_says_every_output_was_written(tensor, tmp_path, monkeypatch, capsys):
    """After the renames, while the 'wrote' lines are printed (a pipe slow to drain): every output is in place, and the
    closing line had said 'no partial output was left' (a review of the stop's mend)."""
    import builtins

    from ImageQualityTransferLib.fileio import staging

    sent = []

    def printing(*a, **k):  # SIGTERM as the first 'wrote' line goes out
        builtins.print(*a, **k)
        if not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(staging, "print", printing, raising=False)
    out = tmp_path / "out"
    out.mkdir()
    rc = main(["upsample", str(tensor), "--method", "cubic", "--maps", "-o", str(out / "up.nii.gz")])
    monkeypatch.undo()
    said = capsys.readouterr()
    assert sent and rc == 128 + signal.SIGTERM and sorted(p.name for p in out.iterdir()) == MAPS
    assert "all were written" in said.err.strip().splitlines()[-1], said.err
    wrote = [line for line in said.out.splitlines() if line.startswith("wrote")]  # the maps' line, cut off, said after
    assert len(wrote) == 2 and "up_FA.nii.gz" in wrote[1], said.out


def test_a_run_that_wrote_nothing_never_says_all_were_written():
    """`iqt methods` writes no file: a signal after its (empty) commit had closed with "all were written, as the lines
    above say" (a review)."""
    import argparse

    from ImageQualityTransferLib.apps.cli import _what_is_kept
    from ImageQualityTransferLib.fileio.staging import _Stage

    stage = _Stage()
    stage.committed = True
    args = argparse.Namespace(command="methods")
    assert _what_is_kept(args, stage) == "no partial output was left"
    stage.declared.add("/an/output.nii.gz")
    assert "all were written" in _what_is_kept(args, stage)
