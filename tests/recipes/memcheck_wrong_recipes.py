"""Recipes whose numbers can still agree but whose memory accesses are wrong, for
``fmmloopy check --memcheck``; and the correct twin of one of them.

* ``speculative_target_loads`` (p2p): loads each target's coordinates before the guard
  ``itgt < ntgt``, for the padded targets too. Their values are never used, so every sum is
  right, but the last box's padded targets lie past the end of ``targets``.
* ``staged_surface`` (m2p, l2p): the source surface staged in a ``__local`` array by the whole
  work-group, then read by every work-item; loopy puts a barrier between.
* ``staged_surface_no_barrier``: the same with that barrier dropped (``lp.add_nosync``): a
  work-item may read an entry another has not written yet, a data race.
"""

import loopy as lp
from pymbolic import var
from pymbolic.primitives import Subscript

from fmmloopy.tuning.recipe import recipe
from fmmloopy.tuning.tools import (
    parallelize_box_loop,
    spread_over_work_group,
)

#: Work-items per group; a surface of 26 (56) points is staged in 2 (4) chunks, the last partial.
WIDTH = 16
#: Surface points staged at a time (a surface of 26 points: two chunks, the last partial).
STAGED = 16


@recipe("p2p", device="any", name="speculative_target_loads")
def speculative_target_loads(knl, ctx):
    """Hoist ``targets[axis, itgt_start + itgt]`` out of the guard, into private ``tx<axis>``."""
    knl = parallelize_box_loop(knl)
    entry = knl.default_entrypoint
    start_load = frozenset(insn.id for insn in entry.instructions
                           if insn.assignee_var_names() == ("itgt_start",))

    def target(axis):
        return Subscript(var("targets"), (axis, var("itgt_start") + var("itgt")))

    hoisted = [lp.Assignment(var(f"tx{axis}"), target(axis), id=f"hoisted_tx{axis}",
                             within_inames=frozenset({"itgt_box", "itgt"}),
                             depends_on=start_load)
               for axis in range(3)]
    temporaries = {f"tx{axis}": lp.TemporaryVariable(f"tx{axis}", ctx.parameters["dtype"], shape=(),
                                                     address_space=lp.AddressSpace.PRIVATE)
                   for axis in range(3)}

    def rewrite(insn):
        if not insn.id.startswith("offset"):
            return insn
        axis = int(insn.id[len("offset"):])
        return insn.copy(expression=_replace(insn.expression, target(axis), var(f"tx{axis}")),
                         depends_on=insn.depends_on | {f"hoisted_tx{axis}"})

    return knl.with_kernel(entry.copy(
        instructions=[*hoisted, *map(rewrite, entry.instructions)],
        temporary_variables=entry.temporary_variables | temporaries))


def _replace(expression, old, new):
    """``expression`` with every occurrence of the subexpression ``old`` replaced by ``new``."""
    from pymbolic.mapper import IdentityMapper

    class Replace(IdentityMapper):
        def map_subscript(self, expr):
            return new if expr == old else super().map_subscript(expr)

    return Replace()(expression)


def _staged_surface(knl):
    """Targets over ``l.0``; ``source_surface`` copied to local memory by the work-group a chunk
    of :data:`STAGED` points at a time (the surface's size is a launch argument)."""
    knl = parallelize_box_loop(knl)
    knl = spread_over_work_group(knl, "itgt", WIDTH)  # every work-item meets the barriers
    knl = lp.split_iname(knl, "isrc", STAGED, outer_iname="isrc_chunk", inner_iname="isrc_in")
    knl = lp.add_prefetch(knl, "source_surface", sweep_inames=["isrc_in"],
                          fetch_outer_inames=frozenset({"itgt_box", "itgt_outer", "isrc_box",
                                                        "isrc_chunk"}),
                          dim_arg_names=["iaxis_stage", "isrc_stage"],
                          temporary_address_space=lp.AddressSpace.LOCAL,
                          temporary_name="surface_local", prefetch_insn_id="stage_surface",
                          default_tag=None)
    knl = lp.split_iname(knl, "isrc_stage", WIDTH, inner_tag="l.0")
    return lp.tag_inames(knl, {"iaxis_stage": "unr"})


@recipe("m2p", "l2p", device="any", name="staged_surface")
def staged_surface(knl, ctx):
    return _staged_surface(knl)


@recipe("m2p", "l2p", device="any", name="staged_surface_no_barrier")
def staged_surface_no_barrier(knl, ctx):
    """As ``staged_surface``, with no barrier between staging and reading the surface."""
    knl = _staged_surface(knl)
    return lp.add_nosync(knl, "local", "id:stage_surface", "id:offset*")
