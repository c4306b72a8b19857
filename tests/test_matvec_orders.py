"""The ``cpu`` matvec recipe: one kernel for every order and rank, output coefficients in vector
registers at every size.

Surfaces hold ``6 (p - 1)^2 + 2`` points (orders 2..10: 8, 26, 56, 98, 152, 218, 296, 386, 488)
and the compressed M2L and c2e ranks are any number, so most sizes are not multiples of the
vector width. The coefficient counts are launch arguments: the grouped layout pads the transposed
matrices' rows to whole vectors (zeros), the accumulators run over whole vectors, and only the
store of the last, partial chunk is guarded per coefficient.
"""

import loopy as lp
import numpy as np
import pytest
from fmmloopy.transforms import cpu

from fmmloopy.checking.check import check_pair
from fmmloopy.checking.problems import tree_problem
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.maths.layouts import matrix_arguments
from fmmloopy.maths.surfaces import surface_size

ORDERS = range(2, 11)


@pytest.fixture
def width(device) -> int:
    """Coefficients per accumulator vector of the cpu recipe on this device (8, or 16 where
    the device's vectors hold 8 doubles)."""
    return cpu.vector_width(device)


def cpu_kernel(device, operator: str, n_target: int, n_source: int):
    """The compiled ``operator`` under the ``cpu`` recipe asked for these sizes."""
    return compiled_operator(operator, device, recipe="cpu", n_target_coeffs=n_target,
                             n_source_coeffs=n_source)


def expected_rows(rows: int, width: int) -> tuple[int, bool]:
    """The vector width and alignment of the kernel for ``rows`` outputs: rows of whole
    vectors, else of whole half vectors where half a vector is 8 doubles or more, else
    unaligned rows of whole vectors."""
    if rows % width == 0:
        return width, True
    if width // 2 >= 8 and rows % (width // 2) == 0:
        return width // 2, True
    return width, False


def test_a_few_kernels_serve_every_order_and_rank(device, width):
    """One kernel for every size whose rows are whole vectors (a multiple of the width), one
    for those of whole half vectors (8 doubles) where the width is 16, one for every other
    size."""
    sizes = [(surface_size(order), surface_size(order)) for order in ORDERS]
    sizes += [(13, 98), (98, 13), (3, 26), (363, 20), (2 * width, 7), (5 * width, 300), (40, 9)]
    kernels = {}
    for size in sizes:
        kernel = cpu_kernel(device, "m2l", *size)
        shape = (kernel.layout.row_multiple, kernel.layout.aligned_rows)
        assert shape == expected_rows(size[0], width), size
        kernels.setdefault(shape, set()).add(id(kernel))
    assert {shape: len(ids) for shape, ids in kernels.items()} == {
        shape: 1 for shape in {expected_rows(size[0], width) for size in sizes}}
    assert len(kernels) == (3 if width == 16 else 2)
    names = cpu_kernel(device, "m2l", 152, 152).argument_names
    assert {"n_target_coeffs", "n_source_coeffs", "n_target_stride"} <= set(names)


def test_the_coefficients_take_the_vector_path(device, width):
    # One work-item per block (no coefficients spread over work-items), accumulators and the
    # matrix entries of a chunk in vectors, one vector update per pair and source coefficient;
    # whole chunks stored under one guard, the last chunk's lanes each under its own; where
    # the rows are whole vectors, the results stored as vectors, with no guard on the rows.
    for rows, aligned in ((2 * width + 4, False), (2 * width, True)):
        kernel = cpu_kernel(device, "m2l", rows, 56)
        assert kernel.layout.aligned_rows == aligned
        code = lp.generate_code_v2(kernel.t_unit).device_code()
        assert "reqd_work_group_size(1, 1, 1)" in code and "lid(0)" not in code
        assert f"double{width} acc[" in code and f"double{width} matrix_lanes;" in code
        assert "acc[0] = acc[0] + matrix_lanes * source_vectors[" in code
        # Rows of whole vectors: every chunk whole, stored without a guard on the rows.
        assert (f"if (iexp_tgt_outer * {width} + {width - 1} < n_target_coeffs)"
                in code) != aligned
        assert (f"if ({width - 1} + iexp_tgt_outer * {width} < n_target_coeffs)"
                in code) != aligned
        assert ("n_target_coeffs)" in code.split("acc[0] = acc[0] + matrix_lanes")[-1]
                ) != aligned
        assert (f"__global double{width} *__restrict__ target_vectors" in code) == aligned
        assert ("+ scale[0] * acc[0];" in code) == aligned  # a whole vector's store


def test_the_layout_pads_the_rows_to_whole_vectors(device, width):
    layout = cpu.matvec_layout(device)
    assert layout.row_multiple == width
    matrices = np.random.default_rng(0).random((3, 2 * width + 3, 5))
    assert cpu_kernel(device, "m2l", 2 * width + 3, 5).layout == layout
    padded = matrix_arguments(layout, matrices)["transposed_matrices"]
    assert padded.shape == (3, 5, 3 * width)
    assert np.array_equal(padded[:, :, :2 * width + 3], np.swapaxes(matrices, 1, 2))
    assert not padded[:, :, 2 * width + 3:].any()


@pytest.fixture(scope="module")
def points():
    return np.random.default_rng(3).random((700, 3))


@pytest.mark.parametrize("operator,order", [("m2l", 2), ("m2l", 3), ("m2l", 5), ("m2l", 6),
                                            ("m2l", 7), ("m2l", 9), ("c2e", 5), ("c2e", 2)])
def test_odd_sizes_match_the_sequential_kernel(device, points, operator, order):
    """At 1e-12 of ``sequential`` (``fmmloopy check``'s comparison), on every row (order 6:
    152 rows, whole vectors of 8 doubles but not of 16); c2e with a rank that is neither the
    surface size nor a multiple of the vector width, both factors (order 2: 8 coefficients and
    rank 3, less than one vector)."""
    n_e = surface_size(order)
    problem = tree_problem(f"cube-order-{order}", points, n_crit=20, surface_size=n_e,
                           rank=n_e - 5)
    results = check_pair(operator, "cpu", problem, device)
    assert len(results) == (2 if operator == "c2e" else 1)
    for result in results:
        assert result.ok, result.line()
        assert result.compared_rows == result.total_rows > 0
