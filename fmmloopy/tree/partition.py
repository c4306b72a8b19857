"""Splitting one tree over ranks, and what each rank needs of the others (its essential tree).

A distributed FMM (docs/scale-out.md) builds the same tree skeleton on every rank: the boxes, their
global point counts and the interaction lists, but no rank holds all the points. The leaves, in
Morton order, are cut into contiguous runs of equal modelled cost (:func:`leaf_costs`), one run
per rank and weighted by each rank's speed (:func:`partition_leaves`); a rank owns the points
of its leaves. Its *locally essential tree* (:func:`essential_set`) is then what its own work
reads from other ranks:

* ghost particles: the sources of the leaves under every box of its leaves' U lists (adjacent
  leaves and the W/X boxes summed directly) and of the X lists of the boxes it computes local
  expansions for (its leaves and their ancestors);
* remote multipoles: those of the boxes in the V lists of those boxes and in the W lists of its
  leaves. A box's multipole is the sum of the partial multipoles the ranks owning leaves with
  sources under it form (P2M, M2M and the check-to-equivalent maps are linear), so each of those
  ranks sends its part (:func:`contributors`).

Everything here is numpy on the replicated skeleton; the exchange itself is the API layer's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmmloopy.tree.csr import list_rows, ranges_to_indices, select_rows, starts_from_counts
from fmmloopy.tree.lists import InteractionLists, VList
from fmmloopy.tree.morton import placeholder
from fmmloopy.tree.octree import Tree

__all__ = ["EssentialSet", "contributors", "essential_lists", "essential_set", "leaf_costs",
           "leaves_under",
           "morton_order", "partition_leaves", "with_ancestors"]

_U64 = np.uint64


def morton_ranges(tree: Tree) -> tuple[np.ndarray, np.ndarray]:
    """Half-open ranges ``[lo, hi)`` of finest-level Morton keys each box covers."""
    levels = tree.box_levels.astype(np.int64)
    morton = tree.box_keys ^ placeholder(levels)
    shift = (_U64(3) * (tree.max_depth - levels).astype(_U64))
    return morton << shift, (morton + _U64(1)) << shift


def morton_order(tree: Tree) -> np.ndarray:
    """The leaves in Morton (space-filling curve) order."""
    leaves = tree.leaf_boxes
    return leaves[np.argsort(morton_ranges(tree)[0][leaves], kind="stable")]


def leaves_under(tree: Tree, boxes: np.ndarray) -> np.ndarray:
    """The leaves under (or equal to) each of ``boxes``, concatenated (Morton order per box)."""
    lo, hi = morton_ranges(tree)
    leaves = morton_order(tree)
    first = np.searchsorted(lo[leaves], lo[boxes])
    stop = np.searchsorted(lo[leaves], hi[boxes])
    return leaves[ranges_to_indices(first, stop - first)]


def with_ancestors(tree: Tree, mask: np.ndarray) -> np.ndarray:
    """``mask`` (boxes) with every ancestor of a box in it."""
    mask = mask.copy()
    current = np.flatnonzero(mask)
    while len(current):
        parents = tree.box_parents[current]
        parents = np.unique(parents[parents >= 0])
        current = parents[~mask[parents]]
        mask[current] = True
    return mask


def leaf_costs(tree: Tree, lists: InteractionLists, n_e: int, pair_flops: float,
               far_field: tuple[float, float]) -> np.ndarray:
    """(nboxes,) modelled flops of each leaf's work, 0 for other boxes.

    Per box, in matvec flops (:mod:`fmmloopy.tree.cost`'s units: ``pair_flops`` per kernel
    evaluation, ``far_field = (flops per V entry, flops per box)``): the near field (targets
    times the sources of its U row), M2P (targets times ``n_e`` per W entry), P2L (sources of
    its X row times ``n_e``), P2M and L2P (``n_e`` per point), the V entries and the box's own
    translations. A box above the leaves gives its cost to the leaves under it in proportion
    to their points (a shared coarse box costs each rank that computes it)."""
    sources = tree.box_source_counts.astype(np.float64)
    targets = tree.box_target_counts.astype(np.float64)
    per_entry, per_box = far_field

    def row_sums(name: str, values: np.ndarray) -> np.ndarray:
        starts, entries = getattr(lists, f"{name}_starts"), getattr(lists, f"{name}_lists")
        return np.bincount(list_rows(starts), weights=values[entries], minlength=tree.nboxes)

    evaluations = (targets * row_sums("u", sources)
                   + targets * n_e * np.diff(lists.w_starts)
                   + n_e * row_sums("x", sources)
                   + n_e * np.where(tree.box_is_leaf, sources + targets, 0.0))
    cost = (pair_flops * evaluations + per_entry * np.diff(lists.v_starts)
            + per_box * ((sources + targets) > 0))
    points = sources + targets
    per_point = np.where(points > 0, cost / np.maximum(points, 1.0), 0.0)
    inherited = np.zeros(tree.nboxes)  # per point, from the box's ancestors
    for level in range(1, tree.nlevels):
        boxes = np.arange(tree.level_starts[level], tree.level_starts[level + 1])
        parents = tree.box_parents[boxes]
        inherited[boxes] = inherited[parents] + np.where(tree.box_is_leaf[parents], 0.0,
                                                         per_point[parents])
    return np.where(tree.box_is_leaf, cost + points * inherited, 0.0)


def partition_leaves(tree: Tree, costs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(nboxes,) int32: the rank owning each leaf (-1 for other boxes). The leaves in Morton
    order are cut into ``len(weights)`` contiguous runs whose costs are in proportion to
    ``weights`` (a rank's relative speed); a leaf goes to the run holding its middle. A rank
    may own no leaf (more ranks than leaves)."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 1 or not len(weights) or not np.all(weights > 0) \
            or not np.all(np.isfinite(weights)):
        raise ValueError(f"rank weights must be positive and finite, got {weights}")
    leaves = morton_order(tree)
    leaf_cost = np.maximum(costs[leaves], 0.0)
    total = leaf_cost.sum()
    if total == 0:
        leaf_cost = np.ones(len(leaves))
        total = float(len(leaves))
    middles = np.cumsum(leaf_cost) - 0.5 * leaf_cost
    cuts = np.cumsum(weights)[:-1] / weights.sum() * total
    owners = np.full(tree.nboxes, -1, dtype=np.int32)
    owners[leaves] = np.searchsorted(cuts, middles, side="right")
    return owners


def contributors(tree: Tree, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nboxes,) first and last rank owning a leaf with sources under each box (-1, -2 where
    there is none): the ranks whose partial multipoles make the box's multipole. Ranks own
    contiguous runs of the Morton order, so those in between may send parts that are zero."""
    lo, hi = morton_ranges(tree)
    leaves = morton_order(tree)
    leaves = leaves[tree.box_source_counts[leaves] > 0]
    first = np.searchsorted(lo[leaves], lo)
    stop = np.searchsorted(lo[leaves], hi)
    present = stop > first
    first_rank = np.where(present, owners[leaves[np.minimum(first, len(leaves) - 1)]], -1)
    last_rank = np.where(present, owners[leaves[np.maximum(stop - 1, 0)]], -2)
    return first_rank.astype(np.int32), last_rank.astype(np.int32)


@dataclass(frozen=True)
class EssentialSet:
    """What one rank computes and reads (boolean masks over the boxes)."""

    #: The leaves it owns (their sources and targets are its points).
    owned_leaves: np.ndarray
    #: Boxes it forms (partial) multipoles of: its leaves with sources and their ancestors.
    upward: np.ndarray
    #: Boxes it forms local expansions of: its leaves with targets and their ancestors.
    downward: np.ndarray
    #: Leaves of other ranks whose sources it sums directly (ghost particles).
    ghost_leaves: np.ndarray
    #: Boxes whose (whole) multipoles its downward pass reads: V and W sources.
    multipoles: np.ndarray
    #: Every box above, with its ancestors: the boxes of the rank's own tree.
    boxes: np.ndarray

    def local_ids(self) -> np.ndarray:
        """(nboxes,) int32: each box's index in the rank's tree (-1 where it has none): the
        boxes kept in their global order."""
        ids = np.full(len(self.boxes), -1, dtype=np.int32)
        ids[self.boxes] = np.arange(np.count_nonzero(self.boxes), dtype=np.int32)
        return ids


def essential_set(tree: Tree, lists: InteractionLists, owners: np.ndarray, rank: int
                  ) -> EssentialSet:
    """The essential set of ``rank`` (:class:`EssentialSet`) under the partition ``owners``,
    for the lists the FMM evaluates (W/X boxes moved to U included)."""
    owned = owners == rank
    upward = with_ancestors(tree, owned & (tree.box_source_counts > 0))
    downward = with_ancestors(tree, owned & (tree.box_target_counts > 0))
    target_leaves = np.flatnonzero(owned & (tree.box_target_counts > 0)).astype(np.int32)
    target_boxes = np.flatnonzero(downward).astype(np.int32)

    def entries(name: str, rows: np.ndarray) -> np.ndarray:
        starts, values = getattr(lists, f"{name}_starts"), getattr(lists, f"{name}_lists")
        return np.unique(select_rows(starts, values, rows)[1])

    particle_boxes = np.union1d(entries("u", target_leaves), entries("x", target_boxes))
    ghost_leaves = np.zeros(tree.nboxes, dtype=bool)
    ghost_leaves[leaves_under(tree, particle_boxes)] = True
    ghost_leaves &= ~owned & (tree.box_source_counts > 0)
    multipoles = np.zeros(tree.nboxes, dtype=bool)
    multipoles[np.union1d(entries("v", target_boxes), entries("w", target_leaves))] = True
    boxes = upward | downward | multipoles | ghost_leaves | owned
    boxes[particle_boxes] = True
    return EssentialSet(owned, upward, downward, ghost_leaves, multipoles,
                        with_ancestors(tree, boxes))


def essential_lists(lists: InteractionLists, essential: EssentialSet) -> InteractionLists:
    """The rows of ``lists`` of the boxes a rank forms local expansions of (its
    ``downward`` boxes), in the numbering of its own tree (:meth:`EssentialSet.local_ids`);
    the order of the entries in a row is kept. Colleagues outside the rank's tree are -1."""
    ids = essential.local_ids()
    nlocal = int(np.count_nonzero(essential.boxes))
    rows = np.flatnonzero(essential.downward)
    arrays = {}
    for name in "uvwx":
        aligned = (lists.v_transfer,) if name == "v" else ()
        row_starts, entries, *extra = select_rows(
            getattr(lists, f"{name}_starts"), getattr(lists, f"{name}_lists"), rows, *aligned)
        counts = np.zeros(nlocal, dtype=np.int64)
        counts[ids[rows]] = np.diff(row_starts)
        local_entries = ids[entries]
        if (local_entries < 0).any():
            raise AssertionError(f"{name.upper()} entries outside the rank's essential boxes")
        arrays[f"{name}_starts"] = starts_from_counts(counts)
        arrays[f"{name}_lists"] = local_entries.astype(np.int32)
        if extra:
            arrays["v_transfer"] = extra[0]
    colleagues = lists.colleagues[essential.boxes]
    arrays["colleagues"] = np.where(colleagues >= 0, ids[np.maximum(colleagues, 0)], -1
                                    ).astype(np.int32)
    arrays["v"] = VList.of(*(arrays.pop(f"v_{name}") for name in ("starts", "lists",
                                                                   "transfer")))
    return InteractionLists(**arrays)


#: ``speed=MEASURE``: each rank's share follows its device's measured float64 peak.
MEASURE = "measure"


def checked_speed(speed) -> None:
    """ValueError unless ``speed`` (a distributed FMM's option) is a positive number,
    :data:`MEASURE` or None."""
    if speed is not None and speed != MEASURE and not (
            isinstance(speed, (int, float, np.floating)) and not isinstance(speed, bool)
            and np.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a positive number, {MEASURE!r} or None, got "
                         f"{speed!r}")


def rank_speed(speed, devices: list[tuple], measure) -> float | None:
    """A rank's weight in the partition: ``speed`` as given, else ``measure()`` (its device's
    peak in GFLOP/s) where ``speed`` is ``"measure"`` or where ``devices`` (every rank's
    ``(platform, device, compute units)``) are not all the same; None (equal shares)
    otherwise."""
    if speed == MEASURE or (speed is None and len(set(devices)) > 1):
        return float(measure())
    return speed
