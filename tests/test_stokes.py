"""Stokes flow: the Stokeslet as a tensor kernel (3 force components to 3 velocity components),
its velocity gradient and force dipoles, and the FMM's velocities.

References: the closed forms written here by hand, independent of the symbolic machinery:
the Stokeslet ``(I / r + d d^T / r^3) / (8 pi mu)``, its gradient
``d_j G_ab = (-delta_ab d_j + delta_aj d_b + delta_bj d_a - 3 d_a d_b d_j / r^2) / (8 pi mu r^3)``,
summed directly. Bounds: the KIFMM's Stokes error at order 6 measured 1.9e-5 to 2.6e-5 for
velocities and 3e-5 to 4e-5 for gradients and force dipoles on uniform points
(docs/kernels.md, "Stokes"): held at 1e-4 and 2e-4; at order 9, 1e-6.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fmmloopy
from fmmloopy.base.distributions import plummer, sphere_surface
from fmmloopy.checking.check import run_checks
from fmmloopy.maths.green import GreenKernel, get_kernel, stokes
from fmmloopy.tuning.recipe import RecipeError
from fmmloopy.tuning.registry import ensure_loaded


def stokeslet(offsets, mu=1.0):
    """``(..., 3, 3)``: the Stokeslet at ``offsets`` ``(..., 3)``, 0 at 0."""
    r2 = np.einsum("...k,...k->...", offsets, offsets)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.sqrt(r2)
        values = (np.eye(3) / r[..., None, None]
                  + offsets[..., :, None] * offsets[..., None, :] / (r2 * r)[..., None, None])
    return np.where(r2[..., None, None] > 0, values, 0.0) / (8 * np.pi * mu)


def stokeslet_gradient(offsets, mu=1.0):
    """``(..., 3, 3, 3)``: ``[..., a, b, j] = d G_ab / d d_j``, 0 at 0."""
    r2 = np.einsum("...k,...k->...", offsets, offsets)
    eye = np.eye(3)
    d = offsets
    with np.errstate(divide="ignore", invalid="ignore"):
        r3 = r2 * np.sqrt(r2)
        values = (-eye[:, :, None] * d[..., None, None, :]
                  + eye[:, None, :] * d[..., None, :, None]
                  + eye[None, :, :] * d[..., :, None, None]
                  - 3 * d[..., :, None, None] * d[..., None, :, None] * d[..., None, None, :]
                  / r2[..., None, None, None]) / r3[..., None, None, None]
    return np.where(r2[..., None, None, None] > 0, values, 0.0) / (8 * np.pi * mu)


def velocities(sources, forces, targets, mu=1.0):
    return np.einsum("tsab,sb->ta", stokeslet(targets[:, None] - sources[None], mu), forces)


def relative(value, reference):
    return np.linalg.norm(value - reference) / np.linalg.norm(reference)


# {{{ the kernel as data

def test_stokeslet_matches_its_closed_form():
    rng = np.random.default_rng(0)
    offsets = rng.standard_normal((200, 3)) * np.logspace(-2, 2, 200)[:, None]
    for mu in (1.0, 2.5):
        kernel = stokes(mu)
        assert kernel.base_shape == (3, 3) and kernel.density_components == 3
        np.testing.assert_allclose(kernel.evaluate(offsets), stokeslet(offsets, mu),
                                   rtol=1e-13)
    assert np.all(stokes().evaluate(np.zeros((1, 3))) == 0)
    assert get_kernel("stokes:mu=2") == stokes(2.0)


def test_velocity_gradient_and_force_dipoles_are_the_derivatives():
    """The gradient output is d u_a / d x_j at 3 a + j; a force dipole of component b along
    axis l (input 3 b + l) applies the derivative in the source point, -d G_ab / d d_l."""
    rng = np.random.default_rng(1)
    offsets = rng.standard_normal((100, 3))
    kernel = stokes().with_fields(("potential", "gradient"), ("charge", "dipole"))
    assert (kernel.n_outputs, kernel.n_inputs) == (12, 12)
    values = kernel.evaluate(offsets)
    exact = stokeslet_gradient(offsets)  # [n, a, b, j]
    np.testing.assert_allclose(values[:, :3, :3], stokeslet(offsets), rtol=1e-13)
    np.testing.assert_allclose(values[:, 3:, :3].reshape(100, 3, 3, 3),
                               exact.transpose(0, 1, 3, 2), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(values[:, :3, 3:].reshape(100, 3, 3, 3), -exact,
                               rtol=1e-12, atol=1e-15)


def test_bad_tensor_kernels_are_refused():
    with pytest.raises(ValueError, match="mu"):
        stokes(0.0)
    with pytest.raises(ValueError, match="rows of equal length"):
        GreenKernel(name="ragged", expression=((1,), (1, 2)))
    with pytest.raises(ValueError, match=r"stokes\[0, 0\].*d == 0"):
        GreenKernel(name="stokes", expression=tuple(
            tuple(stokes().expression[a][b].then for b in range(3)) for a in range(3)),
                    parameters={"mu": 1.0})

# }}}


# {{{ the FMM against direct sums

POINT_SETS = {
    "cube": lambda rng, n: rng.uniform(-1, 1, (n, 3)),
    "sphere": lambda rng, n: sphere_surface(n, rng),
    "plummer": lambda rng, n: plummer(n, rng),
}
#: The acceptance bound at the default order (9) for every field; measured 4e-8 to 3e-7 on
#: 3e4 points of these sets (docs/kernels.md, "Stokes").
DEFAULT_ORDER_BOUND = 1e-6
FLOW = stokes().with_fields(("potential", "gradient", "pressure"), ("charge",))


def flow_errors(flow, sources, forces, targets, sample, mu=1.0):
    """Relative L2 errors of a :class:`fmmloopy.Flow` on the ``sample`` of targets: velocity
    and gradient against the closed forms, pressure ``d . f / (4 pi r^3)`` summed here."""
    velocity, gradient, pressure = [], [], []
    for chunk in np.array_split(sample, max(1, len(sample) // 25)):  # arrays of < 0.2 GB
        offsets = targets[chunk][:, None] - sources[None]
        velocity.append(np.einsum("tsab,sb->ta", stokeslet(offsets, mu), forces))
        gradient.append(np.einsum("tsabj,sb->taj", stokeslet_gradient(offsets, mu), forces))
        r2 = np.einsum("tsk,tsk->ts", offsets, offsets)
        with np.errstate(divide="ignore", invalid="ignore"):
            weight = np.where(r2 > 0, 1 / (4 * np.pi * r2 ** 1.5), 0.0)
        pressure.append(np.einsum("ts,tsk,sk->t", weight, offsets, forces))
    velocity, gradient, pressure = map(np.concatenate, (velocity, gradient, pressure))
    return (relative(flow.velocity[sample], velocity),
            relative(flow.gradient[sample], gradient),
            relative(flow.pressure[sample], pressure))


@pytest.mark.parametrize("name", sorted(POINT_SETS))
def test_every_field_matches_the_direct_sum_at_the_default_order(name):
    rng = np.random.default_rng(2)
    sources = POINT_SETS[name](rng, 8000)
    forces = rng.standard_normal((8000, 3))
    fmm = fmmloopy.Fmm(sources, kernel="stokes", n_crit=48)
    assert fmm.order == 9 and fmm.tree.nlevels > 3  # the far field is exercised
    flow = fmm(forces, gradient=True, pressure=True)
    assert flow.velocity.shape == (8000, 3) and flow.gradient.shape == (8000, 3, 3)
    assert flow.pressure.shape == (8000,)
    sample = rng.choice(8000, 300, replace=False)
    assert max(flow_errors(flow, sources, forces, sources, sample)) < DEFAULT_ORDER_BOUND
    # The velocity alone (kernels of fewer fields, the same sums to rounding).
    np.testing.assert_allclose(fmm(forces), flow.velocity, rtol=0,
                               atol=1e-12 * np.abs(flow.velocity).max())


def test_separate_targets_force_dipoles_and_viscosity():
    rng = np.random.default_rng(3)
    sources = rng.uniform(-1, 1, (5000, 3))
    targets = rng.uniform(-0.5, 1.5, (1500, 3))
    forces, dipoles = rng.standard_normal((5000, 3)), rng.standard_normal((5000, 3, 3))
    mu = 0.5
    fmm = fmmloopy.Fmm(sources, targets, kernel=f"stokes:mu={mu}", n_crit=48)
    sample = rng.choice(1500, 300, replace=False)  # the references' arrays stay < 0.5 GB
    flow = fmm(forces, gradient=True, pressure=True)
    assert max(flow_errors(flow, sources, forces, targets, sample, mu)) < DEFAULT_ORDER_BOUND
    # A force dipole D (component b along axis l) at y: -sum D_bl d G_ab / d d_l.
    from_dipoles = np.concatenate([-np.einsum(
        "tsabl,sbl->ta", stokeslet_gradient(targets[chunk][:, None] - sources[None], mu),
        dipoles) for chunk in np.array_split(sample, 12)])
    assert relative(fmm(dipoles=dipoles)[sample], from_dipoles) < DEFAULT_ORDER_BOUND
    both = fmm(forces, dipoles=dipoles, gradient=True, pressure=True)
    np.testing.assert_allclose(both.velocity, flow.velocity + fmm(dipoles=dipoles),
                               atol=1e-12 * np.abs(both.velocity).max())


def test_the_laplace_sums_of_every_field_are_exact():
    """The split's transforms alone (no FMM): Laplace sums of its charges and dipoles, taken
    to Stokes fields, equal the Stokes kernel's sums to rounding, at a centre away from the
    points."""
    from fmmloopy.maths.harmonic import harmonic_split
    from fmmloopy.maths.reference import direct_sum
    rng = np.random.default_rng(9)
    sources, targets = rng.uniform(-1, 1, (40, 3)), rng.uniform(1.5, 2.5, (9, 3))
    centre = np.array([0.3, -0.2, 0.1])
    kernel = stokes(0.7).with_fields(("potential", "gradient", "pressure"),
                                     ("charge", "dipole")).with_vectors(2)
    split = harmonic_split(kernel)
    strengths = rng.standard_normal((kernel.n_inputs, 40))
    laplace = direct_sum(split.far_kernel(kernel), sources,
                         split.charges(kernel, strengths, sources.T, centre), targets)
    expected = direct_sum(kernel, sources, strengths, targets)
    np.testing.assert_allclose(split.fields(kernel, laplace, targets.T - centre[:, None]),
                               expected,
                               rtol=0, atol=1e-13 * np.abs(expected).max())


def test_a_tensor_kernel_of_the_users_own_sums_its_far_field_with_densities():
    """The Stokeslet under another name is not the built-in kernel: its far field runs the
    KIFMM with three densities per surface point. Bound: 1e-4, its error at order 6 measured
    1.9e-5 to 2.6e-5 on uniform points (docs/kernels.md)."""
    own = GreenKernel(name="stokeslet", expression=stokes().expression, homogeneity=-1.0,
                      parameters={"mu": 1.0})
    rng = np.random.default_rng(10)
    sources = rng.uniform(-1, 1, (4000, 3))
    forces = rng.standard_normal((4000, 3))
    fmm = fmmloopy.Fmm(sources, kernel=own, order=6, n_crit=32)
    assert fmm.operators.sets[0].components == 3
    sample = rng.choice(4000, 300, replace=False)
    assert relative(fmm(forces)[sample], velocities(sources, forces, sources[sample])) < 1e-4


def test_several_force_vectors_at_once_equal_one_at_a_time():
    rng = np.random.default_rng(4)
    sources = rng.uniform(-1, 1, (3000, 3))
    forces = rng.standard_normal((3000, 3, 2))
    fmm = fmmloopy.Fmm(sources, kernel="stokes", n_crit=32)
    both = fmm(forces)
    assert both.shape == (3000, 3, 2)
    for column in range(2):
        np.testing.assert_allclose(both[..., column], fmm(forces[..., column]),
                                   rtol=1e-12, atol=1e-12 * np.abs(both).max())


def test_mobility_matrix_as_a_linear_operator():
    pytest.importorskip("scipy", reason="linear_operator needs SciPy (the [scipy] extra)")
    rng = np.random.default_rng(5)
    sources = rng.uniform(-1, 1, (500, 3))
    forces = rng.standard_normal((500, 3))
    fmm = fmmloopy.Fmm(sources, kernel="stokes", n_crit=16)
    operator = fmmloopy.linear_operator(fmm)
    assert operator.shape == (1500, 1500)
    np.testing.assert_array_equal(operator @ forces.ravel(), fmm(forces).ravel())


def test_forces_of_the_wrong_shape_are_refused_by_name():
    rng = np.random.default_rng(6)
    sources = rng.uniform(-1, 1, (200, 3))
    fmm = fmmloopy.Fmm(sources, kernel="stokes")
    with pytest.raises(ValueError, match=r"shape \(200, 3\).*got \(200,\)"):
        fmm(np.ones(200))
    with pytest.raises(ValueError, match="pass the transpose"):
        fmm(np.ones((3, 200)))
    with pytest.raises(ValueError, match=r"dipoles must have shape \(200, 3, 3\)"):
        fmm(dipoles=np.ones((200, 3)))
    bad = np.ones((200, 3))
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="not finite|nan"):
        fmm(bad)
    with pytest.raises(ValueError, match="'laplace' has no pressure"):
        fmmloopy.Fmm(sources)(np.ones(200), pressure=True)

# }}}


def test_what_stokes_does_not_have_yet_is_refused_by_name():
    """Periodic cells are built for Laplace and the Stokeslet (not the RPY tensor), the
    distributed FMM for scalar kernels and Stokes (not the RPY tensor): each says so at once
    instead of failing inside a pass; a user's tensor kernel has no eps calibration."""
    rng = np.random.default_rng(7)
    points = rng.uniform(0, 1, (300, 3))
    with pytest.raises(ValueError, match="periodic boundaries are for the Laplace and Stokes"):
        fmmloopy.Fmm(points, kernel="rpy:radius=0.01", periodic=1.0)
    with pytest.raises(ValueError, match="exchange is not built"):
        fmmloopy.DistributedFmm(points, kernel="rpy:radius=0.01")
    own = GreenKernel(name="stokeslet", expression=stokes().expression, homogeneity=-1.0,
                      parameters={"mu": 1.0})
    with pytest.raises(ValueError, match="no accuracy calibration"):
        fmmloopy.Fmm(points, kernel=own, eps=1e-6)


@pytest.mark.parametrize("eps", [1e-4, 1e-5])
def test_eps_chooses_an_order_that_meets_it_on_points_not_calibrated_on(eps):
    """``eps`` from Stokes' calibration rows (velocities and their gradients of forces and
    force dipoles on four point sets of 10^4 points): met on a set of its own (sources in a
    ball, targets on a shell around them), velocities and gradients; the pressure, held to the
    velocity's row, too."""
    rng = np.random.default_rng(12)
    directions = rng.standard_normal((6000, 3))
    sources = directions / np.linalg.norm(directions, axis=1, keepdims=True) \
        * rng.random((6000, 1)) ** (1 / 3)
    shell = rng.standard_normal((2000, 3))
    targets = 1.3 * shell / np.linalg.norm(shell, axis=1, keepdims=True)
    forces = rng.standard_normal((6000, 3))
    fmm = fmmloopy.Fmm(sources, targets, kernel="stokes:mu=2", eps=eps,
                       eps_for=("charges", "gradient"))
    flow = fmm(forces, gradient=True, pressure=True)
    sample = rng.choice(2000, 300, replace=False)
    errors = flow_errors(flow, sources, forces, targets, sample, mu=2.0)
    assert max(errors) <= eps, (fmm.order, errors)
    with pytest.raises(ValueError, match="dipole"):
        fmm(dipoles=rng.standard_normal((6000, 3, 3)))  # not what its order was chosen for


WRONG_RECIPES = Path(__file__).parent / "recipes" / "wrong_recipes.py"


def test_wrong_recipes_on_the_tensor_kernel_fail_the_check_and_are_refused(device):
    """The check's battery on Stokes (its near field the Stokeslet, its far field Laplace
    sums): a transform that changes the math fails every pairwise operator; ``first_output_only``
    (right for the potential of charges, a scalar) stores one velocity component of three at
    the near field and one Laplace field of sixteen at the far field's L2P, and fails both; an
    FMM of Stokes refuses it at first use."""
    wrong_sign = list(run_checks(device, operators=["p2m", "l2p", "p2p"], recipes=["wrong_sign"],
                                 recipe_sources=[str(WRONG_RECIPES)], production=None,
                                 kernel="stokes", fail_fast=True))
    assert wrong_sign and not any(r.ok for r in wrong_sign)
    assert {r.operator for r in wrong_sign} == {"p2m", "l2p", "p2p"}
    first_only = list(run_checks(device, operators=["l2p", "p2p"], recipes=["first_output_only"],
                                 recipe_sources=[str(WRONG_RECIPES)], production=None,
                                 kernel="stokes", fail_fast=True))
    near = [r for r in first_only if r.operator == "p2p"]
    far_fields = [r for r in first_only if r.operator == "l2p" and r.fields]
    assert near and far_fields and not any(r.ok for r in near + far_fields)

    ensure_loaded([str(WRONG_RECIPES)])
    rng = np.random.default_rng(8)
    points = rng.uniform(-1, 1, (3000, 3))
    with pytest.raises(RecipeError, match="first_output_only.*differs from 'sequential'"):
        fmmloopy.Fmm(points, kernel="stokes", recipes={"p2p": "first_output_only"})


def test_the_check_passes_the_densities_kernels_of_a_tensor_kernel(device):
    """``fmmloopy check`` on a tensor kernel summed with densities (what a user's tensor
    kernel runs): every operator under every shipped recipe, the small problems."""
    own = GreenKernel(name="stokeslet", expression=stokes().expression, homogeneity=-1.0,
                      parameters={"mu": 1.0})
    results = list(run_checks(device, operators=["p2m", "c2e", "m2l", "l2p", "m2p"],
                              production=None, kernel=own))
    assert results and all(r.ok for r in results), [r.line() for r in results if not r.ok]


def test_the_stokes_sphere_example_meets_stokes_drag():
    """``examples/stokes_sphere.py`` as a user runs it: the single layer of a translating
    sphere's traction moves the fluid inside rigidly and outside as Stokes' solution, and the
    stress on a control sphere (the FMM's pressure and velocity gradient) gives Stokes' drag
    ``6 pi mu a U``, each within 1e-6 (measured 3e-9 to 3e-8 at the default order)."""
    example = Path(__file__).parents[1] / "examples" / "stokes_sphere.py"
    done = subprocess.run([sys.executable, str(example), "--json"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["tree_levels"] > 2
    for key in ("velocity_inside_error", "velocity_outside_error", "pressure_outside_error",
                "drag_error"):
        assert report[key] < 1e-6, (key, report[key])


def test_error_estimate_float32_and_update_of_a_stokes_fmm():
    """What the scalar kernels have, for Stokes: ``estimate_error`` of velocities and their
    gradient (its interval covers the error measured here), float32 kernels (about four
    digits: the float32 bound of docs/fmm.md), ``update``."""
    rng = np.random.default_rng(11)
    points = rng.uniform(-1, 1, (3000, 3))
    forces = rng.standard_normal((3000, 3))
    fmm = fmmloopy.Fmm(points, kernel="stokes", n_crit=32)
    estimate = fmm.estimate_error(forces, gradient=True, samples=300)
    assert set(estimate) == {"potential", "gradient"}
    assert 0 < estimate["potential"].relative_l2 < DEFAULT_ORDER_BOUND
    assert estimate["potential"].low <= estimate["potential"].relative_l2 \
        <= estimate["potential"].high
    sample = rng.choice(3000, 300, replace=False)
    single = fmmloopy.Fmm(points, kernel="stokes", n_crit=32, dtype=np.float32)(forces)
    assert single.dtype == np.float32
    assert relative(single[sample], velocities(points, forces, points[sample])) < 5e-4
    fmm.update(1.01 * points)
    moved = velocities(1.01 * points, forces, 1.01 * points[sample])
    assert relative(fmm(forces)[sample], moved) < DEFAULT_ORDER_BOUND


def test_isotropic_parts_are_checked_and_count_fewer_flops():
    """The Stokeslet's ``A I + B d d^T`` form (what the near field applies to forces) is
    checked against its matrix; a wrong pair of parts is refused; the pair's flops fall from
    the matrix's to the factored form's."""
    kernel = stokes()
    assert kernel.isotropic_parts is not None
    assert kernel.with_fields(("potential", "gradient")).isotropic_parts is None
    matrix_form = GreenKernel(name="stokeslet", expression=kernel.expression,
                              homogeneity=-1.0, parameters={"mu": 1.0})
    assert kernel.flops_per_pair() < 0.6 * matrix_form.flops_per_pair()
    a, b = kernel.isotropic
    with pytest.raises(ValueError, match="not A I \\+ B d d\\^T"):
        GreenKernel(name="wrong", expression=kernel.expression, homogeneity=-1.0,
                    parameters={"mu": 1.0}, isotropic=(b, a))


def test_the_default_order_is_the_kernels_for_fmm_and_check():
    """``Fmm`` and ``fmmloopy check`` (its production sizes) take Stokes' own default order:
    the check then runs the surfaces a default Stokes FMM builds."""
    from fmmloopy.api.options import DEFAULT_STOKES_ORDER, default_order
    from fmmloopy.cli.main import _parser

    assert default_order("stokes:mu=2") == default_order("rpy:radius=0.1") == DEFAULT_STOKES_ORDER
    assert default_order("laplace") is None and default_order("yukawa:kappa=1") is None
    assert _parser().parse_args(["check", "--kernel", "stokes"]).order is None
