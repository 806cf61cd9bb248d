"""How `iqt view` stops: the engine's run in a daemon thread, and SIGINT, SIGTERM and SIGHUP held while the page is
built and turned into the serving loop's stop while it serves (counted as they arrive)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from concurrent import futures

from .. import signals


STOP_SAY_S = 0.5  # a run still going this long after Ctrl-C is said to be waited for (Viewer._wait_for_run)


STOP_GRACE_S = 5.0  # and is left, the command ending without it, this long after the signal (on_signal's "at")


STOP_PUSH_S = 0.5  # the longest the page's "stopping" may hold up the loop's stop (Viewer._say_stopping)


class _Worker:
    """One run at a time in a daemon thread: ThreadPoolExecutor's threads are joined at exit, which kept a forced
    second Ctrl-C waiting for the method's next progress report (Viewer._wait_for_run)."""

    def submit(self, fn, *args) -> futures.Future:
        future: futures.Future = futures.Future()

        def work():
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # the run's own error, given to the page by Viewer._run
                future.set_exception(exc)

        future.thread = threading.Thread(target=work, name="iqt-view", daemon=True)
        future.thread.start()
        return future


def _stop_loop_on_signal(caught: dict, say=None) -> list:
    """While serving, SIGINT, SIGTERM and SIGHUP are recorded in `caught` and stop the event loop from a callback of
    its own, once `say(signum)` (a coroutine function: the page told) has run, STOP_PUSH_S at most: raised where they
    landed, inside a VTK observer (the slice views' Viewer._remember, a legend's resize), VTK caught the
    KeyboardInterrupt, printed "Caught a Ctrl-C within python, exiting program." and exited 1; a Terminated raised in
    a task was kept there and the server served on (Testing/apps/test_view.py). A second signal while the page is
    told cuts that short: the loop stops at its next turn, recorded as `caught["forced"]` (serve then waits for no
    run). Two that arrive inside one long C call (a render) are two, counted by `_Arrivals`: Python runs the handler
    once for both, which had taken them for one. Outside the loop, or a third signal, raises at once as
    `signals._on_signal` does. Returns [(signal, handler before)]; `caught["arrivals"]` is closed by the caller."""
    if threading.current_thread() is not threading.main_thread():
        return []

    def force():  # after stop(): the page's push cancelled, started or not, its task's end then stops the loop
        task = caught.get("stopping")
        if task is not None and not task.done():
            task.cancel()
        else:
            _interrupt()

    def on_signal(signum, frame):
        arrived = caught["arrivals"].count(signum) if "arrivals" in caught else 1
        if arrived == 0:  # counted already, by the handler call before (_Arrivals.count)
            return
        try:  # the public API (asyncio.events._get_running_loop is private): None outside a running loop, as before
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and "signum" in caught and "forced" not in caught:
            caught["forced"] = signum  # raised here, it had left the push's tasks pending and serve waiting 5 s
            loop.call_soon_threadsafe(force)
            return
        if loop is None or "signum" in caught:
            if "signum" in caught:
                caught.setdefault("forced", signum)
            try:
                signals._on_signal(signum, frame)  # a signal during an import is sent again once it has ended
            except signals.Terminated as exc:
                raise KeyboardInterrupt from exc  # asyncio passes on KeyboardInterrupt from a callback, not Terminated
            return
        caught["signum"], caught["at"] = signum, time.monotonic()
        if arrived > 1:  # a second came before Python could run this handler: forced, as one during the push
            caught["forced"] = signum
            loop.call_soon_threadsafe(_interrupt)
            return

        def stop():  # the task kept in `caught`: the loop holds its tasks only weakly
            caught["stopping"] = loop.create_task(_said_then_stop(say, signum))
            # on its end, however it ends: a `finally` in the coroutine never ran where it was cancelled before its start
            # (a second signal in the same turn of the loop: the command hung)
            caught["stopping"].add_done_callback(lambda _: _interrupt())

        loop.call_soon_threadsafe(_interrupt if say is None else stop)

    before = _take_signals(on_signal)
    if before:
        caught["arrivals"] = _Arrivals([sig for sig, _ in before])
    return before


class _Arrivals:
    """The command's signals as they arrive: Python's C handler writes each one's number to the wakeup fd
    (signal.set_wakeup_fd), where its Python handler runs once for any number of the same signal that land inside
    one C call. Where a wakeup fd is set already (an asyncio loop's own signal handling) it is kept, and each handler
    call counts as one."""

    def __init__(self, signums):
        self.signums, self.pair = set(signums), None
        self.kept = bytearray()  # read, of other signals than the one being handled: theirs to count
        self.ahead = dict.fromkeys(self.signums, 0)  # counted before their handler call ran (count)
        try:
            pair = socket.socketpair()  # a socket: what set_wakeup_fd takes on Windows too
            for end in pair:
                end.setblocking(False)
            before = signal.set_wakeup_fd(pair[1].fileno(), warn_on_full_buffer=False)
        except (OSError, ValueError):
            return
        if before != -1:
            signal.set_wakeup_fd(before)
            for end in pair:
                end.close()
            return
        self.pair = pair

    def count(self, signum) -> int:
        """How many of `signum` arrived since its last count: at least 1 (the one being handled), or 0 where none is
        left because a count before took this call's own (it arrived as that call ran: its handler runs again). Other
        signals' numbers are kept for their own calls: SIGINT's had counted SIGTERM's, which then, counted as none,
        was raised at once as a third (inside a VTK observer: exit 1)."""
        if self.pair is None:
            return 1
        while True:
            try:
                data = self.pair[0].recv(4096)
            except OSError:  # BlockingIOError: none left
                break
            if not data:
                break
            self.kept += bytes(b for b in data if b in self.signums)
        n = self.kept.count(signum)
        self.kept = self.kept.replace(bytes([signum]), b"")
        if n == 0 and self.ahead.get(signum, 0) > 0:
            self.ahead[signum] -= 1
            return 0
        self.ahead[signum] = self.ahead.get(signum, 0) + max(0, n - 1)
        return max(1, n)  # none at all: its number not yet written (the C handler in another thread), or lost

    def close(self) -> None:
        if self.pair is not None:
            with contextlib.suppress(ValueError):
                now = signal.set_wakeup_fd(-1)
                if now not in (-1, self.pair[1].fileno()):  # set since by another (an asyncio loop's): put back
                    signal.set_wakeup_fd(now)
            for end in self.pair:
                end.close()
            self.pair = None


def _take_signals(on_signal) -> list:
    """SIGINT, SIGTERM and SIGHUP handled by `on_signal` where the command's own handler (apps/signals.py) has them;
    returns [(signal, handler before)] to put back."""
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    return [(sig, signal.signal(sig, on_signal)) for sig in (getattr(signal, n, None) for n in names)
            if sig is not None and signal.getsignal(sig) is signals._on_signal]


@contextlib.contextmanager
def signals_held():
    """While the Viewer is built (scene, views, renders: VTK observers run), SIGINT, SIGTERM and SIGHUP are only
    recorded, and the first is raised at the end from plain Python: raised where it landed, inside an observer, VTK
    printed "Caught a Ctrl-C within python, exiting program." and exited 1, or a Terminated was kept there and the
    server served on (Testing/apps/test_view.py). A second signal meanwhile raises at once (forced)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list = []

    def on_signal(signum, frame):
        if held:
            signals._on_signal(signum, frame)
            return
        held.append(signum)

    before = _take_signals(on_signal)
    try:
        yield
    finally:
        for sig, handler in before:
            signal.signal(sig, handler)
    if held:
        raise KeyboardInterrupt if held[0] == signal.SIGINT else signals.Terminated(held[0])


async def _said_then_stop(say, signum) -> None:
    """The page told, STOP_PUSH_S at most; the loop is then stopped by the task's done callback (_stop_loop_on_signal):
    a `finally` here, closed with the loop gone, had found no running loop (RuntimeError)."""
    with contextlib.suppress(Exception):  # the page's word never keeps the server from stopping
        await asyncio.wait_for(say(signum), STOP_PUSH_S)


def _interrupt() -> None:
    raise KeyboardInterrupt  # in the loop's own frame: out of run_until_complete to serve, which says which signal
