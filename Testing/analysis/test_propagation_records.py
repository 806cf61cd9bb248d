"""Uncertainty propagation's maps (`iqt propagate`, `iqt upsample --propagate`) record their kind and unit in the
header as the uncertainty maps do ("iqt espcn-hetero-var1 visitation unitless"; pr_visitation.nii.gz had an
empty description), so that `iqt evaluate` refuses one given as another kind of map."""

import numpy as np

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.analysis import propagation
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.fileio.records import read_map_record

UNITS = {"fa_mean": "unitless", "fa_std": "unitless", "md_mean": "mm2/s", "md_std": "mm2/s", "visitation": "unitless"}


def test_each_propagation_map_records_its_kind_and_unit(tmp_path):
    vol = Volume(np.full((3, 4, 2), 0.25, np.float32), np.eye(4), "scalar")
    res = propagation.Propagation(fa_mean=vol, fa_std=vol, md_mean=vol, md_std=vol, visitation=vol,
                                  dice_between_samples=[0.8], dice_to_mean=[0.9], n_streamlines=[10], n_samples=2)
    paths = propagation.output_paths(tmp_path, "pr_")
    line = propagation.write(res, paths, "espcn-hetero-var1", tmp_path / "lr.nii.gz")
    assert "pr_visitation.nii.gz" in line
    for name, unit in UNITS.items():
        descrip = fileio.load_scalar(paths[name]).meta["descrip"]
        assert descrip == f"iqt espcn-hetero-var1 {name} {unit}", name
        assert read_map_record(descrip) == name


def test_no_sample_mean_diffusivity_below_zero_reaches_the_md_maps():
    """The brain edge of a whole-field input's prediction holds tensors of MD near or below zero (not physical); the
    unclipped mean of their samples' MD had written md_mean -6e-4 mm^2/s there. A sample's MD below 0 reads as 0 in
    md_mean (no diffusion), the voxels counted in the summary; md_std keeps the drawn spread (clipped, such a voxel read
    0, "certain"); a tissue voxel's maps are those of the unclipped samples."""
    from ImageQualityTransferLib.methods import Prediction

    t = np.zeros((2, 1, 1, 6), np.float32)
    t[0, 0, 0, [0, 2, 5]] = 0.7e-3  # tissue: its samples' MD stays far above 0
    t[1, 0, 0, [0, 2, 5]] = (-2e-4, 1e-4, -5e-5)  # an edge voxel's non-physical mean, MD -5e-5
    std = Volume(np.full((2, 1, 1), 1e-5, np.float32), np.eye(4), "scalar")
    res = propagation.propagate(Prediction(Volume(t, np.eye(4), "tensor"), std=std), n=20, rng=1, track=False)
    md_mean, md_std = res.md_mean.data[:, 0, 0], res.md_std.data[:, 0, 0]
    assert md_mean.min() >= 0 and md_mean[1] < 1e-5 and abs(md_mean[0] - 0.7e-3) < 2e-5
    assert md_std[0] > 0 and md_std[1] > 2e-6 and res.summary()["md_clipped_voxels"] == 1


def test_md_mean_is_the_samples_unclipped_mean_where_the_prediction_diffuses():
    """Clipping each sample's MD at 0 before the mean raised md_mean where the spread nears MD, in physical voxels
    too (median +21 % where md_std is 1-2x MD, an unmasked dStream scan, deep-hetero-var1 x2), and gave non-physical
    voxels a tissue-like MD. MD is linear in the elements: the unclipped mean is unbiased; a voxel whose prediction has
    no positive MD reads 0, counted once whatever the number of samples; md_std is the drawn spread."""
    from ImageQualityTransferLib.methods import Prediction

    t = np.zeros((50, 20, 2, 6), np.float32)
    t[..., [0, 2, 5]] = 0.7e-3  # MD 0.7e-3; sigma 1.2e-3 per element gives md_std 0.69e-3 ~ MD
    t[:5, 0, 0, [0, 2, 5]] = (-2e-4, 1e-4, -5e-5)  # 5 voxels of MD -5e-5, the prediction not physical
    phys = np.ones((50, 20, 2), bool)
    phys[:5, 0, 0] = False
    std = Volume(np.full((50, 20, 2), 1.2e-3, np.float32), np.eye(4), "scalar")
    pred = Prediction(Volume(t, np.eye(4), "tensor"), std=std)
    for n in (20, 40):
        res = propagation.propagate(pred, n=n, rng=3, track=False)
        md_mean, md_std = res.md_mean.data, res.md_std.data
        assert abs(md_mean[phys].mean() / 0.7e-3 - 1) < 0.03, n  # before: +8 %
        assert not md_mean[~phys].any() and md_mean.min() >= 0, n
        assert res.summary()["md_clipped_voxels"] == 5, n  # before: any sample below 0 (1,944 of 2,000 at 20)
        assert abs(np.median(md_std[phys]) / (1.2e-3 / np.sqrt(3)) - 1) < 0.15, n


def test_md_clipped_voxels_counts_the_prediction_s_own_whatever_the_samples():
    """`md_clipped_voxels` had counted the voxels md_mean reads 0 for either reason, the prediction's MD not above zero
    or its samples' mean falling below zero by chance, so it varied with --samples (3,306 / 1,876 / 1,621 at 5 / 20 /
    40 on one input, a review). It counts the prediction's own, the same at any --samples; the chance ones are
    `md_mean_below_zero_voxels`, which falls as the samples grow."""
    from ImageQualityTransferLib.methods import Prediction

    t = np.zeros((40, 20, 2, 6), np.float32)
    t[..., [0, 2, 5]] = 0.1e-3  # MD 1e-4 under md_std 0.69e-3: 5 samples' mean falls below 0 in about a third
    t[:5, 0, 0, [0, 2, 5]] = (-2e-4, 1e-4, -5e-5)  # 5 voxels of MD -5e-5, the prediction not physical
    pred = Prediction(Volume(t, np.eye(4), "tensor"), std=Volume(np.full((40, 20, 2), 1.2e-3, np.float32), np.eye(4),
                                                                  "scalar"))
    chance = []
    for n in (5, 40):
        res = propagation.propagate(pred, n=n, rng=3, track=False)
        summary = res.summary()
        assert summary["md_clipped_voxels"] == 5, n
        assert summary["sampled_voxels"] == 40 * 20 * 2, n  # what the counts are out of (a review: 1,305 of what?)
        chance.append(summary["md_mean_below_zero_voxels"])
        assert np.count_nonzero(res.md_mean.data == 0) == 5 + chance[-1], n
    assert chance[0] > chance[1] > 0, chance
