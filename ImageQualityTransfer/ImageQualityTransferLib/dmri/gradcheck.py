"""Whether the gradient table's frame is right (`check_gradients`): a bvec file with one axis negated, its rows swapped,
or written in the scanner's (world) frame instead of FSL's image frame fits without complaint, but every principal
direction is then mirrored or turned (world-frame bvecs: a median 44 degrees on the 3 mm ortho dev scan, 45 on the
oblique one; docs/measurements.md, Fit checks).

As MRtrix's dwigradcheck (Jeurissen et al. 2014), the check asks which table makes the fibres most continuous. It needs
no refit: for an orthogonal M applied to the directions the weighted least-squares fit transforms exactly, D' = M D M^T,
so each candidate correction C turns the fitted principal direction e(x) into C e(x). For each candidate, short
deterministic streamlines are followed from white-matter seeds (FA above SEED_FA in the brain, at most SEEDS of them,
a fixed random choice, made in canonical voxel order) both ways: STEPS steps of one mean voxel size, the direction at
each step the candidate's principal direction of the voxel reached (nearest), stopping where FA falls below STOP_FA or
the direction turns by more than STOP_ANGLE. The score is the mean streamline length in mm: along the fibres the field stays coherent, along
a mirrored or turned direction it leaves the bundle within a step or two.

On the 8 real subjects (the calibration table: docs/measurements.md, Fit checks) the table as given scores
1.19-1.50x the best other candidate (the 3 mm yaw scan against its obliquity turned back the closest, 1.19x; the 1.75x2.5
mm Achieva 1.24x; the others 1.38x or more); each of their copies with a table negated along an axis, its rows permuted,
in the scanner's frame or turned by the obliquity (the fitted tensors turned so, 23-28 per subject, 189 in all once
corrections less than SAME_DEGREES apart were merged) named the correction restoring it, at 1.19x the table as given or
more. One warning line is given where a candidate scores more than
WARN_RATIO times the table as given; nothing where the brain holds fewer than MIN_WHITE_MATTER voxels of FA above
SEED_FA (a phantom) or fewer than MIN_THICKNESS voxels thick along an axis (a slab): too little to judge. The check is a heuristic
and changes nothing: the fit is as the table says."""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..core import tensors
from ..core.errors import IQTWarning
from ..core.i18n import _
from ..core.volume import Volume
from ..fileio.gradients import fsl_flip
from ..fileio.paths import shell_word
from .scheme_advice import scheme_advice, scheme_corrections, scheme_key
from .table_terms import AXES, ROWS, SAME_DEGREES, _apart_degrees, _rows, _shown

SEED_FA = 0.3  # white matter: the seeds
STOP_FA = 0.2  # a streamline stops where FA falls below this
STOP_ANGLE = 45.0  # degrees: or where the direction turns by more than this in one step
STEPS = 8  # steps each way, each one mean voxel size long
SEEDS = 4000  # at most this many seeds (a fixed random choice): the time is the same for a 1.75 mm scan as a 3 mm one
MIN_WHITE_MATTER = 500  # fewer white-matter voxels than this: nothing said
MIN_THICKNESS = 4  # voxels: a brain thinner than this along an axis (a slab of a slice or two) is not judged either: a
# single slice of the 3 mm ortho scan had its table called swapped (fresh-eyes audit)
WARN_RATIO = 1.1  # a candidate scoring more than this times the table as given is named (real subjects: at most 0.85)
# noise: where even the winner's streamlines run under NOISE_SHORT_STEPS steps on average, noise ends them, and the
# winner must score more than NOISY_RATIO times the table as given; where none wins but the table as given runs under
# them too, the verdict is NOISE_VERDICT, not "ok". iqt upsample's frame check had it (methods/inputs.py check_frame,
# its evidence there), iqt fit's check not: an SNR-5 fit of the 2 mm Elition scan with y-negated bvecs read "ok"
# without a word (2.6 mm as given, 2.9 corrected, 1.09x; a review, docs/measurements.md)
NOISE_SHORT_STEPS = 2.0
NOISY_RATIO = 1.25
NOISE_VERDICT = "not judged (noise)"
# what shows a table's flip where noise leaves it unjudged (iqt fit's warning, methods/inputs.py FRAME_NOISE_ADVICE):
# the lines in two views, as a flip turns the lines only in the views its axis lies in. On the 8 subjects' clean fits,
# an x- or y-flip turns the lines running obliquely in the axial plane by 61-71 degrees (median) as drawn there, a
# z-flip by 0.0; in the coronal plane x- and z-flips turn them by 65-68 degrees, a y-flip by 0.0; of those lines in the
# peduncles and internal capsule 80-100 % rise outward (in the corona radiata 67-100 %): docs/measurements.md
# Its pieces (split at "; ") each read alone, as a long warning is said over several lines (methods/base.py
# warning_lines), each at most PIECE_LIMIT characters there; the higher-SNR scan and the eye's check in one, where two
# pieces had each said "check the table".
LINES_CHECK = ("check the same table on a higher-SNR scan of the protocol, or by eye on the principal-direction glyphs "
               "(docs/inputs.md); a left-right or front-back flip turns the glyphs across the forceps around the genu "
               "in an axial view; an up-down flip turns the glyphs across the rising corticospinal tracts in a coronal "
               "view; colour FA shows a swap, never a flip")


def lines_check_text() -> str:
    """LINES_CHECK in the user's language (core/i18n.py)."""
    return _("check the same table on a higher-SNR scan of the protocol, or by eye on the principal-direction glyphs "
             "(docs/inputs.md); a left-right or front-back flip turns the glyphs across the forceps around the genu in "
             "an axial view; an up-down flip turns the glyphs across the rising corticospinal tracts in a coronal view; "
             "colour FA shows a swap, never a flip")


@dataclass
class Candidate:
    """A correction C of the gradient directions as read (voxel axes: g -> C g) and what it means."""

    key: str  # short name, recorded in iqt batch's QC (bvec_check)
    what: str  # what looks wrong, in words
    fix: str  # what to do to the bvec file
    matrix: np.ndarray


@dataclass
class GradCheck:
    """What `gradient_scores` found: each candidate's score (mean streamline length, mm), the table as given first."""

    scores: dict = field(default_factory=dict)  # key -> mm
    candidates: dict = field(default_factory=dict)  # key -> Candidate
    white_matter: int = 0  # voxels of FA above SEED_FA in the brain
    step_mm: float = 0.0  # the streamlines' step, one mean voxel size
    scheme_affine: np.ndarray | None = None  # an MRtrix dw_scheme's grid: its faults are recorded by scanner column

    @property
    def judged(self) -> bool:
        return self.white_matter >= MIN_WHITE_MATTER and self.scores.get("given", 0.0) > 0.0

    @property
    def best_other(self) -> str | None:
        others = {k: v for k, v in self.scores.items() if k != "given"}
        return max(others, key=others.get) if others else None

    @property
    def ratio(self) -> float:
        """The best other candidate's score over the table as given's (NaN where not judged)."""
        if not self.judged or self.best_other is None:
            return float("nan")
        return float(self.scores[self.best_other] / self.scores["given"])

    @property
    def suspect(self) -> str | None:
        """The key of the correction that looks right, where one scores more than WARN_RATIO times the table."""
        return self.best_other if self.ratio > WARN_RATIO else None

    @property
    def noisy(self) -> bool:
        """Whether noise ends the streamlines too soon to judge: the winner under NOISE_SHORT_STEPS steps and not
        NOISY_RATIO times the table as given, or no winner and the table as given under them."""
        if not self.judged:
            return False
        short = NOISE_SHORT_STEPS * self.step_mm
        key = self.suspect
        if key is not None:
            return self.ratio <= NOISY_RATIO and self.scores[key] < short
        return self.scores["given"] < short

    @property
    def record(self) -> str:
        """iqt batch's QC value: "ok", "n/a" (too little white matter to judge), NOISE_VERDICT or the suspected
        fault's key (of a dw_scheme, its scanner-frame columns')."""
        if not self.judged:
            return "n/a"
        if self.noisy or self.suspect is None:
            return NOISE_VERDICT if self.noisy else "ok"
        if self.scheme_affine is not None:  # as the warning names it (dmri/scheme_advice.py)
            return scheme_key(self.candidates[self.suspect].matrix, self.scheme_affine)
        return self.suspect


def _rotation(affine) -> np.ndarray:
    """The affine's 3x3 with unit columns, made orthogonal (its polar factor): image axes -> scanner (RAS) axes."""
    a = np.asarray(affine, float)[:3, :3]
    u, _, vt = np.linalg.svd(a / np.linalg.norm(a, axis=0))
    return u @ vt


def candidates(affine, scheme: bool = False) -> list[Candidate]:
    """The table as given; each axis negated; the rows permuted (with any one negated); the directions as scanner
    coordinates (RAS, as MRtrix and NIfTI's world frame, or DICOM's LPS, or either with one more axis negated) rather
    than FSL's image frame; the directions turned by the scan's obliquity alone. Corrections
    equal up to sign (D is the same for C and -C) are one candidate, named for each meaning (on an axial LAS scan the
    RAS scanner frame is FSL's with x negated). `fix` says it of the FSL file, whose frame is the voxel axes with x
    flipped where the affine's determinant is positive: C in voxel axes is F C F on the file."""
    flip = fsl_flip(affine)
    out: list[Candidate] = []

    def add(key, what, fix, m):
        for c in out:
            if _apart_degrees(c.matrix, m) < SAME_DEGREES:
                if c.key != "given" and what not in c.what:
                    c.what += f", or {what}"
                return
        out.append(Candidate(key, what, fix, m))

    for perm in itertools.permutations(range(3)):  # on the file's rows: new row i = signs[i] * old row perm[i]
        for neg in (None, 0, 1, 2):
            signs = [1, 1, 1]
            if neg is not None:
                signs[neg] = -1
            on_file = np.zeros((3, 3))
            on_file[range(3), perm] = signs
            m = flip @ on_file @ flip  # in voxel axes
            moved = [AXES[i] for i in range(3) if perm[i] != i]
            if not moved and neg is None:
                add("given", "as given", "", m)
            elif not moved:
                add(f"{AXES[neg]}-flipped", f"the {AXES[neg]} components look negated",
                    f"negate the {ROWS[neg]} row ({AXES[neg]}) of the bvec file", m)
            else:
                rows = _rows(perm, signs)
                swapped = f"{moved[0]} and {moved[1]} rows look swapped" if len(moved) == 2 else "rows look permuted"
                add("rows" + rows.replace(" ", ""), f"its {swapped}" + (" and one negated" if neg is not None else ""),
                    f"reorder the rows of the bvec file to {rows}", m)
    rot = _rotation(affine)

    def scanner(frame, world):
        # file g = W R g_true (scanner coordinates, W their signs), read as F g: the correction is R^T W F; with the
        # four W (RAS, LPS, RAS with x or y negated) every sign of the scanner axes is tried (C and -C are one)
        what = f"scanner ({frame[:3]}) coordinates" + (f" with {frame[4]} negated" if len(frame) > 3 else "")
        add(f"scanner-{frame}", f"the directions look like {what}, not FSL's image frame",
            _frame_fix(flip @ rot.T @ world), rot.T @ world @ flip)

    scanner("RAS", np.eye(3))
    scanner("LPS", np.diag([-1.0, -1.0, 1.0]))
    # the table turned by the scan's obliquity alone (rotated to or from the scanner's axes, the axes' order and signs
    # left as they are: a median 16 degrees on the 3 mm yaw scan): R = P A = B P with P the signed permutation nearest
    # R; the file read as g, written as X g for X one of A, B or their inverses, is corrected by F X^T F. Tried before
    # the scanner frame with one axis negated, which on an LAS scan is one of them
    perm = _nearest_permutation(rot)
    turn_a, turn_b = perm.T @ rot, rot @ perm.T
    for turn in (turn_a, turn_a.T, turn_b, turn_b.T):
        degrees, axis = _axis_angle(turn)  # X turns the file's columns; in voxel axes (read through F) it is F X F
        add(f"obliquity{axis}", f"the directions look turned by the scan's obliquity, {axis[0]}{degrees:.0f} degrees "
            f"about the bvec file's {axis[1]} axis",
            _frame_fix(turn.T), flip @ turn.T @ flip)
    scanner("RAS-x-flipped", np.diag([-1.0, 1.0, 1.0]))
    scanner("RAS-y-flipped", np.diag([1.0, -1.0, 1.0]))
    if scheme:  # a dw_scheme's columns are the scanner's axes: on an oblique scan its flips are none of the above

        for key, m in scheme_corrections(affine):
            add(key, "its dw_scheme's columns look negated or swapped", "", m)
    return out


def _frame_fix(matrix) -> str:
    """The fix of a table in another frame: two ways, each piece (split at "; ") said so, the matrix on its own piece,
    as the warning's lines may break between them (a line of 274 characters after the file's name had held it all)."""
    return ("write the bvec file in FSL's image frame; dcm2niix's .bvec and MRtrix's -export_grad_fsl are written in "
            "FSL's image frame; another way, instead: replace each column g of the bvec file by M g (M below); "
            f"M = {_shown(matrix)}")


def _axis_angle(turn) -> tuple[float, str]:
    """A rotation's angle (degrees) and the file axis nearest its axis, signed as the turn is right-handed about it or
    not: e.g. (16.3, "-z")."""
    axis = np.array([turn[2, 1] - turn[1, 2], turn[0, 2] - turn[2, 0], turn[1, 0] - turn[0, 1]])
    j = int(np.argmax(np.abs(axis)))
    return _apart_degrees(np.eye(3), turn), ("-" if axis[j] < 0 else "+") + AXES[j]


def _nearest_permutation(rot) -> np.ndarray:
    """The signed permutation matrix nearest a rotation: each column's largest entry, signed (a scan's axis codes)."""
    out = np.zeros((3, 3))
    rows = np.argmax(np.abs(rot), axis=0)
    if len(set(rows.tolist())) < 3:  # 45 degrees oblique: no nearest permutation, the obliquity is not tried
        return rot
    out[rows, range(3)] = np.sign(rot[rows, range(3)])
    return out


def _canonical_order(rows, where, affine, shape) -> np.ndarray:
    """`rows` (of the brain's voxels `where`, flat indices in stored order) listed in the closest canonical (RAS) voxel
    order, for a choice among them that is the same whatever the storage order (analysis/tractography.py's
    `_canonical_mask`): chosen in stored order, the seeds and so the scores had differed between one scan stored LAS
    and SLA (the table as given 23.46 and 23.21 mm; a thick-slice audit)."""
    from ..core.orientation import Reorientation

    canonical = Reorientation.to_canonical(affine).apply(Volume(np.arange(int(np.prod(shape))).reshape(shape), affine))
    rank = np.empty(canonical.data.size, np.int64)
    rank[canonical.data.ravel()] = np.arange(canonical.data.size)  # stored flat index -> its place in canonical order
    return rows[np.argsort(rank[where[rows]], kind="stable")]


def gradient_scores(tensor: Volume, mask, seeds: int = SEEDS, scheme: bool = False) -> GradCheck:
    """The score (mean streamline length both ways, mm) of every `candidates` correction of the fitted tensors'
    principal directions; see the module's docstring. `scheme`: the table is an MRtrix dw_scheme."""
    cands = candidates(tensor.affine, scheme)
    vox = np.linalg.norm(np.asarray(tensor.affine, float)[:3, :3], axis=0)
    out = GradCheck(candidates={c.key: c for c in cands}, step_mm=float(vox.mean()),
                    scheme_affine=np.asarray(tensor.affine, float) if scheme else None)
    brain = np.asarray(mask.data if isinstance(mask, Volume) else mask, bool)
    t = np.asarray(tensor.data)
    where = np.flatnonzero(brain.ravel())
    flat = t.reshape(-1, 6)[where]
    fa = tensors.fa(flat)
    wm = fa > SEED_FA
    out.white_matter = int(wm.sum())
    thickness = min(int(brain.any(axis=tuple(j for j in range(3) if j != i)).sum()) for i in range(3))  # planes
    if out.white_matter < MIN_WHITE_MATTER or thickness < MIN_THICKNESS:
        return out
    e = tensors.principal_vector(flat.astype(np.float64))
    shape = np.array(brain.shape)
    lookup = np.full(brain.size, -1, np.int64)  # voxel -> its row in the brain's arrays
    lookup[where] = np.arange(where.size)
    fa_at = np.append(fa, 0.0)  # row -1: outside the brain
    e_at = np.vstack([e, np.zeros((1, 3))])
    rows = np.flatnonzero(wm)
    if rows.size > seeds:
        rows = np.sort(np.random.default_rng(0).choice(_canonical_order(rows, where, tensor.affine, brain.shape), seeds,
                                                       replace=False))
    start = np.stack(np.unravel_index(where[rows], brain.shape), -1).astype(float)
    step = out.step_mm
    mats = np.stack([c.matrix for c in cands])  # (C,3,3)
    n = len(rows)
    cos_stop = np.cos(np.radians(STOP_ANGLE))
    length = np.zeros(len(cands))
    for sign in (1.0, -1.0):
        pos = np.broadcast_to(start, (len(cands), n, 3)).copy()
        d = sign * np.einsum("cij,nj->cni", mats, e[rows])
        alive = np.ones((len(cands), n), bool)
        for _step in range(STEPS):
            pos += d * (step / vox)
            at = np.rint(pos).astype(np.int64)
            inside = ((at >= 0) & (at < shape)).all(-1)
            lin = np.ravel_multi_index(tuple(np.clip(at, 0, shape - 1).transpose(2, 0, 1)), brain.shape)
            row = np.where(inside, lookup[lin], -1)
            nxt = np.einsum("cij,cnj->cni", mats, e_at[row])
            c = (nxt * d).sum(-1)
            alive &= (fa_at[row] > STOP_FA) & (np.abs(c) > cos_stop)
            length += alive.sum(-1)
            d = np.where(c[..., None] < 0, -nxt, nxt)
    scores = length * step / n  # mm: both ways summed, averaged over the seeds
    out.scores = {c.key: float(s) for c, s in zip(cands, scores)}
    return out


def check_gradients(dwi: Volume, mask, tensor: Volume, table: str | None = None, say_noise: bool = True) -> GradCheck:
    """One warning line where another frame of the gradient directions makes the fibres clearly more continuous than
    the table as given (`gradient_scores`): what looks wrong and how to mend the bvec file `table` (a DWI node's
    gradients where None). Nothing where the table wins or there is too little white matter to judge. Returns what was
    found, for a record of it (iqt batch's QC). Where noise ends the streamlines too soon to judge (`GradCheck.noisy`)
    one warning line says the table could not be judged, naming no correction (unless `say_noise` is False: a fit
    another warning already calls wrong, whose refit is checked again)."""
    scheme = getattr(dwi, "meta", {}).get("table") == "dw_scheme"
    found = gradient_scores(tensor, mask, scheme=True) if scheme else gradient_scores(tensor, mask)
    if found.noisy:
        if not say_noise:
            return found
        warnings.warn(dwi.source + _("the gradient table could not be judged: noise ends the fibres tracked from the "
                                     "white matter within two voxels; with the table as given ({given} mm) and with "
                                     "every correction, so a mirrored or swapped table would pass unseen; "
                                     "{check}").format(given=f"{found.scores['given']:.1f}", check=lines_check_text()),
                      IQTWarning, stacklevel=2)
        return found
    key = found.suspect
    if key is None:
        return found
    c = found.candidates[key]
    given, best = found.scores["given"], found.scores[key]
    source = dwi.source
    # a DWI node's gradients are read through its measurement frame: the file's edit does not say what to do there
    fix = c.fix.replace("the bvec file", shell_word(table)) if table else _("load the DWI again from a conversion whose gradients "
                                                                "and measurement frame are right")
    what = c.what
    if scheme:  # an MRtrix image's header: its columns, in the scanner frame

        what, fix = scheme_advice(c.matrix, dwi.affine, dwi.meta["path"])
    # pieces (split at "; ") of at most PIECE_LIMIT characters, as a long warning is said over several lines
    # (methods/base.py warning_lines): as one line it had run to 563-651 characters after the file's name
    warnings.warn(source + _("the gradient table looks wrong; {what}; the fibres are far more continuous with the "
                             "table corrected so; tracking from the white matter follows them {best} mm on average "
                             "corrected, against {given} mm with the table as given; a wrong table turns or mirrors "
                             "every tensor's direction without any other sign; the upsampling's uncertainty does not "
                             "show a wrong table; to mend the table take one of the ways below, just one, then fit "
                             "again: a second would turn or mirror it again; one way: check how the table was "
                             "converted and convert it again; another way, instead: {fix}; this check is a heuristic, "
                             "as MRtrix's dwigradcheck: the fit is as the table says").format(
        what=what, best=f"{best:.1f}", given=f"{given:.1f}", fix=fix), IQTWarning, stacklevel=2)
    return found
