"""``sin``, ``cos`` and ``exp`` in arithmetic (``fmmloopy/tuning/inline_math.py``): accurate
against numpy, with and without the recipes' relaxed math, and the ``cpu`` recipe's kernels that
use them agree with ``sequential``."""

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pytest

from fmmloopy.checking.check import run_checks
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.maths.green import yukawa
from fmmloopy.tuning.inline_math import (
    EXP_RANGE,
    exp_preamble,
    lane_trig_preamble,
    trig_preamble,
)

#: Without options, and with the options the cpu recipes build with on the device (relaxed math
#: on PoCL; none on Intel's CPU runtime, under whose relaxed math the reduction's two parts
#: merge: errors of 4e-8, transforms/cpu.py's math_options).
OPTIONS = ["none", "the recipes'"]


def _options(device, which: str) -> list[str]:
    from fmmloopy.transforms.cpu import math_options
    return [] if which == "none" else list(math_options(device))


def _on_device(device, preamble: str, body: str, x: np.ndarray, outputs: int, options):
    names = [f"y{k}" for k in range(outputs)]
    source = preamble + (
        "\n__kernel void f(__global const double *x, "
        + ", ".join(f"__global double *{name}" for name in names)
        + f") {{ int i = get_global_id(0); {body} }}")
    context = cl.Context([device])
    queue = cl.CommandQueue(context)
    kernel = cl.Kernel(cl.Program(context, source).build(options=_options(device, options)),
                       "f")
    x_dev = cla.to_device(queue, x)
    ys = [cla.empty_like(x_dev) for _ in names]
    kernel(queue, x.shape, None, x_dev.data, *(y.data for y in ys))
    return [y.get() for y in ys]


@pytest.mark.parametrize("options", OPTIONS)
def test_sin_and_cos_are_within_a_few_units_of_the_last_place(device, options):
    """Against numpy's correctly rounded ``sin``/``cos`` on the same doubles: random arguments
    up to 1.6e6 (the range of the exact reduction) and 1e9 (where the reduction relies on the
    compiler's FMA contraction, OpenCL C's default), multiples of pi/4 and points just beside
    multiples of pi/2 (where the reduction cancels), tiny and zero arguments. The error bound,
    4 units of the last place of 1 (8.9e-16, absolute), is the polynomials' (below 1e-16) plus
    the rounding of a handful of operations; the recipe's build option (relaxed math, which
    lets the compiler reassociate) must not loosen it."""
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(-8, 8, 20000), rng.uniform(0, 200, 20000),
                        rng.uniform(-1.6e6, 1.6e6, 20000), rng.uniform(-1e9, 1e9, 20000),
                        np.arange(-400, 400) * np.pi / 4,
                        np.arange(-400, 400) * np.pi / 2 + 1e-9, [0.0, -0.0, 1e-300, 1e-20]])
    sin, cos = _on_device(device, trig_preamble()[1], "y0[i] = sin(x[i]); y1[i] = cos(x[i]);",
                          x, 2, options)
    bound = 4 * np.spacing(1.0)
    assert np.abs(sin - np.sin(x)).max() <= bound
    assert np.abs(cos - np.cos(x)).max() <= bound
    tiny = np.abs(x) < 1e-8
    assert np.array_equal(sin[tiny], x[tiny]) and np.all(cos[tiny] == 1.0)


@pytest.mark.parametrize("width", [4, 8])
@pytest.mark.parametrize("options", OPTIONS)
def test_the_vector_lanes_sin_and_cos_are_within_a_few_units_too(device, options, width):
    """The helpers of explicit vector lanes (``double<width>`` and ``double``, the quadrant
    from a vector conversion instead of ``rint``): the same arguments and bound as the scalar
    helpers', both overloads."""
    rng = np.random.default_rng(8)
    x = np.concatenate([rng.uniform(-8, 8, 20000), rng.uniform(0, 200, 20000),
                        rng.uniform(-1.6e6, 1.6e6, 20000), rng.uniform(-1e9, 1e9, 20000),
                        np.arange(-400, 400) * np.pi / 4,
                        np.arange(-400, 400) * np.pi / 2 + 1e-9, [0.0, -0.0, 1e-300, 1e-20]])
    x = np.concatenate([x, np.zeros(-len(x) % width)])
    vector = (f"int j = i * {width}; if (j < {len(x)}) {{ double{width} v = vload{width}(0, x + j);"
              f" vstore{width}(sin(v), 0, y0 + j); vstore{width}(cos(v), 0, y1 + j); }}"
              " y2[i] = sin(x[i]); y3[i] = cos(x[i]);")
    sin, cos, scalar_sin, scalar_cos = _on_device(device, lane_trig_preamble(width)[1], vector,
                                                  x, 4, options)
    bound = 4 * np.spacing(1.0)
    for values in (sin, scalar_sin):
        assert np.abs(values - np.sin(x)).max() <= bound
    for values in (cos, scalar_cos):
        assert np.abs(values - np.cos(x)).max() <= bound


@pytest.mark.parametrize("options", OPTIONS)
def test_exp_is_within_a_few_units_of_the_last_place_and_clamps(device, options):
    """Against numpy's ``exp`` on its whole normal range, near 0 and where Yukawa's kernel
    lives (``-kappa r``): relative error at most 4 units of the last place (the polynomial's
    5e-17, the reduction's, a few roundings). Outside the range the argument is clamped:
    3.3e-308 (exp(-708)) below, 8.2e307 (exp(709)) above."""
    rng = np.random.default_rng(11)
    low, high = EXP_RANGE
    x = np.concatenate([rng.uniform(low, high, 50000), rng.uniform(-1, 1, 20000),
                        rng.uniform(-50, 0, 20000), [0.0, -0.0, 1e-300, -1e-300, low, high]])
    (y,) = _on_device(device, exp_preamble()[1], "y0[i] = exp(x[i]);", x, 1, options)
    assert np.max(np.abs(y - np.exp(x)) / np.exp(x)) <= 4 * np.spacing(1.0)
    beyond = np.array([low - 1, -1e5, high + 1, 1e5])
    (clamped,) = _on_device(device, exp_preamble()[1], "y0[i] = exp(x[i]);", beyond, 1, options)
    assert np.allclose(clamped, np.exp([low, low, high, high]), rtol=1e-15)


def test_the_cpu_recipe_computes_yukawa_with_the_inline_exp(device):
    """Yukawa's pairwise kernels with a box's targets on work-items (the path of CPUs whose
    vectors hold 4 doubles) call the helper: no library ``exp`` left to stop the
    vectorisation; and on this device's own path they agree with ``sequential``: potential and
    gradient of charges and dipoles, every pairwise operator (the check's tolerance, 1e-12
    relative)."""
    kernel = yukawa(4.0).with_fields(("potential", "gradient"), ("charge", "dipole"))
    code = compiled_operator("l2p", device, recipe="cpu", kernel=kernel, n_surface=56,
                             settings={"targets_in": "work_items"}).device_code()
    assert "#define exp(x) fmmloopy_exp(x)" in code
    results = list(run_checks(device, operators=["p2p", "p2m", "l2p", "m2p", "p2l"],
                              recipes=["cpu"], kernel=kernel, production=None))
    assert len(results) >= 5
    assert all(result.ok for result in results), [r.message for r in results if not r.ok]
