"""Uncertainty propagation gives the same maps and streamlines for the same tensors stored in another voxel order: the
samples and the random seeds were drawn on the stored grid, so a LAS, RAS or PSR copy of one prediction gave maps that
differed as much as another --seed would (fa_mean by 0.030 at the median voxel, the visitation in 12,939 voxels; an
audit of `iqt upsample --propagate`). They are now drawn in canonical (RAS) voxel axes, as the methods work."""

from __future__ import annotations

import numpy as np
import pytest

from ImageQualityTransferLib.analysis import propagation, tractography as tr
from ImageQualityTransferLib.core.orientation import reorient
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.dmri.dti import fit_dti
from ImageQualityTransferLib.dmri.phantom import make_phantom
from ImageQualityTransferLib.methods import Prediction

ORDERS = ("LAS", "RAS", "PSR")  # the phantom's own order, the canonical one, and one with the axes permuted


@pytest.fixture(scope="module")
def tensor():
    return fit_dti(make_phantom(shape=(28, 32, 24), n_dirs=12, snr=None))


def std_map(vol, per_element):
    """A std map of the tensors `vol`: 0.3 of each element's size, per element or averaged over the 6."""
    t = np.abs(np.asarray(vol.data, np.float32))
    std = np.where(t.any(axis=-1)[..., None], 0.3 * t + 1e-5, 0.0).astype(np.float32)
    return Volume(std if per_element else std.mean(axis=-1), vol.affine, "scalar")


def prediction(tensor, order, per_element):
    """The tensors stored in `order` with a std map that follows them: per element (its elements permuted with the
    tensor's, as a method's are), or one averaged over the elements (stored in `order` as a scalar map)."""
    vol = reorient(tensor, order)
    return Prediction(vol, std=std_map(vol, True) if per_element else reorient(std_map(tensor, False), order))


@pytest.mark.parametrize("per_element", [False, True])
def test_the_propagated_maps_do_not_depend_on_the_voxel_order(tensor, monkeypatch, per_element):
    tracked = []
    track_fields = tr.track_fields

    def recording(*args, **kw):
        lines = track_fields(*args, **kw)
        tracked[-1].append(lines)
        return lines

    monkeypatch.setattr(tr, "track_fields", recording)
    maps = {}
    for order in ORDERS:
        tracked.append([])
        res = propagation.propagate(prediction(tensor, order, per_element), n=3, rng=7, n_seeds=150)
        stored = reorient(tensor, order)
        assert all(np.array_equal(getattr(res, k).affine, stored.affine) for k in propagation.MAPS)  # on the stored grid
        maps[order] = {k: reorient(getattr(res, k), "RAS").data for k in propagation.MAPS}
        maps[order]["dice"] = res.dice_between_samples + res.dice_to_mean
    assert min(len(lines) for lines in tracked[0]) > 20  # the samples are tracked
    for order in ORDERS[1:]:
        for k in propagation.MAPS:
            np.testing.assert_allclose(maps[order][k], maps["LAS"][k], rtol=1e-6, atol=1e-9, err_msg=f"{order} {k}")
        np.testing.assert_allclose(maps[order]["dice"], maps["LAS"]["dice"], rtol=1e-9)
    for lines in tracked[1:]:  # the same streamlines in world millimetres, sample by sample
        assert [len(a) for a in lines] == [len(b) for b in tracked[0]]
        for a, b in zip(lines, tracked[0]):
            assert [len(x) for x in a] == [len(y) for y in b]
            for x, y in zip(a, b):
                np.testing.assert_allclose(x, y, atol=1e-4)


def test_the_same_seed_draws_the_same_maps_in_any_order(tensor):
    a, b, c = (propagation.propagate(prediction(tensor, "PSR", False), n=2, rng=r, n_seeds=50) for r in (3, 3, 4))
    for k in propagation.MAPS:
        assert np.array_equal(getattr(a, k).data, getattr(b, k).data), k
    assert not np.array_equal(a.fa_mean.data, c.fa_mean.data)
