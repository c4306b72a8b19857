"""Far points, outliers and crowds the tree cannot split.

A far point used to make every coordinate tiny (the points were scaled to fit it, and O(1)
distances squared underflowed: exactly 0 at the other targets), and an outlier or a crowd of
coincident points put all points in one leaf at ``max_depth``: an O(N**2) direct sum. Now the
scale keeps every squared distance a normal float64 (:mod:`fmmloopy.tree.coordinates`) and heavy
direct rows are summed by nested FMMs (:mod:`fmmloopy.tree.nested`).

References: a direct sum whose offsets are scaled by their largest component
(``reference.direct_sum(..., scaled=True)``), so that neither squares of 1e200 nor of 1e-200 leave
float64. Tolerances at order 6: 1e-5 relative L2 on the ordinary targets, as in
test_degenerate_geometry.py (the sphere gives 9e-7, a deep Plummer tree 3.2e-6). A lone far
target sees the sources through one expansion (M2L at a separation of two boxes, then L2P); its
pointwise error was measured 6.6e-6 (1e200) and 6.1e-6 (1e7), so it is held to 5e-5.
"""

import warnings

import numpy as np
import pytest

import fmmloopy
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.reference import direct_sum

ORDER = 6
TOLERANCE = 1e-5
FAR_TARGET_TOLERANCE = 5e-5


def direct(sources, charges, targets):
    return direct_sum(LAPLACE_3D, sources, charges, targets, scaled=True)


def _check(potential, sources, charges, targets, sample, far):
    """Relative L2 error on ``sample`` below TOLERANCE; target ``far`` alone within
    FAR_TARGET_TOLERANCE."""
    expected = direct(sources, charges, targets[sample])
    error = np.linalg.norm(potential[sample] - expected) / np.linalg.norm(expected)
    assert error < TOLERANCE
    far_expected = direct(sources, charges, targets[far:far + 1])[0]
    assert abs(potential[far] / far_expected - 1) < FAR_TARGET_TOLERANCE


def _fmm(sources, targets=None, **options):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "build_tree: max_depth", RuntimeWarning)
        return fmmloopy.Fmm(sources, targets, order=ORDER, **options)


def _direct_pairs(fmm):
    """Pairs the plan sums directly (P2P), nested rows excluded."""
    return fmm.plan.work("p2p")


@pytest.fixture
def rng():
    return np.random.default_rng(14)


@pytest.mark.parametrize("far", [1e200, 1e160, 1e100, -1e270])
def test_one_far_target_spoils_nothing(rng, far):
    """P uniform in the unit cube, targets P plus (far, 0, 0): before, 1e200 gave exactly 0 at
    every other target and 1e160 was 32 % wrong."""
    sources = rng.random((4000, 3))
    targets = np.vstack([sources, [[far, 0.0, 0.0]]])
    charges = rng.random(4000)
    potential = _fmm(sources, targets)(charges)
    _check(potential, sources, charges, targets, np.arange(0, 4000, 10), far=4000)


def test_one_far_source_is_felt_and_feels(rng):
    """A far source with a charge large enough to matter, and the near ones seen from it."""
    points = np.vstack([rng.random((3000, 3)), [[0.0, 3e150, 0.0]]])
    charges = np.append(rng.random(3000), 3e154)  # about 800 at the cube, like the cube's own
    potential = _fmm(points)(charges)
    _check(potential, points, charges, points, np.arange(0, 3000, 10), far=3000)


def test_outlier_does_not_make_the_sum_direct(rng):
    """One target at (1e7, 1e7, 1e7) makes the root 1e7 wide: all sources share a leaf at
    depth 20. Its row goes to a nested FMM, whose tree splits the cube; before, the plan summed
    the leaf directly (n**2 pairs: 59 s at n = 2e5)."""
    n, n_crit = 20_000, 150
    sources = rng.random((n, 3))
    targets = np.vstack([sources, [[1e7, 1e7, 1e7]]])
    charges = rng.random(n)
    fmm = _fmm(sources, targets, n_crit=n_crit)
    assert fmm.tree.box_source_counts[fmm.tree.box_is_leaf].max() == n  # the tree cannot split
    assert len(fmm.nested_rows) == 1
    nested = fmm.nested_rows[0].sum.fmm
    assert nested.tree.nlevels >= 4  # the nested tree splits the cube
    assert _direct_pairs(fmm) < 0.01 * n ** 2
    potential = fmm(charges)
    sample = np.append(np.arange(0, n, 50), n)
    expected = direct(sources, charges, targets[sample])
    error = np.linalg.norm(potential[sample] - expected) / np.linalg.norm(expected)
    assert error < TOLERANCE
    assert abs(potential[-1] / expected[-1] - 1) < FAR_TARGET_TOLERANCE
    assert set(fmm.eval_seconds) >= {"nested", "total"}


def test_coincident_crowd_costs_no_pairs(rng):
    """10**4 copies of one point plus 2000 others: the copies are merged (their charges
    added), so no O(N**2) sum; before, the copies' leaf summed 10**8 pairs to return 0."""
    crowd = np.full((10_000, 3), 0.25)
    others = rng.random((2000, 3))
    points = np.vstack([crowd, others])
    charges = rng.uniform(-1, 1, len(points))
    fmm = _fmm(points, n_crit=64)
    assert len(fmm.nested_rows) >= 1
    assert _direct_pairs(fmm) < 0.05 * 10_000 ** 2
    assert max(row.sum.nsources for row in fmm.nested_rows) < 2000  # the copies merged
    potential = fmm(charges)
    sample = np.concatenate([np.arange(0, 10_000, 500), np.arange(10_000, 12_000, 10)])
    expected = direct(points, charges, points[sample])
    scale = np.linalg.norm(direct(points, np.abs(charges), points[sample]))
    assert np.linalg.norm(potential[sample] - expected) / scale < TOLERANCE


def test_clusters_inside_clusters_nest_again(rng):
    """A cluster of radius 1e-9 inside one of radius 1e-3, far from the rest: two levels of
    nested FMMs, the sum still right."""
    points = np.vstack([rng.random((500, 3)), 0.5 + 1e-3 * rng.standard_normal((3000, 3)),
                        0.5 + 1e-9 * rng.standard_normal((3000, 3)), [[1e9, 0.0, 0.0]]])
    charges = rng.random(len(points))
    fmm = _fmm(points, n_crit=32)
    depths = []

    def nesting(f, depth):
        depths.append(depth)
        for row in f.nested_rows:
            nesting(row.sum.fmm, depth + 1)

    nesting(fmm, 0)
    assert max(depths) >= 2
    sample = np.arange(0, len(points), 13)
    expected = direct(points, charges, points[sample])
    error = np.linalg.norm(fmm(charges)[sample] - expected) / np.linalg.norm(expected)
    assert error < TOLERANCE


def test_points_closer_than_the_span_allows_get_a_scale_that_holds_them(rng):
    """Two points 1e-200 apart among points spanning 1: their squared distance underflowed, so
    they counted as coincident. The scale is now centred between the separation and the span."""
    points = np.vstack([rng.random((1000, 3)), [[0.0, 0.0, 0.0], [0.0, 0.0, 1e-200]]])
    charges = rng.random(len(points))
    fmm = _fmm(points)
    potential = fmm(charges)
    expected = direct(points, charges, points[-2:])
    assert fmm.coordinate_exponent != 0
    np.testing.assert_allclose(potential[-2:], expected, rtol=1e-12)  # 1e199: the pair's own


@pytest.mark.parametrize("case", ["subnormal gap", "far point at 1e300"])
def test_points_too_close_for_float64_get_a_clear_error(rng, case):
    """0 and 5e-324 (subnormal) among points spanning 1, or unit-cube points 1e-8 apart beside a
    point at 1e300: squared distances over more than 2**960 (float64 holds 2**2046, less a
    margin for sums and constants) fit no scale."""
    if case == "subnormal gap":
        points = np.array([[0.0, 0.0, 0.0], [5e-324, 0.0, 0.0], [1.0, 1.0, 1.0]])
    else:
        points = np.vstack([rng.random((2000, 3)), [[1e300, 0.0, 0.0]]])
    with pytest.raises(ValueError, match="do not fit float64 at any scale"):
        fmmloopy.Fmm(points)


def test_coordinates_at_the_rounding_limit_are_accepted(rng):
    """A point whose coordinate is 1e-300 makes the cheap separation bound 1e-316; the sharper
    bound (sorted gaps) sees that nothing is that close, and the FMM runs."""
    points = np.vstack([rng.random((1000, 3)), [[1e-300, 0.5, 0.5]]])
    charges = rng.random(len(points))
    potential = _fmm(points)(charges)
    sample = np.arange(0, len(points), 10)
    expected = direct(points, charges, points[sample])
    assert np.linalg.norm(potential[sample] - expected) / np.linalg.norm(expected) < TOLERANCE


def test_the_scaled_reference_is_the_direct_sum(rng):
    """The reference itself: equal to the plain direct sum where that is representable, and
    q / (4 pi r) for r = 1e200 and 1e-200, where the plain sum gives 0 and inf."""
    sources, targets, charges = rng.random((300, 3)), rng.random((40, 3)), rng.random(300)
    np.testing.assert_allclose(direct(sources, charges, targets),
                               direct_sum(LAPLACE_3D, sources, charges, targets), rtol=1e-13)
    for r in (1e200, 1e-200):
        got = direct(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), np.array([1.0, 2.0]),
                     np.array([[0.0, r, 0.0], [0.0, 0.0, 0.0]]))
        np.testing.assert_allclose(got, [3.0 / (4 * np.pi * r), 0.0], rtol=1e-15)
