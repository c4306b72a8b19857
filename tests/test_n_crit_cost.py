"""``n_crit="auto"``: the boxes of every candidate tree from one sort, the work counted without
lists against the real tree and lists, and the choice against trying every candidate."""

import dataclasses

import numpy as np
import pytest

import fmmloopy
from fmmloopy.base.distributions import DISTRIBUTIONS
from fmmloopy.maths.geometry import M2L_CLASSES, interior_v_entries
from fmmloopy.tree.cost import (
    CANDIDATES,
    REBALANCE_GAIN,
    ROOT_SCALES,
    CellCounts,
    TreeWork,
    choose_n_crit,
    choose_tree,
    leaf_dimension,
    predicted_root_scale,
    tree_work,
)
from fmmloopy.tree.octree import build_tree_from, in_wider_cube, sort_points, tree_boxes
from fmmloopy.tree.refinement import refine

DISTRIBUTION_NAMES = ["sphere", "cube", "plummer"]


def _points(distribution, n, seed=0):
    return DISTRIBUTIONS[distribution](n, np.random.default_rng(seed))


@pytest.mark.parametrize("distribution", DISTRIBUTION_NAMES)
def test_cell_counts_give_the_boxes_of_the_refinement_for_every_n_crit(distribution):
    points = sort_points(_points(distribution, 20000))
    cells = CellCounts.of(points, 8)
    for n_crit in (8, 20, 64, 150, 400, 5000):  # cells for >= 8: any n_crit >= 8
        keys, levels, leaf, sources, targets = cells.boxes(n_crit)
        expected_keys, expected_levels, expected_leaf, _ = refine(points.builder, n_crit,
                                                                  points.depth)
        order = np.argsort(expected_keys)
        np.testing.assert_array_equal(keys, expected_keys[order])
        np.testing.assert_array_equal(levels, expected_levels[order])
        np.testing.assert_array_equal(leaf, expected_leaf[order])
        np.testing.assert_array_equal(sources, targets)  # targets are the sources
        assert sources[0] == 20000 and sources[leaf].sum() == 20000


@pytest.mark.parametrize("distribution", DISTRIBUTION_NAMES)
def test_the_chosen_tree_is_built_from_the_candidates_boxes_as_from_scratch(distribution):
    """Every candidate's boxes are tree_boxes' for its n_crit (balanced, the chosen one among
    them) or refine's (counted before the balance), and the tree built from the chosen one's
    holds the same arrays as one refined and balanced anew (distinct targets too)."""
    sources = _points(distribution, 20000)
    for targets in (None, 0.5 * sources[:3000]):
        points = sort_points(sources, targets)
        chosen, candidates = choose_n_crit(points, 6, 30.0)
        assert chosen in [work.n_crit for work in candidates if work.balanced]
        for work in candidates:
            if work.balanced:
                expected_boxes = tree_boxes(points, work.n_crit)
            else:
                keys, levels, leaf, _ = refine(points.builder, work.n_crit, points.depth)
                order = np.argsort(keys)
                expected_boxes = keys[order], levels[order], leaf[order]
            for got, expected in zip(work.boxes, expected_boxes, strict=True):
                np.testing.assert_array_equal(got, expected)
        work = next(work for work in candidates if work.n_crit == chosen)
        reused, anew = build_tree_from(points, chosen, work.boxes), build_tree_from(points, chosen)
        for name, value in vars(anew).items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(getattr(reused, name), value, err_msg=name)


@pytest.mark.parametrize("distribution", DISTRIBUTION_NAMES)
def test_candidates_of_the_same_boxes_are_counted_once_with_their_own_counts(distribution,
                                                                            monkeypatch):
    """A uniform cube's candidates share trees (a level at a time): each tree is counted once
    in the sweep (before its balance; the finalists once more, balanced), and every
    candidate's work is what counting it alone gives."""
    from fmmloopy.tree import cost
    points = sort_points(_points(distribution, 60000))
    counted, balanced = [], []
    monkeypatch.setattr(cost, "tree_work", lambda *args, **kwargs: (
        balanced if kwargs.get("balanced", True) else counted).append(args[1])
        or tree_work(*args, **kwargs))
    _, candidates = choose_n_crit(points, 4, 30.0)
    assert 1 <= len(balanced) <= 2 and set(balanced) <= {work.n_crit for work in candidates}
    cells = CellCounts.of(points, CANDIDATES[0])
    boxes = {}
    for work in candidates:
        alone = tree_work(points, work.n_crit, 4, cells, balanced=work.balanced)
        assert (work.n_crit, work.nboxes, work.v_entries, work.p2p_pairs) == (
            alone.n_crit, alone.nboxes, alone.v_entries, alone.p2p_pairs)
        for got, expected in zip(work.boxes, alone.boxes, strict=True):
            np.testing.assert_array_equal(got, expected)
        unbalanced = cells.boxes(work.n_crit)
        boxes.setdefault((unbalanced[0].tobytes(), unbalanced[2].tobytes()), set()).add(
            work.n_crit)
    # Each distinct tree among those tried was counted once, for one of its candidates (the
    # sweep may count one more beside them, in vain); on the cube, fewer than the candidates.
    assert len(set(counted)) == len(counted)
    for n_crits in boxes.values():
        assert len(n_crits & set(counted)) == 1, (sorted(n_crits), counted)
    assert len(counted) <= len(boxes) + cost._WORKERS - 1
    if distribution == "cube":
        assert len(boxes) < len(candidates) and len(counted) < len(candidates)


def test_a_tree_from_given_boxes_warns_of_leaves_past_n_crit():
    """Coincident points stop at max_depth: the warning counts them whichever way the boxes
    came."""
    points = sort_points(np.vstack([np.zeros((50, 3)), np.random.default_rng(2).random((200, 3))]))
    work = tree_work(points, 32, 6)
    with pytest.warns(RuntimeWarning, match="max_depth=20 reached; 1 leaves hold more than"):
        build_tree_from(points, 32, work.boxes)


def test_cell_counts_with_distinct_targets_split_on_either():
    rng = np.random.default_rng(4)
    sources, targets = rng.random((3000, 3)), 0.5 * rng.random((500, 3))
    points = sort_points(sources, targets)
    keys, levels, leaf, n_sources, n_targets = CellCounts.of(points, 10).boxes(40)
    assert n_sources[leaf].sum() == 3000 and n_targets[leaf].sum() == 500
    assert np.all(np.maximum(n_sources, n_targets)[leaf] <= 40)
    assert np.all(np.maximum(n_sources, n_targets)[~leaf] > 40)


#: How far the counts may fall from the real tree's: the 2:1 balance, which the model leaves out,
#: adds few boxes on a sphere or a cube (measured: <= 3 %) and up to a quarter in Plummer's
#: core, where the density changes fast; the near-field pairs are an estimate (measured within
#: 10 % of the plan's on all three).
TOLERANCE = {"sphere": 0.1, "cube": 0.1, "plummer": 0.3}


@pytest.mark.parametrize("distribution", DISTRIBUTION_NAMES)
def test_counted_work_is_close_to_the_real_tree_and_plan(distribution):
    """Boxes and V entries of the unbalanced tree against the balanced tree's, near-field pairs
    against the plan's P2P, M2P and P2L work."""
    points = _points(distribution, 20000)
    tolerance = TOLERANCE[distribution]
    for n_crit in (40, 150):
        fmm = fmmloopy.Fmm(points, n_crit=n_crit, order=4)
        work = tree_work(sort_points(points), n_crit, 4)
        near = sum(fmm.plan.work(step) for step in ("p2p", "m2p", "p2l"))
        assert (1 - tolerance) * fmm.tree.nboxes <= work.nboxes <= fmm.tree.nboxes
        assert work.v_entries == pytest.approx(len(fmm.lists.v_lists), rel=tolerance)
        assert work.p2p_pairs == pytest.approx(near, rel=0.2)


@pytest.mark.parametrize("distribution", DISTRIBUTION_NAMES)
@pytest.mark.parametrize("order", [2, 6, 10])
def test_the_choice_is_as_cheap_as_trying_every_candidate(distribution, order):
    """The sweep tries a factor 2 apart, then beside the best: at most a few per cent above
    the cheapest of all candidates (the model's cost is piecewise constant in n_crit)."""
    points = sort_points(_points(distribution, 30000, seed=order))
    chosen, tried = choose_n_crit(points, order, pair_flops=45.0)
    every = {n_crit: tree_work(points, n_crit, order).cost(order, 45.0) for n_crit in CANDIDATES}
    assert chosen in [work.n_crit for work in tried]
    assert every[chosen] <= 1.05 * min(every.values())
    assert every[chosen] == min(work.cost(order, 45.0) for work in tried if work.balanced)


def test_a_higher_order_or_dearer_pairs_never_choose_smaller_leaves():
    points = sort_points(_points("cube", 50000))
    by_order = [choose_n_crit(points, order, 45.0)[0] for order in (3, 5, 7, 9)]
    assert by_order == sorted(by_order) and by_order[0] < by_order[-1]
    by_pair_cost = [choose_n_crit(points, 6, cost)[0] for cost in (400.0, 45.0, 5.0)]
    assert by_pair_cost == sorted(by_pair_cost) and by_pair_cost[0] < by_pair_cost[-1]


def test_the_compressed_far_field_is_cheaper_and_never_chooses_larger_leaves():
    """The flops per V entry and per box of the operators that run (compressed M2L, order 6:
    ranks 56/32-48/32 of 152 by band), against dense matrices; cheaper far-field work never
    makes the leaves larger."""
    from fmmloopy.execution.precomputed import get_operators
    from fmmloopy.tree.cost import dense_far_field_flops

    operators = get_operators("laplace", 6)
    per_entry, per_box = operators.far_field_flops()
    ranks, n_e = operators.ranks(), operators.n_e
    # An interior box's V list: 189 entries, 54 near, 71 middle and 64 far, each band in 6
    # directions (counted by brute force in test_precompute).
    assert per_entry == pytest.approx(2 * sum(
        interior_v_entries(name) * ranks[f"m2l_{name}"] ** 2 for name in M2L_CLASSES) / 189)
    dense_entry, dense_box = dense_far_field_flops(6)
    assert (dense_entry, dense_box) == (2 * n_e ** 2, 12 * n_e ** 2)
    assert per_entry < 0.1 * dense_entry
    assert per_box == 12 * n_e ** 2 + 4 * n_e * sum(
        ranks[f"m2l_{name}"] for name in M2L_CLASSES)
    points = sort_points(_points("cube", 50000))
    compressed = choose_n_crit(points, 6, 45.0, operators.far_field_flops())[0]
    assert compressed <= choose_n_crit(points, 6, 45.0)[0]


def test_fmm_chooses_n_crit_and_stays_accurate():
    rng = np.random.default_rng(7)
    points, charges = _points("cube", 5000, seed=7), rng.random(5000)
    fmm = fmmloopy.Fmm(points)
    assert fmm.n_crit in CANDIDATES and fmm.tree.n_crit == fmm.n_crit
    assert fmm.n_crit in [work.n_crit for work in fmm.n_crit_candidates]
    given = fmmloopy.Fmm(points, n_crit=fmm.n_crit)
    assert given.n_crit == fmm.n_crit and given.n_crit_candidates == []
    # A given n_crit keeps the bounding cube; "auto" may have widened it.
    assert given.root_scale == 1.0 and fmm.root_scale in ROOT_SCALES
    assert fmm.tree.root_half_width == pytest.approx(
        fmm.root_scale * given.tree.root_half_width)
    if fmm.root_scale == 1.0:  # the same tree: the same sums
        np.testing.assert_array_equal(fmm(charges), given(charges))
    sample = rng.choice(5000, 100, replace=False)
    offsets = points[sample, None, :] - points[None, :, :]
    distance = np.sqrt((offsets ** 2).sum(axis=-1))
    with np.errstate(divide="ignore"):
        direct = np.where(distance > 0, charges / (4 * np.pi * distance), 0).sum(axis=1)
    error = np.linalg.norm(fmm(charges)[sample] - direct) / np.linalg.norm(direct)
    assert error < 1e-6  # order 6: errors ~1e-7 (docs/kifmm.md)


def test_a_wider_root_cube_where_the_bounding_cubes_best_tree_is_unbalanced():
    """2*10^5 cube points at order 8, a pair at 20 matvec flops: the bounding cube's best tree
    has leaves of about 24 points, its far field dearer than its near field; choose_tree counts
    the wider cube the model predicts, and its choice is the cheapest tree of every root cube
    and every candidate, each counted alone (within the sweep's few per cent)."""
    from fmmloopy.execution.precomputed import get_operators

    order, pair_flops = 8, 20.0
    far = get_operators("laplace", order).far_field_flops()
    points = sort_points(_points("cube", 200000, seed=1))
    choice = choose_tree(points, order, pair_flops, far, lambda s: in_wider_cube(points, s))
    every = {(scale, n_crit): tree_work(in_wider_cube(points, scale), n_crit, order).cost(
        order, pair_flops, far) for scale in ROOT_SCALES for n_crit in CANDIDATES}
    bounding = min(cost for (scale, _), cost in every.items() if scale == 1)
    cost = choice.work.cost(order, pair_flops, far)
    assert choice.root_scale > 1 and cost < bounding / 1.05
    assert cost <= 1.02 * min(every.values())
    assert choice.points.half_width == pytest.approx(choice.root_scale * points.half_width)
    np.testing.assert_array_equal(choice.points.centre, points.centre)
    assert {work.root_scale for work in choice.candidates} == {1.0, choice.root_scale}
    # The chosen boxes are those of the wider cube's tree, built anew.
    for got, expected in zip(choice.work.boxes, tree_boxes(choice.points, choice.n_crit),
                             strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("distribution, order", [("cube", 4), ("cube", 12), ("sphere", 8)])
def test_the_bounding_cube_stays_where_its_tree_is_balanced(distribution, order):
    """10^5 points whose bounding cube's best tree is within REBALANCE_GAIN of balanced: no
    other cube is sorted or counted."""
    from fmmloopy.execution.precomputed import get_operators

    far = get_operators("laplace", order).far_field_flops()
    points = sort_points(_points(distribution, 100000, seed=1))

    def refused(scale):
        raise AssertionError(f"a root cube {scale} times as wide was sorted")

    choice = choose_tree(points, order, 20.0, far, refused)
    assert choice.root_scale == 1.0 and choice.points is points
    assert choice.n_crit == choose_n_crit(points, order, 20.0, far)[0]
    assert {work.root_scale for work in choice.candidates} == {1.0}


def test_the_predicted_cube_balances_the_near_field_against_the_far_field():
    """predicted_root_scale by its rule: leaves x times the volume hold x^(d/3) times the
    points, the near field scales by that and the far field by its inverse."""
    def work(near, far):  # far: V entries at one flop each, no boxes
        return TreeWork(64, 1, far, near)

    predict = lambda near, far, dimension=3.0: predicted_root_scale(  # noqa: E731
        work(near, far), dimension, 4, 1.0, (1.0, 0.0))
    assert predict(100.0, 100.0) is None  # balanced
    assert predict(100.0, 100.0 * REBALANCE_GAIN ** 2 * 0.9) is None  # within the margin
    # near = 4 far: half the volume (one level deeper in the cube 2^(2/3) as wide) balances.
    assert predict(400.0, 100.0) == ROOT_SCALES[2]
    # far = 4 near: twice the volume (the same level of the cube 2^(1/3) as wide).
    assert predict(100.0, 400.0) == ROOT_SCALES[1]
    # near = 16 far: a quarter of the volume (one level deeper, 2^(1/3)).
    assert predict(1600.0, 100.0) == ROOT_SCALES[1]
    # On a surface (d = 2) leaves of a quarter of the volume hold 0.4 times the points: for
    # near = 6.25 far that balances best.
    assert predict(625.0, 100.0, 2.0) == ROOT_SCALES[1]
    assert predict(625.0, 100.0, 3.0) == ROOT_SCALES[2]


@pytest.mark.parametrize("distribution, dimension", [("cube", 3.0), ("sphere", 2.0)])
def test_the_leaf_dimension_is_how_the_points_fill_space(distribution, dimension):
    points = sort_points(_points(distribution, 100000))
    work = tree_work(points, 128, 6)
    assert leaf_dimension(points, work) == pytest.approx(dimension, abs=0.15)


def test_an_fmm_in_a_wider_root_cube_sums_as_the_bounding_cubes(monkeypatch):
    """The set-up's tree in a cube 2^(2/3) times as wide (the choice forced): the root cube is
    that wide about the same centre, and the potentials agree with the bounding cube's FMM
    and the direct sum to the order's accuracy."""
    import fmmloopy.api.setup as setup
    from fmmloopy.tree.cost import TreeChoice

    def wider(points, order, pair_flops, far_field, in_cube):
        assert in_cube is not None  # a homogeneous kernel in free space may widen
        scaled = in_cube(ROOT_SCALES[2])
        n_crit, tried = choose_n_crit(scaled, order, pair_flops, far_field)
        return TreeChoice(scaled, ROOT_SCALES[2], n_crit,
                          [dataclasses.replace(work, root_scale=ROOT_SCALES[2]) for work in tried])

    rng = np.random.default_rng(11)
    points, charges = _points("sphere", 4000, seed=11), rng.uniform(-1, 1, 4000)
    plain = fmmloopy.Fmm(points, order=6)
    monkeypatch.setattr(setup, "choose_tree", wider)
    widened = fmmloopy.Fmm(points, order=6)
    assert widened.root_scale == ROOT_SCALES[2] and plain.root_scale == 1.0
    assert widened.tree.root_half_width == pytest.approx(
        ROOT_SCALES[2] * plain.tree.root_half_width)
    np.testing.assert_allclose(widened.tree.root_centre, plain.tree.root_centre)
    direct = fmmloopy.direct(points, charges)
    scale = np.linalg.norm(direct)
    for fmm in (plain, widened):
        assert np.linalg.norm(fmm(charges) - direct) / scale < 1e-6  # order 6: ~1e-7
    assert np.linalg.norm(widened(charges) - plain(charges)) / scale < 1e-6


@pytest.mark.parametrize("bad", ["Auto", "", 0, -3, 2.5, True, None])
def test_a_bad_n_crit_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="n_crit"):
        fmmloopy.Fmm(np.random.default_rng(0).random((10, 3)), n_crit=bad)
