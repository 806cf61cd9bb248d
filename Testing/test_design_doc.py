"""docs/design.md's house: every engine module named in its layout, the registry where it is, and the Slicer
docstrings saying which methods run in a separate process as the Logic decides (ImageQualityTransfer.py `process`)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "ImageQualityTransfer" / "ImageQualityTransferLib"


def _house() -> str:
    text = (ROOT / "docs" / "design.md").read_text()
    return text[text.index("## The house"):text.index("## What the data teach")]


def _layout() -> dict[tuple[str, ...], str]:
    """Each folder of the house's code block (a path of names below the engine) -> the text of its own lines: the
    folder's line, its entries and their continuation lines, without its subfolders' lines."""
    block = _house().split("```")[1].splitlines()
    own: dict[tuple[str, ...], list[str]] = {}
    stack: list[tuple[int, tuple[str, ...]]] = []
    for line in block:
        if not line.strip():
            continue
        indent, first = len(line) - len(line.lstrip()), line.split()[0]
        while stack and indent <= stack[-1][0]:
            stack.pop()
        if first.endswith("/"):
            path = (stack[-1][1] if stack else ()) + (first.rstrip("/"),)
            stack.append((indent, path))
            own.setdefault(path, []).append(line.strip()[len(first):])
        elif stack:
            own[stack[-1][1]].append(line.strip())
    return {path: " ".join(lines) for path, lines in own.items()}


def test_the_house_names_every_module_and_the_registry():
    """Each module is named in its own folder's lines of the layout, as `name.py` (a subfolder's list may name it
    by its stem, as cli/ names its commands), so a module missing there is found even where its stem is a word
    another entry's description uses or another folder's file has the same name."""
    layout = _layout()
    base = ("ImageQualityTransfer", "ImageQualityTransferLib")
    missing = []
    for f in LIB.rglob("*.py"):
        if f.name == "__init__.py":
            continue
        folder = base + f.relative_to(LIB).parent.parts
        words = set(re.findall(r"[A-Za-z_]\w*(?:\.py)?", layout.get(folder, "")))
        if f.name not in words and not (len(folder) > len(base) + 1 and f.stem in words):
            missing.append(str(f.relative_to(LIB)))
    assert not missing, f"docs/design.md's layout leaves out {missing}"
    house = _house()
    assert "methods/registry.py" in house and "registry in `methods/__init__.py`" not in house


def test_which_methods_run_in_a_separate_process_is_said_as_the_logic_decides():
    logic = (ROOT / "ImageQualityTransfer" / "ImageQualityTransfer.py").read_text()
    assert "separateProcess = needsTorch or not self._batch()" in logic  # every method with a main window
    for rel in ("slicer/processing.py", "slicer/separate_process.py", "slicer/worker.py"):
        head = " ".join((LIB / rel).read_text().split('"""')[1].split())
        assert "torch methods only in batch mode" in head or "the torch methods in batch mode" in head, rel
    assert "in batch mode only the torch methods" in " ".join(_house().split())
