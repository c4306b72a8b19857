"""fmmloopy.execution.compiled, through its public names only: one object per (operator, recipe,
device, kernel, dtype, sizes); recipes that change what a kernel takes are refused; a p2p on a tiny
tree equals the direct sum written out here in numpy, on whatever device the tests run on."""

import dataclasses
import os
import subprocess
import sys

import loopy as lp
import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pytest

from fmmloopy.execution.compiled import CompiledOperator, compiled_operator
from fmmloopy.maths.geometry import INDEX_DTYPE
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.tuning.recipe import REFERENCE, Recipe, RecipeError
from fmmloopy.tuning.registry import select_recipe


def _own_recipe(function, name: str) -> Recipe:
    """A recipe object of the test's own, not registered: passed to compiled_operator as is."""
    return Recipe(name, ("p2p",), "any", function, __file__)


def test_the_same_combination_is_the_same_object(device, default_recipe):
    first = compiled_operator("p2p", device, recipe=REFERENCE)
    assert isinstance(first, CompiledOperator)
    assert (first.operator, first.recipe.name, first.device) == ("p2p", REFERENCE, device)
    assert compiled_operator("p2p", device, recipe=REFERENCE) is first
    # However it is spelled: the recipe as an object, the kernel as one, the dtype as text.
    assert compiled_operator("p2p", device, recipe=select_recipe("p2p", "pairwise", device,
                                                                 REFERENCE)) is first
    assert compiled_operator("p2p", device, recipe=REFERENCE, kernel=LAPLACE_3D,
                             dtype="float64") is first
    # The default recipe is the one the default chain picks, and again one object.
    default = compiled_operator("p2p", device)
    assert default.recipe.name == default_recipe
    assert compiled_operator("p2p", device, recipe=default_recipe) is default
    sizes = {"n_target_coeffs": 6, "n_source_coeffs": 4}
    m2l = compiled_operator("m2l", device, recipe=REFERENCE, **sizes)
    assert compiled_operator("m2l", device, recipe=REFERENCE,
                             **dict(reversed(sizes.items()))) is m2l


def test_another_combination_is_another_object(device):
    first = compiled_operator("p2p", device, recipe=REFERENCE)
    twice = dataclasses.replace(LAPLACE_3D, name="twice_laplace",
                                expression=2 * LAPLACE_3D.expression)
    others = [
        compiled_operator("p2p", device, recipe=REFERENCE, dtype=np.float32),
        compiled_operator("p2p", device, recipe=REFERENCE, kernel=twice),
        compiled_operator("p2m", device, recipe=REFERENCE, n_surface=26),
    ]
    assert len({id(first), *map(id, others)}) == 1 + len(others)
    # The surface's size is an argument of the launch: every size is one kernel.
    assert compiled_operator("p2m", device, recipe=REFERENCE, n_surface=56) is others[-1]


def _strengths_in_float32(knl, ctx):
    entry = knl.default_entrypoint
    args = [arg.copy(dtype=lp.types.to_loopy_type(np.float32)) if arg.name == "strengths"
            else arg for arg in entry.args]
    return knl.with_kernel(entry.copy(args=args))


def _strengths_renamed(knl, ctx):
    return lp.rename_argument(knl, "strengths", "charges")


def test_a_recipe_that_changes_what_the_kernel_takes_is_refused(device):
    # Unchanged, the same kind of recipe object is accepted: the refusals below are the types'.
    kept = compiled_operator("p2p", device, recipe=_own_recipe(lambda knl, ctx: knl, "kept"))
    assert kept.recipe.name == "kept"

    float32 = _own_recipe(_strengths_in_float32, "float32_strengths")
    for _ in range(2):  # refused every time: a refused kernel is not kept
        with pytest.raises(RecipeError, match=r"recipe 'float32_strengths' from .*test_compiled"
                                              r"\.py on operator 'p2p' changed argument "
                                              r"'strengths' from ArrayArg of \S*float64\S* to "
                                              r"ArrayArg of \S*float32\S*; .*not what it takes"):
            compiled_operator("p2p", device, recipe=float32)

    renamed = _own_recipe(_strengths_renamed, "renamed_strengths")
    with pytest.raises(RecipeError, match=r"recipe 'renamed_strengths' .* changed the kernel "
                                          r"arguments from .*'strengths'.* to .*'charges'"):
        compiled_operator("p2p", device, recipe=renamed)


def _tiny_tree(rng):
    """A root (box 0) and its two leaves (boxes 1 and 2), each leaf's U list both leaves: p2p
    over the leaves is then the whole direct sum. The particles are the sources and targets
    both, as in an FMM, so every target meets itself once (a term that must be 0)."""
    counts = np.array([7, 4, 3])  # the root holds its leaves' points
    starts = np.array([0, 0, 4])
    points = rng.random((3, 7))
    index = lambda values: np.asarray(values, dtype=INDEX_DTYPE)  # noqa: E731
    return points, {
        "target_boxes": index([1, 2]), "ntarget_boxes": 2,
        "source_box_starts": index([0, 2, 4]), "source_box_lists": index([1, 2, 2, 1]),
        "nsource_list_entries": 4, "nboxes": 3,
        "targets": points.copy(), "box_target_starts": index(starts),
        "box_target_counts": index(counts), "ntargets": 7, "max_box_targets": 4,
        "sources": points.copy(), "box_source_starts": index(starts),
        "box_source_counts": index(counts), "nsources": 7,
        "strengths": rng.uniform(-1, 1, 7),
        "result": rng.random(7),  # p2p adds into it
    }


def _direct_sum(points, strengths):
    """``sum_j q_j / (4 pi |x_i - x_j|)`` over ``j != i``, by numpy on the host."""
    offsets = points[:, :, None] - points[:, None, :]
    r = np.sqrt((offsets ** 2).sum(axis=0))
    with np.errstate(divide="ignore"):
        green = np.where(r > 0, 1 / (4 * np.pi * r), 0.0)
    return green @ strengths


@pytest.mark.parametrize("recipe", [REFERENCE, None])  # None: the device's default recipe
def test_p2p_on_a_tiny_tree_equals_the_direct_sum(recipe, device, queue):
    points, inputs = _tiny_tree(np.random.default_rng(12))
    p2p = compiled_operator("p2p", device, recipe=recipe)
    assert set(p2p.argument_names) == set(inputs) and p2p.written_names == ["result"]
    expected = inputs["result"] + _direct_sum(points, inputs["strengths"])
    # Run in the shared context, then in another (a launcher of its own): the same numbers.
    # The other context is held here: Intel's CPU runtime fails every use of a context whose
    # last Python reference is gone (clRetainContext: INVALID_CONTEXT), its queue's included.
    other = cl.Context([device])
    for run_queue in (queue, cl.CommandQueue(other)):
        arrays = {name: cla.to_device(run_queue, value) if isinstance(value, np.ndarray)
                  else value for name, value in inputs.items()}
        result = p2p(run_queue, **arrays)["result"].get()
        assert np.all(np.isfinite(result))  # the self terms are 0, not inf
        np.testing.assert_allclose(result, expected, rtol=1e-13,
                                   atol=1e-14 * np.abs(expected).max())


KERNEL_HASHES = """
import os
os.environ["FMMLOOPY_KERNEL_CACHE"] = "off"  # transform every kernel
from loopy.tools import LoopyKeyBuilder
from fmmloopy.base.devices import choose_device
from fmmloopy.checking.check import check_sizes
from fmmloopy.checking.problems import check_problems
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.maths.operators import OPERATORS, get_operator, math_kernel
from fmmloopy.tuning.registry import recipe_names_for
key, device, problem = LoopyKeyBuilder(), choose_device(), check_problems(0)[0]
for operator in OPERATORS:
    sizes = check_sizes(operator, problem)
    print(operator, key(math_kernel(operator, **sizes)))
for operator in ("p2p", "m2l"):
    for recipe in recipe_names_for(operator, get_operator(operator).template):
        print(operator, recipe, key(compiled_operator(operator, device, recipe=recipe,
                                                      **check_sizes(operator, problem)).t_unit))
"""


def test_kernels_hash_alike_in_every_process():
    """loopy's persistent caches (preprocessing, scheduling, code generation) are keyed by a
    hash of the whole kernel: it must not follow Python's per-process string hashing, or every
    new process (every check worker, every test process) misses them and generates every
    kernel again. Two processes with different hash seeds: the same hashes, math-level and
    transformed."""
    def hashes(seed: str) -> list[str]:
        done = subprocess.run([sys.executable, "-c", KERNEL_HASHES], capture_output=True,
                              text=True, timeout=600, env=dict(os.environ, PYTHONHASHSEED=seed))
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()
    first = hashes("1")
    assert len(first) >= 11 + 2 * 3  # every operator; p2p and m2l under three recipes or more
    assert hashes("2") == first
