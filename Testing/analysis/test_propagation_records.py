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
