"""Forest-family model files: arrays in a `.npz` read with `allow_pickle=False` (cannot execute code on
load) and a JSON sidecar beside it (format, method, factor, patch radius, features, normalisation, training
subjects and settings, version, weights file name and SHA256). The loader verifies the checksum before it
reads the arrays; a missing, truncated, corrupted or tampered file gives an IQTError, never a crash.
The registry (`Resources/Models/registry.json`) is shared with the CNN models (same entry format).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import model_files
from ..errors import IQTError
from ..model_files import MODELS_DIR, REGISTRY, read_registry, sha256, sidecar_path  # noqa: F401 (re-exported)
from . import SCALE, tree
from .completion import GaussianCompletion
from .forest import Forest
from .bayes import NoiseScale

FORMAT = "iqt-forest-model/1"
METHODS = ("global-linear", "rf", "biqt")


@dataclass
class ForestModel:
    """Everything a forest-family method needs to predict (in the working domain of `forest`)."""

    method: str
    factor: int
    n: int
    completion: GaussianCompletion
    gl_W: np.ndarray  # (D+1, r^3*6) global-linear map (the whole model for global-linear; the base for rf/biqt)
    forest: Forest | None = None
    meta: dict = field(default_factory=dict)


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
                a[p + "W"] = t.bayes_W.astype(dtype)
                a[p + "val_var"] = t.bayes_val_var.astype(np.float32)
                a[p + "beta"] = t.bayes_beta.astype(np.float32)
                a[p + "alpha"] = t.bayes_alpha.astype(np.float32)
                a[p + "root"] = t.bayes_root.astype(dtype)
            else:
                a[p + "W"] = t.W.astype(dtype)
                a[p + "val_var"] = t.val_var.astype(np.float32)
    return a


def save(model: ForestModel, path, dtype=np.float32) -> Path:
    """Write `path` (.npz) and the sidecar beside it; returns the sidecar path."""
    p = Path(path)
    if p.suffix != ".npz":
        raise IQTError(f"{p}: a forest model file name must end in .npz (the JSON sidecar is written beside it)")
    if not p.parent.exists():
        raise IQTError(f"{p}: the folder {p.parent} does not exist; create it or choose another output path")
    tmp = p.with_name(p.name + ".tmp.npz")
    np.savez_compressed(tmp, **_arrays(model, dtype))
    tmp.replace(p)
    side = dict(model.meta)
    side.update({"format": FORMAT, "method": model.method, "factor": int(model.factor), "patch_radius": int(model.n),
                 "n_trees": 0 if model.forest is None else len(model.forest.trees),
                 "n_leaves": 0 if model.forest is None else model.forest.n_leaves,
                 "domain": f"tensors x {SCALE:g} (1e-3 mm^2/s), canonical RAS axes; target = reference - cubic B-spline",
                 "precision": np.dtype(dtype).name, "weights": p.name, "sha256": sha256(p), "size_bytes": p.stat().st_size})
    sp = sidecar_path(p)
    sp.write_text(json.dumps(side, indent=2) + "\n")
    return sp


def load(path) -> ForestModel:
    meta, weights = model_files.read_verified(path, FORMAT, "forest", ".npz")
    try:
        with np.load(weights, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        method = meta["method"]
        comp = GaussianCompletion(a["completion_mean"], a["completion_cov"])
        forest = None
        if method in ("rf", "biqt"):
            forest = Forest(n_trees=int(meta["n_trees"]))
            for k in range(int(meta["n_trees"])):
                p = f"tree{k}_"
                W = a[p + "W"].astype(np.float32)
                t = tree.Tree(a[p + "feature"].astype(np.int64), a[p + "threshold"], a[p + "left"].astype(np.int64),
                              a[p + "right"].astype(np.int64), a[p + "leaf"].astype(np.int64), W, a[p + "val_var"])
                if method == "biqt":
                    t.bayes_W, t.bayes_val_var, t.bayes_beta = W, a[p + "val_var"], a[p + "beta"]
                    t.bayes_alpha = a[p + "alpha"]
                    t.bayes_root_ = a[p + "root"].astype(np.float32)
                forest.trees.append(t)
            if "variance_scale" in a:  # absent in models from before the calibration (scale 1)
                forest.variance_scale = float(a["variance_scale"])
            if "noise_v" in a:
                forest.noise = NoiseScale(a["noise_v"], float(a["noise_k"]))
        model = ForestModel(method, int(meta["factor"]), int(meta["patch_radius"]), comp, a["gl_W"].astype(np.float32),
                            forest, meta)
    except IQTError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable model is a user-facing problem
        raise IQTError(f"{weights}: the model file does not hold a valid {meta.get('method')} model "
                       f"({type(exc).__name__}: {exc}); re-download or retrain it") from None
    if model.method not in METHODS:
        raise IQTError(f"{weights}: unknown forest method {model.method!r}")
    return model


def read_sidecar(path) -> tuple[dict, Path]:
    return model_files.read_sidecar(path, FORMAT, "forest", ".npz")


def shipped(method: str, factor: int, models_dir=MODELS_DIR) -> Path:
    return model_files.shipped(method, factor, ".npz", models_dir)


def register(sidecar, models_dir=MODELS_DIR) -> None:
    model_files.register(read_sidecar(sidecar)[0], sidecar, models_dir)
