"""The same tree on every rank from points spread over ranks (docs/scale-out.md).

Refinement and the 2:1 balance (:mod:`fmmloopy.tree.refinement`) ask the points only for the
counts in given boxes and for the non-empty children of given boxes; the choice of ``n_crit``
(:mod:`fmmloopy.tree.cost`) asks for the non-empty cells of a level too. Here each answer is
the sum (counts) or the union (children, cells) of every rank's answer for its own points, so
every rank builds exactly the boxes one process would build from all the points, while no rank
holds more than its own. The root cube comes from the global bounding box (an all-reduce).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fmmloopy.base.collective import Collectives
from fmmloopy.tree.coordinates import bounds, exponent_for, origin_of_bounds
from fmmloopy.tree.octree import (
    SortedPoints,
    Tree,
    cube_around,
    in_wider_cube,
    sort_in_cube,
    tree_of_boxes,
)
from fmmloopy.tree.refinement import Refinement

__all__ = ["DistributedRefinement", "distributed_in_wider_cube", "global_bounds", "skeleton_tree",
           "sort_distributed"]


class DistributedRefinement(Refinement):
    """A :class:`Refinement` whose counts and cells are those of every rank's points."""

    thread_safe = False  # its counts are collective calls

    def __init__(self, local: Refinement, collectives: Collectives) -> None:
        super().__init__(local.src_keys, local.tgt_keys, local.all_keys, local.depth)
        self.collectives = collectives

    def point_counts(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.collectives.sum(np.array(super().point_counts())))

    def source_counts(self, pkeys: np.ndarray, levels: np.ndarray) -> np.ndarray:
        return self.collectives.sum(super().source_counts(pkeys, levels).astype(np.int64))

    def target_counts(self, pkeys: np.ndarray, levels: np.ndarray) -> np.ndarray:
        if self.targets_are_sources:
            return self.source_counts(pkeys, levels)
        return self.collectives.sum(super().target_counts(pkeys, levels).astype(np.int64))

    def children(self, pkeys: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys, child_levels = super().children(pkeys, levels)
        return self.collectives.union(keys, child_levels.astype(np.int64))

    def counted_children(self, pkeys: np.ndarray, levels: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        keys, child_levels = self.children(pkeys, levels)
        sources = self.source_counts(keys, child_levels)
        return keys, child_levels, sources, (sources if self.targets_are_sources else
                                             self.target_counts(keys, child_levels))

    def cells(self, level: int) -> np.ndarray:
        return self.collectives.union(super().cells(level))[0]

    def starts(self, pkeys: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First global (sorted) source and target of each box: the points of every rank with
        keys below the box's range."""
        lo = self.key_range(pkeys, levels)[0]
        sources = self.collectives.sum(np.searchsorted(self.src_keys, lo).astype(np.int64))
        targets = sources if self.targets_are_sources else self.collectives.sum(
            np.searchsorted(self.tgt_keys, lo).astype(np.int64))
        return sources, targets


def global_bounds(collectives: Collectives, *point_sets: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """Corners of the bounding box of every rank's points (None where no rank has one)."""
    box = bounds(*point_sets)
    lo, hi = (np.full(3, np.inf), np.full(3, -np.inf)) if box is None else box
    lo, hi = collectives.min(np.asarray(lo, np.float64)), collectives.max(
        np.asarray(hi, np.float64))
    return None if not np.all(lo <= hi) else (lo, hi)


def sort_distributed(sources: np.ndarray, targets: np.ndarray | None, depth: int,
                     collectives: Collectives) -> SortedPoints:
    """This rank's points keyed in the global root cube, with a :class:`DistributedRefinement`
    (every rank calls it; ValueError on every rank where no rank has a source or a target)."""
    if not collectives.sum(np.array([len(sources)]))[0] or (
            targets is not None and not collectives.sum(np.array([len(targets)]))[0]):
        raise ValueError("no rank holds a point")
    centre, half_width = cube_around(*global_bounds(collectives, sources, targets))
    points = sort_in_cube(sources, targets, centre, half_width, depth)
    return dataclasses.replace(points, builder=DistributedRefinement(points.builder,
                                                                    collectives))


def distributed_in_wider_cube(points: SortedPoints, scale: float,
                              collectives: Collectives) -> SortedPoints:
    """:func:`~fmmloopy.tree.octree.in_wider_cube` of a rank's points, with the counts of every
    rank's (a root cube :func:`~fmmloopy.tree.cost.choose_tree` tries; every rank calls it)."""
    wider = in_wider_cube(points, scale)
    return dataclasses.replace(wider, builder=DistributedRefinement(wider.builder, collectives))


def skeleton_tree(points: SortedPoints, n_crit: int, keys: np.ndarray, levels: np.ndarray,
                  leaf: np.ndarray) -> Tree:
    """The boxes ``(keys, levels, leaf)`` (:func:`~fmmloopy.tree.octree.tree_boxes` of
    ``points``, whose builder is a :class:`DistributedRefinement`) as a :class:`Tree` with
    every rank's counts and first sorted points, and no points: what the interaction lists,
    the direct lists and the partition are made from, the same on every rank."""
    builder = points.builder
    no_points = np.zeros((0, 3))
    empty = sort_in_cube(no_points, None if builder.targets_are_sources else no_points,
                         points.centre, points.half_width, points.depth)
    tree = tree_of_boxes(empty, n_crit, keys, levels, leaf)
    source_starts, target_starts = builder.starts(keys, levels)
    source_counts = builder.source_counts(keys, levels)
    target_counts = source_counts if builder.targets_are_sources else builder.target_counts(
        keys, levels)
    index = tree.box_source_starts.dtype
    return dataclasses.replace(
        tree, box_source_starts=source_starts.astype(index),
        box_source_counts=source_counts.astype(index),
        box_target_starts=target_starts.astype(index),
        box_target_counts=target_counts.astype(index))


def distributed_working_coordinates(collectives: Collectives, sources: np.ndarray,
                                    targets: np.ndarray | None, homogeneity: float | None,
                                    kernel_name: str):
    """``(origin, exponent, sources, targets)``: the working coordinates of this rank's points
    (:func:`~fmmloopy.tree.coordinates.working_coordinates`) as one process would choose them
    for every rank's points (the global bounds; collective)."""
    lo, hi = global_bounds(collectives, sources, targets)
    origin = origin_of_bounds(lo, hi)
    if origin.any():
        sources = sources - origin
        targets = None if targets is None else targets - origin
        lo, hi = global_bounds(collectives, sources, targets)
    with np.errstate(over="ignore"):
        extent = float((hi - lo).max())
    magnitudes = [np.abs(p) for p in (sources, targets) if p is not None and len(p)]
    nonzero = [m[m > 0] for m in magnitudes]
    smallest = min((float(m.min()) for m in nonzero if m.size), default=np.inf)
    smallest = float(collectives.min(np.array([smallest]))[0])
    separation = np.ldexp(smallest, -53) if np.isfinite(smallest) else np.inf

    def sharper() -> float:
        raise ValueError(
            f"the points span {extent:.3g} and their closest coordinates are too close "
            "for the quick separation bound (smallest nonzero |coordinate| "
            f"{smallest:.3g}); the sharper bound sorts all points and is not available "
            "to a distributed FMM: scale or merge the points first, or use fmmloopy.Fmm")

    exponent = exponent_for(extent, separation, sharper, homogeneity, kernel_name)
    if exponent:
        sources = np.ldexp(sources, -exponent)
        targets = None if targets is None else np.ldexp(targets, -exponent)
    return origin, exponent, sources, targets
