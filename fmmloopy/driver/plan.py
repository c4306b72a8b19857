"""The thin driver: orders kernel launches over the tree and moves arrays; it holds no math.

Passes (KIFMM, Ying-Biros-Zorin 2004), each a few launches of the transformed operators:

* upward: ``p2m`` at the leaves, ``c2e`` (check -> equivalent) there, ``m2m`` level by level up;
* downward: ``m2l`` (V) and ``p2l`` (X) for all levels in one launch each, ``c2e``, then ``l2l``
  level by level down;
* leaves: ``l2p``, ``m2p`` (W) and ``p2p`` (U) into the potential.

A :class:`Plan` is built once per tree (lists cut to the boxes each launch serves, device arrays
uploaded, kernels compiled); :meth:`Plan.evaluate` then only uploads charges and runs it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from fmmloopy.checking.verification import compare, random_operands
from fmmloopy.execution.compiled import CompiledOperator, compiled_operator
from fmmloopy.execution.kernel_arguments import (
    box_list,
    box_list_arguments,
    pair_count,
    tree_arguments,
)
from fmmloopy.maths.green import GreenKernel
from fmmloopy.maths.layouts import empty_launch_arguments
from fmmloopy.maths.operators import PARTICLES, get_operator, operator_sizes
from fmmloopy.maths.precompute import KifmmOperators
from fmmloopy.maths.surfaces import (
    DOWNWARD_CHECK_RADIUS,
    DOWNWARD_EQUIVALENT_RADIUS,
    UPWARD_CHECK_RADIUS,
    UPWARD_EQUIVALENT_RADIUS,
    surface,
)
from fmmloopy.tree.lists import InteractionLists
from fmmloopy.tree.octree import Tree
from fmmloopy.tuning.recipe import REFERENCE, RecipeError
from fmmloopy.tuning.shipped import needs_verification

#: Expansions exist from this level down: V and X lists are empty above it.
FIRST_EXPANSION_LEVEL = 2


@dataclass
class Launch:
    """One kernel launch: a transformed operator and its fixed arguments (device arrays)."""

    step: str  # the name its time is reported under
    kernel: CompiledOperator
    arguments: dict[str, object]
    buffers: dict[str, str]  # kernel argument -> name of a per-evaluation buffer
    work: int  # pairs (pairwise) or flops (matvec), counted from the lists


@dataclass
class Plan:
    """Every launch of one FMM evaluation, in order, with the buffers they share."""

    queue: cl.CommandQueue
    launches: list[Launch]
    buffers: dict[str, cla.Array]
    eval_seconds: dict[str, float] = field(default_factory=dict)
    #: Seconds spent getting the transformed kernels while the plan was made (the disk kernel
    #: cache, or code generation); :meth:`build` adds the OpenCL builds.
    kernel_seconds: float = 0.0
    #: Seconds spent verifying recipes that are not shipped against ``sequential``.
    verify_seconds: float = 0.0
    #: Names of the recipes that were compared with ``sequential`` on this tree.
    verified_recipes: frozenset[str] = frozenset()
    #: Names of the recipes that needed that comparison and ran without it (verify=False).
    unverified_recipes: frozenset[str] = frozenset()

    def evaluate(self, strengths: np.ndarray) -> np.ndarray:
        """Potentials at the targets (tree order) for ``strengths`` (tree order)."""
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        self.buffers["strengths"].set(strengths, queue=self.queue)
        for name, buffer in self.buffers.items():
            if name != "strengths":
                buffer.fill(0.0, queue=self.queue)
        self.queue.finish()
        seconds["setup_buffers"] = time.perf_counter() - start
        for launch in self.launches:
            clock = time.perf_counter()
            self._run(launch)
            self.queue.finish()
            seconds[launch.step] = seconds.get(launch.step, 0.0) + time.perf_counter() - clock
        potential = self.buffers["potential"].get(queue=self.queue)
        seconds["total"] = time.perf_counter() - start
        self.eval_seconds = seconds
        return potential

    def run_step(self, step: str) -> float:
        """Run only the launches of ``step`` (on the current buffers); their seconds."""
        clock = time.perf_counter()
        for launch in self.launches:
            if launch.step == step:
                self._run(launch)
        self.queue.finish()
        return time.perf_counter() - clock

    def work(self, step: str) -> int:
        """Pairs (pairwise steps) or flops (matvec steps) of ``step``, counted from the lists."""
        return sum(launch.work for launch in self.launches if launch.step == step)

    def build(self) -> None:
        """Compile every kernel now: run each once for one target box with an empty list.

        (PoCL compiles a kernel for its work-group size at the first launch that runs a group.)
        The seconds are added to :attr:`kernel_seconds`.
        """
        clock = time.perf_counter()
        for launch in self.launches:
            empty = empty_launch_arguments(launch.kernel.layout)
            self._run(launch, **{name: cla.to_device(self.queue, value)
                                 if isinstance(value, np.ndarray) else value
                                 for name, value in empty.items()})
        self.queue.finish()
        self.kernel_seconds += time.perf_counter() - clock

    def _run(self, launch: Launch, **overrides) -> None:
        """Enqueue ``launch`` with its fixed arguments, the shared buffers and ``overrides``."""
        buffers = {arg: self.buffers[name] for arg, name in launch.buffers.items()}
        launch.kernel(self.queue, **(launch.arguments | buffers | overrides))


class _PlanBuilder:
    """Cuts the lists for each launch and uploads what launches share, once."""

    def __init__(self, tree: Tree, lists: InteractionLists, operators: KifmmOperators,
                 green: GreenKernel, queue: cl.CommandQueue,
                 recipes: str | Mapping[str, str] | None, verify: bool = True):
        self.tree, self.lists, self.operators = tree, lists, operators
        self.green, self.queue, self.recipes = green, queue, recipes
        self.verify = verify
        self.launches: list[Launch] = []
        self.kernel_seconds = self.verify_seconds = 0.0
        self.verified: set[str] = set()
        self.unverified: set[str] = set()
        self.buffer_shapes: dict[str, tuple[int, ...]] = {}
        self.shared = {name: self._device(value) for name, value in tree_arguments(tree).items()}
        self.half_widths = tree.root_half_width / 2.0 ** np.arange(tree.nlevels)

    def _device(self, value):
        """Upload an array (once per launch, or once for all for the tree's arrays)."""
        if not isinstance(value, np.ndarray):
            return value
        return cla.to_device(self.queue, np.ascontiguousarray(value))

    def _kernel(self, operator: str, **sizes: int) -> CompiledOperator:
        recipe = (self.recipes.get(operator) if isinstance(self.recipes, Mapping)
                  else self.recipes)
        clock = time.perf_counter()
        kernel = compiled_operator(operator, self.queue.device, recipe=recipe, kernel=self.green,
                                   **sizes)
        self.kernel_seconds += time.perf_counter() - clock
        return kernel

    def add(self, step: str, operator: str, target_boxes: np.ndarray, buffers: dict[str, str],
            sizes: dict[str, int], **extra) -> None:
        """A launch of ``operator`` over ``target_boxes`` (skipped when there are none)."""
        target_boxes = np.asarray(target_boxes)
        if len(target_boxes) == 0:
            return
        spec = get_operator(operator)
        starts, entries, matrix_indices = box_list(self.tree, self.lists, spec.box_list)
        cut = box_list_arguments(starts, entries, target_boxes, matrix_indices)
        kernel = self._kernel(operator, **sizes)
        names = set(kernel.argument_names)
        arguments = {name: value for name, value in self.shared.items() if name in names}
        arguments |= {name: self._device(value)
                      for name, value in kernel.arguments_from(cut | extra).items()}
        if "max_box_targets" in names:
            arguments["max_box_targets"] = int(self.tree.box_target_counts[target_boxes].max())
        if needs_verification(kernel.recipe):
            if self.verify:
                self._verify(step, spec, kernel, sizes, cut | extra)
            else:
                self.unverified.add(kernel.recipe.name)
        self.launches.append(Launch(step, kernel, arguments, buffers,
                                    self._work(spec, cut, sizes)))

    def _verify(self, step: str, spec, kernel: CompiledOperator, sizes: dict[str, int],
                launch: dict) -> None:
        """Compare ``kernel`` with ``sequential`` on this launch (the real tree, lists and
        sizes; random values), the reference on sampled rows; RecipeError on a mismatch."""
        clock = time.perf_counter()
        tree = self.tree
        inputs = tree_arguments(tree) | launch | random_operands(
            spec, sizes, tree, np.random.default_rng(len(self.launches)))
        if spec.template != "matvec":
            inputs["max_box_targets"] = int(
                tree.box_target_counts[launch["target_boxes"]].max())
        reference = compiled_operator(spec.name, self.queue.device, recipe=REFERENCE,
                                      kernel=self.green, **sizes)
        comparison = compare(kernel, reference, spec, sizes, inputs, self.queue)
        self.verify_seconds += time.perf_counter() - clock
        if not comparison.ok:
            raise RecipeError(
                f"{kernel.label} differs from {REFERENCE!r} on this FMM's tree ({step} launch "
                f"over {comparison.total_rows} target boxes, {comparison.compared_rows} "
                f"compared; max relative error {comparison.max_relative_error:.3g}): "
                f"{comparison.mismatch}. Run 'fmmloopy check' with this recipe to see it at "
                "other sizes; verify_recipes=False (fmmloopy bench: --no-verify-recipes) skips "
                "this comparison")
        self.verified.add(kernel.recipe.name)

    def _work(self, spec, cut: dict, sizes: dict[str, int]) -> int:
        if spec.template == "matvec":
            return 2 * sizes["n_target_coeffs"] * sizes["n_source_coeffs"] * len(
                cut["source_box_lists"])
        tree = self.tree

        def points_per_box(kind: str, particle_counts: np.ndarray) -> np.ndarray:
            if kind == PARTICLES:
                return particle_counts
            return np.full(tree.nboxes, sizes["n_surface"])
        return pair_count(cut, points_per_box(spec.targets, tree.box_target_counts),
                          points_per_box(spec.sources, tree.box_source_counts))

    def matvec(self, step: str, operator: str, target_boxes, source: str, target: str,
               matrices: np.ndarray, scale_name: str | None, **sizes: int) -> None:
        """A matvec launch; matrices ``(nmatrices, n_out, n_in)``, scaled by level."""
        scales = (self.operators.level_scales(scale_name, self.half_widths) if scale_name
                  else np.ones(self.tree.nlevels))
        self.add(step, operator, target_boxes,
                 {"source_vectors": source, "target_vectors": target},
                 {"n_target_coeffs": matrices.shape[1], "n_source_coeffs": matrices.shape[2]},
                 matrices=matrices, nmatrices=len(matrices), level_scales=scales)

    def check_to_equivalent(self, step: str, target_boxes, check: str, equivalent: str,
                            first: np.ndarray, second: np.ndarray, scale_name: str) -> None:
        """``equivalent = scale * second @ (first @ check)`` through a ``<check>_rank`` buffer."""
        between = f"{check}_rank"
        self.buffer_shapes[between] = (self.tree.nboxes, first.shape[0])
        self.matvec(step, "c2e", target_boxes, check, between, first[None], scale_name)
        self.matvec(step, "c2e", target_boxes, between, equivalent, second[None], None)


class UnverifiedRecipeWarning(UserWarning):
    """Recipes that are not shipped run without first-use verification (verify_recipes=False)."""


def build_plan(tree: Tree, lists: InteractionLists, operators: KifmmOperators,
               green: GreenKernel, queue: cl.CommandQueue,
               recipes: str | Mapping[str, str] | None = None, verify: bool = True) -> Plan:
    """Every launch of the FMM on ``tree``, in dependency order, with its buffers.

    With ``verify``, every launch under a recipe that is not shipped (or whose shipped files
    were edited) is first compared with ``sequential`` on this tree
    (:func:`fmmloopy.tuning.shipped.needs_verification`); a mismatch raises RecipeError. Without,
    such recipes run unverified, with an :class:`UnverifiedRecipeWarning`.
    """
    ops, n_e = operators, operators.n_e
    build = _PlanBuilder(tree, lists, ops, green, queue, recipes, verify)
    levels = tree.box_levels
    has_sources = tree.box_source_counts > 0
    has_targets = tree.box_target_counts > 0
    expanded = levels >= FIRST_EXPANSION_LEVEL
    leaves = tree.box_is_leaf
    surface_sizes = operator_sizes("p2m", n_e)

    def surface_at(radius: float) -> np.ndarray:
        return surface(ops.order, radius)

    # Upward pass: multipoles of every box with sources at level >= 2.
    build.add("p2m", "p2m", np.flatnonzero(leaves & has_sources & expanded),
              {"strengths": "strengths", "result": "check_up"}, surface_sizes,
              target_surface=surface_at(UPWARD_CHECK_RADIUS))
    build.check_to_equivalent("c2e", np.flatnonzero(leaves & has_sources & expanded),
                              "check_up", "multipole", ops.uc2e_first, ops.uc2e_second, "uc2e")
    for level in range(tree.nlevels - 2, FIRST_EXPANSION_LEVEL - 1, -1):
        parents = np.flatnonzero(~leaves & has_sources & (levels == level))
        build.matvec("m2m", "m2m", parents, "multipole", "multipole", ops.m2m, "m2m")

    # Downward pass: local expansions of every box with targets at level >= 2.
    with_v = np.diff(lists.v_starts) > 0
    build.matvec("m2l", "m2l", np.flatnonzero(with_v & has_targets), "multipole", "check_down",
                 ops.m2l, "m2l")
    with_x = np.diff(lists.x_starts) > 0
    build.add("p2l", "p2l", np.flatnonzero(with_x & has_targets),
              {"strengths": "strengths", "result": "check_down"}, surface_sizes,
              target_surface=surface_at(DOWNWARD_CHECK_RADIUS))
    build.check_to_equivalent("c2e", np.flatnonzero(has_targets & expanded), "check_down",
                              "local", ops.dc2e_first, ops.dc2e_second, "dc2e")
    for level in range(FIRST_EXPANSION_LEVEL + 1, tree.nlevels):
        children = np.flatnonzero(has_targets & (levels == level))
        build.matvec("l2l", "l2l", children, "local", "local", ops.l2l, "l2l")

    # Leaf pass: potentials at the targets.
    target_leaves = leaves & has_targets
    build.add("l2p", "l2p", np.flatnonzero(target_leaves & expanded),
              {"strengths": "local", "result": "potential"}, surface_sizes,
              source_surface=surface_at(DOWNWARD_EQUIVALENT_RADIUS))
    with_w = np.diff(lists.w_starts) > 0
    build.add("m2p", "m2p", np.flatnonzero(target_leaves & with_w),
              {"strengths": "multipole", "result": "potential"}, surface_sizes,
              source_surface=surface_at(UPWARD_EQUIVALENT_RADIUS))
    build.add("p2p", "p2p", np.flatnonzero(target_leaves),
              {"strengths": "strengths", "result": "potential"}, {})

    shapes = {"strengths": (tree.nsources,), "potential": (tree.ntargets,),
              "check_up": (tree.nboxes, n_e), "multipole": (tree.nboxes, n_e),
              "check_down": (tree.nboxes, n_e), "local": (tree.nboxes, n_e),
              **build.buffer_shapes}
    buffers = {name: cla.zeros(queue, shape, np.float64) for name, shape in shapes.items()}
    if build.unverified:
        warnings.warn(f"recipes {sorted(build.unverified)} are not shipped and run without "
                      "first-use verification against 'sequential' (verify_recipes=False)",
                      UnverifiedRecipeWarning, stacklevel=3)
    return Plan(queue, build.launches, buffers, kernel_seconds=build.kernel_seconds,
                verify_seconds=build.verify_seconds,
                verified_recipes=frozenset(build.verified),
                unverified_recipes=frozenset(build.unverified))
