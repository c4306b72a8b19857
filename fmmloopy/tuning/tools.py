"""Building blocks for recipes: the few transforms every device recipe for these templates needs.

Each takes and returns a loopy ``TranslationUnit`` and never changes what is computed.
"""

from __future__ import annotations

from functools import cache

import islpy as isl
import loopy as lp
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

#: A loopy preamble that maps OpenCL's ``sqrt`` onto the LLVM intrinsic. PoCL 3.0 otherwise calls
#: a library ``sqrt``, which keeps LLVM from vectorising the work-group loop (docs/recipes.md).
BUILTIN_SQRT_PREAMBLE = ("000_fmmloopy_builtin_sqrt",
                         "#ifdef sqrt\n#undef sqrt\n#endif\n#define sqrt(x) __builtin_sqrt(x)")


def add_preamble(knl: lp.TranslationUnit, key: str, text: str) -> lp.TranslationUnit:
    """Add a preamble (``#define``, helper function) to the entry kernel, once per key."""
    entry = knl.default_entrypoint
    if any(existing == key for existing, _ in entry.preambles):
        return knl
    return knl.with_kernel(entry.copy(preambles=(*entry.preambles, (key, text))))


def use_builtin_sqrt(knl: lp.TranslationUnit) -> lp.TranslationUnit:
    """Let the OpenCL compiler inline and vectorise ``sqrt`` (see :data:`BUILTIN_SQRT_PREAMBLE`)."""
    return add_preamble(knl, *BUILTIN_SQRT_PREAMBLE)


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
