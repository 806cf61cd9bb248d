"""A long noise line (methods/base.py `_for_noise`, merged by `noise_clause_once`) is said over several lines of at
most NOISE_LINE_LIMIT characters, on the terminal (every command's warnings), in iqt batch's notes and in the Slicer
module's: merged, such a line had run to 286-458 characters, one method's to 295."""

from __future__ import annotations

import re
import warnings

import pytest
from ImageQualityTransferLib.core.errors import IQTWarning
from ImageQualityTransferLib.methods import base

NAMES = ("deep-hetero-var1", "rf", "espcn-hetero", "deep", "espcn", "global-linear")
MAPS = {"deep-hetero-var1", "rf", "espcn-hetero"}


def _merged(index: float, maps: bool) -> str:
    """The merged line of six noise-trained methods and a given clean biqt model at x2, as iqt report, demo and
    benchmark say it (the audit's case)."""
    head = f"x.nii.gz: the input is noisier than clean scans (noise index {index:.3f}, above 0.075)"
    parts = [f"{head}: {n} {base._USES}" + base.noise_ending(index, n if maps and n in MAPS else None,
                                                             maps and n in MAPS, f=(2, 2, 2)) for n in NAMES]
    given = f"{head}: biqt {base._GIVEN_CLEAN}; {base._NO_BETTER}" + (
        f"; {base.underrates('biqt', index, given=True, clean=True, f=(2, 2, 2))}" if maps else "")
    [merged] = base.noise_clause_once(parts + [given])
    return merged


def _facts(text: str) -> tuple:
    """What a line says that no rewording may lose: its figures, the methods it names, its lower-bound clauses."""
    return (sorted(re.findall(r"\d+\.\d+", text)), {n for n in (*NAMES, "biqt") if re.search(rf"\b{n}\b", text)},
            text.count("lower bound"), text.count("cubic"))


@pytest.mark.parametrize("index", [0.167, 0.30])
@pytest.mark.parametrize("maps", [True, False])
def test_the_terminal_prints_a_long_merged_noise_line_as_short_lines(capsys, index, maps):
    """As iqt report, demo and benchmark print the merged line (apps/cli `_show_warning`): each printed line is at most
    200 characters after its "iqt: warning: ", the noise clause said once, the figures, methods and clauses all kept."""
    from ImageQualityTransferLib.apps import cli

    merged = _merged(index, maps)
    assert len(merged) > 280, merged  # the audit's lines: 286-458 characters
    cli._show_warning(merged, IQTWarning, __file__, 1)
    printed = capsys.readouterr().err.splitlines()
    assert all(line.startswith("iqt: warning: x.nii.gz: ") for line in printed), printed
    said = [line[len("iqt: warning: "):] for line in printed]
    assert len(said) >= 2 and max(map(len, said)) <= 200, [len(s) for s in said]
    assert sum(f"noise index {index:.3f}" in s for s in said) == 1
    assert _facts(" ".join(said)) == _facts(merged), said


def test_one_method_s_line_names_the_method_whose_map_a_later_line_speaks_of():
    """One method's line (iqt upsample, iqt batch, the Slicer module) at 0.167 with its map: 295 characters as one;
    as two, the second names deep-hetero-var1's map (its "its" would have read as no method's)."""
    head = "x.nii.gz: the input is noisier than clean scans (noise index 0.167, above 0.075)"
    line = f"{head}: deep-hetero-var1 {base._USES}" + base.noise_ending(0.167, "deep-hetero-var1", True,
                                                                        "deep-hetero-var1", f=(2, 2, 2))
    lines = base.noise_lines(line)
    assert len(line) > 250 and len(lines) == 2 and max(map(len, lines)) <= 200, lines
    assert lines[1].startswith("x.nii.gz: near the noisiest inputs trained on"), lines
    assert "deep-hetero-var1's uncertainty map, raised x1.19, is still a lower bound" in lines[1], lines
    assert base.noise_lines(head + ": rf uses its noise-trained model") == [head + ": rf uses its noise-trained model"]


@pytest.mark.slow
def test_an_upsample_run_s_noise_warnings_print_short(capsys, monkeypatch):
    """Through the engine's own warning (a global-linear run with biqt's sigma factor at 0.167, its map written) and
    the command line's printer: every printed line at most 200 characters."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.apps import cli
    from ImageQualityTransferLib.dmri import degrade as deg
    from ImageQualityTransferLib.dmri.dti import brain_mask
    from ImageQualityTransferLib.dmri.phantom import make_phantom
    from ImageQualityTransferLib.methods.forest.method import GlobalLinearMethod

    monkeypatch.setitem(base.NOISY_STD_SCALE, "global-linear", base.NOISY_STD_SCALE["biqt"])
    monkeypatch.setattr(GlobalLinearMethod, "gives_uncertainty", True)
    monkeypatch.setattr(base, "input_noise_index", lambda *a, **k: 0.167)
    dwi = make_phantom(shape=(32, 36, 28), voxel_mm=2.5, n_dirs=12)
    pair = deg.degrade(dwi, brain_mask(dwi).data, 2, style="tight")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        methods.get("global-linear").predict(pair.tensor, 2, pair.mask, uncertainty=True)
    [line] = [str(w.message) for w in caught if issubclass(w.category, IQTWarning) and "noise index" in str(w.message)]
    cli._show_warning(line, IQTWarning, __file__, 1)
    printed = [s[len("iqt: warning: "):] for s in capsys.readouterr().err.splitlines()]
    assert len(line) > 200 and len(printed) == 2 and max(map(len, printed)) <= 200, (len(line), printed)
    assert _facts(" ".join(printed)) == _facts(line), printed
