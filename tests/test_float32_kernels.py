"""float32 kernels of the templates, the first step of float32 FMMs (issue 19).

Every operator's kernel builds in float32 under the device's shipped recipe (constants and
``rsqrt`` in single precision: a float64 constant would promote a float vector, which OpenCL C
refuses) and agrees with the float64 kernel run on the same inputs, rounded to float32 first,
within the rounding error of float32: per entry ``(C + lam * sqrt(n)) * u * S``, where ``u =
2**-24``, ``n`` the most terms of any output of the launch, ``S`` the sum of the terms'
magnitudes (the float64 kernel on the inputs' absolute values; the Laplace potential is
positive, so ``|G q| = G |q|``), ``C = 16`` the roundings of one term (offset, squared
distance, reciprocal square root, products), and ``lam = 7.5`` the probabilistic bound's
factor (Higham and Mary, 2019) for a failure probability below 1e-6 over 10^6 outputs.
Surface coordinates are computed in float32 from the box centres, so they add ``u`` relative
to the centres' size divided by the offsets': at most 4 on these small trees of unit size
whose surfaces lie 1.2 half-widths or more from the points, folded into ``C``.
"""

import numpy as np
import pyopencl as cl
import pytest

from fmmloopy.base.devices import context_for
from fmmloopy.checking.problems import tree_problem
from fmmloopy.checking.verification import run_once
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.maths.operators import MATVEC, get_operator

UNIT_ROUNDOFF = 2.0 ** -24
#: Roundings of one term, times the surface coordinates' growth, and the probabilistic factor
#: (module docstring).
TERM_ROUNDINGS, COORDINATE_GROWTH, LAMBDA = 16, 4, 7.5


def _rounded(inputs: dict, dtype) -> dict:
    return {name: value.astype(np.float32).astype(dtype)
            if isinstance(value, np.ndarray) and value.dtype.kind == "f" else value
            for name, value in inputs.items()}


def _absolute(inputs: dict) -> dict:
    return {name: np.abs(value) if name in ("strengths", "result", "matrices",
                                             "source_vectors", "target_vectors",
                                             "level_scales") else value
            for name, value in inputs.items()}


@pytest.mark.parametrize(("operator", "sizes"), [
    ("p2p", {}), ("p2m", {"n_surface": 26}), ("l2p", {"n_surface": 26}),
    ("m2p", {"n_surface": 26}), ("p2l", {"n_surface": 26}),
    ("m2l", {"n_target_coeffs": 20, "n_source_coeffs": 20}),
    ("c2e", {"n_target_coeffs": 20, "n_source_coeffs": 26}),
])
def test_float32_kernels_agree_with_float64_within_rounding(device, operator, sizes):
    rng = np.random.default_rng(0)
    problem = tree_problem("cube", rng.random((3000, 3)), n_crit=40)
    spec = get_operator(operator)
    inputs = problem.arguments(spec, sizes)
    output = "target_vectors" if spec.template == MATVEC else "result"
    queue = cl.CommandQueue(context_for(device))
    single = compiled_operator(operator, device, dtype=np.float32, **sizes)
    double = compiled_operator(operator, device, **sizes)
    got = run_once(single, queue, _rounded(inputs, np.float32))[0][output]
    assert got.dtype == np.float32
    exact = run_once(double, queue, _rounded(inputs, np.float64))[0][output]
    magnitude = run_once(double, queue, _absolute(_rounded(inputs, np.float64)))[0][output]
    starts = np.asarray(inputs["source_box_starts"])
    if spec.template == MATVEC:
        terms = int(np.diff(starts).max()) * sizes["n_source_coeffs"]
    else:
        per_entry = (inputs["box_source_counts"][inputs["source_box_lists"]]
                     if spec.sources == "particles"
                     else np.full(len(inputs["source_box_lists"]), sizes["n_surface"]))
        cumulative = np.concatenate([[0], np.cumsum(per_entry)])
        terms = int((cumulative[starts[1:]] - cumulative[starts[:-1]]).max())
    bound = (TERM_ROUNDINGS * COORDINATE_GROWTH + LAMBDA * np.sqrt(terms + 1)) \
        * UNIT_ROUNDOFF * magnitude
    excess = np.abs(got.astype(np.float64) - exact) / bound
    assert excess.max() <= 1.0, (operator, terms, float(excess.max()))
    # ... and the check is not vacuous: float32 results are not float64's.
    assert np.abs(got.astype(np.float64) - exact).max() > 0
