"""Sorting integer keys: ``np.lexsort``'s order from one stable sort of a combined key."""

from __future__ import annotations

import numpy as np

__all__ = ["stable_argsort", "stable_lexsort"]


def stable_lexsort(keys: tuple[np.ndarray, ...]) -> np.ndarray:
    """``np.lexsort(keys)`` (the last key primary, ties in input order) as one stable sort of a
    single int64 key made of them, where they are non-negative and their ranges fit in 62 bits
    (else ``np.lexsort`` itself): several times faster than ``np.lexsort`` on the grouped M2L
    lists (:func:`fmmloopy.maths.layouts.grouped_arguments`; docs/history.md, 2026-11-25,
    "Set-up earlier that day")."""
    combined, span = np.zeros(len(keys[0]), dtype=np.int64), 1
    for key in keys:
        if len(key) and key.min() < 0:
            return np.lexsort(keys)
        size = int(key.max()) + 1 if len(key) else 1
        if span * size >= 2 ** 62:
            return np.lexsort(keys)
        combined += key.astype(np.int64) * span
        span *= size
    return stable_argsort(combined, span)


def stable_argsort(key: np.ndarray, span: int | None = None) -> np.ndarray:
    """``np.argsort(key, kind="stable")`` of a non-negative integer ``key`` (signed or
    unsigned) below ``span`` (its maximum + 1 unless given): numpy radix-sorts 8- and 16-bit
    integers, so a key whose range fits is sorted as one, several times faster than as int64
    (docs/history.md, 2026-11-25, "Set-up: overlapped, narrower, pooled")."""
    if span is None:
        span = int(key.max()) + 1 if len(key) else 1
    for narrow in (np.uint8, np.uint16):
        if span <= np.iinfo(narrow).max + 1:
            return np.argsort(key.astype(narrow), kind="stable")
    # Wider keys: numpy's default sort (vectorised where the CPU allows, faster than the stable
    # one: docs/history.md, 2026-11-25, "Set-up: overlapped, narrower, pooled"), then equal
    # keys put back in input order; where many keys are equal, the stable sort itself.
    order = np.argsort(key)
    ranked = key[order]
    tied = ranked[1:] == ranked[:-1]
    ties = int(np.count_nonzero(tied))
    if ties == 0:
        return order
    if ties > len(key) // 16:
        return np.argsort(key, kind="stable")
    member = np.zeros(len(key), dtype=bool)
    member[1:] = tied
    member[:-1] |= tied
    at = np.flatnonzero(member)
    order[at] = order[at][np.lexsort((order[at], ranked[at]))]
    return order
