"""MRtrix's own image format (.mif, .mif.gz, and a .mih header with its data file), read and written as MRtrix3
documents it (mrtrix.readthedocs.io, "MRtrix image formats"): nibabel does not read it. An image is read in its
storage order, as `mrconvert` writes it to NIfTI (spatial axes ordered by their strides, reversed where a stride is
negative), so that a .mif and its mrconvert'ed NIfTI give the same voxel grid."""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import numpy as np

from ..core.errors import IQTError, IQTWarning
from .paths import MIF_SUFFIXES

READ_SUFFIXES = (*MIF_SUFFIXES, ".mih")  # a .mih header with its data file is read, not written
MAGIC = b"mrtrix image\n"
TYPES = {"int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4", "int64": "i8",
         "uint64": "u8", "float32": "f4", "float64": "f8"}


def is_mif(path) -> bool:
    return str(path).lower().endswith(READ_SUFFIXES)


def _fail(path, what: str):
    raise IQTError(f"{path}: {what}; convert it with mrconvert to NIfTI (e.g. 'mrconvert {Path(path).name} "
                   "out.nii.gz -datatype float32') and give that")


def _damaged(path, what: str):
    raise IQTError(f"{path}: {what}; the file is damaged, and mrconvert cannot read it either: write it again (rerun "
                   "the command that made it, or copy it anew)")


def _open(path, say: bool = False):
    """The file for reading, gunzipped by its .gz name. A plain .mif named .gz is read as it is, as MRtrix reads it
    (`say`: warned of); a compressed one named .mif is refused, as MRtrix refuses it, in a line saying what it is."""
    zipped = str(path).lower().endswith(".gz")
    try:
        with open(path, "rb") as f:
            start = f.read(len(MAGIC))
    except OSError:
        start = None  # the caller's own read says what is wrong
    if zipped and start == MAGIC:
        if say:
            plain = Path(path).name[: -len(".gz")]
            warnings.warn(f"{path}: a plain MRtrix image (not gzip-compressed) named .gz, read as it is, as MRtrix "
                          f"reads it; rename it to {plain} (then 'mrconvert {plain} {Path(path).name}' writes it "
                          "compressed, if wanted)", IQTWarning, stacklevel=3)
        return open(path, "rb")
    if not zipped and start is not None and start[:2] == b"\x1f\x8b" and str(path).lower().endswith(".mif"):
        raise IQTError(f"{path}: a gzip-compressed MRtrix image named .mif, which neither MRtrix nor this tool reads "
                       f"so; rename it to {Path(path).name}.gz")
    return gzip.open(path, "rb") if zipped else open(path, "rb")


def read_header(path, say: bool = False) -> dict[str, list[str]]:
    """The header's keys, each with its values in the order given (dw_scheme and transform hold one line each); `say`:
    warn of a plain image named .gz (once a read: `read_mif`)."""
    keys: dict[str, list[str]] = {}
    try:
        with _open(path, say) as f:
            if f.read(len(MAGIC)) != MAGIC:
                _fail(path, "not an MRtrix image (no 'mrtrix image' first line)")
            for raw in f:
                line = raw.decode("utf-8", "replace").strip()
                if line == "END":
                    return keys
                if ":" in line:
                    key, value = line.split(":", 1)
                    keys.setdefault(key.strip(), []).append(value.strip())
    except (OSError, EOFError) as exc:
        _damaged(path, f"its header cannot be read ({exc})")
    if str(path).lower().endswith(".mih"):  # a detached header may end without END
        return keys
    _damaged(path, "its header has no END line (truncated)")


def _numbers(path, keys, key, kind=float) -> list:
    if key not in keys:
        _fail(path, f"its header has no '{key}' line")
    try:
        return [kind(v) for v in keys[key][0].split(",")]
    except ValueError:
        _fail(path, f"its '{key}' line ({keys[key][0]}) is not a list of numbers")


def _dtype(path, keys) -> np.dtype:
    name = keys.get("datatype", [""])[0].lower()
    if name == "bit":  # a mask, packed eight voxels a byte (read as uint8: `_read_data`)
        return np.dtype("u1")
    base, order = (name[:-2], "<" if name.endswith("le") else ">") if name.endswith(("le", "be")) else (name, "=")
    if base not in TYPES:
        _fail(path, f"datatype '{keys.get('datatype', ['none'])[0]}' is not read (only bit, real integer and float "
                    "types)")
    return np.dtype(order + TYPES[base])


def read_mif(path) -> tuple[np.ndarray, np.ndarray, dict[str, list[str]]]:
    """(data in storage order, scaled (as float64 where an integer type has a scaling); the 4x4 voxel->scanner (RAS,
    mm) affine; the header's keys)."""
    path = Path(path)
    keys = read_header(path, say=True)
    repeated = [k for k in ("dim", "vox", "layout", "datatype", "scaling") if len(keys.get(k, [])) > 1]
    if repeated:  # MRtrix takes the last line, this reader had taken the first: refused rather than read either way
        _fail(path, f"its header gives '{repeated[0]}' more than once")
    dim = _numbers(path, keys, "dim", int)
    vox = _numbers(path, keys, "vox")
    if "layout" not in keys:
        _fail(path, "its header has no 'layout' line")
    layout = keys["layout"][0].split(",")
    if len(dim) < 3 or len(dim) > 4 or len(vox) < 3 or len(layout) != len(dim) or min(dim) < 1:
        _fail(path, f"dim {keys['dim'][0]} with layout {keys['layout'][0]} is not a 3D or 4D image")
    try:
        ranks = [abs(int(v)) for v in layout]
        signs = [-1 if v.strip().startswith("-") else 1 for v in layout]
    except ValueError:
        _fail(path, f"its layout ({keys['layout'][0]}) is not a list of signed strides")
    if sorted(ranks) != sorted(set(ranks)):
        _fail(path, f"its layout ({keys['layout'][0]}) repeats a stride")
    rows = keys.get("transform", [])
    if len(rows) != 3:
        _fail(path, "its header has no 3-row 'transform'")
    try:
        m = np.array([[float(v) for v in r.split(",")] for r in rows])
    except ValueError:
        _fail(path, "its 'transform' is not numbers")
    if m.shape != (3, 4):
        _fail(path, "its 'transform' is not 3 rows of 4 numbers")
    dtype = _dtype(path, keys)
    data = _read_data(path, keys, dtype, dim, ranks)
    fast_first = sorted(range(len(dim)), key=lambda a: ranks[a])  # the file's axes, fastest first
    data = data.reshape([dim[a] for a in reversed(fast_first)]).transpose(
        [len(dim) - 1 - fast_first.index(a) for a in range(len(dim))])  # image axes, indexed as stored
    if len(dim) == 4 and signs[3] < 0:
        data = data[..., ::-1]  # the volumes in the image's order (dw_scheme's)
    image = np.eye(4)
    image[:3, :3] = m[:, :3] * np.asarray(vox[:3])
    image[:3, 3] = m[:, 3]
    axes = sorted(range(3), key=lambda a: ranks[a])  # the spatial axes in storage order, as mrconvert's NIfTI holds them
    affine = np.eye(4)
    affine[:3, 3] = image[:3, 3]
    for i, a in enumerate(axes):  # a negative stride: stored index s is image index dim-1-s
        affine[:3, i] = image[:3, a] * signs[a]
        if signs[a] < 0:
            affine[:3, 3] += image[:3, a] * (dim[a] - 1)
    data = np.ascontiguousarray(data.transpose(axes + list(range(3, len(dim)))))
    scaling = keys.get("scaling")
    if scaling and dtype.kind in "iu":  # MRtrix applies no scaling to float data (mrconvert gives it unscaled)
        try:
            offset, scale = (float(v) for v in scaling[0].split(","))
        except ValueError:
            _fail(path, f"its 'scaling' ({scaling[0]}) is not two numbers")
        if (offset, scale) != (0.0, 1.0):
            data = data.astype(np.float64) * scale + offset
    return data, affine, keys


def _read_data(path, keys, dtype, dim, ranks) -> np.ndarray:
    """The data's bytes as a flat array: after the header of a .mif (.gz), or in the file a .mih names."""
    spec = keys.get("file", [])
    if len(spec) != 1:
        _fail(path, "its header names no data file, or several ('file' lines)" if spec else
              "its header has no 'file' line")
    name, offset = _data_name(spec[0])
    count = int(np.prod(dim))
    bits = keys["datatype"][0].lower() == "bit"
    size = -(-count // 8) if bits else count * dtype.itemsize
    if name == ".":
        source = path
    else:
        source = path.parent / name
        if not source.is_file():
            raise IQTError(f"{path}: its data file {source} is not found; keep the data file where its header's 'file' "
                           "line names it (beside a .mih), or write the image again as one .mif")
    try:
        with _open(source) as f:
            if isinstance(f, gzip.GzipFile):
                f.read(offset)
            else:
                f.seek(offset)
            raw = f.read(size)
            if isinstance(f, gzip.GzipFile):
                while f.read(1 << 20):  # to the end, where gzip's checksum is checked
                    pass
    except (OSError, EOFError) as exc:
        _damaged(path, f"its data cannot be read ({exc})")
    if len(raw) != size:
        _damaged(path, f"holds {len(raw)} bytes of data where dim {keys['dim'][0]} of {keys['datatype'][0]} needs "
                    f"{size} (truncated)")
    if bits:  # the first voxel in a byte's highest bit, as MRtrix packs them
        return np.unpackbits(np.frombuffer(raw, np.uint8), count=count)
    return np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="))


def _data_name(spec: str) -> tuple[str, int]:
    """(file name, byte offset) of a header's 'file' line: 'NAME OFFSET', the offset optional."""
    name, _, offset = spec.rpartition(" ")
    try:
        return name.strip(), int(offset)
    except ValueError:
        return spec.strip(), 0


def mih_data_file(path) -> Path | None:
    """The data file a .mih header names (its one 'file' line, relative to the header's folder, as `_read_data` reads
    it), so that the image is hashed with its data (fileio/checksums.py); None for any other file, or a header its
    reader refuses (and says why). Only a regular file is opened (a FIFO would hang)."""
    p = Path(path)
    if not str(p).lower().endswith(".mih") or not os.path.isfile(p):
        return None
    try:
        spec = read_header(p).get("file", [])
    except IQTError:
        return None
    name = _data_name(spec[0])[0] if len(spec) == 1 else "."
    return None if name == "." else p.parent / name


def dw_scheme(keys) -> np.ndarray | None:
    """The gradient table (N, 4: x y z b, scanner frame) from the header's dw_scheme lines, or None without one."""
    rows = keys.get("dw_scheme")
    if not rows:
        return None
    return np.array([[float(v) for v in r.split(",")] for r in rows])


def mended_path(path) -> Path:
    """Where the advice to mend an MRtrix image's table writes the mended copy: beside it, its whole name kept but for
    the suffix (run-1.dwi.mif: run-1.dwi_fixed.mif), so that two runs in one folder are not told to write one file."""
    name = Path(str(path)).name
    suffix = next((e for e in (".mif.gz", ".mif", ".mih") if name.lower().endswith(e)), "")
    return Path(str(path)).with_name(name[: len(name) - len(suffix)] + "_fixed.mif")


def sh_coefficients(keys, volumes: int) -> str | None:
    """What an image of no dw_scheme is where it holds spherical-harmonic coefficients, as amp2sh and dwi2fod write them:
    an even lmax of 4 or more's count of volumes (15, 28, 45, ...) and its DWI's table kept as prior_dw_scheme; None
    otherwise (a DWI whose dw_scheme was dropped keeps no prior_dw_scheme). dwi2tensor's outputs keep it too: its
    -dkt kurtosis tensor (15 volumes) is named as such, its -predicted_signal, a DWI, is not told it is none."""
    if keys.get("dw_scheme") or not keys.get("prior_dw_scheme"):
        return None
    lmax = next((lm for lm in range(4, 31, 2) if (lm + 1) * (lm + 2) // 2 == volumes), None)
    if lmax is None:
        return None
    history = [h.split() for h in keys.get("command_history", []) if h.split()]
    made = [Path(h[0]).name for h in history]
    maker = next((i for i in reversed(range(len(made))) if made[i] in ("amp2sh", "dwi2fod", "dwi2tensor")), None)
    if maker is not None and made[maker] == "dwi2tensor":
        if volumes == 15 and "-dkt" in history[maker] and "-predicted_signal" not in history[maker]:
            return ("15 volumes, the kurtosis tensor of dwi2tensor -dkt (its header keeps the DWI's table as "
                    "prior_dw_scheme), not a DWI nor diffusion tensors")
        return None
    by = f", written by {made[-1]}" if made and made[-1] in ("amp2sh", "dwi2fod") else ""
    return (f"{volumes} volumes, the spherical-harmonic coefficients of lmax {lmax}{by} (its header keeps the DWI's table "
            "as prior_dw_scheme), not a DWI nor diffusion tensors")


def write_mif(path, data: np.ndarray, affine: np.ndarray, extra: dict[str, list[str]] | None = None) -> None:
    """`data` (3D or 4D, float32 or uint8) on `affine` (voxel->RAS, mm) as MRtrix's .mif or .mif.gz at `path` (a
    temporary file: fileio.writing.atomic_write puts it in place), volumes along the fourth axis, x fastest."""
    data = np.asarray(data)
    vox = np.linalg.norm(affine[:3, :3], axis=0)
    rotation = affine[:3, :3] / vox
    dtype = np.dtype("<u1") if data.dtype in (np.uint8, bool) else np.dtype("<f4")
    lines = ["mrtrix image", "dim: " + ",".join(str(n) for n in data.shape),
             "vox: " + ",".join(f"{v:.10g}" for v in (*vox, *([1.0] * (data.ndim - 3)))),
             "layout: " + ",".join(f"+{a}" for a in range(data.ndim)),
             "datatype: " + ("UInt8" if dtype.kind == "u" else "Float32LE")]
    lines += ["transform: " + ",".join(f"{v:.10g}" for v in (*rotation[r], affine[r, 3])) for r in range(3)]
    for key, values in (extra or {}).items():
        lines += [f"{key}: {v}" for v in values]
    head = ("\n".join(lines) + "\nfile: . ").encode()
    offset = len(head) + 20
    offset += -offset % 16  # the data aligned, as MRtrix writes it
    head += f"{offset}\nEND\n".encode()
    head += b"\0" * (offset - len(head))
    body = np.asarray(data, dtype).tobytes(order="F")
    opener = gzip.open(path, "wb", compresslevel=1) if str(path).lower().endswith(".gz") else open(path, "wb")
    with opener as f:
        f.write(head)
        f.write(body)
