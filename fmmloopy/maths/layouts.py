"""List layouts of the matvec template: the order in which a kernel walks its (target, source,
matrix) entries. Which layout a kernel uses is a tuning choice, so a recipe asks for one.

* :data:`TARGET_MAJOR` -- a CSR list of source boxes per target box
  (:func:`fmmloopy.maths.templates.make_matvec_kernel`); every entry re-reads its matrix.
* :class:`Grouped` -- target boxes in blocks of ``target_block`` consecutive boxes; each block's
  entries grouped by matrix (:func:`fmmloopy.maths.templates.make_grouped_matvec_kernel`), so a
  matrix is read once per block and group and applied to all the group's pairs.

:func:`layout_arguments` turns the target-major arguments of a launch into those of another
layout, on the host and once per tree (the driver and the check both build them this way).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fmmloopy.base.sorting import stable_argsort, stable_lexsort
from fmmloopy.maths.geometry import INDEX_DTYPE

#: The grouped matvec's row length of ``transposed_matrices``, a launch argument:
#: ``n_target_coeffs`` rounded up to a multiple the layout asks for
#: (:attr:`Grouped.row_multiple`), the rows' entries past ``n_target_coeffs`` zero.
TARGET_STRIDE = "n_target_stride"


@dataclass(frozen=True)
class TargetMajor:
    """Source boxes listed per target box (the template's own CSR order)."""

    kind = "target-major"


@dataclass(frozen=True)
class Grouped:
    """Pairs grouped by matrix inside blocks of consecutive target boxes.

    A larger block reads each matrix for more pairs (less memory traffic); a smaller one gives
    more blocks to run in parallel. ``target_block`` fixes the block size; without it, the
    targets of a launch are cut into ``blocks_per_compute_unit`` blocks per compute unit of the
    device (as large as the parallelism allows).
    """

    target_block: int | None = None
    #: Pairs of a group the kernel walks as one tile (a loop of fixed length a recipe may unroll).
    pair_tile: int = 1
    blocks_per_compute_unit: int = 2
    #: Rows of the transposed matrices padded with zeros to a multiple of this many output
    #: coefficients (:data:`~fmmloopy.maths.templates.TARGET_STRIDE`), so that a recipe may cut
    #: them into whole vectors whatever the order or rank.
    row_multiple: int = 1
    #: Whether every launch's ``n_target_coeffs`` is a multiple of :attr:`row_multiple` (each
    #: target row then starts on a whole vector: :func:`for_sizes` sets it).
    aligned_rows: bool = False
    kind = "grouped"

    def __post_init__(self):
        for name in ("target_block", "pair_tile", "blocks_per_compute_unit", "row_multiple"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"{name} must be a positive integer, not {value!r}")

    def block_size(self, ntarget_boxes: int, compute_units: int, vectors: int = 1) -> int:
        """Target boxes per block for a launch over ``ntarget_boxes`` (rows of ``vectors``
        strength vectors folded into the boxes: a block then covers as many boxes as one
        vector's would, so that the source vectors its groups reread stay as few; docs/fmm.md,
        "Several strength vectors", has the M2L's times with and without)."""
        if self.target_block is not None:
            return self.target_block
        nblocks = self.blocks_per_compute_unit * max(compute_units, 1) * vectors
        return max(-(-ntarget_boxes // nblocks), 1)

    def target_stride(self, n_target_coeffs: int) -> int:
        """The row length of the transposed matrices for ``n_target_coeffs`` outputs."""
        return -(-int(n_target_coeffs) // self.row_multiple) * self.row_multiple


def for_sizes(layout: ListLayout, n_target_coeffs: int | None) -> ListLayout:
    """``layout`` for launches of ``n_target_coeffs`` output coefficients: a grouped layout
    whose :attr:`~Grouped.row_multiple` (above 1) divides them has aligned rows, a kernel of its
    own that may store whole vectors. Where only half that multiple divides them, and the half
    is still :data:`MIN_ALIGNED_ROWS` or more, the rows are aligned to the half (the KIFMM
    surfaces of even orders hold a multiple of 8 points, 152 at order 6, and the compressed
    M2L's ranks are multiples of 8: rows of 16 doubles would leave them a partial vector to
    store lane by lane). Any other is the layout as it is."""
    if not isinstance(layout, Grouped) or n_target_coeffs is None or layout.row_multiple <= 1:
        return layout
    half = layout.row_multiple // 2
    for multiple in (layout.row_multiple, *([half] if half >= MIN_ALIGNED_ROWS else [])):
        if n_target_coeffs % multiple == 0:
            return replace(layout, row_multiple=multiple, aligned_rows=True)
    return layout


#: The narrowest rows :func:`for_sizes` aligns to half a layout's multiple: 8 (the vectors of
#: an AVX-512 register; a layout of 8 on AVX2 keeps its own multiple or none, so that the
#: shipped kernels cover every size there).
MIN_ALIGNED_ROWS = 8


#: The default layout: what every recipe gets unless it asks for another.
TARGET_MAJOR = TargetMajor()

ListLayout = TargetMajor | Grouped


def grouped_arguments(target_major: dict, target_block: int, row_multiple: int = 1
                      ) -> dict[str, np.ndarray | int]:
    """The :class:`Grouped` lists of the same entries as the target-major arguments
    (``target_boxes``, ``source_box_starts``, ``source_box_lists``, ``matrix_indices``).

    Blocks are runs of ``target_block`` consecutive entries of ``target_boxes``; inside a block,
    pairs are grouped by matrix and sorted by target. A target box listed twice with the same
    matrix goes into two groups, so no group holds a target box twice (its pairs may run in
    parallel). ``matrices`` become ``transposed_matrices``, their rows padded to a multiple of
    ``row_multiple`` (:attr:`Grouped.row_multiple`).
    """
    target_boxes = np.asarray(target_major["target_boxes"])
    starts = np.asarray(target_major["source_box_starts"])
    matrix_of_entry = np.asarray(target_major["matrix_indices"])
    ntargets, npairs = len(target_boxes), len(matrix_of_entry)
    nblocks = -(-ntargets // target_block)
    nmatrices = int(matrix_of_entry.max()) + 1 if npairs else 1
    row_of_entry = np.repeat(np.arange(ntargets, dtype=INDEX_DTYPE), np.diff(starts))
    # Pairs by (block, matrix), ties in list order: rows ascend in list order, so a row's
    # entries with one matrix are then side by side, sorted by row. One key per entry (its
    # block from the blocks' first entries), 32-bit, radix-sorted where it fits 16 bits.
    block_firsts = starts[np.minimum(np.arange(nblocks + 1) * target_block, ntargets)]
    group_key = (np.repeat(np.arange(nblocks, dtype=np.int32) * np.int32(nmatrices),
                           np.diff(block_firsts))
                 + matrix_of_entry.astype(np.int32, copy=False))
    order = stable_argsort(group_key, nblocks * nmatrices)
    sorted_rows, sorted_keys = row_of_entry[order], group_key[order]
    new_group = np.ones(npairs, dtype=bool)
    new_group[1:] = sorted_keys[1:] != sorted_keys[:-1]
    # A row's repeat of a matrix (none in the V list's classes) is the how-many-th entry with
    # this row and matrix it is; the later ones go to groups of their own: by block, matrix,
    # repeat and row.
    repeated = ~new_group[1:] & (sorted_rows[1:] == sorted_rows[:-1])
    if repeated.any():
        run_starts = np.maximum.accumulate(np.where(np.append(False, repeated), 0,
                                                    np.arange(npairs)))
        repeat_of_entry = np.zeros(npairs, dtype=np.int64)
        repeat_of_entry[order] = np.arange(npairs) - run_starts
        order = stable_lexsort((row_of_entry, repeat_of_entry, matrix_of_entry,
                                group_key // nmatrices))
        sorted_rows, sorted_keys = row_of_entry[order], group_key[order]
        sorted_repeats = repeat_of_entry[order]
        new_group[1:] = ((sorted_keys[1:] != sorted_keys[:-1])
                         | (sorted_repeats[1:] != sorted_repeats[:-1]))
    group_starts = np.flatnonzero(new_group)
    group_keys = sorted_keys[group_starts]
    arguments = {
        "block_group_starts": np.searchsorted(group_keys // nmatrices,
                                              np.arange(nblocks + 1)).astype(INDEX_DTYPE),
        "group_matrices": (group_keys % nmatrices).astype(INDEX_DTYPE),
        "group_pair_starts": np.append(group_starts, npairs).astype(INDEX_DTYPE),
        "pair_targets": target_boxes[sorted_rows].astype(INDEX_DTYPE),
        "pair_sources": np.asarray(target_major["source_box_lists"])[order].astype(INDEX_DTYPE),
        "nblocks": nblocks, "ngroups": len(group_starts), "npairs": npairs,
    }
    if "matrices" in target_major:
        arguments["transposed_matrices"] = _transposed(target_major["matrices"], row_multiple)
    return arguments


def _transposed(matrices: np.ndarray, row_multiple: int = 1) -> np.ndarray:
    """``matrices[m, i, j]`` as ``[m, j, i]``, the rows padded with zeros to a multiple of
    ``row_multiple``."""
    nmatrices, n_out, n_in = matrices.shape
    stride = -(-n_out // row_multiple) * row_multiple
    transposed = np.zeros((nmatrices, n_in, stride), dtype=matrices.dtype)
    transposed[:, :, :n_out] = np.swapaxes(matrices, 1, 2)
    return transposed


def matrix_arguments(layout: ListLayout, matrices: np.ndarray) -> dict[str, np.ndarray]:
    """The matrices ``(nmatrices, n_out, n_in)`` as a kernel of ``layout`` takes them:
    ``matrices`` (target-major), ``transposed_matrices`` (grouped). They depend on nothing else
    of a launch, so the driver uploads them once for every launch that applies them."""
    if isinstance(layout, Grouped):
        return {"transposed_matrices": _transposed(matrices, layout.row_multiple)}
    return {"matrices": matrices}


#: The key of a launch's target-major arguments that says how many strength vectors its boxes
#: hold folded (:func:`fmmloopy.execution.kernel_arguments.fold_vectors`); absent: one.
FOLDED_VECTORS = "folded_vectors"


def layout_arguments(layout: ListLayout, target_major: dict, compute_units: int = 1) -> dict:
    """The arguments ``layout`` needs, built from a launch's target-major arguments, for a
    device of ``compute_units`` compute units."""
    if isinstance(layout, TargetMajor):
        return dict(target_major)
    if isinstance(layout, Grouped):
        block = layout.block_size(len(target_major["target_boxes"]), compute_units,
                                  target_major.get(FOLDED_VECTORS, 1))
        arguments = dict(target_major) | grouped_arguments(target_major, block,
                                                           layout.row_multiple)
        if "n_target_coeffs" in target_major:
            arguments[TARGET_STRIDE] = layout.target_stride(target_major["n_target_coeffs"])
        return arguments
    raise TypeError(f"unknown list layout {layout!r}")


def empty_launch_arguments(layout: ListLayout) -> dict[str, np.ndarray | int]:
    """Arguments that make a kernel of ``layout`` run one work-group that does nothing (the
    driver compiles kernels this way before the first evaluation)."""
    if isinstance(layout, Grouped):
        return {"nblocks": 1, "block_group_starts": np.zeros(2, INDEX_DTYPE)}
    return {"ntarget_boxes": 1, "target_boxes": np.zeros(1, INDEX_DTYPE),
            "source_box_starts": np.zeros(2, INDEX_DTYPE)}
