"""Deliberately wrong recipes: ``fmmloopy check`` must report every one of them as a failure."""

import loopy as lp
from pymbolic import var
from pymbolic.mapper import IdentityMapper

from fmmloopy.tuning.recipe import recipe


def _rewrite_assignment(knl, insn_id, rewrite):
    """Replace the right-hand side of instruction ``insn_id`` by ``rewrite(rhs)``."""
    entry = knl.default_entrypoint
    instructions = [insn.copy(expression=rewrite(insn.expression)) if insn.id == insn_id else insn
                    for insn in entry.instructions]
    return knl.with_kernel(entry.copy(instructions=instructions))


@recipe("pairwise", "matvec", device="any", name="skip_first_source_box")
def skip_first_source_box(knl, ctx):
    """Starts every source list one entry late: each target box misses a source box."""
    knl = lp.tag_inames(knl, {"itgt_box": "g.0"})
    start_load, = [insn.id for insn in knl.default_entrypoint.instructions
                   if insn.assignee_var_names() == ("isrc_box_start",)]
    return _rewrite_assignment(knl, start_load, lambda rhs: rhs + 1)


@recipe("pairwise", device="any", name="ilp_over_bound_loads")
def ilp_over_bound_loads(knl, ctx):
    """The DESIGN.md trap: ``ilp`` around instructions that load loop bounds."""
    return lp.split_iname(knl, "itgt_box", 4, inner_tag="ilp")


@recipe("pairwise", "matvec", device="any", name="raises")
def raises(knl, ctx):
    """A recipe with a bug of its own: it names an iname that does not exist."""
    return lp.split_iname(knl, "no_such_iname", 4)


@recipe("pairwise", device="any", name="wrong_sign")
def wrong_sign(knl, ctx):
    """Flips the sign of every contribution (a transform that changes the math)."""
    return _rewrite_assignment(knl, "update", lambda rhs: 2 * var("acc") - rhs)


@recipe("pairwise", device="any", name="writes_out_of_bounds")
def writes_out_of_bounds(knl, ctx):
    """Shifts every target index far past the end of the arrays: the process may crash."""
    start_load, = [insn.id for insn in knl.default_entrypoint.instructions
                   if insn.assignee_var_names() == ("itgt_start",)]
    return _rewrite_assignment(knl, start_load, lambda rhs: rhs + 2 ** 30)


@recipe("pairwise", device="any", name="first_output_only")
def first_output_only(knl, ctx):
    """Stores only the first output (the potential): right for the potential of charges and
    dipoles, wrong for every gradient (its components are never written)."""
    knl = lp.tag_inames(knl, {"itgt_box": "g.0"})
    entry = knl.default_entrypoint
    kept = [insn for insn in entry.instructions if not insn.id.startswith("store_")]
    return knl.with_kernel(entry.copy(instructions=kept))


class _RealPartOfStrengths(IdentityMapper):
    def map_subscript(self, expr):
        if expr.aggregate == var("strengths"):
            return var("real")(expr)
        return super().map_subscript(expr)


@recipe("pairwise", device="any", name="drops_imaginary_part", complex_values=True)
def drops_imaginary_part(knl, ctx):
    """Claims complex values but reads only the real part of every strength (as a temporary of
    the real dtype would): right for real kernels, wrong for Helmholtz."""
    knl = lp.tag_inames(knl, {"itgt_box": "g.0"})
    entry = knl.default_entrypoint
    if ctx.parameters["value_dtype"].kind != "c":
        return knl
    mapper = _RealPartOfStrengths()
    instructions = [insn.copy(expression=mapper(insn.expression))
                    if insn.id.startswith("update") else insn for insn in entry.instructions]
    return knl.with_kernel(entry.copy(instructions=instructions))
