"""Every subject through `subject.process`, on a Dask client or in this process, then the QC table."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from ...core.errors import IQTError, IQTWarning, too_many_open_files
from .items import Item
from .lock import held
from .qc import write_qc
from .records import (TEMPORARY, Settings, check_inputs_kept, dataset_description, earlier_copies_line,
                      generated_by_in_use, remove_temporaries, subject_folders)
from .results import other_builds, pending, say_results
from .scheduler import WAIT_WORKERS_S
from .tasks import _run_items


QC_WRITE_EVERY_S = 10.0  # the QC table written again as subjects end, at most this often (and always at the end)


def run_cohort(items: list[Item], s: Settings, out_root, client=None, progress: bool = True,
               wait_workers: float = WAIT_WORKERS_S, lock: bool = True, run_token: str | None = None,
               also: set = frozenset()) -> list[dict]:
    """Every item through `process`, on `client` (a Dask client) or in this process when None; results in input order.
    An IQTError where the cluster has had no worker for `wait_workers` seconds (all died or left: the tasks waited
    forever); the subjects done by then are kept, and a rerun skips them. With `lock`, the folder's lock (batch/lock.py)
    is held for the run, and an IQTError raised at once where another run holds it; `lock=False` where the caller holds
    it (`iqt batch` takes it before the cluster starts and keeps it until the cluster has stopped), giving its
    `run_token`: a subject on the cluster puts its files in place only while the lock is that run's (subject.process).
    `also`: the QC row keys the same command wrote at other factors (qc.write_qc)."""
    out_root = Path(out_root)
    if not lock:
        return _run_cohort(items, s, out_root, client, progress, wait_workers, run_token, also)
    out_root.mkdir(parents=True, exist_ok=True)
    with held(out_root) as rec:
        return _run_cohort(items, s, out_root, client, progress, wait_workers, rec["token"], also)


def _run_cohort(items, s, out_root: Path, client, progress, wait_workers, run_token=None, also=frozenset()) -> list[dict]:
    from ...core.progress import progress_bar
    from ...fileio.model_files import build

    mine = build()  # this process's build, read before any subject runs (the code on disk may change meanwhile)
    check_inputs_kept(out_root, items, s)  # `iqt batch` checked before the cluster started; an in-process caller here
    for folder in subject_folders(out_root, items):  # a killed run's, in this cohort's subject folders only
        remove_temporaries(folder)
    earlier = earlier_copies_line(out_root)
    if earlier:
        warnings.warn(earlier, IQTWarning, stacklevel=3)
    described = out_root / "dataset_description.json"
    new_folder = not described.exists()
    dataset_description(out_root, s, items)
    bar = progress_bar(total=len(items), desc="subjects", enabled=progress)
    results = {}
    last = [time.monotonic()]

    def ended(it, result) -> None:  # the table written again as subjects end: a killed run leaves what finished
        other_builds([result], mine)
        results[it.prefix] = result
        bar.update(1)
        # the last: written once the run's checks are done, below; the others at most every QC_WRITE_EVERY_S (each
        # write reads and rewrites the whole table: once per subject, 1000 quick subjects took 40 s of writes)
        if len(results) == len(items) or time.monotonic() - last[0] < QC_WRITE_EVERY_S:
            return
        try:
            write_qc(out_root, [results.get(i.prefix) or pending(i, s, out_root) for i in items], s, also)
        except (IQTError, OSError):  # (a full disk) the table is written again at the end, and a failure said then
            pass
        last[0] = time.monotonic()

    try:
        _run_items(items, s, out_root, client, wait_workers, ended, run_token, mine)
    except BaseException as exc:  # Ctrl-C, a termination signal, no workers or no scheduler left: the table says what
        # a worker may have put a subject in place before its result reached this process (a cohort audit's SIGTERM
        # as the first outputs landed left them without the folder's description and table): it counts as ended
        if results or isinstance(exc, IQTError) or (new_folder and _any_output(out_root, items)):  # ended, rest pending
            try:
                write_qc(out_root, [results.get(i.prefix) or pending(i, s, out_root) for i in items], s, also)
            except (IQTError, OSError):
                pass
        elif new_folder:  # stopped before any subject ended: 'no partial output was left' holds for this file too
            described.unlink(missing_ok=True)  # (it named a run that made nothing: a researcher's audit)
        if client is None and described.exists():  # in this process: nothing writes after this; on a cluster once it
            try:  # has stopped (settle_after_stop). This run's GeneratedBy entry is kept only where it made a file (a
                generated_by_in_use(out_root)  # cohort audit: a stopped run was listed until the next whole run)
            except (IQTError, OSError):
                pass
        raise
    bar.close()
    ordered = [results[it.prefix] for it in items]
    line = other_builds(ordered, mine)
    if line:
        warnings.warn(line, IQTWarning, stacklevel=3)
    generated_by_in_use(out_root)
    try:
        try:
            write_qc(out_root, ordered, s, also)
        except OSError as exc:  # not a full disk (that is an IQTError already): e.g. a folder where qc.tsv goes
            workers = len(getattr(getattr(client, "cluster", None), "workers", None) or ())  # none at a --scheduler
            many = too_many_open_files(exc, "rerun: the subjects done are skipped", workers)  # its filename is any file's
            if many is not None:
                raise many from None
            where = exc.filename2 or exc.filename or out_root / "qc.tsv"  # renamed into place: the table's own name
            raise IQTError(f"{where}: the QC table cannot be written ({exc.strerror or exc}); make room "
                           "for it (or remove what is in its way) and rerun: the subjects done are skipped") from None
    except IQTError:  # the run's summary and each failure said first: the error alone ended the run
        say_results(ordered, "; the QC table was not written in full (below)")
        raise
    return ordered


def settle_after_stop(items, s: Settings, out_root: Path, also=frozenset()) -> None:
    """Once a stopped run's cluster is gone: where a worker put a subject in place while it stopped, after the run had
    found none and removed the new folder's description (a review: SIGTERM during a local cluster's first subject left
    its outputs without dataset_description.json and table), write them again, its subjects pending; where the folder
    has its description, keep in its GeneratedBy only the runs some output names (`generated_by_in_use`: this run's, if it
    made none, goes; pruned here, with the workers gone, so that a subject landing as they stopped keeps its entry)."""
    if (out_root / "dataset_description.json").exists():
        try:
            generated_by_in_use(out_root)
        except (IQTError, OSError):
            pass
        return
    if not _any_output(out_root, items):
        return
    try:
        dataset_description(out_root, s, items)
        write_qc(out_root, [pending(i, s, out_root) for i in items], s, also)
    except (IQTError, OSError):  # (a full disk) the rerun writes them
        pass


def _any_output(out_root: Path, items) -> bool:
    """Whether a subject folder of this cohort holds a file other than a writer's temporary."""
    for folder in subject_folders(out_root, items):
        try:
            if any(p.is_file() and not TEMPORARY.match(p.name) for p in folder.iterdir()):
                return True
        except OSError:  # no folder yet
            continue
    return False


