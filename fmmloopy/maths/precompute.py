"""Precomputed KIFMM operators (numpy, float64) for a box of half-width 1 centred at the origin.

Expansions are densities on equivalent surfaces (:mod:`fmmloopy.maths.surfaces`): a box's
*multipole* is its upward equivalent density (surface radius 1.05), its *local* its downward
equivalent density (radius 2.95). The matrices, all built from :func:`kernel_matrix`:

- ``uc2e``: upward check potential (radius 2.95) -> upward equivalent density;
  ``dc2e``: downward check potential (radius 1.05) -> downward equivalent density. Each is the
  pseudo-inverse of ``K(check <- equivalent)`` from its SVD ``K = U S V^T``, singular values
  below ``rcond * s_max`` dropped, kept as two factors applied in turn:
  ``equivalent = second @ (first @ check)``, ``first = U_k^T`` (k x n_e),
  ``second = V_k S_k^-1`` (n_e x k). ``first`` is orthonormal, so only ``second`` carries the
  large entries ``1 / s``; multiplying the factors out first would mix them into every entry.
- ``m2m[o]``: child (octant ``o``, half-width 1/2) multipole -> parent multipole.
- ``l2l[o]``: parent local -> child (octant ``o``) local.
- ``m2l[t]``: source multipole -> target downward *check* potential for transfer vector ``t``
  (:func:`fmmloopy.tree.lists.transfer_vectors`); follow it with ``dc2e``.

Least-squares fits. ``uc2e``/``dc2e`` act on check potentials that the particle kernels (P2M,
P2L) evaluate at the ``n_e`` check points, so they interpolate there. The translations are ours
to define: where those square fits keep every singular value (``k_u = k_d = n_e``; orders <= 7 at
:data:`DEFAULT_RCOND`), ``m2m``, ``l2l`` and ``m2l`` fit the equivalent density by least squares
to the check potential on the *fine* check surface (:func:`fmmloopy.maths.surfaces.fine_order`,
``2 order - 1`` points per edge), which bounds the misfit between the check points too (what
the maximum principle turns into the error inside/outside the check surface). ``m2l[t]`` is then
``K(check <- equivalent)`` times that least-squares local, i.e. the check potential that the
driver's ``dc2e`` maps back to exactly that local. Where a square fit drops singular values
(orders >= 8) everything stays square: the least-squares translations were measured less
accurate there (docs/kifmm.md).

Level scaling (:mod:`fmmloopy.maths.kifmm`): the matrices are for half-width 1; for a
homogeneous kernel each step scales them by a power of the box's half-width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.geometry import NTRANSFER_VECTORS, child_centres, transfer_vectors
from fmmloopy.maths.green import GreenKernel, get_kernel
from fmmloopy.maths.surfaces import (
    fine_order,
)

__all__ = [
    "DEFAULT_RCOND",
    "KifmmOperators",
    "check_to_equivalent",
    "compute_operators",
    "kernel_matrix",
    "matrix_shapes",
]

#: Relative singular-value cutoff of the check-to-equivalent pseudo-inverses (docs/kifmm.md).
DEFAULT_RCOND = 1e-12


@dataclass(frozen=True, eq=False)
class KifmmOperators:
    """The KIFMM matrices of one kernel and surface order, for half-width 1 (module docstring).

    All arrays are float64, C-contiguous and read-only; ``k_u``/``k_d`` are the numbers of
    singular values kept in ``uc2e``/``dc2e``.
    """

    kernel_name: str
    #: Degree d of the kernel's homogeneity, None if it has none (no level scaling then).
    homogeneity: float | None
    order: int
    n_e: int
    rcond: float
    #: (k_u, n_e), (n_e, k_u): upward check potential -> upward equivalent density.
    uc2e_first: np.ndarray
    uc2e_second: np.ndarray
    #: (k_d, n_e), (n_e, k_d): downward check potential -> downward equivalent density.
    dc2e_first: np.ndarray
    dc2e_second: np.ndarray
    #: (8, n_e, n_e): child multipole (octant o) -> parent multipole.
    m2m: np.ndarray
    #: (8, n_e, n_e): parent local -> child local (octant o).
    l2l: np.ndarray
    #: (316, n_e, n_e): source multipole -> target downward check potential, per transfer vector
    #: (of the least-squares local where the fits are least squares; module docstring).
    m2l: np.ndarray

    def __post_init__(self) -> None:
        if self.n_e != self.expansion.n_e:
            raise ValueError(f"n_e = {self.n_e} does not match order {self.order}")
        k_u, k_d = (_leading_size(self.uc2e_first), _leading_size(self.dc2e_first))
        for name, shape in matrix_shapes(self.n_e, k_u, k_d).items():
            array = np.asarray(getattr(self, name))
            if array.shape != shape or array.dtype != np.float64:
                raise ValueError(
                    f"{name} has shape {array.shape} and dtype {array.dtype}, "
                    f"expected {shape} float64")
            array = np.ascontiguousarray(array)
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    def arrays(self) -> dict[str, np.ndarray]:
        """The matrices by field name."""
        return {name: getattr(self, name) for name in ARRAY_FIELDS}

    @property
    def expansion(self) -> Expansion:
        """The expansion (order, ``n_e``, surfaces) these matrices are for."""
        return Expansion(self.order)

    def ranks(self) -> tuple[int, int]:
        """``(k_u, k_d)``: the numbers of singular values kept in ``uc2e`` and ``dc2e``."""
        return self.uc2e_first.shape[0], self.dc2e_first.shape[0]


ARRAY_FIELDS: tuple[str, ...] = (
    "uc2e_first", "uc2e_second", "dc2e_first", "dc2e_second", "m2m", "l2l", "m2l")


def _leading_size(array: np.ndarray) -> int:
    """Length of the first axis, -1 for a scalar."""
    shape = np.shape(array)
    return shape[0] if shape else -1


def matrix_shapes(n_e: int, k_u: int, k_d: int) -> dict[str, tuple[int, ...]]:
    """The shape of each matrix for surfaces of ``n_e`` points and UC2E/DC2E ranks ``k_u``,
    ``k_d`` (the memory estimate counts these too)."""
    return {
        "uc2e_first": (k_u, n_e), "uc2e_second": (n_e, k_u),
        "dc2e_first": (k_d, n_e), "dc2e_second": (n_e, k_d),
        "m2m": (8, n_e, n_e), "l2l": (8, n_e, n_e), "m2l": (NTRANSFER_VECTORS, n_e, n_e),
    }


def kernel_matrix(kernel: GreenKernel, targets: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """(nt, ns) float64: ``K(targets[:, i] - sources[:, j])`` for points of shape (3, n)."""
    offsets = np.asarray(targets).T[:, None, :] - np.asarray(sources).T[None, :, :]
    return kernel.evaluate(offsets)


def check_to_equivalent(kernel: GreenKernel, check_points: np.ndarray,
                        equivalent_points: np.ndarray, rcond: float
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The factors ``(U_k^T, V_k S_k^-1)`` of the truncated pseudo-inverse of K(check <- equiv).

    With more check than equivalent points this is the least-squares fit.
    """
    u, s, vt = np.linalg.svd(kernel_matrix(kernel, check_points, equivalent_points),
                             full_matrices=False)
    keep = s > rcond * s[0]
    first = np.ascontiguousarray(u[:, keep].T)
    second = np.ascontiguousarray(vt[keep].T / s[keep])
    return first, second


def _apply_factors(factors: tuple[np.ndarray, np.ndarray], matrix: np.ndarray) -> np.ndarray:
    """``second @ (first @ matrix)``: a check-to-equivalent map applied factor by factor."""
    first, second = factors
    return second @ (first @ matrix)


def compute_operators(kernel: GreenKernel | str, order: int,
                      rcond: float | None = None) -> KifmmOperators:
    """Compute all KIFMM matrices for a box of half-width 1 (no caching)."""
    kernel = get_kernel(kernel)
    rcond = DEFAULT_RCOND if rcond is None else float(rcond)
    expansion = Expansion(order)
    n_e = expansion.n_e
    upward_equivalent = expansion.surface("upward_equivalent")
    upward_check = expansion.surface("upward_check")
    downward_equivalent = expansion.surface("downward_equivalent")
    downward_check = expansion.surface("downward_check")

    uc2e = check_to_equivalent(kernel, upward_check, upward_equivalent, rcond)
    dc2e = check_to_equivalent(kernel, downward_check, downward_equivalent, rcond)
    # The child's DC2E at half-width 1/2, computed directly (no homogeneity needed).
    child_dc2e = check_to_equivalent(kernel, 0.5 * downward_check, 0.5 * downward_equivalent,
                                     rcond)

    # The translations' check surfaces and fits: least squares on the fine surface where the
    # square fits keep every singular value, else the square ones (module docstring).
    least_squares = all(first.shape[0] == n_e for first, _ in (uc2e, dc2e, child_dc2e))
    if least_squares:
        fine = Expansion(fine_order(order))
        translation_up_check = fine.surface("upward_check")
        translation_down_check = fine.surface("downward_check")
        m2m_fit = check_to_equivalent(kernel, translation_up_check, upward_equivalent, rcond)
        l2l_fit = check_to_equivalent(kernel, 0.5 * translation_down_check,
                                      0.5 * downward_equivalent, rcond)
        m2l_fit = check_to_equivalent(kernel, translation_down_check, downward_equivalent,
                                      rcond)
        # check potential <- local: dc2e inverts it exactly (full rank), so dc2e(m2l M) is the
        # least-squares local.
        check_of_local = kernel_matrix(kernel, downward_check, downward_equivalent)
    else:
        translation_up_check, translation_down_check = upward_check, downward_check
        m2m_fit, l2l_fit = uc2e, child_dc2e

    m2m = np.empty((8, n_e, n_e))
    l2l = np.empty((8, n_e, n_e))
    for octant, centre in enumerate(child_centres().T):
        centre = centre[:, None]
        m2m[octant] = _apply_factors(m2m_fit, kernel_matrix(
            kernel, translation_up_check, centre + 0.5 * upward_equivalent))
        l2l[octant] = _apply_factors(l2l_fit, kernel_matrix(
            kernel, centre + 0.5 * translation_down_check, downward_equivalent))

    m2l = np.empty((NTRANSFER_VECTORS, n_e, n_e))
    for index, offset in enumerate(transfer_vectors()):
        source_centre = 2.0 * offset[:, None]
        check = kernel_matrix(kernel, translation_down_check, source_centre + upward_equivalent)
        m2l[index] = check_of_local @ _apply_factors(m2l_fit, check) if least_squares else check

    return KifmmOperators(
        kernel_name=kernel.name, homogeneity=kernel.homogeneity, order=int(order), n_e=n_e,
        rcond=rcond, uc2e_first=uc2e[0], uc2e_second=uc2e[1], dc2e_first=dc2e[0],
        dc2e_second=dc2e[1], m2m=m2m, l2l=l2l, m2l=m2l)
