"""Data-parallel training over processes: torch.distributed (gloo, CPU) set up by `iqt train --nproc N` or by
`torchrun`, and the few collective steps `training.train` needs."""

from __future__ import annotations

import gc
import logging
import os
import pickle
import signal
import shutil
import sys
import tempfile
import threading
import time

from ...core.errors import IQTError


def rank_and_world() -> tuple[int, int]:
    """(rank, number of processes) of the initialised group, (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def agree(value):
    """Rank 0's value (a float or int) on every rank, so that decisions cannot drift apart."""
    import torch
    import torch.distributed as dist

    if rank_and_world()[1] == 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.broadcast(t, 0)
    return type(value)(t.item())


def gather(obj) -> list:
    """Every rank's `obj`, in rank order (a one-item list without a group)."""
    import torch.distributed as dist

    rank, world = rank_and_world()
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def init_from_environment() -> bool:
    """Join the group `torchrun` describes (WORLD_SIZE > 1 in the environment); False when there is none."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_available() and dist.is_initialized()
    dist.init_process_group("gloo", init_method="env://")
    return True


SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
STOP_GRACE_S = 20.0  # after a signal: how long the processes may take to unwind before they are killed


def _stop_signals() -> list:
    return [sig for sig in (getattr(signal, n, None) for n in SIGNALS) if sig is not None]


def _handlers(current: dict) -> list:
    """[(signal, handler)] of `current` ({signal: handler}) that a new process can be given (the `iqt` command's
    `_on_signal`, which unwinds the command and waits for an import's end), so that a signal stops the processes as
    it stops this one."""
    out = []
    for sig, handler in current.items():
        if not callable(handler):
            continue
        try:
            pickle.dumps(handler)
        except (pickle.PicklingError, AttributeError, TypeError):  # a local function: the process keeps Python's own
            continue
        out.append((sig, handler))
    return out


_stopped: list = []  # in a training process: the signals it was sent (the first one is the one it exits with)
_raised: list = []  # ... once one of them has been raised (or the process is past raising any)


def _once(handler):
    """`handler` (the parent's) for a training process: every signal is recorded in `_stopped`, and the handler raises
    its exception once at most. A signal that comes while the process already unwinds (another rank gone from the
    group fails a collective here) or one the handler put off until an import's end (its timer sends it again later)
    then stops the process quietly wherever its failure surfaces, not in the middle of the interpreter's exit."""

    def on_signal(signum, frame):
        if not _stopped:
            _stopped.append(signum)
        if _raised:
            return
        try:
            handler(signum, frame)
        except BaseException:
            _raised.append(signum)
            raise

    return on_signal


def _entry(rank: int, fn, nproc: int, store: str, threads: int | None, handlers: list, args: tuple,
           capped: bool = False):
    for sig, handler in handlers:  # before anything else (an import waits for its end through the handler)
        signal.signal(sig, _once(handler))
    try:
        if hasattr(signal, "pthread_sigmask"):  # `spawn` held them back while this process started
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _stop_signals())
        import torch
        import torch.distributed as dist

        if capped:  # --threads given: BLAS/OpenMP and torch in this process, as `iqt --threads N` sets them in one
            from ...core import threads as cpu

            cpu.apply(threads)
        elif threads:
            torch.set_num_threads(threads)
        # the group meets through a file in a private folder, not a TCP store (which listens on every network
        # interface): nothing but gloo's own loopback connections between these processes
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=nproc)
        fn(*args)
        for sig in _stop_signals():  # this process's part is done (rank 0: every output written): a signal stops nothing
            signal.signal(sig, signal.SIG_IGN)
    except BaseException:
        try:  # first thing (a call outside it could run the handler): a signal that came during a failure it caused
            time.sleep(0)  # (another rank stopped: a collective failed here) has its handler run here
            _raised.append(None)  # from here on a signal raises nothing
        except BaseException:  # that handler's exception (it marked itself raised)
            pass
        if not _stopped:
            raise
        _exit(128 + int(_stopped[0]))  # stopped by a signal (the parent's, sent on): exit 128 + it, quietly
    gc.collect()  # nothing that holds the group (a DDP reducer) may outlive it
    dist.barrier()  # every rank done before any tears the group down
    dist.destroy_process_group()


def _exit(code: int) -> None:
    """End a stopped training process now, its work unwound (every `finally` has run: an atomic write removed its
    temporary file): multiprocessing's own exit steps (its finalizers: the semaphores a progress bar's lock made), the
    output flushed, and none of the interpreter's teardown with torch and a gloo group loaded, which took 1.5-2.5 s of
    a loaded machine's time per process."""
    import multiprocessing.util

    try:
        multiprocessing.util._exit_function()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a reader gone, a closed stream: nothing to keep
                pass
        os._exit(code)


def _wind_down(processes) -> None:
    """After a signal: SIGTERM to every process still running (each unwinds as this one does: an atomic write removes
    its temporary file), SIGKILL to any still there after STOP_GRACE_S or at a second signal; all of them joined, so
    that none outlives this one (multiprocessing's exit waited for them to train to the end, and rank 0 then wrote the
    model). A signal ignored here stays ignored, as apps/signals.handle_signals keeps one the process was started
    ignoring (`nohup iqt ...`: a hangup had hurried the stop, killing processes still unwinding)."""
    hurry = []
    held = {}
    if threading.current_thread() is threading.main_thread():
        held = {sig: signal.signal(sig, lambda s, f: hurry.append(s)) for sig in _stop_signals()
                if signal.getsignal(sig) != signal.SIG_IGN}
    try:
        for p in processes:
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        while any(p.is_alive() for p in processes) and not hurry and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in processes:
            if p.is_alive():
                p.kill()
            p.join()
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)


def default_threads(nproc: int) -> int:
    """CPU threads each of `nproc` training processes takes where none are given: the CPUs this process may run on
    shared out (a cluster job given 4 of 64 cores had recorded --threads 32 from os.cpu_count)."""
    from ...core.threads import _cores

    return max(1, _cores() // nproc)


def spawn(fn, nproc: int, *args, threads: int | None = None, again: str = "run the same command again") -> None:
    """Run fn(*args) in `nproc` new processes joined in one gloo group on this machine (`threads` CPU threads each, for
    BLAS/OpenMP and torch as `--threads` caps them; default `default_threads`); a failure in any of them is raised here as an IQTError with its last line.
    A process killed from outside (SIGKILL: most often the system out of memory) is said with `again`, what to do next.

    A signal (SIGINT, SIGTERM, SIGHUP) that this process's handler turns into an exception stops every process and is
    raised here once they have all exited (they get this process's handlers); where rank 0 had already finished `fn`
    (every output written), the run is complete and returns as usual."""
    import torch.multiprocessing as mp

    if nproc < 1:
        raise IQTError(f"--nproc {nproc}: give at least 1 process")
    capped = threads is not None
    threads = threads or default_threads(nproc)
    sigs = _stop_signals()
    main = threading.current_thread() is threading.main_thread()
    current = {sig: signal.getsignal(sig) for sig in sigs}
    handlers = _handlers(current)
    held = []  # a signal while the processes start: raised once all of them can be stopped
    if main:
        for sig, handler in current.items():
            if handler not in (signal.SIG_IGN, None):
                signal.signal(sig, lambda s, f: held.append(s))
    blocked = main and hasattr(signal, "pthread_sigmask")
    meeting = tempfile.mkdtemp(prefix="iqt-train-group-")  # this user's only (0700); removed when the processes end
    if blocked:  # inherited by the new processes until `_entry` has set their handlers
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        # daemonic: whatever way this process ends, multiprocessing's exit sends them SIGTERM before it joins them
        context = mp.start_processes(_entry, args=(fn, nproc, os.path.join(meeting, "store"), threads, handlers, args,
                                                       capped),
                                     nprocs=nproc, join=False, daemon=True, start_method="spawn")
    except BaseException:
        shutil.rmtree(meeting, ignore_errors=True)
        raise
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if main:
            for sig, handler in current.items():
                if handler is not None:
                    signal.signal(sig, handler)
    # torch logs a warning as it stops the other processes after one failed ("Terminating process N via signal
    # SIGTERM"), a line before the command's own one (researcher audit)
    spawn_log = logging.getLogger("torch.multiprocessing.spawn")
    level = spawn_log.level
    spawn_log.setLevel(logging.ERROR)
    try:
        if held:
            signal.raise_signal(held[0])  # its handler (in this, the main thread) raises it here
        while not context.join():
            pass
    except BaseException as exc:  # a process failed, or a signal's exception here (KeyboardInterrupt, Terminated)
        _wind_down(context.processes)
        if not isinstance(exc, (mp.ProcessRaisedException, mp.ProcessExitedException)):
            if context.processes[0].exitcode == 0:  # rank 0 had written every output before the signal reached it
                return
            raise
        code = context.processes[exc.error_index].exitcode
        if main and isinstance(code, int) and code - 128 in sigs and current[code - 128] not in (signal.SIG_IGN, None):
            signal.raise_signal(code - 128)  # one process was stopped by a signal: this one is too (as if sent here)
        if isinstance(exc, mp.ProcessExitedException):  # it had said "see its messages above", which a SIGKILL leaves none of
            killed = (f", killed from outside, most often by the system out of memory: each of the {nproc} processes "
                      "prepares the training data itself, so fewer --nproc need less" if exc.signal_name == "SIGKILL" else "")
            raise IQTError(f"a training process died ({exc}{killed}); {again}") from None
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        last = lines[-1] if lines else repr(exc)
        raise IQTError(last.split("IQTError: ", 1)[1] if "IQTError: " in last else f"a training process failed: {last}") from None
    finally:
        spawn_log.setLevel(level)
        for path in context.error_files:
            try:
                os.unlink(path)
            except OSError:
                pass
        shutil.rmtree(meeting, ignore_errors=True)
