"""Periodic FMMs (``Fmm(..., periodic=...)``) against Ewald sums (``fmmloopy.maths.ewald``):
random charges, neutral or not, potentials and gradients; the lattice's invariances; bad
input."""

from pathlib import Path

import numpy as np
import pytest
from conftest import PERIODIC_EPS_CASES

from fmmloopy import Fmm
from fmmloopy.maths.ewald import ewald_sum
from fmmloopy.maths.slab_ewald import slab_ewald_sum
from fmmloopy.maths.wire_sum import wire_image_sum
from fmmloopy.tuning.recipe import RecipeError
from fmmloopy.tuning.registry import load_recipes

WRONG_RECIPES = Path(__file__).parent / "recipes" / "wrong_recipes.py"

#: Relative L2 errors at the default order (7), measured on 1000 random charges in a shifted
#: cell: potential 4.3e-7 (neutral) and 4.4e-7 (net charge 19), gradient 5.2e-7; the bounds are
#: the accuracy a periodic FMM promises by default (docs/fmm.md), about twice those.
POTENTIAL_BOUND, GRADIENT_BOUND = 1e-6, 2e-6
#: The same for dipoles uniform in [-1, 1]^3 on those points, with or without the charges:
#: measured potential 6.7e-7 / 6.8e-7, gradient 9.8e-8 / 9.8e-8 (order 10: 3.9e-9, 9.8e-10).
DIPOLE_BOUNDS = 1.5e-6, 3e-7


def _relative(value, reference):
    return np.linalg.norm(value - reference) / np.linalg.norm(reference)


@pytest.fixture(scope="module")
def charges_in_a_cell():
    rng = np.random.default_rng(3)
    lower, side = np.array([-1.0, 0.3, 2.0]), 2.5
    points = lower + rng.uniform(0, side, (1000, 3))
    return points, rng.uniform(-1, 1, 1000), lower, side


@pytest.fixture(scope="module")
def periodic_fmm(charges_in_a_cell):
    points, _, lower, side = charges_in_a_cell
    return Fmm(points, periodic=(lower, lower + side))


@pytest.mark.parametrize("neutral", [True, False], ids=["neutral", "net charge"])
def test_potentials_and_gradients_match_the_ewald_sum(charges_in_a_cell, periodic_fmm, neutral):
    points, charges, lower, side = charges_in_a_cell
    if neutral:
        charges = charges - charges.mean()
    assert periodic_fmm.order == 7
    fields = periodic_fmm(charges, gradient=True)
    potential, gradient = ewald_sum(points - lower, charges, cell=side, gradient=True)
    assert _relative(fields.potential, potential) < POTENTIAL_BOUND
    assert _relative(fields.gradient, gradient) < GRADIENT_BOUND
    assert _relative(periodic_fmm(charges), potential) < POTENTIAL_BOUND
    # Not the free-space sum: the images change every potential.
    free = Fmm(points)(charges)
    assert _relative(free, potential) > 1e-2


#: Madelung constants (nearest-neighbour distance; Madelung, Ewald): NaCl's to 16 digits,
#: CsCl's to the 12 published.
NACL, CSCL = 1.747564594633182, 1.762674773070


@pytest.mark.parametrize(("name", "points", "charges", "nearest", "known"), [
    ("NaCl", np.array([[i, j, k] for i in (0, 0.5) for j in (0, 0.5) for k in (0, 0.5)]),
     np.array([(-1.0) ** round(2 * (i + j + k)) for i in (0, 0.5) for j in (0, 0.5)
               for k in (0, 0.5)]), 0.5, NACL),
    ("CsCl", np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]), np.array([1.0, -1.0]),
     np.sqrt(3) / 2, CSCL),
])
def test_madelung_constants_at_order_10(name, points, charges, nearest, known):
    """The acceptance's 1e-9 at order 10 (measured errors 2.4e-10 and 1.6e-10; ions moved
    off the leaves' faces, examples/periodic_madelung.py)."""
    potentials = Fmm(points + 0.125, order=10, periodic=1.0)(charges)
    constants = -4 * np.pi * nearest * potentials / charges
    assert np.all(np.abs(constants - known) < 1e-9), (name, constants - known)


def test_higher_orders_converge(charges_in_a_cell):
    """Order 10: measured 2.3e-9 (potential), 5.0e-9 (gradient)."""
    points, charges, lower, side = charges_in_a_cell
    fields = Fmm(points, order=10, periodic=(lower, lower + side))(charges, gradient=True)
    potential, gradient = ewald_sum(points - lower, charges, cell=side, gradient=True)
    assert _relative(fields.potential, potential) < 1e-8
    assert _relative(fields.gradient, gradient) < 2e-8


def test_the_lattice_moves_nothing(charges_in_a_cell, periodic_fmm):
    """Points given anywhere in the lattice (outside the cell, on its faces) are their images
    in the cell: the same potentials to rounding; several vectors as one call each."""
    points, charges, lower, side = charges_in_a_cell
    rng = np.random.default_rng(4)
    moved = points + side * rng.integers(-3, 4, points.shape)
    moved[:3] = lower + side * np.array([[0, 0, 0], [1, 1, 1], [1, 0.5, 0]])
    original = points.copy()
    original[:3] = lower + side * np.array([[0, 0, 0], [0, 0, 0], [0, 0.5, 0]])
    reference = Fmm(original, periodic=(lower, lower + side))(charges)
    assert _relative(Fmm(moved, periodic=(lower, lower + side))(charges), reference) < 1e-12
    both = periodic_fmm(np.column_stack([charges, charges[::-1]]))
    assert _relative(both[:, 0], periodic_fmm(charges)) < 1e-13
    assert _relative(both[:, 1], periodic_fmm(charges[::-1])) < 1e-13


def test_targets_of_their_own_and_update(charges_in_a_cell):
    points, charges, lower, side = charges_in_a_cell
    rng = np.random.default_rng(5)
    targets = lower + rng.uniform(0, side, (300, 3))
    charges = charges - charges.mean()
    fmm = Fmm(points, targets, periodic=(lower, lower + side))
    expected = ewald_sum(points - lower, charges, targets - lower, cell=side)
    assert _relative(fmm(charges), expected) < POTENTIAL_BOUND
    moved = lower + rng.uniform(0, side, points.shape)
    fmm.update(moved, targets)
    assert fmm.last_update == "rebuilt: the FMM is periodic (its tree holds the cell's images)"
    expected = ewald_sum(moved - lower, charges, targets - lower, cell=side)
    assert _relative(fmm(charges), expected) < POTENTIAL_BOUND


def test_the_far_lattice_is_a_launch_of_the_plan(periodic_fmm):
    """The 27 far-lattice operators are applied on the device by a launch of the plan, first in
    the downward pass, reported as ``lattice``: M2M's kernel (its matvec template at the same
    sizes, n_e by n_e) over the cell's children, 27 matrices."""
    launches = periodic_fmm.plan.launches
    lattice = [index for index, launch in enumerate(launches) if launch.step == "lattice"]
    assert len(lattice) == 1
    index = lattice[0]
    assert all(launch.upward for launch in launches[:index])
    assert not any(launch.upward for launch in launches[index:])
    launch = launches[index]
    assert launch.kernel.operator == "m2m"
    n_e = periodic_fmm.expansion.n_e
    assert launch.work == 2 * n_e * n_e * 8 * 8  # every child with targets lists all 8
    assert periodic_fmm.plan.work("lattice") == launch.work


def test_a_wrong_lattice_recipe_is_refused_at_first_use(charges_in_a_cell):
    """First-use verification covers the lattice's launch like any other: a recipe that is
    not shipped and skips a source box is compared with ``sequential`` on the lattice's own
    list and refused; run unverified, it is wrong by far more than the method's error."""
    load_recipes(WRONG_RECIPES)
    points, charges, lower, side = charges_in_a_cell
    charges = charges - charges.mean()
    recipes = {"lattice": "skip_first_source_box"}
    with pytest.raises(RecipeError, match="lattice launch"):
        Fmm(points, periodic=(lower, lower + side), recipes=recipes)
    with pytest.warns(UserWarning, match="without first-use verification"):
        unverified = Fmm(points, periodic=(lower, lower + side), recipes=recipes,
                         verify_recipes=False)
    reference = ewald_sum(points - lower, charges, cell=side)
    assert _relative(unverified(charges), reference) > 100 * POTENTIAL_BOUND


def test_few_charges():
    """Fewer charges than a leaf holds: the cell is split anyway (the far lattice acts on its
    children)."""
    rng = np.random.default_rng(6)
    points = rng.uniform(0, 1, (5, 3))
    charges = np.array([1.0, -2.0, 0.5, 0.25, 0.25])
    fmm = Fmm(points, periodic=1.0)
    assert _relative(fmm(charges), ewald_sum(points, charges, cell=1.0)) < POTENTIAL_BOUND


@pytest.mark.parametrize(("options", "message"), [
    ({"periodic": 0.0}, "positive sides"),
    ({"periodic": -1.0}, "positive sides"),
    ({"periodic": np.inf}, "finite corners"),
    ({"periodic": "big"}, "side L or its corners"),
    ({"periodic": [[0, 0, 0], [1, 2, 1]]}, "must be a cube"),
    ({"periodic": [[0, 0, 0]]}, r"\(lower, upper\)"),
    ({"periodic": 1.0, "kernel": "yukawa:kappa=1"}, "Laplace and Stokes kernels"),
    ({"periodic": 1.0, "dtype": np.float32}, "float64"),
    ({"periodic": 1.0, "max_depth": 2}, "max_depth"),
    ({"periodic": 1.0, "kernel": "stokes", "eps": 1e-6}, "eps of a periodic FMM is calibrated"),
    ({"recipes": {"lattice": "cpu"}}, "unknown operator"),  # free space has no lattice
])
def test_bad_cells_and_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        Fmm(np.zeros((4, 3)), **options)


@pytest.mark.parametrize("with_charges", [False, True], ids=["dipoles", "charges and dipoles"])
def test_dipoles_match_the_ewald_sum(charges_in_a_cell, periodic_fmm, with_charges):
    """Dipoles (with or without charges, a net charge too) at the default order against the
    Ewald sum of dipoles; the tin-foil constant takes a dipole's second moment
    ``2 p . (x - c)``. Measured: beside DIPOLE_BOUNDS."""
    points, charges, lower, side = charges_in_a_cell
    dipoles = np.random.default_rng(9).uniform(-1, 1, (len(points), 3))
    charges = charges if with_charges else None
    fields = periodic_fmm(charges, dipoles=dipoles, gradient=True)
    potential, gradient = ewald_sum(points - lower, charges, cell=side, dipoles=dipoles,
                                    gradient=True)
    assert _relative(fields.potential, potential) < DIPOLE_BOUNDS[0]
    assert _relative(fields.gradient, gradient) < DIPOLE_BOUNDS[1]


@pytest.mark.parametrize("axes", ["xyz", "xz", "y"], ids=["cell", "slab", "wire"])
def test_estimate_error_compares_with_the_lattice_sum(axes):
    """``estimate_error`` of a periodic FMM: with every target sampled it is the error against
    the lattice's own sum (the Ewald sum, the slab's with its free axis y, the wire's images
    along y), computed here apart; on a sample its interval covers that error (measured at
    order 4, seed 0, 60 of 300 targets: inside in all three)."""
    rng = np.random.default_rng(40)
    lower, side = np.array([0.2, -0.5, 1.0]), 1.5
    points = lower + side * rng.random((300, 3))
    charges = rng.uniform(-1, 1, 300)
    charges -= charges.mean()
    dipoles = rng.uniform(-1, 1, (300, 3))
    fmm = Fmm(points, periodic=(lower, lower + side), periodic_axes=axes, order=4)
    result = fmm(charges, dipoles=dipoles, gradient=True)
    if axes == "xyz":
        reference = ewald_sum(points - lower, charges, cell=side, dipoles=dipoles,
                              gradient=True)
    elif axes == "xz":  # the slab's sum is periodic in its x and y: y goes last
        turn = [0, 2, 1]
        potential, gradient = slab_ewald_sum((points - lower)[:, turn], charges, side=side,
                                             dipoles=dipoles[:, turn], gradient=True)
        reference = potential, gradient[:, turn]
    else:
        reference = wire_image_sum(points, charges, side=side, axis=1, dipoles=dipoles,
                                   gradient=True)
    errors = [_relative(value, exact) for value, exact in zip(result, reference, strict=True)]
    assert 1e-7 < min(errors)  # order 4: an error to estimate
    every = fmm.estimate_error(charges, dipoles=dipoles, gradient=True, samples=300,
                               result=result)
    sampled = fmm.estimate_error(charges, dipoles=dipoles, gradient=True, samples=60)
    for name, error in zip(("potential", "gradient"), errors, strict=True):
        assert every[name].relative_l2 == pytest.approx(error, rel=1e-9)
        assert every[name].samples == 300 and sampled[name].samples == 60
        assert sampled[name].low <= error <= sampled[name].high


def test_estimate_error_of_what_it_cannot_sum_is_refused():
    points = np.random.default_rng(8).uniform(0, 1, (20, 3))
    with pytest.raises(ValueError, match="one strength vector"):
        Fmm(points, periodic=1.0).estimate_error(np.ones((20, 2)))
    with pytest.raises(ValueError, match="hasimoto_sum"):
        Fmm(points, kernel="stokes", periodic=1.0).estimate_error(np.ones((20, 3)))


def test_a_cell_whose_wrap_keeps_too_few_digits_is_refused():
    """``periodic=1e-300`` for points in the unit cube would wrap them into the cell keeping
    none of their digits (potentials of 1e300 once): refused, naming the digits. Points a
    million sides away keep enough (their offsets' rounding ~1e-10 of the side): the
    potentials of the points wrapped by hand, to the rounding of their shift."""
    rng = np.random.default_rng(12)
    points = rng.random((500, 3))
    charges = rng.uniform(-1, 1, 500)
    with pytest.raises(ValueError, match="digits"):
        Fmm(points, periodic=1e-300)
    with pytest.raises(ValueError, match="targets lie up to"):
        Fmm(points, targets=points + 2.0 ** 60, periodic=1.0)
    near = Fmm(points, periodic=1.0, order=6)(charges)
    far = Fmm(points + 2.0 ** 20, periodic=1.0, order=6)(charges)
    assert np.abs(far - near).max() <= 1e-7 * np.abs(near).max()


@pytest.mark.parametrize(("eps", "eps_for"), PERIODIC_EPS_CASES)
def test_eps_is_met_against_the_ewald_sum(eps, eps_for):
    """``eps`` of a fully periodic FMM: the order from the rows measured against the Ewald sum
    (on other point sets: uniform, clustered, targets apart, a lattice, targets in the other
    half), met on a held-out set in a shifted cell for the quantities asked for (relative L2
    error over every target, what ``eps`` means)."""
    rng = np.random.default_rng(22)
    lower = np.array([-0.3, 0.2, 1.0])
    points = lower + np.mod(0.4 + 0.25 * rng.standard_normal((1500, 3)), 1.0)
    charges, dipoles = rng.uniform(-1, 1, 1500), rng.uniform(-1, 1, (1500, 3))
    fmm = Fmm(points, periodic=(lower, lower + 1.0), eps=eps, eps_for=eps_for)
    gradient = "gradient" in eps_for
    for given in ({"charges": charges}, {"dipoles": dipoles}):
        if next(iter(given)) not in eps_for:
            continue
        got = fmm(**given, gradient=gradient)
        got = tuple(got) if gradient else (got,)
        want = ewald_sum(points - lower, **given, gradient=True)
        for value, reference in zip(got, want[:len(got)], strict=True):
            assert np.linalg.norm(value - reference) <= eps * np.linalg.norm(reference)
