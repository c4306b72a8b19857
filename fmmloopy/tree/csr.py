"""CSR lists, the one form every list of the FMM takes: a row per box.

Row ``b`` of ``(starts, entries)`` is ``entries[starts[b]:starts[b + 1]]``; arrays *aligned* with
the entries (e.g. V's transfer-vector indices) are cut and sorted with them. Indices are
:data:`INDEX_DTYPE`, as the kernels take them.
"""

from __future__ import annotations

import numpy as np

from fmmloopy.base.sorting import stable_lexsort
from fmmloopy.maths.geometry import INDEX_DTYPE

__all__ = [
    "INDEX_DTYPE",
    "csr_from_pairs",
    "list_rows",
    "ranges_to_indices",
    "select_rows",
    "starts_from_counts",
]


def ranges_to_indices(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(s, s + c)`` over all (s, c) without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts - offsets, counts) + np.arange(total, dtype=np.int64)


def starts_from_counts(counts: np.ndarray) -> np.ndarray:
    """``(len(counts) + 1,)`` row starts of rows of ``counts`` entries."""
    starts = np.zeros(len(counts) + 1, dtype=INDEX_DTYPE)
    np.cumsum(counts, out=starts[1:])
    return starts


def csr_from_pairs(rows: np.ndarray, entries: np.ndarray, nrows: int, *aligned: np.ndarray,
                   sort_entries: bool = False) -> tuple[np.ndarray, ...]:
    """``(starts, entries, *aligned)`` from (row, entry) pairs: entries keep their order within a
    row, or are sorted there with ``sort_entries``."""
    rows = np.asarray(rows, dtype=np.int64)
    entries = np.asarray(entries)
    # Sorted within a row: lexsort's order, by one stable sort of a combined key where it fits.
    order = (stable_lexsort((entries, rows)) if sort_entries
             else np.argsort(rows, kind="stable"))
    starts = starts_from_counts(np.bincount(rows, minlength=nrows))
    return (starts, entries[order].astype(INDEX_DTYPE),
            *(np.asarray(a)[order].astype(INDEX_DTYPE) for a in aligned))


def list_rows(starts: np.ndarray) -> np.ndarray:
    """The row (box) of each entry of a CSR list."""
    return np.repeat(np.arange(len(starts) - 1, dtype=INDEX_DTYPE), np.diff(starts))


def _read_only_view(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.setflags(write=False)
    return view


def select_rows(starts: np.ndarray, entries: np.ndarray, rows: np.ndarray,
                *aligned: np.ndarray) -> tuple[np.ndarray, ...]:
    """The rows ``rows`` of ``(starts, entries)``, renumbered ``0..len(rows)-1``.

    Returns ``(new_starts, new_entries, *new_aligned)``. This is the layout the kernels take:
    one row per target box of a launch. Where the rows hold every entry, the entries come back
    as read-only views instead of copies.
    """
    rows = np.asarray(rows, dtype=np.int64)
    counts = (starts[rows + 1] - starts[rows]).astype(np.int64)
    if counts.sum() == len(entries) and np.all(rows[1:] > rows[:-1]):
        # Ascending rows holding every entry: all of them, in their order (no gather; a
        # launch over every box its list serves, as most are).
        return (starts_from_counts(counts),
                *(_read_only_view(a.astype(INDEX_DTYPE, copy=False))
                  for a in (entries, *aligned)))
    picked = ranges_to_indices(starts[rows].astype(np.int64), counts)
    return (starts_from_counts(counts), entries[picked].astype(INDEX_DTYPE),
            *(a[picked].astype(INDEX_DTYPE) for a in aligned))
