"""Forest-family model files: arrays in a `.npz` read with `allow_pickle=False` (cannot execute code on
load) and a JSON sidecar beside it (format, method, factor, patch radius, features, normalisation, training
subjects and settings, version, weights file name and SHA256). The loader verifies the checksum before it
reads the arrays; a missing, truncated, corrupted or tampered file gives an IQTError, never a crash.
The registry (`Resources/Models/registry.json`) is shared with the CNN models (same entry format).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...fileio import model_files
from ...core import grid
from ...core.errors import IQTError
from ...core.i18n import _, option
from ...fileio.model_files import MODELS_DIR, REGISTRY, read_registry, sidecar_path, write_model  # noqa: F401 (re-exported)
from . import INPUT_UNITS, MD_REFERENCE, SCALE, tree
from .features import N_FEATURES
from .completion import GaussianCompletion
from .forest import Forest
from .bayes import NoiseScale

FORMAT = model_files.FOREST_FORMAT
FILES = model_files.Family(FORMAT, "forest", ".npz")
METHODS = ("global-linear", "rf", "biqt")
# What the linear models predict and from what (sidecar fields "target" and "inputs"). Every forest model so
# far predicts the residual of the reference over cubic B-spline interpolation; sidecars written before the
# fields existed are exactly that, with the patch alone as regressors, and load as such.
TARGETS = ("residual-over-cubic",)
INPUTS = ("patch", "patch+cubic")


@dataclass
class ForestModel:
    """Everything a forest-family method needs to predict (in the working domain of `forest`)."""

    method: str
    factor: tuple  # (fx, fy, fz) on canonical axes
    n: int
    completion: GaussianCompletion
    gl_W: np.ndarray  # (D+1, fx*fy*fz*6) global-linear map (the whole model for global-linear; the base for rf/biqt)
    forest: Forest | None = None
    meta: dict = field(default_factory=dict)
    inputs: str = "patch"  # regressors: the completed patch, or the patch then the cubic values of the block
    target: str = "residual-over-cubic"  # the block predicted: reference minus cubic B-spline interpolation
    input_unit: str = "fixed"  # the unit inputs are seen in: fixed (1e-3 mm^2/s) or md-mode (forest/__init__.py)


def _arrays(model: ForestModel, dtype) -> dict:
    a = {"gl_W": model.gl_W.astype(np.float32), "completion_mean": model.completion.mean.astype(np.float32),
         "completion_cov": model.completion.cov.astype(np.float32)}
    if model.forest is not None:
        bayes = model.method == "biqt"
        a["variance_scale"] = np.float32(model.forest.variance_scale)
        if model.forest.noise is not None and model.forest.noise.v is not None:
            a["noise_v"] = model.forest.noise.v.astype(np.float64)
            a["noise_k"] = np.float64(model.forest.noise.k)
        for k, t in enumerate(model.forest.trees):
            p = f"tree{k}_"
            a[p + "feature"] = t.feature.astype(np.int16)
            a[p + "threshold"] = t.threshold.astype(np.float32)
            a[p + "left"] = t.left.astype(np.int32)
            a[p + "right"] = t.right.astype(np.int32)
            a[p + "leaf"] = t.leaf.astype(np.int32)
            if bayes:
                a.update(_leaf_weights(p, t.bayes_W, dtype))
                a[p + "val_var"] = t.bayes_val_var.astype(np.float32)
                a[p + "beta"] = t.bayes_beta.astype(np.float32)
                a[p + "alpha"] = t.bayes_alpha.astype(np.float32)
                a[p + "root_q"], a[p + "root_scale"] = pack_root(t.bayes_root, exact=np.dtype(dtype) == np.float32)
            else:
                a.update(_leaf_weights(p, t.W, dtype))
                a[p + "val_var"] = t.val_var.astype(np.float32)
    return a


def _leaf_weights(p: str, W, dtype) -> dict:
    """Leaf models in `dtype` under key `p`W; int8: `p`W_q with one float32 scale per leaf and input row
    (`p`W_scale), see `pack_rows`. float16 falls back to float32 where a weight would not fit its range."""
    W = np.asarray(W)
    if np.dtype(dtype) == np.int8:
        q, scale = pack_rows(W)
        return {p + "W_q": q, p + "W_scale": scale}
    if np.dtype(dtype) == np.float16 and np.abs(W).max(initial=0.0) > 6e4:
        dtype = np.float32
    return {p + "W": W.astype(dtype)}


def _read_leaf_weights(a: dict, p: str) -> np.ndarray:
    """Inverse of `_leaf_weights` (any of its layouts) as float32."""
    if p + "W_q" in a:
        return unpack_rows(a[p + "W_q"], a[p + "W_scale"])
    return a[p + "W"].astype(np.float32)


# Leaf linear maps (L, d, m) in int8 with one scale per leaf and input row: rows differ by orders of magnitude
# (the patch's centre against its corners, the bias), so a per-row scale keeps each row's relative rounding
# under 1/254 of its largest weight; on the shipped x3 rf leaves the whole map moves by 0.8 % (Frobenius).
# The leaves predict the residual over the global-linear map, so the rounding is a fraction of a correction.


def pack_rows(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L, d, m) float -> (L, d, m) int8 and (L, d) float32 row scales."""
    W = np.asarray(W, np.float64)
    scale = np.abs(W).max(-1) / 127.0
    scale = np.where(scale > 0, scale, 1.0)
    q = np.clip(np.rint(W / scale[..., None]), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def unpack_rows(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Inverse of `pack_rows` (up to the rounding): (L, d, m) float32."""
    scale = np.asarray(scale, np.float32)
    if q.ndim != 3 or scale.shape != q.shape[:2]:
        raise ValueError(f"int8 leaf maps of shape {q.shape} do not match row scales of shape {scale.shape}")
    return q.astype(np.float32) * scale[..., None]


# BIQT leaves: the lower Cholesky factor R of each posterior covariance A^-1 (predictive parameter variance
# x^T A^-1 x = |x^T R|^2) is stored as its packed lower triangle in int8 with one float32 scale per row
# (d(d+1)/2 bytes + 4d per leaf instead of 4d^2). On the training patches the parameter term is about
# 0.3 % of the predictive variance (the noise 1/beta dominates); the quantisation changes the parameter term
# by about 1 % (under 15 % for the worst patch) and the total variance by under 0.5 %.


def pack_root(R: np.ndarray, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(L, d, d) lower-triangular factors -> (L, d(d+1)/2) int8 packed rows and (L, d) float32 row scales
    (`exact`: the packed rows in float32 and unit scales, for files saved at float32 precision)."""
    R = np.asarray(R, np.float64)
    d = R.shape[-1]
    il = np.tril_indices(d)
    if exact:
        return R[:, il[0], il[1]].astype(np.float32), np.ones(R.shape[:2], np.float32)
    scale = np.abs(R).max(-1) / 127.0
    scale = np.where(scale > 0, scale, 1.0)
    q = np.rint(R / scale[..., None])[:, il[0], il[1]]
    return np.clip(q, -127, 127).astype(np.int8), scale.astype(np.float32)


def unpack_root(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Inverse of `pack_root` (up to the quantisation): (L, d, d) float32 lower-triangular factors."""
    scale = np.asarray(scale, np.float32)
    L, d = scale.shape
    if q.shape != (L, d * (d + 1) // 2):
        raise ValueError(f"packed covariance factor of shape {q.shape} does not match {L} leaves of dimension {d}")
    R = np.zeros((L, d, d), np.float32)
    il = np.tril_indices(d)
    R[:, il[0], il[1]] = q.astype(np.float32)
    return R * scale[..., None]


def default_dtype(method: str):
    """Precision of the tree leaves' linear models: int8 with per-row scales (`pack_rows`) for rf and biqt,
    biqt's covariance factors int8 too, so that every forest file stays under 5 MB (x3: 3.3 and 4.4 MB against
    13.1 and 7.6 MB in float32 / float16). On the dev subjects (`iqt benchmark`, x2 and x3) the int8 files
    moved no ratio to cubic by more than 2e-4 and no whole-brain Spearman or coverage by more than 1e-3."""
    return np.int8


def save(model: ForestModel, path, dtype=None) -> Path:
    """Write `path` (.npz) and the sidecar beside it; returns the sidecar path. `dtype`: precision of the tree
    leaves' linear models (default `default_dtype`); the global-linear map, completion statistics and
    thresholds stay float32."""
    dtype = default_dtype(model.method) if dtype is None else dtype
    p = Path(path)
    if p.suffix != ".npz":
        raise IQTError(f"{p}: a forest model file name must end in .npz (the JSON sidecar is written beside it)")
    if not p.parent.exists():
        raise IQTError(f"{p}: the folder {p.parent} does not exist; create it or choose another output path")
    arrays = _arrays(model, dtype)

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: numpy would append .npz to the temporary name
            np.savez_compressed(f, **arrays)

    side = dict(model.meta)
    side.update({"format": FORMAT, "method": model.method, "factor": grid.record(model.factor), "patch_radius": int(model.n),
                 "target": model.target, "inputs": model.inputs, "input_unit": model.input_unit,
                 "n_trees": 0 if model.forest is None else len(model.forest.trees),
                 "n_leaves": 0 if model.forest is None else model.forest.n_leaves,
                 "domain": (f"tensors x {SCALE:g} (1e-3 mm^2/s)" if model.input_unit == "fixed" else
                            f"tensors x {SCALE:g} x {MD_REFERENCE:g} / the input's MD mode")
                           + ", canonical RAS axes; target = reference - cubic B-spline",
                 "precision": _precision(model, dtype)})
    return write_model(p, write, side)


def _precision(model: ForestModel, dtype) -> str:
    """The sidecar's description of how the leaves are stored (global-linear: its map, always float32)."""
    if model.forest is None:
        return "float32"
    dtype = np.dtype(dtype)
    text = dtype.name + (" (row scales)" if dtype == np.int8 else "")
    if model.method == "biqt" and dtype != np.float32:
        text += ", covariance factors int8 (packed triangle, row scales)"
    return text


def load(path) -> ForestModel:
    meta, weights, data = FILES.read_verified(path)  # loaded from the bytes it verified, not read again
    n = meta.get("patch_radius")
    if isinstance(n, bool) or not isinstance(n, int) or n not in N_FEATURES:  # before any array is shaped by it
        raise IQTError(f"{sidecar_path(path)}: patch_radius {n!r} is not one 'iqt train' writes ({', '.join(map(str, N_FEATURES))}"
                       "): the sidecar was edited or damaged; re-download or retrain the model")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        check_arrays(a, weights, meta.get("method"))
        method = meta["method"]
        target, inputs = _kind(meta, weights)
        unit = meta.get("input_unit", "fixed")  # sidecars from before the field: fixed
        if unit not in INPUT_UNITS:
            raise IQTError(f"{weights}: this forest model sees its inputs in unit {unit!r}, which this version of the "
                           f"engine does not know (it knows {', '.join(INPUT_UNITS)}); update the extension or use a model "
                           "trained by this version")
        comp = GaussianCompletion(a["completion_mean"], a["completion_cov"])
        forest = None
        if method in ("rf", "biqt"):
            forest = Forest(n_trees=int(meta["n_trees"]))
            for k in range(int(meta["n_trees"])):
                p = f"tree{k}_"
                W = _read_leaf_weights(a, p)
                t = tree.Tree(a[p + "feature"].astype(np.int64), a[p + "threshold"], a[p + "left"].astype(np.int64),
                              a[p + "right"].astype(np.int64), a[p + "leaf"].astype(np.int64), W, a[p + "val_var"])
                t.check(N_FEATURES[n])
                if method == "biqt":
                    t.bayes_W, t.bayes_val_var, t.bayes_beta = W, a[p + "val_var"], a[p + "beta"]
                    t.bayes_alpha = a[p + "alpha"]
                    if p + "root_q" in a:
                        t.bayes_root_ = unpack_root(a[p + "root_q"], a[p + "root_scale"])
                    else:  # files from before the packed format: full float32 factors
                        t.bayes_root_ = a[p + "root"].astype(np.float32)
                forest.trees.append(t)
            if "variance_scale" in a:  # absent in models from before the calibration (scale 1)
                forest.variance_scale = float(a["variance_scale"])
            if "noise_v" in a:
                forest.noise = NoiseScale(a["noise_v"], float(a["noise_k"]))
            forest.patch_cols = len(a["completion_mean"])
        model = ForestModel(method, grid.factors(meta["factor"]), int(meta["patch_radius"]), comp, a["gl_W"].astype(np.float32),
                            forest, meta, inputs=inputs, target=target, input_unit=unit)
        d = len(a["completion_mean"]) + (math.prod(model.factor) * 6 if inputs == "patch+cubic" else 0) + 1
        if model.gl_W.shape[0] != d:
            raise ValueError(f"the global-linear map has {model.gl_W.shape[0]} rows, inputs {inputs!r} give {d}")
    except IQTError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable model is a user-facing problem
        # numpy's text for an object array advises loading it unsafely: not repeated
        why = "it holds Python objects, which are never loaded" if "allow_pickle" in str(exc) else f"{type(exc).__name__}: {exc}"
        raise IQTError(f"{weights}: the model file does not hold a valid {meta.get('method')} model "
                       f"({why}); re-download or retrain it") from None
    if model.method not in METHODS:
        raise IQTError(f"{weights}: unknown forest method {model.method!r}")
    FILES.say_unsealed(meta, path)
    return model


INDEX_ARRAYS = ("feature", "left", "right", "leaf", "W_q")  # integers as `_arrays` writes them; root_q either


def check_arrays(a: dict, weights, method) -> None:
    """The arrays are of the kinds `_arrays` writes (real floating point; integers for the trees' indices and int8
    leaves), the leaves' validation variances and the variance scale are not negative and the leaves' noise precisions
    (biqt's beta) are positive (an IQTError naming the array), and says where the model's maps are all zero: complex
    or integer arrays had been cast without a word, a negative val_var given another sigma map, and all-zero maps
    cubic's result under the model's name (a provenance audit)."""
    for key, v in a.items():
        kinds = "iuf" if key.endswith("root_q") else "iu" if key.endswith(INDEX_ARRAYS) else "f"
        if v.dtype.kind not in kinds:
            want = "integers" if kinds == "iu" else "real floating-point numbers"
            raise IQTError(f"{weights}: its array {key} holds {v.dtype}, where 'iqt train' writes {want}: the file was "
                           "converted or crafted, and is not run; re-download or retrain the model")
        if key.endswith("val_var") and v.dtype.kind == "f" and np.any(v < 0):
            raise IQTError(f"{weights}: its array {key} holds negative leaf variances (lowest {np.nanmin(v):.3g}), which "
                           "no training gives: the file was edited or damaged, and is not run; re-download or retrain the "
                           "model")
        # the sigma map's square root had met them ('invalid value encountered in sqrt', then a non-finite refusal)
        if np.any(v <= 0) if key.endswith("beta") else key == "variance_scale" and np.any(v < 0):
            what = ("leaf noise precisions (1/beta is a variance) that are not positive" if key.endswith("beta")
                    else "a negative variance scale")
            raise IQTError(f"{weights}: its array {key} holds {what} (lowest {np.nanmin(v):.3g}), which no training "
                           "gives: the file was edited or damaged, and is not run; re-download or retrain the model")
    maps = [v for k, v in a.items() if k == "gl_W" or k.endswith(("_W", "_W_q"))]
    if maps and not any(np.any(v) for v in maps):  # said, not refused: a test's model of zeros is one (test_forest.py)
        import warnings

        from ...core.errors import IQTWarning

        warnings.warn(_("{model}: the model's maps (gl_W and its leaves') are all zero, so it gives cubic "
                        "interpolation's result under the name {method}: the file is damaged or was never trained; "
                        "re-download or retrain the model, or use {cubic}").format(model=weights, method=method,
                                                                                  cubic=option("--method cubic")),
                      IQTWarning, stacklevel=3)


def check_outputs(model: ForestModel) -> None:
    """Its map answers the values its sidecar's factors need (checked before a prediction, and by 'iqt seal', so that
    it never seals a sidecar whose factor was edited); an IQTError naming the edit otherwise."""
    need = math.prod(grid.factors(model.factor)) * 6
    if model.gl_W.shape[1] != need:  # a sidecar edited apart from its weights
        raise IQTError(f"{model.meta.get('weights', 'the model')}: it answers {model.gl_W.shape[1]} values per low-res "
                       f"voxel, its sidecar's factors {grid.text(model.factor)} need {need}: the sidecar was edited; "
                       "re-download or retrain the model")


def _kind(meta: dict, weights) -> tuple[str, str]:
    """(target, inputs) of a sidecar; the defaults for sidecars from before the fields; an IQTError for others."""
    target = meta.get("target", TARGETS[0])
    inputs = meta.get("inputs", "patch")
    if target not in TARGETS:
        raise IQTError(f"{weights}: this forest model predicts target {target!r}, which this version of the engine does not "
                       f"know (it knows {', '.join(TARGETS)}); update the extension or use a model trained by this version")
    if inputs not in INPUTS:
        raise IQTError(f"{weights}: this forest model takes inputs {inputs!r}, which this version of the engine does not "
                       f"know (it knows {', '.join(INPUTS)}); update the extension or use a model trained by this version")
    return target, inputs


read_sidecar, shipped, register = FILES.read_sidecar, FILES.shipped, FILES.register
shipped_factor_sets, shipped_for = FILES.shipped_factor_sets, FILES.shipped_for
