"""Signals for a command: SIGINT, SIGTERM and SIGHUP unwind it as exceptions (so atomic writes clean up), and one
that comes during an import is sent again once the import has ended. Shared by the command line (`apps.cli`) and the
cohort runner (`apps.batch`), which must not lose one while its local workers start."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time


class Terminated(BaseException):
    """SIGTERM or SIGHUP (a SLURM time limit, `docker stop`, a closed terminal): unwinds like Ctrl-C, so that
    atomic writes remove their temporary files, and exits with 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


DEFER_S = 0.05  # how soon a signal that came during an import is sent again


def _on_signal(signum, frame):
    """SIGINT, SIGTERM and SIGHUP unwind the command (KeyboardInterrupt, Terminated). One that comes while a module is
    being imported is sent again by a timer's thread until the import has ended: raised inside torch's import, it
    reached pybind11's C++ and aborted the process with a C++ trace instead of one line (a SLURM time limit in the
    first second of a run; Testing/apps/test_bad_inputs.py). The same signal given again meanwhile (a second Ctrl-C)
    is raised at once."""
    resent, _deferred["resent"] = _deferred["resent"], False
    again = _deferred["signum"] == signum and not resent
    if _importing(frame) and not again:
        _deferred["signum"] = signum
        _deferred["timer"] = threading.Timer(DEFER_S, _resend, (signum,))
        _deferred["timer"].daemon = True
        _deferred["timer"].start()
        return
    cancel_deferred()
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)


_deferred: dict = {"signum": None, "timer": None, "resent": False}


def _resend(signum) -> None:
    if _deferred["signum"] != signum:  # cancelled meanwhile (the command has ended)
        return
    if signal.getsignal(signum) == signal.SIG_IGN:  # ignored for now (a local cluster's workers starting): sent then,
        _deferred["timer"] = threading.Timer(DEFER_S, _resend, (signum,))  # it would be dropped and the run go on
        _deferred["timer"].daemon = True  # to its end; kept until it is handled again (or the
        _deferred["timer"].start()  # command has ended: cancel_deferred)
        return
    _deferred["resent"] = True
    if hasattr(signal, "pthread_kill"):  # to the main thread itself, so that a wait there (a sleep, a read) ends
        signal.pthread_kill(threading.main_thread().ident, signum)
    else:
        signal.raise_signal(signum)  # its Python handler runs in the main thread


def cancel_deferred() -> None:
    """Forget a signal still waiting for an import's end: the command is over, or the signal is being raised."""
    if _deferred["timer"] is not None:
        _deferred["timer"].cancel()
    _deferred.update(signum=None, timer=None, resent=False)


def _importing(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def handle_signals() -> list:
    """SIGINT, SIGTERM and SIGHUP (where the platform has them) to `_on_signal`, in the main thread only; returns
    [(signal, handler before)]. One the process was started with ignored stays ignored (`nohup iqt ...` ignores SIGHUP,
    a shell script's `iqt ... &` SIGINT), as Python leaves an ignored SIGINT: only an earlier `cli.main()`'s own
    SIG_IGN (ignored_by_the_command) is taken back."""
    if threading.current_thread() is not threading.main_thread():
        return []
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    sigs = [sig for sig in (getattr(signal, n, None) for n in names) if sig is not None]
    return [(sig, signal.signal(sig, _on_signal)) for sig in sigs
            if signal.getsignal(sig) != signal.SIG_IGN or sig in ignored_by_the_command]


left_running: list = []  # threads a stopped command left running: iqt view's run (apps/view/viewer.py Viewer._wait_for_run)
LEFT_JOIN_S = 60.0  # how long an in-process caller's exit waits for them (_join_left_threads)


def leave_running(thread: threading.Thread, method: str | None = None) -> None:
    """Record `thread` as left running by a stopped command, running `method` (named by the exit's wait); those that
    have ended are forgotten (an in-process caller's list had grown with every stopped `iqt view`)."""
    _forget_ended()
    thread.iqt_method = method
    left_running.append(thread)


def _forget_ended() -> None:
    left_running[:] = [t for t in left_running if t.ident is None or t.is_alive()]  # kept until started


@atexit.register
def _join_left_threads() -> None:
    """At an in-process caller's exit (`cli.main(argv)`; the `iqt` process exits past them: exit_past_left_threads),
    wait LEFT_JOIN_S at most, for all together, for threads left running: they end at their next progress report
    (iqt view's cancel flag), and the interpreter's exit had stopped one inside torch's C++ ("terminate called without
    an active exception", exit 134 after the caller's own end). One still inside torch after the wait may still abort
    the interpreter that way: the wait makes it less likely, it cannot prevent it. Ctrl-C here ends the wait with one
    line, and the interpreter's exit goes on (the caller's other atexit handlers, its files' flushes, its temporary
    directories) with the caller's status: ended at once with 130 (os._exit), the caller had lost its unwritten data.
    SIGTERM and SIGHUP, where the caller left them Python's default (or `cli.main()` ignored them:
    _take_exit_signals), end the process at once with their line and 143, 129, past the rest of that exit, as the
    signal itself had killed it (without a word). A second signal while the wait ends is ignored."""
    alive = [t for t in left_running if t.is_alive()]  # before: a join cut by a signal marks its thread ended (3.11)
    if not alive:
        return
    said: list = []
    taken, ignored = _take_exit_signals(), []
    try:
        _join_left_threads_until(time.monotonic(), said)
    except (KeyboardInterrupt, Terminated) as exc:  # one line, not "Exception ignored in atexit callback"
        while True:  # first: a second Ctrl-C here had raised out of atexit (a traceback, exit 0)
            try:
                _ignore_exit_signals(ignored)
                break
            except (KeyboardInterrupt, Terminated):  # pending already: dropped (raised as the call began)
                continue
        signum = getattr(exc, "signum", signal.SIGINT)
        why = "" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}; "
        with contextlib.suppress(Exception):  # and its traceback
            if not said:  # in the wait's first, unsaid, 0.5 s: what it was for first, then that it ends
                print(_waiting_line(alive), file=sys.stderr, flush=True)
            print(f"iqt view: {why}not waiting for the stopped run any more; Python exits now", file=sys.stderr,
                  flush=True)
        if signum != signal.SIGINT:  # as the signal itself would (its default): the caller lost its data then too
            _exit_now(128 + signum)
    finally:
        back = {**dict(ignored), **dict(taken)}
        for sig in sorted(back, key=lambda sig: sig == signal.SIGINT):  # Ctrl-C's last
            signal.signal(sig, back[sig])


def _ignore_exit_signals(done: list) -> None:
    """SIGINT, SIGTERM and SIGHUP ignored while the exit wait ends, each added to `done` as (signal, handler before).
    One already pending is raised by signal.signal itself (it runs pending handlers first): the caller drops it and
    calls again."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in [getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]:
        if sig not in dict(done):
            done.append((sig, signal.signal(sig, signal.SIG_IGN)))


ignored_by_the_command: set = set()  # signals `cli.main()` (argv None) left SIG_IGN to the process's exit


def _take_exit_signals() -> list:
    """SIGINT, SIGTERM and SIGHUP to `_on_signal` for the exit wait, where they have Python's default or were ignored
    by `cli.main()` run as the command (apps/cli/__init__.py `_main`: the wait had then ignored the Ctrl-C its line
    offers); a caller's own handler, or its own SIG_IGN, is kept, and Python's Ctrl-C handler already raises. Returns
    [(signal, handler before)]."""
    if threading.current_thread() is not threading.main_thread():
        return []

    def ours(sig) -> bool:
        handler = signal.getsignal(sig)
        return handler == signal.SIG_DFL or (handler == signal.SIG_IGN and sig in ignored_by_the_command)

    sigs = [getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    return [(sig, signal.signal(sig, _on_signal)) for sig in sigs if ours(sig)]


def _join_left_threads_until(start: float, said: list) -> None:
    # one deadline for all: LEFT_JOIN_S per thread had made 3 threads wait 3 times as long
    alive = [t for t in left_running if t.is_alive()]
    _join_until(alive, start + min(0.5, LEFT_JOIN_S))  # one about to end (a caller that let it go) is not said
    alive = [t for t in alive if t.is_alive()]
    if not alive:
        return
    with contextlib.suppress(Exception):
        print(_waiting_line(alive), file=sys.stderr, flush=True)
    said.append(True)  # the waiting line is out (_join_left_threads)
    _join_until(alive, start + LEFT_JOIN_S)


def _waiting_line(alive) -> str:
    """What the exit waits for and how to skip it: "waiting for a stopped run to reach its next progress report" had
    not said which run, nor that Ctrl-C ends the wait."""
    names = list(dict.fromkeys(getattr(t, "iqt_method", None) or "" for t in alive))
    if len(alive) == 1:
        what = f"the {names[0]} run stopped earlier is" if names[0] else "a run stopped earlier is"
    else:
        what = f"{len(alive)} runs stopped earlier ({', '.join(n for n in names if n)}) are" if any(names) else \
            f"{len(alive)} runs stopped earlier are"
    it = "it" if len(alive) == 1 else "them"
    return (f"iqt view: {what} still computing; waiting up to {LEFT_JOIN_S:g} s for {it} before Python exits "
            "(Ctrl-C: do not wait)")


def _join_until(threads, deadline: float) -> None:
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def exit_past_left_threads(code: int) -> None:
    """End the process now, with `code`, where a thread in `left_running` is still alive: the interpreter's exit stops
    a daemon thread with pthread_exit, which inside torch's C++ ends in std::terminate ("terminate called without an
    active exception", SIGABRT: exit 134 after a closing line that had said 130 or 129). Nothing is left to finalize:
    the command's outputs are written or removed by then (apps/cli/__init__.py `_run`)."""
    _forget_ended()
    if not any(t.is_alive() for t in left_running):
        return
    _exit_now(code)


def _exit_now(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
