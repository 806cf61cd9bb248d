"""Image Quality Transfer engine: Qt-free DTI super-resolution with uncertainty.

Data flows one way: files or MRML nodes -> `Volume` -> method -> `Volume`(s) -> files or nodes.
"""

from .core.errors import IQTError, IQTWarning
from .core.version import __version__
from .core.volume import Volume

__all__ = ["IQTError", "IQTWarning", "Volume", "__version__"]
