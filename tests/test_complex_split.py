"""Complex kernels as pairs of doubles (``fmmloopy/tuning/complex_split.py``): the real-part
expressions equal the complex ones, and the ``cpu`` recipe's split kernels agree with
``sequential``."""

import numpy as np
import pymbolic.primitives as prim
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
)

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


@pytest.mark.slow
def test_split_pairwise_kernels_agree_with_sequential(device):
    """Every pairwise operator of Helmholtz, potential and gradient of charges and dipoles,
    under ``cpu`` against ``sequential`` (the check's tolerance, 1e-12 relative)."""
    kernel = helmholtz(3.0).with_fields(("potential", "gradient"), ("charge", "dipole"))
    results = list(run_checks(device, operators=["p2p", "p2m", "l2p", "m2p", "p2l"],
                              recipes=["cpu"], kernel=kernel, production=None))
    assert len(results) >= 5
    assert all(result.ok for result in results), [r.message for r in results if not r.ok]

# }}}
