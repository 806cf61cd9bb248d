"""The engine's version, recorded in model sidecars and outputs, and the digest of the code behind it."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

__version__ = "0.20.0"  # a new minor version whenever outputs change (CHANGELOG.md)


@lru_cache(maxsize=None)
def build_digest(*extra: str) -> str:
    """SHA256 over the engine's Python sources (their paths in the package and contents) and the `extra` files (a
    missing one counts as missing): two installs of one version made from different code differ here, which the
    version alone does not tell (the batch workers' check, apps/batch/cohort.py)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    for e in extra:
        p = Path(e)
        h.update(p.name.encode() + b"\0" + (p.read_bytes() if p.is_file() else b"missing") + b"\0")
    return h.hexdigest()
