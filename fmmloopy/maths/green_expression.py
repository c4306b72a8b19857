"""The pymbolic expression of a Green's function, apart from the kernel that holds it: the
offset variables it is written in, the guard against self-interaction, its parameters checked
and bound, its entries in the form the generated code computes, and their operation count.

:class:`~fmmloopy.maths.green.GreenKernel` is made of these; :mod:`fmmloopy.maths.green`
re-exports the public names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real

import numpy as np
import pymbolic.primitives as prim
from pymbolic import var
from pymbolic.mapper import IdentityMapper
from pymbolic.mapper.dependency import DependencyMapper
from pymbolic.mapper.substitutor import substitute

from fmmloopy.maths.derivatives import (
    KNOWN_FUNCTIONS,
    differentiate,
    simplify,
    to_code_form,
    to_power_form,
)

#: The offset components the expression is written in (target minus source).
OFFSET_VARIABLES: tuple[str, str, str] = ("d0", "d1", "d2")


def is_zero_entry(expression) -> bool:
    """Whether a kernel entry is the constant 0 (between the components of two vectors)."""
    return isinstance(expression, Real) and expression == 0


def offset_length_squared():
    """``d0 * d0 + d1 * d1 + d2 * d2``: the offset's length squared, ``r2``."""
    d0, d1, d2 = (var(name) for name in OFFSET_VARIABLES)
    return d0 * d0 + d1 * d1 + d2 * d2


def guarded(expression):
    """``If(r2 > 0, expression, 0)``: no self-interaction."""
    return prim.If(prim.Comparison(offset_length_squared(), ">", 0), expression, 0)


def validate_parameters(parameters) -> tuple[tuple[str, float], ...]:
    """Parameters as ``((name, value), ...)`` in name order: identifiers other than the offset's
    variables, finite real values."""
    items = parameters.items() if isinstance(parameters, Mapping) else parameters
    try:
        pairs = [(name, value) for name, value in items]
    except (TypeError, ValueError):
        raise ValueError(f"parameters must be a mapping name -> number, not {parameters!r}"
                         ) from None
    result = {}
    for name, value in pairs:
        if not isinstance(name, str) or not name.isidentifier() or name in OFFSET_VARIABLES \
                or name in KNOWN_FUNCTIONS:
            raise ValueError(f"parameter name {name!r} must be an identifier other than "
                             f"{', '.join(OFFSET_VARIABLES + KNOWN_FUNCTIONS)}")
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ValueError(f"parameter {name!r} must be a finite real number, not {value!r}")
        if name in result:
            raise ValueError(f"parameter {name!r} is given twice")
        result[name] = float(value)
    return tuple(sorted(result.items()))


def bind_parameters(expression, parameters: tuple[tuple[str, float], ...]):
    """``expression`` with the parameters' values in place of their names."""
    return substitute(expression, dict(parameters)) if parameters else expression


def parse_parameters(spec: str, text: str) -> dict[str, float]:
    """``{"kappa": 10.0}`` from ``"kappa=10"`` (comma-separated assignments)."""
    parameters = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, value = item.partition("=")
        try:
            if not equals:
                raise ValueError
            parameters[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"kernel {spec!r}: parameters are name=number, not {item!r}"
                             ) from None
    return parameters


class _SizedComplexConstants(IdentityMapper):
    """Python complex constants as ``numpy.complex128`` (loopy infers no type for a bare
    ``complex``)."""

    def map_constant(self, expr):
        return np.complex128(expr) if isinstance(expr, complex) else expr


def sized_constants(expr):
    """``expr`` with its complex constants sized (:class:`_SizedComplexConstants`)."""
    return _SizedComplexConstants()(expr)


def derivative_entries(expression, targets, sources) -> tuple[tuple[prim.ExpressionNode, ...], ...]:
    """``[target][source]``: the derivative of ``expression`` (parameters bound) each pair of
    components applies, in the form the generated code computes. ``targets`` and ``sources``:
    per component, the offset axes it differentiates by (as in
    :data:`~fmmloopy.maths.green.TARGET_FIELDS`, :data:`~fmmloopy.maths.green.SOURCE_FIELDS`);
    an entry whose source differentiates an odd number of times is negated (derivatives in the
    source point). Each derivative is taken once."""
    power_form = simplify(to_power_form(expression))
    derivatives: dict[tuple[int, ...], object] = {(): power_form}

    def derivative(axes: tuple[int, ...]):
        key = tuple(sorted(axes))
        if key not in derivatives:
            derivatives[key] = differentiate(derivative(key[:-1]),
                                             OFFSET_VARIABLES[key[-1]])
        return derivatives[key]
    rows = []
    for target in targets:
        row = []
        for source in sources:
            entry = derivative(target + source)
            if len(source) % 2:
                entry = _negated(entry)
            row.append(sized_constants(to_code_form(entry)))
        rows.append(tuple(row))
    return tuple(rows)


def _negated(expr):
    """``-expr`` in power form, the sign taken inside selections."""
    if isinstance(expr, prim.If):
        return prim.If(expr.condition, _negated(expr.then), _negated(expr.else_))
    return simplify(prim.Product((-1, expr)))


def get_variables(expr) -> set:
    """The variables ``expr`` depends on (function names not included)."""
    return DependencyMapper(include_calls=False)(expr)


def count_flops(expr, seen: set | None = None) -> int:
    """Arithmetic operations in ``expr`` that depend on a variable (constants fold away), each
    distinct subexpression once (a compiler computes a repeated one once)."""
    seen = set() if seen is None else seen
    if not isinstance(expr, prim.ExpressionNode) or expr in seen or not get_variables(expr):
        return 0
    seen.add(expr)

    def count(*children) -> int:
        return sum(count_flops(child, seen) for child in children)
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
