"""Words of a message (core/words.py): counts agree with their noun ('1 subject', '2 subjects'); lists read "a, b and c"."""

from __future__ import annotations

from ImageQualityTransferLib.core.words import counted, listed


def test_counted_is_singular_for_one_only():
    assert [counted(n, "seed") for n in (0, 1, 2)] == ["0 seeds", "1 seed", "2 seeds"]
    assert counted(3, "analysis", "analyses") == "3 analyses"


def test_listed_joins_as_every_message_did():
    """The one joiner of the five the messages had (methods/base.py, apps/cli/batch.py and options.py, core/memory.py,
    analysis/tractography.py): no comma before the last word, "N more" past `most`."""
    assert [listed("abcd"[:n]) for n in range(5)] == ["", "a", "a and b", "a, b and c", "a, b, c and d"]
    assert listed(("--step", "--min-length"), "or") == "--step or --min-length"
    assert listed(list("abcdef"), most=4) == "a, b, c, d and 2 more" and listed(list("abcd"), most=4) == "a, b, c and d"
