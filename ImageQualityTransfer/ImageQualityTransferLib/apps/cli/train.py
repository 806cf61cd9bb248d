"""`iqt train`: train a learned method on high-quality subject folders (`Method.fit`, then `Method.save`); `iqt seal`:
seal the sidecar of a model trained before sidecars were sealed."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
import time
from pathlib import Path

from ...core.errors import IQTError
from ...fileio import train_options
from . import options


def add_parsers(sub) -> None:
    sp = sub.add_parser("train", help="train a learned method (3D-ESPCN, the deeper network, IQT-RF, BIQT-RF, global-linear; 'iqt methods') on high-quality subject folders")
    train_options.add_arguments(sp)
    sp.set_defaults(func=run)

    sp = sub.add_parser("seal", help="seal the sidecar of a model from 'iqt train' of an earlier version, once its "
                                     "weights match their checksum, so that it loads without a warning")
    sp.add_argument("models", nargs="+", metavar="MODEL", help="a model's weights or its .json sidecar (repeatable)")
    sp.set_defaults(func=seal)


def seal(args):
    """Every model, sealed or not, is checked before any is sealed (its checksum, and that its weights load as
    'iqt upsample' loads them), and the sidecars are written all or none: one bad file among several, or a write that
    fails, leaves all of them as they were."""
    from ...fileio import model_files
    from ...fileio.paths import JSON_SUFFIXES, Outputs
    from ...fileio.staging import say

    plan = Outputs()  # the sidecars are written all or none: a write that fails (a full disk) leaves every one as it was
    sidecars = {}  # one per model, in the order given (a model named twice, by weights and by sidecar, sealed once)
    for m in args.models:
        if os.path.isdir(m):  # said as `iqt upsample --model` says it (it read "m.json: model sidecar not found")
            raise IQTError(f"{m}: a folder; give the model file (.npz or .pt, its .json sidecar beside it) from 'iqt train'")
        sp, meta = model_files.check_sealable(m, load=_load_model)
        if os.path.realpath(sp) not in sidecars:  # one already sealed is only checked: no write, so a read-only folder
            # (a share, an install) is no refusal there (a provenance audit)
            sidecars[os.path.realpath(sp)] = (sp if model_files.SEAL in meta else
                                              plan.add(sp, JSON_SUFFIXES, "sealed sidecar", shipped_ok=True))
    for sp in sidecars.values():  # (the shipped ones were refused above)
        sp, now = model_files.seal(sp)
        say(f"{sp}: sealed" if now else f"{sp}: already sealed, left as it was")  # once all are in place


def _check_sidecar_free(side: Path, out: Path) -> None:
    """The model's sidecar name holds a JSON and no model is at `out`: a model sidecar of its own (weights deleted to
    train again) is written over; another model's, or a file of another kind (a subject's BIDS dwi.json beside
    -o dwi.npz had been replaced: a bad-input audit), is refused."""
    from ...fileio.model_files import read_json

    fix = "the model's sidecar would replace it: give -o another name"  # a model sidecar's advice had been given
    try:
        meta = read_json(side, what="the file already there (not a model's sidecar: a DWI's BIDS metadata?)",
                         usual="a model's sidecar from 'iqt train' is a few KB", fix=fix, irregular_fix=fix)
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or "method" not in meta:
        raise IQTError(f"{side}: already there and not a model's sidecar (e.g. a DWI's BIDS metadata), which the "
                       "model's sidecar would replace; give -o another name")
    others = sorted(p for p in side.parent.glob(side.stem + ".*") if p.suffix in (".pt", ".npz") and p != out)
    if others:
        raise IQTError(f"{side}: the sidecar of the model {others[0]}, which this one's would replace; give -o another "
                       "name")


def _load_model(sidecar) -> None:
    """Read the model as 'iqt upsample --model' reads it (its method's safe loader: weights only, no code run, its
    settings checked against them); an IQTError where it does not load."""
    from ... import methods
    from ...fileio.model_files import read_json

    method = read_json(Path(sidecar)).get("method")
    if method not in methods.trainable():
        raise IQTError(f"{sidecar}: the sidecar names no learned method ({method!r}); re-download or retrain the model")
    method = methods.method_class(method)()
    model = method._read(sidecar)
    check = getattr(method._model_io(), "check_outputs", None)  # what a prediction checks first (the forests' outputs)
    if check is not None:
        check(model)


def run(args):
    from ... import fileio, methods
    from ...core import grid
    from ...fileio.model_files import NOISY, registered_entry, sidecar_path
    from ...dmri.subject import dwi_path

    grid.factors(args.factor)  # a malformed --factor is refused before anything else
    cls = methods.method_class(args.method)
    if not cls.learned:
        raise IQTError(f"--method {args.method}: nothing to train; trainable methods are {', '.join(methods.trainable())}")
    for d in args.subjects:
        if not (Path(d) / "dwi.nii.gz").exists() and not (Path(d) / "dwi.nii").exists():
            raise IQTError(f"{d}: not a subject folder (it needs dwi.nii.gz or dwi.nii, dwi.bval and dwi.bvec; a BIDS "
                           "subject's files go in as such a folder, e.g. of links to them)")
    plan = fileio.Outputs(*args.subjects, *options.model_files(args.init))
    out = plan.add(args.output, (cls.model_suffix,), f"{args.method} model (the JSON sidecar is written beside it)",
                   shipped_ok=True)
    side = plan.add(sidecar_path(out), fileio.JSON_SUFFIXES, "model sidecar", shipped_ok=True)
    if side.is_file() and not out.exists():
        _check_sidecar_free(side, out)
    kind = NOISY if args.noise_fraction else None
    shipped = registered_entry(out)
    if not args.register and shipped is not None:  # else it would become the default without a word
        same = ((shipped.get("method"), shipped.get("input")) == (args.method, kind)
                and grid.factors(shipped.get("factor", 0)) == grid.factors(args.factor))
        raise IQTError(f"{out}: is a shipped model of this install; write yours elsewhere and give it with --model"
                       + (", or add --register to make it the default in its place" if same else
                          f" (it is the {shipped.get('method')} model for {grid.describe(shipped.get('factor', 0))}, so "
                          "--register cannot put this one there)"))
    taken = registered_entry(out, Path(out).parent) if args.register else None
    if taken is not None and ((taken.get("method"), taken.get("input")) != (args.method, kind)
                              or grid.factors(taken.get("factor", 0)) != grid.factors(args.factor)):
        # a second registry entry would name the same file (global-linear over rf_x2.npz would break rf's default)
        raise IQTError(f"{out}: is registered as the {taken.get('method')} model for {grid.describe(taken.get('factor', 0))}"
                       f"{' (noisy inputs)' if taken.get('input') else ''}; give this {args.method} model a name of its own")
    if args.checkpoint:  # neither an input nor the model (the checkpoint would replace it, and a rerun fail)
        plan.add(args.checkpoint, (), "training checkpoint")
    plan.check()
    if args.epochs is not None and args.epochs < 1:
        raise IQTError("--epochs must be at least 1")
    if args.minutes is not None and not args.minutes > 0:
        raise IQTError(f"--minutes {args.minutes}: give a positive time budget in minutes (e.g. 45), or drop it")
    for flag, value in (("--subset-fraction", args.subset_fraction), ("--noise-fraction", args.noise_fraction)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise IQTError(f"{flag} {value:g}: give a share between 0 and 1 (e.g. 0.2)")
    args.coarsen_mm = _voxel_sizes(args.coarsen)
    if args.init and cls.requires_torch:  # another family's model, said in this option's words
        from ...fileio.model_files import article

        from ...methods.cnn.training import warm_start

        try:  # the whole warm start (weights verified, factor, network), before the data are prepared or processes start
            warm_start(args.init, args.method, args.factor)
        except IQTError as exc:
            raise IQTError(re.sub(r"; it is an? (\S+) model: run it with --method \S+",
                                  lambda found: f"; it is {article(found[1])} {found[1]} model, which cannot initialise a network: give an "
                                                "espcn-family .pt model from 'iqt train'", str(exc))) from None
    if args.input_unit and args.init and cls.requires_torch:  # before any data are prepared or processes start
        raise IQTError("--input-unit: an --init model brings its own input unit; drop --input-unit")
    if args.lr is not None and not cls.requires_torch:
        raise IQTError(f"--lr applies to the CNN methods, not {args.method!r}; drop it")
    if args.ema is not None and not 0.0 <= args.ema < 1.0:
        raise IQTError(f"--ema {args.ema:g}: give a decay in [0, 1), e.g. 0.999 (0: no averaging)")
    if args.lr is not None and not 0 < args.lr < float("inf"):  # inf trained to a model of NaN loss, shipped (audit)
        raise IQTError(f"--lr {args.lr:g}: give a positive learning rate (e.g. 2e-4)")
    if args.leaf_ridge is not None and args.leaf_ridge < 0:
        raise IQTError(f"--leaf-ridge {args.leaf_ridge:g}: give a ridge of 0 or more (e.g. 0.01)")
    for flag in ("n_trees", "max_depth", "min_leaf", "n_train"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise IQTError(f"--{flag.replace('_', '-')} {value}: give a positive whole number")
    if args.nproc < 1:
        raise IQTError(f"--nproc {args.nproc}: give at least 1 process")
    given = [flag for flag, on in (("--nproc", args.nproc > 1), ("--checkpoint", args.checkpoint)) if on]
    if given and not cls.requires_torch:  # names only those given (both were named whichever was)
        them = " and ".join(given)
        raise IQTError(f"{them} appl{'ies' if len(given) == 1 else 'y'} to the CNN methods, not {args.method!r}; "
                       f"drop {'it' if len(given) == 1 else 'them'}")
    if args.device != "cpu" and not cls.requires_torch:
        raise IQTError(f"--device applies to the CNN methods, not {args.method!r}; drop it")
    if args.nproc > 1:  # said before any data are prepared or processes start
        from ...methods.cnn.training_data import DEFAULTS

        if DEFAULTS["batch_size"] % args.nproc:
            raise IQTError(f"--nproc {args.nproc}: a batch of {DEFAULTS['batch_size']} patches does not split over "
                           f"{args.nproc} processes; give a number of processes that divides it (2, 4 or 8)")
    if args.nproc > 1 and args.device != "cpu":
        raise IQTError(f"--device {args.device}: training over several processes (--nproc) runs on the CPU; use one or the other")
    if args.device != "cpu":
        from ...methods.cnn.inference import resolve_device

        resolve_device(args.device)  # no CUDA here: refused before the data are prepared
    if args.checkpoint and not Path(args.checkpoint).parent.exists():
        raise IQTError(f"{args.checkpoint}: the folder {Path(args.checkpoint).parent} does not exist; create it first")
    check_room([args.output] + ([args.checkpoint] if args.checkpoint else []))
    seen = {}
    for d in args.subjects:  # after the options: each refusal names the first thing to fix
        dwi_path(d)  # its bval and bvec too, before any work
        key = Path(d).resolve()
        if key in seen:
            raise IQTError(f"{d}: given twice in --subjects (also as {seen[key]}); list each training subject once")
        seen[key] = d
    from ...dmri.subject import refuse_copies

    refuse_copies(args.subjects, "training subject")
    from ...dmri.dti import check_gradients, check_training_shells

    for d in args.subjects:  # each subject's header, gradient files and length, before any is prepared
        path = dwi_path(d)
        bvals, bvecs = fileio.check_dwi(path)
        check_gradients(bvals, bvecs, f"{path}: ")  # as its fit would refuse them (a trace volume, no b0)
        check_training_shells(bvals, f"{path}: ")
    args.command_line = shlex.join(["iqt", *getattr(args, "argv", sys.argv[1:])])  # a path with a space stays one word
    with checkpoint_held(args.checkpoint):
        _train(args, cls)


@contextlib.contextmanager
def checkpoint_held(checkpoint):
    """A training's hold on its --checkpoint (an advisory lock on a hidden file beside it, where the system has fcntl),
    so that a second training given the same checkpoint is refused in one line: two had run at once, each writing the
    other's checkpoint (a training audit). Held by the process that starts the training (under torchrun, rank 0)."""
    if not checkpoint or os.environ.get("RANK", "0") != "0":
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no hold, as before
        yield
        return
    lock = Path(checkpoint).with_name(f".{Path(checkpoint).name}.lock")
    for _ in range(3):
        try:
            handle = open(lock, "a")
        except OSError:  # a folder not writable: no hold (writing the checkpoint there says what is wrong)
            yield
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise IQTError(f"{checkpoint}: another training is using this checkpoint now; wait for it to end, or give "
                           "--checkpoint another path") from None
        try:  # the file locked is still the one at its name (the last holder removes it as it ends: a review)
            same = os.fstat(handle.fileno()).st_ino == os.stat(lock).st_ino
        except OSError:
            same = False
        if same:
            break
        handle.close()
    else:
        raise IQTError(f"{checkpoint}: another training is using this checkpoint now; wait for it to end, or give "
                       "--checkpoint another path")
    with handle:
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _train(args, cls) -> None:
    """`run`'s training, in this process or spread over --nproc processes."""
    if args.nproc > 1:
        from ...methods.cnn import distributed

        from ...core import threads

        # 'iqt --threads N train' as 'iqt train --threads N': the cap apps/cli/__init__.py's _run applied
        cap = threads.cap()
        if cap is None:  # each process's default (spawn's): named in the recorded command, as one process's is below
            args.command_line += f" --threads {distributed.default_threads(args.nproc)}"
        # fewer processes either way (the same --nproc after an out-of-memory kill is likely killed again; a checkpoint
        # resumes under another --nproc); the checkpoint only where it holds an epoch, which a run killed early has not
        again = "run it again with fewer --nproc " + (
            f"(with --checkpoint {args.checkpoint} it continues after the last epoch saved there, if one was)"
            if args.checkpoint else "(a run with --checkpoint continues from its last saved epoch)")
        distributed.spawn(train_here, args.nproc, args, threads=cap, again=again)
    else:
        if cls.requires_torch:
            from ...methods.cnn import distributed, require_torch

            torch = require_torch()
            distributed.init_from_environment()  # under torchrun: join its group
            world = distributed.rank_and_world()[1]
            if world > 1:  # torchrun's processes: the recorded command names them, as --nproc does the same training
                args.command_line += f" --nproc {world}"
            if not any(getattr(args, n, None) is not None for n in ("threads", "command_threads", "train_threads")):
                # the weights depend on torch's thread count (1 and 2 threads differed by up to 5.3e-3), so the
                # command that reproduces them names the one this run took
                args.command_line += f" --threads {torch.get_num_threads()}"
        train_here(args)


MIN_FREE_BYTES = 64 * 2**20  # a model of this tool takes at most about 5 MB and a checkpoint about 3 times its model


def check_room(paths) -> None:
    """Refuse a training whose model or checkpoint folder has less than MIN_FREE_BYTES free: a full disk had thrown the
    trained weights away after the whole training (a training audit)."""
    import shutil

    for path in paths:
        folder = Path(path).parent if str(Path(path).parent) else Path(".")
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            continue  # a folder that is not there is said by the output checks
        if free < MIN_FREE_BYTES:
            raise IQTError(f"{path}: its folder has {free / 2**20:.1f} MiB free, less than the {MIN_FREE_BYTES // 2**20} MiB "
                           "a trained model (and a checkpoint) may need; free some space or write elsewhere (said "
                           "before the training, so that its weights are not lost at its end)")


def train_here(args) -> None:
    """Train in this process (one rank of a group, or alone); rank 0 writes the model and says so."""
    from ... import methods
    from ...core import grid

    cls = methods.method_class(args.method)
    r = grid.factors(args.factor)  # checked by `run`
    rank = 0
    if cls.requires_torch:
        from ...methods.cnn.distributed import rank_and_world

        rank = rank_and_world()[0]
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.verbose and rank == 0 else None
    t0 = time.perf_counter()
    subjects = list(args.subjects)
    if args.coarsen_mm:
        from ...dmri.subject import coarser_copies

        copies = coarser_copies(args.subjects, args.coarsen_mm)
        if log:
            log(f"--coarsen: {len(copies)} resampled cop{'y' if len(copies) == 1 else 'ies'}: "
                + (", ".join(c.name for c in copies) or "none (every subject is already that coarse)"))
        subjects += copies
    method = cls(device=args.device).fit(subjects, r, seed=args.seed, log=log, progress=True, epochs=args.epochs,
                       minutes=args.minutes, init=args.init, checkpoint=args.checkpoint,
                       subset_fraction=args.subset_fraction, noise_fraction=args.noise_fraction, lr=args.lr, ema=args.ema,
                       flips=True if args.flips else None, reference_noise=True if args.reference_noise else None, n_trees=args.n_trees, max_depth=args.max_depth,
                       min_leaf=args.min_leaf, n_train=args.n_train, refit_leaves=True if args.refit_leaves else None,
                       leaf_ridge=args.leaf_ridge, input_unit=args.input_unit)
    if rank == 0:
        out = Path(args.output)
        side = method.save(out, r, command=args.command_line, register=args.register)
        from ...fileio.model_files import REGISTRY

        # for the closing line of a signal from here on (apps/cli _what_is_kept): the model is written
        args.in_place = [str(out), str(side)] + ([str(Path(out).parent / REGISTRY)] if args.register else [])
        took = f"{(time.perf_counter() - t0) / 60:.1f} min"
        print(f"wrote {out} and {side.name} ({method.summary(r)}; "  # a resumed run's training time counts every run
              + (f"this command ran {took})" if getattr(args, "checkpoint", None) else f"{took} in all)"))
        if args.register:
            from ...core.noise_level import NOISY_MODEL
            from ...fileio.model_files import MODELS_DIR

            where = Path(out).resolve().parent
            role = ("the model for noisy inputs (noise index above "
                    f"{NOISY_MODEL:g}) at these factors" if args.noise_fraction else "the default model for these factors")
            print(f"registered in {where / REGISTRY}" + (f": {role}" if where == MODELS_DIR.resolve()
                                                          else "; use it with --model (only the registry in the install's model "
                                                          f"folder, {MODELS_DIR}, sets the defaults)"))


def _voxel_sizes(text) -> tuple[float, ...]:
    """--coarsen "3" or "2.5,3.5" -> (3.0,) / (2.5, 3.5); one clear line for anything else."""
    if not text:
        return ()
    try:
        sizes = tuple(float(t) for t in str(text).split(","))
    except ValueError:
        sizes = ()
    if not sizes or not all(0 < s < 20 for s in sizes):
        raise IQTError(f"--coarsen {text}: give voxel sizes in mm, comma-separated (e.g. 3 or 2.5,3.5)")
    return sizes
