"""Methods: interpolation baselines, the forest family (IQT-GL, IQT-RF, BIQT-RF) and the 3D-ESPCN CNNs, behind one
model (`base.Method`: settings, `fit`, `predict` -> `Prediction`) and one registry (`registry`)."""

from .base import Method, Prediction
from .registry import (
    default_method,
    describe,
    get,
    method_class,
    names,
    ready,
    runs_here,
    serves,
    shipped_factors,
    trainable,
    viewer_default,
    with_uncertainty,
)

__all__ = ["Method", "Prediction", "default_method", "describe", "get", "method_class", "names", "ready",
           "runs_here", "serves", "shipped_factors", "trainable", "viewer_default", "with_uncertainty"]
