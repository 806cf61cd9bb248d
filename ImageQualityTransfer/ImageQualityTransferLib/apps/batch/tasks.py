"""The subjects sent to a cluster's workers as tasks, each guarded against a worker of another build, and their ends
gathered (a worker that died, a lost scheduler, a cluster left without workers)."""

from __future__ import annotations

import functools
import time
import uuid
from pathlib import Path

from ...core.errors import IQTError, out_of_memory
from ...core.words import counted
from .items import Item
from .memory_reasons import as_remote_workers, memory_reason
from .scheduler import _OWN_CLUSTERS, shown
from .subject import process


_GUARD = """
def guarded(payload, run_build, torch=False):
    try:
        from ImageQualityTransferLib.fileio.model_files import build
        theirs = build()
    except Exception:  # a build without that function: its digest as the probe reads it
        try:
            from ImageQualityTransferLib.core.version import build_digest
            from ImageQualityTransferLib.fileio.paths import MODELS_DIR
            theirs = build_digest(str(MODELS_DIR / "registry.json"))[:12]
        except Exception:
            theirs = "unknown"
    if theirs != run_build:
        try:
            from distributed import get_worker
            w = get_worker()
            who = str(w.address) if str(w.name) == str(w.address) else str(w.name) + "/" + str(w.address)
            address = w.address
        except Exception:  # called outside a Dask worker
            who, address = "this process", None
        return {"status": "failed", "other_worker": who, "worker_address": address, "build": theirs}
    if torch:
        try:
            import torch as _torch  # noqa: F401
        except Exception as exc:
            try:
                from distributed import get_worker
                w = get_worker()
                who = str(w.address) if str(w.name) == str(w.address) else str(w.name) + "/" + str(w.address)
                address = w.address
            except Exception:
                who, address = "this process", None
            return {"status": "failed", "other_worker": who, "worker_address": address, "build": theirs,
                    "no_torch": type(exc).__name__ + ": " + " ".join(str(exc).split())}
    import pickle
    from ImageQualityTransferLib.apps.batch.subject import process
    return process(*pickle.loads(payload))
"""


def _guard():
    """The task a cluster runs for each subject, sent by value (like `_probe`) so that any worker runs it, whatever
    its version: it compares the worker's build with the run's before it unpickles the subject or touches a file, and
    returns {"other_worker", "worker_address", "build"} where they differ; else `subject.process` on the pickled
    (item, settings, out_root, run_token). A worker of another build that joined the scheduler mid-run (check_workers
    ran at the start) had put its outputs over a done subject's; one of older code failed unpickling a newer task."""
    space: dict = {"__name__": "iqt_worker_guard"}
    exec(_GUARD, space)  # noqa: S102 (a fixed text)
    return space["guarded"]


def refused_by_other_worker(it: Item, result: dict, run_build: str) -> dict:
    """The failed row of a subject `_guard` refused on a worker of another build, or without PyTorch (the start-up
    probe's words, check_workers: a worker that joined mid-run had failed it naming no worker)."""
    if result.get("no_torch"):
        return {"subject": it.prefix, "input": it.path, "status": "failed", "qc": {},
                "reason": (f"worker {result['other_worker']} cannot import PyTorch, which the CNN methods need "
                           f"({result['no_torch']}); nothing of the subject was written by it; install it where the "
                           "workers run ('pip install torch' in their environment) and start them again, then rerun "
                           "the same command, which skips the subjects done")}
    return {"subject": it.prefix, "input": it.path, "status": "failed", "qc": {}, "build": result.get("build"),
            "reason": (f"a worker's code or model registry differs from this run's (worker {result['other_worker']}, "
                       f"build {result.get('build')}, the run's {run_build}); nothing of the subject was written by it: "
                       "a worker of another environment joined, or the install changed while the run worked (e.g. "
                       "'iqt train --register'); rerun the same command (the subjects done are skipped unless the "
                       "install changed)")}


_RETRIES = """
def retries(dask_scheduler, key):
    ts = dask_scheduler.tasks.get(key)
    n = getattr(ts, "suspicious", 0) if ts is not None else 0
    if not n:
        return [0, [], False]
    gave_up = ts.state == "erred" and n > getattr(dask_scheduler, "allowed_failures", n)  # KilledWorker: n deaths
    # one scan of the worker topics per change of them, kept on the scheduler: a scan a subject had cost a retried
    # subject 52 ms of the scheduler's loop with 150 full worker topics (a review's measure), and read every topic
    topics = getattr(getattr(dask_scheduler, "_broker", None), "_topics", None)  # Dask's own, read without a copy
    if isinstance(topics, dict):
        workers = [(t, v.events) for t, v in list(topics.items()) if "://" in str(t)]
    else:
        workers = [(t, e) for t, e in dask_scheduler.get_events().items() if "://" in str(t)]
    memory_events = dask_scheduler.get_events("worker-restart-memory")
    stamp = (tuple((t, len(e), e[-1][0] if len(e) else None) for t, e in workers), len(memory_events),
             memory_events[-1][0] if memory_events else None)
    kept = getattr(dask_scheduler, "_iqt_retries", None)
    if kept is None or kept[0] != stamp:
        memory = {e.get("worker") for _, e in memory_events if isinstance(e, dict)}
        index = {}
        for topic, events in workers:
            for _, e in list(events):
                if isinstance(e, dict) and e.get("action") == "remove-worker" and not e.get("expected"):
                    ttl = str(e.get("stimulus_id", "")).startswith("check-worker-ttl")
                    why = ("past its memory limit" if topic in memory else
                           "no heartbeat: its machine lost or hung" if ttl else "its process died")
                    for k in e.get("processing-tasks") or ():
                        index.setdefault(k, []).append([str(topic), why])
        kept = (stamp, index)
        dask_scheduler._iqt_retries = kept
    lost = kept[1].get(key, [])
    return [int(n), lost, bool(gave_up)]
"""


@functools.cache
def _retries():
    """`_RETRIES`'s function, made once per process (its text had been compiled again for every subject, 2 ms each)."""
    space: dict = {"__name__": "iqt_task_retries"}
    exec(_RETRIES, space)  # noqa: S102 (a fixed text, sent by value: a --scheduler need not hold this package)
    return space["retries"]


def retried_note(client, key) -> str | None:
    """The note of a subject whose task Dask gave to another worker because the worker holding it (running it, or with
    it queued) died (out of memory, killed, its node lost), read from the scheduler (the task's `suspicious` count, its
    remove-worker and worker-restart-memory events) while the task is still held: re-sent N times where it ended, Dask
    stopped after N deaths where it failed (KilledWorker); None where it ran once or the scheduler cannot say. Dask
    retries such a task silently: a cohort's table had read the same for a flaky subject as for a clean one (a review)."""
    try:
        n, lost, gave_up = client.run_on_scheduler(_retries(), key=key)
    except Exception:  # a scheduler that refuses to run code, or an older Dask: the run goes on without the note
        return None
    if not n:
        return None
    why = "; ".join(f"{worker}: {reason}" for worker, reason in lost) or "Dask did not say why"
    if gave_up:  # KilledWorker: n deaths, n - 1 re-sends, no outputs (a review: it had said "its outputs come from
        # the last" and counted the deaths as re-sends)
        return (f"Dask stopped after {counted(n, 'worker')} holding it died ({why}); a subject whose worker dies may "
                "need more memory per worker")
    return (f"re-sent {counted(n, 'time')} after its worker died ({why}); its outputs, if any, come from the last try, "
            "but a subject whose worker dies may need more memory per worker")


OTHER_WORKER_TRIES = 3  # a subject workers of another build refused is sent again, to this build's, this often


def _run_items(items, s, out_root: Path, client, wait_workers, ended, run_token=None, run_build=None) -> None:
    """Every item through `process`, in this process or on `client`, `ended(item, result)` called as each ends. On
    `client`, each task checks in its worker that the worker's build is `run_build` before it touches anything
    (`_guard`: a worker can join the scheduler mid-run, after check_workers); a subject so refused is sent again at
    once, preferring the workers not found of another build there then, and fails with the refusal's reason where
    none is there within `wait_workers` seconds."""
    import pickle

    if client is None:
        for it in items:
            ended(it, process(it, s, str(out_root)))
        return
    # keys without the subjects' labels: a cluster's dashboard shows them (a label can name the patient)
    run = uuid.uuid4().hex[:12]
    task = _guard()
    from ... import methods

    try:  # a worker without PyTorch that joined mid-run is refused by the guard too, and the subject sent again
        torch = bool(methods.method_class(s.method).requires_torch)
    except Exception:  # an unknown method: said by the subject itself
        torch = False

    cluster = getattr(client, "cluster", None)
    count = len(getattr(cluster, "worker_spec", None) or ()) or None  # a LocalCluster's: one entry a worker

    def payload(it):  # the count: a subject's own memory reason says "fewer --workers" only where there are more
        return pickle.dumps((it, s, str(out_root), run_token, count))

    futures = {client.submit(task, payload(it), run_build, torch, key=f"iqt-{run}-{i}", pure=False): it
               for i, it in enumerate(items)}
    total, done, sent, refused = len(futures), 0, 0, set()
    tries: dict = {}  # item prefix -> how often a worker of another build refused it
    waiting: dict = {}  # item -> (its refusal, since when no worker of this build was there to take it)

    def good_workers() -> list:  # now, not at an earlier refusal: a good worker can leave and another join meanwhile
        return [w for w in client.scheduler_info().get("workers", {}) if w not in refused]

    pinned: dict = {}  # a re-sent future -> the addresses it may run on

    def resend(it, good) -> None:
        # pinned to this build's workers there now (a loose restriction let an idle worker of another build steal it
        # and refuse it again until its tries were spent); where they all leave, poll sends it again
        nonlocal sent
        sent += 1
        fut = client.submit(task, payload(it), run_build, torch, key=f"iqt-{run}-r{sent}", pure=False, workers=good,
                            allow_other_workers=False)
        futures[fut] = it
        pinned[fut] = set(good)
        added.append(fut)

    def poll() -> bool:  # the refused subjects held until a worker of this build is there, or failed after the grace
        nonlocal done
        if pinned:  # pinned to workers that all left (restarted at new addresses): it had waited there forever
            live = set(client.scheduler_info().get("workers", {}))
            for fut in [f for f, on in pinned.items() if not on & live and not f.done()]:
                del pinned[fut]
                dropped.append(fut)
                client.cancel([fut])
                it = futures.pop(fut)
                waiting[it] = (refusals[it.prefix], time.monotonic())
        good = good_workers() if waiting else []
        for it, (result, since) in list(waiting.items()):
            if good:
                del waiting[it]
                resend(it, good)
            elif time.monotonic() - since >= wait_workers:
                del waiting[it]
                done += 1
                ended(it, refused_by_other_worker(it, result, run_build))
        return bool(waiting)

    added: list = []
    refusals: dict = {}  # item prefix -> its last refusal
    dropped: list = []  # futures poll cancelled
    for fut in _as_completed(client, list(futures), wait_workers, refused, added, poll, dropped):
        pinned.pop(fut, None)
        it = futures.pop(fut)
        try:
            result = fut.result()
        except Exception as exc:  # the task never returned: recorded like any failure
            if _connection_lost(exc):
                raise _lost(client, total - done, total) from None
            cluster = getattr(client, "cluster", None)
            workers = len(getattr(cluster, "worker_spec", None) or ()) or None  # a LocalCluster's: one entry a worker
            reason = task_failed(exc, local=cluster is not None, workers=workers)
            result = {"subject": it.prefix, "input": it.path, "status": "failed", "qc": {}, "reason": reason}
        else:
            if result.get("reason") and getattr(client, "cluster", None) is None:  # a --scheduler's worker
                result["reason"] = as_remote_workers(result["reason"])
        note = retried_note(client, fut.key)  # one call to the scheduler a subject, while the task is still held
        if note:
            result["notes"] = [*(result.get("notes") or []), note]
        if result.get("other_worker"):
            refused.add(result.get("worker_address"))
            refusals[it.prefix] = result
            tries[it.prefix] = tries.get(it.prefix, 0) + 1
            if tries[it.prefix] <= OTHER_WORKER_TRIES:
                good = good_workers()
                if good:  # sent again at once, not after the others of its round
                    resend(it, good)
                else:  # none of this build now: one may join (or come back) within --wait-workers
                    waiting[it] = (result, time.monotonic())
                continue
            result = refused_by_other_worker(it, result, run_build)
        done += 1
        ended(it, result)


def task_failed(exc: BaseException, local: bool, workers: int | None = None) -> str:
    """The reason of a subject whose task never returned. `local`: the workers are this command's LocalCluster's, set
    by --memory-limit and --workers; a --scheduler's are not (it refuses both: apps/cli/batch.py), and the advice names
    what sets theirs. `workers`: the local cluster's count where known ("run fewer --workers" is not said to one)."""
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        if local:
            if workers == 1:
                return "the worker running it died (memory limit or killed); give it more memory with --memory-limit"
            return ("the worker running it died (memory limit or killed); give the workers more memory with "
                    "--memory-limit or run fewer --workers")
        return ("the worker running it died (past its memory limit, or killed); give the scheduler's workers more "
                "memory (where they are started: 'dask worker --memory-limit', the cluster job's memory) or start fewer "
                "of them on each machine")
    if out_of_memory(exc):
        return memory_reason(exc, local=local, workers=workers)
    return (f"could not run on the cluster ({type(exc).__name__}: {' '.join(str(exc).split())}); the workers need "
            "ImageQualityTransfer installed and the same paths as this machine")


def _connection_lost(exc: BaseException) -> bool:
    """Whether `exc` is the client's connection to the scheduler lost (the scheduler stopped or unreachable): every
    future is then cancelled, and no subject failed for its own reason."""
    from concurrent.futures import CancelledError

    from distributed.comm.core import CommClosedError

    return isinstance(exc, (CancelledError, CommClosedError))


def _lost(client, left: int, total: int) -> IQTError:
    scheduler = getattr(client.scheduler, "address", "the scheduler")
    return IQTError(f"lost the connection to the scheduler at {shown(scheduler)} (it stopped or cannot be reached): {left} of "
                    f"{counted(total, 'subject')} not ended; the QC table says which; start the scheduler again and rerun the same "
                    "command, which skips the subjects done (a subject its workers end meanwhile is not put in place)")


WORKERS_POLL_S = 1.0  # how often a run whose tasks are waiting checks that the cluster still has a worker


def _as_completed(client, futures: list, wait_s: float, refused=frozenset(), added=None, poll=None, dropped=None):
    """The futures as they complete, as distributed.as_completed gives them, but an IQTError (the unfinished ones
    cancelled) once the cluster has had no worker for `wait_s` seconds; the workers at the addresses in `refused` (of
    another build, tasks._guard) do not count. Futures the caller appends to `added` meanwhile are waited for too,
    those it appends to `dropped` (cancelled) no longer; `poll()`, called each round, says whether the caller still
    holds work to send (the loop goes on while it does)."""
    from distributed import wait

    pending, alone_since, total = set(futures), None, len(futures)
    while True:
        held = poll is not None and poll()
        if added:
            pending.update(added)
            added.clear()
        if dropped:
            pending.difference_update(dropped)
            dropped.clear()
        if not pending and not held:
            return
        if not pending:
            time.sleep(WORKERS_POLL_S)
            continue
        try:
            done, pending = wait(list(pending), timeout=WORKERS_POLL_S, return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = set()
        except Exception as exc:
            if _connection_lost(exc):
                raise _lost(client, len(pending), total) from None
            raise
        yield from done
        if added:
            continue
        if pending:
            _start_closed_workers(client)
        if not pending or done:
            alone_since = None
            continue
        if any(n for w, n in client.nthreads().items() if w not in refused):
            alone_since = None
        elif alone_since is None:
            alone_since = time.monotonic()
        elif time.monotonic() - alone_since >= wait_s:
            client.cancel(list(pending))
            scheduler = getattr(client.scheduler, "address", "the scheduler")
            # a local cluster's nanny can give up restarting a worker killed past its memory limit (Dask's "still
            # alive after 4.0 seconds, killing"): the words had pointed only at a worker without this package;
            # --memory-limit sets a local cluster's workers only (a review: it was advised for --scheduler too)
            mend = ("with a larger --memory-limit where a subject's worker died" if scheduler in _OWN_CLUSTERS else
                    "once your cluster has workers again (with more memory where one was killed)")
            raise IQTError(f"{len(pending)} of {counted(total, 'subject')} not run: the cluster at {shown(scheduler)} has had no "
                           f"worker for {wait_s:g} s (every worker died or left: killed past its memory limit and not "
                           "started again, or without ImageQualityTransfer, which dies on its first task); rerun the "
                           f"same command, which skips the subjects done, {mend}")


def _start_closed_workers(client) -> None:
    """Start again the workers of our local cluster that Dask closed for good: a worker killed past its memory limit
    and not back within distributed.deploy.lost-worker-timeout has its nanny closed by the cluster, and a run whose
    last worker went so stopped after --wait-workers with its other subjects not run (a cohort audit). A subject that
    kills every worker it runs on still ends, failed, after Dask's allowed failures; a cluster scaled down on purpose
    and a scheduler's (--scheduler) are left as they are."""
    cluster = getattr(client, "cluster", None)
    spec = getattr(cluster, "worker_spec", None)
    if spec and not set(spec) <= set(cluster.workers):
        cluster.scale(len(spec))
