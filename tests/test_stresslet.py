"""Stresslets: the double layer of Stokes flow, alone and beside forces.

References written here by hand: ``u_i = -3 d_i (d . q)(d . n) / (4 pi r^5)`` and its gradient,
the pressure ``(mu / (2 pi)) (q . n / r^3 - 3 (d . q)(d . n) / r^5)`` (checked to solve the
Stokes equations with that velocity by finite differences), the Stokeslet's velocity and
pressure, summed directly; and the double layer of a constant density on a closed surface,
``q`` inside and 0 outside. Bounds: the FMM at Stokes' default order 9, 1e-6 (its force
dipoles' error, which the stresslets' far field is: docs/kernels.md, "Stokes flow").
"""

import sys
from pathlib import Path

import numpy as np
import pytest

import fmmloopy
from fmmloopy.maths.green import stresslet
from fmmloopy.maths.scheme import KIFMM

MU = 1.4
BOUND = 1e-6


def unit_rows(rng, n):
    rows = rng.standard_normal((n, 3))
    return rows / np.linalg.norm(rows, axis=1)[:, None]


def flow(targets, sources, forces, strengths, normals, mu=MU):
    """Velocity ``(M, 3)``, gradient ``(M, 3, 3)`` (``d u_a / d x_j`` at ``[:, a, j]``) and
    pressure ``(M,)`` of forces and stresslets, summed directly (module docstring)."""
    velocity, gradient, pressure = [], [], []
    eye = np.eye(3)
    for target in targets:
        d = target - sources
        r2 = np.einsum("nk,nk->n", d, d)
        keep = r2 > 0
        d, r2 = d[keep], r2[keep]
        f, q, n = forces[keep], strengths[keep], normals[keep]
        r = np.sqrt(r2)
        a, b, c = (np.einsum("nk,nk->n", d, v) for v in (q, n, f))
        s = -3 / (4 * np.pi)
        u = (f / r[:, None] + d * (c / r ** 3)[:, None]) / (8 * np.pi * mu) \
            + s * d * (a * b / r ** 5)[:, None]
        g_stokes = (-f[:, :, None] * d[:, None, :] / r[:, None, None] ** 3
                    + eye[None] * (c / r ** 3)[:, None, None]
                    + d[:, :, None] * f[:, None, :] / r[:, None, None] ** 3
                    - 3 * d[:, :, None] * d[:, None, :] * (c / r ** 5)[:, None, None]
                    ) / (8 * np.pi * mu)
        g_layer = s * (eye[None] * (a * b / r ** 5)[:, None, None]
                       + d[:, :, None] * (q * (b / r ** 5)[:, None])[:, None, :]
                       + d[:, :, None] * (n * (a / r ** 5)[:, None])[:, None, :]
                       - 5 * d[:, :, None] * d[:, None, :] * (a * b / r ** 7)[:, None, None])
        p = c / (4 * np.pi * r ** 3) + mu / (2 * np.pi) * (
            np.einsum("nk,nk->n", q, n) / r ** 3 - 3 * a * b / r ** 5)
        velocity.append(u.sum(0))
        gradient.append((g_stokes + g_layer).sum(0))
        pressure.append(p.sum())
    return np.array(velocity), np.array(gradient), np.array(pressure)


def relative(value, reference):
    return np.linalg.norm(value - reference) / np.linalg.norm(reference)


def test_the_references_solve_the_stokes_equations():
    """The hand-written stresslet flow is divergence free and ``mu lap u = grad p`` (central
    differences, step 1e-3 at distance ~1: errors up to ~2e-5 of the terms); the kernel's own
    entries (``stresslet(mu)``, matrix and pressure row) equal it."""
    rng = np.random.default_rng(0)
    source, q, n = np.zeros((1, 3)), rng.standard_normal((1, 3)), unit_rows(rng, 1)
    zero = np.zeros((1, 3))
    h = 1e-3
    for x in rng.standard_normal((5, 3)) + 1.0:
        def at(point):
            u, _, p = flow(point[None], source, zero, q, n)
            return u[0], p[0]
        u0, _ = at(x)
        lap, grad_p, div = np.zeros(3), np.zeros(3), 0.0
        for axis in range(3):
            step = h * np.eye(3)[axis]
            (u_plus, p_plus), (u_minus, p_minus) = at(x + step), at(x - step)
            lap += (u_plus - 2 * u0 + u_minus) / h ** 2
            grad_p[axis] = (p_plus - p_minus) / (2 * h)
            div += (u_plus[axis] - u_minus[axis]) / (2 * h)
        scale = np.abs(MU * lap).max() + np.abs(grad_p).max()
        assert np.abs(MU * lap - grad_p).max() < 1e-5 * scale
        assert abs(div) < 1e-4 * np.abs(u0).max() / np.linalg.norm(x)  # a wrong flow: ~1
        kernel = stresslet(MU).with_fields(("potential", "pressure"))
        values = kernel.evaluate(x[None] - source)[0] @ np.outer(q[0], n[0]).ravel()
        u, _, p = flow(x[None], source, zero, q, n)
        np.testing.assert_allclose(values, np.append(u[0], p[0]), rtol=1e-13)


@pytest.mark.parametrize("case", ["cube", "targets apart"])
def test_forces_and_stresslets_every_field_at_the_default_order(case):
    rng = np.random.default_rng(1)
    n = 8000
    sources = rng.uniform(-1, 1, (n, 3))
    forces, strengths, normals = rng.standard_normal((n, 3)), rng.standard_normal((n, 3)), \
        unit_rows(rng, n)
    targets = rng.uniform(-1.5, 1.5, (2000, 3)) if case == "targets apart" else None
    fmm = fmmloopy.Fmm(sources, targets, kernel=f"stokes:mu={MU}", n_crit=48)
    assert fmm.order == 9 and fmm.tree.nlevels > 3
    result = fmm(forces, stresslets=(strengths, normals), gradient=True, pressure=True)
    at = sources if targets is None else targets
    sample = rng.choice(len(at), 200, replace=False)
    velocity, gradient, pressure = flow(at[sample], sources, forces, strengths, normals)
    assert relative(result.velocity[sample], velocity) < BOUND
    assert relative(result.gradient[sample], gradient) < BOUND
    assert relative(result.pressure[sample], pressure) < BOUND
    # Stresslets alone: the forces' columns left out.
    alone = fmm(stresslets=(strengths, normals))
    velocity, _, _ = flow(at[sample], sources, 0 * forces, strengths, normals)
    assert relative(alone[sample], velocity) < BOUND


def test_several_densities_share_the_normals():
    rng = np.random.default_rng(2)
    n = 6000
    sources = rng.uniform(-1, 1, (n, 3))
    strengths, normals = rng.standard_normal((n, 3, 2)), unit_rows(rng, n)
    fmm = fmmloopy.Fmm(sources, kernel="stokes", n_crit=48)
    both = fmm(stresslets=(strengths, normals))
    assert both.shape == (n, 3, 2)
    for column in range(2):
        np.testing.assert_allclose(both[..., column],
                                   fmm(stresslets=(strengths[..., column], normals)),
                                   rtol=0, atol=1e-13 * np.abs(both).max())


def test_the_double_layer_of_a_constant_density_is_its_jump():
    """On a sphere (Gauss-Legendre x trapezoid rule), the double layer of ``q`` is ``q``
    inside and 0 outside, with no pressure (spectrally accurate away from the surface)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
    from stokes_sphere import random_shell, sphere_rule
    rng = np.random.default_rng(3)
    nodes, weights, normals = sphere_rule(64, 1.0)
    density = np.array([0.3, -0.5, 0.8])
    inside, outside = random_shell(rng, 500, 0.0, 0.6), random_shell(rng, 500, 1.6, 4.0)
    fmm = fmmloopy.Fmm(nodes, np.concatenate([inside, outside]), kernel="stokes:mu=3")
    result = fmm(stresslets=(weights[:, None] * density, normals), pressure=True)
    np.testing.assert_allclose(result.velocity[:500], np.broadcast_to(density, (500, 3)),
                               rtol=0, atol=BOUND)
    np.testing.assert_allclose(result.velocity[500:], 0, rtol=0, atol=BOUND)
    np.testing.assert_allclose(result.pressure, 0, rtol=0, atol=BOUND)


def test_the_check_builds_the_stresslet_near_fields():
    names = {kernel.name for kernel in KIFMM.operator_kernels("p2p", fmmloopy.stokes())}
    assert {"stokes", "stresslet", "stokes_stresslet"} <= names
    far = {kernel.name for kernel in KIFMM.operator_kernels("m2l", fmmloopy.stokes())}
    assert far == {"laplace"}


def test_bad_stresslets_are_refused_by_name():
    rng = np.random.default_rng(4)
    points = rng.uniform(0, 1, (300, 3))
    strengths, normals = rng.standard_normal((300, 3)), unit_rows(rng, 300)
    stokes = fmmloopy.Fmm(points, kernel="stokes")
    with pytest.raises(ValueError, match="force dipoles and stresslets"):
        stokes(dipoles=rng.standard_normal((300, 3, 3)), stresslets=(strengths, normals))
    with pytest.raises(ValueError, match="must be a pair"):
        stokes(stresslets=strengths)
    with pytest.raises(ValueError, match=r"orientations must have shape \(300, 3\)"):
        stokes(stresslets=(strengths, normals[:, :, None]))
    with pytest.raises(ValueError, match="stresslet strengths must have shape"):
        stokes(stresslets=(strengths[:10], normals))
    with pytest.raises(ValueError, match="as many strength vectors"):
        stokes(rng.standard_normal((300, 3, 2)), stresslets=(strengths, normals))
    for kernel in ("laplace", "rpy:radius=0.001"):
        with pytest.raises(ValueError, match="stresslets are a Stokes flow's"):
            fmmloopy.Fmm(points, kernel=kernel)(rng.standard_normal(
                (300,) if kernel == "laplace" else (300, 3)), stresslets=(strengths, normals))


def test_eps_holds_stresslets_to_the_force_dipoles_rows():
    """A stresslet's far field is a force dipole's: ``eps`` chosen for forces alone refuses a
    call with stresslets by name; chosen for dipoles, it is met (a set not calibrated on)."""
    rng = np.random.default_rng(5)
    n = 8000
    sources = np.concatenate([rng.uniform(-1, 1, (n // 2, 3)), 0.3 * unit_rows(rng, n // 2)])
    strengths, normals = rng.standard_normal((n, 3)), unit_rows(rng, n)
    with pytest.raises(ValueError, match="dipole potential"):
        fmmloopy.Fmm(sources, kernel="stokes", eps=1e-5)(stresslets=(strengths, normals))
    fmm = fmmloopy.Fmm(sources, kernel="stokes", eps=1e-5, eps_for=("dipoles",), n_crit=48)
    assert fmm.order <= 9  # the dipoles' rows: order 9 is the first whose lattice error (9.3e-7),
    # times the margin, is within 1e-5 (order 8: 4.8e-6)
    sample = rng.choice(n, 200, replace=False)
    velocity, _, _ = flow(sources[sample], sources, 0 * strengths, strengths, normals)
    assert relative(fmm(stresslets=(strengths, normals))[sample], velocity) < 1e-5
