"""Deterministic DTI tractography (dipy), tract-density maps and their comparison.

Tracking follows the principal eigenvector of the tensor with dipy's EuDX direction getter
(`PeaksAndMetrics` + `LocalTracking`): at each step the peaks of the 8 neighbouring voxels are
interpolated, the one closest to the previous direction within `angle` degrees is taken, and a
streamline stops where FA drops below `fa_threshold` (dipy `ThresholdStoppingCriterion`) or it leaves
the image. EuDX stores a peak as an index into a sphere: we use a finely subdivided hemisphere
(about 5,800 directions, under 1.5 degrees from any direction) and the nearest vertex of each voxel's
principal eigenvector.

Frames: our tensors are expressed in the voxel axes of their image (docs/conventions.md). dipy's local tracker
maps the seeds into voxel coordinates with the inverse affine, steps along directions expressed in the
voxel axes (scaled by the voxel size, so steps are in mm) and maps the points back with the affine; so
voxel-axis eigenvectors are exactly what it needs, whatever the storage order or obliquity, and the
streamlines come out in world RAS millimetres. The fields are tracked in the closest canonical (RAS) voxel order
(`canonical_fields`), so that the sphere's snapping is the same for every storage order. Seeds are given in world millimetres too, so the same
seeds serve a low-res and a high-res volume of one subject; random seeds and a seed ROI's points are drawn in the
closest canonical voxel order as well (`_canonical_mask`), the same world points for every storage order.

Outputs: the streamlines in RAS millimetres, written as `.trk` or VTK polydata by fileio/tracts.py.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, replace
from functools import lru_cache

import numpy as np

from ..core import grid, tensors
from ..core.errors import IQTError
from ..core.volume import Volume
from ..core.words import listed

# dipy 1.12 flags EuDX in LocalTracking as deprecated (still supported; track_fields uses it): that one message left
# out for the whole process, registered once here, not by warnings.catch_warnings around each run, which changes the
# process's filters and loses the warnings other threads give meanwhile
warnings.filterwarnings("ignore", message="Using EuDXDirectionGetter-based objects", category=DeprecationWarning)


HUMAN_BRAIN_MM = 120.0  # a brain at least this long (its largest extent) is tracked with the human lengths below
HUMAN_LENGTHS = {"step": 0.5, "min_length": 10.0, "max_length": 250.0}  # mm, for a human brain


@dataclass
class TrackingSettings:
    """fa_threshold: stop where FA falls below it; step: mm; angle: the largest turn per step (degrees);
    density: seeds per voxel axis in each seed voxel (density 2 = 8 seeds per voxel);
    min_length / max_length: streamlines outside [min_length, max_length] mm are dropped.

    step, min_length and max_length left None (the default) take their human values (HUMAN_LENGTHS: 0.5, 10 and 250 mm)
    scaled to the brain's size (`resolved`): a brain at least HUMAN_BRAIN_MM long gets exactly those, a smaller one
    (a rodent's, ~15-30 mm) the same lengths times its length over HUMAN_BRAIN_MM, so that tracking keeps the same
    geometry relative to the brain (at 0.3 mm voxels a 10 mm minimum dropped 97 % of the streamlines). brain_mm, scale
    and scaled record what `resolved` measured, the factor, and which lengths it scaled."""

    fa_threshold: float = 0.2
    step: float | None = None
    angle: float = 45.0
    density: int = 1
    min_length: float | None = None
    max_length: float | None = None
    brain_mm: float | None = None
    scale: float | None = None
    scaled: tuple = ()

    @property
    def is_resolved(self) -> bool:
        return all(getattr(self, k) is not None for k in HUMAN_LENGTHS)

    def human(self) -> "TrackingSettings":
        """These settings with the lengths not given at their human values (HUMAN_LENGTHS), unscaled."""
        return replace(self, **{k: v for k, v in HUMAN_LENGTHS.items() if getattr(self, k) is None})

    def resolved(self, where, affine) -> "TrackingSettings":
        """These settings with the lengths not given scaled to the brain held by the voxels `where` (the voxels with a
        tensor) on the grid `affine` (brain_size_factor); settings whose lengths are all given come back as they are."""
        if self.is_resolved:
            return self
        brain = grid.extent_mm(where, affine)
        f = brain_size_factor(brain)
        missing = tuple(k for k in HUMAN_LENGTHS if getattr(self, k) is None)
        values = {k: float(f"{HUMAN_LENGTHS[k] * f:.6g}") for k in missing}  # 1.7, not 1.7000000000000002
        out = replace(self, **values, brain_mm=round(brain, 2), scale=f, scaled=missing if f != 1.0 else ())
        if "max_length" in missing and self.min_length is not None and not self.min_length < out.max_length:
            raise IQTError(f"--min-length {self.min_length:g}: at or above the longest streamline kept, "
                           f"{out.max_length:.3g} mm ({HUMAN_LENGTHS['max_length']:g} mm scaled to this brain, "
                           f"{brain:.3g} mm long); give a shorter --min-length or a --max-length above it")
        return out

    def check(self) -> "TrackingSettings":
        """The settings given are refused in one line where out of range (lengths left None: checked once resolved)."""
        if not 0.0 <= self.fa_threshold < 1.0:
            raise IQTError(f"--fa-threshold {self.fa_threshold}: give a value in [0, 1), for example 0.2")
        if self.step is not None and not 0 < self.step < math.inf:
            raise IQTError(f"--step {self.step}: the step must be a positive length in mm, for example 0.5")
        if not 0.0 < self.angle <= 90.0:
            raise IQTError(f"--angle {self.angle}: give the largest turn per step in degrees, in (0, 90], for example 45")
        if int(self.density) != self.density or self.density < 1:
            raise IQTError(f"--density {self.density}: give a whole number of seeds per voxel axis, at least 1")
        if self.min_length is not None and not 0 <= self.min_length < math.inf:
            raise IQTError(f"--min-length {self.min_length}: give the shortest streamline kept in mm, 0 or more, for example 10")
        if self.min_length is not None and self.max_length is None and not self.min_length < HUMAN_LENGTHS["max_length"]:
            raise IQTError(f"--min-length {self.min_length:g}: at or above the longest streamline kept, "
                           f"{HUMAN_LENGTHS['max_length']:g} mm on a human brain (less on a smaller one); give a shorter "
                           "--min-length or a --max-length above it")
        if self.max_length is not None and not (self.min_length or 0.0) < self.max_length < math.inf:
            shortest = (f"--min-length {self.min_length:g}" if self.min_length is not None else
                        f"the shortest kept ({HUMAN_LENGTHS['min_length']:g} mm on a human brain, less on a smaller one)")
            raise IQTError(f"--max-length {self.max_length}: give the longest streamline kept in mm, a finite length above "
                           f"{shortest}, for example 250")
        # a streamline of max_length / step < 2 points: dipy's LocalTracking raised "maxlen must be greater than or equal
        # to minlen" (an internal error; under --propagate after the network had run); track() takes ceil of it
        if self.step is not None:
            longest = self.max_length if self.max_length is not None else HUMAN_LENGTHS["max_length"]
            if not self.step < longest:
                given = "--step" if "step" not in self.scaled else "the step"
                kept = (f"--max-length {longest:g}" if self.max_length is not None and "max_length" not in self.scaled
                        else f"the longest streamline kept, {longest:g} mm" + ("" if self.max_length is not None else
                                                                              " on a human brain"))
                raise IQTError(f"{given} {self.step:g}: at or above {kept}, so no streamline has two points; give a "
                               f"step well below it (the default is {HUMAN_LENGTHS['step']:g} mm on a human brain) or a "
                               "longer --max-length")
        return self


def tracking_record(s: TrackingSettings) -> dict:
    """The settings a tracking ran with, as JSON records them: the lengths in mm, and the brain length and factor they
    were scaled by (brain_mm, scale, scaled: which lengths; scale 1 for a human brain)."""
    d = asdict(s)
    d["scaled"] = list(d["scaled"])
    return d


def brain_size_factor(brain_mm: float) -> float:
    """The factor on the human lengths for a brain `brain_mm` long: 1 from HUMAN_BRAIN_MM on (an adult human brain: the
    four dev subjects' brain masks run 173-195 mm along their longest voxel axis), else its length over HUMAN_BRAIN_MM to 3 significant figures
    (1 where nothing was measured)."""
    if not brain_mm > 0 or brain_mm >= HUMAN_BRAIN_MM:
        return 1.0
    return float(f"{brain_mm / HUMAN_BRAIN_MM:.3g}")


def tensor_support(t) -> np.ndarray:
    """The voxels holding a tensor (finite, not all zero): the brain the tracking lengths are scaled to."""
    t = np.asarray(getattr(t, "data", t))
    return np.isfinite(t).all(axis=-1) & np.any(t != 0, axis=-1)


def warn_long_step(s, voxel_size) -> None:
    """One warning where the step is longer than the voxels: each step then jumps over voxels whose direction it never
    reads (a 100 mm step on 3 mm voxels ran without a word: a tractography audit; propagation too: another)."""
    import warnings

    from ..core.errors import IQTWarning

    if s.step > max(voxel_size):
        warnings.warn(f"--step {s.step:g} mm is longer than the voxels ({max(voxel_size):.3g} mm): each step jumps "
                      "over voxels whose direction it never reads, so streamlines cut corners; give a step below the "
                      "voxel size (the default is 0.5 mm on a human brain)", IQTWarning, stacklevel=3)


def no_streamline_reason(s, outside: int, n_seeds: int, masked: bool) -> str:
    """Why no streamline was tracked from `n_seeds` seeds, `outside` of them outside the tracked region (the tensors,
    within --mask where `masked`: one was given), and what to change: the same words for `iqt track` and propagation
    (it had named neither the mask nor the lengths: a tractography audit)."""
    region = "--mask" if masked else "the voxels holding tensors"
    if n_seeds and outside == n_seeds:
        return f"every one lies outside {region}, where no streamline starts; give seeds inside it"
    return (f"each stops where FA falls below {s.fa_threshold:g} (--fa-threshold)" + (" or it leaves --mask" if masked
            else "") + f" and is kept only from {s.min_length:g} to {s.max_length:g} mm long (--min-length, "
            "--max-length); give seeds in the white matter, a lower --fa-threshold or other lengths")


def scaling_line(s) -> str | None:
    """One line naming the lengths scaled to a brain smaller than a human's, None where none was."""
    d = asdict(s) if not isinstance(s, dict) else s
    if not d or not d.get("scaled"):
        return None
    names = {"step": ("step", "--step"), "min_length": ("min length", "--min-length"), "max_length": ("max length", "--max-length")}
    vals = ", ".join(f"{names[k][0]} {d[k]:.3g} mm" for k in d["scaled"])
    opts = listed([names[k][1] for k in d["scaled"]], "or")
    return (f"tracking lengths scaled to the brain's size ({d['brain_mm']:.3g} mm long, x{d['scale']:g} of the human "
            f"defaults, which apply from {HUMAN_BRAIN_MM:g} mm): {vals}; give {opts} to set them")


def check_memory(n_seeds: int, s: TrackingSettings) -> None:
    """Seeds and streamlines that could pass this machine's memory are refused before any work (--density 1000,
    --step 1e-9 or --max-length 1e9 ended out of memory): each seed's streamline may hold up to max_length / step
    points, and dipy keeps two buffers of that many (against the memory core.memory.memory_limit reads)."""
    from ..core.memory import memory_limit

    limit = memory_limit()
    if limit is None:  # not POSIX: left to the allocation itself
        return
    points = math.ceil(s.max_length / s.step) + 1
    need = n_seeds * (3 * 8 + points * 3 * 4) + 2 * points * 3 * 8
    if need > limit:
        raise IQTError(f"--density {s.density}, --step {s.step:g} and --max-length {s.max_length:g}: {n_seeds:,} seeds with "
                       f"streamlines of up to {points:,} points could take {need / 2**30:,.1f} GiB, more than this process's "
                       f"{limit / 2**30:,.1f} GiB of memory; lower --density or --max-length, or raise --step")


@lru_cache(maxsize=1)
def tracking_sphere():
    """A hemisphere of about 5,800 directions (repulsion724 subdivided twice)."""
    from dipy.core.sphere import HemiSphere
    from dipy.data import get_sphere

    return HemiSphere.from_sphere(get_sphere(name="repulsion724")).subdivide(n=2)


@lru_cache(maxsize=1)
def _sphere_tree():
    from scipy.spatial import cKDTree

    v = tracking_sphere().vertices
    return cKDTree(np.concatenate([v, -v])), len(v)


_LUT_STEPS = 720  # polar steps of the direction lookup table (0.25 degrees)


@lru_cache(maxsize=1)
def _vertex_lut() -> np.ndarray:
    """Nearest hemisphere vertex for every cell of a (polar, azimuth) grid of 0.25 degrees."""
    tree, n = _sphere_tree()
    th = (np.arange(_LUT_STEPS) + 0.5) * np.pi / _LUT_STEPS
    ph = (np.arange(2 * _LUT_STEPS) + 0.5) * np.pi / _LUT_STEPS - np.pi
    T, P = np.meshgrid(th, ph, indexing="ij")
    d = np.stack([np.sin(T) * np.cos(P), np.sin(T) * np.sin(P), np.cos(T)], -1).reshape(-1, 3)
    _, idx = tree.query(d)
    return (idx % n).astype(np.int32).reshape(T.shape)


def nearest_vertex(directions: np.ndarray) -> np.ndarray:
    """Index of the sphere vertex closest to each (unsigned) direction (...,3), by a 0.25-degree lookup table."""
    d = np.nan_to_num(np.asarray(directions, dtype=np.float64))
    norm = np.linalg.norm(d, axis=-1)
    norm = np.where(norm > 0, norm, 1.0)
    z = np.clip(d[..., 2] / norm, -1.0, 1.0)
    it = np.minimum((np.arccos(z) * (_LUT_STEPS / np.pi)).astype(np.int64), _LUT_STEPS - 1)
    ip = np.minimum(((np.arctan2(d[..., 1], d[..., 0]) + np.pi) * (_LUT_STEPS / np.pi)).astype(np.int64), 2 * _LUT_STEPS - 1)
    return _vertex_lut()[it, ip]


def principal_directions(t: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Principal eigenvector (voxel axes) at the voxels `where`, zero elsewhere; (X,Y,Z,3)."""
    out = np.zeros(t.shape[:3] + (3,), np.float64)
    if where.any():
        out[where] = tensors.principal_vector(t[where])
    return out


def tracking_fields(tensor: Volume, mask=None, fa_threshold: float = 0.2, directions=None):
    """FA (zero outside `mask`) and the principal eigenvector where FA >= fa_threshold.

    `directions` (X,Y,Z,3) replaces the eigen decomposition when given (uncertainty propagation passes
    a power-iteration estimate)."""
    t = np.asarray(tensor.data, dtype=np.float64)
    fa = tensors.fa(t)
    ok = np.isfinite(t).all(axis=-1) & np.any(t != 0, axis=-1)
    if mask is not None:
        m = np.asarray(getattr(mask, "data", mask), bool)
        if m.shape != fa.shape:
            raise IQTError(f"the tracking mask {m.shape} is not on the tensor grid {fa.shape}")
        ok &= m
    fa = np.where(ok, fa, 0.0)
    live = fa >= fa_threshold
    fa[live] = np.where(nonphysical(t[live]), 0.0, fa[live])  # read as no tissue: neither seeded nor passed through
    track = fa >= fa_threshold
    dirs = principal_directions(t, track) if directions is None else np.where(track[..., None], directions, 0.0)
    return fa, dirs


# of the largest eigenvalue: a smallest eigenvalue below -0.1 of it is read as no tissue. A white-matter tensor a
# little below zero (an OLS fit's noise: diag(1.7, 0.3, -0.05)e-3) stays a fibre: read as no tissue, one such plane
# had cut a bundle's tracts in half (a review); of the non-physical voxels with FA >= 0.2 on biqt's and cubic's outputs
# of an unmasked fit and an OLS fit at SNR 8, 0.63-0.71 lie below it (docs/accuracy.md, Tractography and lesions)
NONPHYSICAL_TOLERANCE = 0.1


def nonphysical(t: np.ndarray) -> np.ndarray:
    """Whether each (..., 6) tensor has an eigenvalue clearly below zero: its FA, clipped to [0, 1], reads up to 1 (the
    most anisotropic there is) where it has none, and streamlines had been seeded in such voxels and carried through
    them (3084 of 37394 on biqt's output of the 3 mm ortho dev scan's unmasked fit x2, every voxel a seed: a
    tractography audit)."""
    w = tensors.eigenvalues(t)
    return w[..., 0] < -NONPHYSICAL_TOLERANCE * np.abs(w[..., 2])


def _peaks(fa: np.ndarray, dirs: np.ndarray, fa_threshold: float, angle: float):
    from dipy.direction.peaks import PeaksAndMetrics

    pam = PeaksAndMetrics()
    pam.sphere = tracking_sphere()
    idx = np.zeros(fa.shape + (1,), np.intp)
    live = fa >= fa_threshold
    idx[live, 0] = nearest_vertex(dirs[live])
    pam.peak_indices = idx
    pam.peak_values = np.ascontiguousarray(fa[..., None], dtype=np.float64)
    pam.qa = pam.peak_values
    pam.peak_dirs = np.ascontiguousarray(dirs[..., None, :], dtype=np.float64)
    pam.ang_thr = float(angle)
    pam.qa_thr = float(fa_threshold)
    pam.total_weight = 0.5
    return pam


def seeds_from_mask(mask: Volume, density: int = 1) -> np.ndarray:
    """World (RAS mm) seed points: `density`^3 evenly spaced points in every voxel of the mask, listed in its closest
    canonical (RAS) voxel order: the same ROI stored otherwise gives its tracts in the same order."""
    from dipy.tracking.utils import seeds_from_mask as dipy_seeds

    m, affine = _canonical_mask(mask.data, mask.affine)
    if not m.any():
        raise IQTError("the seed mask is empty (no voxel > 0); give an ROI with at least one voxel")
    return dipy_seeds(m, affine, density=int(density))


def random_seeds(where: np.ndarray, affine: np.ndarray, n: int, rng=0) -> np.ndarray:
    """`n` world seed points drawn uniformly (with jitter inside the voxel) from the voxels `where` (on the grid of
    `affine`), in its closest canonical (RAS) voxel order: the same world points however the grid is stored."""
    where, affine = _canonical_mask(where, affine)
    rng = np.random.default_rng(rng)
    idx = np.argwhere(where)
    if len(idx) == 0:
        raise IQTError("no voxel to seed from")
    pick = idx[rng.choice(len(idx), size=min(int(n), len(idx)), replace=False)]
    ijk = pick + rng.uniform(-0.5, 0.5, size=pick.shape)
    return ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def _canonical_mask(where, affine):
    """(bool array, affine) re-stored in the closest canonical (RAS) voxel order, as `propagation.propagate` draws its
    seeds: voxels listed (np.argwhere) in stored order had made benchmark --tracts and report's seeds, so their
    streamlines and tract Dice, differ between one scan stored LAS and SLA (a thick-slice audit)."""
    from ..core.orientation import Reorientation

    v = Reorientation.to_canonical(affine).apply(Volume(np.asarray(where, bool), affine, "mask"))
    return np.asarray(v.data, bool), v.affine


def seeds_inside(seeds: np.ndarray, shape, affine) -> np.ndarray:
    """The world seed points whose nearest voxel is in the volume (`shape`, `affine`); those outside are said in one
    warning, and none inside is an IQTError (dipy stops at the first with "point outside data")."""
    from ..core.errors import IQTWarning

    seeds = off_voxel_boundaries(seeds, affine, shape)
    if not len(seeds):
        return seeds
    ijk = np.rint((seeds - np.asarray(affine)[:3, 3]) @ np.linalg.inv(np.asarray(affine)[:3, :3]).T)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(shape[:3])), axis=1)
    if not inside.any():
        raise IQTError(f"none of the {len(seeds)} seed points lies in the tensor volume's field of view; give a seed ROI "
                       "that overlaps it (on the tensor's grid, or on one in the same space)")
    if not inside.all():
        warnings.warn(f"{(~inside).sum()} of {len(seeds)} seed points lie outside the tensor volume's field of view and "
                      "were left out", IQTWarning, stacklevel=2)
    return seeds[inside]


def points_outside(points: np.ndarray, mask: Volume) -> int:
    """How many world points fall in no voxel of `mask` (its nearest voxel outside it, or outside its grid)."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    if not len(points):
        return 0
    ijk = np.rint((points - mask.affine[:3, 3]) @ np.linalg.inv(mask.affine[:3, :3]).T).astype(int)
    m = np.asarray(mask.data, bool)
    ok = np.all((ijk >= 0) & (ijk < np.asarray(m.shape)), axis=1)
    inside = np.zeros(len(points), bool)
    inside[ok] = m[tuple(ijk[ok].T)]
    return int((~inside).sum())


def track(tensor: Volume, seeds, settings: TrackingSettings | None = None, mask=None, directions=None):
    """Streamlines (list of (n,3) arrays, world RAS mm) from `seeds` (world (N,3) points, or a seed mask Volume).

    mask: optional (X,Y,Z) tracking mask on the tensor grid (tracking stops outside it)."""
    if tensor.kind != "tensor":
        raise IQTError("tracking needs a diffusion tensor volume")
    s = (settings or TrackingSettings()).check().resolved(tensor_support(tensor), tensor.affine).check()
    check_memory(int(np.count_nonzero(seeds.data)) * s.density**3 if isinstance(seeds, Volume) else len(seeds), s)
    if isinstance(seeds, Volume):
        seeds = seeds_from_mask(seeds, s.density)
    seeds = seeds_inside(seeds, tensor.shape3, tensor.affine)
    fa, dirs = tracking_fields(tensor, mask, s.fa_threshold, directions)
    return track_fields(fa, dirs, tensor.affine, seeds, s)


def track_fields(fa: np.ndarray, dirs: np.ndarray, affine: np.ndarray, seeds: np.ndarray, s: TrackingSettings):
    """`track` on precomputed FA (X,Y,Z) and principal directions (X,Y,Z,3, voxel axes); lengths not given in `s` are
    scaled to the voxels with FA > 0."""
    from dipy.tracking.local_tracking import LocalTracking
    from dipy.tracking.stopping_criterion import ThresholdStoppingCriterion

    from ..core.orientation import is_sheared

    if is_sheared(affine):  # dipy's LocalTracking refuses it with an exception of its own
        raise IQTError("the tensors' grid is sheared (its voxel axes are not at right angles), and tracking needs a "
                       "regular grid; resample the input onto one (e.g. with ANTs or FSL's flirt) and retry")
    s = s.check().resolved(np.asarray(fa) > 0, affine).check()
    if not (fa >= s.fa_threshold).any():
        return []
    seeds = off_voxel_boundaries(seeds, affine, np.shape(fa))  # as seeds_inside did (again: a no-op then)
    fa, dirs, affine = canonical_fields(fa, dirs, affine)
    pam = _peaks(fa, dirs, s.fa_threshold, s.angle)
    stop = ThresholdStoppingCriterion(np.ascontiguousarray(fa), s.fa_threshold)
    max_steps = int(np.ceil(s.max_length / s.step))
    gen = LocalTracking(pam, stop, seeds, np.asarray(affine, np.float64), step_size=s.step, maxlen=max_steps, return_all=True)
    lines = [np.asarray(sl, np.float32) for sl in gen]
    # a streamline of whole steps can measure the length limit itself, read a hair either side by float rounding (of
    # another header's affine, another voxel order): kept within a thousandth of a step of it (a tractography audit)
    tol = 1e-3 * s.step
    return [sl for sl in lines if len(sl) > 1 and s.min_length - tol <= _length(sl) <= s.max_length + tol]


BOUNDARY_TIE = 1e-4  # voxels: a seed this near a boundary between two voxels is moved off it
BOUNDARY_STEP = 1e-3  # voxels, towards higher indices of the canonical grid


def off_voxel_boundaries(seeds, affine, shape) -> np.ndarray:
    """`seeds` (world mm) moved BOUNDARY_STEP voxel off each boundary between two voxels of the grid (`affine`, `shape`)
    they lie within BOUNDARY_TIE of, towards higher indices of its canonical (RAS) voxel order (the same world direction
    however it is stored), towards lower ones on its last face (a review: moved past it, a seed had left the volume and
    ended the run in an internal error). At factor 2 a low-res seed ROI's points fall on high-res voxel corners, where
    the voxel a streamline starts from was left to the header's float rounding: the NIfTI and the NRRD of one output
    (float32 and double affines) gave 2911 and 2977 streamlines (a tractography audit). `seeds_inside` moves them, so
    that every count of seeds in or out of a mask is of the points tracked."""
    from ..core.orientation import Reorientation, _nio

    seeds = np.asarray(seeds, np.float64).reshape(-1, 3)
    if not len(seeds):
        return seeds
    re = Reorientation.to_canonical(affine)
    affine = np.asarray(affine, np.float64) @ _nio().inv_ornt_aff(re.ornt, tuple(shape[:3]))
    size = np.array([shape[int(np.flatnonzero(re.ornt[:, 0] == k)[0])] for k in range(3)], np.float64)
    v = (seeds - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    tie = np.abs(v - np.floor(v) - 0.5) < BOUNDARY_TIE
    if not tie.any():
        return seeds
    up = np.floor(v) + 0.5 + BOUNDARY_STEP
    v = np.where(tie, np.where(up > size - 0.5, up - 2 * BOUNDARY_STEP, up), v)
    return v @ affine[:3, :3].T + affine[:3, 3]


def canonical_fields(fa: np.ndarray, dirs: np.ndarray, affine: np.ndarray):
    """(fa, dirs, affine) re-stored in the closest canonical (RAS) voxel order, the directions' components with them
    (core/orientation.py): EuDX snaps each direction to a vertex of `tracking_sphere` in voxel axes, and that sphere is
    not symmetric under one axis's mirror or a permutation, so the same image stored LAS, RAS or PSR had given tracts
    up to 14 mm apart (a tractography audit)."""
    from ..core.orientation import Reorientation, _nio

    re = Reorientation.to_canonical(affine)
    if re.is_identity:
        return fa, dirs, affine
    nio = _nio()
    fa_c = np.ascontiguousarray(nio.apply_orientation(np.asarray(fa), re.ornt))
    dirs_c = np.ascontiguousarray(nio.apply_orientation(np.asarray(dirs), re.ornt) @ re.signed_permutation().T)
    return fa_c, dirs_c, np.asarray(affine, np.float64) @ nio.inv_ornt_aff(re.ornt, np.asarray(fa).shape[:3])


def _length(sl: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(sl, axis=0), axis=1).sum())


# ---------------------------------------------------------------- density and comparison


def density_map(streamlines, affine: np.ndarray, shape) -> np.ndarray:
    """Number of streamlines visiting each voxel of the grid (affine, shape) (dipy density_map)."""
    from dipy.tracking.utils import density_map as dipy_density

    shape = tuple(int(s) for s in shape[:3])
    if len(streamlines) == 0:
        return np.zeros(shape, np.int64)
    # points that leave the grid are dropped (dipy raises on them)
    inv = np.linalg.inv(affine)
    kept = []
    for sl in streamlines:
        ijk = np.rint(sl @ inv[:3, :3].T + inv[:3, 3])
        inside = np.all((ijk >= 0) & (ijk < np.array(shape)), axis=1)
        if inside.any():
            kept.append(np.asarray(sl, np.float64)[inside])
    if not kept:
        return np.zeros(shape, np.int64)
    return dipy_density(kept, affine, shape)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two binary maps (or of density maps binarised at > 0); 1 for two empty maps."""
    a = np.asarray(a) > 0
    b = np.asarray(b) > 0
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)


def false_positive_fraction(density: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of the density that falls where the reference has none."""
    d = np.asarray(density, np.float64)
    total = d.sum()
    return float("nan") if total == 0 else float(d[np.asarray(reference) <= 0].sum() / total)


def compare(density: np.ndarray, reference: np.ndarray) -> dict:
    return {"tract_dice": dice(density, reference), "tract_fp_fraction": false_positive_fraction(density, reference)}


# ---------------------------------------------------------------- tract comparison on an evaluation case

LOWRES = "low-res input"


def reference_voxels(case) -> np.ndarray:
    """The reference's voxels its streamlines are tracked in: the evaluation voxels of its brain mask
    (evaluation.evaluation_voxels: a plausible reference tensor with MD above zero), the voxels every figure uses."""
    from .evaluation import evaluation_voxels

    return evaluation_voxels(case.truth, np.asarray(case.hr_mask, bool))


def comparison_seeds(case, n: int = 2000, fa_min: float = 0.3, rng=0) -> np.ndarray:
    """World seeds shared by every volume of a case: `n` random points in the high-res reference's white
    matter (brain mask, plausible fit, FA >= fa_min; a seed outside reference_voxels starts no reference streamline)."""
    truth = np.asarray(case.truth, np.float64)
    ok = np.asarray(case.hr_mask, bool) & tensors.plausible(truth)
    wm = ok & (tensors.fa(truth) >= fa_min)
    if not wm.any():
        raise IQTError(f"no reference voxel with FA >= {fa_min} to seed from")
    return random_seeds(wm, case.hr_affine, n, rng)


def comparison_settings(case, settings: TrackingSettings | None = None) -> TrackingSettings:
    """The settings `compare_case` tracks every volume of `case` with: lengths not given scaled once to the reference's
    brain."""
    return (settings or TrackingSettings()).check().resolved(tensor_support(case.truth), case.hr_affine)


def compare_case(case, predictions: dict, n_seeds: int = 2000, settings: TrackingSettings | None = None,
                 seed_rng=0) -> dict:
    """Tract-density comparison of each prediction (and of the low-res input) with the reference.

    From the same world seeds, streamlines are tracked on the high-res reference (its evaluation voxels,
    reference_voxels), on each method's high-res prediction (the same mask), and on the low-res input on
    its own grid (low-res mask); every density map is taken on the high-res grid. Returns
    {name: {"tract_dice", "tract_fp_fraction", "n_streamlines"}} with the key LOWRES for the input. Lengths not given
    in `settings` are scaled once to the reference's brain, the same for every volume."""
    s = comparison_settings(case, settings)
    seeds = comparison_seeds(case, n_seeds, rng=seed_rng)
    shape = case.truth.shape[:3]
    truth = np.asarray(case.truth, np.float32)
    ref_lines = track(Volume(truth, case.hr_affine, "tensor"), seeds, s, mask=reference_voxels(case))
    ref = density_map(ref_lines, case.hr_affine, shape)
    out = {"reference": {"tract_dice": 1.0, "tract_fp_fraction": 0.0, "n_streamlines": len(ref_lines)}}
    lr_lines = track(case.lr, seeds, s, mask=case.lr_mask.data)
    out[LOWRES] = {**compare(density_map(lr_lines, case.hr_affine, shape), ref), "n_streamlines": len(lr_lines)}
    for name, pred in predictions.items():
        vol = getattr(pred, "tensor", pred)
        lines = track(vol, seeds, s, mask=case.hr_mask)
        out[name] = {**compare(density_map(lines, case.hr_affine, shape), ref), "n_streamlines": len(lines)}
    return out
