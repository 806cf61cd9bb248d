"""The evaluation protocol on one subject: high-res fit and mask, synthetic low-res, the matching reference."""

from __future__ import annotations

import os

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import degrade as deg, randomise
from .. import fileio
from .dti import brain_mask, fit_dti
from ..core.errors import IQTError
from ..core.volume import Volume


@dataclass
class Subject:
    """A high-quality subject: DWI, brain mask and the reference tensor fit (not clipped)."""

    name: str
    dwi: Volume
    mask: Volume
    tensor: Volume

    @classmethod
    def from_dwi(cls, name: str, dwi: Volume, mask: Volume | None = None) -> "Subject":
        # the evaluation's regions keep the 3D-filled mask that every published figure was measured on
        # (docs/measurements.md, "Holes in the estimated brain mask")
        mask = mask if mask is not None else brain_mask(dwi, fill_slices=False)
        return cls(name, dwi, mask, fit_dti(dwi, mask))


def dwi_path(folder) -> Path:
    """The DWI file of a subject folder (dwi.nii.gz, else dwi.nii)."""
    folder = Path(folder)
    if (folder / "dwi.nii.gz").exists() and (folder / "dwi.nii").exists():  # else one would be taken unseen
        raise IQTError(f"{folder}: holds both dwi.nii.gz and dwi.nii, so which is the subject's DWI is unclear; keep one "
                       "of them in the folder")
    for name in ("dwi.nii.gz", "dwi.nii"):
        if (folder / name).exists():
            for grad in ("dwi.bval", "dwi.bvec"):  # said here: a subject folder takes no --bval/--bvec
                if not (folder / grad).exists():
                    raise IQTError(f"{folder}: no {grad} in this folder; a subject folder holds dwi.nii.gz, dwi.bval and "
                                   "dwi.bvec (FSL format)")
            return folder / name
    if folder.is_file():  # a DWI given where its folder was asked for: said so (audit)
        raise IQTError(f"{folder}: a file; give the subject's folder, which holds dwi.nii.gz, dwi.bval and dwi.bvec")
    if not folder.exists():  # it had been told "no dwi.nii.gz in this folder" (a display audit)
        raise IQTError(f"{folder}: no such folder; give a subject's folder, which holds dwi.nii.gz, dwi.bval and dwi.bvec")
    raise IQTError(f"{folder}: no dwi.nii.gz in this folder; a subject folder holds dwi.nii.gz, dwi.bval and dwi.bvec")


def load_subject(folder) -> Subject:
    """A folder with dwi.nii.gz, dwi.bval, dwi.bvec (the layout of ../shared/data/dmri)."""
    folder = Path(folder)
    return Subject.from_dwi(subject_name(folder), fileio.load_dwi(dwi_path(folder)))


def subject_name(folder) -> str:
    """A subject folder's name: "." and "sub/.." named as the folder they are, a link by its own name."""
    return Path(os.path.abspath(folder)).name


@dataclass(frozen=True)
class Coarsened:
    """A subject folder to be loaded as if acquired with `voxel_mm` voxels (dmri/resample.py), for training."""

    folder: str
    voxel_mm: float

    @property
    def name(self) -> str:
        return f"{subject_name(self.folder)}_at{self.voxel_mm:g}mm"

    def load(self) -> Subject:
        from .resample import coarsen

        dwi = coarsen(fileio.load_dwi(dwi_path(self.folder)), self.voxel_mm)
        return Subject.from_dwi(self.name, dwi)


def coarser_copies(folders, sizes) -> list:
    """`Coarsened` copies of each folder at each voxel size (mm) that is coarser than one of its axes by over 10 %
    (a subject already at that size adds nothing)."""
    out = []
    for folder in folders:
        vs = fileio.voxel_size(dwi_path(folder))
        out += [Coarsened(str(folder), float(mm)) for mm in sizes if (vs < 0.9 * float(mm)).any()]
    return out


def as_subject(item) -> Subject:
    """A training subject from a folder, a `Coarsened` copy or a `Subject` (returned as it is)."""
    if isinstance(item, Subject):
        return item
    if isinstance(item, Coarsened):
        return item.load()
    return load_subject(item)


def check_subject_table(item, subject: Subject) -> None:
    """`iqt fit`'s gradient-table check (dmri/gradcheck.py) on a subject read from its folder (`iqt train`, `benchmark`,
    `demo --subject`), on the fit its reading made (a tracking of its white matter, no second fit; 0.25-0.35 s of CPU
    on the dev subjects): one warning line where its bvec looks like another frame, which had trained on mirrored
    tensors without a word (an audit), and scored them unsaid; before it, `iqt fit`'s refusal of volumes out of the
    bval/bvec order and its line on a poorly conditioned table. A `Coarsened` copy or a `Subject` given is left out: a
    copy's folder is checked as itself."""
    if isinstance(item, (Subject, Coarsened)):
        return
    from .b0s import check_b0_order
    from .gradcheck import check_gradients
    from .outliers import say_poor_condition

    check_b0_order(subject.dwi, subject.mask)
    say_poor_condition(subject.dwi, stacklevel=3)
    check_gradients(subject.dwi, subject.mask, subject.tensor, str(fileio.bval_bvec_paths(dwi_path(item))[1]))


def phantom_subject() -> Subject:
    """The built-in phantom as a high-quality subject (its own brain mask): the demo's and report's default."""
    from .phantom import make_phantom

    dwi = make_phantom()
    mask = dwi.meta.get("brain_mask")
    mask_vol = None if mask is None else Volume(np.asarray(mask, bool), dwi.affine, "mask")
    return Subject.from_dwi("phantom", dwi, mask_vol)


@dataclass
class Case:
    """One low-res input and everything needed to score a method on it (high-res arrays cropped to the low-res grid)."""

    subject: str
    style: str
    factor: tuple  # (fx, fy, fz)
    shift: tuple
    lr: Volume  # low-res tensor (method input)
    lr_mask: Volume
    truth: np.ndarray  # high-res reference tensors, (fx*nx, fy*ny, fz*nz, 6)
    hr_mask: np.ndarray
    hr_affine: np.ndarray
    dwi: np.ndarray  # high-res DWI crop, for the reference noise floor
    bvals: np.ndarray
    bvecs: np.ndarray


def make_case(subject: Subject, r, shift=(0, 0, 0), style: str = "own", snr: float | None = None,
              seed: int = 0) -> Case:
    """The case for the factors r (an integer or (fx, fy, fz)) at `shift`, its low-res input made in `style` (degrade.STYLES): a style with its own
    file order goes through a file written and read in that order, as a user's would; `snr`: Rician noise added to the
    low-res DWIs before the fit, drawn from `seed` (randomise.added_noise)."""
    from ..core.grid import hr_affine

    pair = deg.degrade(subject.dwi, subject.mask.data, r, shift, style, noise=randomise.added_noise(snr, seed))
    lr = pair.tensor
    if style in deg.FILE_ORDER:
        with tempfile.TemporaryDirectory(prefix="iqt-style-") as tmp:
            path = Path(tmp) / "lr.nii.gz"
            fileio.save_tensor(lr, path, order=deg.FILE_ORDER[style])
            lr = fileio.load_tensor(path, order=deg.FILE_ORDER[style])
        # the file is deleted: the warnings about this input name no path (`iqt benchmark` names the subject and
        # style), where they had named the deleted temporary file
        lr = lr.replace(meta={k: v for k, v in lr.meta.items() if k != "path"})
    return Case(
        subject=subject.name,
        style=style,
        factor=pair.factor,
        shift=tuple(shift),
        lr=lr,
        lr_mask=pair.mask,
        truth=deg.hr_crop(subject.tensor.data, r, shift),
        hr_mask=deg.hr_crop(subject.mask.data, r, shift),
        hr_affine=hr_affine(pair.tensor.affine, r),
        dwi=deg.hr_crop(subject.dwi.data, r, shift),
        bvals=subject.dwi.bvals,
        bvecs=subject.dwi.bvecs,
    )


def refuse_copies(subjects, role: str = "subject") -> None:
    """Two subject folders whose DWI files are byte-identical (a subject copied under another name) are one subject
    counted twice, as the same folder given twice is (trained on, or averaged over, twice)."""
    from ..fileio.checksums import first_copy, sha256

    subjects = list(subjects)
    pair = first_copy([dwi_path(d) for d in subjects])
    if pair is not None:
        d, first = subjects[pair[0]], subjects[pair[1]]
        same = "is byte-identical to" if sha256(dwi_path(d)) == sha256(dwi_path(first)) else \
            "holds the bytes, decompressed, of"
        raise IQTError(f"{d}: its DWI ({dwi_path(d).name}) {same} that of {first}, so one subject "
                       f"would be counted twice; list each {role} once")
