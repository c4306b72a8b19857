"""Recipes for CPU OpenCL devices (PoCL first), from the measurements in DESIGN.md.

PoCL turns a work-group into a loop over work-items and vectorises it with LLVM, so the recipes put
one target box per work-group and the box's targets (or output coefficients) on ``l.0``, and let
the compiler inline ``sqrt`` so that the loop vectorises. ``-cl-fast-relaxed-math`` allows
contraction and reassociation; it also assumes finite values, so callers must not pass NaN
or inf. ``fmmloopy check`` holds both to 1e-12 of the sequential kernel.
"""

from fmmloopy.recipes import recipe
from fmmloopy.transform_tools import (
    add_build_options,
    parallelize_box_loop,
    spread_over_local_axis,
    use_builtin_sqrt,
)

#: Work-items per group. 16 float64 lanes = two AVX-512 vectors; 16-128 measured alike on P2P.
WORK_GROUP_SIZE = 16


@recipe("pairwise", device="cpu")
def pairwise_cpu(knl, ctx):
    """Targets of a box across work-items; builtin sqrt and relaxed math so the loop vectorises."""
    knl = parallelize_box_loop(knl)
    knl = spread_over_local_axis(knl, "itgt", WORK_GROUP_SIZE)
    knl = use_builtin_sqrt(knl)
    return add_build_options(knl, "-cl-fast-relaxed-math")


@recipe("matvec", device="cpu")
def matvec_cpu(knl, ctx):
    """Output coefficients of a box across work-items; each runs its dot products.

    Relaxed math lets LLVM contract and vectorise the dot products (2.4 -> 5.2 GFLOP/s measured
    at n_e = 152, 27 matrices per box). Target-major order re-reads every matrix per box, so it
    stays bandwidth-bound; grouping by matrix is a list-layout change, not a transform.
    """
    knl = parallelize_box_loop(knl)
    knl = spread_over_local_axis(knl, "iexp_tgt", WORK_GROUP_SIZE)
    return add_build_options(knl, "-cl-fast-relaxed-math")
