"""A complex matvec as the real one of its 2 x 2 blocks (fmmloopy.maths.complex_blocks)."""

import numpy as np
import pytest

from fmmloopy.maths.complex_blocks import real_block_shape, real_blocks


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
def test_the_blocks_applied_to_the_vectors_read_as_reals_are_the_complex_product(dtype):
    rng = np.random.default_rng(3)
    matrices = (rng.normal(size=(4, 5, 7)) + 1j * rng.normal(size=(4, 5, 7))).astype(dtype)
    vectors = (rng.normal(size=(4, 7)) + 1j * rng.normal(size=(4, 7))).astype(dtype)
    blocks = real_blocks(matrices)
    assert blocks.shape == real_block_shape(matrices.shape) == (4, 10, 14)
    assert blocks.dtype == matrices.real.dtype
    # The vectors' memory read as real numbers (real and imaginary parts alternating).
    product = np.einsum("mij,mj->mi", blocks, vectors.view(matrices.real.dtype))
    expected = np.einsum("mij,mj->mi", matrices, vectors)
    tolerance = 10 * np.finfo(matrices.real.dtype).eps * np.abs(matrices).sum(-1).max()
    np.testing.assert_allclose(product.view(dtype), expected, rtol=0, atol=tolerance)


def test_real_matrices_are_refused():
    with pytest.raises(ValueError, match="complex matrices"):
        real_blocks(np.ones((2, 3, 3)))
