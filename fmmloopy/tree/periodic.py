"""A periodic cell's tree: the cell's own boxes and the images of them its lists reach.

A fully periodic FMM (docs/fmm.md, "Periodic boundaries") sums the charges of a cubic cell of
side ``L`` and of every image of them under the lattice ``n L``. The cell's points build an
ordinary adaptive tree; the images enter as boxes of a larger free-space tree (:class:`Periodic`,
``tree``), whose root is the cube of side ``4 L`` that holds the cell as one of its level-2
boxes (level-2 coordinates ``(1, 1, 1)``) and the cell's 26 neighbours around it. Every box of
the cell is copied into each neighbour, shifted by ``n L`` (``|n|_inf = 1``), as far as the
cell's own boxes can reach it through their lists:

* an image box is kept where its gap to the cell is at most its own side (the V-list sources
  of a cell box lie within that, and so do the U, W and X entries of its leaves), and
* every descendant of a kept image box of at most ``small`` sources (those W entries the FMM
  sums directly move to the direct list as their whole subtree).

Kept image leaves hold copies of their real leaf's sources (ghost sources); the lists of the
cell's boxes are then those of any free-space tree (:func:`~fmmloopy.tree.lists.
build_interaction_lists` over this tree, rows of the real boxes only), and the multipole of an
image box is its real box's. The images farther away, ``|n|_inf >= 2``, are the far lattice
operator's (:mod:`fmmloopy.maths.periodic`), applied at the cell box.

A slab (periodic along two axes) or a wire (along one) has images along its periodic axes only:
its 8 or 2 neighbours (:func:`image_shifts`); along a free axis the points are not wrapped.

The cell box is at level 2, the first level with expansions: levels 0 and 1 hold only the
ancestors of the cell and its neighbours. The cell is always split (the far lattice acts on its
children).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from fmmloopy.maths.periodic import ALL_AXES, free_axes, offset_code
from fmmloopy.tree.csr import INDEX_DTYPE, ranges_to_indices, select_rows, starts_from_counts
from fmmloopy.tree.lists import InteractionLists, VList
from fmmloopy.tree.morton import morton_encode, placeholder
from fmmloopy.tree.octree import KeysOf, SortedPoints, Tree, sort_in_cube, tree_of_boxes
from fmmloopy.tree.refinement import point_keys

__all__ = ["AXIS_NAMES", "CELL_LEVEL", "Periodic", "cell_children", "cell_root", "image_shifts",
           "into_cell", "lattice_list", "periodic_tree", "real_rows"]

_U64 = np.uint64

#: The level of the cell box in the tree with its images.
CELL_LEVEL = 2
#: The names of the axes, as ``periodic_axes`` and messages give them.
AXIS_NAMES = "xyz"


def image_shifts(axes: tuple[int, ...] = ALL_AXES) -> np.ndarray:
    """The neighbours' lattice vectors ``n`` (``|n|_inf = 1``, 0 along the axes not in
    ``axes``, the periodic ones), as integers: 26 for a cell periodic along every axis, a
    slab's 8, a wire's 2."""
    return np.array([n for n in itertools.product((-1, 0, 1), repeat=3)
                     if any(n) and all(n[axis] == 0 for axis in free_axes(axes))],
                    dtype=np.int64)


def cell_root(lower: np.ndarray, side: float) -> tuple[np.ndarray, float]:
    """``(centre, half_width)`` of the root cube (side ``4 L``) whose level-2 box ``(1, 1, 1)``
    is the cell ``[lower, lower + L)``."""
    return np.asarray(lower, np.float64) + side, 2.0 * side


def into_cell(points: np.ndarray, lower: np.ndarray, side: float, depth: int,
              axes: tuple[int, ...] = ALL_AXES) -> np.ndarray:
    """``points`` wrapped into the cell ``[lower, lower + L)`` (``x - L floor((x - lower) /
    L)``), then moved by a few units in the last place where rounding would key them into a
    neighbour's box at level ``depth`` of :func:`cell_root`'s cube (a point on an upper face
    goes to the lower face: they are one face of the lattice).

    Only the periodic ``axes`` wrap: along the others (a slab's or a wire's free axes) the
    points must lie in ``[lower, lower + L]`` (ValueError naming the axis otherwise), the
    upper face moved just inside."""
    points = np.asarray(points, np.float64)
    lower = np.asarray(lower, np.float64)
    offsets = np.mod(points - lower, side)
    offsets[offsets >= side] = 0.0  # mod of a tiny negative number rounds to the side
    for free in free_axes(axes) if len(points) else []:
        along = points[:, free] - lower[free]
        if along.min() < 0 or along.max() > side:
            name = AXIS_NAMES[free]
            raise ValueError(
                f"the points must lie in the cell along its free axis {name}, "
                f"[{lower[free]!r}, {lower[free] + side!r}] (periodic along "
                f"{''.join(AXIS_NAMES[axis] for axis in axes)} only); got {name} from "
                f"{points[:, free].min()!r} to {points[:, free].max()!r}")
        offsets[:, free] = along
    wrapped = lower + offsets
    centre, half_width = cell_root(lower, side)
    cells = 1 << depth
    first, stop = cells // 4, cells // 2  # the cell's keys per axis: level 2, index 1
    for _ in range(64):
        index = np.floor((wrapped - (centre - half_width)) * (cells / (2.0 * half_width)))
        below, above = index < first, index >= stop
        if not (below.any() or above.any()):
            return wrapped
        wrapped[below] = np.nextafter(wrapped[below], np.inf)
        wrapped[above] = np.nextafter(wrapped[above], -np.inf)
    raise AssertionError("points could not be keyed inside the periodic cell")


@dataclass(frozen=True, eq=False)
class Periodic:
    """The tree of a periodic cell and its images (module docstring), in that tree's numbering.

    Its sources are the cell's sources (user indices ``0..N-1``) followed by the ghost
    sources (user indices ``N..``, copies of the sources :attr:`ghost_sources` names); its
    targets are the cell's targets (the sources, as a separate array, where the FMM's targets
    are its sources)."""

    tree: Tree
    #: (nboxes,) bool: the cell's own boxes (levels >= 2), whose rows the lists keep.
    real: np.ndarray
    #: (nboxes,) int32: the box each box is a copy of (itself for the cell's own boxes).
    real_box: np.ndarray
    #: The cell box (level 2).
    cell_box: int
    #: (nghosts,) int32: the user index of the source each ghost source copies.
    ghost_sources: np.ndarray
    #: (nboxes,) int32: sources under each box, an image box counting its real box's.
    source_counts: np.ndarray
    #: (ns + nghosts,) int64: the user source each source of the tree is (a ghost: the source
    #: it copies): ``values[..., source_order]`` puts per-source values in the tree's order.
    source_order: np.ndarray

    @property
    def image_boxes(self) -> np.ndarray:
        """The image boxes at levels with expansions, whose multipoles are their real box's."""
        return np.flatnonzero(~self.real & (self.tree.box_levels >= CELL_LEVEL)
                              & (self.source_counts > 0)).astype(np.int32)


def _image_boxes(tree: Tree, small: int, shifts: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(shift index, box, image key)`` of every kept image (module docstring) of the boxes
    of ``tree`` at levels >= 2 (the cell's), level by level, under the lattice vectors
    ``shifts`` (:func:`image_shifts`)."""
    levels = tree.box_levels.astype(np.int64)
    cell = levels >= CELL_LEVEL
    boxes = np.flatnonzero(cell)
    kept = np.zeros((len(shifts), tree.nboxes), dtype=bool)
    small_box = tree.box_source_counts <= small
    coords = {}
    for level in range(CELL_LEVEL, tree.nlevels):
        at = np.arange(tree.level_starts[level], tree.level_starts[level + 1])
        start = 1 << (level - CELL_LEVEL)  # the cell's first index at this level, = its size
        moved = tree.box_coords[at].astype(np.int64)[None] + start * shifts[:, None, :]
        near = np.all((moved >= start - 2) & (moved <= 2 * start + 1), axis=2)
        parents = tree.box_parents[at]
        under_small = (kept[:, parents] & small_box[parents][None]) if level > CELL_LEVEL \
            else np.zeros_like(near)
        kept[:, at] = near | under_small
        coords[level] = moved
    shift_index, box = np.nonzero(kept[:, boxes])
    box = boxes[box]
    keys = np.empty(len(box), dtype=_U64)
    for level, moved in coords.items():
        at_level = levels[box] == level
        local = box[at_level] - tree.level_starts[level]
        keys[at_level] = morton_encode(moved[shift_index[at_level], local]) | placeholder(
            np.full(np.count_nonzero(at_level), level))
    return shift_index, box, keys


def _split_cell(points: SortedPoints, level_dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The boxes of few points, which the refinement left at the cell or above: the root, its
    child holding the cell, the cell, and the cell's children with points as leaves (the far
    lattice acts on the cell's children, :mod:`fmmloopy.maths.periodic`)."""
    child_level = CELL_LEVEL + 1
    point_keys_ = points.builder.all_keys
    children = np.unique(point_keys_ >> _U64(3 * (points.depth - child_level)))
    children |= placeholder(np.full(len(children), child_level))
    # root, its octant 0, then that box's octant 7: the cell at level-2 coordinates (1, 1, 1)
    keys = np.concatenate([np.array([1, 8, 8 * 8 + 7], dtype=_U64), children])
    levels = np.concatenate([np.arange(child_level), np.full(len(children), child_level)])
    leaf = np.arange(len(keys)) > CELL_LEVEL
    return keys, levels.astype(level_dtype), leaf


def periodic_tree(points: SortedPoints, n_crit: int,
                  boxes: tuple[np.ndarray, np.ndarray, np.ndarray], side: float, small: int,
                  keys_of: KeysOf = point_keys, axes: tuple[int, ...] = ALL_AXES) -> Periodic:
    """The tree of the cell's points with its images (:class:`Periodic`).

    ``points``: the cell's points (:func:`into_cell`) sorted in :func:`cell_root`'s cube
    (:func:`~fmmloopy.tree.octree.sort_in_cube`, targets given even where they are the
    sources); ``boxes``: their tree's boxes (:func:`~fmmloopy.tree.octree.tree_boxes`);
    ``side``: the cell's ``L``; ``small``: the most sources of a box whose images are kept
    whole (the W boxes summed directly); ``axes``: the periodic axes (the images along those
    only)."""
    keys, levels, leaf = boxes
    if not np.any(levels > CELL_LEVEL):
        keys, levels, leaf = _split_cell(points, levels.dtype)
    cell_tree = tree_of_boxes(points, n_crit, keys, levels, leaf)
    shifts = image_shifts(axes)
    shift_index, copied, image_keys = _image_boxes(cell_tree, small, shifts)
    # The ancestors of the 27 level-2 boxes: the root's 8 children.
    level_one = np.arange(8, dtype=_U64) | placeholder(np.ones(8, dtype=np.int64))
    level_one = level_one[~np.isin(level_one, keys)]
    all_keys = np.concatenate([keys, image_keys, level_one])
    all_levels = np.concatenate([levels, levels[copied], np.ones(len(level_one), levels.dtype)])
    all_leaf = np.concatenate([leaf, leaf[copied], np.zeros(len(level_one), bool)])
    real_of = np.concatenate([np.arange(len(keys)), copied, np.full(len(level_one), -1)])
    order = np.argsort(all_keys, kind="stable")  # placeholder keys sort by level, then Morton
    all_keys, all_levels, all_leaf, real_of = (all_keys[order], all_levels[order],
                                               all_leaf[order], real_of[order])
    new_index = np.empty(len(order), dtype=np.int64)
    new_index[order] = np.arange(len(order))
    real = np.zeros(len(order), dtype=bool)
    real[new_index[:len(keys)]] = True
    real &= all_levels >= CELL_LEVEL

    # Ghost sources: each kept image leaf's copy of its real leaf's sources.
    image_leaves = np.flatnonzero(cell_tree.box_is_leaf[copied])
    leaf_boxes = copied[image_leaves]
    starts = cell_tree.box_source_starts[leaf_boxes].astype(np.int64)
    counts = cell_tree.box_source_counts[leaf_boxes].astype(np.int64)
    in_tree = ranges_to_indices(starts, counts)
    ghost_sources = cell_tree.source_user_ids[in_tree].astype(np.int32)
    ghost_shifts = side * np.repeat(shifts[shift_index[image_leaves]], counts, axis=0)
    sources = points.sources
    targets = points.targets if points.targets is not None else points.sources
    with_ghosts = sort_in_cube(np.concatenate([sources, sources[ghost_sources] + ghost_shifts]),
                               targets, points.centre, points.half_width, points.depth, keys_of)
    tree = tree_of_boxes(with_ghosts, n_crit, all_keys, all_levels, all_leaf)

    # What each box is a copy of: itself for the cell's boxes, its real box for an image,
    # none for levels 0 and 1.
    is_image = (order >= len(keys)) & (real_of >= 0)
    real_box = np.where(real, np.arange(len(order)),
                        np.where(is_image, new_index[np.maximum(real_of, 0)], -1))
    source_counts = np.where(is_image, tree.box_source_counts[np.maximum(real_box, 0)],
                             tree.box_source_counts)
    cell_key = morton_encode(np.ones((1, 3), np.int64)) | placeholder(np.array([CELL_LEVEL]))
    cell_box = int(np.searchsorted(all_keys, cell_key[0]))
    source_order = tree.source_user_ids.astype(np.int64)
    ghosts = source_order >= len(sources)
    source_order[ghosts] = ghost_sources[source_order[ghosts] - len(sources)]
    return Periodic(tree=tree, real=real, real_box=real_box.astype(np.int32), cell_box=cell_box,
                    ghost_sources=ghost_sources,
                    source_counts=source_counts.astype(tree.box_source_counts.dtype),
                    source_order=source_order)


def cell_children(periodic: Periodic) -> tuple[np.ndarray, np.ndarray]:
    """The cell box's children (box numbers, by octant) and their positions in the cell,
    ``(children, 3)`` of 0 or 1 per axis (the octant's bits: x, y, z)."""
    children = periodic.tree.box_children[periodic.cell_box]
    octants = np.flatnonzero(children >= 0)
    return children[octants], (octants[:, None] >> np.array([2, 1, 0])) & 1


def lattice_list(periodic: Periodic) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The far lattice's box list: ``(target boxes, (starts, source boxes, operator indices))``
    with a row per box. Each child of the cell box with targets lists every child with sources,
    with the index of the far-lattice operator of their offset
    (:func:`~fmmloopy.maths.periodic.offset_code` of the source's position in the cell less
    the target's: :data:`~fmmloopy.maths.periodic.CHILD_OFFSETS`)."""
    tree = periodic.tree
    children, positions = cell_children(periodic)
    targets = np.flatnonzero(tree.box_target_counts[children] > 0)
    sources = np.flatnonzero(periodic.source_counts[children] > 0)
    targets = targets[np.argsort(children[targets])]  # rows in the order of their boxes
    counts = np.zeros(tree.nboxes, dtype=INDEX_DTYPE)
    counts[children[targets]] = len(sources)
    entries = np.tile(children[sources], len(targets)).astype(INDEX_DTYPE)
    codes = offset_code(positions[None, sources] - positions[targets, None]).reshape(-1)
    return children[targets], (starts_from_counts(counts), entries, codes.astype(INDEX_DTYPE))


def real_rows(lists: InteractionLists, real: np.ndarray) -> InteractionLists:
    """``lists`` with the rows of the boxes outside ``real`` emptied (the images' own lists
    are never evaluated: nothing is computed at an image)."""
    rows = np.flatnonzero(real)
    arrays = {}
    for name in "uvwx":
        aligned = (lists.v_transfer,) if name == "v" else ()
        row_starts, entries, *extra = select_rows(
            getattr(lists, f"{name}_starts"), getattr(lists, f"{name}_lists"), rows, *aligned)
        counts = np.zeros(len(real), dtype=np.int64)
        counts[rows] = np.diff(row_starts)
        arrays[f"{name}_starts"] = starts_from_counts(counts)
        arrays[f"{name}_lists"] = np.asarray(entries, dtype=np.int32)
        if extra:
            arrays["v_transfer"] = np.asarray(extra[0], dtype=np.int32)
    arrays["v"] = VList.of(*(arrays.pop(f"v_{name}") for name in ("starts", "lists",
                                                                   "transfer")))
    return InteractionLists(colleagues=lists.colleagues, **arrays)

