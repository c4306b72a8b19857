"""Reading and adding rows of a per-box device buffer without moving the whole buffer.

A distributed FMM sends a few rows of the multipole buffer (the boxes other ranks read) and
adds the rows it receives (:mod:`fmmloopy.api.distributed`); downloading and uploading the
whole buffer each evaluation cost a noticeable share of a 10^6-point evaluation on a CPU
device (docs/history.md, 2026-11-23, "Figures that were in the code's docstrings"). Complex
buffers are handled as float64 pairs.
"""

from __future__ import annotations

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
from pyopencl.elementwise import ElementwiseKernel

from fmmloopy.execution.uploads import upload

__all__ = ["add_rows", "add_weighted_rows", "copy_rows", "folded_rows", "gather_rows"]

#: (context, kernel name) -> the elementwise kernel built for it.
_KERNELS: dict[tuple[int, str], ElementwiseKernel] = {}


def _elementwise(queue: cl.CommandQueue, name: str, arguments: str,
                 operation: str) -> ElementwiseKernel:
    """The elementwise kernel ``name`` for ``queue``'s context, built at its first use there."""
    key = (queue.context.int_ptr, name)
    if key not in _KERNELS:
        _KERNELS[key] = ElementwiseKernel(queue.context, arguments, operation, name)
    return _KERNELS[key]


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
    # The first array argument sets the range: the indices, not the buffer.
    kernel = _elementwise(queue, "fmmloopy_add_rows",
                          "const long *where, const double *values, double *out",
                          "out[where[i]] += values[i]")
    # A copy of the caller's values, so that it may change them at once: uploaded without
    # waiting for the queue (an in-order queue's blocking write would wait for every kernel
    # before it; a periodic FMM adds rows between the passes).
    values = np.array(values, dtype=array.dtype, order="C").view(np.float64).reshape(-1)
    kernel(upload(queue, _flat_indices(rows, width)), upload(queue, values), flat, queue=queue)


def copy_rows(queue: cl.CommandQueue, array: cla.Array, from_rows: cla.Array,
              to_rows: cla.Array) -> None:
    """``array[to_rows] = array[from_rows]`` on the device (``*_rows``: device arrays of int64
    row indices, as many of each; ``to_rows`` distinct and none of them in ``from_rows``).
    Nothing moves through the host: a periodic FMM copies its boxes' multipoles to their
    images this way, tens of MB per evaluation at 10^6 points."""
    if (from_rows.shape != to_rows.shape or from_rows.dtype != np.int64
            or to_rows.dtype != np.int64):
        raise ValueError(f"copy_rows takes two int64 index arrays of one shape, got "
                         f"{from_rows.dtype}{from_rows.shape} and {to_rows.dtype}{to_rows.shape}")
    if not from_rows.size:
        return
    flat, width = _as_doubles(array)
    kernel = _elementwise(
        queue, "fmmloopy_copy_rows",
        "const long *from_rows, const long *to_rows, double *out, long width",
        "long row = i / width, column = i - row * width; "
        "out[to_rows[row] * width + column] = out[from_rows[row] * width + column]")
    kernel(from_rows, to_rows, flat, np.int64(width), range=slice(from_rows.size * width),
           queue=queue)


def add_weighted_rows(queue: cl.CommandQueue, array: cla.Array, to_rows: cla.Array,
                      from_rows: cla.Array, weights: cla.Array) -> None:
    """``array[to_rows[r]] += sum_k weights[r, k] array[from_rows[r, k]]`` on the device, for
    a float64 ``array`` (``to_rows`` ``(R,)`` int64, distinct and none of them in
    ``from_rows`` ``(R, K)`` int64; ``weights`` ``(R, K)`` float64). A periodic Stokes FMM
    gives its image boxes' ``psi`` rows their shifts' part this way."""
    if (array.dtype != np.float64 or from_rows.shape != weights.shape
            or from_rows.shape[:1] != to_rows.shape):
        raise ValueError(f"add_weighted_rows takes a float64 array and (R,) rows with (R, K) "
                         f"rows and weights, got {array.dtype}, {to_rows.shape}, "
                         f"{from_rows.shape}, {weights.shape}")
    if not to_rows.size:
        return
    flat, width = _as_doubles(array)
    kernel = _elementwise(
        queue, "fmmloopy_add_weighted_rows",
        "const long *to_rows, const long *from_rows, const double *weights, double *out, "
        "long width, long terms",
        "long row = i / width, column = i - row * width; double sum = 0; "
        "for (long k = 0; k < terms; ++k) "
        "sum += weights[row * terms + k] * out[from_rows[row * terms + k] * width + column]; "
        "out[to_rows[row] * width + column] += sum")
    kernel(to_rows, from_rows, weights, flat, np.int64(width), np.int64(from_rows.shape[1]),
           range=slice(to_rows.size * width), queue=queue)


def folded_rows(boxes: np.ndarray, vectors: int) -> np.ndarray:
    """The multipole rows of ``boxes`` over ``vectors`` folded strength vectors (box ``b``'s
    of vector ``v`` at ``b * vectors + v``; -1, a box a rank does not have, stays -1)."""
    if vectors == 1:
        return boxes
    rows = boxes[:, None] * vectors + np.arange(vectors)
    return np.where(boxes[:, None] < 0, -1, rows).ravel()
