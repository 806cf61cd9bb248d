"""Why a subject of a cohort failed for memory: the one wording for a task that never returned (tasks.py) and for
a subject whose own run ran out (subject.py)."""

from __future__ import annotations


def memory_reason(exc: BaseException, local: bool | None = True, workers: int | None = None) -> str:
    """A subject's failure reason for `core.errors.out_of_memory(exc)`: the limit named (not 'installed / same paths': under
    ulimit -v 1500000 every subject failed so; each worker is a process with an address space of its own). `local`:
    the workers are this machine's LocalCluster's, which have this process's ulimit -v; None: said in the worker itself
    (subject.py _process), whose own ulimit -v is read, on a local or a --scheduler's cluster. `workers`: the local
    cluster's count, where known (also from subject.py: tasks.py sends it with the task): "run fewer --workers" is
    not said to --workers 1."""
    import resource

    from ...core.errors import process_not_started, thread_not_started

    fewer = "" if workers == 1 else " or run fewer --workers"
    soft = resource.getrlimit(resource.RLIMIT_AS)[0] if local is not False else resource.RLIM_INFINITY
    text = " ".join(str(exc).split())
    said = f"a worker ran out of memory ({type(exc).__name__}{': ' + text if text else ''})"
    if soft != resource.RLIM_INFINITY:
        return (f"{said} under the address-space limit ulimit -v {soft // 1024:,} KiB, which each worker process has on "
                "its own; raise it (ulimit -v, a cluster job's h_vmem)")
    if thread_not_started(exc):  # RuntimeError "can't start new thread" or a process start's EAGAIN (core/errors.py)
        # without ulimit -v, pthread_create's EAGAIN is more often a cap on threads than memory
        where = {False: "their", None: "the worker's"}.get(local, "this machine's")
        what = "process" if process_not_started(exc) else "thread"
        return (f"a worker could not start a {what} ({text}): a limit on threads or processes ({where} ulimit -u, a "
                f"cgroup's pids.max, a container's or job's) or memory; raise that limit, or give the workers more "
                f"memory{fewer.replace(' or', ', or')}")
    if local is False:
        return f"{said}; give the scheduler's workers more memory (their ulimit -v, 'dask worker --memory-limit')"
    if local is None and workers is None:
        return (f"{said}; give the workers more memory with --memory-limit or run fewer --workers (a --scheduler's "
                "workers: 'dask worker --memory-limit')")
    return f"{said}; give the workers more memory with --memory-limit{fewer}"


def as_remote_workers(reason: str) -> str:
    """A subject's reason from a --scheduler's worker with core/memory.py's "this process's ... of memory" put as that
    worker's (it read its own limits, not this command's), and the fix on that side: "this process's 0.6 GiB (ulimit
    -v ...)" had read as the limit of the shell that ran iqt batch (a cluster audit)."""
    if "this process's" not in reason:
        return reason
    reason = reason.replace("this process's", "the worker's").replace("the process holds", "the worker process holds")
    if "ulimit -v" in reason:
        return reason + ("; or raise that worker's ulimit -v where 'dask worker' is started (its cluster job's "
                         "memory, e.g. h_vmem)")
    return reason + "; or give that worker more memory where 'dask worker' is started (its cluster job's memory)"
