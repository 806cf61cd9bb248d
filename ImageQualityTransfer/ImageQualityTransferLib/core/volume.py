"""`Volume`: a voxel array with its voxel-to-world affine, the unit every engine part exchanges."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("scalar", "mask", "tensor", "dwi")


def as_array(x, dtype=None) -> np.ndarray:
    """The array of a `Volume`, or `x` itself as an array; cast to `dtype` when given (no copy where it already is)."""
    a = np.asarray(getattr(x, "data", x))
    return a if dtype is None else a.astype(dtype, copy=False)


def voxel_sizes(affine) -> np.ndarray:
    """Voxel size along each voxel axis (mm): the lengths of the affine's first three columns."""
    return np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))


def affine_problem(affine) -> str | None:
    """What keeps a 4x4 `affine` from placing voxels in the world: non-finite entries, or a zero or dependent voxel
    axis (a singular 3x3 part: its columns, normalised, span less than a 1e-6 volume); None where it places them. The
    one test for a Volume in memory and for a file's header (fileio.nifti)."""
    a = np.asarray(affine, dtype=np.float64)
    if np.all(np.isfinite(a[:3, :3])) and not np.all(np.isfinite(a[:3, 3])):
        return "a non-finite (NaN or Inf) origin"
    if not np.all(np.isfinite(a)):
        return "non-finite (NaN or Inf) entries"
    m = a[:3, :3]
    norms = np.linalg.norm(m, axis=0)
    if np.any(norms == 0) or abs(np.linalg.det(m / norms)) < 1e-6:
        return "a zero or dependent voxel axis"
    return None


@dataclass
class Volume:
    """Array + 4x4 voxel->RAS(mm) affine.

    kind:
      - "tensor": data (X,Y,Z,6) float, lower-triangular order Dxx,Dxy,Dyy,Dxz,Dyz,Dzz, mm^2/s,
        components in the voxel axes of this volume (docs/conventions.md);
      - "dwi": data (X,Y,Z,N) with `bvals` (N,) and `bvecs` (N,3) in voxel axes;
      - "scalar": (X,Y,Z) or (X,Y,Z,K); "mask": (X,Y,Z) bool.
    meta: what the source said (path, original component order, ...), carried along for writing back.
    """

    data: np.ndarray
    affine: np.ndarray
    kind: str = "scalar"
    bvals: np.ndarray | None = None
    bvecs: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")
        problem = affine_problem(self.affine)
        if problem is not None:  # a NaN affine gave NaN output geometry, a singular one nibabel's "Unable to find out axis"
            raise ValueError(f"the affine {np.round(self.affine, 4).tolist()} has {problem}, so the voxels have no place in "
                             "the world; give the voxel-to-world matrix of the image (e.g. np.diag([2.0, 2.0, 2.0, 1.0]) "
                             "for 2 mm voxels, or a NIfTI image's img.affine)")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.data.ndim < 3:
            raise ValueError(f"a volume needs at least 3 dimensions, got shape {self.data.shape}")
        if self.kind == "tensor" and (self.data.ndim != 4 or self.data.shape[3] != 6):
            raise ValueError(f"a tensor volume has shape (X,Y,Z,6), got {self.data.shape}")

    @property
    def source(self) -> str:
        """"<file it was read from>: " to start a message about it; "" for a volume made in memory."""
        return f"{self.meta['path']}: " if self.meta.get("path") else ""

    @property
    def shape3(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape[:3])

    @property
    def voxel_size(self) -> np.ndarray:
        return voxel_sizes(self.affine)

    def replace(self, data=None, affine=None, kind=None, **changes) -> "Volume":
        """A new Volume with some fields replaced (the original is never modified)."""
        return Volume(
            data=self.data if data is None else data,
            affine=self.affine if affine is None else affine,
            kind=self.kind if kind is None else kind,
            bvals=changes.get("bvals", self.bvals),
            bvecs=changes.get("bvecs", self.bvecs),
            meta=dict(changes.get("meta", self.meta)),
        )
