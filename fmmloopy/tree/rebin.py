"""Moved points in the boxes of a tree built before: the tree an update keeps.

Points that move a little stay in the leaves they were in, or move to neighbouring ones. The
boxes (keys, levels, centres, parents, children), and with them the interaction lists and every
precomputed list an FMM plan cuts from them, hold as long as

- every point lies in the root cube and in a leaf of the tree (a point in a cell where the
  tree has no box needs new boxes; one close enough to the leaf it was in may stay in that
  leaf, its ``looseness``),
- no box gains sources or targets of a kind it held none of (the plan's steps run over the
  boxes that held each kind when it was made: ``holders``),
- no leaf holds more than ``bound`` sources or targets (past it the leaves' direct sums grow
  and a new tree is cheaper; a leaf the tree could not split, at its deepest level, may keep
  what it held).

:func:`rebinned_tree` sorts the points into the kept boxes: their Morton keys are computed in the
order of the old tree, where they are nearly sorted already (a stable sort of nearly sorted keys
costs about one pass), and :func:`~fmmloopy.tree.octree.tree_of_boxes` makes the tree of the kept
boxes over them (their point ranges by binary search). Where a condition fails it says which.
"""

from __future__ import annotations

import numpy as np

from fmmloopy.base.sorting import stable_argsort
from fmmloopy.maths.geometry import INDEX_DTYPE
from fmmloopy.tree.coordinates import bounds
from fmmloopy.tree.octree import KeysOf, SortedPoints, Tree, tree_of_boxes
from fmmloopy.tree.refinement import Refinement, point_keys

__all__ = ["LEFT_THE_ROOT_CUBE", "NO_LEAF", "in_root_cube", "rebinned_tree"]

#: Why the boxes cannot hold points outside the root cube (found before any sort).
LEFT_THE_ROOT_CUBE = "a point left the root cube"


def _loosely_kept(keys: np.ndarray, points: np.ndarray, tree_order: np.ndarray, tree: Tree,
                  role: str, looseness: float) -> np.ndarray:
    """``keys`` (old tree order) with the key of each point in a cell where the tree has no
    leaf replaced by its old leaf's first key, where the point lies within ``looseness``
    times that leaf's width of it (every axis): it stays in that leaf."""
    leaves = np.flatnonzero(tree.box_is_leaf)
    first, end = Refinement(keys, keys, None, tree.max_depth).key_range(
        tree.box_keys[leaves], tree.box_levels[leaves].astype(np.int64))
    by_range = np.argsort(first)
    leaves, first, end = leaves[by_range], first[by_range], end[by_range]
    at = np.searchsorted(first, keys, side="right") - 1
    outside = np.flatnonzero((at < 0) | (keys >= end[np.maximum(at, 0)]))
    if not len(outside):
        return keys
    in_order = tree.leaves_in_point_order(role)  # each point's old leaf, in the old order
    old_leaf = np.repeat(in_order, getattr(tree, f"box_{role}_counts")[in_order])[outside]
    offset = np.abs(points[tree_order[outside]] - tree.box_centres[old_leaf])
    reach = (0.5 + looseness) * 2.0 * tree.box_half_widths[old_leaf]
    near = (offset <= reach[:, None]).all(axis=1)
    first_of_box = np.zeros(tree.nboxes, dtype=keys.dtype)
    first_of_box[leaves] = first
    keys = keys.copy()
    keys[outside[near]] = first_of_box[old_leaf[near]]
    return keys


def _sorted(keys: np.ndarray, tree_order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``keys`` (in the old tree order ``tree_order``) sorted, and the user indices in that
    order."""
    order = stable_argsort(keys)
    return keys[order], tree_order[order].astype(INDEX_DTYPE)


def in_root_cube(tree: Tree, sources: np.ndarray, targets: np.ndarray | None) -> bool:
    """Whether every point lies in ``tree``'s root cube (its upper faces excluded)."""
    low, high = bounds(sources, targets)
    lo, hi = tree.root_centre - tree.root_half_width, tree.root_centre + tree.root_half_width
    return bool((low >= lo).all() and (high < hi).all())


def rebinned_tree(tree: Tree, sources: np.ndarray, targets: np.ndarray | None, bound: int,
                  keys_of: KeysOf = point_keys, looseness: float = 0.0,
                  holders: tuple[np.ndarray, np.ndarray] | None = None) -> Tree | str:
    """``tree`` with its boxes kept and ``sources`` and ``targets`` (``(n, 3)``, user order, as
    many as the tree holds, in its coordinates; targets None where they are the sources) sorted
    into them; or, where the boxes do not hold the points (module docstring), a sentence saying
    why. ``looseness``: a point in a cell where the tree has no leaf stays in its leaf while
    within that fraction of the leaf's width of it (looked for only where such a point is
    found: the search costs a binary search per point; the keys are computed once). ``holders``:
    the boxes that may hold sources and targets (default: those that do)."""
    if not in_root_cube(tree, sources, targets):
        return LEFT_THE_ROOT_CUBE
    lo = tree.root_centre - tree.root_half_width
    roles = [(sources, tree.source_user_ids, "source")]
    if targets is not None:
        roles.append((targets, tree.target_user_ids, "target"))
    keys = [keys_of(points, lo, tree.root_half_width, tree.max_depth)[tree_order]
            for points, tree_order, _ in roles]
    rebinned = _rebinned(tree, sources, targets, keys, bound, holders)
    if looseness and isinstance(rebinned, str) and rebinned.endswith(NO_LEAF):
        keys = [_loosely_kept(role_keys, points, tree_order, tree, role, looseness)
                for role_keys, (points, tree_order, role) in zip(keys, roles, strict=True)]
        return _rebinned(tree, sources, targets, keys, bound, holders)
    return rebinned


#: The end of the reason given where a point lies in a cell without a leaf.
NO_LEAF = "moved into a cell where the tree has no leaf"


def _rebinned(tree: Tree, sources: np.ndarray, targets: np.ndarray | None,
              keys: list[np.ndarray], bound: int,
              holders: tuple[np.ndarray, np.ndarray] | None) -> Tree | str:
    """:func:`rebinned_tree` from the points' keys in the old tree order (sources', and
    targets' where they have their own)."""
    skeys, source_user_ids = _sorted(keys[0], tree.source_user_ids)
    if targets is None:
        tkeys, target_user_ids = skeys, source_user_ids
    else:
        tkeys, target_user_ids = _sorted(keys[1], tree.target_user_ids)
    # The kept boxes over the sorted points (all_keys is only read while boxes are refined).
    points = SortedPoints(sources, targets, tree.root_centre, tree.root_half_width,
                          tree.max_depth, source_user_ids, target_user_ids,
                          Refinement(skeys, tkeys, None, tree.max_depth))
    moved = tree_of_boxes(points, tree.n_crit, tree.box_keys, tree.box_levels, tree.box_is_leaf)
    leaves = tree.box_is_leaf
    held_sources, held_targets = holders or (tree.box_source_counts > 0,
                                             tree.box_target_counts > 0)
    for kind, count, old, held, total in (
            ("source", moved.box_source_counts, tree.box_source_counts, held_sources,
             len(skeys)),
            ("target", moved.box_target_counts, tree.box_target_counts, held_targets,
             len(tkeys))):
        if int(count[leaves].sum()) != total:
            return f"a {kind} {NO_LEAF}"
        if ((count > 0) & ~held).any():
            return f"a box that held no {kind}s gained one"
        fullest = int(count[leaves].max()) if total else 0
        allowed = max(bound, int(old[leaves].max()) if total else 0)  # max_depth's own
        if fullest > allowed:
            return f"a leaf holds {fullest} {kind}s, more than {allowed}"
    return moved
