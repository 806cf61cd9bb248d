"""Model files: a plain state_dict written with `torch.save` (read back with `torch.load(weights_only=True)`,
which cannot execute code) and a JSON sidecar beside it; a registry of the shipped models.

Sidecar (`<name>.json`): format, method, factor, architecture, patch geometry, normalisation, training
(subjects, seed, epochs, losses), version, weights file name and its SHA256. The loader verifies the
checksum before it reads the weights; a missing, truncated or tampered file gives an IQTError.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ...fileio import model_files
from ...core import grid
from ...core.errors import IQTError
from ...fileio.model_files import MODELS_DIR, REGISTRY, read_registry, sidecar_path, write_model  # noqa: F401 (re-exported)


FORMAT = model_files.CNN_FORMAT
FILES = model_files.Family(FORMAT, "CNN", ".pt")


@dataclass
class LoadedModel:
    net: object  # torch.nn.Module in eval mode
    meta: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def method(self) -> str:
        return self.meta["method"]

    @property
    def factor(self) -> tuple:
        """(fx, fy, fz) on canonical axes (the sidecar holds r, or [fx, fy, fz])."""
        return grid.factors(self.meta["factor"])


def save_torch(obj, path) -> None:
    """torch.save through an open file: given a path, PyTorch names the archive's entries after it (the temporary
    file's random name), so one command's model file would have another checksum on every run."""
    import torch

    with open(path, "wb") as f:
        torch.save(obj, f)


def save(net, meta: dict, path) -> Path:
    """Write the weights to `path` (.pt) and the sidecar beside it; returns the sidecar path."""

    p = Path(path)
    if p.suffix != ".pt":
        raise IQTError(f"{p}: a model file name must end in .pt (the JSON sidecar is written beside it)")
    if not p.parent.exists():
        raise IQTError(f"{p}: the folder {p.parent} does not exist; create it or choose another output path")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    return write_model(p, lambda tmp: save_torch(state, tmp), {**meta, "format": FORMAT})


def load(path) -> LoadedModel:
    """Sidecar + verified weights -> network in eval mode."""
    from . import require_torch

    torch = require_torch()
    from . import networks

    meta, weights, data = FILES.read_verified(path)  # loaded from the bytes it verified, not read again
    check_normalisation(meta.get("normalisation"), sidecar_path(path))
    arch_factor = meta.get("arch", {}).get("factor") if isinstance(meta.get("arch"), dict) else None
    if arch_factor is not None and grid.factors(arch_factor) != grid.factors(meta.get("factor", 0)):
        raise IQTError(f"{sidecar_path(path)}: the sidecar's factor {meta.get('factor')} differs from its network's "
                       f"{arch_factor}; the sidecar was edited: re-download or retrain the model")
    check_method(meta, sidecar_path(path))
    if not zipfile.is_zipfile(io.BytesIO(data)):  # torch.save writes a zip archive; torch.load would warn of a plain pickle
        # ("Detected pickle protocol") before refusing it, and silencing that takes the process's warning filters
        raise IQTError(f"{weights}: not a file torch.save wrote (a plain pickle, or damaged) and is refused: loading it "
                       "could execute code; use a model written by 'iqt train'")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        check_arch(meta.get("arch"), state, sidecar_path(path))
        with torch.random.fork_rng(devices=[]):  # the layers' random initial weights, replaced at once, draw from
            net = networks.build(meta["arch"])  # torch's global generator: a caller's seeded draws had moved (an audit)
        net.load_state_dict(state, strict=True)
    except IQTError:
        raise
    except pickle.UnpicklingError:  # torch's message advises weights_only=False, which would run the file's code
        raise IQTError(f"{weights}: the file holds more than plain weights (objects or code) and is refused: loading it "
                       f"could execute code; use a model written by 'iqt train'") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable model is a user-facing problem
        raise IQTError(f"{weights}: the weights do not load into a {meta.get('arch')} network ({type(exc).__name__}: {exc}); "
                       "the file is damaged or is not this sidecar's: re-download or retrain the model") from None
    net.eval()
    FILES.say_unsealed(meta, path)
    return LoadedModel(net, meta, weights)


SUBJECT_SCALES = (None, False, "md-mode", "median-md")  # inference.subject_scale's kinds; None/False: fixed units


def check_normalisation(norm, sp: Path) -> None:
    """The sidecar's normalisation is one 'iqt train' writes (training_data.normalisation): residual over cubic, six
    finite input means and six positive finite scales each way, a known subject scale. A crafted sidecar's
    out_scale "abc" had ended in an internal error, all zeros given every output cubic's, and an unknown kind been
    ignored (a fresh-eyes audit)."""
    def six(key, positive):
        v = norm.get(key)
        return (isinstance(v, list) and len(v) == 6 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                             and math.isfinite(x) and (x > 0 or not positive) for x in v))

    ok = (isinstance(norm, dict) and norm.get("kind") == "residual-over-cubic" and six("in_mean", False)
          and six("in_scale", True) and six("out_scale", True) and norm.get("subject_scale") in SUBJECT_SCALES)
    if not ok:
        raise IQTError(f"{sp}: its normalisation is not one 'iqt train' writes (residual over cubic, six finite means "
                       "and positive scales): the sidecar was edited or damaged; re-download or retrain the model")


def check_method(meta: dict, sp: Path) -> None:
    """The sidecar's method is its network's ('iqt train' names the network after it, cnn/training.py): a plain
    network labelled espcn-hetero had run with no uncertainty written and 'wrote ' said of nothing, and a var1 network
    labelled espcn-hetero ended in an internal error (a provenance audit). The network itself is checked against the
    weights by `check_arch`, so the method is too."""
    from . import networks

    arch = meta.get("arch") if isinstance(meta.get("arch"), dict) else {}
    name, method = arch.get("name"), meta.get("method")
    if name not in networks.ARCHITECTURES or method == name:
        return  # an unknown network: check_arch says so

    def outputs(n):
        cls = networks.ARCHITECTURES.get(n) if isinstance(n, str) else None
        if cls is None:
            return "no network this version knows"
        if not issubclass(cls, networks.HeteroESPCN3D):
            return "no variance output"
        return "a variance output and weight uncertainty" if "-var" in n else "a variance output"

    raise IQTError(f"{sp}: the sidecar's method {method!r} ({outputs(method)}) is not its network's {name!r} ({outputs(name)}), "
                   "as 'iqt train' writes them: the sidecar was edited; re-download or retrain the model")


def check_arch(arch, state, sp: Path) -> None:
    """The sidecar's network is the one its weights fit, checked on torch's meta device (shapes, no memory) before it
    is built: its widths and factor set the size of every layer, and an edited sidecar ('widths': [100000, 100000])
    would have 40 GB allocated for a network its weights could never fill. An IQTError naming the mismatch."""
    import torch

    from . import networks

    name = arch.get("name") if isinstance(arch, dict) else None
    if name not in networks.ARCHITECTURES:
        raise IQTError(f"{sp}: its network {arch!r} is none this version knows ({', '.join(networks.ARCHITECTURES)}): "
                       "the sidecar was edited or damaged; re-download or retrain the model")
    widths = arch.get("widths", list(networks.default_widths(name)))
    if (not isinstance(widths, list) or len(widths) != len(networks.default_widths(name))
            or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths)):
        raise IQTError(f"{sp}: its network's widths {widths!r} are not {len(networks.default_widths(name))} positive "
                       "integers, as 'iqt train' writes them: the sidecar was edited or damaged; re-download or retrain "
                       "the model")
    with torch.device("meta"):
        built = networks.build(arch).state_dict()
    shapes = {k: tuple(v.shape) for k, v in built.items()}
    given = {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}
    for k in sorted(set(shapes) | set(given)):
        if shapes.get(k) != given.get(k):
            raise IQTError(f"{sp}: its network {arch} does not match its weights ({k}: {given.get(k)} in the weights, "
                           f"{shapes.get(k)} in that network): the sidecar was edited; re-download or retrain the model")
    # the network's own dtypes (float32, as 'iqt train' writes them): complex weights had run with torch's warning
    # that the imaginary part is dropped, int8/float16/float64 ones silently (a provenance audit)
    for k in sorted(built):
        if state[k].dtype != built[k].dtype:
            raise IQTError(f"{sp}: the weights it names hold {str(state[k].dtype).replace('torch.', '')} "
                           f"({k}), where 'iqt train' writes {str(built[k].dtype).replace('torch.', '')}: the file was "
                           "converted or crafted, and is not run; re-download or retrain the model")
    if not any(bool(torch.count_nonzero(v)) for v in state.values()):  # every output would be cubic's, labelled a model's
        raise IQTError(f"{sp}: the weights it names are all zero, so it would give cubic interpolation's result under its "
                       "name: the file is damaged or was never trained; re-download or retrain the model, or use --method "
                       "cubic")


# ---------------------------------------------------------------- registry of shipped models


read_sidecar, shipped, register = FILES.read_sidecar, FILES.shipped, FILES.register
shipped_factor_sets, shipped_for = FILES.shipped_factor_sets, FILES.shipped_for
