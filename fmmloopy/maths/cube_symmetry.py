"""The 48 symmetries of the cube acting on the KIFMM's surfaces, transfer vectors and octants.

A symmetry ``g`` is a signed permutation of the axes (a 3 x 3 matrix of 0 and +-1). Every
surface of :mod:`fmmloopy.maths.surfaces` is a set of grid points on the cube ``[-1, 1]^3`` whose
ticks are exactly odd, so ``g`` maps it onto itself exactly: ``g @ S[:, i] = S[:, p[i]]`` for a
permutation ``p`` of its points (:func:`surface_permutation`).

For a kernel that ``g`` leaves unchanged, ``K(g d) = K(d)`` (a function of ``|d|``: Laplace,
Yukawa, Helmholtz; :func:`is_cube_invariant` tests it), every translation built from the
surfaces (a kernel matrix between them, fits to them) satisfies
``T(g c)[i, j] = T(c)[q[i], q[j]]`` for a translation by ``c`` and ``q`` the permutation of
``g^-1``. So the 316 M2L matrices are the matrices of 16 transfer vectors with rows and columns
permuted (:func:`orbits`), and the M2M and L2L matrices of the 8 octants those of one.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from fmmloopy.maths.surfaces import surface_size

#: Relative difference below which a kernel counts as invariant (float64 rounding of
#: ``|d|`` and of the kernel's formula on the permuted offsets).
INVARIANCE_TOLERANCE = 1e-13


@functools.cache
def cube_symmetries() -> np.ndarray:
    """(48, 3, 3) int64: every signed permutation matrix, the identity first."""
    matrices = []
    for axes in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            matrix = np.zeros((3, 3), dtype=np.int64)
            matrix[range(3), axes] = signs
            matrices.append(matrix)
    return np.array(matrices)


@functools.cache
def _grid_indices(order: int) -> np.ndarray:
    """(3, n_e) int64: the grid indices of the surface points of ``order``, in
    :func:`~fmmloopy.maths.surfaces.unit_surface`'s order."""
    index = np.indices((order, order, order)).reshape(3, -1)
    on_boundary = np.any((index == 0) | (index == order - 1), axis=0)
    return index[:, on_boundary]


def surface_permutation(order: int, symmetry: np.ndarray) -> np.ndarray:
    """(n_e,) int64 ``p``: ``symmetry @ unit_surface(order)[:, i] == unit_surface(order)[:, p[i]]``
    (the ticks are exactly odd: the grid index ``k`` of a mirrored coordinate is
    ``order - 1 - k``)."""
    index = _grid_indices(order)
    centred = 2 * index - (order - 1)  # odd multiples: mirroring is negation
    moved = (np.asarray(symmetry) @ centred + (order - 1)) // 2
    codes = (index[0] * order + index[1]) * order + index[2]  # ascending (lexicographic)
    moved_codes = (moved[0] * order + moved[1]) * order + moved[2]
    permutation = np.searchsorted(codes, moved_codes)
    assert len(permutation) == surface_size(order) and np.array_equal(
        codes[permutation], moved_codes)
    return permutation


def reflection(axis: int) -> np.ndarray:
    """(3, 3) int64: the symmetry that mirrors ``axis`` (0, 1, 2 for x, y, z), the others kept."""
    matrix = np.eye(3, dtype=np.int64)
    matrix[axis, axis] = -1
    return matrix


def orbits(offsets: np.ndarray, symmetries: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """For each row ``t`` of ``offsets`` (n, 3), a row ``r`` of its orbit and a symmetry ``g``
    (index into ``symmetries``, default all 48) with ``g @ offsets[r] == t``: ``(r, g)``, each
    (n,) int64. The representative of an orbit is its first row; ``r == t`` and ``g == 0``
    there (the identity). Every image of a row must be a row (ValueError otherwise)."""
    symmetries = cube_symmetries() if symmetries is None else np.asarray(symmetries)
    offsets = np.asarray(offsets)
    position = {tuple(row): index for index, row in enumerate(offsets.tolist())}
    representative = np.full(len(offsets), -1, dtype=np.int64)
    symmetry = np.zeros(len(offsets), dtype=np.int64)
    for index, row in enumerate(offsets):
        if representative[index] >= 0:
            continue
        for number, matrix in enumerate(symmetries):
            image = position.get(tuple((matrix @ row).tolist()))
            if image is None:
                raise ValueError(f"the image of {row.tolist()} under a symmetry is not listed")
            if representative[image] < 0:
                representative[image], symmetry[image] = index, number
    return representative, symmetry


def is_cube_invariant(evaluate, rng_seed: int = 0) -> bool:
    """Whether the kernel ``evaluate`` (offsets (..., 3) -> values) gives the same values at
    offsets moved by every symmetry of the cube, within :data:`INVARIANCE_TOLERANCE` relative
    (checked at 64 random offsets of lengths 0.5 to 8, the range of the translations)."""
    rng = np.random.default_rng(rng_seed)
    directions = rng.standard_normal((64, 3))
    offsets = directions / np.linalg.norm(directions, axis=1, keepdims=True) * rng.uniform(
        0.5, 8.0, (64, 1))
    values = np.asarray(evaluate(offsets))
    scale = np.max(np.abs(values))
    if not np.isfinite(scale) or scale == 0:
        return False
    return all(np.max(np.abs(np.asarray(evaluate(offsets @ matrix.T)) - values))
               <= INVARIANCE_TOLERANCE * scale for matrix in cube_symmetries()[1:])
