"""An :class:`~fmmloopy.api.fmm.Fmm` as a SciPy ``LinearOperator``, for SciPy's solvers.

``linear_operator(fmm)`` is the ``M x N`` matrix ``G_ij = G(y_i - x_j)`` (``G(0) = 0``) that
``fmm`` applies: ``op @ q`` is ``fmm(q)``. SciPy is optional (``pip install "fmmloopy[scipy]"``)
and imported only here. ``examples/scipy_gmres.py`` solves a small integral equation with GMRES
through it and checks the solution against a dense solve.
"""

from __future__ import annotations

import numpy as np

from fmmloopy.base.optional import optional_module

__all__ = ["linear_operator"]


def linear_operator(fmm):
    """``fmm`` (an :class:`~fmmloopy.api.fmm.Fmm`) as a ``scipy.sparse.linalg.LinearOperator``
    of shape ``(targets, sources)``: ``matvec`` is one evaluation, ``matmat`` one per column.
    Its dtype is the kernel's (float64; complex128 for a complex kernel); complex vectors given
    to a real kernel are applied part by part."""
    linalg = optional_module("scipy.sparse.linalg", "scipy", "fmmloopy.linear_operator")
    dtype = np.dtype(fmm.kernel.value_dtype())

    def matvec(vector: np.ndarray) -> np.ndarray:
        vector = np.asarray(vector).reshape(fmm.nsources)
        if np.iscomplexobj(vector) and dtype.kind != "c":
            return fmm(np.ascontiguousarray(vector.real)) + 1j * fmm(
                np.ascontiguousarray(vector.imag))
        return fmm(vector)

    def matmat(block: np.ndarray) -> np.ndarray:
        block = np.asarray(block)
        columns = [matvec(block[:, k]) for k in range(block.shape[1])]
        return np.column_stack(columns) if columns else np.zeros((fmm.ntargets, 0), dtype)

    return linalg.LinearOperator((fmm.ntargets, fmm.nsources), matvec=matvec, matmat=matmat,
                                 dtype=dtype)
