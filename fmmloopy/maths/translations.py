"""A set of KIFMM translations ``T(offset)`` (``n_e x n_e`` matrices between surfaces), computed
once per orbit of the cube's symmetries and gathered for the rest only where asked for.

Where the kernel is invariant under the 48 symmetries of the cube, ``T(g r)[i, j] =
T(r)[q[i], q[j]]`` for the permutation ``q`` of the surface by ``g^-1``
(:mod:`fmmloopy.maths.cube_symmetry`): the M2L's 316 transfer vectors fall in 16 orbits and
M2M's eight octants in one. The compressed M2L needs the matrices only through the triangular
factor of a stack of them, which a block's row order does not change, and through its cores
``E^H T(t) C^H``, which equal the representative's with the bases' rows permuted; neither
needs the dense matrices (316 of them, 1.3 GB at order 12).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from fmmloopy.maths.cube_symmetry import cube_symmetries, orbits, surface_permutation


class Translations:
    """``translation(offset)`` for each row of ``offsets`` (``lattice``: the same as integers)
    between surfaces of ``order``: computed for one offset per orbit where the kernel is
    cube-invariant (``symmetric``), for every offset otherwise."""

    def __init__(self, translation: Callable[[np.ndarray], np.ndarray], offsets: np.ndarray,
                 lattice: np.ndarray, order: int, symmetric: bool) -> None:
        count = len(offsets)
        if symmetric:
            self._representative, symmetry = orbits(lattice)
        else:
            self._representative = np.arange(count)
            symmetry = np.zeros(count, dtype=np.int64)
        self._computed = {int(index): translation(offsets[index])
                          for index in np.unique(self._representative)}
        # The permutation q of each offset's matrix: rows and columns of its representative's.
        if symmetric:
            permutations = {int(number): surface_permutation(order, cube_symmetries()[number].T)
                            for number in np.unique(symmetry)}
        else:  # every matrix its own (a tensor kernel's: components times the surface's rows)
            permutations = {0: np.arange(next(iter(self._computed.values())).shape[1])}
        self._permutation = [permutations[int(number)] for number in symmetry]

    def __len__(self) -> int:
        return len(self._permutation)

    def _parts(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The computed matrix ``T(r)`` an offset's is gathered from, and its permutation."""
        return self._computed[int(self._representative[index])], self._permutation[index]

    def matrix(self, index: int) -> np.ndarray:
        """(n_e, n_e): the matrix of offset ``index``, gathered from its representative's."""
        matrix, permutation = self._parts(index)
        return matrix[permutation][:, permutation]

    def dense(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """(len(indices), n_e, n_e): the matrices of ``indices`` (default all), gathered."""
        indices = range(len(self)) if indices is None else indices
        return np.stack([self.matrix(index) for index in indices])

    def stacked(self, indices: Sequence[int], conjugate_transpose: bool = False) -> np.ndarray:
        """(len(indices) n_e, n_e): the matrices of ``indices`` stacked (their conjugate
        transposes with ``conjugate_transpose``), each block's rows in an order of its own: the
        same triangular QR factor as the stack of the matrices themselves."""
        first, _ = self._parts(indices[0])
        n_e = first.shape[0]
        stack = np.empty((len(indices) * n_e, n_e), first.dtype)
        for position, index in enumerate(indices):
            matrix, permutation = self._parts(index)
            block = stack[position * n_e:(position + 1) * n_e]
            if conjugate_transpose:  # T(t)^H has rows conj(T(r)[q, :])^T, in T(r)'s order
                block[...] = matrix[permutation].conj().T
            else:  # T(t) has rows T(r)[:, q], in T(r)'s order
                np.take(matrix, permutation, axis=1, out=block)
        return stack

    def cores(self, indices: Sequence[int], expand: np.ndarray,
              compress: np.ndarray) -> np.ndarray:
        """(len(indices), k, k): ``expand^H T(t) compress^H`` for the offsets ``t`` of
        ``indices``, from their representatives with the bases' rows permuted."""
        cores = []
        for index in indices:
            matrix, permutation = self._parts(index)
            expand_moved = np.empty_like(expand)
            expand_moved[permutation] = expand
            compress_moved = np.empty_like(compress)
            compress_moved[:, permutation] = compress
            cores.append(expand_moved.conj().T @ (matrix @ compress_moved.conj().T))
        return np.ascontiguousarray(np.stack(cores))
