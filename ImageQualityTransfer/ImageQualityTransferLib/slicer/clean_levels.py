"""The clean levels of the shipped models' uncertainty maps: per model and map, the brain median and 99th percentile
that model's map reads on clean inputs of the training subjects (Resources/Models/clean_levels.json, written by
benchmarks/clean_levels.py). An SD map is coloured from that median up (slicer/legends.py; the direction map from
its own), so that a noisy scan's map, higher all over, colours more of the brain than a clean one's; coloured from
its own median, it had coloured the same half. A diffusivity level follows the scan's tensor scale (its input's MD
mode over the training inputs', each level's "scale"), and is used only while the model file is the one measured
(its "sha256")."""

from __future__ import annotations

import functools
import json
import re

from ..fileio.model_files import model_sha256
from ..fileio.paths import MODELS_DIR
from ..fileio.records import MAP_UNITS

LEVELS_FILE = MODELS_DIR / "clean_levels.json"
# the model words a run's nodes carry (mrml.MODEL_ATTRIBUTE, results.model_words): only a shipped model has a level;
# its noise-trained twin (_noisy) is read against the clean model's level, what a clean scan of that method shows
_SHIPPED = re.compile(r"^shipped model (?P<stem>[\w.+-]+?)(?:_noisy)?\.(?:pt|npz)$")


def model_key(model_words: str | None) -> str | None:
    """The table's key ("espcn-hetero_x2") of a run's model words ("shipped model espcn-hetero_x2_noisy.pt"); None
    for a registered or given model, or a run of no model."""
    m = _SHIPPED.match(str(model_words or ""))
    return m["stem"] if m else None


@functools.lru_cache(maxsize=1)
def _table() -> dict:
    try:
        return json.loads(LEVELS_FILE.read_text()).get("models", {})
    except (OSError, ValueError, AttributeError):
        return {}


@functools.lru_cache(maxsize=None)
def _installed_sha256(stem: str) -> str | None:
    """The SHA256 the sidecar of the installed shipped model `stem` records (espcn-hetero_x2.json, by the weights)."""
    return model_sha256(MODELS_DIR / f"{stem}.json")


def _ratio(level: dict, key: str, scale, noisy: bool) -> float:
    """What a diffusivity map's level is multiplied by on a scan of tensor scale `scale` (µm²/ms, the MD mode of the
    input's brain, methods/inputs.py brain_md_unit; mrml.TENSOR_SCALE_ATTRIBUTE): its ratio to the training inputs'
    ("scale"). The SD follows the tensor: on a clean scan ×1.3 the absolute level had coloured 0.69 of the brain, as SNR
    10 does (docs/measurements.md). Never above 1 for an input read `noisy`: noise moves the MD mode either way (+4 % at
    b0 SNR 20, +20 % at SNR 5 on a b=1000 training scan; -5 to -9 % at SNR 5 on three b=2000 scans), and a level raised
    with it had coloured an SNR-20 map no more than the clean one; lowered, it colours more. 1 for a map in degrees or
    a unitless one, or a scale unknown (a node of an older run)."""
    try:
        ratio = float(scale) / float(level["scale"])
    except (TypeError, KeyError, ValueError, ZeroDivisionError):
        return 1.0
    if MAP_UNITS.get(key) != "mm2/s" or not 0 < ratio < float("inf"):
        return 1.0
    return min(ratio, 1.0) if noisy else ratio


def clean_level(model_words: str | None, key: str, scale=None, noisy: bool = False) -> tuple[float, float] | None:
    """(median, 99th percentile) of map `key` of the shipped model a run names on clean training inputs, in the map
    node's unit, scaled to a scan of tensor scale `scale` (`_ratio`; `noisy`: an input read noisy); None where the table has none (a user's model, a
    model or map not measured) or was measured on another file than the installed model's (a retrained model of the
    same name: its sidecar's SHA256 differs from the table's). The overlay uses the median (legends.clean_floor)."""
    stem = model_key(model_words) or ""
    level = _table().get(stem, {}).get(key)
    try:
        median, top = float(level["median"]), float(level["top"])
    except (TypeError, KeyError, ValueError):
        return None
    if not level.get("sha256") or level["sha256"] != _installed_sha256(stem):
        return None
    ratio = _ratio(level, key, scale, noisy)
    return (median * ratio, top * ratio) if 0 < median < top else None
