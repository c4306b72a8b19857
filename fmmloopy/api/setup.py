"""The set-up pipeline of an FMM's points: working coordinates, tree, operators, lists, plan.

:func:`set_up_points` is what :class:`~fmmloopy.api.fmm.Fmm` runs for its points (in the
constructor and in ``update``), :func:`set_up_rank` what a rank of a
:class:`~fmmloopy.api.distributed.DistributedFmm` runs for the tree its ranks agreed on; both end
in :func:`plan_points` (nested FMMs of the leaves a tree cannot split, the memory check with the
real counts, the plan). The result is a :class:`PointsSetUp`: everything an evaluation reads,
replaced as a whole when the points move.

The stages, timed in :attr:`PointsSetUp.setup_seconds`:

1. ``tree``: the points in working coordinates, sorted by Morton key (on the device), the tree
   (``n_crit="auto"``: chosen by the cost model, :mod:`fmmloopy.tree.cost`);
2. ``precompute``: the KIFMM operators of the first level with expansions (a homogeneous
   kernel's one set, loaded on a thread while the points are sorted), then, once the tree and
   lists are built and ``eps``' order settled (:mod:`fmmloopy.api.eps_order`), every level's
   (:mod:`fmmloopy.api.tree_operators`);
3. ``lists``: the interaction lists, small W and X boxes moved to U (``w_x_direct``);
4. ``plan`` and ``kernels``: lists cut per launch, uploads, buffers; the transformed kernels
   (loaded and built on a thread since stage 2, :class:`~fmmloopy.driver.preparation.
   KernelPreparation`); ``verify``: recipes that are not shipped, compared with ``sequential``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyopencl as cl

from fmmloopy.api.eps_order import OrderSearch, settle_order
from fmmloopy.api.flow_setup import (
    FAR_BUFFERS,
    deepest_level,
    depth_limited_by_kernel,
    harmonic_hooks,
    pair_corrections,
)
from fmmloopy.api.options import FmmOptions
from fmmloopy.api.periodic import PeriodicCell, PeriodicImages, check_wrap_precision
from fmmloopy.api.periodic_flow import StokesPeriodicImages
from fmmloopy.api.tree_operators import first_operators, tree_operators
from fmmloopy.base.progress import stage
from fmmloopy.base.validation import as_float64_points
from fmmloopy.driver.builder import build_plan
from fmmloopy.driver.evaluation import PassHooks
from fmmloopy.driver.memory import describe_problem, estimate_memory
from fmmloopy.driver.plan import Plan, merged_plans
from fmmloopy.driver.preparation import KernelPreparation
from fmmloopy.driver.selection import RankBoxes
from fmmloopy.execution.device_setup import DeviceVClasses, device_point_keys
from fmmloopy.execution.kernel_arguments import box_list
from fmmloopy.execution.opencl_errors import explain_opencl_error
from fmmloopy.execution.precomputed import get_operators
from fmmloopy.execution.resources import MemoryEstimate, ResourceLimitError, check_memory
from fmmloopy.execution.tuning_records import kernel_pair_flops
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.geometry import M2L_CLASSES
from fmmloopy.maths.green import GreenKernel, check_wave_range
from fmmloopy.maths.harmonic import HARMONIC_POTENTIALS, harmonic_split, operator_kernel
from fmmloopy.maths.levels import LevelOperators
from fmmloopy.maths.rpy import Overlaps
from fmmloopy.maths.scheme import FAR_FIELD, NEAR_FIELD, plan_kernel_requests
from fmmloopy.maths.templates import particles_for
from fmmloopy.tree.coordinates import working_coordinates
from fmmloopy.tree.cost import AUTO, choose_tree
from fmmloopy.tree.direct_lists import direct_where_cheaper
from fmmloopy.tree.leaf_relative import refuse_unresolved_points
from fmmloopy.tree.lists import InteractionLists, build_interaction_lists
from fmmloopy.tree.nested import nest_heavy_rows
from fmmloopy.tree.octree import (
    Tree,
    build_tree_from,
    in_wider_cube,
    sort_in_cube,
    sort_points,
    tree_boxes,
)
from fmmloopy.tree.periodic import Periodic, cell_root, into_cell, periodic_tree, real_rows

__all__ = ["PointsSetUp", "plan_points", "set_up_points", "set_up_rank"]

#: An FMM with the options of the one being set up over points in its working coordinates
#: (``(sources, targets)``): what sums a leaf the tree cannot split.
NestedFmm = Callable[[np.ndarray, "np.ndarray | None"], object]


@dataclass
class PointsSetUp:
    """What an FMM built from its points: everything an evaluation reads."""

    #: ``(sources, targets)`` in user coordinates, float64 (targets None: the sources; the
    #: arrays given where they were float64 already): what ``estimate_error`` sums directly.
    user_points: tuple
    #: The FMM works in coordinates ``(x - coordinate_origin) 2**-coordinate_exponent``
    #: (:func:`~fmmloopy.tree.coordinates.working_coordinates`: the centre of the points'
    #: bounding box along the axes where it lies far from 0, a power-of-two scale where the
    #: points span extreme ranges; a periodic FMM's cell centred and scaled into [1, 2)).
    coordinate_origin: np.ndarray
    coordinate_exponent: int
    #: Seconds per stage (module docstring).
    setup_seconds: dict[str, float]
    #: The most points per leaf: the one given, or the one chosen for ``n_crit="auto"``.
    n_crit: int | None
    #: Problem description for error messages (points, order, n_crit).
    what: str
    memory_estimate: MemoryEstimate
    tree: Tree | None = None
    lists: InteractionLists | None = None
    #: The lists the plan sums: :attr:`lists`, with small W/X boxes moved to U (w_x_direct)
    #: and the rows of :attr:`nested_rows` taken out.
    evaluated_lists: InteractionLists | None = None
    #: The precomputed operators of every level (:class:`~fmmloopy.maths.levels.
    #: LevelOperators`: one set scaled per level, or a set per level for a kernel without
    #: homogeneity).
    operators: LevelOperators | None = None
    plan: Plan | None = None
    #: ``n_crit="auto"``: the :class:`~fmmloopy.tree.cost.TreeWork` of each candidate tried.
    n_crit_candidates: list = field(default_factory=list)
    #: The root cube's side over the side of the points' bounding cube: 1, or a wider cube
    #: ``n_crit="auto"`` chose (:data:`~fmmloopy.tree.cost.ROOT_SCALES`).
    root_scale: float = 1.0
    #: Direct rows the tree cannot split (a leaf at max_depth holding a cluster, an outlier's
    #: whole point set, coincident points), each summed by an FMM of its own
    #: (:mod:`fmmloopy.tree.nested`).
    nested_rows: list = field(default_factory=list)
    #: A periodic FMM's tree of its cell and images (:class:`~fmmloopy.tree.periodic.
    #: Periodic`), its cell in working coordinates and what its evaluations add
    #: (:class:`~fmmloopy.api.periodic.PeriodicImages`); None in free space.
    periodic_tree: Periodic | None = None
    working_cell: PeriodicCell | None = None
    images: PeriodicImages | None = None
    #: The boxes a plan serves beyond what its tree shows: a distributed FMM's rank, or a
    #: periodic FMM's images (:class:`~fmmloopy.driver.builder.RankBoxes`).
    rank_boxes: RankBoxes | None = None
    #: Sizes of the plan's buffers and lists (what :func:`~fmmloopy.driver.memory.
    #: with_vectors` takes).
    sizes: dict = field(default_factory=dict)
    #: The pairs the RPY tensor or the regularized Stokeslet corrects on the host
    #: (:func:`~fmmloopy.api.flow_setup.pair_corrections`: overlapping spheres, blobs on
    #: themselves; tree order), found at the first evaluation that needs them; False where the
    #: FMM adds none (a nested row's FMM: the outer FMM's pairs hold the row's).
    overlaps: Overlaps | bool | None = None
    #: Where updates kept the boxes (:mod:`fmmloopy.api.moving`): the boxes that held sources
    #: and targets when each plan was made (every plan's steps serve those; a box the points
    #: left since may gain some again). None: those of :attr:`tree`.
    planned_holders: tuple[np.ndarray, np.ndarray] | None = None

    def extra_launches(self) -> list:
        """The plan's launches beside the KIFMM's steps: a periodic FMM's far lattice."""
        return [] if self.images is None else self.images.launches()

    def pass_hooks(self, charges: np.ndarray, green, hooks: PassHooks) -> PassHooks:
        """What an evaluation of ``charges`` (tree order) summing ``green`` adds to the passes:
        a periodic FMM's images (:meth:`~fmmloopy.api.periodic.PeriodicImages.pass_hooks`), a
        far field of Laplace sums their charges and velocities (:func:`harmonic_hooks`, with
        ``hooks``' exchange between the passes), else ``hooks`` (a distributed FMM's exchange,
        or none)."""
        split = harmonic_split(green)
        if split is not None:
            if split.psi_dipole is not None and self.overlaps is None:
                self.overlaps = pair_corrections(self.tree, split)
            harmonic = harmonic_hooks(self.tree, split, green, charges,
                                       self.overlaps if split.psi_dipole is not None else None,
                                       None if self.images is None else self.images.centre)
            if self.images is not None:
                return self.images.pass_hooks(harmonic, charges, green, split)
            return dataclasses.replace(harmonic, between=hooks.between)  # a rank's exchange
        return hooks if self.images is None else self.images.pass_hooks(charges, green)

    def plan_for(self, green, options: FmmOptions, queue: cl.CommandQueue) -> Plan:
        """A plan of this tree summing ``green`` (another field of the charges), sharing the
        expansions' buffers of :attr:`plan`."""
        with stage(f"the plan of {green.label} (kernels, lists, buffers)"):
            plan = _build_plans(self, options, queue, green, share_buffers=self.plan)
            plan.build()
        if self.planned_holders is not None:  # boxes an update emptied: not in this plan
            self.planned_holders = (
                self.planned_holders[0] & (self.tree.box_source_counts > 0),
                self.planned_holders[1] & (self.tree.box_target_counts > 0))
        return plan


def _build_plans(setup: PointsSetUp, options: FmmOptions, queue: cl.CommandQueue,
                 green: GreenKernel, share_buffers: Plan | None = None,
                 device_v: DeviceVClasses | None = None) -> Plan:
    """The plan of ``green`` on ``setup``'s tree: the scheme's, or for a kernel whose far field
    is Laplace sums (:mod:`fmmloopy.maths.harmonic`) the Laplace kernel's far field and
    ``green``'s near field merged into one (:func:`~fmmloopy.driver.plan.merged_plans`)."""
    common = dict(verify=options.verify_recipes, rank_boxes=setup.rank_boxes,
                  precision=options.precision, eps=options.eps)
    tree, lists = setup.tree, setup.evaluated_lists
    split = harmonic_split(green)
    if split is None:
        return build_plan(tree, lists, setup.operators, green, queue,
                          options.recipes, share_buffers=share_buffers, device_v=device_v,
                          extras=setup.extra_launches(), scheme=options.scheme, **common)
    far = build_plan(tree, lists, setup.operators, split.far_kernel(green), queue,
                     options.recipes, share_buffers=share_buffers, device_v=device_v,
                     extras=setup.extra_launches(), scheme=FAR_FIELD, **common)
    near = build_plan(tree, lists, setup.operators, green, queue, options.recipes,
                      scheme=NEAR_FIELD, **common)
    return merged_plans(far, near, FAR_BUFFERS)


def set_up_points(options: FmmOptions, queue: cl.CommandQueue, sources: np.ndarray,
                  targets: np.ndarray | None, n_crit: int | str, memory_estimate: MemoryEstimate,
                  what: str, nested_fmm: NestedFmm, order_search: OrderSearch | None = None,
                  on_order: Callable[[FmmOptions], None] | None = None,
                  root_margin: float | None = None) -> PointsSetUp:
    """Working coordinates, tree, lists and plan of checked ``sources`` and ``targets`` (None:
    the sources), under ``options`` (its order set); ``memory_estimate`` and ``what``: the
    check before the tree and the problem's description. No points on either side: no tree
    (it needs a point), no kernels: calls give zeros. ``order_search``
    (:mod:`fmmloopy.api.eps_order`): the order is settled on the points' own tree, starting
    from ``options``'; ``on_order`` is told the options of the order settled on before the
    plan is made (its nested FMMs take that order). ``root_margin``: the root cube extends
    past the points by that fraction of their extent on every side (free space; an update's
    rebuild, :mod:`fmmloopy.api.moving`)."""
    clock = time.perf_counter()
    sources = as_float64_points(sources, "sources")
    targets = None if targets is None else as_float64_points(targets, "targets")
    user_points = (sources, targets)
    cell = None
    if options.periodic is None:
        origin, exponent, sources, targets = working_coordinates(
            sources, targets, options.kernel.homogeneity, options.kernel.name,
            options.precision)
    else:  # the cell's centre at 0, its side in [1, 2): a power of two, exact
        for points, name in ((sources, "sources"), (targets, "targets")):
            if points is not None:
                check_wrap_precision(points, options.periodic, options.order, name)
        origin, exponent, cell = options.periodic.working()
        sources = np.ldexp(sources - origin, -exponent)
        targets = None if targets is None else np.ldexp(targets - origin, -exponent)
    # The points' copy and working coordinates count as the tree's set-up.
    setup = PointsSetUp(user_points, origin, exponent, {"tree": time.perf_counter() - clock},
                        None if n_crit == AUTO else n_crit, what, memory_estimate,
                        working_cell=cell)
    if not len(sources) or (targets is not None and not len(targets)):
        setup.plan = Plan(queue, [], {})
        return setup
    preparation = None
    try:
        points, first = _points_and_operators(setup, options, queue, sources, targets,
                                              root_margin or 0.0)
        # The plan's kernels from the disk kernel cache or the shipped ones, built on a thread
        # while the host builds the tree and lists (the plan finds them ready, or waits for
        # them). Started here, not before: with the precomputation on a thread too, three
        # threads on two cores made the set-up slower.
        preparation = KernelPreparation(
            plan_kernel_requests(options.scheme, Expansion(options.order).n_e, first.ranks(),
                                 options.kernel, options.eps),
            queue, options.recipes, options.precision)
        _tree_and_lists(setup, options, queue, points, first, n_crit)
        if order_search is not None:
            settled = settle_order(setup, options, order_search, lambda at: _tree_and_lists(
                setup, at, queue, points, first_operators(at, points.half_width), n_crit))
            if settled.order != options.order:  # its operators and kernels
                preparation.stop()
                preparation.join()
                first = first_operators(settled, points.half_width)
                tree_operators(setup, settled, queue, first)
                preparation = KernelPreparation(
                    plan_kernel_requests(settled.scheme, Expansion(settled.order).n_e,
                                         setup.operators.ranks(), settled.kernel,
                                         settled.eps),
                    queue, settled.recipes, settled.precision)
                options = settled
            if on_order is not None:
                on_order(options)
        if setup.operators is None:
            tree_operators(setup, options, queue, first)
        plan_points(setup, options, queue, nested_fmm)
    except ResourceLimitError:
        raise
    except MemoryError as exc:
        raise ResourceLimitError(
            f"{setup.what} ran out of host memory ({exc}); the estimate was "
            f"{setup.memory_estimate.describe()}") from exc
    finally:
        # The kernel thread ends with the set-up, also a refused one (a process that exits
        # while it builds in the OpenCL runtime aborts); the plan has built what it launches,
        # so the thread builds nothing more.
        if preparation is not None:
            preparation.stop()
            preparation.join()
    return setup


def set_up_rank(options: FmmOptions, queue: cl.CommandQueue, tree: Tree,
                lists: InteractionLists, operators: LevelOperators, rank_boxes: RankBoxes,
                what: str, memory_estimate: MemoryEstimate,
                nested_fmm: NestedFmm) -> PointsSetUp:
    """The set-up of one rank of a distributed FMM: its own tree and lists (the rank's
    essential boxes, its own and its ghost points, in the working coordinates), the
    operators and the rank's box selection; only the plan is made here."""
    setup = PointsSetUp((None, None), np.zeros(3), 0, {}, options.n_crit, what,
                        memory_estimate, tree=tree, lists=lists, evaluated_lists=lists,
                        operators=operators, rank_boxes=rank_boxes)
    plan_points(setup, options, queue, nested_fmm)
    return setup


def _sorted_points(setup: PointsSetUp, options: FmmOptions, queue: cl.CommandQueue,
                   sources: np.ndarray, targets: np.ndarray | None, margin: float):
    """The points keyed and sorted (:func:`~fmmloopy.tree.octree.sort_points`; the Morton keys
    on the device); a periodic FMM's wrapped into its cell, in the root cube of the cell and
    its images."""
    keys_of = device_point_keys(queue)
    if options.periodic is None:
        # n_crit="auto" may choose a wider root cube: the orders made for the cube chosen.
        return sort_points(sources, targets, deepest_level(
            options, sources, targets, setup.coordinate_exponent), keys_of=keys_of,
            margin=margin, ordered=setup.n_crit is not None)
    cell = setup.working_cell
    sources = into_cell(sources, cell.lower, cell.side, options.max_depth, cell.axes)
    targets = sources if targets is None else into_cell(targets, cell.lower, cell.side,
                                                        options.max_depth, cell.axes)
    return sort_in_cube(sources, targets, *cell_root(cell.lower, cell.side), options.max_depth,
                        keys_of)


def _points_and_operators(setup: PointsSetUp, options: FmmOptions, queue: cl.CommandQueue,
                          sources: np.ndarray, targets: np.ndarray | None, margin: float):
    """Stage 1's sorted points and stage 2's operators of the first level with expansions."""
    kernel, order, seconds = operator_kernel(options.kernel), options.order, setup.setup_seconds
    # The operators before the tree: the choice of n_crit weighs the far field by the flops of
    # the compressed M2L they hold. A homogeneous kernel's do not depend on the points: loaded
    # (or precomputed) on a thread while the points are sorted.
    loader = ThreadPoolExecutor(1, thread_name_prefix="fmmloopy operators")
    try:
        loading = loader.submit(get_operators, kernel, order) \
            if kernel.homogeneity is not None else None
        clock = time.perf_counter()
        with stage(f"sorting {len(sources)} sources and "
                   f"{len(sources if targets is None else targets)} targets"):
            points = _sorted_points(setup, options, queue, sources, targets, margin)
        seconds["tree"] += time.perf_counter() - clock
        check_wave_range(kernel, 2 * points.half_width, order)  # before precomputing; a
        # kernel without homogeneity: the operators of the first level with expansions, whose
        # half-width the root cube fixes.
        clock = time.perf_counter()
        with stage(f"operators of {kernel.label} at order {order} (precomputed or from the "
                   "operator cache)"):
            first = loading.result() if loading is not None else first_operators(
                options, points.half_width)
        seconds["precompute"] = time.perf_counter() - clock
    finally:
        loader.shutdown(wait=False)
    return points, first


def _tree_and_lists(setup: PointsSetUp, options: FmmOptions, queue: cl.CommandQueue, points,
                    first, n_crit: int | str) -> None:
    """The rest of stages 1 to 3 into ``setup``: the tree, the operators per level, the
    lists."""
    kernel, order, seconds = operator_kernel(options.kernel), options.order, setup.setup_seconds
    expansion = Expansion(order)
    clock = time.perf_counter()
    with stage("the tree" + (" (n_crit chosen by the cost model)" if n_crit == AUTO else "")):
        boxes = None  # the boxes of these points for n_crit, where made already
        if n_crit == AUTO:
            # Wider root cubes only where the boxes' size changes no operator and the root is
            # free (a periodic FMM's is its cell's).
            keys_of = device_point_keys(queue)
            wider = (None if options.periodic is not None or kernel.homogeneity is None
                     else lambda scale: in_wider_cube(points, scale, keys_of))
            choice = choose_tree(points, order, kernel_pair_flops(queue.device, options.kernel),
                                 first.far_field_flops(), wider)
            points, n_crit, candidates = choice.points, choice.n_crit, choice.candidates
            setup.n_crit, setup.root_scale = n_crit, choice.root_scale
            # The chosen candidate's boxes, made while choosing; the FMM keeps the candidates'
            # counts, not their boxes (at 10^7 points tens of MB).
            boxes = choice.work.boxes
            setup.n_crit_candidates = [dataclasses.replace(work, boxes=None)
                                       for work in candidates]
        # The problem as described from here on: the order and n_crit this tree is built for.
        user_sources, user_targets = setup.user_points
        setup.what = describe_problem(
            len(user_sources), len(user_sources if user_targets is None else user_targets),
            order, n_crit)
        if options.periodic is None:
            setup.tree = build_tree_from(points, n_crit, boxes,
                                         warn=not depth_limited_by_kernel(options))
        else:
            cell = setup.working_cell
            setup.periodic_tree = images = periodic_tree(
                points, n_crit, tree_boxes(points, n_crit, warn=True) if boxes is None
                else boxes, cell.side, expansion.n_e, device_point_keys(queue), cell.axes)
            setup.tree = images.tree
            setup.rank_boxes = RankBoxes(with_sources=images.source_counts > 0,
                                         upward=images.real & (images.source_counts > 0))
            setup.images = (PeriodicImages if harmonic_split(options.kernel) is None
                            else StokesPeriodicImages)(images, cell, order)
        leaf_relative = particles_for(options.precision.dtype).relative
        if leaf_relative:
            refuse_unresolved_points(setup.tree, options.precision)
    seconds["tree"] += time.perf_counter() - clock
    clock = time.perf_counter()
    with stage(f"interaction lists of {setup.tree.nboxes} boxes"):
        setup.lists = build_interaction_lists(setup.tree)
        counted = setup.tree
        if setup.periodic_tree is not None:  # the cell's rows; an image counts as its box
            setup.lists = real_rows(setup.lists, setup.periodic_tree.real)
            counted = dataclasses.replace(
                setup.tree, box_source_counts=setup.periodic_tree.source_counts)
        setup.evaluated_lists = (
            direct_where_cheaper(counted, setup.lists, expansion.n_e,
                                 source_leaves=leaf_relative)
            if options.w_x_direct else setup.lists)
    seconds["lists"] = time.perf_counter() - clock


def plan_points(setup: PointsSetUp, options: FmmOptions, queue: cl.CommandQueue,
                nested_fmm: NestedFmm) -> None:
    """Stage 4 into ``setup``: nested rows, the memory check with the real counts, the plan."""
    clock = time.perf_counter()
    seconds = setup.setup_seconds
    with stage("nested FMMs of the leaves the tree cannot split"):
        if not depth_limited_by_kernel(options):  # else the leaves are summed directly
            setup.evaluated_lists, setup.nested_rows = nest_heavy_rows(
                setup.tree, setup.evaluated_lists, nested_fmm)
    if setup.nested_rows:
        seconds["nested"] = time.perf_counter() - clock
        clock = time.perf_counter()
    # "plan" from here (or from the search for heavy rows, where there are none): the launches'
    # sizes and memory check, lists per launch, uploads.
    tree, lists, operators = setup.tree, setup.evaluated_lists, setup.operators
    # The V list by class from the device (the compressed M2L's lists, left there): an FMM of
    # one process whose V list is the tree's (a distributed rank's plan serves boxes its own
    # tree does not show).
    device_v = (DeviceVClasses(tree, lists, queue)
                if setup.rank_boxes is None and lists.v is setup.lists.v else None)

    def entries(name: str) -> int:  # of a list or a V class (v_<class>)
        if device_v is not None and name.startswith("v"):
            counts = device_v.counts if name == "v" else device_v.entries_per_box(name[2:])
            return int(counts.sum())
        if name.startswith("v_"):
            return len(box_list(tree, lists, name)[1])
        return len(getattr(lists, f"{name}_lists"))

    split = harmonic_split(options.kernel)  # its operators are Laplace's, four vectors a call
    setup.sizes = dict(
        nsources=tree.nsources, ntargets=tree.ntargets, order=options.order,
        nboxes=tree.nboxes, ranks=operators.ranks(), complex_values=options.kernel.is_complex,
        components=options.kernel.density_components if split is None else 1,
        vectors_per_call=1 if split is None else HARMONIC_POTENTIALS,
        list_entries={name: entries(name)
                      for name in [*"uvwx", *(f"v_{name}" for name in M2L_CLASSES)]})
    setup.memory_estimate = estimate_memory(
        targets_are_sources=tree.targets_are_sources, nlevels=tree.nlevels,
        operator_sets=len(operators.sets), real_bytes=options.precision.dtype.itemsize,
        scheme=options.scheme, **setup.sizes)
    check_memory(setup.memory_estimate, queue.device, setup.what, options.memory_limit)

    try:
        with stage("the plan: lists per launch, transformed kernels (kernel cache or code "
                   "generation), uploads"):
            setup.plan = _build_plans(setup, options, queue, options.kernel, device_v=device_v)
    except cl.Error as exc:  # buffers: kernels report their own errors (RecipeError)
        explanation = explain_opencl_error(exc, queue.device) or "allocation failed"
        raise ResourceLimitError(
            f"allocating the device buffers of {setup.what} on {queue.device.name!r} failed: "
            f"{explanation} (OpenCL: {exc}); the estimate was "
            f"{setup.memory_estimate.describe()}") from exc
    plan = setup.plan
    # "plan": lists cut per launch and laid out as recipes ask, uploads, buffers; "kernels":
    # transformed kernels (disk kernel cache or code generation), OpenCL builds.
    seconds["plan"] = time.perf_counter() - clock - plan.kernel_seconds - plan.verify_seconds
    with stage(f"OpenCL builds of the plan's kernels on {queue.device.name!r}"):
        plan.build()
    seconds["kernels"] = plan.kernel_seconds
    if plan.verified_recipes:  # recipes that are not shipped, compared with 'sequential'
        seconds["verify"] = plan.verify_seconds
