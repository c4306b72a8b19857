"""fmmloopy.tuning.target_lanes: the pairwise template with a box's targets in vector lanes (the
``cpu`` recipe where vectors hold 8 doubles). The generated code computes on whole vectors; every
pair equals the sequential kernel over r^2 from 1e-30 to 1e30 with boxes of one target (seven
idle lanes), self pairs exactly 0; every pairwise operator passes the check at a narrower width with
chunks of several vectors (boxes of 1 to well over a chunk of targets)."""

import re
import textwrap

import numpy as np
import pytest
from test_fast_rsqrt import PAIRWISE, _pairs, assert_every_pair_matches, offsets_over_30_decades

from fmmloopy.checking.check import run_checks
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.maths.operators import math_kernel
from fmmloopy.tuning.recipe import REFERENCE, Recipe
from fmmloopy.tuning.target_lanes import RSQRT_HELPER, rsqrt_preamble, targets_in_vector_lanes
from fmmloopy.tuning.tools import add_build_options, silence_warnings

#: (targets per vector, vectors per chunk): the shipped AVX-512 form, a narrower vector, and
#: chunks of several vectors (the last one often idle in small boxes).
SHAPES = [(8, 1), (4, 3), (8, 2)]


def _lanes(knl, width, chains):
    knl = targets_in_vector_lanes(knl, width, chains)
    return add_build_options(silence_warnings(knl, "v1_scheduler_fallback"),
                             "-cl-fast-relaxed-math")


def _lanes_recipe(width: int, chains: int) -> Recipe:
    return Recipe(f"lanes_{width}x{chains}", ("pairwise",), "any",
                  lambda knl, ctx: _lanes(knl, width, chains), __file__)


def test_the_preamble_uses_the_avx512_estimate_only_for_eight_lanes():
    key8, text8 = rsqrt_preamble(8)
    key4, text4 = rsqrt_preamble(4)
    assert key8 != key4
    assert "#if defined(__AVX512F__)" in text8 and "rsqrt14pd512" in text8
    assert "__AVX512F__" not in text4 and "double4" in text4
    for text in (text8, text4):
        assert f"#define rsqrt(x) {RSQRT_HELPER}(x)" in text
        assert text.count("1.0 / sqrt(x)") == 2  # double, and the vector fallback


@pytest.mark.parametrize(("width", "chains"), SHAPES)
def test_the_sum_runs_on_whole_vectors(width, chains, device):
    code = compiled_operator("p2p", device, recipe=_lanes_recipe(width, chains)).device_code()
    assert re.search(rf"double{width} acc\[{chains}\];", code)
    updates = [line.strip() for line in code.splitlines()
               if line.strip().startswith("acc[") and "strengths" in line]
    calls = [line.strip() for line in code.splitlines() if "= rsqrt(" in line]
    # one vector update and one vector rsqrt per chain: no lane-by-lane fallback (.s0 ...)
    assert len(updates) == chains and len(calls) == chains
    assert not any(re.search(r"\.s[0-9a-f]\b", line) for line in updates + calls)
    assert "reqd_work_group_size(1, 1, 1)" in code


@pytest.mark.parametrize(("width", "chains"), SHAPES)
def test_every_pair_equals_the_sequential_kernel_from_1e_30_to_1e30(width, chains, queue):
    offsets = offsets_over_30_decades(np.random.default_rng(4))
    reference = _pairs(queue, REFERENCE, offsets)
    assert_every_pair_matches(_pairs(queue, _lanes_recipe(width, chains), offsets), reference,
                              offsets, f"lanes {width}x{chains}")


#: The shape the check runs on every pairwise operator: a narrower vector and a chunk of several
#: vectors at once, the two ways a shape departs from the shipped one, which no shipped recipe
#: takes (the transform is the same code for every operator; only the width and the number of
#: vectors per chunk vary). The shipped shape, (8, 1), is the ``cpu`` recipe's at 8 doubles per
#: vector, which tests/test_check.py checks on every operator wherever it is in force (AVX-512,
#: or ``FMMLOOPY_VECTOR_DOUBLES=8``, as CI's second pass sets); every shape is checked pair by
#: pair on P2P above.
CHECKED_SHAPES = [(4, 3)]


def test_the_check_passes_every_pairwise_operator_at_every_shape(tmp_path, device):
    path = tmp_path / "lanes_recipes.py"
    path.write_text(textwrap.dedent("""
        from fmmloopy.tuning.recipe import recipe
        from fmmloopy.tuning.target_lanes import targets_in_vector_lanes
        from fmmloopy.tuning.tools import add_build_options

        def register(width, chains):
            @recipe("pairwise", device="any", name=f"lanes_{width}x{chains}")
            def lanes(knl, ctx):
                return add_build_options(targets_in_vector_lanes(knl, width, chains),
                                         "-cl-fast-relaxed-math")

        for width, chains in SHAPES:
            register(width, chains)
        """).replace("SHAPES", repr(CHECKED_SHAPES)))
    names = [f"lanes_{w}x{c}" for w, c in CHECKED_SHAPES]
    results = list(run_checks(device, operators=PAIRWISE, recipes=names,
                              recipe_sources=[str(path)], production=None))
    assert {(r.operator, r.recipe) for r in results} == {
        (operator, name) for operator in PAIRWISE for name in names}
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    # Normwise: the same sums of up to ~800 terms (U lists of up to 39 leaves of up to 24
    # sources) in another order, with fast relaxed math: measured up to 1.1e-14 (the periodic
    # problem, whose lists hold image sources), far below the check's own 1e-12.
    # (the kernels with the coarser 1/sqrt report a fraction of their bound: ok above)
    assert max(r.max_relative_error for r in results if not r.root) < 5e-14


def test_a_kernel_of_another_template_is_refused():
    with pytest.raises(ValueError, match="not of the pairwise template"):
        targets_in_vector_lanes(math_kernel("m2l", n_target_coeffs=8, n_source_coeffs=8), 8)


def test_a_match_of_thousands_of_instructions_is_flat():
    """A kernel of many strength vectors with gradients and Hessians has hundreds of updates;
    the transformations match them with one flat ``Or`` (``"id:a or id:b or ..."`` nests one
    level per id: Helmholtz with 16 vectors and Hessians exceeded Python's recursion limit)."""
    from types import SimpleNamespace

    from fmmloopy.tuning.matching import any_of_ids
    ids = [f"update_{k}" for k in range(5000)]
    match = any_of_ids(ids)
    assert all(match(None, SimpleNamespace(id=name)) for name in (ids[0], ids[-1], ids[2500]))
    assert not match(None, SimpleNamespace(id="store"))
    assert not any_of_ids([])(None, SimpleNamespace(id="update_0"))
