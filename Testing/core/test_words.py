"""Counts in messages agree with their noun: '1 subject', '2 subjects' (core/words.py)."""

from __future__ import annotations

from ImageQualityTransferLib.core.words import counted


def test_counted_is_singular_for_one_only():
    assert [counted(n, "seed") for n in (0, 1, 2)] == ["0 seeds", "1 seed", "2 seeds"]
    assert counted(3, "analysis", "analyses") == "3 analyses"
