"""Tests for fmmloopy.tree.lists against brute-force lists built from the definitions.

The brute force uses only box geometry recomputed from centres and levels (exact integer bounds,
see tests/test_tree.py), leaf flags and the parent array: O(nboxes**2) dense matrices.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_tree import CASES, CORNERS, exact_bounds, touch_matrix, tree_for

from fmmloopy.maths.geometry import (
    NEIGHBOUR_OFFSETS,
    NTRANSFER_VECTORS,
    transfer_vector_index,
    transfer_vectors,
)
from fmmloopy.tree.lists import InteractionLists, build_interaction_lists
from fmmloopy.tree.octree import Tree, build_tree

LISTS = ("u", "v", "w", "x")
# The bounds for 2:1-balanced 3D trees, except W: 152 (26 colleagues all split, each
# contributing its children that do not touch B: 6*4 + 12*6 + 8*7) is reached, see
# test_cavity_reaches_w_152, so 148 cannot hold.
BOUNDS = {"u": 60, "v": 189, "w": 152, "x": 19}


def _ancestors(tree: Tree) -> np.ndarray:
    """(nboxes, nlevels) ancestor of each box at each level (itself at its level), -1 below."""
    nb = tree.nboxes
    anc = np.full((nb, tree.nlevels), -1, dtype=np.int64)
    rows, cur = np.arange(nb), np.arange(nb)
    while rows.size:
        anc[rows, tree.box_levels[cur]] = cur
        keep = tree.box_parents[cur] >= 0
        rows, cur = rows[keep], tree.box_parents[cur][keep]
    return anc


def brute_force(tree: Tree) -> dict[str, np.ndarray]:
    """Dense (target box, source box) bool matrices of U, V, W, X from the definitions."""
    nb = tree.nboxes
    lo, hi = exact_bounds(tree)
    touch = touch_matrix(lo, hi)
    lev = tree.box_levels.astype(np.int64)
    leaf = tree.box_is_leaf
    par = tree.box_parents.astype(np.int64)
    same = lev[:, None] == lev[None, :]
    colleague = touch & same
    u = leaf[:, None] & leaf[None, :] & touch
    pp = np.where(par >= 0, par, 0)
    v = same & (lev[:, None] >= 1) & touch[pp[:, None], pp[None, :]] & ~touch
    anc = _ancestors(tree)
    anc_at = anc[np.arange(nb)[None, :], lev[:, None]]  # [B, A]: ancestor of A at level(B)
    ok = anc_at >= 0
    desc_of_colleague = ok & colleague[np.arange(nb)[:, None], np.where(ok, anc_at, 0)]
    desc_of_colleague &= anc_at != np.arange(nb)[:, None]
    desc_of_colleague &= lev[None, :] > lev[:, None]
    w = leaf[:, None] & desc_of_colleague & ~touch & touch[np.arange(nb)[:, None], pp[None, :]]
    return {"u": u, "v": v, "w": w, "x": w.T.copy(), "colleague": colleague, "anc": anc,
            "lo": lo, "hi": hi}


def dense(lists: InteractionLists, name: str, nb: int) -> np.ndarray:
    """(nboxes, nboxes) entry counts of one CSR list."""
    starts, cols = getattr(lists, f"{name}_starts"), getattr(lists, f"{name}_lists")
    assert starts.shape == (nb + 1,) and starts[0] == 0 and starts[-1] == cols.shape[0]
    assert np.all(np.diff(starts) >= 0)
    assert starts.dtype == np.int32 and cols.dtype == np.int32
    rows = np.repeat(np.arange(nb), np.diff(starts))
    out = np.zeros((nb, nb), dtype=np.int64)
    np.add.at(out, (rows, cols), 1)
    # Rows sorted by box index, no duplicates.
    assert np.all((np.diff(cols) > 0) | (np.diff(rows) > 0))
    return out


_LISTS: dict[str, InteractionLists] = {}


def lists_for(name: str) -> InteractionLists:
    if name not in _LISTS:
        _LISTS[name] = build_interaction_lists(tree_for(name))
    return _LISTS[name]


def _check_against_brute_force(tree: Tree, il: InteractionLists) -> dict[str, np.ndarray]:
    nb = tree.nboxes
    ref = brute_force(tree)
    got = {}
    for name in LISTS:
        got[name] = dense(il, name, nb)
        assert got[name].max(initial=0) <= 1, f"duplicate entries in {name}"
        bad = np.argwhere((got[name] > 0) != ref[name])
        assert bad.size == 0, f"{name} list differs at (box, entry) {bad[:5].tolist()}"
    # Transfer vectors of V entries from exact geometry: (lo_src - lo_tgt) / side.
    lo, hi = ref["lo"], ref["hi"]
    rows = np.repeat(np.arange(nb), np.diff(il.v_starts))
    side = hi[rows] - lo[rows]
    off = lo[il.v_lists] - lo[rows]
    assert np.all(off % side == 0)
    assert np.array_equal(transfer_vectors()[il.v_transfer], off // side)
    assert il.v_transfer.dtype == np.int32 and il.v_transfer.shape == il.v_lists.shape
    # Colleague table from geometry.
    assert il.colleagues.shape == (nb, 27)
    col = ref["colleague"]
    for slot in range(27):
        c = il.colleagues[:, slot]
        has = c >= 0
        expect_lo = lo + NEIGHBOUR_OFFSETS[slot] * (hi - lo)
        assert np.array_equal(lo[c[has]], expect_lo[has])
        assert np.all(col[np.flatnonzero(has), c[has]])
    assert np.array_equal(col.sum(axis=1), (il.colleagues >= 0).sum(axis=1))
    got["anc"] = ref["anc"]
    return got


def _check_complete(tree: Tree, got: dict[str, np.ndarray]) -> None:
    """Every (target leaf, source particle) pair is covered exactly once."""
    nb = tree.nboxes
    anc = got["anc"]
    anc_self = np.zeros((nb, nb))  # [L, P]: P is L or an ancestor of L
    r, c = np.nonzero(anc >= 0)
    anc_self[r, anc[r, c]] = 1.0
    # Boxes whose particles are summed for target leaf L, counted with multiplicity.
    boxes = got["u"] + got["w"] + anc_self @ (got["v"] + got["x"])
    # A source particle in leaf S is in box A iff A is S or an ancestor of S.
    cover = boxes @ anc_self.T  # [L, S]
    leaves = tree.leaf_boxes
    starts, counts = tree.box_source_starts[leaves], tree.box_source_counts[leaves]
    order = np.lexsort((counts, starts))
    source_leaf = np.repeat(leaves[order], counts[order])  # leaf of each sorted source
    assert source_leaf.shape == (tree.nsources,)
    target_leaves = leaves[tree.box_target_counts[leaves] > 0]
    pair = cover[np.ix_(target_leaves, source_leaf)]
    bad = np.argwhere(pair != 1)
    assert bad.size == 0, (
        f"{bad.shape[0]} (target leaf, source) pairs covered "
        f"{sorted(set(pair[pair != 1].astype(int).tolist()))} times")
    # Geometrically too: every pair of leaves, not only the ones holding particles.
    assert np.all(cover[np.ix_(leaves, leaves)] == 1)


def _check_levels_and_bounds(tree: Tree, il: InteractionLists) -> dict[str, int]:
    lev = tree.box_levels
    sizes = {}
    for name in LISTS:
        starts, cols = getattr(il, f"{name}_starts"), getattr(il, f"{name}_lists")
        n = np.diff(starts)
        sizes[name] = int(n.max(initial=0))
        assert sizes[name] <= BOUNDS[name], (name, sizes[name])
        rows = np.repeat(np.arange(tree.nboxes), n)
        d = lev[cols] - lev[rows]
        expect = {"u": np.abs(d) <= 1, "v": d == 0, "w": d == 1, "x": d == -1}[name]
        assert np.all(expect), name
        if name in ("u", "w"):
            assert np.all(tree.box_is_leaf[rows])
        if name in ("u", "x"):
            assert np.all(tree.box_is_leaf[cols])
    assert np.all(np.diff(il.u_starts)[tree.box_is_leaf] >= 1)  # a leaf is in its own U
    return sizes


@pytest.mark.parametrize("name", CASES)
def test_lists_match_brute_force_and_are_complete(name: str) -> None:
    tree, il = tree_for(name), lists_for(name)
    got = _check_against_brute_force(tree, il)
    _check_complete(tree, got)
    sizes = _check_levels_and_bounds(tree, il)  # every list within BOUNDS
    if name == "lattice":
        assert sizes["v"] == 189


def _cavity(n_crit: int = 8) -> np.ndarray:
    """A nearly empty level-3 box whose 26 colleagues are all split into 8 children."""
    root = build_tree(CORNERS, n_crit=8)
    lo = root.root_centre - root.root_half_width
    cw = 2.0 * root.root_half_width / 8
    sub = np.array([[i, j, k] for i in (0.2, 0.7) for j in (0.2, 0.7) for k in (0.2, 0.7)])
    pts = [CORNERS]
    for d in np.ndindex(3, 3, 3):
        c = np.array(d) + 3
        if d == (1, 1, 1):
            pts.append(lo + (c + 0.5)[None, :] * cw)
        else:
            pts.extend(lo + (c + sub + s) * cw for s in (0.0, 0.1))
    return np.concatenate(pts)


def test_cavity_reaches_w_152() -> None:
    tree = build_tree(_cavity(), n_crit=8)
    il = build_interaction_lists(tree)
    got = _check_against_brute_force(tree, il)
    _check_complete(tree, got)
    sizes = _check_levels_and_bounds(tree, il)
    assert sizes["w"] == 152 and sizes["u"] == 57


def test_split_box_among_leaves_reaches_x_19() -> None:
    """A split level-2 box whose 26 colleagues are leaves: its children see 19 X entries."""
    n_crit = 6
    root = build_tree(CORNERS, n_crit=n_crit)
    lo = root.root_centre - root.root_half_width
    cw = 2.0 * root.root_half_width / 4
    rng = np.random.default_rng(8)
    pts = [CORNERS]
    for c in np.ndindex(4, 4, 4):
        if c == (1, 1, 1):  # 5 points in each of its 8 children
            for o in np.ndindex(2, 2, 2):
                pts.append(lo + (np.array(c) + 0.5 * np.array(o)
                                 + rng.uniform(0.1, 0.4, size=(5, 3))) * cw)
        else:
            pts.append(lo + (np.array(c) + rng.uniform(0.1, 0.9, size=(5, 3))) * cw)
    tree = build_tree(np.concatenate(pts), n_crit=n_crit)
    il = build_interaction_lists(tree)
    got = _check_against_brute_force(tree, il)
    _check_complete(tree, got)
    sizes = _check_levels_and_bounds(tree, il)
    assert sizes["x"] == 19


def test_single_box_tree() -> None:
    tree = build_tree(np.zeros((1, 3)), n_crit=4)
    il = build_interaction_lists(tree)
    assert il.u_lists.tolist() == [0] and il.u_starts.tolist() == [0, 1]
    for name in ("v", "w", "x"):
        assert getattr(il, f"{name}_lists").size == 0
        assert getattr(il, f"{name}_starts").tolist() == [0, 0]


def test_transfer_vectors() -> None:
    tv = transfer_vectors()
    assert tv.shape == (NTRANSFER_VECTORS, 3) == (316, 3)
    assert len({tuple(t) for t in tv.tolist()}) == 316
    assert np.all(np.abs(tv).max(axis=1) >= 2) and np.all(np.abs(tv) <= 3)
    assert np.array_equal(transfer_vector_index(tv), np.arange(316))
    assert np.array_equal(tv[0], [-3, -3, -3]) and np.array_equal(tv[-1], [3, 3, 3])
    # Lexicographic order with x slowest.
    assert [tuple(t) for t in tv.tolist()] == sorted(tuple(t) for t in tv.tolist())
    assert transfer_vector_index(np.array([[2, 0, 0], [0, -2, 1]])).shape == (2,)
    for bad in ([0, 0, 0], [1, -1, 1], [4, 0, 0], [0, 0, -4]):
        with pytest.raises(ValueError, match="offsets"):
            transfer_vector_index(np.array(bad))
    with pytest.raises(ValueError, match="shape"):
        transfer_vector_index(np.zeros((2, 2), dtype=int))
