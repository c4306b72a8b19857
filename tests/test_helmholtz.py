"""Helmholtz: complex values through every layer (kernel, precomputation, templates, recipes,
check, driver, ``Fmm``).

References: direct summation of the closed forms written here by hand (``exp(1j k r) / (4 pi
r)`` and its gradient ``(1j k r - 1) exp(1j k r) d / (4 pi r^3)``), independent of the symbolic
machinery. Bounds at order 6 with the root box one wavelength wide: 2e-6 for
potentials of charges, 1e-5 for gradients; dipoles' potentials as for Laplace and Yukawa
(:data:`DIPOLE_POTENTIAL_BOUND`). docs/kernels.md has the measured tables.
"""

from pathlib import Path

import numpy as np
import pytest

import fmmloopy
from fmmloopy.base.distributions import sphere_surface
from fmmloopy.checking.check import run_checks
from fmmloopy.driver.builder import DeclinedRecipeWarning
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.maths.green import (
    LAPLACE_3D,
    check_wave_range,
    get_kernel,
    helmholtz,
    max_root_wavelengths,
    user_kernel,
    wavelength,
    yukawa,
)
from fmmloopy.maths.precompute import compute_operators
from fmmloopy.maths.reference import direct_sum
from fmmloopy.maths.scheme import KIFMM, plan_kernel_requests
from fmmloopy.tuning.recipe import RecipeError
from fmmloopy.tuning.registry import ensure_loaded, select_recipe

POTENTIAL_BOUND, GRADIENT_BOUND, DIPOLE_POTENTIAL_BOUND = 2e-6, 1e-5, 1e-5
WRONG_RECIPES = Path(__file__).parent / "recipes" / "wrong_recipes.py"


def helmholtz_fields(k, sources, charges, targets):
    """Potential and gradient of Helmholtz charges, by the closed forms."""
    d = targets[:, None, :] - sources[None, :, :]
    r = np.sqrt(np.einsum("tsk,tsk->ts", d, d))
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(r > 0, np.exp(1j * k * r) / (4 * np.pi * r), 0.0)
        radial = np.where(r > 0, (1j * k * r - 1) * g / r ** 2, 0.0)
    return g @ charges, np.einsum("ts,tsk,s->tk", radial, d, charges)


def relative(value, reference):
    return np.linalg.norm(value - reference) / np.linalg.norm(reference)


def one_wavelength(points) -> float:
    """The wavenumber for which the root box of ``points`` is one wavelength wide."""
    return 2 * np.pi / fmmloopy.root_box_side(points)


# {{{ the kernel

def test_helmholtz_and_its_gradient_match_the_closed_forms():
    rng = np.random.default_rng(0)
    offsets = rng.standard_normal((100, 3))
    for k in (0.0, 1.0, 7.5):
        values = helmholtz(k).with_fields(("potential", "gradient")).evaluate(offsets)
        potential, gradient = helmholtz_fields(k, np.zeros((1, 3)), np.ones(1), offsets)
        assert values.dtype == np.complex128
        np.testing.assert_allclose(values[:, 0, 0], potential, rtol=1e-13)
        np.testing.assert_allclose(values[:, 1:, 0], gradient, rtol=1e-12, atol=1e-14)


def test_magnitude_sums_are_the_sums_of_the_terms_magnitudes():
    """``direct_sum(..., magnitudes=True)`` is ``sum_i |G_i q_i|`` by the closed forms (the
    conditioning the accuracy benchmark reports), at least the magnitude of the sum, and the
    sum itself for positive Laplace terms."""
    rng = np.random.default_rng(7)
    sources, targets = rng.random((200, 3)), rng.random((30, 3))
    charges = rng.random(200) - 0.5 + 1j * (rng.random(200) - 0.5)
    k = 9.0
    d = targets[:, None, :] - sources[None, :, :]
    r = np.sqrt(np.einsum("tsk,tsk->ts", d, d))
    expected = (np.abs(np.exp(1j * k * r) / (4 * np.pi * r)) * np.abs(charges)).sum(axis=1)
    got = direct_sum(helmholtz(k), sources, charges, targets, magnitudes=True)
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    assert got.dtype == np.float64
    assert (got >= np.abs(direct_sum(helmholtz(k), sources, charges, targets))).all()
    # Several outputs: each component of the gradient sums its own terms' magnitudes.
    laplace_fields = LAPLACE_3D.with_fields(("potential", "gradient"), ("charge",))
    real_charges = charges.real
    gradient_terms = -d / (4 * np.pi * r[..., None] ** 3) * real_charges[None, :, None]
    got = direct_sum(laplace_fields, sources, real_charges[None], targets, magnitudes=True)
    np.testing.assert_allclose(got[1:], np.abs(gradient_terms).sum(axis=1).T, rtol=1e-13)
    positive = np.abs(real_charges)
    np.testing.assert_allclose(
        direct_sum(LAPLACE_3D, sources, positive, targets, magnitudes=True),
        direct_sum(LAPLACE_3D, sources, positive, targets), rtol=1e-14)


def test_helmholtz_is_complex_and_the_others_are_not():
    kernel = get_kernel("helmholtz:k=2")
    assert kernel == helmholtz(2.0) and kernel.spec == "helmholtz:k=2.0"
    assert kernel.is_complex and kernel.value_dtype() == np.complex128
    assert kernel.with_fields(("potential", "gradient"), ("dipole",)).is_complex
    for real in (LAPLACE_3D, yukawa(1.0)):
        assert not real.is_complex and real.value_dtype() == np.float64


@pytest.mark.parametrize("k", [-1.0, float("inf"), float("nan"), True, "2"])
def test_bad_wavenumbers_are_refused(k):
    with pytest.raises(ValueError, match="helmholtz: k must be a finite real number >= 0"):
        helmholtz(k)


def test_operators_are_complex_and_the_pseudo_inverse_inverts():
    """The check-to-equivalent factors invert the (complex, non-Hermitian) kernel matrix: a
    transpose where the conjugate transpose belongs would not."""
    ops = compute_operators(helmholtz(3.0), 4, half_width=0.5, dense_m2l=True)
    assert ops.dtype == np.complex128 and ops.m2l.dtype == np.complex128
    from fmmloopy.maths.precompute import kernel_matrix
    expansion = ops.expansion
    forward = kernel_matrix(helmholtz(3.0), 0.5 * expansion.surface("upward_check"),
                            0.5 * expansion.surface("upward_equivalent"))
    inverse = ops.uc2e_second @ ops.uc2e_first
    np.testing.assert_allclose(inverse @ forward, np.eye(ops.n_e), atol=1e-6)

# }}}


# {{{ the FMM

@pytest.fixture(scope="module")
def sphere():
    rng = np.random.default_rng(11)
    points = sphere_surface(4000, rng)
    k = one_wavelength(points)
    fmm = fmmloopy.Fmm(points, kernel=helmholtz(k), order=6)
    charges = rng.random(len(points)) + 1j * rng.random(len(points))
    dipoles = rng.random((len(points), 3)) + 1j * rng.random((len(points), 3))
    sample = rng.choice(len(points), 300, replace=False)
    return fmm, k, points, charges, dipoles, sample


def test_fmm_potential_and_gradient_of_complex_charges_match_the_closed_forms(sphere):
    fmm, k, points, charges, _, sample = sphere
    result = fmm(charges, gradient=True)
    assert result.potential.dtype == np.complex128 and result.gradient.shape == (4000, 3)
    potential, gradient = helmholtz_fields(k, points, charges, points[sample])
    assert relative(result.potential[sample], potential) <= POTENTIAL_BOUND
    assert relative(result.gradient[sample], gradient) <= GRADIENT_BOUND
    # Linear in complex charges: the imaginary part is not lost anywhere (to round-off: the
    # real and imaginary parts trade places in every sum).
    assert relative(fmm(1j * charges), 1j * result.potential) <= 1e-13


def test_fmm_dipoles_match_the_direct_sum(sphere):
    fmm, k, points, _, dipoles, sample = sphere
    kernel = helmholtz(k).with_fields(("potential", "gradient"), ("dipole",))
    expected = direct_sum(kernel, points, dipoles.T, points[sample])
    result = fmm(dipoles=dipoles, gradient=True)
    assert relative(result.potential[sample], expected[0]) <= DIPOLE_POTENTIAL_BOUND
    assert relative(result.gradient[sample], expected[1:].T) <= GRADIENT_BOUND


def test_the_matvecs_run_real_kernels_on_the_buffers_read_as_reals(sphere):
    """A complex kernel's matvec launches are the real matvecs of the matrices' 2 x 2 blocks
    over the buffers' real views (fmmloopy.maths.complex_blocks); a second evaluation, after
    the pooled buffers were zeroed through their views, gives the same potentials."""
    fmm, _, _, charges, _, _ = sphere
    matvecs = [launch for launch in fmm.plan.launches if "target_vectors" in launch.buffers]
    assert matvecs and all(launch.buffers["target_vectors"].endswith(":real")
                           and "double" in launch.kernel.device_code()
                           and "cdouble" not in launch.kernel.device_code()
                           for launch in matvecs)
    views = {name for launch in matvecs for name in launch.buffers.values()}
    for name in views:
        real, base = fmm.plan.buffers[name], fmm.plan.buffers[name.split(":")[0]]
        assert real.dtype == np.float64 and base.dtype == np.complex128
        assert real.shape == (base.shape[0], 2 * base.shape[1])
        assert real.base_data.int_ptr == base.base_data.int_ptr
    np.testing.assert_array_equal(fmm(charges), fmm(charges))
    # The kernels prepared ahead of the plan (on a thread, during the set-up) are these too.
    requests = plan_kernel_requests(KIFMM, fmm.operators.expansion.n_e, None, fmm.kernel)
    matvec_requests = [(kernel, sizes) for _, kernel, sizes in requests
                       if "n_target_coeffs" in sizes]
    assert matvec_requests and all(not kernel.is_complex and sizes["n_source_coeffs"] % 2 == 0
                                   for kernel, sizes in matvec_requests)


def test_real_charges_are_taken_as_complex(sphere):
    fmm, _, _, charges, _, _ = sphere
    np.testing.assert_array_equal(fmm(charges.real), fmm(charges.real + 0j))


def test_complex_charges_are_refused_by_a_real_kernel():
    points = np.random.default_rng(0).random((50, 3))
    fmm = fmmloopy.Fmm(points)
    with pytest.raises(ValueError, match="charges must be real numbers.*complex kernel"):
        fmm(np.ones(50) + 1j)
    with pytest.raises(ValueError, match="dipoles must be real numbers.*complex kernel"):
        fmm(dipoles=np.ones((50, 3)) * 1j)


def test_a_root_box_beyond_the_orders_range_is_refused():
    """order / 3 wavelengths: 2 at order 6; the message names the order that would do. ``Fmm``
    refuses through ``check_wave_range``, which lets order 7 through (an FMM at order 7 would
    spend half a minute on its operators to show the same)."""
    points = np.random.default_rng(5).random((200, 3))
    side = fmmloopy.root_box_side(points)
    assert max_root_wavelengths(6) == pytest.approx(2)
    assert max_root_wavelengths(16) == pytest.approx(10 / 3)
    k = 2 * np.pi * 2.02 / side
    with pytest.raises(ValueError, match=r"is 2.02 wavelengths wide .*at order 6 .*accurate up "
                                         r"to 2 wavelengths .*raise the order to 7"):
        fmmloopy.Fmm(points, kernel=helmholtz(k), order=6)
    check_wave_range(helmholtz(k), side, order=7)  # within its range: no error
    with pytest.raises(ValueError, match=r"3.5 wavelengths wide .*: lower k or split"):
        fmmloopy.Fmm(points, kernel=helmholtz(2 * np.pi * 3.5 / side), order=10)


def test_complex_charges_with_nan_are_refused(sphere):
    fmm, _, _, charges, _, _ = sphere
    bad = charges.copy()
    bad[7] = complex(1.0, np.nan)
    with pytest.raises(ValueError, match="charges contain NaN or inf.*index 7"):
        fmm(bad)

# }}}


# {{{ recipes and the check

@pytest.mark.slow
def test_the_shipped_recipes_handle_complex_values(device):
    """cpu and gpu (both run here: every recipe produces plain OpenCL) transform complex
    kernels themselves, and agree with 'sequential'."""
    results = list(run_checks(device, operators=["p2p", "l2p", "m2l"], recipes=["cpu", "gpu"],
                              kernel="helmholtz:k=2", production=None))
    assert {result.recipe for result in results} == {"cpu", "gpu"}
    assert all(result.ok and "declines" not in result.message for result in results)


def test_the_entries_share_one_complex_exponential_per_pair(device):
    """The potential and gradient of Helmholtz call ``exp(1j k r)`` seven times in their
    entries; the gpu recipe computes it once per pair (``hoist_shared_calls``; the cpu
    recipe's, split into its parts: ``tests/test_complex_split.py``)."""
    kernel = helmholtz(2.0).with_fields(("potential", "gradient"))
    code = compiled_operator("p2p", device, recipe="gpu", kernel=kernel).device_code()
    assert code.count("cdouble_exp(") == 1
    plain = compiled_operator("p2p", device, recipe="sequential", kernel=kernel).device_code()
    assert plain.count("cdouble_exp(") == 7


def test_a_recipe_that_does_not_declare_complex_values_is_passed_by(device):
    """``wrong_sign`` says nothing of complex values: for Helmholtz the default chain's recipe
    runs in its place and the check says which; for Laplace it runs, and fails."""
    sources = [str(WRONG_RECIPES)]
    declined = list(run_checks(device, operators=["p2p"], recipes=["wrong_sign"],
                               recipe_sources=sources, kernel="helmholtz:k=2", production=None))
    assert declined and all(result.ok for result in declined)
    ran = select_recipe("p2p", "pairwise", device, complex_values=True).name
    assert all(f"'wrong_sign' declines complex values: {ran!r} ran" in result.message
               for result in declined)
    real = list(run_checks(device, operators=["p2p"], recipes=["wrong_sign"],
                           recipe_sources=sources, production=None, fail_fast=True))
    assert real and not any(result.ok for result in real)
    ensure_loaded(sources)
    points = np.random.default_rng(4).random((2000, 3))
    with pytest.warns(DeclinedRecipeWarning, match="'wrong_sign' declines the complex values"):
        fmm = fmmloopy.Fmm(points, kernel="helmholtz:k=2", recipes={"p2p": "wrong_sign"})
    assert {launch.kernel.recipe.name for launch in fmm.plan.launches
            if launch.step == "p2p"} == {ran}


def test_a_recipe_that_drops_the_imaginary_part_fails_the_check_and_is_refused(device):
    """``drops_imaginary_part`` claims complex values and reads only the real part of the
    strengths: right for Laplace, wrong for Helmholtz; the check must fail it and an FMM
    must refuse it at first use."""
    sources = [str(WRONG_RECIPES)]
    for kernel, ok in (("laplace", True), ("helmholtz:k=2", False)):
        results = list(run_checks(device, operators=["p2p"], recipes=["drops_imaginary_part"],
                                  recipe_sources=sources, production=None, kernel=kernel,
                                  fail_fast=True))
        assert results and all(result.ok == ok for result in results), kernel
    ensure_loaded(sources)
    points = np.random.default_rng(3).random((3000, 3))
    with pytest.raises(RecipeError, match="drops_imaginary_part.*differs from 'sequential'"):
        fmmloopy.Fmm(points, kernel="helmholtz:k=2", recipes={"p2p": "drops_imaginary_part"})

# }}}



def test_a_helmholtz_users_write_matches_the_built_in_one():
    """Text with an imaginary literal makes a complex kernel; through Fmm it equals the built-in
    Helmholtz (the same expression, so to round-off: 1e-9 leaves room for summation order)."""
    rng = np.random.default_rng(12)
    points = sphere_surface(3000, rng)
    k = one_wavelength(points)
    mine = user_kernel("exp(1j*k*r)/(4*pi*r)", name="mine", parameters={"k": k},
                       wavenumber="k")
    assert mine.is_complex
    charges = rng.random(len(points)) + 1j * rng.random(len(points))
    built_in = fmmloopy.Fmm(points, kernel=helmholtz(k), order=4)(charges)
    assert relative(fmmloopy.Fmm(points, kernel=mine, order=4)(charges), built_in) <= 1e-9


def test_a_users_oscillating_kernel_names_its_wavenumber():
    """The range applies to any kernel that names its wavenumber, not only to Helmholtz."""
    mine = user_kernel("exp(1j*k*r)/(4*pi*r)", name="mine", parameters={"k": 60.0},
                       wavenumber="k")
    assert mine.is_complex and wavelength(mine) == pytest.approx(2 * np.pi / 60)
    points = np.random.default_rng(6).random((100, 3))
    with pytest.raises(ValueError, match="kernel mine:k=60.0: the points' root box"):
        fmmloopy.Fmm(points, kernel=mine)
    with pytest.raises(ValueError, match="the wavenumber 'q' is not one of its parameters"):
        user_kernel("exp(-k*r)/r", parameters={"k": 1.0}, wavenumber="q")
    assert wavelength(yukawa(1.0)) is None
