"""The SVD of a transfer-vector class's stacked matrices by the cube's symmetries
(:mod:`fmmloopy.maths.symmetric_stacks`) against the Householder QR and SVD of the whole stack
(the independent reference): the same singular values, and the same leading subspaces wherever
the values leave a gap to cut at."""

import numpy as np
import pytest

from fmmloopy.maths.cube_symmetry import cube_symmetries
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.geometry import M2L_CLASSES, transfer_class, transfer_vectors
from fmmloopy.maths.green import get_kernel
from fmmloopy.maths.m2l_compression import r_factor
from fmmloopy.maths.precompute import kernel_matrix
from fmmloopy.maths.symmetric_stacks import class_symmetries, symmetric_stack_svd
from fmmloopy.maths.translations import Translations

#: Values and subspaces agree to rounding: ~1e-15 of the largest value measured (orders 6-12);
#: a subspace's angle is bounded by rounding over the gap at its cut (Wedin), held here at
#: gaps of at least 1e-6 of the largest value.
VALUE_TOLERANCE = 1e-13
ANGLE_TOLERANCE = 1e-7


def m2l_translations(kernel, order: int) -> Translations:
    """The kernel between the downward check surface and each transfer vector's upward
    equivalent surface (the square-fit M2L of ``order``), one matrix per orbit."""
    green = get_kernel(kernel)
    expansion = Expansion(order)
    check = expansion.surface("downward_check")
    equivalent = expansion.surface("upward_equivalent")
    vectors = transfer_vectors()
    return Translations(lambda offset: kernel_matrix(green, check, 2.0 * offset[:, None]
                                                     + equivalent),
                        vectors.astype(np.float64), vectors, order, True)


def leading_subspace_cuts(values: np.ndarray) -> list[int]:
    """Ranks at which the values drop by a gap of at least 1e-6 of the largest."""
    gaps = values[:-1] - values[1:]
    return [int(k) + 1 for k in np.flatnonzero(gaps >= 1e-6 * values[0])[:6]]


@pytest.mark.parametrize("kernel,order,conjugate_transpose", [
    ("laplace", 3, False), ("laplace", 6, False), ("laplace", 6, True),
    ("helmholtz:k=2", 4, True), ("yukawa:kappa=3", 5, False)])
def test_the_symmetries_give_the_stacks_singular_values_and_vectors(kernel, order,
                                                                    conjugate_transpose):
    m2l = m2l_translations(kernel, order)
    vectors = transfer_vectors()
    for name, (_, direction) in M2L_CLASSES.items():
        if not direction.endswith("p"):
            continue
        members = transfer_class(name)
        values, right_h = symmetric_stack_svd(m2l, members, vectors[members], order,
                                              conjugate_transpose)
        _, expected_values, expected_h = np.linalg.svd(r_factor(
            m2l.stacked(members, conjugate_transpose)))
        assert np.max(np.abs(values - expected_values)) <= VALUE_TOLERANCE * expected_values[0]
        np.testing.assert_allclose(right_h @ right_h.conj().T, np.eye(len(values)),
                                   atol=1e-13)
        cuts = leading_subspace_cuts(expected_values)
        assert cuts, name
        for k in cuts:
            # sin of the largest angle between the two leading k-dimensional subspaces
            overlap = expected_h[:k].conj() @ right_h[:k].T
            sines = np.sqrt(np.clip(1.0 - np.linalg.svd(overlap, compute_uv=False) ** 2, 0,
                                    None))
            assert sines.max() <= ANGLE_TOLERANCE, (name, k, sines.max())


def test_each_class_is_mapped_onto_itself_by_its_symmetries():
    """The +x classes keep all 8 symmetries that fix the +x axis; ties in the classes'
    definition (the first largest component) leave some y classes 4 of them."""
    vectors = transfer_vectors()
    for name, (_, direction) in M2L_CLASSES.items():
        lattice = vectors[transfer_class(name)]
        group = class_symmetries(lattice)
        assert group[0] == 0 and len(group) in (4, 8), name
        rows = {tuple(row) for row in lattice.tolist()}
        for number in group:
            assert {tuple(row) for row in (lattice @ cube_symmetries()[number].T).tolist()} \
                == rows
        if direction[0] == "x":
            assert len(group) == 8, name
