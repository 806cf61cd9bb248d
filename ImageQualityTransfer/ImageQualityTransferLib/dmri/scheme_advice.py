"""The gradient check's advice (dmri/gradcheck.py) for a table read from an MRtrix image's dw_scheme: what looks wrong
and how to mend it, said of the dw_scheme's columns in the scanner frame it is kept in, with MRtrix's own tools. The
bvec file's wording had named a dwi.bvec that does not exist, and the storage axis where the strides are permuted."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fileio.mif import mended_path
from ..fileio.paths import shell_word
from .table_terms import AXES, ROWS, SAME_DEGREES, _apart_degrees, _rows, _shown


def on_scheme(correction, affine) -> np.ndarray:
    """A correction of the directions in voxel axes (g -> C g) as it acts on the dw_scheme's scanner coordinates:
    R C R^-1, R the affine's unit columns (the frame fileio/volumes.py reads the dw_scheme through)."""
    a = np.asarray(affine, float)[:3, :3]
    r = a / np.linalg.norm(a, axis=0)
    return r @ np.asarray(correction, float) @ np.linalg.inv(r)


def scheme_corrections(affine) -> list[tuple[str, np.ndarray]]:
    """(key, correction in voxel axes) of a dw_scheme with one scanner axis negated or two swapped (R^-1 P R, as
    `on_scheme` reads it): the gradient check's candidates for such a table, which on an oblique scan are not the voxel
    axes' (the 3 mm yaw scan, 19 degrees: the scanner's y negated had gone unsaid)."""
    a = np.asarray(affine, float)[:3, :3]
    r = a / np.linalg.norm(a, axis=0)
    out = []
    for i in range(3):
        p = np.eye(3)
        p[i, i] = -1.0
        out.append((f"scheme-{AXES[i]}-flipped", np.linalg.inv(r) @ p @ r))
    for i, j in ((0, 1), (0, 2), (1, 2)):
        p = np.eye(3)[[j if k == i else i if k == j else k for k in range(3)]]
        out.append((f"scheme-{AXES[i]}{AXES[j]}-swapped", np.linalg.inv(r) @ p @ r))
    return out


def _signed_permutation(m) -> np.ndarray | None:
    """The signed permutation within SAME_DEGREES of `m` up to sign (-P corrects as P does), the one with fewer
    negations; None where none is."""
    rows = np.argmax(np.abs(m), axis=1)
    if len(set(rows.tolist())) < 3:
        return None
    p = np.zeros((3, 3))
    p[range(3), rows] = np.sign(m[range(3), rows])
    if _apart_degrees(p, m) > SAME_DEGREES:
        return None
    return -p if (p < 0).sum() > (-p < 0).sum() else p


def scheme_key(correction, affine) -> str:
    """iqt batch's QC value (bvec_check) for the correction of a dw_scheme, said of its scanner-frame columns as the
    warning says it (`scheme_advice`): e.g. "scheme-x-flipped", "scheme-columns(y,x,z)", "scheme-turned". The voxel
    axes' key had recorded "y-flipped" where the warning named the scanner's x."""
    p = _signed_permutation(on_scheme(correction, affine))
    if p is None:
        return "scheme-turned"
    src = np.argmax(np.abs(p), axis=1)
    signs = p[range(3), src]
    if (src == np.arange(3)).all():
        return "scheme-" + "".join(AXES[i] for i in range(3) if signs[i] < 0) + "-flipped"
    return "scheme-columns" + _rows(src, signs).replace(" ", "")


def scheme_advice(correction, affine, path) -> tuple[str, str]:
    """(what looks wrong, how to mend it) for the dw_scheme in `path`'s header, given the voxel-axes correction the
    check found; pieces split at "; " as the warning's (methods/base.py warning_lines)."""
    m = on_scheme(correction, affine)
    p = _signed_permutation(m)
    name = Path(str(path)).name
    if p is None:
        what = "the directions of its dw_scheme look turned or mirrored (in the scanner frame it keeps them in)"
        edit = f"in grad.b (rows of x y z b) replace each row's x y z, g, by M g, b kept; M = {_shown(m)}"
    else:
        src = np.argmax(np.abs(p), axis=1)  # new column i is sign * old column src[i]
        signs = p[range(3), src]
        if (src == np.arange(3)).all():
            neg = [AXES[i] for i in range(3) if signs[i] < 0]
            what = (f"the {neg[0]} column of its dw_scheme (the scanner's {neg[0]}) looks negated" if len(neg) == 1 else
                    f"the {' and '.join(neg)} columns of its dw_scheme (the scanner's) look negated")
            edit = "in grad.b (rows of x y z b) negate the " + " and ".join(
                f"{ROWS[AXES.index(a)]} column ({a})" for a in neg)
        else:
            moved = [AXES[i] for i in range(3) if src[i] != i]
            order = _rows(src, signs)
            what = (f"the {moved[0]} and {moved[1]} columns of its dw_scheme (the scanner's) look swapped"
                    if len(moved) == 2 else "the columns of its dw_scheme (the scanner's x y z) look permuted")
            what += " and one negated" if (signs < 0).any() else ""
            edit = f"in grad.b (rows of x y z b) reorder the columns x y z to {order}, b kept last"
    fixed = mended_path(path)
    fix = (f"mend the dw_scheme of {name}, in the scanner frame MRtrix keeps it in, not a bvec file; "
           f"export it: 'mrinfo {shell_word(path)} -export_grad_mrtrix grad.b'; {edit}; "
           f"write it back: 'mrconvert {shell_word(path)} -grad grad.b {shell_word(fixed)}', and give {fixed.name}")
    return what, fix
