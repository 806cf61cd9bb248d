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
