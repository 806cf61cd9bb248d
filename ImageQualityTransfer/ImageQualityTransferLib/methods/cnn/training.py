"""Training of the 3D-ESPCN models on prepared items (training_data.py: how they are made, normalised, augmented
and sampled): the phases, losses, early stopping, checkpoints and the trained model's sidecar.

Weight averaging (`ema` > 0, off by default): an exponential moving average of the weights (decay `ema` per batch,
restarted with each phase) is what validation scores, early stopping keeps and the model ships, as in Polyak
averaging; the optimiser moves the live weights.
Heteroscedastic models: MSE on the mean network first, then the heteroscedastic loss
mean(exp(-s) (y - mu)^2 + s) on both networks. Variational-dropout models (`espcn-hetero-var1/2`) add
kl_weight * KL(q || log-uniform prior) of the dropout rates to both phases; the default weight is one over the
number of training target values (the ELBO divided by the data size). `init` warm-starts from a trained model
of a compatible architecture (e.g. `espcn-hetero` -> `espcn-hetero-var1`: the dropout rates start at
alpha = exp(-4); a plain `espcn` or `deep` model starts the mean network of a heteroscedastic one, whose variance
network starts as built). Deterministic for a given seed and `epochs`
(a `minutes` budget stops on wall time, which is not).

Distributed (`distributed.py`): when a torch.distributed group is initialised, every process trains the same
network wrapped in DistributedDataParallel on its own share of each batch (batch_size / processes patches from its own
sampler stream, seeded by seed and rank), the gradients averaged, so the global batch is the same; rank 0's
validation loss drives every decision and only rank 0 logs. `checkpoint` is written after every epoch (by rank 0,
atomically): weights, optimiser, scheduler, early-stopping state and every process's random streams; a training
started again with the same checkpoint continues from its last epoch, as if uninterrupted.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings

import numpy as np

from ...core import grid
from ...core.errors import IQTError
from ...core.words import counted
from ...core.version import __version__ as engine_version
from ...fileio.model_files import build as engine_build
from .inference import subject_scale
from .model_io import save_torch
from .training_data import DEFAULTS, SIGNED_PERMUTATIONS, Sampler, TrainItem, augment_batch, fit_normalisation


def mse_loss(pred, y, w):
    return ((pred - y) ** 2 * w[:, None]).sum() / (w.sum() * 6 + 1e-8)


def hetero_loss(pred, logvar, y, w, ref_std=None):
    """Gaussian negative log-likelihood per target element; with `ref_std` (the reference's own fit noise), the
    target's variance is the predicted one plus that noise's, so the prediction's is its error against the truth."""
    if ref_std is None:
        nll = (-logvar).exp() * (pred - y) ** 2 + logvar
    else:
        var = logvar.exp() + ref_std ** 2
        nll = (pred - y) ** 2 / var + var.log()
    return (nll * w[:, None]).sum() / (w.sum() * 6 + 1e-8)


# ---------------------------------------------------------------- the loop


CHECKPOINT_FORMAT = "iqt-cnn-checkpoint/1"
SIDECAR_VERSION = "1.0.0"  # a trained model's sidecar "version", as every shipped CNN sidecar has it (the engine's
# own is its "engine_version")


def load_checkpoint(path, method: str, factor: int, seed: int) -> dict:
    """A checkpoint written by `train` for the same method, factor and seed (weights-only load: no code runs)."""
    import torch

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4 in the checkpoint": the refusal below says it
            warnings.simplefilter("ignore")
            ck = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # PyTorch's text would advise loading it unsafely: its kind only
        raise IQTError(f"{path}: not a training checkpoint this tool can read ({type(exc).__name__}: another kind of file, "
                       "or a damaged one); give --checkpoint a file of its own (it is created there)") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise IQTError(f"{path}: not an IQT training checkpoint; give another --checkpoint path or delete it")
    with checkpoint_read(path):
        theirs = (ck["method"], grid.factors(ck["factor"]), ck["seed"])
    if theirs != (method, grid.factors(factor), int(seed)):
        raise IQTError(f"{path}: a checkpoint of {ck['method']} at factor {ck['factor']} with seed {ck['seed']}; resume it "
                       "with those settings, or give another --checkpoint path")
    return ck


@contextlib.contextmanager
def checkpoint_read(path):
    """A checkpoint whose fields are missing or of the wrong kind (crafted, or of another tool) is one line: its
    KeyError, ValueError or PyTorch's RuntimeError had ended in an internal error (a security audit)."""
    try:
        yield
    except IQTError:
        raise
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError) as exc:
        raise IQTError(f"{path}: a damaged or foreign training checkpoint ({type(exc).__name__}: "
                       f"{' '.join(str(exc).split())[:100]}); delete it or give --checkpoint another path") from None


def _diverged(phase: str, history: list, lr: float, where: str = "", checkpoint: bool = True) -> IQTError:
    """The refusal of a training whose validation loss was never a number (the untrained weights had been its model)."""
    last = next((h["val_loss"] for h in reversed(history) if h["phase"] == phase), float("nan"))
    return IQTError(f"the training diverged{where}: no validation loss of its {phase} phase was a number (the last "
                    f"{last:g} at a learning rate of {lr:g}); train again with a lower --lr (the default is tuned for "
                    f"these networks){' and another --checkpoint path' if checkpoint else ''}; no model was written")


def _resume_plan(phases, given, limits, ended, last, done, start, epochs, more) -> str:
    """What a resumed run trains, for its 'resuming from … after epoch N' log line: ', on to --epochs N' where that is
    what a run given those epochs at once would train; otherwise which ended phases are kept as they ran (a two-phase
    run's warm-up: review, 2+2 epochs resumed with --epochs 8 trains 2+5, not a fresh run's 3+5), which phase trains
    on to how many epochs, and a phase that already has the epochs --epochs gives it (it trains no more)."""
    if start >= len(phases):
        return ""  # the run had ended: the next line says so
    notes = []
    for i in range(start):
        if ended[i][1] == 0 and ended[i][0] != given[i]:
            notes.append(f"its finished {phases[i][0]} phase is kept as it ran ({counted(ended[i][0], 'epoch')}; a run given "
                         f"--epochs {epochs} at once gives it {given[i]})")
    k0 = done if start == last else 0
    rest = [f"the {phases[i][0]} phase trains {'on ' if i == last else ''}to {counted(limits[i], 'epoch')}"
            for i in range(start, len(phases)) if limits[i] > (k0 if i == start else 0)]
    if k0 >= given[start]:
        notes.append(f"its {phases[start][0]} phase has {counted(k0, 'epoch')} already, "
                     f"{'more than' if k0 > given[start] else 'as many as'} the {given[start]} --epochs {epochs} gives "
                     "it: " + ("it trains no more" if rest else "no epoch to train; its best weights are written"))
    if not notes:
        return f", on to --epochs {epochs}" if more else ""
    return ": " + "; ".join(notes + rest) + (f", to epoch {sum(limits)} at most" if rest else "")


def train(items: list[TrainItem], method: str = "espcn", factor=2, seed: int = 0, epochs: int = 200,
          minutes: float | None = None, log=None, progress: bool = True, threads: int | None = None, init=None,
          checkpoint=None, device="cpu", data=None, **options) -> tuple:
    """Train a network on prepared items (on every process of a torch.distributed group, if one is initialised);
    with `checkpoint`, save after every epoch and resume from it when it exists. Returns (net in eval mode, sidecar
    metadata, history). `device` ("cpu", "cuda", "auto"): where the network trains (batches are drawn on the CPU);
    with several processes, the CPU only (gloo). `data`: the subjects' files as `learned.data_record` gives them, which a
    checkpoint must have been trained on to be resumed. `threads` holds for this call only: torch's thread count is
    given back after, so a caller's later work (a Slicer session, a script) runs on its own; so is torch's global random
    state, which the training seeds and draws from (docs/python.md: an engine call changes no process-wide setting)."""
    from . import require_torch

    torch = require_torch()
    before = torch.get_num_threads()
    # forked, not a private generator: the layers' initialisation and dropout draw from the global one, and the same
    # stream keeps the weights of a given seed (the shipped models' recorded commands) bit for bit
    with torch.random.fork_rng(devices=_cuda_devices(torch) if _on_cuda(torch, device) else []):
        try:
            run = _Training(items, method, factor, seed, epochs, minutes, log, progress, threads, init, checkpoint,
                            device, options, data)
            run.start()
            for pi in range(run.start_phase, len(run.phases)):  # the phases a resumed run has ended are skipped
                run.train_phase(pi)
            run.bar.close()
            return run.result()
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)


def _cuda_devices(torch) -> list:
    """Every CUDA device, where CUDA is available: a CUDA training's torch.manual_seed seeds them all, so forking only
    the current one had left the caller's other CUDA streams reseeded."""
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def _on_cuda(torch, device) -> bool:
    """Whether `device` (as `resolve_device` reads it, without its errors) trains on CUDA: a CPU training forks and
    seeds the CPU generator alone, as forking CUDA's streams initialises CUDA (torch.cuda.get_rng_state)."""
    kind = device.type if isinstance(device, torch.device) else str(device).strip().lower()
    return kind.startswith("cuda") or (kind == "auto" and torch.cuda.is_available())


def _seed(torch, device, seed: int) -> None:
    """torch.manual_seed for a CUDA training; the CPU generator alone (the same CPU stream) for a CPU one, which
    would otherwise seed CUDA too (`_on_cuda`)."""
    if device.type == "cuda":
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


def _warn(message: str) -> None:
    """A resumed training's note as a warning line ('iqt: warning: ...' on the command line)."""
    from ...core.errors import IQTWarning

    warnings.warn(message, IQTWarning, stacklevel=2)


def warm_start(init, method: str, factor, net=None):
    """The --init model loaded (verified, weights only) into `net`, a `method` network for `factor` (one built to be
    thrown away where None, to check the model before any data are prepared); returns the loaded model. Its factor or
    a network that does not fit is refused in one line."""
    from . import model_io, networks, require_torch

    base = model_io.load(init)
    factor = grid.factors(factor)
    if grid.factors(base.factor) != factor:
        raise IQTError(f"{init}: --init model is for {grid.describe(base.factor)}, not {grid.text(factor)}")
    if net is None:
        with require_torch().random.fork_rng(devices=[]):  # the throw-away layers' initial weights leave the seed's draws
            net = networks.build({"name": method, "factor": grid.record(factor),
                                  "widths": list(networks.default_widths(method))})
    # a model without a variance network (espcn, deep) warm-starts the mean network of a heteroscedastic one,
    # whose variance network starts as built
    target = net.mean if networks.is_hetero(net) and not networks.is_hetero(base.net) else net
    missing, unexpected = target.load_state_dict(base.net.state_dict(), strict=False)
    # new parts start as they are built: dropout rates, and deep's residual block (zero: the base's function)
    if unexpected or any("log_alpha" not in k and ".res_" not in f".{k}" for k in missing):
        raise IQTError(f"{init}: a model of method {base.method!r} cannot initialise a network of method {method!r}")
    return base


class _Training:
    """One `train` call: what its set-up made (network, data, sampler, checkpoint to resume) and the progress its
    epochs move on (epoch, history, ended phases: what a checkpoint records). A class so that each step of the loop
    reads on one screen: set-up (`__init__`), `start`, `train_phase` per phase, `result`."""

    def __init__(self, items, method, factor, seed, epochs, minutes, log, progress, threads, init, checkpoint, device,
                 options, data=None):
        """Check the options, then set up processes, device, threads, the network, the data and the checkpoint."""
        from . import networks, require_torch
        from .distributed import rank_and_world

        self.torch = torch = require_torch()
        self.items, self.method, self.factor, self.seed, self.epochs = items, method, factor, seed, epochs
        self.minutes, self.checkpoint = minutes, checkpoint
        # each subject's DWI by content: a checkpoint resumed on another scan in a folder of the same name went on
        # training on it, its sidecar naming only the new data
        # ([file, sha256] lists: what a checkpoint reads back, compared as saved); per folder in the order given: two
        # subjects of one name (siteA/P01, siteB/P01) had been one entry, and a resume in another order (which draws
        # other batches) had been taken (a training audit)
        self.data = [[d["subject"], [[k, v] for k, v in sorted(d["sha256"].items())]]
                     for d in data or [] if d.get("sha256")]
        # the form checkpoints of earlier versions hold (one entry per name, sorted): still resumed where unambiguous
        self.legacy_data = {d["subject"]: [[k, v] for k, v in sorted(d["sha256"].items())]
                            for d in sorted(data or [], key=lambda d: str(d.get("subject"))) if d.get("sha256")}
        # every folder in the order given (two of one name both), then what else was trained on: --coarsen's copies
        # (<name>_at3mm), which the data record leaves out (its folder's files are recorded once; a review)
        given = [d["subject"] for d in data or []]
        self.subject_names = given + [n for n in dict.fromkeys(it.name for it in items) if n not in set(given)] \
            if given else sorted({it.name for it in items})
        self.opts = opts = {**DEFAULTS, **options}
        if method not in networks.ARCHITECTURES:
            raise IQTError(f"unknown CNN method {method!r}; trainable: {', '.join(networks.ARCHITECTURES)}")
        self.rank, self.world = rank, world = rank_and_world()
        if opts["batch_size"] % world:
            raise IQTError(f"a batch of {opts['batch_size']} patches does not split over {world} processes; give a number "
                           f"of processes that divides it")
        if rank:
            log, progress = None, False
        self.log, self.progress = log, progress
        from .inference import resolve_device

        self.device = device = resolve_device(device)
        if world > 1 and device.type != "cpu":
            raise IQTError(f"--device {device.type}: training over several processes runs on the CPU (gloo); use --device cpu "
                           "or one process")
        if threads:
            torch.set_num_threads(int(threads))
        from ...core.threads import thread_record

        self.threads_used = thread_record(torch=True)
        base = self._build_network(init)
        self._prepare_data(base)
        self._place_network()
        with checkpoint_read(self.checkpoint):
            self.ck = self._open_checkpoint()
        self.decay = float(opts["ema"])
        if not 0.0 <= self.decay < 1.0:
            raise IQTError(f"weight averaging decay {self.decay:g}: give a number in [0, 1), e.g. 0.999, or 0 for none")

    # ------------------------------------------------ set-up

    def _build_network(self, init):
        """Seed torch and the augmentation stream, build the network, warm-start it from `init`; returns that model or None."""
        from . import networks

        torch, method, factor, seed = self.torch, self.method, self.factor, self.seed
        _seed(torch, self.device, seed)
        self.rng = np.random.default_rng(seed if self.world == 1 else [seed, self.rank])
        self.arch = {"name": method, "factor": grid.record(factor), "widths": list(networks.default_widths(method))}
        self.f_train = grid.factors(factor)
        self.net = net = networks.build(self.arch)
        self.hetero = networks.is_hetero(net)
        if any(it.halo != net.halo for it in self.items):
            raise IQTError(f"the training items are padded for a halo of {self.items[0].halo} low-res voxels, {method!r} needs "
                           f"{net.halo}; prepare them with halo={net.halo}")
        self.init_info, base = None, None
        if init is not None:
            base = warm_start(init, method, factor, net)
            self.opts["subject_scale"] = bool(base.meta["normalisation"].get("subject_scale"))  # the base's units
            self.init_info = {"model": str(base.path.name), "method": base.method, "sha256": base.meta.get("sha256"),
                              "minutes": base.meta.get("training", {}).get("minutes"),
                              "command": base.meta.get("training", {}).get("command"),
                              # the base's own record: every model and command of a chain of warm starts (its init's
                              # SHA256 had been dropped: a provenance audit)
                              "init": base.meta.get("training", {}).get("init")}
        return base

    def _prepare_data(self, base):
        """Put the items in their subject unit, fit the normalisation (or take `base`'s), make the sampler and validation set."""
        from . import networks

        items, opts = self.items, self.opts
        scale_kind = "md-mode"
        if base is not None and base.meta["normalisation"].get("subject_scale"):
            scale_kind = base.meta["normalisation"]["subject_scale"]  # the base's units
            for it in items:
                if it.unit_kind != scale_kind:
                    inner = it.inner()
                    it.unit, it.unit_kind = subject_scale(inner, it.lr_mask, scale_kind), scale_kind
        if opts["subject_scale"]:
            for it in items:  # in place: the items are this training's own
                it.lr_pad /= np.float32(it.unit)
                it.res /= np.float32(it.unit)
                it.ref_std_unit = float(it.unit)
        if base is not None:
            norm = base.meta["normalisation"]
        else:
            norm = fit_normalisation(items, opts["out_norm"])
            if opts["subject_scale"]:
                norm["subject_scale"] = scale_kind
                norm["units"] = "mode of the low-res MD" if scale_kind == "md-mode" else "median low-res brain MD"
        self.norm = norm
        if opts["reference_noise"] and not self.hetero:
            raise IQTError(f"reference noise enters the heteroscedastic loss only; {self.method!r} has none (use espcn-hetero or -var1)")
        if bool(opts["reference_noise"]) != all(it.ref_std is not None for it in items):
            raise IQTError("prepare the training items with reference_noise as the training asks (load_items)")
        self.variational = networks.is_variational(self.net)
        n_targets = sum(float(it.weight.sum()) for it in items) * 6
        self.kl_weight = (1.0 / max(n_targets, 1.0)) if opts["kl_weight"] is None else float(opts["kl_weight"])
        seed = self.seed
        self.sampler = Sampler(items, norm, self.factor, opts["patch"], seed if self.world == 1 else [seed, self.rank],
                               opts["scale_aug"])
        self.val_set = self.sampler.validation(opts["val_patches"], seed, opts["val_total"])

    def _place_network(self):
        """Move the network to its device; over several processes, wrap it in DistributedDataParallel (`self.model`)."""
        self.net.to(self.device)
        self.model = self.net
        if self.world > 1:  # the same initial weights everywhere (DDP broadcasts rank 0's), then each rank its own dropout draws
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.net)
            _seed(self.torch, self.device, self.seed * 1000 + self.rank)

    def _open_checkpoint(self):
        """The checkpoint to resume (None if there is none), checked against this training, its weights and streams restored."""
        from pathlib import Path

        opts, checkpoint = self.opts, self.checkpoint
        # what a checkpoint must have been trained on to be resumed here: the subjects and every option (else one
        # resumed with other --subjects goes on training on them and its sidecar names only the new ones)
        training = {"subjects": list(self.subject_names),
                    "options": {k: v for k, v in sorted(opts.items()) if isinstance(v, (bool, int, float, str, type(None)))}}
        if self.data:
            training["data"] = self.data
        # the warm start too: a checkpoint resumed with another --init went on as it was, its sidecar naming that
        # model, whose recorded command then trained another network (a researcher's audit)
        training["init"] = None if self.init_info is None else self.init_info.get("sha256") or self.init_info["model"]
        self.training = training
        if checkpoint is None or not Path(checkpoint).exists():
            return None
        ck = load_checkpoint(checkpoint, self.method, self.factor, self.seed)
        if bool(ck.get("subject_scale", True)) != bool(opts["subject_scale"]):  # weights learnt in another input unit
            unit = "md-mode" if ck.get("subject_scale", True) else "fixed"
            raise IQTError(f"{checkpoint}: a checkpoint trained with --input-unit {unit}; resume it with that unit, or "
                           "give another --checkpoint path")
        # a checkpoint of an earlier version holds no data or init record: its subjects are then told by name only
        same = {k: v for k, v in training.items() if k not in ("data", "init") or k in ck.get("training", {})}
        legacy = {**same, "subjects": sorted(set(self.subject_names)),
                  **({"data": self.legacy_data} if "data" in same else {})}
        unambiguous = len(set(self.subject_names)) == len(self.subject_names)
        if "training" in ck and ck["training"] != same and not (unambiguous and ck["training"] == legacy):
            was, now = ck["training"], same
            what = [f"subjects {', '.join(map(str, was['subjects']))} (in that order)"] \
                if was["subjects"] != now["subjects"] else []
            pairs = [list(x) for x in (was.get("data", {}).items() if isinstance(was.get("data"), dict)
                                       else was.get("data") or [])]
            what += [f"other files for subject {n}" for (n, v), (m, w) in zip(now.get("data") or [], pairs)
                     if n == m and v != w]
            what += [f"{k} {was['options'].get(k)!r}" for k in sorted(set(was["options"]) | set(now["options"]))
                     if was["options"].get(k) != now["options"].get(k)]
            if was.get("init") != now.get("init", was.get("init")):
                what += [f"--init {'a model of SHA256 ' + was['init'][:12] if was.get('init') else 'none'}"]
            raise IQTError(f"{checkpoint}: a checkpoint of another training ({'; '.join(what)}); resume it with the same "
                           "--subjects and options, or give another --checkpoint path")
        self.net.load_state_dict(ck["net"])
        if len(ck["rng"]) == self.world:  # every process's streams as they were; another process count draws afresh
            st = ck["rng"][self.rank]
            self.rng.bit_generator.state, self.sampler.rng.bit_generator.state = st["augment"], st["sampler"]
            self.torch.set_rng_state(st["torch"])
        return ck

    # ------------------------------------------------ progress: phases, resuming, checkpoints

    def start(self):
        """The phases and the epochs --epochs gives each, the clock and progress bar; a checkpoint's progress taken over."""
        opts = self.opts
        hetero_mse = opts["hetero_mse_fraction"]
        self.phases = [("hetero-warmup-mse", hetero_mse), ("hetero", 1 - hetero_mse)] if self.hetero else [("mse", 1.0)]
        self.history = []
        self.t_start = time.perf_counter()
        from ...core.progress import progress_bar

        self.bar = progress_bar(total=self.epochs, desc=f"train {self.method}", enabled=self.progress)
        self.epoch = 0
        self.stopped = "epochs"
        self.start_phase = 0
        self.given = [max(1, int(round(self.epochs * frac))) for _, frac in self.phases]  # the epochs --epochs gives each phase
        self.limits = list(self.given)  # the most epochs each phase has in this run (a resumed one keeps what its phases ran)
        self.ended = []  # [epochs run, stop] of each phase that has ended: 0 by its epochs, 1 early stopping, 2 time budget
        if self.ck is not None:
            with checkpoint_read(self.checkpoint):
                self._resume(self.ck)

    def _resume(self, ck):
        """Take over a checkpoint's history, epoch and ended phases, and decide which phase goes on to how many epochs."""
        phases, given, limits = self.phases, self.given, self.limits
        self.history, self.epoch, self.stopped = list(ck["history"]), int(ck["epoch"]), ck["stopped"]
        self.t_start -= float(ck["elapsed"])
        # a phase finished by its epochs goes on where --epochs now gives it more (a finished --epochs 1 run
        # resumed with --epochs 2 trains one more epoch); one that stopped early or at its time budget is over
        last = int(ck["phase_index"])
        done = int(ck["phase_epochs_done"])
        ran_out = ck.get("phase_stop", 0 if ck["stopped"] == "epochs" else 1) == 0
        more = bool(ck["phase_finished"]) and ran_out and done < given[last]
        finished = bool(ck["phase_finished"]) and not more
        self.start_phase = start_phase = last + finished
        ran = [sum(1 for h in self.history if h["phase"] == name) for name, _ in phases]
        self.ended = ended = [list(e) for e in ck.get("phases_ended", [[ran[i], 0] for i in range(last)])]
        if finished:
            if not math.isfinite(float(ck["best"])):  # a diverged run's checkpoint: resumed, it gave the untrained weights
                raise _diverged(phases[last][0], self.history, self.opts["lr"], " in this checkpoint")
            self.net.load_state_dict(ck["best_state"])
            ended.append([done, int(ck.get("phase_stop", 0))])
        for i in range(min(start_phase, len(phases))):  # the phases that have ended stay as they ran
            limits[i] = ran[i]
        if start_phase < len(phases):
            limits[start_phase] = max(given[start_phase], done if start_phase == last else 0)
        self.bar.update(self.epoch)
        if self.log:
            self.log(f"resuming from {self.checkpoint} after epoch {self.epoch}" + _resume_plan(
                phases, given, limits, ended, last, done, start_phase, self.epochs, more))
        # what makes the weights differ from a run never interrupted: in the log, or without one (no -v) as a warning
        # line in one process (--nproc's spawned ones print no engine warning as one line) where an epoch is left to
        # train (one that trains none writes the checkpoint's weights as they are); it had been said in -v only
        say = self.log or (_warn if self.world == 1 and start_phase < len(phases) else None)
        if say:
            before = int(ck.get("processes", 1))
            if before != self.world:
                say(f"the checkpoint was written by {before} process{'es' if before > 1 else ''} and this run has "
                    f"{self.world}: the random streams start afresh, so the weights differ from those of a run "
                    f"that went on with {before} (the model's record names both counts)")
            threads, now = ck.get("threads"), self.threads_used.get("torch")
            if threads is not None and threads != now and self.device.type == "cpu":
                # a CPU training's sums depend on its thread count: resumed on another, its record had named only the
                # new count, whose command then gave other weights (a cohort audit)
                say(f"the checkpoint was trained on {threads} CPU thread{'s' if threads > 1 else ''} and this run "
                    f"has {now}: the weights differ from those of a run that went on with {threads} (the model's "
                    f"record names both counts; give --threads {threads} to go on as it ran)")
        if self.log and start_phase >= len(phases):
            self.log(f"the checkpoint's run had already ended ({ck['stopped']}, after epoch {self.epoch}): no epoch to "
                     "train; its model is written as it was" + (f" (a larger --epochs than {self.epoch} continues a "
                                                               "run stopped by its epochs)" if ran_out else ""))

    def _save_checkpoint(self, pi, done, finished, opt, sched, best, best_state, since, ema_state, stop=0):
        """Write the whole training state (every process's random streams gathered) to `checkpoint`, on rank 0, atomically."""
        from .distributed import gather

        torch = self.torch
        states = gather({"augment": self.rng.bit_generator.state, "sampler": self.sampler.rng.bit_generator.state,
                         "torch": torch.get_rng_state()})
        if self.rank == 0:
            from ...fileio import atomic_write

            state = {"format": CHECKPOINT_FORMAT, "method": self.method, "factor": grid.record(self.factor),
                     "seed": int(self.seed), "subject_scale": bool(self.opts["subject_scale"]), "processes": self.world,
                     "threads": self.threads_used.get("torch"), "phase_index": pi, "phase_epochs_done": done, "phase_finished": finished, "phase_stop": int(stop),
                     "phases_ended": self.ended, "epoch": self.epoch, "stopped": self.stopped,
                     "elapsed": time.perf_counter() - self.t_start, "history": self.history, "net": self.net.state_dict(),
                     "opt": opt.state_dict(), "sched": sched.state_dict(), "best": best, "best_state": best_state,
                     "since": since, "rng": states, "ema_state": ema_state, "training": self.training}
            atomic_write(self.checkpoint, lambda tmp: save_torch(state, tmp))

    # ------------------------------------------------ the loop

    def train_phase(self, pi):
        """One phase's epochs (its optimiser and early stopping resumed where it is the checkpoint's), then its best weights kept."""
        from .distributed import agree

        opts, net, ck, log = self.opts, self.net, self.ck, self.log
        phase, frac = self.phases[pi]
        phase_epochs = self.given[pi]
        phase_deadline = None if self.minutes is None else self.t_start + 60 * self.minutes * (
            frac if phase != "hetero" else 1.0)
        if phase == "hetero-warmup-mse":
            params, loss_kind = list(net.mean.parameters()), "mse"
        else:
            params, loss_kind = list(net.parameters()), phase
        opt, sched = self._make_opt(params, opts["lr"] if phase != "hetero" else opts["lr"] * 0.3)
        best, best_state, since = math.inf, copy.deepcopy(net.state_dict()), 0
        ema_state = copy.deepcopy(net.state_dict()) if self.decay else None
        k0 = 0
        # the checkpoint's optimiser only for its own phase: one saved as the warm-up ended holds the mean network's
        # (a training audit: such a run was never resumed, "a damaged or foreign training checkpoint")
        if ck is not None and pi == self.start_phase == int(ck["phase_index"]):
            with checkpoint_read(self.checkpoint):
                opt.load_state_dict(ck["opt"])
                sched.load_state_dict(ck["sched"])
                best, best_state, since, k0 = ck["best"], ck["best_state"], int(ck["since"]), int(ck["phase_epochs_done"])
                if self.decay:
                    ema_state = ck["ema_state"]
        net.train()
        stop = 0
        for k in range(k0, phase_epochs):
            t0 = time.perf_counter()
            total = self._train_epoch(opt, loss_kind, ema_state)
            kind = "hetero" if loss_kind == "hetero" else "mse"
            val = agree(self._averaged(ema_state, lambda: self._evaluate(kind)))  # rank 0's, so that every rank decides alike
            sched.step(val)
            self.epoch += 1
            self.history.append({"epoch": self.epoch, "phase": phase, "train_loss": total / opts["iters_per_epoch"],
                                 "val_loss": val, "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0})
            if val < best - 1e-6:
                best, best_state, since = val, copy.deepcopy(net.state_dict() if ema_state is None else ema_state), 0
            else:
                since += 1
            last = self.history[-1]
            self.bar.update(1)
            self.bar.set_postfix(train=f"{last['train_loss']:.4f}", val=f"{val:.4f}")
            if log:
                log(f"epoch {self.epoch} [{phase}] train {last['train_loss']:.5f} val {val:.5f} "
                    f"lr {last['lr']:.2g} ({last['seconds']:.1f} s, {(time.perf_counter() - self.t_start) / 60:.1f} min)")
            stop = agree(1 if since >= opts["patience"] else
                         2 if phase_deadline is not None and time.perf_counter() > phase_deadline else 0)
            self.stopped = {1: "early stopping", 2: "time budget"}.get(stop, self.stopped)
            if self.checkpoint is not None:
                self._save_checkpoint(pi, k + 1, bool(stop) or k + 1 == phase_epochs, opt, sched, best, best_state,
                                      since, ema_state, stop)
            if stop:
                break
        self.ended = self.ended + [[sum(1 for h in self.history if h["phase"] == phase),
                                    int(stop) if k0 < phase_epochs else 0]]
        if k0 < phase_epochs and not math.isfinite(best):  # else the untrained weights were written as the model
            raise _diverged(phase, self.history, opts["lr"], checkpoint=self.checkpoint is not None)
        net.load_state_dict(best_state)

    def _train_epoch(self, opt, loss_kind, ema_state) -> float:
        """`iters_per_epoch` optimiser steps on augmented batches (the averaged weights updated after each); the summed loss."""
        opts, torch, device, decay = self.opts, self.torch, self.device, self.decay
        total = 0.0
        for _ in range(opts["iters_per_epoch"]):
            x, y, w, *ref = self._augment(self.sampler.batch(opts["batch_size"] // self.world))
            x, y, w, ref = x.to(device), y.to(device), w.to(device), [a.to(device) for a in ref]
            loss = self._loss(self.model(x), y, w, ref, loss_kind)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema_state is not None:
                with torch.no_grad():
                    for key, value in self.net.state_dict().items():
                        if value.is_floating_point():
                            ema_state[key].mul_(decay).add_(value, alpha=1.0 - decay)
            total += loss.item()
        return total

    def _augment(self, batch):
        """One random signed axis permutation of a batch, from the `augment` option's set, keeping each axis's factor."""
        opts = self.opts
        if opts["augment"] == "none":
            return batch
        cands = SIGNED_PERMUTATIONS if opts["augment"] == "all" else [s for s in SIGNED_PERMUTATIONS if s[0] == (0, 1, 2)]
        # per-axis factors: only the permutations that keep each axis's factor (all of them for r)
        cands = [s for s in cands if all(self.f_train[q] == self.f_train[k] for k, q in enumerate(s[0]))]
        perm, signs, p = cands[self.rng.integers(len(cands))]
        return augment_batch(batch, perm, signs, p, magnitudes=len(batch) - 3)

    def _loss(self, out, y, w, ref, loss_kind):
        """The batch loss: MSE, or the heteroscedastic NLL, plus the KL term of variational dropout."""
        if not self.hetero:
            return mse_loss(out, y, w)
        mu, lv = out
        loss = (mse_loss(mu, y, w) if loss_kind == "mse" else hetero_loss(mu, lv, y, w, *ref)) + self._kl_term()
        if self.world > 1 and loss_kind == "mse":
            loss = loss + 0.0 * lv.sum()  # DDP reduces a gradient for every parameter, the variance net's too
        return loss

    def _kl_term(self):
        """The variational dropout's KL divergence, weighted (0 for other networks)."""
        return self.kl_weight * self.net.mean.kl() if self.variational else 0.0

    def _make_opt(self, params, lr):
        """A phase's Adam optimiser and its plateau learning-rate schedule."""
        o = self.torch.optim.Adam(params, lr=lr)
        return o, self.torch.optim.lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=max(2, self.opts["patience"] // 3))

    def _evaluate(self, phase):
        """The validation loss of `phase`'s kind, in eval mode (no dropout noise: the mean network's expectation)."""
        net, torch = self.net, self.torch
        net.eval()
        with torch.no_grad():
            losses = []
            for xb, yb, wb, *refb in self.val_set.chunks(16, self.device):
                out = net(xb)
                if self.hetero:
                    mu, lv = out
                    losses.append(float(hetero_loss(mu, lv, yb, wb, *refb) if phase == "hetero" else mse_loss(mu, yb, wb)) * len(xb))
                    # validation is in eval mode: the dropout noise is off, the mean network's expectation
                else:
                    losses.append(float(mse_loss(out, yb, wb)) * len(xb))
        net.train()
        return sum(losses) / len(self.val_set)

    def _averaged(self, ema_state, run):
        """`run()` with the averaged weights in the network (the live ones put back after); without averaging, as is."""
        if ema_state is None:
            return run()
        net = self.net
        live = copy.deepcopy(net.state_dict())
        net.load_state_dict(ema_state)
        try:
            return run()
        finally:
            net.load_state_dict(live)

    # ------------------------------------------------ the result

    def result(self) -> tuple:
        """(the network on the CPU in eval mode, a plain copy of a DDP one; its sidecar metadata; the history)."""
        if self.world > 1:  # hand back a plain copy: DDP's hooks on the parameters hold the process group
            import gc

            from . import networks

            plain = networks.build(self.arch)
            plain.load_state_dict(self.net.state_dict())
            del self.model
            self.net = plain
            gc.collect()
        net = self.net
        net.to("cpu")
        net.eval()
        return net, self._sidecar(), self.history

    def _sidecar(self) -> dict:
        """The trained model's sidecar metadata: architecture, normalisation and the record of this training."""
        net, opts, items, history, phases = self.net, self.opts, self.items, self.history, self.phases
        variational = self.variational
        return {
            "method": self.method,
            "factor": grid.record(self.factor),
            "arch": self.arch,
            "patch": {"input_lr": opts["patch"] + 2 * net.halo, "output_lr": opts["patch"],
                      "receptive_field_lr": 2 * net.halo + 1, "halo_lr": net.halo},
            "normalisation": self.norm,
            "training": {
                "subjects": list(self.subject_names),
                "shifts": len({it.shift for it in items}),
                "volumes": len(items),
                "input_styles": {k: sum(1 for it in items if (it.variant or {}).get("style", "own") == k)
                                 for k in sorted({(it.variant or {}).get("style", "own") for it in items})},
                "seed": self.seed, "epochs_run": self.epoch, "epochs_max": sum(self.limits), "epochs_given": self.epochs,
                "epochs_per_phase": {name: sum(1 for h in history if h["phase"] == name) for name, _ in phases},
                "minutes_budget": self.minutes, "stopped_by": self.stopped,
                "best_val_loss": min(h["val_loss"] for h in history if h["phase"] == phases[-1][0]),
                "minutes": (time.perf_counter() - self.t_start) / 60,
                "options": {k: opts[k] for k in DEFAULTS},
                "init": self.init_info,
                "processes": self.world,
                "threads": self.threads_used,  # this process's (each process of a group takes as many)
                "device": self.device.type,
                "resumed_after_epoch": None if self.ck is None else int(self.ck["epoch"]),
                "processes_before_resume": None if self.ck is None else int(self.ck.get("processes", 1)),
                "threads_before_resume": None if self.ck is None else self.ck.get("threads"),  # torch's, where recorded
                "kl_weight": self.kl_weight if variational else None,
                "log_alpha": ({name: [round(float(v), 4) for v in d.log_alpha.detach()] for name, d in
                               (("drop1", net.mean.drop1), ("drop2", net.mean.drop2))} if variational else None),
                "orientation": "canonical RAS axes (Method.predict reorients)",
                "targets": "plausible voxels in the brain mask, eigenvalues clipped to [0, 4e-3]",
            },
            "version": SIDECAR_VERSION,
            "engine_version": engine_version,
            "engine_build": engine_build(),
        }
