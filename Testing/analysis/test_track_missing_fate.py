"""`iqt track` on a tensor file with NaN voxels inside the tensors says what tracking does with them (core/tensors
MISSING_AS_TRACKED, set around its read), not what the upsampling methods do ('... the learned methods fill
such voxels from the nearest fits, interpolation takes them as zero', the default MISSING_AS_INPUT)."""

from __future__ import annotations

import numpy as np
from helpers import bundle_volume

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.core import tensor_checks
from ImageQualityTransferLib.core.volume import Volume


def test_track_says_what_tracking_does_with_missing_voxels(tmp_path, capsys):
    vol = bundle_volume()
    t = np.array(vol.data)
    t[20, 6:10, 6:10] = np.nan  # failed fits across the whole bundle, inside the tensors
    fileio.save_tensor(Volume(t, vol.affine, "tensor"), tmp_path / "dti.nii.gz")
    roi = np.zeros(vol.shape3, bool)
    roi[10, 7:9, 7:9] = True  # seeds before them
    fileio.save_mask(Volume(roi, vol.affine, "mask"), tmp_path / "roi.nii.gz")
    rc = main(["track", str(tmp_path / "dti.nii.gz"), "--seeds", str(tmp_path / "roi.nii.gz"), "-o",
               str(tmp_path / "t.trk")])
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "NaN in every element" in line]
    assert rc == 0 and len(said) == 1, err
    assert said[0].endswith(tensor_checks.MISSING_AS_TRACKED), said[0]  # before: ... interpolation takes them as zero
    assert tensor_checks.MISSING_AS_INPUT not in err
    from ImageQualityTransferLib.analysis import tractography
    from ImageQualityTransferLib.fileio import tracts

    density = tractography.density_map(tracts.load_tracts(tmp_path / "t.trk"), vol.affine, vol.shape3)
    assert density[:20].any() and not density[21:].any()  # as said: the streamlines stop at them, none crosses
