"""fmmloopy.checking.verification: sampled rows, comparisons that say where, first-use
verification of recipes that are not shipped."""


import numpy as np
import pytest

import fmmloopy
from fmmloopy.base.distributions import plummer
from fmmloopy.checking.problems import production_problems, tree_problem
from fmmloopy.checking.verification import RowFacts, compare, sample_rows, sampled_inputs
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.maths.operators import get_operator
from fmmloopy.tuning.recipe import REFERENCE


def _problem():
    return tree_problem("plummer", plummer(3000, np.random.default_rng(3)), n_crit=20,
                        surface_size=56, rank=24)


def test_sample_holds_the_largest_boxes_longest_lists_and_every_level():
    problem = production_problems()[0]
    spec = get_operator("p2p")
    inputs = problem.arguments(spec, {})
    facts = RowFacts.of(spec, {}, inputs)
    rows = sample_rows(facts)
    assert len(rows) < len(facts.boxes) / 5  # a sample, not the whole launch
    assert facts.targets[rows].max() == facts.targets.max()
    assert facts.list_lengths[rows].max() == facts.list_lengths.max()
    assert facts.sources[rows].max() == facts.sources.max()
    assert set(facts.levels[rows]) == set(facts.levels)
    assert rows[0] == 0 and rows[-1] == len(facts.boxes) - 1
    # The cut launch holds exactly the sampled boxes and their lists.
    cut = sampled_inputs(inputs, rows)
    assert np.array_equal(cut["target_boxes"], inputs["target_boxes"][rows])
    starts = inputs["source_box_starts"]
    for k, row in enumerate(rows):
        assert np.array_equal(
            cut["source_box_lists"][cut["source_box_starts"][k]:cut["source_box_starts"][k + 1]],
            inputs["source_box_lists"][starts[row]:starts[row + 1]])


@pytest.mark.parametrize("operator", ["p2p", "p2m", "m2l"])
def test_compare_agrees_for_the_shipped_recipe(operator, device, queue):
    problem = _problem()
    spec = get_operator(operator)
    sizes = problem.sizes(operator)[0]
    inputs = problem.arguments(spec, sizes)
    candidate = compiled_operator(operator, device, recipe="cpu", **sizes)
    reference = compiled_operator(operator, device, recipe=REFERENCE, **sizes)
    result = compare(candidate, reference, spec, sizes, inputs, queue)
    assert result.ok and result.max_relative_error < 1e-13 and not result.mismatch


def test_compare_names_the_wrong_box_point_and_value(device, queue):
    problem = _problem()
    spec = get_operator("p2p")
    inputs = problem.arguments(spec, {})
    reference = compiled_operator("p2p", device, recipe=REFERENCE)
    # Corrupt the candidate's output by running the reference on all but the last row: the
    # last target box keeps its initial value, which the comparison must locate.
    rows = np.arange(inputs["ntarget_boxes"])
    last_box = int(inputs["target_boxes"][-1])

    class Truncating:
        """A kernel that skips the launch's last target box."""

        written_names = reference.written_names

        def arguments_from(self, arguments):
            return reference.arguments_from(sampled_inputs(arguments, rows[:-1]))

        def __call__(self, queue, **arrays):
            return reference(queue, **arrays)

    result = compare(Truncating(), reference, spec, {}, inputs, queue, rows=rows)
    assert not result.ok
    start = int(inputs["box_target_starts"][last_box])
    count = int(inputs["box_target_counts"][last_box])
    assert result.mismatch.startswith(f"{count} of ")
    assert f"target box {last_box} (row {len(rows) - 1} of {len(rows)}" in result.mismatch
    assert f"target 0 of {count} in the box" in result.mismatch
    assert f"got {inputs['result'][start]:.6g}" in result.mismatch


def test_first_use_verification_costs_one_launch_each_and_is_reported(tmp_path):
    """A user's copy of a shipped recipe passes verification; its time is reported."""
    path = tmp_path / "copy_of_generic.py"
    path.write_text(
        "from fmmloopy.tuning.recipe import recipe\n"
        "from fmmloopy.tuning.tools import parallelize_box_loop\n\n\n"
        "@recipe('pairwise', 'matvec', device='any', name='copy_of_generic')\n"
        "def copy_of_generic(knl, ctx):\n"
        "    return parallelize_box_loop(knl)\n")
    fmmloopy.tuning.registry.load_recipes(path)
    points = plummer(3000, np.random.default_rng(5))
    fmm = fmmloopy.Fmm(points, order=3, n_crit=20, recipes="copy_of_generic")
    assert fmm.verified_recipes == {"copy_of_generic"}
    assert fmm.setup_seconds["verify"] > 0
    shipped = fmmloopy.Fmm(points, order=3, n_crit=20)
    assert shipped.verified_recipes == frozenset() and "verify" not in shipped.setup_seconds
    charges = np.random.default_rng(6).standard_normal(len(points))
    np.testing.assert_allclose(fmm(charges), shipped(charges), rtol=1e-12,
                               atol=1e-12 * np.abs(shipped(charges)).max())
