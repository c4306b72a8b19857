"""Building blocks for recipes: the few transforms every device recipe for these templates needs.

Each takes and returns a loopy ``TranslationUnit`` and never changes what is computed.

This module is the recipes' interface: import every building block from here. It holds the
transforms that map a kernel's loops onto work-items and work-groups; the others live beside it
and are re-exported: preambles, build options and silenced warnings
(:mod:`fmmloopy.tuning.kernel_options`), loops padded behind guards
(:mod:`fmmloopy.tuning.loop_padding`), reciprocal square roots by Newton steps
(:mod:`fmmloopy.tuning.newton_rsqrt`), calls shared by a pairwise kernel's entries
(:mod:`fmmloopy.tuning.shared_calls`) and constant factors taken out of its sums
(:mod:`fmmloopy.tuning.constant_factors`).
"""

from __future__ import annotations

import islpy as isl
import loopy as lp
import pymbolic.primitives as prim
import pyopencl as cl
from loopy.isl_helpers import static_min_of_pw_aff
from loopy.symbolic import IdentityMapper, aff_to_expr, get_dependencies

from fmmloopy.tuning.constant_factors import factor_constants_out_of_sums
from fmmloopy.tuning.kernel_options import (
    BUILTIN_SQRT_PREAMBLE,
    BUILTIN_SQRTF_PREAMBLE,
    add_build_options,
    add_preamble,
    is_single_precision,
    silence_warnings,
    use_builtin_sqrt,
)
from fmmloopy.tuning.loop_padding import pad_loop, unguard
from fmmloopy.tuning.matching import any_of_ids
from fmmloopy.tuning.newton_rsqrt import (
    NEWTON_RSQRT_ESTIMATES,
    NEWTON_RSQRT_HELPER,
    NEWTON_RSQRT_REFINEMENT,
    ReciprocalSqrt,
    newton_rsqrt_preamble,
    newton_steps_for,
    split_targets_over_rsqrt,
    use_newton_rsqrt,
)
from fmmloopy.tuning.shared_calls import HOISTED_FUNCTIONS, hoist_shared_calls

__all__ = [
    "BUILTIN_SQRT_PREAMBLE", "BUILTIN_SQRTF_PREAMBLE", "add_preamble", "is_single_precision",
    "use_builtin_sqrt",
    "NEWTON_RSQRT_REFINEMENT", "NEWTON_RSQRT_ESTIMATES", "NEWTON_RSQRT_HELPER",
    "newton_rsqrt_preamble", "newton_steps_for", "ReciprocalSqrt", "use_newton_rsqrt",
    "split_targets_over_rsqrt",
    "HOISTED_FUNCTIONS", "hoist_shared_calls", "factor_constants_out_of_sums",
    "add_build_options", "spread_over_local_axis", "parallelize_box_loop",
    "DEFAULT_SIMD_WIDTH", "simd_width", "local_work_size", "pad_loop", "unguard",
    "spread_over_work_group", "stage_in_local_memory", "silence_warnings",
]


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
    knl = lp.duplicate_inames(knl, loop, within=any_of_ids(stage_ids),
                              new_inames=stage)
    if length > width:
        knl = lp.split_iname(knl, stage, width, inner_iname=f"{stage}_inner",
                             outer_iname=f"{stage}_outer")
        stage = f"{stage}_inner"
    return lp.tag_inames(pad_loop(knl, stage), {stage: "l.0"})

# }}}
