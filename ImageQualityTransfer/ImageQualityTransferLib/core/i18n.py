"""User text in the user's language: `tr` marks an engine line's template and passes it through the translator an
app edge installs (the Slicer module installs Slicer's own, docs/slicer.md "Translation"); with none installed it
is the identity, so the command line and the Python API stay in English.

A template is a literal string with named placeholders, formatted after translating, so that a translator may move
them: ``tr("{count} voxels ...").format(count=n)``. Literals are what string extraction (Qt's lupdate, as Slicer
runs it) finds; Testing/core/test_i18n.py holds every marked template to it."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import Callable

_translator: Callable[[str], str] | None = None


def tr(template: str) -> str:
    """`template` in the user's language where a translator is installed (one that returns "" or fails leaves the
    English), else as it is."""
    return _translated(template)


def _translated(template: str) -> str:
    if _translator is None:
        return template
    try:
        said = _translator(template)
    except Exception:  # noqa: BLE001 - a translation never stops a run: the English is said instead
        return template
    return said if isinstance(said, str) and said else template


def install(translator: Callable[[str], str] | None) -> None:
    """Make `translator` (English template -> the user's language) the one `tr` uses; None goes back to English."""
    global _translator
    _translator = translator


def installed() -> Callable[[str], str] | None:
    """The translator `tr` uses now, or None."""
    return _translator


@functools.cache
def marked_templates() -> tuple[str, ...]:
    """Every template the engine marks with `tr("...")`, read from its source (what string extraction reads): the
    list an app edge translates for a process it starts (`translations`)."""
    root = Path(__file__).resolve().parent.parent
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if not re.search(r"(?<![\w.])tr\s*\(", text):  # parsed only where a call may be: parsing every file took seconds
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "tr" and node.args \
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append(node.args[0].value)
    return tuple(dict.fromkeys(found))


def translations() -> dict[str, str]:
    """Each marked template the installed translator changes, with its translation ({} with none installed): handed
    to a separate process (slicer/worker.py), which has no translator of its own."""
    if _translator is None:
        return {}
    return {t: said for t in marked_templates() if (said := _translated(t)) != t}
