"""The Slicer module's upsampling control, Qt-free: the per-axis factors each mode gives for an input's voxel
spacing, the output voxel size, and which methods run at those factors.

Modes (in the order of the module's combo box):
    isotropic      factor f on every axis: (f, f, f)
    through-plane  factor f along the thick axis only, one at least grid.THICK_RATIO times each of the
                   other two (else the voxel axis along S), e.g. (1, 1, f):
                   orientation.through_plane_axis, the rule of the CLI's through-plane --model too
    voxel-size     the smallest integer factor per axis that reaches a wanted voxel size (grid.for_voxel_size)

Spacings are the node's (GetSpacing(), in IJK axes), which are the engine's voxel axes, and the affine its IJK-to-RAS
matrix. Imports only `core` (numpy and scipy), so
the module can use it on a fresh install, before the engine's packages are installed.
"""

from __future__ import annotations

import math

import numpy as np

from ..core import grid, orientation
from ..core.errors import IQTError

MODES = ("isotropic", "through-plane", "voxel-size")


def _spacing(spacing, mode: str) -> tuple[float, float, float]:
    """The input's voxel spacing as three positive numbers; IQTError (select an input) else."""
    try:
        v = tuple(float(x) for x in spacing)
    except TypeError:
        v = ()
    if len(v) != 3 or not all(x > 0 and math.isfinite(x) for x in v):
        raise IQTError(f"the {mode} upsampling needs the input's voxel spacing: select an input volume")
    return v


def slice_axis(spacing, affine=None) -> int:
    """The axis (0, 1 or 2) through-plane upsampling refines: orientation.through_plane_axis along S, the CLI's rule
    for the shipped 1,1,k models (the thick axis, else the voxel axis along S). Without `affine`, voxel axes along
    R, A, S (k is S)."""
    v = _spacing(spacing, "through-plane")
    if affine is not None and not np.isfinite(np.asarray(affine, float)).all():  # a node's IJK-to-RAS, read as is
        raise IQTError("the input's IJK-to-RAS matrix holds NaN or infinite values, so its slice axis cannot be read: "
                       "fix the volume's orientation, or choose the voxel-size upsampling")
    return orientation.through_plane_axis(v, np.diag([*v, 1.0]) if affine is None else affine)


def factors_for(mode: str, factor: int = 2, voxel_size_mm: float | None = None, spacing=None,
                affine=None) -> tuple[int, int, int]:
    """(fx, fy, fz) for the module's controls: `factor` for the isotropic and through-plane modes, `voxel_size_mm`
    for the voxel-size mode; `spacing` (the input node's) is needed by the last two, and `affine` (its IJK-to-RAS)
    by the through-plane mode where no axis is thick. IQTError with what to change when the controls ask for nothing
    to upsample."""
    if mode == "isotropic":
        return grid.factors(int(factor))
    if mode == "through-plane":
        f = [1, 1, 1]
        f[slice_axis(spacing, affine)] = int(factor)
        return grid.factors(f)
    if mode == "voxel-size":
        return grid.for_voxel_size(_spacing(spacing, "target voxel size"), voxel_size_mm, name="target voxel size",
                                   instead="nothing would be upsampled; choose a smaller voxel size")
    raise IQTError(f"unknown upsampling mode {mode!r}; choose one of: {', '.join(MODES)}")


def output_spacing(spacing, f) -> tuple[float, float, float]:
    """The output's voxel size per axis: the input's divided by the factors."""
    v = _spacing(spacing, "output")
    return tuple(x / k for x, k in zip(v, grid.factors(f, identity_ok=True)))


def offered(entries: list[dict], f) -> list[dict]:
    """The method entries (methods.describe()) that run at factors `f`: interpolation at any factors, a learned
    method at the factors of its shipped models or a reordering of them (as `methods.ready`, except that a CNN stays
    listed before PyTorch is installed: the module offers to install it)."""
    return [e for e in entries if not e["learned"]
            or grid.axis_order(f, [grid.factors(s) for s in e["shipped"]]) is not None]

