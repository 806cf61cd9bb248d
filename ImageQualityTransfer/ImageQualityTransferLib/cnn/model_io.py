"""Model files: a plain state_dict written with `torch.save` (read back with `torch.load(weights_only=True)`,
which cannot execute code) and a JSON sidecar beside it; a registry of the shipped models.

Sidecar (`<name>.json`): format, method, factor, architecture, patch geometry, normalisation, training
(subjects, seed, epochs, losses), version, weights file name and its SHA256. The loader verifies the
checksum before it reads the weights; a missing, truncated or tampered file gives an IQTError.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import IQTError

FORMAT = "iqt-cnn-model/1"
MODELS_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models"
REGISTRY = "registry.json"


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class LoadedModel:
    net: object  # torch.nn.Module in eval mode
    meta: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def method(self) -> str:
        return self.meta["method"]

    @property
    def factor(self) -> int:
        return int(self.meta["factor"])


def sidecar_path(path) -> Path:
    p = Path(path)
    return p if p.suffix == ".json" else p.with_suffix(".json")


def save(net, meta: dict, path) -> Path:
    """Write the weights to `path` (.pt) and the sidecar beside it; returns the sidecar path."""
    import torch

    p = Path(path)
    if p.suffix != ".pt":
        raise IQTError(f"{p}: a model file name must end in .pt (the JSON sidecar is written beside it)")
    if not p.parent.exists():
        raise IQTError(f"{p}: the folder {p.parent} does not exist; create it or choose another output path")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = p.with_name(p.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(p)
    side = dict(meta)
    side.update({"format": FORMAT, "weights": p.name, "sha256": sha256(p), "size_bytes": p.stat().st_size})
    sp = sidecar_path(p)
    sp.write_text(json.dumps(side, indent=2, sort_keys=False) + "\n")
    return sp


def read_sidecar(path) -> tuple[dict, Path]:
    sp = sidecar_path(path)
    if not sp.exists():
        raise IQTError(f"{sp}: model sidecar not found; a model is a .pt weights file with a .json sidecar beside it (from 'iqt train')")
    try:
        meta = json.loads(sp.read_text())
    except (OSError, ValueError) as exc:
        raise IQTError(f"{sp}: the model sidecar is not valid JSON ({exc}); re-download or retrain the model") from None
    if meta.get("format") != FORMAT:
        raise IQTError(f"{sp}: not an IQT CNN model sidecar (format {meta.get('format')!r}, expected {FORMAT!r})")
    return meta, sp.with_name(meta["weights"])


def load(path) -> LoadedModel:
    """Sidecar + verified weights -> network in eval mode."""
    from . import require_torch

    torch = require_torch()
    from . import networks

    meta, weights = read_sidecar(path)
    if not weights.exists():
        raise IQTError(f"{weights}: model weights not found (named by {sidecar_path(path)}); re-download or retrain the model")
    digest = sha256(weights)
    if digest != meta.get("sha256"):
        raise IQTError(
            f"{weights}: checksum mismatch (SHA256 {digest[:12]}..., the sidecar says {str(meta.get('sha256'))[:12]}...); "
            f"the file is corrupt or was modified: re-download or retrain the model"
        )
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net = networks.build(meta["arch"])
        net.load_state_dict(state, strict=True)
    except IQTError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable model is a user-facing problem
        raise IQTError(f"{weights}: the weights do not load into a {meta.get('arch')} network ({type(exc).__name__}: {exc})") from None
    net.eval()
    return LoadedModel(net, meta, weights)


# ---------------------------------------------------------------- registry of shipped models


def read_registry(models_dir=MODELS_DIR) -> list[dict]:
    reg = Path(models_dir) / REGISTRY
    if not reg.exists():
        return []
    try:
        return list(json.loads(reg.read_text()).get("models", []))
    except ValueError as exc:
        raise IQTError(f"{reg}: the model registry is not valid JSON ({exc})") from None


def shipped(method: str, factor: int, models_dir=MODELS_DIR) -> Path:
    """Sidecar path of the shipped model for (method, factor), or an IQTError listing what exists."""
    entries = read_registry(models_dir)
    for e in entries:
        if e.get("method") == method and int(e.get("factor", 0)) == int(factor):
            return Path(models_dir) / e["sidecar"]
    have = sorted(int(e["factor"]) for e in entries if e.get("method") == method)
    hint = f"shipped factors for {method}: {', '.join(map(str, have))}" if have else f"no {method} model is shipped"
    raise IQTError(
        f"no shipped {method} model for factor {factor} ({hint}); train one with "
        f"'iqt train --method {method} --subjects DIR... --factor {factor} -o MODEL.pt' and pass --model MODEL.pt"
    )


def register(sidecar, models_dir=MODELS_DIR) -> None:
    """Add or replace the registry entry of a model whose files lie in `models_dir`."""
    meta, _ = read_sidecar(sidecar)
    reg = Path(models_dir) / REGISTRY
    entries = [e for e in read_registry(models_dir)
               if not (e.get("method") == meta["method"] and int(e.get("factor", 0)) == int(meta["factor"]))]
    entries.append({"method": meta["method"], "factor": int(meta["factor"]), "sidecar": Path(sidecar_path(sidecar)).name,
                    "version": meta.get("version"), "sha256": meta["sha256"]})
    entries.sort(key=lambda e: (e["method"], e["factor"]))
    reg.write_text(json.dumps({"format": "iqt-model-registry/1", "models": entries}, indent=2) + "\n")
