"""Reading and adding rows of a per-box device buffer without moving the whole buffer.

A distributed FMM sends a few rows of the multipole buffer (the boxes other ranks read) and
adds the rows it receives (:mod:`fmmloopy.api.distributed`); downloading and uploading the
whole buffer each evaluation cost ~10 % of a 10^6-point evaluation on a CPU device. Complex
buffers are handled as float64 pairs.
"""

from __future__ import annotations

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
from pyopencl.elementwise import ElementwiseKernel

__all__ = ["add_rows", "gather_rows"]

_ADD: dict[int, ElementwiseKernel] = {}


def _flat_indices(rows: np.ndarray, width: int) -> np.ndarray:
    return (np.asarray(rows, dtype=np.int64)[:, None] * width
            + np.arange(width, dtype=np.int64)).reshape(-1)


def _as_doubles(array: cla.Array) -> tuple[cla.Array, int]:
    """The buffer as a flat float64 array, and the float64 values per row."""
    doubles = array.view(np.float64) if array.dtype != np.float64 else array
    return doubles.reshape(-1), array.shape[1] * array.dtype.itemsize // 8


def gather_rows(queue: cl.CommandQueue, array: cla.Array, rows: np.ndarray) -> np.ndarray:
    """``array[rows]`` (a 2-D device buffer) on the host."""
    if not len(rows):
        return np.zeros((0, *array.shape[1:]), array.dtype)
    flat, width = _as_doubles(array)
    indices = cla.to_device(queue, _flat_indices(rows, width))
    values = cla.take(flat, indices, queue=queue).get(queue=queue)
    return values.view(array.dtype).reshape(len(rows), *array.shape[1:])


def add_rows(queue: cl.CommandQueue, array: cla.Array, rows: np.ndarray,
             values: np.ndarray) -> None:
    """``array[rows] += values`` on the device; ``rows`` must be distinct."""
    if not len(rows):
        return
    flat, width = _as_doubles(array)
    kernel = _ADD.get(queue.context.int_ptr)
    if kernel is None:
        kernel = _ADD[queue.context.int_ptr] = ElementwiseKernel(
            # The first array argument sets the range: the indices, not the buffer.
            queue.context, "const long *where, const double *values, double *out",
            "out[where[i]] += values[i]", "fmmloopy_add_rows")
    values = np.ascontiguousarray(values, dtype=array.dtype).view(np.float64).reshape(-1)
    kernel(cla.to_device(queue, _flat_indices(rows, width)), cla.to_device(queue, values),
           flat, queue=queue)
