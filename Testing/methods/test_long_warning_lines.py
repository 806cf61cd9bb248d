"""The long warnings real runs print are said over lines of about PIECE_LIMIT characters after the file's name
(methods/base.py warning_lines), nothing lost: the failed fits' line (309 characters with its path on an SNR-5 OLS
input), the mean diffusivity at or below zero (324), the whole field's piece on the output (220), iqt fit's poorly
conditioned directions (628) had each been one line; the gradient-table check's undecided line, six lines on a noisy
run, is five."""

from __future__ import annotations

import warnings

import helpers
import numpy as np
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.core.errors import IQTWarning
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.methods import base

SOURCE = "/data/study/derivatives/sub-01/ses-1/dwi/sub-01_ses-1_desc-unmasked_dti.nii.gz: "  # as long as a cohort's
LONGEST = 130  # about base.PIECE_LIMIT (120): a piece that fits no line with another stands alone, up to 127


def _printed(capsys, call) -> list[str]:
    """The one warning `call` gives, as `iqt` prints it for a file named SOURCE: each line's text after the name, and
    checked to name the file on every line and to hold the warning's pieces whole."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    [said] = [str(w.message) for w in caught if issubclass(w.category, IQTWarning)]
    said = SOURCE + said.removeprefix("p: ")
    cli._show_warning(said, IQTWarning, __file__, 1)
    printed = [line.removeprefix("iqt: warning: ") for line in capsys.readouterr().err.splitlines()]
    assert all(line.startswith(SOURCE) for line in printed), printed
    bodies = [line.removeprefix(SOURCE) for line in printed]
    assert "; ".join(bodies) == said.removeprefix(SOURCE), bodies  # nothing lost, added or reworded
    return bodies


def test_the_failed_fits_line_is_said_over_short_lines(capsys):
    from ImageQualityTransferLib.methods import inputs

    t = np.zeros((10, 10, 10, 6))
    t[..., 0] = t[..., 2] = t[..., 5] = 0.7e-3
    t[4:6, 4:6, 4, 0] = -0.01  # failed fits below the plausible range: no usual cause, a warning
    lr = Volume(t, np.eye(4), "tensor", meta={"path": "p"})
    bodies = _printed(capsys, lambda: inputs.drop_failed_fits(lr, Volume(np.ones((10, 10, 10), bool), np.eye(4), "mask")))
    assert len(bodies) > 1 and max(map(len, bodies)) <= LONGEST, bodies
    assert bodies[0].startswith("4 voxels in the mask hold a failed fit (an eigenvalue outside"), bodies


def test_the_md_at_or_below_zero_line_is_said_over_short_lines(capsys):
    from ImageQualityTransferLib.core import tensor_checks

    md = np.full(1000, 0.7e-3)
    md[:20] = -1e-4
    bodies = _printed(capsys, lambda: tensor_checks._check_negative_md(md, "input", "p: "))
    assert len(bodies) > 1 and max(map(len, bodies)) <= LONGEST, bodies
    assert bodies[0] == "20 of the input tensors in the brain (2.0 %) have a mean diffusivity at or below zero, which no " \
                        "tissue has", bodies


def test_the_whole_field_warning_keeps_three_short_lines(capsys):
    lr = helpers.brain_outnumbered_by_its_background()[0]
    lr = lr.replace(meta={"path": "p"})
    bodies = _printed(capsys, lambda: base.Method.support(lr))
    assert len(bodies) == 3 and max(map(len, bodies)) <= LONGEST, bodies
    assert bodies[-1].endswith("give --mask with a brain mask to leave out scalp and background"), bodies


def test_the_poorly_conditioned_directions_line_is_said_over_short_lines(capsys):
    from ImageQualityTransferLib.dmri import outliers
    from ImageQualityTransferLib.dmri.dti import POOR_CONDITION, table_condition

    rng = np.random.default_rng(0)  # 7 directions within 25 degrees of one axis: full rank, poorly conditioned
    polar, azimuth = np.radians(rng.uniform(5, 25, 7)), np.linspace(0, 2 * np.pi, 7, endpoint=False)
    bvecs = np.r_[[[0, 0, 0]], np.c_[np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)]]
    bvals = np.r_[0, np.full(7, 1000.0)]
    assert POOR_CONDITION < table_condition(bvals, bvecs) < np.inf
    dwi = Volume(np.ones((2, 2, 2, 8)), np.eye(4), "dwi", bvals=bvals, bvecs=bvecs, meta={"path": "p"})
    bodies = _printed(capsys, lambda: outliers.say_poor_condition(dwi, None, 2))
    assert len(bodies) > 1 and max(map(len, bodies)) <= LONGEST, bodies
    assert bodies[0] == "the 7 diffusion-weighted directions determine the tensor poorly", bodies


def test_the_undecided_gradient_line_is_five_short_lines(capsys):
    """A noisy run's longest warning: the new fit that cannot judge either said in the first line, and the higher-SNR
    scan and the eye's check in one, where two lines had each said "check the table"."""
    from ImageQualityTransferLib.methods import inputs

    lr = Volume(np.ones((4, 4, 4, 6), np.float32), np.eye(4), "tensor", meta={"path": "p"})
    bodies = _printed(capsys, lambda: inputs.warn_frame_noise(lr))
    assert len(bodies) == 5 and max(map(len, bodies)) <= LONGEST, bodies
    assert sum("check the" in b for b in bodies) == 1 and "nor can a new fit of this DWI" in bodies[0], bodies
