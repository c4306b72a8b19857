"""An :class:`~fmmloopy.api.fmm.Fmm` as a SciPy ``LinearOperator``, for SciPy's solvers.

``linear_operator(fmm)`` is the ``M x N`` matrix ``G_ij = G(y_i - x_j)`` (``G(0) = 0``) that
``fmm`` applies: ``op @ q`` is ``fmm(q)``. For a tensor kernel of ``m x k`` components (Stokes:
3 x 3) it is the ``m M x k N`` matrix of the blocks ``G(y_i - x_j)``, point by point: ``op @
forces.ravel()`` is ``fmm(forces).ravel()`` (a mobility matrix). SciPy is optional
(``pip install "fmmloopy[scipy]"``) and imported only here. ``examples/scipy_gmres.py``
solves a small integral equation with GMRES through it and checks the solution against a
dense solve.
"""

from __future__ import annotations

import numpy as np

from fmmloopy.base.optional import optional_module

__all__ = ["linear_operator"]


def linear_operator(fmm):
    """``fmm`` (an :class:`~fmmloopy.api.fmm.Fmm`) as a ``scipy.sparse.linalg.LinearOperator``
    of shape ``(targets, sources)``: ``matvec`` is one evaluation, ``matmat`` one evaluation of
    all its columns at once (several strength vectors, :meth:`~fmmloopy.api.fmm.Fmm.__call__`).
    Its dtype is the kernel's (float64; complex128 for a complex kernel); complex vectors given
    to a real kernel are applied part by part."""
    linalg = optional_module("scipy.sparse.linalg", "scipy", "fmmloopy.linear_operator")
    dtype = np.dtype(fmm.kernel.value_dtype())
    m, k = fmm.kernel.base_shape
    rows, columns = m * fmm.ntargets, k * fmm.nsources

    def applied(block: np.ndarray) -> np.ndarray:
        """``fmm`` on the columns of ``block`` ``(k N, c)``, as ``(m M, c)``."""
        if not fmm.kernel.is_tensor:
            return fmm(block)
        return fmm(block.reshape(fmm.nsources, k, -1)).reshape(rows, -1)

    def matvec(vector: np.ndarray) -> np.ndarray:
        return matmat(np.asarray(vector).reshape(columns, 1))[:, 0]

    def matmat(block: np.ndarray) -> np.ndarray:
        block = np.asarray(block).reshape(columns, -1)
        if block.shape[1] == 0:
            return np.zeros((rows, 0), dtype)
        if np.iscomplexobj(block) and dtype.kind != "c":  # real and imaginary parts at once
            parts = applied(np.hstack([block.real, block.imag]))
            return parts[:, :block.shape[1]] + 1j * parts[:, block.shape[1]:]
        return applied(block)

    return linalg.LinearOperator((rows, columns), matvec=matvec, matmat=matmat, dtype=dtype)
