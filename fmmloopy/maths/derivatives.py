"""Symbolic derivatives of a Green's function, in a form the generated code computes cheaply.

Gradients at the targets and dipole sources need first and second derivatives of ``G(d)`` with
respect to the offset ``d = target - source``. They come from the kernel's pymbolic expression by
the rules of calculus (:func:`differentiate`), in a *power form* where every quotient ``a / b``
is ``a * b**-1`` and every ``sqrt(x)`` is ``x**(1/2)``, so that powers of one base collect into
one exponent: ``d/dd0 (1 / sqrt(r2))`` is ``-d0 * r2**(-3/2)``, not a quotient of square
roots. :func:`to_code_form` writes the result back with ``sqrt`` and products only: a
half-integer power ``x**(-3/2)`` becomes ``(1/sqrt(x)) * (1/sqrt(x)) * (1/sqrt(x))``, which
costs one reciprocal square root (the compiler computes the repeated factor once, and the CPU
recipes turn ``1/sqrt`` into a hardware estimate refined by Newton steps) and two products.

Functions the rules know: ``sqrt``, ``exp``, ``log``, ``sin``, ``cos``. Any other call, or a power
whose exponent depends on the offset, raises ValueError naming it. ``If(condition, a, b)`` (the
templates' ``r2 > 0`` guard) differentiates branch by branch: the conditions are piecewise
constant, and the kernels are smooth away from ``d = 0`` where they select.
"""

from __future__ import annotations

from fractions import Fraction
from numbers import Number

import pymbolic.primitives as prim

#: Functions with a derivative rule (and a numpy counterpart for host evaluation).
KNOWN_FUNCTIONS = ("sqrt", "exp", "log", "sin", "cos")

_HALF = Fraction(1, 2)


def _children(expr) -> tuple:
    """The operands of ``expr`` (its function name of a call not included)."""
    if isinstance(expr, prim.Sum | prim.Product):
        return expr.children
    if isinstance(expr, prim.Quotient):
        return (expr.numerator, expr.denominator)
    if isinstance(expr, prim.Power):
        return (expr.base, expr.exponent)
    if isinstance(expr, prim.Call):
        return expr.parameters
    if isinstance(expr, prim.If):
        return (expr.condition, expr.then, expr.else_)
    if isinstance(expr, prim.Comparison):
        return (expr.left, expr.right)
    if isinstance(expr, prim.LogicalAnd | prim.LogicalOr):
        return expr.children
    if isinstance(expr, prim.LogicalNot):
        return (expr.child,)
    return ()


def _depends(expr, name: str) -> bool:
    """Whether ``expr`` (power form: rational exponents are Fractions, which pymbolic's own
    mappers do not take) contains the variable ``name``."""
    if isinstance(expr, prim.Variable):
        return expr.name == name
    return any(_depends(child, name) for child in _children(expr))


def _function(expr: prim.Call) -> str:
    name = getattr(expr.function, "name", None)
    if name not in KNOWN_FUNCTIONS:
        raise ValueError(f"cannot differentiate a call of {expr.function!r}: the derivative "
                         f"rules know {', '.join(KNOWN_FUNCTIONS)}")
    if len(expr.parameters) != 1:
        raise ValueError(f"{name} takes one argument, not {len(expr.parameters)}")
    return name


# {{{ power form

def _map_operands(expr, function):
    """``expr`` rebuilt with ``function`` applied to each operand of a sum, product, call,
    selection or comparison; any other node as it is."""
    if isinstance(expr, prim.Sum):
        return prim.Sum(tuple(map(function, expr.children)))
    if isinstance(expr, prim.Product):
        return prim.Product(tuple(map(function, expr.children)))
    if isinstance(expr, prim.Call):
        return prim.Call(expr.function, tuple(map(function, expr.parameters)))
    if isinstance(expr, prim.If):
        return prim.If(function(expr.condition), function(expr.then), function(expr.else_))
    if isinstance(expr, prim.Comparison):
        return prim.Comparison(function(expr.left), expr.operator, function(expr.right))
    return expr


def to_power_form(expr):
    """``expr`` with quotients as products of ``**-1`` and ``sqrt(x)`` as ``x**(1/2)``."""
    if isinstance(expr, prim.Quotient):
        return prim.Product((to_power_form(expr.numerator),
                             prim.Power(to_power_form(expr.denominator), -1)))
    if isinstance(expr, prim.Power):
        exponent = expr.exponent
        if isinstance(exponent, float) and float(Fraction(exponent).limit_denominator(64)) \
                == exponent:
            exponent = Fraction(exponent).limit_denominator(64)
        return prim.Power(to_power_form(expr.base), to_power_form(exponent))
    if (isinstance(expr, prim.Call) and getattr(expr.function, "name", None) == "sqrt"
            and len(expr.parameters) == 1):
        return prim.Power(to_power_form(expr.parameters[0]), _HALF)
    return _map_operands(expr, to_power_form)

# }}}


# {{{ differentiation

def differentiate(expr, name: str):
    """``d expr / d name`` of an expression in power form (:func:`to_power_form`), simplified
    (:func:`simplify`); the result is in power form too."""
    return simplify(_derivative(expr, name))


def _derivative(expr, name: str):
    if not _depends(expr, name):
        return 0
    if isinstance(expr, prim.Variable):
        return 1
    if isinstance(expr, prim.Sum):
        return prim.Sum(tuple(_derivative(c, name) for c in expr.children))
    if isinstance(expr, prim.Product):
        children = expr.children
        return prim.Sum(tuple(
            prim.Product((*children[:i], _derivative(child, name), *children[i + 1:]))
            for i, child in enumerate(children) if _depends(child, name)))
    if isinstance(expr, prim.Power):
        base, exponent = expr.base, expr.exponent
        if _depends(exponent, name):
            raise ValueError(f"cannot differentiate {expr}: its exponent depends on {name!r} "
                             "(write it with exp and log)")
        return prim.Product((exponent, prim.Power(base, _sum_constants(exponent, -1)),
                             _derivative(base, name)))
    if isinstance(expr, prim.Call):
        function, (x,) = _function(expr), expr.parameters
        inner = _derivative(x, name)
        outer = {"exp": lambda: expr,
                 "log": lambda: prim.Power(x, -1),
                 "sin": lambda: prim.Call(prim.Variable("cos"), (x,)),
                 "cos": lambda: prim.Product((-1, prim.Call(prim.Variable("sin"), (x,)))),
                 "sqrt": lambda: prim.Product((_HALF, prim.Power(x, -_HALF)))}[function]()
        return prim.Product((outer, inner))
    if isinstance(expr, prim.If):
        return prim.If(expr.condition, _derivative(expr.then, name),
                       _derivative(expr.else_, name))
    raise ValueError(f"cannot differentiate {type(expr).__name__} node {expr}")


def _sum_constants(a, b):
    if isinstance(a, Number) and isinstance(b, Number):
        return _number(Fraction(a) + b if isinstance(a, int | Fraction) else a + b)
    return prim.Sum((a, b))

# }}}


# {{{ simplification

def _number(value):
    """Fractions with denominator 1 as ints; other numbers as they are."""
    if isinstance(value, Fraction) and value.denominator == 1:
        return int(value)
    return value


def _is_zero(expr) -> bool:
    return isinstance(expr, Number) and expr == 0


def simplify(expr):
    """Fold constants, drop zero terms and unit factors, flatten sums and products, and collect
    the powers of equal bases in a product (power form in, power form out)."""
    if isinstance(expr, Number) or not isinstance(expr, prim.ExpressionNode):
        return _number(expr)
    if isinstance(expr, prim.Sum):
        return _simplify_sum(expr)
    if isinstance(expr, prim.Product | prim.Power):
        return _simplify_product(expr)
    if isinstance(expr, prim.Call):
        return prim.Call(expr.function, tuple(simplify(p) for p in expr.parameters))
    if isinstance(expr, prim.If):
        then, else_ = simplify(expr.then), simplify(expr.else_)
        if _is_zero(then) and _is_zero(else_):
            return 0
        return prim.If(simplify(expr.condition), then, else_)
    if isinstance(expr, prim.Comparison):
        return prim.Comparison(simplify(expr.left), expr.operator, simplify(expr.right))
    return expr


def _simplify_sum(expr: prim.Sum):
    """Flattened, constants folded, like terms (equal but for a numeric factor) collected."""
    constant, terms = 0, {}
    pending = list(expr.children)
    while pending:
        term = simplify(pending.pop(0))
        if isinstance(term, prim.Sum):
            pending[:0] = list(term.children)
        elif isinstance(term, Number):
            constant = constant + term
        else:
            factor, rest = _split_coefficient(term)
            terms[rest] = terms.get(rest, 0) + factor
    collected = [simplify(prim.Product((_number(factor), rest)))
                 for rest, factor in terms.items() if factor != 0]
    if constant != 0 or not collected:
        collected.append(_number(constant))
    return collected[0] if len(collected) == 1 else prim.Sum(tuple(collected))


def _split_coefficient(term) -> tuple:
    """``(numeric factor, the rest)`` of a simplified term."""
    if isinstance(term, prim.Product) and isinstance(term.children[0], Number):
        rest = term.children[1:]
        return term.children[0], rest[0] if len(rest) == 1 else prim.Product(rest)
    return 1, term


def _factors(expr, exponent, into: dict, coefficient: list) -> None:
    """Multiply ``expr ** exponent`` into ``into`` (base -> exponent) and ``coefficient``."""
    if isinstance(expr, Number):
        coefficient[0] = coefficient[0] * (Fraction(expr) ** exponent
                                           if isinstance(expr, int | Fraction)
                                           and isinstance(exponent, int | Fraction)
                                           and (expr != 0 or exponent > 0)
                                           else expr ** exponent)
        return
    if isinstance(expr, prim.Product):
        for child in expr.children:
            _factors(child, exponent, into, coefficient)
        return
    if isinstance(expr, prim.Power) and isinstance(expr.exponent, Number):
        _factors(expr.base, _times(exponent, expr.exponent), into, coefficient)
        return
    if isinstance(expr, prim.Power | prim.Product | prim.Sum | prim.Call | prim.If):
        simplified = simplify(expr)
        if simplified != expr or isinstance(simplified, Number):
            _factors(simplified, exponent, into, coefficient)
            return
    into[expr] = _number(Fraction(into.get(expr, 0)) + exponent
                         if isinstance(exponent, int | Fraction) else into.get(expr, 0) + exponent)


def _times(a, b):
    if isinstance(a, int | Fraction) and isinstance(b, int | Fraction):
        return _number(Fraction(a) * b)
    return a * b


def _simplify_product(expr):
    if isinstance(expr, prim.Power) and not isinstance(expr.exponent, Number):
        return prim.Power(simplify(expr.base), simplify(expr.exponent))
    factors: dict = {}
    coefficient = [Fraction(1)]
    _factors(expr, 1, factors, coefficient)
    value = _number(coefficient[0])
    if _is_zero(value):
        return 0
    # Factors in a fixed order, so that equal products compare equal (like terms collect).
    children = [prim.Power(base, power) if power != 1 else base
                for base, power in sorted(factors.items(), key=lambda item: repr(item[0]))
                if power != 0]
    if value != 1 or not children:
        children.insert(0, value)
    return children[0] if len(children) == 1 else prim.Product(tuple(children))

# }}}


# {{{ code form

def to_code_form(expr):
    """A simplified power-form expression written with products, ``1 / ...`` and ``sqrt``:
    integer powers as repeated products, half-integer powers through ``sqrt`` (negative ones as
    powers of ``1 / sqrt(x)``), other powers as they are; rational constants as floats."""
    if isinstance(expr, Fraction):
        return _number(expr) if expr.denominator == 1 else float(expr)
    if isinstance(expr, Number) or not isinstance(expr, prim.ExpressionNode):
        return expr
    if isinstance(expr, prim.Product):
        factors = []
        for child in map(to_code_form, expr.children):  # flat: one product per term
            factors.extend(child.children if isinstance(child, prim.Product) else (child,))
        return prim.Product(tuple(factors))
    if isinstance(expr, prim.Power):
        return _power_code(to_code_form(expr.base), expr.exponent)
    return _map_operands(expr, to_code_form)


def _repeat(factor, times: int):
    return factor if times == 1 else prim.Product((factor,) * times)


def _power_code(base, exponent):
    if isinstance(exponent, int | Fraction):
        exponent = Fraction(exponent)
        if exponent.denominator == 1:
            n = int(exponent)
            if n > 0:
                return _repeat(base, n)
            return prim.Quotient(1, _repeat(base, -n))
        if exponent.denominator == 2:
            root = prim.Call(prim.Variable("sqrt"), (base,))
            if exponent > 0:
                whole = int(exponent - _HALF)
                return root if whole == 0 else prim.Product((root, _repeat(base, whole)))
            return _repeat(prim.Quotient(1, root), int(-2 * exponent))
        return prim.Power(base, float(exponent))
    return prim.Power(base, to_code_form(exponent))

# }}}
