"""First-use verification of a launch: its kernel against ``sequential`` on the FMM's own tree.

A plan (:func:`fmmloopy.driver.builder.build_plan`) compares every launch under a recipe that is
not shipped (or whose shipped files were edited) with the reference before it keeps it: the real
tree, lists and sizes of that launch, random values, the reference on sampled rows
(:func:`fmmloopy.checking.verification.compare`).
"""

from __future__ import annotations

import numpy as np
import pyopencl as cl

from fmmloopy.base.precision import FLOAT64, Precision
from fmmloopy.checking.verification import compare, random_operands
from fmmloopy.execution.compiled import CompiledOperator, compiled_operator
from fmmloopy.execution.kernel_arguments import tree_arguments
from fmmloopy.maths.green import GreenKernel
from fmmloopy.maths.operators import OperatorSpec
from fmmloopy.tree.octree import Tree
from fmmloopy.tuning.recipe import REFERENCE, RecipeError

__all__ = ["verify_launch"]


def verify_launch(spec: OperatorSpec, kernel: CompiledOperator, sizes: dict[str, int],
                  launch: dict, green: GreenKernel, step: str, tree: Tree,
                  queue: cl.CommandQueue, precision: Precision, seed: int,
                  rsqrt_error: float | None = None) -> None:
    """Compare ``kernel`` with ``sequential`` on this launch (``launch``: its arguments on
    ``tree``; random values from ``seed``), the reference on sampled rows; RecipeError on a
    mismatch, naming the launch (``step``) and the first wrong entries. A kernel of another
    precision than float64 is compared with the float64 host reference on the same inputs
    rounded to it, within that precision's rounding bound; so is one whose ``1/sqrt`` carries
    ``rsqrt_error`` (:func:`~fmmloopy.checking.verification.compare`)."""
    inputs = tree_arguments(tree, precision) | launch | random_operands(
        spec, sizes, tree, np.random.default_rng(seed), green,
        nboxes=launch.get("nboxes", tree.nboxes))
    if spec.template != "matvec":
        inputs["max_box_targets"] = int(tree.box_target_counts[launch["target_boxes"]].max())
    reference = (compiled_operator(spec.name, queue.device, recipe=REFERENCE, kernel=green,
                                   **sizes) if precision == FLOAT64 and rsqrt_error is None
                 else None)
    comparison = compare(kernel, reference, spec, sizes, inputs, queue, green=green,
                         precision=precision, rsqrt_error=rsqrt_error)
    if not comparison.ok:
        allowed = precision.name + " rounding" + ("" if rsqrt_error is None else
                                                  f" and 1/sqrt to {rsqrt_error:.3g}")
        measure = (f"max relative error {comparison.max_relative_error:.3g}"
                   if reference is not None else
                   f"largest error {comparison.max_relative_error:.3g} times its "
                   f"{allowed} bound")
        raise RecipeError(
            f"{kernel.label} differs from {REFERENCE!r} on this FMM's tree ({step} launch over "
            f"{comparison.total_rows} target boxes, {comparison.compared_rows} compared; "
            f"{measure}): {comparison.mismatch}. Run 'fmmloopy check' with this recipe to see "
            "it at other sizes; verify_recipes=False (fmmloopy bench: --no-verify-recipes) "
            "skips this comparison")
