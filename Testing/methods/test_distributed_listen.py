"""`iqt train --nproc N`: the training processes meet through a file in a private folder, so none listens on a network
interface (the TCP store of rank 0 listened on every interface, *:port, for the whole training); gloo's own
connections between them stay on the loopback."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from ImageQualityTransferLib.methods.cnn import distributed  # noqa: E402


def _listening() -> list[str]:
    """This process's listening TCP sockets as 'address:port' (Linux /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                found.append(cols[1])
    return found


def record_listeners(out):
    import torch.distributed as dist

    here = _listening()
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, here)
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(gathered))


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1 as /proc/net writes them


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the listening sockets from Linux's /proc")
def test_no_training_process_listens_beyond_the_loopback(tmp_path, monkeypatch):
    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where the meeting folder is made
    distributed.spawn(record_listeners, 2, str(tmp_path / "l.json"), threads=1)
    listeners = json.loads((tmp_path / "l.json").read_text())
    assert len(listeners) == 2
    beyond = [a for rank in listeners for a in rank if a.split(":")[0] not in LOOPBACK]
    assert not beyond, listeners
    assert not list((tmp_path / "tmp").iterdir())  # the meeting folder is gone with the processes
