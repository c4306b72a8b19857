"""``eps=``: the order chosen from the measured table, and ``Fmm.estimate_error``.

The rule is tested on a table written here (its choices follow from the numbers); the shipped
table is tested for what the rule relies on; and FMMs built with ``eps`` are held to ``eps``
against direct sums at every target, on point sets the calibration did not use (other sizes,
seeds and a ball of points)."""

import json
import math

import numpy as np
import pytest

import fmmloopy
from fmmloopy.api.error_estimate import estimate_from_sample
from fmmloopy.api.fmm import MAX_ORDER
from fmmloopy.base.distributions import DISTRIBUTIONS
from fmmloopy.maths import accuracy
from fmmloopy.maths.accuracy import (
    FAMILY_GRIDS,
    MARGIN,
    QUANTITIES,
    eps_quantities,
    order_for_eps,
)
from fmmloopy.maths.green import LAPLACE_3D, GreenKernel, get_kernel, helmholtz, yukawa


def table_rows(family, parameter, errors_by_order):
    """Rows of a table: every quantity of an order at the error given, dipoles' 10x."""
    return [{"family": family, "parameter": parameter, "order": order,
             "charge potential": error, "charge gradient": error,
             "dipole potential": 10 * error, "dipole gradient": 10 * error}
            for order, error in errors_by_order.items()]


@pytest.fixture
def written_table(tmp_path, monkeypatch):
    """A table of round numbers in place of the shipped one."""
    rows = table_rows("laplace", 0.0, {3: 1e-3, 4: 1e-4, 5: 1e-5, 6: 1e-6})
    for parameter in FAMILY_GRIDS["yukawa"]:  # kappa L times Laplace's
        rows += table_rows("yukawa", parameter, {3: parameter * 1e-3, 4: parameter * 1e-4,
                                                 5: parameter * 1e-5, 6: parameter * 1e-6})
    for parameter in FAMILY_GRIDS["helmholtz"]:
        rows += table_rows("helmholtz", parameter, {order: 10.0 ** -order
                                                    for order in range(3, 12)})
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"format": 1, "rows": rows}))
    monkeypatch.setattr(accuracy, "CALIBRATION_FILE", path)
    accuracy._table.cache_clear()
    yield
    accuracy._table.cache_clear()


def test_eps_for_names_the_quantities():
    assert eps_quantities("charges") == ("charge potential",)
    assert eps_quantities(("charges", "gradient")) == ("charge potential", "charge gradient")
    assert eps_quantities(["dipoles", "charges", "gradient"]) == QUANTITIES
    assert eps_quantities("gradient") == ("charge potential", "charge gradient")
    assert eps_quantities(("dipoles", "hessian")) == ("dipole potential", "dipole hessian")
    for bad in ("charge", (), ["charges", "hessians"]):
        with pytest.raises(ValueError, match="eps_for takes"):
            eps_quantities(bad)


@pytest.mark.parametrize("eps", [0, 1, -1e-3, math.nan, math.inf, "1e-3", True, None])
def test_bad_eps_is_refused(eps):
    with pytest.raises(ValueError, match="eps must be a number between 0 and 1"):
        order_for_eps(eps, LAPLACE_3D, 1.0)


def test_the_lowest_order_within_eps_over_the_margin(written_table):
    # Laplace: errors 1e-3 ... 1e-6 at orders 3 ... 6; an order qualifies at MARGIN * error.
    assert MARGIN > 1
    assert order_for_eps(1e-3 * MARGIN, LAPLACE_3D, 1.0) == 3
    assert order_for_eps(1e-3, LAPLACE_3D, 1.0) == 4
    assert order_for_eps(1.1e-6 * MARGIN, LAPLACE_3D, 7.0) == 6  # no root size dependence
    # Dipoles are 10x worse in this table: one order more.
    assert order_for_eps(1e-3, LAPLACE_3D, 1.0, ("dipole potential",)) == 5
    with pytest.raises(ValueError, match="most accurate order measured reaches 1e-06"):
        order_for_eps(1e-7, LAPLACE_3D, 1.0)


def test_targets_that_are_the_sources_take_the_sets_with_a_near_field(tmp_path, monkeypatch):
    """Rows hold each point set's errors: an FMM whose targets are its sources takes the worst
    of the sets whose targets are theirs, one with targets of its own the worst of all (the
    shell's, 100x here)."""
    rows = []
    for order, error in {3: 1e-3, 4: 1e-4, 5: 1e-5, 6: 1e-6}.items():
        sets = {name: {"errors": dict.fromkeys(QUANTITIES, error)}
                for name in accuracy.SELF_TARGET_SETS}
        sets["shell"] = {"errors": dict.fromkeys(QUANTITIES, 100 * error)}
        rows.append({"family": "laplace", "parameter": 0.0, "order": order, "sets": sets}
                    | dict.fromkeys(QUANTITIES, 100 * error))
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"format": 1, "rows": rows}))
    monkeypatch.setattr(accuracy, "CALIBRATION_FILE", path)
    accuracy._table.cache_clear()
    try:
        assert order_for_eps(1e-3, LAPLACE_3D, 1.0, targets_are_sources=True) == 4
        assert order_for_eps(1e-3, LAPLACE_3D, 1.0, targets_are_sources=False) == 6
    finally:
        accuracy._table.cache_clear()


def test_a_scaled_kernel_takes_the_worse_of_its_neighbours(written_table):
    # Yukawa's rows at each kappa L are kappa L times Laplace's.
    at = {value: yukawa(value / 2.0) for value in (0.5, 1.0, 5.0, 10.0, 500.0)}  # L = 2
    assert order_for_eps(1e-3, at[1.0], 2.0) == 4   # on the grid: its own row
    assert order_for_eps(1e-3, at[0.5], 2.0) == 4   # below it: max(Laplace, kappa L = 1)
    assert order_for_eps(1e-3, at[5.0], 2.0) == 5   # between 1 and 10: the 10 row
    assert order_for_eps(1e-3, at[10.0], 2.0) == 5
    # Beyond the grid: its last row (where the targets are the sources: with targets of their
    # own, beyond kappa L = 30 is refused).
    assert order_for_eps(1e-3, at[500.0], 2.0, targets_are_sources=True) == 6


def test_helmholtz_keeps_to_its_range(written_table):
    # 3.3 wavelengths need order 10 (order / 3) whatever eps allows.
    side = 1.0
    wide = helmholtz(2 * math.pi * 3.3 / side)
    assert order_for_eps(1e-3, wide, side) == 10
    assert order_for_eps(1e-3, helmholtz(2 * math.pi * 1.0 / side), side) == 4
    # Wider than the range of any order measured (order / 3 wavelengths, 10 / 3 at most).
    with pytest.raises(ValueError, match="3.5 wavelengths wide, beyond the range"):
        order_for_eps(1e-3, helmholtz(2 * math.pi * 3.5 / side), side)


def test_kernels_without_a_calibration_are_refused(written_table):
    lookalike = GreenKernel(name="yukawa", expression=get_kernel("exp(-2*r)/r").expression,
                            parameters={"kappa": 1.0})
    for kernel in (get_kernel("exp(-kappa*r)/(4*pi*r):kappa=1"), lookalike):
        with pytest.raises(ValueError, match="no accuracy calibration"):
            order_for_eps(1e-3, kernel, 1.0)


def test_each_periodic_lattice_takes_its_own_rows():
    """A cell periodic along 3, 2 (a slab) or 1 (a wire) axes takes the rows measured against
    its own sum; a periodic kernel without rows (Stokes) and a flag for the axes' count are
    refused."""
    assert [accuracy.calibrated_family(LAPLACE_3D, axes) for axes in (0, 1, 2, 3)] == [
        "laplace", accuracy.WIRE_FAMILY, accuracy.SLAB_FAMILY, accuracy.PERIODIC_FAMILY]
    assert accuracy.calibrated_family(get_kernel("stokes"), 2) is None
    for bad in (True, 4, -1):
        with pytest.raises(ValueError, match="number of axes"):
            accuracy.calibrated_family(LAPLACE_3D, bad)
    with pytest.raises(ValueError, match="in a periodic cell"):
        order_for_eps(1e-3, get_kernel("stokes"), 1.0, periodic_axes=1)
    # The cell's rows end above 1e-9 / MARGIN for dipoles' gradients (the lattice: 3.5e-10 at
    # order 16): refused, where the slab's and the wire's reach it at order 16.
    with pytest.raises(ValueError, match="most accurate order measured reaches"):
        order_for_eps(1e-9, LAPLACE_3D, 1.0, ("dipole gradient",), periodic_axes=3)
    assert order_for_eps(1e-9, LAPLACE_3D, 1.0, ("dipole gradient",), periodic_axes=2) == 16
    # Each family's own rows: the orders differ where the rows do.
    rows = accuracy._table()["rows"]
    for axes, family in accuracy.PERIODIC_FAMILIES.items():
        mine = sorted((row for row in rows if row["family"] == family),
                      key=lambda row: row["order"])
        chosen = order_for_eps(1e-6, LAPLACE_3D, 1.0, periodic_axes=axes)
        assert chosen == next(row["order"] for row in mine
                              if MARGIN * row["charge potential"] <= 1e-6)


def test_the_shipped_table_serves_the_rule():
    """Every grid point of every family has rows from order 3 (Helmholtz: from its range) on,
    every quantity measured, errors falling with the order."""
    accuracy._table.cache_clear()
    rows = accuracy._table()["rows"]
    for family, grid in FAMILY_GRIDS.items():
        for parameter in grid:
            mine = sorted((row for row in rows if row["family"] == family
                           and math.isclose(row["parameter"], parameter)),
                          key=lambda row: row["order"])
            assert mine, f"{family} at {parameter}: no rows"
            orders = [row["order"] for row in mine]
            assert orders == list(range(orders[0], orders[0] + len(orders)))
            first = 3 if family != "helmholtz" else max(3, math.ceil(3 * parameter - 1e-9))
            assert orders[0] == first
            for quantity in QUANTITIES:
                if len(mine) >= 3:
                    assert mine[-1][quantity] < mine[0][quantity] / 10, (family, parameter)
    # Every row measured a far field: trees of three levels or more, leaves of at most the
    # cap's points (the cost model's leaves, at high orders, left 10^4 points one level deep).
    cap = accuracy._table()["n_crit_cap"]
    for row in rows:
        for name, measured in row["sets"].items():
            assert measured["depth"] >= 3 and measured["n_crit"] <= cap, (row["order"], name)
    # What the table serves: the potential of charges to 1e-9 for Laplace, to 1e-6 for Yukawa
    # where the targets are the sources (kappa L = 200: the last row's).
    assert order_for_eps(1e-9, LAPLACE_3D, 1.0) <= accuracy.MAX_CALIBRATED_ORDER
    for kernel in (yukawa(1.0), yukawa(10.0), yukawa(200.0)):
        assert order_for_eps(1e-6, kernel, 1.0, targets_are_sources=True) <= 8
    # Laplace's and Yukawa's rows run to the FMM's largest order, and serve gradients and
    # dipoles to 1e-9 where the targets are the sources (Yukawa up to kappa L = 10);
    # Yukawa's and Helmholtz's (to order 13) serve charges to 1e-9 where the targets are the
    # sources up to kappa L = 10 and 2 wavelengths, and to 1e-6 with targets of their own at
    # kappa L = 30 (kappa 10 around a unit sphere, targets on the sphere of radius 1.5) and 3
    # wavelengths.
    assert accuracy.MAX_CALIBRATED_ORDER == MAX_ORDER
    for family in ("laplace", "yukawa"):
        assert max(row["order"] for row in rows if row["family"] == family) == MAX_ORDER
    for kernel in (LAPLACE_3D, yukawa(1.0), yukawa(10.0)):
        for eps_for in (("charges", "gradient"), "dipoles", ("dipoles", "gradient")):
            assert order_for_eps(1e-9, kernel, 1.0, eps_quantities(eps_for),
                                 targets_are_sources=True) <= MAX_ORDER
    for kernel, side in ((yukawa(10.0), 1.0), (helmholtz(4 * math.pi), 1.0)):
        assert order_for_eps(1e-9, kernel, side, targets_are_sources=True) <= 14
    for kernel, side in ((yukawa(10.0), 3.0), (helmholtz(2 * math.pi), 3.0)):
        assert order_for_eps(1e-6, kernel, side) <= 14
    assert all(isinstance(row.get("device", ""), str) for row in rows)


def direct_error(result, reference) -> float:
    return float(np.linalg.norm(result - reference) / np.linalg.norm(reference))


def ball(n, rng):
    """Points uniform in a ball: a point set the calibration does not use."""
    points = rng.standard_normal((n, 3))
    return points / np.linalg.norm(points, axis=1, keepdims=True) * rng.random((n, 1)) ** (1 / 3)


@pytest.mark.parametrize("kernel, eps, eps_for", [
    ("laplace", 1e-3, ("charges", "gradient")),
    ("yukawa:kappa=10", 1e-5, "charges"),  # kappa L ~ 20: the 10 and 100 rows
])
def test_an_fmm_built_for_eps_meets_it(kernel, eps, eps_for):
    """Against the direct sum at every target, on a ball of points (not a calibration set).
    (Higher orders take minutes of precomputation in the test's fresh operator cache: they are
    measured by benchmarks/calibrate_eps.py.)"""
    rng = np.random.default_rng(21)
    points = ball(4000, rng)
    charges = rng.uniform(-1, 1, len(points))
    gradient = "gradient" in eps_for
    fmm = fmmloopy.Fmm(points, kernel=kernel, eps=eps, eps_for=eps_for)
    result = fmm(charges, gradient=gradient)
    reference = fmmloopy.DirectSum(points, kernel=kernel)(charges, gradient=gradient)
    assert fmm.eps == eps and fmm.eps_quantities == eps_quantities(eps_for)
    for field in ("potential", "gradient") if gradient else ("potential",):
        error = direct_error(getattr(result, field) if gradient else result,
                             getattr(reference, field) if gradient else reference)
        assert error <= eps, (field, fmm.order, error)


def test_eps_and_order_exclude_each_other_and_calls_keep_to_eps_for():
    rng = np.random.default_rng(2)
    points = rng.random((300, 3))
    with pytest.raises(ValueError, match="order or eps, not both"):
        fmmloopy.Fmm(points, eps=1e-3, order=5)
    with pytest.raises(ValueError, match="eps is measured for float64"):
        fmmloopy.Fmm(points, eps=1e-3, dtype=np.float32)
    fmm = fmmloopy.Fmm(points, eps=1e-3)
    # Its tree is one leaf (every pair summed directly): the lowest order measured serves it
    # (fmmloopy.api.eps_order); the root box alone asks for more.
    assert fmm.tree.nboxes == 1 and fmm.order == accuracy.far_share_orders()[0] == 3
    assert order_for_eps(1e-3, LAPLACE_3D, 1.0, targets_are_sources=True) == 4
    with pytest.raises(ValueError, match=r"charge gradient too: build it with "
                                         r"eps_for=\('charges', 'gradient'\)"):
        fmm(rng.random(300), gradient=True)
    with pytest.raises(ValueError, match="dipole potential"):
        fmm(dipoles=rng.random((300, 3)))
    default = fmmloopy.Fmm(points, n_crit=400)
    assert default.order == 6 and default.eps is None and default.eps_quantities == ()
    assert fmmloopy.Fmm(np.zeros((0, 3)), eps=1e-3)(np.zeros(0)).shape == (0,)


def test_the_estimate_from_every_target_is_the_error():
    rng = np.random.default_rng(0)
    values = rng.random((50, 3))
    exact = values + 1e-3 * rng.standard_normal((50, 3))
    estimate = estimate_from_sample(values, np.arange(50), exact, rng)
    assert estimate.relative_l2 == estimate.low == estimate.high
    assert np.isclose(estimate.relative_l2, direct_error(values, exact))


@pytest.mark.parametrize("distribution, gradient", [("cube", False), ("sphere", True)])
def test_the_estimate_brackets_the_error_at_every_target(distribution, gradient):
    """Order 3 (errors ~1e-4), 800 of 6000 targets sampled: the estimate within 1.5x of the
    error over all targets and its interval around it; on the sphere the gradient, whose norm
    the few targets beside a very close source carry (a sampled ratio is off by 10x there)."""
    rng = np.random.default_rng(4)
    points = DISTRIBUTIONS[distribution](6000, rng)
    charges = rng.uniform(-1, 1, len(points))
    fmm = fmmloopy.Fmm(points, order=3)
    result = fmm(charges, gradient=gradient)
    reference = fmmloopy.DirectSum(points)(charges, gradient=gradient)
    estimates = fmm.estimate_error(charges, gradient=gradient, samples=800, result=result)
    fields = ("potential", "gradient") if gradient else ("potential",)
    assert set(estimates) == set(fields)
    for field in fields:
        true = direct_error(getattr(result, field) if gradient else result,
                            getattr(reference, field) if gradient else reference)
        estimate = estimates[field]
        assert estimate.samples == 800 and estimate.low <= estimate.relative_l2 <= estimate.high
        assert true / 1.5 <= estimate.relative_l2 <= 1.5 * true, (field, estimate, true)
        assert estimate.low <= true * 1.1 and true <= estimate.high * 1.1, (field, estimate)
        assert "95 % interval" in str(estimate)


def test_a_parameter_on_the_grid_but_for_rounding_takes_that_grid_points_rows():
    """``kappa = 30 / L`` over a root box of side ``L`` comes back as ``kappa L`` a rounding
    above 30: it takes the rows of 30 alone (with those of 100 beside them, as a parameter
    between the two would, the order would be 100's), and is not beyond the limit of targets
    apart (:data:`~fmmloopy.maths.accuracy.YUKAWA_APART_LIMIT`)."""
    side = 3.2000032
    kappa = 30 / side
    assert kappa * side > 30
    on_grid = order_for_eps(1e-6, yukawa(30.0), 1.0, ("charge potential",))
    assert order_for_eps(1e-6, yukawa(kappa), side, ("charge potential",)) == on_grid


def test_yukawa_with_targets_apart_beyond_the_limit_is_refused_by_name():
    """Beyond ``kappa L`` = 30 with targets of their own ``eps`` refuses (the held-out misses
    there: accuracy.YUKAWA_APART_LIMIT); the same box with targets that are the sources is
    served."""
    assert accuracy.YUKAWA_APART_LIMIT == 30.0
    with pytest.raises(ValueError, match="targets of their own.*estimate_error"):
        order_for_eps(1e-3, yukawa(30.5), 1.0, ("charge potential",))
    assert order_for_eps(1e-3, yukawa(30.5), 1.0, ("charge potential",),
                         targets_are_sources=True) >= 3
