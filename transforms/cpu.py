"""Recipes for CPU OpenCL devices (PoCL first), from the measurements in docs/recipes.md and
docs/performance.md.

PoCL turns a work-group into a loop over work-items and vectorises it with LLVM, so the recipes put
one target box per work-group and the box's targets (or output coefficients) on ``l.0``, and let
the compiler inline ``sqrt`` so that the loop vectorises. ``-cl-fast-relaxed-math`` allows
contraction and reassociation; it also assumes finite values, so callers must not pass NaN
or inf. ``fmmloopy check`` holds both to 1e-12 of the sequential kernel.
"""

import loopy as lp

from fmmloopy.maths.layouts import Grouped
from fmmloopy.tuning.recipe import recipe
from fmmloopy.tuning.tools import (
    add_build_options,
    parallelize_box_loop,
    silence_warnings,
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


#: Matvec lists grouped by matrix (grouping made M2L fast: docs/performance.md) in this many
#: blocks of target boxes per core: a matrix is read once per block and group, so blocks are made as
#: large as keeping every core busy allows (M2L at 1e5 points, one core: 7.7 GFLOP/s with
#: blocks of 64 boxes, 23 with 1024).
BLOCKS_PER_CORE = 2
#: Pairs of a group computed together (register tile), and float64 lanes of one vector.
PAIR_TILE = 4
VECTOR_WIDTH = 8


@recipe("matvec", device="cpu",
        layout=Grouped(pair_tile=PAIR_TILE, blocks_per_compute_unit=BLOCKS_PER_CORE))
def matvec_cpu(knl, ctx):
    """One work-item per block of target boxes; within a group, ``PAIR_TILE`` pairs at a time
    share each matrix load, and output coefficients go ``VECTOR_WIDTH`` to a vector register.

    Vectors need the coefficient count to be a multiple of ``VECTOR_WIDTH``; otherwise the
    coefficients are spread over work-items and PoCL vectorises across them.
    """
    knl = lp.tag_inames(knl, {"iblock": "g.0"})
    knl = unroll_pair_tile(knl)
    n_target_coeffs = ctx.parameters["n_target_coeffs"]
    if n_target_coeffs % VECTOR_WIDTH == 0:
        knl = lp.split_iname(knl, "iexp_tgt", VECTOR_WIDTH, inner_tag="vec")
        knl = lp.split_array_axis(knl, "transposed_matrices", 2, VECTOR_WIDTH)
        knl = lp.tag_array_axes(knl, "transposed_matrices", "c,c,c,vec")
        knl = lp.split_array_axis(knl, "target_vectors", 1, VECTOR_WIDTH)
        knl = lp.tag_array_axes(knl, "target_vectors", "c,c,vec")
    else:
        knl = spread_over_local_axis(knl, "iexp_tgt", WORK_GROUP_SIZE)
    knl = lp.prioritize_loops(knl, "iexp_tgt_outer,iexp_src,ipair")
    knl = silence_warnings(knl, "v1_scheduler_fallback")
    return add_build_options(knl, "-cl-fast-relaxed-math")


def unroll_pair_tile(knl):
    """Unroll the grouped matvec's pair tile inside the coefficient loops, so every matrix
    element loaded serves the tile's pairs (a register tile)."""
    knl = lp.privatize_temporaries_with_inames(
        knl, "ipair", only_var_names={"acc", "pair", "pair_used", "tgt_box", "src_box", "scale"})
    for within, copy in (("tag:bounds and iname:ipair", "ipair_load"),
                         ("id:init", "ipair_init"), ("id:store", "ipair_store")):
        knl = lp.duplicate_inames(knl, "ipair", within=within, new_inames=copy)
        knl = lp.tag_inames(knl, {copy: "unr"})
    return lp.tag_inames(knl, {"ipair": "unr"})
