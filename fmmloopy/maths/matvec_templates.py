"""The batched-matvec templates over a CSR box list: per box, one matrix per listed source box
(:func:`make_matvec_kernel`), or the pairs grouped by matrix (:func:`make_grouped_matvec_kernel`).

They follow the naming contract of :mod:`fmmloopy.maths.templates`, which re-exports them.
"""

from __future__ import annotations

import loopy as lp
import numpy as np

from fmmloopy.maths.geometry import INDEX_DTYPE
from fmmloopy.maths.layouts import TARGET_STRIDE
from fmmloopy.maths.template_options import LANG_VERSION, finish_template


def make_matvec_kernel(name: str, *, accumulate: bool = False, dtype: np.dtype = np.float64,
                       value_dtype: np.dtype | None = None) -> lp.TranslationUnit:
    """The batched-matvec template over a CSR box list.

    ``target_vectors[t] (+)= level_scales[box_levels[t]]
    * sum_{e in list(t)} matrices[matrix_indices[e]] @ source_vectors[source_box_lists[e]]``
    for every ``t`` in ``target_boxes``. The matrices are ``n_target_coeffs x n_source_coeffs``,
    both launch arguments (:data:`MATVEC_SIZES`). The level scales are ``dtype``; matrices and
    vectors ``value_dtype`` (default ``dtype``; complex for a complex kernel).
    """
    dtype = np.dtype(dtype)
    value_dtype = dtype if value_dtype is None else np.dtype(value_dtype)
    store = "target_vectors[tgt_box, iexp_tgt] + scale * acc" if accumulate else "scale * acc"
    instructions = f"""
    for itgt_box
      <> tgt_box = target_boxes[itgt_box] {{tags=bounds}}
      <> isrc_box_start = source_box_starts[itgt_box] {{tags=bounds}}
      <> isrc_box_end = source_box_starts[itgt_box + 1] {{tags=bounds}}
      <> scale = level_scales[box_levels[tgt_box]]
      for iexp_tgt
        <> acc = 0 {{id=init}}
        for isrc_box
          <> src_box = source_box_lists[isrc_box] {{tags=bounds}}
          <> imatrix = matrix_indices[isrc_box] {{tags=bounds}}
          for iexp_src
            acc = acc + matrices[imatrix, iexp_tgt, iexp_src] * source_vectors[src_box, iexp_src] \
                {{id=update, dep=init}}
          end
        end
        target_vectors[tgt_box, iexp_tgt] = {store} {{id=store, dep=update}}
      end
    end
    """
    domains = [
        "{[itgt_box, iexp_tgt]: 0 <= itgt_box < ntarget_boxes "
        "and 0 <= iexp_tgt < n_target_coeffs}",
        "{[isrc_box]: isrc_box_start <= isrc_box < isrc_box_end}",
        "{[iexp_src]: 0 <= iexp_src < n_source_coeffs}",
    ]
    args = [
        lp.GlobalArg("target_boxes", INDEX_DTYPE, "ntarget_boxes"),
        lp.GlobalArg("source_box_starts", INDEX_DTYPE, "ntarget_boxes + 1"),
        lp.GlobalArg("source_box_lists", INDEX_DTYPE, "nsource_list_entries"),
        lp.GlobalArg("matrix_indices", INDEX_DTYPE, "nsource_list_entries"),
        lp.GlobalArg("matrices", value_dtype, "nmatrices, n_target_coeffs, n_source_coeffs"),
        *_expansion_args(dtype, value_dtype),
        lp.ValueArg("nboxes, ntarget_boxes, nsource_list_entries, nmatrices, nlevels, "
                    "n_target_coeffs, n_source_coeffs", INDEX_DTYPE),
    ]
    knl = lp.make_kernel(domains, instructions, args, name=name, lang_version=LANG_VERSION)
    return finish_template(knl, "n_target_coeffs >= 1 and n_source_coeffs >= 1")


def make_grouped_matvec_kernel(name: str, *, pair_tile: int = 1, dtype: np.dtype = np.float64,
                               value_dtype: np.dtype | None = None) -> lp.TranslationUnit:
    """The batched-matvec template over (target, source) pairs grouped by matrix.

    The same sum as :func:`make_matvec_kernel` (always accumulating), walked in another order:
    target boxes come in blocks; each block's pairs are grouped by matrix, so one matrix serves
    every pair of its group (a small matrix-matrix product: "matrix-major" M2L)::

        for each block, for each group of the block (matrix m), for each pair (t, s) of the group:
            target_vectors[t] += level_scales[box_levels[t]] * matrices[m] @ source_vectors[s]

    Matrices are stored transposed, ``transposed_matrices[m, iexp_src, iexp_tgt]``, so the
    coefficients of one output run contiguously, each row ``n_target_stride`` long
    (:data:`TARGET_STRIDE`, at least ``n_target_coeffs``, the entries past it zero): the
    accumulators run over the whole stride, so that a recipe may cut it into whole vectors, and
    only the first ``n_target_coeffs`` are stored. A group holds each target box at most once
    and blocks hold disjoint target boxes, so blocks may run in parallel and the pairs of a
    group too; groups of one block update the same boxes and must stay in order (or be
    separated by a barrier). See :mod:`fmmloopy.maths.layouts` for how the lists are built.

    A group's pairs are walked in tiles of ``pair_tile`` (loop ``ipair_tile``, then ``ipair``
    inside the tile, of fixed length so that a recipe may unroll it into a register tile); the
    last tile repeats the group's last pair and skips its stores. Dtypes as in
    :func:`make_matvec_kernel`.
    """
    dtype = np.dtype(dtype)
    value_dtype = dtype if value_dtype is None else np.dtype(value_dtype)
    instructions = f"""
    for iblock
      <> igroup_start = block_group_starts[iblock] {{tags=bounds}}
      <> igroup_end = block_group_starts[iblock + 1] {{tags=bounds}}
      for igroup
        <> imatrix = group_matrices[igroup] {{tags=bounds}}
        <> ipair_start = group_pair_starts[igroup] {{tags=bounds}}
        <> group_size = group_pair_starts[igroup + 1] - ipair_start {{tags=bounds}}
        <> group_tiles = (group_size + {pair_tile - 1}) // {pair_tile} {{tags=bounds}}
        for ipair_tile
          for ipair
            <> pair = ipair_tile * {pair_tile} + ipair {{tags=bounds}}
            <> pair_used = ipair_start + (pair if pair < group_size else group_size - 1) \
                {{tags=bounds}}
            <> tgt_box = pair_targets[pair_used] {{tags=bounds}}
            <> src_box = pair_sources[pair_used] {{tags=bounds}}
            <> scale = level_scales[box_levels[tgt_box]] {{tags=bounds}}
            for iexp_tgt
              <> acc = 0 {{id=init}}
              for iexp_src
                acc = acc + transposed_matrices[imatrix, iexp_src, iexp_tgt] \
                    * source_vectors[src_box, iexp_src] {{id=update, dep=init}}
              end
              if pair < group_size and iexp_tgt < n_target_coeffs
                target_vectors[tgt_box, iexp_tgt] = target_vectors[tgt_box, iexp_tgt] \
                    + scale * acc {{id=store, dep=update}}
              end
            end
          end
        end
      end
    end
    """
    domains = [
        "{[iblock]: 0 <= iblock < nblocks}",
        "{[igroup]: igroup_start <= igroup < igroup_end}",
        "{[ipair_tile]: 0 <= ipair_tile < group_tiles}",
        f"{{[ipair]: 0 <= ipair < {pair_tile}}}",
        f"{{[iexp_tgt]: 0 <= iexp_tgt < {TARGET_STRIDE}}}",
        "{[iexp_src]: 0 <= iexp_src < n_source_coeffs}",
    ]
    args = [
        lp.GlobalArg("block_group_starts", INDEX_DTYPE, "nblocks + 1"),
        lp.GlobalArg("group_matrices", INDEX_DTYPE, "ngroups"),
        lp.GlobalArg("group_pair_starts", INDEX_DTYPE, "ngroups + 1"),
        lp.GlobalArg("pair_targets", INDEX_DTYPE, "npairs"),
        lp.GlobalArg("pair_sources", INDEX_DTYPE, "npairs"),
        lp.GlobalArg("transposed_matrices", value_dtype,
                     f"nmatrices, n_source_coeffs, {TARGET_STRIDE}"),
        *_expansion_args(dtype, value_dtype),
        lp.ValueArg("nblocks, ngroups, npairs, nmatrices, nboxes, nlevels, "
                    f"n_target_coeffs, n_source_coeffs, {TARGET_STRIDE}", INDEX_DTYPE),
    ]
    knl = lp.make_kernel(domains, instructions, args, name=name, lang_version=LANG_VERSION)
    return finish_template(knl, f"n_source_coeffs >= 1 and {TARGET_STRIDE} >= 1")


def _expansion_args(dtype: np.dtype, value_dtype: np.dtype) -> list:
    """The arguments both matvec layouts share: per-box expansion vectors and level scales."""
    return [
        lp.GlobalArg("source_vectors", value_dtype, "nboxes, n_source_coeffs"),
        lp.GlobalArg("target_vectors", value_dtype, "nboxes, n_target_coeffs"),
        lp.GlobalArg("box_levels", INDEX_DTYPE, "nboxes"),
        lp.GlobalArg("level_scales", dtype, "nlevels"),
    ]
