"""Green's functions as data: a pymbolic expression in the offset ``d = target - source``.

A kernel is not a loop. The templates in :mod:`fmmloopy.maths.templates` splice the expression into
their loops, so a new kernel (a gradient, Yukawa, ...) is a new expression, not new code.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pymbolic.primitives as prim
from pymbolic import var
from pymbolic.mapper.dependency import DependencyMapper
from pymbolic.mapper.evaluator import EvaluationMapper

from fmmloopy.maths.derivatives import (
    KNOWN_FUNCTIONS,
    differentiate,
    simplify,
    to_code_form,
    to_power_form,
)

#: The offset components the expression is written in (target minus source).
OFFSET_VARIABLES: tuple[str, str, str] = ("d0", "d1", "d2")

#: What a pairwise sum can produce at its targets: per field, the derivatives of ``G`` (offset
#: components differentiated by) of each of its components.
TARGET_FIELDS: dict[str, tuple[tuple[int, ...], ...]] = {
    "potential": ((),), "gradient": ((0,), (1,), (2,))}
#: What its sources can carry: a charge multiplies ``G``; a dipole ``m`` gives
#: ``m . grad_source G = -m . grad_d G`` (derivatives in the source point, whence the sign).
SOURCE_FIELDS: dict[str, tuple[tuple[int, ...], ...]] = {
    "charge": ((),), "dipole": ((0,), (1,), (2,))}

#: numpy's function of each name the derivative rules know (host evaluation).
_NUMPY_FUNCTIONS = {name: getattr(np, name) for name in KNOWN_FUNCTIONS}


def _validate_fields(fields: tuple[str, ...], known: dict, what: str) -> tuple[str, ...]:
    fields = tuple(fields)
    if not fields or len(set(fields)) != len(fields) or not set(fields) <= set(known):
        raise ValueError(f"{what} must be distinct names among {list(known)}, not {fields!r}")
    return tuple(name for name in known if name in fields)  # the canonical order


@dataclass(frozen=True)
class GreenKernel:
    """A translation-invariant Green's function ``G(target - source)`` and the derivatives of it
    a pairwise sum applies.

    ``expression`` is written in the variables :data:`OFFSET_VARIABLES` and must contribute exactly
    zero at ``d == 0`` (no self-interaction). ``homogeneity`` is the degree ``k`` with
    ``G(s d) = s**k G(d)``; it lets precomputed operators be scaled from level to level.

    ``outputs`` (:data:`TARGET_FIELDS`) and ``inputs`` (:data:`SOURCE_FIELDS`) say what a pairwise
    sum with this kernel produces and takes: the default is the potential of charges; a
    gradient adds three target derivatives, dipoles three source derivatives. Together they make
    a matrix of expressions (:attr:`expressions`, ``n_outputs x n_inputs``), each one symbolic
    derivative of ``expression`` (:mod:`fmmloopy.maths.derivatives`).
    """

    name: str
    expression: prim.ExpressionNode
    homogeneity: float | None = None
    outputs: tuple[str, ...] = ("potential",)
    inputs: tuple[str, ...] = ("charge",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outputs",
                           _validate_fields(self.outputs, TARGET_FIELDS, "outputs"))
        object.__setattr__(self, "inputs", _validate_fields(self.inputs, SOURCE_FIELDS, "inputs"))

    def with_fields(self, outputs=("potential",), inputs=("charge",)) -> GreenKernel:
        """This Green's function producing ``outputs`` from ``inputs``."""
        return dataclasses.replace(self, outputs=tuple(outputs), inputs=tuple(inputs))

    @property
    def base(self) -> GreenKernel:
        """The potential of charges (what the precomputed operators are made of)."""
        return self.with_fields()

    @property
    def is_scalar(self) -> bool:
        """One output component from one input component (the potential of charges)."""
        return self.n_outputs == self.n_inputs == 1

    @property
    def n_outputs(self) -> int:
        return sum(len(TARGET_FIELDS[name]) for name in self.outputs)

    @property
    def n_inputs(self) -> int:
        return sum(len(SOURCE_FIELDS[name]) for name in self.inputs)

    @property
    def label(self) -> str:
        """The name, with the fields where they are not the potential of charges."""
        if self.outputs == ("potential",) and self.inputs == ("charge",):
            return self.name
        return f"{self.name} ({'+'.join(self.outputs)} of {'+'.join(self.inputs)})"

    def output_derivatives(self) -> np.ndarray:
        """Per output component: how many derivatives of ``G`` it takes (0 or 1)."""
        return np.array([len(d) for name in self.outputs for d in TARGET_FIELDS[name]])

    def input_derivatives(self) -> np.ndarray:
        """Per input component: how many derivatives of ``G`` it takes (0 or 1)."""
        return np.array([len(d) for name in self.inputs for d in SOURCE_FIELDS[name]])

    def derivative_orders(self) -> np.ndarray:
        """``(n_outputs, n_inputs)``: how many derivatives each entry of the matrix takes (an
        entry of a kernel of homogeneity ``k`` has homogeneity ``k`` minus that)."""
        return np.add.outer(self.output_derivatives(), self.input_derivatives())

    @cached_property
    def expressions(self) -> tuple[tuple[prim.ExpressionNode, ...], ...]:
        """``[output component][input component]``: the derivative of ``G`` each pair of
        components applies, in the form the generated code computes (the potential of
        charges: ``expression`` itself)."""
        if self.is_scalar:
            return ((self.expression,),)
        power_form = simplify(to_power_form(self.expression))
        derivatives: dict[tuple[int, ...], object] = {(): power_form}

        def derivative(axes: tuple[int, ...]):
            key = tuple(sorted(axes))
            if key not in derivatives:
                derivatives[key] = differentiate(derivative(key[:-1]),
                                                 OFFSET_VARIABLES[key[-1]])
            return derivatives[key]
        rows = []
        for target in (d for name in self.outputs for d in TARGET_FIELDS[name]):
            row = []
            for source in (d for name in self.inputs for d in SOURCE_FIELDS[name]):
                entry = derivative(target + source)
                if len(source) % 2:
                    entry = _negated(entry)
                row.append(to_code_form(entry))
            rows.append(tuple(row))
        return tuple(rows)

    def evaluate(self, offsets: np.ndarray) -> np.ndarray:
        """Evaluate on the host for offsets of shape ``(..., 3)`` (numpy, float64): shape
        ``(...)`` for the potential of charges, else ``(..., n_outputs, n_inputs)``."""
        offsets = np.asarray(offsets, dtype=np.float64)
        context = {name: offsets[..., i] for i, name in enumerate(OFFSET_VARIABLES)}
        context |= _NUMPY_FUNCTIONS

        def value(expression) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                values = _ArrayEvaluationMapper(context)(expression)
            return np.broadcast_to(np.asarray(values, dtype=np.float64), offsets.shape[:-1])
        if self.is_scalar:
            return value(self.expression).copy()
        return np.stack([np.stack([value(e) for e in row], axis=-1)
                         for row in self.expressions], axis=-2)

    def flops_per_pair(self) -> int:
        """Floating-point operations per target-source pair of a pairwise kernel, counted from
        the expressions: each addition, multiplication, division, power and function call (a
        ``sqrt`` counts 1, however many cycles it takes) on values that depend on the offset,
        each distinct subexpression once over all entries, plus 3 for the offset and 2 per
        entry for multiplying by the strength and adding into the sum. Comparisons and
        selections are not counted. The roofline of ``fmmloopy bench`` uses it; for the
        Laplace potential it is 13."""
        seen: set = set()
        entries = [e for row in self.expressions for e in row]
        return 3 + sum(_count_flops(e, seen) for e in entries) + 2 * len(entries)


def _negated(expr):
    """``-expr`` in power form, the sign taken inside selections."""
    if isinstance(expr, prim.If):
        return prim.If(expr.condition, _negated(expr.then), _negated(expr.else_))
    return simplify(prim.Product((-1, expr)))


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
