"""Rows of a per-box device buffer read and added in place (fmmloopy.execution.rows), against
numpy on the same array: exact, float64 and complex128, rows in any order."""

import numpy as np
import pyopencl.array as cla
import pytest

from fmmloopy.execution.rows import add_rows, gather_rows


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
