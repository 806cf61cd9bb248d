"""User text in the user's language: `_` marks an engine line's template and passes it through the translator an app
edge installs (the Slicer module installs Slicer's own `translate(context, text)`, docs/slicer.md "Translation");
with none installed it is the identity, so the command line and the Python API stay in English.

A template is a literal string with named placeholders, formatted after translating, so that a translator may move
them: ``_("{count} voxels ...").format(count=n)``. Its context is its file's as Slicer's string extraction names it
(the package folder and the file's name: "methods.inputs"), which rewrites each ``_("...")`` into
``translate("methods.inputs", "...")`` for Qt's lupdate; Testing/core/test_i18n.py holds every marked template to a
literal."""

from __future__ import annotations

import ast
import contextlib
import contextvars
import functools
import re
import string
import sys
from pathlib import Path
from typing import Callable

_translator: Callable[[str, str], str] | None = None


def _(template: str) -> str:
    """`template` in the user's language where a translator is installed (one that returns "" or fails, or whose
    placeholders are not the template's, leaves the English), else as it is."""
    if _translator is None:
        return template
    return _translated(context_of(sys._getframe(1).f_globals.get("__name__", "")), template)


def context_of(module: str) -> str:
    """The translation context of the engine's module `module` ("ImageQualityTransferLib.methods.inputs" ->
    "methods.inputs"): its package folder and file name, as Slicer's extraction and `slicer.i18n.getContext` name it."""
    return ".".join(module.split(".")[-2:])


def translated(context: str, text: str) -> str:
    """`text` as the installed translator says it in `context` (an app's own text, as a panel's .ui in its class's
    context), or as it is: one translation for words the engine names too."""
    return _translated(context, text)


def _translated(context: str, template: str) -> str:
    if _translator is None:
        return template
    try:
        said = _translator(context, template)
    except Exception:  # noqa: BLE001 - a translation never stops a run: the English is said instead
        return template
    return said if isinstance(said, str) and said and _placeholders(said) == _placeholders(template) else template


def _placeholders(text: str) -> set | None:
    """The replacement fields of `text` as `str.format` reads them (None where it cannot read them): a translation
    with another set (a placeholder misspelled, added, dropped or given a format) would fail or lose a figure when
    the caller formats it, so the English is said instead."""
    try:
        return {(name, spec, conversion) for literal, name, spec, conversion in string.Formatter().parse(text)
                if name is not None}
    except ValueError:
        return None


_options: contextvars.ContextVar[dict | None] = contextvars.ContextVar("iqt_option_words", default=None)


def option(words: str) -> str:
    """The command line's `words` that name one of its options ("--voxel-size", "give --model") as the app that runs
    says them: as they are, unless an app edge named its own (`options_named`: the Slicer module's controls, in the
    user's language), so that a marked line takes them as a placeholder."""
    named = _options.get()
    return words if named is None else named.get(words, words)


@contextlib.contextmanager
def options_named(names: dict[str, str]):
    """`option` says `names[words]` for the command line's `words` within this block."""
    token = _options.set(names)
    try:
        yield
    finally:
        _options.reset(token)


def install(translator: Callable[[str, str], str] | None) -> None:
    """Make `translator(context, English template)` -> the user's language the one `_` uses; None goes back to
    English."""
    global _translator
    _translator = translator


def installed() -> Callable[[str, str], str] | None:
    """The translator `_` uses now, or None."""
    return _translator


@functools.cache
def marked_templates() -> tuple[tuple[str, str], ...]:
    """(context, template) of every template the engine marks with `_("...")`, read from its source as extraction
    reads it: the list an app edge translates for a process it starts (`translations`); a file it cannot read or parse
    is passed over, so a run never fails for it (its lines, if any, stay English there)."""
    root = Path(__file__).resolve().parent.parent
    found = []
    for path in sorted(root.rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
            # parsed only where _ is imported (in parentheses too): parsing every file took seconds
            if not re.search(r"i18n import \(?\s*(?:\w+\s*,\s*)*_\b", text):
                continue
            tree = ast.parse(text)
        except (OSError, ValueError, SyntaxError):  # a stray file beside the engine's (not UTF-8, not Python): not ours
            continue
        context = context_of(".".join(path.relative_to(root.parent).with_suffix("").parts))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_" and node.args \
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((context, node.args[0].value))
    return tuple(dict.fromkeys(found))


def translations() -> list[list[str]]:
    """[context, template, translation] for each marked template the installed translator changes ([] with none
    installed): handed to a separate process (slicer/worker.py), which has no translator of its own."""
    if _translator is None:
        return []
    return [[c, t, said] for c, t in marked_templates() if (said := _translated(c, t)) != t]
