"""Loaded into every local batch worker as it starts (Dask's worker preload, dask_client.start_client): SIGINT ignored, so
that a terminal's Ctrl-C stops the run through the main process's one line, also in a worker the nanny started again
after a memory-limit kill (it starts outside local_cluster._spawn_ignoring_ctrl_c and printed its own traceback). A worker
forked by local_cluster._spawn_ignoring_ctrl_c starts with SIGINT blocked: ignoring it here drops one that came since, and
the mask is then cleared.

A worker that ends its process while a subject still runs in its task thread leaves at once (`_leave_if_busy`):
Python's exit stopped that thread inside torch and the C++ runtime aborted ('terminate called without an active
exception', a core file; a second Ctrl-C during `iqt batch`, apps/cli/batch_stop.py _stop)."""

import atexit
import os
import signal
import sys
import threading


def dask_setup(worker) -> None:  # Dask's preload hook
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        # the process is the worker's own (a worker in a thread of another process leaves that one's exit alone); the
        # dict itself: the worker object may be gone by then
        atexit.register(_leave_if_busy, worker.active_threads)


def _leave_if_busy(active_threads) -> None:
    """At the process's exit (run before interpreter shutdown): where a task still runs, exit now without the shutdown
    that would stop its thread mid-call. Its result is lost either way: the worker was closed under it."""
    if active_threads:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        os._exit(0)
