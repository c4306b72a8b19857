"""fmmloopy.tree.morton: keys against a plain bit-by-bit interleaving."""

import numpy as np
import pytest

from fmmloopy.maths.geometry import NEIGHBOUR_OFFSETS
from fmmloopy.tree.morton import morton_decode, morton_encode, neighbour_keys, placeholder


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


@pytest.mark.parametrize("level", [1, 2, 5, 21])
def test_neighbour_keys_are_the_decoded_neighbours(level):
    """The 26 neighbour keys computed on the interleaved bits are the encoded integer
    neighbours (cube corners and faces included), and the mask is exactly those inside."""
    offsets = NEIGHBOUR_OFFSETS[np.any(NEIGHBOUR_OFFSETS != 0, axis=1)]
    rng = np.random.default_rng(level)
    cells = rng.integers(0, 1 << level, (400, 3))
    cells[0], cells[1], cells[2] = 0, (1 << level) - 1, [0, (1 << level) - 1, 0]
    keys, inside = neighbour_keys(morton_encode(cells), level)
    expected = cells[:, None, :] + offsets[None]
    assert np.array_equal(inside, np.all((expected >= 0) & (expected < (1 << level)), axis=2))
    assert np.array_equal(keys[inside], morton_encode(expected[inside]))
