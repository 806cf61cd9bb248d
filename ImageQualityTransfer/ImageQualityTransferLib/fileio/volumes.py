"""Reading and writing volumes: DWI (NIfTI + FSL bval/bvec), tensor NIfTI, scalar/mask NIfTI.

Every reader validates and raises `IQTError` naming the problem and the fix; every writer writes to a
temporary file and renames it, so a failure never leaves a partial output. Tensor files ending in
`.nrrd`/`.nhdr` go through `fileio.nrrd` (Slicer's tensor NRRD).
"""

from __future__ import annotations

import os
import threading
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core import tensors
from ..core.errors import IQTError, IQTWarning
from ..core.volume import Volume, voxel_sizes
from .paths import NRRD_SUFFIXES, atomic_write
from .records import made_by, read_made_by

if TYPE_CHECKING:  # imported on first use (`_nib`)
    import nibabel


def _nib():
    """nibabel, imported on first use: the method registry imports this package in a Slicer without nibabel."""
    import nibabel

    return nibabel


GZIP_MEMBER = 8 << 20  # bytes of the uncompressed file per gzip member


def _save_nifti(img, tmp) -> None:
    """nibabel's single-file NIfTI at `tmp`; a `.gz` one compressed on every available core as concatenated gzip members
    (RFC 1952: a gzip reader reads them as one stream; Testing/fileio/test_nifti.py reads them back with nibabel,
    Python's gzip and VTK's NIfTI reader), at nibabel's level 1 with zlib's Z_RLE strategy (matches runs of equal
    bytes only): the 86 MB output of a 72x87x72 x2 run takes 0.56 s on one core instead of 1.0 s with the default
    strategy, for a 9 % larger file (38.8 MB instead of 35.5 MB; float tensors hold few longer repeats)."""
    if not str(tmp).lower().endswith(".gz"):
        return _nib().save(img, tmp)
    import zlib
    from concurrent.futures import ThreadPoolExecutor

    from ..core import threads

    raw = memoryview(img.to_bytes())

    def member(k: int) -> bytes:
        z = zlib.compressobj(1, zlib.DEFLATED, 31, 8, zlib.Z_RLE)  # wbits 31: a gzip member; zlib lets go of the GIL
        return z.compress(raw[k : k + GZIP_MEMBER]) + z.flush()

    with ThreadPoolExecutor(threads.available()) as pool:
        parts = list(pool.map(member, range(0, len(raw), GZIP_MEMBER)))
    with open(tmp, "wb") as f:
        for part in parts:
            f.write(part)


def _is_nrrd(path) -> bool:
    return str(path).lower().endswith(NRRD_SUFFIXES)


def _load_nifti(path, formats: str = "a .nii or .nii.gz file") -> "nibabel.Nifti1Image":
    path = Path(path)
    if not path.exists():
        raise IQTError(f"{path}: file not found; check the path")
    if _is_nrrd(path):
        raise IQTError(f"{path}: NRRD is read only for tensor volumes; give a NIfTI (.nii/.nii.gz) file here")
    if path.is_dir():
        raise IQTError(f"{path}: is a folder; give a NIfTI (.nii/.nii.gz) file")
    mrtrix = next((x for x in (".mif", ".mif.gz", ".mih") if path.name.lower().endswith(x)), None)
    if mrtrix:
        base = str(path)[: -len(mrtrix)]
        raise IQTError(f"{path}: MRtrix's own format is not read; convert it to NIfTI with 'mrconvert {path} {base}.nii.gz' "
                       f"(a DWI with '-export_grad_fsl {base}.bvec {base}.bval' too; a dwi2tensor output then reads "
                       "with --tensor-order mrtrix)")
    if not os.access(path, os.R_OK):
        raise IQTError(f"{path}: cannot be read (permission denied); check the file's permissions")
    _check_compression(path)
    try:
        img = _nib().load(str(path))
    except Exception as exc:  # nibabel raises many types for damaged files
        raise IQTError(f"{path}: cannot be read as NIfTI ({exc}); give {formats}") from None
    _check_geometry(img.affine, path)
    _check_qform_sform(img, path)
    if hasattr(img.header, "get_qform") and not (int(img.header["qform_code"]) or int(img.header["sform_code"])):
        warnings.warn(f"{path}: the header holds no orientation (qform and sform codes 0), so it is read on nibabel's "
                      "default grid, and left-right and the fibre directions may be wrong; set its orientation (e.g. "
                      "with fslorient) where that matters", IQTWarning, stacklevel=3)  # review 45b
    elif _analyze(img) and not path.with_suffix(".mat").exists():  # SPM's .mat beside it holds an orientation
        warnings.warn(f"{path}: an Analyze 7.5 file holds no orientation, so it is read on nibabel's default grid, and "
                      "left-right and the fibre directions may be wrong; convert it to NIfTI with its orientation set "
                      "(e.g. fslchfiletype NIFTI_GZ, then fslorient) where that matters", IQTWarning, stacklevel=3)
    return _in_mm(img, path)


def _analyze(img) -> bool:
    """An Analyze 7.5 (or SPM) image: a header without NIfTI's qform and sform."""
    from nibabel.analyze import AnalyzeImage

    return isinstance(img, AnalyzeImage) and not hasattr(img.header, "get_qform")


# ---------------------------------------------------------------- orientation codes carried to the outputs

# in a command's run (carried_codes): (direction cosines, (qform_code, sform_code)) of the DWI and tensor files it read,
# the latest last; per run, in this context, not one module global: runs in other threads of the process (an in-process
# caller's) have their own, whichever ends first (review 48: a global saved and restored on exit gave a run the codes of
# another one's input, and outlived both). A thread a run starts gets a fresh context (threading.Thread,
# concurrent.futures): reading or writing there sees no run unless started in a copy of the run's
# (contextvars.copy_context().run); none does: fileio.volumes._save_nifti's threads only compress bytes
_GRIDS: ContextVar[list | None] = ContextVar("iqt_carried_codes_grids", default=None)
_GRIDS_LOCK = threading.Lock()


@contextmanager
def carried_codes():
    """For the length of one command's run (the `iqt` dispatch), each output is written with the orientation codes of
    the input it was made from (`written_codes`); outside one (the Slicer module, a library caller) with (1, 1)."""
    token = _GRIDS.set([])
    try:
        yield
    finally:
        _GRIDS.reset(token)


def _directions(affine) -> np.ndarray:
    m = np.asarray(affine, float)[:3, :3]
    return m / voxel_sizes(affine)


def header_codes(img) -> tuple[int, int]:
    """(qform_code, sform_code) of a header as read: (0, 0) for Analyze, which has neither; (1, 1) for formats that
    always hold an orientation."""
    h = img.header
    if hasattr(h, "get_qform"):
        return int(h["qform_code"]), int(h["sform_code"])
    return (0, 0) if _analyze(img) else (1, 1)


def _remember_codes(affine, codes) -> None:
    """The codes of an input read (a DWI or tensor volume), for the outputs made on its grid."""
    grids = _GRIDS.get()
    if grids is None:
        return
    with _GRIDS_LOCK:
        grids.append((_directions(affine), tuple(codes)))
        del grids[:-32]


def written_codes(affine) -> tuple[int, int]:
    """The (qform_code, sform_code) an output with `affine` is written with: those of the latest DWI or tensor input read
    whose voxel axes point the same ways (the grid it was made on: the same, finer or coarser), so that an sform in MNI
    (4) or aligned (2) space stays so; an input with no orientation (codes 0: a NIfTI without them, Analyze) gives an
    sform aligned (2) to the grid it was read on, which claims no scanner space and keeps the grids of a run's outputs
    in register when read again (with codes 0 a reader would centre each output's grid anew: a `degrade --shift`
    output would lose its shift); (1, 1), scanner space, for an output made from no file read or outside a command's
    run (carried_codes) (audit E: every output was written with codes 1 and 1)."""
    d = _directions(affine)
    grids = _GRIDS.get()
    with _GRIDS_LOCK:
        for dirs, codes in reversed(grids or ()):
            if np.allclose(dirs, d, atol=1e-5):
                return (0, 2) if codes == (0, 0) else codes
    return (1, 1)


def _set_orientation(img, affine) -> None:
    """The affine into the header with the codes `written_codes` gives (nibabel keeps a sheared affine's closest rigid
    grid in the qform)."""
    qcode, scode = written_codes(affine)
    img.set_sform(affine, code=scode)
    img.set_qform(affine, code=qcode)


UNIT_TO_MM = {"meter": 1e3, "micron": 1e-3}  # NIfTI's xyzt_units other than mm (and 'unknown', read as mm)
MM_RANGE = (0.005, 20.0)  # mm: a voxel size outside it is no MRI voxel, so a unit that gives one is a wrong label


def _in_mm(img, path):
    """The image with its affine in mm where the header gives its spatial unit as meter or micron (nibabel reads the
    numbers as mm whatever the unit; audit E: micron and meter files were read, and written back, as mm): converted,
    with one warning; refused where the converted voxel size is no MRI voxel's (a header holding mm labelled micron)."""
    h = img.header
    unit = h.get_xyzt_units()[0] if hasattr(h, "get_xyzt_units") else "mm"
    scale = UNIT_TO_MM.get(unit)
    if scale is None:
        return img
    given = voxel_sizes(img.affine)
    affine = np.asarray(img.affine, float).copy()
    affine[:3] *= scale
    sizes = voxel_sizes(affine)
    said = " x ".join(f"{v:.4g}" for v in given)
    if sizes.min() < MM_RANGE[0] or sizes.max() > MM_RANGE[1]:
        raise IQTError(f"{path}: the header gives the voxel size {said} in {unit}s, which is "
                       f"{' x '.join(f'{v:.4g}' for v in sizes)} mm, no MRI voxel; if those numbers are mm, set the "
                       f"header's unit to mm (nibabel: img.header.set_xyzt_units('mm'); AFNI: nifti_tool -mod_hdr "
                       f"-mod_field xyzt_units 10) and retry")
    warnings.warn(f"{path}: the header gives the voxel size {said} in {unit}s: read as "
                  f"{' x '.join(f'{v:.4g}' for v in sizes)} mm, and the outputs are written in mm", IQTWarning,
                  stacklevel=3)
    codes = int(h["qform_code"]), int(h["sform_code"])
    img = type(img)(img.dataobj, affine, h)  # the same data (not read here), the affine in mm
    img.header["qform_code"], img.header["sform_code"] = codes
    img.header.set_xyzt_units("mm")
    return img


def _nifti_magic(head: bytes) -> bool:
    """Whether the first bytes of a file are a NIfTI-1 or NIfTI-2 header (or an Analyze one, which NIfTI-1 extends)."""
    return (head[344:348] in (b"n+1\0", b"ni1\0") or head[4:8] in (b"n+2\0", b"ni2\0")
            or any(int.from_bytes(head[:4], e) in (348, 540) for e in ("little", "big")))


def _check_compression(path: Path) -> None:
    """A name whose suffix does not match the content (gzip's magic bytes) is said as such: nibabel's 'Cannot work out
    file type' and 'is not a gzip file' did not say that the file itself may be fine (audit E)."""
    with open(path, "rb") as f:
        head = f.read(352)
    if not head:
        return  # nibabel says 'Empty file'
    gz = head[:2] == b"\x1f\x8b"
    name = path.name.lower()
    if name.endswith(".gz") and not gz:
        if _nifti_magic(head):
            raise IQTError(f"{path}: its name ends in .gz but its content is not gzip-compressed (it is an uncompressed "
                           f"NIfTI); rename it to {path.name[:-3]} (or compress it with gzip) and retry")
        raise IQTError(f"{path}: cannot be read as NIfTI: its name ends in .gz but its content is neither gzip-compressed nor "
                       f"an uncompressed NIfTI (it begins {head[:16]!r}); check where it came from (a failed download or "
                       f"copy?)")
    if gz and name.endswith((".nii", ".hdr", ".img")):
        raise IQTError(f"{path}: its content is gzip-compressed but its name ends in {path.suffix}, not {path.suffix}.gz; "
                       f"rename it to {path.name}.gz (or decompress it with gunzip) and retry")


QSFORM_TOLERANCE = 0.25  # voxels: the most a qform and an sform may place a corner of the grid apart without a word


def _check_qform_sform(img, path) -> None:
    """A header with both a qform and an sform (codes above 0) that place the grid differently: nibabel, FSL and MRtrix
    read the sform; said in one warning where a corner of the grid moves by more than QSFORM_TOLERANCE voxels between
    them (dcm2niix writes them equal; the real subjects differ by at most 0.075 voxels: a 0.05 degree rotation), and
    refused where they differ in handedness, since either answer is then the other's mirror image (audit E: an sform
    flipped left-right gave tensors off by 1.04x their largest element, with exit 0 and no word)."""
    h = img.header
    if not hasattr(h, "get_qform"):
        return
    qc, sc = int(h["qform_code"]), int(h["sform_code"])
    if qc <= 0 or sc <= 0:
        return
    q, s = np.asarray(h.get_qform(), float), np.asarray(h.get_sform(), float)
    dq, ds = np.linalg.det(q[:3, :3]), np.linalg.det(s[:3, :3])
    if not (np.all(np.isfinite(q)) and np.isfinite(dq) and dq != 0 and ds != 0):
        return  # a qform nibabel cannot make sense of: the sform is read, as it would be anyway
    if np.sign(dq) != np.sign(ds):
        raise IQTError(f"{path}: the header's qform (code {qc}) and sform (code {sc}) differ in handedness (the "
                       f"qform's determinant is {'positive' if dq > 0 else 'negative'}, the sform's "
                       f"{'positive' if ds > 0 else 'negative'}): each is the other's mirror image, so left and right "
                       f"cannot be told; copy the right one over the other (fslorient -copysform2qform FILE where the "
                       f"sform is right, -copyqform2sform where the qform is) and retry")
    shape = np.asarray(img.shape[:3], float)
    corners = np.array([[i, j, k, 1.0] for i in (-0.5, shape[0] - 0.5) for j in (-0.5, shape[1] - 0.5)
                        for k in (-0.5, shape[2] - 0.5)])
    voxel = float(voxel_sizes(s).min())

    def apart_from(a) -> float:
        return float(np.linalg.norm(corners @ (q - a)[:3].T, axis=1).max())

    apart = apart_from(s)
    if apart > QSFORM_TOLERANCE * voxel:
        rigid = h.copy()  # a sheared sform beside the qform closest to it, as nibabel and ITK write one: not a disagreement
        rigid.set_qform(s, code=qc, strip_shears=True)
        if apart_from(rigid.get_qform()) <= QSFORM_TOLERANCE * voxel:
            return
        warnings.warn(f"{path}: the header's qform (code {qc}) and sform (code {sc}) disagree, placing the grid up to "
                      f"{apart:.3g} mm ({apart / voxel:.2g} voxels) apart; the sform is used, as FSL and MRtrix use it; "
                      f"if the qform is the right one, copy it over the sform (fslorient -copyqform2sform FILE) and rerun",
                      IQTWarning, stacklevel=4)


def _check_geometry(affine, path) -> None:
    """A voxel-to-world matrix with a zero, non-finite or dependent axis is refused on reading: the fit ran to its end
    and then failed to write, and upsample, report and track ended in internal errors (review 45b)."""
    m = np.asarray(affine, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(m, axis=0) if np.all(np.isfinite(m)) else np.zeros(3)
    if np.any(norms == 0) or abs(np.linalg.det(m / norms)) < 1e-6:
        raise IQTError(f"{path}: the header's voxel-to-world matrix {np.round(m, 4).tolist()} has a zero, non-finite or "
                       "dependent axis, so the image has no valid geometry; fix its qform/sform (e.g. with fslorient or "
                       "nibabel) and retry")


def _data(img, path, dtype=np.float32) -> np.ndarray:
    """The voxel array, with a clear error for a truncated or damaged file. A gzipped file is read to its end, so that
    gzip's checksum is verified: nibabel stops at the data's last byte, and a file with one flipped bit was read as
    valid data (audit 46: a DWI fitted and upsampled with 17 changed voxels, exit 0)."""
    try:
        if _gzipped(path):
            import gzip

            with gzip.open(path, "rb") as f:
                data = np.asarray(type(img).from_stream(f).dataobj, dtype=dtype)
                f.read()  # to the end: the checksum is checked there
            return data
        return np.asarray(img.dataobj, dtype=dtype)
    except Exception as exc:
        raise IQTError(f"{path}: the image data cannot be read ({exc}); the file may be truncated or damaged") from None


def reads_fully(path) -> bool:
    """Whether a NIfTI file's header and all its data read, gzip's checksum included (a resumed batch's check of
    outputs whose sidecars hold no hash)."""
    try:
        _data(_load_nifti(path), path, dtype=None)
        return True
    except (IQTError, OSError):
        return False


def _gzipped(path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _check_finite(data, path, what):
    bad = ~np.isfinite(data)
    if bad.any():
        raise IQTError(
            f"{path}: {int(bad.sum())} NaN/Inf value{'s' if bad.sum() != 1 else ''} in the {what}; replace them (for example "
            f"with 0 outside the brain) and retry"
        )


# ---------------------------------------------------------------- DWI


B0_THRESHOLD = 50.0  # s/mm^2: a volume with b at or below it is a b0 (dmri/dti.py reads it from here)


def bval_bvec_paths(dwi_path, bval=None, bvec=None):
    """FSL sidecars next to the DWI unless given: dwi.nii.gz -> dwi.bval, dwi.bvec (the suffix matched in any case:
    DWI.NII.GZ -> DWI.bval)."""
    p = str(dwi_path)
    stem = p[: -len(".nii.gz")] if p.lower().endswith(".nii.gz") else os.path.splitext(p)[0]
    return Path(bval or stem + ".bval"), Path(bvec or stem + ".bvec")


def read_gradient_table(path: Path, what: str) -> np.ndarray:
    """An FSL bval or bvec file as a 2D array of its lines' numbers, every refusal naming the file. Read as UTF-8 with or
    without a byte-order mark (or UTF-16 with one), '#' starting a comment, and commas taken as separators ('0,1000'
    and '0, 1000' as '0 1000'); a comma inside space-separated numbers ('0,5 0,3': a decimal comma) is refused."""
    import re

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


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def voxel_size(path) -> np.ndarray:
    """Voxel size (mm, per voxel axis) from a NIfTI header, without reading the data."""
    img = _load_nifti(path)
    return voxel_sizes(img.affine)


def load_dwi(path, bval=None, bvec=None) -> Volume:
    """4D DWI with b-values and gradient directions in the voxel axes of the image.

    FSL bvecs are in voxel axes with x flipped when the affine determinant is positive; that flip is
    undone here so that fitted tensors are expressed in the voxel axes (docs/conventions.md).
    """
    img = _load_nifti(path)
    if img.ndim != 4 or img.shape[3] < 7:
        raise IQTError(
            f"{path}: shape {img.shape} is not a diffusion-weighted series; a DWI is 4D with at least 7 volumes (b0 + 6 directions)"
        )
    bval_p, bvec_p = bval_bvec_paths(path, bval, bvec)
    for p, flag in ((bval_p, "--bval"), (bvec_p, "--bvec")):
        if not p.exists():
            raise IQTError(f"{p}: not found; give the FSL gradient file with {flag}")
    bvals = read_gradient_table(bval_p, "b-values (bval)").ravel()
    bvecs = read_gradient_table(bvec_p, "gradient directions (bvec)")
    if bvecs.shape[0] == 3 and bvecs.shape[1] != 3 or (bvecs.shape == (3, 3) and bvals.size == 3):
        bvecs = bvecs.T
    n = img.shape[3]
    if bvals.size != n or bvecs.shape != (n, 3):
        raise IQTError(
            f"{path}: the DWI has {n} volumes but {bval_p.name} has {bvals.size} b-values and {bvec_p.name} "
            f"{bvecs.shape[0]} directions; give the bval/bvec files that belong to this series"
        )
    if bvals.max() > 1e5:
        raise IQTError(f"{bval_p}: b-values up to {bvals.max():g} look like s/m^2; give them in s/mm^2 (e.g. 1000), "
                       f"as FSL and dcm2niix write them")
    if (bvals < 0).any():
        raise IQTError(f"{bval_p}: negative b-values; give the b-values in s/mm^2 (0 for the b0 volumes)")
    if 0 < bvals.max() <= B0_THRESHOLD and np.any(np.abs(bvecs) > 0):  # every volume would be a b0 (review 45b)
        raise IQTError(f"{bval_p}: b-values up to {bvals.max():g} with gradient directions look like ms/um^2; give them in "
                       f"s/mm^2 (e.g. 1000 for 1.0), as FSL and dcm2niix write them")
    norms = np.linalg.norm(bvecs[bvals > B0_THRESHOLD], axis=1)
    norms = norms[norms > 0]  # a zero direction is refused where the tensors are fitted (dmri/dti.py)
    if norms.size and np.abs(norms - 1).max() > 0.01:  # dipy refuses them, MRtrix scales b by |g|^2 (review 45b)
        warnings.warn(f"{bvec_p}: directions of length {norms.min():.3g} to {norms.max():.3g}, not 1; each is taken as a "
                      "direction with its b from the bval file; if their lengths scale b, put b x |g|^2 in the bval file",
                      IQTWarning, stacklevel=2)
    data = _data(img, path)
    _check_finite(data, path, "DWI")
    _remember_codes(img.affine, header_codes(img))
    return Volume(data, img.affine, "dwi", bvals=bvals, bvecs=bvecs @ fsl_flip(img.affine), meta={"path": str(path)})


def fsl_flip(affine) -> np.ndarray:
    """FSL's bvec frame against the voxel axes: x flipped where the affine's 3x3 has a positive determinant
    (neurological storage), else the identity; its own inverse (docs/conventions.md, FSL bvecs)."""
    return np.diag([-1.0 if np.linalg.det(np.asarray(affine)[:3, :3]) > 0 else 1.0, 1.0, 1.0])


def save_dwi(vol: Volume, path) -> None:
    def write(tmp):
        _save_nifti(_nib().Nifti1Image(np.asarray(vol.data, np.float32), vol.affine), tmp)

    bvecs = vol.bvecs @ fsl_flip(vol.affine)
    atomic_write(path, write)
    bval_p, bvec_p = bval_bvec_paths(path)
    np.savetxt(bval_p, vol.bvals[None], fmt="%.10g")  # enough digits that a DWI read back fits the same tensors
    np.savetxt(bvec_p, bvecs.T, fmt="%.10g")


# ---------------------------------------------------------------- tensors


def file_frame(order: str, affine: np.ndarray) -> np.ndarray | None:
    """T with D_voxel = T D_file T^T for a 4D tensor file in `order`, None where its components are in voxel axes
    already: dtifit writes them in FSL's bvec frame (voxel axes, x flipped where the affine's determinant is
    positive), as does dipy fitting with FSL bvecs; dwi2tensor in MRtrix's scanner (RAS) coordinates
    (docs/conventions.md, NIfTI)."""
    from .nrrd import frame_to_voxel_axes

    if order in ("fsl", "dipy"):
        flip = fsl_flip(affine)
        return None if flip[0, 0] > 0 else flip
    if order == "mrtrix":
        return frame_to_voxel_axes(np.eye(3), affine)
    return None


def load_tensor(path, order: str = "nifti") -> Volume:
    """Tensor volume from NIfTI (5D SYMMATRIX, or 4D 6-volume in `order` "fsl", "mrtrix" or "dipy") or Slicer NRRD."""
    if _is_nrrd(path):
        from .nrrd import load_tensor_nrrd

        if order != "nifti":  # was ignored without a word (review 40a)
            raise IQTError(f"{path}: a Slicer NRRD holds its own element order and measurement frame; leave "
                           f"--tensor-order {order} out")
        vol = load_tensor_nrrd(path)
        _remember_codes(vol.affine, (1, 1))  # a NRRD's space is its scanner's
        return vol
    if order not in tensors.ORDERS:
        raise IQTError(f"unknown tensor order {order!r}; use one of {', '.join(tensors.ORDERS)}")
    img = _load_nifti(path, "a .nii or .nii.gz file, or a Slicer .nrrd")  # the formats a tensor volume is read from
    shape = img.shape
    if len(shape) == 5 and shape[3] == 1 and shape[4] == 6:
        if order not in ("nifti", "dipy"):  # reordered, then refused as "not positive definite" (review 40a)
            raise IQTError(f"{path}: a 5D NIfTI SYMMATRIX file has the element order its format fixes; --tensor-order "
                           f"{order} is for 4D six-volume files: leave it out (or give dipy for dipy_fit_dti's file)")
        data = _data(img, path, np.float64)[:, :, :, 0, :]
        file_order = order
        if order == "nifti":
            _warn_if_dipy_frame(img, path)
    elif len(shape) == 4 and shape[3] == 6:
        if order == "nifti":
            raise IQTError(
                f"{path}: a 4D 6-volume tensor file has no standard component order; say which with --tensor-order fsl "
                f"(Dxx,Dxy,Dxz,Dyy,Dyz,Dzz, as dtifit writes), --tensor-order mrtrix (Dxx,Dyy,Dzz,Dxy,Dxz,Dyz, dwi2tensor) "
                f"or --tensor-order dipy (Dxx,Dxy,Dyy,Dxz,Dyz,Dzz, dipy's lower_triangular)"
            )
        data = _data(img, path, np.float64)
        file_order = order
    else:
        raise IQTError(
            f"{path}: shape {shape} is not a diffusion tensor volume; expected 5D (X,Y,Z,1,6) NIfTI SYMMATRIX "
            f"(as 'iqt fit' and ANTs write it; dipy's, in FSL's bvec frame, with --tensor-order dipy) or 4D (X,Y,Z,6) with "
            f"--tensor-order; fit tensors from DWIs with 'iqt fit'"
        )
    data = tensors.nan_as_empty(data, f"{path}: ")  # a NaN background (all six elements) is an empty one
    _check_finite(data, path, "tensor data")
    data = tensors.from_order(data, file_order)
    frame = file_frame(file_order, img.affine)
    if frame is not None:
        data = tensors.rotate(data, frame)
    meta = {"path": str(path), "order": file_order, "five_d": len(shape) == 5}
    made = made_at(img)
    if made is not None:
        meta["made_by"], meta["made_at"] = made
    _remember_codes(img.affine, header_codes(img))
    return Volume(data.astype(np.float32), img.affine, "tensor", meta=meta)


def order_shares(vol: Volume, where: np.ndarray | None = None) -> dict[str, float]:
    """For a tensor volume read from a 4D file in some --tensor-order: the share of its tensors (in `where`) that would
    be positive definite read in each order, so that a refusal can name the order that reads it (review 40a); empty
    for volumes not read from a tensor file. A 5D file's elements are read as a 4D file's in each order too: one saved
    in dtifit's order reads as fsl (which a 5D file cannot be given: order_hint says to save it as 4D)."""
    order = vol.meta.get("order")
    five_d = bool(vol.meta.get("five_d"))
    if (order not in ("fsl", "mrtrix", "dipy") and not (five_d and order == "nifti")) or np.asarray(vol.data).ndim != 4:
        return {}
    t = np.asarray(vol.data, np.float64)
    present = np.any(t != 0, axis=-1) if where is None else np.any(t != 0, axis=-1) & where
    values = t[present]
    if not len(values):
        return {}
    frame = file_frame(order, vol.affine)
    raw = tensors.to_order(values if frame is None else tensors.rotate(values, np.asarray(frame).T), order)
    out = {}
    for other in ("fsl", "mrtrix", "dipy"):
        cand = tensors.from_order(raw, other)
        back = file_frame(other, vol.affine)
        cand = cand if back is None else tensors.rotate(cand, back)  # as load_tensor would have read it
        out[other] = float((tensors.eigenvalues(cand)[:, 0] > 0).mean())
    return out


OWN_INTENT = "DTI"  # the intent name of the 5D files this tool writes (save_tensor)


def _warn_if_dipy_frame(img, path) -> None:
    """One warning for a 5D tensor file this tool did not write on a grid whose affine keeps the axes' handedness:
    there dipy's files (dipy_fit_dti's default output, components in FSL's bvec frame) differ from voxel-axis ones
    (ANTs, 'iqt fit') by an x flip that no check on the tensors can see (review 40a: fibres mirrored, FA and MD
    unchanged); on the usual negative-determinant grid the two frames agree."""
    if np.linalg.det(np.asarray(img.affine, float)[:3, :3]) <= 0:
        return
    name = img.header.get_intent()[2] if hasattr(img.header, "get_intent") else ""
    if name == OWN_INTENT:
        return
    warnings.warn(f"{path}: a 5D tensor file on a grid whose affine has a positive determinant, read in voxel axes (as "
                  "ANTs and 'iqt fit' write it); if dipy wrote it (dipy_fit_dti), its components are in FSL's bvec "
                  "frame: add --tensor-order dipy, or its fibres come out mirrored left-right", IQTWarning, stacklevel=3)


def as_read(vol: Volume) -> dict:
    """The `order` and `five_d` that write a tensor volume back as `load_tensor` read it (a dtifit file as dtifit's,
    dipy_fit_dti's 5D file as a 5D one; NRRD and this tool's own 5D files as 5D SYMMATRIX)."""
    order = vol.meta.get("order", "nifti")
    return {"order": order, "five_d": order == "nifti" or bool(vol.meta.get("five_d"))}


def write_order(read: dict, asked: str = "input") -> dict:
    """`save_tensor`'s order and layout for an output asked in `asked`: "input" writes it as `read` (as_read's
    answer); "dipy" dipy_fit_dti's 5D file unless a 4D dipy file was read (review 44c); "nifti" this tool's 5D; fsl and
    mrtrix their tools' 4D files."""
    if asked == "input":
        return dict(read)
    if asked == "dipy":
        return {"order": "dipy", "five_d": read["five_d"] or read["order"] != "dipy"}
    return {"order": asked, "five_d": asked == "nifti"}


def layout_words(order: dict) -> str:
    """How a tensor file `save_tensor` writes with `order` (write_order's answer) holds its elements, in words."""
    if order["order"] == "nifti":
        return "5D NIfTI SYMMATRIX, lower-triangular Dxx,Dxy,Dyy,Dxz,Dyz,Dzz, voxel axes"
    return {"fsl": "dtifit's 4D order Dxx,Dxy,Dxz,Dyy,Dyz,Dzz, FSL's frame",
            "mrtrix": "dwi2tensor's 4D order Dxx,Dyy,Dzz,Dxy,Dxz,Dyz, scanner frame",
            "dipy": ("dipy_fit_dti's 5D layout" if order["five_d"] else "dipy's 4D lower_triangular order")
            + " Dxx,Dxy,Dyy,Dxz,Dyz,Dzz, FSL's frame"}[order["order"]]


def in_file_frame(data: np.ndarray, order: str, affine) -> np.ndarray:
    """(..., 6) voxel-axis tensors turned into the frame a file in `order` holds them in (file_frame), still in the
    lower-triangular order: what `save_tensor` writes, and what maps of the written file are made from."""
    frame = file_frame(order, affine)
    return data if frame is None else tensors.rotate(data, np.linalg.inv(frame))


def check_tensor_output(path, grid_of) -> None:
    """Before any work: a tensor output on the grid of `grid_of` (an affine, or a NIfTI file whose header gives it)
    can be written at `path` (a Slicer NRRD needs a grid whose voxel axes are at right angles)."""
    if not _is_nrrd(path):
        return
    from .nrrd import check_grid

    if isinstance(grid_of, (str, Path)):
        try:
            grid_of = _nib().load(str(grid_of)).affine  # the header only; a file that cannot be read is said on reading
        except Exception:
            return
    check_grid(path, grid_of)


def save_tensor(vol: Volume, path, order: str = "nifti", five_d: bool = False) -> None:
    """Write a tensor volume: 5D NIfTI SYMMATRIX (default), 4D in `order` and its tool's frame (file_frame), or Slicer
    NRRD by suffix. `five_d` with order "dipy": the 5D layout of dipy_fit_dti's file, components in its frame."""
    if vol.kind != "tensor":
        raise ValueError("save_tensor needs a tensor volume")
    if order not in tensors.ORDERS:
        raise ValueError(f"unknown tensor order {order!r}")
    if five_d and order not in ("nifti", "dipy"):
        raise ValueError(f"a {order} tensor file is 4D")
    if _is_nrrd(path):
        from .nrrd import save_tensor_nrrd

        return save_tensor_nrrd(vol, path)

    def write(tmp):
        if order == "nifti":
            img = _nib().Nifti1Image(vol.data[:, :, :, None, :].astype(np.float32), vol.affine)
            img.header.set_intent("symmetric matrix", (), name=OWN_INTENT)
        else:
            data = tensors.to_order(in_file_frame(vol.data, order, vol.affine), order)
            img = _nib().Nifti1Image((data[:, :, :, None, :] if five_d else data).astype(np.float32), vol.affine)
            if five_d:  # as dipy_fit_dti writes it (dipy.io.utils.nifti1_symmat); not this tool's intent name
                img.header.set_intent("symmetric matrix", (3,))
        img.header.set_xyzt_units("mm")
        descrip = made_by(vol.meta, vol.affine)
        if descrip:
            img.header["descrip"] = descrip.encode("ascii")
        _set_orientation(img, vol.affine)
        _save_nifti(img, tmp)

    atomic_write(path, write)


def _descrip(img) -> str:
    """The NIfTI header's description as text ("" where it has none or it is not ASCII)."""
    try:
        return bytes(img.header["descrip"]).split(b"\0")[0].decode("ascii").strip()
    except (KeyError, UnicodeDecodeError, TypeError, ValueError):
        return ""


def made_at(img) -> tuple[str, tuple[int, int, int]] | None:
    """(the description, its factors) from a NIfTI header `made_by` wrote (`descrip`); None for any other file."""
    return read_made_by(_descrip(img), img.affine)


# ---------------------------------------------------------------- scalars and masks


def load_scalar(path) -> Volume:
    img = _load_nifti(path)
    data = _data(img, path)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    _check_finite(data, path, "image")
    return Volume(data, img.affine, "scalar", meta={"path": str(path), "descrip": _descrip(img)})


def load_mask(path, reference: Volume | None = None, factor=None, seeds: bool = False) -> Volume:
    """Binary mask (>0). With `reference`, it must be on that grid (or on its high-res grid for `factor`, an integer
    or per-axis factors). `seeds`: a tractography seed ROI, whose refusals say so."""
    img = _load_nifti(path)
    data = _data(img, path)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise IQTError(f"{path}: shape {data.shape} is not a 3D mask; give a 3D binary image")
    values = np.nan_to_num(data.astype(np.float32))
    mask = values > 0
    if not mask.any():
        raise IQTError(f"{path}: the seed ROI is empty (no voxel > 0); give an ROI with at least one voxel" if seeds else
                       f"{path}: the mask is empty (no voxel > 0); give a brain mask, for example from 'iqt mask'")
    if np.any(values[mask] != np.round(values[mask])):  # labels 1, 2, ... are a mask; an FA or probability map is not
        what, taken = ("seed ROI", "a seed") if seeds else ("mask", "brain")  # review 45b: a seed ROI was called a mask
        warnings.warn(f"{path}: the {what} holds fractional values (an FA or probability map?); every voxel > 0 is taken "
                      f"as {taken} ({mask.sum()} voxels, {100 * mask.mean():.3g} % of the grid): threshold it first if "
                      "that is not meant", IQTWarning, stacklevel=2)
    elif seeds and len(labels := np.unique(values[mask])) > 1:  # a label map's regions would be merged unseen
        warnings.warn(f"{path}: the seed ROI holds labels {', '.join(f'{v:g}' for v in labels)}; they are seeded as one "
                      "region: give one label's mask (e.g. fslmaths ROI -thr N -uthr N -bin) to track from it alone",
                      IQTWarning, stacklevel=2)
    vol = Volume(mask, img.affine, "mask", meta={"path": str(path)})
    if reference is not None:
        from ..core.grid import factors, hr_affine

        grids = {reference.shape3: ("the input's grid", reference.affine)}
        if factor:
            f = factors(factor, identity_ok=True)
            grids[tuple(k * s for k, s in zip(f, reference.shape3))] = ("the high-resolution grid",
                                                                         hr_affine(reference.affine, f))
        from ..core.orientation import onto_grid

        for shape, (_, affine) in grids.items():  # the same voxels stored in another axis order or direction
            if vol.shape3 != shape or not np.allclose(vol.affine, affine, atol=1e-3 * float(np.abs(affine[:3, :3]).max())):
                moved = onto_grid(vol.data, vol.affine, shape, affine)
                if moved is not None:
                    vol = Volume(moved, affine, "mask", meta=vol.meta)
                    break
        if vol.shape3 not in grids:
            raise IQTError(
                f"{path}: mask shape {vol.shape3} {'matches neither' if len(grids) > 1 else 'differs from'} "
                f"{' nor '.join(f'{name} {shape}' for shape, (name, _) in grids.items())}; give a mask on the input's grid"
            )
        name, affine = grids[vol.shape3]
        if not np.allclose(vol.affine, affine, atol=1e-3 * float(np.abs(affine[:3, :3]).max())):
            raise IQTError(f"{path}: the mask has the shape of {name} but another position or orientation (affine); "
                           f"give a mask made on this input's grid (e.g. 'iqt mask' or 'iqt degrade --mask-out')")
    return vol


def save_scalar(vol: Volume, path, descrip: str = "") -> None:
    """A 3D map as NIfTI (float32, a mask as uint8); `descrip`: the header's description (records.map_record)."""
    def write(tmp):
        data = vol.data.astype(np.uint8) if vol.data.dtype == bool else vol.data.astype(np.float32)
        img = _nib().Nifti1Image(data, vol.affine)
        img.header.set_xyzt_units("mm")
        if descrip:
            img.header["descrip"] = descrip.encode("ascii")
        _set_orientation(img, vol.affine)
        _save_nifti(img, tmp)

    atomic_write(path, write)


save_mask = save_scalar
