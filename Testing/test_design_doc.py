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


def test_the_house_names_every_module_and_the_registry():
    house = _house()
    words = set(re.findall(r"[A-Za-z_]\w*(?:\.py)?", house))
    missing = [str(f.relative_to(LIB)) for f in LIB.rglob("*.py") if f.name != "__init__.py"
               and f.name not in words and f.stem not in words]
    assert not missing, f"docs/design.md's layout leaves out {missing}"
    assert "methods/registry.py" in house and "registry in `methods/__init__.py`" not in house


def test_which_methods_run_in_a_separate_process_is_said_as_the_logic_decides():
    logic = (ROOT / "ImageQualityTransfer" / "ImageQualityTransfer.py").read_text()
    assert "separateProcess = needsTorch or not self._batch()" in logic  # every method with a main window
    for rel in ("slicer/processing.py", "slicer/separate_process.py", "slicer/worker.py"):
        head = " ".join((LIB / rel).read_text().split('"""')[1].split())
        assert "torch methods only in batch mode" in head or "the torch methods in batch mode" in head, rel
    assert "in batch mode only the torch methods" in " ".join(_house().split())
