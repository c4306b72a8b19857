"""Recipes for CPU OpenCL devices (PoCL first), from the measurements in DESIGN.md.

PoCL turns a work-group into a loop over work-items and vectorises it with LLVM, so the recipes put
one target box per work-group and the box's targets (or output coefficients) on ``l.0``, and let
the compiler inline ``sqrt`` so that the loop vectorises. ``-cl-fast-relaxed-math`` allows
contraction and reassociation; it also assumes finite values, so callers must not pass NaN
or inf. ``fmmloopy check`` holds both to 1e-12 of the sequential kernel.
"""

import loopy as lp

from fmmloopy.layouts import Grouped
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


#: Matvec lists grouped by matrix in blocks of this many target boxes: a matrix is read once per
#: block and group (DESIGN.md: grouping made M2L fast), and enough blocks remain for the cores.
TARGET_BLOCK = 256
#: Pairs of a group computed together (register tile), and float64 lanes of one vector.
PAIR_TILE = 4
VECTOR_WIDTH = 8


@recipe("matvec", device="cpu", layout=Grouped(TARGET_BLOCK, pair_multiple=PAIR_TILE))
def matvec_cpu(knl, ctx):
    """One work-item per block of target boxes; within a group, ``PAIR_TILE`` pairs at a time
    share each matrix load, and output coefficients go ``VECTOR_WIDTH`` to a vector register.

    Vectors need the coefficient count to be a multiple of ``VECTOR_WIDTH``; otherwise the
    coefficients are spread over work-items and PoCL vectorises across them.
    """
    knl = lp.tag_inames(knl, {"iblock": "g.0"})
    knl = tile_pair_loop(knl, PAIR_TILE)
    n_target_coeffs = ctx.parameters["n_target_coeffs"]
    if n_target_coeffs % VECTOR_WIDTH == 0:
        knl = lp.split_iname(knl, "iexp_tgt", VECTOR_WIDTH, inner_tag="vec")
        knl = lp.split_array_axis(knl, "transposed_matrices", 2, VECTOR_WIDTH)
        knl = lp.tag_array_axes(knl, "transposed_matrices", "c,c,c,vec")
        knl = lp.split_array_axis(knl, "target_vectors", 1, VECTOR_WIDTH)
        knl = lp.tag_array_axes(knl, "target_vectors", "c,c,vec")
    else:
        knl = spread_over_local_axis(knl, "iexp_tgt", WORK_GROUP_SIZE)
    knl = lp.prioritize_loops(knl, "iexp_tgt_outer,iexp_src,ipair_inner")
    return add_build_options(knl, "-cl-fast-relaxed-math")


def tile_pair_loop(knl, tile: int):
    """Unroll the grouped matvec's pair loop by ``tile`` inside the coefficient loops, so every
    matrix element loaded is used for ``tile`` pairs (a register tile). The layout pads each
    group to a multiple of ``tile`` pairs (``Grouped(pair_multiple=tile)``)."""
    knl = lp.split_iname(knl, "ipair", tile)
    knl = lp.privatize_temporaries_with_inames(
        knl, "ipair_inner", only_var_names={"acc", "tgt_box", "src_box", "scale", "ipair_used"})
    for within, copy in (("tag:bounds and iname:ipair_inner", "ipair_load"),
                         ("id:init", "ipair_init"), ("id:store", "ipair_store")):
        knl = lp.duplicate_inames(knl, "ipair_inner", within=within, new_inames=copy)
        knl = lp.tag_inames(knl, {copy: "unr"})
    knl = lp.tag_inames(knl, {"ipair_inner": "unr"})
    return lp.assume(knl, f"max_group_pairs mod {tile} = 0")
