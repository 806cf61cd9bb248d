"""The local cluster's start against the process's limits: the EMFILE and ENFILE tracebacks its event loop logs kept off
stderr and counted, and the limit a failed start met said as one line."""

from __future__ import annotations

import contextlib
import sys

from ...core.errors import too_many_open_files


def _limit_met(exc: BaseException, met: list, workers: int):
    """What ended a local cluster's start where a limit did: the too-many-open-files IQTError (an EMFILE or ENFILE in
    `exc`'s chain, or in `met`: logged by the event loop), or the OSError or RuntimeError of a process or thread that
    could not start (core/errors.py thread_not_started, which the CLI says as the limit); None otherwise. The chain
    is each exception's __cause__, and its __context__ only behind Dask's wrappers (core/errors.py _wraps) and its
    nanny's failed cleanup (an AttributeError after os.pipe() met ulimit -n, `_dask_cleanup`): a bug raised while an
    EMFILE was handled is a bug (had been said as the limit, also under --debug)."""
    from ...core.errors import _wraps, thread_not_started

    chain, e = [], exc
    while e is not None and len(chain) < 64 and all(e is not c for c in chain):
        chain.append(e)
        e = e.__cause__ if e.__cause__ is not None else None if e.__suppress_context__ or not (
            _wraps(e) or _dask_cleanup(e)) else e.__context__
    ours = all(_wraps(c) or _dask_cleanup(c) or isinstance(c, OSError) for c in chain)  # no bug among them
    for c in [*chain, *(met if ours else ())]:
        many = too_many_open_files(c, "rerun", workers)
        if many is not None:
            return many
    # the refusal itself, innermost first: Dask's "Nanny failed to start." raised from it, re-raised `from None` by
    # start_client, lost its cause and had ended as an internal error (ulimit -u 6 and 10, a cohort audit)
    return next((c for c in reversed(chain) if thread_not_started(c)), None)


def _dask_cleanup(exc: BaseException) -> bool:
    """Dask's nanny cleaning up after a worker process that never started (Testing/apps/test_batch_scale.py
    _dask_start_failed): its process handle is None."""
    return type(exc) is AttributeError and str(exc).startswith("'NoneType' object has no attribute")


class _Met(list):
    """The first EMFILE and ENFILE errors the event loop logged (up to 10, for the start's line), and `count`: all."""

    count = 0
    started = False  # the cluster is up: the first one met from now on is said at once (one line)


_KEPT_OFF: dict = {}  # scheduler address -> (loggers, filter, met) of a started local cluster's EMFILE filter


@contextlib.contextmanager
def _open_files_noted(keep: bool = False):
    """While the local cluster starts: the EMFILE and ENFILE errors its event loop logs (a listener's accept under
    ulimit -n 16 logged one traceback per try, hundreds of thousands of lines on stderr before the start failed),
    counted and kept off stderr; the rest of what the loop logs is left as it was. Removed after a failed start (Dask
    has closed what it started by then; kept, it had dropped every later EMFILE traceback of the process, an
    in-process caller's and a later cluster's, --debug too); after a started one kept where `keep` (it is the caller's
    to end: `open_files_met`; under ulimit -n 41 a run with it removed printed 40,027 tracebacks), else removed."""
    import errno
    import logging

    met = _Met()

    def drop(record) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            met.count += 1
            if len(met) < 10:
                met.append(exc)
            if met.started:  # a run that stalls on it had said nothing until its end (a review: 68 s of silence)
                met.started = False
                sys.stderr.write("iqt: warning: the local cluster has met this process's limit on open files; the "
                                 "run may slow down or stall: raise ulimit -n or run fewer --workers (the count at "
                                 "the end)\n")
            return False
        return True

    logs = [logging.getLogger(name) for name in ("asyncio", "tornado.application", "tornado.general")]
    for log in logs:
        log.addFilter(drop)
    met.remove_filter = lambda: [log.removeFilter(drop) for log in logs]
    try:
        yield met
    except BaseException:
        met.remove_filter()
        raise
    if not keep:  # under --debug a later EMFILE's traceback reaches stderr
        met.remove_filter()
    else:
        met.started = True


def open_files_met(cluster) -> int:
    """How many EMFILE and ENFILE errors the event loop of `cluster` (a local one `start_client` started) logged while
    kept off stderr, its filter removed now: for the run's one line once the cluster has closed; 0 for none."""
    met = _KEPT_OFF.pop(getattr(cluster, "scheduler_address", None), None)
    if met is None:
        return 0
    met.remove_filter()
    return met.count
