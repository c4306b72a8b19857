"""Building blocks for recipes: the few transforms every device recipe for these templates needs.

Each takes and returns a loopy ``TranslationUnit`` and never changes what is computed.
"""

from __future__ import annotations

from collections import Counter
from functools import cache

import islpy as isl
import loopy as lp
import numpy as np
import pymbolic.primitives as prim
import pyopencl as cl
from loopy.isl_helpers import make_slab, static_min_of_pw_aff
from loopy.match import parse_match
from loopy.symbolic import (
    IdentityMapper,
    aff_to_expr,
    constraint_to_cond_expr,
    get_dependencies,
)
from pymbolic.mapper import CombineMapper
from pymbolic.mapper.substitutor import substitute

#: A loopy preamble that maps OpenCL's ``sqrt`` onto the LLVM intrinsic. PoCL 3.0 otherwise calls
#: a library ``sqrt``, which keeps LLVM from vectorising the work-group loop (docs/recipes.md).
BUILTIN_SQRT_PREAMBLE = ("000_fmmloopy_builtin_sqrt",
                         "#ifdef sqrt\n#undef sqrt\n#endif\n#define sqrt(x) __builtin_sqrt(x)")
#: The same for kernels in float: the float intrinsic (``__builtin_sqrt`` would take every float
#: to double and back, and halve the lanes of every vector that holds it).
BUILTIN_SQRTF_PREAMBLE = ("000_fmmloopy_builtin_sqrt",
                          "#ifdef sqrt\n#undef sqrt\n#endif\n#define sqrt(x) __builtin_sqrtf(x)")

#: Arguments whose dtype is a pairwise kernel's coordinate precision.
_COORDINATE_ARGUMENTS = ("targets", "sources", "target_surface", "source_surface")


def add_preamble(knl: lp.TranslationUnit, key: str, text: str) -> lp.TranslationUnit:
    """Add a preamble (``#define``, helper function) to the entry kernel, once per key."""
    entry = knl.default_entrypoint
    if any(existing == key for existing, _ in entry.preambles):
        return knl
    return knl.with_kernel(entry.copy(preambles=(*entry.preambles, (key, text))))


def is_single_precision(knl: lp.TranslationUnit) -> bool:
    """Whether a pairwise kernel's coordinates are float32 (False for a kernel without them)."""
    arguments = knl.default_entrypoint.arg_dict
    return any(arguments[name].dtype.numpy_dtype == np.float32
               for name in _COORDINATE_ARGUMENTS if name in arguments)


def use_builtin_sqrt(knl: lp.TranslationUnit) -> lp.TranslationUnit:
    """Let the OpenCL compiler inline and vectorise ``sqrt`` (see :data:`BUILTIN_SQRT_PREAMBLE`;
    the float intrinsic in a float32 kernel, :data:`BUILTIN_SQRTF_PREAMBLE`)."""
    return add_preamble(knl, *(BUILTIN_SQRTF_PREAMBLE if is_single_precision(knl)
                               else BUILTIN_SQRT_PREAMBLE))


# {{{ reciprocal square root by Newton steps (CPU recipes)

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

#: The refinement steps of :func:`newton_rsqrt_preamble`, by order (``h = x / 2``), written as
#: multiply-adds that ``-cl-fast-relaxed-math`` lets the compiler contract to FMAs (PoCL does).
#: Not ``__builtin_fma``: the Oclgrind simulator of ``fmmloopy check --memcheck`` cannot run
#: ``llvm.fma``, and OpenCL's ``fma()`` is a library call on PoCL that stops vectorisation.
#: Uncontracted, a step rounds its correction ``r`` (a difference near the unit) once more: the
#: result stays within a few units in the last place.
_NEWTON_RSQRT_STEP = {
    2: "  r = 0.5 - h * y * y;\n  y = y + y * r;\n",
    3: "  r = 1.0 - x * y * y;\n  y = y + y * r * (0.5 + 0.375 * r);\n",
}

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
    is *slower* than ``1 / sqrt`` with :func:`use_builtin_sqrt` (P2P at 10^6 points: about 0.85x
    with ``float``, 0.65x with ``bits``): ``vsqrtpd`` + ``vdivpd`` cost 16 cycles per 4 pairs,
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
    work: P2P 1.05x (10^6 sphere) to 1.09x (10^6 cube) the plain ``sqrt`` recipe here, where
    the same loop written by hand reaches 1.2-1.26x (the gap is outside the inner loop, not yet
    found). Accuracy is that of :func:`use_newton_rsqrt`
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
    others = " or ".join(f"id:{i}" for i in sorted(inside))
    knl = lp.remove_inames_from_insn(knl, frozenset([pair]), f"iname:{pair} and not ({others})")
    knl = lp.tag_inames(knl, {pair: "unr"})
    return lp.prioritize_loops(knl, f"isrc_box,isrc,{pair}")

# }}}


# {{{ calls shared by a pairwise kernel's entries, once per pair

#: Functions :func:`hoist_shared_calls` computes once per pair: finite for every finite
#: argument, so they may be computed outside the entries' ``If(r2 > 0, ...)`` guards.
HOISTED_FUNCTIONS = ("exp", "sin", "cos")


class _CallCollector(CombineMapper):
    """The calls of :data:`HOISTED_FUNCTIONS` in an expression, with their multiplicity, whose
    arguments are finite at ``d = 0`` too (:func:`_may_be_infinite`)."""

    def combine(self, values):
        total: Counter = Counter()
        for value in values:
            total.update(value)
        return total

    def map_constant(self, expr):
        return Counter()

    map_variable = map_constant

    def map_call(self, expr):
        inner = self.combine(self.rec(parameter) for parameter in expr.parameters)
        name = getattr(expr.function, "name", None)
        if name in HOISTED_FUNCTIONS and not any(_may_be_infinite(p) for p in expr.parameters):
            inner[expr] += 1
        return inner

    def map_comparison(self, expr):
        return self.combine((self.rec(expr.left), self.rec(expr.right)))


def _may_be_infinite(expr) -> bool:
    """Whether ``expr`` may be infinite or NaN at ``d = 0``: it holds a quotient, a negative
    or symbolic power or a ``log`` (selections are not analysed: they count as such too)."""
    if isinstance(expr, prim.Quotient | prim.If):
        return True
    if isinstance(expr, prim.Power):
        whole = isinstance(expr.exponent, int | float) and expr.exponent >= 0
        return not whole or _may_be_infinite(expr.base)
    if isinstance(expr, prim.Sum | prim.Product):
        return any(_may_be_infinite(child) for child in expr.children)
    if isinstance(expr, prim.Call):
        return (getattr(expr.function, "name", None) == "log"
                or any(_may_be_infinite(p) for p in expr.parameters))
    return False


class _ReplaceCalls(IdentityMapper):
    def __init__(self, names: dict):
        super().__init__()
        self.names = names

    def map_call(self, expr, *args, **kwargs):
        if expr in self.names:
            return prim.Variable(self.names[expr])
        return super().map_call(expr, *args, **kwargs)


def hoist_shared_calls(knl: lp.TranslationUnit) -> lp.TranslationUnit:
    """Compute each call to ``exp``, ``sin`` or ``cos`` that the pairwise template's entries
    (its ``green*`` rules) make more than once, once per pair, into a temporary
    ``shared_<k>`` beside the offset: the OpenCL compiler does not merge such calls across
    the entries (Helmholtz's potential and gradient call ``exp(1j k r)`` seven times per
    pair). Only calls whose arguments are finite at ``d = 0`` are moved out of the entries'
    guards. Kernels without such calls are returned unchanged. Apply it before the target loop
    is split."""
    entry = knl.default_entrypoint
    updates = [insn for insn in entry.instructions if insn.id.startswith("update")]
    rules = {name: rule for name, rule in entry.substitutions.items()
             if name.startswith("green")}
    counts: Counter = Counter()
    for rule in rules.values():
        counts.update(_CallCollector()(rule.expression))
    shared = sorted((call for call, count in counts.items() if count > 1), key=str)
    if not updates or not shared:
        return knl
    names = {call: f"shared_{k}" for k, call in enumerate(shared)}
    replace = _ReplaceCalls(names)
    substitutions = dict(entry.substitutions)
    for name, rule in rules.items():
        substitutions[name] = rule.copy(expression=replace(rule.expression))
    template = updates[0]
    # What the update waits for (offsets, loads its guard reads), but not its accumulator.
    waits_for = frozenset(d for d in template.depends_on if not d.startswith("init"))
    computed = [lp.Assignment(prim.Variable(name), call, id=name,
                              within_inames=template.within_inames,
                              predicates=template.predicates, depends_on=waits_for)
                for call, name in names.items()]
    hoisted = frozenset(names.values())
    instructions = [insn.copy(depends_on=insn.depends_on | hoisted)
                    if insn in updates else insn for insn in entry.instructions]
    temporaries = dict(entry.temporary_variables)
    temporaries |= {name: lp.TemporaryVariable(name, None, shape=()) for name in names.values()}
    return knl.with_kernel(entry.copy(instructions=instructions + computed,
                                      substitutions=substitutions,
                                      temporary_variables=temporaries))

# }}}


def add_build_options(knl: lp.TranslationUnit, *options: str) -> lp.TranslationUnit:
    """Append OpenCL compiler options (e.g. ``-cl-fast-relaxed-math``)."""
    current = list(knl.default_entrypoint.options.build_options or [])
    return lp.set_options(knl, build_options=current + [o for o in options if o not in current])


def spread_over_local_axis(knl: lp.TranslationUnit, loop: str, width: int,
                           ) -> lp.TranslationUnit:
    """Split ``loop`` by ``width`` and map the inner part to ``l.0`` (work-items of a group).

    Instructions outside ``loop`` (the loads of loop bounds in the box loop) are made to run on
    every work-item, as loopy requires once a local axis exists.
    """
    inner = f"{loop}_inner"
    knl = lp.split_iname(knl, loop, width, inner_iname=inner, outer_iname=f"{loop}_outer",
                         inner_tag="l.0")
    return lp.add_inames_to_insn(knl, inner, f"not iname:{inner}")


def parallelize_box_loop(knl: lp.TranslationUnit, axis: int = 0) -> lp.TranslationUnit:
    """One work-group per target box (``itgt_box`` -> ``g.<axis>``)."""
    return lp.tag_inames(knl, {"itgt_box": f"g.{axis}"})


# {{{ work-groups that synchronise (GPU recipes)

#: SIMD width assumed where the device does not report one (a multiple of NVIDIA's 32).
DEFAULT_SIMD_WIDTH = 32


def simd_width(device) -> int:
    """Work-items the device runs in lock-step: NVIDIA's warp or AMD's wavefront, read through
    the vendors' device-attribute extensions, else :data:`DEFAULT_SIMD_WIDTH`."""
    for attribute in ("warp_size_nv", "wavefront_width_amd"):
        try:
            return int(getattr(device, attribute))
        except (AttributeError, cl.Error):
            pass
    return DEFAULT_SIMD_WIDTH


def local_work_size(device, items: int, largest: int) -> int:
    """Work-items for ``items`` parallel tasks: rounded up to whole SIMD widths, at most
    ``largest`` and the device's ``max_work_group_size`` (more tasks then run in chunks)."""
    simd = simd_width(device)
    cap = max(simd, min(largest, device.max_work_group_size) // simd * simd)
    return min(cap, -(-items // simd) * simd)


def _only(domain, inames) -> isl.BasicSet:
    """``domain`` with its loops other than ``inames`` projected out."""
    for name in domain.get_var_names(isl.dim_type.set):
        if name not in inames:
            domain = domain.project_out(isl.dim_type.set,
                                        domain.get_var_dict()[name][1], 1)
    return domain


def _involves(constraint, name: str) -> bool:
    dim_type, index = constraint.get_space().get_var_dict()[name]
    return not constraint.get_coefficient_val(dim_type, index).is_zero()


@lp.for_each_kernel
def pad_loop(kernel: lp.LoopKernel, iname: str, length: int | None = None,
             unguarded: str | None = None) -> lp.LoopKernel:
    """Let ``iname`` run from 0 to ``length`` (default: its largest length), in a domain of its
    own, behind guards.

    Bounds that tie ``iname`` to other loops or to data (``itgt_inner + 16 * itgt_outer <
    max_box_targets`` after a split, ``isrc_stage + 16 * isrc_outer < nsrc``) become predicates
    of the instructions inside ``iname``, except those matching ``unguarded`` (a loopy match
    such as ``"tag:bounds"``, for instructions safe to run anywhere). What for: a local-axis
    iname then has a constant extent even where its bounds came from data (loopy refuses those),
    and the loops around it run the same trip count on every work-item, so barriers inside
    them are reached by all of the work-group.
    """
    length = length or kernel.get_constant_iname_length(iname)
    domains = list(kernel.domains)
    index = kernel.get_home_domain_index(iname)
    home = domains[index]
    dim_type, position = home.get_var_dict()[iname]
    rest = home.project_out(dim_type, position, 1)
    padded = rest.insert_dims(dim_type, position, 1).set_dim_name(dim_type, position, iname)
    padded = padded & make_slab(padded.get_space(), iname, 0, length)

    @cache
    def guards(inames: frozenset[str]) -> frozenset:
        """The bounds of ``iname`` that the padding drops, seen from an instruction in
        ``inames`` (loops it is not in are projected out)."""
        exact, loose = _only(home, inames), _only(padded, inames)
        return frozenset(constraint_to_cond_expr(c) for c in exact.get_constraints()
                         if _involves(c, iname) and not loose.is_subset(loose.add_constraint(c)))

    box = isl.BasicSet(f"{{ [{iname}]: 0 <= {iname} < {length} }}")
    domains[index:index + 1] = [rest] if rest.dim(isl.dim_type.set) else []
    exempt = parse_match(unguarded) if unguarded else (lambda kernel, insn: False)
    instructions = [
        insn.copy(predicates=insn.predicates | guards(insn.within_inames))
        if iname in insn.within_inames and not exempt(kernel, insn) else insn
        for insn in kernel.instructions]
    return kernel.copy(domains=[*domains, box], instructions=instructions)


@lp.for_each_kernel
def unguard(kernel: lp.LoopKernel, insn_match: str) -> lp.LoopKernel:
    """Drop every predicate of the instructions matching ``insn_match`` (which must be safe to
    run wherever their loops are, e.g. the loads of loop bounds: ``"tag:bounds"``)."""
    match = parse_match(insn_match)
    return kernel.copy(instructions=[insn.copy(predicates=frozenset())
                                     if match(kernel, insn) else insn
                                     for insn in kernel.instructions])


def spread_over_work_group(knl: lp.TranslationUnit, loop: str, width: int,
                           ) -> lp.TranslationUnit:
    """:func:`spread_over_local_axis`, made safe for barriers inside the loop.

    The outer part of ``loop`` runs whole chunks of ``width`` on every work-item (guarded
    inside; ``width`` is then the group size even where ``loop`` is shorter), and every
    work-item loads the loop bounds (``tag:bounds``, guards dropped), so all
    work-items of a group walk the same loops and may meet at barriers in them.
    """
    knl = spread_over_local_axis(knl, loop, width)
    knl = pad_loop(knl, f"{loop}_inner", width, unguarded="tag:bounds")
    return unguard(knl, "tag:bounds")


def stage_in_local_memory(knl: lp.TranslationUnit, loop: str, arrays, *, width: int,
                          ) -> lp.TranslationUnit:
    """Read ``arrays`` inside ``loop`` from local memory that the work-group fills first.

    Every read ``a[... loop ...]`` of one of ``arrays`` in an instruction inside ``loop`` (a
    sequential loop of constant length nested in the loops the work-items share) becomes a read
    of ``a_local[k, loop]``; new instructions ``stage_a_local_k``, before ``loop`` and with the
    work-items spread over a copy of it (``<loop>_stage``, ``l.0`` in chunks of ``width``), copy
    the elements in. Loopy puts a local barrier between filling and reading, and one before the
    next filling. Indices may come from data (a source box's first particle): this is the
    staging that ``lp.add_prefetch`` cannot do for them (docs/recipes.md).
    """
    entry = knl.default_entrypoint
    if set(arrays) & entry.get_written_variables():
        raise ValueError(f"cannot stage {sorted(set(arrays) & entry.get_written_variables())}: "
                         "the kernel writes them")
    lower = entry.get_iname_bounds(loop, constants_only=True).lower_bound_pw_aff
    if aff_to_expr(static_min_of_pw_aff(lower, constants_only=True)) != 0:
        raise ValueError(f"loop {loop!r} must start at 0")
    users = [insn for insn in entry.instructions if loop in insn.within_inames]
    local_inames = {iname for iname in entry.all_inames()
                    if entry.iname_tags_of_type(iname, lp.kernel.data.LocalInameTag)}
    accesses: dict[str, list] = {}

    class Stager(IdentityMapper):
        def map_subscript(self, expr):
            name = expr.aggregate.name
            if name not in arrays or loop not in get_dependencies(expr.index):
                return super().map_subscript(expr)
            found = accesses.setdefault(name, [])
            if expr not in found:
                found.append(expr)
            return prim.Variable(f"{name}_local")[found.index(expr), prim.Variable(loop)]

    rewritten = {insn.id: insn.with_transformed_expressions(Stager()) for insn in users}
    if not accesses:
        return knl
    outer = {insn.within_inames - {loop} - local_inames for insn in users}
    if len(outer) != 1:
        raise ValueError(f"the instructions inside {loop!r} sit in different loops: {outer}")
    outer = outer.pop()
    length = entry.get_constant_iname_length(loop)
    writers = entry.writer_map()
    needed = set().union(*(get_dependencies(e) for found in accesses.values() for e in found))
    needed |= set(entry.get_inames_domain(loop).get_var_names(isl.dim_type.param))
    depends_on = frozenset().union(*(writers.get(name, ()) for name in needed))
    temporaries, staging = dict(entry.temporary_variables), []
    for name, found in accesses.items():
        local = f"{name}_local"
        temporaries[local] = lp.TemporaryVariable(
            local, entry.arg_dict[name].dtype, shape=(len(found), length),
            address_space=lp.AddressSpace.LOCAL)
        staging += [lp.Assignment(prim.Variable(local)[k, prim.Variable(loop)], expr,
                                  id=f"stage_{local}_{k}", within_inames=outer | {loop},
                                  depends_on=depends_on)
                    for k, expr in enumerate(found)]
    stage_ids = frozenset(insn.id for insn in staging)
    instructions = [rewritten[insn.id].copy(depends_on=insn.depends_on | stage_ids)
                    if insn.id in rewritten else insn for insn in entry.instructions]
    knl = knl.with_kernel(entry.copy(instructions=instructions + staging,
                                     temporary_variables=temporaries))
    stage = f"{loop}_stage"
    knl = lp.duplicate_inames(knl, loop, within=" or ".join(f"id:{i}" for i in stage_ids),
                              new_inames=stage)
    if length > width:
        knl = lp.split_iname(knl, stage, width, inner_iname=f"{stage}_inner",
                             outer_iname=f"{stage}_outer")
        stage = f"{stage}_inner"
    return lp.tag_inames(pad_loop(knl, stage), {stage: "l.0"})

# }}}


def silence_warnings(knl: lp.TranslationUnit, *names: str) -> lp.TranslationUnit:
    """Silence loopy warnings by name (e.g. ``v1_scheduler_fallback``, which loopy raises for
    any kernel with ``vec`` or ``ilp`` loops: they are scheduled by its older scheduler)."""
    entry = knl.default_entrypoint
    return knl.with_kernel(entry.copy(
        silenced_warnings=frozenset(entry.silenced_warnings) | set(names)))
