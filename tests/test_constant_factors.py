"""fmmloopy.tuning.constant_factors: a pairwise kernel's constant taken out of its sums over
sources (what the kernels compute with it: tests/test_check.py, every operator of the cpu
recipes against the sequential kernel)."""

import re

import numpy as np
import pymbolic.primitives as prim
import pytest

from fmmloopy.maths.green import get_kernel
from fmmloopy.maths.operators import math_kernel
from fmmloopy.tuning.constant_factors import divided, factor_constants_out_of_sums, leading_constant

FOUR_PI = 1 / (4 * np.pi)


def _parts(knl, role):
    return {insn.id: insn.expression for insn in knl.default_entrypoint.instructions
            if insn.id.split("_")[0] == role}


def _numbers(expr) -> set[float]:
    """The magnitudes of the non-integer numbers written in ``expr``."""
    return {abs(float(text)) for text in re.findall(r"\d+\.\d*(?:e[-+]?\d+)?", str(expr))}


def test_the_constant_leaves_every_sum_of_the_laplace_gradient_of_dipoles():
    green = get_kernel("laplace").with_fields(("potential", "gradient"), ("charge", "dipole"))
    knl = factor_constants_out_of_sums(math_kernel("p2p", kernel=green))
    stores = _parts(knl, "store")
    assert str(stores["store"]).endswith(f"{FOUR_PI!r}*acc")
    for component in (1, 2, 3):  # the gradient's sign goes with the constant
        assert str(stores[f"store_{component}"]).endswith(f"(-{FOUR_PI!r})*acc_{component}")
    for update in _parts(knl, "update").values():
        numbers = _numbers(update)
        assert numbers <= {0.0, 1.0, 3.0}, numbers  # 1/(4 pi) and 3/(4 pi) gone, 3 = their ratio


def test_a_term_without_a_number_leaves_its_accumulator_alone():
    x, y = prim.Variable("x"), prim.Variable("y")
    assert leading_constant(prim.Product((x, y))) is None
    assert divided(prim.Product((x, y)), 2.0) is None
    # +-1 are signs: a product keeps them and takes the division in another number
    assert leading_constant(prim.Product((-1, 0.5, x))) == 0.5
    assert divided(prim.Product((-1, 0.5, x)), 0.5) == prim.Product((-1, x))
    # a sum takes it in every term or not at all; a conditional in both values
    assert divided(prim.Sum((prim.Product((4.0, x)), y)), 2.0) is None
    assert divided(prim.If(prim.Comparison(x, ">", 0), prim.Product((4.0, y)), 0), 2.0) \
        == prim.If(prim.Comparison(x, ">", 0), prim.Product((2.0, y)), 0)


@pytest.mark.parametrize("operator", ["p2p", "p2m", "l2p", "m2p", "p2l"])
def test_a_user_kernel_with_a_bare_term_is_unchanged(operator):
    """``1 + 1/r`` (a term without a number): nothing to take out, the kernel as it was."""
    green = get_kernel("1 + 1/r")
    knl = math_kernel(operator, kernel=green)
    factored = factor_constants_out_of_sums(knl)
    assert _parts(factored, "store") == _parts(knl, "store")
