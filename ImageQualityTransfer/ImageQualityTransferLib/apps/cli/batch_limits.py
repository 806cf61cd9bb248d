"""What the cluster of an `iqt batch` run can hold, checked before any subject runs: --memory-limit, each subject's
memory need against a local worker's limit, ulimit -v and ulimit -n, or a --scheduler's workers' limits, and
--dashboard-address (apps/cli/batch.py `run` calls them)."""

from __future__ import annotations

import math
import os
import warnings

from ...core.errors import IQTError, IQTWarning
from ...core.words import counted
from . import options

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
