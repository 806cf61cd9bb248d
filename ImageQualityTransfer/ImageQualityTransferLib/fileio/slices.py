"""Thick slices with a gap between them (clinical DTI: 5 mm thick, 6 mm apart), as a tensor input's files say it: a
BIDS sidecar beside it (dcm2niix's SliceThickness and SpacingBetweenSlices), a NRRD's `thicknesses` field, or the
run record of `iqt degrade --slice-gap` (dmri/degrade.py). Every method, and the learned models' training, takes
contiguous slices (docs/conventions.md, Degradation): one warning line, not a refusal."""

from __future__ import annotations

import json
import warnings

import numpy as np

from ..core.errors import IQTWarning
from ..core.i18n import _

GAP_SHARE = 0.01  # of the spacing: a smaller difference between thickness and spacing is rounding, not a gap


def _number(value) -> float | None:
    if isinstance(value, bool):  # JSON true is not 1 mm
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) and x > 0 else None


def _spacings(affine) -> np.ndarray:
    return np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))


def from_sidecar(path, affine) -> list[tuple[int, float, float, str]]:
    """[(voxel axis, thickness mm, spacing mm, source)] from the BIDS sidecar beside a tensor file (dti.nii.gz ->
    dti.json): its slice axis is SliceEncodingDirection's, else the axis of the largest voxels (a slice-first file's
    first); its spacing SpacingBetweenSlices, else the voxel size along that axis. A sidecar that is not read, or says
    no thickness, says nothing."""
    from .gradients import SLICE_ENCODING, sidecar_path

    p = sidecar_path(path)
    try:
        doc = json.loads(p.read_bytes()) if p.is_file() else None
    except (OSError, ValueError, RecursionError):
        return []
    if not isinstance(doc, dict):
        return []
    thickness = _number(doc.get("SliceThickness"))
    if thickness is None:
        return []
    sizes = _spacings(affine)
    direction = doc.get("SliceEncodingDirection")
    axis = SLICE_ENCODING.get(direction) if isinstance(direction, str) else None
    if axis is None:
        axis = int(np.argmax(sizes)) if np.ptp(sizes) > GAP_SHARE * sizes.max() else 2  # equal voxels: dcm2niix's k
    spacing = _number(doc.get("SpacingBetweenSlices")) or float(sizes[axis])
    return [(axis, thickness, spacing, f"its BIDS sidecar {p.name}")]


def from_nrrd(hdr: dict, domain: list, affine) -> list[tuple[int, float, float, str]]:
    """The same from a NRRD header's `thicknesses` (one per axis, NaN for the tensor axis), against its spacings."""
    values = hdr.get("thicknesses")
    if values is None:
        return []
    values = np.asarray(values, dtype=float).ravel()
    if values.size <= max(domain):
        return []
    sizes = _spacings(affine)
    found = [(i, _number(values[d]), float(sizes[i])) for i, d in enumerate(domain)]
    return [(i, t, s, "its NRRD thicknesses field") for i, t, s in found if t is not None]


def from_nrrd_file(path, hdr: dict | None, affine, domain: list | None = None) -> list[tuple[int, float, float, str]]:
    """The same for a NRRD file (its header `hdr`, read here where None; its image axes `domain`, else those whose
    kind is no tensor's): its thicknesses, a sidecar beside it, or its run record; nothing where it is not read."""
    from .records import RUN_KEY, read_run

    if hdr is None:
        try:
            import nrrd

            hdr = nrrd.read_header(str(path))
        except Exception:  # noqa: BLE001 - a header that is not read says nothing of its slices
            return []
    if domain is None:
        kinds = [str(k).strip().lower() for k in hdr.get("kinds", [])]
        domain = [i for i, k in enumerate(kinds) if k in ("domain", "space")]
        if len(domain) != 3:
            return []
    return (from_nrrd(hdr, domain, affine) or from_sidecar(path, affine)
            or from_record(read_run(hdr.get(RUN_KEY)), affine))


SOURCES = {"degrade": "its iqt degrade run record, of --slice-gap or of the DWI's BIDS sidecar",  # the run records
           # that say a file's slices
           "fit": "the BIDS sidecar of the DWI it was fitted from, as its iqt fit run record keeps it"}


def from_record(record: dict | None, affine) -> list[tuple[int, float, float, str]]:
    """The same from the run record (fileio/records.py) of `iqt degrade --slice-gap N`, or of `iqt fit` of a DWI whose
    sidecar gave a gap: its `slices` (thickness and spacing per axis code, mapped onto this file's axes, which another
    tool may have reordered since), or for a degrade record without them the factors and gap along the voxel axes."""
    options = record.get("options") if isinstance(record, dict) else None
    if not isinstance(options, dict) or options.get("command") not in SOURCES:
        return []
    source = SOURCES[options["command"]]
    slices = record.get("slices")
    if isinstance(slices, dict):
        from nibabel import aff2axcodes

        now = aff2axcodes(np.asarray(affine, float))
        out = []
        for code, pair in slices.items():
            t, s = (pair + [None, None])[:2] if isinstance(pair, list) else (None, None)  # a crafted record: nothing
            axis = next((i for i, c in enumerate(now) if c in (code, _OPPOSITE.get(code))), None)
            if axis is not None and _number(t) and _number(s):
                out.append((axis, float(t), float(s), source))
        return out
    gap = options.get("slice_gap")
    if not isinstance(gap, int) or gap <= 0:
        return []
    try:
        from ..core import grid

        f = grid.factors(options.get("factor"))
    except Exception:  # noqa: BLE001 - a record this project did not write says nothing
        return []
    sizes = _spacings(affine)
    refined = [i for i, k in enumerate(f) if k > 1]
    rest = [i for i in range(3) if i not in refined]
    if rest and refined and min(sizes[refined]) < max(sizes[rest]) * (1 - GAP_SHARE):
        # a thinner axis refined than one left: the file was re-stored in another voxel order since (the gap's spacing
        # is the largest), so the factors go to the largest voxels
        by_size = sorted(range(3), key=lambda i: -sizes[i])
        f = [0, 0, 0]
        for i, k in zip(by_size, sorted((int(k) for k in grid.factors(options.get("factor"))), reverse=True)):
            f[i] = k
    return [(i, float(sizes[i]) * k / (k + gap), float(sizes[i]), source) for i, k in enumerate(f) if k > 1]


_OPPOSITE = dict(zip("LRAPSI", "RLPAIS"))


def record_of_degrade(affine, f, slice_gap: int, input_slices=()) -> dict:
    """What `iqt degrade` records of its output's slices (output `affine`, factors `f`): {axis code: [thickness,
    spacing]} in mm, of --slice-gap and of the DWI's own slices, `input_slices` (`from_sidecar` of the DWI, on the same
    voxel axes; else contiguous at the voxel size): a block of k slices t thick s apart is k*t thick, or (k-1)*s + t
    where they overlap, and (k + slice_gap)*s apart, as README says. The thickness had been scaled to the output's
    voxel size (a 400 mm spacing recorded 0.06 mm thick 8 mm apart where fit records 3 mm thick 400 mm apart) and
    overlapping slices' k*t taken as the block's (a review of the degrade record)."""
    sizes = _spacings(affine)
    given = {i: (t, s) for i, t, s, _ in input_slices}
    found = []
    for i, k in enumerate(f):
        n = slice_gap if k > 1 else 0
        t, s = given.get(i, (None, None))
        if t is None:
            t = s = float(sizes[i]) / (k + n)
        found.append((i, min(k * t, (k - 1) * s + t), (k + n) * s, ""))
    return record(found, affine)


def record(found, affine) -> dict:
    """{axis code: [thickness, spacing]} in mm of the gapped axes in `found`, as a run record keeps them (by axis code:
    another tool may reorder the file's axes later); {} where there is none."""
    from nibabel import aff2axcodes

    codes = aff2axcodes(np.asarray(affine, float))
    return {codes[i]: [round(t, 6), round(s, 6)] for i, t, s, _ in gapped(found) if codes[i] is not None}


def gapped(found) -> list:
    """The entries of `found` whose slices are thinner than their spacing by more than GAP_SHARE of it."""
    return [(i, t, s, src) for i, t, s, src in found if s - t > GAP_SHARE * s]


def warn_if_gapped(path, affine, found) -> None:
    """One warning line for the axes whose slices are thinner than their spacing (a gap); none for contiguous or
    overlapping slices."""
    from ..core.orientation import axis_words
    from .records import note_run

    gaps = gapped(found)
    if not gaps:
        return
    note_run(input_slices=record(gaps, affine))  # in the outputs' run record: their header says it too
    # named as the factors' line names it (core/orientation.py axis_words): one rule, one wording
    where = "; ".join(_("{thick} mm thick {apart} mm apart along voxel axis {axis}, {direction}, a {gap} mm gap").format(
        thick=f"{t:.3g}", apart=f"{s:.3g}", axis="ijk"[i], direction=axis_words(affine, i), gap=f"{s - t:.3g}")
        for i, t, s, _source in gaps)
    # read by every command that reads a tensor (a reference in `iqt evaluate` too): advice that holds for each
    warnings.warn(_("{file}: its slices are {slices} ({source}): nothing between them was measured, and the learned "
                    "models were trained on contiguous slices, so an upsampled result's detail between these slices is "
                    "inferred; read it with care, beside cubic interpolation of the same input").format(
        file=path, slices=where, source=gaps[0][3]), IQTWarning, stacklevel=3)
