"""Every method writes exactly zero outside its support (the mask, else the input's non-zero voxels, grown by one
low-res voxel), its uncertainty maps too: the background a viewer shows stays clean, whatever tool made the input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from ImageQualityTransferLib import methods
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.core.grid import repeat_blocks


@pytest.fixture(scope="module")
def small_loaded(small_subject):
    from ImageQualityTransferLib.dmri.subject import load_subject

    return load_subject(small_subject)


@pytest.fixture(scope="module")
def tight_case(small_loaded):
    from ImageQualityTransferLib.dmri.subject import make_case

    return make_case(small_loaded, 2, style="tight")  # zeros outside the brain, as FSL/MRtrix write


@pytest.fixture(scope="module")
def real_tight_case(axial_subject):
    from ImageQualityTransferLib.dmri.subject import make_case

    return make_case(axial_subject, 2, style="tight")


@pytest.mark.parametrize("name", methods.ready(2))
def test_zero_outside_the_support_without_a_mask(tight_case, name):
    check_zero_outside(tight_case, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ("cubic", "biqt", "espcn-hetero") if n in methods.ready(2)])
def test_zero_outside_the_support_on_a_real_subject(real_tight_case, name):
    check_zero_outside(real_tight_case, name)


def check_zero_outside(tight_case, name):
    lr = tight_case.lr
    present = np.any(lr.data != 0, axis=-1)
    support = repeat_blocks(ndimage.binary_dilation(present, structure=np.ones((3, 3, 3), bool)), 2)
    assert not support.all()
    pred = methods.get(name).predict(lr, 2, direction=True)
    assert not pred.tensor.data[~support].any()
    assert np.any(pred.tensor.data[repeat_blocks(present, 2)] != 0, axis=-1).mean() > 0.99
    for key, vol in pred.maps().items():
        assert not vol.data[~support].any(), key


@pytest.mark.parametrize("name", [n for n in methods.ready(2) if methods.method_class(n).gives_uncertainty])
def test_a_nonphysical_output_voxel_is_at_least_as_uncertain_as_its_distance_to_a_physical_tensor(tight_case, name):
    from ImageQualityTransferLib.core import tensors

    pred = methods.get(name).predict(tight_case.lr, 2)
    distance = tensors.distance_to_physical(pred.tensor.data)
    bad = distance > 0
    assert bad.any()  # the tight phantom gives some at its edge, for every method
    assert np.all(pred.std.data >= distance)


@pytest.mark.parametrize("style", ["tight", "own", "unmasked"])
def test_a_run_without_the_mask_gives_the_same_brain_as_with_it(axial_subject, style):
    """The CNN's unit is the mode of the input's MD, which needs no mask: tight and own inputs give the same brain
    with or without the mask; on unmasked input (background noise tensors) the unit moves by under 3 %."""
    pytest.importorskip("torch", reason="PyTorch is not installed: the CNN methods need it")
    from ImageQualityTransferLib.dmri.subject import make_case
    from ImageQualityTransferLib.methods.cnn import inference

    case = make_case(axial_subject, 2, style=style)
    brain = case.hr_mask
    method = methods.get("espcn")
    with_mask = method.predict(case.lr, 2, case.lr_mask).tensor.data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        without = method.predict(case.lr, 2).tensor.data
    assert any("whole field of view" in str(w.message) for w in caught) == (style == "unmasked")
    lr = case.lr.data
    if style == "unmasked":
        brain_only = lr * case.lr_mask.data[..., None]
        assert abs(inference.subject_scale(lr, None) / inference.subject_scale(brain_only, None) - 1) < 0.03
        err = np.sqrt(np.mean((without[brain] - case.truth[brain]) ** 2))
        ref = np.sqrt(np.mean((with_mask[brain] - case.truth[brain]) ** 2))
        assert abs(err / ref - 1) < 0.01
    else:
        inside = brain & np.any(with_mask != 0, axis=-1)  # the mask's support can leave out a sliver of the brain
        assert inside.sum() > 0.999 * brain.sum()
        np.testing.assert_allclose(without[inside], with_mask[inside], rtol=1e-5, atol=1e-9)


def test_nonphysical_voxels_are_flagged_at_least_as_uncertain_as_the_edge():
    from ImageQualityTransferLib.methods.flags import flag_nonphysical

    t = np.zeros((32, 32, 32, 6))
    t[2:30, 2:30, 2:30] = [1e-3, 0, 1e-3, 0, 0, 1e-3]
    t[16, 16, 16] = [1e-3, 0, 1e-3, 0, 0, -1e-6]  # deep inside, barely non-physical
    t[2, 16, 16] = [1e-3, 0, 1e-3, 0, 0, -2e-3]  # at the edge, far from physical
    present = np.any(t != 0, -1)
    deep = np.zeros_like(present)
    deep[8:24, 8:24, 8:24] = True
    std = np.where(present & ~deep, 3e-4, np.where(deep, 1e-4, 0.0))  # the edge band is the more uncertain
    out = flag_nonphysical(t, std, 2)
    assert np.isclose(out[16, 16, 16], 3e-4)  # raised to the edge's level
    assert out[2, 16, 16] > 3e-4  # its distance to a physical tensor is larger still
    unchanged = np.ones(present.shape, bool)
    unchanged[16, 16, 16] = unchanged[2, 16, 16] = False
    np.testing.assert_array_equal(out[unchanged], std[unchanged])


def test_every_map_but_the_direction_flags_a_nonphysical_voxel():
    """The MD and FA SD maps (and the SD's two parts) raise a non-physical voxel too, each to its own edge band's level;
    the diffusivity maps also to its distance to a physical tensor, the FA SD (unitless) not: its edge level here is
    below that distance, so a distance floor would show. The direction map is drawn from the raised SD instead
    (methods/base.py), and a map that is zero everywhere (one Monte Carlo sample's parameter SD) stays zero."""
    from ImageQualityTransferLib.core.tensors import distance_to_physical
    from ImageQualityTransferLib.methods.flags import flag_maps

    t = np.zeros((32, 32, 32, 6))
    t[2:30, 2:30, 2:30] = [1e-3, 0, 1e-3, 0, 0, 1e-3]
    t[16, 16, 16] = [1e-3, 0, 1e-3, 0, 0, -5e-4]
    present = np.any(t != 0, -1)
    deep = np.zeros_like(present)
    deep[8:24, 8:24, 8:24] = True
    edge = present & ~deep
    maps = {"md_std": np.where(edge, 3e-6, np.where(deep, 1e-6, 0.0)), "fa_std": np.where(edge, 3e-6, np.where(deep, 1e-6, 0.0)),
            "direction": np.where(present, 10.0, 0.0), "std_parameter": np.zeros(present.shape)}
    distance = distance_to_physical(t)[16, 16, 16]
    assert distance > 1e-5  # far above both edge levels
    out = flag_maps(t, maps, 2)
    assert np.isclose(out["md_std"][16, 16, 16], distance)
    assert np.isclose(out["fa_std"][16, 16, 16], 3e-6)
    np.testing.assert_array_equal(out["direction"], maps["direction"])
    np.testing.assert_array_equal(out["std_parameter"], 0.0)
    for key in ("md_std", "fa_std"):
        keep = np.ones(present.shape, bool)
        keep[16, 16, 16] = False
        np.testing.assert_array_equal(out[key][keep], maps[key][keep])


def test_the_floor_is_the_edge_bands_upper_quartile():
    """The support's edge band also holds its ring outside the brain, where the std is lower than at the brain's
    edge: a non-physical voxel is raised to the band's upper quartile, not its median."""
    from ImageQualityTransferLib.methods.flags import EDGE_DEPTH, EDGE_QUANTILE, flag_nonphysical

    t = np.zeros((32, 32, 32, 6))
    t[2:30, 2:30, 2:30] = [1e-3, 0, 1e-3, 0, 0, 1e-3]
    t[16, 16, 16] = [1e-3, 0, 1e-3, 0, 0, -1e-6]
    present = np.any(t != 0, -1)
    band = present.copy()
    band[2 + 2 * EDGE_DEPTH:30 - 2 * EDGE_DEPTH, 2 + 2 * EDGE_DEPTH:30 - 2 * EDGE_DEPTH, 2 + 2 * EDGE_DEPTH:30 - 2 * EDGE_DEPTH] = False
    std = np.where(present, 1e-5, 0.0)
    std[band] = np.random.default_rng(0).uniform(0, 4e-4, band.sum())
    out = flag_nonphysical(t, std, 2)
    assert np.isclose(out[16, 16, 16], np.quantile(std[band], EDGE_QUANTILE))
    assert out[16, 16, 16] > 1.4 * np.median(std[band])


def test_a_generous_support_flags_nonphysical_voxels_against_the_brains_edge():
    """Without a mask the support is a brain estimate that keeps a ring of background fits, where a forest's std is
    low: the floor is the brain edge's (the support's second band), not the ring's."""
    from ImageQualityTransferLib.methods.flags import EDGE_DEPTH, flag_nonphysical

    t = np.zeros((40, 40, 40, 6))
    t[2:38, 2:38, 2:38] = [1e-3, 0, 1e-3, 0, 0, 1e-3]
    t[3, 20, 20] = [1e-3, 0, 1e-3, 0, 0, -1e-6]  # in the ring of background fits, barely non-physical
    present = np.any(t != 0, -1)
    ring = present.copy()
    ring[2 + 2 * EDGE_DEPTH:38 - 2 * EDGE_DEPTH, 2 + 2 * EDGE_DEPTH:38 - 2 * EDGE_DEPTH, 2 + 2 * EDGE_DEPTH:38 - 2 * EDGE_DEPTH] = False
    std = np.where(ring, 2e-5, np.where(present, 2e-4, 0.0))  # the brain (edge and all) more uncertain than the ring
    out = flag_nonphysical(t, std, 2)
    assert np.isclose(out[3, 20, 20], 2e-4)


def test_background_noise_fits_kept_by_an_estimated_brain_are_flagged_uncertain(small_subject):
    """Without a mask on a whole-field fit, the estimated brain keeps background fits; where they look like noise
    (`dmri.dti.noise_fits`) a forest's std had been low, calling them certain: it is raised to at least
    the top of a display's scale there, and left as it was in every other voxel."""
    from ImageQualityTransferLib.dmri.dti import noise_fits
    from ImageQualityTransferLib.dmri.subject import load_subject, make_case
    case = make_case(load_subject(small_subject), 2, style="unmasked")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = methods.get("biqt").predict(case.lr, 2)
        mask = methods.get("biqt").support(case.lr)
        plain = methods.get("biqt").predict(case.lr, 2, mask.replace(meta={}))  # the same support, given: no flag
    std, present = pred.std.data, np.any(pred.tensor.data != 0, axis=-1)
    # in the brain estimated and the margin of one low-res voxel the outputs reach beyond it
    reach = ndimage.binary_dilation(np.asarray(mask.data, bool), structure=np.ones((3, 3, 3), bool))
    noise = repeat_blocks(noise_fits(case.lr) & reach, 2) & present
    assert noise.sum() > 50
    from ImageQualityTransferLib.methods.flags import NOISE_QUANTILE

    floor = float(np.quantile(plain.std.data[present & ~noise], NOISE_QUANTILE))  # the top of a display's scale
    # and the flag is not idle: unflagged, a quarter of them (26 % with the phantom's CSF rim, over half before it)
    # read below the top of the scale
    assert (std[noise] >= floor * (1 - 1e-6)).all() and (plain.std.data[noise] < floor).mean() > 0.2
    assert np.median(std[noise]) > np.median(std[present & ~noise])  # had read below the brain's
    np.testing.assert_array_equal(pred.tensor.data, plain.tensor.data)
    assert np.array_equal(std[~noise], plain.std.data[~noise])


def test_failed_fits_an_estimated_brain_keeps_are_flagged_uncertain_too(small_subject):
    """The background's failed fits an estimated brain keeps (the clean Elition's whole-field fit: 166, none in its
    brain mask) had been zeroed before the noise test read them, then filled from around them: their std read below
    the flagged rim around them, lower-uncertainty holes in it (a review). They are raised as the noise fits are."""
    from ImageQualityTransferLib.dmri.dti import noise_fits
    from ImageQualityTransferLib.dmri.subject import load_subject, make_case
    from ImageQualityTransferLib.methods.flags import NOISE_QUANTILE

    case = make_case(load_subject(small_subject), 2, style="unmasked")
    method = methods.get("biqt")
    mask = method.support(case.lr)
    data = np.array(case.lr.data, copy=True)
    rim = np.asarray(mask.data, bool) & ~np.asarray(case.lr_mask.data, bool)  # the background the estimate keeps
    picks = np.argwhere(rim)[::7][:12]  # scattered single voxels: logged, not warned
    assert len(picks) == 12
    for i, j, k in picks:
        data[i, j, k] = [2e-2, 0, 0, 2e-2, 0, 2e-2]  # an eigenvalue far beyond free water's: a failed fit
    lr = case.lr.replace(data=data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = method.predict(lr, 2)
        mask = method.support(lr)
        plain = method.predict(lr, 2, mask.replace(meta={}))  # the same support, given: no flag
    present = np.any(pred.tensor.data != 0, axis=-1)
    failed = np.zeros(mask.shape3, bool)
    failed[tuple(picks.T)] = True
    failed &= np.asarray(mask.data, bool)  # a pick the estimate leaves out is only in the output's margin
    assert failed.sum() >= 10
    failed = repeat_blocks(failed, 2) & present
    noise = repeat_blocks(noise_fits(lr) & mask.data, 2) & present
    top = float(np.quantile(plain.std.data[present & ~noise & ~failed], NOISE_QUANTILE))
    assert (plain.std.data[failed] < top).mean() > 0.5  # filled, they had read as certain
    assert (pred.std.data[failed] >= top * (1 - 1e-6)).all()
    np.testing.assert_array_equal(pred.tensor.data, plain.tensor.data)


def test_noise_fits_in_the_margin_beyond_an_estimated_brain_are_flagged_too(small_subject):
    """The outputs reach one low-res voxel beyond the brain estimated from a whole-field fit; the noise fits there had
    been left unflagged, a ring of background that read as certain as the brain around every clean whole-field
    output (a review: 95-100 % of that margin below the raised level on the 8 subjects)."""
    from scipy import ndimage

    from ImageQualityTransferLib.dmri.dti import noise_fits
    from ImageQualityTransferLib.dmri.subject import load_subject, make_case
    from ImageQualityTransferLib.methods.flags import NOISE_QUANTILE

    case = make_case(load_subject(small_subject), 2, style="unmasked")
    method = methods.get("biqt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = method.predict(case.lr, 2)
        mask = method.support(case.lr)
        plain = method.predict(case.lr, 2, mask.replace(meta={}))  # the same support, given: no flag
    inside = np.asarray(mask.data, bool)
    ring = ndimage.binary_dilation(inside, structure=np.ones((3, 3, 3), bool)) & ~inside
    present = np.any(pred.tensor.data != 0, axis=-1)
    margin = repeat_blocks(noise_fits(case.lr) & ring, 2) & present
    assert margin.sum() > 50
    noise = repeat_blocks(noise_fits(case.lr) & inside, 2) & present
    top = float(np.quantile(plain.std.data[present & ~noise & ~margin], NOISE_QUANTILE))
    assert (plain.std.data[margin] < top).mean() > 0.5  # unflagged, they read as certain
    assert (pred.std.data[margin] >= top * (1 - 1e-6)).all()
    np.testing.assert_array_equal(pred.tensor.data, plain.tensor.data)


def test_every_map_flags_the_background_noise_fits(small_subject):
    """Only the tensor SD was raised on the noise fits an estimated brain keeps, and a reader who put the
    intrinsic, parameter, MD or FA SD on screen saw them as certain as the brain. Every map is raised there now, to the
    top of its own scale (the direction map to a random axis's angle), and no other voxel moves."""
    from ImageQualityTransferLib.core.direction import RANDOM_AXIS_DEGREES
    from ImageQualityTransferLib.dmri.dti import noise_fits
    from ImageQualityTransferLib.dmri.subject import load_subject, make_case
    from ImageQualityTransferLib.methods.flags import NOISE_QUANTILE

    case = make_case(load_subject(small_subject), 2, style="unmasked")
    method = methods.get("espcn-hetero-var1", samples=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = method.predict(case.lr, 2, direction=True)
        mask = method.support(case.lr)
        plain = method.predict(case.lr, 2, mask.replace(meta={}), direction=True)  # the same support, given: no flag
    present = np.any(pred.tensor.data != 0, axis=-1)
    # in the brain estimated and the margin of one low-res voxel the outputs reach beyond it
    reach = ndimage.binary_dilation(np.asarray(mask.data, bool), structure=np.ones((3, 3, 3), bool))
    noise = repeat_blocks(noise_fits(case.lr) & reach, 2) & present
    assert noise.sum() > 50
    assert set(pred.maps()) == {"std", "std_intrinsic", "std_parameter", "md_std", "fa_std", "direction"}
    for key, vol in pred.maps().items():
        got, before = vol.data, plain.maps()[key].data
        top = RANDOM_AXIS_DEGREES if key == "direction" else float(np.quantile(before[present & ~noise], NOISE_QUANTILE))
        assert (got[noise] >= top * (1 - 1e-6)).all(), key
        assert (before[noise] < top).mean() > 0.5, key  # they had read as certain
        assert np.array_equal(got[~noise], before[~noise]), key


@pytest.mark.parametrize("grid_of_mask", ["input", "output"])
def test_a_mask_the_user_gives_keeps_every_output_to_it(tight_case, grid_of_mask):
    """`Prediction.within`: zero outside a mask on the input's grid (its voxels' blocks) or on the output's, every
    map too; inside it, every value as `predict` gave it."""
    given = tight_case.lr_mask if grid_of_mask == "input" else tight_case.lr_mask.replace(
        data=repeat_blocks(tight_case.lr_mask.data, 2) & tight_case.hr_mask)
    region = np.asarray(given.data, bool) if grid_of_mask == "output" else repeat_blocks(given.data, 2)
    pred = methods.get("biqt").predict(tight_case.lr, 2, tight_case.lr_mask, direction=True)
    assert np.any(pred.tensor.data[~region] != 0)  # predict answers beyond the mask's edge
    cut = pred.within(given, 2)
    for key in ("tensor", *pred.maps()):
        before, after = getattr(pred, key).data, getattr(cut, key).data
        assert not after[~region].any(), key
        assert np.array_equal(after[region], before[region]), key
    with pytest.raises(IQTError, match="matches neither"):
        pred.within(tight_case.lr_mask.replace(data=np.ones((5, 5, 5), bool)), 2)


@pytest.mark.parametrize("name", ["cubic", "biqt"])
def test_every_voxel_of_a_high_res_mask_gets_a_prediction(small_subject, name):
    """A high-res mask with a thin edge (one voxel whose block is one-eighth inside, far from the rest) on a whole-field
    input: that voxel is predicted, not left zero; outside the mask every output stays zero."""
    from ImageQualityTransferLib.dmri.subject import load_subject, make_case
    from ImageQualityTransferLib.methods.base import predict_within

    case = make_case(load_subject(small_subject), 2, style="unmasked")
    hr = np.zeros(case.hr_mask.shape, bool)
    hr[:8] = case.hr_mask[:8]  # a slab of brain
    stray = np.argwhere(case.hr_mask[20:] & ~ndimage.binary_dilation(hr, iterations=6)[20:])[0] + [20, 0, 0]
    hr[tuple(stray)] = True
    mask = case.lr.replace(data=hr, kind="mask", affine=case.hr_affine)
    pred, _ = predict_within(methods.get(name), case.lr, 2, mask)
    present = np.any(pred.tensor.data != 0, axis=-1)
    assert present[tuple(stray)], "the mask's stray voxel has no prediction"
    assert np.array_equal(present, hr & present) and present[hr].mean() > 0.99
    assert not pred.std.data[~hr].any() if pred.std is not None else True


@pytest.mark.parametrize("background", ["int16", "1e-8", "isotropic 1e-6"])
def test_a_masked_fit_stored_with_a_tiny_background_reads_as_one_with_zeros(tight_case, background, tmp_path):
    """A tight fit whose background is not exactly zero (an int16 file's scale and intercept, or a tiny fill value)
    is the same input as with zeros there: the context beyond the mask is filled as training taught, the support is
    the brain, no "whole field" warning, with the mask or without; before, the learned methods saw that background as
    tensors and came out worse than cubic in the exterior on a dev subject (docs/measurements.md, "Inputs made by
    other tools")."""
    from ImageQualityTransferLib import fileio

    lr = tight_case.lr
    outside = ~np.any(lr.data != 0, axis=-1)
    if background == "int16":
        path = tmp_path / "int16.nii.gz"
        fileio.save_tensor(lr, path)
        import nibabel as nib

        img = nib.load(path)
        img.set_data_dtype(np.int16)  # nibabel picks a slope and an intercept: zero comes back as a few 1e-9
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32), img.affine, img.header), path)
        tiny = fileio.load_tensor(path)
        assert np.all(tiny.data[outside] != 0) and np.abs(tiny.data[outside]).max() < 1e-7
    else:
        data = np.array(lr.data)
        data[outside] = [1e-8] * 6 if background == "1e-8" else [1e-6, 0, 1e-6, 0, 0, 1e-6]
        tiny = lr.replace(data=data)
    names = [n for n in ("cubic", "biqt", "espcn") if n in methods.ready(2)]
    for name in names:
        for mask in (tight_case.lr_mask, None):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                got = methods.get(name).predict(tiny, 2, mask, uncertainty=False).tensor.data
            want = methods.get(name).predict(lr, 2, mask, uncertainty=False).tensor.data
            assert not any("whole field" in str(w.message) for w in caught), name
            np.testing.assert_allclose(got, want, rtol=0, atol=2e-7 if background == "int16" else 1e-9, err_msg=name)


def test_a_masked_fit_on_a_field_the_brain_mostly_fills_reads_as_one_with_zeros(tight_case, tmp_path):
    """A tight fit cropped so that the brain fills most of the field (a slab, or a field cut to the head), stored as
    int16: its tiny background is still a masked fit's, not a whole-field fit's (with the brain at 83 % of
    the field cubic's output differed from the float file's by up to 3.8e-3 mm^2/s at the brain's edge, under a wrong
    "fitted without a brain mask" warning)."""
    import nibabel as nib

    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.methods.inputs import whole_field

    lr = tight_case.lr
    brain = np.any(lr.data != 0, axis=-1)
    lo, hi = np.argwhere(brain).min(0), np.argwhere(brain).max(0) + 1
    cut = tuple(slice(a + (b - a) // 8, b - (b - a) // 8) for a, b in zip(lo, hi))  # the brain at 91 % of the field
    affine = lr.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ [c.start for c in cut]
    slab = Volume(np.ascontiguousarray(lr.data[cut]), affine, "tensor")
    assert np.any(slab.data != 0, axis=-1).mean() > 0.85
    path = tmp_path / "slab.nii.gz"
    fileio.save_tensor(slab, path)
    img = nib.load(path)
    img.set_data_dtype(np.int16)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32), img.affine, img.header), path)
    tiny = fileio.load_tensor(path)
    assert np.all(tiny.data != 0)
    assert not whole_field(tiny)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = methods.get("cubic").predict(tiny, 2, None, uncertainty=False).tensor.data
    assert not any("whole field" in str(w.message) for w in caught)
    want = methods.get("cubic").predict(slab, 2, None, uncertainty=False).tensor.data
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-7)


def test_awhole_field_fit_with_empty_planes_at_its_edge_stays_awhole_field_fit(axial_subject):
    """A fit over the whole field stored as int16 whose edge planes hold nothing (a resample onto a larger grid, eddy's
    padding: an int16 file's few 1e-9): still a whole-field fit (with 2-4 such planes it was read as a
    masked one, its noise fits kept as brain). With exact zeros there it is a whole-field fit too, read inside the
    box of its non-empty voxels (test_padded_field.py)."""
    from ImageQualityTransferLib.dmri.subject import make_case
    from ImageQualityTransferLib.methods.inputs import whole_field

    lr = make_case(axial_subject, 2, style="unmasked").lr
    assert whole_field(lr)
    for axis in (1, 2):
        for planes in (2, 4):
            data = np.array(lr.data)
            data[(slice(None),) * axis + (slice(0, planes),)] = 3e-9
            assert whole_field(lr.replace(data=data)), (axis, planes)


def test_awhole_field_fit_of_a_scan_with_zeroed_air_stays_awhole_field_fit(zeroed_background_subject):
    """Where the scanner zeroed the air, an unmasked dipy fit writes about 1e-9 there (negligible, as a tiny background):
    the edge of its other voxels is scalp and background fits, not a brain's, so it is still estimated as a whole-field
    fit and not taken for a masked one (methods/base.py, whole_field)."""
    from ImageQualityTransferLib.core import tensors
    from ImageQualityTransferLib.methods.inputs import whole_field, without_tiny_background

    from helpers import low_res_case

    lr = low_res_case(zeroed_background_subject, 2, "unmasked").lr
    assert tensors.negligible(lr.data).mean() > 0.5
    assert whole_field(lr)
    assert without_tiny_background(lr) is lr


def test_a_mask_on_other_voxels_is_refused_and_a_plain_array_is_read_on_the_inputs_grid():
    """`predict` took a mask Volume of the input's shape but shifted 30 mm or mirrored (the CLI's load_mask
    refuses it), and a plain array gave an AttributeError."""
    from helpers import smooth_tensors

    from ImageQualityTransferLib.core.volume import Volume

    lr, inside = smooth_tensors((10, 9, 8))
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    vol = Volume(lr, aff, "tensor")
    cubic = methods.get("cubic")
    shifted, mirrored = aff.copy(), aff @ np.diag([-1.0, 1, 1, 1])
    shifted[0, 3] += 30
    for wrong in (shifted, mirrored):
        with pytest.raises(IQTError, match="another position or orientation") as e:
            cubic.predict(vol, 2, Volume(inside, wrong, "mask"))
        assert "load_mask" in str(e.value)
    tiny = aff.copy()
    tiny[:3, 3] += 1e-4  # a header's rounding, as the file reader takes it
    expected = cubic.predict(vol, 2, Volume(inside, aff, "mask")).tensor.data
    assert np.array_equal(cubic.predict(vol, 2, Volume(inside, tiny, "mask")).tensor.data, expected)
    assert np.array_equal(cubic.predict(vol, 2, inside).tensor.data, expected)
    with pytest.raises(IQTError, match="mask array shape"):
        cubic.predict(vol, 2, inside[:-1])


def test_voxels_of_a_metre_are_said(tmp_path):
    """A copy of an input with 1000 mm voxels (its header in another unit) ran a learned method without a word, while
    tiny voxels were warned about (a bad-input audit): one warning naming the brain's length and the header."""
    import warnings

    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.core.errors import IQTWarning
    from ImageQualityTransferLib.core.volume import Volume
    from helpers import random_tensors

    t = np.zeros((12, 12, 10, 6), np.float32)
    t[2:10, 2:10, 2:8] = random_tensors((8, 8, 6), seed=2)
    for size, said in ((1000.0, 1), (2.0, 0)):
        lr = Volume(t, np.diag([size, size, size, 1.0]), "tensor")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            methods.get("global-linear").predict(lr, 2)
        lines = [str(w.message) for w in caught if issubclass(w.category, IQTWarning) and " m long" in str(w.message)]
        assert len(lines) == said, lines


def test_a_mask_lying_beyond_the_head_of_a_whole_field_fit_is_said_naming_both_files(small_loaded):
    """Another scan's mask, or one shifted, given with a whole-field fit had run without a word (a review), every method
    answering from background noise where it lies beyond the head: one warning naming the input and the mask; the
    fit's own mask gives none."""
    from ImageQualityTransferLib.dmri.subject import make_case

    case = make_case(small_loaded, 2, style="unmasked")
    lr = case.lr.replace(meta={**case.lr.meta, "path": "lr.nii.gz"})
    own = case.lr_mask.replace(meta={"path": "own.nii.gz"})
    shifted = own.replace(data=np.roll(np.asarray(own.data), 3, axis=0), meta={"path": "other.nii.gz"})
    said = {}
    for mask in (own, shifted):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            methods.get("cubic").predict(lr, 2, mask)
        said[mask.meta["path"]] = [str(w.message) for w in caught if "beyond the head" in str(w.message)]
    assert not said["own.nii.gz"]
    assert len(said["other.nii.gz"]) == 1 and said["other.nii.gz"][0].startswith("lr.nii.gz: ") and \
        "of other.nii.gz (25.4 %)" in said["other.nii.gz"][0], said


def test_a_mask_a_little_over_the_share_beyond_the_head_is_said_to_a_decimal_and_as_possibly_generous(small_loaded):
    """The warning said "(5 %)" of a rule over 5 % (5.5 % of the trio scan's own mask dilated by 3 voxels) and asked
    only whether the mask was another scan's or shifted, where a generous mask (dilated, a box) gets it too; a mask
    on the high-res grid was named as the input (its low-res copy took the input's file name), then counted as "of the
    N voxels of" its file where N is its reduction to the input's grid (a review: 33,053 of a file of 264,424)."""
    from ImageQualityTransferLib.dmri.subject import make_case
    from ImageQualityTransferLib.methods.base import predict_within
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.methods.inputs import brain_within_box

    case = make_case(small_loaded, 2, style="unmasked")
    lr = case.lr.replace(meta={**case.lr.meta, "path": "lr.nii.gz"})
    own = np.asarray(case.lr_mask.data, bool)
    head = np.asarray(brain_within_box(lr).data, bool)
    outside = np.argwhere(~head & ~own)
    wide = own.copy()
    wide[tuple(outside[: int(0.058 * own.sum())].T)] = True  # about 5.5 % of the mask beyond the head
    share = f"({100 * (wide & ~head).sum() / wide.sum():.1f} %)"
    assert share in ("(5.4 %)", "(5.5 %)", "(5.6 %)"), share
    hr = Volume(np.repeat(np.repeat(np.repeat(wide, 2, 0), 2, 1), 2, 2), case.hr_affine, "mask",
                meta={"path": "hr_mask.nii.gz"})
    total = int(wide.sum())
    for mask, named in ((case.lr_mask.replace(data=wide, meta={"path": "wide.nii.gz"}), f"{total} voxels of wide.nii.gz"),
                        (hr, f"{total} input-grid voxels that hr_mask.nii.gz covers")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predict_within(methods.get("cubic"), lr, 2, mask)
        said = [str(w.message) for w in caught if "beyond the head" in str(w.message)]
        assert len(said) == 1 and f"of the {named} {share}" in said[0] and "dilated, a box" in said[0], said


def test_a_scan_too_noisy_to_read_leads_to_its_own_mask_which_is_not_called_off_its_head(small_loaded):
    """At b0 SNR 1 a whole-field fit's brain estimated from its tensors is too small to read the noise index in; its
    line said "give --mask", and the scan's own mask given then got the off-head warning (56 % and 85 % of a dev scan's
    own mask, a review), judged against that noise-shrunk head. The line now says the fits are mostly noise and to give
    a mask made from this scan; that mask is read (the noise-trained model runs) and not called off the head."""
    from ImageQualityTransferLib.dmri.subject import make_case

    case = make_case(small_loaded, 2, style="unmasked", snr=1)
    lr = case.lr.replace(meta={**case.lr.meta, "path": "lr.nii.gz"})
    own = case.lr_mask.replace(meta={"path": "own.nii.gz"})
    said = {}
    for name, mask in (("none", None), ("own", own)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            methods.get("global-linear").predict(lr, 2, mask, uncertainty=False)  # biqt's line alike, 1 s slower
        said[name] = [str(w.message) for w in caught]
    unread = [s for s in said["none"] if "noise index is unreadable" in s]
    assert len(unread) == 1 and "a scan whose fits are mostly noise" in unread[0] and \
        "give --mask with a brain mask made from this scan itself" in unread[0], said["none"]
    assert not [s for s in said["own"] if "beyond the head" in s], said["own"]
    assert any("noisier than clean scans" in s for s in said["own"]), said["own"]


def test_a_mask_called_beyond_the_head_of_a_noisy_scan_says_noise_shrinks_that_head(small_loaded):
    """A noisy scan's head estimate shrinks with the noise (the 3 mm ortho dev scan's own mask read 6.5 % beyond it at b0
    SNR 5, 56 % at 3, and was called another scan's: a review); no outline tried kept up with it at SNR 3 and below, so
    where the noise index reads noisy the line says so, and a shifted mask is still called on clean and noisy scans."""
    from ImageQualityTransferLib.dmri.subject import make_case
    from ImageQualityTransferLib.methods.inputs import warn_mask_off_head

    for snr in (None, 5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case = make_case(small_loaded, 2, style="unmasked", snr=snr)
        shifted = case.lr_mask.replace(data=np.roll(np.asarray(case.lr_mask.data), 4, 0), meta={"path": "moved.nii.gz"})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warn_mask_off_head(case.lr, shifted)
        said = [str(w.message) for w in caught if "beyond the head" in str(w.message)]
        assert len(said) == 1, said
        assert ("the noise also shrinks that head: if it is this scan's own brain mask, keep it; if not, give this "
                "scan's own ('iqt mask'" in said[0]) == \
            (snr is not None), said
        assert "noise index" not in said[0], said  # a second index beside the noise line's had confused (a review)


def test_a_noisy_scan_s_own_mask_is_read_against_its_head_s_closed_outline(axial_subject):
    """The 3 mm ortho dev scan fitted over its whole field at b0 SNR 5: its noise pits the edge of the head estimated
    from its tensors, and the scan's own mask had been called 7.2 % beyond that head (another scan's? a review); where
    the noise index reads noisy the mask is read against the head's closed outline (inputs.closed_outline: 3.9 %), and a
    mask shifted by 8 voxels is still called."""
    from ImageQualityTransferLib.dmri.subject import make_case
    from ImageQualityTransferLib.methods.inputs import warn_mask_off_head

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        case = make_case(axial_subject, 2, style="unmasked", snr=5, seed=7)
    own = case.lr_mask.replace(meta={"path": "own.nii.gz"})
    shifted = own.replace(data=np.roll(np.asarray(own.data), 8, 0), meta={"path": "moved.nii.gz"})
    said = {}
    for mask in (own, shifted):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warn_mask_off_head(case.lr, mask)
        said[mask.meta["path"]] = [str(w.message) for w in caught if "beyond the head" in str(w.message)]
    assert not said["own.nii.gz"], said
    assert len(said["moved.nii.gz"]) == 1, said
