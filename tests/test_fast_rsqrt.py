"""fmmloopy.tuning.tools.use_newton_rsqrt: ``c / sqrt(e)`` computed from a first estimate refined
by Newton steps, and split_targets_over_rsqrt (P2P: one target of two by sqrt, the other by the
Newton rsqrt). What they do to a kernel; their accuracy against the sequential kernel, pair by
pair, over r^2 from 1e-30 to 1e30; the self pair r^2 == 0 exactly 0 (no NaN through the select
under -cl-fast-relaxed-math); a variant with too few steps caught by the check."""

import re
import textwrap

import numpy as np
import pyopencl.array as cla
import pytest
from fmmloopy.transforms.cpu import vectorised_pairwise

from fmmloopy.checking.check import ProductionSizes, run_checks
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.maths.geometry import INDEX_DTYPE
from fmmloopy.maths.operators import math_kernel
from fmmloopy.tuning.recipe import REFERENCE, Recipe
from fmmloopy.tuning.tools import (
    NEWTON_RSQRT_ESTIMATES,
    NEWTON_RSQRT_HELPER,
    add_build_options,
    newton_rsqrt_preamble,
    parallelize_box_loop,
    split_targets_over_rsqrt,
    spread_over_local_axis,
    use_builtin_sqrt,
    use_newton_rsqrt,
)

ESTIMATES = sorted(NEWTON_RSQRT_ESTIMATES)
PAIRWISE = ("p2p", "p2m", "l2p", "m2p", "p2l")


def _newton_recipe(estimate: str, steps: int | None = None) -> Recipe:
    """The shipped CPU pairwise recipe's transforms (without its P2P split) with the Newton rsqrt
    (a recipe object of the test's own, not registered)."""
    return Recipe(f"newton_{estimate}_{steps}", ("pairwise",), "any",
                  lambda knl, ctx: use_newton_rsqrt(vectorised_pairwise(knl), estimate, steps),
                  __file__)


def _split_recipe(estimate: str) -> Recipe:
    """The CPU pairwise recipe with the targets split over sqrt and the Newton rsqrt."""
    def transform(knl, ctx):
        knl = split_targets_over_rsqrt(parallelize_box_loop(knl), estimate)
        knl = use_builtin_sqrt(spread_over_local_axis(knl, "itgt", 16))
        return add_build_options(knl, "-cl-fast-relaxed-math")
    return Recipe(f"split_{estimate}", ("pairwise",), "any", transform, __file__)


def test_the_green_function_becomes_a_product_with_rsqrt():
    knl = use_newton_rsqrt(math_kernel("p2p"))
    green = str(knl.default_entrypoint.substitutions["green"].expression)
    assert "rsqrt(" in green and "/" not in green and "sqrt(" not in green.replace("rsqrt(", "")
    key, text = newton_rsqrt_preamble()
    assert (key, text) in knl.default_entrypoint.preambles
    assert f"#define rsqrt(x) {NEWTON_RSQRT_HELPER}(x)" in text
    # Applied again (nothing left to rewrite) or to a kernel without 1/sqrt: unchanged.
    assert use_newton_rsqrt(knl) is knl
    m2l = math_kernel("m2l", n_target_coeffs=8, n_source_coeffs=8)
    assert use_newton_rsqrt(m2l) is m2l


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown estimate 'nope'"):
        use_newton_rsqrt(math_kernel("p2p"), "nope")
    with pytest.raises(ValueError, match="steps must be >= 0"):
        use_newton_rsqrt(math_kernel("p2p"), steps=-1)
    with pytest.raises(ValueError, match="order must be one of"):
        split_targets_over_rsqrt(math_kernel("p2p"), order=5)
    knl = use_newton_rsqrt(math_kernel("p2p"), "bits")
    fresh = math_kernel("p2p")
    both = knl.with_kernel(fresh.default_entrypoint.copy(
        preambles=knl.default_entrypoint.preambles))
    with pytest.raises(ValueError, match="different estimates or steps"):
        use_newton_rsqrt(both, "float")


def _one_pair_per_box(offsets: np.ndarray) -> dict:
    """Box ``i`` holds target ``i`` at the origin and source ``i`` at ``-offsets[i]``, and lists
    only itself: p2p then gives ``G(offsets[i])`` (unit strengths), one pair per target."""
    n = len(offsets)
    index = lambda values: np.asarray(values, dtype=INDEX_DTYPE)  # noqa: E731
    boxes = index(np.arange(n))
    return {
        "target_boxes": boxes, "ntarget_boxes": n,
        "source_box_starts": index(np.arange(n + 1)), "source_box_lists": boxes,
        "nsource_list_entries": n, "nboxes": n,
        "targets": np.zeros((3, n)), "box_target_starts": boxes,
        "box_target_counts": index(np.ones(n)), "ntargets": n, "max_box_targets": 1,
        "sources": np.ascontiguousarray(-offsets.T), "box_source_starts": boxes,
        "box_source_counts": index(np.ones(n)), "nsources": n,
        "strengths": np.ones(n), "result": np.zeros(n),
    }


def _pairs(queue, recipe, offsets, settings=None):
    p2p = compiled_operator("p2p", queue.device, recipe=recipe, settings=settings)
    arrays = {name: cla.to_device(queue, value) if isinstance(value, np.ndarray) else value
              for name, value in _one_pair_per_box(offsets).items()}
    return p2p(queue, **arrays)["result"].get()


def offsets_over_30_decades(rng: np.random.Generator) -> np.ndarray:
    """(2007, 3) offsets with |d| = 1e-15 ... 1e15 (r^2 = 1e-30 ... 1e30): random directions and
    mantissas, the ends of the range exactly, and 5 self pairs (d == 0) among them."""
    radii = np.concatenate([10.0 ** rng.uniform(-15, 15, 2000), [1e-15, 1e15]])
    directions = rng.normal(size=(len(radii), 3))
    offsets = radii[:, None] * directions / np.linalg.norm(directions, axis=1)[:, None]
    return np.concatenate([offsets, np.zeros((5, 3))])[rng.permutation(len(offsets) + 5)]


def assert_every_pair_matches(fast: np.ndarray, reference: np.ndarray, offsets: np.ndarray,
                              label: str) -> None:
    """Pair by pair (:func:`_pairs`): finite, self pairs exactly 0 (no NaN through the select),
    within 1e-14 of the sequential kernel's ``reference`` and of ``1 / (4 pi r)``."""
    r2 = (offsets ** 2).sum(axis=1)
    assert np.all(np.isfinite(fast)), label
    assert np.all(fast[r2 == 0] == 0.0), label
    positive = r2 > 0
    relative = np.abs(fast[positive] - reference[positive]) / np.abs(reference[positive])
    assert relative.max() <= 1e-14, label
    exact = 1 / (4 * np.pi * np.sqrt(r2[positive]))
    assert np.max(np.abs(fast[positive] - exact) / exact) <= 1e-14, label


@pytest.mark.parametrize("estimate", ESTIMATES)
def test_every_pair_equals_the_sequential_kernel_from_1e_30_to_1e30(estimate, queue):
    offsets = offsets_over_30_decades(np.random.default_rng(3))
    r2 = (offsets ** 2).sum(axis=1)
    assert r2[r2 > 0].min() < 1.1e-30 and r2.max() > 0.9e30

    reference = _pairs(queue, REFERENCE, offsets)
    for recipe in (_newton_recipe(estimate), _split_recipe(estimate)):
        assert_every_pair_matches(_pairs(queue, recipe, offsets), reference, offsets,
                                  recipe.name)


def test_the_split_leaves_other_kernels_alone_and_pairs_the_targets(device):
    for name in ("p2m", "l2p", "m2p", "p2l"):
        knl = math_kernel(name, n_surface=8)
        assert split_targets_over_rsqrt(knl) is knl
    code = compiled_operator("p2p", device, recipe=_split_recipe("float")).device_code()
    updates = [line for line in code.splitlines() if line.strip().startswith("acc[")
               and "strengths" in line]
    assert len(updates) == 2
    assert all("rsqrt(" in u and re.search(r"\bsqrt\(", u) for u in updates)


def test_the_generated_code_has_no_sqrt_or_division_in_the_sum(device):
    code = compiled_operator("p2p", device, recipe=_newton_recipe("bits")).device_code()
    update = next(line for line in code.splitlines() if line.strip().startswith("acc = acc +"))
    assert "rsqrt(" in update and not re.search(r"\bsqrt\(", update) and "/" not in update


def _write(tmp_path, body: str):
    path = tmp_path / "newton_recipes.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_the_check_passes_the_newton_rsqrt_on_every_pairwise_operator(tmp_path, device):
    path = _write(tmp_path, """
        from fmmloopy.transforms.cpu import math_options, vectorised_pairwise
        from fmmloopy.tuning.recipe import recipe
        from fmmloopy.tuning.tools import use_newton_rsqrt

        # The cpu recipes' build options on the device (Intel's relaxed math makes the float
        # estimate 14 bits: 1.1e-14 after its one step, docs/performance.md, "CPU runtimes").
        @recipe("pairwise", device="any", name="newton_bits")
        def newton_bits(knl, ctx):
            return use_newton_rsqrt(vectorised_pairwise(knl, 16, math_options(ctx.device)),
                                    "bits")

        @recipe("pairwise", device="any", name="newton_float")
        def newton_float(knl, ctx):
            return use_newton_rsqrt(vectorised_pairwise(knl, 16, math_options(ctx.device)),
                                    "float")
        """)
    results = list(run_checks(device, operators=PAIRWISE, recipes=["newton_bits", "newton_float"],
                              recipe_sources=[path], production=None))
    assert {(r.operator, r.recipe) for r in results} == {
        (operator, name) for operator in PAIRWISE for name in ("newton_bits", "newton_float")}
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    # (the kernels with the coarser 1/sqrt report a fraction of their bound: ok above)
    assert max(r.max_relative_error for r in results if not r.root) < 1e-14


@pytest.mark.parametrize("steps", [1, 3])  # relative errors about 2e-3 and 3e-11
def test_too_few_newton_steps_are_caught_by_the_check(steps, tmp_path, device):
    path = _write(tmp_path, f"""
        from fmmloopy.transforms.cpu import vectorised_pairwise
        from fmmloopy.tuning.recipe import recipe
        from fmmloopy.tuning.tools import use_newton_rsqrt

        @recipe("p2p", device="any", name="newton_{steps}_steps")
        def newton_short(knl, ctx):
            return use_newton_rsqrt(vectorised_pairwise(knl), "bits", steps={steps})
        """)
    results = list(run_checks(device, operators=["p2p"], recipes=[f"newton_{steps}_steps"],
                              recipe_sources=[path], production=ProductionSizes(),
                              fail_fast=True))
    assert results and not any(r.ok for r in results)
    assert all("differs from 'sequential' beyond 1e-12" in r.message for r in results)


def test_the_bits_estimate_with_two_fourth_order_steps_holds_over_60_decades(queue):
    """The ``cpu`` recipe's ``reciprocal_sqrt="bits_newton"`` (the default on Intel's CPU
    runtime): every pair within 1e-14 of the sequential kernel and of ``1 / (4 pi r)`` for
    ``r^2`` from 1e-30 to 1e30, self pairs 0, on whatever device the suite runs."""
    offsets = offsets_over_30_decades(np.random.default_rng(4))
    reference = _pairs(queue, REFERENCE, offsets)
    settings = {"targets_in": "work_items", "reciprocal_sqrt": "bits_newton"}
    fast = _pairs(queue, "cpu", offsets, settings)
    assert_every_pair_matches(fast, reference, offsets, "bits_newton")
