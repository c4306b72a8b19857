"""Complex kernels as pairs of doubles (``fmmloopy/tuning/complex_split.py``): the real-part
expressions equal the complex ones, the arithmetic ``sin``/``cos`` are accurate, and the
``cpu`` recipe's split kernels agree with ``sequential``."""

import numpy as np
import pymbolic.primitives as prim
import pyopencl as cl
import pyopencl.array as cla
import pytest
from pymbolic import var
from pymbolic.mapper.evaluator import EvaluationMapper

from fmmloopy.checking.check import run_checks
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.maths.green import helmholtz
from fmmloopy.maths.operators import math_kernel
from fmmloopy.tuning.complex_split import (
    ComplexSplitter,
    NotSplittable,
    split_complex_temporaries,
    trig_preamble,
)

# {{{ sin and cos in arithmetic


def _device_sin_cos(context, x, options):
    source = trig_preamble()[1] + """
    __kernel void trig(__global const double *x, __global double *s, __global double *c)
    { int i = get_global_id(0); s[i] = sin(x[i]); c[i] = cos(x[i]); }"""
    program = cl.Program(context, source).build(options=options)
    queue = cl.CommandQueue(context)
    x_dev = cla.to_device(queue, x)
    s, c = cla.empty_like(x_dev), cla.empty_like(x_dev)
    program.trig(queue, x.shape, None, x_dev.data, s.data, c.data)
    return s.get(), c.get()


@pytest.mark.parametrize("options", [[], ["-cl-fast-relaxed-math"]])
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
    sin, cos = _device_sin_cos(cl.Context([device]), x, options)
    bound = 4 * np.spacing(1.0)
    assert np.abs(sin - np.sin(x)).max() <= bound
    assert np.abs(cos - np.cos(x)).max() <= bound
    tiny = np.abs(x) < 1e-8
    assert np.array_equal(sin[tiny], x[tiny]) and np.all(cos[tiny] == 1.0)

# }}}


# {{{ the splitter on expressions

_FUNCTIONS = {"exp": np.exp, "sqrt": np.sqrt, "cos": np.cos, "sin": np.sin}


def _evaluate(expr, values):
    return EvaluationMapper({**_FUNCTIONS, **values})(expr)


def test_split_parts_equal_the_complex_values():
    """Sums, products, quotients by real values, powers, selections and ``exp`` of complex
    arguments (Helmholtz's and a damped wave's): the parts evaluate to the complex value's."""
    d0, z, w = var("d0"), var("z"), var("w")
    r = var("sqrt")(d0 * d0 + 2.0)
    expressions = [
        var("exp")(1j * 3.0 * r) / r * 0.25,
        z * var("exp")((-0.5 + 2j) * r) + w * (1 + 2j),
        prim.If(prim.Comparison(d0, ">", 0), z * w / r, (2 - 1j) * z ** 2),
        (z + w) * (z - 1j * w) * d0 - var("exp")(d0) * z,
    ]
    splitter = ComplexSplitter(frozenset(), {"z": ("z_re", "z_im"), "w": ("w_re", "w_im")})
    for d in (-0.7, 1.3):
        values = {"d0": d, "z": 0.3 - 1.1j, "w": -2.0 + 0.4j}
        parts = {"d0": d, "z_re": 0.3, "z_im": -1.1, "w_re": -2.0, "w_im": 0.4}
        for expression in expressions:
            re, im = splitter.split(expression)
            expected = complex(_evaluate(expression, values))
            got = complex(_evaluate(re, parts)) + 1j * complex(_evaluate(im, parts))
            assert abs(got - expected) <= 1e-14 * max(abs(expected), 1.0), expression


def test_what_the_splitter_cannot_write_is_refused_and_the_kernel_left_alone():
    """A division by a complex value and a complex function other than ``exp`` raise
    NotSplittable; a kernel without complex temporaries (Laplace) comes back as it was."""
    splitter = ComplexSplitter(frozenset(), {"z": ("z_re", "z_im")})
    with pytest.raises(NotSplittable, match="division by a complex"):
        splitter.split(1.0 / var("z"))
    with pytest.raises(NotSplittable, match="log of a complex"):
        splitter.split(var("log")(var("z")))
    laplace = math_kernel("p2p")
    assert split_complex_temporaries(laplace) is laplace

# }}}


# {{{ the recipe's kernels

def test_the_cpu_recipe_computes_helmholtz_in_doubles(device):
    """Potential and gradient of Helmholtz: no ``cdouble_t`` arithmetic left in the source
    loop (no library ``exp``/``sincos``/``fma`` call to stop vectorisation), the shared
    ``exp(1j k r)`` computed once per pair as its two parts."""
    kernel = helmholtz(2.0).with_fields(("potential", "gradient"))
    code = compiled_operator("p2p", device, recipe="cpu", kernel=kernel).device_code()
    loop = code[code.index("for (int isrc = 0"):]
    assert "cdouble_exp(" not in code and "cdouble_fma(" not in loop
    assert "cdouble_mul(" not in loop and "cdouble_add(" not in loop
    assert loop.count("= cos(") == 1 and loop.count("= sin(") == 1


def test_split_pairwise_kernels_agree_with_sequential(device):
    """Every pairwise operator of Helmholtz, potential and gradient of charges and dipoles,
    under ``cpu`` against ``sequential`` (the check's tolerance, 1e-12 relative)."""
    kernel = helmholtz(3.0).with_fields(("potential", "gradient"), ("charge", "dipole"))
    results = list(run_checks(device, operators=["p2p", "p2m", "l2p", "m2p", "p2l"],
                              recipes=["cpu"], kernel=kernel, production=None))
    assert len(results) >= 5
    assert all(result.ok for result in results), [r.message for r in results if not r.ok]

# }}}
