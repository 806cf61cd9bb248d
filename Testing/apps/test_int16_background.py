"""A tensor file stored as int16 (a scale and an intercept: its background comes back as tensors of a few 1e-8 mm^2/s,
not zero) reads as the float file does in `iqt evaluate` and `iqt track`, as it does in `iqt upsample`
(methods/inputs.py, without_tiny_background): a tool-inputs audit measured a perfect prediction at an exterior FA RMSE
of 0.46 against such a reference, and streamlines running up to 30 mm into its background."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.fileio.tracts import load_tracts

from helpers import changed_copy, masked_phantom_fit, run_cli


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(float32 file, int16 file, the fit's mask) of one masked phantom fit."""
    d = tmp_path_factory.mktemp("int16")
    mask = masked_phantom_fit(d, "f32.nii.gz")
    img = nib.load(d / "f32.nii.gz")
    small = nib.Nifti1Image(np.asarray(img.dataobj, np.float32), img.affine, img.header)
    small.set_data_dtype(np.int16)
    nib.save(small, d / "i16.nii.gz")
    back = nib.load(d / "i16.nii.gz")
    assert back.get_data_dtype() == np.int16
    outside = ~np.asarray(mask.data, bool)
    assert np.all(np.asarray(back.dataobj)[outside] != 0)  # the intercept: not zero where the fit was
    return d / "f32.nii.gz", d / "i16.nii.gz", mask


def test_evaluate_reads_an_int16_reference_s_background_as_none(pair, tmp_path, capsys):
    f32, i16, mask = pair
    from scipy.ndimage import binary_dilation

    big = mask.replace(data=binary_dilation(mask.data, iterations=2))  # two voxels of background in the exterior
    fileio.save_mask(big, tmp_path / "all.nii.gz")
    rows = {}
    changed_copy(f32, tmp_path / "pred.nii.gz", tmp_path / "all.nii.gz")  # the reference or its copy is refused
    for name, truth in (("float", f32), ("int16", i16)):
        code, _, err = run_cli(capsys, "evaluate", "--pred", tmp_path / "pred.nii.gz", "--truth", truth, "--mask", tmp_path / "all.nii.gz",
                               "--json", tmp_path / f"{name}.json")
        assert code == 0, err
        rows[name] = json.loads((tmp_path / f"{name}.json").read_text())
    for region in ("interior", "exterior"):
        a, b = rows["float"][region], rows["int16"][region]
        assert b["n_voxels"] == a["n_voxels"], (region, a, b)
        assert b["fa_rmse"] < 1e-3, (region, b)


def test_track_keeps_out_of_an_int16_file_s_background(pair, tmp_path, capsys):
    f32, i16, mask = pair
    lines = {}
    for name, path in (("float", f32), ("int16", i16)):
        code, _, err = run_cli(capsys, "track", path, "--seeds", f32.with_name("mask.nii.gz"), "-o", tmp_path / f"{name}.trk")
        assert code == 0, err
        lines[name] = load_tracts(tmp_path / f"{name}.trk")
    inside = np.asarray(mask.data, bool)
    inv = np.linalg.inv(mask.affine)
    for name, found in lines.items():
        pts = np.concatenate(found)
        ijk = np.rint(pts @ inv[:3, :3].T + inv[:3, 3]).astype(int)
        ok = np.all((ijk >= 0) & (ijk < inside.shape), axis=1)
        assert ok.all() and inside[tuple(ijk.T)].mean() > 0.99, name  # none wanders into the background
    assert abs(len(lines["int16"]) - len(lines["float"])) <= 0.02 * len(lines["float"]), {k: len(v) for k, v in lines.items()}


def test_an_int16_background_a_little_below_zero_is_no_sign_inverted_brain(pair, tmp_path):
    """An intercept that leaves the background a few 1e-8 below zero (an int16 dipy fit of a training scan: -1.2e-8)
    had refused a valid masked fit as '75 % ... mean diffusivity at or below zero', the background read as brain."""
    from ImageQualityTransferLib.methods.inputs import check_tensor_input

    f32, _, mask = pair
    img = nib.load(f32)
    t = np.asarray(img.dataobj, np.float64)
    slope, inter = float(np.abs(t).max()) / 30000, -1.2e-8
    raw = np.round((t - inter) / slope).astype(np.int16)
    raw[~np.any(t != 0, axis=-1)] = 0  # the background comes back as the intercept, below zero
    out = nib.Nifti1Image(raw, img.affine, img.header)
    out.header.set_data_dtype(np.int16)
    out.header.set_slope_inter(slope, inter)
    nib.save(out, tmp_path / "neg.nii.gz")
    back = fileio.load_tensor(tmp_path / "neg.nii.gz")
    assert np.asarray(back.data)[~np.asarray(mask.data, bool)].max() < 0  # the case: every background element negative
    check_tensor_input(back)


def test_a_brain_in_m2_per_s_with_a_few_voxels_above_is_still_named_another_unit(pair):
    """The negligible background read as none must not take a whole brain in m^2/s (every tensor below 1e-5) for
    background where a few voxels lie above: judged by those alone it ran, its brain zeroed, exit 0 (a review: 5 of
    43,282 voxels); it is refused in the unit's line as before."""
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.methods.inputs import check_tensor_input

    f32 = fileio.load_tensor(pair[0])
    t = np.asarray(f32.data, np.float64) * 1e-6  # m^2/s, as Camino writes
    brain = np.argwhere(np.any(t != 0, axis=-1))
    for i, j, k in brain[:: max(1, len(brain) // 5)][:5]:
        t[i, j, k] = np.asarray(f32.data)[i, j, k] * 2  # a few voxels in mm^2/s
    with pytest.raises(IQTError, match="1e6"):
        check_tensor_input(f32.replace(data=t.astype(np.float32)))


def _int16_roi(pair, path, jitter: float, inter: float, slope: float | None, spread: int = 1, unit: float = 1.0):
    """A sphere of the phantom fit (1.4 % of the field) saved as int16 with this intercept and slope (None: its largest
    element over 30000), `jitter` of its background elements +-1 to +-`spread` raw steps, its tensors times `unit`
    (1e-6: m^2/s): (the file read, the ROI)."""
    f32, _, mask = pair
    img = nib.load(f32)
    t = np.asarray(img.dataobj, np.float64)
    inside = np.asarray(mask.data, bool)
    ijk = np.indices(inside.shape)
    c = np.array(np.nonzero(inside)).mean(axis=1)
    roi = inside & (((ijk - c[:, None, None, None]) ** 2).sum(0) <= 3.5**2)  # a sphere in the brain
    assert 0 < roi.mean() < 0.05
    t = np.where(roi[..., None, None], t * unit, 0)
    slope = slope or float(np.abs(t).max()) / 30000
    raw = np.round((t - inter) / slope).astype(np.int16)
    rng = np.random.default_rng(0)
    n = int((~roi).sum())
    steps = rng.choice([-1, 1], (n,) + raw.shape[3:]) * rng.integers(1, spread + 1, (n,) + raw.shape[3:])
    raw[~roi] = np.where(rng.random((n,) + raw.shape[3:]) < jitter, steps, 0)
    out = nib.Nifti1Image(raw, img.affine, img.header)
    out.header.set_data_dtype(np.int16)
    out.header.set_slope_inter(slope, inter)
    nib.save(out, path)
    back = fileio.load_tensor(path)
    assert back.meta["step"] == pytest.approx(slope, rel=1e-6)  # the file's scl_slope, one raw step (float32 stored)
    assert np.all(np.asarray(back.data)[~roi] != 0)  # the case: no exact zero outside the ROI
    return back, roi


@pytest.mark.parametrize("jitter, inter, slope", [(0.0, 1.2e-8, None), (0.05, 1.2e-8, None), (0.2, 3e-6, 1.2e-7)])
def test_a_small_roi_stored_as_int16_is_read_with_its_intercept_as_background(pair, tmp_path, jitter, inter, slope):
    """A masked fit whose brain is a small ROI (here 1.4 % of the field) stored as int16 with an intercept of +1.2e-8
    had been refused as 'not in mm^2/s ... multiply them by 1e5', which would ruin it, while its float copy ran (a
    review: spheres cut from a training scan's fit, 3.9 % and 1.2 %): its background is one repeated tensor, a fill,
    within one stored step (a background of +-1 raw steps, `jitter` of its elements, had been refused again), with room
    for float32's rounding of it (at an intercept of 3e-6, +-1 raw steps read 1.0000013 steps away: refused again, 354
    of 2000 random slope/intercept pairs, a review)."""
    from ImageQualityTransferLib.methods.inputs import check_tensor_input, without_tiny_background

    back, roi = _int16_roi(pair, tmp_path / "roi.nii.gz", jitter, inter, slope)
    check_tensor_input(back)
    kept = np.any(np.asarray(without_tiny_background(back).data) != 0, axis=-1)
    assert np.array_equal(kept, roi)


def test_an_int16_background_spread_over_many_steps_is_no_fill(pair, tmp_path):
    """The fill's tolerance is the file's own step (scl_slope), not a fixed one: a background spread over +-40 raw steps
    is varied tensors, not one fill, and is not zeroed (a review: every step forced to 1 mm^2/s passed the tests)."""
    from ImageQualityTransferLib.methods.inputs import without_tiny_background

    back, roi = _int16_roi(pair, tmp_path / "spread.nii.gz", 0.5, 1.2e-8, 1.2e-7, spread=40)
    kept = np.any(np.asarray(without_tiny_background(back).data) != 0, axis=-1)
    assert kept[~roi].mean() > 0.9


def test_an_empty_or_failed_int16_fit_is_not_told_to_rescale(pair, tmp_path):
    """An int16 fit with its intercept in every voxel reads as a whole field of one tiny tensor (empty), or of two (a
    failed fit's floor in the brain above it): both had been told 'multiply them by 1e5', which would make nonsense an
    input (a review); they are named an empty or failed fit. (A brain in m^2/s varies: still named a unit, above.)"""
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.methods.inputs import check_tensor_input

    f32, _, mask = pair
    img = nib.load(f32)
    t = np.asarray(img.dataobj, np.float64)
    brain = np.any(t != 0, axis=-1)
    floor = np.where(brain[..., None], 5e-10 * np.array([1, 0, 0, 1, 0, 1]), 0)  # SYMMATRIX order, 5D
    for name, data in (("empty", np.zeros_like(t)), ("failed", floor)):
        slope = float(np.abs(data).max()) / 30000 or 1e-13
        out = nib.Nifti1Image(np.round((data - 1.2e-8) / slope).astype(np.int16), img.affine, img.header)
        out.header.set_data_dtype(np.int16)
        out.header.set_slope_inter(slope, 1.2e-8)
        nib.save(out, tmp_path / f"{name}.nii.gz")
        with pytest.raises(IQTError, match="an empty or failed fit") as caught:
            check_tensor_input(fileio.load_tensor(tmp_path / f"{name}.nii.gz"))
        assert "multiply" not in str(caught.value), str(caught.value)


@pytest.mark.parametrize("jitter", [0.0, 0.2])
def test_an_int16_roi_in_m2_per_s_is_named_its_unit_not_another_order(pair, tmp_path, jitter):
    """An int16 ROI in m^2/s, its intercept in all six elements outside it, read as a whole field of rank-one tensors
    and was told 'pass --tensor-order mrtrix' (a review: 16 of 16 such files, spheres of 2-6 voxels cut from a
    training scan's fit); its stored zeros are read as empty and it is told, as its float copy is, to multiply by 1e6."""
    from ImageQualityTransferLib.core.errors import IQTError
    from ImageQualityTransferLib.methods.inputs import check_tensor_input

    back, roi = _int16_roi(pair, tmp_path / "roi.nii.gz", jitter, 1.2e-14, None, unit=1e-6)
    with pytest.raises(IQTError, match="multiply them by 1e6") as caught:
        check_tensor_input(back)
    assert "--tensor-order" not in str(caught.value), str(caught.value)
