"""The far lattice operator of periodic FMMs (``fmmloopy.maths.periodic``): the root's multipole
through it, then its local expansion and the mean-potential constant, against an Ewald sum less
the near images, summed directly."""

import numpy as np
import pytest

from fmmloopy.maths.ewald import ewald_sum
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.periodic import (
    far_lattice_operator,
    mean_potential_constant,
    near_image_shifts,
)
from fmmloopy.maths.precompute import DEFAULT_RCOND, check_to_equivalent, kernel_matrix
from fmmloopy.maths.reference import direct_sum

#: Relative L2 error of the far images' field through the operator: an M2L at the FMM's own
#: V-list separation (the nearest far image's equivalent surface touches the root's downward
#: equivalent surface, as a V-list pair's do), so an M2L's truncation error relative to the
#: field it carries: measured 4.2e-4, 1.4e-5 and 3.4e-7 at orders 4, 6 and 8 here (each order
#: about 6 times less), with a factor 3.
BOUNDS = {4: 1.5e-3, 6: 5e-5}  # order 8: 3.4e-7 measured (30 s more here)


def _fit(check, equivalent, values):
    first, second = check_to_equivalent(LAPLACE_3D, check, equivalent, DEFAULT_RCOND)
    return second @ (first @ values)


@pytest.mark.parametrize("order", sorted(BOUNDS))
def test_far_images_through_the_operator_match_ewald_less_the_near_images(order):
    rng = np.random.default_rng(order)
    sources = rng.uniform(-1, 1, (300, 3))  # the cell: the root box, half-width 1
    charges = rng.uniform(-1, 1, 300)
    charges -= charges.mean()  # neutral
    targets = rng.uniform(-1, 1, (60, 3))
    expansion = Expansion(order)
    up_check, up_equivalent = (expansion.surface("upward_check"),
                               expansion.surface("upward_equivalent"))
    down_check, down_equivalent = (expansion.surface("downward_check"),
                                   expansion.surface("downward_equivalent"))
    multipole = _fit(up_check, up_equivalent,
                     kernel_matrix(LAPLACE_3D, up_check, sources.T) @ charges)
    local = _fit(down_check, down_equivalent, far_lattice_operator("laplace", order) @ multipole)
    through_operator = kernel_matrix(LAPLACE_3D, targets.T, down_equivalent) @ local
    second_moment = float(charges @ (sources ** 2).sum(axis=1))
    far = through_operator + mean_potential_constant(second_moment, multipole, order)

    near = sum(direct_sum(LAPLACE_3D, sources + shift, charges, targets)
               for shift in near_image_shifts(2.0))
    expected = ewald_sum(sources, charges, targets, cell=2.0) - near
    error = np.linalg.norm(far - expected) / np.linalg.norm(expected)
    assert error < BOUNDS[order], error
    # Not vacuous: the far images' field is not small beside the whole periodic sum, and the
    # constant matters (without it the error is 7e-2 here).
    assert np.linalg.norm(expected) > 1e-3 * np.linalg.norm(expected + near)
    assert np.linalg.norm(through_operator - expected) > 10 * BOUNDS[order] \
        * np.linalg.norm(expected)


def test_only_the_laplace_potential():
    with pytest.raises(ValueError, match="Laplace potential"):
        far_lattice_operator("yukawa:kappa=1", 4)
