"""The ``cpu`` matvec recipe keeps output coefficients in vector registers at every order.

Surfaces hold ``6 (p - 1)^2 + 2`` points (orders 2..10: 8, 26, 56, 98, 152, 218, 296, 386, 488),
so the odd orders and order 3 are not multiples of the vector width; the recipe once spread them
over work-items instead, at less than half the speed (M2L at order 5 slower than at order 6).
"""

import loopy as lp
import numpy as np
import pytest
from fmmloopy.transforms import cpu

from fmmloopy.checking.check import check_pair
from fmmloopy.checking.problems import tree_problem
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.maths.surfaces import surface_size

ORDERS = range(2, 11)

# A chunk's last, partial slab is unrolled by loopy's fallback from vec, which warns through
# a function loopy itself deprecates (the recipe silences the warning, not the deprecation).
pytestmark = pytest.mark.filterwarnings(
    "ignore:This function is deprecated:DeprecationWarning")


@pytest.fixture
def width(device) -> int:
    """Coefficients per accumulator vector of the cpu recipe on this device (8, or 16 where
    the device's vectors hold 8 doubles)."""
    return cpu.vector_width(device)


def cpu_device_code(device, operator: str, n_target: int, n_source: int) -> str:
    """The OpenCL source of ``operator`` under the ``cpu`` recipe (generated, not built)."""
    compiled = compiled_operator(operator, device, recipe="cpu", n_target_coeffs=n_target,
                                 n_source_coeffs=n_source)
    return lp.generate_code_v2(compiled.t_unit).device_code()


def assert_vector_path(code: str, n_target: int, width: int) -> None:
    # One work-item per block (no coefficients spread over work-items), accumulators and the
    # matrix entries of a chunk in vectors, and one vector update per pair and source coefficient.
    assert "reqd_work_group_size(1, 1, 1)" in code and "lid(0)" not in code
    assert f"double{width} acc[" in code and f"double{width} matrix_lanes;" in code
    assert "acc[0] = acc[0] + matrix_lanes * source_vectors[" in code
    # The partial chunk, if any, is a slab of its own with the exact number of lanes (OpenCL
    # names lanes 10-15 .sa-.sf).
    remainder = n_target % width
    assert ("final slab for 'iexp_tgt_outer'" in code) == bool(remainder)
    if remainder:
        slab = code[code.index("final slab"):]
        assert f"matrix_lanes.s{remainder - 1:x} = " in slab
        assert f"matrix_lanes.s{remainder:x} = " not in slab


@pytest.mark.parametrize("order", ORDERS)
def test_every_order_takes_the_vector_path(device, width, order):
    """Every order with at least one whole vector of coefficients (order 2 has 8: with 16-wide
    accumulators they are unrolled instead)."""
    n_e = surface_size(order)
    code = cpu_device_code(device, "m2l", n_e, n_e)
    if n_e >= width:
        assert_vector_path(code, n_e, width)
    else:
        assert f"double{width}" not in code and "slab" not in code


@pytest.mark.parametrize("n_target,n_source", [(13, 98), (98, 13), (3, 26), (9, 7), (27, 30),
                                               (363, 20)])
def test_c2e_factors_of_any_rank_take_the_vector_path(device, width, n_target, n_source):
    """c2e's first factor has the rank of the check-to-equivalent map as its output size, which
    may be any number (363 at order 9); the number of input coefficients changes nothing."""
    code = cpu_device_code(device, "c2e", n_target, n_source)
    if n_target >= width:
        assert_vector_path(code, n_target, width)
    else:  # no whole chunk: the coefficients unrolled, no vector of unused lanes
        assert f"double{width}" not in code and "slab" not in code
        tile = cpu.matvec_layout(device).pair_tile  # one accumulator per pair of the tile
        assert f"double acc[{tile} * {n_target}];" in code


@pytest.fixture(scope="module")
def points():
    return np.random.default_rng(3).random((700, 3))


@pytest.mark.parametrize("operator,order", [("m2l", 3), ("m2l", 5), ("m2l", 7), ("m2l", 9),
                                            ("c2e", 5)])
def test_odd_sizes_match_the_sequential_kernel(device, points, operator, order):
    """At 1e-12 of ``sequential`` (``fmmloopy check``'s comparison), on every row; c2e with a
    rank that is neither the surface size nor a multiple of the vector width, both factors."""
    n_e = surface_size(order)
    problem = tree_problem(f"cube-order-{order}", points, n_crit=20, surface_size=n_e,
                           rank=n_e - 5)
    results = check_pair(operator, "cpu", problem, device)
    assert len(results) == (2 if operator == "c2e" else 1)
    for result in results:
        assert result.ok, result.line()
        assert result.compared_rows == result.total_rows > 0
