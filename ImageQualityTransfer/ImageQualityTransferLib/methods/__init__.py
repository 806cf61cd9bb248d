"""Registry of methods: every name the CLI, the Slicer module and the benchmark can run."""

from __future__ import annotations

from ..core.errors import IQTError
from .base import Method, Prediction
from .interpolation import Cubic, Linear, LogEuclidCubic, Nearest

_METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    _METHODS[cls.name] = cls
    return cls


for _cls in (Nearest, Linear, Cubic, LogEuclidCubic):
    register(_cls)

# The CNN methods import torch only when they predict (an IQTError says how to install it if absent).
from .cnn.method import CNN_METHODS  # noqa: E402

for _cls in CNN_METHODS:
    register(_cls)

# The forest family (numpy only): global-linear, rf, biqt.
from .forest.method import FOREST_METHODS  # noqa: E402

for _cls in FOREST_METHODS:
    register(_cls)


def names() -> list[str]:
    return list(_METHODS)


def describe() -> list[dict]:
    """One entry per method: name, one-line description, whether it gives an uncertainty, learned or not."""
    return [
        {"name": c.name, "description": c.description, "uncertainty": c.gives_uncertainty, "learned": c.learned}
        for c in _METHODS.values()
    ]


# Best first, by `iqt benchmark` on the dev subjects (README): the first one that can run here is the default.
PREFERENCE = ("espcn", "biqt", "cubic")


def default_method() -> str:
    """The best shipped method that can run in this environment (espcn needs torch)."""
    import importlib.util

    for name in PREFERENCE:
        if name in _METHODS and not (getattr(_METHODS[name], "requires_torch", False) and importlib.util.find_spec("torch") is None):
            return name
    return "cubic"


def get(name: str, model=None) -> Method:
    if name not in _METHODS:
        raise IQTError(f"unknown method {name!r}; choose one of: {', '.join(_METHODS)} (see 'iqt methods')")
    cls = _METHODS[name]
    return cls(model=model) if cls.learned else cls()


__all__ = ["Method", "Prediction", "register", "names", "describe", "default_method", "get"]
