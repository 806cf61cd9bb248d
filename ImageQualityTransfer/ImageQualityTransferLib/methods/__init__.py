"""Registry of methods: every name the CLI, the Slicer module and the benchmark can run."""

from __future__ import annotations

from ..errors import IQTError
from .base import Method, Prediction
from .interpolation import Cubic, Linear, LogEuclidCubic, Nearest

_METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    _METHODS[cls.name] = cls
    return cls


for _cls in (Nearest, Linear, Cubic, LogEuclidCubic):
    register(_cls)


def names() -> list[str]:
    return list(_METHODS)


def describe() -> list[dict]:
    """One entry per method: name, one-line description, whether it gives an uncertainty, learned or not."""
    return [
        {"name": c.name, "description": c.description, "uncertainty": c.gives_uncertainty, "learned": c.learned}
        for c in _METHODS.values()
    ]


def default_method() -> str:
    """The best shipped learned method once one exists, `cubic` until then."""
    return "cubic"


def get(name: str, model=None) -> Method:
    if name not in _METHODS:
        raise IQTError(f"unknown method {name!r}; choose one of: {', '.join(_METHODS)} (see 'iqt methods')")
    cls = _METHODS[name]
    return cls(model=model) if cls.learned else cls()


__all__ = ["Method", "Prediction", "register", "names", "describe", "default_method", "get"]
