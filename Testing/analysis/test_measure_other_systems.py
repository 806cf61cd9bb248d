"""Time and memory figures on systems without /proc, os.wait4 or `resource` (macOS and Windows recorded a
peak of 0 MB, the speed run ended in AttributeError on Windows and read ru_maxrss 1024 times too large on macOS, and a
full disk while writing a .vtk tractogram on Windows was an ImportError)."""

from __future__ import annotations

import errno
import os
import sys

import pytest

from ImageQualityTransferLib.analysis import benchmark, measure
from ImageQualityTransferLib.fileio import writing


def no_proc(monkeypatch):
    def refuse(path, *a, **k):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)

    monkeypatch.setattr(measure, "open", refuse, raising=False)


def test_without_proc_the_memory_is_not_measured_rather_than_0(monkeypatch):
    assert measure.rss_bytes() > 0
    no_proc(monkeypatch)
    assert measure.rss_bytes() is None
    with measure.measure() as use:
        sum(range(1000))
    assert use.peak_rss is None and use.peak_delta is None and use.seconds > 0


@pytest.mark.slow
def test_the_speed_run_without_wait4_times_the_run_and_leaves_the_peak_unmeasured(monkeypatch):
    monkeypatch.delattr(os, "wait4")  # as on Windows
    rows = benchmark.speed(["cubic"], shape=(12, 12, 10))
    assert rows[0]["method"] == "cubic" and rows[0]["seconds"] > 0 and rows[0]["peak_mb"] is None
    assert "| cubic | 12×12×10 |" in benchmark.speed_table(rows) and "| – |" in benchmark.speed_table(rows)


@pytest.mark.slow
def test_the_speed_run_reads_ru_maxrss_in_the_system_unit(monkeypatch):
    linux = benchmark.speed(["cubic"], shape=(12, 12, 10))[0]["peak_mb"]
    assert 20 < linux < 20000  # a Python process with numpy and nibabel: tens to hundreds of MB
    monkeypatch.setattr(sys, "platform", "darwin")  # where ru_maxrss is in bytes
    monkeypatch.setattr(os, "wait4", lambda pid, opts, real=os.wait4: (lambda r: (r[0], r[1], type(
        "RU", (), {"ru_maxrss": r[2].ru_maxrss * 1024})()))(real(pid, opts)))
    mac = benchmark.speed(["cubic"], shape=(12, 12, 10))[0]["peak_mb"]
    assert 0.5 < mac / linux < 2


def test_a_full_disk_without_the_resource_module_is_enospc(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "resource", None)  # `import resource` raises ImportError, as on Windows
    assert writing.full_or_too_large(tmp_path / "t.vtk") == errno.ENOSPC
