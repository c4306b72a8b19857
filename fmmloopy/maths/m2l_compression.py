"""The SVD-compressed M2L of a transfer-vector class: ``m2l[t] ~ expand @ core[t] @ compress``
with orthonormal bases from the singular vectors of the class's matrices side by side and
stacked (docs/kifmm.md, "Compressed M2L"), its cutoff by order, and the ranks rounded to whole
vectors. :func:`fmmloopy.maths.precompute.compute_operators` takes the singular vectors from
the classes' symmetries where it can (:mod:`fmmloopy.maths.symmetric_stacks`); the functions
here work on any stack of matrices.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["ClassSvd", "m2l_bases", "m2l_threshold", "stacks_svd"]


def expected_error(order: int) -> float:
    """The relative L2 error the KIFMM of ``order`` reaches on ordinary point sets (Laplace,
    float64): ``10**(-1 - 0.84 order)``, a fit to the measured errors of orders 4-10
    (docs/fmm.md: 4.5e-5, 5.2e-7, 1.5e-8, 4.2e-10 at orders 4, 6, 8, 10)."""
    return 10.0 ** (-1.0 - 0.84 * order)


#: The compressed M2L keeps the singular values above this multiple of the order's expected
#: error (relative to the largest); measured to change the FMM's error by -7 % to +24 % at orders
#: 4-10 (docs/kifmm.md, "Compressed M2L").
M2L_SVD_FACTOR = 0.3


def m2l_threshold(order: int) -> float:
    """The relative singular-value cutoff of the compressed M2L at ``order``."""
    return M2L_SVD_FACTOR * expected_error(order)


def r_factor(stack: np.ndarray) -> np.ndarray:
    """The triangular factor R of the Householder QR of ``stack`` (rows x n_e)."""
    return np.linalg.qr(stack, mode="r")


class ClassSvd(NamedTuple):
    """The singular values and vectors of a class's M2L matrices side by side (``left``,
    columns, and ``left_values``) and stacked (``right_values``, and ``right_h``, rows), all
    ``n_e`` of each, values descending."""

    left: np.ndarray
    left_values: np.ndarray
    right_values: np.ndarray
    right_h: np.ndarray


def stacks_svd(stacked: np.ndarray, side_by_side_h: np.ndarray) -> ClassSvd:
    """The :class:`ClassSvd` of a class from its matrices stacked, ``[m2l[0]; ...]``, and their
    conjugate transposes stacked, ``[m2l[0]^H; ...]`` (each ``rows x n_e``), through their
    triangular QR factors: ``[m2l[0]; ...] = Q R`` gives the stack's singular values and right
    vectors as R's, and the side-by-side matrices are the conjugate transpose of the second
    stack, whose R gives their left vectors. Householder QR keeps the accuracy of an SVD of the
    stack itself (its Gram matrix would square the singular values, and the cutoff at order 10,
    ~2e-9, squared is below the float64 round-off) without forming the tall factor an SVD
    computes and this discards."""
    left, left_values, _ = np.linalg.svd(r_factor(side_by_side_h).conj().T)
    _, right_values, right_h = np.linalg.svd(r_factor(stacked))
    return ClassSvd(left, left_values, right_values, right_h)


def m2l_bases(svd: ClassSvd, cutoff: float, rank_multiple: int = 1
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(compress, expand)`` of a class's compressed M2L, ``m2l[t] ~ expand @ core[t] @
    compress`` with ``core[t] = expand^H m2l[t] compress^H`` (``^H``: the conjugate transpose),
    from its :class:`ClassSvd`.

    ``expand`` (n_e x k) holds the leading left singular vectors of the matrices side by side
    ``[m2l[0] ... m2l[T-1]]``, ``compress`` (k x n_e) the leading right singular vectors of them
    stacked ``[m2l[0]; ...; m2l[T-1]]``, conjugate-transposed. ``k`` keeps the singular values
    of both above ``cutoff`` (the larger of the two counts, at least 1), rounded up to a
    multiple of ``rank_multiple`` (at most ``n_e``: a device fact, rows of whole vectors,
    :data:`fmmloopy.tuning.device_facts.M2L_RANK_MULTIPLE`). Both bases are orthonormal, so the
    core carries the scale, and level scaling applies to it alone."""
    n_e = svd.right_h.shape[1]
    rank = max(1, *(int(np.count_nonzero(values > cutoff))
                    for values in (svd.left_values, svd.right_values)))
    rank = min(n_e, -(-rank // rank_multiple) * rank_multiple)
    return (np.ascontiguousarray(svd.right_h[:rank]),
            np.ascontiguousarray(svd.left[:, :rank]))
