"""`iqt batch`: a cohort (BIDS dataset or list) upsampled on a Dask cluster into a BIDS-derivatives dataset."""

from __future__ import annotations

import errno
import os
import re
import shlex
import sys
import time
import warnings

from ...core.errors import IQTError, IQTWarning, install_extra
from ...core.words import counted
from . import options
from .batch_limits import (MIN_MEMORY, check_dashboard_address, check_memory_limit, check_open_files,
                           check_scheduler_memory, check_worker_memory)
from .batch_plan import (_absolute, _absolute_item, _chosen_by, _method_for, _named, _participants, check_inputs_there,
                         factor_groups)
from .batch_stop import _folders_there, _stop

# read through this module by their tests (Testing/apps/test_batch_scale.py) since they were defined here
from .batch_limits import CLUSTER_FILES  # noqa: F401, E402
from .batch_stop import _open_files_said  # noqa: F401, E402


def add_parsers(sub) -> None:
    sp = sub.add_parser("batch", help="upsample a cohort (BIDS dataset or list of subjects) on a Dask cluster into a "
                                      "BIDS-derivatives dataset, resumable, with a QC table (needs the batch extra)")
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
    sp.add_argument("--output-format", default="nifti", choices=["nifti", "mif", "mif.gz"],
                    help="the images written: nifti (default, .nii.gz) or MRtrix's mif (.mif, or .mif.gz compressed: "
                         "tensors in dwi2tensor's order, as 'iqt upsample -o out.mif'); sidecars, qc.tsv and the QC "
                         "figures are the same")
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
    from ..batch.scheduler import masked_command

    forget_build()  # this run's build read fresh at its start, as the workers' (scheduler.py _PROBE)

    if args.output_format != "nifti" and args.output_order not in ("input", "mrtrix"):  # before any work, as upsample
        raise IQTError(f"--output-format {args.output_format}: an MRtrix image holds dwi2tensor's order only; leave "
                       f"--output-order {args.output_order} out or write NIfTI (--output-format nifti)")
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
    args.scheduler = args.scheduler and args.scheduler.strip()  # a pasted address's newline, in every line said
    from ..batch.scheduler import _a_path  # alice:p/w@node7:8786: a login with a '/', told as an address (a review)

    home = os.path.expanduser(args.scheduler) if args.scheduler and "://" not in args.scheduler else args.scheduler
    if args.scheduler and os.path.isfile(home):  # a scheduler file (~ its owner's home, as --scheduler=~/f is given
        args.scheduler = batch.scheduler_from_file(home)  # unexpanded by the shell): the address it holds
    elif args.scheduler and "://" not in args.scheduler and ("/" in args.scheduler or "\\" in args.scheduler
                                                             or args.scheduler.endswith(".json")
                                                             or os.path.isdir(home)) \
            and _a_path(args.scheduler):
        # a path, not an address (host:port): 'missing port number in address' had misled (a researcher's audit);
        # host:port/... is an address with a path (the dashboard's 127.0.0.1:8787/status), said as such
        if re.match(r"[^/\\]+:\d+/", args.scheduler) and not os.path.isdir(home):
            from ..batch.scheduler import _not_the_dashboard

            _not_the_dashboard(args.scheduler, "tcp", args.scheduler)
        what = "a folder, not a scheduler file" if os.path.isdir(home) else "no such scheduler file"
        from ..batch.scheduler import shown  # alice:pw@node7:8786/x: an address's login masked (runs@node7/s.json kept)

        raise IQTError(f"--scheduler {shown(args.scheduler)}: {what}; give the file 'dask scheduler "
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
    for (g, group), (name, method, note) in zip(groups, plans):
        model_file, model_sha = batch.model_record(method, g)
        noisy_file, noisy_sha = batch.noisy_model_record(method, g)
        s = batch.Settings(method=name, factor=g if grid.isotropic(g) is None else g[0], uncertainty=args.uncertainty,
                           mc_samples=args.mc_samples, device=args.device, model=_absolute(args.model),
                           model_file=model_file, model_sha256=model_sha, tta=args.tta, tensor_order=args.tensor_order,
                           order_stated=getattr(args, "order_stated", None), output_order=args.output_order,
                           noisy_model_file=noisy_file, noisy_model_sha256=noisy_sha, bmax=args.bmax,
                           exclude_outliers=args.exclude_outliers, frame_check=not getattr(args, "no_frame_check", False),
                           note=note or None, output_format=args.output_format,
                           record=not getattr(args, "no_record", False))
        runs.append((name, g, group, s))
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise IQTError(f"iqt batch needs Dask distributed; install the batch extra: {install_extra('batch')}") from None
    if not args.scheduler:  # the local cluster's TLS credentials are made with it (batch.local_cluster.local_security)
        import importlib.util

        if importlib.util.find_spec("cryptography") is None:
            from ..batch.local_cluster import no_cryptography

            raise IQTError(no_cryptography())
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

    for _, g, group, s in runs:  # else a subject fails at its write, after its whole run (core/grid.py, NIFTI_MAX_DIM)
        for it in group:
            shape3 = input_shape3(it.path)
            try:
                if s.output_format == "nifti":  # an MRtrix image's sizes are text: --output-format mif has no limit
                    grid.check_nifti_grid(shape3 or (1, 1, 1), g, ["iqt batch writes NIfTI unless --output-format mif"])
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
        with batch_lock.held(out, masked_command(args.argv)) as rec:
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
