"""Comments and docstrings point inside the repository: no names of the project's working sessions ("review 40b",
"audit Z", "stop 51", "helper T"), which resolve nowhere a reader of the code can look; the reason stays, said about
the code, and history goes in the commit message."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "ImageQualityTransfer"
SESSION_NAME = re.compile(r"\b(review [0-9]{2}[a-z]?|audits? [A-Z][A-Z0-9]?\b|audit [0-9]{2}|stop [0-9]{2}|"
                          r"helper [A-Z]{1,2}[0-9]?\b)", re.IGNORECASE)


def _comments_and_docstrings(path: Path):
    """(line, text) of every comment and every string that stands alone as a statement (a docstring)."""
    source = path.read_text(encoding="utf-8")
    previous = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.string
        elif tok.type == tokenize.STRING and previous in (None, tokenize.INDENT, tokenize.NEWLINE, tokenize.DEDENT):
            yield tok.start[0], tok.string
        if tok.type not in (tokenize.NL, tokenize.COMMENT):
            previous = tok.type


def test_engine_comments_name_no_working_session():
    found = [f"{p.relative_to(ROOT.parent)}:{line}: {m.group(0)!r}"
             for p in sorted(ROOT.rglob("*.py")) for line, text in _comments_and_docstrings(p)
             for m in [SESSION_NAME.search(text)] if m]
    assert not found, "\n".join(found)
