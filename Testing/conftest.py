"""Shared fixtures: the real subjects in ../shared/data/dmri (skipped with a reason where absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = (REPO / ".." / "shared" / "data" / "dmri").resolve()
DEV = DATA / "dev"
TRAIN = DATA / "train"
SAGITTAL = DEV / "siemens_prisma_sag_2p7mm_ap"
AXIAL = DEV / "siemens_prisma_3mm_ortho"


def need_data(folder: Path) -> Path:
    if not (folder / "dwi.nii.gz").exists():
        pytest.skip(f"real DWI data not found at {folder} (the shared data folder ../shared/data/dmri is absent)")
    return folder


@pytest.fixture(scope="session")
def sagittal_subject():
    from ImageQualityTransferLib.dmri.subject import load_subject

    return load_subject(need_data(SAGITTAL))


@pytest.fixture(scope="session")
def axial_subject():
    from ImageQualityTransferLib.dmri.subject import load_subject

    return load_subject(need_data(AXIAL))
