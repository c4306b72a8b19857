"""Gradients at the targets and dipole sources: the symbolic derivatives, the kernels and the FMM.

References are independent of the symbolic differentiation: the Laplace formulas written by hand
(``grad 1/(4 pi r) = -d / (4 pi r^3)``, a dipole's potential ``m . d / (4 pi r^3)``, its
gradient ``(m / r^3 - 3 (m . d) d / r^5) / (4 pi)``) and central finite differences.

Tolerances: the FMM at order 6 reaches ~1e-7 (potential) and ~1e-7 to 1e-6 (gradient) relative
L2 error on these point sets (docs/kernels.md); the bounds held at order 6 are 2e-6 for every
potential and 1e-5 for the Laplace gradient.
"""

from pathlib import Path

import numpy as np
import pymbolic.primitives as prim
import pytest
from pymbolic import var

import fmmloopy
from fmmloopy.base.distributions import plummer, sphere_surface
from fmmloopy.checking.check import run_checks
from fmmloopy.maths.derivatives import differentiate, simplify, to_code_form, to_power_form
from fmmloopy.maths.green import LAPLACE_3D, GreenKernel
from fmmloopy.maths.operators import get_operator
from fmmloopy.maths.reference import direct_sum
from fmmloopy.tuning.recipe import RecipeError
from fmmloopy.tuning.registry import ensure_loaded

FOUR_PI = 4 * np.pi
POTENTIAL_BOUND, GRADIENT_BOUND = 2e-6, 1e-5


def laplace_fields(sources, charges, dipoles, targets):
    """Potential (M,) and gradient (M, 3) of charges and dipoles, by the hand-written formulas
    (coincident points contribute nothing)."""
    d = targets[:, None, :] - sources[None, :, :]
    r2 = np.einsum("tsk,tsk->ts", d, d)
    with np.errstate(divide="ignore"):
        inv_r = np.where(r2 > 0, 1 / np.sqrt(r2), 0.0)
    inv_r3, inv_r5 = inv_r ** 3, inv_r ** 5
    m_dot_d = np.einsum("tsk,sk->ts", d, dipoles)
    potential = (inv_r @ charges + np.einsum("ts,ts->t", m_dot_d, inv_r3)) / FOUR_PI
    gradient = (-np.einsum("ts,tsk,s->tk", inv_r3, d, charges)
                + np.einsum("ts,sk->tk", inv_r3, dipoles)
                - 3 * np.einsum("ts,ts,tsk->tk", m_dot_d, inv_r5, d)) / FOUR_PI
    return potential, gradient


def relative(value, reference):
    return np.linalg.norm(value - reference) / np.linalg.norm(reference)


# {{{ symbolic derivatives

def test_laplace_derivatives_match_the_formulas():
    rng = np.random.default_rng(0)
    offsets = rng.standard_normal((200, 3))
    kernel = LAPLACE_3D.with_fields(("potential", "gradient"), ("charge", "dipole"))
    values = kernel.evaluate(offsets)  # (200, 4, 4)
    r = np.linalg.norm(offsets, axis=1)
    d = offsets
    hessian = (3 * d[:, :, None] * d[:, None, :] / r[:, None, None] ** 5
               - np.eye(3) / r[:, None, None] ** 3) / FOUR_PI
    np.testing.assert_allclose(values[:, 0, 0], 1 / (FOUR_PI * r), rtol=1e-14)
    np.testing.assert_allclose(values[:, 1:, 0], -d / (FOUR_PI * r[:, None] ** 3), rtol=1e-13)
    # A dipole's potential: m . grad_source G = m . d / (4 pi r^3).
    np.testing.assert_allclose(values[:, 0, 1:], d / (FOUR_PI * r[:, None] ** 3), rtol=1e-13)
    # Its gradient at the target: -(Hessian of G) m.
    np.testing.assert_allclose(values[:, 1:, 1:], -hessian, rtol=1e-12, atol=1e-15)
    # The Hessian field (the Stokeslet's Laplace sums take it): xx, xy, xz, yy, yz, zz.
    distinct = LAPLACE_3D.with_fields(("hessian",)).evaluate(offsets)[:, :, 0]
    rows, columns = np.triu_indices(3)
    np.testing.assert_allclose(distinct, hessian[:, rows, columns], rtol=1e-12, atol=1e-15)
    # d == 0 contributes exactly nothing, to every entry.
    assert not kernel.evaluate(np.zeros((1, 3))).any()


def test_derivatives_of_a_kernel_with_exp_and_sin_match_finite_differences():
    d0, d1, d2, kappa = (var(name) for name in ("d0", "d1", "d2", "kappa"))
    r = var("sqrt")(d0 * d0 + d1 * d1 + d2 * d2)
    expression = var("exp")(-0.7 * r) * var("sin")(d1 + 0.3) / r + var("log")(r * r) * d2
    green = GreenKernel("test", prim.If(prim.Comparison(r, ">", 0), expression, 0))
    kernel = green.with_fields(("potential", "gradient"), ("charge", "dipole"))
    rng = np.random.default_rng(1)
    offsets = rng.uniform(0.5, 1.5, (50, 3)) * rng.choice([-1, 1], (50, 3))
    values = kernel.evaluate(offsets)
    step = 1e-5
    for axis in range(3):
        shift = np.zeros(3)
        shift[axis] = step
        central = (green.evaluate(offsets + shift) - green.evaluate(offsets - shift)) / (2 * step)
        # Target derivative: d/d(target) = d/dd; source derivative: -d/dd.
        np.testing.assert_allclose(values[:, 1 + axis, 0], central, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(values[:, 0, 1 + axis], -central, rtol=1e-7, atol=1e-9)


def test_the_code_form_of_the_gradient_takes_one_reciprocal_square_root():
    """-d0 r2**(-3/2)/(4 pi): products of 1/sqrt(r2), no power function and no other division."""
    gradient = LAPLACE_3D.with_fields(("potential", "gradient")).expressions[1][0]
    text = str(gradient)
    assert "**" not in text and "pow" not in text
    assert text.count("/") == text.count("1 / sqrt(d0*d0 + d1*d1 + d2*d2)") == 3
    # Powers of one base collect: d/dd0 (r2**(-1/2)) is one term, not a quotient of roots.
    r2 = var("d0") ** 2 + var("d1") ** 2
    derivative = to_code_form(differentiate(to_power_form(1 / var("sqrt")(r2)), "d0"))
    assert isinstance(derivative, prim.Product) and "sqrt(d0*d0 + d1*d1)" in str(derivative)


def test_what_cannot_be_differentiated_is_named():
    d0 = var("d0")
    with pytest.raises(ValueError, match="cannot differentiate a call of.*erf"):
        differentiate(to_power_form(var("erf")(d0)), "d0")
    with pytest.raises(ValueError, match="exponent depends on 'd0'"):
        differentiate(to_power_form(var("d1") ** d0), "d0")
    assert simplify(to_power_form(d0 * 0 + 2 * 3)) == 6


def test_fields_are_checked():
    with pytest.raises(ValueError, match="outputs must be distinct names among"):
        LAPLACE_3D.with_fields(("laplacian",))
    with pytest.raises(ValueError, match="outputs must be distinct names among"):
        LAPLACE_3D.with_fields(("pressure",))  # a companion of Stokes' only
    with pytest.raises(ValueError, match="inputs must be distinct names among"):
        LAPLACE_3D.with_fields(inputs=())
    kernel = LAPLACE_3D.with_fields(("gradient", "potential"), ("dipole", "charge"))
    assert kernel.outputs == ("potential", "gradient") and kernel.inputs == ("charge", "dipole")
    assert (kernel.n_outputs, kernel.n_inputs) == (4, 4) and kernel.base == LAPLACE_3D

# }}}


# {{{ the FMM

@pytest.fixture(scope="module")
def sphere_case():
    rng = np.random.default_rng(2)
    n = 4000
    points = sphere_surface(n, rng)
    charges, dipoles = rng.random(n), rng.random((n, 3))
    fmm = fmmloopy.Fmm(points, order=6)
    sample = rng.choice(n, 400, replace=False)
    return fmm, points, charges, dipoles, sample


@pytest.mark.parametrize("given", ["charges", "dipoles", "both"])
def test_potential_and_gradient_match_the_formulas(sphere_case, given):
    fmm, points, charges, dipoles, sample = sphere_case
    q = charges if given != "dipoles" else None
    m = dipoles if given != "charges" else None
    result = fmm(q, dipoles=m, gradient=True)
    assert isinstance(result, fmmloopy.Fields)
    assert result.potential.shape == (len(points),) and result.gradient.shape == (len(points), 3)
    potential, gradient = laplace_fields(points, np.zeros(len(points)) if q is None else q,
                                         np.zeros_like(dipoles) if m is None else m,
                                         points[sample])
    assert relative(result.potential[sample], potential) < POTENTIAL_BOUND
    assert relative(result.gradient[sample], gradient) < GRADIENT_BOUND
    # The potential alone is the same sum (in another kernel: rounding differs, relative to
    # the largest value).
    alone = fmm(q, dipoles=m)
    assert np.abs(alone - result.potential).max() <= 1e-13 * np.abs(alone).max()


def test_the_fmm_is_linear_in_charges_and_dipoles(sphere_case):
    fmm, _, charges, dipoles, _ = sphere_case
    both = fmm(charges, dipoles=dipoles, gradient=True)
    apart = [fmm(charges, gradient=True), fmm(dipoles=dipoles, gradient=True)]
    for field in ("potential", "gradient"):
        total = getattr(apart[0], field) + getattr(apart[1], field)
        scale = np.abs(getattr(both, field)).max()
        assert np.abs(getattr(both, field) - total).max() <= 1e-13 * scale


def test_plans_for_other_fields_take_the_far_field_launches_as_they_are(sphere_case):
    """A plan for a gradient or for dipoles makes only its launches at the user's points: the
    far field's (the matvecs: M2L, the check-to-equivalent maps, M2M and L2L where the tree has
    them) are the potential plan's own
    objects, with their lists, matrices and kernels; the results above are made this way."""
    fmm, _, charges, dipoles, _ = sphere_case
    base = {id(launch) for launch in fmm.plan.launches}
    far_field = {launch.step for launch in fmm.plan.launches
                 if get_operator(launch.step).template == "matvec"}
    assert {"m2l", "m2l_compress", "m2l_expand", "c2e"} <= far_field
    for call, own in (({"gradient": True}, {"l2p", "m2p", "p2p"}),
                      ({"dipoles": dipoles}, {"p2m", "p2l", "p2p"})):
        fmm(None if "dipoles" in call else charges, **call)
        plan = fmm.last_plan
        assert plan is not fmm.plan and len(plan.launches) == len(fmm.plan.launches)
        taken = {launch.step for launch in plan.launches if id(launch) in base}
        made = {launch.step for launch in plan.launches if id(launch) not in base}
        assert far_field <= taken and made == own & {launch.step for launch in fmm.plan.launches}


def test_targets_apart_from_sources_and_a_plummer_cluster():
    rng = np.random.default_rng(3)
    sources = plummer(3000, rng)
    targets = rng.uniform(-2, 2, (700, 3))
    charges, dipoles = rng.random(3000), rng.random((3000, 3))
    result = fmmloopy.Fmm(sources, targets, order=6)(charges, dipoles=dipoles, gradient=True)
    potential, gradient = laplace_fields(sources, charges, dipoles, targets)
    assert relative(result.potential, potential) < POTENTIAL_BOUND
    assert relative(result.gradient, gradient) < GRADIENT_BOUND


@pytest.mark.parametrize("scale", [1e-40, 1e40])
def test_rescaled_coordinates_scale_dipoles_and_gradients(scale):
    """Spans outside 2**+-100 are worked on scaled by a power of two: each derivative, of a
    dipole or of the gradient, then takes one more power of it (docs/robustness.md)."""
    rng = np.random.default_rng(4)
    points = rng.random((1500, 3)) * scale
    charges, dipoles = rng.random(1500), rng.random((1500, 3))
    fmm = fmmloopy.Fmm(points, order=6)
    assert fmm.coordinate_exponent != 0
    result = fmm(charges, dipoles=dipoles, gradient=True)
    kernel = LAPLACE_3D.with_fields(("potential", "gradient"), ("charge", "dipole"))
    expected = direct_sum(kernel, points, np.concatenate([charges[None], dipoles.T]), points,
                          scaled=True)
    assert relative(result.potential, expected[0]) < POTENTIAL_BOUND
    assert relative(result.gradient, expected[1:].T) < GRADIENT_BOUND


def test_nested_rows_carry_gradients_and_dipoles():
    """A far outlier beside a cluster: the cluster's rows are summed by nested FMMs, which get
    the dipoles (merged where points coincide) and return gradients too."""
    rng = np.random.default_rng(5)
    points = np.vstack([1e-9 * rng.standard_normal((1000, 3)), [[1.0, 1.0, 1.0]],
                        np.repeat(1e-9 * rng.standard_normal((1, 3)), 3, axis=0)])
    charges, dipoles = rng.random(len(points)), rng.random((len(points), 3))
    with pytest.warns(RuntimeWarning, match="max_depth=20 reached"):
        fmm = fmmloopy.Fmm(points, order=6, n_crit=16)
    assert fmm.nested_rows
    result = fmm(charges, dipoles=dipoles, gradient=True)
    kernel = LAPLACE_3D.with_fields(("potential", "gradient"), ("charge", "dipole"))
    expected = direct_sum(kernel, points, np.concatenate([charges[None], dipoles.T]), points,
                          scaled=True)
    # Dipoles of one cluster cancel like mixed charges: order 6 measured 5.2e-6 (potential)
    # and 4.3e-6 (gradient) here, the same with the outlier and without it (no nested rows).
    assert relative(result.potential, expected[0]) < 2e-5
    assert relative(result.gradient, expected[1:].T) < 2e-5


@pytest.mark.parametrize("call,message", [
    (lambda fmm, n: fmm(dipoles=np.ones((3, n))), r"dipoles must have shape \(\d+, 3\).*dipoles.T"),
    (lambda fmm, n: fmm(dipoles=np.full((n, 3), np.nan)), "dipoles contain NaN or inf"),
    (lambda fmm, n: fmm(), "give charges, dipoles=... or both"),
    (lambda fmm, n: fmm(np.ones(n), gradient="yes"), "gradient must be True or False"),
])
def test_bad_fields_are_refused_clearly(call, message):
    fmm = fmmloopy.Fmm(np.random.default_rng(6).random((50, 3)))
    with pytest.raises(ValueError, match=message):
        call(fmm, 50)


def test_no_points_give_zeros_of_every_field():
    fmm = fmmloopy.Fmm(np.zeros((0, 3)), np.ones((4, 3)))
    result = fmm(np.zeros(0), dipoles=np.zeros((0, 3)), gradient=True)
    assert result.potential.shape == (4,) and result.gradient.shape == (4, 3)
    assert not result.potential.any() and not result.gradient.any()

# }}}


WRONG_RECIPES = Path(__file__).parent / "recipes" / "wrong_recipes.py"


def test_a_recipe_wrong_only_for_gradients_fails_the_check_and_is_refused(device):
    """``first_output_only`` never stores the gradient: the check passes it for the potential
    of charges and must fail it for the kernels with a gradient; an FMM asked for a gradient
    refuses it at first use."""
    results = list(run_checks(device, operators=["l2p", "p2p"], recipes=["first_output_only"],
                              recipe_sources=[str(WRONG_RECIPES)], production=None,
                              fail_fast=True))
    scalar = [r for r in results if not r.fields]
    with_fields = [r for r in results if r.fields]
    assert scalar and all(r.ok for r in scalar)
    assert {r.operator for r in with_fields} == {"l2p", "p2p"}
    assert with_fields and not any(r.ok for r in with_fields)
    assert all("entries of 'result' (component 1) wrong" in r.message for r in with_fields)

    ensure_loaded([str(WRONG_RECIPES)])
    rng = np.random.default_rng(7)
    points = rng.random((3000, 3))
    fmm = fmmloopy.Fmm(points, recipes={"l2p": "first_output_only"})
    fmm(rng.random(3000))  # the potential: verified on the tree, and right
    with pytest.raises(RecipeError, match="first_output_only.*differs from 'sequential'"):
        fmm(rng.random(3000), gradient=True)
