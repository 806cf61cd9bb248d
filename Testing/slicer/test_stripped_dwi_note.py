"""The module's fit of a skull-stripped DWI without a mask: its note says where the mask came from."""

import warnings

import numpy as np

from ImageQualityTransferLib.core.errors import IQTWarning
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.dmri import dti


def test_the_slicer_modules_note_says_where_a_stripped_dwis_mask_came_from(axial_subject):
    """The module's fit note said "median Otsu" for a stripped DWI's mask, and the engine's line, naming a command-line
    option, went to the console (a code review)."""
    from ImageQualityTransferLib.slicer.processing import fit_dwi

    own = dti.brain_mask(axial_subject.dwi).data
    with warnings.catch_warnings():
        warnings.simplefilter("error", IQTWarning)  # nothing to the console: said in the notes
        lr, mask = fit_dwi(Volume(axial_subject.dwi.data * own[..., None], axial_subject.dwi.affine, "dwi",
                                  bvals=axial_subject.dwi.bvals, bvecs=axial_subject.dwi.bvecs))
    note = next(n for n in lr.meta["input_notes"] if n.startswith("no mask was chosen"))
    assert "the region where the DWI is non-zero (it was skull-stripped" in note and np.array_equal(mask.data, own)
