"""fmmloopy.tree.morton: keys against a plain bit-by-bit interleaving."""

import numpy as np

from fmmloopy.tree.morton import morton_decode, morton_encode, placeholder


def _bit_loop_key(cell) -> int:
    """Morton key of one cell by a loop over its bits (x the highest of each triple)."""
    return sum(((int(cell[axis]) >> bit) & 1) << (3 * bit + 2 - axis)
               for bit in range(21) for axis in range(3))


def test_round_trip_and_bit_order():
    cells = np.random.default_rng(5).integers(0, 2**21, size=(500, 3))
    keys = morton_encode(cells)
    assert keys.dtype == np.uint64
    assert np.array_equal(morton_decode(keys), cells)
    assert [int(k) for k in keys] == [_bit_loop_key(c) for c in cells]


def test_placeholder_marks_the_level():
    levels = np.array([0, 1, 5, 21])
    assert [int(p) for p in placeholder(levels)] == [1 << (3 * int(level)) for level in levels]
