"""Reorientation to the closest canonical (RAS) voxel axes and back, tensor components included.

Flipping or permuting voxel axes changes the frame the tensor components are expressed in, so the
components are transformed with the same signed permutation (D' = P D P^T).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import grid, tensors
from .errors import IQTError
from .volume import Volume


def _nio():
    """nibabel's orientation helpers, imported on first use (the method registry imports this without nibabel)."""
    import nibabel.orientations

    return nibabel.orientations


# a fixed turn of the world (radians, about a generic axis) before the closest axes are read: a voxel axis at exactly
# 45 degrees between two world axes is then given to the same one whatever the storage order (nibabel's choice at the
# tie followed the float rounding of each storage's affine, and a 45-degree scan's output had depended on it by up to
# 1.6e-3 mm^2/s; a thick-slice audit)
TIE_TURN = 1e-4
_TIE_AXIS = np.array([0.267, 0.535, 0.802])


def io_orientation(affine) -> np.ndarray:
    """nibabel's io_orientation of `affine` (per voxel axis, the closest world axis and its direction), with ties
    broken by the world's TIE_TURN alike for every storage order of one grid."""
    a = np.asarray(affine, np.float64).copy()
    a[:3, :3] = _tie_turn() @ a[:3, :3]
    return _nio().io_orientation(a)


def _tie_turn() -> np.ndarray:
    """TIE_TURN about _TIE_AXIS as a matrix (Rodrigues' formula, numpy alone: the Slicer module calls this before
    the engine's packages are installed; scipy's Rotation failed in Testing/slicer/test_fresh_install.py's run, which
    blocks torch by a None in sys.modules)."""
    u = _TIE_AXIS / np.linalg.norm(_TIE_AXIS)
    k = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    return np.eye(3) + np.sin(TIE_TURN) * k + (1 - np.cos(TIE_TURN)) * (k @ k)


@dataclass(frozen=True)
class Reorientation:
    """Maps a volume of a given storage order to canonical axes (`apply`) and back (`undo`)."""

    ornt: np.ndarray  # nibabel orientation: for each input axis, (output axis, flip)

    @classmethod
    def to_canonical(cls, affine) -> "Reorientation":
        current = io_orientation(affine)
        return cls(_nio().ornt_transform(current, _nio().axcodes2ornt("RAS")))

    @classmethod
    def permutation(cls, order) -> "Reorientation":
        """Axes permuted without flips: new axis k is old axis order[k] (grid.axis_order)."""
        ornt = np.zeros((3, 2))
        for new, old in enumerate(order):
            ornt[int(old)] = (new, 1)
        return cls(ornt)

    def then(self, other: "Reorientation") -> "Reorientation":
        """This reorientation followed by `other`, as one."""
        ornt = np.zeros((3, 2))
        for src, (dst, flip) in enumerate(self.ornt):
            ornt[src] = (other.ornt[int(dst)][0], flip * other.ornt[int(dst)][1])
        return Reorientation(ornt)

    @property
    def is_identity(self) -> bool:
        return bool(np.array_equal(self.ornt, [[0, 1], [1, 1], [2, 1]]))

    def inverse(self) -> "Reorientation":
        inv = np.zeros_like(self.ornt)
        for src, (dst, flip) in enumerate(self.ornt):
            inv[int(dst)] = (src, flip)
        return Reorientation(inv)

    def signed_permutation(self) -> np.ndarray:
        """3x3 P with new_axis_vector = P @ old_axis_vector."""
        p = np.zeros((3, 3))
        for src, (dst, flip) in enumerate(self.ornt):
            p[int(dst), src] = flip
        return p

    def apply(self, vol: Volume) -> Volume:
        if self.is_identity:
            return vol
        data = _nio().apply_orientation(vol.data, self.ornt)
        affine = vol.affine @ _nio().inv_ornt_aff(self.ornt, vol.shape3)
        bvecs = vol.bvecs
        if vol.kind == "tensor":
            data = tensors.rotate(data, self.signed_permutation())
        if bvecs is not None:
            bvecs = bvecs @ self.signed_permutation().T
        return vol.replace(data=np.ascontiguousarray(data), affine=affine, bvecs=bvecs)

    def undo(self, vol: Volume) -> Volume:
        return self.inverse().apply(vol)


def is_sheared(affine, atol: float = 1e-4) -> bool:
    """Whether the voxel axes of `affine` are not at right angles: a grid that tractography (dipy) and Slicer's tensor
    NRRD (a rotation for its measurement frame) cannot take."""
    m = np.asarray(affine, dtype=np.float64)[:3, :3]
    m = m / np.linalg.norm(m, axis=0)
    return not np.allclose(m.T @ m, np.eye(3), atol=atol)


def slice_axis(affine, f) -> str | None:
    """The world axis ("R", "A" or "S" of canonical RAS) along which factors `f` (in the voxel axes of a volume
    with `affine`) refine the most: the thick-slice direction, whatever the storage order; None when isotropic."""
    k = grid.largest_axis(grid.permute(f, Reorientation.to_canonical(affine).ornt))
    return None if k is None else "RAS"[k]


# a chosen threshold, not a measured one: a voxel axis further than this from the world axis it is given
# (`_closest_world_axes`) is said to be oblique, not along it: at 45 degrees (a scan turned so) the closest world axis
# is a tie, and its letter had been said as if the axis lay along it
OBLIQUE_DEGREES = 30.0
WORLD_WORDS = ("left-right", "anterior-posterior", "superior-inferior")


def axis_words(affine, axis: int) -> str:
    """The anatomical direction of voxel axis `axis` (0, 1, 2) of `affine`, one wording for the factors' line and the
    slice-gap line (fileio/slices.py): the world axis `_closest_world_axes` gives it (as through_plane_axis and the
    reorientation do, so an axis is named alike everywhere and no two voxel axes share a name) with its words
    ("S (superior-inferior)"); where the axis is more than OBLIQUE_DEGREES (as printed) from that world axis,
    "oblique" with its angles to the closest world axis and to the one it is given, or the next closest ("oblique (45.0°
    from left-right, 45.0° from anterior-posterior)"; a sheared header's axis near R where R is another axis's:
    "oblique (5.0° from left-right, 85.0° from superior-inferior)", Testing/apps/test_slice_gap.py)."""
    col = np.asarray(affine, np.float64)[:3, int(axis)]
    if not np.isfinite(np.asarray(affine, np.float64)[:3, :3]).all() or not col.any():
        return "of no direction (the header's voxel-to-world matrix is degenerate)"
    w = _closest_world_axes(affine)[int(axis)]
    if w < 0:
        return "of no direction (the header's voxel-to-world matrix is degenerate)"
    angles = _angles(col)
    if angles[w] > OBLIQUE_DEGREES:
        closest = [int(a) for a in np.argsort(angles, kind="stable")]
        shown = [closest[0], w if closest[0] != w else closest[1]]
        return "oblique (" + ", ".join(f"{angles[a]:.1f}° from {WORLD_WORDS[a]}" for a in shown) + ")"
    return f"{'RAS'[w] if col[w] > 0 else 'LPI'[w]} ({WORLD_WORDS[w]})"


def _angles(col) -> np.ndarray:
    """A column's angles (degrees) to the three world axes, each rounded to the tenth of a degree that is printed: the
    test against OBLIQUE_DEGREES is on the printed figure, so an axis said oblique is never "30.0°" from its own."""
    angles = np.degrees(np.arccos(np.clip(np.abs(col / np.linalg.norm(col)), 0.0, 1.0)))
    return np.round(angles, 1)


def factor_axes(f, affine) -> str:
    """Per-axis factors with the anatomical direction each refined voxel axis lies along (`axis_words`: "2 along voxel
    axis k, S (superior-inferior)"); "" for isotropic factors. One sentence for `iqt report`'s page and `iqt upsample`'s
    line (a page had said "×1,1,2" of a PSR scan without saying which way, an audit)."""
    f = grid.factors(f, identity_ok=True)
    if grid.isotropic(f) is not None:
        return ""
    return ", ".join(f"{k} along voxel axis {'ijk'[a]}, {axis_words(affine, a)}" for a, k in enumerate(f) if k > 1)


def _closest_world_axes(affine) -> list[int]:
    """Per voxel axis, its closest world axis (0, 1, 2: R, A, S) as `io_orientation` assigns them (nibabel's algorithm
    and TIE_TURN) in numpy alone: the Slicer module calls it before nibabel is installed. A greedy assignment: the
    voxel axis most nearly along one world axis takes it first, so at 45-55 degrees of obliquity an axis may be given
    S although another lies closer to S."""
    rzs = _tie_turn() @ np.asarray(affine, np.float64)[:3, :3]
    zooms = np.sqrt((rzs * rzs).sum(0))
    zooms[zooms == 0] = 1
    p, s, qs = np.linalg.svd(rzs / zooms, full_matrices=False)
    keep = s > s.max() * 3 * np.finfo(s.dtype).eps
    r = p[:, keep] @ qs[keep]
    out = [-1, -1, -1]
    for ax in np.argsort(np.min(-(r ** 2), axis=0), kind="stable"):
        if not np.allclose(r[:, ax], 0):
            out[ax] = int(np.argmax(np.abs(r[:, ax])))
            r[out[ax], :] = 0
    return out


def through_plane_axis(voxel_size, affine, along: int = 2) -> int:
    """The voxel axis a through-plane factor refines, one rule for the CLI's through-plane --model without --factor
    (apps/cli/options.factors) and the Slicer module's through-plane mode (slicer/upsampling.py): the thick axis, one
    at least grid.THICK_RATIO times each of the other two (grid.thick_axis); else (near-isotropic, or two thick axes)
    the voxel axis that `_closest_world_axes` gives the world axis `along` (0, 1, 2: R, A, S), the model's own slice
    axis (S for the shipped 1,1,k models and the module). The largest spacing within 2 % had split an in-plane axis of
    2.29x2.29x2.2 mm axial scans with the 1,1,3 model (a review of the through-plane rule)."""
    if not np.isfinite(np.asarray(affine, np.float64)[:3, :3]).all():  # SVD's LinAlgError else (a review)
        raise IQTError("the input's voxel-to-world matrix holds NaN or infinite values, so the through-plane axis "
                       "cannot be read from it: fix the input's header, or give the factors along each voxel axis")
    if not all(np.isfinite(x) and x > 0 for x in np.asarray(voxel_size, np.float64)):
        raise IQTError(f"the input's voxel size {tuple(float(x) for x in voxel_size)} is not three positive numbers, so "
                       "the through-plane axis cannot be read from it: fix the input's header")
    thick = grid.thick_axis(voxel_size)
    if thick is not None:
        return thick
    world = _closest_world_axes(affine)
    if int(along) not in world:
        raise IQTError(f"the input's voxel-to-world matrix has no voxel axis along {'RAS'[int(along)]} (its axes are "
                       "degenerate), so the through-plane axis cannot be read: fix the input's header, or give the "
                       "factors along each voxel axis")
    return world.index(int(along))


def reorient(vol: Volume, axcodes: str) -> Volume:
    """The same image re-stored with voxel axes `axcodes` (e.g. "LAS", "PSR"). Only the tests use it: they store an
    input in other axis orders to check that what the engine makes of it does not depend on the order."""
    ornt = _nio().ornt_transform(io_orientation(vol.affine), _nio().axcodes2ornt(tuple(axcodes)))
    return Reorientation(ornt).apply(vol)


def onto_grid(data: np.ndarray, affine: np.ndarray, shape, ref_affine: np.ndarray, tol: float = 1e-3):
    """A scalar image's `data` (voxel-to-world `affine`) re-indexed onto the grid `shape`/`ref_affine` when its voxel
    centres are that grid's points stored in another axis order or direction (a NIfTI mask beside an NRRD DWI, say);
    None when they are not the same points."""
    m = np.linalg.inv(np.asarray(ref_affine, float)) @ np.asarray(affine, float)  # mask voxel -> reference voxel
    r, t = m[:3, :3], m[:3, 3]
    perm = np.round(r)
    if not (np.allclose(r, perm, atol=tol) and np.allclose(t, np.round(t), atol=tol)
            and sorted(np.abs(perm).sum(0)) == [1, 1, 1] and sorted(np.abs(perm).sum(1)) == [1, 1, 1]):
        return None
    idx = np.indices(tuple(shape)).reshape(3, -1).astype(float)
    src = np.rint(np.linalg.inv(perm) @ (idx - np.round(t)[:, None])).astype(int)
    data = np.asarray(data)
    if (src < 0).any() or any((src[k] >= data.shape[k]).any() for k in range(3)) or np.prod(data.shape[:3]) != idx.shape[1]:
        return None
    return data[src[0], src[1], src[2]].reshape(tuple(shape))
