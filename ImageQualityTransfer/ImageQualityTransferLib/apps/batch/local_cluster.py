"""The pieces of a local cluster's start: its TLS credentials, the exit statuses of workers that died starting, and its
worker processes forked with Ctrl-C held."""

from __future__ import annotations

import contextlib
import threading

from ...core.errors import IQTError, install_extra


THREADS_PER_WORKER = 1  # the local cluster's (start_client); Dask's auto memory share counts them (apps/cli/batch_limits.py)


def local_security():
    """Credentials for one local cluster: a self-signed key and certificate made now, in memory only (Dask's
    Security.temporary: TLS with client certificates required, for the scheduler, the workers and this client).
    An IQTError where the `cryptography` package is missing (checked by `iqt batch` before any work)."""
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError:
        raise IQTError(no_cryptography()) from None


def no_cryptography() -> str:
    """The line where the cryptography package is missing (built when said: its install names the running Python)."""
    return ("iqt batch needs the cryptography package for its local cluster's TLS credentials (without them any local "
            f"user could run code in its workers); install the batch extra: {install_extra('batch')}")


def nanny_class():
    """The local cluster's nanny (LocalCluster's worker_class): it closes its worker without waiting for a running task,
    whose result a closing (or restarting) cluster throws away (Dask's own WorkerProcess.kill, executor_wait=False).
    Dask's Nanny let the task run 4 s (0.8 of its 5 s close timeout), then killed the worker, and `iqt batch` waited
    that long after a Ctrl-C (Testing/apps/test_batch.py test_ctrl_c_leaves_no_temporary_of_a_worker_killed_writing;
    benchmarks/batch_stop.py); the worker now leaves once closed (worker_signals._leave_if_busy)."""
    from distributed import Nanny

    class StopNow(Nanny):
        async def kill(self, timeout: float = 5, reason: str = "nanny-kill") -> None:
            if self.process is not None:
                await self.process.kill(timeout=timeout, executor_wait=False, reason=reason)

    return StopNow


def _join_once_started(thread, wait_s: float = 5.0) -> None:
    """`thread` joined where a signal interrupted its `start()`: the thread runs, but until it says so `join` raises
    "cannot join thread before it is started" (an internal error under load, Testing/apps/test_batch_lock.py); one that
    never started is given up after `wait_s`."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            thread.join()
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)


_NANNY_LOG = {"lock": threading.Lock(), "users": 0, "saved": None}  # _worker_exits_noted's, shared by overlapping starts


@contextlib.contextmanager
def _worker_exits_noted():
    """While the cluster starts: the exit statuses the nanny logs for worker processes that died ("Worker process N
    exited with status S", or killed by a signal: minus it, an unknown one 255 as Dask reports it), set on the
    exception raised (core/errors.py WORKER_EXITS), which the error line names (core/errors.py worker_died_said). The
    logger's level and propagation are put back when the last of overlapping starts (threads) leaves: the first to
    leave had left them changed for good."""
    import logging
    import re

    from ...core.errors import WORKER_EXITS, _chain

    exits: list = []

    class Noted(logging.Handler):
        def emit(self, record):
            m = re.match(r"Worker process \d+ (?:exited with status (\d+)|was killed by (?:signal (\d+)|unknown signal))",
                         record.getMessage())
            if m:
                exits.append(int(m[1]) if m[1] else -int(m[2]) if m[2] else 255)

    log = logging.getLogger("distributed.nanny")
    handler = Noted()
    with _NANNY_LOG["lock"]:
        if _NANNY_LOG["users"] == 0:
            _NANNY_LOG["saved"] = (log.level, log.propagate)
        _NANNY_LOG["users"] += 1
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False  # its INFO lines, silenced for the run (silence_logs), reach no caller's handlers
    try:
        yield
    except Exception as exc:
        for e in _chain(exc):
            setattr(e, WORKER_EXITS, list(exits))
        raise
    finally:
        with _NANNY_LOG["lock"]:
            log.removeHandler(handler)
            _NANNY_LOG["users"] -= 1
            if _NANNY_LOG["users"] == 0:
                log.setLevel(_NANNY_LOG["saved"][0])
                log.propagate = _NANNY_LOG["saved"][1]


def _spawn_ignoring_ctrl_c(make):
    """(make(), [signals held]): the local cluster made by `make` in a helper thread, each worker process forked with
    SIGINT blocked in the thread that forks it. The mask carries through fork and exec, and the worker's preload
    (worker_signals.py) ignores SIGINT, which drops one pending: a terminal's Ctrl-C reaches the whole process group,
    and each worker would print its own KeyboardInterrupt traceback before this process's one line. This process keeps
    a handler throughout: a Ctrl-C while the cluster starts (3-4 s) is recorded and returned, and one deferred since
    an import (signals._on_signal) too. (Ignoring SIGINT in this process while a worker was forked lost a Ctrl-C that
    came in that moment, and the batch ran to its end; Testing/apps/test_batch_scale.py.) A worker the nanny restarts
    later (after a memory-limit kill) is forked outside this and ignores it from its preload on."""
    import signal
    import threading
    from multiprocessing import util

    if threading.current_thread() is not threading.main_thread():
        return make(), []
    made: dict = {}
    held: list = []
    spawnv_passfds = util.spawnv_passfds

    def fork_blocking(path, args, passfds):  # multiprocessing's spawn, in the thread that starts a worker
        if not hasattr(signal, "pthread_sigmask"):
            return spawnv_passfds(path, args, passfds)
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return spawnv_passfds(path, args, passfds)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)

    def target():
        try:
            made["cluster"] = make()
        except BaseException as exc:  # noqa: BLE001 (raised again in the main thread)
            made["error"] = exc

    def hold(signum, frame):  # noqa: ARG001
        held.append(signum)

    thread = threading.Thread(target=target, name="iqt: starting the local cluster", daemon=True)
    # an ignored Ctrl-C (a script's `iqt batch ... &`) stays ignored, as the command leaves it (apps/signals.py)
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    handler = signal.SIG_IGN if ignored else signal.signal(signal.SIGINT, hold)
    util.spawnv_passfds = fork_blocking
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.1)
    except BaseException:  # SIGTERM meanwhile: the cluster closed once it is up, then the run stops
        _join_once_started(thread)
        if "cluster" in made:
            made["cluster"].close()
        raise
    finally:
        util.spawnv_passfds = spawnv_passfds
        signal.signal(signal.SIGINT, handler)
    from ..signals import _deferred, cancel_deferred

    if _deferred["signum"] == signal.SIGINT:  # deferred since an import: its re-sends were held meanwhile
        cancel_deferred()
        held.append(signal.SIGINT)
    if "error" in made:
        raise made["error"]
    return made["cluster"], held
