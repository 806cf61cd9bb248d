"""`iqt batch`: a cohort (BIDS dataset or list) upsampled on a Dask cluster into a BIDS-derivatives dataset."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shlex
import sys
import time
import warnings

from ...core.errors import IQTError, IQTWarning, install_extra
from ...core.words import counted, listed
from . import options


def add_parsers(sub) -> None:
    sp = sub.add_parser("batch", help="upsample a cohort (BIDS dataset or list of subjects) on a Dask cluster into a "
                                      "BIDS-derivatives dataset, resumable, with a QC table")
    sp.add_argument("input", help="BIDS dataset folder (sub-*/[ses-*/]dwi/*_dwi.nii.gz with .bval/.bvec), or a text file "
                                  "listing subject folders (dwi.nii.gz, dwi.bval, dwi.bvec) or DTI files, one per line; "
                                  "a line may end in its own --tensor-order ORDER and --mask MASK")
    sp.add_argument("-o", "--output", required=True, help="derivatives folder (created if missing, with its parents; a "
                                                          "rerun skips the subjects already done)")
    sp.add_argument("--method", help="method name (see 'iqt methods'; default: with --model, the model's own method, else the best "
                         "shipped one for the factors, with --uncertainty the best with an uncertainty map)")
    options.add_factor(sp, voxel_size=True, model=True)
    sp.add_argument("--uncertainty", action="store_true", help="also write the uncertainty maps (methods with uncertainty)")
    where = sp.add_mutually_exclusive_group()
    # the local cluster's options default to None, so that one given beside --scheduler is told apart and refused (run)
    where.add_argument("--workers", type=int, help="worker processes of the local Dask cluster (default 2)")
    where.add_argument("--scheduler", help="run on an existing Dask scheduler: its address, e.g. tcp://host:8786, or "
                                           "the scheduler file it wrote (dask scheduler --scheduler-file F, as on HPC "
                                           "clusters) (see docs/cohorts.md)")
    sp.add_argument("--wait-workers", type=float, default=WAIT_WORKERS_S, metavar="SECONDS",
                    help="how long to wait for a --scheduler's first worker, and during any run for a worker after "
                         f"every worker has died or left, before stopping with one line, exit 2 (default {WAIT_WORKERS_S})")
    sp.add_argument("--memory-limit",
                    help="memory per local worker, e.g. 4GiB (default auto, Dask's: the machine's memory / its CPU cores, "
                         f"whatever --workers is; at least {MIN_MEMORY})")
    sp.add_argument("--dashboard-address",
                    help="local cluster's dashboard (default 127.0.0.1:8787, this machine only; :8787 serves the network, "
                         "127.0.0.1:0 any free port)")
    options.add_method_settings(sp)
    options.add_tensor_order(sp)
    sp.add_argument("--no-frame-check", action="store_true",
                    help="skip the frame check of the tensor files read with --tensor-order fsl, mrtrix or dipy (a "
                         "warning and bvec_check in qc.tsv where their directions look mirrored), as iqt upsample's")
    options.add_output_order(sp)
    options.add_bmax(sp)
    sp.add_argument("--participant-label", nargs="+", metavar="LABEL",
                    help="a BIDS dataset: only these participants (01 or sub-01, as BIDS apps take it); the table keeps "
                         "the others' earlier rows, shown apart")
    sp.add_argument("--exclude-outliers", action="store_true",
                    help="DWI subjects: fit without the slices and volumes the tensor model does not explain (signal "
                         "dropout, a dead or moved volume), as 'iqt fit --exclude-outliers'; without it they are counted "
                         "in qc.tsv and named in the subject's warning. Part of what a rerun compares: turning it on or "
                         "off redoes every DWI subject")
    sp.set_defaults(func=run)


LOCAL_DEFAULTS = {"workers": 2, "memory_limit": "auto", "dashboard_address": "127.0.0.1:8787"}  # as the help says
WAIT_WORKERS_S = 120  # batch.scheduler.WAIT_WORKERS_S (not imported here: Dask loads only once a run starts)
MIN_MEMORY = "512MiB"  # at 100 and 200 MiB each worker died on a 3 mm subject, at 10 MiB the run hung


def check_memory_limit(text: str) -> None:
    """--memory-limit refused at once when it cannot be read or is too small for a worker to start the engine."""
    from dask.utils import format_bytes, parse_bytes

    if str(text).strip().lower() == "auto":
        return
    try:
        n = parse_bytes(text)
    except (ValueError, TypeError):
        raise IQTError(f"--memory-limit {text}: not a memory size; give e.g. 4GiB or 8GB (or auto)") from None
    if n < parse_bytes(MIN_MEMORY):
        raise IQTError(f"--memory-limit {text} ({format_bytes(n)}): too little for a worker; give at least {MIN_MEMORY} "
                       "(a 3 mm subject with biqt needs about 1 GiB), or auto")


# A local worker's address space beyond its resident memory at its most (/proc VmSize - VmRSS, sampled through
# `iqt batch` of the two 3 mm dev subjects, --workers 2): espcn and deep-hetero-var1 0.73-0.76 GiB, cubic 0.47 GiB;
# under ulimit -v that counts as well as the run's peak (every subject failed under 1,500,000 KiB, an audit)
WORKER_ADDRESS_BYTES = {True: int(0.8 * 2**30), False: int(0.5 * 2**30)}  # by Method.requires_torch


def check_worker_memory(args, runs) -> None:
    """Each subject's peak, judged from its header as `iqt upsample` judges it (Method.memory_need), against what a
    local worker may use: its --memory-limit (Dask stops a worker past its terminate fraction, 95 %) and this
    process's ulimit -v, which each worker process has on its own (less WORKER_ADDRESS_BYTES): refused before the
    cluster starts, one line naming the subject, its need and the limit to give (--memory-limit 1GiB had failed an
    Elition subject after 73 s). No warning band under ulimit -v as upsample's (memory.ADDRESS_BAND): that band was
    measured on upsample's own allowance, and WORKER_ADDRESS_BYTES is already the most sampled. One warning line where --memory-limit times --workers passes the machine's memory."""
    import logging
    import resource

    import dask
    from dask.utils import format_bytes, parse_bytes
    from distributed import system
    from distributed import worker_memory
    from distributed.worker_memory import parse_memory_limit

    from ..batch.local_cluster import THREADS_PER_WORKER

    given = str(args.memory_limit).strip().lower() != "auto"
    quiet = logging.getLogger(f"{__name__}.dask")  # Dask's own line on a limit above the machine's: ours below
    quiet.disabled = True
    # what each nanny of batch.dask_client.start_client's LocalCluster works out from the same memory_limit: "auto" is the
    # machine's memory x its threads / the CPU count (Dask's Nanny), whatever --workers is
    per = parse_memory_limit(args.memory_limit, THREADS_PER_WORKER, worker_memory.CPU_COUNT, logger=quiet)
    if given and parse_bytes(args.memory_limit) * args.workers > system.MEMORY_LIMIT:
        total = parse_bytes(args.memory_limit) * args.workers
        warnings.warn(f"--memory-limit {args.memory_limit} x {args.workers} workers is {format_bytes(total)}, more than "
                      f"this machine's {format_bytes(system.MEMORY_LIMIT)}: the workers may run it out of memory; give "
                      "less, or run fewer --workers", IQTWarning, stacklevel=3)
    elif not given and per and per * args.workers > system.MEMORY_LIMIT * 1.01:  # more workers than cores
        warnings.warn(f"--workers {args.workers}: each worker may use {format_bytes(per)} (the machine's memory over its "
                      f"{worker_memory.CPU_COUNT} cores), {format_bytes(per * args.workers)} in all, more than this "
                      f"machine's {format_bytes(system.MEMORY_LIMIT)}: the workers may run it out of memory; run at most "
                      f"{worker_memory.CPU_COUNT} --workers, or give --memory-limit", IQTWarning, stacklevel=3)
    fraction = dask.config.get("distributed.worker.memory.terminate") or 1.0
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    for said, need, address in _subject_needs(args, runs):
        if per and need > per * fraction:
            give = f"give --memory-limit {math.ceil(need / fraction / 2**29) / 2:g}GiB or more"
            what = (f"--memory-limit {args.memory_limit} (a worker is stopped at {fraction:.0%} of it)" if given else
                    f"a worker's auto share, this machine's {format_bytes(system.MEMORY_LIMIT)} / its "
                    f"{worker_memory.CPU_COUNT} cores, {format_bytes(per)} (stopped at {fraction:.0%})")
            raise IQTError(f"{said}, more than {what}; {give}, or leave that subject out")
        if soft != resource.RLIM_INFINITY and need + address > soft:
            kib = math.ceil((need + address) / 1024 / 100_000) * 100_000
            raise IQTError(f"{said}, and a worker about {address / 2**30:.1f} GiB more of address space, more than "
                           f"this shell's ulimit -v {soft // 1024:,} KiB, which each worker process has on its own; "
                           f"raise it to {kib:,} KiB or more (a cluster job's h_vmem), or leave that subject out")


def _subject_needs(args, runs):
    """(what to say of a subject and its need, its need in bytes, a worker's own address space beyond it) for each
    subject whose header can be read, judged as `iqt upsample` judges it (Method.memory_need) and, for a DWI, as
    `iqt fit` judges its fit."""
    from ...core import grid
    from .upsample import input_shape3

    for name, g, group, _ in runs:
        method = _methods_of(args, name)
        address = WORKER_ADDRESS_BYTES[bool(method.requires_torch)]
        for it in group:
            shape3 = input_shape3(it.path)
            if shape3 is None:  # its reader says why, in its row
                continue
            need = method.memory_need(shape3, g, bool(args.uncertainty))
            fit = _fit_need(it, args) if it.kind == "dwi" else None  # the DWI read and fitted first, as 'iqt fit'
            most = "; fitting its DWI takes the most" if fit is not None and fit > need else ""
            need = max(need, fit or 0)
            yield (f"{it.prefix} ({it.as_typed(it.path)}): its run ({name}, {grid.describe(g)}{most}) needs about "
                   f"{need / 2**30:,.1f} GiB", need, address)


def check_scheduler_memory(args, runs, client) -> None:
    """Each subject's need (as check_worker_memory judges it) against the memory_limit of a --scheduler's workers, which
    the scheduler knows (0 or None: no limit; Dask stops a worker past its terminate fraction, 95 %): refused in one
    line, before any subject runs, where no worker could hold a subject; one warning line where only some can (the
    scheduler may give it to one that cannot). Only the workers connected now are seen (an adaptive cluster's later
    ones are not): both lines say so. A worker's own ulimit -v is not known here (memory_reasons.py says it when a
    worker runs out)."""
    import dask
    from dask.utils import format_bytes

    try:
        try:  # every worker: some Dask versions list 5 by default
            info = client.scheduler_info(n_workers=-1)
        except TypeError:  # a Dask without that argument lists them all
            info = client.scheduler_info()
        workers = info.get("workers", {})
    except Exception:  # noqa: BLE001 - a test's stand-in client, or a scheduler that does not say
        return
    limits = [w.get("memory_limit") or math.inf for w in workers.values()]
    if not limits or min(limits) == math.inf:
        return
    fraction = dask.config.get("distributed.worker.memory.terminate") or 1.0
    n = f"{len(limits)} worker{'s' if len(limits) > 1 else ''} connected now"
    short = []
    for said, need, _ in _subject_needs(args, runs):
        can = sum(need <= lim * fraction for lim in limits)
        if not can:
            raise IQTError(f"{said}, more than the largest memory limit of the scheduler's {n}, "
                           f"{format_bytes(max(limits))} (a worker is stopped at {fraction:.0%} of it); start workers "
                           f"with 'dask worker --memory-limit {math.ceil(need / fraction / 2**29) / 2:g}GiB' or more "
                           "before the run (workers that join later are not counted), or leave that subject out")
        if can < len(limits):
            short.append((said, can))
    if short:
        said, can = short[0]
        more = f" (and {len(short) - 1} more subject{'s' if len(short) > 2 else ''})" if len(short) > 1 else ""
        warnings.warn(f"{said}{more}, more than the memory limit of {len(limits) - can} of the scheduler's {n} "
                      f"(the smallest {format_bytes(min(limits))}, stopped at {fraction:.0%}): a subject given to "
                      "such a worker may fail out of memory; give those workers more ('dask worker --memory-limit'), "
                      "or rerun the same command to retry what failed", IQTWarning, stacklevel=3)


def _fit_need(it, args) -> float | None:
    """A DWI subject's fit's peak, as `iqt fit` judges it (fileio/sizes.py read_need: its DWI and mask, under --bmax
    the share of volumes kept)."""
    from types import SimpleNamespace

    from ...fileio.sizes import read_need
    from .fit import _bmax_share

    kept = None
    if getattr(args, "bmax", None) is not None:
        try:
            bval, bvec = it.gradients()
        except Exception:  # noqa: BLE001 - the subject's own reading says why
            bval = bvec = None
        if bval is not None:
            kept = _bmax_share(SimpleNamespace(bmax=args.bmax, dwi=it.path, bval=str(bval), bvec=str(bvec)))
    return read_need("fit", [it.path, it.mask or None], kept=kept)


def _methods_of(args, name):
    from ... import methods

    return methods.get(name, **options.method_settings(args))


# Open files a local cluster's run needs in this process, measured (iqt --threads 1 batch --method linear under soft =
# hard ulimit -n N, the check off, on 2 and 4 real subjects; 5 files open before): the lowest N at which a run ended
# whole was 32, 44 and 66 for 1, 2 and 4 workers (30, 42 and 64 failed: the cluster's start, or the QC table's write at
# the end, met the limit, or the run hung until killed). 20 + 14 a worker above those open asks 39, 53 and 81: about a
# fifth more, for what the measurement's machine and cohort did not exercise
CLUSTER_FILES = (20, 14)  # (base, per worker)


def check_open_files(workers: int) -> None:
    """Refused before the cluster starts where this process's ulimit -n is below what starting `workers` local
    workers needs (CLUSTER_FILES): under ulimit -n 16 the start had flooded stderr with Dask's tracebacks for 38 s and
    ended in an internal error. A limit met later is said by the run (dask_client.start_client, core/errors.py
    too_many_open_files). The soft limit is raised first up to the hard one, which any process may do (a soft 38
    under a hard 20000 had been refused); refused only where the hard limit is too low, or the raise failed."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        now = len(os.listdir("/proc/self/fd")) - 1  # less the listing's own
    except OSError:  # no /proc (macOS): what the limit allows is not known here
        now = None
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        # an unlimited hard limit: Linux refuses an unlimited soft one (nr_open), so only what is needed
        want = hard if hard != resource.RLIM_INFINITY else max(soft, (now or 0) + CLUSTER_FILES[0]
                                                                   + CLUSTER_FILES[1] * workers)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # the workers inherit it
            soft = want
        except (ValueError, OSError):  # kept as it was: checked below as it is
            pass
    if now is None:
        return
    need = now + CLUSTER_FILES[0] + CLUSTER_FILES[1] * workers
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    one = now + CLUSTER_FILES[0] + CLUSTER_FILES[1]
    fewer = f", or run fewer --workers ({(soft - now - CLUSTER_FILES[0]) // CLUSTER_FILES[1]} fit)" if soft >= one else ""
    if hard != resource.RLIM_INFINITY and hard < need:
        raise_it = f"ask an administrator to raise its hard limit ({hard}) to {need} or more"
    else:
        more = max(need, 2 * soft if hard == resource.RLIM_INFINITY else min(2 * soft, hard))
        raise_it = f"raise it (e.g. ulimit -n {more})"
    raise IQTError(f"too many open files: a local cluster of {counted(workers, 'worker')} needs about {need} open files "
                   f"in this process, more than its limit (ulimit -n {soft}); {raise_it}{fewer}, then rerun")


def check_dashboard_address(text: str) -> None:
    """--dashboard-address refused at once when its host does not resolve or is not an address of this machine: the
    LocalCluster fails to start with an internal error (e.g. 10.255.255.1:8787, nosuchhost.invalid:8787)."""
    from distributed.utils import clean_dashboard_address

    fix = "give one of this machine's addresses, e.g. 127.0.0.1:8787 (this machine only) or :8787 (every interface)"
    try:
        addresses = clean_dashboard_address(text)
    except (ValueError, TypeError):
        raise IQTError(f"--dashboard-address {text}: not HOST:PORT; {fix}") from None
    for a in addresses:
        if not 0 <= a["port"] <= 65535:
            raise IQTError(f"--dashboard-address {text}: port {a['port']} is not 0 to 65535; {fix}")
        if a["address"]:
            options.check_host(a["address"], f"--dashboard-address {text}", fix)


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

    if threading.current_thread() is not threading.main_thread():
        yield
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


def throughput(results: list[dict], seconds: float) -> str:
    """The run's wall time and the subjects it computed per minute (skipped ones not counted), for planning a cohort's
    cluster time."""
    done = sum(r["status"] == "done" for r in results)
    rate = f", {60 * done / seconds:.1f} subjects computed a minute" if done and seconds > 0 else ""
    return f"{seconds:.0f} s in all{rate}"


def _dashboard(client, scheduler) -> str:
    """The dashboard the cluster serves: a --scheduler's own port, or none (the client's link is its configured default,
    8787, which a remote scheduler started with --no-dashboard or on another port does not serve: a cohort audit)."""
    if not scheduler:
        return client.dashboard_link
    try:
        port = client.scheduler_info().get("services", {}).get("dashboard")
    except Exception:  # noqa: BLE001 - a test's stand-in client, or a scheduler that does not say
        return client.dashboard_link
    if not port:
        return "none (the scheduler serves none)"
    from urllib.parse import urlparse

    host = urlparse(client.scheduler.address).hostname or "localhost"
    return f"http://{host}:{port}/status"


def _method_for(args, f, group=()):
    """(name, method) for the subjects `group` at factors `f`, checked before any work: one with no uncertainty map
    under --uncertainty, a missing, damaged or foreign model, or none for these factors, is one line (else a missing
    --model ends in an internal error, a foreign one fails every subject)."""
    from ... import methods

    name = options.method_name(args, f, uncertainty=bool(args.uncertainty))
    method = methods.get(name, **options.method_settings(args))
    if args.uncertainty and not method.gives_uncertainty:
        raise IQTError(f"method {name!r} gives no uncertainty; drop --uncertainty or choose one of: "
                       f"{', '.join(methods.with_uncertainty(f))}")
    if args.device == "cuda" and method.requires_torch and not args.scheduler:  # local workers see this machine's GPUs
        from ...methods.cnn.inference import resolve_device

        resolve_device("cuda")
    if method.learned:
        try:
            method.load(f)
        except IQTError as exc:
            from ...core import grid

            text, advice = str(exc), getattr(exc, "advice", None)
            if advice and (group or args.factor is not None):
                # one --factor for the cohort is along each subject's own voxel axes: a slice-first subject's thick
                # slices left as they were (a review: '--factor 1,1,3' refined one in-plane); without --factor and
                # --voxel-size each gets the model's own along its slice axis
                given = "--voxel-size" if args.voxel_size is not None else "--factor"
                along = ", a through-plane model's along that subject's thick-slice axis" if "thick-slice" in advice else ""
                text = text.replace(advice, f"leave {given} out (with --model each subject then runs at the model's "
                                            f"own factors{along})")
            if not group:
                raise IQTError(text) from None
            raise IQTError(f"{_chosen_by(args)} chose {grid.describe(f)} for {_named(group)}; {text}") from None
    return name, method


def factor_groups(args, items) -> list[tuple[tuple, list]]:
    """The cohort split by the factors each subject gets from its own header (--voxel-size, or a --model's own
    factors along the voxel axes its slice axis is stored in), in the order the factor sets first appear. A subject
    whose header cannot be read joins the first set (its run then fails with the reader's own line); one already at
    the voxel size is refused before any work, named."""
    import numpy as np

    from ...core import grid
    from ...core.volume import voxel_sizes
    from ...fileio.sizes import header_affine

    groups: dict[tuple, list] = {}
    unread, refused = [], []
    for it in items:
        affine = header_affine(it.path)
        if affine is None:
            unread.append(it)
            continue
        try:
            f = options.factors(args, voxel_sizes(affine), affine)
        except IQTError as exc:  # every such subject named, not the first only (a cohort audit)
            refused.append((it, exc, voxel_sizes(affine)))
            continue
        except (ValueError, ArithmeticError, np.linalg.LinAlgError):  # a grid no orientation is read from: its reader
            unread.append(it)  # says what is wrong, in its subject's row (a review: an internal error for the cohort)
            continue
        groups.setdefault(tuple(int(x) for x in f), []).append(it)
    if refused:  # the others with their voxel sizes, each refused for its own reason (a review: "so are" claimed one)
        (it, exc, _), more = refused[0], [f"{o.prefix} ({'x'.join(f'{v:.3g}' for v in vs)} mm)" for o, _, vs in refused[1:]]
        also = f"; also refused at {_chosen_by(args)}: {listed(more, most=4)}" if more else ""
        them = "those subjects" if more else "that subject"
        raise IQTError(f"{it.prefix} ({it.as_typed(it.path)}): {exc}{also}; or leave {them} out of the cohort")
    if not groups:  # no header read: every subject fails with its reader's line, under a model's own factors or 2
        from ...fileio.model_files import factors_named

        own = factors_named(args.model) if getattr(args, "model", None) and args.voxel_size is None else None
        groups[tuple(own) if own is not None else grid.factors("2")] = []
    first = next(iter(groups))
    joined = {id(it) for it in groups[first] + unread}
    groups[first] = [it for it in items if id(it) in joined]
    args.unread = {it.prefix for it in unread}  # not chosen by their header: left out of the line naming the chosen
    return list(groups.items())


def _participants(args):
    """The subjects of the input, or with --participant-label those participants of the BIDS dataset (a list names its
    own), chosen before the subjects are compared (a participant left out had been refused as another's copy)."""
    from pathlib import Path

    from .. import batch

    if args.participant_label and Path(args.input).exists() and not Path(args.input).is_dir():
        raise IQTError(f"--participant-label selects participants of a BIDS dataset; {args.input} is a list, which names "
                       "its subjects itself: list only those")
    return batch.find_items(args.input, args.participant_label)


def _unusable(path) -> str | None:
    """Why the input file at `path` cannot be read (missing, no regular file, no read permission), None if it can."""
    from ...fileio.paths import not_a_file

    if not os.path.exists(path):
        return "a symbolic link that leads to no file" if os.path.islink(path) else "not found"
    kind = not_a_file(path)
    if kind is not None:
        return f"is {kind}, not a file"
    return None if os.access(path, os.R_OK) else "cannot be read (permission denied)"


def check_inputs_there(items) -> None:
    """Every subject's input file (and a list line's --mask) is there and readable, before the output folder is made
    and the cluster starts: a missing one had failed its subject only after the cluster's start (10-16 s), the run
    ending with exit 1 and a partial derivatives folder. A DWI's .bval and .bvec too (its JSON sidecar is optional:
    fileio/gradients.py sidecar_slices)."""
    bad = []
    for it in items:
        files = [(it.path, ""), (it.mask, "")]
        if it.kind == "dwi":
            files += [(str(g), f" (the {what} of {it.path})") for g, what in zip(it.gradients(), ("b-values", "b-vectors"))]
        why = next(((p + of, w) for p, of in files if p and (w := _unusable(p)) is not None), None)
        if why is not None:
            bad.append((it, *why))
    if not bad:
        return
    it, path, why = bad[0]
    where = f"{it.line}: " if it.line else ""
    fix = "the list (a relative path is read from the list's folder)" if it.line else "the dataset"
    raise IQTError(f"{where}{it.as_typed(str(path))}: {why}; {len(bad)} of the {len(items)} subjects "
                   f"{'have an input' if len(bad) > 1 else 'has its input'} missing or unreadable: fix {fix} and rerun "
                   "(nothing was started or written)")


def _chosen_by(args) -> str:
    return f"--voxel-size {args.voxel_size:g}" if args.voxel_size is not None else f"--model {args.model}'s own factors"


def _named(group, most: int = 4, unread=()) -> str:
    """The subjects of `group` by name, the first `most` of them and how many more; those in `unread` (no header read,
    so no factors chosen for them) said apart."""
    names = [it.prefix for it in group if it.prefix not in unread]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    left = len(group) - len(names)
    return (", ".join(names[:most]) + more or "none") + (f"; {left} whose header could not be read, run at these to say why"
                                                          if left else "")


def _absolute(path):
    """A path the workers can open: a --scheduler's workers need not share this shell's folder (a relative --model
    fails every subject with "model file not found"; so do a relative list's inputs)."""
    return None if path is None else os.path.abspath(path)


def _absolute_item(item):
    """`item` with its files as absolute paths, for the workers (see `_absolute`: a relative list, mask or output folder
    failed every subject, 'file not found', on a --scheduler's workers started elsewhere)."""
    import dataclasses

    moved = {k: _absolute(getattr(item, k)) for k in ("path", "mask", "bval", "bvec") if getattr(item, k)}
    typed = tuple((moved[k], getattr(item, k)) for k in moved if moved[k] != getattr(item, k))
    return dataclasses.replace(item, typed=typed, **moved)


def _table_not_a_link(path) -> None:
    """A QC table or page that is a symbolic link (a DataLad or git-annex file) is refused with what to do there:
    fileio/paths.py check_not_a_link's "give the file's own path, or remove the link" fits neither (batch takes no path
    for it; removed, the earlier runs' rows are lost). A link to a folder or to itself says so (a review: they had been
    told to copy the file over the link, or to fetch it with DataLad)."""
    try:
        target = os.readlink(path)
    except OSError:  # not a link, not there, or under a file (the output folder's check says so)
        return
    q = shlex.quote(str(path))
    what = "QC table" if path.name == "qc.tsv" else "QC page"
    begun = " (a new table is begun)" if what == "QC table" else ""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # it leads back to itself: no file anywhere to unlock or fetch
            raise IQTError(f"{path}: the cohort's {what} is a symbolic link (to {target}) that leads back to itself, "
                           f"no file: remove the link{begun}, then rerun") from None
    if path.is_dir():  # no file to unlock or copy over it
        raise IQTError(f"{path}: the cohort's {what} is a symbolic link to a folder ({target}), not a file: move the "
                       f"link away{begun}, then rerun")
    if not path.exists():  # a DataLad/git-annex file whose content is not here
        raise IQTError(f"{path}: the cohort's {what} is a symbolic link to {target}, which is not there (a DataLad or "
                       f"git-annex file not fetched?): fetch and unlock it (datalad get {q}, then datalad unlock {q}), or "
                       f"move the link away{begun}, then rerun")
    raise IQTError(f"{path}: the cohort's {what} is a symbolic link (to {target}), perhaps a DataLad or git-annex file, "
                   f"and a run writes it again with the earlier runs' rows: unlock it (datalad unlock {q}, or git annex "
                   f"unlock {q}) or copy the file over the link, then rerun")


def check_qc_table(out) -> None:
    """Before any work, the cohort's QC table and page in `out` can be written and the table's earlier rows read: found
    at the end of the first factor set, a folder at their name had ended the run there (a cohort audit), a link or an
    unreadable table after every subject had run (reviews)."""
    for table in ("qc.tsv", "qc.html"):
        _table_not_a_link(out / table)
        if (out / table).exists() and not (out / table).is_file():
            raise IQTError(f"{out / table}: in the way of the cohort's QC table ({table}), not a file; move it and rerun")
    try:
        with open(out / "qc.tsv", "rb"):
            pass
    except (FileNotFoundError, NotADirectoryError):  # no table yet, or the folder under a file: its check says so
        pass
    except OSError as exc:
        raise IQTError(f"{out / 'qc.tsv'}: the cohort's QC table cannot be read ({exc.strerror}), and a run adds its rows "
                       "to the earlier runs' there: make it readable (or move it) and rerun") from None


def run(args) -> int:
    from ...core import grid
    from ...core.version import forget_build
    from .. import batch
    from ..batch import lock as batch_lock

    forget_build()  # this run's build read fresh at its start, as the workers' (scheduler.py _PROBE)

    f = options.factors(args)  # None: each subject's own, from its header (--voxel-size, or a --model's own factors)
    local = [o for o, v in (("--memory-limit", args.memory_limit), ("--dashboard-address", args.dashboard_address))
             if v is not None]
    if args.scheduler and local:  # they had been ignored without a word: the scheduler's workers have their own
        raise IQTError(f"{' and '.join(local)} with --scheduler: {'it sets' if len(local) == 1 else 'they set'} up the "
                       "local cluster, which --scheduler replaces (its workers' memory and dashboard are set where they "
                       f"are started, e.g. 'dask worker --memory-limit'); drop {'it' if len(local) == 1 else 'them'}")
    if not args.scheduler:
        args.workers = LOCAL_DEFAULTS["workers"] if args.workers is None else args.workers
        for key in ("memory_limit", "dashboard_address"):
            setattr(args, key, LOCAL_DEFAULTS[key] if getattr(args, key) is None else getattr(args, key))
        if str(args.memory_limit).strip().lower() == "auto":  # Dask reads only lowercase "auto" (AUTO: ValueError)
            args.memory_limit = "auto"
    if args.scheduler and os.path.isfile(args.scheduler):  # a scheduler file: the address it holds
        args.scheduler = batch.scheduler_from_file(args.scheduler)
    elif args.scheduler and "://" not in args.scheduler and ("/" in args.scheduler or os.sep in args.scheduler
                                                             or args.scheduler.endswith(".json")
                                                             or os.path.isdir(args.scheduler)):
        # a path, not an address (host:port): 'missing port number in address' had misled (a researcher's audit)
        what = "a folder, not a scheduler file" if os.path.isdir(args.scheduler) else "no such scheduler file"
        raise IQTError(f"--scheduler {args.scheduler}: {what}; give the file 'dask scheduler "
                       "--scheduler-file' wrote (it appears once the scheduler runs), or the address (tcp://host:port)")
    if args.workers is not None and args.workers < 1:
        raise IQTError(f"--workers {args.workers}: give at least 1 worker")
    if f is not None:  # one method for the cohort, checked before the inputs are listed
        plans = [_method_for(args, f)]
        items = _participants(args)
        check_inputs_there(items)
        groups = [(f, items)]
    else:
        items = _participants(args)
        check_inputs_there(items)
        groups = factor_groups(args, items)
        plans = [_method_for(args, g, group) for g, group in groups]
    if args.bmax is not None:  # it selects shells of a DWI before its fit; a tensor file was fitted already
        fitted = sum(it.kind == "dti" for it in items)
        if fitted == len(items):
            raise IQTError(f"--bmax {args.bmax:g}: every listed subject is a tensor file, fitted already; leave --bmax out")
        if fitted:
            warnings.warn(f"--bmax {args.bmax:g} applies to the DWI subjects only; the {fitted} listed tensor file"
                          f"{'s are' if fitted > 1 else ' is'} upsampled as fitted", IQTWarning, stacklevel=2)
    if args.exclude_outliers and all(it.kind == "dti" for it in items):
        raise IQTError("--exclude-outliers: every listed subject is a tensor file, fitted already; leave "
                       "--exclude-outliers out (or refit them with 'iqt fit --exclude-outliers')")
    if args.exclude_outliers and any(it.kind == "dti" for it in items):
        fitted = sum(it.kind == "dti" for it in items)
        warnings.warn(f"--exclude-outliers applies to the DWI subjects only; the {fitted} listed tensor file"
                      f"{'s are' if fitted > 1 else ' is'} upsampled as fitted", IQTWarning, stacklevel=2)
    if args.tensor_order != "nifti" and all(it.kind == "dwi" for it in items):  # said nothing and had no effect
        raise IQTError(f"--tensor-order {args.tensor_order}: every subject is a DWI series, fitted here (the option reads "
                       "tensor files another tool wrote); leave --tensor-order out")
    runs = []  # (method name, factors, subjects, settings): one run of the cohort per factor set
    for (g, group), (name, method) in zip(groups, plans):
        model_file, model_sha = batch.model_record(method, g)
        noisy_file, noisy_sha = batch.noisy_model_record(method, g)
        s = batch.Settings(method=name, factor=g if grid.isotropic(g) is None else g[0], uncertainty=args.uncertainty,
                           mc_samples=args.mc_samples, device=args.device, model=_absolute(args.model),
                           model_file=model_file, model_sha256=model_sha, tta=args.tta, tensor_order=args.tensor_order,
                           order_stated=getattr(args, "order_stated", None), output_order=args.output_order,
                           noisy_model_file=noisy_file, noisy_model_sha256=noisy_sha, bmax=args.bmax,
                           exclude_outliers=args.exclude_outliers, frame_check=not getattr(args, "no_frame_check", False))
        runs.append((name, g, group, s))
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise IQTError(f"iqt batch needs Dask distributed; install the batch extra: {install_extra('batch')}") from None
    if not args.scheduler:  # the local cluster's TLS credentials are made with it (batch.local_cluster.local_security)
        import importlib.util

        if importlib.util.find_spec("cryptography") is None:
            from ..batch.local_cluster import NO_CRYPTOGRAPHY

            raise IQTError(NO_CRYPTOGRAPHY)
    from pathlib import Path

    out_path, in_path = Path(args.output).resolve(), Path(args.input).resolve()
    if not args.scheduler:
        check_memory_limit(args.memory_limit)
        check_dashboard_address(args.dashboard_address)
        check_worker_memory(args, runs)
        check_open_files(args.workers)
    out = Path(args.output)  # a folder, created with its parents (derivatives/ of a fresh BIDS dataset)
    if out.exists() and not out.is_dir():
        raise IQTError(f"{out}: exists and is not a folder; give a folder for the outputs")
    # BIDS keeps derivatives under derivatives/ of a raw dataset; anything else inside it is not a derivative's place
    if in_path.is_dir() and (out_path == in_path or (in_path in out_path.parents
                                                     and out_path.relative_to(in_path).parts[0] != "derivatives")):
        raise IQTError(f"{args.output}: inside the input dataset's raw data; write the outputs elsewhere, e.g. "
                       f"{Path(args.input) / 'derivatives' / 'iqt'}")
    if in_path.is_dir() and out_path == in_path / "derivatives":  # it holds one folder per pipeline
        raise IQTError(f"{args.output}: the dataset's derivatives folder itself, which holds one folder per pipeline; "
                       f"write into {Path(args.input) / 'derivatives' / 'iqt'}")
    batch.check_source(out, items)
    check_qc_table(out)
    from .upsample import input_shape3

    for _, g, group, _ in runs:  # else a subject fails at its write, after its whole run (core/grid.py, NIFTI_MAX_DIM)
        for it in group:
            shape3 = input_shape3(it.path)
            try:
                grid.check_nifti_grid(shape3 or (1, 1, 1), g, ["iqt batch writes NIfTI"])
            except IQTError as exc:
                raise IQTError(f"{it.prefix} ({it.as_typed(it.path)}): {exc}; or leave that subject out") from None
    for _, _, group, s in runs:  # no subject's output or removal is a file of the cohort's inputs
        batch.check_inputs_kept(out, group, s)
    batch.check_apart_from_inputs(out, items)  # nor the derivatives' folder an input's folder
    if not args.wait_workers > 0 or args.wait_workers == float("inf"):
        raise IQTError(f"--wait-workers {args.wait_workers:g}: give a number of seconds above 0, e.g. {WAIT_WORKERS_S}")
    created = [d for d in (out.absolute(), *out.absolute().parents) if not d.exists()]  # removed again (when empty) if the cluster fails to start
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IQTError(f"{args.output}: cannot create the folder ({exc.strerror}); choose another output folder") from None
    ended = False
    try:  # one run at a time per folder, from before any work to the end whatever happens (batch/lock.py)
        with batch_lock.held(out, shlex.join(["iqt", *args.argv])) as rec:
            from ... import methods

            client, cluster = batch.start_client(args.workers, args.scheduler, args.memory_limit,
                                                 args.dashboard_address, args.wait_workers,
                                                 torch=any(methods.method_class(r[0]).requires_torch for r in runs),
                                                 quiet=not (args.debug or os.environ.get("IQT_DEBUG")))
            if args.scheduler:  # its workers' limits are known once it is reached (a local one's checked above)
                try:
                    check_scheduler_memory(args, runs, client)
                except BaseException:
                    client.close()
                    raise
            code = _run(args, runs, items, out, client, cluster, rec["token"], per_subject=f is None)
            ended = True
            return code
    finally:
        # refused, the cluster did not start, or stopped before any subject ended (Ctrl-C, no workers): no folder left
        # behind that this run made and that holds nothing (an empty derivatives folder had been kept: an audit)
        if not ended:
            for d in created:
                try:
                    d.rmdir()
                except OSError:
                    break


def _run(args, runs, items, out, client, cluster, run_token=None, per_subject=False) -> int:
    from ...core import grid
    from .. import batch

    from ..batch.qc import row_keys

    existed = _folders_there(out, items)
    t0 = time.monotonic()
    done, ours, current = {}, set(), None
    try:
        for name, f, group, s in runs:  # one factor set after another, each its own run (its qc.tsv rows, GeneratedBy)
            chosen = f" ({_chosen_by(args)}: {_named(group, unread=getattr(args, 'unread', ()))})" if per_subject else ""
            print(f"{counted(len(group), 'subject')}, method {name}, {grid.describe(f)}{chosen}; Dask dashboard: "
                  f"{_dashboard(client, args.scheduler)}", flush=True)
            current = ([_absolute_item(it) for it in group], s)
            ended = batch.run_cohort(current[0], s, out.absolute(), client, wait_workers=args.wait_workers, lock=False,
                                     run_token=run_token, also=ours)  # the table shows every factor set's as this run's
            ours |= row_keys(ended, s)
            for r in ended:
                done[r["subject"]] = r
    except BaseException:  # Ctrl-C, a termination signal or an error: the cluster stopped, then what it left removed
        from ..batch.records import subject_folders

        _stop(client, cluster, subject_folders(out.absolute(), items), existed)
        if current is not None:  # a worker that put its first subject in place while the cluster stopped (a review)
            batch.settle_after_stop(current[0], current[1], out.absolute(), ours)
        raise
    results = [done[it.prefix] for it in items if it.prefix in done]  # in the cohort's order
    _stop(client, cluster)
    # both files the run wrote (apps/batch/qc.write_qc): the page had gone unnamed (a newcomer's audit)
    batch.say_results(results, f"; wrote {out / 'qc.tsv'} and {out / 'qc.html'}; {throughput(results, time.monotonic() - t0)}")
    failed = [r for r in results if r["status"] == "failed"]
    if failed:  # one stderr line that holds the reasons too (a cluster's error log may be kept apart from its output)
        why = (" | ".join(f"{f['subject']}: {f['reason']}" for f in failed) if len(failed) <= 3
               else ", ".join(f["subject"] for f in failed) + " (reasons above and in qc.tsv)")
        print(f"iqt: {len(failed)} of {counted(len(results), 'subject')} failed: {' '.join(why.split())}; "
              f"fix {'it' if len(failed) == 1 else 'them'} and rerun the same command to finish", file=sys.stderr)
        return 1
    return 0
