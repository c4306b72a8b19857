"""fmmloopy.tree.csr: CSR lists built, read and cut, against plain Python lists."""

import numpy as np
import pytest

from fmmloopy.tree.csr import (
    INDEX_DTYPE,
    csr_from_pairs,
    list_rows,
    ranges_to_indices,
    select_rows,
    starts_from_counts,
)


def _rows(starts, entries):
    return [list(entries[starts[r]:starts[r + 1]]) for r in range(len(starts) - 1)]


@pytest.mark.parametrize("sort_entries", [False, True])
@pytest.mark.parametrize("low, high", [(0, 100), (0, 3), (-50, 50)],
                         ids=["entries", "repeated-entries", "negative-entries"])
def test_pairs_become_rows(sort_entries, low, high):
    """Rows in order, entries in input order or sorted (ties kept in input order) -- through
    the one-key sort and, with negative entries, through lexsort."""
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 7, 50)
    entries = rng.integers(low, high, 50)
    aligned = np.arange(50)
    starts, got, got_aligned = csr_from_pairs(rows, entries, 9, aligned,
                                              sort_entries=sort_entries)
    assert starts.dtype == got.dtype == got_aligned.dtype == INDEX_DTYPE
    assert len(starts) == 10 and starts[-1] == 50
    for row in range(9):
        pairs = [(e, a) for r, e, a in zip(rows, entries, aligned, strict=True) if r == row]
        if sort_entries:
            pairs.sort()
        cut = slice(starts[row], starts[row + 1])
        assert list(zip(got[cut], got_aligned[cut], strict=True)) == pairs
    assert np.array_equal(list_rows(starts), np.sort(rows))


def test_no_pairs_give_empty_rows():
    starts, entries = csr_from_pairs(np.zeros(0, int), np.zeros(0, int), 4)
    assert np.array_equal(starts, np.zeros(5)) and len(entries) == 0


def test_select_rows_renumbers_the_chosen_rows():
    starts = starts_from_counts(np.array([2, 0, 3, 1]))
    entries = np.array([10, 11, 20, 21, 22, 30])
    aligned = entries * 2
    new_starts, new_entries, new_aligned = select_rows(starts, entries, np.array([3, 1, 2]),
                                                       aligned)
    assert _rows(new_starts, new_entries) == [[30], [], [20, 21, 22]]
    assert np.array_equal(new_aligned, 2 * new_entries)


@pytest.mark.parametrize("rows", [[0, 2, 3], [0, 1, 2, 3], [2, 0, 3], [0, 2], [0, 0, 2, 3]])
def test_select_rows_of_every_entry_is_the_general_selection(rows):
    """Rows holding every entry in order come back without a gather, as read-only views; any
    other choice (out of order, one short, a row twice) is gathered: the same rows either way."""
    starts = starts_from_counts(np.array([2, 0, 3, 1]))
    entries = np.array([10, 11, 20, 21, 22, 30], dtype=np.int32)
    new_starts, new_entries, new_aligned = select_rows(starts, entries, np.array(rows),
                                                       entries * 2)
    assert _rows(new_starts, new_entries) == [
        entries[starts[r]:starts[r + 1]].tolist() for r in rows]
    assert np.array_equal(new_aligned, 2 * new_entries)
    assert new_entries.dtype == INDEX_DTYPE and new_aligned.dtype == INDEX_DTYPE
    if rows in ([0, 2, 3], [0, 1, 2, 3]):
        assert not new_entries.flags.writeable and entries.flags.writeable


def test_ranges_to_indices_concatenates_ranges():
    starts, counts = np.array([5, 0, 9]), np.array([2, 0, 3])
    expected = [i for s, c in zip(starts, counts, strict=True) for i in range(s, s + c)]
    assert list(ranges_to_indices(starts, counts)) == expected
    assert len(ranges_to_indices(np.zeros(2, int), np.zeros(2, int))) == 0
