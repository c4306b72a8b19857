"""The cube's symmetries on the surfaces, transfer vectors and octants (maths/cube_symmetry.py),
and the operators they let the precomputation derive, against the operators computed one by one."""

import numpy as np
import pytest

from fmmloopy.maths import precompute
from fmmloopy.maths.cube_symmetry import (
    cube_symmetries,
    is_cube_invariant,
    orbits,
    surface_permutation,
)
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.geometry import child_centres, transfer_class, transfer_vectors
from fmmloopy.maths.green import get_kernel, helmholtz, user_kernel, yukawa
from fmmloopy.maths.surfaces import fine_order, unit_surface


def test_the_48_symmetries_are_the_signed_permutations_a_group():
    symmetries = cube_symmetries()
    assert symmetries.shape == (48, 3, 3)
    assert np.array_equal(symmetries[0], np.eye(3, dtype=np.int64))
    assert len({matrix.tobytes() for matrix in symmetries}) == 48
    for matrix in symmetries:
        assert np.array_equal(matrix @ matrix.T, np.eye(3))
        assert sorted(np.abs(matrix).sum(axis=0)) == [1, 1, 1]
    products = {(a @ b).tobytes() for a in symmetries for b in symmetries}
    assert products == {matrix.tobytes() for matrix in symmetries}


@pytest.mark.parametrize("order", [2, 3, 4, 5, 6, 9, fine_order(6)])
def test_every_symmetry_maps_a_surface_onto_itself_exactly(order):
    surface = unit_surface(order)
    for matrix in cube_symmetries():
        permutation = surface_permutation(order, matrix)
        assert np.array_equal(matrix @ surface, surface[:, permutation])  # exactly
        assert sorted(permutation) == list(range(surface.shape[1]))


def test_the_transfer_vectors_fall_into_16_orbits_and_the_octants_into_one():
    vectors = transfer_vectors()
    representative, symmetry = orbits(vectors)
    assert len(set(representative.tolist())) == 16
    for index, (first, number) in enumerate(zip(representative, symmetry, strict=True)):
        assert np.array_equal(cube_symmetries()[number] @ vectors[first], vectors[index])
    octants = np.rint(2 * child_centres().T).astype(np.int64)
    representative, _ = orbits(octants)
    assert set(representative.tolist()) == {0}
    with pytest.raises(ValueError, match="is not listed"):
        orbits(np.array([[1, 0, 0], [0, 1, 0]]))


def test_radial_kernels_are_invariant_and_others_are_not():
    for kernel in (get_kernel("laplace"), yukawa(3.0), helmholtz(2.0),
                   user_kernel("exp(-2*r)/r")):
        assert is_cube_invariant(kernel.evaluate), kernel.name
    assert not is_cube_invariant(user_kernel("(1 + d0 / (4 * r)) / r", name="tilted").evaluate)
    assert not is_cube_invariant(user_kernel("exp(-d2 * d2) / r", name="squeezed").evaluate)


@pytest.mark.parametrize("kernel,order", [("laplace", 4),
                                          pytest.param("laplace", 9, marks=pytest.mark.slow),
                                          ("yukawa:kappa=3", 4)])
def test_operators_from_the_symmetries_equal_those_computed_one_by_one(kernel, order,
                                                                       monkeypatch):
    """Every matrix the symmetries give (M2M, L2L, the 316 M2L, the compressed classes from
    them) equals the one computed directly (order 9: square fits, the translations' other
    path), to the rounding the fits amplify: their pseudo-inverses scale the float64 rounding
    by up to 1 / rcond, and the two ways round differently (3.5e-12 of the largest entry
    measured at order 4), far below the orders' truncation errors."""
    derived = precompute.compute_operators(kernel, order, dense_m2l=True)
    monkeypatch.setattr(precompute, "is_cube_invariant", lambda evaluate: False)
    direct = precompute.compute_operators(kernel, order, dense_m2l=True)
    # Each matrix through the potential it gives on its check surface (the M2L's rows are
    # check potentials already): where a square fit drops singular values (order 9) the
    # dropped directions are any of a cluster of equal ones, so the densities may differ
    # there (2e-5 of the largest entry at order 9) while their potentials do not.
    expansion, green = Expansion(order), get_kernel(kernel)
    on_check = {
        "m2m": precompute.kernel_matrix(green, expansion.surface("upward_check"),
                                        expansion.surface("upward_equivalent")),
        "l2l": precompute.kernel_matrix(green, expansion.surface("downward_check"),
                                        expansion.surface("downward_equivalent")),
        "m2l": np.eye(expansion.n_e)}
    for name, potentials in on_check.items():
        a, b = potentials @ getattr(derived, name), potentials @ getattr(direct, name)
        assert np.max(np.abs(a - b)) <= 1e-10 * np.max(np.abs(b)), name
    assert derived.ranks() == direct.ranks()
    # The compressed classes: the cut may fall inside a cluster of equal singular values (the
    # symmetries make them so), where the bases are any of the cluster's, so each way's
    # compression is held to the dense M2L it approximates, as close as the other's.
    for name in direct.compressed_m2l:
        if not name.endswith("_core"):
            continue
        stem = name[:-len("_core")]
        dense = direct.m2l[transfer_class(stem[len("m2l_"):])]

        misfits = []
        for operators in (derived, direct):
            parts = operators.compressed_m2l
            product = parts[f"{stem}_expand"] @ parts[f"{stem}_core"] @ parts[f"{stem}_compress"]
            misfits.append(np.max(np.abs(product - dense)))
        assert misfits[0] <= 2 * misfits[1] + 1e-12 * np.max(np.abs(dense)), stem
