"""An output kept to a brain estimated from a whole-field fit (meta["support"], Method.predict) records so in its
header, a NIfTI comment extension or a NRRD field (fileio/records.py support_json), and reads back so: `iqt track`
says from it that the output reaches beyond the brain, where the brain told from the MD had also named masked fits."""

from __future__ import annotations

import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.volume import Volume


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_an_estimated_support_reads_back_and_no_other_tensor_gains_one(tmp_path, suffix):
    t = np.zeros((4, 5, 6, 6), np.float32)
    t[..., [0, 3, 5]] = 1e-3
    meta = {"method": "cubic", "factor": 2}
    for name, support in (("est", "estimated"), ("plain", None)):
        vol = Volume(t, np.diag([2.0, 2.0, 2.0, 1.0]), "tensor", meta={**meta, **({"support": support} if support else {})})
        fileio.save_tensor(vol, tmp_path / f"{name}{suffix}")
        assert fileio.load_tensor(tmp_path / f"{name}{suffix}").meta.get("support") == support, name
