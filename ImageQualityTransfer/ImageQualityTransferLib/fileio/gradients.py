"""FSL gradient files: where a DWI's bval/bvec sidecars are, reading them as text, and FSL's bvec frame; the BIDS
JSON sidecar's slice axis; kept apart from the NIfTI mechanics (`fileio.nifti`) since they are plain text."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from ..core.errors import IQTError, IQTWarning
from ..core.i18n import _
from .paths import not_a_file

SLICE_ENCODING = {"i": 0, "j": 1, "k": 2, "i-": 0, "j-": 1, "k-": 2}  # BIDS SliceEncodingDirection -> voxel axis


def _stem(dwi_path) -> str:
    p = str(dwi_path)
    double = next((suffix for suffix in (".nii.gz", ".mif.gz") if p.lower().endswith(suffix)), None)
    return p[: -len(double)] if double else os.path.splitext(p)[0]


def bval_bvec_paths(dwi_path, bval=None, bvec=None):
    """FSL sidecars next to the DWI unless given: dwi.nii.gz -> dwi.bval, dwi.bvec (the suffix matched in any case:
    DWI.NII.GZ -> DWI.bval)."""
    stem = _stem(dwi_path)
    return Path(bval or stem + ".bval"), Path(bvec or stem + ".bvec")


def sidecar_path(dwi_path) -> Path:
    """The BIDS sidecar beside a DWI file (dwi.nii.gz -> dwi.json), there or not."""
    return Path(_stem(dwi_path) + ".json")


def sidecar_slices(dwi_path) -> tuple[int | None, int | None]:
    """(the voxel axis (0-2) the BIDS sidecar beside the DWI (dwi.json, as dcm2niix writes it) gives as
    SliceEncodingDirection, the number of slices its SliceTiming lists); None for what there is no sidecar for or it
    does not say. A sidecar that cannot be read, or an unknown direction, is said in one warning and not used."""
    p = sidecar_path(dwi_path)
    kind = not_a_file(p)
    if kind is not None:  # never opened (a FIFO waits for ever), but said: a sidecar there goes unread
        warnings.warn(f"{p}: is {kind}, not a file, and is not read as a BIDS sidecar; its SliceEncodingDirection is not "
                      "used: the slice axis is found as for a series without a sidecar", IQTWarning, stacklevel=3)
        return None, None
    if not p.is_file():
        return None, None
    try:
        # the bytes: UTF-8 (a BOM too) or UTF-16/32 (PowerShell 5's Out-File), as RFC 8259 and the bval/bvec reader
        doc = json.loads(p.read_bytes())
        value, timing = doc.get("SliceEncodingDirection"), doc.get("SliceTiming")
    except (OSError, ValueError, AttributeError, RecursionError) as e:
        warnings.warn(_("{file}: not read as a BIDS sidecar ({error}); its SliceEncodingDirection is not used: the "
                        "slice axis is found as for a series without a sidecar").format(file=p, error=type(e).__name__),
                      IQTWarning, stacklevel=3)
        return None, None
    count = len(timing) if isinstance(timing, list) and len(timing) > 1 else None
    if value is None:
        return None, count
    if not isinstance(value, str) or value not in SLICE_ENCODING:  # a list or a dict would not even hash
        warnings.warn(_("{file}: SliceEncodingDirection {value} is none of i, j, k (or i-, j-, k-) and is not used: "
                        "the slice axis is found from its SliceTiming or the voxels").format(file=p, value=repr(value)),
                      IQTWarning, stacklevel=3)
        return None, count
    return SLICE_ENCODING[value], count


def read_gradient_table(path: Path, what: str) -> np.ndarray:
    """An FSL bval or bvec file as a 2D array of its lines' numbers, every refusal naming the file. Read as UTF-8 with or
    without a byte-order mark (or UTF-16 with one), '#' starting a comment, and commas taken as separators ('0,1000'
    and '0, 1000' as '0 1000'); a comma inside space-separated numbers ('0,5 0,3': a decimal comma) is refused."""
    import re

    kind = not_a_file(path)
    if kind is not None:  # a FIFO would be waited on for ever
        raise IQTError(f"{path}: is {kind}, not a file, and is not read; give the {what} as a text file")
    try:
        raw = path.read_bytes()
    except PermissionError:
        raise IQTError(f"{path}: cannot be read (permission denied); check the file's permissions") from None
    except OSError as exc:
        raise IQTError(f"{path}: cannot be read ({exc.strerror or exc}); check the {what}") from None
    fix = f"give the {what} as FSL and dcm2niix write it: plain text, numbers separated by spaces"
    try:
        text = raw.decode("utf-16") if raw.startswith((b"\xff\xfe", b"\xfe\xff")) else raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise IQTError(f"{path}: is not a text file (not UTF-8); {fix}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0]
        tokens = line.split()
        if len(tokens) > 1 and any(re.search(r"\d,\d", t) for t in tokens):
            raise IQTError(f"{path}: line {number} has commas inside space-separated numbers ({tokens[0]} ...), which "
                           f"reads as decimal commas; write decimals with a point (0.5), the numbers separated by spaces")
        tokens = line.replace(",", " ").split()
        if not tokens:
            continue
        try:
            rows.append([float(t) for t in tokens])
        except ValueError:
            bad = next(t for t in tokens if not _is_number(t))
            raise IQTError(f"{path}: {bad[:20]!r} on line {number} is not a number; {fix}") from None
    if not rows:
        raise IQTError(f"{path}: holds no numbers; {fix}, one value per volume of the DWI")
    if len({len(r) for r in rows}) > 1:
        raise IQTError(f"{path}: its lines hold different numbers of values ({', '.join(str(len(r)) for r in rows)}); "
                       f"{fix}, one value per volume on each line")
    return np.array(rows, dtype=float)


B0_THRESHOLD = 50.0  # s/mm^2: a volume with b at or below it is a b0 (fileio.load_dwi and dmri/dti.py read it here)


def check_table(bvals, bvecs, n: int, source: str = "") -> None:
    """Refuse b-values (n,) and directions (n, 3) that would fit wrong tensors without a word: missing, another count
    than the series' `n` volumes, directions as FSL's file holds them (3, n), or b-values in another unit (s/m^2:
    MD 7.3e-10 came out; ms/um^2: every volume a b0) or negative. The one check for a series read from files
    (fileio.load_dwi, `source` naming the bval file) and for one built in memory (dmri.dti.fit_dti)."""
    if bvals is None or bvecs is None:
        raise IQTError(f"{source}the DWI has no {'b-values' if bvals is None else 'gradient directions'}; give a Volume of "
                       "kind 'dwi' with bvals (N,) in s/mm^2 and bvecs (N, 3) in its voxel axes, or read it with "
                       "fileio.load_dwi")
    bvals, bvecs = np.asarray(bvals, float), np.asarray(bvecs, float)
    if bvals.ndim != 1 or bvals.size != n:
        raise IQTError(f"{source}the DWI has {n} volumes but {bvals.size} b-values{'' if bvals.ndim == 1 else f' {bvals.shape}'}; "
                       "give one b-value per volume, shape (N,)")
    if bvecs.shape != (n, 3):
        turned = bvecs.shape == (3, n)
        raise IQTError(f"{source}the gradient directions have shape {bvecs.shape}, not ({n}, 3) for the DWI's {n} volumes"
                       + ("; they are one row per axis, as FSL's bvec file holds them: give their transpose (bvecs.T)"
                          if turned else "; give one direction per volume"))
    if not (np.all(np.isfinite(bvals)) and np.all(np.isfinite(bvecs))):
        raise IQTError(f"{source}NaN or Inf among the b-values or directions; give the series' own gradient table")
    if bvals.max() > 1e5:
        raise IQTError(f"{source}b-values up to {bvals.max():g} look like s/m^2; give them in s/mm^2 (e.g. 1000), "
                       f"as FSL and dcm2niix write them")
    if (bvals < 0).any():
        raise IQTError(f"{source}negative b-values; give the b-values in s/mm^2 (0 for the b0 volumes)")
    if 0 < bvals.max() <= B0_THRESHOLD and np.any(np.abs(bvecs) > 0):  # every volume would be a b0
        raise IQTError(f"{source}b-values up to {bvals.max():g} with gradient directions look like ms/um^2; give them in "
                       f"s/mm^2 (e.g. 1000 for 1.0), as FSL and dcm2niix write them")


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def fsl_flip(affine) -> np.ndarray:
    """FSL's bvec frame against the voxel axes: x flipped where the affine's 3x3 has a positive determinant
    (neurological storage), else the identity; its own inverse (docs/conventions.md, FSL bvecs)."""
    return np.diag([-1.0 if np.linalg.det(np.asarray(affine)[:3, :3]) > 0 else 1.0, 1.0, 1.0])
