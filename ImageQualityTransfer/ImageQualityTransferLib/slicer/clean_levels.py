"""The clean levels of the shipped models' uncertainty maps: per model and map, the brain median and 99th percentile
that model's map reads on clean inputs of the training subjects (Resources/Models/clean_levels.json, written by
benchmarks/clean_levels.py). An SD map is coloured from that median up (slicer/legends.py; the direction map from
its own), so that a noisy scan's map, higher all over, colours more of the brain than a clean one's; coloured from
its own median, it had coloured the same half."""

from __future__ import annotations

import functools
import json
import re

from ..fileio.paths import MODELS_DIR

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


def clean_level(model_words: str | None, key: str) -> tuple[float, float] | None:
    """(median, 99th percentile) of map `key` of the shipped model a run names on clean training inputs, in the map
    node's unit; None where the table has none (a user's model, a model or map not measured). The overlay uses the
    median (legends.clean_floor); the percentile is kept as measured."""
    entry = _table().get(model_key(model_words) or "", {}).get(key)
    try:
        median, top = float(entry["median"]), float(entry["top"])
    except (TypeError, KeyError, ValueError):
        return None
    return (median, top) if 0 < median < top else None
