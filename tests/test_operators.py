"""fmmloopy.maths.operators: the operator table, its sizes and point sets, the memoised math-level
kernels, and the numpy host references held against sums written out here loop by loop.

No OpenCL device is needed: everything here is numpy and loopy on the host.
"""

import math

import numpy as np
import pytest

from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.layouts import Grouped
from fmmloopy.maths.operators import (
    MATVEC,
    OPERATORS,
    PAIRWISE,
    get_operator,
    math_kernel,
    operator_sizes,
    pair_count,
)
from fmmloopy.maths.templates import BoxParticles, BoxSurface

PAIRWISE_OPERATORS = ("p2p", "p2m", "p2l", "m2p", "l2p")
MATVEC_OPERATORS = ("m2m", "l2l", "m2l", "m2l_compress", "m2l_expand", "c2e")


# -- the table and get_operator ------------------------------------------------------------------


def test_the_table_holds_the_eleven_operators_under_their_names():
    assert set(OPERATORS) == set(PAIRWISE_OPERATORS) | set(MATVEC_OPERATORS)
    for name, spec in OPERATORS.items():
        assert spec.name == name and get_operator(name) is spec
        assert spec.template == (PAIRWISE if name in PAIRWISE_OPERATORS else MATVEC)


@pytest.mark.parametrize("name", ["p2q", "P2P", "", "pairwise"])
def test_unknown_operator_is_a_value_error_listing_the_operators(name):
    with pytest.raises(ValueError) as refused:
        get_operator(name)
    assert str(refused.value) == f"unknown operator {name!r}; operators: {sorted(OPERATORS)}"


# -- operator_sizes ------------------------------------------------------------------------------


def test_operator_sizes_of_every_operator():
    n_e, rank = 56, 40
    assert operator_sizes("p2p", n_e) == {}  # particles on both sides: no size
    for name in ("p2m", "p2l", "m2p", "l2p"):  # one side a surface of n_e points
        assert operator_sizes(name, n_e) == {"n_surface": n_e}
    for name in ("m2m", "l2l"):
        assert operator_sizes(name, n_e) == {"n_target_coeffs": n_e, "n_source_coeffs": n_e}
    # The compressed M2L: n_e -> k, k -> k over V, k -> n_e (k: the rank given, else c2e's).
    assert operator_sizes("m2l_compress", n_e, m2l_rank=30) == {
        "n_target_coeffs": 30, "n_source_coeffs": n_e}
    assert operator_sizes("m2l", n_e, m2l_rank=30) == {
        "n_target_coeffs": 30, "n_source_coeffs": 30}
    assert operator_sizes("m2l_expand", n_e, rank) == {
        "n_target_coeffs": n_e, "n_source_coeffs": rank}
    with pytest.raises(ValueError, match="m2l needs the rank of the compressed M2L"):
        operator_sizes("m2l", n_e)
    # c2e is applied as two factors: (rank x n_e), then (n_e x rank).
    assert operator_sizes("c2e", n_e, rank) == {"n_target_coeffs": rank, "n_source_coeffs": n_e}
    assert operator_sizes("c2e", n_e, rank, first_factor=False) == {
        "n_target_coeffs": n_e, "n_source_coeffs": rank}


def test_operator_sizes_errors():
    with pytest.raises(ValueError, match="c2e needs the rank of its factors"):
        operator_sizes("c2e", 56)
    with pytest.raises(ValueError, match="unknown operator 'x2y'"):
        operator_sizes("x2y", 56)


# -- point sets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name,targets,sources", [
    ("p2p", "particles", "particles"),
    ("p2m", "surface", "particles"),
    ("p2l", "surface", "particles"),
    ("m2p", "particles", "surface"),
    ("l2p", "particles", "surface"),
])
def test_point_sets_follow_the_table(name, targets, sources):
    made = get_operator(name).point_sets(26)
    for point_set, kind in zip(made, (targets, sources), strict=True):
        assert point_set.kind == kind
        assert point_set == (BoxSurface(26) if kind == "surface" else BoxParticles())


@pytest.mark.parametrize("name", ["p2m", "p2l", "m2p", "l2p"])
def test_a_surface_needs_its_size(name):
    with pytest.raises(ValueError, match=rf"operator '{name}' needs the size 'n_surface'"):
        get_operator(name).point_sets(None)


def test_particles_need_no_size():
    assert get_operator("p2p").point_sets(None) == (BoxParticles(), BoxParticles())


# -- math_kernel ---------------------------------------------------------------------------------


def test_math_kernel_is_memoised_on_what_it_is_built_from():
    first = math_kernel("m2l", n_target_coeffs=8, n_source_coeffs=6)
    # The same combination, however spelled: kernel by name or object, dtype in any form, the
    # sizes in any order.
    assert math_kernel("m2l", n_source_coeffs=6, n_target_coeffs=8) is first
    assert math_kernel("m2l", kernel=LAPLACE_3D, dtype="float64", n_target_coeffs=8,
                       n_source_coeffs=6) is first
    assert math_kernel("m2l", dtype=np.dtype(np.float64), n_target_coeffs=8,
                       n_source_coeffs=6) is first
    # The matvec's sizes are launch arguments: every size is the same kernel.
    assert math_kernel("m2l", n_target_coeffs=6, n_source_coeffs=8) is first
    assert math_kernel("m2l") is first
    # Anything else is another kernel.
    assert math_kernel("m2l", dtype=np.float32, n_target_coeffs=8, n_source_coeffs=6) is not first
    assert math_kernel("m2m", n_target_coeffs=8, n_source_coeffs=6) is not first
    assert first.default_entrypoint.name == "matvec"  # the template's name: one kernel for all


def test_math_kernel_of_a_pairwise_operator_and_its_arguments():
    p2p = math_kernel("p2p")
    assert math_kernel("p2p") is p2p
    names = {arg.name for arg in p2p.default_entrypoint.args}
    assert {"targets", "sources", "strengths", "result", "source_box_lists"} <= names
    p2m = math_kernel("p2m", n_surface=26)
    names = {arg.name for arg in p2m.default_entrypoint.args}
    assert {"target_surface", "sources", "strengths", "result"} <= names
    assert "targets" not in names


def test_math_kernel_errors():
    with pytest.raises(ValueError, match="unknown operator 'p2q'"):
        math_kernel("p2q")
    with pytest.raises(ValueError, match="unknown kernel 'laplase'"):
        math_kernel("p2p", kernel="laplase")
    with pytest.raises(TypeError, match=r"operator 'p2p' takes no sizes \['n_target_coeffs'\]"):
        math_kernel("p2p", n_target_coeffs=4)
    with pytest.raises(TypeError, match=r"operator 'm2l' takes no sizes \['n_surface'\]"):
        math_kernel("m2l", n_target_coeffs=4, n_source_coeffs=4, n_surface=3)
    # The surface size is a launch argument: a kernel without it is the kernel of every size.
    assert math_kernel("m2p") is math_kernel("m2p", n_surface=152)
    assert "n_surface" in {arg.name for arg in math_kernel("m2p").default_entrypoint.args}
    with pytest.raises(ValueError, match="has only the target-major layout"):
        math_kernel("p2p", layout=Grouped(pair_tile=4))


# -- host references against sums written out here ------------------------------------------------


def _laplace(x, y) -> float:
    """``1 / (4 pi |x - y|)``, and 0 for coinciding points: the Green's function by hand."""
    r = math.dist(x, y)
    return 0.0 if r == 0 else 1.0 / (4 * math.pi * r)


def _assert_close(got, expected):
    """Equal to rounding: sums of a few terms of either sign cancel, so relative to the largest
    value (the order of the terms differs between the loops here and numpy's)."""
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-14 * np.abs(expected).max())


def _tiny_boxes(rng):
    """Three boxes of particles (sorted by box) and a list that skips some pairs of boxes; the
    first target coincides with the first source (its term must be 0, not inf)."""
    target_counts, source_counts = np.array([3, 0, 4]), np.array([2, 5, 3])
    targets = rng.random((3, target_counts.sum()))
    sources = rng.random((3, source_counts.sum()))
    targets[:, 0] = sources[:, 0]
    return {
        "box_target_counts": target_counts,
        "box_target_starts": np.concatenate([[0], np.cumsum(target_counts)[:-1]]),
        "box_source_counts": source_counts,
        "box_source_starts": np.concatenate([[0], np.cumsum(source_counts)[:-1]]),
        "targets": targets, "sources": sources,
        "target_boxes": np.array([0, 2]),  # box 0 lists boxes 1 and 0, box 2 lists box 2
        "source_box_starts": np.array([0, 2, 3]),
        "source_box_lists": np.array([1, 0, 2]),
        "box_centres": rng.random((3, 3)) * 4,
        "box_levels": np.array([0, 1, 2]),
        "level_half_widths": np.array([2.0, 1.0, 0.5]),
    }


def _box_entries(inputs):
    """(target box, source box) for every list entry, walked as written."""
    starts, lists = inputs["source_box_starts"], inputs["source_box_lists"]
    for row, target_box in enumerate(inputs["target_boxes"]):
        for entry in range(starts[row], starts[row + 1]):
            yield row, entry, int(target_box), int(lists[entry])


def _particles(inputs, role, box):
    start = inputs[f"box_{role}_starts"][box]
    return range(start, start + inputs[f"box_{role}_counts"][box])


def _surface_point(inputs, surface, box, k):
    half_width = inputs["level_half_widths"][inputs["box_levels"][box]]
    return inputs["box_centres"][:, box] + half_width * surface[:, k]


def test_p2p_host_reference_is_the_direct_sum_over_listed_boxes():
    rng = np.random.default_rng(1)
    inputs = _tiny_boxes(rng)
    inputs["strengths"] = rng.uniform(-1, 1, inputs["sources"].shape[1])
    inputs["result"] = rng.random(inputs["targets"].shape[1])  # the operator adds into it
    initial = inputs["result"].copy()
    expected = inputs["result"].copy()
    for _, _, target_box, source_box in _box_entries(inputs):
        for i in _particles(inputs, "target", target_box):
            for j in _particles(inputs, "source", source_box):
                expected[i] += (_laplace(inputs["targets"][:, i], inputs["sources"][:, j])
                                * inputs["strengths"][j])
    got = get_operator("p2p").host_reference(LAPLACE_3D, inputs, {})
    assert set(got) == {"result"}
    _assert_close(got["result"], expected)
    assert np.array_equal(inputs["result"], initial)  # a new array: the inputs are unchanged
    assert got["result"][0] == initial[0] + sum(  # the coinciding pair adds nothing
        _laplace(inputs["targets"][:, 0], inputs["sources"][:, j]) * inputs["strengths"][j]
        for j in range(1, 7))


def test_p2m_host_reference_sums_onto_each_box_surface():
    rng = np.random.default_rng(2)
    inputs = _tiny_boxes(rng)
    n_surface = 6
    surface = rng.uniform(-3, 3, (3, n_surface))
    inputs |= {"target_surface": surface,
               "strengths": rng.uniform(-1, 1, inputs["sources"].shape[1]),
               "result": np.zeros((3, n_surface))}
    expected = np.zeros((3, n_surface))
    for _, _, target_box, source_box in _box_entries(inputs):
        for k in range(n_surface):
            x = _surface_point(inputs, surface, target_box, k)
            for j in _particles(inputs, "source", source_box):
                expected[target_box, k] += _laplace(x, inputs["sources"][:, j]) * \
                    inputs["strengths"][j]
    got = get_operator("p2m").host_reference(LAPLACE_3D, inputs, {"n_surface": n_surface})
    _assert_close(got["result"], expected)
    assert not got["result"][1].any()  # box 1 is no target box


def test_m2p_host_reference_sums_from_each_box_surface():
    rng = np.random.default_rng(3)
    inputs = _tiny_boxes(rng)
    n_surface = 5
    surface = rng.uniform(-3, 3, (3, n_surface))
    inputs |= {"source_surface": surface,
               "strengths": rng.uniform(-1, 1, (3, n_surface)),
               "result": np.zeros(inputs["targets"].shape[1])}
    expected = np.zeros(inputs["targets"].shape[1])
    for _, _, target_box, source_box in _box_entries(inputs):
        for i in _particles(inputs, "target", target_box):
            for k in range(n_surface):
                y = _surface_point(inputs, surface, source_box, k)
                expected[i] += _laplace(inputs["targets"][:, i], y) * \
                    inputs["strengths"][source_box, k]
    got = get_operator("m2p").host_reference(LAPLACE_3D, inputs, {"n_surface": n_surface})
    _assert_close(got["result"], expected)


def test_m2l_host_reference_applies_each_entry_matrix_scaled_by_level():
    rng = np.random.default_rng(4)
    inputs = _tiny_boxes(rng)
    n_target, n_source = 4, 3
    inputs |= {"matrices": rng.random((2, n_target, n_source)),
               "matrix_indices": np.array([1, 0, 1]),  # one per list entry
               "source_vectors": rng.random((3, n_source)),
               "target_vectors": rng.random((3, n_target)),
               "level_scales": np.array([1.0, 0.5, 0.25])}
    expected = inputs["target_vectors"].copy()
    for _, entry, target_box, source_box in _box_entries(inputs):
        scale = inputs["level_scales"][inputs["box_levels"][target_box]]
        matrix = inputs["matrices"][inputs["matrix_indices"][entry]]
        for a in range(n_target):
            expected[target_box, a] += scale * sum(
                matrix[a, b] * inputs["source_vectors"][source_box, b] for b in range(n_source))
    got = get_operator("m2l").host_reference(
        LAPLACE_3D, inputs, {"n_target_coeffs": n_target, "n_source_coeffs": n_source})
    assert set(got) == {"target_vectors"}
    _assert_close(got["target_vectors"], expected)


# -- work and pair_count -------------------------------------------------------------------------


def test_pair_count_and_work_count_the_pairs_visited():
    inputs = _tiny_boxes(np.random.default_rng(5))
    targets, sources = inputs["box_target_counts"], inputs["box_source_counts"]
    by_hand = sum(targets[t] * sources[s] for _, _, t, s in _box_entries(inputs))
    assert by_hand == 3 * 5 + 3 * 2 + 4 * 3
    assert pair_count(inputs, targets, sources) == by_hand
    assert get_operator("p2p").work(inputs, {}, targets, sources) == by_hand
    # A surface side has n_surface points in every box.
    surface_targets = sum(7 * sources[s] for _, _, _, s in _box_entries(inputs))
    assert get_operator("p2m").work(inputs, {"n_surface": 7}, targets, sources) == \
        surface_targets
    # Matvec: 2 n_out n_in flops per list entry.
    sizes = {"n_target_coeffs": 4, "n_source_coeffs": 3}
    assert get_operator("m2l").work(inputs, sizes, targets, sources) == 2 * 4 * 3 * 3


def test_a_size_an_operator_does_not_take_is_refused():
    """p2p has no surface: an ``n_surface`` given to it is an error, not a silently different
    cache entry of the same kernel."""
    with pytest.raises(TypeError, match="takes no sizes \\['n_surface'\\]"):
        math_kernel("p2p", n_surface=5)
