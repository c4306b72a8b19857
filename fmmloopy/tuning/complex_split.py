"""Complex arithmetic as pairs of real numbers, so that a CPU compiler vectorises it.

A complex kernel (Helmholtz's ``exp(1j k r) / r``) computes in pyopencl's ``cdouble_t``: a
struct whose operations are functions of ``pyopencl-complex.h``; ``exp`` of a complex value is
a call of the library's ``exp`` and ``sincos``, and ``cdouble_fma`` calls OpenCL's ``fma``,
which PoCL does not inline. Each call stops LLVM from vectorising the loop PoCL makes of a
work-group (Helmholtz's P2P then ran at a small fraction of Laplace's rate: docs/history.md,
2026-11-26, "Helmholtz and Yukawa on the vector path").

:func:`split_complex_temporaries` rewrites a kernel so that every complex scalar temporary is two
real ones (``acc`` -> ``acc_re``, ``acc_im``) computed by real expressions: products and sums
expanded into their real and imaginary parts, ``exp(a + 1j b)`` as ``exp(a) (cos b + 1j sin b)``,
the real and imaginary parts of complex array elements read by ``real()`` / ``imag()``. Results
written to complex arrays are made complex again (``acc_re + 1j acc_im``), once per target.
:func:`~fmmloopy.tuning.inline_math.trig_preamble` defines the ``sin`` and ``cos`` it writes in
arithmetic, which LLVM inlines and vectorises.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import loopy as lp
import numpy as np
import pymbolic.primitives as prim
from loopy.symbolic import get_dependencies
from pymbolic.mapper import CombineMapper

from fmmloopy.tuning.inline_math import FMA_PREAMBLE, trig_preamble
from fmmloopy.tuning.tools import add_preamble

# {{{ expressions as real and imaginary parts

class NotSplittable(ValueError):
    """An expression the splitter does not know how to write in real parts."""


_ZERO = 0


def _is_zero(expr) -> bool:
    return isinstance(expr, numbers.Number) and expr == 0


def _add(*terms):
    terms = [t for t in terms if not _is_zero(t)]
    if not terms:
        return _ZERO
    return terms[0] if len(terms) == 1 else prim.Sum(tuple(terms))


def _mul(*factors):
    if any(_is_zero(f) for f in factors):
        return _ZERO
    factors = [f for f in factors if not (isinstance(f, numbers.Number) and f == 1)]
    if not factors:
        return 1
    return factors[0] if len(factors) == 1 else prim.Product(tuple(factors))


def _neg(expr):
    return _ZERO if _is_zero(expr) else _mul(-1, expr)


#: Real functions of a real argument the splitter passes through.
_REAL_FUNCTIONS = frozenset({"sqrt", "exp", "log", "sin", "cos", "tan", "sinh", "cosh", "tanh",
                             "fabs", "abs", "atan", "erf", "erfc"})


@dataclass
class ComplexSplitter:
    """``split(expr) -> (re, im)``: real expressions of the real and imaginary parts of
    ``expr``. ``complex_arrays``: names of complex arrays (their elements are read with
    ``real()``/``imag()``); ``split_names``: complex scalars already split, by name, into
    ``(name_re, name_im)``. Every other name is taken as real."""

    complex_arrays: frozenset
    split_names: dict

    def split(self, expr):
        if isinstance(expr, numbers.Number):
            value = complex(expr)
            if isinstance(expr, complex | np.complexfloating):
                return value.real, value.imag
            return expr, _ZERO
        if isinstance(expr, prim.Variable):
            if expr.name in self.split_names:
                re, im = self.split_names[expr.name]
                return prim.Variable(re), prim.Variable(im)
            return expr, _ZERO
        if isinstance(expr, prim.Subscript):
            if expr.aggregate.name in self.complex_arrays:
                return (prim.Call(prim.Variable("real"), (expr,)),
                        prim.Call(prim.Variable("imag"), (expr,)))
            return expr, _ZERO
        if isinstance(expr, prim.Sum):
            parts = [self.split(child) for child in expr.children]
            return _add(*(p[0] for p in parts)), _add(*(p[1] for p in parts))
        if isinstance(expr, prim.Product):
            re, im = 1, _ZERO
            for child in expr.children:
                c_re, c_im = self.split(child)
                re, im = (_add(_mul(re, c_re), _neg(_mul(im, c_im))),
                          _add(_mul(re, c_im), _mul(im, c_re)))
            return re, im
        if isinstance(expr, prim.Quotient):
            d_re, d_im = self.split(expr.denominator)
            if not _is_zero(d_im):
                raise NotSplittable(f"division by a complex value: {expr}")
            n_re, n_im = self.split(expr.numerator)
            return (_ZERO if _is_zero(n_re) else prim.Quotient(n_re, d_re),
                    _ZERO if _is_zero(n_im) else prim.Quotient(n_im, d_re))
        if isinstance(expr, prim.Power):
            return self._power(expr)
        if isinstance(expr, prim.If):
            self._real(expr.condition)
            t_re, t_im = self.split(expr.then)
            e_re, e_im = self.split(expr.else_)
            return (prim.If(expr.condition, t_re, e_re),
                    _ZERO if _is_zero(t_im) and _is_zero(e_im)
                    else prim.If(expr.condition, t_im, e_im))
        if isinstance(expr, prim.Call) and isinstance(expr.function, prim.Variable):
            return self._call(expr)
        raise NotSplittable(f"{type(expr).__name__}: {expr}")

    def _real(self, expr) -> None:
        """NotSplittable unless every name in ``expr`` is real (conditions, real functions)."""
        if (_names(expr) & (self.complex_arrays | set(self.split_names))
                or _ComplexConstant()(expr)):
            raise NotSplittable(f"a complex value where a real one is needed: {expr}")

    def _power(self, expr):
        base_re, base_im = self.split(expr.base)
        if _is_zero(base_im):
            self._real(expr.exponent)
            return expr, _ZERO
        exponent = expr.exponent
        if not (isinstance(exponent, numbers.Integral) and 0 <= exponent <= 8):
            raise NotSplittable(f"a complex value to the power {exponent}")
        return self.split(prim.Product((expr.base,) * int(exponent)) if exponent else 1)

    def _call(self, expr):
        name = expr.function.name
        if len(expr.parameters) != 1:
            raise NotSplittable(f"call of {name} with {len(expr.parameters)} arguments")
        arg_re, arg_im = self.split(expr.parameters[0])
        if _is_zero(arg_im) and name in _REAL_FUNCTIONS:
            return prim.Call(expr.function, (arg_re,)), _ZERO
        if name == "exp":
            cos = prim.Call(prim.Variable("cos"), (arg_im,))
            sin = prim.Call(prim.Variable("sin"), (arg_im,))
            if _is_zero(arg_re):
                return cos, sin
            scale = prim.Call(prim.Variable("exp"), (arg_re,))
            return _mul(scale, cos), _mul(scale, sin)
        raise NotSplittable(f"{name} of a complex value")


class _ComplexConstant(CombineMapper):
    """Whether an expression holds a complex constant."""

    def combine(self, values):
        return any(values)

    def map_constant(self, expr):
        return isinstance(expr, complex | np.complexfloating)

    def map_variable(self, expr):
        return False


def _names(expr) -> set:
    return {getattr(dep, "name", dep) for dep in get_dependencies(expr)}

# }}}


def split_complex_temporaries(knl: lp.TranslationUnit, inline_trig: bool = True
                              ) -> lp.TranslationUnit:
    """Every complex scalar temporary of ``knl`` as two real ones, computed by real expressions
    (module docstring); reads of complex arrays by their parts; writes to complex arrays made
    complex again from the parts. Substitution rules are expanded first. A kernel without
    complex temporaries, or with an expression the splitter cannot write in real parts (a
    division by a complex value, a complex function other than ``exp``), is returned
    unchanged. Adds :data:`FMA_PREAMBLE` and (``inline_trig``) :func:`trig_preamble` where it
    splits; without it, ``sin`` and ``cos`` are OpenCL's (what calls of vectors need:
    :func:`~fmmloopy.tuning.target_lanes.targets_in_vector_lanes`)."""
    entry = knl.default_entrypoint
    if entry.state >= lp.KernelState.CALLS_RESOLVED:
        raise ValueError("split_complex_temporaries needs a kernel whose calls are not resolved "
                         "yet (apply it to the kernel a recipe receives)")
    if not any(getattr(arg, "dtype", None) is not None and arg.dtype.is_complex()
               for arg in entry.args):
        return knl  # real values (the templates' temporaries are complex only with them)
    # The temporaries' types from a typed copy; the kernel itself stays unresolved, so that
    # the calls the split writes (real, imag, cos, sin) are resolved with the others.
    typed = lp.infer_unknown_types(knl, expect_completion=True).default_entrypoint
    real_dtype = {np.dtype(np.complex64): np.float32, np.dtype(np.complex128): np.float64}
    complex_temps = {name: temp.copy(dtype=typed.temporary_variables[name].dtype)
                     for name, temp in entry.temporary_variables.items()
                     if typed.temporary_variables[name].dtype.is_complex() and not temp.shape}
    if not complex_temps:
        return knl
    split_names = {name: (f"{name}_re", f"{name}_im") for name in complex_temps}
    taken = set(entry.all_variable_names())
    if any(part in taken for parts in split_names.values() for part in parts):
        return knl
    complex_arrays = frozenset(arg.name for arg in entry.args
                               if getattr(arg, "dtype", None) is not None
                               and arg.dtype.is_complex()) | frozenset(
        name for name, temp in typed.temporary_variables.items()
        if temp.dtype.is_complex() and temp.shape)
    splitter = ComplexSplitter(complex_arrays, split_names)
    original, knl = knl, lp.expand_subst(knl)
    entry = knl.default_entrypoint
    try:
        instructions, second_ids = _split_instructions(entry, splitter, split_names)
    except NotSplittable:
        return original
    instructions = [insn.copy(depends_on=insn.depends_on | frozenset(
        second_ids[dep] for dep in insn.depends_on if dep in second_ids))
        for insn in instructions]
    temporaries = {name: temp for name, temp in entry.temporary_variables.items()
                   if name not in complex_temps}
    for name, temp in complex_temps.items():
        for part in split_names[name]:
            temporaries[part] = temp.copy(name=part,
                                          dtype=lp.types.to_loopy_type(
                                              real_dtype[temp.dtype.numpy_dtype]))
    knl = knl.with_kernel(entry.copy(instructions=instructions,
                                     temporary_variables=temporaries))
    knl = add_preamble(knl, *FMA_PREAMBLE)
    return add_preamble(knl, *trig_preamble()) if inline_trig else knl


def _split_instructions(entry, splitter: ComplexSplitter, split_names: dict):
    """The instructions of ``entry`` with complex scalar assignments split in two, and the id
    of each one's imaginary half by the id of its real half."""
    instructions, second_ids = [], {}
    taken_ids = {insn.id for insn in entry.instructions}
    for insn in entry.instructions:
        if not isinstance(insn, lp.Assignment):
            if any(name in split_names for name in insn.read_dependency_names()):
                raise NotSplittable(f"instruction {insn.id} is not an assignment")
            instructions.append(insn)
            continue
        target = insn.assignee
        if isinstance(target, prim.Variable) and target.name in split_names:
            re, im = splitter.split(insn.expression)
            re_name, im_name = split_names[target.name]
            if im_name in _names(re) or re_name in _names(im):
                # The halves run in either order: one must not read what the other writes.
                raise NotSplittable(f"{insn.id} reads both parts of what it writes")
            im_id = f"{insn.id}_im"
            if im_id in taken_ids:
                raise NotSplittable(f"instruction id {im_id} taken")
            taken_ids.add(im_id)
            second_ids[insn.id] = im_id
            instructions.append(insn.copy(assignee=prim.Variable(re_name), expression=re))
            instructions.append(insn.copy(id=im_id, assignee=prim.Variable(im_name),
                                          expression=im))
            continue
        if not any(name in split_names for name in insn.read_dependency_names()):
            instructions.append(insn)
            continue
        re, im = splitter.split(insn.expression)
        instructions.append(insn.copy(expression=_add(re, _mul(1j, im))))
    return instructions, second_ids
