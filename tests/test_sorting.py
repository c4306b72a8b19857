"""fmmloopy.base.sorting: the one-key sort against numpy's own lexsort."""

import numpy as np
import pytest

from fmmloopy.base.sorting import stable_argsort, stable_lexsort


@pytest.mark.parametrize("high", [1, 3, 1000, 2 ** 40])
def test_stable_lexsort_is_numpys_lexsort(high):
    """The one-key sort gives np.lexsort's order, ties included (few distinct values), and
    falls back to it where the combined key would not fit (2**40 per key) or a key is
    negative."""
    rng = np.random.default_rng(high)
    for count in (0, 1, 257):
        for nkeys in (1, 2, 4):
            keys = tuple(rng.integers(0, high, count) for _ in range(nkeys))
            assert np.array_equal(stable_lexsort(keys), np.lexsort(keys))
    negative = (rng.integers(-5, 5, 100), rng.integers(0, 3, 100))
    assert np.array_equal(stable_lexsort(negative), np.lexsort(negative))


@pytest.mark.parametrize("high", [1, 200, 256, 257, 65536, 65537, 2 ** 40])
def test_stable_argsort_is_numpys_stable_argsort(high):
    """Keys sorted as 8- or 16-bit integers where their range fits (at and across each
    boundary) and as themselves past it: numpy's stable order, ties included."""
    rng = np.random.default_rng(high)
    for count in (0, 1, 3000):
        key = rng.integers(0, high, count)
        assert np.array_equal(stable_argsort(key), np.argsort(key, kind="stable"))
        assert np.array_equal(stable_argsort(key, high), np.argsort(key, kind="stable"))


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
@pytest.mark.parametrize("distinct", [5, 100, 3000, 10 ** 6])
def test_stable_argsort_puts_equal_wide_keys_in_input_order(dtype, distinct):
    """Wide keys (beyond 16 bits) with no, few and many equal values, signed and unsigned
    (Morton keys are uint64): the order of numpy's stable sort."""
    rng = np.random.default_rng(distinct)
    values = rng.integers(0, 2 ** 60, distinct)
    key = values[rng.integers(0, distinct, 4000)].astype(dtype)
    assert np.array_equal(stable_argsort(key), np.argsort(key, kind="stable"))
