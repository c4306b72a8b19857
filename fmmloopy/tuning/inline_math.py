"""``sin``, ``cos`` and ``exp`` in arithmetic, and ``fma`` as a multiply-add, for CPU recipes.

PoCL compiles OpenCL's ``exp``, ``sin``, ``cos`` and ``fma`` of a ``double`` to calls into its
kernel library (``_Z7_cl_expd``, ...). A call in a loop keeps LLVM from vectorising the loop
PoCL makes of a work-group: Yukawa's P2P (``exp(-kappa r) / r``) ran at a small fraction of
Laplace's rate (docs/performance.md, "Helmholtz on the vector path"). The preambles here define
these functions as inline helpers made of multiply-adds, rounding and bit operations only, which
LLVM inlines and vectorises; :func:`use_inline_math` adds those a kernel calls.
"""

from __future__ import annotations

import loopy as lp
from pymbolic.mapper import Collector

from fmmloopy.tuning.tools import add_preamble

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

#: The helpers' names: ``fmmloopy_sin``, ``fmmloopy_cos``, ``fmmloopy_exp``.
_PREFIX = "fmmloopy"


def _estrin(coefficients, powers) -> str:
    """``sum c_i t^i`` by Estrin's scheme, ``powers`` the names of ``t, t^2, t^4, ...``: pairs
    of terms, then pairs of pairs; about log2(n) multiply-adds deep instead of Horner's n, which
    keeps a pairwise loop, whose iterations are long chains, from waiting on latency."""
    terms = [repr(value) for value in coefficients]
    level = 0
    while len(terms) > 1:
        power = powers[level]
        terms = [f"({terms[i]} + {power} * {terms[i + 1]})" if i + 1 < len(terms)
                 else terms[i] for i in range(0, len(terms), 2)]
        level += 1
    return terms[0]


#: ``rint`` and ``floor`` as LLVM's intrinsics, which a CPU compiler inlines (OpenCL's are library
#: calls on PoCL); on SPIR (the Oclgrind simulator of ``fmmloopy check --memcheck``, which
#: cannot run the intrinsics) OpenCL's own.
_ROUNDING = ("#if defined(__SPIR__) || defined(__SPIR32__) || defined(__SPIR64__)\n"
             "#define FMMLOOPY_RINT(x) rint(x)\n#define FMMLOOPY_FLOOR(x) floor(x)\n"
             "#else\n"
             "#define FMMLOOPY_RINT(x) __builtin_rint(x)\n"
             "#define FMMLOOPY_FLOOR(x) __builtin_floor(x)\n"
             "#endif\n")


def _reduced_polynomials(type_name: str) -> str:
    """The lines both ``sin``/``cos`` helpers share, given ``n`` (the quadrant's count): ``r =
    x - n pi / 2`` in two parts, then ``s`` and ``c``, the polynomials of ``sin r`` and ``cos
    r``, in variables of ``type_name``."""
    pi_half = _PI_HALF_PARTS
    return (f"  {type_name} r = x - n * {pi_half[0]};\n"
            f"  r = r - n * {pi_half[1]};\n"
            f"  {type_name} t = r * r, t2 = t * t, t4 = t2 * t2;\n"
            f"  {type_name} s = r + r * t * {_estrin(_SIN_COEFFICIENTS, ('t', 't2', 't4'))};\n"
            f"  {type_name} c = 1.0 - 0.5 * t + t2 * "
            f"{_estrin(_COS_COEFFICIENTS, ('t', 't2', 't4'))};\n")


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
    reduction = (
        "  double n = FMMLOOPY_RINT(x * 0x1.45f306dc9c883p-1);\n" + _reduced_polynomials("double")
        + "  double q = n - 4.0 * FMMLOOPY_FLOOR(n * 0.25);\n"
        "  int odd = q == 1.0 || q == 3.0;\n")
    sine = ("  double v = odd ? c : s;\n"
            "  return q >= 2.0 ? -v : v;\n")
    cosine = ("  double v = odd ? s : c;\n"
              "  return (q == 1.0 || q == 2.0) ? -v : v;\n")
    helpers = "".join(
        f"inline __attribute__((always_inline)) double {_PREFIX}_{name}(double x)\n"
        "{\n" + reduction + body + "}\n"
        for name, body in (("sin", sine), ("cos", cosine)))
    text = (_ROUNDING + helpers
            + "#ifdef sin\n#undef sin\n#endif\n#ifdef cos\n#undef cos\n#endif\n"
            f"#define sin(x) {_PREFIX}_sin(x)\n"
            f"#define cos(x) {_PREFIX}_cos(x)")
    return f"002_{_PREFIX}", text


def lane_trig_preamble(width: int) -> tuple[str, str]:
    """A preamble (key, text) defining ``sin(x)`` and ``cos(x)`` for ``double`` and
    ``double<width>`` (the calls of explicit vector lanes,
    :func:`~fmmloopy.tuning.target_lanes.targets_in_vector_lanes`; PoCL's library functions of
    vectors measured at half the rate of the work-item path's inline scalar helpers, Helmholtz's
    P2P on AVX-512). The reduction and polynomials of :func:`trig_preamble`, with the quadrant
    ``n`` rounded half away from zero and taken as an integer (``__builtin_convertvector``,
    which compiles to the vector conversion instructions: OpenCL's ``rint`` and ``floor`` of a
    vector are library calls), so the same accuracy; the quadrant is chosen by vector
    selects."""
    def helper(name: str, type_name: str, integer: str, body: str) -> str:
        if type_name == "double":
            rounded = ("  long k = (long) (y + (y >= 0.0 ? 0.5 : -0.5));\n"
                       "  double n = (double) k;\n")
        else:
            rounded = (f"  {integer} k = __builtin_convertvector(y + (y >= 0.0 ? "
                       f"({type_name}) (0.5) : ({type_name}) (-0.5)), {integer});\n"
                       f"  {type_name} n = __builtin_convertvector(k, {type_name});\n")
        return (f"inline __attribute__((overloadable, always_inline)) {type_name} "
                f"{_PREFIX}_lane_{name}({type_name} x)\n{{\n"
                f"  {type_name} y = x * 0x1.45f306dc9c883p-1;\n" + rounded
                + _reduced_polynomials(type_name) + f"  {integer} q = k & 3;\n" + body + "}\n")
    sine = "  return (q & 2) != 0 ? -((q & 1) != 0 ? c : s) : ((q & 1) != 0 ? c : s);\n"
    cosine = ("  return ((q == 1) | (q == 2)) != 0 ? -((q & 1) != 0 ? s : c) "
              ": ((q & 1) != 0 ? s : c);\n")
    helpers = "".join(helper(name, type_name, integer, body)
                      for type_name, integer in (("double", "long"),
                                                 (f"double{width}", f"long{width}"))
                      for name, body in (("sin", sine), ("cos", cosine)))
    text = (helpers + "#ifdef sin\n#undef sin\n#endif\n#ifdef cos\n#undef cos\n#endif\n"
            f"#define sin(x) {_PREFIX}_lane_sin(x)\n"
            f"#define cos(x) {_PREFIX}_lane_cos(x)")
    return f"002_{_PREFIX}_lane{width}", text


#: OpenCL's ``fma`` is a library call on PoCL (``cdouble_fma`` of ``pyopencl-complex.h`` uses
#: it); as a multiply-add the compiler contracts it under ``-cl-fast-relaxed-math``.
FMA_PREAMBLE = ("000_fmmloopy_fma",
                "#ifdef fma\n#undef fma\n#endif\n#define fma(a, b, c) ((a) * (b) + (c))")


#: ``(exp(r) - 1 - r) / r^2`` as a polynomial in ``r`` on ``|r| <= ln(2) / 2``: a least-squares
#: fit on 800 Chebyshev nodes of the Taylor series (made with numpy for this module); the
#: relative error of ``exp(r)`` from it is below 5e-17 there.
_EXP_COEFFICIENTS = (0.5000000000000001, 0.16666666666666669, 0.04166666666662355,
                     0.00833333333333032, 0.001388888891782649, 0.00019841269858564384,
                     2.480152019474326e-05, 2.755727400787306e-06, 2.7620625655684606e-07,
                     2.5098979306945756e-08)
#: ``ln 2`` as two doubles, the first of 42 significant bits (``k`` times it is exact for
#: ``|k| < 2^11``), the second the rest rounded (their sum is within 2e-31 of ``ln 2``).
_LN2_PARTS = ("0x1.62e42fefa38p-1", "0x1.ef35793c76730p-45")
#: The arguments ``exp`` clamps to: ``exp(-708)`` (3.3e-308) is near the smallest normal double
#: (below it the result is that, not a subnormal or 0), ``exp(709)`` (8.2e307) near the largest.
EXP_RANGE = (-708.0, 709.0)


def exp_preamble() -> tuple[str, str]:
    """A preamble (key, text) defining ``exp(x)`` for ``double`` as an inline helper:
    ``k = rint(x / ln 2)``, ``r = x - k ln 2`` in two parts, ``exp(r)`` by a polynomial
    (Estrin's scheme), times ``2^k`` made from its bits.

    Accuracy: within a few units in the last place (relative) for ``x`` in :data:`EXP_RANGE`;
    ``x`` is clamped to that range (below it the result is 3.3e-308 instead of a subnormal or
    0: an absolute error below 3.4e-308; above it, 8.2e307 instead of inf).
    ``x`` must not be NaN."""
    low, high = EXP_RANGE
    coefficients = _EXP_COEFFICIENTS
    text = (_ROUNDING
            + "inline __attribute__((always_inline)) double fmmloopy_exp(double x)\n"
            "{\n"
            f"  x = x < {low!r} ? {low!r} : (x > {high!r} ? {high!r} : x);\n"
            "  double k = FMMLOOPY_RINT(x * 0x1.71547652b82fep+0);\n"
            f"  double r = x - k * {_LN2_PARTS[0]};\n"
            f"  r = r - k * {_LN2_PARTS[1]};\n"
            "  double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;\n"
            f"  double e = 1.0 + r + r2 * {_estrin(coefficients, ('r', 'r2', 'r4', 'r8'))};\n"
            "  return e * as_double((long) ((int) k + 1023) << 52);\n"
            "}\n"
            "#ifdef exp\n#undef exp\n#endif\n"
            "#define exp(x) fmmloopy_exp(x)")
    return "002_fmmloopy_exp", text


class _CalledFunctions(Collector):
    def map_call(self, expr, *args, **kwargs):
        name = getattr(expr.function, "name", None)
        return ({name} if name else set()) | super().map_call(expr, *args, **kwargs)


#: The preamble of each function :func:`use_inline_math` replaces, by the name called.
INLINE_FUNCTIONS = {"exp": exp_preamble, "sin": trig_preamble, "cos": trig_preamble}


def called_functions(knl: lp.TranslationUnit) -> set[str]:
    """The names of the functions ``knl`` calls, in its instructions and substitution rules."""
    entry = knl.default_entrypoint
    collect = _CalledFunctions()
    called: set[str] = set()
    for rule in entry.substitutions.values():
        called |= collect(rule.expression)
    for insn in entry.instructions:
        for expression in (getattr(insn, "expression", None), *insn.predicates):
            if expression is not None:
                called |= collect(expression)
    return called


def use_inline_math(knl: lp.TranslationUnit) -> lp.TranslationUnit:
    """Add the preambles of the functions of :data:`INLINE_FUNCTIONS` that ``knl`` calls
    (:func:`called_functions`), so that they compile to inline arithmetic. Only for kernels
    whose calls of them take ``double`` (or ``float``, computed in ``double``) scalars: not the
    ``double8`` calls of explicit vector lanes."""
    for name in sorted(called_functions(knl) & set(INLINE_FUNCTIONS)):
        knl = add_preamble(knl, *INLINE_FUNCTIONS[name]())
    return knl
