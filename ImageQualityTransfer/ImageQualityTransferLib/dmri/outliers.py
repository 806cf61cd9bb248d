"""What a DTI fit leaves unexplained in the series it was fitted to: slices and volumes the tensor model does not fit
(signal dropout in a slice, a dead or moved volume: `find_outliers`, `check_fit`).

The upsampling's uncertainty is that of the upsampling given the fitted tensors: it does not see such acquisition
artefacts, which the fit absorbs (three slices of four volumes at 20 % signal turned the upsampled principal direction
there by a median 25 degrees and raised MD 23 %, with no warning). The check reads the fit's residuals: per brain voxel
and diffusion-weighted volume the relative residual |S - S_hat| / S_hat (S_hat from the fitted tensor and the median
over the volumes of the S0 each implies, so that a few bad volumes do not move it); per (slice, volume) its median over
the slice's brain voxels; a robust z-score of that against the slice's median over the volumes, in units of the median
absolute deviation of all such values (a slice with little brain or much CSF has higher residuals in every volume, which
the slice's own median takes out). On a multi-shell series the median and the spread are taken per shell (`_centred`):
one tensor over every shell leaves the highest shell's residuals high in every slice, which is the model's misfit, and
noisier, which is the signal's fall; neither is an artefact (b = 1000/2000/3000 read as one: the whole b = 3000 shell
named in one slice, z 42; docs/measurements.md, Fit checks).

Slices run along the DWI's slice axis: the BIDS sidecar's SliceEncodingDirection where the series has one
(`fileio.load_dwi` reads it into meta["slice_axis"]), else the third voxel axis (k), the slice axis of a 2D
acquisition as dcm2niix writes it (every real subject here: the axial scans' k is S, the sagittal ones' R; none of
their sidecars names another). Only slices with at least MIN_BRAIN_SHARE of the fullest slice's brain voxels are
read: the 3 mm ortho dev scan's top slices, 11 % of it, reach z 22 unaffected.

A volume whose median z over the slices is above VOLUME_SUSPECT is tested against the fit of the others: above VOLUME_Z
it is bad as a whole (dead or moved) and left out everywhere. Volumes that share one fault (the head moved near the end
of the series, two series of different scale joined) pull the fit their way and none stands out against it (2-10 of the
3 mm ortho dev scan's 20 moved or scaled: median z -1.0 to 6.9, none named), so each quarter of each shell's DW volumes
(in series order), the half further from the b0s, and every 3rd, 4th and 5th of them (each offset; volumes moved apart
through the series) are also left out of a sparse screening fit (`_block_suspects`); every other one too, each half
in turn, but only to say that the halves disagree (ALTERNATE_Z: which half is right the residuals cannot tell, so
neither is named); its suspects are kept if they
misfit, on the same sample, a fit without them all (the clean Achieva 1.75x2.5 mm scan's two: a full trial fit had
cost 1.5 s), and every suspect is left out of one trial fit at once and each tested against it (at most half the DW
volumes are left out; after a round names some, a screen suspect is kept only if it misfits the fit without them). A
series of fewer than FEW_DIRECTIONS DW volumes gets no screen and the bar FEW_VOLUME_Z (clean 12-15 direction cuts of
real scans had volumes named under the lower bar; with the quarters screened, clean 15-18 direction cuts too). A
(slice, volume) above PAIR_Z is bad in that slice: it is left out of that slice's fit and the slice refitted, until
none is above (of several above, the one
furthest below the fit first: a dropout lowers the signal, and the fit it corrupted leaves good volumes above it); one
left out is put back if it fits the others' slice fit. So the volumes a corrupted fit smeared its error over are not
named, and the refit is what `--exclude-outliers` writes. On the 8 real subjects the largest z were 6.7-16.1 (pairs) and
1.9-3.0 (volumes), but for one real dropout: the sagittal AP dev scan's slice 15 of volume 8 holds 6 % of its signal (z
70). On corrupted copies of the 3 mm ortho dev scan: dropouts z 208-266, a zeroed volume 306 and one moved by 6 voxels
129 (against the others' fit); a bias field, Rician noise at SNR 5-10, ringing, a cut field of view and a shifted b0
gave none."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..core import grid
from ..core.errors import IQTWarning
from ..core.i18n import _, option
from ..core.volume import Volume
from .b0s import check_b0_levels
from .dti import (B0_THRESHOLD, MIN_DIRECTIONS, POOR_CONDITION, SHELL_STEP, file_volumes, fit_dti, spans_tensor,
                  table_condition, unit_design)

SLICE_AXIS = 2  # k: the slice axis of a 2D acquisition as converted (dcm2niix), on every real subject here; a series
# whose sidecar says otherwise is read along its own (slice_axis_of)
AXES = "ijk"
MIN_BRAIN_SHARE = 0.25  # of the fullest slice's brain voxels: a slice with fewer is not read
MIN_SLICE_VOXELS = 50  # and never one with fewer brain voxels than this
PAIR_Z = 25.0  # a (slice, volume) above this is an outlier in that slice (clean real subjects: at most 16.1)
VOLUME_SUSPECT = 3.5  # a volume whose median z over the slices is above this is tested (clean real subjects: at most 3.0)
VOLUME_Z = 30.0  # by its median z against the fit without it: above this it is an outlier as a whole, dead or moved
# (the clean subjects' worst volumes, tested so: at most 12.5; a zeroed volume 306, one moved by 6 voxels 129; half the
# 3 mm ortho dev scan's DW volumes moved by one voxel 33.8-37.1 against the other half's fit, under the bar of 40 before)
FEW_DIRECTIONS = 20  # a series of fewer DW volumes (all shells, repeats counted) gets no block screen and the bar
FEW_VOLUME_Z = 40.0  # this (its suspects still left out of one trial fit together): clean scans cut to 12-15 directions had clean volumes named at 32-39 (the Trio's last 12,
# the Achieva 1.75x2.5 mm scan's first 15; a review), each left-out volume's prediction from fewer directions noisier
# (the quarters screened from 15 DW volumes named clean volumes of 8 of 50 clean 15-19 direction cuts of the Achieva
# 1.75x2.5 mm scan at 41-94, where the 3 mm dev scans cut to 15 or 19 with their last 2-5 moved or scaled read 42-114:
# no bar parts them; docs/measurements.md, Fit checks)
OTHER_AXIS_RATIO = 1.5  # and above this many times k's largest: a volume moved by two voxels misfits the edge slices
# along j about as much as a dropout along k misfits its slices (z 94 against 90 on a phantom; a review), where a
# dropout along i leaves k's at a clean scan's 16-19 (43-46 along i; a second review: 3 had missed those)
OTHER_AXIS_Z = 40.0  # a (slice, volume) z above this along i or j, where no sidecar names the slice axis, reads along it
# (clean real subjects, read along every axis: at most 21.0, sag HF along j; the sagittal AP scan's real dropout 69.5;
# docs/measurements.md, Fit checks)
BLOCKS = (4, 2)  # each shell's DW volumes cut in quarters, then halves: each left out of a screening fit
STRIDES = (3, 4, 5)  # and every k-th of them, at each offset: volumes moved apart through the series (every 3rd, 4th
# or 5th moved a voxel or two along j of the 3 mm ortho dev scan: nothing had been named; reviews); every 3rd had
# named a clean volume of Testing/slicer/test_fit_checks.py's phantom, 12 directions, before STRIDED_FROM
ALTERNATE_Z = 15.0  # every other DW volume left out of a screening fit, each half in turn: both halves above this
# (median screen z) disagree, said without naming either (which half moved the residuals cannot tell: naming the
# half that misfits had named the clean odd half of the 3 mm ortho dev scan with its even half moved a voxel; clean
# real subjects at most 8.3, every other volume of the two 3 mm dev scans moved or scaled by 1.3 at least 19.4)
STRIDED_FROM = 20  # those strided blocks only in a shell of at least this many directions: in fewer, leaving out
# every k-th leaves a hole in direction space (the yaw dev scan's 10 odd directions named a clean volume whose nearest
# direction, 33.5 degrees off, was in its block: z 41; its first 12 of the Achieva scan alike)
STRIDE_STEP = 6  # read in every this-th slice (half the cost): strided screen z on the 8 real subjects at most 14.5,
# every 4th volume moved a voxel 43.2, every 5th two 55.7 (docs/measurements.md, Fit checks)
SCREEN_Z = 20.0  # suspect by that screen (its sparse medians are noisier), then tested in full against VOLUME_Z
SCREEN_STEP = 3  # of the slices read, every this-th is read by that screen (every other voxel in it)
VOLUME_ROUNDS = 3  # trial fits without every suspect (each round at most two fits): the bad volumes a round names may
# have hidden others behind the fit they corrupted
MIN_SCALE = 1e-3  # floor of the residuals' spread (a noise-free synthetic series has none)
MAX_LISTED = 6  # slice groups named in the warning; the rest counted


@dataclass
class Outliers:
    """What `find_outliers` found. Volumes and slices are 0-based indices (the series' volumes as fslroi and
    mrconvert -coord 3 count them, slices along `axis`)."""

    volumes: dict = field(default_factory=dict)  # whole volumes: index -> median z over the slices, the fit without it
    pairs: dict = field(default_factory=dict)  # slice -> {volume: z against the slice's fit without them}
    unfixable: dict = field(default_factory=dict)  # slice (or "all") -> why not every outlier could be left out
    slices_read: int = 0
    z_max: float = float("nan")  # the largest (slice, volume) z of the fit as given
    volume_z_max: float = float("nan")  # the largest volume median z of the fit as given
    tensor: np.ndarray | None = None  # the fit without the outliers (where they could be left out)
    axis: int = SLICE_AXIS  # the voxel axis the slices run along
    axis_why: str = ""  # why that axis (`slice_axis_of`); "" for k taken as the default
    alternate: dict = field(default_factory=dict)  # offset (0, 1) -> the median screen z of every other DW volume
    # against the fit of the rest (`_block_suspects`); both above ALTERNATE_Z: the halves disagree
    b0_levels: str = "ok"  # what dmri.b0s.check_b0_levels said of the series, in a few words (for a QC record)

    def __bool__(self) -> bool:
        return bool(self.volumes or self.pairs)

    @property
    def halves_disagree(self) -> bool:
        """Whether every other DW volume misfits the fit of the rest, each half in turn (ALTERNATE_Z)."""
        return len(self.alternate) == 2 and min(self.alternate.values()) > ALTERNATE_Z

    @property
    def pair_count(self) -> int:
        """How many (slice, volume) pairs are named, not counting the whole volumes."""
        return sum(len(v) for v in self.pairs.values())


def _attenuation(bvals, bvecs) -> np.ndarray:
    """(N, 6): b g^T D g = rows . (Dxx, Dxy, Dyy, Dxz, Dyz, Dzz), the tensor in the bvecs' (voxel) axes."""
    return unit_design(bvecs) * np.asarray(bvals, float)[:, None]


def relative_residuals(signal: np.ndarray, tensor: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(n, N) (S - S_hat) / S_hat of voxels' signals (n, N) under their tensors (n, 6); S_hat = S0 exp(-b g^T D g) with
    log S0 the median over the volumes of log S + b g^T D g (robust to a few bad volumes). NaN where S_hat is 0."""
    s = np.maximum(np.asarray(signal, np.float64), 0.0)
    att = np.asarray(tensor, np.float64) @ q.T
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_s0 = np.median(np.log(s) + att, axis=1)
        pred = np.exp(log_s0[:, None] - att)
        rel = (s - pred) / pred
    return np.where(np.isfinite(rel), rel, np.nan)


THICK = grid.THICK_RATIO  # a voxel axis this many times longer than the other two is the slice axis of a thick-slice series


def slice_axis_of(dwi: Volume) -> tuple[int | None, str]:
    """(the voxel axis `dwi`'s slices were acquired along, why that one): its sidecar's SliceEncodingDirection; else the
    one axis as long as its sidecar's SliceTiming; else a voxel axis THICK times the others' (thick slices); else
    (None, ""): `find_outliers` then reads each axis (the k of dcm2niix's output had been taken, and a sagittal series
    stored LAS without a sidecar had its dropout missed without a word; a thick-slice audit)."""
    if "slice_axis" in dwi.meta:
        return int(dwi.meta["slice_axis"]), _("the sidecar's SliceEncodingDirection")
    count = dwi.meta.get("slice_count")
    if count:
        fits = [a for a in range(3) if dwi.shape3[a] == int(count)]
        if len(fits) == 1:
            return fits[0], _("the one as long as the sidecar's SliceTiming, {count} slices").format(count=int(count))
    size = np.asarray(dwi.voxel_size, float)
    k = int(np.argmax(size))
    if size[k] >= THICK * max(np.delete(size, k)):
        return k, _("its thick-slice axis, {size} mm").format(size=f"{size[k]:.3g}")
    return None, ""


def _plane(a, s: int, axis: int = SLICE_AXIS):
    """Slice `s` of `a` along `axis` (a view)."""
    return a[(slice(None),) * axis + (int(s),)]


def _slice_row(signal, tensor, mask, q, s, signed: bool = False, axis: int = SLICE_AXIS):
    """(N,): slice `s`'s median absolute relative residual over its brain voxels, per volume (`tensor`: the whole
    volume's or the slice's own); with `signed`, also the median of the signed one."""
    m = _plane(mask, s, axis)
    t = tensor if tensor.ndim == m.ndim + 1 else _plane(tensor, s, axis)
    rel = relative_residuals(_plane(signal, s, axis)[m], t[m], q)
    row = _nanmedian(np.abs(rel), axis=0)  # NaN for a volume NaN in every voxel (S_hat 0)
    return (row, _nanmedian(rel, axis=0)) if signed else row


def _nanmedian(a, axis=None, keepdims: bool = False):
    """np.nanmedian, NaN where every value is NaN, without numpy's warning for that: silencing it with
    warnings.catch_warnings would change the process's filters, which other threads share. Without a NaN, np.median
    (the same values: nanmedian's short axes go through numpy.ma, 4-10 times slower on a slice's residuals)."""
    a = np.asarray(a, float)
    if axis is None:
        a, axis = a.reshape(-1), 0
    nan = np.isnan(a)
    if a.size and not nan.any():
        return np.median(a, axis=axis, keepdims=keepdims)
    some = (~nan).any(axis=axis, keepdims=True)
    out = np.where(some, np.nanmedian(np.where(some, a, 0.0), axis=axis, keepdims=True), np.nan)
    return out if keepdims else np.squeeze(out, axis=axis)


def _shell_ids(bvals) -> np.ndarray:
    """(N,): each diffusion-weighted volume's shell (b rounded to SHELL_STEP), a shell of fewer than MIN_DIRECTIONS
    volumes (too few for a median of its own) joined to the nearest shell that has that many; -1 for the b0s."""
    b = np.asarray(bvals, float)
    ids = np.where(b > B0_THRESHOLD, np.round(b / SHELL_STEP), -1).astype(int)
    values, counts = np.unique(ids[ids >= 0], return_counts=True)
    big = values[counts >= MIN_DIRECTIONS]
    if big.size == 0:
        return np.where(ids >= 0, 0, -1)
    small = (ids >= 0) & ~np.isin(ids, big)
    ids[small] = big[np.abs(ids[small, None] - big[None, :]).argmin(1)]
    return ids


def _centred(rows, live, shell) -> np.ndarray:
    """`rows` (..., N) less, per shell, their median over that shell's `live` volumes (the last axis); NaN where no
    volume of its shell is live."""
    rows = np.asarray(rows, float)
    out = np.full(rows.shape, np.nan)
    for sid in np.unique(shell[live]):
        cols = shell == sid
        out[..., cols] = rows[..., cols] - _nanmedian(rows[..., cols & live], axis=-1, keepdims=True)
    return out


def _read_along(signal, t, mask, q, axis, dw, shell, suspect=None):
    """(the slices along `axis` read, their rows and signed rows (`_slice_row`), the largest robust z of a (slice,
    volume) among them, of the volumes not suspect as a whole (median z over the slices above VOLUME_SUSPECT: a volume
    moved by a voxel misfits the edge slices along every axis, and had drawn the choice of axis away from a real
    dropout along k; a review), nor among `suspect` (those read so along k); NaN where none is read). The fifth item:
    the volumes suspect as a whole along this axis."""
    counts = np.moveaxis(mask, axis, 0).reshape(mask.shape[axis], -1).sum(1)
    read = np.flatnonzero((counts >= MIN_SLICE_VOXELS) & (counts >= MIN_BRAIN_SHARE * counts.max()))
    if len(read) == 0 or dw.sum() < MIN_DIRECTIONS:
        return read, None, None, float("nan"), np.zeros(len(dw), bool)
    rows, signs = map(np.stack, zip(*[_slice_row(signal, t, mask, q, s, signed=True, axis=axis) for s in read]))
    dev = _centred(rows, dw, shell)
    z = np.full(dev.shape, np.nan)
    for sid in np.unique(shell[dw]):
        cols = dw & (shell == sid)
        z[:, cols] = dev[:, cols] / max(1.4826 * float(_nanmedian(np.abs(dev[:, cols]))), MIN_SCALE)
    whole = _nanmedian(z, axis=0) > VOLUME_SUSPECT
    z = np.where((whole | (False if suspect is None else suspect))[None, :], np.nan, z)
    return read, rows, signs, float(np.nanmax(z)) if np.isfinite(z).any() else float("nan"), whole


def _fit_without(dwi: Volume, mask: np.ndarray, drop, where=None, axis: int = SLICE_AXIS) -> np.ndarray:
    """WLS tensors of `dwi` without the volumes `drop`, in `mask` (or only in the slice `where` along `axis`):
    (X, Y, Z, 6) or the slice's 2D (., ., 6)."""
    keep = np.ones(len(dwi.bvals), bool)
    keep[list(drop)] = False
    data = np.asarray(dwi.data)
    m = np.asarray(mask, bool)
    if where is not None:
        sel = [slice(None)] * 3
        sel[axis] = slice(where, where + 1)
        data, m = data[tuple(sel)], m[tuple(sel)]
    part = Volume(data[..., keep], dwi.affine, "dwi", bvals=np.asarray(dwi.bvals)[keep],
                  bvecs=np.asarray(dwi.bvecs)[keep])
    t = np.asarray(fit_dti(part, m, say_shells=False).data, np.float64)  # the first fit said them
    return t if where is None else _plane(t, 0, axis)


def find_outliers(dwi: Volume, mask, tensor, refit: bool = True) -> Outliers:
    """The slices and volumes of `dwi` its fit `tensor` (in `mask`, as fit_dti made it) does not explain (module
    doc). With `refit`, `.tensor` holds the fit without them: a bad volume left out everywhere, a bad (slice, volume)
    in that slice; where that would leave too few directions the slice keeps its fit and is in `.unfixable`."""
    t = np.asarray(getattr(tensor, "data", tensor), np.float64)
    mask = np.any(t != 0, axis=-1) if mask is None else np.asarray(getattr(mask, "data", mask), bool)
    signal = np.asarray(dwi.data)
    bvals, bvecs = np.asarray(dwi.bvals, float), np.asarray(dwi.bvecs, float)
    q = _attenuation(bvals, bvecs)
    dw = bvals > B0_THRESHOLD
    shell = _shell_ids(bvals)
    axis, why = slice_axis_of(dwi)
    if axis is None:  # each axis read: another than k where its slices are misfitted far beyond k's
        along = {SLICE_AXIS: _read_along(signal, t, mask, q, SLICE_AXIS, dw, shell)}
        for a in (a for a in range(3) if a != SLICE_AXIS):  # k's whole-volume suspects left out of the others' too
            along[a] = _read_along(signal, t, mask, q, a, dw, shell, suspect=along[SLICE_AXIS][-1])
        z = {a: float(np.nan_to_num(along[a][3], nan=-np.inf)) for a in range(3)}
        top = max((a for a in range(3) if a != SLICE_AXIS), key=z.get)
        axis, why = (top, _("the one whose slices the fit misfits: no sidecar names it")) \
            if z[top] > OTHER_AXIS_Z and z[top] > OTHER_AXIS_RATIO * z[SLICE_AXIS] else (SLICE_AXIS, "")
        read, rows, signs = along[axis][:3]
    else:
        read, rows, signs = _read_along(signal, t, mask, q, axis, dw, shell)[:3]
    out = Outliers(axis=axis, axis_why=why)
    out.slices_read = len(read)
    if len(read) == 0 or dw.sum() < MIN_DIRECTIONS:
        return out

    def scores(rows, live):
        """(z of every (slice read, volume), the spread per volume): deviation from the slice's median over the live DW
        volumes of its shell, in units of its shell's spread (a higher shell's relative residuals are noisier)."""
        dev = _centred(rows, live, shell)
        spread = np.full(len(bvals), np.nan)
        for sid in np.unique(shell[live]):
            spread[shell == sid] = max(1.4826 * float(_nanmedian(np.abs(dev[:, live & (shell == sid)]))), MIN_SCALE)
        return np.where(dw, dev / spread, np.nan), spread

    z, spread = scores(rows, dw)
    out.z_max = float(np.nanmax(z)) if np.isfinite(z).any() else float("nan")
    vz = _nanmedian(z, axis=0)
    out.volume_z_max = float(np.nanmax(vz[dw])) if np.isfinite(vz[dw]).any() else float("nan")
    whole: list = []
    fitted = t
    idx = np.arange(len(bvals))
    few = dw.sum() < FEW_DIRECTIONS
    bar = FEW_VOLUME_Z if few else VOLUME_Z
    blocks = [] if few else _block_suspects(
        dwi, mask, q, read, axis, scores, known=np.flatnonzero(dw & (vz > VOLUME_SUSPECT)), alternate=out.alternate)
    for _round in range(VOLUME_ROUNDS):  # every suspect left out of one trial fit, each tested against it (module doc)
        # after a round named some, a screen suspect stays one only if it misfits the fit without them too: the
        # screen's fits held them (10 of 20 volumes scaled by 1.3 made a clean volume one; a review)
        screened = [v for v in blocks if v not in whole and (not whole or vz[v] > VOLUME_SUSPECT)]
        suspects = screened + [
            int(v) for v in np.argsort(-np.nan_to_num(vz, nan=-np.inf))
            if dw[v] and v not in whole and v not in screened and vz[v] > VOLUME_SUSPECT]
        drop = list(whole)
        for v in suspects:  # worst first, while at least half the DW volumes stay and they determine a tensor
            keep = ~np.isin(idx, drop + [v])
            if not _testable(keep, dw, bvals, bvecs):
                break
            drop.append(v)
        if suspects and len(drop) == len(whole):
            keep = ~np.isin(idx, drop + [suspects[0]])
            out.unfixable["all"] = (_("volume {volume} could not be left out too: at most half the diffusion-weighted "
                                      "volumes are left out") if 2 * (dw & keep).sum() < dw.sum() else
                                    _("volume {volume} could not be left out too: the others would not determine a "
                                      "tensor with a residual left to judge it by")).format(
                volume=file_volumes(dwi)[suspects[0]])
        if len(drop) == len(whole):
            break
        trial = _fit_without(dwi, mask, drop)
        t_rows, t_signs = map(np.stack, zip(*[_slice_row(signal, trial, mask, q, s, signed=True, axis=axis)
                                              for s in read]))
        t_z, t_spread = scores(t_rows, dw & ~np.isin(idx, drop))
        t_vz = _nanmedian(t_z, axis=0)
        bad = [v for v in drop if v not in whole and t_vz[v] > bar]  # the rest fit the others' tensors
        if not bad:
            break
        whole += bad
        out.volumes.update({v: float(t_vz[v]) for v in bad})
        if len(whole) < len(drop):  # suspects that fit go back in: the fit without the bad ones alone
            trial = _fit_without(dwi, mask, whole)
            t_rows, t_signs = map(np.stack, zip(*[_slice_row(signal, trial, mask, q, s, signed=True, axis=axis)
                                                  for s in read]))
            t_z, t_spread = scores(t_rows, dw & ~np.isin(idx, whole))
            t_vz = _nanmedian(t_z, axis=0)
        fitted, rows, signs, z, spread, vz = trial, t_rows, t_signs, t_z, t_spread, t_vz
    fitted = fitted.copy() if refit else None
    live = dw & ~np.isin(np.arange(len(bvals)), whole)
    for i, s in enumerate(read):
        if not np.nanmax(np.where(live, z[i], np.nan)) > PAIR_Z:
            continue
        gone, why, ts = _slice_outliers(dwi, mask, q, int(s), rows[i], signs[i], spread, set(whole), axis)
        if gone:
            out.pairs[int(s)] = gone
        if why:
            out.unfixable[int(s)] = why
        if fitted is not None and ts is not None:
            _plane(fitted, s, axis)[...] = ts
    if refit and (whole or out.pairs):
        fitted[~mask] = 0.0
        out.tensor = fitted.astype(np.float32)
    return out


def _testable(keep, dw, bvals, bvecs) -> bool:
    """Whether the volumes `keep` can judge the rest: at least half the DW volumes, determining a tensor, with a
    residual left (an exact fit's zero spread had named a good volume of a 7-direction series)."""
    return 2 * (dw & keep).sum() >= dw.sum() and spans_tensor(bvecs[keep], bvals[keep]) \
        and not blind_count(bvals[keep], bvecs[keep])


class ScreenBlock(NamedTuple):
    """One block of a shell's DW volumes that `_block_suspects` leaves out of a screening fit."""

    volumes: np.ndarray
    step: int  # its fit reads every step-th of the slices read: SCREEN_STEP or STRIDE_STEP
    alternate: int | None = None  # every other volume from this offset (0, 1): its median z goes into
    # `Outliers.alternate` and none is a suspect; None: a block whose volumes may be suspects (an explicit field, not a
    # negative step whose sign a reader of `step` must know to check)


def _screen_blocks(vols, b0_at: float) -> list[ScreenBlock]:
    """The blocks of one shell's DW volumes `vols` (in series order) that `_block_suspects` screens: quarters, the half
    further from the b0s (at mean index `b0_at`), and in a shell of at least STRIDED_FROM directions every k-th for k
    in STRIDES and every other one."""
    blocks = [ScreenBlock(b, SCREEN_STEP) for b in np.array_split(vols, BLOCKS[0])]
    halves = np.array_split(vols, BLOCKS[1])  # each half misfits the other's fit: the b0s' own half is taken as
    blocks.append(ScreenBlock(max(halves, key=lambda b: abs(b.mean() - b0_at)), SCREEN_STEP))  # right (the mask's)
    if len(vols) >= STRIDED_FROM:
        blocks += [ScreenBlock(vols[o::k], STRIDE_STEP) for k in STRIDES for o in range(k)]
        blocks += [ScreenBlock(vols[o::2], STRIDE_STEP, alternate=o) for o in range(2)]
    return blocks


def _block_suspects(dwi, mask, q, read, axis, scores, known=(), alternate=None) -> list:
    """The DW volumes that misfit, above SCREEN_Z, a fit without their block of the series (each shell's DW volumes in
    order, cut in quarters, the half further from the b0s, and in a shell of at least STRIDED_FROM directions every
    k-th of them for k in STRIDES), worst first; `alternate` gets each half's median z when every other one is left
    out (offset -> z), none of them a suspect
    (module doc). Read in every SCREEN_STEP-th slice (STRIDE_STEP-th for the strided blocks), every other voxel in it,
    only: to keep the time. The volumes `known` (suspect by the whole fit) are left out of each screening fit too,
    where enough stay: a zeroed volume in a strided block's fit had the good volumes left out misfit it."""
    bvals, bvecs = np.asarray(dwi.bvals, float), np.asarray(dwi.bvecs, float)
    dw = bvals > B0_THRESHOLD
    idx = np.arange(len(bvals))

    def sampled(step):
        sel = [slice(None, None, 2)] * 3  # every other voxel in-plane (a fit's time is its voxels')
        sel[axis] = read[::step]
        m = np.asarray(mask, bool)[tuple(sel)]  # the sampled slices alone: a fit copies the whole series it is given
        return dwi.replace(data=np.asarray(dwi.data)[tuple(sel)]), m

    samples = {step: sampled(step) for step in (SCREEN_STEP, STRIDE_STEP)}
    found: dict = {}
    b0_at = np.flatnonzero(~dw).mean() if (~dw).any() else -1.0
    shell = _shell_ids(bvals)
    for sid in np.unique(shell[dw]):  # per shell: a fit of the lower shells misfits a higher one (the model, no fault)
        for block, step, offset in _screen_blocks(np.flatnonzero(shell == sid), b0_at):
            keep = ~np.isin(idx, block)
            if not _testable(keep, dw, bvals, bvecs):
                continue
            if _testable(keep & ~np.isin(idx, known), dw, bvals, bvecs):
                keep &= ~np.isin(idx, known)
            sub, m = samples[step]
            trial = _fit_without(sub, m, idx[~keep & dw])
            rows = np.stack([_slice_row(sub.data, trial, m, q, s, axis=axis) for s in range(m.shape[axis])])
            bz = _nanmedian(scores(rows, dw & keep)[0], axis=0)
            if offset is not None:
                if alternate is not None:
                    alternate[offset] = min(float(np.nanmedian(bz[block])), alternate.get(offset, np.inf))
                continue
            found.update({int(v): max(float(bz[v]), found.get(int(v), -np.inf)) for v in block if bz[v] > SCREEN_Z})
    suspects = sorted(found, key=lambda v: -found[v])
    keep = ~np.isin(idx, np.union1d(suspects, known).astype(int))
    if suspects and _testable(keep, dw, bvals, bvecs):  # confirmed on the sample without them all, before the full
        sub, m = samples[SCREEN_STEP]  # trial fit: the clean Achieva 1.75x2.5 mm scan's two suspects (screen z above
        trial = _fit_without(sub, m, idx[~keep & dw])  # 20) read 1.7 and 1.2 so, moved or rescaled ones 35-65
        rows = np.stack([_slice_row(sub.data, trial, m, q, s, axis=axis) for s in range(m.shape[axis])])
        bz = _nanmedian(scores(rows, dw & keep)[0], axis=0)
        suspects = [v for v in suspects if bz[v] > SCREEN_Z]
    return suspects


def _slice_outliers(dwi, mask, q, s, row, signed, spread, whole, axis=SLICE_AXIS):
    """({volume: z} left out of slice `s`, why not every one could be (or None), the slice's tensors without them
    (or None)). A fit that a dropout corrupted spreads its error over good volumes, so the worst z is not always a
    bad volume; a dropout lowers the signal and the good volumes end up above the corrupted fit, so of the volumes
    above PAIR_Z the one furthest below the fit (signed median residual) goes first, the slice is refitted, until none
    is above; then one left out is put back while it fits below PAIR_Z under the fit without the others."""
    bvals, bvecs = np.asarray(dwi.bvals, float), np.asarray(dwi.bvecs, float)
    dw = bvals > B0_THRESHOLD
    shell = _shell_ids(bvals)
    gone: dict = {}
    returned: set = set()
    ts, why = None, None

    def live_of(drop):
        live = dw.copy()
        live[list(drop)] = False
        return live

    for _try in range(4 * len(bvals)):
        live = live_of(whole | set(gone))
        zs = np.nan_to_num(_centred(row, live, shell) / spread, nan=-np.inf)
        above = [int(v) for v in np.flatnonzero(live & (zs > PAIR_Z)) if v not in returned]
        if above:
            v = min(above, key=lambda v: signed[v])
            left = live_of(whole | set(gone) | {v})
            if 2 * left.sum() < dw.sum() or not spans_tensor(bvecs[left | ~dw], bvals[left | ~dw]):
                why = "too few directions would be left"
                break
            gone[v] = float(zs[v])
        else:
            back = [v for v in gone if zs[v] <= PAIR_Z]
            if not back:
                break
            v = min(back, key=lambda v: zs[v])
            del gone[v]
            returned.add(v)  # not taken again: no back and forth
        ts = _fit_without(dwi, mask, whole | set(gone), where=s, axis=axis)
        row, signed = _slice_row(dwi.data, ts, mask, q, s, signed=True, axis=axis)
    live = live_of(whole | set(gone))
    if np.nanmax(np.where(live, _centred(row, live, shell) / spread, np.nan)) > PAIR_Z:  # some could not go
        why = "too few directions would be left"
    if gone:  # the z each has against the fit without them all
        live = live_of(whole | set(gone))
        zs = _centred(row, live, shell) / spread
        gone = {v: float(zs[v]) for v in sorted(gone)}
    return gone, why, (ts if gone else None)


def _ranges(values) -> str:
    """"3-5, 9" for [3, 4, 5, 9]."""
    v = sorted(values)
    parts, start = [], None
    for i, x in enumerate(v):
        if start is None:
            start = x
        if i + 1 == len(v) or v[i + 1] != x + 1:
            parts.append(f"{start}" if start == x else f"{start}-{x}")
            start = None
    return ", ".join(parts)


def _along(out: Outliers) -> str:
    """Which axis the slices were counted along, and why that one."""
    return _("voxel axis {axis} ({why})").format(axis=AXES[out.axis], why=out.axis_why) if out.axis_why else \
        _("the third voxel axis")


def describe(out: Outliers, number=None) -> str:
    """The outliers in words (each piece a marked template): whole volumes, then slices grouped by the volumes left
    out of them (capped); volume `v` named `number[v]` (the file's numbers of a series --bmax kept some of:
    dti.file_volumes), else `v`."""
    def named(vols):
        return [int(v) if number is None else int(number[v]) for v in vols]

    parts = []
    if out.volumes:
        vs = sorted(out.volumes)
        parts.append((_("volumes {volumes} in every slice (median robust z-score {scores})") if len(vs) > 1 else
                      _("volume {volumes} in every slice (median robust z-score {scores})")).format(
            volumes=_ranges(named(vs)), scores=", ".join(f"{out.volumes[v]:.0f}" for v in vs)))
    groups: dict = {}
    for s, vols in out.pairs.items():
        groups.setdefault(tuple(sorted(vols)), []).append(s)
    ordered = sorted(groups.items(), key=lambda kv: -max(max(out.pairs[s].values()) for s in kv[1]))
    for vols, slices in ordered[:MAX_LISTED]:
        top = max(out.pairs[s][v] for s in slices for v in vols)
        many = (len(slices) > 1, len(vols) > 1)
        parts.append({(False, False): _("slice {slices} of volume {volumes} (robust z-score {top})"),
                      (False, True): _("slice {slices} of volumes {volumes} (robust z-score up to {top})"),
                      (True, False): _("slices {slices} of volume {volumes} (robust z-score up to {top})"),
                      (True, True): _("slices {slices} of volumes {volumes} (robust z-score up to {top})")}[many].format(
            slices=_ranges(slices), volumes=", ".join(map(str, named(vols))), top=f"{top:.0f}"))
    if len(ordered) > MAX_LISTED:
        rest = sum(len(s) for _slices, s in ordered[MAX_LISTED:])
        parts.append((_("and {count} more slices") if rest > 1 else _("and {count} more slice")).format(count=rest))
    return "; ".join(parts)


def check_fit(dwi: Volume, mask, tensor: Volume, exclude: bool = False) -> Volume:
    """One warning line naming the slices and volumes the fit does not explain (`find_outliers`), and what to do;
    with `exclude`, the fit without them is returned (said in that line), else `tensor` as it is."""
    return _check_fit(dwi, mask, tensor, exclude, stacklevel=3)[0]


def checked_fit(dwi: Volume, mask, tensor: Volume, exclude: bool = False) -> tuple[Volume, Outliers]:
    """`check_fit` (its warning, its tensors) and what `find_outliers` found, for a record of it (iqt batch's QC)."""
    return _check_fit(dwi, mask, tensor, exclude, stacklevel=3)


def blind_count(bvals, bvecs) -> int:
    """The number of diffusion-weighted volumes where the tensor fits each exactly (no residual left to read: as many
    DW volumes as independent rows of the design, 6 at most; more b0s pin S0 only), else 0."""
    dw = np.asarray(bvals, float) > B0_THRESHOLD
    n = int(dw.sum())
    if n < MIN_DIRECTIONS:
        return 0  # refused before a fit (dti.gradient_table)
    rank = np.linalg.matrix_rank(_attenuation(np.asarray(bvals, float)[dw], np.asarray(bvecs, float)[dw]))
    return n if rank >= n else 0


def fitted_condition(dwi: Volume, out: Outliers | None) -> tuple[float, int, int | None]:
    """The worst `table_condition` among the tables the tensors were fitted with (the series' own, or with `out`'s
    left-out volumes gone: every slice's without its whole volumes, a refitted slice's without its pairs too), its
    number of diffusion-weighted directions and its slice (None: the table of the slices not refitted on their own)."""
    drops = {None: []} if out is None else {None: list(out.volumes), **{s: list(out.volumes) + list(g)
                                                                        for s, g in out.pairs.items()}}
    worst = (-1.0, 0, None)
    for s, drop in drops.items():
        keep = ~np.isin(np.arange(len(dwi.bvals)), drop)
        condition = table_condition(dwi.bvals[keep], dwi.bvecs[keep])
        if condition > worst[0]:
            worst = (condition, int((dwi.bvals[keep] > B0_THRESHOLD).sum()), s)
    return worst


def say_poor_condition(dwi: Volume, out: Outliers | None = None, stacklevel: int = 2) -> None:
    """One line where the directions fitted (after `out`'s exclusions, if any) bunch near a cone or a plane: full rank,
    yet the noise is magnified in some tensor elements (POOR_CONDITION); every command that fits a DWI says it so."""
    condition, n, where = fitted_condition(dwi, out)
    if not POOR_CONDITION < condition < np.inf:
        return
    left = out is not None and (out.volumes or where is not None)
    if not left:
        which = _("the {count} diffusion-weighted directions")
        todo = _("read its FA and principal directions as unreliable, and check that the bvec file is this series' own")
    elif where is None:
        which = _("the {count} diffusion-weighted directions kept by --exclude-outliers")
        todo = _("read FA and the principal directions as unreliable; without --exclude-outliers every direction is "
                 "kept, the outliers too")
    else:
        which = _("the {count} diffusion-weighted directions kept by --exclude-outliers in slice {slice}")
        todo = _("read FA and the principal directions there as unreliable; without --exclude-outliers every "
                 "direction is kept, the outliers too")
    which = which.format(count=n, slice=where)
    # pieces (split at "; ") of at most PIECE_LIMIT characters, as a long warning is said over several lines
    # (methods/base.py warning_lines): as one line it had run to 628 characters with its path
    line = _("{directions} determine the tensor poorly; slice {slice} is the worst of the {refitted} slices refitted; "
             "the fit's design has condition number {condition} (warned above {limit}), about 1.6 with directions "
             "spread evenly over the sphere; so the series' noise is magnified in some tensor elements, and FA and the "
             "principal directions can be far off; the fit's other checks do not see this (the upsampling may read it "
             "as a noisy scan); {todo}") if where is not None and len(out.pairs) > 1 else \
        _("{directions} determine the tensor poorly; the fit's design has condition number {condition} (warned above "
          "{limit}), about 1.6 with directions spread evenly over the sphere; so the series' noise is magnified in some "
          "tensor elements, and FA and the principal directions can be far off; the fit's other checks do not see this "
          "(the upsampling may read it as a noisy scan); {todo}")
    refitted = len(out.pairs) if out is not None else 0
    warnings.warn(dwi.source + line.format(directions=which, slice=where, refitted=refitted, condition=f"{condition:.0f}",
                                           limit=f"{POOR_CONDITION:g}", todo=todo), IQTWarning, stacklevel=stacklevel)


def _check_fit(dwi: Volume, mask, tensor: Volume, exclude: bool, stacklevel: int) -> tuple[Volume, Outliers]:
    levels = check_b0_levels(dwi, np.any(np.asarray(tensor.data) != 0, axis=-1) if mask is None else mask, tensor)
    blind = blind_count(dwi.bvals, dwi.bvecs)
    if blind:  # its residuals are zero whatever the data (sag AP dev scan cut to 6 directions: a real dropout unnamed)
        warnings.warn(dwi.source + _("with {count} diffusion-weighted directions the tensor fits each volume exactly, "
                                     "so the fit check cannot see signal dropout or a moved volume (more b0s do not "
                                     "help): a bad volume goes into the tensors without a word; at least 7 directions "
                                     "are needed for the check (check the series by eye)").format(count=blind),
                      IQTWarning, stacklevel=stacklevel)
    out = find_outliers(dwi, mask, tensor, refit=exclude)
    out.b0_levels = levels
    say_poor_condition(dwi, out if exclude and out.tensor is not None else None, stacklevel + 1)
    if out.halves_disagree:  # not named: which half is right the residuals cannot tell (ALTERNATE_Z)
        # pieces (split at "; ") of at most PIECE_LIMIT characters, as a long warning is said over several lines
        # (methods/base.py warning_lines): as one line it had run to 469 characters after the file's name
        line = _("the fit's residuals say every other diffusion-weighted volume disagrees with the rest; each half "
                 "misfits the fit of the other (median robust z-score {low} and {high}); head motion or a change of "
                 "scale between alternate volumes does this; which half is right the check cannot tell, so none is "
                 "named or left out and the tensors blend both; check alternate volumes by eye for head motion; check "
                 "the scanner's or conversion's scaling of each volume (two series of different scale interleaved)") \
            if exclude else \
            _("the fit's residuals say every other diffusion-weighted volume disagrees with the rest; each half "
              "misfits the fit of the other (median robust z-score {low} and {high}); head motion or a change of "
              "scale between alternate volumes does this; which half is right the check cannot tell, so none is named "
              "and the tensors blend both; check alternate volumes by eye for head motion; check the scanner's or "
              "conversion's scaling of each volume (two series of different scale interleaved)")
        warnings.warn(dwi.source + line.format(low=f"{min(out.alternate.values()):.0f}",
                                               high=f"{max(out.alternate.values()):.0f}"),
                      IQTWarning, stacklevel=stacklevel)
    if not out:
        return tensor, out
    source = dwi.source
    number = file_volumes(dwi)  # the file's numbers, where --bmax kept some of its volumes
    stuck = [s for s in out.unfixable if s != "all"]
    if exclude and out.tensor is not None:
        done = [(_("volumes {volumes} left out of every slice") if len(out.volumes) > 1 else
                 _("volume {volumes} left out of every slice")).format(volumes=_ranges(number[list(out.volumes)]))] \
            if out.volumes else []
        if out.pairs:
            done.append((_("{count} slices refitted without theirs") if len(out.pairs) > 1 else
                         _("{count} slice refitted without theirs")).format(count=len(out.pairs)))
        if stuck:
            done.append((_("slices {slices} may hold more, but at most half a slice's directions are left out; "
                           "never so many are left out that the rest would not determine a tensor") if len(stuck) > 1 else
                         _("slice {slices} may hold more, but at most half a slice's directions are left out; never "
                           "so many are left out that the rest would not determine a tensor")).format(slices=_ranges(stuck)))
        if "all" in out.unfixable:
            done.append(out.unfixable["all"])
        said = _("fitted without them: {done}").format(done="; ".join(done))
        todo = _("check the series for head motion")
        tensor = tensor.replace(data=out.tensor)
    else:
        # the option in the words of the app that runs (core/i18n.py option: the Slicer module's Exclude outliers)
        todo = _("check the series for head motion, or {rerun_exclude_outliers} to fit without them").format(
            rerun_exclude_outliers=option("rerun 'iqt fit' with --exclude-outliers"))
        if stuck:
            todo += "; " + (_("slices {slices} may hold more than the exclusion can leave out: at most half a slice's "
                              "directions") if len(stuck) > 1 else
                            _("slice {slices} may hold more than the exclusion can leave out: at most half a slice's "
                              "directions")).format(slices=_ranges(stuck))
        said = _("the tensors there are wrong and the upsampling's uncertainty does not show it; a dead or moved "
                 "volume also roughens every tensor, which the learned methods may read as a noisy scan") \
            if out.volumes else _("the tensors there are wrong and the upsampling's uncertainty does not show it")
    # pieces (split at "; ") of at most PIECE_LIMIT characters, as a long warning is said over several lines
    # (methods/base.py warning_lines): as one line it had run to 547 characters after the file's name
    warnings.warn(source + _("the tensor model does not fit parts of the series (signal dropout, or a volume dead or "
                             "moved); {found}; volumes are counted from 0, slices along {axis} from 0; {said}; "
                             "{todo}").format(found=describe(out, number), axis=_along(out), said=said, todo=todo),
                  IQTWarning, stacklevel=stacklevel)
    return tensor, out
