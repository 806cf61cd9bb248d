"""Words of a message: counts that agree with their noun ('1 subject', '2 subjects': an audit had met '1 subjects' and
'1 epochs'), and lists joined as "a, b and c"."""

from __future__ import annotations


def counted(n, noun: str, plural: str | None = None) -> str:
    """`n` and `noun`, in the plural (`plural`, else noun + 's') unless n is 1."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def listed(items, word: str = "and", most: int | None = None) -> str:
    """"a", "a and b", "a, b and c" (no comma before `word`, as every message has it); "" for none. `most`: the first
    `most` items and "N more" for the rest."""
    items = list(items)
    if most is not None and len(items) > most:
        items = items[:most] + [f"{len(items) - most} more"]
    return f"{', '.join(items[:-1])} {word} {items[-1]}" if len(items) > 1 else "".join(items)
