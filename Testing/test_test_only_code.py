"""Code only the tests use: gone where it tested nothing but itself (core/tensors.py project_pd), an alias gone
(apps/batch/memory_reasons.py out_of_memory: core/errors.py's is the one rule), and each helper kept to check another
function says so in its docstring (none claims tools that do not exist). Read from the source: no torch or Dask import."""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "ImageQualityTransfer" / "ImageQualityTransferLib"


def _functions(rel: str) -> dict:
    tree = ast.parse((LIB / rel).read_text())
    return {n.name: ast.get_docstring(n) or "" for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_test_only_helpers_are_gone_or_say_what_they_check():
    assert "project_pd" not in _functions("core/tensors.py")
    assert "out_of_memory" not in _functions("apps/batch/memory_reasons.py")
    kept = [("core/orientation.py", "reorient"), ("methods/forest/bayes.py", "log_evidence"),
            ("fileio/tracts.py", "load_tracts"), ("methods/cnn/shuffle.py", "pixel_unshuffle_3d"),
            ("slicer/render.py", "pixel_ras")]
    for rel, name in kept:
        doc = " ".join(_functions(rel)[name].split())
        assert "Only the tests use it" in doc and "tools" not in doc, (rel, name, doc)
