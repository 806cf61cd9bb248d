"""The one exception type that reaches a user: it says what was wrong and what to do."""


class IQTError(Exception):
    """A problem with the user's input or request; the message names the problem and the fix."""


class IQTWarning(UserWarning):
    """The result is only degraded, not wrong: the message names the problem and the fix (the CLI prints one line)."""


def torch_out_of_memory(exc: BaseException) -> bool:
    """torch's CPU allocator failing (a RuntimeError, "DefaultCPUAllocator: can't allocate memory"), or its GPU's
    ("CUDA out of memory", `--device cuda`): the machine's memory, ulimit -v or the GPU's, as a MemoryError, not a bug."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "DefaultCPUAllocator" in text
                                              or "CUDA out of memory" in text)


# what a run out of memory says: the CLI's line (apps/cli OUT_OF_MEMORY) and the Slicer worker's (slicer/worker.py)
OUT_OF_MEMORY = ("out of memory; try a smaller input or factor, fewer Monte Carlo samples, --threads or workers, or a "
                 "machine with more memory")


def thread_not_started(exc: BaseException) -> bool:
    """A thread that could not start (RuntimeError "can't start new thread", pthread_create's EAGAIN): under ulimit -v
    its stack's address space refused, e.g. save_nifti's thread pool (fileio/nifti.py) near the limit; or the same
    EAGAIN raised as an OSError (BlockingIOError "Resource temporarily unavailable": a thread, fork or process pool
    refused under ulimit -u or a pids.max), which had ended as an internal error."""
    import errno

    return (isinstance(exc, RuntimeError) and "can't start new thread" in str(exc)) or \
        (isinstance(exc, OSError) and exc.errno == errno.EAGAIN)


def out_of_memory(exc: BaseException) -> bool:
    """Memory or address space refused, not a bug: MemoryError, OSError ENOMEM, a thread that could not start
    (`thread_not_started`: EAGAIN, as a RuntimeError or an OSError) or torch's allocator (`torch_out_of_memory`)."""
    import errno

    return (isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno == errno.ENOMEM)
            or thread_not_started(exc) or torch_out_of_memory(exc))


def out_of_memory_said(exc: BaseException) -> str:
    """`OUT_OF_MEMORY`, or for a thread not started where no ulimit -v is set (more often a cap on threads than memory,
    apps/batch/memory_reasons.py) a line naming both."""
    import resource

    if thread_not_started(exc) and resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY:
        return ("out of memory or of threads: a thread could not start (a limit on threads or processes: ulimit -u, a "
                "container's or job's pids.max; or memory); try --threads 1 or fewer workers, raise that limit, or a "
                "machine with more memory")
    return OUT_OF_MEMORY
