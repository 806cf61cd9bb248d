"""Output paths: known suffixes, checks made before any work, and atomic writes (a temporary file renamed
into place, so a failure never leaves a partial output)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..core.errors import IQTError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
TENSOR_SUFFIXES = NIFTI_SUFFIXES + NRRD_SUFFIXES


def check_output(path, suffixes=NIFTI_SUFFIXES, what="output") -> Path:
    """An output path whose name ends in one of `suffixes` and whose folder exists, checked before any work."""
    p = Path(path)
    if not str(p).lower().endswith(tuple(suffixes)):
        raise IQTError(f"{p}: the {what} name must end in {' or '.join(suffixes)}")
    if not p.parent.exists():
        raise IQTError(f"{p}: the folder {p.parent} does not exist; create it or choose another output path")
    return p


def atomic_write(path, write_fn) -> None:
    """Call write_fn(tmp_path) then move tmp_path onto path; nothing is left at path on failure."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise IQTError(f"{path}: the folder {path.parent} does not exist; create it or choose another output path")
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=".iqt-", suffix=suffix, dir=str(path.parent or "."))
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
