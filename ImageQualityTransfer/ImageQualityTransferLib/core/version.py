"""The engine's version, recorded in model sidecars and outputs."""

__version__ = "0.1.0"
