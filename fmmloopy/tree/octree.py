"""Adaptive, 2:1-balanced linear octree stored as flat numpy arrays.

The tree is a *linear* octree (docs/tree.md): boxes are rows of arrays, numbered
level by level (root = box 0) and in Morton order inside a level; particles are sorted by Morton
key so that every box, leaf or internal, owns one contiguous range of sorted particles.

Only non-empty boxes exist: splitting a box creates the children that hold at least one source
or target. A box is split while it holds more than ``n_crit`` sources *or* more than ``n_crit``
targets (the count is ``max(n_sources, n_targets)``), until ``max_depth``. Afterwards leaves are
refined until no internal box touches (shares a face, edge or corner with) a leaf of a coarser
level: the 2:1 balance of the full octree, restricted to the non-empty boxes. In particular
adjacent leaves differ in level by at most one.

Everything is vectorised; the only Python loops run over levels (at most ``max_depth + 1``).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from fmmloopy.base.sorting import stable_argsort
from fmmloopy.base.validation import validate_integer, validate_points
from fmmloopy.maths.geometry import INDEX_DTYPE
from fmmloopy.tree.coordinates import bounds
from fmmloopy.tree.morton import morton_decode, placeholder
from fmmloopy.tree.refinement import Refinement, balance, point_keys, refine

__all__ = [
    "MAX_DEPTH_LIMIT", "SortedPoints", "Tree", "build_tree", "build_tree_from", "cube_around",
    "gathered_by_coordinate", "sort_in_cube", "sort_points", "tree_boxes", "tree_of_boxes",
]

#: Deepest level a tree may have: 3 bits per level plus a placeholder bit fit in a uint64.
MAX_DEPTH_LIMIT = 21

_U64 = np.uint64

#: What computes the points' Morton keys: ``keys_of(points, lo, half_width, depth)``, as
#: :func:`~fmmloopy.tree.refinement.point_keys` does.
KeysOf = Callable[[np.ndarray, np.ndarray, float, int], np.ndarray]
_INDEX = INDEX_DTYPE
#: Relative padding of the root cube around the points' extent.
_PAD = 1e-6


@dataclass(frozen=True, eq=False)
class Tree:
    """A linear octree over sources and targets; all arrays are in box (tree) order.

    ``nboxes`` boxes, ``ns`` sources, ``nt`` targets. Box indices are int32, -1 means none.
    The range of sorted sources of box ``b`` is
    ``box_source_starts[b] : box_source_starts[b] + box_source_counts[b]`` (likewise targets);
    leaves' ranges partition the sorted particles, an internal box's range is the union of its
    children's. Octant ``o`` of a child is ``4 bx + 2 by + bz`` with ``b*`` = 1 on the upper side.
    """

    #: (3,) float64: centre of the root cube.
    root_centre: np.ndarray
    #: Half the side of the root cube; a box at level l has half-width root_half_width / 2**l.
    root_half_width: float
    #: Leaves hold at most this many sources and at most this many targets (unless at max_depth).
    n_crit: int
    #: Largest level a box may have; also the resolution of the particles' Morton keys.
    max_depth: int
    #: (nlevels + 1,) int32: boxes of level l are ``level_starts[l]:level_starts[l+1]``.
    level_starts: np.ndarray
    #: (nboxes,) uint64: Morton key of the box at its level with a leading 1 bit at bit 3*level.
    box_keys: np.ndarray
    #: (nboxes,) int32: level of each box (root = 0).
    box_levels: np.ndarray
    #: (nboxes, 3) int32: integer lattice coordinates of the box at its own level.
    box_coords: np.ndarray
    #: (nboxes, 3) float64: box centres.
    box_centres: np.ndarray
    #: (nboxes,) int32: parent box, -1 for the root.
    box_parents: np.ndarray
    #: (nboxes, 8) int32: child box per octant, -1 where there is none.
    box_children: np.ndarray
    #: (nboxes,) bool: True for leaves.
    box_is_leaf: np.ndarray
    #: (nboxes,) int32: first sorted source of each box.
    box_source_starts: np.ndarray
    #: (nboxes,) int32: number of sources in each box (all descendants included).
    box_source_counts: np.ndarray
    #: (nboxes,) int32: first sorted target of each box.
    box_target_starts: np.ndarray
    #: (nboxes,) int32: number of targets in each box (all descendants included).
    box_target_counts: np.ndarray
    #: (3, ns) float64 C-contiguous: source coordinates in tree order (structure of arrays).
    sources_soa: np.ndarray
    #: (3, nt) float64 C-contiguous: target coordinates in tree order (same object as
    #: sources_soa when targets are the sources).
    targets_soa: np.ndarray
    #: (ns,) int32: user index of the source at each tree position (tree = user[source_user_ids]).
    source_user_ids: np.ndarray
    #: (ns,) int32: tree position of each user source (user = tree[source_tree_ids]).
    source_tree_ids: np.ndarray
    #: (nt,) int32: user index of the target at each tree position.
    target_user_ids: np.ndarray
    #: (nt,) int32: tree position of each user target.
    target_tree_ids: np.ndarray
    #: True when ``targets=None`` was given: targets are the sources, in the same order.
    targets_are_sources: bool

    @property
    def nboxes(self) -> int:
        """Number of boxes."""
        return int(self.box_levels.shape[0])

    @property
    def nlevels(self) -> int:
        """Number of levels (deepest level + 1)."""
        return int(self.level_starts.shape[0] - 1)

    @property
    def nsources(self) -> int:
        """Number of sources."""
        return int(self.sources_soa.shape[1])

    @property
    def ntargets(self) -> int:
        """Number of targets."""
        return int(self.targets_soa.shape[1])

    @property
    def sources(self) -> np.ndarray:
        """(ns, 3) view of the sources in tree order."""
        return self.sources_soa.T

    @property
    def targets(self) -> np.ndarray:
        """(nt, 3) view of the targets in tree order."""
        return self.targets_soa.T

    @property
    def level_half_widths(self) -> np.ndarray:
        """(nlevels,) float64: half the side of a box of each level."""
        return self.root_half_width / 2.0 ** np.arange(self.nlevels, dtype=np.float64)

    @property
    def box_half_widths(self) -> np.ndarray:
        """(nboxes,) float64: half the side of each box."""
        return self.level_half_widths[self.box_levels]

    @property
    def box_centres_soa(self) -> np.ndarray:
        """(3, nboxes) float64 C-contiguous copy of the box centres."""
        return np.ascontiguousarray(self.box_centres.T)

    @property
    def leaf_boxes(self) -> np.ndarray:
        """(nleaves,) int32: indices of the leaves, ascending."""
        return np.flatnonzero(self.box_is_leaf).astype(_INDEX)

    def leaves_in_point_order(self, role: str) -> np.ndarray:
        """The leaves holding ``role`` points (``"source"`` or ``"target"``), ordered by their
        first point: they partition the points in tree order."""
        starts = getattr(self, f"box_{role}_starts")
        leaves = np.flatnonzero(self.box_is_leaf & (getattr(self, f"box_{role}_counts") > 0))
        return leaves[np.argsort(starts[leaves], kind="stable")]

    def sources_to_tree(self, values: np.ndarray) -> np.ndarray:
        """Reorder per-source values (first axis) from user order to tree order."""
        return np.asarray(values)[self.source_user_ids]

    def targets_to_user(self, values: np.ndarray) -> np.ndarray:
        """Reorder per-target values (first axis) from tree order back to user order."""
        return np.asarray(values)[self.target_tree_ids]


@dataclass(frozen=True, eq=False)
class SortedPoints:
    """Points keyed and sorted for the tree: the root cube, Morton keys at ``depth`` and the
    orders that sort them. Building a tree for any ``n_crit`` starts here
    (:func:`build_tree_from`), so several candidate trees share one sort."""

    sources: np.ndarray  # (ns, 3) as given
    targets: np.ndarray | None  # None: the sources
    centre: np.ndarray
    half_width: float
    depth: int  # max_depth: the keys' level
    source_order: np.ndarray | None  # None: left to :meth:`ordered`
    target_order: np.ndarray | None
    builder: Refinement  # the sorted keys
    #: Where the orders are left to :meth:`ordered`: the source and target keys (None: the
    #: sources') in the points' own order.
    unsorted_keys: tuple[np.ndarray, np.ndarray | None] | None = None

    @property
    def root_lo(self) -> np.ndarray:
        return self.centre - self.half_width

    def ordered(self) -> SortedPoints:
        """These points with the orders that sort them, made here (once) where
        :func:`sort_in_cube` sorted only the keys' values: a root cube the choice of ``n_crit``
        tries and does not take needs no orders (numpy sorts values several times faster
        than it finds the order that sorts them)."""
        if self.source_order is not None:
            return self
        if self._ordered is None:
            skeys, tkeys = self.unsorted_keys
            sorder = stable_argsort(skeys)
            torder = sorder if tkeys is None else stable_argsort(tkeys)
            object.__setattr__(self, "_ordered", dataclasses.replace(
                self, source_order=sorder, target_order=torder, unsorted_keys=None))
        return self._ordered

    _ordered: SortedPoints | None = field(default=None, init=False, repr=False)


def root_cube(sources: np.ndarray, targets: np.ndarray | None = None, margin: float = 0.0
              ) -> tuple[np.ndarray, float]:
    """``(centre, half_width)`` of the tree's root cube: the points' bounding cube, padded a
    little so that no point lies on its upper faces (and by ``margin`` times the extent on
    every side: room for points that move)."""
    return cube_around(*bounds(sources, targets), margin)


def cube_around(lo: np.ndarray, hi: np.ndarray, margin: float = 0.0
                ) -> tuple[np.ndarray, float]:
    """:func:`root_cube` from the corners ``lo``, ``hi`` of the points' bounding box."""
    with np.errstate(over="ignore"):
        centre = 0.5 * lo + 0.5 * hi
        extent = float((hi - lo).max())
    half_width = (0.5 * extent * (1.0 + _PAD + 2.0 * margin) if extent > 0
                  else 0.5 * max(1.0, abs(centre).max()))
    if not np.isfinite(half_width) or not np.all(np.isfinite(centre)):
        raise ValueError("the points' extent overflows float64")
    return centre, float(half_width)


def root_box_side(sources, targets=None) -> float:
    """The side of the root box an FMM over these points builds its tree in (what a
    Helmholtz FMM's range is measured by, in wavelengths)."""
    src = validate_points(sources, "sources")
    tgt = None if targets is None else validate_points(targets, "targets")
    return 2.0 * root_cube(src, tgt)[1]


def sort_points(sources: np.ndarray, targets: np.ndarray | None = None,
                max_depth: int = 20, keys_of: KeysOf = point_keys, margin: float = 0.0,
                ordered: bool = True) -> SortedPoints:
    """Validate the points, choose the root cube (``margin``: :func:`root_cube`) and sort the
    points by Morton key (``keys_of``: what computes them,
    :func:`~fmmloopy.tree.refinement.point_keys` or the same on a device; ``ordered``:
    :func:`sort_in_cube`)."""
    src = validate_points(sources, "sources")
    tgt = None if targets is None else validate_points(targets, "targets")
    if not len(src) or (tgt is not None and not len(tgt)):
        raise ValueError(f"{'targets' if len(src) else 'sources'} must hold at least one point")
    depth = validate_integer(max_depth, "max_depth", 0, MAX_DEPTH_LIMIT)

    return sort_in_cube(src, tgt, *root_cube(src, tgt, margin), depth, keys_of, ordered)


def sort_in_cube(src: np.ndarray, tgt: np.ndarray | None, centre: np.ndarray,
                 half_width: float, depth: int, keys_of: KeysOf = point_keys,
                 ordered: bool = True) -> SortedPoints:
    """Points (checked; none is fine) keyed at level ``depth`` of the cube ``(centre,
    half_width)`` and sorted by key (:func:`sort_points` with the cube given). ``ordered``
    False: only the keys' values sorted, the orders left to :meth:`SortedPoints.ordered`."""
    root_lo = centre - half_width
    skeys = keys_of(src, root_lo, half_width, depth)
    if not ordered:
        tkeys = None if tgt is None else keys_of(tgt, root_lo, half_width, depth)
        ssorted = np.sort(skeys)
        tsorted = ssorted if tkeys is None else np.sort(tkeys)
        all_keys = ssorted if tkeys is None else np.sort(np.concatenate([ssorted, tsorted]))
        return SortedPoints(src, tgt, centre, float(half_width), depth, None, None,
                            Refinement(ssorted, tsorted, all_keys, depth), (skeys, tkeys))
    sorder = stable_argsort(skeys)
    skeys = skeys[sorder]
    if tgt is None:
        tkeys, torder, all_keys = skeys, sorder, skeys
    else:
        tkeys = keys_of(tgt, root_lo, half_width, depth)
        torder = stable_argsort(tkeys)
        tkeys = tkeys[torder]
        all_keys = np.sort(np.concatenate([skeys, tkeys]))
    return SortedPoints(src, tgt, centre, float(half_width), depth, sorder, torder,
                        Refinement(skeys, tkeys, all_keys, depth))


def in_wider_cube(points: SortedPoints, scale: float, keys_of: KeysOf = point_keys
                  ) -> SortedPoints:
    """``points`` keyed and sorted again in the cube about their root cube's centre ``scale``
    (>= 1) times as wide (a root cube :func:`fmmloopy.tree.cost.choose_tree` may choose),
    their orders made or left to :meth:`SortedPoints.ordered` as ``points``' were."""
    return sort_in_cube(points.sources, points.targets, points.centre,
                        points.half_width * scale, points.depth, keys_of,
                        points.unsorted_keys is None)


def build_tree(sources: np.ndarray, targets: np.ndarray | None = None, n_crit: int = 32,
               max_depth: int = 20) -> Tree:
    """Build the 2:1-balanced adaptive octree of ``sources`` ``(ns, 3)`` and ``targets``.

    ``targets=None`` means the targets are the sources. A box is split while it holds more than
    ``n_crit`` sources or more than ``n_crit`` targets; boxes at ``max_depth`` (<= 21) are never
    split, and a warning is emitted when one of them holds more than ``n_crit``.
    """
    n_crit = validate_integer(n_crit, "n_crit", 1)
    return build_tree_from(sort_points(sources, targets, max_depth), n_crit)


def tree_boxes(points: SortedPoints, n_crit: int, warn: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The boxes of the tree of ``points`` for ``n_crit``: sorted (placeholder keys, levels,
    is_leaf), refined and 2:1 balanced."""
    builder, depth = points.builder, points.depth
    keys, levels, leaf, overfull = refine(builder, n_crit, depth)
    if overfull and warn:
        _warn_overfull(depth, overfull, n_crit)
    return balance(builder, keys, levels, leaf)


def _warn_overfull(depth: int, overfull: int, n_crit: int) -> None:
    warnings.warn(f"build_tree: max_depth={depth} reached; {overfull} leaves hold more than "
                  f"n_crit={n_crit} points", RuntimeWarning, stacklevel=5)


def build_tree_from(points: SortedPoints, n_crit: int,
                    boxes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                    warn: bool = True) -> Tree:
    """The tree of :func:`build_tree` from points already sorted (:func:`sort_points`).

    ``boxes``: the tree's boxes as :func:`tree_boxes` gives them, where they are made already
    (the candidate trees of :func:`fmmloopy.tree.cost.choose_n_crit`), else made here.
    ``warn``: whether leaves that ``max_depth`` kept from splitting are worth a warning (not
    where the depth is the kernel's limit)."""
    n_crit = validate_integer(n_crit, "n_crit", 1)
    if boxes is None:
        return tree_of_boxes(points, n_crit, *tree_boxes(points, n_crit, warn=warn))
    tree = tree_of_boxes(points, n_crit, *boxes)
    # Leaves past n_crit are those max_depth kept from splitting.
    overfull = np.count_nonzero(tree.box_is_leaf & (np.maximum(
        tree.box_source_counts, tree.box_target_counts) > n_crit))
    if overfull and warn:
        _warn_overfull(points.depth, overfull, n_crit)
    return tree


#: Points from which :func:`gathered_by_coordinate` splits its gathers over threads.
THREADED_GATHER = 1 << 16


def gathered_by_coordinate(points: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``points[order]`` with one row per coordinate (the kernels' layout), gathered coordinate
    by coordinate, faster than gathering the rows and then copying their transpose
    (docs/history.md, 2026-11-26, "Set-up and moving points on a 2-core AVX2 CPU"). Each
    coordinate's gather is cut in halves run on threads, one per core (numpy lets go of the
    interpreter in them): a random gather waits on memory, and the cores' waits overlap (10^7
    points: 0.35 against 0.53 s on two Xeon cores; docs/history.md, 2026-11-29)."""
    gathered = np.empty((points.shape[1], len(order)), dtype=points.dtype)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if len(order) < THREADED_GATHER or cores < 2:
        for axis in range(points.shape[1]):
            np.take(points[:, axis], order, out=gathered[axis])
        return gathered
    half = len(order) // 2
    pieces = [(axis, part) for axis in range(points.shape[1])
              for part in (slice(0, half), slice(half, len(order)))]
    with ThreadPoolExecutor(min(cores, len(pieces))) as pool:
        for done in pool.map(lambda piece: np.take(points[:, piece[0]], order[piece[1]],
                                                   out=gathered[piece[0], piece[1]]), pieces):
            del done
    return gathered


def tree_of_boxes(points: SortedPoints, n_crit: int, keys: np.ndarray, levels: np.ndarray,
                  leaf: np.ndarray) -> Tree:
    """The :class:`Tree` of the boxes ``(keys, levels, leaf)`` (:func:`tree_boxes`) over
    ``points``: any points in the root cube, which need not be those the boxes were made for
    (a rank's share of a distributed tree)."""
    points = points.ordered()
    src, tgt, depth, builder = points.sources, points.targets, points.depth, points.builder
    centre, half_width, root_lo = points.centre, points.half_width, points.root_lo
    sorder, torder = points.source_order, points.target_order
    skeys, tkeys = builder.src_keys, builder.tgt_keys

    nboxes = keys.shape[0]
    nlevels = int(levels.max()) + 1
    level_starts = np.searchsorted(levels, np.arange(nlevels + 1)).astype(_INDEX)
    parents = np.full(nboxes, -1, dtype=_INDEX)
    parents[1:] = np.searchsorted(keys, keys[1:] >> _U64(3))
    children = np.full((nboxes, 8), -1, dtype=_INDEX)
    octant = (keys[1:] & _U64(7)).astype(np.int64)
    children[parents[1:], octant] = np.arange(1, nboxes, dtype=_INDEX)
    coords = morton_decode(keys ^ placeholder(levels))
    width = (2.0 * half_width) / 2.0 ** levels.astype(np.float64)
    centres = root_lo + (coords + 0.5) * width[:, None]

    klo, khi = builder.key_range(keys, levels)
    s_start = np.searchsorted(skeys, klo)
    s_count = np.searchsorted(skeys, khi) - s_start
    if tgt is None:
        t_start, t_count = s_start, s_count
    else:
        t_start = np.searchsorted(tkeys, klo)
        t_count = np.searchsorted(tkeys, khi) - t_start

    def inverse(perm: np.ndarray) -> np.ndarray:
        inv = np.empty_like(perm)
        inv[perm] = np.arange(perm.shape[0], dtype=perm.dtype)
        return inv

    source_user_ids = sorder.astype(_INDEX)
    source_tree_ids = inverse(source_user_ids)
    sources_soa = gathered_by_coordinate(src, sorder)
    if tgt is None:
        target_user_ids, target_tree_ids, targets_soa = (
            source_user_ids, source_tree_ids, sources_soa)
    else:
        target_user_ids = torder.astype(_INDEX)
        target_tree_ids = inverse(target_user_ids)
        targets_soa = gathered_by_coordinate(tgt, torder)

    return Tree(
        root_centre=centre,
        root_half_width=float(half_width),
        n_crit=n_crit,
        max_depth=depth,
        level_starts=level_starts,
        box_keys=keys,
        box_levels=levels.astype(_INDEX),
        box_coords=coords.astype(_INDEX),
        box_centres=centres,
        box_parents=parents,
        box_children=children,
        box_is_leaf=leaf,
        box_source_starts=s_start.astype(_INDEX),
        box_source_counts=s_count.astype(_INDEX),
        box_target_starts=t_start.astype(_INDEX),
        box_target_counts=t_count.astype(_INDEX),
        sources_soa=sources_soa,
        targets_soa=targets_soa,
        source_user_ids=source_user_ids,
        source_tree_ids=source_tree_ids,
        target_user_ids=target_user_ids,
        target_tree_ids=target_tree_ids,
        targets_are_sources=tgt is None,
    )
