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
