"""Image Quality Transfer engine: Qt-free DTI super-resolution with uncertainty.

Data flows one way: files or MRML nodes -> `Volume` -> method -> `Volume`(s) -> files or nodes.
"""

from .errors import IQTError
from .volume import Volume

__version__ = "0.1.0"
__all__ = ["IQTError", "Volume", "__version__"]
