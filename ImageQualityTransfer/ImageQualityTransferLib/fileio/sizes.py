"""The memory a command needs for the images it reads, judged from their headers before any data is read.

A 4.3 MB `.nii.gz` DWI whose header says 4.4 GB (a zero-filled volume compresses to almost nothing) reached 4.37 GB RSS
under `iqt fit` before failing under `ulimit -v`: the size an image takes in memory is in its header, and a command's
peak is a multiple of it. Each command that reads images checks them here after its output checks and before it reads
any data, by the rule of `core.memory.check_need` (the one rule `iqt upsample`'s check follows too): refused in one line
where the peak passes the memory this process may use, one warning line where it passes what the machine has available
now. `iqt upsample`, `propagate`, `view` and `report --input` judge their high-res grid instead (`Method.check_memory`,
from `input_shape3`). """

from __future__ import annotations

import math
from pathlib import Path

from ..core import memory

# A command's peak memory per byte of the images it reads (their voxels counted as float32, 4 bytes each, whatever
# their type on disk), on top of memory.PEAK_FIXED_BYTES (the modules loaded before the data). Measured as the slope of
# peak RSS (`/usr/bin/time -v`, `OMP_NUM_THREADS=1 iqt --threads 1 ...`) between the 3 mm dev scan
# siemens_prisma_3mm_ortho (72x72x36x21, 15.7 MB as float32) and the same scan tiled 2x2x2 (144x144x72x21, 125 MB):
# (RSS at 8x - RSS at 1x, in KiB as /usr/bin/time gives it) / (the 7x more bytes), every run exit 0
# (docs/measurements.md, Memory):
READ_PEAK = {
    # fit: 264,432 -> 820,504 kB (5.19x), the same with --exclude-outliers --mask-out (264,292 -> 820,500 kB)
    "fit": 5.5,
    # mask: 152,568 -> 308,116 kB (1.48x)
    "mask": 2.0,
    # degrade: 169,284 -> 361,280 kB at its defaults (1.83x); 271,408 -> 855,956 kB with --style unmasked --snr 20
    # --factor 1,1,2 (5.59x: every voxel fitted, noise drawn at full size)
    "degrade": 6.0,
    # evaluate (every input counted: --pred, --truth, --mask, --uncertainty, --direction, --dwi): --pred --truth --mask
    # 102,812 -> 263,644 kB (2.48x of their 13 values a voxel), + --uncertainty --direction 145,732 -> 263,444 kB
    # (1.58x of 15), + --dwi 189,160 -> 543,924 kB (1.98x of 36)
    "evaluate": 3.0,
    # track (tensors, --mask and --seeds counted; the streamlines have their own check): a 6x6x4 seed ROI,
    # 213,272 -> 335,080 kB (3.05x of 8 values a voxel)
    "track": 3.5,
    # benchmark (each subject on its own): --methods cubic,biqt 263,796 -> 812,816 kB (5.24x: the reference fit's);
    # --methods espcn-hetero-var1 --tracts 487,128 -> 983,520 kB (4.74x)
    "benchmark": 6.0,
    # lesion-check --kinds edema (its default methods espcn-hetero-var1,biqt): 508,304 -> 1,139,852 kB (6.04x)
    "lesion-check": 7.0,
    # demo --subject --methods cubic,biqt: 289,628 -> 813,096 kB (5.01x)
    "demo": 6.0,
    # report --subject --methods cubic,biqt (tracts drawn): 700,672 -> 1,171,496 kB (4.50x)
    "report": 6.0,
}


def header_shape(path) -> tuple[int, ...] | None:
    """The array shape an image's header gives (NIfTI: nibabel reads only the header; NRRD: its 'sizes'), without
    reading the data; None where there is no regular file or its header cannot be read (the reader says why)."""
    from .nifti import is_nrrd
    from .paths import not_a_file

    try:
        p = Path(path)
        if not p.is_file() or not_a_file(p) is not None:  # a FIFO would be waited on: the full read refuses it
            return None
        if is_nrrd(p):
            import nrrd

            with open(p, "rb") as fh:
                sizes = nrrd.read_header(fh)["sizes"]
            return tuple(int(n) for n in sizes)
        from .nifti import open_nifti

        return tuple(int(n) for n in open_nifti(p).shape)
    except Exception:  # noqa: BLE001 - any unreadable header: left to the reader's own messages
        return None


def _dims(shape) -> str:
    return "x".join(str(n) for n in shape)


def read_need(command: str, images, multiple: float | None = None, kept: float | None = None) -> float | None:
    """The peak bytes `check_inputs` judges a run of `iqt command` on `images` by; None where no header can be read
    (`iqt batch` checks a DWI subject's fit by it before its cluster starts)."""
    return _sized_need(command, images, multiple, kept)[1]


def _sized_need(command, images, multiple, kept):
    multiple = READ_PEAK[command] if multiple is None else multiple
    sized = [(Path(p), shape) for p in images if p is not None for shape in [header_shape(p)] if shape is not None]
    if not sized:
        return sized, None
    counts = [math.prod(shape) for _, shape in sized]
    need = sum(counts) * 4 * multiple + memory.PEAK_FIXED_BYTES
    if kept is not None and Path(images[0]) == sized[0][0]:  # read whole, then only its kept volumes worked on
        need -= counts[0] * 4 * (multiple - 1.0) * (1.0 - min(max(kept, 0.0), 1.0))
    return sized, need


def check_inputs(command: str, images, multiple: float | None = None,
                 fix: str = "crop it (fewer slices or volumes, e.g. with fslroi) or run on a machine with more "
                            "memory", kept: float | None = None) -> None:
    """Refuse (one line) a run of `iqt command` whose images, `images` (paths; None skipped), would take it past the
    memory this process may use at its peak: READ_PEAK[command] (or `multiple`) times their voxels as float32, and
    memory.PEAK_FIXED_BYTES; warn where that passes what the machine has available now (memory.check_need). `kept`: the
    share of the first image's volumes the command works on once it is read (a DWI under --bmax): that
    image counts once whole, as read, and the multiple's rest on that share only. Images whose header cannot be read
    are left to their reader."""
    sized, need = _sized_need(command, images, multiple, kept)
    if not sized:
        return
    counts = [math.prod(shape) for _, shape in sized]
    total = sum(counts) * 4
    big, shape = sized[counts.index(max(counts))]
    alone = max(counts) * 4
    rest = "the other image" if len(sized) == 2 else f"the other {len(sized) - 1} images"
    others = f"; {memory.gib(total)} GiB with {rest} it reads" if len(sized) > 1 else ""
    said = f"{big}: its header says {_dims(shape)} voxels ({memory.gib(alone)} GiB as float32{others})"
    memory.check_need(
        need,
        lambda limit: (f"{said}, and 'iqt {command}' needs about {memory.gib(need, limit)} GiB at its peak to run on "
                       f"it, more than this process's {memory.gib(limit, need)} GiB of memory; {fix}"),
        lambda available: f"'iqt {command}' on {big} ({_dims(shape)} voxels) needs about {memory.gib(need, available)} GiB",
        key=(command, str(big), round(need)))


def check_subjects(command: str, folders, multiple: float | None = None) -> None:
    """`check_inputs` of each subject folder's DWI on its own (the subjects are run one after the other): its
    dwi.nii.gz or dwi.nii, as dmri.subject.dwi_path finds it; a folder without one is left to the reader's message."""
    for folder in folders or ():
        if folder is None:
            continue
        dwi = [p for p in (Path(folder) / "dwi.nii.gz", Path(folder) / "dwi.nii") if p.is_file()]
        check_inputs(command, dwi, multiple, fix="crop its DWI (fewer slices or volumes, e.g. with fslroi) or run on a "
                                                 "machine with more memory")


def header_affine(path):
    """The voxel-to-world affine (mm) an image's reader would give, from its header alone (NIfTI: nibabel's affine, in
    mm where the header's unit is metre or micron; NRRD: its space axes), for choosing factors before any data is read
    (`iqt batch --voxel-size`); None where there is no regular file or its header cannot be read (the reader says why)."""
    import warnings

    import numpy as np

    from .nifti import _in_mm, is_nrrd, open_nifti
    from .paths import not_a_file

    try:
        p = Path(path)
        if not p.is_file() or not_a_file(p) is not None:
            return None
        with warnings.catch_warnings():  # the reader says it again, once, when it reads the file
            warnings.simplefilter("ignore")
            if is_nrrd(p):  # a tensor NRRD only, as its reader takes
                from .nrrd import header_affine as nrrd_header_affine

                affine = nrrd_header_affine(p, tensor=True)
            else:
                affine = np.asarray(_in_mm(open_nifti(p), p).affine, float)
        from ..core.volume import affine_problem

        return None if affine_problem(affine) else affine  # one its reader refuses: left to the reader's line
    except Exception:  # noqa: BLE001 - any unreadable header: left to the reader's own messages
        return None
