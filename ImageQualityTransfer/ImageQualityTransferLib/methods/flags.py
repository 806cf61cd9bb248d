"""Uncertainty raised where an output means nothing, in every map a reader may put on screen: non-physical output
voxels (a negative eigenvalue; every map but the direction's, which is drawn from the raised SD) and the background
noise fits a brain estimated from the tensors keeps, and the failed fits an input is warned of (inputs.drop_failed_fits),
filled from around them (every map). A map left low there calls such voxels certain (reviews 40b and 41b: the noise
fits read below the brain's median in every map but the tensor SD; an audit: a filled cavity read as tissue)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..core import grid, tensors
from ..core.direction import RANDOM_AXIS_DEGREES

EDGE_DEPTH = 3  # low-res voxels: the support's band that the brain's edge (the exterior region) lies in
EDGE_QUANTILE = 0.75  # of the band's std: the band also holds the support's ring outside the brain, where std is lower
NOISE_QUANTILE = 0.99  # background noise fits are at least as uncertain as this quantile of the rest of the support
# maps in the tensor's units, where a non-physical voxel's distance to a physical tensor is a floor too
DIFFUSIVITY_MAPS = ("std", "std_intrinsic", "std_parameter", "md_std")


def flag_noise(tensor: np.ndarray, std: np.ndarray, f, noise: np.ndarray, top: float | None = None,
               present: np.ndarray | None = None) -> np.ndarray:
    """The map `std` with the output voxels of low-res `noise` voxels (background noise fits, `dmri.dti.noise_fits`;
    warned failed fits) raised to at least `top`, by default the NOISE_QUANTILE of the map over the rest of the
    support (the top of a display's colour scale): no output there means anything, and at the edge floor alone they
    read below the brain's median. `present`: the output's non-zero voxels, where the caller has them."""
    present = np.any(tensor != 0, axis=-1) if present is None else present
    flagged = grid.repeat_blocks(noise, f)[: std.shape[0], : std.shape[1], : std.shape[2]] & present
    rest = present & ~flagged
    if not flagged.any() or not rest.any():
        return std
    out = np.array(std, copy=True)
    out[flagged] = np.maximum(out[flagged], float(np.quantile(std[rest], NOISE_QUANTILE)) if top is None else top)
    return out


def edge_bands(present: np.ndarray, f) -> list:
    """The support's two outer bands, EDGE_DEPTH low-res voxels each: the brain's edge lies in the first with a mask, in
    the second with a generous support (a brain estimated without a mask keeps a ring of background fits, where a
    forest's std is low)."""
    fx, fy, fz = grid.factors(f)
    bands, inner = [], present
    for _ in range(2):
        core = grid.repeat_blocks(ndimage.binary_erosion(inner[::fx, ::fy, ::fz], iterations=EDGE_DEPTH), (fx, fy, fz))
        bands.append(inner & ~core)
        inner = inner & core
    return bands


def edge_floor(bands: list, std: np.ndarray) -> float:
    """The higher upper quartile (EDGE_QUANTILE) of `std` in the `edge_bands`."""
    return max([float(np.quantile(std[b], EDGE_QUANTILE)) for b in bands if b.any()], default=0.0)


def flag_nonphysical(tensor: np.ndarray, std: np.ndarray, f, distance: np.ndarray | None = None,
                     by_distance: bool = True, bands: list | None = None) -> np.ndarray:
    """The map `std` with every non-physical output voxel (a negative eigenvalue) raised to at least the upper
    quartile of the map in the support's edge bands (`edge_floor`) and, with `by_distance` (a map in the tensor's
    units), to the voxel's distance to a physical tensor (`distance`, computed when not given): the reference is
    physical, and where such voxels fall inside the brain their error is several times the edge's
    (docs/measurements.md, Uncertainty by style). `bands`: `edge_bands` of the output, where the caller has them."""
    distance = tensors.distance_to_physical(tensor) if distance is None else distance
    bad = distance > 0
    if not bad.any():
        return std
    floor = edge_floor(edge_bands(np.any(tensor != 0, axis=-1), f) if bands is None else bands, std)
    out = np.array(std, copy=True)
    out[bad] = np.maximum(out[bad], np.maximum(distance[bad], floor) if by_distance else floor)
    return out


def flag_maps(tensor: np.ndarray, maps: dict, f, noise: np.ndarray | None = None,
              present: np.ndarray | None = None) -> dict:
    """Every uncertainty map of a prediction flagged: non-physical voxels (`flag_nonphysical`; the diffusivity maps
    also by the voxel's distance to a physical tensor; not the direction map) and, with `noise` (low-res voxels), the
    noise fits (`flag_noise`; the direction map at RANDOM_AXIS_DEGREES, a direction no draw determines). A map that is
    zero everywhere (the parameter SD of a single Monte Carlo sample) says "no information" and is left so.
    `present`: the output's non-zero voxels, where the caller has them."""
    if not maps:
        return {}
    present = np.any(tensor != 0, axis=-1) if present is None else present
    # one eigen-decomposition of the output for every map (none for the direction map alone)
    distance = tensors.distance_to_physical(tensor) if set(maps) - {"direction"} else None
    bands = edge_bands(present, f) if distance is not None and (distance > 0).any() else None
    out = {}
    for key, m in maps.items():
        if not np.any(m):
            out[key] = m
            continue
        if key != "direction":
            m = flag_nonphysical(tensor, m, f, distance, by_distance=key in DIFFUSIVITY_MAPS, bands=bands)
        if noise is not None:
            m = flag_noise(tensor, m, f, noise, RANDOM_AXIS_DEGREES if key == "direction" else None, present)
        out[key] = m
    return out
