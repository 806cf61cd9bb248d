"""What made a tensor output, in its header: the method and factors (`iqt espcn factor 2`), written by the NIfTI and
NRRD writers and read back by `iqt evaluate` so that a prediction is scored on its own factor's grid."""

from __future__ import annotations

import re

import numpy as np

from ..core.errors import IQTError
from ..core.grid import describe, factors, isotropic


MADE_BY = re.compile(r"^iqt (?P<method>[a-z0-9+-]+) factors? (?P<factor>\d+(?:,\d+,\d+ (?P<axes>[RLAPSI]{3}))?)$")


def made_by(meta: dict, affine) -> str:
    """The header description of a method's output ("iqt espcn factor 2"; per-axis factors with the voxel axes' codes
    they are along, "iqt espcn factors 1,1,3 LAS"): `iqt evaluate` reads the factors back (made_at), so that a
    prediction is not scored on another factor's grid; "" for other tensors."""
    if not meta.get("method") or meta.get("factor") is None:
        return ""
    text = f"iqt {meta['method']}{'+tta' if meta.get('averaged_over') else ''} {describe(meta['factor'])}"
    if isotropic(meta["factor"]) is None:
        axes = _axis_codes(affine)
        if axes is None:
            return ""
        text += " " + axes
    return text if len(text) < 80 and MADE_BY.match(text) else ""


def _axis_codes(affine) -> str | None:
    """The voxel axes' orientation codes ("LAS"); None for an affine that has none (degenerate)."""
    from nibabel import aff2axcodes

    try:
        codes = aff2axcodes(np.asarray(affine, float))
    except (ValueError, TypeError, np.linalg.LinAlgError):
        return None
    return "".join(codes) if all(isinstance(c, str) for c in codes) else None


def read_made_by(text, affine) -> tuple[str, tuple[int, int, int]] | None:
    """(the description, its factors) from a `made_by` text (a NIfTI `descrip`, a NRRD `iqt_made_by` field); None for
    any other text, and for a file whose voxel axes another tool has since reordered (the factors would then be along
    other axes)."""
    m = MADE_BY.match(str(text).strip())
    if m is None:
        return None
    try:
        f = factors(m["factor"].split(" ")[0])
    except IQTError:  # a record this project did not write
        return None
    if m["axes"] and m["axes"] != _axis_codes(affine):
        return None
    return m.group(0), f
