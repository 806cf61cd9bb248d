"""The end of an `iqt batch` run's cluster: closed with a Ctrl-C held until it has, the open-file limits it met said,
and what an interrupted run left in the subject folders removed (apps/cli/batch.py `_run` calls `_stop`)."""

from __future__ import annotations

import contextlib
import sys
import warnings

from ...core.errors import IQTWarning
from ...core.words import counted


def _stop(client, cluster, interrupted_in=(), existed=frozenset()) -> None:
    """Close the client and the local cluster; after an interrupted run, remove from the subject folders
    `interrupted_in` the temporaries of writers the closing killed mid-file (a local worker stopped while writing leaves
    its .iqt- file, which the line 'no partial output was left' would belie), and each such folder, up to the output
    folder, that is empty now and was not there before the run (`existed`, from `_folders_there`: a subject stopped
    before its files were put in place left sub-01/ses-1/dwi/ empty). The temporaries only once the local workers are
    gone: a remote one may still be writing; the empty folders under a remote scheduler too (a lost scheduler had left
    a new output folder's subject folders empty: a cohort audit), a writer that comes after making its folder again."""
    from ..batch.records import remove_temporaries

    try:
        with _ctrl_c_held():
            client.close()
            if cluster is not None:
                cluster.close()
    finally:  # the count is met where closing fails too
        _open_files_said(cluster)
    for folder in interrupted_in:
        if cluster is not None:
            remove_temporaries(folder)
        for empty in (folder.parent / "figures", folder):  # the subject's QC figure folder (records.figure_path)
            while empty not in existed and empty.parent != empty:
                try:
                    empty.rmdir()  # only when empty
                except OSError:
                    break
                empty = empty.parent


def _open_files_said(cluster) -> None:
    """One warning with the count of the EMFILE tracebacks the local cluster's event loop logged off stderr (under a
    tight ulimit -n a run had printed 40,027 of them; open_files._open_files_noted), once the cluster has closed."""
    from ..batch.open_files import open_files_met

    n = open_files_met(cluster) if cluster is not None else 0
    if n:
        try:
            import resource

            limit = f"ulimit -n {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}; "
        except ImportError:  # Windows
            limit = ""
        warnings.warn(f"the local cluster met this process's limit on open files {counted(n, 'time')} ({limit}the "
                      "tracebacks were kept off stderr, --debug shows them): raise it or run fewer --workers",
                      IQTWarning, stacklevel=2)


@contextlib.contextmanager
def _ctrl_c_held():
    """A Ctrl-C while the cluster closes is held until it has closed: one that interrupted the close cancelled it (Dask's
    sync), its nannies never killed their workers, and a worker mid-subject ended its process with torch running (a
    C++ abort and a core file; an audit's double Ctrl-C). Raised after the close where nothing else is unwinding."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        yield  # an ignored Ctrl-C (a script's `iqt batch ... &`) stays ignored, as the command leaves it
        return
    held = []
    before = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
    if held and sys.exc_info()[1] is None:
        raise KeyboardInterrupt


def _folders_there(out, items) -> frozenset:
    """The subject folders of `items` under `out`, and every folder between them and `out`, that exist now; `out`
    itself always counts as existing."""
    from ..batch.records import subject_folders

    there = {out.absolute()}
    for folder in subject_folders(out.absolute(), items):
        if (folder.parent / "figures").exists():  # the QC figures' folder beside it (records.figure_path)
            there.add(folder.parent / "figures")
        while folder != out.absolute() and folder.parent != folder:
            if folder.exists():
                there.add(folder)
            folder = folder.parent
    return frozenset(there)
