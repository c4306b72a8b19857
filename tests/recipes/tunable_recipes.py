"""A recipe with a parameter one of whose values is wrong: ``fmmloopy tune`` must refuse it
before timing it (``tests/test_tuning.py``)."""

from fmmloopy.tuning.recipe import Parameter, recipe
from fmmloopy.tuning.tools import parallelize_box_loop, spread_over_local_axis


@recipe("p2p", device="any", name="group_32_drops_last_pair",
        parameters={"group": Parameter((8, 16, 32), 16, "work-items per target box")})
def group_32_drops_last_pair(knl, ctx):
    """Targets of a box over ``group`` work-items; with 32 every source box's last source is
    left out (one pair per target and source box missing)."""
    knl = spread_over_local_axis(parallelize_box_loop(knl), "itgt", ctx.settings["group"])
    if ctx.settings["group"] != 32:
        return knl
    entry = knl.default_entrypoint
    instructions = [insn.copy(expression=insn.expression - 1)
                    if insn.assignee_var_names() == ("nsrc",) else insn
                    for insn in entry.instructions]
    return knl.with_kernel(entry.copy(instructions=instructions))
