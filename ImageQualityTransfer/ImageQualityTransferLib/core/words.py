"""Counts in the words of a message: '1 subject', '2 subjects' (an audit had met '1 subjects' and '1 epochs')."""

from __future__ import annotations


def counted(n, noun: str, plural: str | None = None) -> str:
    """`n` and `noun`, in the plural (`plural`, else noun + 's') unless n is 1."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
