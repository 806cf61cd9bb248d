"""The one exception type that reaches a user: it says what was wrong and what to do."""

import re


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


def shell_word(text: str) -> str:
    """`text` quoted as one word for the shell a user types into: on Windows in double quotes, as cmd.exe reads them,
    not POSIX single quotes ('C:\\Program Files\\...' had been given to Windows users; PowerShell runs a quoted path
    with & before it)."""
    import os
    import shlex
    import subprocess

    return subprocess.list2cmdline([text]) if os.name == "nt" else shlex.quote(text)


TORCH_PIN = "torch==2.13.0"  # the CPU build README.md's Two commands install; Testing/apps/test_install_hints.py checks they agree
# the index README.md's install notes add on a machine whose pip reaches PyPI (there torch==2.13.0 on Linux and Windows
# pulls CUDA packages); Testing/apps/test_install_hints.py checks they agree
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def pinned_torch(platform: str = "") -> str:
    """The torch requirement the install hints name: README.md's pin, with its CPU index on Linux and Windows (where
    PyPI's torch pulls CUDA packages, as README.md says); macOS's PyPI torch is the CPU build."""
    import sys

    if (platform or sys.platform) == "darwin":
        return TORCH_PIN
    return f"{TORCH_PIN} --index-url {TORCH_CPU_INDEX}"


def pip_install(what: str) -> str:
    """The pip command that installs `what` into the Python running this (`.venv/bin/iqt` run without the environment
    activated: a bare 'pip' is another Python's), its path quoted for the shell (`shell_word`); torch as `pinned_torch`
    names it (unpinned, pip took the newest)."""
    import sys

    what = pinned_torch() if what == "torch" else what
    return f"{shell_word(sys.executable or 'python3')} -m pip install {what}"


def install_extra(extra: str) -> str:
    """How to install one of pyproject.toml's extras, as the README's Two commands do, said as a clause with its verb:
    from this project's clone (the package is on no package index, where 'pip install imagequalitytransfer[...]' finds
    nothing), with the running Python's pip (`pip_install`)."""
    editable = f"-e {shell_word(f'.[{extra}]')}"
    return f"run {pip_install(editable)} in this project's clone (README.md, Two commands)"


# what a run out of memory says: the CLI's line (apps/cli OUT_OF_MEMORY) and the Slicer worker's (slicer/worker.py)
OUT_OF_MEMORY = ("out of memory; try a smaller input or factor, fewer Monte Carlo samples, --threads or workers, or a "
                 "machine with more memory")


# where CPython's process starts call fork or posix_spawn (3.11: subprocess.Popen, multiprocessing's fork and spawn
# starts): an OSError EAGAIN raised there is a process refused; one raised by a non-blocking read or write is not
_PROCESS_STARTS = {("subprocess.py", "_execute_child"), ("subprocess.py", "_posix_spawn"),
                   ("popen_fork.py", "_launch"), ("util.py", "spawnv_passfds")}


# what Dask raises while handling a failure to get memory, a thread or a process as a worker starts, implicitly
# (__context__): its nanny's kill asserts the worker's state, an AssertionError whose message is that state
# ("Status.init"), and its servers raise RuntimeError "<Nanny|Worker|Scheduler> failed to start." (Testing/apps/test_cli.py
# _nanny_failed). Only these exact ones: a RuntimeError subclass (NotImplementedError, RecursionError), another
# RuntimeError or an engine's assert raised while handling a MemoryError is a bug (Testing/core/test_errors_chain.py)
_DASK_FAILED_TO_START = re.compile(r"\w+ failed to start\.")


def _wraps(exc: BaseException) -> bool:
    if type(exc) is RuntimeError:
        return _DASK_FAILED_TO_START.fullmatch(str(exc)) is not None
    return type(exc) is AssertionError and str(exc).startswith("Status.")


def _chain(exc: BaseException, depth: int = 8):
    """`exc` and what it was raised from or while handling, at most `depth` deep: its __cause__ (`raise ... from`)
    always, its __context__ only where `exc` is one of Dask's wrappers of such a failure (`_wraps`; `iqt batch --workers
    2` under ulimit -u had ended in an internal error). The error said is the last one raised: a bug (a TypeError, a
    NotImplementedError, an assert) raised while handling a MemoryError is a bug, with or without `raise ... from None`
    (Testing/core/test_errors_chain.py)."""
    while exc is not None and depth > 0:
        yield exc
        if exc.__cause__ is not None:
            after = exc.__cause__
        elif exc.__suppress_context__ or not _wraps(exc):
            after = None
        else:
            after = exc.__context__
        exc, depth = after, depth - 1


# Dask's nanny when its worker process died before it could report: a limit on processes or threads (ulimit -u,
# raised in that child, which this process never sees), memory, a crash, a script calling iqt without the __main__
# guard; the exit status the nanny logs (apps/batch/dask_client.py start_client notes it here) does not tell them apart, and
# by the time Dask re-raises it has closed the cluster, so counting threads then cannot either (no guess is made)
WORKER_PROCESS_DIED = "Nanny failed to start worker process"
WORKER_EXITS = "iqt_worker_exits"  # the attribute start_client sets on such an exception: the exit statuses logged


def _worker_died(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and str(exc) == WORKER_PROCESS_DIED


def _worker_exits(exc: BaseException) -> list:
    return next((getattr(e, WORKER_EXITS) for e in _chain(exc) if getattr(e, WORKER_EXITS, None)), [])


def worker_died_said(exc: BaseException, workers: int | None = None) -> str | None:
    """For a Dask worker process that died starting, the one line naming its possible causes and what to try, without
    the 'iqt: error:' prefix; None otherwise. It had guessed 'a limit' or 'your script' from a count of threads, and
    misfired both ways. `workers`: `iqt batch`'s local workers (0 at a --scheduler): "fewer --workers" only where
    more than one ran (it had been advised to --workers 1); None where not known."""
    if not any(_worker_died(e) for e in _chain(exc)):
        return None
    exits = sorted(set(_worker_exits(exc)))
    status = f" (exit status {', '.join(map(str, exits))})" if exits else ""
    fewer = " and fewer --workers" if workers is None or workers > 1 else ""
    return (f"a Dask worker process could not start{status}: a limit on processes or threads (ulimit -u), memory, or "
            "an error in the worker itself (a script calling iqt needs the `if __name__ == \"__main__\":` guard, "
            f"since each worker process re-runs it); try --threads 1{fewer}, or raise that limit")


def _process_refused(exc: BaseException) -> bool:
    import errno
    import os

    if not (isinstance(exc, OSError) and exc.errno == errno.EAGAIN) or hasattr(exc, "characters_written"):
        return False
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if (os.path.basename(code.co_filename), code.co_name) in _PROCESS_STARTS:
            return True
        tb = tb.tb_next
    return False


def process_not_started(exc: BaseException) -> bool:
    """A process that could not start: OSError EAGAIN (BlockingIOError "Resource temporarily unavailable", ulimit -u or
    a pids.max met) raised through where fork or posix_spawn is called (`_PROCESS_STARTS`), as `exc` or in its chain
    (`_chain`); not a Dask worker process that died starting (`worker_died_said`). Not a non-blocking write's EAGAIN
    (a full pipe given as stdout): that one carries characters_written or is raised elsewhere."""
    return any(_process_refused(e) for e in _chain(exc))


def thread_not_started(exc: BaseException) -> bool:
    """A thread or process that could not start: a thread's RuntimeError "can't start new thread" (pthread_create's
    EAGAIN; under ulimit -v its stack's address space refused, e.g. save_nifti's thread pool, fileio/nifti.py, near the
    limit), or a process's OSError EAGAIN (`process_not_started`), which had ended as an internal error; as `exc` or in
    its chain (`_chain`)."""
    return any(isinstance(e, RuntimeError) and "can't start new thread" in str(e) for e in _chain(exc)) \
        or process_not_started(exc)


def out_of_memory(exc: BaseException) -> bool:
    """Memory or address space refused, not a bug: MemoryError, OSError ENOMEM, a thread or process that could not
    start (`thread_not_started`) or torch's allocator (`torch_out_of_memory`), as `exc` or in its chain (`_chain`)."""
    import errno

    return thread_not_started(exc) or any(
        isinstance(e, MemoryError) or (isinstance(e, OSError) and e.errno == errno.ENOMEM) or torch_out_of_memory(e)
        for e in _chain(exc))


def start_refused_said(exc: BaseException) -> str | None:
    """For a thread or process not started where no ulimit -v is set (more often a cap on threads or processes than
    memory, apps/batch/memory_reasons.py), what it was, without advice (the CLI's and the Slicer worker's own follow);
    None otherwise."""
    import resource

    if thread_not_started(exc) and resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY:
        what = "processes: a process" if process_not_started(exc) else "threads: a thread"
        return (f"out of memory or of {what} could not start (a limit on threads or processes: ulimit -u, a "
                "container's or job's pids.max; or memory)")
    return None


def out_of_memory_said(exc: BaseException) -> str:
    """`OUT_OF_MEMORY`, or for a thread or process not started where no ulimit -v is set a line naming both
    (`start_refused_said`)."""
    said = start_refused_said(exc)
    if said is not None:
        return f"{said}; try --threads 1 or fewer workers, raise that limit, or a machine with more memory"
    return OUT_OF_MEMORY


def too_many_open_files(exc: BaseException, then: str = "rerun", workers: int = 0, path=None) -> IQTError | None:
    """An OSError EMFILE (this process's limit on open files, ulimit -n) or ENFILE (the system's), as `exc` or in its
    chain (`_chain`), as the one line naming the limit and what to do; None otherwise. Met by
    `iqt batch --workers 2` under ulimit -n 40 while the QC table was written (an import's file), it had been said as
    that source file's 'make room for it' (apps/batch/cohort.py run_cohort). `workers`: batch's worker processes, more
    than one of which are worth fewer (no other command has --workers); `path`: the output whose own write met it
    (fileio/writing.py atomic_write), named as a full disk names it."""
    import errno

    # its cause and Dask's wrappers only (`_chain`): a bug raised while handling an EMFILE is a bug (Testing/apps/test_cli.py)
    exc = next((e for e in _chain(exc) if isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE)), None)
    if exc is None:
        return None
    fewer = " or run fewer --workers" if workers > 1 else ""
    name, kept = (f"{path}: cannot be written: ", " (no partial file was left)") if path is not None else ("", "")
    if exc.errno == errno.ENFILE:
        return IQTError(f"{name}too many open files on this system: its table of open files is full; close other "
                        f"programs{fewer}, then {then}{kept}")
    return IQTError(f"{name}too many open files: this process met its limit on open files{_open_files_limit()}{fewer}, "
                    f"then {then}{kept}")


def _open_files_limit() -> str:
    """' (ulimit -n N); raise it (e.g. ulimit -n M)': M twice N, or the hard limit where that is lower (a user can
    raise the soft limit only up to it); where N is already the hard limit, an administrator must raise that."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return " (ulimit -n); raise it"
    if soft == resource.RLIM_INFINITY:
        return "; raise the system's (fs.file-max)"
    if hard != resource.RLIM_INFINITY and soft >= hard:
        return f" (ulimit -n {soft}, also its hard limit); ask an administrator to raise it"
    more = 2 * soft if hard == resource.RLIM_INFINITY else min(2 * soft, hard)
    return f" (ulimit -n {soft}); raise it (e.g. ulimit -n {more})"
