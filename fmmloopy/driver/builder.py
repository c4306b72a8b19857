"""The thin driver: runs the KIFMM's steps over the tree's boxes and moves buffers.

What each step computes and which boxes it serves (its operator, expansions, surfaces, matrices,
level scaling and box selection) is the math layer's (:mod:`fmmloopy.maths.kifmm`); here the
selections are evaluated on the tree, the lists cut per launch, arrays uploaded and buffers
allocated. The steps, in order (KIFMM, Ying-Biros-Zorin 2004):

* upward: ``p2m`` at the leaves with sources, ``uc2e`` there, ``m2m`` level by level up;
* downward: ``m2l`` (V) and ``p2l`` (X) for all levels in one launch each, ``dc2e``, then ``l2l``
  level by level down;
* leaves: ``l2p``, ``m2p`` (W) and ``p2p`` (U) into the potential.

A plan may hold matvec launches beside these steps (:class:`ExtraMatvec`, run first in the
downward pass: a periodic FMM's far lattice), made and verified as every launch is.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from fmmloopy.base.precision import FLOAT64, Precision
from fmmloopy.driver.buffers import (
    allocations,
    base_buffer,
    evaluation_buffer_shapes,
    real_view_name,
    real_views,
    surface_view_name,
    surface_views,
)
from fmmloopy.driver.first_use import verify_launch
from fmmloopy.driver.plan import Launch, Plan, traffic_rows, zero_buffer
from fmmloopy.driver.selection import RankBoxes, device_class, launch_order, recipe_for
from fmmloopy.execution.compiled import CompiledOperator, compiled_operator
from fmmloopy.execution.device_setup import DeviceVClasses
from fmmloopy.execution.kernel_arguments import (
    BoxList,
    box_list,
    box_list_arguments,
    fold_vectors,
    tree_arguments,
)
from fmmloopy.execution.uploads import upload
from fmmloopy.maths.complex_blocks import matvec_request, real_blocks
from fmmloopy.maths.green import GreenKernel
from fmmloopy.maths.kifmm import KifmmStep, step_kernel
from fmmloopy.maths.layouts import FOLDED_VECTORS, TARGET_STRIDE, Grouped, matrix_arguments
from fmmloopy.maths.levels import LevelOperators
from fmmloopy.maths.operators import (
    MATVEC,
    PAIRWISE,
    get_operator,
    matvec_traffic,
    operator_sizes,
)
from fmmloopy.maths.pair_precision import launch_rsqrt_error
from fmmloopy.maths.precompute import KifmmOperators
from fmmloopy.maths.scheme import KIFMM, KifmmScheme, Pass
from fmmloopy.tree.lists import InteractionLists
from fmmloopy.tree.octree import Tree
from fmmloopy.tuning.shipped import needs_verification


@dataclass(frozen=True)
class ExtraMatvec:
    """A matvec launch a plan makes beside the KIFMM's steps, first in the downward pass:
    ``target[t] += scale * matrices[m] @ source[s]`` over the entries ``(t, s, m)`` of
    ``rows`` (a box list with a row per box: starts, source boxes, matrix indices), for the
    target boxes ``target_boxes``. It runs ``operator``'s kernel (its matvec template at the
    matrices' sizes) under the recipe ``recipes`` names for ``step``, else for ``operator``;
    its time is reported as ``step``. First-use verification compares it with
    ``sequential`` on its own list, as every launch (:meth:`_PlanBuilder.add`)."""

    step: str
    operator: str
    target_boxes: np.ndarray
    rows: BoxList
    matrices: np.ndarray
    scale: float
    source: str = "multipole"
    target: str = "check_down"


def _check_matrix_indices(operator: str, indices: np.ndarray, nmatrices: int) -> None:
    """ValueError where a launch's matrix indices leave its ``nmatrices`` matrices."""
    if len(indices) and not 0 <= indices.min() <= indices.max() < nmatrices:
        raise ValueError(f"{operator}: matrix indices outside the {nmatrices} matrices of this "
                         "launch")


class UnverifiedRecipeWarning(UserWarning):
    """Recipes that are not shipped run without first-use verification (verify_recipes=False)."""


class DeclinedRecipeWarning(UserWarning):
    """A recipe asked for by name declines the kernel's complex values; another runs."""


class _PlanBuilder:
    """Cuts the lists for each launch and uploads what launches share, once."""

    def __init__(self, tree: Tree, lists: InteractionLists, operators: LevelOperators,
                 green: GreenKernel, queue: cl.CommandQueue,
                 recipes: str | Mapping[str, str] | None, verify: bool = True,
                 reuse: Mapping[tuple, Launch] | None = None,
                 precision: Precision = FLOAT64, device_v: DeviceVClasses | None = None,
                 check_operators: Iterable[str] = (), eps: float | None = None):
        self.tree, self.lists, self.operators, self.eps = tree, lists, operators, eps
        #: The V classes built on the device, where the plan has them, and the target boxes of
        #: each class's M2L launch, for the first launch to have all made at once.
        self.device_v = device_v
        self.v_class_targets: dict[str, np.ndarray] = {}
        self.precision = precision
        #: Launch key -> a launch of another plan on this tree to take as it is.
        self.reuse = dict(reuse or {})
        self.expansion = operators.expansion
        self.green, self.queue, self.recipes = green, queue, recipes
        self.verify = verify
        #: Operators whose every launch is compared with ``sequential``, shipped or not.
        self.check_operators = frozenset(check_operators)
        self.launches: list[Launch] = []
        #: (index in :attr:`launches`, arguments) of the launches :meth:`finish` makes.
        self._deferred: list[tuple[int, tuple]] = []
        self.kernel_seconds = self.verify_seconds = 0.0
        self.verified: set[str] = set()
        self.unverified: set[str] = set()
        #: (id of a matrix stack, layout) -> (the stack, kept alive so that the id stays its;
        #: its uploaded arguments).
        self._uploaded: dict[tuple, tuple[np.ndarray, dict[str, cla.Array]]] = {}
        #: id of a complex matrix stack -> (the stack, kept alive; its real blocks).
        self._real_blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.shared = {name: self._device(value)
                       for name, value in tree_arguments(tree, precision).items()}
        #: The folded boxes' levels (several strength vectors), uploaded by the first launch.
        self._folded_levels: cla.Array | None = None

    def _device(self, value):
        """Upload an array for one launch (the tree's arrays: once for all), its real or complex
        numbers rounded to the kernels' precision (indices as they are)."""
        if not isinstance(value, np.ndarray):
            return value
        if value.dtype.kind in "fc":
            value = value.astype(self.precision.value_dtype(value.dtype.kind == "c"),
                                 copy=False)
        # Large arrays asynchronously: the runtime copies while the host cuts the next launch's
        # lists; small ones at the buffer's creation, no command enqueued.
        return upload(self.queue, value)

    def _matrices(self, kernel: CompiledOperator, matrices: np.ndarray) -> dict[str, cla.Array]:
        """``matrices`` in the form ``kernel``'s layout takes, uploaded once per plan."""
        key = (id(matrices), kernel.layout)
        if key not in self._uploaded:
            host = matrix_arguments(kernel.layout, matrices)
            self._uploaded[key] = (matrices, {name: self._device(value)
                                              for name, value in host.items()})
        return self._uploaded[key][1]

    def _folded_box_levels(self, levels: np.ndarray) -> cla.Array:
        """The level of each row of the folded boxes (``fold_vectors``), uploaded once."""
        if self._folded_levels is None:
            self._folded_levels = self._device(levels)
        return self._folded_levels

    def _kernel(self, operator: str, green: GreenKernel, step: str | None = None,
                rsqrt_error: float | None = None, **sizes: int) -> CompiledOperator:
        recipe = recipe_for(self.recipes, operator)
        if step is not None and isinstance(self.recipes, Mapping) and step in self.recipes:
            recipe = self.recipes[step]
        clock = time.perf_counter()
        kernel = compiled_operator(operator, self.queue.device, recipe=recipe, kernel=green,
                                   dtype=self.precision.dtype, **sizes, **(
                                       {} if rsqrt_error is None else
                                       {"rsqrt_error": rsqrt_error}))
        self.kernel_seconds += time.perf_counter() - clock
        if recipe is not None and kernel.recipe.name != recipe:
            warnings.warn(f"recipe {recipe!r} declines the complex values of {green.spec}: "
                          f"{kernel.recipe.name!r} runs {operator} in its place",
                          DeclinedRecipeWarning, stacklevel=4)
        return kernel

    def step(self, step: KifmmStep, target_boxes: np.ndarray, evaluation_pass: Pass) -> None:
        """The launches of ``step`` (of ``evaluation_pass``) over ``target_boxes`` (none when
        there are no boxes)."""
        if len(target_boxes) == 0:
            return
        key = (step.name, int(target_boxes[0]), len(target_boxes))
        if get_operator(step.operator).template == PAIRWISE:
            surfaces = {argument: self.expansion.surface(name) for argument, name in step.surfaces}
            green = step_kernel(step, self.green)
            self.add(step.operator, target_boxes,
                     {"strengths": surface_view_name(step.source, green),
                      "result": surface_view_name(step.target, green)},
                     operator_sizes(step.operator, self.expansion.n_e), surfaces,
                     green=green, key=(*key, 0, green), evaluation_pass=evaluation_pass)
            return
        scales = self.operators.level_scales(step, self.tree.level_half_widths)
        for index, (field, source, target) in enumerate(step.chain()):
            matrices = self.operators.stack(field)
            self.add(step.operator, target_boxes,
                     {"source_vectors": source, "target_vectors": target},
                     {"n_target_coeffs": matrices.shape[1], "n_source_coeffs": matrices.shape[2]},
                     {"matrices": matrices, "nmatrices": len(matrices),
                      "level_scales": scales if index == 0 else np.ones_like(scales)},
                     list_name=step.box_list,
                     matrix_offsets=self.operators.matrix_offsets(step, field,
                                                                  self.tree.box_levels),
                     key=(*key, index, self.green.vectors),
                     evaluation_pass=evaluation_pass)

    def add(self, operator: str, target_boxes: np.ndarray, buffers: dict[str, str],
            sizes: dict[str, int], extra: dict, list_name: str | None = None,
            green: GreenKernel | None = None, matrix_offsets: np.ndarray | None = None,
            key: tuple = (), evaluation_pass: Pass = Pass.DOWNWARD,
            rows: BoxList | None = None, step: str | None = None) -> None:
        """A launch of ``operator`` (a pairwise one summing ``green``, default the potential of
        charges) over ``target_boxes`` with ``extra`` arguments (surfaces; matrices, uploaded
        once for all the launches that apply them), walking box list ``list_name`` (default:
        the operator's own) or the list ``rows`` given; ``matrix_offsets`` (per box) are added
        to the matrix indices of the entries into each box (the matrices of its level's set).
        ``step``: the name its time is reported under (default ``operator``), which
        ``recipes`` may name too (:class:`ExtraMatvec`). A launch of :attr:`reuse` with the
        same ``key`` is taken as it is (lists, matrices and kernel already there)."""
        if key and key in self.reuse:
            self.launches.append(self.reuse[key])
            return
        spec = get_operator(operator)
        green = self.green.base if green is None else green
        if spec.template == MATVEC and green.is_complex:
            buffers, extra = self._as_real(buffers, extra)
            green, sizes = matvec_request(green, sizes)
        rsqrt_error = launch_rsqrt_error(spec, green, self.eps)
        kernel = self._kernel(operator, green, step, rsqrt_error, **sizes)
        extra = sizes | extra  # the kernels take their sizes at launch
        on_device = None if rows is not None else self._grouped_on_device(list_name, kernel,
                                                                          matrix_offsets)
        if on_device:
            self._defer_device_grouped(operator, kernel, on_device, target_boxes, buffers, sizes,
                                       extra, key, evaluation_pass)
            return
        starts, entries, matrix_indices = rows if rows is not None else box_list(
            self.tree, self.lists, list_name or spec.box_list)
        if matrix_offsets is not None:
            if (matrix_offsets[target_boxes] < 0).any():
                raise ValueError(f"{operator}: boxes of levels without operators in this launch")
            matrix_indices = (matrix_indices + np.repeat(matrix_offsets, np.diff(starts))
                              ).astype(matrix_indices.dtype)
        cut = box_list_arguments(starts, entries, target_boxes, matrix_indices)
        if matrix_indices is not None and "nmatrices" in extra:
            _check_matrix_indices(operator, cut["matrix_indices"], extra["nmatrices"])
        if spec.template == MATVEC:
            cut = fold_vectors(cut, self.green.vectors, self.tree.box_levels)
        extra = dict(extra)
        matrices = extra.pop("matrices", None)
        host = kernel.arguments_from(cut | extra)
        folded_levels = "box_levels" in host and FOLDED_VECTORS in cut
        if folded_levels:  # the same for every launch
            host.pop("box_levels")
        arguments = self._launch_arguments(kernel, host, matrices)
        if folded_levels:
            arguments["box_levels"] = self._folded_box_levels(cut["box_levels"])
        loops_to_largest = "max_box_targets" in kernel.argument_names
        if loops_to_largest:
            arguments["max_box_targets"] = int(self.tree.box_target_counts[target_boxes].max())
        if needs_verification(kernel.recipe) or operator in self.check_operators:
            if self.verify or operator in self.check_operators:
                clock = time.perf_counter()
                verify_launch(spec, kernel, sizes,
                              cut | extra | ({} if matrices is None else {"matrices": matrices}),
                              green, step or operator, self.tree, self.queue, self.precision,
                              seed=len(self.launches), rsqrt_error=rsqrt_error)
                self.verify_seconds += time.perf_counter() - clock
                self.verified.add(kernel.recipe.name)
            else:
                self.unverified.add(kernel.recipe.name)
        counts = (self.tree.box_target_counts, self.tree.box_source_counts)
        work = spec.work(cut, sizes, *counts, complex_values=green.is_complex)
        self.launches.append(Launch(
            step or operator, kernel, arguments, buffers, work,
            functools.partial(spec.traffic, traffic_rows(cut), sizes, *counts,  # when asked
                              itemsize=self.precision.dtype.itemsize, green=green),
            work * green.flops_per_pair() if spec.template == PAIRWISE else float(work), key,
            evaluation_pass, target_boxes if loops_to_largest else None))

    def _as_real(self, buffers: dict[str, str], extra: dict) -> tuple[dict[str, str], dict]:
        """A complex kernel's matvec launch as the real one of twice the size
        (:func:`~fmmloopy.maths.complex_blocks.matvec_request` gives its kernel and sizes):
        the real views of its buffers, the matrices' real blocks (made once per stack)."""
        matrices = extra["matrices"]
        if id(matrices) not in self._real_blocks:
            self._real_blocks[id(matrices)] = (matrices, real_blocks(matrices))
        return ({argument: real_view_name(name) for argument, name in buffers.items()},
                extra | {"matrices": self._real_blocks[id(matrices)][1]})

    def _launch_arguments(self, kernel: CompiledOperator, host: dict,
                          matrices: np.ndarray | None) -> dict:
        """What ``kernel`` takes of the tree's shared arrays, of ``host`` (uploaded; arrays
        already on the device as they are) and of ``matrices`` (in its layout, uploaded once)."""
        names = set(kernel.argument_names)
        arguments = {name: value for name, value in self.shared.items() if name in names}
        arguments |= {name: self._device(value) for name, value in host.items() if name in names}
        if matrices is not None:
            arguments |= {name: value for name, value in self._matrices(kernel, matrices).items()
                          if name in names}
        if TARGET_STRIDE in names:
            arguments[TARGET_STRIDE] = kernel.layout.target_stride(host["n_target_coeffs"])
        return arguments

    def _grouped_on_device(self, list_name: str | None, kernel: CompiledOperator,
                           matrix_offsets: np.ndarray | None) -> str | None:
        """The V class whose grouped lists this launch takes from the device, or None: a
        launch over one class's V entries (one strength vector, one matrix set for all levels)
        by a kernel of the grouped layout whose first use is not compared with the reference
        on the host lists."""
        name = device_class(list_name or "", self.device_v)
        if (name is None or matrix_offsets is not None or self.green.vectors != 1
                or not isinstance(kernel.layout, Grouped)
                or needs_verification(kernel.recipe) or kernel.operator in self.check_operators):
            return None
        return name

    def _defer_device_grouped(self, operator: str, kernel: CompiledOperator, name: str,
                              target_boxes: np.ndarray, *rest) -> None:
        """:meth:`add` for a launch over V class ``name`` whose grouped lists the device builds
        (:class:`~fmmloopy.execution.device_setup.DeviceVClasses`; the same arrays as the host
        would cut, left on the device): the first such launch enqueues every class's counts;
        the launch takes its place now and is made by :meth:`finish`, so that the host cuts
        the other launches' lists while the device counts."""
        units = self.queue.device.max_compute_units
        if self.v_class_targets:  # every class's lists at once (what grouped() then hands out)
            self.device_v.start({other: (targets, kernel.layout.block_size(len(targets), units))
                                 for other, targets in self.v_class_targets.items()
                                 if len(targets)})
            self.v_class_targets = {}
        self._deferred.append((len(self.launches), (operator, kernel, name, target_boxes, *rest)))
        self.launches.append(None)

    def finish(self) -> None:
        """Make the launches :meth:`_defer_device_grouped` left for later, in their places."""
        deferred, self._deferred = self._deferred, []
        for index, arguments in deferred:
            self.launches[index] = self._device_grouped(*arguments)

    def _device_grouped(self, operator: str, kernel: CompiledOperator, name: str,
                        target_boxes: np.ndarray, buffers: dict[str, str],
                        sizes: dict[str, int], extra: dict, key: tuple,
                        evaluation_pass: Pass) -> Launch:
        """The launch over V class ``name`` of :meth:`_defer_device_grouped`."""
        units = self.queue.device.max_compute_units
        grouped = self.device_v.grouped(name, target_boxes,
                                        kernel.layout.block_size(len(target_boxes), units))
        extra = dict(extra)
        matrices = extra.pop("matrices")
        _check_matrix_indices(operator, grouped["group_matrices"], extra["nmatrices"])
        arguments = self._launch_arguments(kernel, grouped | extra, matrices)
        work = get_operator(operator).work({"source_box_lists": grouped["pair_sources"]}, sizes,
                                           self.tree.box_target_counts,
                                           self.tree.box_source_counts)  # real (add)
        matrices_read = len(np.unique(grouped["group_matrices"]))
        marks, itemsize = grouped["source_marks"], self.precision.dtype.itemsize

        def traffic() -> int:  # read when asked (bench): the set-up does not wait for the fill
            return matvec_traffic(sizes, matrices_read, int(np.count_nonzero(marks.get())),
                                  len(target_boxes), itemsize)
        return Launch(operator, kernel, arguments, buffers, work, traffic, float(work), key,
                      evaluation_pass)

    def extra(self, extra: ExtraMatvec) -> None:
        """The launch of ``extra``, appended (:func:`build_plan` moves it into place)."""
        matrices = np.asarray(extra.matrices)
        self.add(extra.operator, np.asarray(extra.target_boxes),
                 {"source_vectors": extra.source, "target_vectors": extra.target},
                 {"n_target_coeffs": matrices.shape[1], "n_source_coeffs": matrices.shape[2]},
                 {"matrices": matrices, "nmatrices": len(matrices),
                  "level_scales": np.full(self.tree.nlevels, extra.scale)},
                 rows=extra.rows, step=extra.step,
                 key=(extra.step, int(extra.target_boxes[0]), len(extra.target_boxes),
                      self.green.vectors))


def build_plan(tree: Tree, lists: InteractionLists,
               operators: LevelOperators | KifmmOperators,
               green: GreenKernel, queue: cl.CommandQueue,
               recipes: str | Mapping[str, str] | None = None, verify: bool = True,
               share_buffers: Plan | None = None, rank_boxes: RankBoxes | None = None,
               precision: Precision = FLOAT64, device_v: DeviceVClasses | None = None,
               check_operators: Iterable[str] = (),
               extras: Iterable[ExtraMatvec] = (), scheme: KifmmScheme = KIFMM,
               eps: float | None = None) -> Plan:
    """Every launch of the FMM on ``tree``, in dependency order, with its buffers: the
    potentials (and ``green``'s other outputs) of ``green``'s inputs
    (:func:`~fmmloopy.maths.kifmm.step_kernel`).

    ``share_buffers``: a plan of the same tree and operators whose buffers this one uses where
    they have the same shape (the expansions), and whose launches it takes as they are where
    they sum the same kernel (the far field: its cut lists, matrices and kernels are not made
    again), so that plans for other fields of one FMM cost only their point buffers and their
    launches at the user's points; the two must not evaluate at the same time.

    With ``verify``, every launch under a recipe that is not shipped (or whose shipped files
    were edited) is first compared with ``sequential`` on this tree
    (:func:`fmmloopy.tuning.shipped.needs_verification`); a mismatch raises RecipeError.
    Without, such recipes run unverified, with an :class:`UnverifiedRecipeWarning`.

    ``rank_boxes``: the plan of one rank of a distributed FMM (:class:`RankBoxes`).

    ``precision``: the kernels' (:mod:`fmmloopy.base.precision`); coordinates, surfaces,
    matrices and level scales are rounded to it when uploaded, and the buffers hold it. ``eps``:
    the error asked for, which lets pairwise kernels refine ``1/sqrt`` less (:func:`~fmmloopy.
    maths.pair_precision.launch_rsqrt_error`).

    ``device_v``: the V list by class as the device built it from ``tree``
    (:class:`~fmmloopy.execution.device_setup.DeviceVClasses`, the same lists as ``lists``
    holds): which boxes the compressed M2L's steps serve, and the grouped lists of the launches
    that can take them from the device (:meth:`_PlanBuilder._grouped_on_device`).

    ``check_operators``: operators whose launches are all compared with ``sequential`` on this
    tree first, under shipped recipes too (what ``fmmloopy tune`` asks of each candidate);
    a mismatch raises RecipeError.

    ``extras``: matvec launches beside the steps (:class:`ExtraMatvec`), run first in the
    downward pass, after the hook between the passes (:mod:`fmmloopy.driver.evaluation`).
    """
    if isinstance(operators, KifmmOperators):
        operators = LevelOperators.scaled_from(operators)
    reuse = {} if share_buffers is None else {
        launch.key: launch for launch in share_buffers.launches if launch.key}
    # The buffers first, zeroed on a queue of their own: the runtime's threads touch their
    # pages (most of the plan's memory) while the host cuts the lists below, instead of after
    # (docs/history.md, 2026-11-25, "Set-up: overlapped, narrower, pooled").
    shapes = evaluation_buffer_shapes(operators.expansion, operators.ranks(), tree.nboxes,
                                      tree.nsources, tree.ntargets, green, scheme)
    shared = {} if share_buffers is None else share_buffers.buffers
    first_touch = cl.CommandQueue(queue.context, queue.device)
    buffers = {name: shared[name] for name, shape in shapes.items()
               if name in shared and shared[name].shape == shape}
    dtype = green.value_dtype(precision.dtype)
    sizes, pools = allocations(shapes, scheme), scheme.buffer_pools()
    storage: dict[str, cla.Array] = {}
    for name, shape in shapes.items():
        if name in buffers:
            continue
        allocation = pools.get(name, name)
        if allocation not in storage:  # buffers of one pool: views of one allocation
            storage[allocation] = cla.empty(queue, (sizes[allocation],), dtype)
            zero_buffer(first_touch, storage[allocation])
        buffers[name] = cla.Array(queue, shape, dtype, data=storage[allocation].base_data)
    buffers |= surface_views(buffers, green.density_components)
    buffers |= real_views(buffers)
    build = _PlanBuilder(tree, lists, operators, green, queue, recipes, verify, reuse,
                         precision, device_v, check_operators, eps)
    launches = list(launch_order(scheme, tree, lists, rank_boxes, device_v))
    if device_v is not None:
        build.v_class_targets = {step.box_list[2:]: target_boxes for step, target_boxes in launches
                                 if (step.box_list or "").startswith("v_")}
    for step, target_boxes in launches:
        build.step(step, target_boxes, scheme.pass_of(step))
    build.finish()
    made = len(build.launches)
    for extra in extras:
        if len(extra.target_boxes):
            build.extra(extra)
    extra_launches = build.launches[made:]
    del build.launches[made:]
    downward = next((index for index, launch in enumerate(build.launches)
                     if launch.evaluation_pass != Pass.UPWARD), len(build.launches))
    build.launches[downward:downward] = extra_launches
    first_touch.finish()
    if build.unverified:
        warnings.warn(f"recipes {sorted(build.unverified)} are not shipped and run without "
                      "first-use verification against 'sequential' (verify_recipes=False)",
                      UnverifiedRecipeWarning, stacklevel=3)
    return Plan(queue, build.launches, buffers, kernel_seconds=build.kernel_seconds,
                verify_seconds=build.verify_seconds,
                verified_recipes=frozenset(build.verified),
                unverified_recipes=frozenset(build.unverified),
                zero_before=first_uses(build.launches, set(pools)))


def first_uses(launches: list[Launch], names: set[str]) -> dict[int, tuple[str, ...]]:
    """Launch index -> the buffers of ``names`` it is the first launch to use. (A launch may
    read a buffer no launch wrote: M2L entries whose source boxes hold no sources read
    compressed multipoles that no compress step formed, zeros.)"""
    used: set[str] = set()
    first: dict[int, tuple[str, ...]] = {}
    for index, launch in enumerate(launches):
        new = tuple(dict.fromkeys(base_buffer(name) for name in launch.buffers.values()
                                  if base_buffer(name) in names
                                  and base_buffer(name) not in used))
        if new:
            first[index] = new
            used.update(new)
    return first
