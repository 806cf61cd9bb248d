"""Every subject through `subject.process`, on a Dask client or in this process, then the QC table."""

from __future__ import annotations

import contextlib
import ssl
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

from ...core.errors import IQTError, IQTWarning, out_of_memory, too_many_open_files
from ...core.words import counted
from .items import Item
from .lock import held
from .qc import write_qc
from .records import (TEMPORARY, Settings, check_inputs_kept, dataset_description, earlier_copies_line,
                      generated_by_in_use, remove_temporaries, subject_folders)
from .memory_reasons import as_remote_workers, memory_reason
from .subject import process


WAIT_WORKERS_S = 120  # --wait-workers: how long a run waits for a scheduler's first worker, or for one to come back
THREADS_PER_WORKER = 1  # the local cluster's (start_client); Dask's auto memory share counts them (apps/cli/batch.py)
QC_WRITE_EVERY_S = 10.0  # the QC table written again as subjects end, at most this often (and always at the end)


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
            client = Client(scheduler, timeout="20s", security=security)
        except (OSError, TimeoutError, ValueError) as exc:
            why = ' '.join(str(exc).split()) or type(exc).__name__
            tls = _tls_error(exc)
            if tls is not None:  # something answers there: "start one" would mislead
                creds = ("the credentials Dask's configuration names (distributed.comm.tls.ca-file, "
                         "distributed.comm.tls.client.cert, distributed.comm.tls.client.key) are not this cluster's; "
                         "name its CA, certificate and key there")
                if not isinstance(tls, ssl.SSLCertVerificationError):  # a plain-TCP scheduler fails here too
                    creds = f"either the scheduler speaks plain TCP (give tcp://{scheduler.split('://', 1)[-1]}) or {creds}"
                raise IQTError(f"--scheduler {scheduler}: the TLS handshake failed ({why}): {creds}") from None
            raise IQTError(f"--scheduler {scheduler}: cannot connect ({why}); start one with 'dask scheduler' and give "
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
                config=memory))
        except Exception as exc:
            # the worker processes a failed start leaves are reaped by Dask's exit handler, which logged "reaping
            # stray process ..." on stderr after the run's one line (ulimit -u 10, a cohort audit)
            logging.getLogger("distributed.process").setLevel(logging.WARNING)
            said = _limit_met(exc, met, workers)
            if said is None:
                raise
            raise said from None
    if quiet:
        _KEPT_OFF[cluster.scheduler_address] = met  # kept off stderr for the cluster's life: open_files_met ends it
    if security is not None:
        _OWN_CLUSTERS[cluster.scheduler_address] = security
    # a task whose workers died is reported per subject (run_cohort); Dask's own ERROR line about it would be a
    # second, differently worded message on stderr
    try:
        if held:  # a Ctrl-C while the workers started (or one an import had deferred): the run stops here
            raise KeyboardInterrupt
        return Client(cluster), cluster
    except BaseException:
        cluster.close()
        raise


_OWN_CLUSTERS: dict = {}  # scheduler address -> the credentials of a LocalCluster this process started


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
    counted and kept off stderr; the rest of what the loop logs is left as it was. After a failed start kept where one
    was met (the loop may log more as the process ends); after a started one kept where `keep` (it is the caller's to
    end: `open_files_met`; under ulimit -n 41 a run with it removed printed 40,027 tracebacks), else removed."""
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
        if not met:  # once met, a failed start's loop may log more as the process ends: it stays off stderr
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


def local_security():
    """Credentials for one local cluster: a self-signed key and certificate made now, in memory only (Dask's
    Security.temporary: TLS with client certificates required, for the scheduler, the workers and this client).
    An IQTError where the `cryptography` package is missing (checked by `iqt batch` before any work)."""
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError:
        raise IQTError(NO_CRYPTOGRAPHY) from None


NO_CRYPTOGRAPHY = ("iqt batch needs the cryptography package for its local cluster's TLS credentials (without them any "
                   "local user could run code in its workers); install it with pip install 'imagequalitytransfer[batch]'")


def scheduler_from_file(path) -> str:
    """The address in a Dask scheduler file (`dask scheduler --scheduler-file F` writes its address there, the usual way
    to reach a scheduler on an HPC cluster); an IQTError where the file holds none."""
    import json

    try:
        address = json.loads(Path(path).read_text()).get("address")
    except (OSError, ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        address = None
    if not isinstance(address, str) or "://" not in address:
        raise IQTError(f"--scheduler {path}: a file, but not a Dask scheduler file (JSON with the scheduler's "
                       "\"address\"); give the file 'dask scheduler --scheduler-file' wrote, or the address itself "
                       "(tcp://host:8786)")
    return address


SCHEDULER_PROTOCOLS = ("tcp", "tls", "ws", "wss")  # those Dask's Client reaches with distributed's own packages


ADDRESS_FORMS = ("tcp://host:port (or host:port; an IPv6 host in brackets, tcp://[::1]:8786), tls://host:port with its "
                 "credentials in Dask's configuration, ws:// or wss://")


def check_address(scheduler: str) -> str:
    """`scheduler` with its scheme in lower case (Dask's Client refused TCP://), or an IQTError naming the accepted
    forms where it is not a tcp/tls/ws/wss address: ucx:// failed with an internal TypeError (no ucx package),
    inproc:// (this process only) with "not enough values to unpack", an IPv6 host without brackets (::1:8803) with
    "cannot connect (invalid address ...)"."""
    from distributed.comm import parse_address

    scheme, sep, rest = scheduler.partition("://")
    if sep:
        scheduler = scheme.lower() + sep + rest
    try:
        proto, loc = parse_address(scheduler)
    except ValueError:
        proto, loc = None, ""
    if proto not in SCHEDULER_PROTOCOLS:
        raise IQTError(f"--scheduler {scheduler}: not a scheduler address this command connects to; give {ADDRESS_FORMS}, "
                       "or the scheduler file 'dask scheduler --scheduler-file' wrote")
    host = loc.split("/", 1)[0]
    if host.endswith(":") and (host.startswith("[") or host.count(":") == 1):  # a colon, no port after it: said as
        bare = host[:-1]  # none given (tcp://[::1]: had been "cannot connect (invalid literal for int() ...)")
        if not (bare.startswith("[") and bare.endswith("]") and _ipv6(bare[1:-1])):
            raise IQTError(f"--scheduler {scheduler}: no port after the colon; give the scheduler's port, e.g. "
                           f"{proto}://{bare}:8786 (the default port of 'dask scheduler')")
        host = bare
    if host.count(":") > 1 and not host.startswith("["):  # an IPv6 host: its port is told from it by the brackets
        ip, _, port = host.rpartition(":")
        if port.isdigit() and _ipv6(ip):
            raise IQTError(f"--scheduler {scheduler}: an IPv6 address is written in brackets before its port; give "
                           f"{proto}://[{ip}]:{port}")
        if _ipv6(host):  # no port after the address (::1): its last group had been taken for one, tcp://[:]:1
            raise IQTError(f"--scheduler {scheduler}: an IPv6 address without a port; give it in brackets before the "
                           f"scheduler's port, e.g. {proto}://[{host}]:8786 (the default port of 'dask scheduler')")
        raise IQTError(f"--scheduler {scheduler}: not a scheduler address this command connects to; give {ADDRESS_FORMS}")
    if host.startswith("[") and host.endswith("]") and _ipv6(host[1:-1]):  # [::1]: said as cannot connect (no port)
        raise IQTError(f"--scheduler {scheduler}: an IPv6 address without a port; give the scheduler's port after the "
                       f"brackets, e.g. {proto}://{host}:8786 (the default port of 'dask scheduler')")
    return scheduler


def _ipv6(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def client_security(scheduler: str):
    """The credentials to reach `scheduler`: those of a local cluster this process started there (an in-process caller
    that names it), else Dask's configuration (distributed.comm.tls.*: a TLS cluster of your own). An IQTError for a
    tls:// address where that names none (Dask's Client failed with an internal TypeError)."""
    from distributed.comm import parse_address
    from distributed.security import Security

    if scheduler in _OWN_CLUSTERS:
        return _OWN_CLUSTERS[scheduler]
    security = Security()
    try:
        proto = parse_address(scheduler)[0]
    except ValueError:
        return security  # said by the connection
    if proto == "tls" and security.get_connection_args("client").get("ssl_context") is None:
        raise IQTError(f"--scheduler {scheduler}: a TLS scheduler takes clients with its credentials only, and Dask's "
                       "configuration names none; set distributed.comm.tls.ca-file, distributed.comm.tls.client.cert and "
                       "distributed.comm.tls.client.key to your cluster's files (e.g. in ~/.config/dask/distributed.yaml)")
    return security


def _join_once_started(thread, wait_s: float = 5.0) -> None:
    """`thread` joined where a signal interrupted its `start()`: the thread runs, but until it says so `join` raises
    "cannot join thread before it is started" (an internal error under load, Testing/apps/test_batch_lock.py); one that
    never started is given up after `wait_s`."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            thread.join()
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)


_NANNY_LOG = {"lock": threading.Lock(), "users": 0, "saved": None}  # _worker_exits_noted's, shared by overlapping starts


@contextlib.contextmanager
def _worker_exits_noted():
    """While the cluster starts: the exit statuses the nanny logs for worker processes that died ("Worker process N
    exited with status S", or killed by a signal: minus it, an unknown one 255 as Dask reports it), set on the
    exception raised (core/errors.py WORKER_EXITS), which the error line names (core/errors.py worker_died_said). The
    logger's level and propagation are put back when the last of overlapping starts (threads) leaves: the first to
    leave had left them changed for good."""
    import logging
    import re

    from ...core.errors import WORKER_EXITS, _chain

    exits: list = []

    class Noted(logging.Handler):
        def emit(self, record):
            m = re.match(r"Worker process \d+ (?:exited with status (\d+)|was killed by (?:signal (\d+)|unknown signal))",
                         record.getMessage())
            if m:
                exits.append(int(m[1]) if m[1] else -int(m[2]) if m[2] else 255)

    log = logging.getLogger("distributed.nanny")
    handler = Noted()
    with _NANNY_LOG["lock"]:
        if _NANNY_LOG["users"] == 0:
            _NANNY_LOG["saved"] = (log.level, log.propagate)
        _NANNY_LOG["users"] += 1
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False  # its INFO lines, silenced for the run (silence_logs), reach no caller's handlers
    try:
        yield
    except Exception as exc:
        for e in _chain(exc):
            setattr(e, WORKER_EXITS, list(exits))
        raise
    finally:
        with _NANNY_LOG["lock"]:
            log.removeHandler(handler)
            _NANNY_LOG["users"] -= 1
            if _NANNY_LOG["users"] == 0:
                log.setLevel(_NANNY_LOG["saved"][0])
                log.propagate = _NANNY_LOG["saved"][1]


def _spawn_ignoring_ctrl_c(make):
    """(make(), [signals held]): the local cluster made by `make` in a helper thread, each worker process forked with
    SIGINT blocked in the thread that forks it. The mask carries through fork and exec, and the worker's preload
    (worker_signals.py) ignores SIGINT, which drops one pending: a terminal's Ctrl-C reaches the whole process group,
    and each worker would print its own KeyboardInterrupt traceback before this process's one line. This process keeps
    a handler throughout: a Ctrl-C while the cluster starts (3-4 s) is recorded and returned, and one deferred since
    an import (signals._on_signal) too. (Ignoring SIGINT in this process while a worker was forked lost a Ctrl-C that
    came in that moment, and the batch ran to its end; Testing/apps/test_batch_scale.py.) A worker the nanny restarts
    later (after a memory-limit kill) is forked outside this and ignores it from its preload on."""
    import signal
    import threading
    from multiprocessing import util

    if threading.current_thread() is not threading.main_thread():
        return make(), []
    made: dict = {}
    held: list = []
    spawnv_passfds = util.spawnv_passfds

    def fork_blocking(path, args, passfds):  # multiprocessing's spawn, in the thread that starts a worker
        if not hasattr(signal, "pthread_sigmask"):
            return spawnv_passfds(path, args, passfds)
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return spawnv_passfds(path, args, passfds)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)

    def target():
        try:
            made["cluster"] = make()
        except BaseException as exc:  # noqa: BLE001 (raised again in the main thread)
            made["error"] = exc

    def hold(signum, frame):  # noqa: ARG001
        held.append(signum)

    thread = threading.Thread(target=target, name="iqt: starting the local cluster", daemon=True)
    handler = signal.signal(signal.SIGINT, hold)
    util.spawnv_passfds = fork_blocking
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.1)
    except BaseException:  # SIGTERM meanwhile: the cluster closed once it is up, then the run stops
        _join_once_started(thread)
        if "cluster" in made:
            made["cluster"].close()
        raise
    finally:
        util.spawnv_passfds = spawnv_passfds
        signal.signal(signal.SIGINT, handler)
    from ..signals import _deferred, cancel_deferred

    if _deferred["signum"] == signal.SIGINT:  # deferred since an import: its re-sends were held meanwhile
        cancel_deferred()
        held.append(signal.SIGINT)
    if "error" in made:
        raise made["error"]
    return made["cluster"], held


def _wait_for_workers(client, scheduler: str, wait_s: float) -> None:
    """Return once the scheduler has a worker; said on stderr while it has none, and an IQTError after `wait_s` seconds
    (at a scheduler without workers the run would otherwise wait forever with no message)."""
    import sys

    if client.nthreads():
        return
    print(f"iqt: waiting for workers at {scheduler}: 0 connected (up to {wait_s:g} s, --wait-workers)", file=sys.stderr,
          flush=True)
    try:
        client.wait_for_workers(1, timeout=wait_s)
    except (TimeoutError, OSError):
        raise IQTError(_no_workers(scheduler, wait_s, "connected")) from None


_PROBE = """
def probe(torch=False):
    try:
        from ImageQualityTransferLib.core.version import __version__
    except Exception as exc:
        return None, type(exc).__name__ + ": " + " ".join(str(exc).split()), None
    no_torch = None
    if torch:
        try:
            import torch as _torch  # noqa: F401
        except Exception as exc:
            no_torch = type(exc).__name__ + ": " + " ".join(str(exc).split())
    try:
        from ImageQualityTransferLib.core.version import build_digest
        from ImageQualityTransferLib.fileio.paths import MODELS_DIR
        try:  # a worker outliving a run reads the registry again: another process may have registered a model since
            from ImageQualityTransferLib.core.version import forget_build
            forget_build()
        except ImportError:  # an older build without it
            pass
        return str(__version__), build_digest(str(MODELS_DIR / "registry.json")), no_torch
    except Exception:
        return str(__version__), "unknown", no_torch
"""


def _probe():
    """A function that a worker runs without this project (sent by value: it is defined outside any importable module):
    (its ImageQualityTransfer version, its build digest, why PyTorch does not import there or None), or (None, why it
    cannot import ImageQualityTransfer, None); PyTorch is tried only when called with True."""
    space: dict = {"__name__": "iqt_worker_probe"}
    exec(_PROBE, space)  # noqa: S102 (a fixed text)
    return space["probe"]


def check_workers(client, scheduler: str, torch: bool = False) -> None:
    """An IQTError naming the workers that cannot import ImageQualityTransfer or run another version of it than this
    process (a worker without it dies unpickling the first task and the run hangs; one with another version writes
    its outputs with its own SoftwareVersion); with `torch` (the method runs a network), also those where PyTorch does
    not import (each subject had failed "the CNN methods need PyTorch, which is not installed", naming no worker,
    while this machine has it)."""
    from ...core.version import __version__, build_digest
    from ...fileio.paths import MODELS_DIR

    digest = build_digest(str(MODELS_DIR / "registry.json"))
    try:
        found = client.run(_probe(), torch, on_error="return")
    except (OSError, TimeoutError) as exc:
        raise IQTError(f"--scheduler {scheduler}: the workers could not be asked their ImageQualityTransfer version "
                       f"({' '.join(str(exc).split())}); check them and rerun") from None
    bad = []
    for address, answer in sorted(found.items()):
        worker = _named(client, address)
        if isinstance(answer, BaseException) or not isinstance(answer, tuple):
            bad.append(f"{worker}: {type(answer).__name__ if isinstance(answer, BaseException) else answer!r}")
        elif answer[0] is None:
            bad.append(f"{worker}: cannot import it ({answer[1]})")
        elif answer[0] != __version__:
            bad.append(f"{worker}: version {answer[0]}")
        elif answer[1] != digest:  # one version number, other code or models (a checkout of another commit)
            bad.append(f"{worker}: version {answer[0]} from other code or models (build {str(answer[1])[:12]}, here "
                       f"{digest[:12]})")
    if bad:
        shown = "; ".join(bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise IQTError(f"--scheduler {scheduler}: {len(bad)} of {len(found)} workers cannot run this ImageQualityTransfer "
                       f"{__version__} ({shown}); start the workers from the same environment as this command")
    no_torch = [f"{_named(client, w)}: {a[2]}" for w, a in sorted(found.items()) if len(a) > 2 and a[2]]
    if no_torch:
        shown = "; ".join(no_torch[:3]) + (f"; and {len(no_torch) - 3} more" if len(no_torch) > 3 else "")
        raise IQTError(f"--scheduler {scheduler}: {len(no_torch)} of {len(found)} workers cannot import PyTorch, which "
                       f"the CNN methods need ({shown}); install it where the workers run ('pip install torch' in "
                       "their environment) and start them again, or choose a method without it (e.g. biqt)")


def _named(client, address: str) -> str:
    """'NAME/address' of a worker whose name ('dask worker --name') is not its address; the address otherwise."""
    try:
        name = client.scheduler_info()["workers"][address].get("name")
    except (AttributeError, KeyError, TypeError, OSError):
        name = None
    return f"{name}/{address}" if name is not None and str(name) != address else address


def _no_workers(scheduler: str, wait_s: float, what: str) -> str:
    return (f"--scheduler {scheduler}: no worker {what} within {wait_s:g} s; start workers with 'dask worker "
            f"{scheduler}' (with ImageQualityTransfer installed, as here), or wait longer with --wait-workers SECONDS")


def _reachable(address: str, security=None) -> None:
    """An OSError at once when nothing listens at a tcp/tls scheduler address: Dask's Client would retry a refused
    connection until its timeout (about 24 s); and where what listens is no scheduler (over TLS with `security`'s
    credentials: a worker's tls:// port gives an internal TypeError, its dashboard's a 20 s wait)."""
    import socket

    from distributed.comm import parse_address, parse_host_port

    proto, loc = parse_address(address)
    if proto in ("tcp", "tls"):
        with socket.create_connection(parse_host_port(loc), timeout=5):
            pass
        _answers_as_scheduler(address, security)


def _tls_error(exc: BaseException):
    """The ssl.SSLError among the causes of a failed connection (a certificate that does not verify, one the server
    refuses, or a server that does not speak TLS), None where there is none."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ssl.SSLError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


SCHEDULER_ANSWER_S = 5  # a scheduler answers its identity in milliseconds; Dask's Client waited forever on a non-scheduler


def _answers_as_scheduler(address: str, security=None) -> None:
    """An OSError when what listens at a tcp/tls address does not answer Dask's identity call as a scheduler within
    SCHEDULER_ANSWER_S: on a port that listens but is not one (the scheduler's dashboard port, say) the Client hangs
    with no message."""
    import asyncio

    try:
        info = asyncio.run(asyncio.wait_for(_identity(address, security), SCHEDULER_ANSWER_S))
    except (TimeoutError, asyncio.TimeoutError):
        raise OSError(f"nothing there answered as a Dask scheduler within {SCHEDULER_ANSWER_S} s: the port listens but "
                      "is not a scheduler's, e.g. its dashboard's") from None
    except OSError:
        raise
    except Exception as exc:
        raise OSError(f"what listens there does not speak Dask's protocol ({type(exc).__name__})") from None
    kind = info.get("type") if isinstance(info, dict) else None
    if kind != "Scheduler":
        raise OSError(f"a Dask {kind} answers there, not the scheduler" if kind else "no Dask scheduler answers there")


async def _identity(address: str, security=None):
    """What a Dask server at `address` says it is ({"type": "Scheduler", ...}), over one comm closed at once after
    (a tls:// one with `security`'s client credentials)."""
    from distributed.comm import connect

    kwargs = security.get_connection_args("client") if security is not None and address.startswith("tls://") else {}
    comm = await connect(address, timeout=SCHEDULER_ANSWER_S, **kwargs)
    try:
        await comm.write({"op": "identity", "reply": True})
        return await comm.read()
    finally:
        comm.abort()


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
    return IQTError(f"lost the connection to the scheduler at {scheduler} (it stopped or cannot be reached): {left} of "
                    f"{counted(total, 'subject')} not ended; the QC table says which; start the scheduler again and rerun the same "
                    "command, which skips the subjects done (a subject its workers end meanwhile is not put in place)")


PENDING = ("not ended: the run was working on it or had not reached it when this table was written; if the run has "
           "stopped, rerun the same command to finish")


def pending(it: Item, s: Settings | None = None, out_root: Path | None = None) -> dict:
    """The QC row of a subject of the run in progress that has not ended: a run killed meanwhile leaves it so. With
    `s` and `out_root`, "in_place" says (when called: write_qc asks only where an earlier done row is there to keep)
    whether its outputs are complete and as written, the check a rerun skips it by (records.finished): write_qc then
    keeps an earlier run's done row of it (a lost scheduler had turned a subject done the run before into "pending";
    a tensor and sidecar alone had kept "done" for a subject with its FA map deleted or a byte of its tensor changed)."""
    row = {"subject": it.prefix, "input": it.path, "status": "pending", "qc": {}, "reason": PENDING}
    if s is not None and out_root is not None:
        row["in_place"] = lambda: _finished(it, s, Path(out_root))
    return row


_FINISHED: dict = {}  # (folder, subject) -> (the outputs' stats, the answer): the table is written every few seconds


def _finished(it: Item, s: Settings, out_root: Path) -> bool:
    """records.finished for a pending row, hashed again only where an output's or an input's file changed since the
    last table (the check hashes the inputs and every output: a review timed about 20 ms a dev subject, asked at every
    write)."""
    from .records import expected_maps, finished, identity, input_files, input_hashes, output_names, sidecar

    try:
        names = output_names(it, s, expected_maps(s))
        folder = out_root / it.subdir
        stats = []
        inputs = tuple(Path(f) for f, _ in input_files(it))  # a .nhdr's data file, the mask, bval/bvec/json too
        for name in [*names.values(), None]:
            for path in ((folder / name, sidecar(folder / name)) if name else inputs):
                try:
                    st = path.stat()
                    stats.append((st.st_ino, st.st_size, st.st_mtime_ns))
                except OSError:
                    stats.append(None)
        key = (str(folder), it.prefix, tuple(sorted(names.items())))
        seen = _FINISHED.get(key)
        if seen is not None and seen[0] == stats:
            return seen[1]
        done = finished(folder, names, identity(it, s, input_hashes(it))) is not None
        _FINISHED[key] = (stats, done)
        return done
    except (OSError, ValueError, KeyError, IQTError):
        return False


def say_results(results: list[dict], table: str) -> None:
    """The summary (ended by `table`: where the QC table was written, or that it was not), the redone line, each
    subject's warnings (also in its sidecar's Notes) and each failure, as `iqt batch` says them at its end; also before
    the error of a run whose table cannot be written."""
    import sys

    print(summary(results) + table, flush=True)
    redone = redone_line(results)
    if redone:
        print(redone)
    for r in results:
        for note in r.get("notes", []):
            print(f"iqt: warning: {r['subject']}: {note}", file=sys.stderr)
    for r in results:
        if r["status"] == "failed":
            print(f"  {r['subject']}: {r['reason']}")
    sys.stdout.flush()


def other_builds(results: list[dict], mine: str) -> str:
    """The subjects a worker of another build than this run's `mine` computed (or skipped as its own) turned into
    failures, with the reason to rerun, and one line that says how many and which build; "" where there is none. A
    worker the nanny starts again (after a memory-limit kill) imports the code on disk as it is then: after an upgrade
    meanwhile it runs the new code, and the run would otherwise end "all done" with two builds' outputs mixed. Its
    outputs stay; their sidecars name that build, so a rerun of this build redoes them (and one of that build redoes
    the others)."""
    for r in [r for r in results if r.get("build") and r["build"] != mine and r["status"] in ("done", "skipped")]:
        r.update(status="failed", other_build=r["build"],
                 reason=f"computed by build {r['build']}, not this run's {mine}: the code on disk changed while the run "
                        "worked (a worker started again imported it); rerun the same command to redo it with one build")
    other = [r for r in results if r.get("other_build")]
    if not other:
        return ""
    builds = sorted({r["build"] for r in other})
    return (f"{len(other)} of {counted(len(results), 'subject')} computed by build {', '.join(builds)}, not this run's build {mine}: "
            "the code on disk changed while the run worked and a worker started again ran it; "
            f"{'it counts' if len(other) == 1 else 'they count'} as failed "
            "(rerun the same command: it redoes every subject another build wrote, so that the cohort comes from one "
            "build)")


WORKERS_POLL_S = 1.0  # how often a run whose tasks are waiting checks that the cluster still has a worker


def _as_completed(client, futures: list, wait_s: float, refused=frozenset(), added=None, poll=None, dropped=None):
    """The futures as they complete, as distributed.as_completed gives them, but an IQTError (the unfinished ones
    cancelled) once the cluster has had no worker for `wait_s` seconds; the workers at the addresses in `refused` (of
    another build, cohort._guard) do not count. Futures the caller appends to `added` meanwhile are waited for too,
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
            raise IQTError(f"{len(pending)} of {counted(total, 'subject')} not run: the cluster at {scheduler} has had no "
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


def summary(results: list[dict]) -> str:
    n = {k: sum(r["status"] == k for r in results) for k in ("done", "skipped", "failed")}
    return f"{counted(len(results), 'subject')}: {n['done']} done, {n['skipped']} skipped (already done), {n['failed']} failed"


def redone_line(results: list[dict]) -> str:
    """One line for the subjects done again because another version or build wrote their earlier outputs (a resume
    after an upgrade recomputes; said once, not per subject); "" where none was."""
    from ...core.version import __version__
    from ...fileio.model_files import build

    redone = [r for r in results if r.get("redone_from") and r["status"] == "done"]
    if not redone:
        return ""
    return (f"{len(redone)} of them redone, not skipped: their earlier outputs were written by "
            f"{', '.join(sorted({r['redone_from'] for r in redone}))}, and this run is version {__version__} build "
            f"{build()}; a cohort's outputs all come from one build")
