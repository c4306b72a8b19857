"""Recipes for GPUs: one work-group per target box, work-items over its targets, sources staged
in local memory.

Pairwise: targets across ``l.0``; the source points of each listed box are copied into local
memory a work-group-wide chunk at a time (each work-item copies one point), then every work-item
sums the chunk for its target. Matvec: output coefficients across ``l.0``; each listed box's
source vector is copied into local memory a group-wide chunk at a time and read by every row.
Work-group sizes come from the device: multiples of its SIMD width (NVIDIA warp 32, AMD
wavefront 64, read from the vendor's device-attribute extension) within its
``max_work_group_size``.

No build options: the ``cpu`` recipe's ``-cl-fast-relaxed-math`` and builtin ``sqrt`` are PoCL
measures, and relaxed math on a GPU may trade float64 accuracy that ``fmmloopy check`` has not
seen there. These recipes run (and are checked) on PoCL too.
"""

import loopy as lp

from fmmloopy.maths.operators import SURFACE, get_operator
from fmmloopy.tuning.recipe import Parameter, recipe
from fmmloopy.tuning.tools import (
    hoist_shared_calls,
    local_work_size,
    parallelize_box_loop,
    spread_over_work_group,
    stage_in_local_memory,
)

#: Work-items per group for particle targets (a leaf holds up to ``n_crit`` = 150 by default);
#: rounded up to the SIMD width. ``fmmloopy tune`` measures the others on a device (on an
#: H100 it kept a larger one: docs/performance.md, "`fmmloopy tune`").
PARTICLE_TARGETS_PER_GROUP = 64

#: Work-items per group for surface targets (the surface size is a launch argument; more
#: points run in chunks). Not measured on a GPU yet.
SURFACE_TARGETS_PER_GROUP = 128

#: Largest group for surface targets and matvec rows (more rows run in chunks).
MAX_GROUP = 256


#: The recipes' speed choices, the constants above their defaults.
PARAMETERS = {
    "max_group": Parameter((64, 128, 256, 512, 1024), MAX_GROUP,
                           "largest work-group for surface targets and matvec rows"),
}
PAIRWISE_PARAMETERS = {
    "particle_targets_per_group": Parameter((32, 64, 128, 256), PARTICLE_TARGETS_PER_GROUP,
                                            "work-items per group for particle targets"),
    "surface_targets_per_group": Parameter((32, 64, 128, 256), SURFACE_TARGETS_PER_GROUP,
                                           "work-items per group for surface targets"),
    **PARAMETERS,
}


@recipe("pairwise", device="gpu", complex_values=True, parameters=PAIRWISE_PARAMETERS)
def pairwise_gpu(knl, ctx):
    """Targets of a box across a work-group; sources staged in local memory in chunks of the
    group size (coordinates, strengths; for surfaces the unit surface and strengths). Calls the
    entries share computed once per pair (:func:`hoist_shared_calls`). Complex values too:
    staging copies them whole."""
    surface_targets = get_operator(ctx.operator).targets == SURFACE
    targets = ctx.settings.get("surface_targets_per_group" if surface_targets
                               else "particle_targets_per_group",
                               SURFACE_TARGETS_PER_GROUP if surface_targets
                               else PARTICLE_TARGETS_PER_GROUP)
    width = local_work_size(ctx.device, targets, ctx.settings.get("max_group", MAX_GROUP))
    knl = parallelize_box_loop(hoist_shared_calls(knl))
    knl = spread_over_work_group(knl, "itgt", width)
    knl = lp.split_iname(knl, "isrc", width, outer_iname="isrc_outer", inner_iname="isrc_inner")
    return stage_in_local_memory(knl, "isrc_inner", ("sources", "strengths", "source_surface"),
                                 width=width)


@recipe("matvec", device="gpu", complex_values=True, parameters=PARAMETERS)
def matvec_gpu(knl, ctx):
    """Rows (output coefficients) across a work-group of ``max_group`` work-items (in chunks
    where there are more); each listed box's source vector staged in local memory a
    group-wide chunk at a time. The coefficient counts are launch arguments, so the group is
    sized by the parameter, not by the matrices."""
    width = local_work_size(ctx.device, ctx.settings.get("max_group", MAX_GROUP),
                            ctx.settings.get("max_group", MAX_GROUP))
    knl = parallelize_box_loop(knl)
    knl = spread_over_work_group(knl, "iexp_tgt", width)
    knl = lp.split_iname(knl, "iexp_src", width, outer_iname="iexp_src_outer",
                         inner_iname="iexp_src_inner")
    return stage_in_local_memory(knl, "iexp_src_inner", ("source_vectors",), width=width)
