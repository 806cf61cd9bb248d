"""The Dask client a run works on: at a scheduler's address (scheduler.py), or on a local cluster started here
(local_cluster.py, open_files.py)."""

from __future__ import annotations

import ssl

from ...core.errors import IQTError
from .local_cluster import THREADS_PER_WORKER, _spawn_ignoring_ctrl_c, _worker_exits_noted, local_security, nanny_class
from .open_files import _KEPT_OFF, _limit_met, _open_files_noted
from .scheduler import (ADDRESS_FORMS, WAIT_WORKERS_S, _reachable, _tls_error, _wait_for_workers, host_port,
                        check_address, check_workers, client_security, own_cluster, dask_said, shown)


CONNECT_S = 20  # how long Dask's Client tries a reachable --scheduler (a proxy's 400s to its handshake: until then)


def start_client(workers: int = 2, scheduler: str | None = None, memory_limit="auto",
                 dashboard_address="127.0.0.1:8787", wait_workers: float = WAIT_WORKERS_S, secure: bool = True,
                 torch: bool = False, quiet: bool = False):
    """A Dask client: on the scheduler at `scheduler` (once it has a worker, waited for up to `wait_workers` seconds),
    or on a new LocalCluster of `workers` single-threaded worker processes. Returns (client, cluster or None).

    The LocalCluster's scheduler, nannies and workers speak TLS with credentials made for this run only and held in
    memory (`local_security`; `secure=False`: plain TCP, for tests of a plain cluster): a connection without them is
    refused (on plain TCP any local user's `Client('tcp://127.0.0.1:PORT')` could run code in the workers, which
    hold the patients' images, and read the task keys). `torch`: the method runs a network, and a scheduler's workers
    must import PyTorch too (`check_workers`). `quiet`: the local cluster's event loop's EMFILE tracebacks are kept
    off stderr (counted) for its life, until `open_files_met` (`iqt batch`, unless --debug), not only while it starts.
    """
    import logging

    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        scheduler = check_address(scheduler)
        security = client_security(scheduler)
        try:
            _reachable(scheduler, security)
            client = Client(scheduler, timeout=f"{CONNECT_S}s", security=security)
        except (OSError, TimeoutError, ValueError) as exc:
            why = dask_said(exc, scheduler) or type(exc).__name__  # Dask's text names the address, password and all
            tls = _tls_error(exc)
            if tls is not None:  # something answers there: "start one" would mislead
                creds = ("the credentials Dask's configuration names (distributed.comm.tls.ca-file, "
                         "distributed.comm.tls.client.cert, distributed.comm.tls.client.key) are not this cluster's; "
                         "name its CA, certificate and key there")
                if isinstance(tls, ssl.SSLCertVerificationError) and scheduler.startswith("wss://"):  # the probe's
                    # check, as Dask's Client makes it: the login is sent only to a server whose certificate verifies
                    creds = ("the server's certificate does not verify, and no login was sent to it; where its CA is "
                             "your own, trust it as Dask's Client does (the system's certificates, or Dask's "
                             "distributed.comm.tls.* settings)")
                elif not isinstance(tls, ssl.SSLCertVerificationError):  # a plain scheduler fails here too: tcp:// for
                    # tls://, ws:// for wss:// (a ws listener does not speak tcp://), with no password in the suggestion
                    plain = (f"ws:// (give {shown('ws' + scheduler[3:])})" if scheduler.startswith("wss://") else
                             f"TCP (give tcp://{host_port(scheduler)})")
                    creds = f"either the scheduler speaks plain {plain} or {creds}"
                raise IQTError(f"--scheduler {shown(scheduler)}: the TLS handshake failed ({why}): {creds}") from None
            raise IQTError(f"--scheduler {shown(scheduler)}: cannot connect ({why}); start one with 'dask scheduler' and give "
                           f"its address: {ADDRESS_FORMS}") from None
        try:
            _wait_for_workers(client, scheduler, wait_workers)
            check_workers(client, scheduler, torch)
        except BaseException:
            client.close()
            raise
        # a scheduler lost mid-run is said in one line (run_cohort, _lost); Dask's client logged its reconnection
        # tracebacks to stderr before it
        logging.getLogger("distributed.client").setLevel(logging.CRITICAL)
        return client, None
    # Dask's workers start with glibc's malloc trim threshold at 64 KiB, which hands numpy's large temporaries back to
    # the OS and faults them in again: with it a dev subject took 9-11 s on a worker against 5-6 s without
    # (benchmarks/batch_throughput.py); the one-thread settings (OMP_NUM_THREADS=1 and co.) are kept.
    env = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items() if k != "MALLOC_TRIM_THRESHOLD_"}
    security = local_security() if secure else None
    # No pausing: a worker past 80 % of --memory-limit with nothing of ours to spill paused and, between tasks, never
    # came back under it nor reached the 95 % kill: the run waited forever without a word (a cohort audit, espcn under
    # 600MiB). Without it the task runs; a worker that passes 95 % is killed and its subject said (run_cohort). Given
    # to the nannies, which hand it to every worker they start, also again after such a kill (set within a `with`, a
    # restarted worker read Dask's defaults; set for the process, every later cluster of its other users had it too).
    memory = {f"distributed.worker.memory.{k}": False for k in ("target", "spill", "pause")}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}), _worker_exits_noted(), \
            _open_files_noted(keep=quiet) as met:
        try:
            cluster, held = _spawn_ignoring_ctrl_c(lambda: LocalCluster(
                n_workers=workers, threads_per_worker=THREADS_PER_WORKER, processes=True, memory_limit=memory_limit,
                dashboard_address=dashboard_address, silence_logs=logging.CRITICAL, security=security,
                host="127.0.0.1", preload=[f"{__package__}.worker_signals"],  # a restarted worker ignores Ctrl-C too
                worker_class=nanny_class(),  # a busy worker closed at once
                config=memory))
        except Exception as exc:
            # the worker processes a failed start leaves are reaped by Dask's exit handler, which logged "reaping
            # stray process ..." on stderr after the run's one line (ulimit -u 10, a cohort audit)
            logging.getLogger("distributed.process").setLevel(logging.WARNING)
            said = _limit_met(exc, met, workers)
            if said is None:
                raise
            raise said from None
    try:
        if held:  # a Ctrl-C while the workers started (or one an import had deferred): the run stops here
            raise KeyboardInterrupt
        client = Client(cluster)
    except BaseException:
        # the EMFILE filter ends with the cluster: left on, it had dropped every later EMFILE traceback of the
        # process (a review: a Ctrl-C held through the start, or Client(cluster) failing)
        try:
            cluster.close()
        finally:
            met.remove_filter()
        raise
    if quiet:
        _KEPT_OFF[cluster.scheduler_address] = met  # kept off stderr for the cluster's life: open_files_met ends it
    if security is not None:
        own_cluster(cluster, security)
    return client, cluster
