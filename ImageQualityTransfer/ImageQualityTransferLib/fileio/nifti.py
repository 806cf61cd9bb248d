"""NIfTI file mechanics: reading and checking a header and its data, writing a file, and the orientation codes an
output carries over from its inputs; shared by the volume readers and writers (`fileio.volumes`)."""

from __future__ import annotations

import os
import threading
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import IQTError, IQTWarning
from ..core.i18n import _
from ..core.volume import affine_problem, voxel_sizes
from .mif import is_mif, read_mif
from .paths import NRRD_SUFFIXES, not_a_file

if TYPE_CHECKING:  # imported on first use (`nibabel_lib`)
    import nibabel


def nibabel_lib():
    """nibabel, imported on first use: the method registry imports this package in a Slicer without nibabel."""
    import nibabel

    return nibabel


GZIP_MEMBER = 8 << 20  # bytes of the uncompressed file per gzip member


def save_nifti(img, tmp) -> None:
    """nibabel's single-file NIfTI at `tmp`; a `.gz` one compressed on every available core as concatenated gzip members
    (RFC 1952: a gzip reader reads them as one stream; Testing/fileio/test_nifti.py reads them back with nibabel,
    Python's gzip and VTK's NIfTI reader), at nibabel's level 1 with zlib's Z_RLE strategy (matches runs of equal
    bytes only): the 86 MB output of a 72x87x72 x2 run takes 0.56 s on one core instead of 1.0 s with the default
    strategy, for a 9 % larger file (38.8 MB instead of 35.5 MB; float tensors hold few longer repeats). Written by an
    `iqt` command, the file carries the run's record (fileio/records.py `run_json`) as a comment extension."""
    _add_run_record(img)
    if not str(tmp).lower().endswith(".gz"):
        return nibabel_lib().save(img, tmp)
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


def _add_run_record(img) -> None:
    """The run's record (the command, its options, version and build, threads, model) as a NIfTI-1 header extension of
    code 6 (comment), where nibabel, FSL and dcm2niix-style readers keep or skip it; nothing outside an `iqt` command."""
    from .records import RUN_KEY, run_json

    text = run_json()
    if text is None:
        return
    ext = nibabel_lib().nifti1.Nifti1Extension("comment", text.encode("ascii"))
    img.header.extensions[:] = [e for e in img.header.extensions if not _is_run_record(e, RUN_KEY)] + [ext]


def _is_run_record(ext, key: str) -> bool:
    content = ext.get_content()
    return ext.get_code() == 6 and isinstance(content, bytes) and content.startswith(b'{"' + key.encode() + b'"')


def add_support_record(img, meta: dict, data) -> None:
    """An output's support as Method.predict set it (records.support_json: kept to a brain estimated from a
    whole-field fit) as a comment extension, beside the run's record; nothing for any other tensor."""
    from .records import support_json

    text = support_json(meta, data)
    if text is not None:
        img.header.extensions.append(nibabel_lib().nifti1.Nifti1Extension("comment", text.encode("ascii")))


def support_of(img, data) -> str | None:
    """The support `add_support_record` recorded in a NIfTI header, while `data` (its tensors as read) fills the voxels
    it counted (records.read_support), or None."""
    from .records import SUPPORT_KEY, read_support

    for ext in img.header.extensions:
        if _is_run_record(ext, SUPPORT_KEY):
            return read_support(ext.get_content().decode("ascii", "replace"), data)
    return None


def run_record_of(path) -> dict | None:
    """The record of the `iqt` run that wrote the NIfTI file at `path` (records.read_run), or None."""
    from .records import RUN_KEY, read_run

    if is_mif(path):  # a header line of that name (volumes._mif_record)
        from .mif import read_header

        text = read_header(path).get(RUN_KEY)
        return read_run(text[0]) if text else None
    for ext in open_nifti(path).header.extensions:
        if _is_run_record(ext, RUN_KEY):
            return read_run(ext.get_content().decode("ascii"))
    return None


def _mif_image(path) -> "nibabel.Nifti1Image":
    """An MRtrix image (fileio/mif.py) as an in-memory NIfTI on its storage grid, its header's keys in `extra["mif"]`,
    so that every reader of a NIfTI reads it too."""
    if not os.access(path, os.R_OK):
        raise IQTError(f"{path}: cannot be read (permission denied); check the file's permissions")
    data, affine, keys = read_mif(path)
    _check_extent(data.shape, path)
    _check_geometry(affine, path)
    from ..core.grid import NIFTI_MAX_DIM

    nib = nibabel_lib()
    # an axis over NIfTI-1's int16 dims, which an MRtrix image may hold, as NIfTI-2 holds it
    img = (nib.Nifti2Image if max(data.shape) > NIFTI_MAX_DIM else nib.Nifti1Image)(data, affine)
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)  # scanner coordinates, as mrconvert's NIfTI gives them
    if keys.get("comments"):  # what a map iqt wrote holds (volumes._mif_record), where a NIfTI's description holds it
        img.header["descrip"] = keys["comments"][0][:79].encode("ascii", "replace")
    img.extra["mif"] = keys
    return img


def is_nrrd(path) -> bool:
    return str(path).lower().endswith(NRRD_SUFFIXES)


_QUIET_LOCK = threading.Lock()
_QUIET_DEPTH = [0, 0]  # [reads under way, the nibabel logger's level before the first]


@contextmanager
def nibabel_quiet():
    """nibabel's own log lines kept off stderr for the block ('pixdim[1,2,3] should be non-zero; setting 0 dims to 1'
    four times on a run that succeeds, 'sizeof_hdr should be 348...' before the refusal's line): its handler writes to
    stderr whatever the program's own lines say, and what matters of them is said here in one line (load_nifti)."""
    import logging

    log = logging.getLogger("nibabel")
    with _QUIET_LOCK:
        if _QUIET_DEPTH[0] == 0:
            _QUIET_DEPTH[1] = log.level
            log.setLevel(logging.CRITICAL + 1)  # nibabel logs its header fixes at levels up to 50
        _QUIET_DEPTH[0] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET_DEPTH[0] -= 1
            if _QUIET_DEPTH[0] == 0:
                log.setLevel(_QUIET_DEPTH[1])


def open_nifti(path) -> "nibabel.Nifti1Image":
    """nibabel's image of the file at `path` itself: nibabel reads a single-file name with a mixed-case suffix ("x.Nii",
    "x.Nii.gz") from its lower-case twin ("x.nii"), another file or none (with both there, the other scan would be
    upsampled)."""
    with nibabel_quiet():
        return _open_nifti(path)


def _open_nifti(path):
    nib = nibabel_lib()
    name = str(path)
    if not name.lower().endswith((".nii", ".nii.gz")) or nib.Nifti1Image.filespec_to_file_map(name)["image"].filename == name:
        return nib.load(name)
    error = None
    for klass in (nib.Nifti1Image, nib.Nifti2Image):
        try:
            return klass.from_file_map({"image": nib.FileHolder(filename=name)})
        except Exception as exc:  # noqa: BLE001 (not this kind of NIfTI: the next, then nibabel's own words)
            error = error or exc
    raise error


def load_nifti(path, formats: str = "a .nii or .nii.gz file") -> "nibabel.Nifti1Image":
    path = Path(path)
    if not path.exists():
        if path.is_symlink():  # a link to nowhere, or in a loop, was "not found" beside its own name (audit)
            raise IQTError(f"{path}: a symbolic link that leads to no file (a loop, or its target missing); check the link")
        raise IQTError(f"{path}: file not found; check the path")
    if is_nrrd(path):
        raise IQTError(f"{path}: NRRD is read only for tensor volumes, masks and uncertainty maps; give a NIfTI "
                       "(.nii/.nii.gz) file here")
    if path.is_dir():
        raise IQTError(f"{path}: is a folder; give {formats}")
    kind = not_a_file(path)
    if kind is not None:  # a FIFO would be waited on for ever
        raise IQTError(f"{path}: is {kind}, not a file, and is not read; give {formats}")
    if is_mif(path):
        return _mif_image(path)
    if not os.access(path, os.R_OK):
        raise IQTError(f"{path}: cannot be read (permission denied); check the file's permissions")
    _check_compression(path)
    try:
        img = open_nifti(path)
    except Exception as exc:  # nibabel raises many types for damaged files
        raise IQTError(f"{path}: cannot be read as NIfTI ({exc}); give {formats}") from None
    _check_extent(img.shape, path)
    _check_geometry(img.affine, path)
    _check_qform_sform(img, path)
    if hasattr(img.header, "get_qform") and not (int(img.header["qform_code"]) or int(img.header["sform_code"])):
        warnings.warn(_("{file}: the header holds no orientation (qform and sform codes 0), so it is read on "
                        "nibabel's default grid, and left-right and the fibre directions may be wrong; set its "
                        "orientation (e.g. with fslorient) where that matters").format(file=path), IQTWarning,
                      stacklevel=3)
    elif _analyze(img) and not path.with_suffix(".mat").exists():  # SPM's .mat beside it holds an orientation
        warnings.warn(_("{file}: an Analyze 7.5 file holds no orientation, so it is read on nibabel's default grid, "
                        "and left-right and the fibre directions may be wrong; convert it to NIfTI with its "
                        "orientation set (e.g. fslchfiletype NIFTI_GZ, then fslorient) where that matters").format(
            file=path), IQTWarning, stacklevel=3)
    zero = _zero_pixdim(img, path)
    if zero:  # nibabel's own line on it is kept off stderr (nibabel_quiet), so it is said here
        line = _("{file}: the header gives no voxel size (pixdim 0 along axes {axes} and {last}); 1 mm assumed: fix "
                 "the header (pixdim, e.g. with fslchpixdim or nibabel) where the voxel size matters") \
            if len(zero) > 1 else \
            _("{file}: the header gives no voxel size (pixdim 0 along axis {last}); 1 mm assumed: fix the header "
              "(pixdim, e.g. with fslchpixdim or nibabel) where the voxel size matters")
        warnings.warn(line.format(file=path, axes=", ".join(zero[:-1]), last=zero[-1]), IQTWarning, stacklevel=3)
    return _in_mm(img, path)


def _zero_pixdim(img, path) -> list[str]:
    """The axes ('1'-'3') whose voxel size a NIfTI's header gives as 0 where the grid is read from pixdim (no sform):
    nibabel's reader sets them to 1 mm (its fix of the header read; only the file's own bytes still hold the 0), read
    from the header file: a pair's `.hdr`, also where the pair is named by its `.img` data file."""
    header = img.header
    if not hasattr(header, "get_qform") or int(header["sform_code"]):
        return []
    held = img.file_map.get("header") or img.file_map.get("image")
    try:
        from nibabel.openers import ImageOpener

        with ImageOpener(held.filename if held is not None and held.filename else str(path)) as f:
            raw = type(header).from_fileobj(f, check=False)
    except Exception:  # noqa: BLE001 (the file was read just now; a header not read again is left unsaid)
        return []
    return [str(i) for i in (1, 2, 3) if float(raw["pixdim"][i]) == 0.0]


def holds_orientation(path) -> bool:
    """Whether an image file places its voxels in the world: a NRRD always does (its space), a NIfTI where its qform or
    sform code is set (`load_nifti` warns where neither is), an Analyze file with SPM's .mat beside it."""
    path = Path(path)
    if is_nrrd(path):
        return True
    img = open_nifti(path)
    if hasattr(img.header, "get_qform"):
        return bool(int(img.header["qform_code"]) or int(img.header["sform_code"]))
    return path.with_suffix(".mat").exists()


def _analyze(img) -> bool:
    """An Analyze 7.5 (or SPM) image: a header without NIfTI's qform and sform."""
    from nibabel.analyze import AnalyzeImage

    return isinstance(img, AnalyzeImage) and not hasattr(img.header, "get_qform")


# ---------------------------------------------------------------- orientation codes carried to the outputs

# in a command's run (carried_codes): (direction cosines, (qform_code, sform_code)) of the DWI and tensor files it read,
# the latest last; per run, in this context, not one module global: runs in other threads of the process (an in-process
# caller's) have their own, whichever ends first (a global saved and restored on exit would give a run the codes of
# another one's input, and outlive both). A thread a run starts gets a fresh context (threading.Thread,
# concurrent.futures): reading or writing there sees no run unless started in a copy of the run's
# (contextvars.copy_context().run); none does: save_nifti's threads only compress bytes
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


def remember_codes(affine, codes) -> None:
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
    run (carried_codes)."""
    d = _directions(affine)
    grids = _GRIDS.get()
    with _GRIDS_LOCK:
        for dirs, codes in reversed(grids or ()):
            if np.allclose(dirs, d, atol=1e-5):
                return (0, 2) if codes == (0, 0) else codes
    return (1, 1)


def set_orientation(img, affine) -> None:
    """The affine into the header with the codes `written_codes` gives (nibabel keeps a sheared affine's closest rigid
    grid in the qform)."""
    qcode, scode = written_codes(affine)
    img.set_sform(affine, code=scode)
    img.set_qform(affine, code=qcode)


UNIT_TO_MM = {"meter": 1e3, "micron": 1e-3}  # NIfTI's xyzt_units other than mm (and 'unknown', read as mm)
MM_RANGE = (0.005, 100.0)  # mm: a voxel size outside it is no MRI voxel (a unit that gives one is a wrong label);
# 100 mm: `iqt degrade --factor 1,1,7` of a 3 mm scan writes 21 mm voxels, which upsample must read back


def no_mri_voxel(path, sizes, fix: str) -> IQTError | None:
    """The refusal of voxel sizes in mm outside MM_RANGE (NIfTI and NRRD alike, `fix` naming the header's fields);
    None for an MRI voxel's."""
    if not _no_mri_voxel(sizes):
        return None
    return IQTError(f"{path}: the header gives the voxel size {' x '.join(f'{v:.4g}' for v in sizes)} mm, no MRI voxel "
                    f"({MM_RANGE[0]:g} to {MM_RANGE[1]:g} mm); fix its voxel size ({fix}) and retry")


def _no_mri_voxel(sizes) -> bool:
    """A voxel size (mm) outside MM_RANGE, past a float32 header's rounding of its ends."""
    return bool(sizes.min() < MM_RANGE[0] * (1 - 1e-6) or sizes.max() > MM_RANGE[1] * (1 + 1e-6))


def _in_mm(img, path):
    """The image with its affine in mm where the header gives its spatial unit as meter or micron (nibabel reads the
    numbers as mm whatever the unit): converted, with one warning; refused where the voxel size in mm (converted or as
    given) is no MRI voxel's (a header holding mm labelled micron, or a damaged one)."""
    h = img.header
    unit = h.get_xyzt_units()[0] if hasattr(h, "get_xyzt_units") else "mm"
    scale = UNIT_TO_MM.get(unit)
    if scale is None:
        error = no_mri_voxel(path, voxel_sizes(img.affine), "pixdim and the qform/sform, e.g. with fslorient or "
                             "nibabel")  # 1e30 mm voxels had run to a written output with one warning
        if error is not None:
            raise error
        return img
    given = voxel_sizes(img.affine)
    affine = np.asarray(img.affine, float).copy()
    affine[:3] *= scale
    sizes = voxel_sizes(affine)
    said = " x ".join(f"{v:.4g}" for v in given)
    if _no_mri_voxel(sizes):
        raise IQTError(f"{path}: the header gives the voxel size {said} in {unit}s, which is "
                       f"{' x '.join(f'{v:.4g}' for v in sizes)} mm, no MRI voxel; if those numbers are mm, set the "
                       f"header's unit to mm (nibabel: img.header.set_xyzt_units('mm'); AFNI: nifti_tool -mod_hdr "
                       f"-mod_field xyzt_units 10) and retry")
    warnings.warn(_("{file}: the header gives the voxel size {size} in {unit}s: read as {mm} mm, and the outputs are "
                    "written in mm").format(file=path, size=said, unit=unit, mm=" x ".join(f"{v:.4g}" for v in sizes)),
                  IQTWarning, stacklevel=3)
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
    file type' and 'is not a gzip file' do not say that the file itself may be fine."""
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
    refused where they differ in handedness, since either answer is then the other's mirror image (an sform flipped
    left-right gave tensors off by 1.04x their largest element)."""
    h = img.header
    if not hasattr(h, "get_qform") or len(img.shape) < 3:  # a 2D image has no grid corners: its reader refuses its shape
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
        voxels = f"{apart / voxel:.2g}"
        line = _("{file}: the header's qform (code {qform}) and sform (code {sform}) disagree, placing the grid up to "
                 "{mm} mm ({voxels} voxel) apart; the sform is used, as FSL and MRtrix use it; if the qform is the right "
                 "one, copy it over the sform (fslorient -copyqform2sform FILE) and rerun") if voxels == "1" else \
            _("{file}: the header's qform (code {qform}) and sform (code {sform}) disagree, placing the grid up to {mm} "
              "mm ({voxels} voxels) apart; the sform is used, as FSL and MRtrix use it; if the qform is the right one, "
              "copy it over the sform (fslorient -copyqform2sform FILE) and rerun")
        warnings.warn(line.format(file=path, qform=qc, sform=sc, mm=f"{apart:.3g}", voxels=voxels), IQTWarning,
                      stacklevel=4)


def _check_extent(shape, path) -> None:
    """An axis of length 0 (or less: a damaged dim field) is refused on reading, by its shape: a tensor volume had
    ended in an internal error, a mask been said as 'shape (0,)' (nibabel reads no voxels as a 1-D array)."""
    empty = next((k for k, n in enumerate(shape) if n < 1), None)
    if empty is not None:
        raise IQTError(f"{path}: shape {tuple(shape)} holds no voxels (axis {empty} is {shape[empty]} long: an image "
                       "saved empty, or a damaged header); give an image with voxels (re-save it from the program that "
                       "made it)")


def _check_geometry(affine, path) -> None:
    """A voxel-to-world matrix with a zero, non-finite or dependent axis, or a non-finite origin, is refused on reading:
    else the fit runs to its end and then fails to write, and upsample, report and track end in internal errors."""
    problem = affine_problem(affine)
    if problem is not None:
        raise IQTError(f"{path}: the header's voxel-to-world matrix {np.round(np.asarray(affine, float)[:3], 4).tolist()} "
                       f"has {problem}, so the image has no valid geometry; fix its qform/sform (e.g. with fslorient "
                       "or nibabel) and retry")


TRAILING_READ = 1 << 20  # bytes read past the image's end in a gzipped file to tell whether more data follows


def read_data(img, path, dtype=np.float32) -> np.ndarray:
    """The voxel array, with a clear error for a truncated or damaged file. A gzipped file is read to its end, so that
    gzip's checksum is verified: nibabel stops at the data's last byte, and a file with one flipped bit would be read as
    valid data (in a DWI, 17 voxels changed). Data after the image the header describes is refused once TRAILING_READ
    bytes of it are seen, not read (a 3.3 MB file whose header says 36x36x18 followed by 3 GiB of zeros would be read
    whole into memory, 6.37 GB at its peak); a run out of memory while reading says so, not that the file may be
    truncated or damaged."""
    proxy = img.dataobj
    stored = np.dtype(getattr(proxy, "dtype", np.float32))  # the file's type, as nibabel's proxy reads it
    if np.issubdtype(stored, np.complexfloating):  # numpy would drop the imaginary part with a warning
        raise IQTError(f"{path}: complex-valued voxels ({stored}); give real values (the magnitude image, "
                       "or the tensors as the fitting tool wrote them)")
    try:
        with nibabel_quiet():
            return _read(img, path, dtype)
    except IQTError:
        raise
    except MemoryError:
        need = _described(proxy, dtype)
        raise IQTError(f"{path}: not enough memory to read the image data ({need} in memory); free memory (close other "
                       "programs) or run on a machine with more, then rerun") from None
    except Exception as exc:
        raise IQTError(f"{path}: the image data cannot be read ({exc}); the file may be truncated or damaged") from None


def _read(img, path, dtype) -> np.ndarray:
    """`read_data`'s reading, its failures said there."""
    if _gzipped(path) and not is_mif(path):  # an MRtrix image is read whole already (fileio/mif.py)
        import gzip

        with gzip.open(path, "rb") as f:
            proxy = type(img).from_stream(f).dataobj
            data = np.asarray(proxy, dtype=dtype)
            end = _data_end(proxy)
            if end is not None and f.tell() != end:
                f.seek(end)
            more = f.read(TRAILING_READ)  # b"": the end, gzip's checksum checked there
        if more:
            raise IQTError(f"{path}: more data follows the image its header describes ({_described(proxy)}, "
                           f"{end:,} bytes with the header, then at least {len(more):,} more), so the header does not "
                           "describe the file (damaged, or a size written wrongly into it) and it is not read; "
                           "re-save it from the program that made it")
        return data
    return np.asarray(img.dataobj, dtype=dtype)


def _data_end(proxy) -> int | None:
    """The byte, in the uncompressed file, after the last of the image data (None where the proxy does not say)."""
    try:
        return int(proxy.offset) + int(np.prod(proxy.shape, dtype=np.int64)) * np.dtype(proxy.dtype).itemsize
    except (AttributeError, TypeError, ValueError):
        return None


def _described(proxy, dtype=None) -> str:
    """The image as its header describes it: 'shape dtype' (and its size in memory as `dtype`)."""
    shape = tuple(int(n) for n in getattr(proxy, "shape", ()))
    kind = np.dtype(dtype if dtype is not None else getattr(proxy, "dtype", np.float32))
    size = int(np.prod(shape, dtype=np.int64)) * kind.itemsize
    return f"{'x'.join(map(str, shape))} {kind.name}" + (f", {size / 1e9:.2f} GB" if dtype is not None else "")


def reads_fully(path) -> bool:
    """Whether a NIfTI file's header and all its data read, gzip's checksum included (a resumed batch's check of
    outputs whose sidecars hold no hash)."""
    try:
        read_data(load_nifti(path), path, dtype=None)
        return True
    except (IQTError, OSError):
        return False


def _gzipped(path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def check_finite(data, path, what):
    bad = ~np.isfinite(data)
    if bad.any():
        raise IQTError(
            f"{path}: {int(bad.sum())} NaN/Inf value{'s' if bad.sum() != 1 else ''} in the {what}; replace them (for example "
            f"with 0 outside the brain) and retry"
        )
