"""`iqt upsample` of another tool's 4D tensors (--tensor-order fsl, mrtrix, dipy) checks their frame with `iqt fit`'s
gradient-table check on the tensors (methods/inputs.py check_frame): a dtifit fit given bvecs not flipped for a
neurological-storage DWI, or an MRtrix scanner-frame fit reordered to FSL's, mirrors every fibre (a median V1 error of
46.6 degrees against the own-way result on a dev scan) and had run without a word (a tool-inputs audit). One warning
line; the output is still written; --no-frame-check skips it."""

from __future__ import annotations

import numpy as np

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.volume import Volume
from helpers import run_cli


def _ring_of_fibres(mirrored: bool = False, slices: int = 16) -> Volume:
    """Fibres running round the z axis in a ring (FA 0.7) inside a cylinder of isotropic tissue, on an LAS grid as
    dtifit's inputs are; `mirrored`: their directions with x negated, as a fit with x-unflipped bvecs leaves them."""
    n = 32
    x, y = np.mgrid[:n, :n] - (n - 1) / 2
    r = np.hypot(x, y)
    e = np.stack([-y, x, np.zeros_like(x)], -1) / np.maximum(r, 1e-6)[..., None]
    if mirrored:
        e[..., 0] *= -1
    ring = (r > 5) & (r < 13)
    d = np.where(ring[..., None, None], 0.3e-3 * np.eye(3) + 1.4e-3 * e[..., :, None] * e[..., None, :],
                 0.8e-3 * np.eye(3))
    t = np.where((r < 14.5)[..., None], tensors.from_matrix(d), 0.0)
    t = np.repeat(t[:, :, None], slices, axis=2)
    return Volume(t.astype(np.float32), np.diag([-2.0, 2.0, 2.0, 1.0]), "tensor")


def test_a_mirrored_frame_is_said_in_one_line_and_the_output_still_written(tmp_path, capsys):
    for name, mirrored in (("good", False), ("bad", True)):
        fileio.save_tensor(_ring_of_fibres(mirrored), tmp_path / f"{name}.nii.gz", order="fsl")
    up = ["upsample", "--tensor-order", "fsl", "--method", "cubic"]
    code, out, err = run_cli(capsys, *up, tmp_path / "good.nii.gz", "-o", tmp_path / "g.nii.gz")
    assert code == 0 and "mirrored" not in err, err
    code, out, err = run_cli(capsys, *up, tmp_path / "bad.nii.gz", "-o", tmp_path / "b.nii.gz")
    said = [line for line in err.splitlines() if "mirrored" in line]
    assert code == 0 and (tmp_path / "b.nii.gz").is_file() and len(said) == 1, err
    assert "bad.nii.gz: the tensors' directions look mirrored" in said[0] and "x components look negated" in said[0]
    assert "--no-frame-check" in said[0]
    code, out, err = run_cli(capsys, *up, "--no-frame-check", tmp_path / "bad.nii.gz", "-o", tmp_path / "n.nii.gz")
    assert code == 0 and "mirrored" not in err, err


def test_a_slab_is_not_judged(monkeypatch):
    """Tracks leave a slab through its faces: on clean axial slabs of the real subjects' fits, 4-12 slices thick, 56 of
    732 had been named a wrong frame (a review); a brain under FRAME_MIN_EXTENT voxels along an axis is not judged."""
    from ImageQualityTransferLib.dmri import gradcheck
    from ImageQualityTransferLib.methods import inputs

    monkeypatch.setattr(gradcheck, "gradient_scores", lambda *a, **k: (_ for _ in ()).throw(AssertionError("judged")))
    assert inputs.check_frame(_ring_of_fibres(True, slices=inputs.FRAME_MIN_EXTENT - 1), "fsl") is None
