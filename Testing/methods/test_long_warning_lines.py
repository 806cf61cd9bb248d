"""The long warnings real runs print are said over lines of about PIECE_LIMIT characters after the file's name
(methods/base.py warning_lines), nothing lost: the failed fits' line (309 characters with its path on an SNR-5 OLS
input), the mean diffusivity at or below zero (324), the whole field's piece on the output (220), iqt fit's poorly
conditioned directions (628) had each been one line; the gradient-table check's undecided line, six lines on a noisy
run, is five. Then iqt fit's misfit line (304-427 characters after the file's name), its halves that disagree, the
tensors' directions looking mirrored and the MD at or below zero of iqt upsample's output (iqt track's lines); then
iqt track's whole-field line (439 characters after the file's name), the gradient table looking wrong (563-651 after
the name) and iqt fit's poorly conditioned line's last piece with --exclude-outliers (127). Under a stand-in translator
each is said as one whole line."""

from __future__ import annotations

import warnings

import helpers
import numpy as np
import pytest
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


def _whole_under_a_translator(capsys, call) -> None:
    """The one warning `call` gives, under the stand-in translator (helpers.vowels_translated), printed whole on one
    line: its pieces are joined in one marked template, which a translation need not split where the English does."""
    with helpers.vowels_translated(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    [said] = [" ".join(str(w.message).split()) for w in caught if issubclass(w.category, IQTWarning)]
    cli._show_warning(said, IQTWarning, __file__, 1)
    assert capsys.readouterr().err.splitlines() == [f"iqt: warning: {said}"]
    assert "thE" in said, said  # translated


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


@pytest.mark.slow  # two fits of the coarse phantom: 2-3 s
def test_the_misfit_line_is_said_over_short_lines_with_and_without_exclude_outliers(coarse_phantom, capsys):
    """A dropout in two slices of one volume and a dead volume: the misfit line, one line of 300-430 characters after
    the file's name, is said over lines of whole pieces, whether the fit leaves them out or not."""
    from ImageQualityTransferLib.dmri import outliers
    from ImageQualityTransferLib.dmri.dti import B0_THRESHOLD, brain_mask, fit_dti

    dw = np.flatnonzero(coarse_phantom.bvals > B0_THRESHOLD)
    d = np.array(coarse_phantom.data)
    d[:, :, 14:16, dw[2]] *= 0.2
    d[..., dw[5]] = 0.0
    dwi = coarse_phantom.replace(data=d, meta={"path": "p"})
    mask = brain_mask(dwi)
    fitted = fit_dti(dwi, mask)
    for exclude in (False, True):
        bodies = _printed(capsys, lambda: outliers.check_fit(dwi, mask, fitted, exclude))
        assert len(bodies) > 2 and max(map(len, bodies)) <= LONGEST, bodies
        assert bodies[0].startswith("the tensor model does not fit parts of the series"), bodies
        assert any(b.startswith(f"volume {dw[5]} in every slice") for b in bodies), bodies
        assert ("fitted without them" in "".join(bodies)) == exclude, bodies


def test_a_slice_that_may_hold_more_is_said_over_short_lines(capsys):
    """14 of 20 directions of a slice dropped out: at most half are left out, said in a piece of its own (136 characters
    after the file's name on an 8-direction series cut from a real scan had stood alone over PIECE_LIMIT)."""
    from ImageQualityTransferLib.dmri import outliers
    from ImageQualityTransferLib.dmri.dti import B0_THRESHOLD, brain_mask, fit_dti
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=(32, 36, 28), voxel_mm=4.0, n_dirs=20)
    d = np.array(dwi.data)
    d[:, :, 14, np.flatnonzero(dwi.bvals > B0_THRESHOLD)[:14]] *= 0.2
    dwi = dwi.replace(data=d, meta={"path": "p"})
    mask = brain_mask(dwi)
    bodies = _printed(capsys, lambda: outliers.check_fit(dwi, mask, fit_dti(dwi, mask), True))
    assert max(map(len, bodies)) <= base.PIECE_LIMIT, bodies
    assert "slice 14 may hold more, but at most half a slice's directions are left out" in "; ".join(bodies), bodies


def test_the_halves_that_disagree_are_said_over_short_lines(capsys):
    from ImageQualityTransferLib.dmri import outliers
    from ImageQualityTransferLib.dmri.dti import B0_THRESHOLD, brain_mask, fit_dti
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=(32, 36, 28), voxel_mm=4.0, n_dirs=20)
    d = np.array(dwi.data)
    d[..., np.flatnonzero(dwi.bvals > B0_THRESHOLD)[1::2]] *= 1.5  # every other DW volume scaled
    dwi = dwi.replace(data=d, meta={"path": "p"})
    mask = brain_mask(dwi)
    bodies = _printed(capsys, lambda: outliers.check_fit(dwi, mask, fit_dti(dwi, mask), True))
    assert len(bodies) > 2 and max(map(len, bodies)) <= LONGEST, bodies
    assert bodies[0] == "the fit's residuals say every other diffusion-weighted volume disagrees with the rest", bodies


def test_the_mirrored_directions_line_is_said_over_short_lines(capsys, monkeypatch):
    from ImageQualityTransferLib.methods import inputs

    monkeypatch.setattr(inputs, "FRAME_SEEDS", 200)  # the ring's verdict in a fifth of the time (test_frame_check.py)
    ring = helpers.ring_of_fibres(True)
    ring = ring.replace(meta={**ring.meta, "path": "p"})
    bodies = _printed(capsys, lambda: inputs.check_frame(ring, "fsl"))
    assert len(bodies) > 2 and max(map(len, bodies)) <= LONGEST, bodies
    assert bodies[0].startswith("the tensors' directions look mirrored or turned on this grid"), bodies
    assert bodies[-1] == "--no-frame-check skips this check", bodies
    # each line reads alone: the tracked fibres' line had leant on "that" of the line before ("with that corrected")
    assert [b for b in bodies if b.startswith("fibres tracked with the directions corrected run ")], bodies


@pytest.mark.parametrize("made_by", ["iqt cubic factor 2", "iqt global-linear factor 2",
                                     "iqt global-linear_noisy factor 2"])
def test_the_md_at_or_below_zero_lines_of_an_upsampled_output_are_said_over_short_lines(capsys, made_by):
    """What iqt track (or any command reading iqt upsample's output) says of its MD at or below zero: an interpolation's
    overshoot, or a learned method's own prediction (from its model for noisy inputs or not)."""
    from ImageQualityTransferLib.core import tensor_checks

    md = np.full(1000, 0.7e-3)
    md[:20] = -1e-4
    bodies = _printed(capsys, lambda: tensor_checks._check_negative_md(md, "input", "p: ", made_by))
    assert len(bodies) > 2 and max(map(len, bodies)) <= LONGEST, bodies
    assert bodies[0] == "20 of the input tensors in the brain (2.0 %) have a mean diffusivity at or below zero, which no " \
                        "tissue has", bodies
    assert bodies[1].startswith(f"the file is iqt upsample's output ('{made_by}')"), bodies


def test_track_s_whole_field_line_is_said_over_short_lines(capsys):
    """iqt track on iqt upsample's output of a fit without a brain mask, no --mask given: said on every such real run,
    one line of 439 characters after the file's name."""
    from types import SimpleNamespace

    from ImageQualityTransferLib.apps.cli.track import warn_whole_field
    from ImageQualityTransferLib.dmri.dti import ESTIMATED_SUPPORT

    dti = SimpleNamespace(meta={"support": ESTIMATED_SUPPORT})
    bodies = _printed(capsys, lambda: warn_whole_field(dti, "p", False))
    assert len(bodies) > 3 and max(map(len, bodies)) <= base.PIECE_LIMIT, bodies
    assert bodies[0] == "the tensors reach beyond the brain and no --mask was given", bodies
    assert bodies[-1] == "give --mask with a brain mask (on this grid or the low-res one) to keep them in the brain", bodies
    _whole_under_a_translator(capsys, lambda: warn_whole_field(dti, "p", False))


def test_the_gradient_table_looking_wrong_is_said_over_short_lines(monkeypatch, capsys):
    """iqt fit's table whose x row looks negated, named with its fix on a cohort's bvec path: one line of 563-651
    characters after the file's name had said it."""
    from types import SimpleNamespace

    from ImageQualityTransferLib.dmri import gradcheck

    cands = {c.key: c for c in gradcheck.candidates(np.diag([2.0, 2.0, 2.0, 1.0]))}
    found = gradcheck.GradCheck(scores={"given": 10.2, "x-flipped": 25.3},
                                candidates={k: cands[k] for k in ("given", "x-flipped")}, white_matter=5000, step_mm=2.0)
    monkeypatch.setattr(gradcheck, "gradient_scores", lambda tensor, mask: found)
    bvec = SOURCE.removesuffix("_desc-unmasked_dti.nii.gz: ") + "_dwi.bvec"
    check = lambda: gradcheck.check_gradients(SimpleNamespace(source="p: "), None, None, bvec)  # noqa: E731
    bodies = _printed(capsys, check)
    assert len(bodies) > 3 and max(map(len, bodies)) <= LONGEST, bodies
    assert bodies[0] == "the gradient table looks wrong", bodies
    assert bodies[1].startswith("the x components look negated, or the directions look like scanner"), bodies
    # one choice between ways on every line, none opening with a bare "or" (a review: "check how the table was
    # converted" then "or negate the first row" read as two fixes, which mirror the table back)
    assert "to mend the table take one of the ways below, just one, then fit again: a second would turn or mirror it " \
           "again" in bodies, bodies
    assert bodies[-3:-1] == ["one way: check how the table was converted and convert it again",
                             f"another way, instead: negate the first row (x) of {bvec}"], bodies
    assert not any(b.startswith("or ") for b in bodies), bodies
    _whole_under_a_translator(capsys, check)


def test_the_gradient_table_in_the_scanner_frame_is_mended_over_short_lines(monkeypatch, capsys):
    """A cohort's bvec in scanner coordinates on an oblique scan: its fix, the bvec written in FSL's frame or its
    columns turned by a matrix, had stood on one line of 274 characters after the file's name on a real yaw scan."""
    from types import SimpleNamespace

    from ImageQualityTransferLib.dmri import gradcheck

    yaw = np.eye(4)
    yaw[:3, :3] = np.array([[0.95, -0.31, 0], [0.31, 0.95, 0], [0, 0, 1]]) * 3  # about 18 degrees, as a yaw scan's
    cands = {c.key: c for c in gradcheck.candidates(yaw)}
    found = gradcheck.GradCheck(scores={"given": 11.7, "scanner-RAS": 20.2},
                                candidates={k: cands[k] for k in ("given", "scanner-RAS")}, white_matter=5000,
                                step_mm=2.0)
    monkeypatch.setattr(gradcheck, "gradient_scores", lambda tensor, mask: found)
    bvec = SOURCE.removesuffix("_desc-unmasked_dti.nii.gz: ") + "_dwi.bvec"
    check = lambda: gradcheck.check_gradients(SimpleNamespace(source="p: "), None, None, bvec)  # noqa: E731
    bodies = _printed(capsys, check)
    assert max(map(len, bodies)) <= LONGEST, bodies
    assert f"another way, instead: write {bvec} in FSL's image frame" in bodies, bodies
    assert f"another way, instead: replace each column g of {bvec} by M g (M below)" in bodies, bodies
    assert bodies[-2].startswith("M = [["), bodies
    assert not any(b.startswith("or ") for b in bodies), bodies
    _whole_under_a_translator(capsys, check)


def test_the_poorly_conditioned_line_s_advice_with_exclude_outliers_is_said_over_short_lines(monkeypatch, capsys):
    """iqt fit --exclude-outliers on a series left poorly conditioned (the whole series', or a refitted slice's): its
    last piece, "read FA ... (without --exclude-outliers every direction is kept, the outliers too)", had stood alone at
    121 and 127 characters."""
    from types import SimpleNamespace

    from ImageQualityTransferLib.dmri import outliers

    dwi = Volume(np.ones((2, 2, 2, 8)), np.eye(4), "dwi", meta={"path": "p"})
    for where, pairs in ((None, {}), (14, {14: [2], 15: [2]})):
        monkeypatch.setattr(outliers, "fitted_condition", lambda dwi, out, where=where: (40.0, 7, where))
        out = SimpleNamespace(volumes=[5], pairs=pairs)
        bodies = _printed(capsys, lambda: outliers.say_poor_condition(dwi, out, 2))
        assert len(bodies) > 1 and max(map(len, bodies)) <= base.PIECE_LIMIT, bodies
        assert bodies[-1].endswith("without --exclude-outliers every direction is kept, the outliers too"), bodies
    _whole_under_a_translator(capsys, lambda: outliers.say_poor_condition(dwi, out, 2))


def test_evaluate_s_mask_voxels_without_a_reference_are_said_over_short_lines(capsys):
    """iqt evaluate against a fit holding its floor in some mask voxels and nothing in others: one line of 323
    characters after the file's name on a real subject's fit had said them."""
    from ImageQualityTransferLib.apps.cli import evaluate

    t = np.zeros((10, 10, 10, 6))
    t[..., 0] = t[..., 2] = t[..., 5] = 7e-4
    t.reshape(-1, 6)[:31] = 0
    held = np.ones((10, 10, 10), bool)
    held.reshape(-1)[10:31] = False  # 10 of them held a floor before it was read as none
    line, refusal = evaluate._missing_reference("p", t, np.ones((10, 10, 10), bool), held)
    bodies = _printed(capsys, lambda: warnings.warn(line, IQTWarning, stacklevel=1))
    assert refusal is None and len(bodies) > 3 and max(map(len, bodies)) <= base.PIECE_LIMIT, bodies
    assert bodies[0] == "31 of the mask's 1000 voxels (3.1 %) hold no reference tensor and are left out of every figure"
    assert bodies[-1] == "the others are zero, or NaN in every element: outside the mask the reference was fitted in, or " \
                         "failed fits", bodies
    # the causes said as possibilities, each line alone (a review: "such tensors are ..." stated all three as facts)
    assert [b for b in bodies if b.startswith("such tensors")] == [
        "such tensors may be a fit's floor where a voxel has no diffusion signal (its b0 at or near 0)",
        "such tensors may be a fit's floor where a voxel's fit failed (diffusion-weighted signal at or above the b0)",
        "such tensors may be a stored background"], bodies
    assert not any(b.startswith("or ") for b in bodies), bodies
    held.reshape(-1)[1:10] = False  # one voxel holding a floor: "1 of those voxels holds"
    line, _ = evaluate._missing_reference("p", t, np.ones((10, 10, 10), bool), held)
    assert "; 1 of those voxels holds only tensors below" in line, line


def test_evaluate_s_line_with_its_share_in_exponent_form_is_said_over_short_lines(capsys):
    """One voxel without a reference tensor in a mask of over a million (a 1 mm reference's brain): its share is
    printed as "8.9e-05 %", which the opening's pattern had not read, leaving one line of 437 characters."""
    from ImageQualityTransferLib.apps.cli import evaluate

    t = np.zeros((104, 104, 104, 6), np.float32)
    t[..., 0] = t[..., 2] = t[..., 5] = 7e-4
    t.reshape(-1, 6)[:1] = 0
    mask = np.ones(t.shape[:3], bool)
    line, refusal = evaluate._missing_reference("p", t, mask, mask)
    assert refusal is None and "(8.9e-05 %)" in line, line
    bodies = _printed(capsys, lambda: warnings.warn(line, IQTWarning, stacklevel=1))
    assert len(bodies) > 3 and max(map(len, bodies)) <= base.PIECE_LIMIT, bodies


def test_a_qc_cell_names_the_dwi_once_for_the_gradient_table_s_lines(monkeypatch):
    """iqt batch's QC cell (name_said_once) of a subject whose table looks wrong: each of the warning's 8 lines had
    named the DWI again (1102 characters on a real x-flipped subject, against 688 as one line)."""
    from types import SimpleNamespace

    from ImageQualityTransferLib.dmri import gradcheck

    cands = {c.key: c for c in gradcheck.candidates(np.diag([2.0, 2.0, 2.0, 1.0]))}
    found = gradcheck.GradCheck(scores={"given": 10.2, "x-flipped": 25.3},
                                candidates={k: cands[k] for k in ("given", "x-flipped")}, white_matter=5000, step_mm=2.0)
    monkeypatch.setattr(gradcheck, "gradient_scores", lambda tensor, mask: found)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gradcheck.check_gradients(SimpleNamespace(source="/c/sub-01/dwi.nii.gz: "), None, None, "/c/sub-01/dwi.bvec")
    [said] = [str(w.message) for w in caught if issubclass(w.category, IQTWarning)]
    lines = base.warning_lines(said)
    other = "/c/sub-01/mask.nii.gz: the mask is small"
    cell = base.name_said_once([*lines, other])
    assert len(lines) > 3 and cell[0] == lines[0] and cell[-1] == other, cell
    assert " | ".join(cell).count("/c/sub-01/dwi.nii.gz") == 1, cell  # the bvec file's own name is kept
    assert [f"/c/sub-01/dwi.nii.gz: {c}" for c in cell[1:-1]] == lines[1:], cell
