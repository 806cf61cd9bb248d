"""Forest training on subjects too small for the factors (a slab of a few slices, or factors as large as the grid)
ended in an internal error ("no complete patch to learn the completion from", or a failed reshape) where the CNNs'
training gives one line (researcher audit, stop 57)."""

from __future__ import annotations

import pytest

import helpers


@pytest.mark.parametrize("cut, factor", [(slice(12, 18), "1,1,3"), (slice(None), "10")])
def test_too_small_for_the_factors_is_one_line_and_no_model(tmp_path, capsys, monkeypatch, cut, factor):
    """A slab of six slices through the phantom's brain at 1,1,3; the whole phantom (32x36x28) at x10. Said from the
    grid's size before any block shift is degraded (x10 had degraded and fitted all 1000 shifts first, ~16 CPU s)."""
    from ImageQualityTransferLib.dmri.phantom import make_phantom
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.methods.forest import patches

    def degraded(*args, **kwargs):
        raise AssertionError("a block shift was degraded before the grid's size was read")

    monkeypatch.setattr(patches, "subject_examples", degraded)

    subject = tmp_path / "s"
    subject.mkdir()
    dwi = make_phantom(shape=(32, 36, 28), voxel_mm=4.0, n_dirs=12, seed=0)
    fileio.save_dwi(dwi.replace(data=dwi.data[:, :, cut]), subject / "dwi.nii.gz")
    helpers.refused_line(capsys, ["train", "--method", "global-linear", "--subjects", subject, "-o", tmp_path / "m.npz",
                                  "--factor", factor], "give subjects that cover the brain, or smaller factors")
    assert not (tmp_path / "m.npz").exists()
