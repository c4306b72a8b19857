"""KIFMM interaction lists (U, V, W, X) of a :class:`~fmmloopy.tree.octree.Tree`, stored as CSR.

Definitions (Ying, Biros, Zorin 2004); "adjacent" means the closed boxes touch (face, edge or
corner), colleagues of B are the same-level boxes adjacent to B (B included):

- U(B), B a leaf: all leaves adjacent to B, B included.
- V(B), any box: children of the colleagues of B's parent that are not adjacent to B.
- W(B), B a leaf: descendants of B's colleagues that are not adjacent to B but whose parent is.
- X(B), any box: the leaves A with B in W(A).

Every list has a row per box: ``u_lists[u_starts[b]:u_starts[b + 1]]`` (starts of length
``nboxes + 1``), empty where the list does not apply; each row is sorted by box index.
Each V entry carries the index of its transfer vector, the integer offset
``(centre(source box) - centre(target box)) / box side`` in ``{-3..3}^3`` outside ``{-1..1}^3``;
:func:`transfer_vectors` maps index -> offset, :func:`transfer_vector_index` offset -> index.

All of it is vectorised: Python loops run over levels and tree depth only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fmmloopy.maths.geometry import (
    INDEX_DTYPE,
    NEIGHBOUR_OFFSETS,
    OCTANT_BITS,
    parent_colleague_children,
    transfer_vector_index,
)
from fmmloopy.tree.csr import csr_from_pairs, starts_from_counts
from fmmloopy.tree.octree import Tree

__all__ = ["InteractionLists", "VList", "build_interaction_lists"]

_INDEX = INDEX_DTYPE

class VList:
    """The V list's ``(starts, entries, transfer-vector indices)``, made at first use: an FMM
    whose compressed M2L takes the V list by class from the device
    (:mod:`fmmloopy.execution.device_setup`) never needs the host's (docs/history.md,
    2026-11-25, "Set-up (third session)")."""

    def __init__(self, make: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]):
        self._make, self._arrays = make, None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, starts: np.ndarray, entries: np.ndarray, transfer: np.ndarray) -> VList:
        """A V list already made."""
        made = cls(lambda: (starts, entries, transfer))
        made.arrays()
        return made

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            if self._arrays is None:
                self._arrays, self._make = self._make(), None
            return self._arrays

    @property
    def made(self) -> bool:
        """Whether the arrays exist yet."""
        return self._arrays is not None


@dataclass(frozen=True, eq=False)
class InteractionLists:
    """CSR interaction lists; row b of list L is ``L_lists[L_starts[b]:L_starts[b + 1]]``.

    All arrays are int32. Starts have length ``nboxes + 1``; rows are sorted by box index.
    """

    #: U: rows for leaves (empty for internal boxes); adjacent leaves incl. the box itself.
    u_starts: np.ndarray
    u_lists: np.ndarray
    #: V: rows for every box (empty for levels 0 and 1), made at first use
    #: (:attr:`v_starts`, :attr:`v_lists`, :attr:`v_transfer`).
    v: VList
    #: W: rows for leaves (empty for internal boxes).
    w_starts: np.ndarray
    w_lists: np.ndarray
    #: X: rows for every box (the transpose of W).
    x_starts: np.ndarray
    x_lists: np.ndarray
    #: (nboxes, 27) int32: same-level adjacent box per offset slot 9(dx+1)+3(dy+1)+(dz+1)
    #: (slot 13 is the box itself), -1 where none exists.
    colleagues: np.ndarray

    @property
    def v_starts(self) -> np.ndarray:
        return self.v.arrays()[0]

    @property
    def v_lists(self) -> np.ndarray:
        return self.v.arrays()[1]

    @property
    def v_transfer(self) -> np.ndarray:
        """Transfer-vector index (0..315) of each V entry, aligned with v_lists."""
        return self.v.arrays()[2]


def _colleague_tables() -> tuple[np.ndarray, np.ndarray]:
    """For child octant ob and colleague slot s: the parent's colleague slot and child octant."""
    v = OCTANT_BITS[:, None, :] + NEIGHBOUR_OFFSETS[None, :, :]  # (8, 27, 3) in -1..2
    d, o = v // 2, v % 2
    pslot = (d[..., 0] + 1) * 9 + (d[..., 1] + 1) * 3 + (d[..., 2] + 1)
    octant = o[..., 0] * 4 + o[..., 1] * 2 + o[..., 2]
    return pslot, octant


def _v_table() -> np.ndarray:
    """(8, 27, 8) transfer index of (parent colleague slot, child octant) seen from octant ob,
    -1 where the child is adjacent."""
    off, far = parent_colleague_children()
    table = np.full(far.shape, -1, dtype=np.int16)  # 316 vectors: small tables, small gathers
    table[far] = transfer_vector_index(off[far])
    return table


_PSLOT, _COCTANT = _colleague_tables()
_VTABLE = _v_table()


def _colleagues(tree: Tree) -> np.ndarray:
    """(nboxes, 27) same-level neighbours, built top-down from the parents' colleagues."""
    nb = tree.nboxes
    coll = np.full((nb, 27), -1, dtype=_INDEX)
    coll[0, 13] = 0
    ls = tree.level_starts
    for lev in range(1, tree.nlevels):
        b = np.arange(ls[lev], ls[lev + 1])
        ob = (tree.box_keys[b] & np.uint64(7)).astype(np.int64)
        pcoll = coll[tree.box_parents[b][:, None], _PSLOT[ob]]
        coll[b] = np.where(pcoll >= 0, tree.box_children[pcoll, _COCTANT[ob]], -1)
    return coll


def _v_list(tree: Tree, coll: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """V list with transfer indices, level by level from the parents' colleagues' children.

    Rows come out sorted without sorting their entries: boxes of a level are in Morton order,
    so the children of one box are consecutive and those of two boxes do not interleave; taking
    the parent's colleagues by box index, and each one's children by octant, lists a row's
    entries in box order (a sort of 27 colleagues per box instead of one of all the entries).
    """
    counts = np.zeros(tree.nboxes, dtype=np.int64)
    cols, tvs = [], []
    ls = tree.level_starts
    # Children by box, with a last row of none for the colleagues that do not exist.
    children = np.vstack([tree.box_children, np.full((1, 8), -1, dtype=_INDEX)])
    none = np.int64(tree.nboxes)  # that row; above every box: absent colleagues sort last
    for lev in range(2, tree.nlevels):
        b = np.arange(ls[lev], ls[lev + 1])
        ob = (tree.box_keys[b] & np.uint64(7)).astype(np.int64)
        pcoll = coll[tree.box_parents[b]].astype(np.int64)  # (n, 27)
        # colleague and slot in one key, sorted by colleague
        key = np.where(pcoll >= 0, pcoll, none) * 32 + np.arange(27)
        key.sort(axis=1)
        cand = children[key >> 5]  # (n, 27, 8)
        tv = _VTABLE[ob[:, None], key & 31]
        ok = (cand >= 0) & (tv >= 0)
        counts[b] = ok.sum(axis=(1, 2))
        cols.append(cand[ok])
        tvs.append(tv[ok])
    empty = np.zeros(0, dtype=_INDEX)
    return (starts_from_counts(counts), np.concatenate([empty, *cols], dtype=_INDEX),
            np.concatenate([empty, *tvs], dtype=_INDEX))


def _adjacent(tree: Tree, b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Whether boxes ``a`` (level >= level of ``b``) touch boxes ``b``, in exact integers."""
    lb = tree.box_levels[b].astype(np.int64)
    la = tree.box_levels[a].astype(np.int64)
    s = (np.int64(1) << (la - lb))[:, None]
    lo = tree.box_coords[b].astype(np.int64) * s
    ca = tree.box_coords[a]
    return np.all((ca >= lo - 1) & (ca <= lo + s), axis=1)


def _u_w_pairs(tree: Tree, coll: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """U pairs with a leaf at the same or a finer level, and all W pairs, for every leaf."""
    leaves = tree.leaf_boxes
    b = np.repeat(leaves, 27)
    c = coll[leaves].ravel()
    ok = c >= 0
    b, c = b[ok], c[ok]
    is_leaf = tree.box_is_leaf[c]
    u_rows, u_cols = [b[is_leaf]], [c[is_leaf]]
    w_rows, w_cols = [], []
    b, c = b[~is_leaf], c[~is_leaf]
    while b.shape[0]:
        kids = tree.box_children[c].ravel()
        b = np.repeat(b, 8)
        ok = kids >= 0
        b, c = b[ok], kids[ok]
        adj = _adjacent(tree, b, c)
        w_rows.append(b[~adj])
        w_cols.append(c[~adj])
        b, c = b[adj], c[adj]
        is_leaf = tree.box_is_leaf[c]
        u_rows.append(b[is_leaf])
        u_cols.append(c[is_leaf])
        b, c = b[~is_leaf], c[~is_leaf]
    empty = np.zeros(0, dtype=_INDEX)
    return (np.concatenate(u_rows), np.concatenate(u_cols),
            np.concatenate(w_rows + [empty]), np.concatenate(w_cols + [empty]))


def build_interaction_lists(tree: Tree) -> InteractionLists:
    """Build the U, W and X lists (CSR, a row per box) of a balanced tree, and its V list at
    first use."""
    coll = _colleagues(tree)
    nb = tree.nboxes
    u_rows, u_cols, w_rows, w_cols = _u_w_pairs(tree, coll)
    # U is symmetric: the coarser neighbours of a leaf are the leaves that found it finer.
    finer = tree.box_levels[u_cols] > tree.box_levels[u_rows]
    u_starts, u_lists = csr_from_pairs(np.concatenate([u_rows, u_cols[finer]]),
                                       np.concatenate([u_cols, u_rows[finer]]), nb,
                                       sort_entries=True)
    w_starts, w_lists = csr_from_pairs(w_rows, w_cols, nb, sort_entries=True)
    x_starts, x_lists = csr_from_pairs(w_cols, w_rows, nb, sort_entries=True)
    return InteractionLists(
        u_starts=u_starts, u_lists=u_lists,
        v=VList(lambda: _v_list(tree, coll)),
        w_starts=w_starts, w_lists=w_lists,
        x_starts=x_starts, x_lists=x_lists,
        colleagues=coll,
    )


def list_size_summary(tree: Tree, lists: InteractionLists) -> dict[str, dict[str, float]]:
    """Mean and max list sizes: U and W over leaves, V and X over all boxes."""
    summary = {}
    for name in "uvwx":
        sizes = np.diff(getattr(lists, f"{name}_starts"))
        rows = sizes[tree.box_is_leaf] if name in "uw" else sizes
        summary[name.upper()] = {"mean": float(rows.mean()), "max": int(sizes.max())}
    return summary
