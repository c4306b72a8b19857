"""Recipes that are right at the small check sizes and wrong at the sizes of a real FMM.

Each assumes a bound that the small check problems (leaves of at most 40 points, surfaces of 26
or 56 points, lists of at most 39 boxes) respect and an FMM at order 6 / ``n_crit`` 150 breaks.
``tests/test_wrong_recipes.py`` shows each one wrong against a direct sum, then that the
default ``fmmloopy check`` and :class:`fmmloopy.Fmm`'s first-use verification refuse it.
"""

import pymbolic.primitives as prim

from fmmloopy.tuning.recipe import recipe
from fmmloopy.tuning.tools import pad_loop, parallelize_box_loop, spread_over_local_axis

#: The bound these recipes assume (a work-group of 64, a 64-point local-memory chunk, ...).
ASSUMED = 64


@recipe("p2p", device="any", name="targets_up_to_64")
def targets_up_to_64(knl, ctx):
    """A box's targets in one 64-wide pass: targets past the 64th are never computed."""
    return pad_loop(parallelize_box_loop(knl), "itgt", ASSUMED)


@recipe("p2p", "m2p", device="any", name="one_source_chunk")
def one_source_chunk(knl, ctx):
    """Sources of a listed box staged as one 64-point chunk: later sources are dropped."""
    return pad_loop(parallelize_box_loop(knl), "isrc", ASSUMED)


@recipe("m2l", "m2l_expand", "c2e", device="any", name="rows_in_one_group")
def rows_in_one_group(knl, ctx):
    """Output coefficients in one 64-row work-group: rows past the 64th stay unchanged."""
    return pad_loop(parallelize_box_loop(knl), "iexp_tgt", ASSUMED)


@recipe("m2l", "c2e", device="any", name="fast_path_above_64")
def fast_path_above_64(knl, ctx):
    """A 'fast path' taken only when there are more than 64 coefficients (a launch argument),
    which forgets the level scale (2.7e-2 in an FMM looks like low accuracy)."""
    knl = parallelize_box_loop(knl)
    entry = knl.default_entrypoint
    instructions = [insn.copy(expression=_drop_scale_above(insn.expression, ASSUMED))
                    if insn.id == "store" else insn for insn in entry.instructions]
    return knl.with_kernel(entry.copy(instructions=instructions))


def _drop_scale_above(expression, rows):
    """``target + scale * acc`` -> ``target + acc`` where there are more than ``rows``
    output coefficients."""
    target, scaled = expression.children
    small = prim.Comparison(prim.Variable("n_target_coeffs"), "<=", rows)
    return prim.Sum((target, prim.If(small, scaled, scaled.children[-1])))


@recipe("p2p", device="any", name="u_list_up_to_27")
def u_list_up_to_27(knl, ctx):
    """Walks at most 27 U entries (the colleagues of a uniform tree): adaptive lists are longer."""
    knl = parallelize_box_loop(knl)
    entry = knl.default_entrypoint
    capped = prim.Subscript(prim.Variable("source_box_starts"), prim.Variable("itgt_box")) + 27
    instructions = [insn.copy(expression=prim.Min((insn.expression, capped)))
                    if insn.assignee_var_names() == ("isrc_box_end",) else insn
                    for insn in entry.instructions]
    return knl.with_kernel(entry.copy(instructions=instructions))


@recipe("m2l", device="any", name="summed_loop_on_work_items")
def summed_loop_on_work_items(knl, ctx):
    """The coefficients summed over (``iexp_src``) spread over 16 work-items: each keeps a
    partial sum and all store to the same element, a race PoCL hides (it runs a work-group's
    items one after another) and a GPU does not."""
    return spread_over_local_axis(parallelize_box_loop(knl), "iexp_src", 16)
