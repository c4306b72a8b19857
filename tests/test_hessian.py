"""Hessians (``hessian=True``): the direct sum against closed forms and Richardson-extrapolated
finite differences of a numpy potential, the FMM against the direct sum, their shapes, and
what is refused."""

import math

import numpy as np
import pytest

import fmmloopy
from fmmloopy import DirectSum, Fmm, HessianFields


def _laplace_charge_hessian(offsets: np.ndarray) -> np.ndarray:
    """``d^2 / dx_i dx_j`` of ``1 / (4 pi |d|)``: ``(3 d d^T - |d|^2 I) / (4 pi |d|^5)``."""
    r2 = np.einsum("pk,pk->p", offsets, offsets)
    outer = 3 * np.einsum("pi,pj->pij", offsets, offsets) - r2[:, None, None] * np.eye(3)
    return outer / (4 * math.pi * r2[:, None, None] ** 2.5)


def _laplace_dipole_hessian(offsets: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """``d^2 / dx_i dx_j`` of ``m . d / (4 pi |d|^3)`` (``m . grad_y`` of the charge's)."""
    r2 = np.einsum("pk,pk->p", offsets, offsets)[:, None, None]
    dot = np.einsum("pk,pk->p", offsets, moments)[:, None, None]
    md = np.einsum("pi,pj->pij", moments, offsets)
    return (-3 * (md + md.transpose(0, 2, 1)) / r2 ** 2.5 - 3 * dot * np.eye(3) / r2 ** 2.5
            + 15 * dot * np.einsum("pi,pj->pij", offsets, offsets) / r2 ** 3.5) / (4 * math.pi)


def test_the_direct_sum_s_hessian_is_the_closed_form():
    """One charge and one dipole at a time, at targets on every side: the Laplace Hessian's
    closed forms to rounding."""
    rng = np.random.default_rng(3)
    source = rng.random((1, 3))
    targets = source + rng.standard_normal((40, 3))
    moment = rng.standard_normal(3)
    direct = DirectSum(source, targets)
    charge = direct(np.array([1.5]), hessian=True)
    dipole = direct(dipoles=moment[None], hessian=True)
    offsets = targets - source
    np.testing.assert_allclose(charge.hessian, 1.5 * _laplace_charge_hessian(offsets),
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(dipole.hessian,
                               _laplace_dipole_hessian(offsets, np.tile(moment, (40, 1))),
                               rtol=1e-11, atol=1e-14 * np.abs(dipole.hessian).max())
    assert charge.gradient is None and np.allclose(charge.hessian,
                                                   charge.hessian.transpose(0, 2, 1))


def _numpy_potential(kernel: str, sources, targets, charges, dipoles) -> np.ndarray:
    """The potential of charges and dipoles, summed in numpy from the kernels' formulas (no
    fmmloopy code): ``G = exp(i k r) / (4 pi r)`` (Helmholtz), ``exp(-kappa r) / (4 pi r)``
    (Yukawa), the dipole's ``m . grad_y G = (m . d) (1 - i k r) G / r^2`` (with ``i k`` as
    ``-kappa`` for Yukawa)."""
    name, _, setting = kernel.partition(":")
    value = float(setting.partition("=")[2] or 0)
    ik = {"laplace": 0.0, "yukawa": -value, "helmholtz": 1j * value}[name]
    offsets = targets[:, None, :] - sources[None, :, :]
    r = np.sqrt(np.einsum("tsk,tsk->ts", offsets, offsets))
    green = np.exp(ik * r) / (4 * math.pi * r)
    dipole_factor = np.einsum("tsk,sk->ts", offsets, dipoles) * (1 - ik * r) * green / r ** 2
    return green @ charges + dipole_factor.sum(axis=1)


@pytest.mark.parametrize("kernel", ["laplace", "yukawa:kappa=2", "helmholtz:k=3"])
def test_the_direct_sum_s_hessian_is_the_potential_s_second_differences(kernel):
    """Charges and dipoles, targets 0.5 to 1.5 away from the sources: central second
    differences of the numpy potential with steps h and h/2, Richardson-extrapolated (its
    error O(h^4) for h = 2e-3, and the potential's rounding over h^2: 4e-10 to 9e-10
    measured, 1e-8 asserted)."""
    rng = np.random.default_rng(5)
    sources = rng.random((60, 3))
    directions = rng.standard_normal((8, 3))
    targets = 0.5 + directions / np.linalg.norm(directions, axis=1)[:, None] * (
        1.1 + 0.4 * rng.random((8, 1)))
    complex_values = kernel.startswith("helmholtz")
    charges = rng.uniform(-1, 1, 60) + (1j * rng.uniform(-1, 1, 60) if complex_values else 0)
    dipoles = rng.uniform(-1, 1, (60, 3))
    got = DirectSum(sources, targets, kernel=kernel)(charges, dipoles=dipoles, gradient=True,
                                                     hessian=True)

    def second_differences(h):
        hessian = np.zeros((8, 3, 3), got.hessian.dtype)
        for i in range(3):
            for j in range(3):
                ei, ej = h * np.eye(3)[i], h * np.eye(3)[j]
                values = [_numpy_potential(kernel, sources, targets + si * ei + sj * ej,
                                           charges, dipoles)
                          for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
                hessian[:, i, j] = (values[0] - values[1] - values[2] + values[3]) / (4 * h * h)
        return hessian
    h = 2e-3
    expected = (4 * second_differences(h / 2) - second_differences(h)) / 3
    error = np.linalg.norm(got.hessian - expected) / np.linalg.norm(expected)
    assert error < 1e-8, error
    reference = _numpy_potential(kernel, sources, targets, charges, dipoles)
    np.testing.assert_allclose(got.potential, reference, rtol=1e-12)


#: The FMM's Hessian against the direct sum at order 8: relative L2 errors of 2.4e-8 were
#: measured (3000 points in a cube, every kernel here, charges and dipoles; the gradient's
#: 9.2e-8, the potential's 2.6e-7); 1e-6 leaves a factor of 40 for other draws and devices.
FMM_TOLERANCE = 1e-6


@pytest.mark.parametrize("kernel", ["laplace", "yukawa:kappa=2", "helmholtz:k=3"])
def test_the_fmm_s_hessian_matches_the_direct_sum(kernel):
    rng = np.random.default_rng(11)
    sources = rng.random((2500, 3))
    targets = rng.random((400, 3)) * 1.2 - 0.1
    complex_values = kernel.startswith("helmholtz")
    charges = rng.uniform(-1, 1, 2500) + (1j * rng.uniform(-1, 1, 2500) if complex_values
                                          else 0)
    dipoles = rng.uniform(-1, 1, (2500, 3))
    for where in (None, targets):
        fmm = Fmm(sources, where, kernel=kernel, order=8, n_crit=40)
        direct = DirectSum(sources, where, kernel=kernel)
        got = fmm(charges, dipoles=dipoles, gradient=True, hessian=True)
        exact = direct(charges, dipoles=dipoles, gradient=True, hessian=True)
        assert isinstance(got, HessianFields) and got.hessian.shape == (len(exact.potential),
                                                                         3, 3)
        for name in ("potential", "gradient", "hessian"):
            value, reference = getattr(got, name), getattr(exact, name)
            error = np.linalg.norm(value - reference) / np.linalg.norm(reference)
            assert error < FMM_TOLERANCE, (kernel, name, error)


def test_several_vectors_and_float32_hessians():
    """Charges ``(N, k)`` give Hessians ``(M, 3, 3, k)``, column by column as one vector at a
    time; in float32 the Hessian meets float32's accuracy (an FMM of order 5: 1e-4 measured
    for potentials, gradients and Hessians alike; 1e-3 asserted)."""
    rng = np.random.default_rng(2)
    sources = rng.random((1500, 3))
    charges = rng.uniform(-1, 1, (1500, 2))
    fmm = Fmm(sources, order=6)
    both = fmm(charges, hessian=True)
    assert both.gradient is None and both.hessian.shape == (1500, 3, 3, 2)
    for column in range(2):
        alone = fmm(charges[:, column], hessian=True)
        np.testing.assert_allclose(both.hessian[..., column], alone.hessian, rtol=1e-12,
                                   atol=1e-12 * np.abs(alone.hessian).max())
    single = Fmm(sources, order=5, dtype=np.float32)(charges[:, 0], hessian=True)
    exact = DirectSum(sources)(charges[:, 0], hessian=True)
    assert single.hessian.dtype == np.float32
    error = np.linalg.norm(single.hessian - exact.hessian) / np.linalg.norm(exact.hessian)
    assert error < 1e-3, error


@pytest.mark.parametrize("eps", [1e-3, 1e-6])
def test_eps_for_hessians_meets_eps(eps):
    """``eps_for=(..., "hessian")`` takes the order from the table's Hessian rows: the
    Hessians of charges and dipoles (and the potentials) within ``eps`` of the direct sum,
    on points the table did not measure (a Plummer-like cluster and targets of their own)."""
    rng = np.random.default_rng(8)
    sources = rng.standard_normal((3000, 3)) * rng.random((3000, 1)) ** 2
    targets = rng.uniform(-1.5, 1.5, (300, 3))
    charges, dipoles = rng.uniform(-1, 1, 3000), rng.uniform(-1, 1, (3000, 3))
    for where in (None, targets):
        fmm = Fmm(sources, where, eps=eps, eps_for=("charges", "dipoles", "hessian"))
        direct = DirectSum(sources, where)
        for given in ({"charges": charges}, {"dipoles": dipoles}):
            got, exact = fmm(**given, hessian=True), direct(**given, hessian=True)
            for name in ("potential", "hessian"):
                value, reference = getattr(got, name), getattr(exact, name)
                error = np.linalg.norm(value - reference) / np.linalg.norm(reference)
                assert error < eps, (eps, fmm.order, name, error)


def test_a_periodic_hessian_is_its_gradient_s_derivative():
    """A periodic cell's Hessian (the lattice's far field included) against central
    differences of the periodic FMM's own gradient (checked against the Ewald sum elsewhere):
    the gradient's error over the step and the step's h^2 term: 4e-6 measured at order 10,
    h = 1e-4; 1e-4 asserted. Its trace, the Laplacian, is 0 away from the charges."""
    rng = np.random.default_rng(0)
    points = rng.random((800, 3))
    charges = rng.uniform(-1, 1, 800)
    charges -= charges.mean()
    targets, h = rng.random((20, 3)), 1e-4
    hessian = Fmm(points, targets, periodic=1.0, order=10)(charges, hessian=True).hessian
    differences = np.zeros_like(hessian)
    for axis in range(3):
        step = h * np.eye(3)[axis]
        plus, minus = (Fmm(points, targets + sign * step, periodic=1.0, order=10)(
            charges, gradient=True).gradient for sign in (1, -1))
        differences[:, axis, :] = (plus - minus) / (2 * h)
    assert np.linalg.norm(hessian - differences) / np.linalg.norm(differences) < 1e-4
    assert np.abs(np.trace(hessian, axis1=1, axis2=2)).max() < 1e-9 * np.abs(hessian).max()


def test_hessians_refused_where_they_are_not_defined_or_calibrated():
    points = np.random.default_rng(0).random((200, 3))
    with pytest.raises(ValueError, match="scalar kernel"):
        Fmm(points, kernel="stokes", order=4)(np.ones((200, 3)), hessian=True)
    with pytest.raises(ValueError, match=r"build it with eps_for=\('charges', 'hessian'\)"):
        Fmm(points, eps=1e-4)(np.ones(200), hessian=True)
    with pytest.raises(ValueError, match="no rows of charge hessian .*periodic laplace"):
        Fmm(points, periodic=1.0, eps=1e-4, eps_for=("charges", "hessian"))
    with pytest.raises(ValueError, match="hessian must be True or False"):
        DirectSum(points)(np.ones(200), hessian=1)
    assert fmmloopy.HessianFields is HessianFields
