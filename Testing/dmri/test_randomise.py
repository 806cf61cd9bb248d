"""Domain randomisation of the training inputs: seeded, reproducible, and each variant made as it says."""

import numpy as np
import pytest

from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.dmri import randomise
from ImageQualityTransferLib.dmri.dti import B0_THRESHOLD, spans_tensor


def test_draws_are_seeded_and_cover_every_style(phantom_subject):
    bvals, bvecs = phantom_subject.dwi.bvals, phantom_subject.dwi.bvecs
    kw = dict(subsets=0.5, noise=0.5)
    a = [randomise.draw(np.random.default_rng(5), bvals, bvecs, **kw) for _ in range(1)]
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    first = [randomise.draw(rng1, bvals, bvecs, **kw) for _ in range(200)]
    assert first == [randomise.draw(rng2, bvals, bvecs, **kw) for _ in range(200)]
    plain = [randomise.draw(rng1, bvals, bvecs) for _ in range(50)]  # by default: styles and fits only
    assert all(v.volumes is None and v.snr is None for v in plain) and len({v.style for v in plain}) > 1
    assert a[0] == first[0]
    assert {v.style for v in first} == set(randomise.STYLE_WEIGHTS)
    assert {v.fit for v in first} == {"WLS", "OLS"} and all(v.fit == "OLS" for v in first if v.style == "ols")
    snrs = [v.snr for v in first if v.snr is not None]
    assert 0.3 < len(snrs) / len(first) < 0.7 and min(snrs) >= randomise.SNR_RANGE[0] and max(snrs) <= randomise.SNR_RANGE[1]
    subsets = [v.volumes for v in first if v.volumes is not None]
    assert subsets, "no draw took a subset of the directions"
    for vols in subsets:
        b = bvals[list(vols)]
        assert (b <= B0_THRESHOLD).sum() >= 1 and (b > B0_THRESHOLD).sum() >= randomise.MIN_DIRECTIONS
    assert randomise.draw(np.random.default_rng(1), bvals, bvecs) != randomise.draw(np.random.default_rng(2), bvals, bvecs)


def test_subsets_of_repeated_directions_still_determine_the_tensor():
    """A protocol that acquires each direction twice: every subset drawn spans the six tensor elements."""
    g = np.random.default_rng(0).normal(size=(10, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    bvecs = np.r_[np.zeros((1, 3)), g, g]
    bvals = np.r_[0.0, np.full(20, 1000.0)]
    rng = np.random.default_rng(3)
    for _ in range(100):
        v = randomise.draw(rng, bvals, bvecs, subsets=1.0)
        if v.volumes is not None:
            assert spans_tensor(bvecs[[i for i in v.volumes if bvals[i] > 0]])


def test_a_variant_is_made_as_it_says_and_reproducibly(phantom_subject):
    mask = phantom_subject.mask.data
    plain = randomise.degrade_variant(phantom_subject.dwi, mask, 2, (1, 0, 1), randomise.Variant())
    from ImageQualityTransferLib.dmri import degrade

    np.testing.assert_array_equal(plain.tensor.data,
                                  degrade.degrade(phantom_subject.dwi, mask, 2, (1, 0, 1)).tensor.data)
    lr_mask = plain.mask.data
    tight = randomise.degrade_variant(phantom_subject.dwi, mask, 2, (1, 0, 1), randomise.Variant("tight", "OLS"))
    assert np.array_equal(np.any(tight.tensor.data != 0, -1), lr_mask)
    unmasked = randomise.degrade_variant(phantom_subject.dwi, mask, 2, (1, 0, 1), randomise.Variant("unmasked"))
    assert np.any(unmasked.tensor.data != 0, -1).mean() > 0.95
    noisy = randomise.Variant("ols", "OLS", volumes=tuple(range(0, 9)), snr=8.0, noise_seed=11)
    a = randomise.degrade_variant(phantom_subject.dwi, mask, 2, (0, 0, 0), noisy)
    b = randomise.degrade_variant(phantom_subject.dwi, mask, 2, (0, 0, 0), noisy)
    np.testing.assert_array_equal(a.tensor.data, b.tensor.data)
    clean = randomise.degrade_variant(phantom_subject.dwi, mask, 2, (0, 0, 0),
                                      randomise.Variant("ols", "OLS", volumes=noisy.volumes))
    err = np.abs(a.tensor.data - clean.tensor.data)[a.mask.data].mean()
    assert err > 0.02 * np.abs(clean.tensor.data[a.mask.data]).mean()  # the noise reached the fit
    lam = np.linalg.eigvalsh(tensors.to_matrix(a.tensor.data[a.mask.data].astype(float)))
    assert (lam[:, 0] < 0).any()  # OLS at SNR 8: negative eigenvalues kept


def test_cnn_training_items_are_randomised_reproducibly(phantom_subject):
    """The subject given loaded (load_items takes a Subject as it takes its folder: dmri.subject.as_subject), so the
    three runs share its one reading and fit; each draws and degrades its variants afresh."""
    pytest.importorskip("torch", reason="PyTorch is not installed: the CNN training needs it")
    from ImageQualityTransferLib.methods.cnn import training_data

    kw = dict(r=2, patch=6, variants=2)
    a = training_data.load_items([phantom_subject], randomise_seed=4, **kw)
    b = training_data.load_items([phantom_subject], randomise_seed=4, **kw)
    c = training_data.load_items([phantom_subject], randomise_seed=5, **kw)
    assert len(a) == 16 and [x.variant for x in a] == [x.variant for x in b] != [x.variant for x in c]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.lr_pad, y.lr_pad)
        np.testing.assert_array_equal(x.res, y.res)
    assert len({x.variant["style"] for x in a}) > 1
