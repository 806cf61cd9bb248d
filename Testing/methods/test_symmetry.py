"""Averaging over the grid's symmetries (`--tta`): the transforms, their inverses, that interpolation commutes with
them (so the transforms and the grid convention agree), and that on a real subject the averaged CNN beats the plain one."""

from __future__ import annotations

import numpy as np
import pytest

from ImageQualityTransferLib import methods
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.methods import symmetry
from ImageQualityTransferLib.methods.interpolation import upsample_separable


@pytest.mark.parametrize("f, n", [((2, 2, 2), 16), ((1, 1, 3), 16), ((3, 1, 1), 16), ((1, 2, 3), 8)])
def test_transforms_keep_the_factors(f, n):
    ps = symmetry.transforms(f)
    assert len(ps) == n and np.array_equal(ps[0], np.eye(3, dtype=int))
    assert len({p.tobytes() for p in ps}) == n
    for p in ps:
        assert np.array_equal(np.abs(p) @ np.array(f), np.array(f))  # the factor of every new axis is the old one's


def _gradient_tensors(phi):
    g = np.stack(np.gradient(phi), axis=-1)
    return tensors.from_matrix(g[..., :, None] * g[..., None, :])


def test_apply_then_undo_is_the_identity_and_tensors_turn_with_the_axes():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(5, 6, 7, 6))
    # a tensor field made from the gradient of a scalar field with no symmetry of its own: moving the tensors
    # must give the field made from the moved scalar field (the voxels and the tensors' axes move together)
    x, y, z = np.meshgrid(*(np.arange(n, dtype=float) for n in (5, 6, 7)), indexing="ij")
    phi = 0.3 * x + 0.7 * y**2 - 0.2 * z + 0.1 * x * z + 0.05 * y * z**2
    field = _gradient_tensors(phi)
    for p in symmetry.transforms((2, 2, 2)):
        np.testing.assert_array_equal(symmetry.undo(symmetry.apply(t, p, True), p, True), t)
        np.testing.assert_allclose(symmetry.apply(field, p, True), _gradient_tensors(symmetry.apply(phi, p, False)),
                                   atol=1e-9)


@pytest.mark.parametrize("f", [(2, 2, 2), (1, 1, 3)])
def test_interpolation_commutes_with_every_transform(f):
    """Cubic B-spline upsampling is symmetric: averaging it would change nothing, and any error in the transforms or
    in how the high-res grid follows the low-res one would show here."""
    rng = np.random.default_rng(1)
    lr = rng.normal(size=(6, 7, 5, 6)).astype(np.float32)
    plain = upsample_separable(lr, f, 3)
    for p in symmetry.transforms(f):
        back = symmetry.undo(upsample_separable(symmetry.apply(lr, p, True), f, 3), p, True)
        np.testing.assert_allclose(back, plain, atol=1e-5)
    avg, _ = symmetry.average(lambda x, m, prog: (upsample_separable(x, f, 3), {}), lr, None, f)
    np.testing.assert_allclose(avg, plain, atol=1e-5)


def test_progress_runs_over_all_transforms_and_maps_are_averaged():
    seen = []
    lr = np.ones((3, 3, 3, 6), np.float32)
    mask = np.zeros((3, 3, 3), bool)
    mask[0, 0, 0] = True

    def predict(x, m, prog):
        prog(1.0)
        return x.copy(), {"std": m.astype(np.float32), "none": None}

    t, maps = symmetry.average(predict, lr, mask, (2, 2, 2), seen.append)
    assert seen == pytest.approx([(k + 1) / 16 for k in range(16)])
    np.testing.assert_array_equal(maps["std"], mask)  # each map is mapped back before averaging
    assert maps["none"] is None


def test_tta_is_a_setting_of_learned_methods_only():
    from ImageQualityTransferLib.core.errors import IQTError

    with pytest.raises(IQTError, match="--tta applies to the learned methods"):
        methods.get("cubic", tta=True)
    assert methods.get("cubic").label == "cubic"
    m = methods.get("espcn", tta=True)
    assert m.tta and m.label == "espcn+tta"


@pytest.mark.slow
@pytest.mark.skipif("espcn" not in methods.ready((1, 1, 3)), reason="no espcn model for 1,1,3 here")
def test_averaged_espcn_beats_the_plain_one_on_a_real_subject_and_stays_zero_outside(sagittal_subject):
    """Averaged over the 16 flips and transposes, espcn's x1,1,3 output beats the plain one and stays zero outside its
    support. The holes line this input prints (9 low-res voxels) is right: its thick slices close an inlet of
    background into a cavity of the mask (test_holes.py, the fold test)."""
    from ImageQualityTransferLib.dmri.subject import make_case
    from ImageQualityTransferLib.analysis import evaluation

    case = make_case(sagittal_subject, (1, 1, 3), style="tight")
    plain = methods.get("espcn").predict(case.lr, case.factor, case.lr_mask)
    avg = methods.get("espcn", tta=True).predict(case.lr, case.factor, case.lr_mask)
    assert avg.tensor.meta["averaged_over"] == 16
    outside = plain.tensor.data == 0
    assert np.all(avg.tensor.data[outside] == 0)
    e = [evaluation.evaluate(p.tensor.data, case.truth, case.hr_mask, case.lr_mask.data, case.factor)["interior"]["dt_rmse"]
         for p in (plain, avg)]
    assert e[1] < 0.995 * e[0], e
