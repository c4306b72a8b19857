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

import warnings
from dataclasses import dataclass

import numpy as np

from fmmloopy.base.validation import validate_integer, validate_points
from fmmloopy.maths.geometry import INDEX_DTYPE, NEIGHBOUR_OFFSETS
from fmmloopy.tree.coordinates import bounds
from fmmloopy.tree.csr import ranges_to_indices

__all__ = ["MAX_DEPTH_LIMIT", "Tree", "build_tree", "morton_decode", "morton_encode"]

#: Deepest level a tree may have: 3 bits per level plus a placeholder bit fit in a uint64.
MAX_DEPTH_LIMIT = 21

_U64 = np.uint64
_INDEX = INDEX_DTYPE
#: Relative padding of the root cube around the points' extent.
_PAD = 1e-6



def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Insert two zero bits between each of the low 21 bits of ``v`` (uint64)."""
    v = v & _U64(0x1FFFFF)
    v = (v | (v << _U64(32))) & _U64(0x1F00000000FFFF)
    v = (v | (v << _U64(16))) & _U64(0x1F0000FF0000FF)
    v = (v | (v << _U64(8))) & _U64(0x100F00F00F00F00F)
    v = (v | (v << _U64(4))) & _U64(0x10C30C30C30C30C3)
    v = (v | (v << _U64(2))) & _U64(0x1249249249249249)
    return v


def _compact_bits(v: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_spread_bits`: gather every third bit of ``v`` (uint64)."""
    v = v & _U64(0x1249249249249249)
    v = (v ^ (v >> _U64(2))) & _U64(0x10C30C30C30C30C3)
    v = (v ^ (v >> _U64(4))) & _U64(0x100F00F00F00F00F)
    v = (v ^ (v >> _U64(8))) & _U64(0x1F0000FF0000FF)
    v = (v ^ (v >> _U64(16))) & _U64(0x1F00000000FFFF)
    v = (v ^ (v >> _U64(32))) & _U64(0x1FFFFF)
    return v


def morton_encode(coords: np.ndarray) -> np.ndarray:
    """Morton keys (uint64) of integer coordinates ``(n, 3)`` < 2**21; x gives the high bit."""
    c = np.asarray(coords).astype(_U64)
    return (
        (_spread_bits(c[:, 0]) << _U64(2)) | (_spread_bits(c[:, 1]) << _U64(1))
    ) | _spread_bits(c[:, 2])


def morton_decode(keys: np.ndarray) -> np.ndarray:
    """Integer coordinates ``(n, 3)`` int64 of Morton keys (inverse of :func:`morton_encode`)."""
    k = np.asarray(keys, dtype=_U64)
    out = np.empty((k.shape[0], 3), dtype=np.int64)
    out[:, 0] = _compact_bits(k >> _U64(2))
    out[:, 1] = _compact_bits(k >> _U64(1))
    out[:, 2] = _compact_bits(k)
    return out


def _placeholder(levels: np.ndarray) -> np.ndarray:
    """The leading bit ``1 << 3 l`` that makes (level, Morton key) one sortable uint64."""
    return _U64(1) << (_U64(3) * levels.astype(_U64))


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

    def sources_to_tree(self, values: np.ndarray) -> np.ndarray:
        """Reorder per-source values (first axis) from user order to tree order."""
        return np.asarray(values)[self.source_user_ids]

    def targets_to_user(self, values: np.ndarray) -> np.ndarray:
        """Reorder per-target values (first axis) from tree order back to user order."""
        return np.asarray(values)[self.target_tree_ids]


def _point_keys(points: np.ndarray, lo: np.ndarray, half_width: float, depth: int) -> np.ndarray:
    """Morton keys at level ``depth`` of points in the cube ``[lo, lo + 2 half_width)``."""
    n = 1 << depth
    ijk = np.floor((points - lo) * (n / (2.0 * half_width)))
    np.clip(ijk, 0, n - 1, out=ijk)
    return morton_encode(ijk.astype(np.int64))


class _Builder:
    """Sorted particle keys at ``depth``: box counts and non-empty children during the build."""

    def __init__(self, src_keys: np.ndarray, tgt_keys: np.ndarray, all_keys: np.ndarray,
                 depth: int) -> None:
        self.src_keys, self.tgt_keys, self.all_keys, self.depth = (
            src_keys, tgt_keys, all_keys, depth)

    def key_range(self, pkeys: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Half-open range ``[lo, hi)`` of depth-``depth`` particle keys inside each box."""
        morton = pkeys ^ _placeholder(levels)
        shift = _U64(3) * (self.depth - levels).astype(_U64)
        return morton << shift, (morton + _U64(1)) << shift

    def counts(self, pkeys: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """``max(n_sources, n_targets)`` in each box."""
        lo, hi = self.key_range(pkeys, levels)
        ns = np.searchsorted(self.src_keys, hi) - np.searchsorted(self.src_keys, lo)
        if self.tgt_keys is self.src_keys:
            return ns
        nt = np.searchsorted(self.tgt_keys, hi) - np.searchsorted(self.tgt_keys, lo)
        return np.maximum(ns, nt)

    def children(self, pkeys: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Non-empty children (placeholder keys, levels) of disjoint boxes, sorted per box."""
        lo, hi = self.key_range(pkeys, levels)
        start = np.searchsorted(self.all_keys, lo)
        count = np.searchsorted(self.all_keys, hi) - start
        order = np.argsort(start, kind="stable")
        start, count, levels = start[order], count[order], levels[order]
        idx = ranges_to_indices(start, count)
        child_levels = np.repeat(levels + 1, count)
        shift = _U64(3) * (self.depth - child_levels).astype(_U64)
        ck = (self.all_keys[idx] >> shift) | _placeholder(child_levels)
        keep = np.ones(ck.shape[0], dtype=bool)
        keep[1:] = ck[1:] != ck[:-1]
        return ck[keep], child_levels[keep]


def _refine(builder: _Builder, n_crit: int, max_depth: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Top-down refinement; returns sorted (keys, levels, is_leaf) and the overfull leaf count."""
    keys = [np.ones(1, dtype=_U64)]
    levels = [np.zeros(1, dtype=np.int64)]
    leaf = []
    overfull = 0
    while True:
        k, lev = keys[-1], levels[-1]
        full = builder.counts(k, lev) > n_crit
        split = full & (lev < max_depth)
        overfull += int(np.count_nonzero(full & ~split))
        leaf.append(~split)
        if not split.any():
            break
        ck, cl = builder.children(k[split], lev[split])
        keys.append(ck)
        levels.append(cl)
    return np.concatenate(keys), np.concatenate(levels), np.concatenate(leaf), overfull


def _balance(builder: _Builder, keys: np.ndarray, levels: np.ndarray, leaf: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split leaves until no internal box touches a leaf of a coarser level (2:1 balance).

    This is the 2:1 balance of the full octree (where every internal box has 8 children)
    restricted to the non-empty boxes: it implies that adjacent leaves differ by at most one
    level, and it keeps U within one level, W one level finer and X one level coarser, so the
    classical list bounds hold. Sweeps levels k from the deepest internal one up: for each
    internal box at level k and each of its 26 neighbour cells, the deepest existing box
    containing the cell must not be a leaf of level < k (if it is internal, the region is
    empty). Such leaves are split, repeated until none remains. Splits only make boxes of level
    < k internal, which later sweeps handle, so one sweep reaches the fixed point.
    """
    offsets = NEIGHBOUR_OFFSETS[np.any(NEIGHBOUR_OFFSETS != 0, axis=1)]
    for k in range(int(levels.max()) - 1, 0, -1):
        while True:
            ik = keys[(levels == k) & ~leaf]
            if ik.shape[0] == 0:
                break
            cells = morton_decode(ik ^ _placeholder(np.full(1, k)))
            nb = (cells[:, None, :] + offsets[None, :, :]).reshape(-1, 3)
            nb = nb[np.all((nb >= 0) & (nb < (1 << k)), axis=1)]
            # Find the deepest existing box containing each neighbour cell, walking up.
            q = np.unique(morton_encode(nb))
            found = np.full(q.shape[0], -1, dtype=np.int64)
            found_level = np.full(q.shape[0], -1, dtype=np.int64)
            pending = np.arange(q.shape[0])
            for j in range(k, -1, -1):
                qk = (q[pending] >> _U64(3 * (k - j))) | _U64(1 << (3 * j))
                pos = np.minimum(np.searchsorted(keys, qk), keys.shape[0] - 1)
                hit = keys[pos] == qk
                found[pending[hit]] = pos[hit]
                found_level[pending[hit]] = j
                pending = pending[~hit]
                if pending.shape[0] == 0:
                    break
            bad = found[(found_level < k) & leaf[found]]
            if bad.shape[0] == 0:
                break
            bad = np.unique(bad)
            ck, cl = builder.children(keys[bad], levels[bad])
            leaf = leaf.copy()
            leaf[bad] = False
            keys = np.concatenate([keys, ck])
            levels = np.concatenate([levels, cl])
            leaf = np.concatenate([leaf, np.ones(ck.shape[0], dtype=bool)])
            order = np.argsort(keys)
            keys, levels, leaf = keys[order], levels[order], leaf[order]
    return keys, levels, leaf


def build_tree(sources: np.ndarray, targets: np.ndarray | None = None, n_crit: int = 32,
               max_depth: int = 20) -> Tree:
    """Build the 2:1-balanced adaptive octree of ``sources`` ``(ns, 3)`` and ``targets``.

    ``targets=None`` means the targets are the sources. A box is split while it holds more than
    ``n_crit`` sources or more than ``n_crit`` targets; boxes at ``max_depth`` (<= 21) are never
    split, and a warning is emitted when one of them holds more than ``n_crit``.
    """
    src = validate_points(sources, "sources")
    tgt = None if targets is None else validate_points(targets, "targets")
    if not len(src) or (tgt is not None and not len(tgt)):
        raise ValueError(f"{'targets' if len(src) else 'sources'} must hold at least one point")
    n_crit = validate_integer(n_crit, "n_crit", 1)
    depth = validate_integer(max_depth, "max_depth", 0, MAX_DEPTH_LIMIT)

    lo, hi = bounds(src, tgt)
    with np.errstate(over="ignore"):
        centre = 0.5 * lo + 0.5 * hi
        extent = float((hi - lo).max())
    half_width = 0.5 * extent * (1.0 + _PAD) if extent > 0 else 0.5 * max(1.0, abs(centre).max())
    if not np.isfinite(half_width) or not np.all(np.isfinite(centre)):
        raise ValueError("the points' extent overflows float64")
    root_lo = centre - half_width

    skeys = _point_keys(src, root_lo, half_width, depth)
    sorder = np.argsort(skeys, kind="stable")
    skeys = skeys[sorder]
    if tgt is None:
        tkeys, torder, all_keys = skeys, sorder, skeys
    else:
        tkeys = _point_keys(tgt, root_lo, half_width, depth)
        torder = np.argsort(tkeys, kind="stable")
        tkeys = tkeys[torder]
        all_keys = np.sort(np.concatenate([skeys, tkeys]))
    builder = _Builder(skeys, tkeys, all_keys, depth)

    keys, levels, leaf, overfull = _refine(builder, n_crit, depth)
    if overfull:
        warnings.warn(f"build_tree: max_depth={depth} reached; {overfull} leaves hold more than "
                      f"n_crit={n_crit} points", RuntimeWarning, stacklevel=2)
    keys, levels, leaf = _balance(builder, keys, levels, leaf)

    nboxes = keys.shape[0]
    nlevels = int(levels.max()) + 1
    level_starts = np.searchsorted(levels, np.arange(nlevels + 1)).astype(_INDEX)
    parents = np.full(nboxes, -1, dtype=_INDEX)
    parents[1:] = np.searchsorted(keys, keys[1:] >> _U64(3))
    children = np.full((nboxes, 8), -1, dtype=_INDEX)
    octant = (keys[1:] & _U64(7)).astype(np.int64)
    children[parents[1:], octant] = np.arange(1, nboxes, dtype=_INDEX)
    coords = morton_decode(keys ^ _placeholder(levels))
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
    sources_soa = np.ascontiguousarray(src[sorder].T)
    if tgt is None:
        target_user_ids, target_tree_ids, targets_soa = (
            source_user_ids, source_tree_ids, sources_soa)
    else:
        target_user_ids = torder.astype(_INDEX)
        target_tree_ids = inverse(target_user_ids)
        targets_soa = np.ascontiguousarray(tgt[torder].T)

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
