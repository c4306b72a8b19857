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


@pytest.mark.parametrize("bits", [20, 40, 60, 63])
def test_stable_argsort_of_keys_packed_with_their_index(bits):
    """Keys as wide as Morton keys at depth 20 and 21 (60 and 63 bits), their high bits
    packed with the index: where key and index do not fit one word together, keys equal in
    the kept high bits but not in the low ones (a cluster's points in one fine cell) are
    still ordered by key, equal keys by index."""
    rng = np.random.default_rng(bits)
    for count in (2, 5000):
        base = rng.integers(0, 2 ** (bits - 1), count // 50 + 1, dtype=np.uint64)
        low = rng.integers(0, 2 ** 12, count, dtype=np.uint64)  # differ in the low bits
        key = (base[rng.integers(0, len(base), count)] << np.uint64(1)) ^ low
        key[: count // 3] = key[0]  # equal keys
        assert np.array_equal(stable_argsort(key), np.argsort(key, kind="stable"))
        spread = rng.integers(0, 2 ** bits, count, dtype=np.uint64)
        assert np.array_equal(stable_argsort(spread), np.argsort(spread, kind="stable"))
