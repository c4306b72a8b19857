"""The fallback for any device: one work-group (of one work-item) per target box."""

from fmmloopy.tuning.recipe import recipe
from fmmloopy.tuning.tools import parallelize_box_loop


@recipe("pairwise", "matvec", device="any", complex_values=True)
def generic(knl, ctx):
    """Parallelise only the target-box loop."""
    return parallelize_box_loop(knl)
