"""Reading and writing volumes: DWI (NIfTI + FSL bval/bvec), tensor NIfTI, scalar/mask NIfTI.

Every reader validates and raises `IQTError` naming the problem and the fix; every writer writes to a
temporary file and renames it, so a failure never leaves a partial output. Tensor files ending in
`.nrrd`/`.nhdr` go through `fileio.nrrd` (Slicer's tensor NRRD); the NIfTI file mechanics are in `fileio.nifti`, the
FSL bval/bvec text in `fileio.gradients`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..core import tensor_checks, tensors
from ..core.errors import IQTError, IQTWarning
from ..core.i18n import _
from ..core.volume import Volume, voxel_sizes
from .gradients import (B0_THRESHOLD, bval_bvec_paths, check_table, fsl_flip, read_gradient_table,
                        sidecar_slices)
from .mif import dw_scheme, is_mif, mended_path, read_header, sh_coefficients, write_mif
from .paths import shell_word
from .nifti import (
    add_support_record,
    check_finite,
    header_codes,
    is_nrrd,
    load_nifti,
    nibabel_lib,
    read_data,
    remember_codes,
    run_record_of,
    save_nifti,
    set_orientation,
    support_of,
)
from . import slices
from .writing import atomic_write
from .records import made_by, read_made_by, recorded_order


# ---------------------------------------------------------------- DWI




def voxel_size(path) -> np.ndarray:
    """Voxel size (mm, per voxel axis) from a NIfTI header, without reading the data."""
    img = load_nifti(path)
    return voxel_sizes(img.affine)


def load_dwi(path, bval=None, bvec=None) -> Volume:
    """4D DWI with b-values and gradient directions in the voxel axes of the image.

    FSL bvecs are in voxel axes with x flipped when the affine determinant is positive; that flip is
    undone here so that fitted tensors are expressed in the voxel axes (docs/conventions.md).
    """
    img, five_d, bvals, bvecs = _dwi_header(path, bval, bvec)
    data = read_data(img, path)
    if five_d:
        data = data[:, :, :, 0, :]
    check_finite(data, path, "DWI")
    remember_codes(img.affine, header_codes(img))
    meta = {"path": str(path)}
    axis, count = sidecar_slices(path)
    if axis is not None:
        meta["slice_axis"] = axis  # where dmri.outliers reads slices (dmri.outliers.slice_axis_of)
    if count is not None:
        meta["slice_count"] = count
    if is_mif(path) and bval is None and bvec is None and dw_scheme(img.extra["mif"]) is not None:
        meta["table"] = "dw_scheme"  # the gradient check's advice names it (dmri/scheme_advice.py)
    return Volume(data, img.affine, "dwi", bvals=bvals, bvecs=bvecs @ fsl_flip(img.affine), meta=meta)


def check_dwi(path, bval=None, bvec=None) -> tuple[np.ndarray, np.ndarray]:
    """What `load_dwi` refuses that the header, the gradient files and a gzip file's recorded length tell, without
    reading the image data: so that `iqt train` refuses a bad subject before preparing the others (a training audit:
    a bval of the wrong length came after 24-55 s, a truncated dwi.nii.gz as an internal error). Returns the b-values
    and directions (voxel axes) as `load_dwi` gives them, for the fit's own checks (dmri.dti.check_gradients)."""
    with warnings.catch_warnings():  # its notes (a b-value scaled by the directions' length) come with the load
        warnings.simplefilter("ignore")
        img, _, bvals, bvecs = _dwi_header(path, bval, bvec)
    table = (bvals, bvecs @ fsl_flip(img.affine))
    offset = getattr(img.dataobj, "offset", None)  # where the data start in the file (the header's copy reads 0)
    if offset is None:
        return table
    described = int(offset) + int(np.prod(img.shape)) * img.get_data_dtype().itemsize
    from .checksums import content_size

    if content_size(path) != described % (1 << 32):  # a gzip's recorded length, a plain file's size
        read_data(img, path)  # another gzip layout (several members) may still hold it: the full read decides
    return table


def _dwi_header(path, bval=None, bvec=None):
    """(image, 5D with one time point, b-values, directions in FSL's frame) of a DWI, every check of its header and
    gradient files made (`load_dwi`)."""
    if Path(path).exists() and is_nrrd(Path(path)):
        raise IQTError(f"{path}: a DWI is read from NIfTI with its bval and bvec files; convert the NRRD (as Slicer writes "
                       "it), e.g. with 'mrconvert dwi.nrrd dwi.nii.gz -export_grad_fsl dwi.bvec dwi.bval' (MRtrix) or "
                       "Slicer's DWIConvert (--conversionMode NrrdToFSL), or fit it in the Slicer module")
    img = load_nifti(path)
    five_d = img.ndim == 5 and img.shape[3] == 1  # (X, Y, Z, 1, N): the volumes along the fifth axis, as some tools save
    n = img.shape[4] if five_d else img.shape[3] if img.ndim == 4 else 0
    if n < 7:
        raise IQTError(
            f"{path}: shape {img.shape} is not a diffusion-weighted series; a DWI is 4D (or 5D with one time point, "
            "X x Y x Z x 1 x N) with at least 7 volumes (b0 + 6 directions)"
        )
    bval_p, bvec_p = bval_bvec_paths(path, bval, bvec)
    if is_mif(path) and bval is None and bvec is None:
        return (img, five_d, *_mif_gradients(img, path, n, bval_p, bvec_p))
    return (img, five_d, *_gradient_files(path, n, bval_p, bvec_p))


def _gradient_files(path, n: int, bval_p: Path, bvec_p: Path) -> tuple[np.ndarray, np.ndarray]:
    """(b-values, directions in FSL's frame) from a DWI's bval and bvec files, every check made (`_dwi_header`)."""
    for p, flag in ((bval_p, "--bval"), (bvec_p, "--bvec")):
        if not p.exists():
            raise IQTError(f"{p}: not found; give the FSL gradient file with {flag}")
    bvals = read_gradient_table(bval_p, "b-values (bval)").ravel()
    bvecs = read_gradient_table(bvec_p, "gradient directions (bvec)")
    if bvecs.ndim == 2 and bvecs.shape[1] == 4 and bvecs.shape[0] == n:  # x y z b per volume: MRtrix's own table
        raise IQTError(f"{bvec_p}: {n} rows of 4 numbers, an MRtrix gradient table (x y z b, in scanner coordinates), "
                       "not FSL's bvec; export FSL's files with 'mrconvert dwi.mif dwi.nii.gz -export_grad_fsl dwi.bvec "
                       "dwi.bval' (or 'mrinfo dwi.mif -export_grad_fsl dwi.bvec dwi.bval') and give those")
    if bvecs.shape[0] == 3 and bvecs.shape[1] != 3 or (bvecs.shape == (3, 3) and bvals.size == 3):
        bvecs = bvecs.T
    if bvecs.ndim != 2 or 3 not in bvecs.shape:  # 2 rows of 21 had been said as "2 directions" (audit)
        raise IQTError(f"{bvec_p}: {' x '.join(map(str, bvecs.shape))} numbers, not three per direction (3 rows as FSL "
                       "writes them, or 3 columns); give the series' own bvec file")
    if bvals.size != n or bvecs.shape != (n, 3):
        raise IQTError(
            f"{path}: the DWI has {n} volumes but {bval_p.name} has {bvals.size} b-values and {bvec_p.name} "
            f"{bvecs.shape[0]} directions; give the bval/bvec files that belong to this series"
        )
    for values, p in ((bvals, bval_p), (bvecs, bvec_p)):  # the file that holds them named (the bval was, for either)
        if not np.all(np.isfinite(values)):
            raise IQTError(f"{p}: NaN or Inf among its numbers; give the series' own gradient table")
    check_table(bvals, bvecs, n, f"{bval_p}: ")  # the unit checks, as for a series built in memory (dmri.dti.fit_dti)
    bvals, bvecs = _scale_b_by_length(bvals, bvecs, bvec_p)
    return bvals, bvecs


def _mend_scheme(path) -> str:
    """What to do with a dw_scheme that does not fit its DWI `path`, for iqt fit and for an iqt batch line, which takes
    no --bval: the command names the user's image and its mended copy (dw_scheme advice's, dmri/scheme_advice.py)."""
    fixed = mended_path(path)
    return (f"write the series' own table into it: 'mrconvert {shell_word(path)} -fslgrad dwi.bvec dwi.bval "
            f"{shell_word(fixed)}' (dwi.bvec and dwi.bval the series' own; or -grad table.b, rows of x y z b) and give "
            f"{fixed.name}, on an iqt batch line too; or give iqt fit --bval and --bvec; or list, in iqt batch, a folder "
            "of dwi.nii.gz with its dwi.bval and dwi.bvec")


# what to give instead of an image of spherical-harmonic coefficients (fileio/mif.py sh_coefficients)
_SH_INSTEAD = ("give the DWI it was computed from, its table in its header's dw_scheme (iqt fit and iqt batch fit it), or "
               "that DWI's tensors from dwi2tensor")


def _mif_gradients(img, path, n: int, bval_p: Path, bvec_p: Path) -> tuple[np.ndarray, np.ndarray]:
    """(b-values, directions in FSL's frame, as `_dwi_header` gives them) of an MRtrix DWI from its header's dw_scheme
    (x y z b per volume, scanner coordinates), or from a bval and bvec beside it where it holds none."""
    try:
        table = dw_scheme(img.extra["mif"])
    except ValueError:
        raise IQTError(f"{path}: its dw_scheme is not rows of four numbers (x,y,z,b); {_mend_scheme(path)}") from None
    if table is None:
        if bval_p.is_file() and bvec_p.is_file():
            return _gradient_files(path, n, bval_p, bvec_p)
        sh = sh_coefficients(img.extra["mif"], n)
        if sh is not None:
            raise IQTError(f"{path}: {sh}; {_SH_INSTEAD}")
        raise IQTError(f"{path}: an MRtrix DWI without a gradient table (no dw_scheme in its header, no .bval/.bvec "
                       f"beside it); add it with 'mrconvert {shell_word(path)} -fslgrad dwi.bvec dwi.bval "
                       f"{shell_word(mended_path(path))}' (or -grad table.b), or give --bval and --bvec")
    if table.shape != (n, 4) or not np.all(np.isfinite(table)):
        raise IQTError(f"{path}: the DWI has {n} volumes but its dw_scheme {table.shape[0]} rows of "
                       f"{table.shape[1]} numbers (or NaN/Inf among them); {_mend_scheme(path)}")
    bvals, scanner = table[:, 3], table[:, :3]
    check_table(bvals, scanner, n, f"{path}: dw_scheme: ")
    rotation = img.affine[:3, :3] / voxel_sizes(img.affine)
    bvecs = scanner @ np.linalg.inv(rotation).T  # scanner frame to the voxel axes
    bvals, bvecs = _scale_b_by_length(bvals, bvecs, f"{path} (dw_scheme)")
    return bvals, bvecs @ fsl_flip(img.affine)  # FSL's frame, as the bvec file gives it


def _scale_b_by_length(bvals: np.ndarray, bvecs: np.ndarray, bvec_p) -> tuple[np.ndarray, np.ndarray]:
    """b x |g|^2 with unit directions where the bval file gives one b for every weighted volume and some directions
    are off unit length by more than 5 %: the convention of scanners that allow one b-value per series (the others
    given by shortening the vectors), as MRtrix and the Slicer module's DWI NRRD reader take it; read as labelled, such
    a series' MD was 25 % low (an input audit). Lengths off by 1-5 % (rounding), or a table that already lists several
    b-values, keep the file's b. Said in one line either way."""
    norms = np.linalg.norm(bvecs, axis=1)
    weighted = (bvals > B0_THRESHOLD) & (norms > 0)  # a zero direction is refused where the tensors are fitted
    if not weighted.any() or np.abs(norms[weighted] - 1).max() <= 0.01:
        return bvals, bvecs
    lengths = norms[weighted]
    one_b = np.ptp(bvals[weighted]) <= 0.01 * bvals[weighted].max()
    bvals, bvecs = bvals.astype(float), bvecs.astype(float)
    bvecs[weighted] = bvecs[weighted] / lengths[:, None]
    if one_b and np.abs(lengths - 1).max() > 0.05:
        bvals[weighted] = bvals[weighted] * lengths**2
        line = _("{file}: directions of length {low} to {high}, not 1: read as MRtrix reads them, b x |g|^2 with unit "
                 "directions (b {bmin} to {bmax}); if the lengths do not scale b, make the directions unit length")
    else:
        line = _("{file}: directions of length {low} to {high}, not 1: each is taken as a direction with its b from the "
                 "bval file; if their lengths scale b, put b x |g|^2 in the bval file") if one_b else \
            _("{file}: directions of length {low} to {high}, not 1: each is taken as a direction with its b from the "
              "bval file (it lists several b-values already); if their lengths scale b, put b x |g|^2 in the bval file")
    warnings.warn(line.format(file=bvec_p, low=f"{lengths.min():.3g}", high=f"{lengths.max():.3g}",
                              bmin=f"{bvals[weighted].min():.0f}", bmax=f"{bvals[weighted].max():.0f}"),
                  IQTWarning, stacklevel=3)
    return bvals, bvecs


def save_dwi(vol: Volume, path) -> None:
    def write(tmp):
        save_nifti(nibabel_lib().Nifti1Image(np.asarray(vol.data, np.float32), vol.affine), tmp)

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


# a tensor's elements stay below ~4e-3 mm^2/s (~4 um^2/ms); a DWI's brain intensities are hundreds to thousands
DWI_INTENSITY_FLOOR = 50.0
# the floor where its six volumes are alike (_volumes_alike): the 3 mm Prisma scans' DW volumes reach a brain median
# of 30-48 only; an unmasked whole-number tensor cast with its negatives clipped can pass it (brain medians 22-241 in
# docs/measurements.md, Integer files without a scale) but its volumes are not alike: its off-diagonals centre on 0
DWI_ALIKE_FLOOR = 20.0


# share of a 6-, 7- or 9-volume file's brain voxels holding a negative value at most, where its scl_inter is negative,
# for it to read as a DWI series: a tensor's off-diagonals are negative in most brain voxels
DWI_NEGATIVE_BRAIN = 0.05
# the least ratio of a six-volume file's third smallest |brain median| over its third largest for its volumes to read
# as a DWI's where DWI_NEGATIVE_BRAIN is passed: 0.62 and above in the 33 real DWIs whose negative scl_inter turns over
# 5 % of their brain negative, 0.02 at most in 208 real tensor files nibabel scaled to uint16 with an intercept
# (docs/measurements.md, Integer files without a scale)
DWI_VOLUMES_ALIKE = 0.3
# the fewest brain voxels for that ratio to be read: under it, a small crop of a coherent tract holds its
# off-diagonals' sign throughout (up to 0.93 in 4x4x2 and 0.36 in 8x8x4 crops of real tensor files), and had been
# told a DWI series; 0.099 at most from 1,000 on in 10,123 crops (docs/measurements.md, Integer files without a scale)
DWI_ALIKE_BRAIN = 1000


def _intercept(img) -> float:
    """A NIfTI's scl_inter as nibabel applies it (0 where it has none)."""
    inter = float(getattr(img.dataobj, "inter", 0.0) or 0.0)
    return inter if np.isfinite(inter) else 0.0


def _stored(img) -> np.ndarray | None:
    """An integer NIfTI's stored values, unscaled (read once for the wrap, DWI and saturation checks); None for a float
    file."""
    if img.get_data_dtype().kind not in "iu" or not hasattr(img.dataobj, "get_unscaled"):
        return None
    return np.asarray(img.dataobj.get_unscaled())


def _wrapped_values(img, raw: np.ndarray | None) -> np.ndarray | bool:
    """Where an unsigned integer NIfTI without an intercept, its stored values `raw`, holds tensor_checks.wrapped_values
    in a file whose other non-zero values are a tensor's few steps (99 % of them at most WRAPPED_MIRROR); False for any
    other file. Left out of the DWI check's brain: a noisy unmasked um^2/ms uint16 cast, a -1 in a few % of its voxels,
    had been told a DWI series; a DWI clipped at the top in nearly all its brain, its other values spread, had been
    read as tensors."""
    if raw is None:
        return False
    wrapped = tensor_checks.wrapped_values(raw, img.get_data_dtype(), _intercept(img))
    if wrapped is False:
        return False
    rest = raw[(raw != 0) & ~wrapped]
    if rest.size == 0 or float(np.percentile(rest, 99)) > tensor_checks.WRAPPED_MIRROR:
        return False
    return wrapped


def _dwi_series_line(img, path, data: np.ndarray | None = None, raw: np.ndarray | None = None) -> str | None:
    """One line telling a 4D file given as tensors for the DWI series it is, where that is clear: a .bval and .bvec
    beside it (as a DWI's are read), or a 6-, 7- or 9-volume file (a tensor layout's count) without a negative value
    (a tensor file's off-diagonals hold some; with a negative scl_inter, in at most DWI_NEGATIVE_BRAIN of its brain
    voxels, or more where its six volumes are alike (_volumes_alike), a share the line says: a DWI's stored zeros read as the intercept) whose brain voxels hold values far above
    a tensor's; None otherwise. `data`, `raw`: its values and stored values where read already (_stored)."""
    shape = img.shape
    if len(shape) != 4:
        return None
    bval_p, bvec_p = bval_bvec_paths(path)
    if bval_p.is_file() and bvec_p.is_file():
        why = f"{bval_p.name} and {bvec_p.name} lie beside it"
        fit = f"'iqt fit {shell_word(Path(path).name)} -o dti.nii.gz'"
    elif shape[3] in (6, 7, 9):
        if data is None:
            data = read_data(img, path)
        negative = np.any(data < 0, axis=-1)  # NaN compares False
        if negative.any() and not _intercept(img) < 0:
            return None
        if raw is None:
            raw = _stored(img)
        peak = np.where(_wrapped_values(img, raw), 0, data).max(axis=-1)  # a voxel's largest value; NaN where any is
        if np.count_nonzero(peak) <= tensor_checks.CAST_LEFT * peak.size:  # a tensor cast that truncated nearly
            return None  # every value to 0, its failed fits wrapped (tensor_checks.integer_cause names it); a DWI is not
        seen = peak[np.isfinite(peak)]
        bright = peak > 0.1 * np.percentile(seen, 99) if seen.size else np.zeros(peak.shape, bool)  # a tenth of the
        brain = peak[bright]  # bright end and above
        if brain.size == 0 or np.median(brain) < DWI_ALIKE_FLOOR:
            return None
        volumes_alike = _volumes_alike(data[bright])
        if np.median(brain) < DWI_INTENSITY_FLOOR and not volumes_alike:
            return None
        share = float(np.mean(negative[bright]))  # a DWI's lowest stored values, read with the intercept
        alike = share > DWI_NEGATIVE_BRAIN and volumes_alike  # the intercept's negatives, told beside alike volumes
        if share > DWI_NEGATIVE_BRAIN and not alike:  # a tensor file scaled with an intercept
            return None
        signs = "no negative value" if not negative.any() else \
            f"no negative value in its brain (its scl_inter {_intercept(img):g} gives the others)" if share == 0 else \
            (f"a negative value in {100 * share:.2g} % of its brain voxels, where its scl_inter {_intercept(img):g} "
             "turns its dim values negative, yet its six volumes' brain medians are of a size, where a tensor's three "
             "off-diagonals centre on 0") if alike else \
            f"a negative value in only {100 * share:.2g} % of its brain voxels (its scl_inter {_intercept(img):g} gives them)"
        why = (f"{signs}; its brain voxels' values, median {np.median(brain):.0f}, far above a tensor's "
               "elements, below ~4e-3 mm^2/s or ~4 um^2/ms")
        if np.median(brain) < DWI_INTENSITY_FLOOR and not alike:  # a dim DWI, read by its volumes alone
            why += "; its six volumes' brain medians are of a size, where a tensor's three off-diagonals centre on 0"
        fit = (f"'iqt fit {shell_word(Path(path).name)} -o dti.mif' on the whole series, its gradient table in its "
               "header's dw_scheme (mrconvert -fslgrad writes one) or given with --bval and --bvec" if is_mif(path) else
               "'iqt fit dwi.nii.gz -o dti.nii.gz' on the whole series, its .bval and .bvec beside it")
    else:
        return None
    return (f"{path}: shape {shape} is a DWI series ({why}), not diffusion tensors; fit tensors from it first with "
            f"{fit}, and give that file")


def _volumes_alike(brain: np.ndarray) -> bool:
    """Whether a six-volume file's volumes, their values over its brain voxels `brain` (n, 6), have medians of a size:
    the third smallest |median| over DWI_VOLUMES_ALIKE of the third largest, over DWI_ALIKE_BRAIN voxels at least. A
    tensor's three off-diagonals centre on 0 beside its positive diagonals; a DWI's volumes do not, where a negative
    scl_inter turns many of its brain voxels' dim values negative."""
    if brain.ndim != 2 or brain.shape[1] != 6 or len(brain) < DWI_ALIKE_BRAIN:
        return False
    medians = np.sort(np.abs(np.median(brain, axis=0)))
    return bool(medians[3] > 0 and medians[2] > DWI_VOLUMES_ALIKE * medians[3])


def _repeated_line(data: np.ndarray, path) -> str | None:
    """The refusal of a six-volume file `data` whose six values are equal in every voxel, not all 0: one volume (a mask
    or label map) copied six times, no tensor file (a tensor of six equal elements has rank 1); None otherwise. Such a
    0/1 mask had been told a um^2/ms cast, a 0/255 one a DWI series."""
    first = data[..., :1]
    if not np.any(first) or not np.all((data == first) | np.isnan(data)):
        return None
    return (f"{path}: shape {data.shape} holds one volume six times (each voxel's six values are equal, as in a mask "
            "or label map copied into six volumes; a fitted tensor's never are: that matrix has rank 1); give the "
            "six-element tensor file (FSL dtifit --save_tensor's, MRtrix dwi2tensor's), or fit one from the DWI with "
            "'iqt fit'")


def _mif_lines(img, path) -> str | None:
    """The refusal of an MRtrix image given as tensors that is none: a DWI series (a dw_scheme in its header; dwi2tensor
    keeps its input's as prior_dw_scheme), or another count of volumes than dwi2tensor's six; None otherwise. Six
    volumes are left to their values (`_dwi_series_line`): a tool that kept the DWI's dw_scheme may have written them."""
    if not is_mif(path) or len(img.shape) != 4 or img.shape[3] in (1, 3, 6):  # the maps' lines say 1 and 3
        return None
    if img.extra.get("mif", {}).get("dw_scheme"):
        return (f"{path}: shape {img.shape} is a DWI series (its header holds a dw_scheme), not diffusion tensors; fit "
                f"tensors from it first with 'iqt fit {shell_word(Path(path).name)} -o dti.mif', which reads its "
                "dw_scheme, and give that file")
    sh = sh_coefficients(img.extra.get("mif", {}), img.shape[3])
    if sh is not None:
        return f"{path}: shape {img.shape}: {sh}; {_SH_INSTEAD}"
    if img.shape[3] >= 7:  # a DWI read as tensors for want of a table: it cannot be fitted either
        return (f"{path}: shape {img.shape} is neither diffusion tensors (dwi2tensor's six volumes) nor a DWI with its "
                f"gradient table: {img.shape[3]} volumes and no dw_scheme in its header; if it is a DWI, add its table "
                f"with 'mrconvert {shell_word(path)} -fslgrad dwi.bvec dwi.bval {shell_word(mended_path(path))}' and "
                "give that, else give dwi2tensor's output")
    return (f"{path}: shape {img.shape} is not a diffusion tensor volume: an MRtrix tensor image holds six volumes "
            f"(dwi2tensor's Dxx,Dyy,Dzz,Dxy,Dxz,Dyz), this one {img.shape[3]}; give dwi2tensor's output, or fit tensors "
            "from the DWI with 'iqt fit dwi.mif -o dti.mif'")


def _wrapped_line(img, path, raw: np.ndarray | None) -> str | None:
    """The refusal of a NIfTI of an unsigned integer type, its stored values `raw` (_stored), whose tensors' negative
    elements wrapped when cast (tensor_checks.wrapped_cause); None otherwise."""
    if raw is None:
        return None
    slope = _slope(img)
    cause = tensor_checks.wrapped_cause(raw, img.get_data_dtype(), _intercept(img), step=1.0 if slope is None else slope)
    return None if cause is None else f"{path}: {cause}"


def _slope(img) -> float | None:
    """An integer NIfTI's scl_slope as nibabel applies it (1 where it has none); None for a float file or one whose
    slope is 0 or not finite."""
    slope = getattr(img.dataobj, "slope", None)
    if img.get_data_dtype().kind not in "iu" or slope is None or not np.isfinite(slope) or slope == 0:
        return None
    return abs(float(slope))


def load_tensor(path, order: str = "nifti", stated: bool | None = None) -> Volume:
    """Tensor volume from NIfTI (5D SYMMATRIX, or 4D 6-volume in `order` "fsl", "mrtrix" or "dipy") or Slicer NRRD.
    `stated`: whether the user gave `order` (--tensor-order): a 5D file whose frame only that can tell is refused where
    it was not, read as `order` where it was, and read in voxel axes with a warning where unknown (None; `_check_frame`)."""
    if is_nrrd(path):
        from .nrrd import load_tensor_nrrd

        if order != "nifti":  # refused, not ignored
            raise IQTError(f"{path}: a Slicer NRRD holds its own element order and measurement frame; leave "
                           f"--tensor-order {order} out")
        vol = load_tensor_nrrd(path)
        remember_codes(vol.affine, (1, 1))  # a NRRD's space is its scanner's
        return vol
    if order not in tensors.ORDERS:
        raise IQTError(f"unknown tensor order {order!r}; use one of {', '.join(tensors.ORDERS)}")
    img = load_nifti(path, "a .nii or .nii.gz file, or a Slicer .nrrd")  # the formats a tensor volume is read from
    shape = img.shape
    if is_mif(path) and order == "nifti":  # an MRtrix image of six volumes is dwi2tensor's
        order = "mrtrix"
    if order == "nifti" and not stated:  # a --tensor-order nifti given is read so, whatever the header records
        order = _recorded_order(img, path)
    # a 7- or 9-volume file's values are read once: the DWI check and the seven-volume line both look at them
    values = read_data(img, path) if len(shape) == 4 and shape[3] in (7, 9) else None
    if (mif := _mif_lines(img, path)) is not None:
        raise IQTError(mif)
    if len(shape) == 5 and shape[3] == 1 and shape[4] == 6:
        if order not in ("nifti", "dipy"):  # else reordered, then refused as "not positive definite"
            raise IQTError(f"{path}: a 5D NIfTI SYMMATRIX file has the element order its format fixes; --tensor-order "
                           f"{order} is for 4D six-volume files: leave it out (or give dipy for dipy_fit_dti's file)")
        data = read_data(img, path, np.float64)[:, :, :, 0, :]
        if (wrapped := _wrapped_line(img, path, raw := _stored(img))) is not None:
            raise IQTError(wrapped)
        file_order = order
        _check_frame(img, path, order, stated)
    elif len(shape) == 4 and shape[3] == 6:
        data, raw = read_data(img, path, np.float64), _stored(img)
        if (repeated := _repeated_line(data, path)) is not None:
            raise IQTError(repeated)
        if not all(p.is_file() for p in bval_bvec_paths(path)) and (wrapped := _wrapped_line(img, path, raw)) is not None:
            raise IQTError(wrapped)  # a .bval and .bvec beside it tell a DWI series (_dwi_series_line)
        dwi = _dwi_series_line(img, path, data, raw)
        if dwi is not None:
            raise IQTError(dwi)
        if order == "nifti":
            said = ("--tensor-order nifti is for 5D SYMMATRIX files (X,Y,Z,1,6); " if stated else "")
            raise IQTError(
                f"{path}: {said}a 4D 6-volume tensor file has no standard component order; say which with --tensor-order fsl "
                f"(Dxx,Dxy,Dxz,Dyy,Dyz,Dzz, as dtifit writes), --tensor-order mrtrix (Dxx,Dyy,Dzz,Dxy,Dxz,Dyz, dwi2tensor) "
                f"or --tensor-order dipy (Dxx,Dxy,Dyy,Dxz,Dyz,Dzz, dipy's lower_triangular)"
            )
        file_order = order
    elif (dwi := _dwi_series_line(img, path, values)) is not None:  # other DWI volume counts, before their layouts' lines
        raise IQTError(dwi)
    elif len(shape) == 5 and tuple(shape[3:]) == (3, 3):  # dipy's quadratic_form saved as it is
        raise IQTError(f"{path}: shape {shape} holds full 3x3 matrices (as dipy's fit.quadratic_form); save the six "
                       "elements instead, e.g. nib.save(nib.Nifti1Image(fit.lower_triangular()[..., None, :], affine), "
                       "'dti.nii.gz'), and read that file with --tensor-order dipy")
    elif len(shape) == 3 or (len(shape) == 4 and shape[3] in (1, 3)):  # FSL dtifit's other outputs
        what = "three volumes (a vector map, as dtifit's dti_V1)" if len(shape) == 4 and shape[3] == 3 else \
            "a scalar map (as dtifit's dti_L1, dti_FA or dti_MD)"
        raise IQTError(f"{path}: shape {shape} is not a diffusion tensor volume but {what}; give the six-element "
                       "tensor file: FSL's dtifit writes it with --save_tensor (dti_tensor.nii.gz, read with "
                       "--tensor-order fsl), MRtrix's dwi2tensor by default (--tensor-order mrtrix); or fit one from "
                       "the DWI with 'iqt fit'")
    elif len(shape) == 4 and shape[3] == 9:
        raise IQTError(f"{path}: shape {shape} is not a diffusion tensor volume as it is: full 3x3 matrices in nine "
                       "volumes; keep the six distinct elements (volumes 0,1,2,4,5,8 of a row-major matrix: "
                       "xx,xy,xz,yy,yz,zz), e.g. nib.save(nib.Nifti1Image(img.get_fdata()[..., [0, 1, 2, 4, 5, 8]], "
                       "img.affine), 'dti6.nii.gz'), and read that file with --tensor-order fsl")
    elif len(shape) == 4 and shape[3] == 7 and np.nanmin(values) < 0:  # dipy's lower_triangular(b0=...)
        # saved as it is (its off-diagonal elements and -log(S0) negative), not a DWI of a b0 and six directions
        raise IQTError(f"{path}: shape {shape} holds seven volumes, as dipy's fit.lower_triangular(b0=S0) writes them "
                       "(the six elements Dxx,Dxy,Dyy,Dxz,Dyz,Dzz, then -log(S0)); keep the first six, e.g. "
                       "nib.save(nib.Nifti1Image(img.get_fdata()[..., :6], img.affine), 'dti6.nii.gz'), and read that "
                       "file with --tensor-order dipy")
    elif len(shape) == 5 and tuple(shape[3:]) == (6, 1):  # the six elements on the fourth axis, not the fifth
        raise IQTError(f"{path}: shape {shape} holds the six elements on the fourth axis; a NIfTI SYMMATRIX file holds "
                       "them on the fifth, (X,Y,Z,1,6): save it so, e.g. nib.save(nib.Nifti1Image(img.get_fdata()"
                       ".transpose(0, 1, 2, 4, 3), img.affine), 'dti5d.nii.gz'), or as a 4D six-volume file read with "
                       "--tensor-order")
    else:
        raise IQTError(
            f"{path}: shape {shape} is not a diffusion tensor volume; expected 5D (X,Y,Z,1,6) NIfTI SYMMATRIX "
            f"(as 'iqt fit' and ANTs write it; dipy's, in FSL's bvec frame, with --tensor-order dipy) or 4D (X,Y,Z,6) with "
            f"--tensor-order; fit tensors from DWIs with 'iqt fit'"
        )
    data = tensor_checks.nan_as_empty(data, f"{path}: ")  # a NaN background (all six elements) is an empty one
    check_finite(data, path, "tensor data")
    data = tensors.from_order(data, file_order)
    frame = file_frame(file_order, img.affine)
    if frame is not None:
        data = tensors.rotate(data, frame)
    meta = {"path": str(path), "order": file_order, "five_d": len(shape) == 5}
    # one stored step in mm^2/s: an int16 background's jitter (methods/inputs.py); nibabel keeps a loaded file's
    # scl_slope on its array proxy (the header's reads None), and an unscaled integer file's step is 1
    slope = getattr(img.dataobj, "slope", None)
    if _slope(img) is not None:
        meta["step"] = _slope(img)  # said against the brain where it is known (methods/inputs.py)
        dtype = img.get_data_dtype()  # its stored values read once (_stored) for the wrap, DWI and these checks
        tensor_checks.warn_saturated(raw, dtype, float(slope), _intercept(img), f"{path}: ")
        if dtype.kind == "u" and (wrapped := tensor_checks.wrapped_count(raw, dtype, _intercept(img))):
            meta["wrapped"] = wrapped  # said where the checks refuse a cast (tensor_checks.integer_cause)
    made = made_at(img)
    if made is not None:
        meta["made_by"], meta["made_at"] = made
    support = support_of(img, data)
    if support is not None:
        meta["support"] = support
    remember_codes(img.affine, header_codes(img))
    slices.warn_if_gapped(path, img.affine, slices.from_sidecar(path, img.affine)
                          or slices.from_record(run_record_of(path), img.affine))
    return Volume(data.astype(np.float32), img.affine, "tensor", meta=meta)


def recorded_file_order(path) -> str | None:
    """The order this tool recorded in a tensor file's header (as `load_tensor` reads it without --tensor-order), from
    the header alone; None for a NRRD, an unreadable file or one without the record."""
    if is_nrrd(path):
        return None
    try:
        img = load_nifti(path)
    except IQTError:
        return None
    return _order_it_records(img)


def _order_it_records(img) -> str | None:
    """The order this tool recorded in a NIfTI's header where its layout takes it: a 4D six-volume file's (fsl, mrtrix,
    dipy), or dipy_fit_dti's 5D layout; None otherwise."""
    recorded, shape = recorded_order(_descrip(img)), img.shape
    return recorded if recorded and ((len(shape) == 4 and shape[3] == 6) or (len(shape) == 5 and recorded == "dipy")) \
        else None


def _recorded_order(img, path) -> str:
    """The order to read a file given without --tensor-order: the one this tool recorded in its header when it wrote
    the file in another tool's order (records.made_by: a 4D fsl, mrtrix or dipy file, or dipy_fit_dti's 5D layout),
    said in one line; "nifti" for any other file (a 4D one is then refused, asking for --tensor-order). A wrong
    --tensor-order given is read as given, and refused by the tensor checks as before."""
    recorded = _order_it_records(img)
    if recorded is None:
        return "nifti"
    warnings.warn(_("{file}: read as --tensor-order {order}, the order its header records ('{header}'); give "
                    "--tensor-order to read it otherwise").format(file=path, order=recorded, header=_descrip(img)),
                  IQTWarning, stacklevel=3)
    return recorded


def order_shares(vol: Volume, where: np.ndarray | None = None) -> dict[str, float]:
    """For a tensor volume read from a 4D file in some --tensor-order: the share of its tensors (in `where`) that would
    be positive definite read in each order, so that a refusal can name the order that reads it; empty for volumes not
    read from a tensor file. A 5D file's elements are read as a 4D file's in each order too: one saved in dtifit's order
    reads as fsl (which a 5D file cannot be given: order_hint says to save it as 4D)."""
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


def _check_frame(img, path, order: str, stated: bool | None) -> None:
    """A 5D tensor file's frame where the grid's affine keeps the axes' handedness: there dipy's files (dipy_fit_dti's
    default output, components in FSL's bvec frame) differ from voxel-axis ones (ANTs, 'iqt fit') by an x flip that no
    check on the tensors can see (fibres mirrored, FA and MD unchanged; on the usual negative-determinant grid the two
    frames agree). A file this tool wrote (OWN_INTENT) is in voxel axes: read as dipy's, refused. Another read as
    "nifti" is refused unless the user said so (`stated`; None: read in voxel axes, with a warning): dipy_fit_dti's
    file on an LPS+ or RAS+ grid had come out mirrored, a median 41-49 degrees off, with a warning only (an audit)."""
    if np.linalg.det(np.asarray(img.affine, float)[:3, :3]) <= 0:
        return
    name = img.header.get_intent()[2] if hasattr(img.header, "get_intent") else ""
    if name == OWN_INTENT:
        if order == "dipy":
            raise IQTError(f"{path}: a 5D tensor file iqt wrote (intent name {OWN_INTENT}) holds its components in voxel "
                           "axes, not in dipy's frame (on this grid they differ by a left-right mirror of every fibre); "
                           "leave --tensor-order dipy out")
        return
    if order != "nifti" or stated:
        return
    said = ("a 5D tensor file on a grid whose affine has a positive determinant: its components are in voxel axes if "
            "ANTs or 'iqt fit' wrote it, in FSL's bvec frame if dipy did (dipy_fit_dti), and the two differ by a "
            "left-right mirror of every fibre that nothing in the file shows")
    if stated is None:
        warnings.warn(_("{file}: a 5D tensor file on a grid whose affine has a positive determinant: its components "
                        "are in voxel axes if ANTs or {iqt_fit} wrote it, in FSL's bvec frame if dipy did "
                        "({dipy_fit_dti}), and the two differ by a left-right mirror of every fibre that nothing in the "
                        "file shows; read in voxel axes: if dipy wrote it, read it with --tensor-order dipy").format(
            file=path, iqt_fit="'iqt fit'", dipy_fit_dti="dipy_fit_dti"), IQTWarning, stacklevel=3)
        return
    raise IQTError(f"{path}: {said}; say which: --tensor-order nifti (voxel axes) or --tensor-order dipy")


def as_read(vol: Volume) -> dict:
    """The `order` and `five_d` that write a tensor volume back as `load_tensor` read it (a dtifit file as dtifit's,
    dipy_fit_dti's 5D file as a 5D one; NRRD and this tool's own 5D files as 5D SYMMATRIX)."""
    order = vol.meta.get("order", "nifti")
    return {"order": order, "five_d": order == "nifti" or bool(vol.meta.get("five_d"))}


def write_order(read: dict, asked: str = "input") -> dict:
    """`save_tensor`'s order and layout for an output asked in `asked`: "input" writes it as `read` (as_read's answer);
    "dipy" dipy_fit_dti's 5D file unless a 4D dipy file was read; "nifti" this tool's 5D; fsl and mrtrix their tools' 4D
    files."""
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
    """Before any work: a tensor output on the grid of `grid_of` (an affine, or a NIfTI or NRRD file whose header gives
    it) can be written at `path` (a Slicer NRRD needs a grid whose voxel axes are at right angles). A file whose header
    cannot be read is refused here, in its reader's line: the check had been skipped for any such file, a NRRD
    included, and a sheared grid then refused only at the write, after the work."""
    if is_mif(path):
        from ..core.orientation import is_sheared

        affine = grid_of if not isinstance(grid_of, (str, Path)) else None
        if affine is None and not is_nrrd(grid_of):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                affine = load_nifti(grid_of).affine
        if affine is not None and is_sheared(affine):
            raise IQTError(f"{path}: the input's grid is sheared (its voxel axes are not at right angles), which an "
                           "MRtrix image cannot hold; write a .nii.gz instead")
        return
    if not is_nrrd(path):
        return
    from .nrrd import check_grid, header_affine

    if isinstance(grid_of, (str, Path)):
        if is_nrrd(grid_of):
            grid_of = header_affine(grid_of)
        else:
            with warnings.catch_warnings():  # said once, where the file is read
                warnings.simplefilter("ignore")
                grid_of = load_nifti(grid_of).affine  # the header only (nibabel reads the data lazily)
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
    if is_nrrd(path):
        from .nrrd import save_tensor_nrrd

        return save_tensor_nrrd(vol, path)
    if is_mif(path):  # dwi2tensor's order and frame, whatever `order` says: MRtrix reads no other
        data = tensors.to_order(in_file_frame(vol.data, "mrtrix", vol.affine), "mrtrix")
        return atomic_write(path, lambda tmp: write_mif(tmp, data, vol.affine, _mif_record()))

    def write(tmp):
        if order == "nifti":
            img = nibabel_lib().Nifti1Image(vol.data[:, :, :, None, :].astype(np.float32), vol.affine)
            img.header.set_intent("symmetric matrix", (3,), name=OWN_INTENT)  # p1: N, as nifti1.h asks
        else:
            data = tensors.to_order(in_file_frame(vol.data, order, vol.affine), order)
            img = nibabel_lib().Nifti1Image((data[:, :, :, None, :] if five_d else data).astype(np.float32), vol.affine)
            if five_d:  # as dipy_fit_dti writes it (dipy.io.utils.nifti1_symmat); not this tool's intent name
                img.header.set_intent("symmetric matrix", (3,))
        img.header.set_xyzt_units("mm")
        descrip = made_by(vol.meta, vol.affine, order)  # another tool's order recorded: read back without --tensor-order
        if descrip:
            img.header["descrip"] = descrip.encode("ascii")
        add_support_record(img, vol.meta, vol.data)  # an output kept to an estimated brain: `iqt track` reads it
        set_orientation(img, vol.affine)
        save_nifti(img, tmp)

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
    """A 3D map, NIfTI or NRRD, the one reader of maps (`iqt evaluate`, the Slicer module's worker): its values finite;
    meta["descrip"]: the record its header holds (records.map_record), "" for none; a NRRD's meta["module_fields"]:
    the Slicer module's map fields of a map saved from Slicer (fileio/nrrd.py MAP_FIELDS)."""
    if is_nrrd(path):  # as `save_scalar` writes it (fileio/nrrd.py save_scalar_nrrd), or Slicer saves a map node
        from .nrrd import module_fields, read_scalar_nrrd, scalar_record

        data, affine, hdr = read_scalar_nrrd(path, "map")
        data = np.asarray(data, np.float32)
        check_finite(data, path, "image")
        return Volume(data, affine, "scalar", meta={"path": str(path), "descrip": scalar_record(hdr),
                                                    "module_fields": module_fields(hdr)})
    img = load_nifti(path)
    data = read_data(img, path)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    check_finite(data, path, "image")
    return Volume(data, img.affine, "scalar", meta={"path": str(path), "descrip": _descrip(img)})


def load_mask(path, reference: Volume | None = None, factor=None, seeds: bool = False,
              reference_name: str = "the input's grid") -> Volume:
    """Binary mask (>0). With `reference`, it must be on that grid (or on its high-res grid for `factor`, an integer
    or per-axis factors); `reference_name` is how the refusals name that grid. `seeds`: a tractography seed ROI, whose
    refusals say so."""
    vol, said = _read_mask(path, seeds)
    vol = vol if reference is None else mask_on_grid(vol, path, reference, factor, reference_name)
    _say(said)
    return vol


def _read_mask(path, seeds: bool = False) -> tuple[Volume, list[str]]:
    """`load_mask`'s mask, and the warnings it gives, said only once it is found on its grid: a mask refused for its
    grid is then refused in one line (a bad-input audit: a fractional mask on another grid had two)."""
    if is_nrrd(path):  # a Slicer label map, saved beside its tensor NRRD
        from .nrrd import load_scalar_nrrd

        data, affine = load_scalar_nrrd(path)
    else:
        img = load_nifti(path, "a NIfTI (.nii or .nii.gz) file or a Slicer .nrrd label map")
        data, affine = read_data(img, path), img.affine
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise IQTError(f"{path}: shape {data.shape} is not a 3D mask; give a 3D binary image")
    values = np.nan_to_num(data.astype(np.float32))
    mask = values > 0
    if not mask.any():
        raise IQTError(f"{path}: the seed ROI is empty (no voxel > 0); give an ROI with at least one voxel" if seeds else
                       f"{path}: the mask is empty (no voxel > 0); give a brain mask, for example from 'iqt mask'")
    said = []
    if np.any(values[mask] != np.round(values[mask])):  # labels 1, 2, ... are a mask; an FA or probability map is not
        what, taken = ("seed ROI", "a seed") if seeds else ("mask", "brain")
        said.append(f"{path}: the {what} holds fractional values (an FA or probability map?); every voxel > 0 is taken "
                    f"as {taken} ({mask.sum()} voxels, {100 * mask.mean():.3g} % of the grid): threshold it first if "
                    "that is not meant")
    elif seeds and len(labels := np.unique(values[mask])) > 1:  # a label map's regions would be merged unseen
        said.append(f"{path}: the seed ROI holds labels {', '.join(f'{v:g}' for v in labels)}; they are seeded as one "
                    "region: give one label's mask (e.g. fslmaths ROI -thr N -uthr N -bin) to track from it alone")
    return Volume(mask, affine, "mask", meta={"path": str(path)}), said


def _say(said: list[str]) -> None:
    """`_read_mask`'s warnings, as the caller of `load_mask` gives them."""
    for line in said:
        warnings.warn(line, IQTWarning, stacklevel=3)


def mask_on_grid(vol: Volume, path, reference: Volume, factor=None, reference_name: str = "the input's grid") -> Volume:
    """`load_mask`'s mask `vol` on `reference`'s grid (or on its high-res grid for `factor`), re-indexed where it is the
    same voxels stored in another axis order; an IQTError naming the grids otherwise."""
    from ..core.grid import affine_tolerance, factors, hr_affine, same_affine

    grids = {reference.shape3: (reference_name, reference.affine)}
    if factor:
        f = factors(factor, identity_ok=True)
        grids[tuple(k * s for k, s in zip(f, reference.shape3))] = ("the high-resolution grid",
                                                                     hr_affine(reference.affine, f))
    from ..core.orientation import onto_grid

    for shape, (_name, affine) in grids.items():  # the same voxels stored in another axis order or direction
        if vol.shape3 != shape or not same_affine(vol.affine, affine):
            moved = onto_grid(vol.data, vol.affine, shape, affine)
            if moved is not None:
                vol = Volume(moved, affine, "mask", meta=vol.meta)
                break
    if vol.shape3 not in grids:
        raise IQTError(
            f"{path}: mask shape {vol.shape3} {'matches neither' if len(grids) > 1 else 'differs from'} "
            f"{' nor '.join(f'{name} {shape}' for shape, (name, _) in grids.items())}; give a mask on {reference_name}"
        )
    name, affine = grids[vol.shape3]
    if not same_affine(vol.affine, affine):
        apart = float(np.abs(np.asarray(vol.affine, float) - np.asarray(affine, float))[:3].max())
        allowed = affine_tolerance(affine)
        raise IQTError(f"{path}: the mask has the shape of {name} but another position or orientation (affine; entries "
                       f"up to {apart:.3g} mm apart, where {allowed:.2g} mm, a header's rounding, passes); "
                       + ("give a mask made on this input's grid (e.g. 'iqt mask' or 'iqt degrade --mask-out')"
                          if factor or reference_name == "the input's grid" else f"give a mask made on {reference_name}"))
    return vol


def load_mask_refined(path, reference: Volume, reference_name: str) -> Volume:
    """A mask on `reference`'s grid, or on a grid it refines by whole factors per axis (the low-res input an upsampled
    result was made from: `iqt upsample` writes no high-res mask), each of its voxels repeated over its block."""
    from ..core.grid import hr_affine, repeat_blocks, same_affine

    vol, said = _read_mask(path)
    try:
        vol = mask_on_grid(vol, path, reference, reference_name=reference_name)
        _say(said)
        return vol
    except IQTError as exc:
        from ..core.orientation import Reorientation

        # stored in another voxel order than the reference (as `iqt upsample --mask` takes it): put in the reference's
        # first (a tractography audit: the low-res mask stored PSR had been refused as "not on the low-res grid")
        vol = Reorientation.to_canonical(vol.affine).then(Reorientation.to_canonical(reference.affine).inverse()).apply(vol)
        f = tuple(r // m if m and r % m == 0 else 0 for r, m in zip(reference.shape3, vol.shape3))
        if min(f) < 1 or max(f) == 1 or not same_affine(hr_affine(vol.affine, f), reference.affine):
            raise IQTError(f"{exc} (or on the low-res grid it was upsampled from)") from None
        _say(said)
        return Volume(repeat_blocks(np.asarray(vol.data), f), reference.affine, "mask", meta=vol.meta)


def save_scalar(vol: Volume, path, descrip: str = "") -> None:
    """A 3D map as NIfTI (float32, a mask as uint8), or by a .nrrd/.nhdr name as NRRD on the tensor NRRD's grid lines
    (fileio/nrrd.py save_scalar_nrrd); `descrip`: the header's description (records.map_record)."""
    if is_nrrd(path):
        from .nrrd import save_scalar_nrrd

        return save_scalar_nrrd(vol, path, descrip)
    if is_mif(path):
        data = vol.data.astype(np.uint8) if vol.data.dtype == bool else vol.data
        return atomic_write(path, lambda tmp: write_mif(tmp, data, vol.affine, _mif_record(descrip)))

    def write(tmp):
        data = vol.data.astype(np.uint8) if vol.data.dtype == bool else vol.data.astype(np.float32)
        img = nibabel_lib().Nifti1Image(data, vol.affine)
        img.header.set_xyzt_units("mm")
        if descrip:
            img.header["descrip"] = descrip.encode("ascii")
        set_orientation(img, vol.affine)
        save_nifti(img, tmp)

    atomic_write(path, write)


save_mask = save_scalar


def _mif_record(descrip: str = "") -> dict[str, list[str]]:
    """The header lines an MRtrix image written by an `iqt` command carries: its command (MRtrix's command_history),
    the run's record (one JSON line, as a NIfTI's comment extension holds it) and what a map holds."""
    from .records import RUN_KEY, run_command, run_input, run_json

    lines = {}
    command, record, source = run_command(), run_json(), run_input()
    try:  # the main input's own history where it is an MRtrix image (none under --no-record: run_input() is None)
        history = read_header(source).get("command_history", []) if source and is_mif(source) else []
    except IQTError:
        history = []
    history += [" ".join(str(command).split())] if command else []  # as MRtrix appends each command
    if history:
        lines["command_history"] = history
    if record:
        lines[RUN_KEY] = [record]
    if descrip:
        lines["comments"] = [descrip]
    return lines
