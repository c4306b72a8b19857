"""float32 kernels of the templates against the float64 host reference, within float32's
rounding bound (:func:`fmmloopy.checking.verification.rounding_bounds`).

Every operator's kernel builds in float32 under the device's shipped recipe (constants and
``rsqrt`` in single precision: a float64 constant would promote a float vector, which OpenCL C
refuses) and runs on inputs rounded to float32; the float64 numpy reference runs on the same
rounded numbers. Each entry must lie within ``u ((C + lam sqrt(n + 1)) T + K X)`` of it (the
bound's terms: :mod:`fmmloopy.checking.verification`). The bound is not vacuous: the float32
results are not float64's, a kernel off by a few times the bound fails, and so does a recipe
that drops one source box of each list.
"""

import numpy as np
import pyopencl as cl
import pytest

from fmmloopy.base.devices import context_for
from fmmloopy.base.precision import FLOAT32
from fmmloopy.checking.problems import tree_problem
from fmmloopy.checking.verification import compare, rounding_bounds
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.operators import get_operator

CASES = [
    ("p2p", {}), ("p2m", {"n_surface": 26}), ("l2p", {"n_surface": 26}),
    ("m2p", {"n_surface": 26}), ("p2l", {"n_surface": 26}),
    ("m2l", {"n_target_coeffs": 20, "n_source_coeffs": 20}),
    ("c2e", {"n_target_coeffs": 20, "n_source_coeffs": 26}),
]


@pytest.fixture(scope="module")
def problem():
    return tree_problem("cube", np.random.default_rng(0).random((3000, 3)), n_crit=40)


@pytest.mark.parametrize(("operator", "sizes"), CASES)
def test_float32_kernels_agree_with_float64_within_rounding(device, problem, operator, sizes):
    spec = get_operator(operator)
    inputs = problem.arguments(spec, sizes, precision=FLOAT32)  # points relative to leaves
    queue = cl.CommandQueue(context_for(device))
    single = compiled_operator(operator, device, dtype=np.float32, **sizes)
    comparison = compare(single, None, spec, sizes, inputs, queue, green=LAPLACE_3D,
                         precision=FLOAT32)
    assert comparison.ok, comparison.mismatch
    # float32's rounding is there: some entry uses a measurable part of its bound.
    assert 1e-3 < comparison.max_relative_error <= 1.0, comparison.max_relative_error


@pytest.mark.parametrize("targets_in", ["work_items", "vector_lanes"])
@pytest.mark.parametrize(("operator", "sizes"), CASES[:5])
def test_float32_pairwise_kernels_of_the_cpu_recipe_compute_in_float(device, operator, sizes,
                                                                     targets_in):
    """Both paths of the cpu recipe: no double in a float32 kernel's code (a double ``sqrt`` or
    ``rsqrt`` helper took every pair to double and back, and kept float32's P2P at a quarter of
    float64's pairs per second on AVX2: docs/fmm.md)."""
    kernel = compiled_operator(operator, device, dtype=np.float32, recipe="cpu",
                               settings={"targets_in": targets_in}, **sizes)
    code = kernel.device_code()
    assert "double" not in code, code[:2000]
    assert "float" in code


def test_the_bound_grows_with_the_terms_and_their_count():
    terms, coordinates = np.array([1.0, 1.0, 2.0]), np.zeros(3)
    bound = rounding_bounds(FLOAT32, terms, coordinates, np.array([0, 99, 99]))
    assert bound[0] == pytest.approx(2.0 ** -24 * (16 + 7.5))
    assert bound[1] == pytest.approx(2.0 ** -24 * (16 + 75))
    assert bound[2] == pytest.approx(2 * bound[1])


def test_a_kernel_off_by_more_than_its_bound_fails(device, problem, monkeypatch):
    """The same comparison with the bound divided by 100 fails the float32 P2P kernel: float32's
    error is within a factor 100 of the bound (1/60 of it on this problem, 1/42 before the
    recipes applied the kernel's constant once per target instead of once per pair: one
    rounding fewer per term), so the bound is not loose by orders of magnitude."""
    import fmmloopy.checking.verification as verification

    spec = get_operator("p2p")
    inputs = problem.arguments(spec, {}, precision=FLOAT32)  # points relative to their leaves
    queue = cl.CommandQueue(context_for(device))
    single = compiled_operator("p2p", device, dtype=np.float32)
    for name in ("TERM_ROUNDINGS", "PROBABILISTIC_FACTOR", "COORDINATE_ROUNDINGS"):
        monkeypatch.setattr(verification, name, getattr(verification, name) / 100)
    comparison = compare(single, None, spec, {}, inputs, queue, green=LAPLACE_3D,
                         precision=FLOAT32)
    assert not comparison.ok and "wrong" in comparison.mismatch
