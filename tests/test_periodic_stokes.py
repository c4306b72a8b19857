"""Periodic Stokes flow: Hasimoto's Ewald sum (the reference) and the periodic Stokes FMM.

The reference, :func:`fmmloopy.maths.hasimoto.hasimoto_sum`, is checked on its own: against
Hasimoto's (1959) published constant of the simple cubic lattice, for any splitting, and for
periodicity. The FMM is then held to it: at its default order (10) the velocity measured 1.4e-7
of the largest, the pressure 2e-8 to 1e-7, the gradient 2.6e-7 (docs/kernels.md, "Periodic
Stokes"): held at 1e-6, the acceptance of the periodic Stokeslet sum. Gradients are compared with
central differences of the reference (step 1e-5 of a cell of side 2.5: their own error about
1e-9 of the gradient).
"""

import numpy as np
import pytest

import fmmloopy
from fmmloopy.maths.hasimoto import hasimoto_sum, stokes_lattice_remainder

#: Hasimoto's constant of the simple cubic lattice: a point force's own lattice moves it with
#: ``-2.837297 F / (6 pi mu L)`` (the drag of a cubic array of spheres, 1 - 1.7601 c^(1/3)).
HASIMOTO_CONSTANT = 2.837297


@pytest.mark.parametrize("xi", [3.0, 8.0, 14.0])
def test_a_lattice_of_one_force_moves_it_by_hasimotos_constant(xi):
    force = np.array([[0.4, -1.0, 0.25]])
    side, mu = 1.7, 0.6
    velocity, pressure = hasimoto_sum(np.zeros((1, 3)), force, np.zeros((1, 3)), side, mu,
                                      xi=xi / side)
    np.testing.assert_allclose(velocity, -HASIMOTO_CONSTANT * force / (6 * np.pi * mu * side),
                               rtol=1e-6)  # the constant's seven digits
    assert abs(pressure[0]) < 1e-12  # the lattice's pressure at a force is odd: 0


def test_the_reference_is_periodic_and_independent_of_its_splitting():
    rng = np.random.default_rng(0)
    sources, forces = rng.random((60, 3)), rng.standard_normal((60, 3))
    targets = rng.random((20, 3))
    first = hasimoto_sum(sources, forces, targets, 1.0, xi=5.0)
    second = hasimoto_sum(sources, forces, targets, 1.0, xi=11.0)
    moved = hasimoto_sum(sources, forces, targets + np.array([1.0, -2.0, 0.0]), 1.0, xi=7.0)
    for one, other in zip(first, second, strict=True):
        np.testing.assert_allclose(one, other, rtol=0, atol=1e-12 * np.abs(one).max())
    for one, other in zip(first, moved, strict=True):
        np.testing.assert_allclose(one, other, rtol=0, atol=1e-12 * np.abs(one).max())


def test_the_remainder_is_the_sum_less_the_near_images():
    rng = np.random.default_rng(1)
    source, target = rng.uniform(-1, 1, (2, 3))
    force = rng.standard_normal(3)
    velocity, pressure = hasimoto_sum(source[None], force[None], target[None], 2.0, mu=0.5)
    for shift in np.array(np.meshgrid(*[[-2.0, 0.0, 2.0]] * 3)).reshape(3, -1).T:
        d = target - source - shift
        r = np.linalg.norm(d)
        velocity[0] -= (force / r + d * (d @ force) / r ** 3) / (4 * np.pi)
        pressure[0] -= d @ force / (4 * np.pi * r ** 3)
    s, p = stokes_lattice_remainder((target - source)[None])
    np.testing.assert_allclose(s[0] @ force, velocity[0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(p[0] @ force, pressure[0], rtol=1e-12, atol=1e-13)


@pytest.fixture(scope="module")
def forces_in_a_cell():
    rng = np.random.default_rng(5)
    lower, side = np.array([-1.0, 0.3, 2.0]), 2.5
    sources = lower + side * rng.random((1500, 3))
    targets = lower + side * rng.random((200, 3))
    return lower, side, sources, targets, rng.standard_normal((1500, 3, 2))


@pytest.fixture(scope="module")
def periodic_stokes(forces_in_a_cell):
    lower, side, sources, targets, _ = forces_in_a_cell
    return fmmloopy.Fmm(sources, targets=targets, kernel="stokes:mu=0.7",
                        periodic=(lower, lower + side))


def _central_gradient(sources, forces, targets, side, mu, step=1e-5):
    gradient = np.zeros((len(targets), 3, 3))
    for axis in range(3):
        shift = np.zeros(3)
        shift[axis] = step
        ahead, _ = hasimoto_sum(sources, forces, targets + shift, side, mu)
        behind, _ = hasimoto_sum(sources, forces, targets - shift, side, mu)
        gradient[:, :, axis] = (ahead - behind) / (2 * step)
    return gradient


def test_velocity_gradient_and_pressure_match_hasimotos_sum(forces_in_a_cell, periodic_stokes):
    _, side, sources, targets, forces = forces_in_a_cell
    assert periodic_stokes.order == 10
    flows = periodic_stokes(forces, gradient=True, pressure=True)  # two force vectors at once
    for vector in range(2):
        velocity, pressure = hasimoto_sum(sources, forces[:, :, vector], targets, side, 0.7)
        compared = [(flows.velocity[..., vector], velocity),
                    (flows.pressure[..., vector], pressure)]
        if vector == 0:  # the differences' six sums once
            compared.append((flows.gradient[..., vector],
                             _central_gradient(sources, forces[:, :, 0], targets, side, 0.7)))
        for got, want in compared:
            assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()


def test_without_its_constants_the_flow_is_off_by_more_than_the_bound(forces_in_a_cell,
                                                                      periodic_stokes):
    """The velocity's and the pressure's constants and the body force's flow each move the
    result by far more than the bound (measured: 2e-2 and 1e-1 of the largest without the
    constants): the comparisons above would see any of them wrong."""
    _, side, sources, targets, forces = forces_in_a_cell
    flow = periodic_stokes(forces[:, :, 0], pressure=True)
    images = periodic_stokes.points_setup.images
    totals, velocity_constants, pressure_constants = images._added
    velocity, pressure = hasimoto_sum(sources, forces[:, :, 0], targets, side, 0.7)
    assert np.abs(velocity_constants[0]).max() / 1.4 > 1e-3 * np.abs(velocity).max()
    assert abs(pressure_constants[0]) > 1e-2 * np.abs(pressure).max()
    assert np.abs(totals[0]).max() > 1.0  # a net force: the body force's flow is in the sum
    assert np.abs(flow.velocity - velocity).max() <= 1e-6 * np.abs(velocity).max()


def test_a_neutral_cell_and_the_sources_as_targets(forces_in_a_cell):
    lower, side, sources, _, forces = forces_in_a_cell
    neutral = forces[:, :, 0] - forces[:, :, 0].mean(axis=0)
    fmm = fmmloopy.Fmm(sources, kernel="stokes", periodic=(lower, lower + side), order=10)
    velocity, _ = hasimoto_sum(sources, neutral, sources, side)
    assert np.abs(fmm(neutral) - velocity).max() <= 1e-6 * np.abs(velocity).max()


@pytest.mark.parametrize("options, call, message", [
    (dict(kernel="stokes", periodic_axes="xy"), {}, "every axis"),
    (dict(kernel="rpy:radius=0.01"), {}, "Laplace and Stokes kernels"),
    (dict(kernel="stokes"), {"stresslets": True}, "point forces"),
])
def test_what_a_periodic_stokes_fmm_does_not_sum_is_refused(options, call, message):
    rng = np.random.default_rng(2)
    points, forces = rng.random((200, 3)), rng.standard_normal((200, 3))
    with pytest.raises(ValueError, match=message):
        fmm = fmmloopy.Fmm(points, periodic=1.0, order=4, **options)
        if call:
            fmm(forces, stresslets=(forces, points - 0.5))
