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

import threading
import time
from collections.abc import Iterable, Mapping

import numpy as np
import pyopencl as cl

from fmmloopy.api.eps_order import first_order
from fmmloopy.api.error_estimate import estimate_error
from fmmloopy.api.moving import (
    KeptBoxesAttempts,
    checked_moves,
    kept_boxes,
    rebuild_margin,
    refresh_plans,
)
from fmmloopy.api.options import (  # noqa: F401 - the orders' range and default, from here too
    DEFAULT_ORDER,
    MAX_ORDER,
    MIN_ORDER,
    FmmOptions,
    check_eps_covers,
    checked_options,
)
from fmmloopy.api.setup import set_up_points, set_up_rank
from fmmloopy.api.units import checked_strengths, shaped_results, summed_in_user_units
from fmmloopy.base.devices import choose_device, context_for
from fmmloopy.base.validation import check_point_array
from fmmloopy.driver.evaluation import NO_HOOKS, PassHooks, evaluate_plan
from fmmloopy.driver.memory import describe_problem, estimate_before_tree, with_vectors
from fmmloopy.driver.plan import Plan
from fmmloopy.driver.selection import RankBoxes
from fmmloopy.execution.resources import ResourceLimitError, check_memory
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.green import GreenKernel
from fmmloopy.maths.harmonic import HARMONIC_POTENTIALS, harmonic_split, kernel_of_call
from fmmloopy.maths.levels import LevelOperators
from fmmloopy.tree.cost import AUTO, CANDIDATES
from fmmloopy.tree.lists import InteractionLists
from fmmloopy.tree.octree import Tree, root_box_side

#: :attr:`Fmm.last_update` after an update that kept the tree's boxes.
KEPT_BOXES = "kept the boxes"

#: The most strength vectors one evaluation carries; a call with more runs in passes. The
#: pairwise kernels keep one accumulator per vector and output component, and each count of
#: vectors is a kernel of its own (built once, then cached on disk).
MAX_VECTORS_PER_PASS = 16


class _FromPoints:
    """An attribute of an :class:`Fmm` held by its points' set-up
    (:class:`~fmmloopy.api.setup.PointsSetUp`, whose field of the same name documents it)."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, fmm, owner=None):
        return self if fmm is None else getattr(fmm.points_setup, self.name)

    def __set__(self, fmm, value) -> None:
        setattr(fmm.points_setup, self.name, value)


class Fmm:
    """The kernel-independent FMM for fixed sources and targets, applied to many charge vectors.

    ``sources`` and ``targets`` are ``(N, 3)`` arrays of real numbers (``targets=None``: the
    sources), in any memory layout; N may be 0 (the potentials are then zeros, or empty).
    ``kernel`` is the Green's function: ``"laplace"`` (the default), a built-in one with its
    parameters (``"yukawa:kappa=10"``), an expression (``"exp(-kappa*r)/(4*pi*r):kappa=10"``)
    or a :class:`~fmmloopy.maths.green.GreenKernel` (docs/kernels.md); a kernel without
    homogeneity has its operators precomputed per level; ``"stokes"`` (``"stokes:mu=0.5"``)
    sums Stokeslets, its far field as Laplace sums (docs/kernels.md, "Stokes").
    ``order`` is the number of points per edge of the equivalent and check surfaces
    (``6 (order - 1)**2 + 2`` points), 2 to 16 (default 6; Stokes 9); ``n_crit`` the most
    points per leaf (``"auto"``, the default: chosen for these points and this order by a
    cost model, :mod:`fmmloopy.tree.cost`; the choice is :attr:`n_crit`) (a leaf at
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
    ``eps`` (instead of ``order``): the relative L2 error asked for, of the quantities
    ``eps_for`` names (``"charges"``, ``"dipoles"``, ``"gradient"``); the order is the lowest
    the measured accuracy table says meets it over the root box, and for the built-in Laplace
    kernel in free space (Yukawa too, its targets its sources, ``kappa L`` up to 10) the lowest
    at or below that which meets it on the tree these points make
    (:mod:`fmmloopy.api.eps_order`; docs/kernels.md, "Accuracy by eps");
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
        options = checked_options(
            kernel=kernel, order=order, n_crit=n_crit, recipes=recipes, max_depth=max_depth,
            memory_limit=memory_limit, w_x_direct=w_x_direct, verify_recipes=verify_recipes,
            dtype=dtype, eps=eps, eps_for=eps_for, periodic=periodic,
            periodic_axes=periodic_axes)
        # Shapes and dtypes first: the memory check comes before any copy of the points.
        sources = check_point_array(sources, "sources")
        targets = None if targets is None else check_point_array(targets, "targets")
        search = None  # the order eps needs: over these points' root box, then their tree
        if options.eps is not None:
            empty = not len(sources) or (targets is not None and not len(targets))
            order, search = first_order(options, 0.0 if empty else root_box_side(
                sources, targets), targets_are_sources=targets is None)
            options = options.with_order(order)
        self._start(options.on(choose_device(device)), len(sources),
                    len(sources) if targets is None else len(targets), targets is None)
        # "auto" may choose any candidate: the check before the tree assumes the fewest boxes
        # (it refuses only what cannot fit; the check after the tree has the real counts).
        estimate = estimate_before_tree(
            self.nsources, self.ntargets, targets is None, self.order,
            CANDIDATES[-1] if options.n_crit == AUTO else options.n_crit,
            real_bytes=self.dtype.itemsize, complex_values=options.kernel.is_complex,
            components=(options.kernel.density_components
                        if harmonic_split(options.kernel) is None else 1))
        what = describe_problem(self.nsources, self.ntargets, self.order, options.n_crit)
        check_memory(estimate, self.device, what, options.memory_limit)
        #: What the points built (:class:`~fmmloopy.api.setup.PointsSetUp`); its fields are
        #: this FMM's attributes of the same names (:attr:`tree`, :attr:`plan`, ...).
        self.points_setup = set_up_points(self.options, self.queue, sources, targets,
                                          options.n_crit, estimate, what, self._nested_fmm,
                                          search, self._settle_order)

    def _settle_order(self, options: FmmOptions) -> None:
        """The options of the order ``eps`` settled on over the points' tree
        (:mod:`fmmloopy.api.eps_order`)."""
        self.options, self.order = options, options.order
        self.expansion = Expansion(options.order)

    # What the points built (:class:`~fmmloopy.api.setup.PointsSetUp`, whose fields say what
    # each holds): replaced as a whole by update().
    user_points = _FromPoints()
    coordinate_origin = _FromPoints()
    coordinate_exponent = _FromPoints()
    setup_seconds = _FromPoints()
    n_crit = _FromPoints()
    n_crit_candidates = _FromPoints()
    root_scale = _FromPoints()
    memory_estimate = _FromPoints()
    tree = _FromPoints()
    lists = _FromPoints()
    evaluated_lists = _FromPoints()
    operators = _FromPoints()
    plan = _FromPoints()
    nested_rows = _FromPoints()
    periodic_tree = _FromPoints()

    def update(self, sources, targets=None) -> None:
        """Move the points: new positions of the same number of sources (and of targets, given
        here exactly when they were given to the constructor), in the same order as before.

        Where the moved points still fit the tree's boxes (every point in a leaf, no leaf past
        twice ``n_crit``, no box gaining a kind of point it held none of:
        :mod:`fmmloopy.api.moving`), the boxes are kept with everything that follows from them
        (interaction lists, operators, the plan's lists, buffers and kernels): the points are
        sorted into the leaves they now occupy and written into the plan. A call then gives
        what an FMM of these options on the kept boxes gives: the order's error against a
        direct sum, like any ``Fmm`` (the boxes differ from those a new ``Fmm`` would build,
        so the two agree to within that error, not bit for bit). Otherwise the set-up is
        rebuilt as a new ``Fmm`` would build it, for a kernel with homogeneity in a root cube
        with room to move (:data:`~fmmloopy.api.moving.MOVING_MARGIN` of the points' extent
        past them on every side). :attr:`last_update` says which, and why. After updates
        whose points the boxes could not hold (other than by leaving the root cube, which is
        found at once), the next ones rebuild without trying for a while
        (:class:`~fmmloopy.api.moving.KeptBoxesAttempts`), so that points that never fit
        (a surface moving off itself) do not pay for the attempt every step.

        Kept in either case: the options, :attr:`n_crit` (for ``n_crit="auto"`` the one chosen
        for the first positions; build a new ``Fmm`` to choose again), the order, the device
        and its queue, the precomputed operators and the built kernels.
        :attr:`setup_seconds` holds this update's stages. What the constructor would refuse
        (shapes, NaN or inf, points no working coordinates hold, a Helmholtz box beyond the
        order's range, a problem that does not fit in memory) raises the same error here,
        and the FMM stays as it was."""
        if self.points_setup.rank_boxes is not None and self.periodic is None:
            raise TypeError("update() moves the points of a whole FMM; a rank of a "
                            "DistributedFmm is rebuilt by the DistributedFmm")
        sources, targets = checked_moves(
            sources, targets, (self.nsources, self.ntargets), self._targets_are_sources,
            "the FMM's", "build a new Fmm for a different number of points")
        with self._lock:
            # Both ways make a new set-up: a refusal part-way (a Helmholtz box past the order's
            # range, memory) leaves the previous one in place.
            kept = self._moving.attempt(
                lambda: kept_boxes(self.points_setup, self.options, self.queue, sources,
                                   targets))
            if not isinstance(kept, str):
                plans = [kept.plan, *(plan for plan in self._plans.values()
                                      if plan is not kept.plan)]
                refresh_plans(kept, plans, self.options)
                self.points_setup, self.last_update = kept, KEPT_BOXES
                return
            n_crit = self.n_crit if self.n_crit is not None else self.options.n_crit
            self.points_setup = set_up_points(self.options, self.queue, sources, targets,
                                              n_crit, self.memory_estimate,
                                              self.points_setup.what, self._nested_fmm,
                                              root_margin=rebuild_margin(self.options))
            self._plans, self._last_plan = {}, None
            self.last_update = f"rebuilt: {kept}"

    @classmethod
    def for_rank(cls, options: FmmOptions, tree: Tree, lists: InteractionLists,
                 operators: LevelOperators, rank_boxes: RankBoxes) -> Fmm:
        """The FMM of one rank of a distributed FMM (:mod:`fmmloopy.api.distributed`), with
        ``options`` (its device and ``n_crit`` chosen): its own tree and lists (the rank's
        essential boxes, its own and its ghost points, in the working coordinates) and the
        rank's box selection (:func:`~fmmloopy.api.setup.set_up_rank`); it sums in tree order
        (:meth:`evaluate_in_tree_order`: the distributed FMM moves strengths and results)."""
        self = cls.__new__(cls)
        self._start(options, tree.nsources, tree.ntargets, tree.targets_are_sources)
        self.points_setup = set_up_rank(
            options, self.queue, tree, lists, operators, rank_boxes,
            describe_problem(tree.nsources, tree.ntargets, options.order, options.n_crit), None,
            self._nested_fmm)
        return self

    def _start(self, options: FmmOptions, nsources: int, ntargets: int,
               targets_are_sources: bool) -> None:
        """The checked options (their device chosen) as attributes, the device's queue and the
        empty state of a new FMM."""
        #: The checked options (:class:`~fmmloopy.api.options.FmmOptions`).
        self.options = options
        self.nsources, self.ntargets = nsources, ntargets
        self._targets_are_sources = targets_are_sources
        self.order, self.kernel, self.device = options.order, options.kernel, options.device
        #: ``eps``: the relative L2 error asked for, None where the order was given;
        #: ``eps_quantities``: what it holds for (:func:`~fmmloopy.maths.accuracy.
        #: eps_quantities`: ``"charge potential"``, ...), empty without ``eps``.
        self.eps, self.eps_quantities = options.eps, options.eps_quantities
        #: The kernels' precision (:class:`~fmmloopy.base.precision.Precision`).
        self.precision = options.precision
        #: The real dtype of the kernels and of the results (complex of it for a complex kernel).
        self.dtype = options.precision.dtype
        #: The periodic cell (:class:`~fmmloopy.api.periodic.PeriodicCell`, in user
        #: coordinates), or None: free space.
        self.periodic = options.periodic
        #: Order, ``n_e`` and surfaces of the expansions
        #: (:class:`~fmmloopy.maths.expansion.Expansion`).
        self.expansion = Expansion(options.order)
        self._lock = threading.Lock()  # one evaluation at a time: they share the buffers
        #: Plans of other fields (gradients, dipoles) by kernel, built on first use.
        self._plans: dict[GreenKernel, Plan] = {}
        self._last_plan: Plan | None = None
        #: The strengths in tree order, per dtype, kept between calls (under the lock).
        self._host_arrays: dict[np.dtype, np.ndarray] = {}
        #: What the last :meth:`update` did: :data:`KEPT_BOXES`, or ``"rebuilt: <why the
        #: boxes could not be kept>"``; None before any update.
        self.last_update: str | None = None
        self._moving = KeptBoxesAttempts()
        # Profiled: an evaluation enqueues every launch without a wait and reports each
        # step's seconds from the events (fmmloopy.driver.evaluation).
        self.queue = cl.CommandQueue(context_for(options.device),
                                     properties=cl.command_queue_properties.PROFILING_ENABLE)

    def _nested_fmm(self, sources: np.ndarray, targets: np.ndarray | None) -> Fmm:
        """An FMM with this one's options over points in this one's coordinates (the RPY
        tensor's overlapping pairs are this one's to add, not the row's)."""
        fmm = Fmm(sources, targets, **self.options.keywords())
        if fmm.points_setup is not None:
            fmm.points_setup.overlaps = False
        return fmm

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

    def __call__(self, charges=None, *, dipoles=None, gradient: bool = False,
                 pressure: bool = False, stresslets=None, hessian: bool = False):
        """Potentials at the targets, in the user's order, of ``charges`` (one per source)
        and/or ``dipoles`` (``(N, 3)``: a moment vector per source, whose potential is
        ``m . grad_source G``); with ``gradient=True``, a
        :class:`~fmmloopy.api.units.Fields` ``(potential, gradient)`` with the gradient at the
        targets, ``(M, 3)``; with ``hessian=True`` (a scalar kernel), a
        :class:`~fmmloopy.api.units.HessianFields` ``(potential, gradient, hessian)``, the
        Hessian ``(M, 3, 3)`` (``d^2 u / d x_i d x_j`` at ``[:, i, j]``; the gradient None
        unless ``gradient=True``).

        Several strength vectors at once: charges ``(N, k)`` give potentials ``(M, k)``
        (dipoles ``(N, 3, k)``, gradients ``(M, 3, k)``), column ``j`` that of column ``j``.
        One call evaluates each pair of the near field once for all ``k`` and applies each
        far-field matrix to the ``k`` expansions together.

        Stokes (``kernel="stokes"``): ``charges`` are forces ``(N, 3)``, ``dipoles`` force
        dipoles ``(N, 3, 3)`` (force component ``b`` along axis ``l`` at ``[:, b, l]``), the
        result the velocities ``(M, 3)``; with ``gradient=True`` and/or ``pressure=True`` a
        :class:`~fmmloopy.api.units.Flow` ``(velocity, gradient, pressure)``;
        ``stresslets=(q, n)`` (strengths ``(N, 3)`` or ``(N, 3, k)``, orientations ``(N, 3)``)
        adds the stresslets' flow (a double layer: :func:`~fmmloopy.maths.green.
        stresslet`), with or without forces."""
        strengths, kernel, batched = checked_strengths(self.kernel, self.nsources, charges,
                                                       dipoles, gradient, pressure, stresslets,
                                                       hessian)
        check_eps_covers(self, kernel)
        outputs = self.apply(strengths[0] if kernel.n_inputs == 1 else strengths, kernel)
        return shaped_results(np.atleast_2d(outputs), kernel, batched)

    def estimate_error(self, charges=None, *, dipoles=None, gradient: bool = False,
                       samples: int | None = None, seed: int | None = 0, result=None):
        """The relative L2 error of this FMM for these strengths, estimated against a direct
        sum on ``samples`` targets (default 1000): ``{"potential": ErrorEstimate}`` (and
        ``"gradient"``), each with a 95 % interval
        (:func:`fmmloopy.api.error_estimate.estimate_error`); ``result``: what this FMM
        returned for these arguments (else it evaluates them). A periodic FMM (Laplace) is
        compared with its lattice's sum (the Ewald sum, a slab's, a wire's images) in numpy, on
        100 targets unless told (each costs every source times the sum's images and waves)."""
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
        kernel = kernel_of_call(self.kernel, kernel)  # Stokes with stresslets: theirs
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
            with self._lock:  # the tree-order strengths: an array kept between calls
                tree_shape = (*scaled.shape[:-1], len(source_order))
                kept = self._host_arrays.get(scaled.dtype)
                if kept is None or kept.shape != tree_shape:
                    kept = self._host_arrays[scaled.dtype] = np.empty(tree_shape, scaled.dtype)
                in_tree = np.take(scaled, source_order, axis=1, out=kept)
                in_tree_order = np.atleast_2d(self._evaluate(
                    in_tree[0] if kernel.n_inputs == 1 else in_tree, kernel))
            if kernel.is_tensor:  # gathered into the (M, components) rows returned: one pass
                return np.take(in_tree_order.T, self.tree.target_tree_ids, axis=0).T
            return np.take(in_tree_order, self.tree.target_tree_ids, axis=1)

        outputs = summed_in_user_units(strengths, kernel, self.coordinate_exponent,
                                       in_user_order, self.precision)
        return outputs[0] if kernel.n_outputs == 1 else outputs

    def vectors_per_pass(self, vectors: int) -> int:
        """How many of ``vectors`` strength vectors one evaluation carries: at most
        :data:`MAX_VECTORS_PER_PASS` far-field vectors (a kernel summed as Laplace sums has
        :data:`~fmmloopy.maths.harmonic.HARMONIC_POTENTIALS` per vector), halved until a plan
        for them fits in memory beside this FMM (:func:`~fmmloopy.driver.memory.
        with_vectors`); ResourceLimitError where not even one does."""
        per_vector = HARMONIC_POTENTIALS if harmonic_split(self.kernel) is not None else 1
        chunk = min(vectors, max(1, MAX_VECTORS_PER_PASS // per_vector))
        while chunk > 1:
            estimate = with_vectors(self.memory_estimate, chunk,
                                    real_bytes=self.dtype.itemsize, scheme=self.options.scheme,
                                    **self.points_setup.sizes)
            try:
                check_memory(estimate, self.device, self.points_setup.what,
                             self.options.memory_limit)
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
            self._plans[kernel] = self.points_setup.plan_for(kernel, self.options, self.queue)
        return self._plans[kernel]

    def evaluate_in_tree_order(self, strengths: np.ndarray, kernel: GreenKernel,
                               between_passes=None) -> np.ndarray:
        """``kernel``'s outputs in tree order for ``strengths`` in tree order (working units),
        one evaluation at a time (under the FMM's lock): what a distributed FMM's rank runs,
        ``between_passes`` its exchange of multipoles
        (:attr:`~fmmloopy.driver.evaluation.PassHooks.between`)."""
        with self._lock:
            return self._evaluate(strengths, kernel, PassHooks(between=between_passes))

    def _evaluate(self, charges: np.ndarray, kernel: GreenKernel,
                  hooks: PassHooks = NO_HOOKS) -> np.ndarray:
        """Outputs in tree order: the plan's passes with ``hooks`` (a periodic FMM's own,
        :meth:`~fmmloopy.api.setup.PointsSetUp.pass_hooks`), plus the nested rows'."""
        self._last_plan = self.plan_for(kernel)
        hooks = self.points_setup.pass_hooks(charges, kernel, hooks)
        potential = evaluate_plan(self._last_plan, charges, hooks)
        if self.nested_rows:
            clock = time.perf_counter()
            for row in self.nested_rows:
                row.add_to(potential, charges, kernel)
            self._nested_seconds = time.perf_counter() - clock
        return potential


def evaluate(sources, charges, targets=None, **options) -> np.ndarray:
    """One FMM evaluation: ``Fmm(sources, targets, **options)(charges)``."""
    return Fmm(sources, targets, **options)(charges)
