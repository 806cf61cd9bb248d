"""A series whose volumes are not in its bval/bvec files' order (b0s moved to the end by a converter or a merge, the
files not) is refused in one line, read from the volumes' brightness (dmri/b0s.py `check_b0_order`): it had been
fitted with b0s taken as diffusion-weighted and the reverse. A poorly conditioned table is said by `iqt degrade` as
`iqt fit` says it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import DEV, TRAIN, need_data
from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.dmri import b0s
from ImageQualityTransferLib.dmri.dti import B0_THRESHOLD, brain_mask, keep_bmax

SAID = "the bval/bvec order does not match the volumes"


def _moved(dwi, order, files=False):
    """The volumes in `order`; the bval/bvec lines with them where `files`."""
    data = np.asarray(dwi.data)[..., order]
    if files:
        return dwi.replace(data=data, bvals=np.asarray(dwi.bvals)[order], bvecs=np.asarray(dwi.bvecs)[order])
    return dwi.replace(data=data)


def _to_end(bvals):
    b0 = np.asarray(bvals) <= B0_THRESHOLD
    return np.r_[np.flatnonzero(~b0), np.flatnonzero(b0)]


def _fires(dwi, mask=None):
    bright, dark, _ = b0s.b0_order(dwi, brain_mask(dwi) if mask is None else mask)
    return bool(bright or dark)


def test_b0s_moved_without_their_lines_are_found_and_a_noisy_b0_is_not(coarse_phantom):
    """The phantom's two b0s (volumes 0 and 7) moved to the end: the two volumes at the end, which the bval calls
    diffusion-weighted, are named. Moved with their lines, or as they are, or with b0s at SNR 2: nothing."""
    order = _to_end(coarse_phantom.bvals)
    moved = _moved(coarse_phantom, order)
    bright, dark, _ = b0s.b0_order(moved, brain_mask(moved))
    n = len(order)
    assert bright == [n - 2, n - 1], (bright, dark)
    assert not _fires(coarse_phantom) and not _fires(_moved(coarse_phantom, order, files=True))
    b0 = np.flatnonzero(coarse_phantom.bvals <= B0_THRESHOLD)
    mask = brain_mask(coarse_phantom).data
    d = np.array(coarse_phantom.data, np.float64)
    sigma = np.median(d[mask][:, b0]) / 2
    rng = np.random.default_rng(0)
    for j in b0:
        d[..., j] = np.hypot(d[..., j] + rng.normal(0, sigma, mask.shape), rng.normal(0, sigma, mask.shape))
    assert not _fires(coarse_phantom.replace(data=d.astype(np.float32)))


def test_multi_shell_and_bmax(coarse_phantom):
    """A second shell at half the b-value (sqrt(S0 S), the signal's monoexponential decay): silent as it is; the b0s
    moved to the end are found in both shells and after --bmax keeps the lower one, the volumes then named by their
    number in the file (they had been counted among those kept, naming other volumes of the file)."""
    d = np.asarray(coarse_phantom.data, np.float64)
    b = np.asarray(coarse_phantom.bvals, float)
    b0, dw = b <= B0_THRESHOLD, b > B0_THRESHOLD
    half = np.sqrt(d[..., b0].mean(-1, keepdims=True) * d[..., dw])
    two = coarse_phantom.replace(data=np.concatenate([d, half], -1).astype(np.float32), bvals=np.r_[b, b[dw] / 2],
                                 bvecs=np.r_[coarse_phantom.bvecs, coarse_phantom.bvecs[dw]])
    order = _to_end(two.bvals)
    assert not _fires(two) and not _fires(keep_bmax(two, 500))
    assert not _fires(keep_bmax(_moved(two, order, files=True), 500))
    assert _fires(_moved(two, order))
    kept = keep_bmax(_moved(two, order), 500)
    with pytest.raises(IQTError, match=f"{SAID}: ") as said:
        b0s.check_b0_order(kept, brain_mask(kept))
    n = len(order)  # the b0s now at the file's end, which --bmax 500 keeps: the b = 500 shell's last lines
    assert f"volumes {n - 2}, {n - 1}, which the bval file calls diffusion-weighted" in str(said.value), said.value
    assert "(volumes counted from 0)" in str(said.value) and "--bmax kept" not in str(said.value)


def test_bmax_reads_the_order_on_every_volume(coarse_phantom, tmp_path, capsys):
    """The two b0s moved to the end land in the b = 1000 shell's places, which --bmax 500 drops: the volumes kept
    hold no b0 to find, so `iqt fit --bmax` reads the order on the whole series, naming the file's volumes."""
    d = np.asarray(coarse_phantom.data, np.float64)
    b = np.asarray(coarse_phantom.bvals, float)
    b0, dw = b <= B0_THRESHOLD, b > B0_THRESHOLD
    half = np.sqrt(d[..., b0].mean(-1, keepdims=True) * d[..., dw])
    two = coarse_phantom.replace(data=np.concatenate([half, d], -1).astype(np.float32), bvals=np.r_[b[dw] / 2, b],
                                 bvecs=np.r_[coarse_phantom.bvecs[dw], coarse_phantom.bvecs])
    order = _to_end(two.bvals)
    fileio.save_dwi(_moved(two, order), tmp_path / "dwi.nii.gz")
    out = tmp_path / "dti.nii.gz"
    assert cli.main(["fit", str(tmp_path / "dwi.nii.gz"), "--bmax", "500", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    n = len(order)
    assert len(err) == 1 and SAID in err[0] and f"volumes {n - 2}, {n - 1}, which" in err[0], err
    assert "--bmax kept" not in err[0] and not out.exists()


def test_iqt_fit_and_degrade_refuse_it_in_one_line(coarse_phantom, tmp_path, capsys):
    fileio.save_dwi(_moved(coarse_phantom, _to_end(coarse_phantom.bvals)), tmp_path / "dwi.nii.gz")
    for command in ("fit", "degrade"):
        out = tmp_path / f"{command}.nii.gz"
        assert cli.main([command, str(tmp_path / "dwi.nii.gz"), "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and SAID in err[0] and "reorder the bval and bvec files to the volumes" in err[0], err
        assert not out.exists()


def test_iqt_degrade_says_a_poorly_conditioned_table_as_iqt_fit_does(coarse_phantom, tmp_path, capsys):
    """`iqt degrade` fits the same table block-averaged and had said nothing of it; the phantom's 12 spread directions
    get no line."""
    from ImageQualityTransferLib.dmri.dti import POOR_CONDITION, table_condition

    dw = np.flatnonzero(coarse_phantom.bvals > B0_THRESHOLD)
    b0 = np.flatnonzero(coarse_phantom.bvals <= B0_THRESHOLD)
    poor = next(np.array(c) for c in itertools.combinations(dw, 7)
                if 20 < table_condition(coarse_phantom.bvals[list(c)], coarse_phantom.bvecs[list(c)]) < 200)
    said = "diffusion-weighted directions determine the tensor poorly"
    for name, keep in (("poor", np.r_[b0, poor]), ("spread", np.r_[b0, dw])):
        dwi = _moved(coarse_phantom, keep, files=True)
        fileio.save_dwi(dwi, tmp_path / f"{name}.nii.gz")
        assert cli.main(["degrade", str(tmp_path / f"{name}.nii.gz"), "-o", str(tmp_path / f"lr_{name}.nii.gz")]) == 0
        err = capsys.readouterr().err
        condition = table_condition(dwi.bvals, dwi.bvecs)
        if name == "poor":
            assert err.count(said) == 1 and f"condition number {condition:.0f} (warned above 10)" in err, err
        else:
            assert condition < POOR_CONDITION and said not in err, (condition, err)


@pytest.mark.realdata
@pytest.mark.slow  # two scans read and masked
def test_a_philips_and_a_prisma_scan_are_silent_and_their_moved_b0s_found():
    """A Philips and a Siemens Prisma scan (the smallest of each, 3 mm) as they are: silent; with one diffusion-weighted
    volume at 3x: silent (an outlier, not a moved b0); with their b0s moved to the end and the files not: found. The
    8 shared scans' figures (b0s 2.3-4.8x the diffusion-weighted volumes' median in the brain, the brightest
    diffusion-weighted volume 1.01-1.04x) are in docs/measurements.md."""
    for folder in (TRAIN / "philips_achieva_dstream_3mm", DEV / "siemens_prisma_3mm_ortho"):
        dwi = fileio.load_dwi(need_data(folder) / "dwi.nii.gz")
        mask = brain_mask(dwi)  # the series' own; the mask made from a moved series' b0 finds them too (its survey)
        assert not _fires(dwi, mask), folder.name
        scaled = np.array(dwi.data, np.float32)
        scaled[..., np.flatnonzero(dwi.bvals > B0_THRESHOLD)[3]] *= 3
        assert not _fires(dwi.replace(data=scaled), mask), folder.name
        assert _fires(_moved(dwi, _to_end(dwi.bvals)), mask), folder.name


def test_a_subject_folder_read_by_train_benchmark_or_demo_gets_the_same(coarse_phantom, tmp_path):
    """`iqt train`, `benchmark` and `demo --subject` read a subject folder (check_subject_table): the moved b0s are
    refused there too, and a poorly conditioned table gets `iqt fit`'s line."""
    from ImageQualityTransferLib.core.errors import IQTWarning
    from ImageQualityTransferLib.dmri.dti import table_condition
    from ImageQualityTransferLib.dmri.subject import check_subject_table, load_subject

    moved = tmp_path / "moved"
    moved.mkdir()
    fileio.save_dwi(_moved(coarse_phantom, _to_end(coarse_phantom.bvals)), moved / "dwi.nii.gz")
    with pytest.raises(IQTError, match=SAID):
        check_subject_table(moved, load_subject(moved))
    dw = np.flatnonzero(coarse_phantom.bvals > B0_THRESHOLD)
    b0 = np.flatnonzero(coarse_phantom.bvals <= B0_THRESHOLD)
    poor = next(np.array(c) for c in itertools.combinations(dw, 7)
                if 20 < table_condition(coarse_phantom.bvals[list(c)], coarse_phantom.bvecs[list(c)]) < 200)
    folder = tmp_path / "poor"
    folder.mkdir()
    fileio.save_dwi(_moved(coarse_phantom, np.r_[b0, poor], files=True), folder / "dwi.nii.gz")
    subject = load_subject(folder)
    with pytest.warns(IQTWarning) as caught:
        check_subject_table(folder, subject)
    assert sum("determine the tensor poorly" in str(w.message) for w in caught) == 1, [str(w.message) for w in caught]


def test_a_mask_mostly_over_a_zero_filled_background_names_no_volume(coarse_phantom):
    """A scan zero-filled outside the head (as the Elition training scan is in 70 % of its background) given with a mask
    that mostly misses the brain: every volume's median over it is 0, which had named every diffusion-weighted volume
    as bright as a b0 ('nanx' their median); the levels tell nothing there, so nothing is named."""
    brain = brain_mask(coarse_phantom).data
    zeroed = coarse_phantom.replace(data=np.where(brain[..., None], np.asarray(coarse_phantom.data), 0))
    shifted = np.roll(brain, brain.shape[0] // 2, axis=0)
    assert (shifted & ~brain).sum() > (shifted & brain).sum()  # mostly background
    assert b0s.b0_order(zeroed, shifted)[:2] == ([], [])
    b0s.check_b0_order(zeroed, shifted)
    bright, _, _ = b0s.b0_order(_moved(zeroed, _to_end(zeroed.bvals)), brain)  # the brain's own mask still tells
    assert bright


def test_one_volume_scaled_too_bright_is_an_outlier_not_a_moved_b0(coarse_phantom, tmp_path, capsys):
    """One diffusion-weighted volume at 3x (a wrong per-volume scale) leaves every b0's line on a b0, so nothing was
    moved: `iqt fit --exclude-outliers` fits it (it had been refused as moved b0s; on a real scan the outlier check
    names the volume, on this phantom it does not).
    Nor is it refused beside a second fault: the b0s at half their level, or a b0 with a dropout in half its slices."""
    d = np.array(coarse_phantom.data, np.float64)
    b0 = np.flatnonzero(coarse_phantom.bvals <= B0_THRESHOLD)
    k = int(np.flatnonzero(coarse_phantom.bvals > B0_THRESHOLD)[3])
    bright = d.copy()
    bright[..., k] *= 3
    fileio.save_dwi(coarse_phantom.replace(data=bright.astype(np.float32)), tmp_path / "dwi.nii.gz")
    out = tmp_path / "fit.nii.gz"
    assert cli.main(["fit", str(tmp_path / "dwi.nii.gz"), "--exclude-outliers", "-o", str(out)]) == 0
    assert SAID not in capsys.readouterr().err
    assert out.exists()
    halved, dropout = d.copy(), d.copy()
    halved[..., b0] *= 0.5
    halved[..., k] *= 1.6
    slices = d.shape[2]
    dropout[:, :, slices // 4:3 * slices // 4, b0[0]] *= 0.05
    dropout[..., k] *= 1.6
    for two_faults in (halved, dropout):
        dwi = coarse_phantom.replace(data=two_faults.astype(np.float32))
        assert not _fires(dwi)
        b0s.check_b0_order(dwi, brain_mask(dwi))


def test_the_slicer_module_says_it_in_its_own_words(coarse_phantom):
    """The module holds the b-values in the DWI volume node, not in bval and bvec files: its refusal names those and says
    to load the volume again (it had said to reorder 'the bval and bvec files' and 'run again')."""
    slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")
    from helpers import dwi_node
    from ImageQualityTransferLib.slicer import processing

    scene = slicer.vtkMRMLScene()
    node = dwi_node(scene, _moved(coarse_phantom, _to_end(coarse_phantom.bvals)))
    with pytest.raises(IQTError) as said:
        processing.run_on_nodes(scene, node, "cubic", 2)
    text = str(said.value)
    assert "b-values and gradients are not in its volumes' order" in text and "which its b-values call" in text, text
    assert "load it again and apply again" in text and "bval" not in text and "run again" not in text, text


def test_the_slicer_module_says_it_under_a_translator(coarse_phantom):
    """The refusal is marked for translation and its file-naming phrases are placeholders the module fills (slicer/
    processing.py module_options): under a translator it had been English, and matching English to put it in the
    module's words would have left 'the bval file' in it. A translator that upper-cases vowels outside placeholders
    stands for a language."""
    slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")
    from helpers import dwi_node, vowels_translated
    from ImageQualityTransferLib.slicer import processing

    scene = slicer.vtkMRMLScene()
    node = dwi_node(scene, _moved(coarse_phantom, _to_end(coarse_phantom.bvals)))
    with vowels_translated(), pytest.raises(IQTError) as said:
        processing.run_on_nodes(scene, node, "cubic", 2)
    text = str(said.value)
    assert "b-vAlUEs And grAdIEnts ArE nOt In Its vOlUmEs' OrdEr" in text and "whIch Its b-vAlUEs cAll" in text, text
    assert "lOAd It AgAIn And Apply AgAIn" in text and "bval" not in text.lower() and "--" not in text, text
