"""Host arrays to the device for a set-up: small ones copied at the buffer's creation, large
ones by an asynchronous copy on the queue.

A plan uploads hundreds of small index arrays (a launch's box lists, offsets, counts). Each
enqueued copy costs a command, an event and a wake-up of the runtime's threads (more while the
set-up's kernels run beside it); a buffer created with ``COPY_HOST_PTR`` copies in the calling
thread and enqueues nothing, cheaper for small arrays, most of its cost then making the
:class:`pyopencl.array.Array` (docs/history.md, 2026-11-26, "Set-up on AVX2 (fourth
session)"). Large arrays keep the asynchronous copy, which overlaps the host's next work.
"""

from __future__ import annotations

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

__all__ = ["COPIED_AT_CREATION", "upload"]

#: Arrays of at most this many bytes are copied when their buffer is created.
COPIED_AT_CREATION = 64 * 1024


def upload(queue: cl.CommandQueue, array: np.ndarray) -> cla.Array:
    """``array`` (made C-contiguous) as a device array of ``queue``'s context; the copy of a
    large one is enqueued on ``queue`` without waiting: the host array is kept alive until it
    is done, and must not change before (the queue's next wait)."""
    array = np.ascontiguousarray(array)
    if 0 < array.nbytes <= COPIED_AT_CREATION:
        flags = cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR
        buffer = cl.Buffer(queue.context, flags, hostbuf=array)
        return cla.Array(queue, array.shape, array.dtype, data=buffer)
    return cla.to_device(queue, array, async_=True)
