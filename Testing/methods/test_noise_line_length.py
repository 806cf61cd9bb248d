"""A long noise line (methods/base.py `_for_noise`, merged by `noise_clause_once`) is said over several lines of at
most WARNING_LINE_LIMIT characters, on the terminal (every command's warnings), in iqt batch's notes and in the Slicer
module's: merged, such a line had run to 286-458 characters, one method's to 295. The long warnings of SPLIT_WARNINGS
(the gradient-table check's had run to 601) by the same rule."""

from __future__ import annotations

import itertools
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


INDICES = (0.08, 0.0998, 0.11, 0.125, 0.167, 0.19, 0.21, 0.25, 0.30)
FACTORS = ((2, 2, 2), (3, 3, 3), (1, 1, 2), (1, 1, 3))


def _method_lines(monkeypatch) -> dict:
    """Each learned method's own noise line from the engine (`_for_noise`, the input's noise index set), by (index,
    factors, maps written): run with its default model, and with the shipped clean and noise-trained x2 models given."""
    import numpy as np
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.fileio.paths import MODELS_DIR

    lr = Volume(np.ones((4, 4, 4, 6), np.float32), np.eye(4), "tensor", meta={"path": "x.nii.gz"})
    learned = [n for n in methods.names() if methods.get(n).learned]
    found: dict = {}
    for index in INDICES:
        monkeypatch.setattr(base, "input_noise_index", lambda *a, index=index, **k: index)
        for name, given, f, maps in itertools.product(learned, (None, "x2", "x2_noisy"), FACTORS, (True, False)):
            model = None if given is None else MODELS_DIR / f"{name}_{given}{'.npz' if (MODELS_DIR / f'{name}_x2.npz').is_file() else '.pt'}"
            if model is not None and (f != (2, 2, 2) or not model.is_file()):
                continue
            method = methods.get(name, model=None if model is None else str(model))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                method._for_noise(lr, None, f, maps=maps and method.gives_uncertainty)
            found.setdefault((index, f, maps, given), []).extend(
                (name, str(w.message)) for w in caught
                if issubclass(w.category, IQTWarning) and "noise index" in str(w.message))
    return found


def engine_noise_lines(monkeypatch) -> list[str]:
    """Every noise line the engine says for one run, or merged for several (noise_clause_once, as iqt report, demo and
    benchmark merge them): each method's alone, each pair, and all of them, with a given model's line or not."""
    out, found = set(), _method_lines(monkeypatch)
    for (index, f, maps, given), lines in found.items():
        if given is not None:
            continue
        for extra in [None, *(part for g in ("x2", "x2_noisy") for part in found.get((index, f, maps, g), []))]:
            others = [part for part in lines if extra is None or part[0] != extra[0]]  # a method runs one model
            for k in {1, 2, len(others)}:
                for combo in itertools.combinations(others, k):
                    out.update(base.noise_clause_once([line for _, line in combo] + ([] if extra is None else [extra[1]])))
    return sorted(out)


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
    lines = base.warning_lines(line)
    assert len(line) > 250 and len(lines) == 2 and max(map(len, lines)) <= 200, lines
    assert lines[1].startswith("x.nii.gz: near the noisiest inputs trained on"), lines
    assert "deep-hetero-var1's uncertainty map, raised x1.19, is still a lower bound" in lines[1], lines
    assert base.warning_lines(head + ": rf uses its noise-trained model") == [head + ": rf uses its noise-trained model"]


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


@pytest.mark.slow
def test_every_continuation_line_of_a_noise_line_names_what_it_speaks_of(monkeypatch):
    """Every noise line the engine can say (`engine_noise_lines`), split: each later line is read alone, so it opens
    on its subject (a method, a method's map, the uncertainty maps, or the input's place in the noise trained on), never
    on a piece that leans on the line before ("biqt runs the given model instead", "... run one on such inputs" had
    stood alone), and each is at most WARNING_LINE_LIMIT characters (the first holds the noise clause and the first
    piece whatever their length)."""
    from ImageQualityTransferLib import methods

    names = "|".join(sorted(map(re.escape, methods.names()), key=len, reverse=True))
    subject = re.compile(rf"^(?:read )?(?:(?:{names})(?:, | and |'s | )|the uncertainty maps|read the uncertainty maps|"
                         r"near the noisiest inputs trained on|beyond the noise trained on|noise-trained models ship)")
    leaning = re.compile(r"\binstead\b(?! of)|\bone on such inputs|^(?:it|its|they|their|nor|or|and|but)\b")
    lines = engine_noise_lines(monkeypatch)
    split = [said for line in lines if len(said := base.warning_lines(line)) > 1]
    assert len(lines) > 1000 and len(split) > 1000, (len(lines), len(split))  # every method, index and factor set
    for said in split:
        for line in said[1:]:
            first = line.removeprefix("x.nii.gz: ").split("; ")[0]
            assert subject.match(first) and not leaning.search(first), said
            assert len(line) <= base.WARNING_LINE_LIMIT, said


@pytest.mark.parametrize("source", ["noisy.nii.gz: ", "/data/sub 01/dti fit.nii.gz: ", "sub-01 (tight): noisy.nii.gz: ",
                                    "C:\\Users\\me\\My Data\\dti.nii.gz: "])
def test_any_long_warning_prints_as_short_lines_that_name_its_file(capsys, source):
    """Not the noise line alone: the gradient-table check's undecided line (601 characters with its prefix on the 3 mm
    Prisma at b0 SNR 5) is printed by the same rule, each line naming its file (a path with spaces, iqt batch's subject
    and style too, a Windows path with its drive), whole pieces, nothing lost or added."""
    import numpy as np
    from ImageQualityTransferLib.apps import cli
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.methods import inputs

    lr = Volume(np.ones((4, 4, 4, 6), np.float32), np.eye(4), "tensor", meta={"path": "p"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inputs.warn_frame_noise(lr)
    said = source + str(caught[0].message).removeprefix("p: ")
    cli._show_warning(said, IQTWarning, __file__, 1)
    printed = [line.removeprefix("iqt: warning: ") for line in capsys.readouterr().err.splitlines()]
    assert len(said) > 500 and len(printed) >= 3 and max(map(len, printed)) <= 200, printed
    assert all(line.startswith(source) for line in printed), printed
    assert "; ".join(line.removeprefix(source) for line in printed) == said.removeprefix(source)
    # each piece may open a line of its own (where it falls depends on the path's length): none leans on the one before
    pieces = said.removeprefix(source).split("; ")
    assert not [p for p in pieces if re.match(r"(?:it|its|they|their|nor|or|and|but|either)\b", p)], pieces
