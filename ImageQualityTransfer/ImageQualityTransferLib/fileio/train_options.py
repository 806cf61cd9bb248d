"""The options of 'iqt train', defined once: apps/cli/train.py gives them to its subparser, and a model's sidecar is
read against its own recorded training command with them (model_files.trained_options), so that an option is read
there as train read it (a prefix such as --fa for --factor, --factor=..., the last of two, the defaults)."""

from __future__ import annotations

import argparse

INPUT_UNITS = ("fixed", "md-mode")  # methods/forest/__init__.py: what each means
MAX_SEED = 2**32 - 1  # numpy's and torch's generators take any seed up to here


def seed_number(text: str) -> int:
    """An argparse type: a random seed, 0 to MAX_SEED (-1 had ended propagate and train in an internal error, a seed of
    20 digits train in torch's overflow: a fresh-eyes audit)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text}: give a seed from 0 to {MAX_SEED}")
    return value


def add_arguments(sp) -> None:
    """Every option of 'iqt train' onto the parser `sp`."""
    sp.add_argument("--method", default="espcn", help="a learned method (see 'iqt methods'; default espcn)")
    sp.add_argument("--subjects", nargs="+", required=True, help="folders holding dwi.nii.gz (or dwi.nii), dwi.bval, dwi.bvec")
    sp.add_argument("--factor", default="2",
                    help="upsampling factor the model is for: 2, 3, or per axis on the subjects' canonical RAS axes, "
                         "e.g. 1,1,3 for thick axial slices (default 2); a per-axis model also serves its factors "
                         "along any other axis (the axes are permuted at prediction)")
    sp.add_argument("-o", "--output", required=True, help="model weights file (.pt for CNNs, .npz for rf/biqt/global-linear); the .json sidecar is written beside it")
    sp.add_argument("--seed", type=seed_number, default=0, help="random seed (with --epochs the run is deterministic for the same number of CPU threads, which the "
                         "model's recorded command gives)")
    sp.add_argument("--epochs", type=int, help="CNN: maximum epochs of 200 batches (default 200, or unlimited with --minutes); "
                                               "the -hetero and -var1 methods train in two phases (the mean alone, then "
                                               "with the uncertainty) that share them, 40 %% and 60 %%, each at least "
                                               "one (8: 3+5; 1 or 2: 1+1)")
    sp.add_argument("--minutes", type=float, help="CNN: wall-time budget for the training loop")
    sp.add_argument("--threads", type=int, dest="train_threads",
                    help="CPU threads (as 'iqt --threads N train ...'; default: the libraries' choice); under --nproc, "
                         "each process's (default there: the CPUs this process may run on, shared out)")
    sp.add_argument("--register", action="store_true", help="add the model to registry.json in its folder")
    sp.add_argument("--init", help="CNN: warm-start from this trained model (e.g. an espcn-hetero .pt for espcn-hetero-var1; "
                    "a plain espcn or deep model starts the mean network of a heteroscedastic one)")
    sp.add_argument("--nproc", type=int, default=1,
                    help="CNN: data-parallel training over N processes on this machine (PyTorch DDP, gloo; the batch "
                         "is split between them, so it must divide by N); under torchrun, the group torchrun starts")
    sp.add_argument("--checkpoint", help="CNN: save the training state here after every epoch; if the file exists, "
                                         "continue from it (run the same command again after an interruption)")
    sp.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu",
                    help="CNN: where the network trains (default cpu; auto: CUDA when PyTorch has it; one process only)")
    sp.add_argument("--subset-fraction", type=float,
                    help="share of the training inputs made from a random subset of the directions (down to 6 + b0; "
                         "default 0: docs/conventions.md, Training data)")
    sp.add_argument("--noise-fraction", type=float,
                    help="share of the training inputs with Rician noise added at SNR 8-40 (default 0), for a model "
                         "meant for noisier scans than the training subjects")
    sp.add_argument("--reference-noise", action="store_true",
                    help="espcn-hetero, -var1: count the training references' own fit noise (from their DWIs) in the "
                         "loss, so that the predicted std is the output's error against the truth, not against a noisy "
                         "reference (docs/measurements.md, Uncertainty: what it changed there)")
    sp.add_argument("--flips", action="store_true",
                    help="rf/biqt/global-linear: turn each training example by a random axis flip or equal-factor swap, "
                         "as the CNNs' batches always are (docs/accuracy.md, Averaging over flips)")
    sp.add_argument("--coarsen", metavar="MM[,MM...]",
                    help="also train on a copy of each subject resampled to these voxel sizes in mm (e.g. 3), so the "
                         "model has seen scans coarser than the training subjects; a subject already that coarse gets "
                         "no copy (docs/conventions.md, Coarser copies)")
    for flag, what in (("--n-trees", "trees (default 8)"), ("--max-depth", "largest depth of a tree (default 6)"),
                       ("--min-leaf", "fewest training examples in a leaf (default 800)"),
                       ("--n-train", "training examples drawn for each tree (default 80000)")):
        sp.add_argument(flag, type=int, metavar="N", help=f"rf/biqt: {what}")
    sp.add_argument("--refit-leaves", action="store_true",
                    help="rf/biqt: once a tree has grown on its --n-train examples, fit each leaf's map again on every "
                         "training example of the subjects the tree trained on (docs/measurements.md, Shipped models)")
    sp.add_argument("--leaf-ridge", type=float, metavar="LAMBDA",
                    help="rf: ridge of each leaf's least-squares map, per example (default: the split search's, 0.2); "
                         "smaller suits leaves refitted on all the data (--refit-leaves)")
    sp.add_argument("--input-unit", choices=INPUT_UNITS,
                    help="the unit each input is seen in: fixed (forests: 1e-3 mm^2/s, their default; CNNs: no per-input "
                         "scale, mm^2/s through the normalisation) or md-mode (the "
                         "input's MD mode brought to 0.7e-3 mm^2/s, the CNNs' default, so that b-value and scanner "
                         "differences in diffusivity drop out)")
    sp.add_argument("--lr", type=float,
                    help="CNN: initial learning rate of Adam (default 1e-3; lower, e.g. 2e-4, to fine-tune an --init model)")
    sp.add_argument("--ema", type=float, metavar="DECAY",
                    help="CNN: validate, keep and ship a moving average of the weights (decay per batch, e.g. 0.999; "
                         "default off)")
    sp.add_argument("-v", "--verbose", action="store_true", help="log data preparation and every epoch")
