"""The two templates under the shipped recipes against independent numpy references.

* P2P on random boxes where every target box lists every source box equals the direct sum over
  all sources (numpy), to ~1e-13.
* Every point-set variant of the pairwise template (particles or surfaces on either side) and the
  matvec template equal the numpy meaning of the template on real box lists.
"""

import numpy as np
import pyopencl.array as cla
import pytest

from fmmloopy.checking.problems import check_problems, tree_problem
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.maths.geometry import INDEX_DTYPE
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.operators import get_operator
from fmmloopy.maths.reference import direct_sum, pairwise_reference
from fmmloopy.maths.templates import BoxParticles, BoxSurface, make_pairwise_kernel
from fmmloopy.tuning.races import silence_benign_races
from fmmloopy.tuning.recipe import RecipeContext
from fmmloopy.tuning.registry import select_recipe

RECIPES = ["sequential", "cpu"]


def _to_device(queue, arrays, names):
    """The arrays a kernel with argument ``names`` takes, on the device."""
    return {k: cla.to_device(queue, v) if isinstance(v, np.ndarray) else v
            for k, v in arrays.items() if k in names}


def _normwise_error(value, reference):
    return np.max(np.abs(value - reference)) / np.max(np.abs(reference))


@pytest.mark.parametrize("recipe", RECIPES)
def test_p2p_all_boxes_equals_direct_sum(recipe, device, queue):
    rng = np.random.default_rng(7)
    sources = rng.random((1200, 3))
    targets = rng.random((700, 3)) * 1.4 - 0.2
    problem = tree_problem("random-boxes", sources, targets, n_crit=30, seed=3)
    tree, inputs = problem.tree, problem.arguments(get_operator("p2p"), {})
    leaves = tree.leaf_boxes
    target_leaves = leaves[tree.box_target_counts[leaves] > 0]
    source_leaves = leaves[tree.box_source_counts[leaves] > 0]
    # Every target leaf lists every source leaf: P2P becomes the full direct sum.
    inputs |= {
        "target_boxes": target_leaves, "ntarget_boxes": len(target_leaves),
        "source_box_lists": np.tile(source_leaves, len(target_leaves)).astype(INDEX_DTYPE),
        "source_box_starts": (np.arange(len(target_leaves) + 1) * len(source_leaves)).astype(
            INDEX_DTYPE),
        "nsource_list_entries": len(target_leaves) * len(source_leaves),
        "result": np.zeros(tree.ntargets),
    }
    p2p = compiled_operator("p2p", device, recipe=recipe)
    result = p2p(queue, **_to_device(queue, inputs, p2p.argument_names))["result"].get()

    # In tree order on both sides; map the user's charges and compare in the user's order too.
    expected = direct_sum(LAPLACE_3D, tree.sources, inputs["strengths"], tree.targets)
    assert np.array_equal(tree.targets_to_user(tree.targets), targets)
    # float64 sums of 1200 terms of size O(1): rounding stays near 1e-15 of the largest value.
    assert _normwise_error(result, expected) < 1e-13


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("targets_kind,sources_kind", [
    ("surface", "particles"), ("particles", "surface"), ("surface", "surface")])
def test_pairwise_surface_variants_match_numpy(recipe, targets_kind, sources_kind, device, queue):
    npoints = 26  # the surface of order 3: 6 (3 - 1)^2 + 2 points
    rng = np.random.default_rng(11)
    unit_surface = rng.uniform(-2.95, 2.95, (3, npoints))
    point_sets = {"particles": BoxParticles(), "surface": BoxSurface(npoints)}
    knl = make_pairwise_kernel("variant", LAPLACE_3D, point_sets[targets_kind],
                               point_sets[sources_kind], accumulate=True)
    chosen = select_recipe("variant", "pairwise", device, recipe)
    # As fmmloopy.execution.compiled does: the recipe's proven-benign write races silenced, no
    # other.
    knl = silence_benign_races(chosen(knl, RecipeContext("variant", "pairwise", device)))
    executor = knl.executor(queue.context)

    problem = check_problems(seed=2)[1]
    inputs = problem.arguments(get_operator("p2p"), {})
    inputs["target_surface"] = inputs["source_surface"] = unit_surface
    if targets_kind == sources_kind == "surface":
        # Two surfaces meet as the FMM's check and equivalent surfaces do: two templates (of
        # radii 2.95 and 1.05), never one point on both. On one template a box would meet its
        # own points at an offset of exactly 0 only where the compiler rounds both sides'
        # centre + half_width * unit alike: NVIDIA's OpenCL contracts one side's into a fused
        # multiply-add under the cpu recipe and leaves a rounding residue (1/r ~ 1e16).
        inputs["source_surface"] = rng.uniform(-1.05, 1.05, (3, npoints))
    if targets_kind == "surface":
        inputs["result"] = rng.standard_normal((problem.tree.nboxes, npoints))
    if sources_kind == "surface":
        inputs["strengths"] = rng.standard_normal((problem.tree.nboxes, npoints))
    names = {arg.name for arg in knl.default_entrypoint.args}
    _, outputs = executor(queue, **_to_device(queue, inputs, names))

    expected = pairwise_reference(LAPLACE_3D, inputs, point_sets[targets_kind],
                                  point_sets[sources_kind])
    assert _normwise_error(outputs["result"].get(), expected) < 1e-13


@pytest.mark.parametrize("recipe", RECIPES)
def test_matvec_matches_numpy(recipe, device, queue):
    from fmmloopy.maths.reference import matvec_reference

    problem = check_problems(seed=5)[2]
    sizes = {"n_target_coeffs": 26, "n_source_coeffs": 56}
    inputs = problem.arguments(get_operator("m2l"), sizes)
    matvec = compiled_operator("m2l", device, recipe=recipe, **sizes)
    result = matvec(queue, **_to_device(queue, matvec.arguments_from(inputs),
                                        matvec.argument_names))
    result = result["target_vectors"].get()
    # Dot products of 56 terms per matrix, a handful of matrices per box: ~1e-15 relative.
    assert _normwise_error(result, matvec_reference(inputs)) < 1e-13
