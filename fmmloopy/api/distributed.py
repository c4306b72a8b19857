"""One FMM over many processes: :class:`DistributedFmm`, under ``mpiexec`` (docs/scale-out.md).

Each rank passes its own sources and targets (any split, a rank may have none) and gets back the
potentials of its own targets in its own order. Set-up, all collective:

1. the inputs are checked, any error raised on every rank (:meth:`~fmmloopy.base.collective.
   Collectives.agree`);
2. the working coordinates and the root cube come from the global bounding box;
3. the tree's boxes are refined from counts summed over ranks (:mod:`fmmloopy.tree.
   distributed`): every rank holds the single-process tree's skeleton (boxes, global counts,
   interaction lists), ``n_crit="auto"`` (and a wider root cube) chosen as one process would;
4. the leaves in Morton order are cut into runs of equal modelled cost, weighted by each
   rank's speed (:mod:`fmmloopy.tree.partition`), and the points are sent to the ranks owning
   their leaves (an all-to-all: a bucket sort with the tree's leaves as splitters);
5. each rank fetches its ghost particles and builds its tree over its essential boxes, its lists
   and its plan (:meth:`fmmloopy.Fmm.for_rank`).

An evaluation sends the charges to the owners and the ghosts' charges to the ranks that need
them, runs each rank's upward pass, sums the shared boxes' partial multipoles into the ranks
that read them (an all-to-all between the passes), runs the downward pass and the near field,
and returns the potentials to the ranks that passed the targets: the single-process result up
to the order of floating-point sums (~1e-15).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyopencl as cl

from fmmloopy.api.fmm import Fmm
from fmmloopy.api.moving import checked_moves
from fmmloopy.api.multipole_exchange import MultipoleExchange
from fmmloopy.api.options import (
    check_distributed_options,
    check_eps_covers,
    checked_options,
)
from fmmloopy.api.units import (
    checked_strengths,
    overflow_message,
    shaped_results,
    to_user_units,
    working_strengths,
)
from fmmloopy.base.collective import Collectives, mpi_module, same_on_every_rank
from fmmloopy.base.devices import context_for, device_for_rank, share_cpu
from fmmloopy.base.validation import (
    as_float64_points,
    check_point_array,
)
from fmmloopy.driver.selection import RankBoxes
from fmmloopy.execution.precomputed import get_operators, level_operators, level_set
from fmmloopy.execution.roofline import measure_peaks
from fmmloopy.execution.tuning_records import kernel_pair_flops
from fmmloopy.maths.accuracy import order_for_eps
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.green import GreenKernel, check_wave_range
from fmmloopy.maths.harmonic import (
    HARMONIC_POTENTIALS,
    harmonic_split,
    kernel_of_call,
    operator_kernel,
)
from fmmloopy.maths.kifmm import FIRST_EXPANSION_LEVEL
from fmmloopy.tree.cost import AUTO, choose_tree
from fmmloopy.tree.csr import ranges_to_indices
from fmmloopy.tree.direct_lists import direct_where_cheaper
from fmmloopy.tree.distributed import (
    distributed_in_wider_cube,
    distributed_working_coordinates,
    skeleton_tree,
    sort_distributed,
)
from fmmloopy.tree.lists import build_interaction_lists
from fmmloopy.tree.octree import sort_in_cube, tree_boxes, tree_of_boxes
from fmmloopy.tree.partition import (  # noqa: F401 - MEASURE and rank_speed: public here
    MEASURE,
    checked_speed,
    essential_lists,
    essential_set,
    leaf_costs,
    morton_order,
    morton_ranges,
    partition_leaves,
    rank_speed,
)

__all__ = ["MEASURE", "DistributedFmm", "rank_speed"]

@dataclass
class _Route:
    """Where one rank's points go and come back from (an all-to-all each way)."""

    send_order: np.ndarray  # user index of each point sent, grouped by destination
    send_counts: np.ndarray  # points to each rank
    receive_counts: np.ndarray  # points from each rank
    received_to_owned: np.ndarray  # received position of each owned point (owned: by key)


class DistributedFmm:
    """The FMM of :class:`fmmloopy.Fmm` over the points of every rank of ``comm``.

    Every rank of ``comm`` (default ``MPI.COMM_WORLD``) constructs it together, each with its
    own ``sources`` and ``targets`` (``(n, 3)``; ``targets=None`` on every rank: the targets
    are the sources) and calls it together with charges for its own sources; each gets the
    potentials (or :class:`~fmmloopy.api.units.Fields`) at its own targets, in its own order.
    Options are those of :class:`~fmmloopy.api.fmm.Fmm` and must be equal on every rank;
    ``device`` (default: GPU ``i`` for the ``i``-th rank of a node where the node has one,
    else a share of the CPU device's cores) may differ. ``speed``: this rank's relative speed
    (a positive number, or ``"measure"``: its device's float64 peak; None on every rank: equal
    shares on devices of one kind, measured peaks where they differ), which weighs its share
    of the work (a GPU rank beside CPU ranks takes more).

    Bad input on any rank raises on every rank (the same error type, naming the rank). Calls
    on one rank run one after another (each is a sequence of collectives).
    """

    def __init__(self, sources, targets=None, *, comm=None,
                 kernel: str | GreenKernel = "laplace", order: int | None = None,
                 n_crit: int | str = AUTO, device=None,
                 recipes: str | Mapping[str, str] | None = None, max_depth: int = 20,
                 memory_limit: float | None = None, w_x_direct: bool = True,
                 verify_recipes: bool = True, speed: float | None = None, dtype=np.float64,
                 eps: float | None = None, eps_for: str | Iterable[str] = "charges"):
        mpi = mpi_module()
        self.collectives = collectives = Collectives(mpi.COMM_WORLD if comm is None else comm)
        self.rank, self.size = collectives.rank, collectives.size
        #: The ranks on this rank's node (shared memory): they share the operator cache.
        self._node = collectives.comm.Split_type(mpi.COMM_TYPE_SHARED)
        self.node_rank, node_size = self._node.Get_rank(), self._node.Get_size()
        self.setup_seconds: dict[str, float] = {}
        # One call at a time on a rank: a call is a sequence of collectives that another
        # thread's call must not interleave with.
        self._lock = threading.RLock()
        clock = time.perf_counter()
        with collectives.agree("checking the inputs"):
            options = checked_options(
                kernel=kernel, order=order, n_crit=n_crit, recipes=recipes,
                max_depth=max_depth, memory_limit=memory_limit, w_x_direct=w_x_direct,
                verify_recipes=verify_recipes, dtype=dtype, eps=eps, eps_for=eps_for)
            check_distributed_options(options)
            #: ``eps`` and the quantities it holds for, as :class:`~fmmloopy.api.fmm.Fmm`'s;
            #: with ``eps`` the order is chosen with the tree (None until then).
            self.order, self.eps, self.eps_quantities = (options.order, options.eps,
                                                         options.eps_quantities)
            self.kernel, n_crit, max_depth = options.kernel, options.n_crit, options.max_depth
            checked_speed(speed)
            sources = as_float64_points(check_point_array(sources, "sources"), "sources")
            targets = None if targets is None else as_float64_points(
                check_point_array(targets, "targets"), "targets")
            if device is None:
                share_cpu(node_size)
            self.device = device_for_rank(device, self.node_rank)
        with collectives.agree("comparing the ranks' options"):
            compared = (self.order, self.eps, self.eps_quantities, n_crit, max_depth,
                        self.kernel.spec, options.w_x_direct, targets is None, speed is None)
            same_on_every_rank(collectives.gather(compared),
                                ("order", "eps", "eps_for", "n_crit", "max_depth", "kernel",
                                 "w_x_direct", "targets=None", "speed=None"))
        devices = collectives.gather((self.device.platform.name, self.device.name,
                                      self.device.max_compute_units))
        with collectives.agree("measuring the devices' speed"):
            #: This rank's relative speed (None: equal shares), which weighs its share.
            self.speed = rank_speed(speed, devices, lambda: measure_peaks(
                cl.CommandQueue(context_for(self.device))).flops / 1e9)
        speed = self.speed
        self.nsources, self.ntargets = len(sources), len(sources if targets is None else targets)
        self._targets_are_sources = targets is None
        self.total_sources, self.total_targets = (int(n) for n in collectives.sum(
            np.array([self.nsources, self.ntargets], dtype=np.int64)))
        #: The checked options (:class:`~fmmloopy.api.options.FmmOptions`), this rank's device.
        self.options = options.on(self.device)
        self.n_crit = None if n_crit == AUTO else n_crit
        self.coordinate_origin, self.coordinate_exponent = np.zeros(3), 0
        self.local: Fmm | None = None
        self.eval_seconds: dict[str, float] = {}
        if not self.total_sources or not self.total_targets:
            if self.eps is not None:  # nothing to sum: the order of an empty box
                self.order = order_for_eps(self.eps, self.kernel, 0.0, self.eps_quantities,
                                           targets_are_sources=targets is None)
                self.options = self.options.with_order(self.order)
            self._sources_route = self._targets_route = None
            return
        self.setup_seconds["checks"] = time.perf_counter() - clock
        self._build(sources, targets, n_crit, max_depth, speed)

    # -- set-up ----------------------------------------------------------------------------
    def _build(self, sources, targets, n_crit, max_depth, speed,
               keep_order: bool = False) -> None:
        collectives = self.collectives
        clock = time.perf_counter()
        with collectives.agree("choosing the coordinates"):
            self.coordinate_origin, self.coordinate_exponent, sources, targets = \
                distributed_working_coordinates(collectives, sources, targets,
                                                self.kernel.homogeneity, self.kernel.name)
        with collectives.agree("building the tree"):
            points = sort_distributed(sources, targets, max_depth, collectives)
            if self.eps is not None and not keep_order:  # the order eps needs over the
                # root box (every rank's)
                self.order = order_for_eps(
                    self.eps, self.kernel, math.ldexp(2 * points.half_width,
                                                      self.coordinate_exponent),
                    self.eps_quantities, targets_are_sources=targets is None)
                self.options = self.options.with_order(self.order)
            check_wave_range(self.kernel, 2 * points.half_width, self.order)
            operators_of = operator_kernel(self.kernel)  # Stokes: Laplace's
            first = self._node_first(
                lambda: get_operators(operators_of, self.order)
                if operators_of.homogeneity is not None else level_set(
                    operators_of, self.order,
                    np.ldexp(points.half_width, -FIRST_EXPANSION_LEVEL)))
            # The model's constants from rank 0, so that every rank makes the same choices.
            flops_per_pair, far_field = collectives.gather(
                (kernel_pair_flops(self.device, self.kernel), tuple(first.far_field_flops())))[0]
            if n_crit == AUTO:  # the root cube and n_crit one process would choose
                wider = partial(distributed_in_wider_cube, points, collectives=collectives)
                choice = choose_tree(points, self.order, flops_per_pair, far_field,
                                     None if operators_of.homogeneity is None else wider)
                points, n_crit = choice.points, choice.n_crit
                self.n_crit = n_crit
            keys, levels, leaf = tree_boxes(points, n_crit, warn=self.rank == 0)
            #: The tree's boxes with every rank's counts (the same on every rank, and the
            #: boxes of the single-process tree of all the points).
            self.skeleton = skeleton = skeleton_tree(points, n_crit, keys, levels, leaf)
        self.setup_seconds["tree"] = time.perf_counter() - clock

        clock = time.perf_counter()
        #: The skeleton's interaction lists, and those evaluated (small W/X boxes in U).
        self.lists = lists = build_interaction_lists(skeleton)
        expansion_points = Expansion(self.order).n_e
        if self.options.w_x_direct:
            lists = direct_where_cheaper(skeleton, lists, expansion_points)
        self.evaluated_lists = lists
        weights = collectives.gather(speed)
        weights = np.ones(self.size) if weights[0] is None else np.array(weights, float)
        #: The modelled cost of each leaf's work (:func:`~fmmloopy.tree.partition.leaf_costs`)
        #: and the rank owning each leaf (-1 for other boxes).
        self.leaf_costs = leaf_costs(skeleton, lists, expansion_points, flops_per_pair,
                                     far_field)
        self.owners = partition_leaves(skeleton, self.leaf_costs, weights)
        self.essential = essential_set(skeleton, lists, self.owners, self.rank)
        self.setup_seconds["lists"] = time.perf_counter() - clock

        clock = time.perf_counter()
        leaf_starts = morton_ranges(skeleton)[0]
        leaves = morton_order(skeleton)
        self._sources_route, owned_sources, owned_keys = self._send_points(
            points.sources, points.source_order, points.builder.src_keys, leaves, leaf_starts)
        if targets is None:
            self._targets_route, owned_targets = self._sources_route, owned_sources
        else:
            self._targets_route, owned_targets, _ = self._send_points(
                points.targets, points.target_order, points.builder.tgt_keys, leaves,
                leaf_starts)
        ghosts = self._fetch_ghosts(owned_sources, owned_keys)
        self.setup_seconds["partition"] = time.perf_counter() - clock

        with collectives.agree("building each rank's tree and plan"):
            clock = time.perf_counter()
            self._build_local(points, owned_sources, ghosts, owned_targets, n_crit, keys,
                              levels, leaf, lists)
            self.setup_seconds["local"] = time.perf_counter() - clock
        self._multipoles = MultipoleExchange(collectives, self.skeleton, self.owners,
                                             self.essential, self._local_ids)
        #: The set-up's traffic per phase (bytes sent, seconds, waiting), this rank's.
        self.setup_traffic = {phase: dict(record)
                              for phase, record in collectives.traffic.items()}

    def _node_first(self, compute):
        """``compute()`` (operators) on the node's first rank, then on the others (from the
        operator cache on disk)."""
        result, error = None, None
        if self.node_rank == 0:
            try:
                result = compute()
            except Exception as exc:  # noqa: BLE001 - raised after the others may go on
                error = exc
        self.collectives.sleeping_barrier(self._node)
        if error is not None:
            raise error
        return result if self.node_rank == 0 else compute()

    def _send_points(self, points, order, keys, leaves, leaf_starts):
        """Send this rank's points (sorted by ``keys``: ``points[order]``) to the owners of
        their leaves; the route, and the points this rank owns with their keys (by key)."""
        leaf = leaves[np.searchsorted(leaf_starts[leaves], keys, side="right") - 1] \
            if len(keys) else np.zeros(0, dtype=np.int64)
        counts = np.bincount(self.owners[leaf], minlength=self.size)
        rows = np.column_stack([points[order], keys.view(np.float64)])
        received, received_counts = self.collectives.exchange(rows, counts, "points")
        received_keys = np.ascontiguousarray(received[:, 3]).view(np.uint64)
        by_key = np.argsort(received_keys, kind="stable")
        route = _Route(order, counts, received_counts, by_key)
        return route, np.ascontiguousarray(received[by_key, :3]), received_keys[by_key]

    def _fetch_ghosts(self, owned_sources: np.ndarray, owned_keys: np.ndarray) -> np.ndarray:
        """The sources of this rank's ghost leaves, from their owners; records what this rank
        sends to others at each evaluation (:attr:`_ghost_sends`)."""
        ghost_leaves = np.flatnonzero(self.essential.ghost_leaves)
        ghost_leaves = ghost_leaves[np.argsort(self.owners[ghost_leaves], kind="stable")]
        counts = np.bincount(self.owners[ghost_leaves], minlength=self.size)
        asked, asked_counts = self.collectives.exchange(ghost_leaves.astype(np.int64), counts,
                                                        "ghost requests")
        lo, hi = morton_ranges(self.skeleton)
        first = np.searchsorted(owned_keys, lo[asked])
        sizes = np.searchsorted(owned_keys, hi[asked]) - first
        #: Owned sources (by key) sent to other ranks as their ghosts, grouped by rank.
        self._ghost_sends = ranges_to_indices(first, sizes)
        per_request = np.repeat(np.arange(self.size), asked_counts)
        self._ghost_send_counts = np.bincount(per_request, weights=sizes,
                                              minlength=self.size).astype(np.int64)
        ghosts, self._ghost_receive_counts = self.collectives.exchange(
            owned_sources[self._ghost_sends], self._ghost_send_counts, "ghosts")
        return ghosts

    def _build_local(self, points, owned_sources, ghosts, owned_targets, n_crit, keys, levels,
                     leaf, lists) -> None:
        """This rank's tree over its essential boxes, with its own and its ghost sources, its
        lists and its plan (nothing where it owns no leaf)."""
        essential = self.essential
        self.operators = self._node_first(lambda: level_operators(
            operator_kernel(self.kernel), self.order, self.skeleton.level_half_widths))
        if not essential.owned_leaves.any():
            self._local_ids = np.full(self.skeleton.nboxes, -1, dtype=np.int32)
            return
        local_points = sort_in_cube(np.concatenate([owned_sources, ghosts]), owned_targets,
                                    points.centre, points.half_width, points.depth)
        boxes = essential.boxes
        tree = tree_of_boxes(local_points, n_crit, keys[boxes], levels[boxes], leaf[boxes])
        self._local_ids = essential.local_ids()
        rank_boxes = RankBoxes(with_sources=self.skeleton.box_source_counts[boxes] > 0,
                               upward=essential.upward[boxes])
        self.local = Fmm.for_rank(dataclasses.replace(self.options, n_crit=n_crit), tree,
                                  essential_lists(lists, essential), self.operators, rank_boxes)

    def update(self, sources, targets=None) -> None:
        """Move every rank's points: each rank passes its own sources (and targets where the
        FMM has targets of its own), as many as it passed before, in its own order; every rank
        calls it together. The set-up is built again for the new positions (the tree, the
        ranks' shares, each rank's tree, lists and plan): a distributed FMM does not keep its
        boxes, since points that move change which rank owns them. Kept: the options,
        :attr:`n_crit` (for ``n_crit="auto"`` the one chosen first), the order, the devices
        and their speeds, and the operators and kernels built (in the process's caches).
        What the constructor refuses on any rank raises on every rank, and the FMM stays as
        it was."""
        with self._lock:
            clock = time.perf_counter()
            with self.collectives.agree("checking the moved points"):
                sources, targets = checked_moves(
                    sources, targets, (self.nsources, self.ntargets), self._targets_are_sources,
                    "this rank's", "build a new DistributedFmm for other shares")
                sources = as_float64_points(sources, "sources")
                targets = None if targets is None else as_float64_points(targets, "targets")
            if not self.total_sources or not self.total_targets:
                return
            before = dict(self.__dict__)
            try:
                self.setup_seconds = {"checks": time.perf_counter() - clock}
                self._build(sources, targets, self.n_crit, self.options.max_depth, self.speed,
                            keep_order=True)
            except BaseException:
                self.__dict__.clear()
                self.__dict__.update(before)
                raise

    # -- evaluation ------------------------------------------------------------------------
    def __call__(self, charges=None, *, dipoles=None, gradient: bool = False,
                 pressure: bool = False, stresslets=None, hessian: bool = False):
        """Potentials at this rank's targets, in its order, of every rank's ``charges`` and/or
        ``dipoles`` (each rank passes those of its own sources); with ``gradient``/``hessian``
        :class:`~fmmloopy.api.units.Fields`/``HessianFields``; Stokes: velocities, or a
        ``Flow``, of forces, force dipoles and ``stresslets``, as :meth:`fmmloopy.Fmm.__call__`.
        Every rank calls it together."""
        with self._lock:
            with self.collectives.agree("checking the charges"):
                strengths, kernel, batched = checked_strengths(self.kernel, self.nsources, charges,
                    dipoles, gradient, pressure, stresslets, hessian)
                check_eps_covers(self, kernel)
                if batched:
                    raise ValueError("DistributedFmm takes one strength vector per call "
                                     "(charges (N,), dipoles (N, 3)), not columns of "
                                     "several: call it once per column")
            outputs = self.apply(strengths, kernel)
        return shaped_results(outputs, kernel, False)  # potentials, Fields, velocities, Flow

    def apply(self, strengths: np.ndarray, kernel: GreenKernel) -> np.ndarray:
        """``kernel``'s outputs ``(n_outputs, M)`` at this rank's targets for ``strengths``
        ``(n_inputs, N)`` of its sources (checked), as :meth:`fmmloopy.Fmm.apply`."""
        kernel = kernel_of_call(self.kernel, kernel)
        dtype = kernel.value_dtype()
        strengths = np.asarray(strengths, dtype=dtype).reshape(kernel.n_inputs, self.nsources)
        if self._sources_route is None:
            return np.zeros((kernel.n_outputs, self.ntargets), dtype)
        with self._lock:
            return self._apply(strengths, kernel, dtype)

    def _apply(self, strengths: np.ndarray, kernel: GreenKernel, dtype) -> np.ndarray:
        """:meth:`apply` where there are points (under the lock)."""
        collectives = self.collectives
        start = time.perf_counter()
        for phase in collectives.traffic.values():
            phase.update(bytes=0.0, seconds=0.0, waiting=0.0)
        largest = collectives.max(np.abs(strengths).max(axis=1) if self.nsources
                                  else np.zeros(kernel.n_inputs))
        strengths, charge_exponent = working_strengths(strengths, kernel, largest,
                                                       self.coordinate_exponent)
        route = self._sources_route
        received, _ = collectives.exchange(strengths[:, route.send_order].T,
                                           route.send_counts, "charges")
        owned = received[route.received_to_owned]
        ghosts, _ = collectives.exchange(owned[self._ghost_sends], self._ghost_send_counts,
                                         "ghost charges")
        outputs = np.zeros((len(self._targets_route.received_to_owned), kernel.n_outputs),
                           dtype)
        compute_clock = time.perf_counter()
        self._exchanged = False
        split = harmonic_split(kernel)
        self._far_vectors = kernel.vectors * (1 if split is None else HARMONIC_POTENTIALS)
        with collectives.agree("evaluating"):
            try:
                if self.local is not None:
                    tree = self.local.tree
                    in_tree = np.concatenate([owned, ghosts])[tree.source_user_ids].T
                    in_tree = np.ascontiguousarray(in_tree)
                    result = self.local.evaluate_in_tree_order(
                        in_tree[0] if kernel.n_inputs == 1 else in_tree, kernel,
                        self._exchange_multipoles)
                    outputs = tree.targets_to_user(np.atleast_2d(result).T)
                else:
                    self._exchange_multipoles(None)
            except Exception as exc:
                if not self._exchanged:  # the others wait in the exchange: tell them
                    self._exchange_multipoles(None, failure=exc)
                raise
        compute = time.perf_counter() - compute_clock
        route = self._targets_route
        in_received_order = np.empty_like(outputs)
        in_received_order[route.received_to_owned] = outputs
        returned, _ = collectives.exchange(in_received_order, route.receive_counts,
                                           "potentials")
        result = np.empty((self.ntargets, kernel.n_outputs), dtype)
        result[route.send_order] = returned
        result = np.ascontiguousarray(result.T)
        to_user_units(result, kernel, charge_exponent, self.coordinate_exponent)
        with collectives.agree("checking the results"):
            overflow = overflow_message(result, kernel, float(largest.max()))
            if overflow:
                raise OverflowError(overflow)
        self._record_seconds(time.perf_counter() - start, compute)
        return result

    def _exchange_multipoles(self, plan, failure: Exception | None = None) -> dict[str, float]:
        """:meth:`MultipoleExchange.exchange` between the passes (``failure``: this rank's)."""
        self._exchanged = True
        return self._multipoles.exchange(plan, self._far_vectors, self.operators.expansion.n_e,
                                         self.kernel.value_dtype(), failure)

    def _record_seconds(self, total: float, compute: float) -> None:
        """:attr:`eval_seconds`: the local operators' seconds, the exchanges' transfer and
        waiting times, and the total (:meth:`~fmmloopy.base.collective.Collectives.
        evaluation_seconds`)."""
        self.eval_seconds = self.collectives.evaluation_seconds(
            self.local.eval_seconds if self.local is not None else {}, compute, total)

    def report(self) -> list[dict[str, float]]:
        """Every rank's points, work and last evaluation's seconds (compute, communication,
        waiting) and bytes sent: a list in rank order, on every rank (collective)."""
        essential = getattr(self, "essential", None)
        mine = {
            "rank": self.rank,
            "device": self.device.name,
            "owned sources": 0 if self._sources_route is None
            else len(self._sources_route.received_to_owned),
            "ghost sources": int(self._ghost_receive_counts.sum())
            if hasattr(self, "_ghost_receive_counts") else 0,
            "remote multipoles": len(self._multipoles.received)
            if hasattr(self, "_multipoles") else 0,
            "owned leaves": 0 if essential is None else int(essential.owned_leaves.sum()),
            "setup bytes sent": sum(record["bytes"]
                                    for record in getattr(self, "setup_traffic", {}).values()),
            **self.eval_seconds,
        }
        return self.collectives.gather(mine)

