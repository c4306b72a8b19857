"""Pairwise kernels with their targets in explicit vector lanes (CPU recipes).

PoCL vectorises a work-group by turning its work-items into a loop. For the pairwise template,
whose source loops run inside each work-item, the accumulators then live in memory across the
source loop, whichever way ``1/sqrt`` is computed. The same sum written with ``double8``
variables (eight targets per vector, each source broadcast) keeps them in registers, several
times faster on AVX-512, fastest with the hardware's 14-bit estimate refined by two Newton
steps (hand-written OpenCL C: docs/performance.md, "Per operator"; docs/history.md,
2026-11-23). :func:`targets_in_vector_lanes` makes that form from the template with loopy's
``vec`` tag; :func:`rsqrt_preamble` is the reciprocal square root.
"""

from __future__ import annotations

import loopy as lp
import numpy as np
import pymbolic.primitives as prim
from loopy.kernel.instruction import CallInstruction
from loopy.symbolic import IdentityMapper, get_dependencies
from pymbolic.mapper.substitutor import substitute

from fmmloopy.maths.templates import pairwise_role
from fmmloopy.tuning.matching import any_of_ids
from fmmloopy.tuning.tools import ReciprocalSqrt, add_preamble, pad_loop, parallelize_box_loop

#: Loops made from the target loop ``itgt``: chunks of a box's targets (sequential), vectors of
#: a chunk (unrolled) and lanes of a vector (``vec``).
CHUNK, CHAIN, LANE = "itgt_chunk", "itgt_chain", "itgt_lane"
#: Loops of the template around the sources (their instructions run once per source).
SOURCE_LOOPS = frozenset({"isrc_box", "isrc"})
#: OpenCL C helper for ``1/sqrt`` that the vector code calls, for ``double`` and vectors.
RSQRT_HELPER = "fmmloopy_vrsqrt"


#: The most relative error of ``vrsqrt14pd`` refined by one Newton step: ``3 e^2 / 8`` for
#: ``e = 1 - x y^2`` below ``2^-13 (1 + 2^-15)``, 5.6e-9, and its roundings.
ONE_STEP_RSQRT_ERROR = 6e-9


def rsqrt_preamble(width: int, single: bool = False, rsqrt_error: float | None = None,
                   ) -> tuple[str, str]:
    """A preamble (key, text) that defines ``rsqrt`` for ``double`` and ``double<width>``
    (``single``: for ``float`` and ``float<width>``, as ``1 / sqrt(x)``, which the compiler
    turns into its single-precision estimate and a Newton step under relaxed math).

    Where the OpenCL compiler targets AVX-512 (``__AVX512F__``: PoCL on such a CPU) and
    ``width`` is 8, the vector form starts from ``vrsqrt14pd`` (relative error below 2^-14)
    and takes one fourth-order step: with ``e = 1 - x y^2`` (below 2^-13), ``y (1 + e/2 +
    3e^2/8 + 5e^3/16)``, the series of ``(1 - e)^(-1/2)`` to its cubic term; the first term
    left out, ``35 e^4 / 128``, is below 2^-53, so the result is within a few units in the last
    place after rounding, for every normal positive double, as after the two Newton steps it
    replaces, in six multiply-adds instead of seven (P2P's rate before and after:
    docs/history.md, 2026-11-28, "One multiplication fewer per pair"); elsewhere it is
    ``1 / sqrt(x)``. Where ``rsqrt_error`` (the relative error each ``1/sqrt`` may carry,
    :mod:`fmmloopy.maths.pair_precision`) allows :data:`ONE_STEP_RSQRT_ERROR`, the AVX-512 form
    takes one Newton step instead (four multiply-adds). ``x == 0`` gives inf or NaN, which the
    templates' ``If(r2 > 0, ...)``
    selects away. The step is written as multiply-adds that ``-cl-fast-relaxed-math`` lets
    the compiler contract.
    """
    def function(type_name: str, body: str) -> str:
        return (f"inline __attribute__((overloadable, always_inline)) {type_name} "
                f"{RSQRT_HELPER}({type_name} x)\n{{\n{body}}}\n")

    if single:
        divide = "  return 1.0f / sqrt(x);\n"
        text = (function("float", divide) + function(f"float{width}", divide)
                + f"#ifdef rsqrt\n#undef rsqrt\n#endif\n#define rsqrt(x) {RSQRT_HELPER}(x)\n")
        return f"002_{RSQRT_HELPER}_float{width}", text
    divide = "  return 1.0 / sqrt(x);\n"
    vector = function(f"double{width}", divide)
    one_step = rsqrt_error is not None and rsqrt_error >= ONE_STEP_RSQRT_ERROR
    if width == 8:
        step = "0.5" if one_step else "(0.5 + e * (0.375 + e * 0.3125))"
        newton = ("  double8 y = __builtin_ia32_rsqrt14pd512_mask(x, (double8) (0.0), "
                  "(unsigned char) 0xff);\n"
                  "  double8 e = 1.0 - x * y * y;\n"
                  f"  return y + (y * e) * {step};\n")
        vector = f"#if defined(__AVX512F__)\n{function('double8', newton)}#else\n{vector}#endif\n"
    text = (function("double", divide) + vector
            + f"#ifdef rsqrt\n#undef rsqrt\n#endif\n#define rsqrt(x) {RSQRT_HELPER}(x)\n")
    return f"002_{RSQRT_HELPER}_{width}" + ("_one_step" if one_step and width == 8 else ""), text


class _PerLane(IdentityMapper):
    """Temporaries named in ``names`` -> ``name[chain, lane]`` (one element per target)."""

    def __init__(self, names, index):
        super().__init__()
        self.names, self.index = frozenset(names), index

    def map_variable(self, expr, *args, **kwargs):
        return prim.Subscript(expr, self.index) if expr.name in self.names else expr


class _HoistCalls(IdentityMapper):
    """Each call whose arguments depend on the lanes -> a temporary per lane, to be assigned by
    a call instruction of its own: loopy vectorises call instructions, not calls inside an
    expression. New calls are collected in :attr:`calls` as ``(temporary, call)``; a call
    already hoisted for an earlier instruction (``known``: call -> temporary, shared by the
    instructions of one source loop) is reused, its temporary listed in :attr:`reused`."""

    def __init__(self, prefix, index, known: dict):
        super().__init__()
        self.prefix, self.index, self.known = prefix, index, known
        self.calls: list[tuple[str, prim.Call]] = []
        self.reused: set[str] = set()

    def map_call(self, expr, *args, **kwargs):
        parameters = tuple(self.rec(p, *args, **kwargs) for p in expr.parameters)
        call = prim.Call(expr.function, parameters)
        if not any(LANE in get_dependencies(p) for p in parameters):
            return call
        if call in self.known:
            self.reused.add(self.known[call])
        else:
            name = self.known[call] = f"{self.prefix}_call{len(self.calls)}"
            self.calls.append((name, call))
        return prim.Variable(self.known[call])[self.index]


def _finite_at_zero(expr, root) -> bool:
    """Whether ``expr`` is finite wherever its operands are, when ``root`` (``1 / sqrt(x)``)
    is replaced by 0: no division and no other call than ``sqrt``, ``exp``, ``sin``, ``cos``
    outside ``root`` itself."""
    if expr == root or not isinstance(expr, prim.ExpressionNode):
        return True
    if isinstance(expr, prim.Variable | prim.Subscript):
        return True
    if isinstance(expr, prim.Sum | prim.Product):
        return all(_finite_at_zero(child, root) for child in expr.children)
    if isinstance(expr, prim.Power):
        return (isinstance(expr.exponent, int) and expr.exponent >= 0
                and _finite_at_zero(expr.base, root))
    if isinstance(expr, prim.Call):
        return (getattr(expr.function, "name", None) in ("sqrt", "exp", "sin", "cos")
                and all(_finite_at_zero(p, root) for p in expr.parameters))
    return False


def _vanishes_with(expr, root) -> bool:
    """Whether ``expr`` is 0 when ``root`` is: a product with ``root`` as a factor, or a sum
    of such products."""
    if isinstance(expr, prim.Sum):
        return all(_vanishes_with(term, root) for term in expr.children)
    return isinstance(expr, prim.Product) and any(
        child == root or isinstance(child, prim.Product) and _vanishes_with(child, root)
        for child in expr.children)


class _GuardTheRoot(IdentityMapper):
    """``If(x > 0, p, 0)`` -> ``p`` with ``1 / sqrt(x)`` as ``If(x > 0, 1 / sqrt(x), 0)``, where
    ``p`` vanishes with that factor and is otherwise finite at ``x == 0`` (the templates' guard
    of ``d == 0`` around a derivative of ``1/r``): the same values (``p`` is 0 where the
    guard says 0, and the guarded root keeps ``inf`` out), but one selection per pair that every
    output shares, instead of one per output, and products the compiler can factor."""

    def map_if(self, expr, *args, **kwargs):
        condition = expr.condition
        if (isinstance(condition, prim.Comparison) and condition.operator == ">"
                and condition.right == 0 and expr.else_ == 0):
            root = prim.Quotient(1, prim.Call(prim.Variable("sqrt"), (condition.left,)))
            then = expr.then
            if _vanishes_with(then, root) and _finite_at_zero(then, root):
                guarded = prim.If(condition, root, 0)
                return _Replace(root, guarded)(then)
        return super().map_if(expr, *args, **kwargs)


class _Replace(IdentityMapper):
    def __init__(self, old, new):
        super().__init__()
        self.old, self.new = old, new

    def map_quotient(self, expr, *args, **kwargs):
        if expr == self.old:
            return self.new
        return super().map_quotient(expr, *args, **kwargs)


def guard_the_root(knl: lp.TranslationUnit) -> lp.TranslationUnit:
    """Every instruction's ``If(x > 0, p, 0)`` guard of a derivative of ``1/r`` moved onto its
    ``1/sqrt(x)`` (:class:`_GuardTheRoot`: the same values, one selection per pair instead of
    one per output and part), in the instructions and the substitution rules."""
    entry = knl.default_entrypoint
    guard = _GuardTheRoot()
    return knl.with_kernel(entry.copy(
        instructions=[insn.with_transformed_expressions(guard) for insn in entry.instructions],
        substitutions={name: rule.copy(expression=guard(rule.expression))
                       for name, rule in entry.substitutions.items()}))


def _role(name: str) -> str | None:
    """:func:`~fmmloopy.maths.templates.pairwise_role` of a part, or of the real or imaginary
    half of one (``acc_re``, ``update_im``: :func:`~fmmloopy.tuning.complex_split.
    split_complex_temporaries`)."""
    for half in ("_re", "_im"):
        if name.endswith(half):
            return pairwise_role(name[:-len(half)])
    return pairwise_role(name)


def _is_bounds(insn) -> bool:
    return any(getattr(tag, "value", None) == "bounds" for tag in insn.tags)


def _sum(terms):
    return terms[0] if len(terms) == 1 else prim.Sum(tuple(terms))


def _terms(expression, target_loops: frozenset, source_names: frozenset) -> list:
    """The terms of a sum, in order (the order C sums them in), a nested sum taken apart where
    it mixes what depends on the target with what depends on the source (``source_names``:
    the source loops and what is assigned in them), so that the target's part can be
    fetched outside the source loops."""
    if not isinstance(expression, prim.Sum):
        return [expression]
    terms = []
    for child in expression.children:
        depends = get_dependencies(child)
        if isinstance(child, prim.Sum) and depends & target_loops and depends & source_names:
            terms += _terms(child, target_loops, source_names)
        else:
            terms.append(child)
    return terms


def targets_in_vector_lanes(knl: lp.TranslationUnit, width: int, chains: int = 1,
                            rsqrt_error: float | None = None) -> lp.TranslationUnit:
    """The pairwise template with ``width`` targets per vector, ``chains`` vectors at a time.

    One work-item per target box (``itgt_box`` -> ``g.0``, work-groups of one) walks the box's
    targets in chunks of ``width * chains``:

    - the chunk's target coordinates (the terms of ``offset<k>`` that depend on the target) go
      once into private vectors; lanes past the box's last target hold the chunk's first
      target, so they compute a copy that is never stored;
    - in the source loops every instruction works on whole vectors, the source broadcast;
      ``c / sqrt(e)`` becomes ``c * rsqrt(e)`` (:func:`rsqrt_preamble`) and each call an
      instruction of its own, so loopy emits vector code for it too; the guard
      ``If(r2 > 0, p, 0)`` of a derivative of ``1/r`` moves onto its ``1/sqrt(r2)``
      (:class:`_GuardTheRoot`), so the outputs of a gradient share one selection and their
      products a common prefix (P2P with the gradient against the potential alone:
      docs/kernels.md, "How the kernels are made");
    - the store looks at each lane's guard.

    Apply it to the kernel a recipe receives (any operator of the pairwise template: particles
    or surfaces on either side, any number of outputs and inputs: a call the updates of
    several outputs make, ``rsqrt`` of the same squared distance say, is computed once).
    ``rsqrt_error``: the relative error each ``1/sqrt`` may carry (:func:`rsqrt_preamble`).
    """
    entry = knl.default_entrypoint
    ids = {insn.id for insn in entry.instructions}
    if not {"itgt", "itgt_box"} <= entry.all_inames() or not {"init", "update", "store"} <= ids:
        raise ValueError(f"targets_in_vector_lanes: kernel {entry.name!r} is not of the pairwise "
                         "template (loops itgt_box, itgt; instructions init, update, store)")
    knl = parallelize_box_loop(lp.expand_subst(knl))
    knl = lp.split_iname(knl, "itgt", width * chains, outer_iname=CHUNK, inner_iname="itgt_in")
    knl = lp.split_iname(knl, "itgt_in", width, outer_iname=CHAIN, inner_iname=LANE)
    knl = pad_loop(knl, LANE, width)
    knl = pad_loop(knl, CHAIN, chains)
    entry = knl.default_entrypoint
    lanes = frozenset({CHAIN, LANE})
    target_loops = lanes | {CHUNK}
    index = (prim.Variable(CHAIN), prim.Variable(LANE))
    first_lane = {prim.Variable(CHAIN): 0, prim.Variable(LANE): 0}
    offsets = [insn for insn in entry.instructions if insn.id.startswith("offset")]
    source_names = frozenset(SOURCE_LOOPS) | frozenset(
        name for insn in entry.instructions if insn.within_inames & SOURCE_LOOPS
        and insn not in offsets for name in insn.assignee_var_names())
    accumulators = {name for name in entry.temporary_variables if _role(name) == "acc"}
    per_lane = _PerLane({*accumulators, *(insn.assignee_var_names()[0] for insn in offsets)},
                        index)
    vectors = set(per_lane.names)
    hoisted: dict[prim.Call, str] = {}  # calls made lane-wise, shared by the updates

    instructions, fetches = [], []
    for insn in entry.instructions:
        if LANE not in insn.within_inames:
            instructions.append(insn)
            continue
        lane_guards = frozenset(p for p in insn.predicates if get_dependencies(p) & lanes)
        other_guards = insn.predicates - lane_guards
        # The chunk runs where its first lane is active (the guards fall along the lanes).
        chunk_guards = other_guards | {substitute(p, first_lane) for p in lane_guards}
        role = _role(insn.id)
        if role == "store":
            instructions.append(insn.copy(expression=per_lane(insn.expression)))
            continue
        if _is_bounds(insn):  # the source loops' bounds: once per chunk
            instructions.append(insn.copy(within_inames=insn.within_inames - lanes,
                                          predicates=chunk_guards))
            continue
        if role == "init":
            instructions.append(insn.copy(assignee=per_lane(insn.assignee),
                                          predicates=chunk_guards))
            continue
        if role != "update" and insn not in offsets:
            raise ValueError(f"targets_in_vector_lanes: unexpected instruction {insn.id!r} in "
                             "the target loop (not the pairwise template?)")
        expression, depends_on = insn.expression, set(insn.depends_on)
        if insn in offsets:
            # The terms that depend on the target are fetched once per chunk; the sum keeps
            # the template's order (its rounding: templates._offset), the fetched part in the
            # place of the first of them.
            terms = _terms(expression, target_loops, source_names)
            target = [t for t in terms if get_dependencies(t) & target_loops]
            first_target = next(k for k, t in enumerate(terms) if t in target)
            name, fetch = f"target_{insn.id}", f"fetch_{insn.id}"
            outside = insn.within_inames - SOURCE_LOOPS
            target_deps = frozenset(d for d in insn.depends_on
                                    if not entry.id_to_insn[d].within_inames & SOURCE_LOOPS)
            instructions += [
                lp.Assignment(prim.Variable(name)[index], substitute(_sum(target), first_lane),
                              id=f"{fetch}_first", within_inames=outside,
                              predicates=chunk_guards, depends_on=target_deps),
                lp.Assignment(prim.Variable(name)[index], _sum(target), id=fetch,
                              within_inames=outside, predicates=other_guards | lane_guards,
                              depends_on=target_deps | {f"{fetch}_first"})]
            fetches += [f"{fetch}_first", fetch]
            vectors.add(name)
            expression = _sum([prim.Variable(name)[index] if k == first_target else term
                               for k, term in enumerate(terms)
                               if k == first_target or term not in target])
            depends_on.add(fetch)
        hoist = _HoistCalls(insn.id, index, hoisted)
        expression = hoist(ReciprocalSqrt()(_GuardTheRoot()(per_lane(expression))))
        depends_on |= {f"{name}_insn" for name in hoist.reused}
        for name, call in hoist.calls:
            instructions.append(CallInstruction(
                assignees=(prim.Variable(name)[index],), expression=call, id=f"{name}_insn",
                within_inames=insn.within_inames, predicates=chunk_guards,
                depends_on=frozenset(depends_on)))
            depends_on.add(f"{name}_insn")
            vectors.add(name)
        instructions.append(insn.copy(assignee=per_lane(insn.assignee), expression=expression,
                                      predicates=chunk_guards, depends_on=frozenset(depends_on)))

    temporaries = dict(entry.temporary_variables)
    for name in vectors:
        temporaries[name] = lp.TemporaryVariable(name, shape=(chains, width),
                                                 address_space=lp.AddressSpace.PRIVATE)
    knl = knl.with_kernel(entry.copy(instructions=instructions, temporary_variables=temporaries))
    tags = {CHAIN: "unr", LANE: "vec"}
    # Loops of their own for the fetches (outside the source loops), init and store; only
    # init's lanes are a vector (the fetches and the store read or write lane by lane).
    def parts(role: str):
        return any_of_ids(i for i in ids if _role(i) == role)
    for suffix, within, lane_tag in (("init", parts("init"), "vec"),
                                     ("store", parts("store"), "unr"),
                                     ("fetch", any_of_ids(fetches), "unr")):
        for iname in (CHAIN, LANE):
            knl = lp.duplicate_inames(knl, iname, within=within, new_inames=f"{iname}_{suffix}")
            tags[f"{iname}_{suffix}"] = lane_tag if iname == LANE else "unr"
    knl = lp.tag_inames(knl, tags)
    for name in sorted(vectors):
        knl = lp.tag_array_axes(knl, name, "c,vec")
    knl = lp.prioritize_loops(knl, f"isrc_box,isrc,{CHAIN},{LANE}")
    single = entry.arg_dict["targets" if "targets" in entry.arg_dict
                            else "target_surface"].dtype.numpy_dtype == np.float32
    return add_preamble(knl, *rsqrt_preamble(width, single, rsqrt_error))
