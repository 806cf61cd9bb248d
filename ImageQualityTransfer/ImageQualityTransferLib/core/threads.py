"""CPU threads: one knob (`--threads N`) for BLAS/OpenMP and torch, and a single BLAS thread where many small
dense solves run (the forests), where threads cost far more than they give (docs/measurements.md, Speed)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from .errors import IQTError

_LIMIT: int | None = None  # the --threads cap, once `apply` has set one
_TORCH_BEFORE: int | None = None  # torch's own count where `limit_torch` first changed it (what `restored` sets back)


def apply(n: int | None) -> None:
    """Use at most `n` CPU threads in this process from now on (BLAS/OpenMP pools and torch); None keeps the
    libraries' defaults."""
    if n is None:
        return
    if int(n) < 1:
        raise IQTError(f"--threads {n}: give a number of CPU threads of at least 1")
    cores = _cores()
    most = max(MOST_THREADS, cores)
    if int(n) > most:  # each library would start that many threads in its pool (100000 was taken without a word)
        raise IQTError(f"--threads {n}: more than the {most} taken; give at most {most} (this machine has {cores} CPU "
                       f"threads, and threads beyond those only take turns on them)")
    global _LIMIT
    _LIMIT = int(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=int(n))
    limit_torch()


def cap() -> int | None:
    """The --threads cap `apply` set for this run (given before the command or after it), None without one."""
    return _LIMIT


def limit_torch() -> None:
    """torch's CPU threads to the --threads cap, where one is set and torch is already imported: never imports it
    (for cubic or biqt that cost 180 MB and 2 s of CPU). The CNN code calls it where it imports torch
    (methods/cnn/__init__.py require_torch, networks.py), so a cap given before still holds there."""
    global _TORCH_BEFORE
    torch = sys.modules.get("torch")
    if _LIMIT is not None and torch is not None and hasattr(torch, "set_num_threads"):
        if _TORCH_BEFORE is None:
            _TORCH_BEFORE = int(torch.get_num_threads())
        torch.set_num_threads(_LIMIT)


@contextmanager
def restored():
    """The caps as they were before the block, back after it: `apply` (--threads) within it holds for the block only
    (apps/cli/__init__.py main, for an in-process caller: docs/python.md, an engine call changes no process-wide
    setting). The `iqt` command and its workers keep theirs to their end."""
    global _LIMIT, _TORCH_BEFORE
    from threadpoolctl import threadpool_limits

    pools = threadpool_limits(limits=None)  # changes nothing; restores the pools loaded now to their counts now
    # read after the pools: torch's first get_num_threads in a thread sets its OpenMP pool to torch's own count
    torch = sys.modules.get("torch")
    was, torch_was = _LIMIT, (int(torch.get_num_threads()) if hasattr(torch, "get_num_threads") else None)
    before_was, _TORCH_BEFORE = _TORCH_BEFORE, None  # an enclosing block's, given back on exit: nested, it had been lost
    try:
        yield
    finally:
        torch = sys.modules.get("torch")
        back = torch_was if torch_was is not None else _TORCH_BEFORE  # torch imported within: its count before the cap
        if back is not None and hasattr(torch, "set_num_threads") and torch.get_num_threads() != back:
            torch.set_num_threads(back)
        pools.restore_original_limits()  # after torch's: its set_num_threads sets its OpenMP pool too
        _LIMIT, _TORCH_BEFORE = was, before_was
        if torch_was is None:  # torch imported within: an enclosing block's cap holds for it from here, its own count
            limit_torch()  # kept for that block's exit (nested, torch had run uncapped for the rest of the outer block)


def wait_passively() -> bool:
    """OpenMP's threads wait for work without spinning, in a process about to load torch (libgomp reads it then); a
    value the user set is kept. Spinning, the Monte Carlo pass's many small operations each ended in a barrier that a
    machine busy with other work stretched 2-4x (docs/measurements.md, Speed). The `iqt` command and the Slicer
    module's worker process call it; a library caller calls it itself, before torch loads (docs/python.md): the engine
    changes no caller's environment on its own. True where it can take effect: OMP_WAIT_POLICY is PASSIVE and torch
    is not loaded yet."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return os.environ["OMP_WAIT_POLICY"].strip().upper() == "PASSIVE" and "torch" not in sys.modules


MOST_THREADS = 1024  # the most --threads taken on a machine with fewer CPUs (a larger machine takes its own count)


def _cores() -> int:
    """The CPUs this process may run on: its affinity, or fewer where a container's CPU quota allows fewer (a pod given 4
    CPUs on 64 cores sees all 64 in its affinity)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    return min(cores, quota) if quota else cores


CGROUP = "/sys/fs/cgroup"  # where Linux mounts the container's cgroup (its own root under a cgroup namespace)


def _cgroup_quota() -> int | None:
    """The CPUs a Linux cgroup CPU quota allows, rounded up (v2 cpu.max "200000 100000": 2; v1 cpu.cfs_quota_us over
    cpu.cfs_period_us), None without one ("max", -1) or where none is readable (not Linux)."""
    for quota_file, period_file in (("cpu.max", None), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")):
        try:
            with open(os.path.join(CGROUP, quota_file)) as f:
                words = f.read().split()
            if period_file:
                with open(os.path.join(CGROUP, period_file)) as f:
                    words = words[:1] + f.read().split()[:1]
            quota, period = int(words[0]), int(words[1])
        except (OSError, ValueError, IndexError):  # "max" (no quota) is not a number
            continue
        return -(-quota // period) if quota > 0 and period > 0 else None
    return None


def available() -> int:
    """CPU threads this process may use for its own thread pools: the cores it may run on, capped by --threads."""
    cores = _cores()
    return max(1, min(cores, _LIMIT or cores))


def in_use() -> int:
    """The CPU threads the numerical libraries use now, as a run records it (fileio/records.py): torch's own count where
    torch is loaded (the CNNs' values depend on it), else the --threads cap, else OMP_NUM_THREADS, else `available`."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        return int(torch.get_num_threads())
    if _LIMIT is not None:
        return _LIMIT
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) >= 1 else available()


def thread_record(torch: bool = False) -> dict:
    """The CPU threads this process's numerical libraries use now, by pool: threadpoolctl's "blas" and "openmp" (the
    most any library of that kind has) and, with `torch`, torch's own intra-op threads. A training's record, taken where
    it runs (a run's is `in_use`; the forests' small solves run on one BLAS thread: `small_solves`)."""
    from threadpoolctl import threadpool_info

    out: dict = {}
    for lib in threadpool_info():
        kind = str(lib.get("user_api"))
        out[kind] = max(out.get(kind, 0), int(lib.get("num_threads") or 0))
    if torch and "torch" in sys.modules:
        out["torch"] = int(sys.modules["torch"].get_num_threads())
    return dict(sorted(out.items()))


@contextmanager
def small_solves():
    """One BLAS thread inside (restored after)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
