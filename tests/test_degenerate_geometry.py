"""Degenerate point sets against direct summation: coincident and duplicate points, lines and
planes, points on box faces, a dense cluster with a far outlier (deep tree, and deeper than
``max_depth``), targets outside the sources' box, coordinates and charges scaled far from 1.

Error measure: ``|phi - phi_direct|_2 / |phi_direct(|q|)|_2``, the error relative to the potential
of the charges' magnitudes. The FMM's truncation error is bounded by a fraction of each source's
``|q_i| G``, so this measure does not depend on how much the signed charges cancel (with charges
of one sign it is the relative L2 error). Tolerance at order 6: 9e-7 relative L2 on the sphere
(docs/fmm.md), 3.2e-6 on a deep adaptive Plummer tree (tests/test_fmm.py); 1e-5 leaves a factor
~3. Where the tree is one leaf the result is a direct sum in float64 (~1e-15). The direct sum,
like the kernels, counts 0 at r = 0: coincident points do not interact (LAPLACE_3D).
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fmmloopy
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.reference import direct_sum
from fmmloopy.tree.octree import build_tree

ORDER = 6
TOLERANCE = 1e-5
DIRECT_SUM_TOLERANCE = 1e-14


def _error(potential, sources, charges, targets=None):
    targets = sources if targets is None else targets
    expected = direct_sum(LAPLACE_3D, sources, charges, targets)
    magnitude = np.linalg.norm(direct_sum(LAPLACE_3D, sources, np.abs(charges), targets))
    return np.linalg.norm(potential - expected) / magnitude


def _fmm(sources, targets=None, n_crit=16, **options):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "build_tree: max_depth", RuntimeWarning)
        return fmmloopy.Fmm(sources, targets, order=ORDER, n_crit=n_crit, **options)


@pytest.fixture
def rng():
    return np.random.default_rng(70)


def _charges(rng, n):
    return rng.uniform(-1, 1, n)


def test_all_points_coincident_give_zero(rng):
    points = np.full((500, 3), 0.3)
    with pytest.warns(RuntimeWarning, match="max_depth=20 reached; 1 leaves hold more than"):
        fmm = fmmloopy.Fmm(points, order=ORDER, n_crit=16)
    assert fmm.tree.nlevels == 21  # split to max_depth; the last leaf holds all 500
    assert np.array_equal(fmm(_charges(rng, 500)), np.zeros(500))


def test_coincident_sources_seen_from_elsewhere(rng):
    sources, targets = np.full((500, 3), 0.3), rng.random((300, 3))
    charges = _charges(rng, 500)
    potential = _fmm(sources, targets)(charges)
    distance = np.linalg.norm(targets - 0.3, axis=1)
    exact = charges.sum() / (4 * np.pi * distance)
    assert np.linalg.norm(potential - exact) / np.linalg.norm(exact) < TOLERANCE


def test_many_duplicate_points(rng):
    # 50 locations with 20 copies each, among 1000 distinct points: 20 > n_crit copies cannot
    # be split, so those leaves end at max_depth holding 20 points each.
    copies = np.repeat(rng.random((50, 3)), 20, axis=0)
    points = np.concatenate([rng.random((1000, 3)), copies])
    charges = _charges(rng, len(points))
    potential = _fmm(points)(charges)
    assert _error(potential, points, charges) < TOLERANCE
    # Copies of one point are targets in one leaf with one list: the same sums.
    np.testing.assert_allclose(potential[1000:].reshape(50, 20),
                               np.repeat(potential[1000::20, None], 20, axis=1), rtol=1e-13)


@pytest.mark.parametrize("shape", ["diagonal line", "axis line", "plane"])
def test_points_on_a_line_or_a_plane(rng, shape):
    t, u = rng.random(2000), rng.random(2000)
    points = {"diagonal line": np.stack([t, 2 * t - 0.5, -t], 1),
              "axis line": np.stack([t, 0 * t, 0 * t], 1),
              "plane": np.stack([t, u, np.full(2000, 0.25)], 1)}[shape]
    charges = _charges(rng, 2000)
    fmm = _fmm(points)
    assert fmm.tree.nlevels >= 5
    assert _error(fmm(charges), points, charges) < TOLERANCE


def test_points_exactly_on_box_faces(rng):
    # Every point set whose bounding box is the unit cube has the root of these two corners;
    # its level-4 box faces (levels 1-3 included) are at lo + k w / 16.
    corners = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    root = build_tree(corners, n_crit=1)
    lo, width = root.root_centre[0] - root.root_half_width, 2 * root.root_half_width
    planes = np.concatenate([lo + np.arange(1, 16) * width / 16, [0.0, 1.0]])
    on_faces = rng.random((1500, 3))
    chosen = rng.random((1500, 3)) < 0.6  # one, two or three coordinates on a face
    on_faces[chosen] = rng.choice(planes, int(chosen.sum()))
    points = np.concatenate([corners, rng.random((500, 3)), on_faces])
    charges = _charges(rng, len(points))
    fmm = _fmm(points)
    assert fmm.tree.root_half_width == root.root_half_width
    assert _error(fmm(charges), points, charges) < TOLERANCE


def test_dense_cluster_with_a_far_outlier_builds_a_deep_tree(rng):
    points = np.concatenate([1e-4 * rng.standard_normal((2000, 3)), [[1.0, 1.0, 1.0]]])
    charges = _charges(rng, len(points))
    fmm = _fmm(points)
    assert fmm.tree.nlevels >= 14
    assert _error(fmm(charges), points, charges) < TOLERANCE


def test_cluster_finer_than_max_depth_gets_a_nested_fmm(rng):
    """2**-20 of the root is 1e-6: a cluster of radius 1e-9 cannot be split. Its leaf holds all
    1000 points (a warning says so); its direct row (10**6 pairs, over 16 full rows) goes to a
    nested FMM rooted at the cluster (fmmloopy.tree.nested), whose tree splits it."""
    points = np.concatenate([1e-9 * rng.standard_normal((1000, 3)), [[1.0, 1.0, 1.0]]])
    charges = _charges(rng, len(points))
    with pytest.warns(RuntimeWarning, match="max_depth=20 reached"):
        fmm = fmmloopy.Fmm(points, order=ORDER, n_crit=16)
    leaves = fmm.tree.box_is_leaf
    assert fmm.tree.box_source_counts[leaves].max() == 1000
    assert fmm.tree.box_levels[leaves].max() == 20
    assert len(fmm.nested_rows) == 1
    assert fmm.nested_rows[0].sum.fmm.tree.nlevels >= 3
    assert _error(fmm(charges), points, charges) < TOLERANCE


def test_small_max_depth_leaves_hold_more_points(rng):
    points, charges = rng.random((2000, 3)), _charges(rng, 2000)
    with pytest.warns(RuntimeWarning, match="max_depth=2 reached"):
        fmm = fmmloopy.Fmm(points, order=ORDER, n_crit=16, max_depth=2)
    assert fmm.tree.nlevels == 3
    assert fmm.tree.box_source_counts[fmm.tree.box_is_leaf].max() > 16
    assert _error(fmm(charges), points, charges) < TOLERANCE
    with pytest.warns(RuntimeWarning, match="max_depth=0 reached"):
        single_leaf = fmmloopy.Fmm(points, order=ORDER, n_crit=16, max_depth=0)
    assert _error(single_leaf(charges), points, charges) < DIRECT_SUM_TOLERANCE


def test_targets_outside_the_sources_bounding_box(rng):
    sources = rng.random((2000, 3))
    targets = np.concatenate([rng.uniform(-5, 5, (1000, 3)), rng.uniform(-100, 100, (100, 3))])
    for charges in (_charges(rng, 2000), rng.random(2000)):
        potential = _fmm(sources, targets)(charges)
        assert _error(potential, sources, charges, targets) < TOLERANCE


@pytest.mark.parametrize("scale", [1e-8, 1e8])
def test_scaled_coordinates(rng, scale):
    """The kernel is homogeneous of degree -1: scaled points give correct scaled potentials."""
    points, charges = rng.random((2000, 3)), _charges(rng, 2000)
    scaled = points * scale
    potential = _fmm(scaled)(charges)
    assert _error(potential, scaled, charges) < TOLERANCE
    assert _error(potential * scale, points, charges) < TOLERANCE


@pytest.mark.parametrize("scale", [2.0 ** -400, 1e-200, 1e200])
def test_coordinates_beyond_float64_squares_are_rescaled(rng, scale):
    """At 1e-200, squared distances underflow (and at 1e200 overflow) float64: a plain direct
    sum returns 0. The points are rescaled by a power of two first, exactly."""
    points, charges = rng.random((2000, 3)), _charges(rng, 2000)
    fmm = _fmm(points * scale)
    assert fmm.coordinate_exponent != 0
    # phi(s x) = phi(x) / s; the scaled points differ from points * scale / scale by an ulp.
    assert _error(fmm(charges) * scale, points, charges) < TOLERANCE


def test_charges_far_from_one_and_overflow(rng):
    points, charges = rng.random((2000, 3)), _charges(rng, 2000)
    fmm = _fmm(points)
    reference = fmm(charges)
    for factor in (1e-300, 1e300):
        scaled = fmm(charges * factor) / factor
        assert np.linalg.norm(scaled - reference) / np.linalg.norm(reference) < 1e-14
    tiny = np.ldexp(charges, -1060)  # subnormal charges, which relaxed math would flush to 0
    exact = np.ldexp(fmm(np.ldexp(tiny, 1060)), -1060)
    assert np.count_nonzero(fmm(tiny)) == 2000
    np.testing.assert_allclose(fmm(tiny), exact, rtol=0, atol=np.abs(exact).max() * 1e-12)
    with pytest.raises(OverflowError, match="the potential overflows float64 at .* targets"):
        fmm(charges * 1.7e308)


def test_repeated_calls_and_rebuilds_are_bitwise_identical(rng):
    points = np.concatenate([1e-4 * rng.standard_normal((1500, 3)), rng.random((500, 3))])
    charges = _charges(rng, len(points))
    fmm = _fmm(points)
    first = fmm(charges)
    assert np.array_equal(fmm(charges), first)
    assert np.array_equal(_fmm(points.copy())(charges.copy()), first)
    assert np.array_equal(fmmloopy.evaluate(points, charges, order=ORDER, n_crit=16), first)


# -- Properties: random degenerate sets ----------------------------------------------------------

@st.composite
def _degenerate_sets(draw):
    """Point sets mixing the cases above, with a random scale and n_crit."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, 600))
    kind = draw(st.sampled_from(["uniform", "line", "plane", "duplicates", "cluster+outlier",
                                 "grid"]))
    if kind == "uniform":
        points = rng.random((n, 3))
    elif kind == "line":
        points = rng.random((n, 1)) * rng.standard_normal(3)
    elif kind == "plane":
        points = rng.random((n, 2)) @ rng.standard_normal((2, 3))
    elif kind == "duplicates":
        points = rng.random((max(1, n // 10), 3))[rng.integers(0, max(1, n // 10), n)]
    elif kind == "cluster+outlier":
        points = draw(st.sampled_from([1e-3, 1e-6, 1e-9])) * rng.standard_normal((n, 3))
        points[0] = 1.0
    else:  # points on a lattice: many on box faces, many at equal distances
        points = rng.integers(0, 8, (n, 3)) / 8.0
    scale = 10.0 ** draw(st.integers(-8, 8))
    n_crit = draw(st.sampled_from([4, 16, 64]))
    return points * scale, rng.uniform(-1, 1, n), n_crit


@settings(max_examples=30, deadline=None, derandomize=True)
@given(_degenerate_sets())
def test_degenerate_sets_match_direct_summation(case):
    points, charges, n_crit = case
    potential = _fmm(points, n_crit=n_crit)(charges)
    expected = direct_sum(LAPLACE_3D, points, charges, points)
    magnitude = np.linalg.norm(direct_sum(LAPLACE_3D, points, np.abs(charges), points))
    if magnitude == 0:  # every point coincides with every other: nothing interacts
        assert np.array_equal(potential, np.zeros(len(points)))
    else:
        assert np.linalg.norm(potential - expected) / magnitude < TOLERANCE
