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

from fmmloopy.maths.green import GreenKernel, get_kernel

#: The kernel a matvec launch of real values is built for, whatever the FMM's kernel: every
#: kernel's matvecs are one template, which depends on the kernel only through its values'
#: type (:func:`matvec_request`).
REAL_MATVEC_KERNEL = get_kernel("laplace")


def matvec_request(green: GreenKernel, sizes: dict[str, int]
                   ) -> tuple[GreenKernel, dict[str, int]]:
    """The kernel and sizes a matvec launch of ``green`` at ``sizes`` runs: its own for real
    values; for complex ones :data:`REAL_MATVEC_KERNEL` at twice the coefficients (the
    matrices' real blocks over the vectors read as reals: module docstring)."""
    if not green.is_complex:
        return green, sizes
    return REAL_MATVEC_KERNEL, {name: 2 * value for name, value in sizes.items()}


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
