"""Reciprocal square roots by Newton steps (CPU recipes): ``c / sqrt(e)`` computed as
``c * rsqrt(e)``, a first estimate refined in FMA, for every pair (:func:`use_newton_rsqrt`) or
for one target of each pair (:func:`split_targets_over_rsqrt`).

Recipes import them from :mod:`fmmloopy.tuning.tools`.
"""

from __future__ import annotations

import loopy as lp
import loopy.match as lp_match
import pymbolic.primitives as prim
from loopy.symbolic import IdentityMapper
from pymbolic.mapper.substitutor import substitute

from fmmloopy.tuning.kernel_options import add_preamble
from fmmloopy.tuning.loop_padding import pad_loop
from fmmloopy.tuning.matching import any_of_ids

#: Refinement :func:`use_newton_rsqrt` applies by default to each kind of first estimate, as
#: ``(steps, order)``: enough for float64 (relative error ~1e-16) over the range the estimate
#: covers. Order 2 is Newton's step ``y += y e / 2``, order 3 the third-order (Halley-type) step
#: ``y += y e (1/2 + 3/8 e)``, with ``e = 1 - x y^2`` (each step raises the estimate's relative
#: error to the power ``order``).
NEWTON_RSQRT_REFINEMENT = {"bits": (4, 2), "float": (1, 3)}

#: First estimates of ``1/sqrt(x)`` for :func:`use_newton_rsqrt`, as OpenCL C returning a
#: ``double`` ``y`` from the ``double`` ``x``.
#:
#: ``bits``: the "fast inverse square root" on the double's bits, ``0x5FE6EB50C7B537A9 -
#: (bits >> 1)``: relative error at most 3.4e-2 for every normal ``x``, integer operations only.
#: ``float``: ``x`` rounded to float and ``1.0f / sqrt`` of it, which LLVM compiles under
#: ``-cl-fast-relaxed-math`` to the hardware's float estimate ``vrsqrtps`` and one float Newton
#: step (relative error about 2e-7); the float is clamped to ``[2^-126, 2^127]`` (normal floats;
#: in float, half the cost of clamping the double), so the result is right for ``x`` in that
#: range and wrong (possibly inf) beyond it.
NEWTON_RSQRT_ESTIMATES = {
    "bits": "double y = as_double(0x5FE6EB50C7B537A9UL - (as_ulong(x) >> 1));",
    "float": "double y = (double) (1.0f / __builtin_sqrtf(\n"
             "      __builtin_fminf(__builtin_fmaxf((float) x, 0x1p-126f), 0x1p127f)));",
}

#: The most relative error of each first estimate (before any step).
NEWTON_RSQRT_ESTIMATE_ERRORS = {"bits": 3.4e-2, "float": 2e-7}


def newton_steps_for(estimate: str, rsqrt_error: float | None, order: int | None = None,
                     ) -> int | None:
    """The fewest steps of ``order`` (default: the estimate's, :data:`NEWTON_RSQRT_REFINEMENT`)
    that bring ``estimate`` within ``rsqrt_error`` (the relative error each ``1/sqrt`` may carry,
    :mod:`fmmloopy.maths.pair_precision`), or None (the default steps: float64's own) without
    one or where the default steps are no more. An order-2 step turns an error ``e`` into
    ``3 e^2 / 2``, an order-3 step into ``5 e^3 / 2``, an order-4 step into ``35 e^4 / 8``
    (``e = 1 - x y^2`` is about twice the estimate's error), each plus a few roundings
    (``1e-16``)."""
    default_steps, default_order = NEWTON_RSQRT_REFINEMENT[estimate]
    order = default_order if order is None else order
    if rsqrt_error is None:
        return None
    error = NEWTON_RSQRT_ESTIMATE_ERRORS[estimate]
    for steps in range(1, default_steps):
        error = _STEP_ERROR[order](error) + 1e-16
        if error <= rsqrt_error:
            return steps
    return None


#: The refinement steps of :func:`newton_rsqrt_preamble`, by order (``h = x / 2``), written as
#: multiply-adds that ``-cl-fast-relaxed-math`` lets the compiler contract to FMAs (PoCL does).
#: Not ``__builtin_fma``: the Oclgrind simulator of ``fmmloopy check --memcheck`` cannot run
#: ``llvm.fma``, and OpenCL's ``fma()`` is a library call on PoCL that stops vectorisation.
#: Uncontracted, a step rounds its correction ``r`` (a difference near the unit) once more: the
#: result stays within a few units in the last place.
_NEWTON_RSQRT_STEP = {
    2: "  r = 0.5 - h * y * y;\n  y = y + y * r;\n",
    3: "  r = 1.0 - x * y * y;\n  y = y + y * r * (0.5 + 0.375 * r);\n",
    4: "  r = 1.0 - x * y * y;\n  y = y + y * r * (0.5 + r * (0.375 + r * 0.3125));\n",
}
#: What a step of each order leaves of an estimate's relative error ``error``: the first term of
#: the series of ``(1 - e)^(-1/2)`` it drops, with ``e = 1 - x y^2`` about twice the error
#: (``3 e^2 / 8``, ``5 e^3 / 16``, ``35 e^4 / 128``).
_STEP_ERROR = {2: lambda error: 1.5 * error ** 2, 3: lambda error: 2.5 * error ** 3,
               4: lambda error: 4.375 * error ** 4}

#: Name of the preamble's helper, and of the key under which :func:`use_newton_rsqrt` adds it.
NEWTON_RSQRT_HELPER = "fmmloopy_rsqrt_newton"


def newton_rsqrt_preamble(estimate: str = "bits", steps: int | None = None,
                          order: int | None = None) -> tuple[str, str]:
    """The preamble of :func:`use_newton_rsqrt`: a helper ``double -> double`` (an estimate
    refined by ``steps`` steps of ``order`` 2 or 3 in FMA, defaults
    :data:`NEWTON_RSQRT_REFINEMENT`) and ``#define rsqrt(x)`` calling it."""
    default_steps, default_order = NEWTON_RSQRT_REFINEMENT[estimate]
    steps = default_steps if steps is None else steps
    order = default_order if order is None else order
    newton = _NEWTON_RSQRT_STEP[order] * steps
    text = (f"inline __attribute__((always_inline)) double {NEWTON_RSQRT_HELPER}(double x)\n"
            "{\n"
            f"  {NEWTON_RSQRT_ESTIMATES[estimate]}\n"
            "  double h = 0.5 * x, r;\n"
            f"{newton}"
            "  return y;\n"
            "}\n"
            "#ifdef rsqrt\n#undef rsqrt\n#endif\n"
            f"#define rsqrt(x) {NEWTON_RSQRT_HELPER}(x)")
    return f"001_{NEWTON_RSQRT_HELPER}", text


class ReciprocalSqrt(IdentityMapper):
    """``c / sqrt(e)`` -> ``c * rsqrt(e)`` (``rsqrt(e)`` where ``c`` is 1); counts them."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def map_quotient(self, expr, *args, **kwargs):
        denominator = expr.denominator
        if (isinstance(denominator, prim.Call) and len(denominator.parameters) == 1
                and isinstance(denominator.function, prim.Variable)
                and denominator.function.name == "sqrt"):
            self.count += 1
            call = prim.Call(prim.Variable("rsqrt"),
                             (self.rec(denominator.parameters[0], *args, **kwargs),))
            numerator = self.rec(expr.numerator, *args, **kwargs)
            return call if numerator == 1 else prim.Product((numerator, call))
        return super().map_quotient(expr, *args, **kwargs)


def _check_newton_arguments(estimate: str, steps: int | None, order: int | None) -> None:
    if estimate not in NEWTON_RSQRT_ESTIMATES:
        raise ValueError(f"unknown estimate {estimate!r}; known: {sorted(NEWTON_RSQRT_ESTIMATES)}")
    if steps is not None and steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if order is not None and order not in _NEWTON_RSQRT_STEP:
        raise ValueError(f"order must be one of {sorted(_NEWTON_RSQRT_STEP)}, got {order}")


def _add_newton_preamble(knl, estimate, steps, order):
    key, text = newton_rsqrt_preamble(estimate, steps, order)
    if any(existing == key and other != text
           for existing, other in knl.default_entrypoint.preambles):
        raise ValueError("use_newton_rsqrt applied twice with different estimates or steps")
    return add_preamble(knl, key, text)


def use_newton_rsqrt(knl: lp.TranslationUnit, estimate: str = "bits",
                     steps: int | None = None, order: int | None = None) -> lp.TranslationUnit:
    """Compute ``c / sqrt(e)`` as ``c * rsqrt(e)``, ``rsqrt`` a first estimate refined by Newton
    steps in FMA, so that a CPU compiler keeps the loop around it in vector registers.

    Every quotient whose denominator is a call of ``sqrt`` (in the substitution rules, e.g. the
    templates' Green's function ``green``, and in the instructions) becomes a product with a call
    of OpenCL's ``rsqrt``, which a preamble (:func:`newton_rsqrt_preamble`) redefines as a helper
    built only from operations LLVM vectorises: the first estimate of
    :data:`NEWTON_RSQRT_ESTIMATES` (``estimate``), then ``steps`` steps of ``order`` (default
    :data:`NEWTON_RSQRT_REFINEMENT`).

    What it computes, with the defaults: ``1/sqrt(x)`` to within a few units in the last place
    for ``x`` from 2^-126 (1.2e-38) to 2^127 (1.7e38) for both estimates (``bits``: for every
    normal positive double); at ``x == 0`` a large or infinite value, so the templates'
    ``If(r2 > 0, ..., 0)`` must select it away (it does, also under
    ``-cl-fast-relaxed-math``: a select, not a multiplication); subnormal ``x``, ``x`` beyond the
    range, infinities and NaN give wrong values. A kernel without ``c / sqrt(e)`` is returned
    unchanged. Call it on the kernel a recipe receives (before loopy resolves its calls).

    Speed, honestly: on a Zen 1 CPU (AVX2, 256-bit FMA as two 128-bit uops, 2 FMA pipes) this
    was measured *slower* than ``1 / sqrt`` with :func:`use_builtin_sqrt`, with either estimate
    (docs/history.md, 2026-11-23): ``vsqrtpd`` + ``vdivpd`` cost 16 cycles per 4 pairs,
    the refinement plus the rest of the pair about as many FMA-pipe cycles, and the two do not
    overlap as well as they would if the divider were idle (docs: :func:`split_targets_over_rsqrt`,
    which uses both). Where FMAs are wide and the divider is relatively slower (AVX-512), the
    balance tips the other way.
    """
    _check_newton_arguments(estimate, steps, order)
    entry = knl.default_entrypoint
    if entry.state >= lp.KernelState.CALLS_RESOLVED:
        raise ValueError("use_newton_rsqrt needs a kernel whose calls are not resolved yet "
                         "(apply it to the kernel a recipe receives)")
    mapper = ReciprocalSqrt()
    substitutions = {name: rule.copy(expression=mapper(rule.expression))
                     for name, rule in entry.substitutions.items()}
    instructions = [insn.with_transformed_expressions(mapper) for insn in entry.instructions]
    if not mapper.count:
        return knl
    knl = knl.with_kernel(entry.copy(substitutions=substitutions, instructions=instructions))
    return _add_newton_preamble(knl, estimate, steps, order)


class _NewtonForSomeTargets(IdentityMapper):
    """``green(...)`` -> ``If(pair == 0, green(...), green_newton(...))``."""

    def __init__(self, pair: str):
        super().__init__()
        self.pair = pair

    def map_call(self, expr, *args, **kwargs):
        if isinstance(expr.function, prim.Variable) and expr.function.name == "green":
            newton = prim.Call(prim.Variable("green_newton"), expr.parameters)
            return prim.If(prim.Comparison(prim.Variable(self.pair), "==", 0), expr, newton)
        return super().map_call(expr, *args, **kwargs)


class _ClampTarget(IdentityMapper):
    """``targets[k, itgt_start + j]`` -> ``targets[k, itgt_start + (j < ntgt ? j : ntgt - 1)]``
    (a ternary, not ``min``: PoCL calls a library function for ``min``)."""

    def map_subscript(self, expr, *args, **kwargs):
        start = prim.Variable("itgt_start")
        if (expr.aggregate != prim.Variable("targets") or not isinstance(expr.index, tuple)
                or not isinstance(expr.index[1], prim.Sum) or start not in expr.index[1].children):
            return super().map_subscript(expr, *args, **kwargs)
        rest = tuple(c for c in expr.index[1].children if c != start)
        j = prim.Sum(rest) if len(rest) > 1 else rest[0]
        ntgt = prim.Variable("ntgt")
        clamped = prim.If(prim.Comparison(j, "<", ntgt), j, ntgt - 1)
        return expr.aggregate[expr.index[0], start + clamped]


#: The instruction ids and names of the P2P template that :func:`split_targets_over_rsqrt`
#: relies on (any other kernel is returned unchanged).
_P2P_PARTS = ({"init", "update", "store", "offset0", "offset1", "offset2"}, "green", "acc")


def split_targets_over_rsqrt(knl: lp.TranslationUnit, estimate: str = "float",
                             steps: int | None = None, order: int | None = None,
                             ) -> lp.TranslationUnit:
    """P2P with two targets per work-item: one's ``1/sqrt`` by ``sqrt`` and a division, the
    other's by the Newton ``rsqrt`` of :func:`use_newton_rsqrt`, in the same source loop.

    Why: on a CPU without AVX-512 (measured on Zen 1) ``vsqrtpd`` + ``vdivpd`` occupy the divider
    16 cycles per 4 pairs while the FMA pipes idle half of it, and the Newton refinement needs
    the FMA pipes only; alone each is bound by its own unit, together (the targets interleaved
    in one vectorised loop over the sources, which are loaded once for both) they share the
    work: P2P measured a little faster than the plain ``sqrt`` recipe there, and the same loop
    written by hand faster still (the gap is outside the inner loop, not yet found;
    docs/history.md, 2026-11-23). Accuracy is that of :func:`use_newton_rsqrt`
    (``r^2`` from 2^-126 to 2^127 with ``float``) for the second target of each pair.

    How: ``itgt`` is split into (``itgt``, ``itgt_pair``) with ``itgt_pair`` of length 2,
    unrolled, innermost (inside the source loops); ``acc`` gets one element per target of the
    pair; the instructions in the source loops run under the first target's guard and read the
    second target's coordinates clamped to the box (an odd box computes a duplicate that is not
    stored); ``init`` and ``store`` get loops of their own. Apply it before the target loop is
    spread over work-items (``spread_over_local_axis(knl, "itgt", ...)`` then spreads the pairs).
    Kernels other than the P2P template (kernel ``p2p`` with instructions ``update``,
    ``offset0..2``, ``init``, ``store``, rule ``green``, temporary ``acc``) are returned
    unchanged: the other pairwise operators keep the plain ``sqrt``, and so does a P2P of
    several outputs or inputs (a gradient, dipoles).
    """
    _check_newton_arguments(estimate, steps, order)
    entry = knl.default_entrypoint
    ids, rule, acc = _P2P_PARTS
    if (entry.name != "p2p" or not ids <= {insn.id for insn in entry.instructions}
            or set(entry.substitutions) != {rule}
            or acc not in entry.temporary_variables or "itgt" not in entry.all_inames()):
        return knl
    mapper = ReciprocalSqrt()
    newton = entry.substitutions[rule]
    newton = newton.copy(name=f"{rule}_newton", expression=mapper(newton.expression))
    if not mapper.count:
        return knl
    pair = "itgt_pair"
    instructions = [insn.with_transformed_expressions(_NewtonForSomeTargets(pair))
                    if insn.id == "update" else insn for insn in entry.instructions]
    knl = knl.with_kernel(entry.copy(substitutions={**entry.substitutions, newton.name: newton},
                                     instructions=instructions))
    knl = _add_newton_preamble(knl, estimate, steps, order)
    knl = lp.split_iname(knl, "itgt", 2, inner_iname=pair, outer_iname="itgt_pairs")
    knl = lp.rename_iname(knl, "itgt_pairs", "itgt")
    knl = pad_loop(knl, pair, 2)
    entry = knl.default_entrypoint
    first = {prim.Variable(pair): 0}
    inside = {"update", "offset0", "offset1", "offset2"}
    instructions = []
    for insn in entry.instructions:
        if pair in insn.within_inames and insn.id != "store":
            insn = insn.copy(predicates=frozenset(substitute(p, first) for p in insn.predicates))
        if insn.id.startswith("offset"):
            insn = insn.with_transformed_expressions(_ClampTarget())
        instructions.append(insn)
    knl = knl.with_kernel(entry.copy(instructions=instructions))
    knl = lp.privatize_temporaries_with_inames(knl, pair, only_var_names={acc})
    for insn_id in ("init", "store"):
        knl = lp.duplicate_inames(knl, pair, within=f"id:{insn_id}",
                                  new_inames=f"{pair}_{insn_id}",
                                  tags={f"{pair}_{insn_id}": "unr"})
    outside = lp_match.And((lp_match.Iname(pair), lp_match.Not(any_of_ids(inside))))
    knl = lp.remove_inames_from_insn(knl, frozenset([pair]), outside)
    knl = lp.tag_inames(knl, {pair: "unr"})
    return lp.prioritize_loops(knl, f"isrc_box,isrc,{pair}")
