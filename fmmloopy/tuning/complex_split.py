"""Complex arithmetic as pairs of real numbers, so that a CPU compiler vectorises it.

A complex kernel (Helmholtz's ``exp(1j k r) / r``) computes in pyopencl's ``cdouble_t``: a
struct whose operations are functions of ``pyopencl-complex.h``; ``exp`` of a complex value is
a call of the library's ``exp`` and ``sincos``, and ``cdouble_fma`` calls OpenCL's ``fma``,
which PoCL does not inline. Each call stops LLVM from vectorising the loop PoCL makes of a
work-group (P2P at 10^5 sphere points on a 2-core AVX2 CPU: 60·10^6 pairs/s, Laplace's 1.4·10^9).

:func:`split_complex_temporaries` rewrites a kernel so that every complex scalar temporary is two
real ones (``acc`` -> ``acc_re``, ``acc_im``) computed by real expressions: products and sums
expanded into their real and imaginary parts, ``exp(a + 1j b)`` as ``exp(a) (cos b + 1j sin b)``,
the real and imaginary parts of complex array elements read by ``real()`` / ``imag()``. Results
written to complex arrays are made complex again (``acc_re + 1j acc_im``), once per target.
:data:`TRIG_PREAMBLE` defines ``sin`` and ``cos`` by a reduction modulo pi/2 and polynomials,
arithmetic only, which LLVM inlines and vectorises (the two share the reduction).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import loopy as lp
import numpy as np
import pymbolic.primitives as prim
from loopy.symbolic import get_dependencies

from fmmloopy.tuning.tools import add_preamble

# {{{ sin and cos in arithmetic

#: ``(sin x - x) / x^3`` and ``(cos x - 1 + x^2 / 2) / x^4`` as polynomials in ``x^2`` on
#: ``|x| <= pi / 4``: least-squares fits on 400 Chebyshev nodes of the Taylor series (made with
#: numpy for this module); the error of ``sin`` and ``cos`` from them is below 1e-16 there.
_SIN_COEFFICIENTS = (-0.16666666666666677, 0.008333333333332697, -0.00019841269838274857,
                     2.7557316636507914e-06, -2.5051214621479335e-08, 1.5922812851218437e-10)
_COS_COEFFICIENTS = (0.04166666666666669, -0.0013888888888891329, 2.480158730245631e-05,
                     -2.755731868446065e-07, 2.0876383815550924e-09, -1.1397195456819796e-11)

#: ``pi / 2`` as two doubles, the first of 33 significant bits (``n`` times it is exact for
#: ``|n| < 2^20``), the second the rest rounded (their sum is within 3.6e-27 of ``pi / 2``):
#: the Cody-Waite reduction.
_PI_HALF_PARTS = ("0x1.921fb544p+0", "0x1.0b4611a626331p-34")

TRIG_HELPER = "fmmloopy"


def _estrin(coefficients, t: str, t2: str, t4: str) -> str:
    """``sum c_i t^i`` for six coefficients, by Estrin's scheme (pairs, then powers of ``t^2``):
    three multiply-adds deep instead of Horner's six, which keeps a pairwise loop, whose
    iterations are long chains, from waiting on latency."""
    c = [repr(value) for value in coefficients]
    return (f"(({c[0]} + {t} * {c[1]}) + {t2} * ({c[2]} + {t} * {c[3]}) "
            f"+ {t4} * ({c[4]} + {t} * {c[5]}))")


#: ``rint`` and ``floor`` as LLVM's intrinsics, which a CPU compiler inlines (OpenCL's are library
#: calls on PoCL); on SPIR (the Oclgrind simulator of ``fmmloopy check --memcheck``, which
#: cannot run the intrinsics) OpenCL's own.
_ROUNDING = ("#if defined(__SPIR__) || defined(__SPIR32__) || defined(__SPIR64__)\n"
             "#define FMMLOOPY_RINT(x) rint(x)\n#define FMMLOOPY_FLOOR(x) floor(x)\n"
             "#else\n"
             "#define FMMLOOPY_RINT(x) __builtin_rint(x)\n"
             "#define FMMLOOPY_FLOOR(x) __builtin_floor(x)\n"
             "#endif\n")


def trig_preamble() -> tuple[str, str]:
    """A preamble (key, text) defining ``sin(x)`` and ``cos(x)`` for ``double`` as inline
    helpers: ``n = rint(x 2 / pi)``, ``r = x - n pi / 2`` in two parts, the polynomials of
    ``r`` on ``[-pi/4, pi/4]``, the quadrant ``n mod 4`` chosen by selects. The two helpers
    compute the reduction, both polynomials and the quadrant alike, so that where a kernel
    takes both of one argument the compiler computes them once.

    Accuracy: within a few units in the last place of 1 (absolute) for ``|x| < 2^20 pi / 2``
    (1.6e6), where ``n`` times the first part is exact; beyond, as long as the compiler
    contracts ``x - n C1`` into an FMA (OpenCL C's default ``FP_CONTRACT``; PoCL does, with or
    without relaxed math): measured the same up to 1e9 and 2.3e-15 at 1e12, far below the
    ``|x| 2^-53`` by which the argument itself (``k r``) is uncertain. ``x`` must be finite.
    Written so that a compiler allowed to reassociate (``-cl-fast-relaxed-math``) cannot merge
    the reduction's steps: each part is subtracted from a value the previous step rounded.
    """
    pi_half = _PI_HALF_PARTS
    reduction = (
        "  double n = FMMLOOPY_RINT(x * 0x1.45f306dc9c883p-1);\n"
        f"  double r = x - n * {pi_half[0]};\n"
        f"  r = r - n * {pi_half[1]};\n"
        "  double t = r * r, t2 = t * t, t4 = t2 * t2;\n"
        f"  double s = r + r * t * {_estrin(_SIN_COEFFICIENTS, 't', 't2', 't4')};\n"
        f"  double c = 1.0 - 0.5 * t + t2 * {_estrin(_COS_COEFFICIENTS, 't', 't2', 't4')};\n"
        "  double q = n - 4.0 * FMMLOOPY_FLOOR(n * 0.25);\n"
        "  int odd = q == 1.0 || q == 3.0;\n")
    sine = ("  double v = odd ? c : s;\n"
            "  return q >= 2.0 ? -v : v;\n")
    cosine = ("  double v = odd ? s : c;\n"
              "  return (q == 1.0 || q == 2.0) ? -v : v;\n")
    helpers = "".join(
        f"inline __attribute__((always_inline)) double {TRIG_HELPER}_{name}(double x)\n"
        "{\n" + reduction + body + "}\n"
        for name, body in (("sin", sine), ("cos", cosine)))
    text = (_ROUNDING + helpers
            + "#ifdef sin\n#undef sin\n#endif\n#ifdef cos\n#undef cos\n#endif\n"
            f"#define sin(x) {TRIG_HELPER}_sin(x)\n"
            f"#define cos(x) {TRIG_HELPER}_cos(x)")
    return f"002_{TRIG_HELPER}", text


#: OpenCL's ``fma`` is a library call on PoCL (``cdouble_fma`` of ``pyopencl-complex.h`` uses
#: it); as a multiply-add the compiler contracts it under ``-cl-fast-relaxed-math``.
FMA_PREAMBLE = ("000_fmmloopy_fma",
                "#ifdef fma\n#undef fma\n#endif\n#define fma(a, b, c) ((a) * (b) + (c))")

# }}}


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
        names = {getattr(dep, "name", dep) for dep in get_dependencies(expr)}
        if names & (self.complex_arrays | set(self.split_names)) or _has_complex_constant(expr):
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


def _has_complex_constant(expr) -> bool:
    from pymbolic.mapper import CombineMapper

    class _Finder(CombineMapper):
        def combine(self, values):
            return any(values)

        def map_constant(self, expr):
            return isinstance(expr, complex | np.complexfloating)

        def map_variable(self, expr):
            return False

    return _Finder()(expr)

# }}}


def split_complex_temporaries(knl: lp.TranslationUnit) -> lp.TranslationUnit:
    """Every complex scalar temporary of ``knl`` as two real ones, computed by real expressions
    (module docstring); reads of complex arrays by their parts; writes to complex arrays made
    complex again from the parts. Substitution rules are expanded first. A kernel without
    complex temporaries, or with an expression the splitter cannot write in real parts (a
    division by a complex value, a complex function other than ``exp``), is returned
    unchanged. Adds :data:`FMA_PREAMBLE` and :func:`trig_preamble` where it splits."""
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
    return add_preamble(knl, *trig_preamble())


def _names(expr) -> set:
    return {getattr(dep, "name", dep) for dep in get_dependencies(expr)}


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
