"""Direct sums the tree cannot split, handed to FMMs of their own (nested FMMs).

A leaf at ``max_depth`` holds every point closer than the tree resolves: a cluster finer than
``2**-max_depth`` of the root, the whole point set when one far outlier makes the root huge, or
coincident points. Its direct (P2P) row, the leaf's targets against the sources of its U list
(adjacent leaves, the leaf itself, small W/X boxes), then costs ``targets x sources`` pairs: an
O(N**2) sum. Such a *heavy* row is taken out of the lists and summed by an FMM of its own, with
the row's sources and the leaf's targets, which roots its tree at their bounding box (a few
leaf widths: some 15 levels finer) and nests again where needed.

Removing a row removes exactly its pairs (each source-target pair is summed by one list entry),
so the result is the same sum. Coincident points are merged first, sources with their charges
added, targets evaluated once: a merged source contributes 0 at its own place, as each of its
points did. A row nests only when its points span at most a quarter of the root, so each
nesting shrinks the extent at least fourfold; as the nested points are distinct, nesting ends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fmmloopy.tree.coordinates import span
from fmmloopy.tree.csr import csr_from_pairs, list_rows, ranges_to_indices
from fmmloopy.tree.lists import InteractionLists
from fmmloopy.tree.octree import Tree

__all__ = ["NESTED_ROW_FACTOR", "MergedSum", "NestedRow", "heavy_rows", "merge_coincident",
           "nest_heavy_rows", "without_heavy_rows"]

#: A row is heavy when it costs more pairs than this many times the most a row of full leaves
#: costs (``27 n_crit**2``: the leaf and 26 neighbours with ``n_crit`` points each). A nested
#: FMM has a fixed cost per call beyond its linear work; at ``n_crit`` 150 the bound is ~10**7
#: pairs, a direct sum long enough to outweigh it (docs/robustness.md, "Far points, outliers
#: and crowds").
NESTED_ROW_FACTOR = 16


class Evaluator(Protocol):
    """What a nested FMM is to this module: ``apply(strengths, kernel)`` sums ``kernel`` (the
    fields asked for: potentials or gradients of charges or dipoles; opaque here) over its
    sources with ``strengths`` (``(n,)``, or ``(components, n)``) and returns the outputs at its
    targets (``(m,)``, or ``(components, m)``)."""

    def apply(self, strengths: np.ndarray, kernel: Any) -> np.ndarray: ...


def merge_coincident(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``points`` ``(n, 3)`` (sorted) and, per point, its row among them."""
    points = points + 0.0  # -0.0 becomes 0.0, so that the two merge
    order = np.lexsort(points.T[::-1])
    ordered = points[order]
    first = np.ones(len(points), dtype=bool)
    first[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    inverse = np.empty(len(points), dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    return ordered[first], inverse


class MergedSum:
    """An FMM over ``sources`` and ``targets`` with coincident points merged (see above); when
    the two hold the same points, one FMM with targets = sources."""

    def __init__(self, sources: np.ndarray, targets: np.ndarray,
                 make_fmm: Callable[[np.ndarray, np.ndarray | None], Evaluator]) -> None:
        unique_sources, self.source_inverse = merge_coincident(sources)
        self.nsources = len(unique_sources)
        if sources.shape == targets.shape and np.array_equal(sources, targets):
            self.target_inverse = self.source_inverse
            self.fmm = make_fmm(unique_sources, None)
        else:
            unique_targets, self.target_inverse = merge_coincident(targets)
            self.fmm = make_fmm(unique_sources, unique_targets)

    def __call__(self, strengths: np.ndarray, kernel: Any = None) -> np.ndarray:
        """The sum for ``strengths`` (``(n,)`` or ``(components, n)``, one per original
        source), at every original target (``(m,)`` or ``(components, m)``)."""
        strengths = np.asarray(strengths)
        merged = np.stack([np.bincount(self.source_inverse, weights=row,
                                       minlength=self.nsources)
                           for row in np.atleast_2d(strengths)])
        result = self.fmm.apply(merged[0] if strengths.ndim == 1 else merged, kernel)
        return result[..., self.target_inverse]


@dataclass(frozen=True)
class NestedRow:
    """The direct row of target leaf ``leaf``, summed by ``sum`` (a :class:`MergedSum`)."""

    leaf: int
    #: Tree positions of the row's sources and the leaf's targets.
    sources: np.ndarray
    targets: slice
    sum: MergedSum

    def add_to(self, potential: np.ndarray, charges: np.ndarray, kernel: Any = None) -> None:
        """Add the row's sum of ``kernel`` to ``potential`` (tree order; ``(m,)`` or
        ``(components, m)``) for ``charges`` (tree order; ``(n,)`` or ``(components, n)``)."""
        potential[..., self.targets] += self.sum(charges[..., self.sources], kernel)


def _row_sources(tree: Tree, lists: InteractionLists, leaf: int) -> np.ndarray:
    boxes = lists.u_lists[lists.u_starts[leaf]:lists.u_starts[leaf + 1]]
    return ranges_to_indices(tree.box_source_starts[boxes].astype(np.int64),
                             tree.box_source_counts[boxes].astype(np.int64))


def heavy_rows(tree: Tree, lists: InteractionLists) -> np.ndarray:
    """Leaves at ``max_depth`` whose direct row costs more than ``NESTED_ROW_FACTOR`` full rows."""
    deepest = tree.box_is_leaf & (tree.box_levels == tree.max_depth)
    if not deepest.any():  # most trees: no row to count (a pass over the U list saved)
        return np.flatnonzero(deepest)
    rows = list_rows(lists.u_starts)
    row_sources = np.bincount(rows, weights=tree.box_source_counts[lists.u_lists],
                              minlength=tree.nboxes)
    pairs = tree.box_target_counts * row_sources
    limit = NESTED_ROW_FACTOR * 27 * tree.n_crit ** 2
    return np.flatnonzero(deepest & (pairs > limit))


def without_heavy_rows(tree: Tree, lists: InteractionLists) -> InteractionLists:
    """``lists`` without the :func:`heavy_rows`: the pairs summed directly where those rows
    nest (their pairs are a nested FMM's, approximated like the far field's)."""
    heavy = heavy_rows(tree, lists)
    return _without_rows(lists, heavy, tree.nboxes) if len(heavy) else lists


def _without_rows(lists: InteractionLists, leaves: np.ndarray, nboxes: int
                  ) -> InteractionLists:
    """``lists`` with the U rows of ``leaves`` emptied."""
    rows = list_rows(lists.u_starts)
    keep = ~np.isin(rows, leaves)
    starts, entries = csr_from_pairs(rows[keep], lists.u_lists[keep], nboxes)
    return dataclasses.replace(lists, u_starts=starts, u_lists=entries)


def nest_heavy_rows(tree: Tree, lists: InteractionLists,
                    make_fmm: Callable[[np.ndarray, np.ndarray | None], Evaluator]
                    ) -> tuple[InteractionLists, list[NestedRow]]:
    """The lists without the heavy rows that nest, and those rows with their nested FMMs.

    ``make_fmm(sources, targets)`` builds the FMM of a row (an ``Fmm`` with the caller's
    options; ``targets=None``: the sources); points are in the tree's coordinates, in which the
    nested FMM returns potentials.
    """
    root_side = 2 * tree.root_half_width
    nested = []
    for leaf in heavy_rows(tree, lists):
        sources = _row_sources(tree, lists, int(leaf))
        start = int(tree.box_target_starts[leaf])
        targets = slice(start, start + int(tree.box_target_counts[leaf]))
        source_points, target_points = tree.sources[sources], tree.targets[targets]
        if span(source_points, target_points) > root_side / 4:
            continue  # no finer than this tree: nesting would not end
        nested.append(NestedRow(int(leaf), sources, targets,
                                MergedSum(source_points, target_points, make_fmm)))
    if not nested:
        return lists, []
    return _without_rows(lists, np.array([row.leaf for row in nested]), tree.nboxes), nested
