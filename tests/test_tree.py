"""Tests for fmmloopy.tree.octree: structure, particle order and 2:1 balance, checked from geometry.

Box geometry is recomputed from the centres and levels alone (integer bounds on the finest
lattice), independently of the keys and coordinates the tree stores. The point sets and the
geometry helpers are shared with tests/test_interaction_lists.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fmmloopy.tree.octree import MAX_DEPTH_LIMIT, Tree, build_tree

CORNERS = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)


def _sphere(rng: np.random.Generator, n: int, radius: float = 1.0) -> np.ndarray:
    x = rng.normal(size=(n, 3))
    return radius * x / np.linalg.norm(x, axis=1)[:, None]


def _plummer(rng: np.random.Generator, n: int) -> np.ndarray:
    u = rng.uniform(1e-3, 0.99, size=n)
    r = 1.0 / np.sqrt(u ** (-2.0 / 3.0) - 1.0)
    return _sphere(rng, n) * r[:, None]


def _boundary_points() -> np.ndarray:
    """Points exactly on the box planes of levels 1..3 (and 4 on one axis) of the root cube."""
    root = build_tree(CORNERS, n_crit=8)
    lo = root.root_centre - root.root_half_width
    w = 2.0 * root.root_half_width
    k = lo[None, :] + np.arange(1, 8)[:, None] * (w / 8)  # (7, 3) plane positions
    grid = np.stack(np.meshgrid(k[:, 0], k[:, 1], k[:, 2], indexing="ij"), axis=-1)
    fine = lo + np.array([[i * w / 16, w / 2, 3 * w / 8] for i in range(1, 16)])
    return np.concatenate([CORNERS, grid.reshape(-1, 3), fine])


def make_case(name: str) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(sources, targets or None, n_crit) of a named small test distribution."""
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "cube":
        return rng.uniform(size=(2000, 3)), None, 20
    if name == "sphere":
        return _sphere(rng, 2000), None, 15
    if name == "plummer":
        return _plummer(rng, 1500), None, 10
    if name == "two_clusters":
        a = rng.normal(scale=0.01, size=(600, 3))
        return np.concatenate([a, a[:400] + 10.0]), None, 10
    if name == "line":
        t = rng.uniform(size=600)
        return np.stack([t, 0.5 * t + 0.1, 0.3 * t], axis=1), None, 5
    if name == "lattice":  # full octree down to level 3: interior boxes have |V| = 189
        g = (np.arange(8) + 0.5) / 8
        return np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3), None, 1
    if name == "boundaries":
        return _boundary_points(), None, 5
    if name == "targets_differ":
        return rng.uniform(size=(1500, 3)), 0.5 + _sphere(rng, 600, 0.4), 12
    if name == "targets_disjoint":
        return rng.normal(scale=0.1, size=(800, 3)), rng.normal(scale=0.2, size=(700, 3)) + 2.0, 8
    raise KeyError(name)


CASES = ["cube", "sphere", "plummer", "two_clusters", "line", "lattice", "boundaries",
         "targets_differ", "targets_disjoint"]

_TREES: dict[str, Tree] = {}


def tree_for(name: str) -> Tree:
    """Build (once per session) the tree of a named case."""
    if name not in _TREES:
        src, tgt, n_crit = make_case(name)
        _TREES[name] = build_tree(src, tgt, n_crit=n_crit)
    return _TREES[name]


def exact_bounds(tree: Tree) -> tuple[np.ndarray, np.ndarray]:
    """Integer bounds ``[lo, hi]`` (nboxes, 3) of each box on the finest lattice, from centres."""
    finest = tree.nlevels - 1
    cell = 2.0 * tree.root_half_width / 2.0**finest
    root_lo = tree.root_centre - tree.root_half_width
    hw = (tree.root_half_width / 2.0 ** tree.box_levels.astype(float))[:, None]
    flo = (tree.box_centres - hw - root_lo) / cell
    fhi = (tree.box_centres + hw - root_lo) / cell
    lo, hi = np.rint(flo).astype(np.int64), np.rint(fhi).astype(np.int64)
    assert np.allclose(flo, lo, rtol=0, atol=1e-6) and np.allclose(fhi, hi, rtol=0, atol=1e-6)
    assert np.all(hi - lo == (np.int64(1) << (finest - tree.box_levels.astype(np.int64)))[:, None])
    return lo, hi


def touch_matrix(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(nboxes, nboxes) bool: the closed boxes intersect (touch or overlap)."""
    return np.all((lo[:, None, :] <= hi[None, :, :]) & (lo[None, :, :] <= hi[:, None, :]), axis=2)


def _interleave(c: np.ndarray) -> np.ndarray:
    """Morton key by a plain bit loop (independent of the tree's magic-number version)."""
    key = np.zeros(c.shape[0], dtype=object)
    for bit in range(21):
        for axis in range(3):
            key = key + (((c[:, axis] >> bit) & 1).astype(object) << (3 * bit + 2 - axis))
    return key


@pytest.mark.parametrize("name", CASES)
def test_structure(name: str) -> None:
    tree = tree_for(name)
    nb, finest = tree.nboxes, tree.nlevels - 1
    lev = tree.box_levels
    lo, hi = exact_bounds(tree)
    assert tree.box_parents[0] == -1 and lev[0] == 0
    assert np.all(np.diff(lev) >= 0)
    assert np.array_equal(tree.level_starts, np.searchsorted(lev, np.arange(finest + 2)))
    par = tree.box_parents[1:]
    assert np.all(lev[par] == lev[1:] - 1)
    assert np.all((lo[par] <= lo[1:]) & (hi[1:] <= hi[par]))
    # Children: octant from geometry (upper half along x -> 4, y -> 2, z -> 1).
    mid = (lo[par] + hi[par]) // 2
    octant = ((lo[1:] >= mid).astype(int) * [4, 2, 1]).sum(axis=1)
    expect = np.full((nb, 8), -1)
    expect[par, octant] = np.arange(1, nb)
    assert np.array_equal(tree.box_children, expect)
    assert np.array_equal(tree.box_is_leaf, (tree.box_children < 0).all(axis=1))
    # Morton order inside each level, no duplicate boxes.
    cells = lo >> (finest - lev.astype(np.int64))[:, None]
    key = _interleave(cells)
    same = lev[1:] == lev[:-1]
    assert all(a < b for a, b, s in zip(key[:-1], key[1:], same, strict=True) if s)
    assert np.array_equal(tree.box_coords, cells)
    assert np.array_equal(tree.box_half_widths, tree.root_half_width / 2.0**lev)
    assert tree.max_depth == 20 and finest <= tree.max_depth


@pytest.mark.parametrize("name", CASES)
def test_particles(name: str) -> None:
    src, tgt, n_crit = make_case(name)
    tree = tree_for(name)
    tgt_user = src if tgt is None else tgt
    lo, hi = exact_bounds(tree)
    cell = 2.0 * tree.root_half_width / 2.0 ** (tree.nlevels - 1)
    root_lo = tree.root_centre - tree.root_half_width
    leaves = tree.leaf_boxes
    for pts_soa, user, starts, counts, user_ids, tree_ids in [
        (tree.sources_soa, src, tree.box_source_starts, tree.box_source_counts,
         tree.source_user_ids, tree.source_tree_ids),
        (tree.targets_soa, tgt_user, tree.box_target_starts, tree.box_target_counts,
         tree.target_user_ids, tree.target_tree_ids),
    ]:
        n = user.shape[0]
        assert pts_soa.shape == (3, n) and pts_soa.dtype == np.float64
        assert pts_soa.flags.c_contiguous
        assert np.array_equal(np.sort(user_ids), np.arange(n))
        assert np.array_equal(tree_ids[user_ids], np.arange(n))
        assert np.array_equal(pts_soa.T, user[user_ids])
        # Leaves partition the sorted particles; internal ranges are unions of children.
        order = np.lexsort((counts[leaves], starts[leaves]))
        ls, lc = starts[leaves][order], counts[leaves][order]
        assert ls[0] == 0 and np.array_equal(ls[1:], (ls + lc)[:-1]) and lc.sum() == n
        for b in np.flatnonzero(~tree.box_is_leaf):
            kids = tree.box_children[b][tree.box_children[b] >= 0]
            nonempty = kids[counts[kids] > 0]
            assert counts[b] == counts[kids].sum()
            if nonempty.size:
                assert starts[b] == starts[nonempty].min()
        # Every particle lies in its leaf's closed box.
        leaf_of = np.repeat(leaves[order], lc)
        pos = (pts_soa.T - root_lo) / cell
        tol = 1e-9
        assert np.all(pos >= lo[leaf_of] - tol) and np.all(pos <= hi[leaf_of] + tol)
    nmax = np.maximum(tree.box_source_counts, tree.box_target_counts)
    assert np.all(nmax[tree.box_is_leaf] <= n_crit)
    assert np.all(nmax > 0)  # only non-empty boxes exist
    assert tree.targets_are_sources == (tgt is None)
    if tgt is None:
        assert tree.targets_soa is tree.sources_soa


@pytest.mark.parametrize("name", CASES)
def test_balance(name: str) -> None:
    tree = tree_for(name)
    lo, hi = exact_bounds(tree)
    touch = touch_matrix(lo, hi)
    lev = tree.box_levels.astype(int)
    leaf = tree.box_is_leaf
    dlev = np.abs(lev[:, None] - lev[None, :])
    # Adjacent leaves differ by at most one level.
    assert not np.any(touch & leaf[:, None] & leaf[None, :] & (dlev > 1))
    # Full-octree form: no internal box touches a leaf of a coarser level.
    assert not np.any(touch & leaf[:, None] & ~leaf[None, :] & (lev[None, :] > lev[:, None]))
    # No needless split: an internal box with <= n_crit points was split for balance, so a
    # finer internal box touches it.
    nmax = np.maximum(tree.box_source_counts, tree.box_target_counts)
    for b in np.flatnonzero(~leaf & (nmax <= tree.n_crit)):
        assert np.any(touch[b] & ~leaf & (lev > lev[b]))


def test_balance_refines_coarse_neighbours() -> None:
    """A dense cluster next to sparse points forces a graded ring of leaves around it."""
    rng = np.random.default_rng(3)
    src = np.concatenate([rng.uniform(size=(300, 3)), 0.5 + 1e-3 * rng.uniform(size=(300, 3))])
    tree = build_tree(src, n_crit=10)
    lo, hi = exact_bounds(tree)
    touch = touch_matrix(lo, hi)
    lev, leaf = tree.box_levels.astype(int), tree.box_is_leaf
    assert tree.nlevels > 8
    assert not np.any(touch & leaf[:, None] & leaf[None, :]
                      & (np.abs(lev[:, None] - lev[None, :]) > 1))
    nmax = np.maximum(tree.box_source_counts, tree.box_target_counts)
    assert np.any(~leaf & (nmax <= 10))  # some boxes were split for balance alone


def test_targets_none_and_permutations() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(size=(300, 3))
    tree = build_tree(src, n_crit=10)
    assert tree.targets_are_sources and tree.ntargets == tree.nsources == 300
    assert np.array_equal(tree.sources, src[tree.source_user_ids])
    assert np.array_equal(tree.sources_to_tree(src), tree.sources)
    assert np.array_equal(tree.targets_to_user(tree.targets), src)
    assert np.array_equal(tree.box_source_counts, tree.box_target_counts)
    assert np.array_equal(tree.box_centres_soa, tree.box_centres.T)


def test_root_cube_contains_points() -> None:
    rng = np.random.default_rng(2)
    src, tgt = rng.uniform(-1, 1, size=(50, 3)), rng.uniform(0, 3, size=(40, 3))
    tree = build_tree(src, tgt, n_crit=4)
    for p in (src, tgt):
        assert np.all(np.abs(p - tree.root_centre) < tree.root_half_width)
    assert tree.root_half_width < 0.51 * 4.0


def test_single_and_identical_points() -> None:
    tree = build_tree(np.array([[1.0, 2.0, 3.0]]), n_crit=1)
    assert tree.nboxes == 1 and tree.box_is_leaf[0] and tree.root_half_width > 0
    pts = np.concatenate([np.zeros((20, 3)), np.ones((3, 3))])
    with pytest.warns(RuntimeWarning, match="max_depth=6"):
        tree = build_tree(pts, n_crit=5, max_depth=6)
    assert tree.nlevels - 1 == 6
    full = np.maximum(tree.box_source_counts, tree.box_target_counts) > 5
    assert np.all(tree.box_levels[full & tree.box_is_leaf] == 6)


def test_max_depth_zero_and_limit() -> None:
    rng = np.random.default_rng(4)
    pts = rng.uniform(size=(100, 3))
    with pytest.warns(RuntimeWarning, match="max_depth=0"):
        assert build_tree(pts, n_crit=10, max_depth=0).nboxes == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 1e-6 apart: separable at level 21, so no warning
        tree = build_tree(np.concatenate([pts, pts[:1] + 1e-6]), n_crit=1,
                          max_depth=MAX_DEPTH_LIMIT)
    assert 12 <= tree.nlevels - 1 <= MAX_DEPTH_LIMIT


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sources": np.zeros((5, 2))}, "shape"),
        ({"sources": np.zeros(3)}, "shape"),
        ({"sources": np.zeros((0, 3))}, "at least one"),
        ({"sources": np.array([[0.0, np.nan, 0.0]])}, "finite"),
        ({"sources": np.array([[0.0, np.inf, 0.0]])}, "finite"),
        ({"sources": np.zeros((2, 3)), "targets": np.zeros((2, 4))}, "targets"),
        ({"sources": np.zeros((2, 3)), "n_crit": 0}, "n_crit"),
        ({"sources": np.zeros((2, 3)), "n_crit": 2.5}, "n_crit"),
        ({"sources": np.zeros((2, 3)), "n_crit": True}, "n_crit"),
        ({"sources": np.zeros((2, 3)), "max_depth": 22}, "max_depth"),
        ({"sources": np.zeros((2, 3)), "max_depth": -1}, "max_depth"),
        ({"sources": np.array([["a", "b", "c"]])}, "real"),
        ({"sources": np.array([[-1e308, 0.0, 0.0], [1e308, 0.0, 0.0]])}, "overflows"),
    ],
)
def test_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_tree(**kwargs)


def test_points_gathered_in_tree_order_on_threads_are_the_rows_gathered():
    """Past THREADED_GATHER points the gather runs in pieces on threads: the same array as
    gathering the rows and transposing them, bit for bit."""
    from fmmloopy.tree.octree import THREADED_GATHER, gathered_by_coordinate
    rng = np.random.default_rng(3)
    for count in (THREADED_GATHER - 1, THREADED_GATHER + 7):
        points = rng.random((count, 3))
        order = rng.permutation(count)
        np.testing.assert_array_equal(gathered_by_coordinate(points, order), points[order].T)
