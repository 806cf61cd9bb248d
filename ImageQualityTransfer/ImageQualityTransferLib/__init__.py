"""Image Quality Transfer engine: Qt-free DTI super-resolution with uncertainty.

Data flows one way: files or MRML nodes -> `Volume` -> method -> `Volume`(s) -> files or nodes.
"""

from .core.errors import IQTError, IQTWarning
from .core.version import __version__

__all__ = ["IQTError", "IQTWarning", "Volume", "__version__"]


def __getattr__(name):
    """`Volume` on first use: importing the package stays free of numpy, so that the `iqt` command takes its signals
    within milliseconds of starting (apps/entry.py)."""
    if name == "Volume":
        from .core.volume import Volume

        return Volume
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
