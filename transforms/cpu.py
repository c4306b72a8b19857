"""Recipes for CPU OpenCL devices (PoCL first), from the measurements in docs/recipes.md and
docs/performance.md.

PoCL turns a work-group into a loop over work-items and vectorises it with LLVM, so the recipes put
one target box per work-group and the box's targets (or output coefficients) on ``l.0``, and let
the compiler inline ``sqrt`` so that the loop vectorises. ``-cl-fast-relaxed-math`` allows
contraction and reassociation; it also assumes finite values, so callers must not pass NaN
or inf. ``fmmloopy check`` holds both to 1e-12 of the sequential kernel.
"""

import islpy as isl
import loopy as lp
import numpy as np
from pymbolic.primitives import Comparison, LogicalAnd, Variable

from fmmloopy.base.devices import device_classes, vector_doubles
from fmmloopy.maths.layouts import TARGET_STRIDE, Grouped
from fmmloopy.maths.templates import assume
from fmmloopy.tuning.complex_split import split_complex_temporaries
from fmmloopy.tuning.inline_math import FMA_PREAMBLE, lane_trig_preamble, use_inline_math
from fmmloopy.tuning.recipe import Parameter, recipe
from fmmloopy.tuning.target_lanes import guard_the_root, targets_in_vector_lanes
from fmmloopy.tuning.tools import (
    add_build_options,
    add_preamble,
    factor_constants_out_of_sums,
    hoist_shared_calls,
    is_single_precision,
    newton_steps_for,
    parallelize_box_loop,
    silence_warnings,
    split_targets_over_rsqrt,
    spread_over_local_axis,
    use_builtin_sqrt,
    use_newton_rsqrt,
)

#: Work-items per group. 16 float64 lanes = two AVX-512 vectors; 16-128 measured alike on P2P.
WORK_GROUP_SIZE = 16


#: Targets per vector of :func:`targets_in_vector_lanes` where the device's vectors hold 8
#: doubles (twice that for float32 kernels: one 512-bit vector either way, faster than 8:
#: docs/history.md, 2026-11-24), and vectors per chunk of a box's targets (more chains pad small
#: boxes more, and measured slower: docs/history.md, 2026-11-23, "Against exafmm-t, and the
#: compressed M2L", item 6).
LANE_WIDTH = 8
LANE_CHAINS = 1

def targets_in(device) -> str:
    """Where a box's targets go by default on ``device``: ``"vector_lanes"`` where its vectors
    hold 8 doubles (:func:`has_wide_vectors`), else ``"work_items"``. (On AVX2, ``double4``
    lanes won only at larger leaves than those the cost model chooses: docs/performance.md, "P2P
    on AVX2".)"""
    return "vector_lanes" if has_wide_vectors(device) else "work_items"


#: What the recipes let the compiler do with floating point on PoCL: reassociate and contract
#: (its work-group loops vectorise only so; ``fmmloopy check`` holds the results to 1e-12).
RELAXED_MATH = ("-cl-fast-relaxed-math",)


def math_options(device) -> tuple[str, ...]:
    """The recipes' build options on ``device``: :data:`RELAXED_MATH`, but none on Intel's CPU
    runtime, which vectorises across work-items without it and under it computes ``rsqrt`` of a
    double to 14 bits, merges the two parts of the inline ``sin``/``cos``'s reduction (errors of
    4e-8) and takes ``1/sqrt`` of a float from its estimate (docs/performance.md, "CPU
    runtimes")."""
    return () if "cpu-intel" in device_classes(device) else RELAXED_MATH


#: Steps of the fourth order that refine the bits estimate of ``1/sqrt`` (relative error
#: 3.4e-2) to float64's own: 4.4e-6 after one, rounding after two.
BITS_NEWTON_STEPS = 2


def reciprocal_sqrt(device) -> str:
    """How the work-item path computes ``1/sqrt`` by default on ``device``: ``"bits_newton"``
    on Intel's CPU runtime (``cpu-intel``), whose divider and square root are slow next to its
    wide FMAs (all-pairs P2P on an AVX-512 Xeon: 1.3-1.4 G pairs/s by ``1 / sqrt``, 4.0 G by
    the bits estimate and two fourth-order steps; PoCL 3.0 on the same CPU 1.5 and 2.4 G:
    docs/performance.md, "CPU runtimes"), else ``"sqrt_divide"``."""
    return "bits_newton" if "cpu-intel" in device_classes(device) else "sqrt_divide"


#: The pairwise recipe's speed choices, the constants and functions above their defaults.
PAIRWISE_PARAMETERS = {
    "targets_in": Parameter(("work_items", "vector_lanes"), targets_in,
                            "a box's targets across work-items, or in the lanes of vectors "
                            "(real values only)", chooses_path=True),
    "work_group_size": Parameter((8, 16, 32, 64, 128), WORK_GROUP_SIZE,
                                 "work-items per group where targets go to work-items"),
    "lane_width": Parameter((4, 8), LANE_WIDTH,
                            "float64 targets per vector where they go to vector lanes "
                            "(twice as many float32)"),
    "lane_chains": Parameter((1, 2, 4), LANE_CHAINS,
                             "vectors per chunk of a box's targets in vector lanes"),
    "reciprocal_sqrt": Parameter(("sqrt_divide", "bits_newton"), reciprocal_sqrt,
                                 "1/sqrt where targets go to work-items (real float64 "
                                 "kernels): sqrt and a division (P2P: half its targets by the "
                                 "bits estimate and Newton steps), or every pair by the bits "
                                 "estimate and two fourth-order steps"),
}


@recipe("pairwise", device="cpu", complex_values=True, parameters=PAIRWISE_PARAMETERS)
def pairwise_cpu(knl, ctx):
    """With ``targets_in`` = ``"vector_lanes"`` (the default where the device's vectors hold
    8 doubles, :func:`targets_in`): a box's targets in the lanes of vectors of ``lane_width``
    doubles (:func:`targets_in_vector_lanes`; on AVX-512, ``1/sqrt`` from the hardware's
    estimate and one fourth-order step; the rates: docs/performance.md, "Per operator").

    On every path but the split ``rsqrt`` (whose rules it would expand) the kernel's constant
    factor leaves its sums over sources (:func:`factor_constants_out_of_sums`: ``1/(4 pi)``
    applied once per target where it is stored, not once per pair). ``rsqrt_error`` (a
    parameter of the kernel asked for, :mod:`fmmloopy.maths.pair_precision`): the relative
    error each ``1/sqrt`` may carry, which takes refinement steps off where it allows.

    Otherwise (``"work_items"``) :func:`vectorised_pairwise`, P2P with its targets split in
    pairs, one's ``1/sqrt`` by ``sqrt`` and a division, the other's by a Newton ``rsqrt`` from
    the bits of the double (:func:`split_targets_over_rsqrt`), so that the divider and the
    FMA pipes work at once (a little faster on AVX2: docs/history.md, 2026-11-23). The
    ``bits`` estimate holds for every normal double, so any squared distance ``Fmm`` makes (its
    coordinates keep them within 2^+-960) gets ``1/sqrt`` to a few units in the last place.

    Complex values (Helmholtz) in float64 take the vector lanes too, split into pairs of
    doubles first (:func:`split_complex_temporaries`; the lanes compute a call the entries
    share once), with ``sin`` and ``cos`` of vectors in arithmetic
    (:func:`lane_trig_preamble`; P2P's rate with and without: docs/history.md, 2026-11-28,
    "Helmholtz in vector lanes"); in float32, and on the work-item path,
    :func:`vectorised_pairwise` (the split ``rsqrt`` assumes real values).
    """
    group = ctx.settings.get("work_group_size", WORK_GROUP_SIZE)
    lanes = ctx.settings.get("targets_in", targets_in(ctx.device)) == "vector_lanes"
    single = np.dtype(ctx.parameters.get("dtype", np.float64)) == np.float32
    options = math_options(ctx.device)
    if ctx.complex_values and (single or not lanes):
        return vectorised_pairwise(knl, group, options)
    if lanes:
        width = ctx.settings.get("lane_width", LANE_WIDTH)
        knl = factor_constants_out_of_sums(knl)
        if ctx.complex_values:
            knl = split_complex_temporaries(knl, inline_trig=False)
            knl = add_preamble(knl, *lane_trig_preamble(width))
        knl = targets_in_vector_lanes(knl, 2 * width if single else width,
                                      ctx.settings.get("lane_chains", LANE_CHAINS),
                                      ctx.parameters.get("rsqrt_error"))
        knl = silence_warnings(knl, "v1_scheduler_fallback")
        return add_build_options(knl, *options)
    if is_single_precision(knl):
        # float32: the Newton helpers are double's; float's 1/sqrt vectorises as it is.
        return vectorised_pairwise(knl, group, options)
    if ctx.settings.get("reciprocal_sqrt", reciprocal_sqrt(ctx.device)) == "bits_newton":
        steps = newton_steps_for("bits", ctx.parameters.get("rsqrt_error"), order=4)
        knl = use_newton_rsqrt(knl, "bits", steps or BITS_NEWTON_STEPS, order=4)
        knl = factor_constants_out_of_sums(hoist_shared_calls(knl))
        return _targets_on_work_items(parallelize_box_loop(knl), group, options)
    if ctx.operator != "p2p":
        return vectorised_pairwise(knl, group, options)
    steps = newton_steps_for("bits", ctx.parameters.get("rsqrt_error"))
    boxes = parallelize_box_loop(knl)
    split = split_targets_over_rsqrt(boxes, "bits", steps)
    if split is boxes:  # a P2P of several fields, which the split leaves: its constants out
        split = factor_constants_out_of_sums(boxes)
    return _targets_on_work_items(split, group, options)


def vectorised_pairwise(knl, work_group_size=WORK_GROUP_SIZE, options=RELAXED_MATH):
    """Targets of a box across work-items; builtin sqrt and relaxed math so the loop vectorises;
    calls the entries share (``exp(1j k r)``) once per pair (:func:`hoist_shared_calls`);
    complex values as pairs of doubles, with a ``sin``/``cos`` LLVM inlines
    (:func:`split_complex_temporaries`), and for them the guard of ``r = 0`` on ``1/r`` alone
    (:func:`guard_the_root`, one selection per pair for both parts): Helmholtz's P2P before
    and after, with and without the moved guard: docs/history.md, 2026-11-26, "Helmholtz and
    Yukawa on the vector path". Real kernels keep their guards (the moved guard made Laplace's
    P2L slower there and left Yukawa's operators within noise)."""
    hoisted = factor_constants_out_of_sums(hoist_shared_calls(knl))
    split = split_complex_temporaries(hoisted)
    if split is not hoisted:  # complex values, now in doubles
        split = guard_the_root(split)
    return _targets_on_work_items(parallelize_box_loop(split), work_group_size, options)


def _targets_on_work_items(knl, work_group_size=WORK_GROUP_SIZE, options=RELAXED_MATH):
    """Targets over ``l.0``; ``sqrt``, ``exp``, ``sin`` and ``cos`` inline (PoCL's library
    calls stop the vectorisation: :func:`use_inline_math`; Yukawa's P2P with and without them:
    docs/performance.md, "Helmholtz on the vector path")."""
    knl = spread_over_local_axis(knl, "itgt", work_group_size)
    knl = use_inline_math(use_builtin_sqrt(knl))
    return add_build_options(knl, *options)


#: Matvec lists grouped by matrix (grouping made M2L fast: docs/performance.md) in this many
#: blocks of target boxes per core: a matrix is read once per block and group, so blocks are made as
#: large as keeping every core busy allows (small blocks measured several times slower:
#: docs/history.md, 2026-11-22, "Figures that were in the code's docstrings").
BLOCKS_PER_CORE = 2
#: Pairs of a group computed together (register tile), one accumulator vector per pair: 4, and
#: 8 where the device's vectors hold 8 doubles (AVX-512: 32 registers, two per 16-double
#: accumulator, :func:`vector_width`).
PAIR_TILE = 4
WIDE_PAIR_TILE = 8
#: Float64 lanes of one accumulator vector, and where the device's vectors hold 8 doubles
#: (AVX-512) twice that: two registers per accumulator, measured faster there (docs/history.md,
#: 2026-11-23, "Against exafmm-t, and the compressed M2L", item 5).
VECTOR_WIDTH = 8
WIDE_VECTOR_WIDTH = 16


def has_wide_vectors(device) -> bool:
    """Whether ``device``'s vectors hold 8 doubles or more (:func:`vector_doubles`: PoCL's
    ``preferred_vector_width_double``, 8 on AVX-512, 4 on AVX2; ``$FMMLOOPY_VECTOR_DOUBLES``
    overrides it, so that one machine runs the other class's paths)."""
    return vector_doubles(device) >= 8


def pair_tile(device) -> int:
    """The default pair tile on ``device``: :data:`WIDE_PAIR_TILE` where
    :func:`has_wide_vectors`, else :data:`PAIR_TILE`. On AVX-512 the M2L measured alike with
    tiles of 8 to 16 pairs and slower with 4 or 24 (docs/history.md, 2026-11-23, "Against
    exafmm-t, and the compressed M2L", item 5)."""
    return WIDE_PAIR_TILE if has_wide_vectors(device) else PAIR_TILE


def vector_width(device) -> int:
    """Output coefficients per accumulator vector on ``device``: :data:`WIDE_VECTOR_WIDTH` where
    its vectors hold 8 doubles, else :data:`VECTOR_WIDTH`."""
    return WIDE_VECTOR_WIDTH if has_wide_vectors(device) else VECTOR_WIDTH


def matvec_layout(device, settings=None):
    """The grouped layout of the matvec recipe's ``settings`` (default: its defaults on
    ``device``: the pair tile sized to the device's vectors, :func:`pair_tile`), the matrices'
    rows padded to whole accumulator vectors (:func:`vector_width`)."""
    settings = settings or {}
    return Grouped(pair_tile=settings.get("pair_tile", pair_tile(device)),
                   blocks_per_compute_unit=settings.get("blocks_per_core", BLOCKS_PER_CORE),
                   row_multiple=settings.get("vector_width", vector_width(device)))


#: The matvec recipe's speed choices, the functions and constants above their defaults.
MATVEC_PARAMETERS = {
    "pair_tile": Parameter((2, 4, 6, 8, 12, 16), pair_tile,
                           "pairs of a group that share each matrix load (register tile)"),
    "vector_width": Parameter((4, 8, 16), vector_width,
                              "output coefficients per accumulator vector"),
    "blocks_per_core": Parameter((1, 2, 4, 8), BLOCKS_PER_CORE,
                                 "blocks of target boxes per compute unit"),
}


@recipe("matvec", device="cpu", layout=matvec_layout, complex_values=True,
        parameters=MATVEC_PARAMETERS)
def matvec_cpu(knl, ctx):
    """One work-item per block of target boxes; within a group, the layout's pair tile
    (:func:`matvec_layout`) of pairs at a time share each matrix load, and output coefficients
    go :func:`vector_width` at a time to vector registers (:func:`vectorize_output_coefficients`,
    for any coefficient count). Complex values keep the pair tile and leave the coefficients
    scalar (the accumulator vectors are of doubles), with ``cdouble_fma``'s ``fma`` a
    multiply-add instead of PoCL's library call (:data:`FMA_PREAMBLE`; Helmholtz's M2L before
    and after: docs/history.md, 2026-11-26, "Helmholtz and Yukawa on the vector path").
    """
    knl = lp.tag_inames(knl, {"iblock": "g.0"})
    knl = unroll_pair_tile(knl)
    if ctx.complex_values:
        knl = add_preamble(knl, *FMA_PREAMBLE)
        knl = lp.prioritize_loops(knl, "iexp_tgt,iexp_src,ipair")
    else:
        layout = ctx.parameters["layout"]
        knl = vectorize_output_coefficients(knl, layout.row_multiple, layout.aligned_rows)
        knl = lp.prioritize_loops(knl, "iexp_tgt_outer,iexp_src,ipair")
    knl = silence_warnings(knl, "v1_scheduler_fallback", "vectorize_failed")
    return add_build_options(knl, *math_options(ctx.device))


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


def vectorize_output_coefficients(knl, width=VECTOR_WIDTH, aligned_rows=False):
    """Output coefficients ``width`` at a time in vector registers, for any number of them.

    The grouped layout pads the transposed matrices' rows to a multiple of ``width``
    (:attr:`~fmmloopy.maths.layouts.Grouped.row_multiple`, which :func:`matvec_layout` sets to
    the same width), so ``iexp_tgt``, which runs over the padded row, splits into whole chunks:
    the accumulators ``acc`` become ``double8`` or ``double16`` vectors, the matrix entries of
    a chunk move as whole vectors into a private ``matrix_lanes`` that the tile's pairs share,
    and the padded lanes compute zeros that the store leaves out
    (:func:`store_whole_chunks_unguarded`). One kernel serves every order and rank; a chunk
    that is partly padding costs a vector operation, not a lane each (the kernels specialised
    to each size ran a partial chunk lane by lane). Where every launch's coefficient count is
    a multiple of ``width`` (``aligned_rows``: a kernel of its own,
    :func:`fmmloopy.maths.layouts.for_sizes`), the target rows start on whole vectors too and
    the results are stored as whole vectors (stored lane by lane, the stores of the M2L's 32-
    and 48-row cores cost a good part of its time on AVX-512: docs/history.md, 2026-11-27,
    "Cold start"). Indices are computed in 64 bits: with ``int`` indices the compiler
    sign-extends each lane's index on its own and loads the lanes one by one.
    """
    knl = assume(knl, f"{TARGET_STRIDE} mod {width} = 0")
    knl = lp.split_iname(knl, "iexp_tgt", width)
    knl = lp.extract_subst(knl, "matrix_entry", "transposed_matrices[imatrix, iexp_src, c]",
                           parameters="c")
    knl = lp.precompute(knl, "matrix_entry", sweep_inames="iexp_tgt_inner",
                        precompute_inames="iexp_tgt_fetch", temporary_name="matrix_lanes",
                        temporary_address_space=lp.AddressSpace.PRIVATE,
                        default_tag="vec", compute_insn_id="fetch_matrix_lanes",
                        precompute_outer_inames=frozenset(
                            {"iblock", "igroup", "ipair_tile", "iexp_tgt_outer", "iexp_src"}))
    knl = lp.privatize_temporaries_with_inames(knl, "iexp_tgt_inner", only_var_names={"acc"})
    knl = store_whole_chunks_unguarded(knl, width, aligned_rows)
    copies = [("id:init", "iexp_tgt_init", "vec"),
              ("id:store", "iexp_tgt_store", "vec" if aligned_rows else "unr")]
    if not aligned_rows:  # the last, partial chunk: lane by lane
        copies.append(("id:store_tail", "iexp_tgt_tail", "unr"))
    for within, copy, tag in copies:
        knl = lp.duplicate_inames(knl, "iexp_tgt_inner", within=within, new_inames=copy)
        knl = lp.tag_inames(knl, {copy: tag})
    knl = lp.tag_inames(knl, {"iexp_tgt_inner": "vec"})
    knl = lp.tag_array_axes(knl, "matrix_lanes", "vec")
    knl = lp.tag_array_axes(knl, "acc", "c,vec")
    knl = lp.split_array_axis(knl, "transposed_matrices", 2, width)
    knl = lp.tag_array_axes(knl, "transposed_matrices", "c,c,c,vec")
    if aligned_rows:  # rows of whole vectors: the results move as vectors
        knl = assume(knl, isl.BasicSet(f"[n_target_coeffs] -> {{ : n_target_coeffs > 0 and "
                                       f"n_target_coeffs mod {width} = 0 }}"))
        knl = lp.split_array_axis(knl, "target_vectors", 1, width)
        knl = lp.tag_array_axes(knl, "target_vectors", "c,c,vec")
    entry = knl.default_entrypoint
    return knl.with_kernel(entry.copy(index_dtype=lp.types.to_loopy_type(np.int64)))


def store_whole_chunks_unguarded(knl, width, aligned_rows=False):
    """The grouped matvec's store (guarded per coefficient by ``iexp_tgt < n_target_coeffs``)
    as two stores: chunks of ``width`` coefficients that are whole, under one guard for the
    chunk, and the last, partial chunk, guarded per coefficient. The two cover what the one
    did; the whole chunks' lanes then share one condition, so the compiler stores them
    without a branch per lane. With ``aligned_rows`` (every launch's rows a multiple of
    ``width``, and the padded rows then the rows themselves) every chunk is whole: one store,
    without the guard."""
    entry = knl.default_entrypoint
    store = entry.id_to_insn["store"]
    conditions = set()
    for predicate in store.predicates:  # ``a and b`` as two conditions
        conditions |= set(predicate.children if isinstance(predicate, LogicalAnd)
                          else (predicate,))
    rows = {condition for condition in conditions if "n_target_coeffs" in str(condition)}
    if len(rows) != 1:
        raise ValueError(f"expected one guard on n_target_coeffs in the store, found {rows}")
    if aligned_rows:
        return knl.with_kernel(entry.copy(instructions=[
            insn.copy(predicates=frozenset(conditions - rows)) if insn.id == "store" else insn
            for insn in entry.instructions]))
    last_lane = Variable("iexp_tgt_outer") * width + (width - 1)
    limit = Variable("n_target_coeffs")
    # The two write disjoint chunks: no order between them.
    whole = store.copy(predicates=frozenset((conditions - rows)
                                            | {Comparison(last_lane, "<", limit)}),
                       no_sync_with=store.no_sync_with | {("store_tail", "any")})
    tail = store.copy(id="store_tail",
                      predicates=frozenset(conditions | {Comparison(last_lane, ">=", limit)}),
                      no_sync_with=store.no_sync_with | {("store", "any")})
    instructions = [insn for insn in entry.instructions if insn.id != "store"]
    return knl.with_kernel(entry.copy(instructions=[*instructions, whole, tail]))
