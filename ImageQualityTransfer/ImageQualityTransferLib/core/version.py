"""The engine's version, recorded in model sidecars and outputs, and the digest of the code behind it."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

__version__ = "0.40.0"  # a new minor version whenever outputs change (CHANGELOG.md)


def build_digest(*extra: str) -> str:
    """SHA256 over the engine's Python sources (their paths in the package and contents) and the `extra` files (a
    missing one counts as missing): two installs of one version made from different code differ here, which the
    version alone does not tell (the batch workers' check, apps/batch/scheduler.py check_workers). Read once a process, as a run's build
    is the one it started with (a registry changed by another process mid-run had failed its remaining subjects); the
    files are read again by a model registered here (`forget_build`, fileio/model_files.py register), at `iqt batch`'s
    start, and by each worker's start-up probe (apps/batch/scheduler.py _PROBE: a worker outliving a run)."""
    return _digest(extra)


def forget_build() -> None:
    """The next `build_digest` reads the `extra` files again (this process changed one: a model registered)."""
    _digest.cache_clear()


@lru_cache(maxsize=1)
def _sources():
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h


@lru_cache(maxsize=None)
def _digest(extra: tuple) -> str:
    h = _sources().copy()
    for e in extra:
        p = Path(e)
        h.update(p.name.encode() + b"\0" + (p.read_bytes() if p.is_file() else b"missing") + b"\0")
    return h.hexdigest()
