"""Loaded into every local batch worker as it starts (Dask's worker preload, cohort.start_client): SIGINT ignored, so
that a terminal's Ctrl-C stops the run through the main process's one line, also in a worker the nanny started again
after a memory-limit kill (it starts outside cohort._spawn_ignoring_ctrl_c and printed its own traceback). A worker
forked by cohort._spawn_ignoring_ctrl_c starts with SIGINT blocked: ignoring it here drops one that came since, and
the mask is then cleared."""

import signal
import threading


def dask_setup(worker) -> None:  # noqa: ARG001 (Dask's preload hook)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
