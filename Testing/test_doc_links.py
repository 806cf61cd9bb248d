"""The user documentation's relative links resolve: every markdown link in README.md, CHANGELOG.md and docs/*.md
that is not a URL names a file that exists and, with a #anchor into a markdown file, a heading of that file that
gives the anchor (GitHub's rule: the heading's text lowercased, punctuation but '-' and '_' dropped, spaces turned
to '-'; a repeated heading gets -1, -2, ...). README.md stays a first page: under 400 lines (the reference detail
lives in docs/). No data, no engine import."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(([^()\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield n, line


def slug(heading: str) -> str:
    text = LINK.sub(lambda m: m.group(1), heading)  # a link in a heading counts by its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            out.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
    return out


def links(path: Path):
    """(line number, target) of every relative link on the page, inline code left out."""
    text = path.read_text(encoding="utf-8")
    # a paragraph's lines joined, so that a link whose text wraps onto the next line is seen whole
    block, start = [], 0
    for n, line in list(prose_lines(text)) + [(None, "")]:
        if line.strip() and n is not None:
            if not block:
                start = n
            block.append(line)
            continue
        joined = re.sub(r"`[^`]*`", lambda m: "`" + "x" * (len(m.group()) - 2) + "`", " ".join(block))
        for m in LINK.finditer(joined):
            target = m.group(2)
            if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
                yield start, target
        block = []


def broken_links(pages=PAGES) -> list[str]:
    problems, cache = [], {}
    for page in pages:
        for n, target in links(page):
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            where = f"{page.relative_to(REPO) if page.is_relative_to(REPO) else page}:{n}: {target}"
            if not dest.exists():
                problems.append(f"{where}: no such file")
                continue
            if anchor and dest.suffix == ".md":
                if dest not in cache:
                    cache[dest] = anchors(dest)
                if anchor not in cache[dest]:
                    problems.append(f"{where}: no heading gives #{anchor}")
    return problems


def test_every_relative_link_resolves():
    assert broken_links() == []


def paragraphs(path: Path):
    """(line number, text) of each paragraph outside code blocks, its lines joined."""
    block, start = [], 0
    for n, line in list(prose_lines(path.read_text(encoding="utf-8"))) + [(None, "")]:
        if line.strip() and n is not None:
            if not block:
                start = n
            block.append(line)
        elif block:
            yield start, " ".join(block)
            block = []


def test_above_and_below_point_within_their_page():
    """A link whose text is "above" or "below" points into its own page; the passages moved out of the README that had
    said "see above" of the README's Two commands and "the training table above" of docs/training.md link to them."""
    wrong = [f"{page.relative_to(REPO)}:{n}: {m.group(0)}" for page in PAGES for n, text in paragraphs(page)
             for m in LINK.finditer(text) if m.group(1).strip().lower() in ("above", "below")
             and not m.group(2).startswith("#")]
    assert wrong == []
    for page, said, target in [("docs/command-line.md", "the main job, see [", "](../README.md#two-commands)"),
                               ("docs/accuracy.md", "warm-started from its ×3 model, [", "](training.md#training)")]:
        text = (REPO / page).read_text(encoding="utf-8")
        assert said in text and target in text.split(said, 1)[1][:80], page


def test_readme_is_a_first_page():
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines < 400, f"README.md has {lines} lines: move reference detail into docs/"


def test_the_slicer_modules_readme_link_names_a_readme_heading():
    tree = ast.parse((REPO / "ImageQualityTransfer" / "ImageQualityTransfer.py").read_text(encoding="utf-8"))
    url = next(ast.literal_eval(s.value) for s in tree.body
               if isinstance(s, ast.Assign) and ast.unparse(s.targets[0]) == "README_URL")
    assert "#" in url
    assert url.rpartition("#")[2] in anchors(REPO / "README.md")


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "a.md"
    (tmp_path / "README.md").write_text("# Title\n\n## Two words\n\n## Two words\n")
    page.write_text("# A\n\nSee [fine](../README.md#two-words-1), [also](#a) and [the\nsecond](../README.md#two-words).\n\n"
                    "```\n[not a link](nowhere.md)\n```\n\nBut [gone](../README.md#three-words), [missing](b.md) "
                    "and [here](#b).\n")
    problems = broken_links([page])
    assert [p.split(": ", 1)[1] for p in problems] == [
        "../README.md#three-words: no heading gives #three-words", "b.md: no such file", "#b: no heading gives #b"]


@pytest.mark.parametrize("heading, anchor", [
    ("Measured on the dev subjects", "measured-on-the-dev-subjects"),
    ("Use it in 3D Slicer", "use-it-in-3d-slicer"),
    ("Install, test, and the code's layout", "install-test-and-the-codes-layout"),
    ("Threads, the same bytes again, what made a file", "threads-the-same-bytes-again-what-made-a-file"),
    ("The README's examples", "the-readmes-examples"),
    ("`iqt batch` and its_options", "iqt-batch-and-its_options"),
])
def test_github_slugs(heading, anchor):
    assert slug(heading) == anchor


def test_the_readme_methods_table_agrees_with_iqt_methods():
    """Every method `iqt methods` lists is in the README's table or named beside it, and each row's uncertainty cell is
    '–' exactly where the method gives none: the table had 12 of 14 and said `deep` had uncertainty (a newcomer's
    audit)."""
    from ImageQualityTransferLib import methods

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Methods"):]
    section = section[: section.index("\n## ", 1)]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 4:
            for name in re.findall(r"`([a-z0-9-]+)`", cells[0]):
                rows[name] = cells[2]
    intro = section[: section.index("| method |")]
    for name in methods.names():
        assert name in rows or f"`{name}`" in intro, f"{name}: neither in the README's methods table nor named beside it"
        if name in rows:
            assert (rows[name] == "–") == (not methods.get(name).gives_uncertainty), (name, rows[name])


def _link_texts(path: Path):
    """(link text, target) of every relative link on the page, paragraphs joined, inline code left out."""
    text = re.sub(r"`[^`]*`", "``", "\n".join(line for _, line in prose_lines(path.read_text(encoding="utf-8"))))
    for m in LINK.finditer(re.sub(r"\s*\n\s*", " ", text)):
        if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", m.group(2)):
            yield m.group(1), m.group(2)


def _title(path: Path) -> str:
    m = re.search(r"^# (.+)$", path.read_text(encoding="utf-8"), re.M)
    return slug(m.group(1)) if m else ""


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_a_link_named_after_a_heading_goes_to_that_heading(page):
    # the anchor resolving is not enough: "What the pooled figures hide" had led to the section above it
    wrong = []
    for label, target in _link_texts(page):
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if (anchor and dest.suffix == ".md" and dest.exists() and slug(label) in anchors(dest) - {_title(dest)}
                and slug(label) != anchor):
            wrong.append(f"[{label}]({target})")
    assert not wrong, f"{page.name}: links whose text is a heading of the page they point to, at another anchor: {wrong}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_below_and_above_name_a_heading_of_the_page(page):
    # "(below, *Without a brain mask*)" had pointed to a section of another page
    text = " ".join(line for _, line in prose_lines(page.read_text(encoding="utf-8")))
    named = re.findall(r"\((?:below|above), \*([^*]+)\*\)", text)
    assert not [n for n in named if slug(n) not in anchors(page)], (page.name, named)


def test_no_page_points_to_a_scratch_folder_outside_the_repository():
    """docs/measurements.md cited 13 files under /work/scratch… (one already gone when a new-user audit looked): a
    reader cannot open them. A figure's script outside the repository is said to be so, by no path."""
    found = [f"{page.name}:{n}" for page in PAGES for n, line in enumerate(page.read_text().splitlines(), 1)
             if re.search(r"/work/(?!shared/)", line)]
    assert not found, found
