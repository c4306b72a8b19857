"""Operators of kernels without homogeneity (Yukawa, Helmholtz): a set per level, checked step
by step against direct summation with numpy only, as the FMM composes them (each box's
expansions with its own level's set; M2M and L2L from the parent's set), and the sets' padding.

Errors are relative to the potential, or, where screening makes it smaller, to the potential the
same charges make one box side away (:func:`relative_error`): every target of an FMM also sums
its neighbours' charges directly, so that is the scale a far-field error is added to (an error
of 1e-2 on a contribution of 1e-11 is harmless). Tolerances are the errors measured with these
seeds (in the comments) times ~5.
"""

import numpy as np
import pytest

import fmmloopy
from fmmloopy.execution.precomputed import get_operators, level_set
from fmmloopy.maths.geometry import (
    M2L_CLASSES,
    child_centres,
    transfer_class,
    transfer_vector_index,
)
from fmmloopy.maths.green import get_kernel
from fmmloopy.maths.levels import LevelOperators
from fmmloopy.maths.precompute import compute_operators, kernel_matrix, pad_ranks
from fmmloopy.maths.scheme import KIFMM
from fmmloopy.maths.surfaces import (
    DOWNWARD_CHECK_RADIUS,
    DOWNWARD_EQUIVALENT_RADIUS,
    UPWARD_CHECK_RADIUS,
    UPWARD_EQUIVALENT_RADIUS,
    surface,
)

ORDER = 6
NPARTICLES = 200
# Yukawa: kappa * half-width from 0.125 to 2.5, the decay across a box from weak to strong.
# Helmholtz (complex): boxes a quarter and a whole wavelength wide (wavelength 1), the widest a
# level with expansions has within the range Fmm accepts (a root box of 4 wavelengths).
CASES = [("yukawa:kappa=1", 0.125, "moderate"), ("yukawa:kappa=1", 0.5, "moderate"),
         ("yukawa:kappa=10", 0.0625, "moderate"), ("yukawa:kappa=10", 0.25, "strong"),
         ("helmholtz:k=6.283185307179586", 0.125, "quarter wave"),
         ("helmholtz:k=6.283185307179586", 0.5, "wave")]
# Measured maxima at order 6 where kappa h <= 1: P2M 2.0e-7, M2M 2.3e-7, M2L chain 1.6e-6,
# L2L 1.3e-9; at kappa h = 2.5 (the potential varies by e^-5 across a check surface, harder to
# fit): P2M 2.0e-6, M2M 2.1e-6, M2L chain 1.7e-5, L2L 1.3e-10. Helmholtz, boxes a quarter
# wavelength wide: P2M 7.6e-8, M2M 9.7e-8, chain 6.0e-7, L2L 4.8e-9; a wavelength wide: P2M
# 1.9e-6, M2M 3.0e-6, chain 7.3e-6, L2L 1.2e-8.
TOLERANCES = {"moderate": {"p2m": 1e-6, "m2m": 1.2e-6, "chain": 8e-6, "l2l": 7e-9},
              "strong": {"p2m": 1e-5, "m2m": 1e-5, "chain": 1e-4, "l2l": 7e-9},
              "quarter wave": {"p2m": 4e-7, "m2m": 5e-7, "chain": 3e-6, "l2l": 2.5e-8},
              "wave": {"p2m": 1e-5, "m2m": 1.5e-5, "chain": 4e-5, "l2l": 6e-8}}
PARAMETERS = "spec, half_width, regime"


def tolerance(step: str, regime: str) -> float:
    return TOLERANCES[regime][step]


class _OperatorSets(dict):
    """``(spec, half_width) -> operators``, each taken when a test first asks for it from where
    an FMM takes it (:func:`~fmmloopy.execution.precomputed.get_operators`: computed by
    :func:`~fmmloopy.maths.precompute.compute_operators` once for the test run, in its disk
    cache; where pytest-xdist shares this file's tests out, a set one process computed the
    other reads)."""

    def __missing__(self, key):
        spec, half_width = key
        self[key] = get_operators(get_kernel(spec), ORDER, half_width=half_width)
        return self[key]


_OPERATOR_SETS = _OperatorSets()


@pytest.fixture
def operator_sets():
    """``(spec, half_width) -> operators`` for each case's box and its children."""
    return _OPERATOR_SETS


def relative_error(approximate, exact, kernel, half_width, charges) -> float:
    """``|approximate - exact|`` relative to ``|exact|`` or, if larger, to the potential of
    ``charges`` at one box side (``2 half_width``) at as many targets."""
    near = np.sqrt(len(exact)) * abs(complex(kernel.evaluate(np.array([2 * half_width, 0, 0]))))
    scale = max(np.linalg.norm(exact), near * np.abs(charges).sum())
    return float(np.linalg.norm(approximate - exact) / scale)


def points_in_box(rng, centre, half_width: float, count: int) -> np.ndarray:
    return np.asarray(centre, dtype=float)[:, None] + half_width * rng.uniform(-1, 1, (3, count))


def box_surface(centre, half_width: float, radius: float) -> np.ndarray:
    return np.asarray(centre, dtype=float)[:, None] + half_width * surface(ORDER, radius)


def p2m(kernel, ops, centre, sources, charges) -> np.ndarray:
    """Multipole of particles in a box of ``ops.half_width`` (no level scale: the set is the
    level's own)."""
    check = kernel_matrix(kernel, box_surface(centre, ops.half_width, UPWARD_CHECK_RADIUS),
                          sources) @ charges
    return ops.uc2e_second @ (ops.uc2e_first @ check)


def field(kernel, centre, half_width, radius, density, targets) -> np.ndarray:
    return kernel_matrix(kernel, targets, box_surface(centre, half_width, radius)) @ density


def density_error(kernel, centre, half_width, radius, density, targets, sources, charges):
    """:func:`relative_error` of an equivalent density's potential at ``targets`` against the
    direct sum of ``charges`` at ``sources``."""
    exact = kernel_matrix(kernel, targets, sources) @ charges
    return relative_error(field(kernel, centre, half_width, radius, density, targets), exact,
                          kernel, half_width, charges)


@pytest.mark.parametrize(PARAMETERS, CASES)
def test_level_sets_are_not_scaled(spec, half_width, regime):
    """A set per level: the steps of such sets take no level scale."""
    for step in KIFMM.steps.values():
        if step.matrices:
            sets = LevelOperators.per_level(
                [compute_operators(get_kernel(spec), 3, half_width=half_width)], 2)
            assert (sets.level_scales(step, np.array([1.0, 0.5, 0.25])) == 1).all()
            break


@pytest.mark.parametrize(PARAMETERS, CASES)
def test_p2m_then_far_field(operator_sets, spec, half_width, regime):
    kernel, ops = get_kernel(spec), operator_sets[spec, half_width]
    rng = np.random.default_rng(0)
    centre = np.array([0.3, -0.2, 0.1])
    sources = points_in_box(rng, centre, half_width, NPARTICLES)
    charges = rng.uniform(0, 1, NPARTICLES)
    multipole = p2m(kernel, ops, centre, sources, charges)
    targets = points_in_box(rng, centre + 2 * half_width * np.array([2, 1, 0]), half_width, 300)
    assert density_error(kernel, centre, half_width, UPWARD_EQUIVALENT_RADIUS, multipole,
                         targets, sources, charges) <= tolerance("p2m", regime)


@pytest.mark.parametrize(PARAMETERS, CASES)
def test_m2m_of_children_equals_parent_p2m(operator_sets, spec, half_width, regime):
    kernel = get_kernel(spec)
    parent_ops, child_ops = operator_sets[spec, half_width], operator_sets[spec, half_width / 2]
    rng = np.random.default_rng(1)
    centre = np.array([-0.4, 0.7, 0.2])
    sources = points_in_box(rng, centre, half_width, NPARTICLES)
    charges = rng.uniform(0, 1, NPARTICLES)
    bits = (sources > centre[:, None]).astype(int)
    octants = 4 * bits[0] + 2 * bits[1] + bits[2]
    merged = sum(parent_ops.m2m[octant] @ p2m(
        kernel, child_ops, centre + half_width * child_centres()[:, octant],
        sources[:, octants == octant], charges[octants == octant]) for octant in range(8))
    parent = p2m(kernel, parent_ops, centre, sources, charges)
    targets = points_in_box(rng, centre + 2 * half_width * np.array([2, 1, 0]), half_width, 300)
    merged_field, parent_field = (field(kernel, centre, half_width, UPWARD_EQUIVALENT_RADIUS,
                                        density, targets) for density in (merged, parent))
    exact = kernel_matrix(kernel, targets, sources) @ charges
    bound = tolerance("m2m", regime)
    assert relative_error(merged_field, parent_field, kernel, half_width, charges) <= bound
    assert relative_error(merged_field, exact, kernel, half_width, charges) \
        <= bound + tolerance("p2m", regime)


def local_of_source_box(kernel, ops, target_centre, offset, rng, compressed: bool):
    """A source box at ``offset`` box sides: P2M, M2L (dense or compressed), DC2E."""
    half_width = ops.half_width
    source_centre = target_centre + 2 * half_width * np.array(offset)
    sources = points_in_box(rng, source_centre, half_width, NPARTICLES)
    charges = rng.uniform(0, 1, NPARTICLES)
    multipole = p2m(kernel, ops, source_centre, sources, charges)
    index = transfer_vector_index(np.array(offset))
    if compressed:
        name = next(name for name in M2L_CLASSES if index in transfer_class(name))
        within = list(transfer_class(name)).index(index)
        check = ops.matrix(f"m2l_{name}_expand") @ (ops.matrix(f"m2l_{name}_core")[within] @ (
            ops.matrix(f"m2l_{name}_compress") @ multipole))
    else:
        check = get_operators(kernel, ops.order, half_width=ops.half_width,
                              dense_m2l=True).m2l[index] @ multipole
    return ops.dc2e_second @ (ops.dc2e_first @ check), sources, charges


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize(PARAMETERS, CASES)
@pytest.mark.parametrize("offset", [(2, 0, 0), (3, -1, 2), (-3, -3, -3)])
def test_m2l_then_l2p_matches_direct(operator_sets, spec, half_width, regime, offset,
                                     compressed):
    kernel, ops = get_kernel(spec), operator_sets[spec, half_width]
    rng = np.random.default_rng(2)
    centre = np.array([0.1, 0.2, -0.3])
    local, sources, charges = local_of_source_box(kernel, ops, centre, offset, rng, compressed)
    targets = points_in_box(rng, centre, half_width, 300)
    assert density_error(kernel, centre, half_width, DOWNWARD_EQUIVALENT_RADIUS, local,
                         targets, sources, charges) <= tolerance("chain", regime)


@pytest.mark.parametrize(PARAMETERS, CASES)
def test_l2l_child_local_equals_parent_local(operator_sets, spec, half_width, regime):
    kernel, ops = get_kernel(spec), operator_sets[spec, half_width]
    rng = np.random.default_rng(3)
    centre = np.array([0.1, 0.2, -0.3])
    local, sources, charges = local_of_source_box(kernel, ops, centre, (3, 0, 1), rng, False)
    for octant in range(8):
        child_centre = centre + half_width * child_centres()[:, octant]
        child_local = ops.l2l[octant] @ local
        targets = points_in_box(rng, child_centre, half_width / 2, 100)
        from_child, from_parent = (
            field(kernel, c, w, DOWNWARD_EQUIVALENT_RADIUS, density, targets)
            for c, w, density in ((child_centre, half_width / 2, child_local),
                                  (centre, half_width, local)))
        assert relative_error(from_child, from_parent, kernel, half_width, charges) \
            <= tolerance("l2l", regime)


def test_padding_adds_nothing(operator_sets):
    ops = operator_sets["yukawa:kappa=10", 0.25]
    ranks = {name: min(ops.n_e, rank + 8) for name, rank in ops.ranks().items()}
    padded = pad_ranks(ops, ranks)
    assert padded.ranks() == ranks
    rng = np.random.default_rng(4)
    vector = rng.standard_normal(ops.n_e)
    for name in M2L_CLASSES:
        parts = [(o.matrix(f"m2l_{name}_compress"), o.matrix(f"m2l_{name}_core")[0],
                  o.matrix(f"m2l_{name}_expand")) for o in (ops, padded)]
        original, again = ((expand @ (core @ (compress @ vector))) for compress, core, expand
                           in parts)
        np.testing.assert_array_equal(original, again)
    np.testing.assert_array_equal(ops.uc2e_second @ (ops.uc2e_first @ vector),
                                  padded.uc2e_second @ (padded.uc2e_first @ vector))
    with pytest.raises(ValueError, match="below"):
        pad_ranks(padded, ops.ranks() | {"uc2e": ops.ranks()["uc2e"] - 1})


def test_per_level_stacks_offset_each_box_to_its_level(operator_sets):
    kappa_1 = "yukawa:kappa=1"
    sets = [operator_sets[kappa_1, 0.5], operator_sets[kappa_1, 0.25],
            operator_sets[kappa_1, 0.125]]
    levels = LevelOperators.per_level(sets, first_level=2)
    assert {tuple(o.ranks().items()) for o in levels.sets} == {tuple(levels.ranks().items())}
    box_levels = np.array([0, 1, 2, 3, 4, 5])
    m2m = levels.matrix_offsets(KIFMM.steps["m2m"], "m2m", box_levels)
    l2l = levels.matrix_offsets(KIFMM.steps["l2l"], "l2l", box_levels)
    np.testing.assert_array_equal(m2m, [-1, -1, 0, 8, 16, -1])
    np.testing.assert_array_equal(l2l, [-1, -1, -1, 0, 8, 16])  # the parent's set
    stack = levels.stack("l2l")
    assert stack.shape == (24, *sets[0].l2l.shape[1:])
    np.testing.assert_array_equal(stack[8 + 3], levels.sets[1].l2l[3])
    assert levels.matrix_offsets(KIFMM.steps["uc2e"], "uc2e_first", box_levels)[3] == 1
    assert LevelOperators.scaled_from(compute_operators("laplace", 3)).matrix_offsets(
        KIFMM.steps["m2m"], "m2m", box_levels) is None


def unique_maps(ops, kernel, half_width: float) -> dict[str, np.ndarray]:
    """The maps of a set that do not depend on how its factors were chosen: the fields of the
    equivalent densities the check-to-equivalent maps make of the check potentials of sources
    inside (upward; the field two box sides away) and outside (downward; the field inside) a
    box of ``half_width`` at the origin, M2M and L2L, and each M2L class's
    expand @ core @ compress (equivalent densities themselves are not unique)."""
    rng = np.random.default_rng(4)
    centre, away = np.zeros(3), np.array([4 * half_width, 0, 0])
    inside, outside = (points_in_box(rng, at, half_width, 60) for at in (centre, away))
    upward = ops.uc2e_second @ (ops.uc2e_first @ kernel_matrix(
        kernel, box_surface(centre, half_width, UPWARD_CHECK_RADIUS), inside))
    downward = ops.dc2e_second @ (ops.dc2e_first @ kernel_matrix(
        kernel, box_surface(centre, half_width, DOWNWARD_CHECK_RADIUS), outside))
    maps = {
        "uc2e": field(kernel, centre, half_width, UPWARD_EQUIVALENT_RADIUS, upward, outside),
        "dc2e": field(kernel, centre, half_width, DOWNWARD_EQUIVALENT_RADIUS, downward, inside),
        # M2M's parent density two sides away; L2L's child density in the first child.
        "m2m": kernel_matrix(kernel, outside, box_surface(
            centre, half_width, UPWARD_EQUIVALENT_RADIUS)) @ ops.m2m[0],
        "l2l": kernel_matrix(kernel, inside / 2 + half_width * child_centres()[:, :1],
                             box_surface(half_width * child_centres()[:, 0], half_width / 2,
                                         DOWNWARD_EQUIVALENT_RADIUS)) @ ops.l2l[0]}
    for name in M2L_CLASSES:
        maps[name] = (ops.matrix(f"m2l_{name}_expand")[None] @ ops.matrix(f"m2l_{name}_core")
                      @ ops.matrix(f"m2l_{name}_compress")[None])
    return maps


@pytest.mark.parametrize("spec, half_width", [("yukawa:kappa=3", 0.3), ("yukawa:kappa=40", 0.13),
                                              ("helmholtz:k=6", 0.17)])
def test_unit_box_sets_scaled_are_the_boxes_own(spec, half_width):
    """Yukawa's and Helmholtz's sets are computed for half-width 1 at ``p h`` and scaled by
    degree -1 (check-to-equivalent maps by ``h``, M2L by ``1 / h``): each map equals the one
    of the box's own set (non-dyadic half-widths, so the two sets are computed from different
    rounded numbers). Measured: 1.7e-12 at most (an M2L class of Helmholtz)."""
    kernel = get_kernel(spec)
    own = unique_maps(get_operators(kernel, ORDER, half_width=half_width), kernel, half_width)
    unit_set = level_set(kernel, ORDER, half_width)
    assert unit_set.half_width == 1.0
    unit = unique_maps(unit_set, kernel, half_width)
    scales = {"uc2e": half_width, "dc2e": half_width, "m2m": 1.0, "l2l": 1.0}
    for name, own_map in own.items():
        scaled = scales.get(name, 1 / half_width) * unit[name]
        assert np.linalg.norm(own_map - scaled) <= 1e-10 * np.linalg.norm(own_map), name


def test_sets_are_shared_by_boxes_of_one_dimensionless_product():
    """The key is ``kappa h``: kappa 10 at half-width 1/8 and kappa 20 at 1/16 are one set, and
    an FMM of the points halved with kappa doubled gives twice the potentials (every product
    and distance is exact under the halving)."""
    assert level_set("yukawa:kappa=10", 4, 0.125) is level_set("yukawa:kappa=20", 4, 0.0625)
    assert level_set("helmholtz:k=3", 4, 0.375) is level_set("helmholtz:k=9", 4, 0.125)
    assert level_set("yukawa:kappa=10", 4, 0.125) is not level_set("yukawa:kappa=10", 4, 0.25)
    rng = np.random.default_rng(5)
    points = rng.uniform(-1, 1, (3000, 3))
    charges = rng.uniform(-1, 1, 3000)
    wide = fmmloopy.Fmm(points, kernel="yukawa:kappa=4", order=4, n_crit=32)
    narrow = fmmloopy.Fmm(points / 2, kernel="yukawa:kappa=8", order=4, n_crit=32)
    assert wide.tree.box_levels.max() >= 3
    np.testing.assert_allclose(narrow(charges), 2 * wide(charges), rtol=1e-13)
