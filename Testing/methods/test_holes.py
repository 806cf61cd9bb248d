"""Holes in the brain: voxels with no tensor that the fitted tensors enclose (a lesion or ventricle a fit's mask left
out) are filled by the learned methods from around them; every uncertainty map is raised there, the voxels are
counted and one line says so (methods/inputs.py enclosed_holes)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from ImageQualityTransferLib import methods
from ImageQualityTransferLib.core import grid
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.methods.inputs import HOLE_SAID, enclosed_holes

TISSUE = np.array([7e-4, 0, 7e-4, 0, 0, 7e-4], np.float32)


def _field(shape=(20, 20, 16)):
    t = np.zeros(shape + (6,), np.float32)
    t[2:-2, 2:-2, 2:-2] = TISSUE
    return t


def _holes(t, mask=None):
    lr = Volume(t, np.diag([3.0, 3.0, 3.0, 1.0]), "tensor")
    return enclosed_holes(lr, mask, ~np.any(t != 0, axis=-1))


def test_only_missing_tensors_deep_in_the_support_are_a_hole():
    """A zeroed block deep in the tensors is a hole (failed fits beside it, zeroed by drop_failed_fits, with it); a
    block open to the background, a fit's floor (a tensor: the clean own-style inputs hold them at the brain's edge),
    failed fits alone (CSF's, the cavity rules' to judge) and, without a mask, zeros within HOLE_DEPTH of the outline
    (where a fit's rings of context close over the background) are not."""
    t = _field()
    t[8:11, 8:11, 7:9] = 0
    missing = ~np.any(t != 0, axis=-1)
    t[11, 8, 7] = 0  # a failed fit beside it, zeroed before (not missing as given)
    lr = Volume(t, np.diag([3.0, 3.0, 3.0, 1.0]), "tensor")
    found = enclosed_holes(lr, None, missing)
    assert found is not None and found.sum() == 19 and found[11, 8, 7], None if found is None else found.sum()
    assert enclosed_holes(lr, Volume(np.any(t != 0, axis=-1), lr.affine, "mask"), missing).sum() == 19
    open_ = _field()
    open_[8:11, 8:11, 7:] = 0  # reaches the background above: no hole
    floor = _field()
    floor[8:11, 8:11, 7:9] = [1e-9, 0, 1e-9, 0, 0, 1e-9]
    failed_only = _field()
    failed_only[8:11, 8:11, 7:9] = [9e-3, 0, 6e-3, 0, 0, 6e-3]
    shallow = _field()
    shallow[3:6, 8:11, 7:9] = 0  # 2-4 voxels inside the outline: without a mask, a fit's rings may enclose as much
    assert _holes(shallow, Volume(np.any(shallow != 0, axis=-1), np.eye(4), "mask")).sum() == 18  # a mask's: a hole
    assert _holes(open_) is None and _holes(floor) is None and _holes(failed_only) is None and _holes(shallow) is None
    # a failed fit's floor and failed fits alone are what predict zeroes: read as given, neither is missing
    dropped = np.where(np.any(failed_only != TISSUE, axis=-1)[..., None], 0, failed_only)
    assert enclosed_holes(Volume(dropped, lr.affine, "tensor"), None, ~np.any(failed_only != 0, axis=-1)) is None


@pytest.mark.slow
def test_a_hole_in_a_real_scan_is_raised_in_every_map_counted_and_said(axial_subject):
    """The dev scan's x2 input (tight, as FSL's) with a 5.8 cm^3 block of its white matter holding no tensor, as a fit
    whose mask left out a lesion leaves it: filled from around it by a learned method, it had read as confident as
    the rest of the brain, with no line and no count. With the mask that left it out and without one, every map
    (std, its two parts, MD's, FA's and the direction's) is at its top there, the voxels are counted for QC
    (failed_fits_flagged's companion, holes_flagged) and one line says it; without a mask, deep in the whole brain."""
    from ImageQualityTransferLib.core.direction import RANDOM_AXIS_DEGREES
    from ImageQualityTransferLib.dmri.subject import Subject, make_case
    from ImageQualityTransferLib.methods.flags import NOISE_QUANTILE

    s = axial_subject
    box = (slice(16, 40), slice(20, 44), slice(12, 36))  # the x2 input's 12^3 voxels around (14, 16, 12)
    crop = Subject(s.name, s.dwi.replace(data=s.dwi.data[box]), s.mask.replace(data=s.mask.data[box]),
                   s.tensor.replace(data=s.tensor.data[box]))
    case = make_case(crop, 2, style="tight")

    def holed(case, centre):
        """The case's input with the 3x3x3 block around `centre` zeroed, the block, its output blocks."""
        hole = np.zeros(case.lr_mask.shape3, bool)
        hole[tuple(slice(c - 1, c + 2) for c in centre)] = True
        assert np.asarray(case.lr_mask.data, bool)[hole].all()
        lr = case.lr.replace(data=np.where(hole[..., None], 0, case.lr.data).astype(np.float32))
        return lr, hole, grid.repeat_blocks(hole, 2)

    in_crop = holed(case, (6, 6, 6))
    # without a mask a hole counts deeper than HOLE_DEPTH voxels: the whole brain's, at its deepest voxel
    full = make_case(s, 2, style="tight")
    inner = np.asarray(full.lr_mask.data, bool)
    in_brain = holed(full, np.unravel_index(np.argmax(ndimage.distance_transform_edt(inner)), inner.shape))
    for name, settings in (("biqt", {}), ("espcn-hetero-var1", {"samples": 2})):
        method = methods.get(name, **settings)
        for mask in (case.lr_mask.replace(data=np.asarray(case.lr_mask.data, bool) & ~in_crop[1]), None):
            lr, hole, cube = in_crop if mask is not None else in_brain
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                pred = method.predict(lr, 2, mask, direction=True)
            said = [str(w.message) for w in caught if HOLE_SAID in str(w.message)]
            assert len(said) == 1 and said[0].startswith("27 low-res voxels hold no tensor") and \
                f"5.8 {HOLE_SAID}" in said[0], said
            assert pred.tensor.meta["holes_flagged"] == 27
            out = np.any(np.asarray(pred.tensor.data) != 0, axis=-1)
            inside, rest = cube & out, out & ~cube
            assert inside.sum() >= 200  # the block's outer voxels, within the outputs' reach of the tensors
            maps = {k: np.asarray(v.data) for k, v in pred.maps().items()}
            assert set(maps) >= ({"std", "direction"} if name == "biqt" else {"std", "md_std", "fa_std", "direction"})
            for key, m in maps.items():
                top = RANDOM_AXIS_DEGREES if key == "direction" else np.quantile(m[rest], NOISE_QUANTILE)
                assert m[inside].min() >= np.float32(top), (name, mask is None, key, float(np.median(m[inside])), top)


def test_a_given_mask_s_voxels_with_no_tensor_that_a_whole_field_fit_encloses_are_a_hole():
    """On a whole-field fit a given mask is not cut to the fit: a hole at the mask's edge (a cortical lesion with no
    tensor, which the scalp's fits close over) is filled from around it; counted, as the same hole deeper is."""
    t = np.tile(TISSUE, (20, 20, 16, 1))
    mask = np.zeros(t.shape[:3], bool)
    mask[4:16, 4:16, 3:13] = True
    t[4:7, 8:11, 6:9] = 0  # at the mask's edge, in its voxels
    lr = Volume(t, np.diag([3.0, 3.0, 3.0, 1.0]), "tensor")
    found = enclosed_holes(lr, Volume(mask, lr.affine, "mask"), ~np.any(t != 0, axis=-1))
    assert found is not None and found.sum() == 27
    mask[:, :, :] = False
    mask[10:16, 4:16, 3:13] = True  # a mask elsewhere: not this brain's hole
    assert enclosed_holes(lr, Volume(mask, lr.affine, "mask"), ~np.any(t != 0, axis=-1)) is None


def test_a_hole_a_given_mask_covers_is_said_in_one_line():
    """A masked fit's brain with a 5x5x5 hole, given with the mask it was fitted in (which covers the hole): the
    mask's line had counted the hole too ("the mask reaches beyond the fitted tensors ... give the mask the tensors
    were fitted in"), beside the holes' line: one hole, one line. A mask wider than the fit is still said, counting only
    the voxels beyond the fit."""
    g = np.indices((20, 20, 20)) - 9.5
    brain = (g ** 2).sum(0) < 8 ** 2
    t = np.where(brain[..., None], TISSUE, 0).astype(np.float32)
    t[8:13, 8:13, 8:13] = 0
    lr = Volume(t, np.diag([3.0, 3.0, 3.0, 1.0]), "tensor")
    wider, method = ndimage.binary_dilation(brain), methods.get("biqt")
    for mask, beyond in ((brain, 0), (wider, int((wider & ~brain).sum()))):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            method.predict(lr, 2, Volume(mask, lr.affine, "mask"))
        said = [str(w.message) for w in caught if "hold no tensor" in str(w.message)]
        assert len(said) == 1 + bool(beyond) and said[-1].startswith("125 low-res voxels hold no tensor"), said
        assert not beyond or said[0].startswith(f"{beyond} of the mask's {int(mask.sum())} voxels"), said


def test_a_hole_the_fit_encloses_is_counted_under_a_given_mask_that_opens_it():
    """A masked fit's brain with a 3x3x3 hole, given with a mask that leaves out a channel of fitted voxels from the
    hole to the brain's edge (median_otsu's masks leave out voxels by the ventricles): the hole, enclosed by the fitted
    tensors, had gone uncounted (the mask was cut to the fit before the holes were looked for), its maps not raised and
    its voxels said only as a mask reaching beyond the fit."""
    g = np.indices((20, 20, 20)) - 9.5
    brain = (g ** 2).sum(0) < 8 ** 2
    t = np.where(brain[..., None], TISSUE, 0).astype(np.float32)
    t[8:11, 8:11, 8:11] = 0
    mask = brain.copy()
    mask[11:, 9, 9] = False  # a channel of fitted voxels left out of the mask, from the hole to the background
    lr = Volume(t, np.diag([3.0, 3.0, 3.0, 1.0]), "tensor")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = methods.get("biqt").predict(lr, 2, Volume(mask, lr.affine, "mask"))
    said = [str(w.message) for w in caught if "hold no tensor" in str(w.message)]
    assert pred.tensor.meta.get("holes_flagged") == 27, said
    assert len(said) == 1 and said[0].startswith("27 low-res voxels hold no tensor"), said


def test_an_interpolation_says_a_hole_as_the_learned_methods_do():
    """cubic and linear, given the mask the holed brain was fitted in: the mask's line had counted the hole ("the mask
    reaches beyond the fitted tensors ... give the mask the tensors were fitted in") of that very mask, where the
    learned methods say the holes' line; a mask wider than the fit is still said, counting only the voxels beyond it."""
    g = np.indices((20, 20, 20)) - 9.5
    brain = (g ** 2).sum(0) < 8 ** 2
    t = np.where(brain[..., None], TISSUE, 0).astype(np.float32)
    t[8:13, 8:13, 8:13] = 0
    lr = Volume(t, np.diag([3.0, 3.0, 3.0, 1.0]), "tensor")
    wider = ndimage.binary_dilation(brain)
    for name in ("cubic", "linear"):
        for mask, beyond in ((brain, 0), (wider, int((wider & ~brain).sum()))):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                pred = methods.get(name).predict(lr, 2, Volume(mask, lr.affine, "mask"))
            said = [str(w.message) for w in caught if "hold no tensor" in str(w.message)]
            assert len(said) == 1 + bool(beyond) and said[-1].startswith("125 low-res voxels hold no tensor"), said
            assert not beyond or said[0].startswith(f"{beyond} of the mask's {int(mask.sum())} voxels"), said
            assert "holes_flagged" not in pred.tensor.meta  # no maps raised: 0 in qc.tsv (docs/cohorts.md)
            # the line says what the picture shows: interpolation fills the hole's edge too, its core stays empty
            out = np.any(np.asarray(pred.tensor.data) != 0, axis=-1)[16:26, 16:26, 16:26]
            assert out.any() and not out.all() and "Every method, interpolation too, fills" in said[-1], said


def test_failed_fits_in_a_hole_are_said_as_counted_in_both_lines():
    """A 5x5x5 hole whose shell of 98 voxels holds failed fits (faster than free water) round a 3x3x3 core with no
    tensor: the failed-fit line counts 98 and the holes' line 125, which had read as 223 flagged voxels (qc.tsv's two
    columns added); the holes' line says 98 of its voxels are failed fits the other line counts too."""
    g = np.indices((20, 20, 20)) - 9.5
    brain = (g ** 2).sum(0) < 8 ** 2
    t = np.where(brain[..., None], TISSUE, 0).astype(np.float32)
    t[8:13, 8:13, 8:13] = np.array([8e-3, 0, 8e-3, 0, 0, 8e-3], np.float32)
    t[9:12, 9:12, 9:12] = 0
    lr = Volume(t, np.diag([3.0, 3.0, 3.0, 1.0]), "tensor")
    for name in ("biqt", "cubic"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = methods.get(name).predict(lr, 2, Volume(brain, lr.affine, "mask"))
        failed = [str(w.message) for w in caught if "hold a failed fit" in str(w.message)]
        holes = [str(w.message) for w in caught if "low-res voxels hold no tensor" in str(w.message)]
        assert len(failed) == 1 and failed[0].startswith("98 voxels in the mask"), failed
        assert len(holes) == 1 and holes[0].startswith("125 low-res voxels"), holes
        assert "98 of them failed fits (counted in the failed-fit line too)" in holes[0], holes
        assert pred.tensor.meta.get("failed_fits_flagged") == 98
        assert pred.tensor.meta.get("holes_flagged") == (125 if name == "biqt" else None)


def test_interpolation_s_holes_and_a_learned_method_s_input_drop_failed_fits_in_one_place(monkeypatch):
    """holes_said_apart (interpolation's holes, left out of the mask's line) and drop_failed_fits (a learned method's
    input) zero failed fits through one function (failed_fits_zeroed): kept matched by hand, a change to one would have
    counted holes the other did not."""
    from ImageQualityTransferLib.methods import inputs

    t = _field()
    t[8:11, 8:11, 7:9] = 0
    missing = ~np.any(t != 0, axis=-1)
    t[11, 8, 7] = [9e-3, 0, 6e-3, 0, 0, 6e-3]  # a failed fit beside the hole: part of it once dropped
    lr = Volume(t, np.diag([3.0, 3.0, 3.0, 1.0]), "tensor")
    calls = []
    zeroed = inputs.failed_fits_zeroed
    monkeypatch.setattr(inputs, "failed_fits_zeroed", lambda v, failed=None: calls.append(v) or zeroed(v, failed))
    said = inputs.holes_said_apart(lr, None, missing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dropped = inputs.drop_failed_fits(lr, None, refuse=False)
    assert len(calls) == 2, len(calls)
    assert said is not None and said.sum() == 19 and said[11, 8, 7]
    assert np.array_equal(said, enclosed_holes(dropped, None, missing))


@pytest.mark.slow
def test_a_fold_of_background_thick_slices_close_over_is_a_hole_of_the_low_res_mask(sagittal_subject):
    """The sagittal AP dev scan's tight x1,1,3 input (test_symmetry's espcn case) holds a 9-voxel holes line: an inlet
    of background at the brain's edge, open in the high-res mask (made without slice filling, as the subjects' are),
    whose mouth the 8.1 mm slices' block majority closes, so that its mask and fit enclose it in 3D on the input's
    grid. The outputs there are filled from around it, tissue made up where the reference has no brain: the line
    (its "background a wide mask closed over?") is right, not a false alarm."""
    from ImageQualityTransferLib.dmri.subject import make_case

    case = make_case(sagittal_subject, (1, 1, 3), style="tight")
    lr, lr_mask = case.lr, np.asarray(case.lr_mask.data, bool)
    missing = ~np.any(np.asarray(lr.data) != 0, axis=-1)
    found = enclosed_holes(lr, case.lr_mask, missing)
    assert found is not None and found.sum() == 9 and missing[found].all() and not lr_mask[found].any()
    assert np.array_equal(found, ndimage.binary_fill_holes(lr_mask) & ~lr_mask)  # the low-res mask's own cavity
    hr = np.asarray(sagittal_subject.mask.data, bool)[: case.truth.shape[0], : case.truth.shape[1], : case.truth.shape[2]]
    assert not (ndimage.binary_fill_holes(hr) & ~hr).any()  # open in the high-res mask: a fold, not a cavity there


def test_a_hole_against_the_field_s_last_slice_is_counted_with_a_mask_and_without():
    """A brain the field of view cuts at its last slice, a 3x3x2 block with no tensor deep in it against that slice: the
    field's face had been read as the outside, so the block opened onto it and went untold; the face is closed where
    the brain meets it. A notch of background open to the side at the same slice is still no hole."""
    t = np.zeros((24, 24, 10, 6), np.float32)
    t[2:-2, 2:-2, 2:] = TISSUE  # the field's last slice cuts the brain
    brain = np.any(t != 0, axis=-1)
    t[10:13, 10:13, 8:] = 0
    found = _holes(t, Volume(brain, np.eye(4), "mask"))
    assert found is not None and found.sum() == 18, None if found is None else found.sum()
    found = _holes(t)  # without a mask: 7.5 voxels inside the outline along the slice
    assert found is not None and found.sum() == 18, None if found is None else found.sum()
    notch = np.zeros((24, 24, 10, 6), np.float32)
    notch[2:-2, 2:-2, 2:] = TISSUE
    notch[10:13, 2:13, 8:] = 0  # the same block reaching the brain's side: open
    assert _holes(notch) is None and _holes(notch, Volume(brain, np.eye(4), "mask")) is None


def test_a_pocket_of_background_in_the_face_slice_alone_is_no_hole():
    """A brain the field cuts at its last slice, background enclosed within that slice alone (a fold or the skull
    base's background, open beyond the cut): the face is closed by the slice's outline filled in 2D, which had made
    the pocket a hole on clean cut fields (1-13 low-res voxels, docs/measurements.md); the block above, reaching a
    slice off the face, is still one."""
    t = np.zeros((24, 24, 10, 6), np.float32)
    t[2:-2, 2:-2, 2:] = TISSUE
    brain = np.any(t != 0, axis=-1)
    t[10:13, 10:13, 9] = 0  # the face slice only
    mask = Volume(np.any(t != 0, axis=-1), np.eye(4), "mask")  # the fit's own mask, as a tight-style input's
    assert _holes(t, mask) is None and _holes(t) is None
    assert _holes(t, Volume(brain, np.eye(4), "mask")) is None


@pytest.mark.parametrize("name", ["biqt", "cubic"])
def test_a_zeroed_block_in_a_shell_of_failed_fits_at_the_brain_s_edge_is_a_hole_not_a_wider_mask(name):
    """A 3x3x3 block with no tensor in a 5x5x5 shell of failed fits whose outer layer is the brain's edge (the 3 mm dev
    scans' x3 tight inputs, fit mask's deepest voxel 3 voxels in), given the mask it was fitted in: once the failed fits
    are zeroed the block opens onto the background, and its 27 voxels had been said as a mask reaching beyond the fit,
    the user told to give the mask the tensors were fitted in, that very mask. The fits as given enclose it: a hole."""
    g = np.indices((20, 20, 20)) - 9.5
    brain = (g ** 2).sum(0) < 8 ** 2
    t = np.where(brain[..., None], TISSUE, 0).astype(np.float32)
    shell = np.zeros_like(brain)
    shell[2:7, 7:12, 7:12] = True  # its outer layer on the brain's edge at i = 2
    t[shell & brain] = [8e-3, 0, 8e-3, 0, 0, 8e-3]
    t[3:6, 8:11, 8:11] = 0
    lr = Volume(t, np.diag([3.0, 3.0, 3.0, 1.0]), "tensor")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        methods.get(name).predict(lr, 2, Volume(brain, lr.affine, "mask"))
    said = [str(w.message) for w in caught]
    assert not [s for s in said if "give the mask the tensors were fitted in" in s or "of the mask's" in s], said
    holes = [s for s in said if HOLE_SAID in s]
    assert len(holes) == 1 and holes[0].startswith("27 low-res voxels hold no tensor"), said


@pytest.mark.parametrize("whole", [False, True])
def test_a_mask_with_holes_inside_the_brain_is_said_where_the_output_is_zero(whole):
    """A brain mask with its ventricles left out (some tools make such masks), given with tensors that fill them: every
    output is zero there beyond the outputs' reach of one low-res voxel, and had been without a word (a new lab's
    audit). One line counts those voxels; a hole one voxel thick, which that reach covers, is not said."""
    from ImageQualityTransferLib.methods.inputs import MASK_HOLES_SAID

    g = np.indices((20, 20, 20)) - 9.5
    r = np.sqrt((g ** 2).sum(0))
    brain = r < 8.5
    t = np.tile(TISSUE, (20, 20, 20, 1)) if whole else np.where(brain[..., None], TISSUE, 0).astype(np.float32)
    lr = Volume(t, np.diag([3.0, 3.0, 3.0, 1.0]), "tensor")
    ventricles = r < 3.5
    beyond = ventricles & ~ndimage.binary_dilation(brain & ~ventricles, np.ones((3, 3, 3), bool))
    thin = brain.copy()
    thin[9, 9, 9] = False
    for mask, n in ((brain & ~ventricles, int(beyond.sum())), (thin, 0)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = methods.get("biqt").predict(lr, 2, Volume(mask, lr.affine, "mask"), uncertainty=False)
        said = [str(w.message) for w in caught if MASK_HOLES_SAID in str(w.message)]
        assert len(said) == int(bool(n)), said
        assert not n or f"zero over {n} low-res voxels of them" in said[0], said
        out = np.any(np.asarray(pred.tensor.data) != 0, axis=-1)
        assert not (out & grid.repeat_blocks(beyond, 2)).any() if n else out[18:20, 18:20, 18:20].all()
