"""Training of `global-linear`, `rf` and `biqt` from high-quality subject folders.

Library (`patches.build_library`) -> Gaussian completion statistics from the complete patches -> missing
voxels completed (-> the cubic values of the block appended, with inputs "patch+cubic") -> global-linear
least squares on every example (the whole `global-linear` model, and the base of the forests) -> for
`rf` / `biqt`: 8 trees grown on the residual over the global-linear map, each on its own subsample,
validated on a subject it was not trained on (`Forest.fit` with groups) -> uncertainty calibration on a
training subsample (`Forest.calibrate`: biqt's input-dependent noise scale, then the variance scale of either).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ...core.version import __version__ as engine_version
from ...fileio.model_files import build as engine_build
from ...core.errors import IQTError
from ...core import grid
from ...core.grid import repeat_blocks
from ...core.threads import small_solves
from ...core.threads import thread_record
from ..context import raise_where_filled
from . import block_sigma, features, linear, patches
from .completion import GaussianCompletion
from .forest import Forest
from . import INPUT_UNITS
from .model_io import INPUTS, METHODS, ForestModel, check_outputs

# The forests train without the context fill, so their std does not know that a filled voxel's input was made up: on
# the training subjects' tight x2 inputs the error over the std was 1.88-2.02 (biqt) and 2.14-2.39 (rf) times as
# high where the input was filled as at the rest of the brain's edge (docs/measurements.md, "Context beyond a tight
# mask"); the std there is raised by the median of those.
FILLED_STD_SCALE = {"biqt": 1.9, "rf": 2.3}
# The kinds whose std is spread over each block's voxels by the predicted tensor (block_sigma.py; docs/measurements.md,
# "Uncertainty"): the block's variance is kept, so the models' calibration stands. Only where the block spans all three
# axes: at x1,1,2 the same weights moved the dev subjects' Spearman both ways.
SPREAD_IN_BLOCKS = {"biqt"}


def spreads_in_blocks(kind: str, factor) -> bool:
    """Whether `predict_volume` (and the calibration in `train`) spread this kind's std within its blocks."""
    return kind in SPREAD_IN_BLOCKS and min(grid.factors(factor, identity_ok=True)) > 1

DEFAULTS = dict(inputs="patch", n=1, rate=1.0, n_trees=8, n_train=80_000, n_val=20_000, max_depth=6, min_leaf=800,
                bins=16, ridge=0.2, gl_ridge=1e-4, n_calibration=150_000, randomise=True,
                subset_fraction=0.0, noise_fraction=0.0, flips=False, refit_leaves=False, leaf_ridge=None,
                input_unit="fixed")
# n_train, refit_leaves, leaf_ridge: the shipped biqt refits its leaves at x2 (with 300,000 examples a tree), x3 and
# x1,1,2, not at x1,1,3; the shipped rf refits them at every factor with a leaf ridge of 2e-4 (the split search's 0.2
# held refitted leaves near the subsample's fit). docs/measurements.md, Shipped models; the commands say so.
# gl_ridge: 1e-2 (per example) beat 1e-4 for the global-linear base on each of the three leave-one-subject-out
# folds of the training subjects (held-out interior 0.955-0.960x cubic against 0.962-0.973x), but an rf
# trained on it gained under 1 % DT-RMSE on the dev subjects, lost on one, and its FA error rose by 8-10 %:
# not adopted.
# Split features: adding the log local heterogeneity of the completed patch (26 and 6 neighbours) and the log
# variance of its central 3^3 to the 15 invariant features left the rf at 0.965/0.959/0.927/0.941x cubic in the
# interior of the dev subjects (0.963/0.960/0.927/0.941x without); not adopted.
# inputs: "patch+cubic" (the r^3 x 6 cubic B-spline values of the block appended to the regressors, which carry
# the wide support of the cubic prefilter) gave no gain: interior DT-RMSE x cubic on the four dev subjects
# (3mm ortho / 3mm yaw / sag AP / sag HF) global-linear 0.974/0.966/0.941/0.951 against 0.972/0.966/0.940/0.950
# with the patch alone, rf 0.962/0.958/0.928/0.942 against 0.963/0.960/0.927/0.941 (exterior within 0.003),
# for a 2.3 MB rf file and a split search on 211 regressors (14 min on the 2 shared, busy cores); not adopted.
# n=2 (5^3 low-res patches, 750 regressors): the Gaussian completion then meets about 4,500 distinct missing patterns
# on one dev subject's input (1,090 at n=1), one 750-dim solve each; with the missing voxels filled from the nearest
# fitted voxel instead (scratch), global-linear gave 0.965/0.958/0.928/0.933x cubic in the interior against
# 0.968/0.958/0.924/0.929 at n=1 (exterior higher on all four, peak RSS 11.6 GB against 3.8): not adopted.


@small_solves()  # many small solves: BLAS threads cost far more than they give (docs/measurements.md, Speed)
def train(method: str, subjects, factor=2, seed: int = 0, log=None, progress=None, library=None,
          **overrides) -> ForestModel:
    """A trained model. `subjects`: folders or dmri.subject.Subject objects; `library` reuses a built one."""
    if method not in METHODS:
        raise IQTError(f"--method {method}: forest-family methods are {', '.join(METHODS)}")
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    if cfg["leaf_ridge"] is not None and method != "rf":
        raise IQTError(f"--leaf-ridge {cfg['leaf_ridge']:g}: it sets rf's least-squares leaves; {method!r} has none to "
                       "set (drop it)")
    if cfg["input_unit"] not in INPUT_UNITS:
        raise IQTError(f"--input-unit {cfg['input_unit']}: choose one of {', '.join(INPUT_UNITS)}")
    inputs = 6 * (2 * cfg["n"] + 1) ** 3 + (6 * math.prod(grid.factors(factor)) if cfg["inputs"] == "patch+cubic" else 0)
    if method != "global-linear" and cfg["min_leaf"] is not None and cfg["min_leaf"] <= inputs:
        raise IQTError(f"--min-leaf {cfg['min_leaf']}: each leaf fits a linear map of {inputs} inputs, so it needs "
                       f"more examples than that (default {DEFAULTS['min_leaf']})")
    if method != "global-linear" and cfg["min_leaf"] and cfg["n_train"] < 2 * cfg["min_leaf"]:  # trees of one leaf,
        raise IQTError(f"--n-train {cfg['n_train']} with --min-leaf {cfg['min_leaf']}: no split leaves "  # said nowhere
                       f"{cfg['min_leaf']} examples on each side, so every tree is one leaf; give --n-train of at least "
                       f"{2 * cfg['min_leaf']} (default {DEFAULTS['n_train']}) or a smaller --min-leaf")
    subjects = list(subjects) if library is None else subjects  # read twice: the headers, then the data
    if library is None and not patches.room_for_a_complete_patch(subjects, factor, cfg["n"]):
        raise IQTError(no_complete_patch(factor))
    t0 = time.perf_counter()
    lib = library if library is not None else patches.build_library(subjects, factor, n=cfg["n"], rate=cfg["rate"],
                                                                    seed=seed, log=log,
                                                                    randomise=cfg["randomise"],
                                                                    subsets=cfg["subset_fraction"],
                                                                    noise=cfg["noise_fraction"],
                                                                    flips=bool(cfg["flips"]),
                                                                    unit=cfg["input_unit"])
    if len(lib) == 0:
        raise IQTError(f"no training example found at {grid.describe(factor)}: no brain voxel of the subjects' low-res "
                       "grids (empty brain masks, or grids too small for these factors); check the subject folders or "
                       "give smaller factors")
    t_lib = time.perf_counter() - t0
    lib_sha256 = lib.sha256()  # the recorded command's examples, comparable with a rerun's before it trains
    if log:
        log(f"library: {len(lib)} examples of {lib.X.shape[1]} inputs -> {lib.Y.shape[1]} outputs, sha256 "
            f"{lib_sha256[:12]} ({t_lib:.0f} s)")
    if cfg["inputs"] not in INPUTS:
        raise IQTError(f"inputs {cfg['inputs']!r}: choose one of {', '.join(INPUTS)}")
    if cfg["inputs"] == "patch+cubic" and lib.C is None:
        raise IQTError("inputs 'patch+cubic' needs a patch library with the cubic block values (rebuild it)")
    if (~np.asarray(lib.missing).any(axis=1)).sum() < 2:  # GaussianCompletion learns from the complete patches
        raise IQTError(no_complete_patch(factor))
    comp = GaussianCompletion().fit(lib.X, lib.missing)
    X = design(comp.complete(lib.X, lib.missing), lib.C, cfg["inputs"])
    gl = linear.GlobalLinear(cfg["gl_ridge"]).fit(X, lib.Y)
    forest = None
    if method in ("rf", "biqt"):
        R = lib.Y - gl.predict(X)
        forest = Forest(n_trees=cfg["n_trees"], n_train=cfg["n_train"], n_val=cfg["n_val"], max_depth=cfg["max_depth"],
                        min_leaf=cfg["min_leaf"], bins=cfg["bins"], ridge=cfg["ridge"], seed=seed,
                        bayesian=(method == "biqt"), refit_leaves=bool(cfg["refit_leaves"]),
                        leaf_ridge=cfg["leaf_ridge"])
        forest.patch_cols = lib.X.shape[1]
        forest.fit(X, lib.F, R, groups=lib.group, log=log, progress=progress)
        rng = np.random.default_rng(seed + 1)
        cal = np.sort(rng.permutation(len(X))[: min(cfg["n_calibration"], len(X))])
        kind = "biqt" if method == "biqt" else "rf"
        base = lib.C[cal] + gl.predict(X[cal]) if spreads_in_blocks(kind, factor) else None  # the prediction less the forest's
        forest.calibrate(X[cal], lib.F[cal], R[cal], kind, math.prod(grid.factors(factor)), base=base)
        if log:
            log(f"uncertainty calibration on {len(cal)} training examples: "
                + (f"noise scale v = {np.round(forest.noise.v, 3).tolist()}, " if method == "biqt" else "")
                + f"variance scale {forest.variance_scale:.3g}")
    meta = {
        "version": engine_version,
        "build": engine_build(),
        "features": features.feature_names(lib.n),
        "training": {"subjects": list(lib.subjects), "seed": int(seed), "examples": int(len(lib)),
                     "examples_sha256": lib_sha256,
                     "settings": {k: (float(v) if isinstance(v, float) else v) for k, v in cfg.items()},
                     "library_seconds": round(t_lib, 1), "seconds": round(time.perf_counter() - t0, 1),
                     "threads": thread_record()},
    }
    return ForestModel(method, grid.factors(factor), lib.n, comp, gl.W.astype(np.float32), forest, meta, inputs=cfg["inputs"],
                       input_unit=cfg["input_unit"])


def no_complete_patch(factor) -> str:
    """The line where no training patch is complete (GaussianCompletion learns from the complete ones)."""
    return (f"every training patch at {grid.describe(factor)} reaches beyond its subject's brain or grid (a slab of a "
            "few slices, or factors too large for the subjects): give subjects that cover the brain, or smaller factors")


def design(X: np.ndarray, C: np.ndarray | None, inputs: str) -> np.ndarray:
    """The regressors of the linear models: the completed patch, then (inputs "patch+cubic") the cubic
    B-spline values of the r^3 block the model predicts."""
    if inputs == "patch":
        return X
    return np.concatenate([X, np.asarray(C, np.float32)], axis=1)


@small_solves()
def predict_volume(model: ForestModel, lr: np.ndarray, mask: np.ndarray | None, with_variance: bool = False,
                   chunk: int = 20_000, progress=None):
    """Low-res canonical tensors (mm^2/s) -> high-res tensors (mm^2/s) and, for rf/biqt, the per-voxel std map.
    `progress(fraction)` is called after each chunk of patches (it may raise to stop the prediction)."""
    r, n = model.factor, model.n
    check_outputs(model)
    x, cubic, scale = patches.prepare_input(lr, r, model.input_unit, fill=True)
    cubic_blocks = patches.to_blocks(cubic, r) if model.inputs == "patch+cubic" else None
    present = np.any(x != 0, axis=-1)  # the filled context counts as present for the features
    given = np.any(np.asarray(lr) != 0, axis=-1)  # what the input itself holds
    base = mask if mask is not None else given
    sup = patches.support(np.asarray(base, bool))
    centres = np.argwhere(sup)
    feats = features.volume_features(x, n, present) if model.forest is not None else None
    m = model.gl_W.shape[1]
    res = np.zeros(sup.shape + (m,), np.float32)
    var = np.zeros(sup.shape + (m,), np.float32) if (with_variance and model.forest is not None) else None
    kind = "biqt" if model.method == "biqt" else "rf"
    for s in range(0, len(centres), chunk):
        c = centres[s : s + chunk]
        X, miss = patches.extract(x, c, n)
        X = design(model.completion.complete(X, miss), None if cubic_blocks is None else cubic_blocks[tuple(c.T)],
                   model.inputs)
        out = linear.predict(model.gl_W, X)
        if model.forest is not None:
            mu, v = model.forest.predict(X, feats[tuple(c.T)], kind)
            out += mu
            if var is not None:
                var[tuple(c.T)] = v
        res[tuple(c.T)] = out
        if progress is not None:
            progress((s + len(c)) / len(centres))
    hr = cubic + patches.from_blocks(res, r)
    hr_sup = repeat_blocks(sup, r)
    hr[~hr_sup] = 0.0
    hr /= np.float32(scale)
    unc = {}
    if var is not None:
        std = np.sqrt(patches.from_blocks(var, r).mean(-1)) / np.float32(scale)
        std[~hr_sup] = 0.0
        if spreads_in_blocks(kind, r):  # before the flags (methods/flags.py), which raise what they raise from it
            std = block_sigma.spread_volume(std, hr, sup, r)
        unc["std"] = std.astype(np.float32)
        raise_where_filled(unc, sup & ~given, r, FILLED_STD_SCALE[kind])
    return hr.astype(np.float32), unc
