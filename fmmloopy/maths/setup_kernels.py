"""Math-level loopy kernels of the set-up, run where the evaluation runs
(:mod:`fmmloopy.execution.device_setup` maps them to the device and launches them; the numpy
code of :mod:`fmmloopy.tree` is their reference): the points' Morton keys and the V list by
transfer-vector class.

Morton keys (:func:`make_point_keys_kernel`): what :func:`fmmloopy.tree.refinement.point_keys`
computes, operation for operation: each coordinate's cell ``floor((x - lo) * scale)`` clamped to
``[0, top]``, its 21 bits spread two apart, x the highest.

V source of a box for a transfer vector. Box ``b`` (level >= 2, octant ``o`` in its parent)
finds the source box of vector ``v`` among the children of its parent's colleagues: the
colleague in slot ``s`` (:data:`~fmmloopy.maths.geometry.NEIGHBOUR_OFFSETS`) and its child of
octant ``c``, with ``2 * offset(s) + bits(c) - bits(o) = v``; where that child is adjacent to
``b`` for this octant, ``v`` is not in V. :func:`v_source_codes` tabulates ``8 s + c`` per
octant and vector (-1: not in V), with a ninth row of -1 for boxes without a V list (levels 0
and 1), so a kernel reads one table entry and two tree arrays per (box, vector):

    colleague = colleagues[parent, code >> 3]; source = box_children[colleague, code & 7]

(-1 where the table, the colleague or the child says none). Two kernels use it:

* :func:`make_v_class_counts_kernel` -- the V entries of every box in every class
  (``counts[box, class]``): which boxes a class's launches serve and which they read.
* :func:`make_v_class_pairs_kernel` -- one class's pairs in the grouped layout
  (:func:`fmmloopy.maths.layouts.grouped_arguments`): target boxes in blocks of ``block``
  rows, each block's pairs grouped by the class's vector (its matrix), a group's pairs in row
  order. Item ``(blk, j)`` walks its block's rows in order; counting, it sums its pairs; filling,
  it writes them from ``item_starts[blk, j]`` on (the exclusive sum of the counts, taken on the
  host between the two launches), so no item writes where another does, and marks their source
  boxes in ``source_marks`` (the distinct boxes the launch reads).
"""

from __future__ import annotations

import loopy as lp
import numpy as np

from fmmloopy.maths.geometry import (
    INDEX_DTYPE,
    MORTON_SPREAD_STEPS,
    NTRANSFER_VECTORS,
    parent_colleague_children,
    transfer_vector_index,
)

__all__ = ["NO_V_OCTANT", "make_point_keys_kernel", "make_v_class_counts_kernel",
           "make_v_class_pairs_kernel", "v_source_codes"]

_LANG_VERSION = (2018, 2)

#: The row of :func:`v_source_codes` for boxes without a V list (levels 0 and 1).
NO_V_OCTANT = 8


def v_source_codes() -> np.ndarray:
    """(9, 316) int32: ``8 * slot + child octant`` of the source of each transfer vector for a
    box of each octant (module docstring), -1 where the vector is not in V; row
    :data:`NO_V_OCTANT` all -1."""
    offsets, far = parent_colleague_children()
    codes = np.full((NO_V_OCTANT + 1, NTRANSFER_VECTORS), -1, dtype=INDEX_DTYPE)
    for octant in range(8):
        slots, children = np.nonzero(far[octant])
        codes[octant, transfer_vector_index(offsets[octant][slots, children])] = (
            8 * slots + children)
    return codes


def _spread(axis: int) -> str:
    """Instructions that set ``spread_<axis>``: the bits of ``cell_<axis>`` (uint64) spread."""
    lines = [f"<uint64> bits_{axis}_0 = cell_{axis} & {(1 << 21) - 1}"]
    for step, (shift, mask) in enumerate(MORTON_SPREAD_STEPS):
        value = f"bits_{axis}_{step}"
        lines.append(f"<uint64> bits_{axis}_{step + 1} = ({value} | ({value} << {shift})) "
                     f"& {mask}")
    lines.append(f"<uint64> spread_{axis} = bits_{axis}_{len(MORTON_SPREAD_STEPS)}")
    return "\n".join(lines)


def make_point_keys_kernel() -> lp.TranslationUnit:
    """``keys[i]``: the Morton key of ``points[i]`` (``(npoints, 3)``) at the level whose cells
    are ``1 / scale`` wide from ``lo``, ``top`` the last cell."""
    cells = "\n".join(
        f"<> scaled_{axis} = floor((points[i, {axis}] - lo[{axis}]) * scale)\n"
        f"<uint64> cell_{axis} = (0 if scaled_{axis} < 0 else "
        f"(top if scaled_{axis} > top else scaled_{axis}))\n" + _spread(axis)
        for axis in range(3))
    instructions = f"""
    for i
        {cells}
        keys[i] = (spread_0 << 2) | (spread_1 << 1) | spread_2
    end
    """
    knl = lp.make_kernel(
        "{[i]: 0 <= i < npoints}", instructions,
        [lp.GlobalArg("points", np.float64, "npoints, 3"),
         lp.GlobalArg("lo", np.float64, "3"),
         lp.ValueArg("scale", np.float64), lp.ValueArg("top", np.float64),
         lp.GlobalArg("keys", np.uint64, "npoints"),
         lp.ValueArg("npoints", INDEX_DTYPE)],
        name="point_keys", lang_version=_LANG_VERSION)
    return lp.set_options(knl, return_dict=True)


def _tree_arguments() -> list:
    """The tree as the kernels read it: parents (the root's: 0), octants (:data:`NO_V_OCTANT`
    for levels 0 and 1), same-level colleagues and children (-1: none)."""
    return [
        lp.GlobalArg("box_parents", INDEX_DTYPE, "nboxes"),
        lp.GlobalArg("box_octants", INDEX_DTYPE, "nboxes"),
        lp.GlobalArg("colleagues", INDEX_DTYPE, "nboxes, 27"),
        lp.GlobalArg("box_children", INDEX_DTYPE, "nboxes, 8"),
        lp.ValueArg("nboxes", INDEX_DTYPE),
    ]


def _v_source(box: str, code: str) -> str:
    """Instructions that set ``source``: the V source of ``box`` for the table entry ``code``
    (an expression), -1 where there is none."""
    return f"""
        <> code = {code}
        <> colleague = colleagues[box_parents[{box}], ((code >> 3) if code >= 0 else 0)]
        <> child = box_children[(colleague if colleague >= 0 else 0), code & 7]
        <> source = (child if code >= 0 and colleague >= 0 else -1)
    """


def make_v_class_counts_kernel() -> lp.TranslationUnit:
    """``counts[box, class]``: V entries of each box per class, the classes' vectors given as
    table entries ``class_codes[octant, class, j]`` (-1 beyond a class's vectors)."""
    instructions = f"""
    for box, klass
        <> count = 0 {{id=zero}}
        for j
            {_v_source("box", "class_codes[box_octants[box], klass, j]")}
            count = count + (1 if source >= 0 else 0) {{id=add, dep=zero}}
        end
        counts[box, klass] = count {{dep=add}}
    end
    """
    knl = lp.make_kernel(
        "{[box, klass, j]: 0 <= box < nboxes and 0 <= klass < nclasses and 0 <= j < width}",
        instructions,
        [*_tree_arguments(),
         lp.GlobalArg("class_codes", INDEX_DTYPE, "9, nclasses, width"),
         lp.GlobalArg("counts", INDEX_DTYPE, "nboxes, nclasses"),
         lp.ValueArg("nclasses", INDEX_DTYPE), lp.ValueArg("width", INDEX_DTYPE)],
        name="v_class_counts", lang_version=_LANG_VERSION)
    return lp.set_options(knl, return_dict=True)


def make_v_class_pairs_kernel(fill: bool) -> lp.TranslationUnit:
    """One class's grouped pairs (module docstring): ``item_counts[blk, j]`` or, with
    ``fill``, ``pair_targets`` and ``pair_sources`` from ``item_starts[blk, j]`` on; the class's
    vectors as table entries ``codes[octant, j]``."""
    if fill:
        start = "<> position = item_starts[blk, j] {id=zero}"
        body = """
            if valid
                pair_targets[position] = box {id=write_target, dep=zero}
                pair_sources[position] = source {id=write_source, dep=zero}
                source_marks[source] = 1 {id=mark, dep=zero}
                position = position + 1 {id=advance, dep=write_target:write_source}
            end
        """
        finish = ""
        outputs = [lp.GlobalArg("item_starts", INDEX_DTYPE, "nblocks, nvectors"),
                   lp.GlobalArg("pair_targets", INDEX_DTYPE, "npairs"),
                   lp.GlobalArg("pair_sources", INDEX_DTYPE, "npairs"),
                   lp.GlobalArg("source_marks", np.int8, "nboxes"),
                   lp.ValueArg("npairs", INDEX_DTYPE)]
    else:
        start = "<> count = 0 {id=zero}"
        body = "count = count + (1 if valid else 0) {id=add, dep=zero}"
        finish = "item_counts[blk, j] = count {dep=add}"
        outputs = [lp.GlobalArg("item_counts", INDEX_DTYPE, "nblocks, nvectors")]
    instructions = f"""
    for blk, j
        {start}
        for row_in_block
            <> row = blk * block + row_in_block
            <> box = target_boxes[(row if row < ntargets else ntargets - 1)]
            {_v_source("box", "codes[box_octants[box], j]")}
            <> valid = row < ntargets and source >= 0
            {body}
        end
        {finish}
    end
    """
    knl = lp.make_kernel(
        "{[blk, j, row_in_block]: 0 <= blk < nblocks and 0 <= j < nvectors "
        "and 0 <= row_in_block < block}",
        instructions,
        [*_tree_arguments(),
         lp.GlobalArg("target_boxes", INDEX_DTYPE, "ntargets"),
         lp.GlobalArg("codes", INDEX_DTYPE, "9, nvectors"),
         lp.ValueArg("ntargets", INDEX_DTYPE), lp.ValueArg("block", INDEX_DTYPE),
         lp.ValueArg("nblocks", INDEX_DTYPE), lp.ValueArg("nvectors", INDEX_DTYPE), *outputs],
        name="v_class_pairs" if fill else "v_class_pair_counts", lang_version=_LANG_VERSION,
        # Each item writes its own range of positions, which loopy cannot see.
        # (the marks: every write stores 1).
        silenced_warnings=["write_race(write_target)", "write_race(write_source)",
                           "write_race(mark)"] if fill else [])
    return lp.set_options(knl, return_dict=True)
