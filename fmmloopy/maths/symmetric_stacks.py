"""The SVD of a class's stacked M2L matrices from its orbit representatives, by the symmetries
of the cube that map the class onto itself.

Let ``C`` be a class of transfer vectors and ``G_c`` the symmetries ``g`` of the cube with
``g C = C`` (8 or 4 of them: the class's direction is kept, ties in the class's definition may
rule out the swap of the two other axes). ``G_c`` acts on the surface points, ``Pi_h x =
x[q_h]`` with ``q_h`` the point permutation of ``h^-1``, so that for a cube-invariant kernel
``T(h t) = Pi_h T(t) Pi_h^T``. The Gram matrix of the stack ``[T(t); t in C]``,
``G = sum_t T(t)^T T(t)``, therefore commutes with every ``Pi_h``.

Basis. For each real irreducible representation ``rho`` of ``G_c`` (dimension ``d``; ``G_c`` is
the Klein group or the dihedral group of order 8, whose irreducible representations are all
absolutely irreducible) the projections ``P_ab = d / |G_c| sum_h rho(h)_ab Pi_h`` give an
orthonormal basis ``B^1`` of the range of ``P_11`` and its partners ``B^a = P_a1 B^1``:
``Pi_h B^b = sum_a B^a rho(h)_ab`` and ``(B^a)^T B^b = delta_ab I``. All of them together,
``U = [B^a_rho]``, are an orthonormal basis of ``R^n_e`` in which (Schur) every matrix that
commutes with ``G_c`` is block diagonal, ``I_d (x) M_rho``, ``M_rho = (B^1)^T G B^1``. The
points split into ``G_c``-orbits of at most 8 points and ``U`` is block diagonal over them, so
it is built orbit by orbit and applied as a few batched small products.

Weights. With ``C`` the union of ``G_c``-orbits ``O_k = G_c s_k`` (``s_k`` a member,
``A_k = T(s_k)``), ``sum_{t in O_k} f(t) = 1 / |Stab(s_k)| sum_h f(h s_k)``, and Schur's
orthogonality ``sum_h rho(h)_a1 rho(h)_b1 = |G_c| / d delta_ab`` gives

    M_rho = sum_k |O_k| / d  sum_a (A_k B^a)^T (A_k B^a):

``M_rho = R_rho^T R_rho`` for the triangular factor ``R_rho`` of the Householder QR of the small
stack of blocks ``sqrt(|O_k| / d) A_k B^a_rho`` (each representative and partner), which is never
squared. The stack's singular values are those of the ``R_rho``, each ``d`` times, and its right
singular vectors ``B^a_rho V_rho`` (``R_rho = U_rho S_rho V_rho^T``).

Rows. A representative with a nontrivial stabilizer ``H`` (``A_k`` commutes with ``Pi_h``,
``h`` in ``H``) maps each joint eigenspace of ``H`` to itself. Where every column of ``B^a_rho``
is in one such eigenspace (partners of a 2-dim ``rho`` turned to diagonalise the stabilizer's
reflection), ``A_k B^a_rho`` has rows in that eigenspace only: its coordinates in the rows of
``U`` (turned likewise) there are the whole block, an exact orthogonal reduction of its rows
from ``n_e`` to about ``n_e / |H|`` (40 % fewer rows over the 18 classes).

Cost at order 12 (n_e = 728), per class: one gathered ``T(s_k)`` and two cheap sparse
products with ``U`` per representative (3 to 8 of them, against 9 to 40 members), then QRs of
stacks 80 to 182 columns wide and SVDs of those triangular factors, against a Householder QR
of a (9..40 n_e) x n_e stack and an SVD of an n_e x n_e factor: about 30 times fewer flops.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from fmmloopy.maths.cube_symmetry import cube_symmetries, orbits, surface_permutation

__all__ = ["SymmetryBasis", "class_symmetries", "symmetric_stack_svd", "symmetry_basis"]


def class_symmetries(lattice: np.ndarray) -> tuple[int, ...]:
    """The indices into :func:`cube_symmetries` of the ``g`` that map the set of rows of
    ``lattice`` (n, 3) onto itself (the identity first)."""
    lattice = np.asarray(lattice)
    rows = {tuple(row) for row in lattice.tolist()}
    return tuple(number for number, matrix in enumerate(cube_symmetries())
                 if {tuple(row) for row in (lattice @ matrix.T).tolist()} == rows)


def irreducible_representations(matrices: np.ndarray) -> list[np.ndarray]:
    """Real orthogonal irreducible representations ``(|G|, d, d)`` of a group of signed
    permutation matrices that fixes one axis: its real characters (the homomorphisms to
    +-1) and, where irreducible, its action on the plane of the two other axes.
    NotImplementedError where these are not all of them."""
    matrices = np.asarray(matrices, dtype=np.int64)
    count = len(matrices)
    if count > 16:
        raise NotImplementedError(f"a group of {count} symmetries")
    position = {matrix.tobytes(): number for number, matrix in enumerate(matrices)}
    table = np.array([[position[(a @ b).tobytes()] for b in matrices] for a in matrices])
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=count)))
    homomorphism = np.all(signs[:, table] == signs[:, :, None] * signs[:, None, :], axis=(1, 2))
    representations = [characters[:, None, None] for characters in signs[homomorphism]]
    fixed = [axis for axis in range(3) if np.all(matrices[:, axis, axis] == 1)]
    if len(fixed) == 1:
        plane = [axis for axis in range(3) if axis != fixed[0]]
        action = matrices[:, plane][:, :, plane].astype(np.float64)
        if np.sum(np.trace(action, axis1=1, axis2=2) ** 2) == count:  # irreducible
            representations.append(action)
    if sum(rho.shape[1] ** 2 for rho in representations) != count:
        raise NotImplementedError("the group has irreducible representations not found here")
    return representations


@dataclass(frozen=True, eq=False)
class SymmetryBasis:
    """The orthonormal basis ``U`` of the module docstring for one group and surface order.

    ``orbit_types``: per type of point orbit (orbits whose points the group permutes alike),
    the orbits' points ``(N, s)``, how the group permutes them (|G|, s: ``(Pi_h x)_i =
    x_{action[h, i]}`` on an orbit), the local basis ``(s, s)`` they share and its columns'
    ``(representation, partner, copy)`` labels ``(s, 3)``. ``U``'s columns (:attr:`matrix`,
    :meth:`apply`) are the local bases' of each orbit in turn, type by type.
    """

    group: tuple[int, ...]
    representations: list[np.ndarray]
    #: (|G|, n_e): ``Pi_h x = x[permutations[h]]`` (the point permutation of ``h^-1``).
    permutations: np.ndarray
    orbit_types: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]

    @functools.cached_property
    def labels(self) -> np.ndarray:
        """(n_e, 3): the ``(representation, partner, copy)`` of each column of ``U``."""
        return np.concatenate([np.tile(labels, (len(points), 1))
                               for points, _, _, labels in self.orbit_types])

    @functools.cached_property
    def blocks(self) -> list[list[np.ndarray]]:
        """``blocks[i][a]``: the columns of partner ``a`` of representation ``i``; the same
        position in each partner's list is the same copy of the same orbit."""
        labels = self.labels
        return [[np.flatnonzero((labels[:, 0] == number) & (labels[:, 1] == a))
                 for a in range(rho.shape[1])]
                for number, rho in enumerate(self.representations)]

    @functools.cached_property
    def matrix(self) -> np.ndarray:
        """(n_e, n_e): ``U``."""
        n_e = self.permutations.shape[1]
        matrix = np.zeros((n_e, n_e))
        start = 0
        for points, _, local, _ in self.orbit_types:
            for orbit in points:
                matrix[orbit, start:start + len(orbit)] = local
                start += len(orbit)
        return matrix

    def apply(self, matrix: np.ndarray) -> np.ndarray:
        """``matrix @ U`` for an (r, n_e) ``matrix``, a batched product per orbit type."""
        rows = matrix.shape[0]
        return np.concatenate([(matrix[:, points].reshape(-1, local.shape[0]) @ local)
                               .reshape(rows, -1)
                               for points, _, local, _ in self.orbit_types], axis=1)

    def apply_transpose(self, matrix: np.ndarray) -> np.ndarray:
        """``U^T @ matrix`` for an (n_e, c) ``matrix``."""
        return self.apply(matrix.T).T

    def diagonals(self, elements: tuple[int, ...]) -> np.ndarray:
        """(n_e, len(elements)): ``u^T Pi_h u`` for each column ``u`` of ``U`` and each group
        element ``h`` (positions in :attr:`group`): ``u``'s eigenvalue where it is one of
        ``Pi_h``'s eigenvectors."""
        return np.concatenate([
            np.tile(np.stack([np.sum(local * local[action[h]], axis=0) for h in elements],
                             axis=1), (len(points), 1))
            for points, action, local, _ in self.orbit_types])

    def turned(self, turns: dict[int, np.ndarray]) -> SymmetryBasis:
        """The basis with the partners of representation ``i`` turned by the orthogonal
        ``turns[i]`` (d, d): partner ``b`` becomes ``sum_a B^a turns[i][a, b]``."""
        orbit_types = []
        for points, action, local, labels in self.orbit_types:
            local = local.copy()
            for number, turn in turns.items():
                columns = np.stack([np.flatnonzero((labels[:, 0] == number) & (labels[:, 1] == a))
                                    for a in range(len(turn))])  # (d, copies)
                local[:, columns] = np.einsum("sac,ab->sbc", local[:, columns], turn)
            orbit_types.append((points, action, local, labels))
        return SymmetryBasis(self.group, self.representations, self.permutations, orbit_types)


def _local_basis(representations: list[np.ndarray], action: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The orthonormal symmetry-adapted basis (s, s) of one orbit whose points the group
    permutes by ``action`` (|G|, s: ``(Pi_h x)_i = x_{action[h, i]}``), and its columns'
    ``(representation, partner, copy)`` labels."""
    size, s = action.shape
    actions = np.zeros((size, s, s))
    actions[np.arange(size)[:, None], np.arange(s), action] = 1.0
    columns, labels = [], []
    for number, rho in enumerate(representations):
        d = rho.shape[1]
        projections = d / size * np.einsum("hab,hij->abij", rho, actions)  # P_ab
        values, vectors = np.linalg.eigh(projections[0, 0])
        first = vectors[:, values > 0.5]  # the range of the projection P_11
        for a in range(d):
            columns.append(projections[a, 0] @ first)
            labels += [(number, a, copy) for copy in range(first.shape[1])]
    basis = np.concatenate(columns, axis=1)
    assert basis.shape == (s, s)
    return basis, np.array(labels, dtype=np.int64).reshape(s, 3)


@functools.cache
def symmetry_basis(order: int, group: tuple[int, ...]) -> SymmetryBasis:
    """The symmetry-adapted basis of the surface of ``order`` for the symmetries ``group``
    (indices into :func:`cube_symmetries` of a group)."""
    matrices = cube_symmetries()[list(group)]
    representations = irreducible_representations(matrices)
    permutations = np.stack([surface_permutation(order, matrix.T) for matrix in matrices])
    n_e = permutations.shape[1]
    types: dict[bytes, tuple[np.ndarray, list[np.ndarray]]] = {}
    seen = np.zeros(n_e, dtype=bool)
    where = np.empty(n_e, dtype=np.int64)
    for point in range(n_e):
        if not seen[point]:
            orbit = np.array(list(dict.fromkeys(permutations[:, point].tolist())))
            seen[orbit] = True
            where[orbit] = np.arange(len(orbit))
            action = where[permutations[:, orbit]]
            types.setdefault(action.tobytes(), (action, []))[1].append(orbit)
    orbit_types = [(np.stack(orbits_), action, *_local_basis(representations, action))
                   for action, orbits_ in types.values()]
    return SymmetryBasis(tuple(group), representations, permutations, orbit_types)


@functools.cache
def _row_reduction(basis: SymmetryBasis, stabilizer: tuple[int, ...]
                   ) -> tuple[SymmetryBasis, list[list[np.ndarray]] | None]:
    """``(turned, rows)`` for a representative whose stabilizer is ``stabilizer`` (positions
    in ``basis.group``): the basis with the partners of the 2-dim representations turned to
    diagonalise the stabilizer where it is abelian, and ``rows[i][a]``, the rows of
    ``turned^T A turned`` that can be nonzero in the columns ``basis.blocks[i][a]`` (those with
    the same eigenvalues under the stabilizer); None where all of them can."""
    if len(stabilizer) == 1:
        return basis, None
    whole = len(stabilizer) == len(basis.group)
    turns = {}
    if not whole:  # diagonalise a generic combination of the (commuting, symmetric) rho(h)
        for number, rho in enumerate(basis.representations):
            if rho.shape[1] > 1:
                combination = sum((k + 1.0) * (rho[h] + rho[h].T)
                                  for k, h in enumerate(stabilizer))
                turns[number] = np.linalg.eigh(combination)[1]
    turned = basis.turned(turns)
    signatures = np.rint(turned.diagonals(stabilizer)).astype(np.int64)  # (n_e, |H|)
    if not (whole or np.all(np.abs(signatures) == 1)):
        return basis, None  # the columns are not eigenvectors of the stabilizer
    rows = []
    for partners in basis.blocks:
        rows.append([])
        for columns in partners:
            if not len(columns):  # a representation the surface does not hold
                rows[-1].append(columns)
                continue
            signature = signatures[columns[0]]
            assert np.all(signatures[columns] == signature)
            rows[-1].append(np.flatnonzero(np.all(signatures == signature, axis=1)))
    return turned, rows


def symmetric_stack_svd(translations, members: np.ndarray, lattice: np.ndarray, order: int,
                        conjugate_transpose: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(values, right_h)``: the singular values (descending) and right singular vectors
    (rows, n_e x n_e) of ``translations.stacked(members, conjugate_transpose)``, what
    ``np.linalg.svd(r_factor(stack))`` gives, from the members' orbit representatives under
    the symmetries that map the members' offsets ``lattice`` (n, 3) onto themselves (module
    docstring). For a cube-invariant kernel (the Translations' ``symmetric``), real or
    complex (then ``^T`` above is ``^H``)."""
    members = np.asarray(members)
    lattice = np.asarray(lattice)
    group = class_symmetries(lattice)
    basis = symmetry_basis(order, group)
    matrices = cube_symmetries()[list(group)]
    representative, _ = orbits(lattice, matrices)
    representatives, sizes = np.unique(representative, return_counts=True)
    stacks: list[list[np.ndarray]] = [[] for _ in basis.representations]
    for index, size in zip(representatives, sizes, strict=True):
        stabilizer = tuple(np.flatnonzero(np.all(matrices @ lattice[index] == lattice[index],
                                                 axis=1)).tolist())
        turned, rows = _row_reduction(basis, stabilizer)
        # T(s) itself, rows in place: it commutes with its stabilizer's permutations.
        matrix = translations.matrix(members[index])
        product = turned.apply(matrix.conj().T if conjugate_transpose else matrix)
        if rows is not None:
            product = turned.apply_transpose(product)
        for number, (rho, partners) in enumerate(zip(basis.representations, basis.blocks,
                                                     strict=True)):
            weight = np.sqrt(size / rho.shape[1])
            for a, columns in enumerate(partners):
                block = (product[:, columns] if rows is None
                         else product[np.ix_(rows[number][a], columns)])
                stacks[number].append(weight * block)
    values, vectors = [], []
    for partners, stack in zip(basis.blocks, stacks, strict=True):
        if not len(partners[0]):  # a representation the surface does not hold
            continue
        _, block_values, block_h = np.linalg.svd(np.linalg.qr(np.concatenate(stack), mode="r"))
        block_values = np.pad(block_values, (0, len(block_h) - len(block_values)))
        for columns in partners:
            values.append(block_values)
            vectors.append(block_h @ basis.matrix[:, columns].T)
    values, vectors = np.concatenate(values), np.concatenate(vectors)
    descending = np.argsort(-values, kind="stable")
    return values[descending], vectors[descending]
