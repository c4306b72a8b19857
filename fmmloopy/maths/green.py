"""Green's functions as data: a pymbolic expression in the offset ``d = target - source``.

A kernel is not a loop. The templates in :mod:`fmmloopy.maths.templates` splice the expression into
their loops, so a new kernel (a gradient, Yukawa, ...) is a new expression, not new code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pymbolic.primitives as prim
from pymbolic import var
from pymbolic.mapper.dependency import DependencyMapper
from pymbolic.mapper.evaluator import EvaluationMapper

#: The offset components the expression is written in (target minus source).
OFFSET_VARIABLES: tuple[str, str, str] = ("d0", "d1", "d2")


@dataclass(frozen=True)
class GreenKernel:
    """A translation-invariant Green's function ``G(target - source)``.

    ``expression`` is written in the variables :data:`OFFSET_VARIABLES` and must contribute exactly
    zero at ``d == 0`` (no self-interaction). ``homogeneity`` is the degree ``k`` with
    ``G(s d) = s**k G(d)``; it lets precomputed operators be scaled from level to level.
    """

    name: str
    expression: prim.ExpressionNode
    homogeneity: float | None = None

    def evaluate(self, offsets: np.ndarray) -> np.ndarray:
        """Evaluate on the host for offsets of shape ``(..., 3)`` (numpy, float64)."""
        offsets = np.asarray(offsets, dtype=np.float64)
        context = {name: offsets[..., i] for i, name in enumerate(OFFSET_VARIABLES)}
        context["sqrt"] = np.sqrt
        with np.errstate(divide="ignore", invalid="ignore"):
            values = _ArrayEvaluationMapper(context)(self.expression)
        return np.broadcast_to(np.asarray(values, dtype=np.float64), offsets.shape[:-1]).copy()

    def flops_per_pair(self) -> int:
        """Floating-point operations per target-source pair of a pairwise kernel, counted from
        the expression: each addition, multiplication, division, power and function call (a
        ``sqrt`` counts 1, however many cycles it takes) on values that depend on the offset,
        plus 3 for the offset and 2 for multiplying by the strength and adding into the sum.
        Comparisons and selections are not counted. The roofline of ``fmmloopy bench`` uses it;
        for the Laplace potential it is 13."""
        return 3 + _count_flops(self.expression) + 2


def get_variables(expr) -> set:
    """The variables ``expr`` depends on (function names not included)."""
    return DependencyMapper(include_calls=False)(expr)


def _count_flops(expr, seen: set | None = None) -> int:
    """Arithmetic operations in ``expr`` that depend on a variable (constants fold away), each
    distinct subexpression once (a compiler computes a repeated one once)."""
    seen = set() if seen is None else seen
    if not isinstance(expr, prim.ExpressionNode) or expr in seen or not get_variables(expr):
        return 0
    seen.add(expr)

    def count(*children) -> int:
        return sum(_count_flops(child, seen) for child in children)
    if isinstance(expr, (prim.Sum, prim.Product)):
        return len(expr.children) - 1 + count(*expr.children)
    if isinstance(expr, prim.Quotient):
        return 1 + count(expr.numerator, expr.denominator)
    if isinstance(expr, prim.Power):
        return 1 + count(expr.base, expr.exponent)
    if isinstance(expr, prim.Call):
        return 1 + count(*expr.parameters)
    if isinstance(expr, prim.If):
        return count(expr.condition, expr.then, expr.else_)
    if isinstance(expr, prim.Comparison):
        return count(expr.left, expr.right)
    return 0


class _ArrayEvaluationMapper(EvaluationMapper):
    """Evaluates element-wise on numpy arrays (``If`` becomes ``np.where``)."""

    def map_if(self, expr: prim.If) -> np.ndarray:
        return np.where(self.rec(expr.condition), self.rec(expr.then), self.rec(expr.else_))


def _laplace_3d() -> GreenKernel:
    d0, d1, d2 = (var(name) for name in OFFSET_VARIABLES)
    r_squared = d0 * d0 + d1 * d1 + d2 * d2
    inverse_r = 1 / var("sqrt")(r_squared)
    expression = prim.If(
        prim.Comparison(r_squared, ">", 0), inverse_r * (1 / (4 * math.pi)), 0)
    return GreenKernel(name="laplace", expression=expression, homogeneity=-1.0)


#: ``1 / (4 pi |d|)``, and exactly 0 at ``d == 0``.
LAPLACE_3D = _laplace_3d()

_KERNELS: dict[str, GreenKernel] = {LAPLACE_3D.name: LAPLACE_3D}


def kernel_names() -> list[str]:
    """Names of the built-in kernels (what ``get_kernel`` and ``fmmloopy check --kernel``
    take)."""
    return sorted(_KERNELS)


def get_kernel(kernel: str | GreenKernel) -> GreenKernel:
    """Look a kernel up by name (``"laplace"``), or pass a :class:`GreenKernel` through."""
    if isinstance(kernel, GreenKernel):
        return kernel
    try:
        return _KERNELS[kernel]
    except KeyError:
        raise ValueError(
            f"unknown kernel {kernel!r}; available kernels: {sorted(_KERNELS)}") from None
