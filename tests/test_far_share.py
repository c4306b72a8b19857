"""The far field's share of a tree's kernel weights, and the order ``eps`` settles on from it.

The estimate is compared with its definition summed over every pair (sampling every target and
source); the rule on a table written here; the search on shares given per order; and FMMs
built with ``eps`` against direct sums."""

import json

import numpy as np
import pytest

import fmmloopy
from fmmloopy.api import eps_order
from fmmloopy.api.options import checked_options
from fmmloopy.base.distributions import sphere_surface
from fmmloopy.maths import accuracy
from fmmloopy.maths.accuracy import MARGIN, QUANTITIES, far_share_error, order_for_far_share
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.tree import far_share as far_share_module
from fmmloopy.tree.far_share import POWERS, FarShare, far_share
from fmmloopy.tree.lists import build_interaction_lists
from fmmloopy.tree.octree import build_tree, root_box_side


def brute_force_share(tree, lists):
    """The module's definition over every target and source: near = the sources of the U
    row of the target's leaf."""
    sources, targets = tree.sources, tree.targets
    near_sums, far_sums = [], []
    for leaf in np.flatnonzero(tree.box_is_leaf & (tree.box_target_counts > 0)):
        first = tree.box_target_starts[leaf]
        near = np.zeros(len(sources), dtype=bool)
        for box in lists.u_lists[lists.u_starts[leaf]:lists.u_starts[leaf + 1]]:
            start = tree.box_source_starts[box]
            near[start:start + tree.box_source_counts[box]] = True
        for target in targets[first:first + tree.box_target_counts[leaf]]:
            distance = np.linalg.norm(sources - target, axis=1)
            inverse = np.where(distance > 0, 1 / np.where(distance > 0, distance, 1), 0)
            powers = inverse[None, :] ** np.arange(1, 7)[:, None]
            near_sums.append(powers[:, near].sum(axis=1))
            far_sums.append(powers[:, ~near].sum(axis=1))
    near_sums, far_sums = np.array(near_sums), np.array(far_sums)
    total = near_sums + far_sums
    random = [np.sqrt(far_sums[:, 2 * p - 1].sum() / total[:, 2 * p - 1].sum()) for p in POWERS]
    coherent = [np.sqrt((far_sums[:, p - 1] ** 2).sum() / (total[:, p - 1] ** 2).sum())
                for p in POWERS]
    return np.array(random), np.array(coherent)


@pytest.fixture
def every_pair(monkeypatch):
    """The estimate over every target and source, with no floor on the near distances."""
    monkeypatch.setattr(far_share_module, "SAMPLED_TARGETS", 10 ** 9)
    monkeypatch.setattr(far_share_module, "SAMPLED_SOURCES", 10 ** 9)
    monkeypatch.setattr(far_share_module, "NEAR_PAIRS", 10 ** 12)
    monkeypatch.setattr(far_share_module, "CLOSEST_FRACTION", 0.0)


@pytest.mark.parametrize("apart", [False, True])
def test_the_estimate_over_every_pair_is_the_definition(every_pair, apart):
    rng = np.random.default_rng(4)
    sources = rng.random((900, 3))
    targets = rng.random((700, 3)) if apart else None
    tree = build_tree(sources, targets, n_crit=24)
    lists = build_interaction_lists(tree)
    share = far_share(tree, lists)
    random, coherent = brute_force_share(tree, lists)
    np.testing.assert_allclose(share.random, random, rtol=1e-10)
    np.testing.assert_allclose(share.coherent, coherent, rtol=1e-10)
    assert 0 < share.of(2, coherent=False) < share.of(1, coherent=False) < 1
    assert share.of(2, coherent=True) == share.coherent[1]


def test_a_tree_of_one_leaf_has_no_far_field_and_targets_away_all_of_it(every_pair):
    rng = np.random.default_rng(5)
    sources = rng.random((200, 3))
    tree = build_tree(sources, n_crit=500)
    assert far_share(tree, build_interaction_lists(tree)) == FarShare((0.0,) * 3, (0.0,) * 3)
    # Sources in a corner, targets in the opposite one: no target's U row holds a source.
    targets = 0.9 + 0.1 * rng.random((200, 3))
    tree = build_tree(0.1 * sources, targets, n_crit=16)
    share = far_share(tree, build_interaction_lists(tree))
    np.testing.assert_allclose(share.random + share.coherent, 1.0, rtol=1e-12)


def test_the_sampled_estimate_is_close_where_the_nearest_pairs_are_regular():
    """On a lattice (no pair closer than the spacing) the default sample and floor give the
    share of every pair to a few per cent (the charges' potential and the dipoles')."""
    axis = np.linspace(0, 1, 14)
    points = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    tree = build_tree(points, n_crit=32)
    lists = build_interaction_lists(tree)
    sampled = far_share(tree, lists)
    random, coherent = brute_force_share(tree, lists)
    np.testing.assert_allclose(sampled.random[:2], random[:2], rtol=0.1)
    np.testing.assert_allclose(sampled.coherent[:2], coherent[:2], rtol=0.1)


def written_rows():
    """Laplace rows of two sets: ``near`` (targets are sources) and ``away`` (they are not).
    Per unit share, near's errors are 1e-order, away's 2e-order; coherent ones a tenth."""
    rows = []
    for order in (3, 4, 5, 6):
        sets = {}
        for name, factor, own in (("near", 1.0, True), ("away", 2.0, False)):
            errors = {quantity: factor * 10.0 ** -order * 0.5 for quantity in QUANTITIES}
            sets[name] = {"errors": errors, "targets_are_sources": own,
                          "coherent_errors": {q: e / 10 for q, e in errors.items()},
                          "far_share": {"random": [0.5, 0.5, 0.5], "coherent": [0.5, 0.5, 0.5]}}
        rows.append({"family": "laplace", "parameter": 0.0, "order": order, "sets": sets}
                    | {quantity: 2.0 * 10.0 ** -order for quantity in QUANTITIES})
    return rows


@pytest.fixture
def written_table(tmp_path, monkeypatch):
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"format": 1, "rows": written_rows()}))
    monkeypatch.setattr(accuracy, "CALIBRATION_FILE", path)
    accuracy._table.cache_clear()
    yield
    accuracy._table.cache_clear()


def test_the_rule_multiplies_the_largest_error_per_share_by_the_points_share(written_table):
    assert accuracy.far_share_orders() == [3, 4, 5, 6]
    quantities = ("charge potential",)
    # Targets of their own: away's 2e-order per unit share; random strengths dominate.
    assert far_share_error(4, quantities, (0.3,) * 3, (0.3,) * 3, False) == pytest.approx(6e-5)
    # Targets that are the sources: near's rows only.
    assert far_share_error(4, quantities, (0.3,) * 3, (0.3,) * 3, True) == pytest.approx(3e-5)
    # Coherent strengths count where their share is larger: 1e-5 per unit share at order 4.
    assert far_share_error(4, quantities, (0.01,) * 3, (1.0,) * 3, True) == pytest.approx(1e-5)
    share_of = {3: ((1.0,) * 3, (1.0,) * 3), 4: ((0.5,) * 3, (0.5,) * 3),
                5: ((0.2,) * 3, (0.2,) * 3), 6: ((0.1,) * 3, (0.1,) * 3)}
    # Order 4's own share 0.5: 5e-5 predicted; order 3's own share 1: 1e-3.
    assert order_for_far_share(MARGIN * 5e-5, quantities, share_of.get, True) == 4
    assert order_for_far_share(MARGIN * 4.9e-5, quantities, share_of.get, True) == 5
    with pytest.raises(ValueError, match="most accurate order measured reaches"):
        order_for_far_share(1e-9, quantities, share_of.get, True)
    # A family without rows of an order predicts nothing there (no Yukawa rows here).
    assert accuracy.laplace_ratio(4, "charge potential", "yukawa", 10.0, True) == np.inf


class FakeShares:
    """``far_share`` by the order of the tree handed to it (the test's trees are orders, their
    lists None: no heavy rows to take out)."""

    @staticmethod
    def install(monkeypatch, shares):
        fake = FakeShares(shares)
        monkeypatch.setattr(eps_order, "far_share", fake)
        monkeypatch.setattr(eps_order, "without_heavy_rows", lambda tree, lists: lists)
        return fake

    def __init__(self, shares):
        self.shares, self.asked = shares, []

    def __call__(self, tree, lists):
        self.asked.append(tree)
        return FarShare((self.shares[tree],) * 3, (self.shares[tree],) * 3)


@pytest.mark.parametrize("shares, eps, start, cap, tried, settled", [
    # Order 5's tree predicts order 3 enough, whose own tree says no, then 4 yes.
    ({3: 1.0, 4: 0.5, 5: 0.01}, MARGIN * 5.1e-5, 5, 5, [5, 3, 4], 4),
    # The first order is settled at once where no lower one would do.
    ({3: 1.0, 4: 1.0, 5: 1.0}, MARGIN * 1e-5, 5, 5, [5], 5),
    # The root box's order is kept where its tree's share predicts a miss, never exceeded.
    ({3: 1.0, 4: 1.0, 5: 1.0, 6: 1.0}, MARGIN * 1e-6, 4, 4, [4], 4),
    # Without it (the root box refused eps), a first order that misses moves up.
    ({3: 1.0, 4: 1.0, 5: 1.0, 6: 1.0}, MARGIN * 1e-6, 4, None, [4, 6], 6),
])
def test_the_search_tries_each_order_on_its_own_tree(written_table, monkeypatch, shares, eps,
                                                      start, cap, tried, settled):
    fake = FakeShares.install(monkeypatch, shares)
    search = eps_order.OrderSearch(eps, ("charge potential",), True, cap)
    order = start
    while (following := search.next_order(order, order, None)) is not None:
        order = following
    assert fake.asked == tried and order == settled


def test_the_search_builds_a_few_trees_at_most_and_refuses_what_no_order_meets(
        written_table, monkeypatch):
    # Every lower order's tree misses by a little; the search keeps the lowest that met.
    shares = {3: 1.0, 4: 1.0, 5: 0.1, 6: 0.0}
    FakeShares.install(monkeypatch, shares)
    search = eps_order.OrderSearch(MARGIN * 1.1e-6, ("charge potential",), True)
    order, built = 6, 1
    while (following := search.next_order(order, order, None)) is not None:
        order, built = following, built + 1
    assert order == 6 and built <= eps_order.MOST_TREES + 1
    FakeShares.install(monkeypatch, {6: 1.0})
    with pytest.raises(ValueError, match="on these points"):
        eps_order.OrderSearch(1e-9, ("charge potential",), True).next_order(6, 6, None)


@pytest.mark.parametrize("eps_for", [("charges",), ("charges", "dipoles", "gradient")])
def test_an_fmm_on_a_surface_settles_below_the_root_box_and_meets_eps(eps_for):
    """A sphere's surface: most of the norm is near, so eps is met orders below what the
    table's worst set asks for; every quantity against the direct sum at every target."""
    rng = np.random.default_rng(8)
    points = sphere_surface(6000, rng)
    eps = 1e-6
    quantities = accuracy.eps_quantities(eps_for)
    root_order = accuracy.order_for_eps(eps, LAPLACE_3D, 2.0, quantities, True)
    fmm = fmmloopy.Fmm(points, eps=eps, eps_for=eps_for)
    assert fmm.order < root_order
    assert fmm.options.order == fmm.order == fmm.expansion.order
    assert f"at order {fmm.order}" in fmm.points_setup.what
    charges = rng.uniform(-1, 1, len(points))
    dipoles = rng.uniform(-1, 1, (len(points), 3))
    kinds = [{"charges": charges}, {"charges": rng.random(len(points))}]
    if "dipoles" in eps_for:
        kinds += [{"dipoles": dipoles}, {"dipoles": points}]  # random and along the normal
    direct = fmmloopy.DirectSum(points)
    gradient = "gradient" in eps_for
    for values in kinds:
        result, reference = fmm(**values, gradient=gradient), direct(**values, gradient=True)
        served = {"potential": result.potential, "gradient": result.gradient} if gradient \
            else {"potential": result}
        for field, value in served.items():
            exact = getattr(reference, field)
            error = np.linalg.norm(value - exact) / np.linalg.norm(exact)
            assert error <= eps, (field, sorted(values), fmm.order, error)
    # The FMM is the one of that order on that tree (its pairwise kernels may refine 1/sqrt
    # less under eps: docs/kernels.md; the difference is far below eps).
    same = fmmloopy.Fmm(points, order=fmm.order, n_crit=fmm.n_crit)
    assert same.tree.nboxes == fmm.tree.nboxes
    reference = same(charges)
    assert np.linalg.norm(fmm(charges) - reference) <= eps / 10 * np.linalg.norm(reference)


def assert_charges_and_gradient_within(fmm, direct, eps: float, rng) -> None:
    """``fmm``'s potential and gradient of random and of one-signed charges within ``eps``
    of ``direct``'s, relative L2 over every target."""
    count = len(fmm.tree.sources)
    for charges in (rng.uniform(-1, 1, count), rng.random(count)):
        result, reference = fmm(charges, gradient=True), direct(charges, gradient=True)
        for field in ("potential", "gradient"):
            value, exact = getattr(result, field), getattr(reference, field)
            error = np.linalg.norm(value - exact) / np.linalg.norm(exact)
            assert error <= eps, (field, fmm.order, error)


def test_a_yukawa_fmm_settles_as_laplace_times_the_tables_ratio_and_meets_eps():
    """A Yukawa FMM at kappa L = 10: the order from its own tree's far
    share (Laplace's prediction times the table's ratio of Yukawa's errors to Laplace's),
    below the root box's; random and one-signed charges with their gradient against the
    direct sum, with the targets the sources and apart. Beyond kappa L = 10, targets apart
    keep the root box's order."""
    rng = np.random.default_rng(10)
    points = sphere_surface(6000, rng)
    eps, quantities = 1e-4, accuracy.eps_quantities(("charges", "gradient"))
    side = root_box_side(points, None)
    kernel = accuracy.kernel_at("yukawa", 10.0, side)
    root_order = accuracy.order_for_eps(eps, kernel, side, quantities, True)
    fmm = fmmloopy.Fmm(points, kernel=kernel, eps=eps, eps_for=("charges", "gradient"))
    assert fmm.order < root_order
    # Targets of their own (a sphere inside, the same root box): the same search, with the
    # ratio over every set (those with targets apart too), at most the root box's order.
    targets = 0.5 * points
    apart = fmmloopy.Fmm(points, targets, kernel=kernel, eps=eps,
                         eps_for=("charges", "gradient"))
    assert apart.order <= accuracy.order_for_eps(
        eps, kernel, root_box_side(points, targets), quantities, False)
    for case, reference_targets in ((fmm, None), (apart, targets)):
        assert_charges_and_gradient_within(case, fmmloopy.DirectSum(
            points, reference_targets, kernel=kernel), eps, rng)
    # kappa L = 30: targets that are the sources still search (the table's ratio at 30);
    # targets apart keep the root box's order beyond YUKAWA_SHARE_LIMIT.
    wider = accuracy.kernel_at("yukawa", 30.0, side)
    searched = fmmloopy.Fmm(points, kernel=wider, eps=eps)
    assert searched.order <= accuracy.order_for_eps(eps, wider, side, ("charge potential",),
                                                    True)
    charges = rng.uniform(-1, 1, len(points))
    exact = fmmloopy.DirectSum(points, kernel=wider)(charges)
    assert np.linalg.norm(searched(charges) - exact) <= eps * np.linalg.norm(exact)
    assert fmmloopy.Fmm(points, targets, kernel=wider, eps=eps).order == accuracy.order_for_eps(
        eps, wider, root_box_side(points, targets), ("charge potential",), False)


def test_a_helmholtz_fmm_settles_below_the_root_box_and_meets_eps():
    """Helmholtz, one wavelength, on a sphere's surface: the order from its own tree's far
    share (Laplace's prediction times the table's Helmholtz/Laplace ratio), below the root
    box's; random and one-signed charges with their gradient against the direct sum."""
    rng = np.random.default_rng(12)
    points = sphere_surface(5000, rng)
    eps, eps_for = 1e-6, ("charges", "gradient")
    side = root_box_side(points, None)
    kernel = accuracy.kernel_at("helmholtz", 1.0, side)
    root_order = accuracy.order_for_eps(eps, kernel, side, accuracy.eps_quantities(eps_for),
                                        True)
    fmm = fmmloopy.Fmm(points, kernel=kernel, eps=eps, eps_for=eps_for)
    assert fmm.order < root_order
    assert_charges_and_gradient_within(fmm, fmmloopy.DirectSum(points, kernel=kernel), eps,
                                       rng)


def test_a_search_starts_at_the_highest_order_its_family_predicts():
    """Where the root box refuses ``eps``, the search starts at the highest order with a
    prediction: Laplace's and Yukawa's last rows (16), Helmholtz's 13 (its table ends
    there); a Helmholtz box wider than any order's range predicts nothing and keeps the root
    box's refusal."""
    quantities = accuracy.eps_quantities(("dipoles", "gradient"))
    assert eps_order._highest_predicted("laplace", 0.0, quantities, True) == 16
    assert eps_order._highest_predicted("yukawa", 10.0, quantities, False) == 16
    assert eps_order._highest_predicted("helmholtz", 2.0, quantities, True) == 13
    # Helmholtz's range: order / 3 wavelengths (3 wavelengths: orders 9 and up).
    assert accuracy.laplace_ratio(8, "charge potential", "helmholtz", 3.0, True) == np.inf
    assert np.isfinite(accuracy.laplace_ratio(9, "charge potential", "helmholtz", 3.0, True))
    assert eps_order._highest_predicted("helmholtz", 5.0, quantities, True) is None
    options = checked_options(kernel=accuracy.kernel_at("helmholtz", 5.0, 1.0), eps=1e-3)
    with pytest.raises(ValueError, match="wavelengths wide, beyond the range"):
        eps_order.first_order(options, 1.0, True)
    options = checked_options(kernel=accuracy.kernel_at("helmholtz", 2.0, 1.0), eps=1e-9,
                              eps_for=("dipoles", "gradient"))
    order, search = eps_order.first_order(options, 1.0, True)
    assert (order, search.cap, search.family) == (13, None, "helmholtz")


def test_update_keeps_the_order_settled_on_the_first_points():
    rng = np.random.default_rng(9)
    points = sphere_surface(3000, rng)
    fmm = fmmloopy.Fmm(points, eps=1e-6)
    order = fmm.order
    moved = points * 1.01 + 0.001 * rng.standard_normal(points.shape)
    fmm.update(moved)
    assert fmm.order == fmm.options.order == order
    charges = rng.uniform(-1, 1, len(points))
    exact = fmmloopy.DirectSum(moved)(charges)
    assert np.linalg.norm(fmm(charges) - exact) <= 1e-6 * np.linalg.norm(exact)


def test_rows_summed_by_nested_fmms_count_as_far():
    """Two small clusters 10^6 of their size apart: the tree's deepest leaves hold them and
    their direct rows are summed by nested FMMs of the same order, whose error the share must
    see (counted as near, the search took order 4 for 1e-9 on such points and got 8.6e-5)."""
    rng = np.random.default_rng(10)
    points = np.concatenate([rng.random((3000, 3)) * 1e-3, 1e3 + rng.random((3000, 3)) * 1e-3])
    charges = rng.uniform(-1, 1, len(points))
    exact = fmmloopy.DirectSum(points)(charges)
    with pytest.warns(RuntimeWarning, match="max_depth"):  # leaves of 32: whatever the CPU
        fmm = fmmloopy.Fmm(points, eps=1e-6, n_crit=32)
    assert fmm.nested_rows
    assert np.linalg.norm(fmm(charges) - exact) <= 1e-6 * np.linalg.norm(exact)
