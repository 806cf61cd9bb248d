"""The words and angles the gradient check (dmri/gradcheck.py) and its dw_scheme advice (dmri/scheme_advice.py) both
use: axis names, how far apart two corrections turn the directions, a matrix and a new axis order as the warning
writes them."""

from __future__ import annotations

import numpy as np

AXES = "xyz"
ROWS = ("first", "second", "third")
SAME_DEGREES = 15.0  # corrections closer than this are one candidate: the scanner frame of a scan stored bottom-up and a
# few degrees oblique is a small turn of the table as given and scored 0.99 of it (the Elition scan stored LPI, 4
# degrees oblique), a margin of 10 % to a false warning; the 3 mm yaw scan's 19 degrees stay apart (0.83-0.84)


def _rows(perm, signs) -> str:
    """A new order of the bvec file's rows or the dw_scheme's columns in words, e.g. "(-x, y, z)" or "(y, x, z)"."""
    return "(" + ", ".join(("-" if s < 0 else "") + AXES[j] for j, s in zip(perm, signs)) + ")"


def _apart_degrees(a, b) -> float:
    """How far apart two corrections turn the directions (degrees), up to sign (D is the same for C and -C)."""
    r = np.asarray(a, float).T @ np.asarray(b, float)
    r = -r if np.linalg.det(r) < 0 else r
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))


def _shown(matrix) -> str:
    """A 3x3 matrix as the warning writes it, e.g. [[0.9455, -0.3256, 0.0000], ...]."""
    return "[" + ", ".join("[" + ", ".join(f"{v:.4f}" for v in np.round(r, 4) + 0.0) + "]" for r in matrix) + "]"
