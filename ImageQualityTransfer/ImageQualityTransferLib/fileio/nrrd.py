"""Slicer's diffusion tensor NRRD: read any tensor NRRD, write what Slicer itself writes.

Conventions (docs/conventions.md, "Tensor files and frames"):

- A `Volume` holds tensors as (X,Y,Z,6) in the lower-triangular order Dxx,Dxy,Dyy,Dxz,Dyz,Dzz with the
  components expressed in the voxel (IJK) axes, and a voxel->RAS(mm) affine.
- In a NRRD file the components are expressed in the *measurement frame* MF: the header's
  `measurement frame: (c0) (c1) (c2)` lists the columns of the matrix that maps measurement-frame
  coordinates to world (`space`) coordinates, so D_world = MF D_file MF^T. With no measurement frame the
  components are taken to be in world coordinates (MF = identity), as the NRRD format says.
- Reading re-expresses the components in the voxel axes: D_ijk = R^-1 D_RAS R^-T, with R the IJK->RAS
  direction matrix (the affine's columns normalised to unit length). When MF already equals R (what
  Slicer and our writer produce) the components are passed through untouched.
- Writing follows `vtkMRMLNRRDStorageNode` / `vtkTeemNRRDWriter` exactly: `kinds: 3D-matrix domain domain
  domain` (9 float components, row-major 3x3, symmetric), `space: right-anterior-superior`,
  `space directions` and `space origin` from the affine, `measurement frame` = R, gzip encoding. Slicer
  reads a `3D-matrix` file verbatim (components and measurement frame as stored); for the 6/7-component
  symmetric kinds its reader re-expresses the components through a rotation built from the normalised
  *columns* of RAS->IJK, which is not exactly R on an oblique grid with anisotropic voxels, so the 9-component
  kind is the one that reaches Slicer unchanged.

Reading accepts `3D-symmetric-matrix` (6 components, NRRD order xx,xy,xz,yy,yz,zz),
`3D-masked-symmetric-matrix` (7, the first is a confidence value, ignored as Slicer ignores it) and
`3D-matrix` (9, symmetrised), in RAS, LAS or LPS space, attached (.nrrd) or detached (.nhdr) data; a header with
no `space` line is refused (`no_space_line`).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ..core import tensor_checks, tensors
from ..core.errors import IQTError
from ..core.volume import Volume
from .paths import DataNameError, check_data_name, nhdr_data_files, not_a_file, nrrd_data_file
from .writing import atomic_write
from .records import RUN_KEY, SUPPORT_KEY, made_by, read_made_by, read_support, run_json, support_json

TENSOR_KINDS = {
    "3d-symmetric-matrix": 6,
    "3d-masked-symmetric-matrix": 7,
    "3d-matrix": 9,
}
# world space name -> diagonal that maps it to RAS
SPACES = {
    "right-anterior-superior": (1.0, 1.0, 1.0),
    "ras": (1.0, 1.0, 1.0),
    "left-anterior-superior": (-1.0, 1.0, 1.0),
    "las": (-1.0, 1.0, 1.0),
    "left-posterior-superior": (-1.0, -1.0, 1.0),
    "lps": (-1.0, -1.0, 1.0),
}
# How close (max abs element) MF must be to R for the components to be passed through untouched.
FRAME_ATOL = 1e-6
SLICER_HINT = "a diffusion tensor NRRD as Slicer saves it (kinds: 3D-matrix domain domain domain)"
TENSOR_HINT = f"re-save it from Slicer as {SLICER_HINT}"


def direction_rotation(affine: np.ndarray) -> np.ndarray:
    """IJK->RAS direction matrix: the affine's 3x3 with each column normalised to unit length."""
    m = np.asarray(affine, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(m, axis=0)
    if np.any(norms == 0) or not np.all(np.isfinite(m)):
        raise IQTError(f"the voxel->RAS matrix {m.tolist()} has a zero or non-finite axis; the image geometry is invalid")
    return m / norms


def frame_to_voxel_axes(mf_ras: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """T such that D_ijk = T D_file T^T for components given in measurement frame `mf_ras` (-> RAS)."""
    return np.linalg.solve(direction_rotation(affine), np.asarray(mf_ras, dtype=np.float64))


def is_rotation(mf: np.ndarray) -> bool:
    """Whether a measurement frame is a rotation (unit vectors at right angles, to 1e-3): the only kind whose change of
    frame keeps a tensor's size, and a gradient's length."""
    mf = np.asarray(mf, dtype=np.float64)
    return mf.shape == (3, 3) and bool(np.all(np.isfinite(mf))) and np.allclose(mf @ mf.T, np.eye(3), atol=1e-3)


def reexpress(data6: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, bool]:
    """Apply D' = T D T^T unless T is the identity (to FRAME_ATOL); returns (data, rotated?)."""
    if np.allclose(t, np.eye(3), rtol=0.0, atol=FRAME_ATOL):
        return data6, False
    return tensors.rotate(data6.astype(np.float64), t), True


# ---------------------------------------------------------------- reading


def _read(path: Path, hint: str = TENSOR_HINT):
    """(data, header) of a NRRD file; `hint`: what to do with a file that cannot be read, for what is read (SLICER_HINT's
    tensor, `read_scalar_nrrd`'s map or mask)."""
    try:
        import nrrd  # pynrrd
    except ImportError:  # pragma: no cover - dependency of the package
        raise IQTError("reading NRRD needs the 'pynrrd' package; install it with: pip install pynrrd") from None
    kind = not_a_file(path)
    if kind is not None:
        give = f"give a tensor NRRD file ({SLICER_HINT})" if hint == TENSOR_HINT else hint
        raise IQTError(f"{path}: is {kind}, not a file, and is not read; {give}")
    data = nrrd_data_file(path)
    split = _split_data(data.name) if data is not None else None
    if split is not None:
        raise IQTError(f"{path}: its image data is split over several files ('data file: {split}'), which is not read "
                       "here (nor by pynrrd); join them into one file and give that: load it in Slicer and save it as "
                       "a .nrrd, or with Teem: unu save -f nrrd -e gzip -i <this header> -o <name>.nrrd")
    kind = not_a_file(data) if data is not None else None
    if kind is not None:
        raise IQTError(f"{path}: its data file {data} is {kind}, not a file, and is not read; the header's 'data file' "
                       "must name the file that holds its image data")
    try:
        with open(path, "rb") as fh:
            header = nrrd.read_header(fh)
            return _read_bounded(nrrd, header, fh, path, hint), header
    except IQTError:
        raise
    except Exception as exc:  # pynrrd, numpy, zlib and OSError all signal damaged files
        raise IQTError(
            f"{path}: cannot be read as NRRD ({type(exc).__name__}: {exc}); the file may be truncated or damaged, "
            f"or its detached data file missing; {hint}"
        ) from None


def _split_data(name: str) -> str | None:
    """The 'data file' value of a multi-file NRRD (the format's 'LIST [<subdim>]', the file names on the lines after
    it, or '<format> <min> <max> <step> [<subdim>]', e.g. 'slice%03d.raw 1 60 1 2'), as given; None for one data file.
    Neither is read: pynrrd 1.1.3 reads neither (a LIST header fails in its header parser, a pattern is opened as a
    file of that name), Slicer writes neither, and each listed file would be an input an output must not replace."""
    import re

    value = name.strip()
    if value == "LIST" or re.fullmatch(r"LIST\s+\d+", value):
        return value
    if re.fullmatch(r"\S*%\S*(\s+-?\d+){3}(\s+\d+)?", value):
        return value
    return None


# the NRRD format's pixel types (teem's nrrd format, "type:") as numpy's; "block" (opaque bytes) is no tensor's
NRRD_TYPES = {
    **dict.fromkeys(("signed char", "int8", "int8_t"), "i1"),
    **dict.fromkeys(("uchar", "unsigned char", "uint8", "uint8_t"), "u1"),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t"), "i2"),
    **dict.fromkeys(("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), "u2"),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t"), "i4"),
    **dict.fromkeys(("uint", "unsigned int", "uint32", "uint32_t"), "u4"),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
                     "int64_t"), "i8"),
    **dict.fromkeys(("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"), "u8"),
    "float": "f4",
    "double": "f8",
}


def _dtype(header: dict, path: Path, hint: str = TENSOR_HINT) -> np.dtype:
    """The numpy type of a binary NRRD's pixels, from its 'type' and 'endian' fields (one line for a type that holds
    no numbers or a multi-byte type without its byte order)."""
    name = str(header.get("type", "")).strip()
    if name not in NRRD_TYPES:
        raise IQTError(f"{path}: its pixel type {name!r} is not a number type NRRD defines; "
                       + (f"give {SLICER_HINT}" if hint == TENSOR_HINT else hint))
    kind = np.dtype(NRRD_TYPES[name])
    if kind.itemsize == 1:
        return kind
    endian = str(header.get("endian", "")).strip()
    if endian not in ("little", "big"):
        raise IQTError(f"{path}: its header gives no byte order for {name} pixels ('endian: little' or 'big', found "
                       f"{endian or 'none'}); " + (f"give {SLICER_HINT}" if hint == TENSOR_HINT else hint))
    return kind.newbyteorder("<" if endian == "little" else ">")


TRAILING_READ = 1 << 20  # bytes decompressed past the image's end to tell whether more data follows


def _read_bounded(nrrd, header: dict, fh, path: Path, hint: str):
    """The data of a NRRD file whose header `fh` has just been read. Compressed data (gzip, bzip2) is decompressed only
    as far as the header's sizes say and refused where more follows (pynrrd decompresses all of it into memory: a 1 MB
    .nrrd whose header says 9x4x4x4, then 1 GiB of zeros, took 2.16 GB); anything else is read by pynrrd."""
    encoding = str(header.get("encoding", "")).lower()
    byte_skip = int(header.get("byteskip", header.get("byte skip", 0)))
    if encoding not in ("gzip", "gz", "bzip2", "bz2") or byte_skip < 0:
        return nrrd.read_data(header, fh, str(path), index_order="F")
    kind = _dtype(header, path, hint)
    import bz2
    import io

    name = header.get("datafile", header.get("data file"))
    src = open(name if os.path.isabs(name) else path.parent / name, "rb") if name else fh
    try:
        for _ in range(int(header.get("lineskip", header.get("line skip", 0)))):
            src.readline()
        stream = gzip.GzipFile(fileobj=src) if encoding in ("gzip", "gz") else bz2.BZ2File(src)
        need = byte_skip + int(np.prod(header["sizes"], dtype=np.int64)) * kind.itemsize
        raw = stream.read(need)
        more = stream.read(TRAILING_READ)  # b"": the end (gzip's checksum checked there)
    finally:
        if src is not fh:
            src.close()
    if more:
        raise IQTError(f"{path}: more data follows the image its header describes (sizes {' '.join(map(str, header['sizes']))}"
                       f" of {kind.name}, {need:,} bytes uncompressed, then at least {len(more):,} more), so the header "
                       f"does not describe the file (damaged, or a size written wrongly into it) and it is not read; {hint}")
    plain = {k: v for k, v in header.items() if k not in ("datafile", "data file", "lineskip", "line skip", "byteskip",
                                                             "byte skip")}
    plain["encoding"] = "raw"
    return nrrd.read_data(plain, io.BytesIO(raw[byte_skip:]), None, index_order="F")


def no_space_line(hdr: dict) -> str:
    """Why a header without a 'space' line is not read, and the line to add: the NRRD format gives such a file's
    coordinates no anatomical directions ('space dimension' names none); Slicer's reader takes a tensor file's as LPS (as
    ITK's NrrdImageIO does) and a DWI file's as RAS, and this tool's had taken a tensor file's as RAS, so Slicer and
    `iqt upsample` gave the same tensor file mirrored in x and y, unsaid."""
    only = f" (only 'space dimension: {hdr['space dimension']}')" if "space dimension" in hdr else ""
    return (f"its header has no 'space' line{only}, so the NRRD format gives its grid and components no anatomical "
            "directions, and readers differ on them (Slicer's takes a tensor file's as left-posterior-superior, a "
            "DWI file's as right-anterior-superior): it is not read; add the line 'space: left-posterior-superior' (or "
            "right-anterior-superior, or left-anterior-superior: the space its 'space directions' and 'space origin' "
            "are in) to the header")


def _geometry(hdr: dict, domain: list, rax, path: Path):
    """(voxel->RAS affine, the space's sign flips to RAS, the space's name) of the image axes `domain`; `rax`: the
    axis of components (no direction), or None for a scalar image."""
    space = hdr.get("space")
    if space is None:
        raise IQTError(f"{path}: {no_space_line(hdr)} and give it again")
    key = str(space).strip().lower()
    if key not in SPACES:
        raise IQTError(
            f"{path}: space '{space}' is not supported; an image needs an anatomical space "
            f"(right-anterior-superior, left-anterior-superior or left-posterior-superior); re-save from Slicer"
        )
    flip = np.asarray(SPACES[key])
    _check_space_units(hdr, path)
    affine = np.eye(4)
    if "space directions" in hdr:
        dirs = np.asarray(hdr["space directions"], dtype=np.float64)
        if dirs.shape != (len(domain) + (rax is not None), 3):
            raise IQTError(f"{path}: 'space directions' must be 3D vectors for a 3D volume, got shape {dirs.shape}")
        if rax is not None and np.all(np.isfinite(dirs[rax])):
            raise IQTError(
                f"{path}: the tensor axis has a space direction; it must be 'none' (only the 3 image axes have one)"
            )
        cols = dirs[domain].T
        if not np.all(np.isfinite(cols)):
            none = np.all(np.isnan(cols), axis=0).any()  # pynrrd reads 'none' as a vector of NaN
            what = "space direction 'none'" if none else f"a non-finite space direction {dirs[domain].tolist()}"
            raise IQTError(f"{path}: an image axis has {what}; every image axis needs a finite direction vector")
        affine[:3, :3] = flip[:, None] * cols
    elif "spacings" in hdr:
        sp = np.asarray(hdr["spacings"], dtype=np.float64)[domain]
        affine[:3, :3] = np.diag(np.where(np.isfinite(sp), sp, 1.0))
    if "space origin" in hdr:
        origin = np.asarray(hdr["space origin"], dtype=np.float64).ravel()
        if origin.shape != (3,) or not np.all(np.isfinite(origin)):
            raise IQTError(f"{path}: 'space origin' {hdr['space origin']} is not a finite 3D point")
        affine[:3, 3] = flip * origin
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise IQTError(f"{path}: the space directions {affine[:3, :3].tolist()} are degenerate (zero volume voxels)")
    from ..core.volume import voxel_sizes
    from .nifti import no_mri_voxel

    error = no_mri_voxel(path, voxel_sizes(affine), "the header's 'space directions' line")  # as NIfTI's
    if error is not None:  # 1e30 mm voxels had run to an output
        raise error
    return affine, flip, space


MM_WORDS = ("mm", "millimeter", "millimeters", "millimetre", "millimetres")
# the length units a NRRD's 'space units' may name, in mm: each named in the refusal with the factor that mends it
UNIT_MM = {"m": 1e3, "cm": 10.0, "um": 1e-3, "µm": 1e-3, "micron": 1e-3, "microns": 1e-3, "nm": 1e-6}


def _check_space_units(hdr: dict, path: Path) -> None:
    """Refuse a header whose 'space units' name another length than mm: the grid is read in mm, as Slicer reads it (its
    readers ignore the field), so a grid in cm had been read with voxels ten times too small, and its outputs written
    so, without a word (an audit's leftover). Units left empty ("") are taken as mm, as the format's default."""
    units = [str(u).strip().strip('"').strip() for u in (hdr.get("space units") or [])]
    other = [u for u in units if u and u.lower() not in MM_WORDS]
    if not other:
        return
    unit = other[0]
    k = UNIT_MM.get(unit.lower())
    scale = (f" (its voxels would read {max(k, 1 / k):g} times too {'large' if k < 1 else 'small'}); multiply its "
             f"'space directions' and 'space origin' by {k:g}") if k is not None else \
        "; give its 'space directions' and 'space origin' in mm"
    # units differing between the space axes ('mm' 'mm' 'cm'): the factor is named for each axis not in mm (one
    # factor for all had been named, a review), the axes' components being those of the origin and each direction
    if len({u.lower() if u and u.lower() not in MM_WORDS else "mm" for u in units}) > 1 and \
            all(UNIT_MM.get(u.lower()) is not None for u in other):
        nth = ("first", "second", "third", "fourth")
        scale = "; multiply " + " and ".join(
            f"the {nth[i] if i < len(nth) else f'{i + 1}th'} component (its space axis {i + 1}, in {u}) of its 'space "
            f"origin' and of each 'space directions' vector by {UNIT_MM[u.lower()]:g}"
            for i, u in enumerate(units) if u and u.lower() not in MM_WORDS)
    raise IQTError(f"{path}: its header gives 'space units' {' '.join(repr(u) for u in units)}, and this tool reads a "
                   f"NRRD grid in mm, as Slicer does whatever the field says{scale} and write 'space units: \"mm\" \"mm\" "
                   "\"mm\"' (or drop the field)")


def header_affine(path, tensor: bool = False) -> np.ndarray:
    """The voxel->RAS affine of a NRRD's three image axes from its header alone (`fileio.check_tensor_output`,
    `fileio.sizes.header_affine`); an IQTError for a file whose header cannot be read or gives no 3D grid (`tensor`:
    or no tensor axis, as its reader takes)."""
    path = Path(path)
    if not path.exists():
        raise IQTError(f"{path}: file not found; check the path")
    kind = not_a_file(path)
    if kind is not None:
        raise IQTError(f"{path}: is {kind}, not a file, and is not read; give a NRRD file")
    try:
        import nrrd  # pynrrd

        with open(path, "rb") as fh:
            hdr = nrrd.read_header(fh)
        ndim = int(hdr["dimension"])
    except Exception as exc:  # pynrrd and OSError signal damaged headers
        raise IQTError(f"{path}: its header cannot be read as NRRD ({type(exc).__name__}: {exc}); the file may be "
                       "damaged: give it again as it was saved (e.g. re-save it from Slicer)") from None
    kinds = [str(k).strip().lower() for k in hdr.get("kinds", [])]
    domain = [i for i, k in enumerate(kinds) if k in ("domain", "space")] if kinds else list(range(ndim))
    if len(domain) != 3 or ndim - len(domain) > 1:
        raise IQTError(f"{path}: its header gives {len(domain)} image axes of {ndim}, not a 3D grid; give an image "
                       "on a 3D grid (kinds: domain domain domain, and at most one axis of components)")
    rax = next((i for i in range(ndim) if i not in domain), None)
    if tensor and (rax is None or kinds[rax] not in TENSOR_KINDS):
        raise IQTError(f"{path}: kinds {hdr.get('kinds')} name no tensor axis; give {SLICER_HINT}")
    return _geometry(hdr, domain, rax, path)[0]


# what to do with an unreadable scalar NRRD, by what was read (`read_scalar_nrrd`'s `what`)
SCALAR_HINTS = {
    "mask": "save the mask from Slicer as a label map (.nrrd or .nii.gz)",
    "map": "give the map again as 'iqt upsample --uncertainty' wrote it (rerun it), or re-save the map node from Slicer",
}


def load_scalar_nrrd(path, what: str = "mask") -> tuple[np.ndarray, np.ndarray]:
    """(3D data, voxel->RAS affine) of a scalar NRRD, such as a label map Slicer saved beside its tensor volume."""
    return read_scalar_nrrd(path, what)[:2]


def read_scalar_nrrd(path, what: str = "mask") -> tuple[np.ndarray, np.ndarray, dict]:
    """`load_scalar_nrrd`'s (data, affine) and the header (its key/value fields: `scalar_record`); `what`: "mask" or
    "map", which the refusals name (a map had been told to be re-saved as a tensor or a label map); a "map" may be a
    3-vector volume, read as (X,Y,Z,3) RAS components (`_vectors_in_ras`)."""
    path = Path(path)
    if not path.exists():
        raise IQTError(f"{path}: file not found; check the path")
    hint = SCALAR_HINTS[what]
    data, hdr = _read(path, hint)
    data = np.asarray(data)
    if data.ndim == 4 and data.shape[3] == 1:  # a trailing axis of one, as a NIfTI mask may have
        data = data[..., 0]
        hdr = {**hdr, "space directions": np.asarray(hdr["space directions"])[:3]} if "space directions" in hdr else hdr
    kinds = [str(k).strip().lower() for k in hdr.get("kinds", [])]
    vector = [i for i, k in enumerate(kinds) if k in VECTOR_KINDS] if data.ndim == 4 and what == "map" else []
    if len(vector) == 1 and data.shape[vector[0]] == 3:  # `--maps`' V1 (save_scalar_nrrd): (X,Y,Z,3), as from NIfTI
        affine, flip, _ = _geometry(hdr, [i for i in range(4) if i != vector[0]], vector[0], path)
        return _vectors_in_ras(np.moveaxis(data, vector[0], -1), hdr, flip, path), affine, hdr
    if data.ndim != 3:
        tensor = " (a tensor volume)" if any(k in TENSOR_KINDS for k in kinds) else ""
        label = "label map" if what == "mask" else "map"
        if tensor and what == "map":  # the tensor output given for its map
            hint = "give the map 'iqt upsample --uncertainty' wrote, not the tensor output"
        raise IQTError(f"{path}: this NRRD holds a {data.ndim}D array of sizes {list(data.shape)}{tensor}, not a 3D "
                       f"{label}; {hint}")
    affine, _, _ = _geometry(hdr, [0, 1, 2], None, path)
    return data, affine, hdr


# a range axis of spatial vectors: Slicer saves a spatial vector volume as "vector" (vtkMRMLVolumeArchetypeStorageNode)
VECTOR_KINDS = ("3-vector", "vector")


def _vectors_in_ras(data: np.ndarray, hdr: dict, flip: np.ndarray, path: Path) -> np.ndarray:
    """(X,Y,Z,3) components as a NRRD holds them (in its measurement frame, else in its space's axes: the format's
    default) turned into RAS components: a V1 that Slicer re-saved (LPS, an identity measurement frame) had been read
    as RAS, 48.8 degrees off at the median voxel (a review of the NRRD maps)."""
    if "measurement frame" in hdr:
        mf = np.asarray(hdr["measurement frame"], dtype=np.float64)
        if mf.shape != (3, 3) or not np.all(np.isfinite(mf)):
            raise IQTError(f"{path}: 'measurement frame' must be three 3D vectors, got {hdr['measurement frame']}")
        to_ras = flip[:, None] * mf.T  # the header lists the frame's columns
    else:
        to_ras = np.diag(flip)
    if np.array_equal(to_ras, np.eye(3)):
        return data
    return (np.asarray(data, np.float64) @ to_ras.T).astype(np.asarray(data).dtype)


def load_tensor_nrrd(path) -> Volume:
    """Tensor volume from a NRRD file, components re-expressed in the voxel axes (see module docstring)."""
    path = Path(path)
    if not path.exists():
        raise IQTError(f"{path}: file not found; check the path")
    data, hdr = _read(path)
    data = np.asarray(data)

    kinds = [str(k).strip().lower() for k in hdr.get("kinds", [])]
    if data.ndim != 4 or not kinds:
        what = "a 3D scalar image" if data.ndim == 3 else f"a {data.ndim}D array of sizes {list(data.shape)}"
        if data.ndim == 4 and not kinds:
            what = "a 4D array without a 'kinds' field"
        raise IQTError(f"{path}: this NRRD holds {what}, not a diffusion tensor volume; give {SLICER_HINT}")
    range_axes = [i for i, k in enumerate(kinds) if k in TENSOR_KINDS]
    if len(range_axes) != 1:
        modality = str(hdr.get("modality", "")).upper()
        if modality == "DWMRI" or any(str(k).startswith("DWMRI_gradient") for k in hdr):
            raise IQTError(
                f"{path}: this is a diffusion-weighted (DWI) NRRD, not a tensor volume; estimate tensors first and "
                f"give the tensor file: in Slicer (its 'Diffusion Tensor Estimation', or this module, which fits a DWI "
                f"node), or with 'iqt fit' once it is NIfTI (Slicer's DWIConvert --conversionMode NrrdToFSL, or "
                f"'mrconvert dwi.nrrd dwi.nii.gz -export_grad_fsl dwi.bvec dwi.bval')"
            )
        raise IQTError(
            f"{path}: kinds {hdr.get('kinds')} name no tensor axis; expected one of "
            f"{', '.join(TENSOR_KINDS)}; give {SLICER_HINT}"
        )
    rax = range_axes[0]
    kind = kinds[rax]
    ncomp = TENSOR_KINDS[kind]
    if data.shape[rax] != ncomp:
        raise IQTError(
            f"{path}: the {kind} axis has {data.shape[rax]} components instead of {ncomp}; the header is inconsistent, "
            f"re-save the tensor volume from Slicer"
        )
    domain = [i for i in range(4) if i != rax]
    affine, flip, space = _geometry(hdr, domain, rax, path)

    wrapped = tensor_checks.wrapped_cause(data, data.dtype, nrrd=True, axis=rax)  # a NRRD stores no scale: an
    # unsigned cast wraps
    if wrapped is not None:
        raise IQTError(f"{path}: {wrapped}")
    # components -> lower-triangular in the measurement frame
    comps = np.moveaxis(data, rax, -1).astype(np.float64)
    if kind == "3d-matrix":
        comps6 = tensors.from_matrix(comps.reshape(comps.shape[:3] + (3, 3)))
    else:
        if kind == "3d-masked-symmetric-matrix":
            comps = comps[..., 1:]
        comps6 = tensors.from_order(comps, "fsl")  # NRRD order xx,xy,xz,yy,yz,zz
    comps6 = tensor_checks.nan_as_empty(comps6, f"{path}: ")  # a NaN background (all six elements) is an empty one
    bad = ~np.isfinite(comps6)
    if bad.any():
        raise IQTError(
            f"{path}: {int(bad.sum())} NaN/Inf values in the tensor data; replace them (for example with 0 outside "
            f"the brain) and retry"
        )

    # measurement frame -> voxel axes
    if "measurement frame" in hdr:
        mf = np.asarray(hdr["measurement frame"], dtype=np.float64)
        if mf.shape != (3, 3) or not np.all(np.isfinite(mf)):
            raise IQTError(f"{path}: 'measurement frame' must be three 3D vectors, got {hdr['measurement frame']}")
        if not is_rotation(mf):
            raise IQTError(f"{path}: the 'measurement frame' {mf.tolist()} is not a rotation (its vectors must be unit "
                           f"length and at right angles); fix the header (Slicer writes the IJK->RAS rotation)")
        mf_ras = flip[:, None] * mf.T  # the header lists the columns
    else:
        mf_ras = np.diag(flip)  # components in world coordinates
    data6, rotated = reexpress(comps6, frame_to_voxel_axes(mf_ras, affine))
    meta = {
        "path": str(path),
        "format": "nrrd",
        "nrrd_kind": kind,
        "space": space,
        "measurement_frame_ras": mf_ras.tolist(),
        "reoriented_components": rotated,
    }
    if data.dtype.kind in "iu":  # one stored step, as a NIfTI's scl_slope gives it (NRRD has none): the checks name it
        meta["step"] = 1.0
        if wrapped_count := tensor_checks.wrapped_count(data, data.dtype):
            meta["wrapped"] = wrapped_count  # said where the checks refuse a cast (tensor_checks.integer_cause)
    made = read_made_by(hdr[MADE_BY_KEY], affine) if MADE_BY_KEY in hdr else None
    if made is not None:
        meta["made_by"], meta["made_at"] = made
    support = read_support(str(hdr.get(SUPPORT_KEY, "")).strip(), data6)  # an output kept to an estimated brain, still
    if support is not None:  # filling the voxels it counted (records.read_support; the Slicer module sets the field too)
        meta["support"] = support
    from . import slices

    slices.warn_if_gapped(path, affine, slices.from_nrrd_file(path, hdr, affine, domain))
    return Volume(data6.astype(np.float32), affine, "tensor", meta=meta)


# ---------------------------------------------------------------- writing


def _vec(v) -> str:
    return "(" + ",".join(repr(float(x)) for x in v) + ")"


def _space_lines(affine, component_axis: bool) -> tuple[list[str], list[str]]:
    """The grid's lines (space, space directions; space origin), one text for a tensor and its maps, so that a map
    overlays its tensor in Slicer; `component_axis`: the first axis holds components (its direction 'none')."""
    a = np.asarray(affine, dtype=np.float64)
    dirs = " ".join(_vec(a[:3, j]) for j in range(3))
    return (["space: right-anterior-superior", "space directions: " + ("none " if component_axis else "") + dirs],
            ["space origin: " + _vec(a[:3, 3])])


def _records(description: str, data_file: str | None) -> list[str]:
    """The data file line and the key/value fields every output NRRD ends with: the description (a NIfTI output's
    descrip) and the run that wrote it (a NIfTI output's header extension)."""
    lines = [f"data file: {data_file}"] if data_file is not None else []
    if description:
        lines.append(f"{MADE_BY_KEY}:={description}")
    run = run_json()
    if run is not None:
        lines.append(f"{RUN_KEY}:={run}")
    return lines


def _header(vol: Volume, encoding: str, data_file: str | None = None) -> bytes:
    a = vol.affine
    rot = direction_rotation(a)
    x, y, z = vol.shape3
    space, origin = _space_lines(a, component_axis=True)
    lines = [
        "NRRD0005",
        "# Complete NRRD file format specification at:",
        "# http://teem.sourceforge.net/nrrd/format.html",
        "# Diffusion tensor volume written by ImageQualityTransfer: components in IJK axes, mm^2/s",
        "type: float",
        "dimension: 4",
        space[0],
        f"sizes: 9 {x} {y} {z}",
        space[1],
        "kinds: 3D-matrix domain domain domain",
        "endian: little",
        f"encoding: {encoding}",
        *origin,
        "measurement frame: " + " ".join(_vec(rot[:, j]) for j in range(3)),  # columns of R
    ]
    # the method and factors, as a NIfTI output's descrip holds them (read back by `iqt evaluate`)
    lines += _records(made_by(vol.meta, vol.affine), data_file)
    support = support_json(vol.meta, vol.data)  # an output kept to an estimated brain, as a NIfTI's extension records it
    if support is not None:
        lines.append(f"{SUPPORT_KEY}:={support}")
    return ("\n".join(lines) + "\n\n").encode("ascii")


MADE_BY_KEY = "iqt_made_by"


def _payload(vol: Volume) -> np.ndarray:
    """(Z,Y,X,9) C-contiguous little-endian float32: components fastest, then x, y, z (NRRD order)."""
    m = tensors.to_matrix(np.asarray(vol.data, dtype=np.float32)).reshape(vol.shape3 + (9,))
    return np.ascontiguousarray(m.transpose(2, 1, 0, 3), dtype="<f4")


def _write_data(f, arr: np.ndarray, compress: bool, level: int) -> None:
    if compress:
        with gzip.GzipFile(filename="", fileobj=f, mode="wb", compresslevel=level, mtime=0) as gz:  # no temp name inside
            gz.write(memoryview(arr).cast("B"))
    else:
        f.write(memoryview(arr).cast("B"))


def check_grid(path, affine) -> None:
    """A sheared grid cannot be a Slicer tensor NRRD: its measurement frame would be no rotation, and the file
    unreadable; `iqt fit` and `upsample` ask before any work (fileio.check_tensor_output)."""
    from ..core.orientation import is_sheared

    if is_sheared(affine):
        raise IQTError(f"{path}: the input's grid is sheared (its voxel axes are not at right angles), which a Slicer "
                       "tensor NRRD cannot hold; write a .nii.gz instead")


def save_tensor_nrrd(vol: Volume, path, compress: bool = True, level: int = 1) -> None:
    """Write a tensor volume as Slicer's DTI NRRD (see module docstring); `.nhdr` writes a detached header
    beside a `<name>.raw[.gz]` data file. Each file is written to a temporary name and renamed."""

    if vol.kind != "tensor":
        raise ValueError("save_tensor_nrrd needs a tensor volume")
    path = Path(path)
    check_grid(path, vol.affine)
    _write(path, lambda encoding, data_file: _header(vol, encoding, data_file), _payload(vol), compress, level)


def _write(path: Path, header_of, arr: np.ndarray, compress: bool, level: int) -> None:
    """`header_of(encoding, data_file)`'s header and `arr`'s bytes at `path` (`.nhdr`: the data beside it,
    `nhdr_data_files`), each file through `atomic_write` (a run's outputs all or none, fileio/staging.py)."""
    encoding = "gzip" if compress else "raw"
    if path.suffix.lower() == ".nhdr":
        data_path = nhdr_data_files(path)[0 if compress else 1]
        try:  # the commands ask before any work (paths.Outputs.add); a caller of the Python API is told here
            check_data_name(path, data_path, "file")
        except IQTError as exc:
            raise DataNameError(str(exc)) from None

        def write_data(tmp):
            with open(tmp, "wb") as f:
                _write_data(f, arr, compress, level)

        def write_header(tmp):
            with open(tmp, "wb") as f:
                f.write(header_of(encoding, data_path.name))

        atomic_write(data_path, write_data)
        atomic_write(path, write_header)
        return

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(header_of(encoding, None))
            _write_data(f, arr, compress, level)

    atomic_write(path, write)


# ---------------------------------------------------------------- scalar maps

# the attributes of the Slicer module's map node (slicer/mrml.py MAP_ATTRIBUTE, UNIT_ATTRIBUTE, RUN_ATTRIBUTE), which
# Slicer's NRRD writer saves as key/value fields, its values in the node's unit (NODE_UNITS: um2/ms, x1000); read by
# `fileio.load_scalar` for `iqt evaluate`, never written here: a file's map is no module node (its record: iqt_made_by)
MAP_FIELDS = ("ImageQualityTransfer.Map", "ImageQualityTransfer.Unit", "ImageQualityTransfer.Run")


def _lps_lines(affine) -> tuple[list[str], list[str]]:
    """A spatial vector volume's grid lines as Slicer's writer gives them: LPS space, a 'none' component axis."""
    a = np.asarray(affine, dtype=np.float64)
    lps = np.diag([-1.0, -1.0, 1.0])
    dirs = " ".join(_vec(lps @ a[:3, j]) for j in range(3))
    return (["space: left-posterior-superior", "space directions: none " + dirs], ["space origin: " + _vec(lps @ a[:3, 3])])


def _scalar_header(vol: Volume, description: str, kind: str, encoding: str, data_file: str | None,
                   vector: bool = False) -> bytes:
    """`vector`: a spatial vector per voxel, written as Slicer writes a spatial vector volume (LPS components, kinds
    'vector', an identity measurement frame: vtkMRMLVolumeArchetypeStorageNode), so that Slicer loads it as one."""
    x, y, z = vol.shape3
    space, origin = _lps_lines(vol.affine) if vector else _space_lines(vol.affine, component_axis=False)
    lines = [
        "NRRD0005",
        "# Complete NRRD file format specification at:",
        "# http://teem.sourceforge.net/nrrd/format.html",
        "# Map written by ImageQualityTransfer" + (": spatial vector components in LPS" if vector else ""),
        f"type: {kind}",
        f"dimension: {4 if vector else 3}",
        space[0],
        f"sizes: {'3 ' if vector else ''}{x} {y} {z}",
        space[1],
        f"kinds: {'vector ' if vector else ''}domain domain domain",
        *(["endian: little"] if kind != "unsigned char" else []),
        f"encoding: {encoding}",
        *origin,
        *(["measurement frame: (1,0,0) (0,1,0) (0,0,1)"] if vector else []),
    ]
    lines += _records(description, data_file)
    return ("\n".join(lines) + "\n\n").encode("ascii")


def save_scalar_nrrd(vol: Volume, path, description: str = "", compress: bool = True, level: int = 1) -> None:
    """A 3D map as a scalar NRRD (float32, a mask as unsigned char) on the grid lines the tensor NRRD has
    (`_space_lines`); `description`: what a NIfTI map's descrip holds (records.map_record), kept in iqt_made_by.
    `.nhdr` as `save_tensor_nrrd`. A (X,Y,Z,3) volume (`--maps`' V1) holds RAS components and is written as Slicer
    writes a spatial vector volume (`_scalar_header`), read back in RAS by `read_scalar_nrrd`."""
    data = np.asarray(vol.data)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    vector = data.ndim == 4 and data.shape[3] == 3
    if data.ndim != 3 and not vector:
        raise ValueError(f"save_scalar_nrrd needs a 3D volume or a 3-vector one (X,Y,Z,3), got shape {data.shape}")
    direction_rotation(vol.affine)  # a zero or non-finite axis: refused as for a tensor
    kind, dtype = ("unsigned char", "u1") if data.dtype == bool else ("float", "<f4")
    order = (2, 1, 0, 3) if vector else (2, 1, 0)  # components fastest, then x, as NRRD stores them
    if vector:  # RAS components -> LPS, as Slicer's writer stores a spatial vector
        data = np.asarray(data, np.float32) * np.array([-1.0, -1.0, 1.0], np.float32)
    arr = np.ascontiguousarray(data.transpose(order), dtype=dtype)
    _write(Path(path), lambda encoding, data_file: _scalar_header(vol, description, kind, encoding, data_file, vector),
           arr, compress, level)


def scalar_record(hdr: dict) -> str:
    """A scalar NRRD's description as `save_scalar_nrrd` wrote it ("" where it holds none)."""
    text = hdr.get(MADE_BY_KEY)
    return str(text).strip() if isinstance(text, str) else ""


def module_fields(hdr: dict) -> dict:
    """The Slicer module's map fields (MAP_FIELDS) a NRRD saved from Slicer holds, as text."""
    return {key: str(hdr[key]).strip() for key in MAP_FIELDS if key in hdr}
