"""Wall time and peak resident memory of a block of work (for benchmarks, never asserted in tests)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            import os

            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Usage:
    seconds: float = 0.0
    peak_rss: int = 0  # bytes, whole process
    peak_delta: int = 0  # bytes above the resident size at the start


@contextmanager
def measure(interval: float = 0.005):
    """Yields a `Usage` filled in on exit: wall seconds and peak RSS sampled every `interval` s."""
    usage = Usage()
    start_rss = rss_bytes()
    peak = [start_rss]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        yield usage
    finally:
        usage.seconds = time.perf_counter() - t0
        stop.set()
        thread.join()
        peak[0] = max(peak[0], rss_bytes())
        usage.peak_rss = peak[0]
        usage.peak_delta = peak[0] - start_rss
