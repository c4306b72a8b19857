"""Rows of a per-box device buffer read, added and copied in place (fmmloopy.execution.rows),
against numpy on the same array: exact, float64 and complex128, rows in any order."""

import numpy as np
import pyopencl.array as cla
import pytest

from fmmloopy.execution.rows import add_rows, copy_rows, gather_rows


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_rows_are_read_and_added_where_numpy_puts_them(queue, dtype):
    rng = np.random.default_rng(0)
    host = rng.random((50, 7)).astype(dtype)
    if dtype == np.complex128:
        host += 1j * rng.random((50, 7))
    device = cla.to_device(queue, host)
    rows = np.array([3, 17, 49, 0])
    added = (rng.random((4, 7)) * (1 + 1j if dtype == np.complex128 else 1)).astype(dtype)
    assert np.array_equal(gather_rows(queue, device, rows), host[rows])
    add_rows(queue, device, rows, added)
    host[rows] += added
    assert np.array_equal(device.get(), host)
    assert gather_rows(queue, device, np.zeros(0, int)).shape == (0, 7)
    add_rows(queue, device, np.zeros(0, int), np.zeros((0, 7), dtype))
    assert np.array_equal(device.get(), host)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_rows_are_copied_where_numpy_copies_them(queue, dtype):
    rng = np.random.default_rng(1)
    host = (rng.random((40, 5)) + (1j * rng.random((40, 5)) if dtype == np.complex128
                                   else 0)).astype(dtype)
    device = cla.to_device(queue, host)
    from_rows, to_rows = np.array([2, 2, 39, 7]), np.array([30, 0, 11, 8])  # a row twice
    copy_rows(queue, device, cla.to_device(queue, from_rows), cla.to_device(queue, to_rows))
    host[to_rows] = host[from_rows]
    assert np.array_equal(device.get(), host)
    empty = cla.to_device(queue, np.zeros(0, np.int64))
    copy_rows(queue, device, empty, empty)
    assert np.array_equal(device.get(), host)
    with pytest.raises(ValueError, match="int64 index arrays of one shape"):
        copy_rows(queue, device, cla.to_device(queue, from_rows[:2]),
                  cla.to_device(queue, to_rows))
