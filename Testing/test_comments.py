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


# a working role's code (two capitals, then a letter or digit) after "review"/"helper"/"audit" (a colon between too),
# alone in parentheses, or before 's, :, / or ) (a plural, "IDs)", is not one): the docstrings of
# three tests had named the review that found their fault so, and four doc lines in the forms the first two missed
ROLE_TAG = re.compile(r"\b(?:reviews?|reviewers?|helpers?|audits?):? [A-Z]{2}[a-z0-9]{1,2}\b|\([A-Z]{2}[a-z][0-9]?\)"
                      r"|\b[A-Z]{2}(?:[a-rt-z0-9][:/)]|[a-z0-9]'s\b)")
REPO = ROOT.parent


def test_code_tests_and_docs_name_no_working_role():
    """The engine's and the tests' comments and docstrings, and the Markdown pages, name no reviewer or helper by its
    code: it resolves nowhere a reader can look."""
    files = [p for p in (*sorted(ROOT.rglob("*.py")), *sorted((REPO / "Testing").rglob("*.py")))
             if ROLE_TAG.search(p.read_text(encoding="utf-8"))]  # tokenized only where the text holds one (a second)
    found = [f"{p.relative_to(REPO)}:{line}: {m.group(0)!r}" for p in files
             for line, text in _comments_and_docstrings(p) for m in [ROLE_TAG.search(text)] if m]
    pages = [*sorted((REPO / "docs").rglob("*.md")), REPO / "README.md", REPO / "CHANGELOG.md"]
    found += [f"{p.relative_to(REPO)}:{n}: {m.group(0)!r}" for p in pages
              for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) for m in [ROLE_TAG.search(line)] if m]
    assert not found, "\n".join(found)
    assert ROLE_TAG.search("trained (review " + "RVh).") and ROLE_TAG.search("as said (" + "RVc)")
    assert all(ROLE_TAG.search(text) for text in ("On " + "RG2's masked", "(a review: " + "RG3)", "RG3" + "'s `odd_eo.py`",
                                                  "(" + "RVh/affinity.log)"))
    assert not any(ROLE_TAG.search(text) for text in ("worker IDs)", "the DTI's", "CNN/", "GPU's", "T1w/"))
