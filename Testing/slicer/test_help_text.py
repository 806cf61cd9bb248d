"""The module's help (ImageQualityTransfer.py, parent.helpText) is one tr() text per paragraph: as one ~3,000-character
text, any edit made the whole translation fuzzy (audit AD, item 11). The English is the paragraphs joined as before
(one per line, the README link filled in). The module's __init__ runs from its source (the module itself needs Slicer)
with an English tr() and one that marks what it translated."""

from __future__ import annotations

import ast
import re
import types

from helpers import REPO

MODULE_PY = REPO / "ImageQualityTransfer" / "ImageQualityTransfer.py"


def help_text(tr):
    tree = ast.parse(MODULE_PY.read_text())
    readme = next(s for s in tree.body if isinstance(s, ast.Assign) and ast.unparse(s.targets[0]) == "README_URL")
    module = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "ImageQualityTransfer")
    init = next(f for f in module.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    base = types.SimpleNamespace(__init__=lambda self, parent: setattr(self, "parent", parent))
    space = {"_": tr, "translate": lambda context, text: text, "ScriptedLoadableModule": base}
    exec(compile(ast.Module([readme, init], []), str(MODULE_PY), "exec"), space)
    parent = types.SimpleNamespace()
    space["__init__"](types.SimpleNamespace(), parent)
    return parent.helpText, space["README_URL"]


def test_each_help_paragraph_is_one_translatable_text():
    text, url = help_text(lambda t: "<" + t + ">")
    units = text.strip("\n").split("\n<<p>")
    units = [units[0]] + ["<<p>" + u for u in units[1:]]
    assert len(units) >= 7
    for unit in units:  # "<" + one paragraph + ">": one tr() text each, none spanning two paragraphs
        assert unit.startswith("<<p>") and unit.endswith("</p>>"), unit[:80]
        assert unit.count("<p>") == 1 and unit.count("</p>") == 1, unit[:80]


def test_the_english_help_is_the_paragraphs_one_per_line():
    text, url = help_text(lambda t: t)
    assert text.startswith("\n<p>Image Quality Transfer (IQT) super-resolves") and text.endswith("</p>\n")
    paragraphs = text[1:-1].split("\n<p>")
    assert len(paragraphs) >= 7 and all(p.endswith("</p>") for p in paragraphs)
    assert f'<a href="{url}">README</a>' in text and "{url}" not in text
    for heading in ("Input", "Which method", "Reading the uncertainty", "Tensor conventions", "Upsampling"):
        assert f"<p><b>{heading}</b>:" in text
    assert not re.search(r"</p>\s*[^\s<]", text)  # no text between paragraphs
