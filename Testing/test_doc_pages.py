"""The user pages read for a newcomer: what the tool does now, with its history in CHANGELOG.md (an inline
"since 0.x.0", "as of", "during" or "had been" note stays only where a figure needs its version, listed below); the
long task pages open with their contents and the common path (their structure, not their wording); each command
section's example, and the commands that make its inputs, use options their parsers have. The dev scanner's name is
checked against the dev sidecars where the shared data is present (skipped otherwise)."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
USER_PAGES = ["README.md"] + [f"docs/{n}.md" for n in (
    "command-line", "inputs", "slicer", "view", "cohorts", "methods", "training", "accuracy", "speed",
    "limitations", "python", "install")]
_V = r"0\.\d+\.\d+"
# a version beside words that tell what a release changed: "since 0.x.0", "as of", "during", "in 0.x.0 it had",
# "had been ... 0.x.0", "0.x.0 ... no longer"; a figure's own version ("measured at 0.x.0") is not history
HISTORY = re.compile(
    rf"\b(?:since|before|until|till|from|as of|during|prior to|after|up to|through) (?:version )?{_V}"
    rf"|\b(?:in|at|with|by) {_V}(?:'s)?,? (?:it |they |this |that |the [\w-]+ |`[^`]+` )?"
    r"(?:had|was|were|used to|did|read|said)\b"
    rf"|\b{_V}\b[^.;:]{{0,50}}\b(?:had been|had|used to|no longer|anymore|any more|now)\b"
    rf"|\b(?:had been|used to|no longer|formerly|previously|earlier versions?|older versions?)\b[^.;:]{{0,50}}\b{_V}",
    re.I)

# The notes that stay: each dates a figure (measured, checked or shipped at that version) or a file written then.
# A new one belongs in CHANGELOG.md; add it here only where the figure beside it needs its version.
KEPT = {
    "docs/accuracy.md": [
        "changes made before 0.1.0", "models shipped since 0.4.0", "Since 0.17.0 it takes their errors",
        "since 0.17.0 it takes 3 intrinsic-noise draws", "ships for ×3 since 0.5.0", "since 0.6.0 with that model",
        "since 0.7.0's raise over filled context", "before 0.1.0: within 0.4 points", "before 0.1.0 shipping was held",
        "took it up before 0.1.0", "two trainings on this CPU, 0.4.0 and 0.5.0, had been level",
        "measured again on 0.8.0, during 0.9.0's development",
        "0.4.0's figures had stood here"],
    "docs/cohorts.md": ["written before 0.1.0", "a build before 0.1.0 wrote"],
    "docs/command-line.md": ["ID or dates; checked before 0.1.0"],
    "docs/inputs.md": ["measured before 0.1.0"],
    "docs/limitations.md": ["measured before 0.1.0"],
    "docs/speed.md": ["run until 0.7.0"],
    "docs/training.md": ["models before 0.3.0's", "checked before 0.1.0"],
}


def _notes(text: str) -> list[str]:
    flat = " ".join(text.split())
    return [flat[max(0, m.start() - 60):m.end() + 40] for m in HISTORY.finditer(flat)]


@pytest.mark.parametrize("page", USER_PAGES)
def test_user_pages_keep_their_history_in_the_changelog(page):
    kept = KEPT.get(page, [])
    stray = [n for n in _notes((REPO / page).read_text(encoding="utf-8")) if not any(k in n for k in kept)]
    assert not stray, f"{page}: history notes that belong in CHANGELOG.md: {stray}"


@pytest.mark.parametrize("page", ["docs/inputs.md", "docs/slicer.md"])
def test_long_task_pages_open_with_contents_and_the_common_path(page):
    # the structure, not its wording: a list linking the page's own headings, then an ordered list of steps, both
    # before the reference sections (any heading titles, bold or not)
    text = (REPO / page).read_text(encoding="utf-8")
    own = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#{2,3} (.+)$", text, re.M)}
    parts = re.split(r"^## .+$", text, flags=re.M)
    contents = next((i for i, p in enumerate(parts) if len(set(re.findall(r"\]\(#([a-z0-9-]+)\)", p)) & own) >= 5), None)
    assert contents is not None and contents <= 1, f"{page}: no contents list linking 5 of its headings at the top"
    steps = next((i for i, p in enumerate(parts) if len(re.findall(r"^\d+\. ", p, re.M)) >= 5), None)
    assert steps is not None and contents <= steps <= 2, f"{page}: no ordered list of 5 steps or more after the contents"
    numbers = [int(n) for n in re.findall(r"^(\d+)\. ", parts[steps], re.M)]
    assert numbers == list(range(1, len(numbers) + 1)), numbers


@pytest.mark.parametrize("page", ["docs/command-line.md", "docs/training.md", "docs/cohorts.md", "docs/view.md",
                                  "docs/inputs.md", "docs/slicer.md"])
def test_user_pages_open_with_contents_linking_every_section(page):
    """A reader's review found command-line.md (679 lines) and training.md with no contents list, and command-line.md's
    table linking none of its sections after the commands: a list before the first section (or under a "Contents"
    heading) links every ## heading of the page."""
    text = re.sub(r"(?ms)^```.*?^```", "", (REPO / page).read_text(encoding="utf-8"))
    heads = [h for h in re.findall(r"^## (.+)$", text, re.M) if h != "Contents"]
    own = {re.sub(r"[^\w\- ]", "", h.replace("`", "").strip().lower()).replace(" ", "-") for h in heads}
    top = text.split("\n## ", 1)[0]
    if text.split("\n## ", 2)[1].startswith("Contents\n"):
        top = text.split("\n## ", 2)[1]
    linked = set(re.findall(r"\]\(#([a-z0-9_-]+)\)", " ".join(top.split())))
    assert own <= linked, f"{page}: sections the contents do not link: {sorted(own - linked)}"


@pytest.mark.parametrize("page", ["docs/command-line.md", "docs/training.md", "docs/cohorts.md", "docs/view.md",
                                  "docs/inputs.md", "docs/slicer.md"])
def test_every_section_opens_with_a_sentence_not_its_heading_again(page):
    """A reader's review found headings followed straight by a subheading, list or table, with no sentence saying what
    the section is (cohorts.md's "Resumable and safe"), and headings repeated as a bold lead under them ("## Install",
    then "**Install.**"): each section but a contents list or the step-by-step path opens with a sentence of its own."""
    text = re.sub(r"(?ms)^```.*?^```", "", (REPO / page).read_text(encoding="utf-8"))
    bare, again = [], []
    for heading, body in re.findall(r"^#{2,4} (.+)\n\n(.*)$", text, re.M):
        if heading == "Contents" or heading.lower().endswith("step by step"):
            continue
        if re.match(r"#|[-*] |\d+\. |\|", body):
            bare.append(heading)
        if re.match(r"\*\*" + re.escape(heading.rstrip(".")) + r"\b", body):
            again.append(heading)
    assert not bare and not again, f"{page}: no first sentence: {bare}; the heading again as a bold lead: {again}"


def _section(text: str, heading: str) -> str:
    body = text.split(f"\n### {heading}\n", 1)[1]
    return re.split(r"\n#{2,3} ", body, maxsplit=1)[0]


def _unknown_options(code: str) -> list[str]:
    """The options of one `iqt [GLOBAL...] SUB [...]` command that its parsers do not have (an `iqt` of no known
    subcommand is one unknown word)."""
    from ImageQualityTransferLib.apps.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    words = shlex.split(code)[1:]
    at = next((i for i, w in enumerate(words) if w in sub.choices), None)
    if at is None:
        return [code]
    known_global, known = set(parser._option_string_actions), set(sub.choices[words[at]]._option_string_actions)
    opts = [(w.split("=", 1)[0], i < at) for i, w in enumerate(words) if w.startswith("-") and w != "-"]
    return [o for o, is_global in opts if o not in (known_global if is_global else known)]


@pytest.mark.parametrize("command", ["propagate", "report", "benchmark", "track"])
def test_command_sections_are_short_and_their_example_uses_real_options(command):
    sec = _section((REPO / "docs/command-line.md").read_text(encoding="utf-8"), f"iqt {command}")
    # a list (inputs, outputs, options), not one paragraph
    assert sec.count("\n- **") >= 3, f"iqt {command}: no list of inputs, outputs and options"
    example = re.search(r"\*\*Example:\*\*.*?`(iqt [^`]*\b" + command + r"\b[^`]*)`", sec, re.S)
    assert example, f"iqt {command}: no example command"
    line = sec[example.start():].split("\n- ", 1)[0]
    # the example and the commands that make its inputs (every `iqt SUB ...` of the item) against SUB's parser
    codes = [c for c in re.findall(r"`(iqt [^`]+)`", line) if not c.startswith("iqt: ")]
    assert any(re.search(r"\s-", c) for c in codes), codes
    unknown = {c: _unknown_options(c) for c in codes}
    assert not any(unknown.values()), unknown
    # its figures and times were measured on one version, on a loaded machine: docs/measurements.md says which
    assert re.search(r"measured at 0\.\d+\.0", line) and "measurements.md#the-command-line-examples" in line, line


@pytest.mark.realdata
def test_the_dev_scanner_is_named_as_its_sidecars_name_it():
    # each dev row names the scanner its subject's dwi.json records (Manufacturer, ManufacturersModelName,
    # MagneticFieldStrength); "the same subject" rows take the row above's; the data's README is looser
    import json

    from helpers import DEV, need_data

    text = (REPO / "docs/accuracy.md").read_text(encoding="utf-8")
    table = text.split("## The dev subjects", 1)[1].split("\n\n**", 1)[0]
    rows = [r for r in table.splitlines() if r.startswith("| **")]
    assert rows, "docs/accuracy.md: no dev subjects table"
    named = None
    for row in rows:
        folder = re.search(r"\| `([^`]+)` \|", row).group(1)
        side = json.loads((need_data(DEV / folder) / "dwi.json").read_text(encoding="utf-8"))
        said = f"{side['Manufacturer']} {side['ManufacturersModelName'].replace('_', ' ')} " \
               f"({side['MagneticFieldStrength']:g} T)"
        scan = row.split("|")[3]
        same = "the same subject" in scan and not re.search(r"\(\d+(?:\.\d+)? T\)", scan)  # names no scanner itself
        named = said if said in scan else (named if same else scan)
        assert named == said, (folder, scan, said)


def _step(text: str, n: int) -> str:
    return re.search(rf"^{n}\. (.+?)(?=^\d+\. |^#|\Z)", text, re.M | re.S).group(1)


def test_the_slicer_steps_name_the_preselected_method_with_and_without_pytorch(monkeypatch):
    # the module preselects methods.viewer_default, which skips methods runs_here rejects: a fresh install has no torch
    import importlib.util

    from ImageQualityTransferLib.methods import registry

    with_torch = registry.viewer_default(2)
    real = importlib.util.find_spec
    monkeypatch.setattr(registry.importlib.util, "find_spec", lambda n, *a: None if n == "torch" else real(n, *a))
    without = registry.viewer_default(2)
    assert with_torch != without, (with_torch, without)
    slicer = (REPO / "docs/slicer.md").read_text(encoding="utf-8")
    pick = slicer.split("\n## Pick a method\n", 1)[1].split("\n## ", 1)[0]
    readme = (REPO / "README.md").read_text(encoding="utf-8").split("**Pick a method.**", 1)[1].split("\n## ", 1)[0]
    for where, text in [("slicer.md step 4", _step(slicer, 4)), ("slicer.md Pick a method", pick),
                        ("README.md", readme)]:
        assert f"`{with_torch}`" in text and f"`{without}`" in text, (where, with_torch, without)


def test_the_slicer_pages_input_noise_line_shows_a_factor_the_legend_can_show():
    """docs/slicer.md quoted "SD ×1.10 for input noise", a line the legend shows only up to a noise index of 0.10
    (legends.noise_line), where no shipped method's SD factor reaches 1.10 (methods/base.py NOISY_STD_SCALE): each
    factor it quotes is one such an input's legend can read."""
    import numpy as np

    from ImageQualityTransferLib.core.noise_level import NOISY_INPUT, NOISY_MODEL
    from ImageQualityTransferLib.methods.base import NOISY_STD_SCALE, noisy_std_scale
    from ImageQualityTransferLib.slicer import legends

    head, tail = legends.NOISE_INDEX_NOTE.split("{scale}")
    page = (REPO / "docs/slicer.md").read_text(encoding="utf-8")
    quoted = re.findall(re.escape(head) + r"([0-9.]+)" + re.escape(tail), page)
    shown = {f"{noisy_std_scale(name, index, f):.2f}" for name in NOISY_STD_SCALE
             for f in [(2, 2, 2), (3, 3, 3), (1, 1, 2), (1, 1, 3)] for index in np.linspace(NOISY_MODEL, NOISY_INPUT, 401)}
    assert quoted and set(quoted) <= {s for s in shown if float(s) >= legends.NOISE_SCALE_SHOWN}, (quoted, sorted(shown))


def test_the_inputs_steps_give_the_margin_to_a_low_res_mask_only():
    # methods/inputs.py: a low-res mask is widened by one low-res voxel; one on the output grid cuts to exactly itself
    text = _step((REPO / "docs/inputs.md").read_text(encoding="utf-8"), 3)
    flat = " ".join(text.split())
    low, high = flat.split("high-res", 1)
    assert "low-res grid" in low and "margin" in low, flat
    assert "exactly" in high and "margin" not in high.replace("no margin", ""), flat


@pytest.mark.parametrize("page", USER_PAGES + ["docs/measurements.md", "docs/conventions.md", "docs/design.md"])
def test_every_paragraph_closes_its_parentheses(page):
    # a note cut from the middle of a parenthesis leaves it open (or a stray ')') for the rest of the paragraph
    text = re.sub(r"`[^`]*`", "``", re.sub(r"```.*?```", "", (REPO / page).read_text(encoding="utf-8"), flags=re.S))
    odd = [" ".join(p.split())[:120] for p in re.split(r"\n\s*\n|\n(?=\s*- )|\n(?=\d+\. )", text)
           if p.count("(") != p.count(")")]
    assert not odd, f"{page}: paragraphs whose parentheses do not balance: {odd}"


def test_every_changelog_entry_ends_its_last_sentence():
    """A CHANGELOG entry ends a sentence before the next entry starts: an entry rewritten by inserting its new text
    inside the old one leaves the old one cut mid-sentence ("Clean inputs read at or below" had been followed by the
    new entry), both then said."""
    lines = (REPO / "CHANGELOG.md").read_text(encoding="utf-8").splitlines() + [""]
    cut, last = [], None
    for number, line in enumerate(lines, 1):
        if (line.startswith("- ") or not line.strip() or line.startswith("#")) and last is not None:
            if not re.search(r"[.:)!?`*]$", last[1].rstrip()):
                cut.append(f"line {last[0]}: ...{last[1][-60:]}")
            last = None
        if line.startswith(("- ", "  ")):
            last = (number, line)
    assert not cut, f"CHANGELOG.md entries cut mid-sentence: {cut}"


def test_the_benchmark_inputs_name_every_dwi_file_a_subject_folder_takes(tmp_path):
    # dmri/subject.py dwi_path takes dwi.nii.gz, else dwi.nii
    from ImageQualityTransferLib.dmri.subject import dwi_path

    sec = _section((REPO / "docs/command-line.md").read_text(encoding="utf-8"), "iqt benchmark")
    inputs = sec.split("- **Inputs:**", 1)[1].split("\n- ", 1)[0]
    for name in ("dwi.nii.gz", "dwi.nii"):
        folder = tmp_path / name.replace(".", "_")
        folder.mkdir()
        for f in (name, "dwi.bval", "dwi.bvec"):
            (folder / f).write_bytes(b"")
        assert dwi_path(folder).name == name
        assert f"`{name}`" in inputs, (name, inputs)


def test_option_pointers_point_where_the_option_is_described():
    text = (REPO / "docs/command-line.md").read_text(encoding="utf-8")
    bench = _section(text, "iqt benchmark")
    tta = next(line for line in bench.splitlines() if line.strip().startswith("- `--tta`"))
    # --tta is described under iqt upsample, above the benchmark's section, not below it
    assert "below" not in tta.split(";", 1)[0] and "#iqt-upsample" in tta, tta
    prop = next(line for line in _section(text, "iqt propagate").splitlines() if line.strip().startswith("- `--factor"))
    # --factor sets the factors (default 2); only --voxel-size chooses them from the input's grid
    assert "default 2" in prop and "--voxel-size" in prop, prop


def test_the_slicer_steps_use_the_panels_words_for_the_mask():
    ui = (REPO / "ImageQualityTransfer/Resources/UI/ImageQualityTransfer.ui").read_text(encoding="utf-8")
    label = re.search(r"<string>(Brain[^<]*):</string>", ui).group(1)
    assert f"**{label}**" in _step((REPO / "docs/slicer.md").read_text(encoding="utf-8"), 3), label


def test_the_0_21_changelog_says_the_user_pages_were_restructured():
    # the restructuring moved every page's history into the "Moved from the user pages" lists: a reader of a page
    # that lost its note finds where it went from the version's own entry (0.21.0's, where it was done)
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    top = text.split("\n## 0.21.0", 1)[1].split("\n## ", 1)[0]
    doc = " ".join(" ".join(line.split()) for line in re.findall(r"^- Documentation:.*?(?=^- |^\S|\Z)", top, re.M | re.S))
    assert all(w in doc for w in ("docs/inputs.md", "docs/slicer.md", "step by step", "Moved from the user pages",
                                  "propagate", "report", "benchmark", "track")), doc


@pytest.mark.parametrize("page, link, heading, figure", [
    # paragraphs of 2,000-6,300 characters (16 over 1,200), mixing what a command does with how it was measured
    ("docs/command-line.md", "measurements.md#iqt-fit-the-outlier-check", "Command-line details",
     "5 of the Elition's 19 such voxels"),
    # paragraphs of 1,351-8,843 characters (9 over 1,200): iqt batch's options beside their reviews and timings
    ("docs/cohorts.md", "measurements.md#cohort-memory", "Cohort details",
     "1000 quick subjects spent 40 s of an 81 s run"),
    # paragraphs of 1,332-3,136 characters (12 over 1,200): the panel's behaviour beside pixel counts and reviews
    ("docs/slicer.md", "measurements.md#slicer-the-legend", "The Slicer module", "106 against 129 px"),
    # 1,293 and 2,969: the noise index's definition beside the SNR 1 scans' before/after
    ("docs/methods.md", "measurements.md#the-noise-index-of-a-holed-brain", "Inputs made by other tools",
     "where such a brain had read as clean"),
    # 1,956 and 2,043: the API's guarantees beside the OpenMP timings and the exit wait's history
    ("docs/python.md", "measurements.md#the-python-api", "Command-line details", "99.8 and 58.1 s without"),
    # 1,372 and 1,236: one release's before/after rounds and three releases' timings of the deeper network
    ("docs/speed.md", "measurements.md#before-010-fewer-copies-of-the-output", "Speed", "took 3.57-3.76 s"),
])
def test_reference_pages_have_no_wall_of_text(page, link, heading, figure):
    # the measurement detail is in docs/measurements.md under its heading, linked from the short text (tables and
    # code aside; a list over 1,200 characters keeps its items apart with blank lines)
    text = re.sub(r"(?ms)^```.*?^```", "", (REPO / page).read_text(encoding="utf-8"))
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    walls = [(len(p), p[:60]) for p in paras if len(p) > 1200 and not p.startswith("|")]
    assert not walls, walls
    assert link in text
    details = (REPO / "docs/measurements.md").read_text(encoding="utf-8").split(f"\n## {heading}\n", 1)
    assert len(details) == 2, heading
    assert figure in " ".join(details[1].split("\n## ", 1)[0].split()), figure


def test_what_is_refused_is_a_list_of_short_items():
    # the Memory item had grown to 2,344 characters with a fragment left over from a cut ("…limit;\nbefore any work;")
    text = (REPO / "docs/inputs.md").read_text(encoding="utf-8").split("\n## What is refused", 1)[1]
    items = [" ".join(i.split()) for i in re.split(r"\n(?=- )", text) if i.startswith("- ")]
    assert items and not [i[:80] for i in items if len(i) > 1200], [len(i) for i in items]
    assert not re.search(r";\s*before any work;", text)
    memory = text.split("**Memory**", 1)[1].split("\n**", 1)[0]
    # apps/cli: an IQTError is exit 2 before any work; out of memory during the work is one line and exit 1
    assert "exit 2" in memory and "exit 1" in memory, memory


def test_what_is_refused_keeps_the_warnings_apart_and_names_its_checks():
    """docs/inputs.md's tensor-value refusals had three "not refused" items among them, and "These two checks" after
    the 13 items left a reader to guess which two (a reader's review): the warnings are their own list, after the
    refusals, and the sentence names the element-order and unit checks (core/tensor_checks.py check_scale judges both
    on the tissue-like voxels where there are enough; the README these lines came from had named them so)."""
    text = (REPO / "docs/inputs.md").read_text(encoding="utf-8").split("\n## What is refused", 1)[1]
    for part in ("**Tensor values**", "**The DWI and its gradient table**"):
        body = text.split(part, 1)[1].split("\n**", 1)[0]
        refused, _, warned = body.partition("\nWarned of, not refused:\n")
        assert warned, part
        assert not re.search(r"(?im)^- not refused", refused) and "Not refused" not in refused, part
    assert "These two checks" not in text and "The element-order check (tensors mostly not positive definite) and the " \
        "unit check" in " ".join(text.split())


def test_the_fit_checks_have_a_heading_of_their_own():
    text = (REPO / "docs/inputs.md").read_text(encoding="utf-8")
    target = re.search(r"\]\(#([a-z0-9-]+)\)", _step(text, 1)).group(1)
    headings = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-"): h for h in re.findall(r"^## (.+)$", text, re.M)}
    body = text.split(f"\n## {headings[target]}\n", 1)[1].split("\n## ", 1)[0]
    assert "--exclude-outliers" in body and "**The gradient table.**" in body, target
    sigma = text.split("\n## What the uncertainty does not see\n", 1)[1].split("\n## ", 1)[0]
    assert "--exclude-outliers" not in sigma and "gradient table" not in sigma


def test_the_cohort_throughput_table_says_when_it_was_measured():
    """docs/cohorts.md's throughput table was labelled only "with the first shipped biqt" (a new-user audit): it names
    the version it was measured at and that it has not been re-measured since."""
    section = (REPO / "docs" / "cohorts.md").read_text().split("## Throughput", 1)[1].split("\n## ", 1)[0]
    flat = " ".join(section.split())
    assert re.search(rf"measured at {_V} \(commit [0-9a-f]{{7,}}\)", flat) and "not re-measured" in flat


def test_the_readme_install_says_its_size_and_what_each_extra_is_for():
    """A new user met a 2.5 GB install of every extra with no word of its size or of what each extra gives (a
    new-user audit): the install section names every extra pyproject.toml declares, and the size it took."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    section = (REPO / "README.md").read_text().split("## Two commands", 1)[1].split("\n## ", 1)[0]
    flat = " ".join(section.split())
    assert re.search(r"virtual environment took [\d.]+ GB", flat), "no size"
    said = flat.split("That line installs every extra", 1)[1].split("With all four", 1)[0]  # the sentence of what each is for
    assert [e for e in extras if not re.search(rf"`(?:pip install -e \"\.\[)?{e}\]?\"?`", said)] == []


def test_the_mask_row_names_every_option_and_its_bmax_help_fits_no_dti():
    """command-line.md's `iqt mask` row left out --bval/--bvec/--bmax, and `iqt mask --help` said --bmax would "fit
    DTI", which mask does not (a new-user audit): the row names every option of the parser, the help says what it reads."""
    from ImageQualityTransferLib.apps.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["mask"]
    row = re.search(r"^\| `(iqt mask [^`]+)`", (REPO / "docs/command-line.md").read_text(encoding="utf-8"), re.M)[1]
    options = {a.option_strings[-1 if a.option_strings[0] == "-o" else 0] for a in sub._actions
               if a.option_strings and a.dest not in ("help", "command_threads")}
    assert [o for o in sorted(options) if o not in row.replace("-o ", "--output ")] == [], row
    bmax = next(a for a in sub._actions if a.dest == "bmax").help
    assert "fit DTI" not in bmax and "iqt fit --bmax" in bmax, bmax


@pytest.mark.parametrize("page", USER_PAGES)
def test_a_shell_variable_a_page_uses_is_set_on_that_page(page):
    """docs/accuracy.md's training commands used `$T`, set only in docs/training.md (a new-user audit)."""
    text = (REPO / page).read_text(encoding="utf-8")
    unset = {v for v in re.findall(r"\$([A-Z])\b/", text) if not re.search(rf"\b{v}=\S", text)}
    assert not unset, unset


def test_the_quick_loops_share_of_the_tests_is_said_without_a_count_that_goes_stale():
    """docs/install.md gave the quick loop's count of tests ('1920 of the 2130 tests', at one commit): every new test
    made it stale and its check skipped in a shallow clone. The sentence gives the share and how to count, no count."""
    flat = " ".join((REPO / "docs/install.md").read_text(encoding="utf-8").split())
    sentence = flat.split("it is no quick loop:", 1)[1].split(". ", 1)[0]
    assert "nine in ten of the tests" in sentence and "--collect-only" in sentence, sentence
    assert not re.search(r"\b\d{3,}\b of (the )?\d{3,}", sentence) and "counted at commit" not in sentence, sentence


def test_every_option_of_every_command_is_named_where_the_command_is_documented():
    """command-line.md named no `iqt degrade --bval/--bvec/--bmax`, `iqt propagate --device/--tta`, `iqt lesion-check
    --factor/--radius/--mc-samples` nor `--propagate`'s `--seed` (a new-user audit, reading each `--help` beside the
    page): each parser option is in the command's table row or its own sections there (`train`: training.md; `batch`:
    cohorts.md)."""
    from ImageQualityTransferLib.apps.cli import build_parser

    doc = (REPO / "docs/command-line.md").read_text(encoding="utf-8")
    own_page = {"train": "docs/training.md", "batch": "docs/cohorts.md"}
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = {}
    for name, parser in sub.choices.items():
        rows = re.findall(rf"^\| `iqt {re.escape(name)}\b.*$", doc, re.M)
        sections = re.findall(rf"^### iqt {re.escape(name)}\b.*?(?=^#{{2,3}} )", doc, re.S | re.M)
        text = " ".join(rows + sections)
        if name in own_page:
            text += (REPO / own_page[name]).read_text(encoding="utf-8")
        absent = [a.option_strings[0] for a in parser._actions
                  if a.option_strings and a.dest not in ("help", "command_threads")
                  and not any(re.search(re.escape(o) + r"(?![\w-])", text) for o in a.option_strings)]
        if absent:
            missing[name] = absent
    assert not missing, missing


def test_the_interpolation_fill_is_told_as_it_is():
    """A review: the top CHANGELOG bullet said linear and nearest no longer wrote MD <= 0 tensors, which they never
    did, and accuracy.md said every method fills only the two rings beyond a tight mask, and gave the other-tools
    table's cubic ratios without saying they predate interpolation filling every empty voxel (the table has since been
    measured again with the fill, docs/measurements.md 'Inputs made by other tools', and says no such caveat)."""
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    entry = changelog.split("\n## 0.25.0", 1)[1].split("\n## ", 1)[0]  # the release that made the fill
    assert "cubic` (and linear, nearest)" not in entry and "by linear and nearest too, which never wrote such" in entry
    text = " ".join((REPO / "docs/accuracy.md").read_text(encoding="utf-8").split())
    assert "Every method, interpolation included, fills the context" not in text
    assert "interpolation fills every empty voxel" in text and "The table was measured before interpolation" not in text
    assert "measured again at version 0.25.0+" in (REPO / "docs/measurements.md").read_text(encoding="utf-8")


def test_the_other_input_styles_are_measured_with_the_fill():
    """A review: accuracy.md's 'Other input styles' paragraph (3 mm ortho, x2) quoted ratios measured before
    interpolation filled every empty voxel (its tight dipy/NRRD exteriors 0.975-0.977 read low); it now says it was
    measured with the fill and points at the record in docs/measurements.md."""
    text = " ".join((REPO / "docs/accuracy.md").read_text(encoding="utf-8").split())
    para = text[text.index("Other input styles, on the 3 mm ortho scan"):][:2000]
    assert "measured with interpolation filling every empty voxel" in para and "0.975-0.976" not in para
    assert "measurements.md#other-input-styles-on-the-3-mm-ortho-scan" in para
    assert "### Other input styles on the 3 mm ortho scan" in (REPO / "docs/measurements.md").read_text(encoding="utf-8")


def _readme_section(heading: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8").split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return " ".join(text.split())


def test_the_readme_says_the_cpu_index_before_a_reader_goes_on_from_the_install_line():
    """The CPU index for torch (without it PyPI's torch pulls GB of CUDA packages on Linux and Windows) was said at the
    end of a paragraph that first described the extras, the system packages and the demo, after the line that installs
    torch (a new-user audit): it is the first thing after that line. σ, first used there, is said to be the
    uncertainty as a standard deviation."""
    flat = _readme_section("Two commands")
    after_install = flat.split("```", 2)[2]
    assert after_install.index("--index-url https://download.pytorch.org/whl/cpu") < 200, after_install[:400]
    first_sigma = flat.index("σ")
    assert "standard deviation" in flat[first_sigma:first_sigma + 60], flat[first_sigma - 40:first_sigma + 80]


def test_the_readme_sends_other_tools_tensors_to_the_page_that_has_them():
    """README's Command line sent "tensors from FSL, MRtrix or dipy" to docs/command-line.md, which has no such part;
    docs/inputs.md's 'Tensors from other tools' has them (a new-user audit)."""
    flat = _readme_section("Command line")
    link = re.search(r"tensors from FSL, MRtrix or dipy[^\[]*\[[^\]]*\]\(([^)]+)\)", flat)
    assert link and link.group(1) == "docs/inputs.md#tensors-from-other-tools", flat
    assert "\n## Tensors from other tools\n" in (REPO / "docs/inputs.md").read_text(encoding="utf-8")


def test_install_md_names_every_benchmark_and_where_the_tests_look_for_chromium():
    """docs/install.md's layout left out benchmarks/md_std_correlation.py, and its Chromium item said "or set
    IQT_CHROMIUM to its path" of both browser tests, where only test_view.py reads it (a new-user audit)."""
    page = (REPO / "docs/install.md").read_text(encoding="utf-8")
    layout = page.split("\n## Layout\n", 1)[1]
    assert [p.name for p in sorted((REPO / "benchmarks").glob("*.py")) if p.name not in layout] == []
    item = " ".join(page.split("- Chromium for the tests", 1)[1].split("\n\n", 1)[0].split())
    named = set(re.findall(r"(test_\w+\.py)[^;()]*`IQT_CHROMIUM`", item))
    reads = 'os.environ.get("IQT_' + 'CHROMIUM"'  # in two parts, so that this file does not read as one that reads it
    readers = {p.name for p in (REPO / "Testing").rglob("test_*.py") if reads in p.read_text(encoding="utf-8")}
    assert readers and named == readers, (named, readers, item)


def test_the_noise_line_quoted_in_inputs_md_is_the_one_the_engine_says():
    """docs/inputs.md quotes biqt's noise line at index 0.167 and names its pieces; the quote had to be kept in step
    with methods/base.py's pieces by hand (its wording was shortened): it is the engine's line as printed, word for
    word."""
    from ImageQualityTransferLib.methods import base

    section = (REPO / "docs/inputs.md").read_text(encoding="utf-8").split("\n## The upsampling's warnings\n", 1)[1]
    quoted = " ".join(re.search(r"\n\n((?:    .+\n)+)", section).group(1).split())
    said = f"x.nii.gz: the input is noisier than clean scans (noise index 0.167, above 0.075): biqt {base._USES}" + \
        base.noise_ending(0.167, "biqt", f=2)
    assert quoted == " ".join(base.warning_lines(said)), (quoted, base.warning_lines(said))  # as printed, over two lines
    assert all(f"**{p}" in section for p in (base._EDGE.format(*base.NOISY_TRAINED).split(":")[0],
                                             base._BEYOND.format(base.NOISY_TRAINED[1]))), section[:2000]


def test_inputs_md_says_the_gradient_checks_noise_rule_and_its_advice_once():
    """docs/inputs.md had stated the noisy-table rule (under 2 steps, 1.25x) under the fit's check and again under
    `iqt upsample`'s, "a new fit of the same DWI ... cannot decide either" twice (and a paraphrase), and "`iqt fit` checks
    the first two" twice (a reader's review): each once, the other places linking it. The rule is one in the code."""
    from ImageQualityTransferLib.dmri import gradcheck
    from ImageQualityTransferLib.methods import inputs

    assert (inputs.FRAME_SHORT_STEPS, inputs.FRAME_NOISY_RATIO) == (gradcheck.NOISE_SHORT_STEPS, gradcheck.NOISY_RATIO)
    flat = " ".join((REPO / "docs/inputs.md").read_text(encoding="utf-8").split())
    ratio = f"{gradcheck.NOISY_RATIO:g}×"
    assert flat.count(ratio) == 1 and flat.count(f"run under {gradcheck.NOISE_SHORT_STEPS:g} steps (one mean voxel") == 1
    assert flat.count("new fit of the same") == 1 and flat.count("checks the first two") == 1
    assert flat.count("one direction repeated, the three axes only") == 1


def test_inputs_md_reads_in_short_paragraphs():
    """docs/inputs.md had grown paragraphs of 2,000-10,588 characters that mixed what a check does and what to do with
    how it was measured (a readability audit): each block between blank lines (code blocks, tables and the quoted
    warning left out) is at most 1,200 characters, and the measurement detail is linked in docs/measurements.md."""
    text = re.sub(r"```.*?```", "", (REPO / "docs/inputs.md").read_text(encoding="utf-8"), flags=re.S)
    blocks = [" ".join(b.split()) for b in re.split(r"\n\s*\n", text)
              if b.strip() and not b.lstrip("\n").startswith(("#", "|", "    "))]
    assert not [(len(b), b[:80]) for b in blocks if len(b) > 1200]
    linked = set(re.findall(r"\]\(measurements\.md#([a-z0-9-]+)\)", text))
    assert {"the-gradient-table-noise-other-commands-slabs", "a-mask-beyond-the-estimated-brain",
            "the-noise-index-of-a-small-brain", "what-the-refusals-replaced"} <= linked, linked


# a section another change is rewriting, left out of the length check until then (its own heading)
_NOT_YET_SHORT: dict = {}  # a page's section left long, by heading


@pytest.mark.parametrize("page, moved", [
    ("docs/training.md", {"iqt-train-refusals-and-the-registry", "iqt-train-options",
                          "iqt-train-data-parallel-checkpoints-gpu"}),
    ("docs/view.md", {"the-browser-viewer-iqt-view"}),
    ("docs/slicer.md", {"slicer-the-compare-picture", "slicer-the-preselected-method", "slicer-the-worker-process",
                        "slicer-the-legend", "slicer-the-median-floor", "slicer-a-noisy-input", "slicer-comparing-runs",
                        "slicer-the-direction-map", "slicer-the-opening-slice"}),
    ("docs/install.md", set()),
    ("docs/methods.md", {"the-noise-index-of-a-holed-brain", "shipped-models"}),
    ("docs/python.md", {"the-python-api"}),
    # 1,443-8,400 characters (8 blocks over 1,200): the NIfTI rules, the grid's and the maps' lists as one block each
    ("docs/conventions.md", {"the-cnns-unit-and-background-fits", "low-b-volumes-in-the-fits",
                             "failed-fits-flagged-in-the-maps"}),
    # 1,240-5,272 characters (15 blocks over 1,200): the results beside their before-and-after figures; the tables stay
    ("docs/accuracy.md", {"mds-map-before-0170", "without-a-mask-before-and-after", "the-default-uncertainty-method",
                          "tractographys-seeds", "the-negative-md-warning-of-iqt-track"}),
    # 1,879 and 2,742 characters: the house's rules and the method notes as one list each
    ("docs/design.md", {"uncertainty"}),
    # 1,209, 1,754 and 1,892 characters: the Slicer steps as one block, the 'Not there yet' and Documentation lists
    ("README.md", set()),
    # 1,211-4,357 characters (109 blocks over 1,200): the record's runs as one paragraph each, split at sentences
    ("docs/measurements.md", set()),
    # 1,372 and 1,236 characters: the 0.1.0 before/after rounds and the deeper network's timings beside the results
    ("docs/speed.md", {"before-010-fewer-copies-of-the-output", "the-deeper-network-030-040-060", "speed"}),
    # 1,232-1,997 characters (7 blocks over 1,200 besides 'Failed fits and cavities'): each limit beside its runs
    ("docs/limitations.md", {"the-cavity-rules-limits", "noise-flags-without-a-mask-sparing-the-core", "brains-unlike-the-trainings",
                             "a-brain-cut-by-the-field-of-view-the-cnns-unit",
                             "the-cnns-unit-without-a-brain-mask-which-inputs",
                             "sigma-of-rf-and-the-espcn-hetero-models-on-noisy-inputs-the-shares",
                             "sigma-on-noise-the-noise-index-does-not-see-the-runs"}),
])
def test_reference_pages_read_in_short_paragraphs(page, moved):
    """docs/training.md, docs/view.md, docs/slicer.md, docs/install.md, docs/methods.md and docs/python.md had grown
    paragraphs of 1,356-5,719, 1,361-8,765, 1,332-3,136, 1,566, 1,293-2,969 and 1,956-2,043 characters (besides the
    table; conventions.md, accuracy.md and design.md alike, their figures in the comments above) that mixed what an option
    does and what to do with how it was measured (a readability audit): each block between blank lines (code blocks
    and tables left out) is at most 1,200 characters, and the measurement detail is linked in docs/measurements.md,
    under headings that are there."""
    text = re.sub(r"```.*?```", "", (REPO / page).read_text(encoding="utf-8"), flags=re.S)
    if page in _NOT_YET_SHORT:
        text = re.sub(rf"(?ms)^## {re.escape(_NOT_YET_SHORT[page])}$.*?(?=^## |\Z)", "", text)
    blocks = [" ".join(b.split()) for b in re.split(r"\n\s*\n", text)
              if b.strip() and not b.lstrip("\n").startswith(("#", "|", "    "))]
    assert not [(len(b), b[:80]) for b in blocks if len(b) > 1200]
    linked = set(re.findall(r"\]\(measurements\.md#([a-z0-9-]+)\)", text))
    headings = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#{2,4} (.+)$", (REPO / "docs/measurements.md").read_text(encoding="utf-8"), re.M)}
    assert moved <= linked & headings, (moved - linked, moved - headings)


def test_every_qc_column_is_named_in_the_cohorts_qc_section_and_the_last_is_said():
    """docs/cohorts.md's QC section lists qc.tsv's columns for a lab's scripts: a column added without a word there
    (failed_fits_flagged, a cavity's count: a cohort audit) is named, and the one said to be the last is the last."""
    from ImageQualityTransferLib.apps.batch.qc import QC_COLUMNS

    section = (REPO / "docs" / "cohorts.md").read_text().split("\n## QC\n", 1)[1].split("\n## ", 1)[0]
    flat = " ".join(section.split())
    assert [c for c in QC_COLUMNS if not re.search(rf"\b{c}\b", flat)] == []
    last = re.findall(r"^\| `(\w+)` \|[^\n]*[Tt]he last column of `qc\.tsv`", section, re.M)  # the columns' table
    assert last == [QC_COLUMNS[-1]], last
