"""Building the octree's boxes: top-down refinement, then the 2:1 balance (:mod:`.octree`).

Boxes are (placeholder Morton key, level) pairs (:mod:`fmmloopy.tree.morton`); the particles are
represented by their sorted Morton keys at the deepest level, so a box's particles are one key
range and its counts and non-empty children come from binary searches.
"""

from __future__ import annotations

import numpy as np

from fmmloopy.tree.morton import morton_encode, neighbour_keys, placeholder

_U64 = np.uint64


def point_keys(points: np.ndarray, lo: np.ndarray, half_width: float, depth: int) -> np.ndarray:
    """Morton keys at level ``depth`` of points in the cube ``[lo, lo + 2 half_width)``."""
    n = 1 << depth
    ijk = np.floor((points - lo) * (n / (2.0 * half_width)))
    np.clip(ijk, 0, n - 1, out=ijk)
    return morton_encode(ijk.astype(np.int64))


class Refinement:
    """Sorted particle keys at ``depth``: box counts and non-empty children during the build."""

    #: Whether several threads may ask for counts and children at once (not where they are
    #: collective calls every rank must make in the same order).
    thread_safe = True

    def __init__(self, src_keys: np.ndarray, tgt_keys: np.ndarray, all_keys: np.ndarray,
                 depth: int) -> None:
        self.src_keys, self.tgt_keys, self.all_keys, self.depth = (
            src_keys, tgt_keys, all_keys, depth)

    def key_range(self, pkeys: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Half-open range ``[lo, hi)`` of depth-``depth`` particle keys inside each box."""
        morton = pkeys ^ placeholder(levels)
        shift = _U64(3) * (self.depth - levels).astype(_U64)
        return morton << shift, (morton + _U64(1)) << shift

    @property
    def targets_are_sources(self) -> bool:
        """Whether the targets are the sources (one key array)."""
        return self.tgt_keys is self.src_keys

    def point_counts(self) -> tuple[int, int]:
        """Sources and targets in all."""
        return len(self.src_keys), len(self.tgt_keys)

    def source_counts(self, pkeys: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """Sources in each box (int64)."""
        lo, hi = self.key_range(pkeys, levels)
        return np.searchsorted(self.src_keys, hi) - np.searchsorted(self.src_keys, lo)

    def target_counts(self, pkeys: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """Targets in each box (int64; the source counts when targets are the sources)."""
        if self.targets_are_sources:
            return self.source_counts(pkeys, levels)
        lo, hi = self.key_range(pkeys, levels)
        return np.searchsorted(self.tgt_keys, hi) - np.searchsorted(self.tgt_keys, lo)

    def counts(self, pkeys: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """``max(n_sources, n_targets)`` in each box."""
        ns = self.source_counts(pkeys, levels)
        if self.targets_are_sources:
            return ns
        return np.maximum(ns, self.target_counts(pkeys, levels))

    def cells(self, level: int) -> np.ndarray:
        """Sorted placeholder keys of the non-empty cells of ``level``."""
        cells = self.all_keys >> _U64(3 * (self.depth - level))
        cells = cells[np.concatenate([[True], cells[1:] != cells[:-1]])] if len(cells) else cells
        return cells | placeholder(np.full(1, level))

    def _cut(self, pkeys: np.ndarray, levels: np.ndarray, sorted_keys: list[np.ndarray]):
        """Disjoint boxes sorted by key range (their keys and levels) and each one's eight
        children's point counts in each of ``sorted_keys``: the boxes' key ranges cut into
        their children's by binary searches (nine per box, in increasing order), not by
        reading every point of the box, so the cost grows with the boxes, not with the points
        under them (at 10^7 points most of a top-down refinement's time was the points read
        again at every level)."""
        lo, hi = self.key_range(pkeys, levels)
        order = np.argsort(lo, kind="stable")
        lo = lo[order]
        eighth = (hi[order] - lo) >> _U64(3)
        cuts = (lo[:, None] + eighth[:, None] * np.arange(9, dtype=_U64)).ravel()
        counts = [np.diff(np.searchsorted(keys, cuts).reshape(-1, 9), axis=1)
                  for keys in sorted_keys]
        return pkeys[order], levels[order], counts

    @staticmethod
    def _child_keys(pkeys: np.ndarray, levels: np.ndarray, box: np.ndarray,
                    octant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        child_levels = levels[box] + 1
        morton = ((pkeys[box] ^ placeholder(levels[box])) << _U64(3)) | octant.astype(_U64)
        return morton | placeholder(child_levels), child_levels

    def children(self, pkeys: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Non-empty children (placeholder keys, levels) of disjoint boxes, sorted per box
        (the boxes in key order)."""
        pkeys, levels, (counts,) = self._cut(pkeys, levels, [self.all_keys])
        return self._child_keys(pkeys, levels, *np.nonzero(counts))

    def counted_children(self, pkeys: np.ndarray, levels: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`children` and their source and target counts (int64)."""
        same = self.targets_are_sources
        pkeys, levels, counts = self._cut(pkeys, levels, [self.src_keys] if same
                                          else [self.src_keys, self.tgt_keys])
        sources, targets = counts[0], counts[-1]
        box, octant = np.nonzero(sources + targets if not same else sources)
        keys, child_levels = self._child_keys(pkeys, levels, box, octant)
        return (keys, child_levels, sources[box, octant].astype(np.int64),
                targets[box, octant].astype(np.int64))


def refine(builder: Refinement, n_crit: int, max_depth: int
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


def balance(builder: Refinement, keys: np.ndarray, levels: np.ndarray, leaf: np.ndarray
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
    for k in range(int(levels.max()) - 1, 0, -1):
        tag = _U64(1 << (3 * k))  # the placeholder bit of level k
        while True:
            # Level k's boxes are one run of the sorted keys.
            first, end = np.searchsorted(keys, [tag, tag << _U64(3)])
            level_keys = keys[first:end]
            internal = level_keys[~leaf[first:end]]
            if internal.shape[0] == 0:
                break
            cells, inside = neighbour_keys(internal ^ tag, k)
            cells = cells[inside] | tag
            # A neighbour cell that is a box of level k is fine; for the others, the deepest
            # existing box containing the cell, walking up.
            at = np.minimum(np.searchsorted(level_keys, cells), len(level_keys) - 1)
            q = np.unique(cells[level_keys[at] != cells] ^ tag)
            found = np.full(q.shape[0], -1, dtype=np.int64)
            pending = np.arange(q.shape[0])
            for j in range(k - 1, -1, -1):
                qk = (q[pending] >> _U64(3 * (k - j))) | _U64(1 << (3 * j))
                pos = np.minimum(np.searchsorted(keys, qk), keys.shape[0] - 1)
                hit = keys[pos] == qk
                found[pending[hit]] = pos[hit]
                pending = pending[~hit]
                if pending.shape[0] == 0:
                    break
            found = found[found >= 0]  # (the root holds every cell)
            bad = found[leaf[found]]
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
