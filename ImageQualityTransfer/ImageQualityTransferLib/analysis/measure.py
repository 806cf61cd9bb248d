"""Wall time and peak resident memory of a block of work (for benchmarks, never asserted in tests)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager


def rss_bytes() -> int | None:
    """Current resident set size of this process (Linux /proc); None where the system does not say (macOS, Windows:
    recorded as null, not as a peak of 0 MB)."""
    try:
        with open("/proc/self/statm") as f:
            import os

            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):  # AttributeError: no os.sysconf (Windows)
        return None


class Usage:
    seconds: float = 0.0
    peak_rss: int | None = 0  # bytes, whole process; None where not measured (rss_bytes)
    peak_delta: int | None = 0  # bytes above the resident size at the start; None where not measured


@contextmanager
def measure(interval: float = 0.005):
    """Yields a `Usage` filled in on exit: wall seconds and peak RSS sampled every `interval` s."""
    usage = Usage()
    start_rss = rss_bytes()
    peak = [start_rss]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes() or 0)
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    if start_rss is not None:
        thread.start()
    t0 = time.perf_counter()
    try:
        yield usage
    finally:
        usage.seconds = time.perf_counter() - t0
        if start_rss is None:
            usage.peak_rss = usage.peak_delta = None
        else:
            stop.set()
            thread.join()
            peak[0] = max(peak[0], rss_bytes() or 0)
            usage.peak_rss = peak[0]
            usage.peak_delta = peak[0] - start_rss
