"""Progress bars that show on a terminal and stay quiet when output is piped."""

from __future__ import annotations

import sys


def progress_bar(iterable=None, desc=None, total=None, enabled=True):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=not (enabled and sys.stderr.isatty()), leave=False)
