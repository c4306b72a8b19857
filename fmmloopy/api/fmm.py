"""The public API: :class:`Fmm`, a linear operator ``charges -> potentials``, and :func:`evaluate`.

``Fmm(sources, targets)`` builds the tree, the lists, the precomputed KIFMM operators and the
transformed kernels once; each call with new charges reuses all of it. Potentials are
``sum_{i, x_i != y} q_i / (4 pi |x_i - y|)`` at every target ``y``, in the user's order; dipole
sources and gradients at the targets (:class:`~fmmloopy.api.units.Fields`) come from the same
tree and operators (docs/kernels.md).

Every input is checked first (:mod:`fmmloopy.base.validation`), and the memory the FMM needs is
estimated and compared with what the host and the device have before anything large is
allocated (:mod:`fmmloopy.execution.resources`). docs/robustness.md says what each bad input gets.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyopencl as cl

from fmmloopy.api.error_estimate import estimate_error
from fmmloopy.api.periodic import LATTICE_STEP, PeriodicImages, checked_periodic_options
from fmmloopy.api.units import checked_strengths, shaped_results, summed_in_user_units
from fmmloopy.base.devices import choose_device, context_for
from fmmloopy.base.precision import FLOAT64, Precision, get_precision
from fmmloopy.base.progress import stage
from fmmloopy.base.validation import (
    as_float64_points,
    check_point_array,
    validate_flag,
    validate_integer,
    validate_memory_limit,
    validate_recipes,
)
from fmmloopy.driver.builder import RankBoxes, build_plan
from fmmloopy.driver.memory import (
    describe_problem,
    estimate_before_tree,
    estimate_memory,
    with_vectors,
)
from fmmloopy.driver.plan import Plan
from fmmloopy.driver.preparation import KernelPreparation, kernel_requests
from fmmloopy.execution.device_setup import DeviceVClasses, device_point_keys
from fmmloopy.execution.kernel_arguments import box_list
from fmmloopy.execution.opencl_errors import explain_opencl_error
from fmmloopy.execution.precomputed import get_operators, level_operators
from fmmloopy.execution.resources import ResourceLimitError, check_memory
from fmmloopy.execution.tuning_records import device_pair_flops
from fmmloopy.maths.accuracy import eps_quantities, order_for_eps, validate_eps
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.geometry import M2L_CLASSES
from fmmloopy.maths.green import GreenKernel, check_wave_range, get_kernel
from fmmloopy.maths.kifmm import FIRST_EXPANSION_LEVEL
from fmmloopy.maths.levels import LevelOperators
from fmmloopy.maths.operators import OPERATORS
from fmmloopy.maths.templates import particles_for
from fmmloopy.tree.coordinates import working_coordinates
from fmmloopy.tree.cost import AUTO, CANDIDATES, choose_n_crit, validate_n_crit
from fmmloopy.tree.direct_lists import direct_where_cheaper
from fmmloopy.tree.leaf_relative import refuse_unresolved_points
from fmmloopy.tree.lists import InteractionLists, build_interaction_lists
from fmmloopy.tree.nested import nest_heavy_rows
from fmmloopy.tree.octree import (
    MAX_DEPTH_LIMIT,
    Tree,
    build_tree_from,
    root_box_side,
    sort_in_cube,
    sort_points,
    tree_boxes,
)
from fmmloopy.tree.periodic import cell_root, into_cell, periodic_tree, real_rows

#: The most strength vectors one evaluation carries; a call with more runs in passes. The
#: pairwise kernels keep one accumulator per vector and output component, and each count of
#: vectors is a kernel of its own (built once, then cached on disk).
MAX_VECTORS_PER_PASS = 16

#: Orders (points per surface edge) the toolkit accepts.
MIN_ORDER, MAX_ORDER = 2, 16
#: The order without ``order`` or ``eps``.
DEFAULT_ORDER = 6
#: The order of a periodic FMM without ``order`` or ``eps``: one more than in free space, whose
#: 1e-6 the far images' smooth field (about the potentials' own size) would spend (measured on
#: random neutral charges, potentials' relative L2 error: 4.5e-6 at order 6, 4.5e-7 at 7).
DEFAULT_PERIODIC_ORDER = 7


class Fmm:
    """The kernel-independent FMM for fixed sources and targets, applied to many charge vectors.

    ``sources`` and ``targets`` are ``(N, 3)`` arrays of real numbers (``targets=None``: the
    sources), in any memory layout; N may be 0 (the potentials are then zeros, or empty).
    ``kernel`` is the Green's function: ``"laplace"`` (the default), a built-in one with its
    parameters (``"yukawa:kappa=10"``), an expression (``"exp(-kappa*r)/(4*pi*r):kappa=10"``)
    or a :class:`~fmmloopy.maths.green.GreenKernel` (docs/kernels.md); a kernel without
    homogeneity has its operators precomputed per level.
    ``order`` is the number of points per edge of the equivalent and check surfaces
    (``6 (order - 1)**2 + 2`` points), 2 to 16; ``n_crit`` the most points per leaf (``"auto"``,
    the default: chosen for these points and this order by a cost model,
    :mod:`fmmloopy.tree.cost`; the choice is :attr:`n_crit`) (a leaf at
    ``max_depth`` holds more when points crowd closer than the tree resolves); ``device`` an
    OpenCL device or ``"cpu"``/``"gpu"``/a name; ``recipes`` a recipe name for every operator or
    a mapping operator -> recipe name (default: the device's own; a periodic FMM's mapping may
    name ``"lattice"`` too, its far lattice's launch, else M2M's recipe runs it);
    ``memory_limit`` the most bytes
    of host memory the FMM may take (default: what the host has available); ``w_x_direct``:
    W- and X-list interactions with a box of at most ``n_e`` particles are summed directly,
    which is exact and cheaper (:mod:`fmmloopy.tree.direct_lists`; False keeps M2P/P2L for all);
    ``verify_recipes``: every launch under a recipe that is not shipped (a user's, or an edited
    shipped file) is first compared with the ``sequential`` recipe on this tree, the reference on
    sampled target boxes including the largest boxes and longest lists, and a mismatch raises
    :class:`~fmmloopy.tuning.recipe.RecipeError` (False skips that, with an
    :class:`~fmmloopy.driver.builder.UnverifiedRecipeWarning`; for benchmarking);
    ``dtype``: the kernels' precision, ``np.float64`` (the default) or ``np.float32`` (half the
    bytes moved and twice the vector lanes, for about 4 to 6 correct digits; the points are
    rounded to float32 once, the precomputed operators are rounded from float64, and results
    come back as float32; docs/fmm.md);
    ``periodic``: the side ``L`` of a periodic cell ``[0, L)^3``, or its corners ``(lower,
    upper)`` (a cube): the potentials (and gradients) of the charges (and dipoles) and of all
    their images under the lattice ``n L``, in the Ewald sum's convention (tin-foil boundary; a
    net charge neutralised by a uniform background), every point wrapped into the cell first;
    the Laplace kernel in float64; default order 7 (docs/fmm.md, "Periodic boundaries").
    ``periodic_axes``: the cell's periodic axes, ``"xyz"`` (the default), two of them (a slab,
    e.g. ``"xy"``) or one (a wire, e.g. ``"z"``), as a string, a sequence of names or three
    booleans (``(True, True, False)``): the plain sum over the images along those
    axes only, of neutral charges (a net charge is refused), with the points inside the cell
    along the free axes (docs/fmm.md, "Slabs and wires").

    Raises ValueError for bad input and :class:`~fmmloopy.execution.resources.ResourceLimitError` (a
    MemoryError) with the estimate when the problem cannot fit.

    Threads: calls on one ``Fmm`` from several threads are safe and run one after another (they
    share its device buffers); for evaluations in parallel, build one ``Fmm`` per thread.

    Far points and crowds: the points are shifted and scaled exactly so that every squared
    distance is a normal float64 (:mod:`fmmloopy.tree.coordinates`; a ValueError where no scale can
    hold them), and a leaf at ``max_depth`` whose direct sum would be costly (a cluster, an
    outlier's whole point set, coincident points) is summed by a nested FMM
    (:attr:`nested_rows`, :mod:`fmmloopy.tree.nested`).
    """

    def __init__(self, sources, targets=None, *, kernel: str | GreenKernel = "laplace",
                 order: int | None = None, n_crit: int | str = "auto", device=None,
                 recipes: str | Mapping[str, str] | None = None, max_depth: int = 20,
                 memory_limit: float | None = None, w_x_direct: bool = True,
                 verify_recipes: bool = True, dtype=np.float64, eps: float | None = None,
                 eps_for: str | Iterable[str] = "charges", periodic=None,
                 periodic_axes: str = "xyz"):
        #: ``eps``: the relative L2 error asked for, None where the order was given;
        #: ``eps_quantities``: what it holds for (:func:`~fmmloopy.maths.accuracy.
        #: eps_quantities`: ``"charge potential"``, ...), empty without ``eps``.
        if periodic is not None and order is None and eps is None:
            order = DEFAULT_PERIODIC_ORDER
        order, self.eps, self.eps_quantities = checked_accuracy(order, eps, eps_for)
        precision = get_precision(dtype)
        if eps is not None and precision != FLOAT64:
            raise ValueError(f"eps is measured for float64 FMMs; give order= for dtype "
                             f"{precision.name} (docs/fmm.md, 'float32')")
        n_crit = validate_n_crit(n_crit)
        max_depth = validate_integer(max_depth, "max_depth", 0, MAX_DEPTH_LIMIT)
        kernel = get_kernel(kernel).base
        cell = checked_periodic_options(periodic, periodic_axes, kernel, eps, precision,
                                        max_depth)
        # A periodic FMM's far lattice is a launch of its own (M2M's kernel, under M2M's
        # recipe unless named).
        recipes = validate_recipes(recipes, [*OPERATORS] + ([LATTICE_STEP] if cell is not None
                                                             else []))
        memory_limit = validate_memory_limit(memory_limit)
        w_x_direct = validate_flag(w_x_direct, "w_x_direct")
        verify_recipes = validate_flag(verify_recipes, "verify_recipes")
        # Shapes and dtypes first: the memory check comes before any copy of the points.
        sources = check_point_array(sources, "sources")
        targets = None if targets is None else check_point_array(targets, "targets")
        if eps is not None:  # the order eps needs over these points' root box
            empty = not len(sources) or (targets is not None and not len(targets))
            order = order_for_eps(eps, kernel, 0.0 if empty else root_box_side(sources, targets),
                                  self.eps_quantities, targets_are_sources=targets is None)
        self.nsources = len(sources)
        self.ntargets = self.nsources if targets is None else len(targets)
        self._targets_are_sources = targets is None
        self._take_options(kernel=kernel, order=order, n_crit=n_crit,
                           device=choose_device(device), recipes=recipes, max_depth=max_depth,
                           memory_limit=memory_limit, w_x_direct=w_x_direct,
                           verify_recipes=verify_recipes, precision=precision)
        #: The periodic cell (:class:`~fmmloopy.api.periodic.PeriodicCell`, in user
        #: coordinates), or None: free space.
        self.periodic = cell
        # "auto" may choose any candidate: the check before the tree assumes the fewest boxes
        # (it refuses only what cannot fit; the check after the tree has the real counts).
        self.memory_estimate = estimate_before_tree(
            self.nsources, self.ntargets, targets is None, self.order,
            CANDIDATES[-1] if n_crit == AUTO else n_crit,
            real_bytes=precision.dtype.itemsize)
        check_memory(self.memory_estimate, self.device, self._what, memory_limit)
        self._set_points(sources, targets, n_crit)

    def _set_points(self, sources: np.ndarray, targets: np.ndarray | None,
                    n_crit: int | str) -> None:
        """Working coordinates, tree, lists and plan of checked ``sources`` and ``targets``."""
        clock = time.perf_counter()
        sources = as_float64_points(sources, "sources")
        targets = None if targets is None else as_float64_points(targets, "targets")
        #: ``(sources, targets)`` in user coordinates, float64 (targets None: the sources;
        #: the arrays given where they were float64 already): what :meth:`estimate_error`
        #: sums directly.
        self.user_points = (sources, targets)

        #: The FMM works in coordinates relative to ``coordinate_origin``
        #: (:func:`~fmmloopy.tree.coordinates.origin`): the centre of the points' bounding box along
        #: the axes where it lies far from 0 (the kernels are translation invariant), so boxes
        #: and surfaces far from the origin keep their precision; and multiplied by
        #: ``2**-coordinate_exponent`` (0 unless they span less than 2**-100 or more than
        #: 2**100, or a far point beside close ones needs it): the tree is in those units.
        if self.periodic is None:
            self.coordinate_origin, self.coordinate_exponent, sources, targets = \
                working_coordinates(sources, targets, self.kernel.homogeneity,
                                    self.kernel.name, self.precision)
        else:  # the cell's centre at 0, its side in [1, 2): a power of two, exact
            self.coordinate_origin, self.coordinate_exponent, self._working_cell = \
                self.periodic.working()
            sources = np.ldexp(sources - self.coordinate_origin, -self.coordinate_exponent)
            targets = None if targets is None else np.ldexp(
                targets - self.coordinate_origin, -self.coordinate_exponent)
        # What the previous positions built (update): the new ones rebuild it. The points'
        # copy and working coordinates count as the tree's set-up.
        self.setup_seconds = {"tree": time.perf_counter() - clock}
        self._plans, self._last_plan, self.nested_rows = {}, None, []

        if self.nsources == 0 or self.ntargets == 0:
            # Nothing to sum: no tree (it needs a point), no kernels; calls return zeros.
            self.tree = self.lists = self.evaluated_lists = self.operators = None
            self.plan = Plan(self.queue, [], {})
            return
        try:
            self._build(sources, targets, n_crit, self._options["max_depth"],
                        self._options["recipes"])
        except ResourceLimitError:
            raise
        except MemoryError as exc:
            raise ResourceLimitError(
                f"{self._what} ran out of host memory ({exc}); the estimate was "
                f"{self.memory_estimate.describe()}") from exc
        finally:
            # The kernel thread ends with the set-up, also a refused one (a process that
            # exits while it builds in the OpenCL runtime aborts); the plan has built what it
            # launches, so the thread builds nothing more.
            preparation, self._preparation = self._preparation, None
            if preparation is not None:
                preparation.stop()
                preparation.join()

    def update(self, sources, targets=None) -> None:
        """Move the points: new positions of the same number of sources (and of targets, given
        here exactly when they were given to the constructor), in the same order as before.

        Kept: the options, :attr:`n_crit` (for ``n_crit="auto"`` the one chosen for the first
        positions; build a new ``Fmm`` to choose again), the device and its queue, the
        precomputed operators and the transformed, built kernels (this process holds them).
        Rebuilt: the working coordinates, the tree, the interaction lists and the plan (lists
        per launch, uploads, device buffers); :attr:`setup_seconds` holds this rebuild's
        stages. A call after ``update`` gives what a new ``Fmm`` with these options and this
        ``n_crit`` gives for the new positions. What the constructor would refuse (shapes, NaN or
        inf, points no working coordinates hold, a Helmholtz box beyond the order's range, a
        problem that does not fit in memory) raises the same error here, and the FMM stays as
        it was."""
        if self._rank_boxes is not None and self.periodic is None:
            raise TypeError("update() moves the points of a whole FMM; a rank of a "
                            "DistributedFmm is rebuilt by the DistributedFmm")
        if (targets is None) != self._targets_are_sources:
            raise ValueError(
                "update() takes targets exactly when the FMM was built with them: this one "
                + ("has none (its targets are its sources); pass sources only"
                   if self._targets_are_sources else "has targets of its own; pass both"))
        sources = check_point_array(sources, "sources")
        targets = None if targets is None else check_point_array(targets, "targets")
        for name, points, count in (("sources", sources, self.nsources),
                                    ("targets", targets, self.ntargets)):
            if points is not None and len(points) != count:
                raise ValueError(f"update() moves the FMM's {count} {name}: got {len(points)} "
                                 f"{name} (build a new Fmm for a different number of points)")
        with self._lock:
            # The rebuild only rebinds attributes: a refusal part-way (a Helmholtz box past the
            # order's range, memory) puts the previous ones back, so nothing mixes the new
            # working coordinates with the old tree.
            previous = dict(self.__dict__)
            try:
                self._set_points(sources, targets, self.n_crit if self.n_crit is not None
                                 else self._options["n_crit"])
            except BaseException:
                self.__dict__.clear()
                self.__dict__.update(previous)
                raise

    def _build(self, sources, targets, n_crit, max_depth, recipes) -> None:
        # The operators before the tree: the choice of n_crit weighs the far field by the
        # flops of the compressed M2L they hold. A homogeneous kernel's do not depend on the
        # points: loaded (or precomputed) on a thread while the points are sorted.
        loader = ThreadPoolExecutor(1, thread_name_prefix="fmmloopy operators")
        try:
            loading = loader.submit(get_operators, self.kernel, self.order) \
                if self.kernel.homogeneity is not None else None
            clock = time.perf_counter()
            with stage(f"sorting {self.nsources} sources and {self.ntargets} targets"):
                # The Morton keys on the device (the same keys: tests/test_device_setup.py).
                points = self._sorted_points(sources, targets, max_depth)
            self.setup_seconds["tree"] += time.perf_counter() - clock
            check_wave_range(self.kernel, 2 * points.half_width, self.order)  # before
            # precomputing; a kernel without homogeneity: the operators of the first level with
            # expansions, whose half-width the root cube fixes.
            clock = time.perf_counter()
            with stage(f"operators of {self.kernel.label} at order {self.order} (precomputed "
                       "or from the operator cache)"):
                first = loading.result() if loading is not None else get_operators(
                    self.kernel, self.order,
                    half_width=math.ldexp(points.half_width, -FIRST_EXPANSION_LEVEL))
            self.setup_seconds["precompute"] = time.perf_counter() - clock
        finally:
            loader.shutdown(wait=False)
        # The plan's kernels from the disk kernel cache or the shipped ones, built on a thread
        # while the host builds the tree and lists (the plan finds them ready, or waits for
        # them). Started here, not before: with the precomputation on a thread too, three
        # threads on two cores made the set-up slower.
        self._preparation = KernelPreparation(
            kernel_requests(self.expansion, first.ranks(), self.kernel), self.queue, recipes,
            self.precision)

        clock = time.perf_counter()
        with stage("the tree" + (" (n_crit chosen by the cost model)" if n_crit == AUTO
                                 else "")):
            boxes = None  # the boxes of these points for n_crit, where made already
            if n_crit == AUTO:
                n_crit, self.n_crit_candidates = choose_n_crit(
                    points, self.order,
                    device_pair_flops(self.device),
                    first.far_field_flops())
                self.n_crit = n_crit
                self._what = describe_problem(self.nsources, self.ntargets, self.order, n_crit)
                # The chosen candidate's boxes, made while choosing; the FMM keeps the
                # candidates' counts, not their boxes (at 10^7 points tens of MB).
                boxes = next(work.boxes for work in self.n_crit_candidates
                             if work.n_crit == n_crit)
                self.n_crit_candidates = [dataclasses.replace(work, boxes=None)
                                          for work in self.n_crit_candidates]
            if self.periodic is None:
                self.tree = build_tree_from(points, n_crit, boxes)
                #: The tree of a periodic FMM's cell and images
                #: (:class:`~fmmloopy.tree.periodic.Periodic`), None in free space.
                self.periodic_tree = None
            else:
                cell = self._working_cell
                self.periodic_tree = periodic_tree(
                    points, n_crit, tree_boxes(points, n_crit, warn=True) if boxes is None
                    else boxes, cell.side, self.expansion.n_e, device_point_keys(self.queue),
                    cell.axes)
                self.tree = self.periodic_tree.tree
                self._rank_boxes = RankBoxes(
                    with_sources=self.periodic_tree.source_counts > 0,
                    upward=self.periodic_tree.real & (self.periodic_tree.source_counts > 0))
                self._images = PeriodicImages(self.periodic_tree, cell, self.order)
            if self._leaf_relative:
                refuse_unresolved_points(self.tree, self.precision)
        self.setup_seconds["tree"] += time.perf_counter() - clock
        clock = time.perf_counter()
        with stage(f"operators of the tree's {self.tree.nlevels} levels"):
            #: The precomputed operators of every level (:class:`~fmmloopy.maths.levels.
            #: LevelOperators`: one set scaled per level, or a set per level for a kernel
            #: without homogeneity).
            self.operators = level_operators(self.kernel, self.order,
                                             self.tree.level_half_widths)
        self.setup_seconds["precompute"] += time.perf_counter() - clock
        clock = time.perf_counter()
        with stage(f"interaction lists of {self.tree.nboxes} boxes"):
            self.lists = build_interaction_lists(self.tree)
            counted = self.tree
            if self.periodic_tree is not None:  # the cell's rows; an image counts as its box
                self.lists = real_rows(self.lists, self.periodic_tree.real)
                counted = dataclasses.replace(
                    self.tree, box_source_counts=self.periodic_tree.source_counts)
            #: The lists the plan sums: :attr:`lists`, with small W/X boxes moved to U
            #: (w_x_direct).
            self.evaluated_lists = (
                direct_where_cheaper(counted, self.lists, self.expansion.n_e,
                                     source_leaves=self._leaf_relative)
                if self._w_x_direct else self.lists)
        self.setup_seconds["lists"] = time.perf_counter() - clock
        self._plan_tree(recipes)

    @classmethod
    def for_rank(cls, tree: Tree, lists: InteractionLists, operators: LevelOperators,
                 rank_boxes: RankBoxes, *, kernel: GreenKernel, order: int, n_crit: int,
                 device: cl.Device, recipes, max_depth: int, memory_limit: float | None,
                 w_x_direct: bool, verify_recipes: bool, precision: Precision = FLOAT64
                 ) -> Fmm:
        """The FMM of one rank of a distributed FMM (:mod:`fmmloopy.api.distributed`): its own
        tree and lists (the rank's essential boxes, its own and its ghost points, in the
        working coordinates) and the rank's box selection; it sums in tree order through
        :meth:`_evaluate` (the distributed FMM moves strengths and results)."""
        self = cls.__new__(cls)
        self.nsources, self.ntargets = tree.nsources, tree.ntargets
        self._take_options(kernel=kernel, order=order, n_crit=n_crit, device=device,
                           recipes=recipes, max_depth=max_depth, memory_limit=memory_limit,
                           w_x_direct=w_x_direct, verify_recipes=verify_recipes,
                           precision=precision)
        self.coordinate_origin, self.coordinate_exponent = np.zeros(3), 0
        self.tree, self.lists, self.evaluated_lists, self.operators = tree, lists, lists, operators
        self._rank_boxes = rank_boxes
        self._plan_tree(recipes)
        return self

    def _take_options(self, *, kernel: GreenKernel, order: int, n_crit: int | str,
                      device: cl.Device, recipes, max_depth: int, memory_limit: float | None,
                      w_x_direct: bool, verify_recipes: bool, precision: Precision) -> None:
        """The checked options as attributes, the device's queue and the empty state of a new
        FMM (``nsources`` and ``ntargets`` set first)."""
        self.order, self.kernel = order, kernel
        #: The kernels' precision (:class:`~fmmloopy.base.precision.Precision`).
        self.precision = precision
        #: The real dtype of the kernels and of the results (complex of it for a complex kernel).
        self.dtype = precision.dtype
        #: Whether the kernels store particles relative to their leaf's centre (float32:
        #: :mod:`fmmloopy.tree.leaf_relative`).
        self._leaf_relative = particles_for(precision.dtype).relative
        #: Order, ``n_e`` and surfaces of the expansions
        #: (:class:`~fmmloopy.maths.expansion.Expansion`).
        self.expansion = Expansion(order)
        self._w_x_direct, self._verify_recipes = w_x_direct, verify_recipes
        self.setup_seconds: dict[str, float] = {}
        self._lock = threading.Lock()  # one evaluation at a time: they share the buffers
        #: Plans of other fields (gradients, dipoles) by kernel, built on first use.
        self._plans: dict[GreenKernel, Plan] = {}
        self._last_plan: Plan | None = None
        self._rank_boxes: RankBoxes | None = None  # a distributed FMM's rank, a periodic FMM
        self._images: PeriodicImages | None = None  # a periodic FMM's (periodic=)
        self.periodic = self.periodic_tree = None
        self._preparation: KernelPreparation | None = None  # the plan's kernels, on a thread
        self.device = device
        # Profiled: an evaluation enqueues every launch without a wait and reports each
        # step's seconds from the events (Plan.evaluate).
        self.queue = cl.CommandQueue(context_for(device),
                                     properties=cl.command_queue_properties.PROFILING_ENABLE)
        self._options = dict(kernel=kernel, order=order, n_crit=n_crit, device=device,
                             recipes=recipes, max_depth=max_depth, memory_limit=memory_limit,
                             w_x_direct=w_x_direct, verify_recipes=verify_recipes,
                             dtype=precision.dtype)
        self.nested_rows = []
        #: The most points per leaf: the one given, or the one chosen for ``n_crit="auto"``
        #: (None until a tree is built: no points).
        self.n_crit = None if n_crit == AUTO else n_crit
        #: ``n_crit="auto"``: the :class:`~fmmloopy.tree.cost.TreeWork` of each candidate tried.
        self.n_crit_candidates = []
        self._what = describe_problem(self.nsources, self.ntargets, order, n_crit)
        self._memory_limit = memory_limit

    def _plan_tree(self, recipes) -> None:
        """Nested rows, the memory check with the real counts, and the plan."""
        clock = time.perf_counter()
        #: Direct rows the tree cannot split (a leaf at max_depth holding a cluster, an
        #: outlier's whole point set, coincident points), each summed by an FMM of its own
        #: (:mod:`fmmloopy.tree.nested`); the plan sums the rest.
        with stage("nested FMMs of the leaves the tree cannot split"):
            self.evaluated_lists, self.nested_rows = nest_heavy_rows(
                self.tree, self.evaluated_lists, self._nested_fmm)
        if self.nested_rows:
            self.setup_seconds["nested"] = time.perf_counter() - clock
            clock = time.perf_counter()
        # "plan" from here (or from the search for heavy rows, where there are none): the
        # launches' sizes and memory check, lists per launch, uploads.
        tree, lists = self.tree, self.evaluated_lists
        # The V list by class from the device (the compressed M2L's lists, left there): an
        # FMM of one process whose V list is the tree's (a distributed rank's plan serves boxes
        # its own tree does not show).
        device_v = (DeviceVClasses(tree, lists, self.queue)
                    if self._rank_boxes is None and lists.v is self.lists.v else None)

        def entries(name: str) -> int:  # of a list or a V class (v_<class>)
            if device_v is not None and name.startswith("v"):
                counts = device_v.counts if name == "v" else device_v.entries_per_box(name[2:])
                return int(counts.sum())
            if name.startswith("v_"):
                return len(box_list(tree, lists, name)[1])
            return len(getattr(lists, f"{name}_lists"))

        self._sizes = dict(
            nsources=tree.nsources, ntargets=tree.ntargets, order=self.order,
            nboxes=tree.nboxes, ranks=self.operators.ranks(),
            complex_values=self.kernel.is_complex,
            list_entries={name: entries(name)
                          for name in [*"uvwx", *(f"v_{name}" for name in M2L_CLASSES)]})
        self.memory_estimate = estimate_memory(
            targets_are_sources=tree.targets_are_sources, nlevels=tree.nlevels,
            operator_sets=len(self.operators.sets), real_bytes=self.dtype.itemsize,
            **self._sizes)
        check_memory(self.memory_estimate, self.device, self._what, self._memory_limit)

        try:
            with stage("the plan: lists per launch, transformed kernels (kernel cache or code "
                       "generation), uploads"):
                self.plan = build_plan(tree, lists, self.operators, self.kernel, self.queue,
                                       recipes, verify=self._verify_recipes,
                                       rank_boxes=self._rank_boxes, precision=self.precision,
                                       device_v=device_v, extras=self._extra_launches())
        except cl.Error as exc:  # buffers: kernels report their own errors (RecipeError)
            explanation = explain_opencl_error(exc, self.device) or "allocation failed"
            raise ResourceLimitError(
                f"allocating the device buffers of {self._what} on {self.device.name!r} "
                f"failed: {explanation} (OpenCL: {exc}); the estimate was "
                f"{self.memory_estimate.describe()}") from exc
        # "plan": lists cut per launch and laid out as recipes ask, uploads, buffers;
        # "kernels": transformed kernels (disk kernel cache or code generation), OpenCL builds.
        self.setup_seconds["plan"] = (time.perf_counter() - clock - self.plan.kernel_seconds
                                      - self.plan.verify_seconds)
        with stage(f"OpenCL builds of the plan's kernels on {self.device.name!r}"):
            self.plan.build()
        self.setup_seconds["kernels"] = self.plan.kernel_seconds
        if self.plan.verified_recipes:
            # Recipes that are not shipped, compared with 'sequential' on this tree.
            self.setup_seconds["verify"] = self.plan.verify_seconds

    def _sorted_points(self, sources: np.ndarray, targets: np.ndarray | None, max_depth: int):
        """The points keyed and sorted (:func:`~fmmloopy.tree.octree.sort_points`); a periodic
        FMM's wrapped into its cell, in the root cube of the cell and its images."""
        keys_of = device_point_keys(self.queue)
        if self.periodic is None:
            return sort_points(sources, targets, max_depth, keys_of=keys_of)
        cell = self._working_cell
        sources = into_cell(sources, cell.lower, cell.side, max_depth, cell.axes)
        targets = sources if targets is None else into_cell(targets, cell.lower, cell.side,
                                                            max_depth, cell.axes)
        return sort_in_cube(sources, targets, *cell_root(cell.lower, cell.side), max_depth,
                            keys_of)

    def _nested_fmm(self, sources: np.ndarray, targets: np.ndarray | None) -> Fmm:
        """An FMM with this one's options over points in this one's coordinates."""
        return Fmm(sources, targets, **self._options)

    @property
    def verified_recipes(self) -> frozenset[str]:
        """Recipes this FMM compared with ``sequential`` on its tree before use (those that are
        not shipped; empty when all are shipped or ``verify_recipes=False``)."""
        return self.plan.verified_recipes

    @property
    def last_plan(self) -> Plan:
        """The plan of the last call (of its fields: potentials, gradients, dipoles), or
        :attr:`plan` (the potential of charges) before any call."""
        return self._last_plan or self.plan

    @property
    def eval_seconds(self) -> dict[str, float]:
        """Seconds per operator (and ``total``) of the last call; ``nested``: the nested rows."""
        seconds = dict(self.last_plan.eval_seconds)
        if self.nested_rows and seconds:
            seconds["nested"] = self._nested_seconds
            seconds["total"] += self._nested_seconds
        return seconds

    def __call__(self, charges=None, *, dipoles=None, gradient: bool = False):
        """Potentials at the targets, in the user's order, of ``charges`` (one per source)
        and/or ``dipoles`` (``(N, 3)``: a moment vector per source, whose potential is
        ``m . grad_source G``); with ``gradient=True``, a
        :class:`~fmmloopy.api.units.Fields` ``(potential, gradient)`` with the gradient at the
        targets, ``(M, 3)``.

        Several strength vectors at once: charges ``(N, k)`` give potentials ``(M, k)``
        (dipoles ``(N, 3, k)``, gradients ``(M, 3, k)``), column ``j`` that of column ``j``.
        One call evaluates each pair of the near field once for all ``k`` and applies each
        far-field matrix to the ``k`` expansions together."""
        strengths, kernel, batched = checked_strengths(self.kernel, self.nsources, charges,
                                                       dipoles, gradient)
        check_eps_covers(self, kernel)
        outputs = self.apply(strengths[0] if kernel.n_inputs == 1 else strengths, kernel)
        return shaped_results(np.atleast_2d(outputs), kernel, batched)

    def estimate_error(self, charges=None, *, dipoles=None, gradient: bool = False,
                       samples: int = 1000, seed: int | None = 0, result=None):
        """The relative L2 error of this FMM for these strengths, estimated against a direct
        sum on ``samples`` targets: ``{"potential": ErrorEstimate}`` (and ``"gradient"``),
        each with a 95 % interval (:func:`fmmloopy.api.error_estimate.estimate_error`);
        ``result``: what this FMM returned for these arguments (else it evaluates them).
        A periodic FMM's reference is an Ewald sum, not a direct sum: ValueError (compare with
        :func:`fmmloopy.maths.ewald.ewald_sum` on sampled targets)."""
        if self.periodic is not None:
            raise ValueError("estimate_error compares with a free-space direct sum; a periodic "
                             "FMM's reference is an Ewald sum (fmmloopy.maths.ewald.ewald_sum "
                             "on sampled targets)")
        return estimate_error(self, charges, dipoles=dipoles, gradient=gradient,
                              samples=samples, seed=seed, result=result)

    def fields_kernel(self, *, charges: bool = True, dipoles: bool = False,
                      gradient: bool = False) -> GreenKernel:
        """This FMM's Green's function with the fields of a call: the potential (and with
        ``gradient`` its gradient) of ``charges`` and/or ``dipoles``."""
        return self.kernel.with_fields(
            ("potential", "gradient") if gradient else ("potential",),
            ("charge",) * charges + ("dipole",) * dipoles)

    def apply(self, strengths: np.ndarray, kernel: GreenKernel) -> np.ndarray:
        """``kernel``'s outputs at the targets (user order; ``(M,)``, or ``(n_outputs, M)``) for
        ``strengths`` (user order, checked finite float64, complex128 for a complex kernel;
        ``(N,)``, or ``(n_inputs, N)``):
        this FMM's Green's function with the fields of ``kernel``
        (:meth:`~fmmloopy.maths.green.GreenKernel.with_fields`). What :meth:`__call__` and the
        nested FMMs run."""
        kernel = self.kernel.with_fields(kernel.outputs, kernel.inputs).with_vectors(
            kernel.vectors)
        shape = (kernel.n_outputs, self.ntargets) if kernel.n_outputs > 1 else (self.ntargets,)
        dtype = kernel.value_dtype()
        if self.tree is None:
            return np.zeros(shape, kernel.value_dtype(self.dtype))
        strengths = np.asarray(strengths, dtype=dtype).reshape(
            (kernel.n_inputs, self.nsources))
        chunk = self.vectors_per_pass(kernel.vectors)
        if chunk < kernel.vectors:  # in passes of `chunk` vectors: rows of whole vectors
            single = kernel.single
            rows = single.n_inputs
            parts = [self.apply(strengths[first * rows:(first + chunk) * rows],
                                single.with_vectors(min(chunk, kernel.vectors - first)))
                     for first in range(0, kernel.vectors, chunk)]
            return np.concatenate([np.atleast_2d(part) for part in parts]).reshape(shape)
        source_order = (self.tree.source_user_ids if self.periodic_tree is None
                        else self.periodic_tree.source_order)

        def in_user_order(scaled: np.ndarray) -> np.ndarray:
            in_tree = np.take(scaled, source_order, axis=1)
            with self._lock:
                in_tree_order = self._evaluate(in_tree[0] if kernel.n_inputs == 1 else in_tree,
                                               kernel)
            return np.take(np.atleast_2d(in_tree_order), self.tree.target_tree_ids, axis=1)

        outputs = summed_in_user_units(strengths, kernel, self.coordinate_exponent,
                                       in_user_order, self.precision)
        return outputs[0] if kernel.n_outputs == 1 else outputs

    def vectors_per_pass(self, vectors: int) -> int:
        """How many of ``vectors`` strength vectors one evaluation carries: at most
        :data:`MAX_VECTORS_PER_PASS`, halved until a plan for them fits in memory beside
        this FMM (:func:`~fmmloopy.driver.memory.with_vectors`); ResourceLimitError where
        not even one does."""
        chunk = min(vectors, MAX_VECTORS_PER_PASS)
        while chunk > 1:
            estimate = with_vectors(self.memory_estimate, chunk,
                                    real_bytes=self.dtype.itemsize, **self._sizes)
            try:
                check_memory(estimate, self.device, self._what, self._memory_limit)
                break
            except ResourceLimitError:
                chunk //= 2
        return chunk

    def plan_for(self, kernel: GreenKernel) -> Plan:
        """The plan that evaluates ``kernel``'s fields (built on first use, sharing the
        expansions' buffers of :attr:`plan`; call under the lock). One plan of several
        strength vectors is kept at a time (its buffers are the large ones)."""
        if kernel == self.kernel:
            return self.plan
        if kernel not in self._plans and kernel.vectors > 1:
            self._plans = {known: plan for known, plan in self._plans.items()
                           if known.vectors == 1}
        if kernel not in self._plans:
            with stage(f"the plan of {kernel.label} (kernels, lists, buffers)"):
                plan = build_plan(self.tree, self.evaluated_lists, self.operators, kernel,
                                  self.queue, self._options["recipes"],
                                  verify=self._verify_recipes, share_buffers=self.plan,
                                  rank_boxes=self._rank_boxes, precision=self.precision,
                                  extras=self._extra_launches())
                plan.build()
            self._plans[kernel] = plan
        return self._plans[kernel]

    def _extra_launches(self) -> list:
        """The plan's launches beside the KIFMM's steps: a periodic FMM's far lattice."""
        return [] if self._images is None else [self._images.lattice_launch()]

    def evaluate_in_tree_order(self, strengths: np.ndarray, kernel: GreenKernel,
                               between_passes=None) -> np.ndarray:
        """``kernel``'s outputs in tree order for ``strengths`` in tree order (working units),
        one evaluation at a time (:meth:`_evaluate` under the FMM's lock): what a distributed
        FMM's rank runs, ``between_passes`` its exchange of multipoles."""
        with self._lock:
            return self._evaluate(strengths, kernel, between_passes)

    def _evaluate(self, charges: np.ndarray, kernel: GreenKernel,
                  between_passes=None) -> np.ndarray:
        """Outputs in tree order: the plan's, plus the nested rows'
        (``between_passes``: :meth:`~fmmloopy.driver.plan.Plan.evaluate`'s)."""
        self._last_plan = self.plan_for(kernel)
        images = self._images
        if images is not None:
            strengths = np.reshape(charges, (kernel.n_inputs, -1))
            images.check_strengths(strengths, kernel)
            between_passes = lambda plan: images.between_passes(  # noqa: E731
                plan, strengths, kernel)
        potential = self._last_plan.evaluate(charges, between_passes)
        if images is not None:
            images.finish(self._last_plan, np.atleast_2d(potential), strengths, kernel)
        if self.nested_rows:
            clock = time.perf_counter()
            for row in self.nested_rows:
                row.add_to(potential, charges, kernel)
            self._nested_seconds = time.perf_counter() - clock
        return potential


def checked_accuracy(order, eps, eps_for) -> tuple[int | None, float | None, tuple[str, ...]]:
    """``(order, eps, eps_quantities)`` of a constructor's ``order``, ``eps`` and ``eps_for``:
    the order checked (:data:`DEFAULT_ORDER` without either), or None where ``eps`` chooses it
    (with the points); ValueError where both are given or either is bad."""
    if eps is not None and order is not None:
        raise ValueError(f"give order or eps, not both (order={order!r}, eps={eps!r})")
    if eps is not None:
        return None, validate_eps(eps), eps_quantities(eps_for)
    return (validate_integer(DEFAULT_ORDER if order is None else order, "order", MIN_ORDER,
                             MAX_ORDER), None, ())


def check_eps_covers(fmm, kernel: GreenKernel) -> None:
    """ValueError where a call (``kernel``: its fields) asks ``fmm`` (an :class:`Fmm` or a
    :class:`~fmmloopy.api.distributed.DistributedFmm`) for a quantity its order was not chosen
    for (``eps_for``)."""
    if fmm.eps is None:
        return
    asked = {f"{kind} {field}" for kind in kernel.inputs for field in kernel.outputs}
    missing = sorted(asked - set(fmm.eps_quantities))
    if missing:
        both = [quantity.split() for quantity in asked | set(fmm.eps_quantities)]
        words = sorted({kind + "s" for kind, _ in both}
                       | {field for _, field in both if field != "potential"})
        raise ValueError(
            f"this FMM's order ({fmm.order}) was chosen for eps={fmm.eps:g} on "
            f"{', '.join(fmm.eps_quantities)}; this call asks for {', '.join(missing)} too: "
            f"build it with eps_for={tuple(words)!r}")


def evaluate(sources, charges, targets=None, **options) -> np.ndarray:
    """One FMM evaluation: ``Fmm(sources, targets, **options)(charges)``."""
    return Fmm(sources, targets, **options)(charges)
