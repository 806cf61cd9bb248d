"""Coarser copies of a subject (`iqt train --coarsen`): the blur and grid of dmri/resample.py, and the copies made."""

import json

import numpy as np
import pytest

from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.dmri import resample
from ImageQualityTransferLib.dmri.subject import Coarsened, as_subject, coarser_copies

OBLIQUE = np.array([[-1.75, 0.10, 0.0, 90.0], [0.05, 1.75, 0.2, -120.0], [0.0, -0.1, 2.5, -60.0], [0, 0, 0, 1]])


def _world(affine, shape):
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(float)
    return idx @ affine[:3, :3].T + affine[:3, 3]


def _dwi(data, affine):
    n = data.shape[-1]
    return Volume(data.astype(np.float32), affine, "dwi", bvals=np.r_[0, np.full(n - 1, 1000.0)],
                  bvecs=np.r_[[[0, 0, 0]], np.eye(3)[np.arange(n - 1) % 3]])


def test_a_linear_field_stays_linear_at_the_new_voxel_centres():
    """Blur and trilinear sampling keep a linear function of position: the values at the new centres (away from the
    border) are the function at their world positions, which checks the new affine too."""
    shape = (40, 36, 30)
    w = _world(OBLIQUE, shape)
    coef = np.array([[3.0, 0.5, -0.2, 0.1], [2.0, -0.3, 0.4, 0.25]])  # two volumes: a + b.x
    data = np.stack([c[0] + w @ c[1:] for c in coef], -1) + 200.0
    out = resample.coarsen(_dwi(data, OBLIQUE), 3.0)
    assert np.allclose(out.voxel_size, [3.0, 3.0, 3.0], atol=0.02)  # the axes' norms, oblique columns included
    assert out.shape3 == (23, 21, 25)
    inner = (slice(2, -2),) * 3
    wn = _world(out.affine, out.shape3)
    expect = np.stack([c[0] + wn @ c[1:] for c in coef], -1) + 200.0
    np.testing.assert_allclose(out.data[inner], expect[inner], rtol=0, atol=1e-3)
    assert out.meta["coarsened_to_mm"] == 3.0 and out.bvals is not None


def test_the_new_voxels_tile_the_same_field_of_view():
    """2 mm -> 4 mm: new voxel 0 covers old voxels 0 and 1, so its centre is old index 0.5 on each axis."""
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-10, 5, 7]
    out = resample.coarsen(_dwi(np.ones((10, 9, 8, 4)), aff), 4.0)
    assert out.shape3 == (5, 4, 4)
    np.testing.assert_allclose(out.affine @ [0, 0, 0, 1], aff @ [0.5, 0.5, 0.5, 1])
    np.testing.assert_allclose(out.data, 1.0, atol=1e-6)  # a constant stays constant, borders included


def test_axes_already_coarse_are_left_as_they_are():
    aff = np.diag([4.0, 4.0, 2.0, 1.0])
    rng = np.random.default_rng(0)
    data = rng.random((8, 7, 12, 4)) + 1
    out = resample.coarsen(_dwi(data, aff), 3.0)
    assert out.shape3 == (8, 7, 8) and np.allclose(out.voxel_size, [4, 4, 3])
    same = resample.coarsen(_dwi(data, np.diag([4.0, 4.0, 4.0, 1.0])), 3.0)
    np.testing.assert_allclose(same.data, data, atol=1e-6)
    with pytest.raises(IQTError, match="give a voxel size in mm"):
        resample.coarsen(_dwi(data, aff), 0.0)


def test_copies_only_where_the_subject_is_finer(small_subject):
    """The 4 mm phantom gets a 6 mm copy, not a 3 mm one; the copy loads as a subject of that voxel size."""
    copies = coarser_copies([small_subject], [3.0, 6.0])
    assert copies == [Coarsened(str(small_subject), 6.0)]
    s = as_subject(copies[0])
    assert s.name == f"{small_subject.name}_at6mm"
    assert np.allclose(s.dwi.voxel_size, 6.0) and s.dwi.shape3 == (21, 24, 18)
    assert s.mask.data.any() and s.tensor.data.shape == (21, 24, 18, 6)


def test_train_coarsen_reaches_the_training_data_and_the_sidecar(small_subject, tmp_path, capsys):
    from ImageQualityTransferLib.apps.cli import main

    for name, extra in (("plain", []), ("coarse", ["--coarsen", "6"])):
        assert main(["train", "--method", "global-linear", "--subjects", str(small_subject), "-o",
                     str(tmp_path / f"{name}.npz"), *extra]) == 0
    side = json.loads((tmp_path / "coarse.json").read_text())["training"]
    assert side["subjects"] == [small_subject.name, f"{small_subject.name}_at6mm"]
    assert "--coarsen 6" in side["command"]
    plain = json.loads((tmp_path / "plain.json").read_text())["training"]
    assert side["examples"] > plain["examples"]
    capsys.readouterr()
    assert main(["train", "--method", "global-linear", "--subjects", str(small_subject), "-o",
                 str(tmp_path / "bad.npz"), "--coarsen", "3mm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--coarsen 3mm: give voxel sizes in mm" in err[0]
    assert not (tmp_path / "bad.npz").exists()


def test_detail_finer_than_the_new_voxels_is_blurred_away():
    """1 mm stripes sampled onto 3 mm voxels: the new centres fall on old voxel centres, so sampling alone would keep
    the stripes at full contrast; the acquisition blur leaves under a tenth of it."""
    stripes = np.where(np.arange(30) % 2 == 0, 1.0, -1.0)
    data = np.broadcast_to(stripes[:, None, None, None], (30, 12, 12, 4)) + 10.0
    out = resample.coarsen(_dwi(np.array(data), np.eye(4)), 3.0)
    assert out.shape3 == (10, 4, 4)
    contrast = np.abs(out.data[2:-2] - 10.0).max()
    assert contrast < 0.1, contrast


def test_cnn_training_items_come_from_the_coarser_copy(small_subject):
    """The CNNs' training data take a `Coarsened` entry as the forests' library does: the items are the copy's."""
    pytest.importorskip("torch")
    from ImageQualityTransferLib.methods.cnn import training_data

    items = training_data.load_items([Coarsened(str(small_subject), 6.0)], 2, patch=6)
    assert len(items) == 8 and {it.name for it in items} == {f"{small_subject.name}_at6mm"}
    assert items[0].inner().shape[:3] == (10, 12, 9)  # the 21x24x18 copy at factor 2, shift 0

