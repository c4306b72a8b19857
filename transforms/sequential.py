"""The reference recipe: the math-level kernel as written, no hardware-parallel tags."""

from fmmloopy.tuning.recipe import recipe


@recipe("pairwise", "matvec", device="any", complex_values=True)
def sequential(knl, ctx):
    """Leave the kernel untouched: one work-item walks every loop in order."""
    return knl
