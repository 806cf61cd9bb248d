"""Progress and cancel of a module run: callbacks receive `(fraction in [0, 1], message)`; `cancel` is a callable
returning True to stop."""

from __future__ import annotations

import time

from ..core.errors import IQTError


class Cancelled(IQTError):
    """The user stopped the processing; no output node was created."""


def report_progress(progress, fraction, message) -> None:
    """`progress(fraction clipped to [0, 1], message)`; a None fraction keeps the bar and lets a GUI process events."""
    if progress is not None:
        progress(None if fraction is None else float(min(max(fraction, 0.0), 1.0)), message)


def scaled_progress(progress, lo, hi, message, cancel=None):
    """A method-level progress(fraction) mapped onto [lo, hi] of the overall progress; raises `Cancelled` from
    inside the method (between its tiles or trees) as soon as `cancel()` is true."""
    if progress is None and cancel is None:
        return None
    last = [0.0]

    def cb(fraction, *_):
        check_cancel(cancel)
        if progress is None:
            return
        now = time.monotonic()
        if fraction is not None and (fraction >= 1.0 or now - last[0] > 0.1):
            last[0] = now
            report_progress(progress, lo + (hi - lo) * float(fraction), message)

    return cb


def check_cancel(cancel) -> None:
    """`Cancelled` as soon as `cancel()` is true."""
    if cancel is not None and cancel():
        raise Cancelled("processing cancelled; no output was created")
