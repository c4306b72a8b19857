"""A complex matvec as a real one of twice the size, so that the real kernels serve it.

A complex ``n_out x n_in`` matrix ``M`` applied to complex vectors whose real and imaginary
parts alternate in memory (``numpy``'s and OpenCL's layout of ``complex128``) is the real
``2 n_out x 2 n_in`` matrix of 2 x 2 blocks ``[[Re M, -Im M], [Im M, Re M]]`` applied to the
same memory read as real numbers: row ``2 i`` gives ``Re y_i``, row ``2 i + 1`` gives
``Im y_i``. The flops are the complex product's (four real multiply-adds per entry), and the
real matvec kernels vectorise where complex values in OpenCL cannot (there are no complex
vector types): a complex kernel's M2L, compress/expand, C2E, M2M and L2L run on the same tuned
real kernels as Laplace's (docs/kernels.md, "Complex matvecs as real ones"). The matrices on
the device take twice the bytes of the complex ones.
"""

from __future__ import annotations

import numpy as np


def real_block_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of :func:`real_blocks` of complex matrices of ``shape`` (``(..., n_out,
    n_in)``)."""
    *outer, n_out, n_in = shape
    return (*outer, 2 * n_out, 2 * n_in)


def real_blocks(matrices: np.ndarray) -> np.ndarray:
    """Complex matrices ``(..., n_out, n_in)`` as the real matrices ``(..., 2 n_out, 2
    n_in)`` of their 2 x 2 blocks (module docstring), in the real precision of theirs."""
    matrices = np.asarray(matrices)
    if matrices.dtype.kind != "c":
        raise ValueError(f"real_blocks takes complex matrices, not {matrices.dtype}")
    blocks = np.empty(real_block_shape(matrices.shape), matrices.real.dtype)
    blocks[..., 0::2, 0::2] = matrices.real
    blocks[..., 0::2, 1::2] = -matrices.imag
    blocks[..., 1::2, 0::2] = matrices.imag
    blocks[..., 1::2, 1::2] = matrices.real
    return blocks
