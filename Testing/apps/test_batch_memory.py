"""`iqt batch` and memory: each subject's need, from its header as `iqt upsample` judges it, checked against a local
worker's --memory-limit before the cluster starts (--memory-limit 1GiB had failed an Elition subject after 73 s, the
need unsaid), one warning line for --memory-limit x --workers above the machine's memory; and a worker that cannot get
memory or address space (ulimit -v: "can't start new thread") named so, not blamed on the installation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("distributed")

from helpers import bundle_volume, refused_line  # noqa: E402
from ImageQualityTransferLib import fileio  # noqa: E402
from ImageQualityTransferLib.core.errors import IQTWarning  # noqa: E402


def _subject(tmp_path, shape=(48, 48, 48)):
    """A list of one tensor file (cubic x2 of 48^3: about 0.58 GiB at its peak, core/grid.py output_need)."""
    fileio.save_tensor(bundle_volume(shape=shape), tmp_path / "a_dti.nii.gz")
    (tmp_path / "list.txt").write_text("a_dti.nii.gz\n")
    return tmp_path / "list.txt"


def test_a_subject_past_a_workers_memory_limit_is_refused_before_the_cluster_starts(tmp_path, capsys):
    listed, out = _subject(tmp_path), tmp_path / "deriv"
    line = refused_line(capsys, ["batch", listed, "-o", out, "--method", "cubic", "--workers", "1",
                                 "--memory-limit", "600MiB"],
                        "sub-adti (", "needs about 0.6 GiB", "--memory-limit 600MiB", "give --memory-limit 1GiB or more")
    assert "leave that subject out" in line and not out.exists()


def test_a_memory_limit_past_the_machines_memory_is_said(monkeypatch):
    from distributed import system

    from ImageQualityTransferLib.apps.cli import batch as batch_cli

    monkeypatch.setattr(system, "MEMORY_LIMIT", 8 * 2**30)
    args = SimpleNamespace(memory_limit="500GiB", workers=2, uncertainty=False)
    with pytest.warns(IQTWarning, match=r"--memory-limit 500GiB x 2 workers is 0.98 TiB, more than this machine's "
                                        r"8.00 GiB"):
        batch_cli.check_worker_memory(args, [])
