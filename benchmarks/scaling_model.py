"""Model: how the distributed FMM would scale to 2 ... 1024 ranks, predicted from real trees.

Usage: ``python benchmarks/scaling_model.py [--distribution sphere cube] [--n 1e6 1e7]
[--ranks 2 4 ... 1024] [--order 6] [--alpha 2e-6] [--beta 12.5e9] [--grain 1e6]
[--max-points 1.05e7] [--n-crit auto|N] [--quick]``.

Nothing runs in parallel: every rank's share is computed from one real tree with the
functions of :mod:`fmmloopy.tree.partition` (the design of ``fmmloopy.DistributedFmm``):
leaves cut into runs of equal modelled cost (``leaf_costs``, ``partition_leaves``), each
rank's essential set (``essential_set``), the ranks forming each box's multipole
(``contributors``). Per rank and per evaluation:

- compute: its P2P pairs, its M2L entries, its other translations and point-surface
  evaluations (P2M, L2P, M2P, P2L), turned into seconds with the rates of :data:`RATES`
  (measured on the 2-core development machine, docs/performance.md); one rank is one such
  device. "Repeated" is the part spent on boxes that other ranks compute too (the coarse
  levels above its leaves);
- communication, four sparse all-to-alls, overlapping neither compute nor each other: charges
  to the owners and potentials back (a random initial split: ``8 (R-1)/R`` bytes per point
  each way, ``R-1`` partners), ghost charges (8 bytes per ghost source) and partial multipoles
  (``8 n_e`` bytes per (box, contributing rank)). Each takes
  ``alpha * partners + max(bytes sent, bytes received) / beta``, partners the larger of the
  numbers of ranks sent to and received from.

``T_r = compute_r + communication_r``; efficiency ``E(R) = T(1) / (R max_r T_r)``, ``T(1)``
the same model's one-rank time of the same tree. Set-up is reported apart: the skeleton's
count all-reduces (``nlevels ceil(log2 R) alpha + 2 * 8 * nboxes / beta``), the points sent
to their owners and the ghosts' positions (24 bytes each), and what every rank holds and
builds whatever R is (the replicated skeleton's bytes, the measured list-building time).
"E, fixes" estimates two fixes of the communication: no redistribution (the points already
on their owners) and the partial multipoles of boxes formed by three ranks or more summed by
one all-reduce (``ceil(log2 R) alpha + 2 * 8 n_e * boxes / beta``) instead of the all-to-all.

Strong scaling: the trees of ``--n`` points, up to the R where ranks would own fewer than
:data:`MIN_LEAVES` leaves on average. Weak scaling, ``--grain`` points per rank at a fixed
n_crit: real trees where ``R * grain <= --max-points``; beyond, the real tree and partition
of the same R at ``grain / factor**k`` points per rank (factor 8 for the cube, 4 for the
sphere's surface: the tree of ``factor**k`` times the points is the smaller one refined k
levels more, and rank r covers the same region), scaled by the laws of :func:`extrapolate`
(:func:`predict`). The laws are checked against every pair of grains whose trees are both
real at the same R (:func:`law_checks`).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from fmmloopy.base.distributions import DISTRIBUTIONS
from fmmloopy.execution.precomputed import get_operators
from fmmloopy.maths.geometry import M2L_CLASSES, NTRANSFER_VECTORS, transfer_class
from fmmloopy.maths.green import get_kernel
from fmmloopy.maths.surfaces import surface_size
from fmmloopy.tree.cost import choose_n_crit
from fmmloopy.tree.csr import list_rows, select_rows
from fmmloopy.tree.direct_lists import direct_where_cheaper
from fmmloopy.tree.lists import InteractionLists, build_interaction_lists
from fmmloopy.tree.octree import Tree, build_tree_from, sort_points
from fmmloopy.tree.partition import contributors, essential_set, leaf_costs, partition_leaves
from fmmloopy.tuning.device_facts import declared_facts

RESULTS = Path(__file__).resolve().parent / "results"
#: Strong scaling stops where the ranks would own fewer leaves than this on average.
MIN_LEAVES = 4
#: Bytes of one value (float64: a charge, a potential, an expansion coefficient).
VALUE_BYTES = 8
#: Bytes of one point's position.
POSITION_BYTES = 24
#: Default n_crit: the sphere's fixed, the others chosen by the cost model.
DEFAULT_N_CRIT = {"sphere": 150}


@dataclass(frozen=True)
class Rates:
    """What one rank (one 2-core device, the shipped ``cpu`` recipes) does per second."""

    p2p: float  # near-field pair evaluations
    expansion: float  # point-surface evaluations: P2M, L2P, M2P, P2L
    matvec: float  # flops of the M2L cores and of the other translations


#: docs/performance.md, 2-core AMD EPYC, PoCL, 10^6 points, order 6. P2P: "What changed",
#: item 6 (targets in vector lanes, `p2p` launch: cube 7.29e9, sphere 7.62e9 pairs/s). Matvec:
#: item 5 (16-double accumulators, `m2l` launch: cube 218-219, sphere 151-155 GFLOP/s).
#: Point-surface: "Where the time goes" (p2m 0.019 s + l2p 0.028 s for 2 x 10^6 x 152
#: evaluations: 6.5e9/s). Plummer (3-D, clustered) takes the cube's.
RATES = {"cube": Rates(7.29e9, 6.5e9, 218e9), "sphere": Rates(7.62e9, 6.5e9, 153e9),
         "plummer": Rates(7.29e9, 6.5e9, 218e9)}
#: Weak-scaling laws: (p, factor). The points near a rank's boundary grow as grain**p (the
#: surface-to-volume law of a 3-D volume, 2/3, or of a 2-D surface, 1/2), and the tree gains a
#: level each time the points grow by ``factor`` at a fixed n_crit.
LAWS = {"cube": (2 / 3, 8), "plummer": (2 / 3, 8), "sphere": (1 / 2, 4)}


@dataclass(frozen=True)
class Network:
    """Latency ``alpha`` (s per message) and bandwidth ``beta`` (bytes/s per rank)."""

    alpha: float
    beta: float

    def exchange(self, partners, nbytes):
        """Seconds of a sparse all-to-all: ``alpha`` per partner plus ``nbytes`` (the larger
        of the bytes sent and received) over ``beta``."""
        return self.alpha * np.asarray(partners, dtype=float) + np.asarray(nbytes) / self.beta


@dataclass(frozen=True)
class FarField:
    """Flops of the far field as the FMM applies its operators."""

    order: int
    n_e: int
    per_entry: float  # one compressed M2L core (the mix of an interior box's V list)
    up: float  # per box with sources: upward check-to-equivalent and M2M
    down: float  # per box with targets: downward check-to-equivalent and L2L
    class_flops: np.ndarray  # per transfer-vector class: one compression (or expansion)
    class_of: np.ndarray  # the class of each transfer vector

    @classmethod
    def of(cls, order: int) -> FarField:
        """From the Laplace operators of ``order`` (their ranks; cached on disk)."""
        operators = get_operators(get_kernel("laplace").base, order)
        ranks, n_e = operators.ranks(), surface_size(order)
        class_flops = np.array([2.0 * n_e * ranks[f"m2l_{name}"] for name in M2L_CLASSES])
        class_of = np.zeros(NTRANSFER_VECTORS, dtype=np.int64)
        for index, name in enumerate(M2L_CLASSES):
            class_of[transfer_class(name)] = index
        up = 4.0 * n_e * ranks["uc2e"] + 2.0 * n_e ** 2
        down = 4.0 * n_e * ranks["dc2e"] + 2.0 * n_e ** 2
        far = cls(order, n_e, operators.far_field_flops()[0], up, down, class_flops, class_of)
        if not math.isclose(far.flops[1], operators.far_field_flops()[1]):
            raise RuntimeError(f"per-box flops {far.flops} differ from the operators'")
        return far

    @property
    def flops(self) -> tuple[float, float]:
        """``(per V entry, per box)`` as :mod:`fmmloopy.tree.cost` takes them: every box with
        every class's compression and expansion."""
        return self.per_entry, self.up + self.down + 2.0 * self.class_flops.sum()


@dataclass(frozen=True)
class BoxWork:
    """Seconds of each box's work on one rank's device (arrays over the boxes)."""

    near: np.ndarray  # leaves: P2P with the sources of their U rows
    leaf: np.ndarray  # leaves: P2M, L2P and M2P
    m2l: np.ndarray  # every box: the compressed M2L cores of its V row
    down: np.ndarray  # boxes with targets: L2L, downward check-to-equivalent, P2L
    up: np.ndarray  # boxes with sources: M2M, upward check-to-equivalent
    per_class: np.ndarray  # one M2L compression or expansion of a box, per class
    class_of: np.ndarray  # the class of each transfer vector


def box_work(tree: Tree, lists: InteractionLists, far: FarField, rates: Rates) -> BoxWork:
    """Each box's work (the counts of :func:`fmmloopy.tree.partition.leaf_costs`) in seconds.
    The M2L's compressions and expansions are counted per (box, class) pair a rank uses
    (:func:`v_pairs`), as the FMM runs them."""
    sources = tree.box_source_counts.astype(np.float64)
    targets = tree.box_target_counts.astype(np.float64)

    def row_sums(name: str, values: np.ndarray) -> np.ndarray:
        starts, entries = getattr(lists, f"{name}_starts"), getattr(lists, f"{name}_lists")
        return np.bincount(list_rows(starts), weights=values[entries], minlength=tree.nboxes)

    leaf_points = np.where(tree.box_is_leaf, sources + targets, 0.0)
    return BoxWork(
        near=targets * row_sums("u", sources) / rates.p2p,
        leaf=far.n_e * (targets * np.diff(lists.w_starts) + leaf_points) / rates.expansion,
        m2l=far.per_entry * np.diff(lists.v_starts) / rates.matvec,
        down=(np.where(targets > 0, far.down, 0.0) / rates.matvec
              + far.n_e * row_sums("x", sources) / rates.expansion),
        up=np.where(sources > 0, far.up, 0.0) / rates.matvec,
        per_class=far.class_flops / rates.matvec, class_of=far.class_of)


def v_pairs(lists: InteractionLists, boxes: np.ndarray, class_of: np.ndarray
            ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The distinct (source box, class) and (target box, class) pairs of the V rows of
    ``boxes``: the compressions and expansions of the M2L of those boxes."""
    starts, entries, transfer = select_rows(lists.v_starts, lists.v_lists, boxes,
                                            lists.v_transfer)
    classes = class_of[transfer]
    nclasses = len(M2L_CLASSES)
    rows = np.repeat(np.asarray(boxes, dtype=np.int64), np.diff(starts))
    pairs = []
    for owner in (entries.astype(np.int64), rows):
        codes = np.unique(owner * nclasses + classes)
        pairs.append((codes // nclasses, codes % nclasses))
    return pairs[0], pairs[1]


@dataclass
class Problem:
    """One real tree, its evaluated lists, its work and what building it took."""

    distribution: str
    n: int
    n_crit: int
    tree: Tree
    lists: InteractionLists
    work: BoxWork
    costs: np.ndarray  # leaf_costs: what the partition balances
    lists_seconds: float  # building the lists, which every rank does for the whole skeleton
    skeleton_bytes: int  # the boxes' arrays and the evaluated lists, held by every rank
    serial: float = 0.0  # the one-rank time of the evaluation
    serial_parts: tuple[float, float, float] = (0.0, 0.0, 0.0)  # of it P2P, M2L cores, other

    @property
    def nleaves(self) -> int:
        """Leaves of the tree."""
        return int(self.tree.box_is_leaf.sum())


def skeleton_bytes(tree: Tree, lists: InteractionLists) -> int:
    """Bytes of what every rank holds whatever R: the boxes' arrays and the lists."""
    arrays = [getattr(tree, f.name) for f in fields(tree) if f.name.startswith(("box_", "level"))]
    arrays += [getattr(lists, f.name) for f in fields(lists)]
    return int(sum(array.nbytes for array in arrays if isinstance(array, np.ndarray)))


def build_problem(distribution: str, n: int, n_crit: int | str, far: FarField,
                  seed: int = 0) -> Problem:
    """The tree of ``n`` points of ``distribution`` (``n_crit="auto"``: the cost model's
    choice, made as :class:`fmmloopy.Fmm` makes it) and its lists, small W/X boxes direct."""
    log(f"{distribution}: tree of {n:,} points")
    points = sort_points(DISTRIBUTIONS[distribution](n, np.random.default_rng(seed)))
    if n_crit == "auto":
        n_crit, _ = choose_n_crit(points, far.order, declared_facts("cpu").pair_flops, far.flops)
    tree = build_tree_from(points, n_crit)
    del points
    clock = time.perf_counter()
    lists = direct_where_cheaper(tree, build_interaction_lists(tree), far.n_e)
    lists_seconds = time.perf_counter() - clock
    costs = leaf_costs(tree, lists, far.n_e, declared_facts("cpu").pair_flops, far.flops)
    work = box_work(tree, lists, far, RATES[distribution])
    problem = Problem(distribution, n, int(n_crit), tree, lists, work, costs, lists_seconds,
                      skeleton_bytes(tree, lists))
    one = partition(problem, 1)
    problem.serial = float(one.compute[0])
    problem.serial_parts = (float(one.near[0]), float(one.m2l[0]), float(one.other[0]))
    return problem


@dataclass(frozen=True)
class Partition:
    """Per-rank quantities of one partition (arrays over the ranks). Seconds of compute;
    multipoles "boundary" when one other rank forms them, "coarse" when several do."""

    leaves: np.ndarray
    points: np.ndarray  # sources owned (the targets are the sources)
    cost_share: np.ndarray  # the part of the modelled cost (leaf_costs) the partition gave it
    near: np.ndarray  # P2P seconds
    m2l: np.ndarray  # M2L cores' seconds
    other: np.ndarray  # other translations and point-surface evaluations, seconds
    repeated_m2l: np.ndarray  # the parts of m2l and other on boxes other ranks compute too
    repeated_other: np.ndarray
    compress_boundary: np.ndarray  # compressing the remote multipoles for the M2L, seconds
    compress_coarse: np.ndarray
    ghosts: np.ndarray  # ghost sources received
    ghosts_sent: np.ndarray
    ghost_partners: np.ndarray  # the larger of the ranks sent to and received from
    remote_boundary: np.ndarray  # remote multipoles (boxes)
    remote_coarse: np.ndarray
    parts_boundary: np.ndarray  # partial multipoles received
    parts_coarse: np.ndarray
    sent_boundary: np.ndarray  # partial multipoles sent
    sent_coarse: np.ndarray
    multipole_partners: np.ndarray
    # For the fixes' estimate: the partial multipoles of boxes formed by three ranks or more
    # (received, sent; summed instead by one all-reduce of ``wide_boxes`` multipoles), and the
    # partners of the rest.
    parts_wide: np.ndarray
    sent_wide: np.ndarray
    narrow_partners: np.ndarray
    wide_boxes: float

    @property
    def ranks(self) -> int:
        """The number of ranks."""
        return len(self.leaves)

    @property
    def compress(self) -> np.ndarray:
        """Seconds per rank compressing remote multipoles."""
        return self.compress_boundary + self.compress_coarse

    @property
    def compute(self) -> np.ndarray:
        """Seconds of compute per rank."""
        return self.near + self.m2l + self.other + self.compress

    @property
    def repeated(self) -> np.ndarray:
        """Seconds per rank spent on boxes other ranks compute too."""
        return self.repeated_m2l + self.repeated_other


def _range_counts(first: np.ndarray, last: np.ndarray, nranks: int) -> np.ndarray:
    """How many of the ranges ``[first, last]`` hold each rank."""
    steps = (np.bincount(first, minlength=nranks + 1)
             - np.bincount(last + 1, minlength=nranks + 1))
    return np.cumsum(steps)[:nranks].astype(np.float64)


def _partners(matrix: np.ndarray) -> np.ndarray:
    """Per rank, the larger of the ranks it receives from (row) and sends to (column)."""
    return np.maximum(np.count_nonzero(matrix, axis=1), np.count_nonzero(matrix, axis=0))


def _rank_compute(work: BoxWork, lists: InteractionLists, owned: np.ndarray, up: np.ndarray,
                  down: np.ndarray, shared: np.ndarray, remote: np.ndarray) -> dict:
    """One rank's compute seconds by part. ``shared``: boxes other ranks compute too (over
    all boxes); ``remote``: 0 for the boxes it forms, 1 for remote multipoles formed by one
    other rank, 2 for those formed by several."""
    (sources, source_classes), (targets, target_classes) = v_pairs(lists, down, work.class_of)
    compress = work.per_class[source_classes]
    expand = work.per_class[target_classes]
    kind = remote[sources]
    shared_down, shared_up = down[shared[down]], up[shared[up]]
    return {
        "near": work.near[owned].sum(), "m2l": work.m2l[down].sum(),
        "other": (work.leaf[owned].sum() + work.down[down].sum() + work.up[up].sum()
                  + expand.sum() + compress[kind == 0].sum()),
        "repeated_m2l": work.m2l[shared_down].sum(),
        "repeated_other": (work.down[shared_down].sum() + work.up[shared_up].sum()
                           + expand[shared[targets]].sum()),
        "compress_boundary": compress[kind == 1].sum(),
        "compress_coarse": compress[kind == 2].sum()}


def partition(problem: Problem, nranks: int) -> Partition:
    """Every rank's share under the partition of ``problem``'s leaves over ``nranks`` equal
    ranks (:func:`partition_leaves`), from the ranks' essential sets."""
    tree, lists, work = problem.tree, problem.lists, problem.work
    owners = partition_leaves(tree, problem.costs, np.ones(nranks))
    first, last = contributors(tree, owners)
    sets = []
    for rank in range(nranks):
        essential = essential_set(tree, lists, owners, rank)
        sets.append(tuple(np.flatnonzero(mask) for mask in (
            essential.owned_leaves, essential.upward, essential.downward,
            essential.ghost_leaves, essential.multipoles)))
    up_shared = np.bincount(np.concatenate([s[1] for s in sets]), minlength=tree.nboxes) > 1
    down_shared = np.bincount(np.concatenate([s[2] for s in sets]), minlength=tree.nboxes) > 1
    sources = tree.box_source_counts.astype(np.float64)
    ghost_matrix, boundary, narrow, wide = (np.zeros((nranks, nranks)) for _ in range(4))
    columns: dict[str, np.ndarray] = {}
    remote = np.zeros(tree.nboxes, dtype=np.int8)
    wide_boxes = np.zeros(tree.nboxes, dtype=bool)
    for rank, (owned, up, down, ghost, boxes) in enumerate(sets):
        start, stop = first[boxes], last[boxes]
        is_remote = (start >= 0) & ~((start == rank) & (stop == rank))
        single, several = is_remote & (start == stop), is_remote & (start < stop)
        remote[boxes[single]], remote[boxes[several]] = 1, 2
        row = _rank_compute(work, lists, owned, up, down, up_shared | down_shared, remote)
        remote[boxes] = 0
        row |= {"leaves": len(owned), "points": sources[owned].sum(),
                "cost_share": problem.costs[owned].sum() / problem.costs.sum(),
                "remote_boundary": single.sum(), "remote_coarse": several.sum()}
        for name, value in row.items():
            columns.setdefault(name, np.zeros(nranks))[rank] = value
        ghost_matrix[rank] = np.bincount(owners[ghost], weights=sources[ghost],
                                         minlength=nranks)
        boundary[rank] = _range_counts(start[single], stop[single], nranks)
        spread = several & (stop - start >= 2)
        narrow[rank] = _range_counts(start[several & ~spread], stop[several & ~spread], nranks)
        wide[rank] = _range_counts(start[spread], stop[spread], nranks)
        wide_boxes[boxes[spread]] = True
        boundary[rank, rank] = narrow[rank, rank] = wide[rank, rank] = 0.0
    coarse = narrow + wide
    return Partition(
        **columns, ghosts=ghost_matrix.sum(axis=1), ghosts_sent=ghost_matrix.sum(axis=0),
        ghost_partners=_partners(ghost_matrix),
        parts_boundary=boundary.sum(axis=1), parts_coarse=coarse.sum(axis=1),
        sent_boundary=boundary.sum(axis=0), sent_coarse=coarse.sum(axis=0),
        multipole_partners=_partners(boundary + coarse),
        parts_wide=wide.sum(axis=1), sent_wide=wide.sum(axis=0),
        narrow_partners=_partners(boundary + narrow), wide_boxes=float(wide_boxes.sum()))


@dataclass(frozen=True)
class Times:
    """Seconds per rank of one evaluation, by part, and the bytes each rank moves."""

    compute: np.ndarray
    ghosts: np.ndarray
    multipoles: np.ndarray
    redistribution: np.ndarray  # charges to the owners, potentials back
    nbytes: np.ndarray  # per rank: the larger of sent and received, summed over exchanges
    ghost_bytes: np.ndarray  # per rank: the larger of sent and received, ghost charges
    multipole_bytes: np.ndarray  # the same, partial multipoles
    multipoles_fixed: np.ndarray  # the multipoles' exchange with the wide boxes all-reduced

    @property
    def communication(self) -> np.ndarray:
        """Seconds per rank of the all-to-alls."""
        return self.ghosts + self.multipoles + self.redistribution

    @property
    def total(self) -> np.ndarray:
        """Seconds per rank: compute, then communication (no overlap)."""
        return self.compute + self.communication


def rank_times(part: Partition, network: Network, n_e: int, n_points: float) -> Times:
    """The evaluation's seconds on each rank of ``part`` (``n_points`` in all)."""
    nranks = part.ranks
    ghost_bytes = VALUE_BYTES * np.maximum(part.ghosts, part.ghosts_sent)
    multipole_bytes = VALUE_BYTES * n_e * np.maximum(part.parts_boundary + part.parts_coarse,
                                                     part.sent_boundary + part.sent_coarse)
    # A random initial split: each rank passed n_points / R points, (R-1)/R of them elsewhere.
    moved = VALUE_BYTES * (nranks - 1) / nranks * np.maximum(n_points / nranks, part.points)
    redistribution = 2 * network.exchange(nranks - 1, moved) if nranks > 1 else 0 * moved
    narrow_bytes = VALUE_BYTES * n_e * np.maximum(
        part.parts_boundary + part.parts_coarse - part.parts_wide,
        part.sent_boundary + part.sent_coarse - part.sent_wide)
    allreduce = (math.ceil(math.log2(nranks)) * network.alpha
                 + 2 * VALUE_BYTES * n_e * part.wide_boxes / network.beta
                 if part.wide_boxes else 0.0)
    return Times(part.compute, network.exchange(part.ghost_partners, ghost_bytes),
                 network.exchange(part.multipole_partners, multipole_bytes), redistribution,
                 ghost_bytes + multipole_bytes + (2 * moved if nranks > 1 else 0 * moved),
                 ghost_bytes, multipole_bytes,
                 network.exchange(part.narrow_partners, narrow_bytes) + allreduce)


def _per_message(nbytes: np.ndarray, partners: np.ndarray) -> float:
    """The largest over ranks of a rank's mean message, kB."""
    return float((nbytes / np.maximum(partners, 1)).max()) / 1e3


def summarise(part: Partition, times: Times, serial: float) -> dict:
    """One table row: the slowest rank, the extremes over ranks and the efficiency."""
    slowest = int(np.argmax(times.total))
    t_max = float(times.total[slowest])
    return {
        "ranks": part.ranks, "leaves_min": float(part.leaves.min()),
        "points_max": float(part.points.max()),
        "compute_max_s": float(times.compute.max()), "compute_mean_s": float(times.compute.mean()),
        "near_s": float(part.near[slowest]), "m2l_s": float(part.m2l[slowest]),
        "other_s": float(part.other[slowest]), "compress_s": float(part.compress[slowest]),
        "repeated_max_s": float(part.repeated.max()),
        "comm_max_s": float(times.communication.max()),
        "ghost_comm_s": float(times.ghosts.max()),
        "multipole_comm_s": float(times.multipoles.max()),
        "redistribution_s": float(times.redistribution.max()),
        "ghosts_max": float(part.ghosts.max()),
        "remote_max": float((part.remote_boundary + part.remote_coarse).max()),
        "remote_coarse_max": float(part.remote_coarse.max()),
        "parts_max": float((part.parts_boundary + part.parts_coarse).max()),
        "mbytes_max": float(times.nbytes.max()) / 1e6,
        "ghost_partners_max": float(part.ghost_partners.max()),
        "multipole_partners_max": float(part.multipole_partners.max()),
        "ghost_message_kb_max": _per_message(times.ghost_bytes, part.ghost_partners),
        "multipole_message_kb_max": _per_message(times.multipole_bytes,
                                                 part.multipole_partners),
        "t_max_s": t_max, "t1_s": serial, "efficiency": serial / (part.ranks * t_max),
        "wide_boxes": float(part.wide_boxes),
        "efficiency_fixed": serial / (part.ranks * float(
            (times.compute + times.ghosts + times.multipoles_fixed).max()))}


def setup_row(part: Partition, network: Network, n_points: float, nboxes: float,
              nlevels: int, skeleton: float, lists_seconds: float) -> dict:
    """The set-up's seconds (per rank, the largest) and what every rank holds and builds."""
    nranks = part.ranks
    moved = POSITION_BYTES * (nranks - 1) / nranks * max(n_points / nranks, part.points.max())
    ghosts = POSITION_BYTES * np.maximum(part.ghosts, part.ghosts_sent).max()
    allreduce = (nlevels * math.ceil(math.log2(nranks)) * network.alpha
                 + 2 * VALUE_BYTES * nboxes / network.beta) if nranks > 1 else 0.0
    return {"nboxes": nboxes, "nlevels": nlevels,
            "setup_allreduce_s": allreduce,
            "setup_migration_s": float(network.exchange(nranks - 1, moved)) if nranks > 1
            else 0.0,
            "setup_ghost_positions_s": float(network.exchange(part.ghost_partners.max(),
                                                              ghosts)),
            "skeleton_mib": skeleton / 2 ** 20, "skeleton_lists_s": lists_seconds}


def strong_study(distribution: str, n: int, ranks: list[int], n_crit, far: FarField,
                 network: Network) -> list[dict]:
    """Rows of the strong-scaling table of ``n`` points, R from ``ranks``."""
    problem = build_problem(distribution, n, n_crit, far)
    tree, serial = problem.tree, problem.serial
    base = {"study": "strong", "distribution": distribution, "n_points": n,
            "n_crit": problem.n_crit, "source": "real tree", "t1_s": serial}
    near, m2l, other = problem.serial_parts
    rows = [base | {"ranks": 1, "efficiency": 1.0, "t_max_s": serial,
                    "compute_max_s": serial, "compute_mean_s": serial, "near_s": near,
                    "m2l_s": m2l, "other_s": other, "leaves_min": problem.nleaves,
                    "nboxes": tree.nboxes}]
    for nranks in ranks:
        if problem.nleaves / nranks < MIN_LEAVES:
            log(f"  stop at R={nranks}: {problem.nleaves / nranks:.1f} leaves per rank")
            rows.append(base | {"ranks": nranks, "source": "stopped: "
                                f"{problem.nleaves / nranks:.1f} leaves per rank"})
            break
        log(f"  R={nranks}")
        part = partition(problem, nranks)
        times = rank_times(part, network, far.n_e, n)
        rows.append(base | summarise(part, times, serial)
                    | setup_row(part, network, n, tree.nboxes, tree.nlevels,
                                problem.skeleton_bytes, problem.lists_seconds))
    return rows


@dataclass(frozen=True)
class Measured:
    """A tree of the weak study (real, or predicted by :func:`predict`) and its partition over
    ``part.ranks`` ranks."""

    n: float
    part: Partition
    serial: float  # the one-rank time of the tree
    nboxes: float
    nlevels: int
    skeleton: float
    lists_seconds: float


def weak_grains(grain: float, factor: int, largest_ranks: int, max_points: float) -> list[float]:
    """``grain / factor**k`` for k = 0, 1, ... until ``largest_ranks`` ranks fit in
    ``max_points``: at each, the tree of R ranks is the smaller one's refined k levels more."""
    grains = [grain]
    while largest_ranks * grains[-1] > max_points:
        grains.append(grains[-1] / factor)
    return grains


def weak_series(distribution: str, grain: float, ranks: list[int], max_points: float,
                n_crit: int, far: FarField) -> dict[int, Measured]:
    """Real trees of ``R * grain`` points for R = 1 and each of ``ranks`` up to
    ``max_points``, each partitioned over R ranks (where they own enough leaves)."""
    series = {}
    for nranks in [1, *ranks]:
        n = round(nranks * grain)
        if n > max_points:
            break
        problem = build_problem(distribution, n, n_crit, far)
        if problem.nleaves / nranks < MIN_LEAVES:
            continue
        log(f"  R={nranks}")
        series[nranks] = Measured(n, partition(problem, nranks), problem.serial,
                                  problem.tree.nboxes, problem.tree.nlevels,
                                  problem.skeleton_bytes, problem.lists_seconds)
    return series


def extrapolate(part: Partition, scale: float, p: float, levels_ratio: float,
                own_total: float) -> Partition:
    """``part`` (R ranks of ``g`` points each) as R ranks of ``scale * g`` points would have
    it, the tree being ``part``'s refined by more levels at the same ``n_crit``.

    Laws. The ranks' own work (compute less the repeated work and the compressions of remote
    multipoles) adds up to ``own_total``, shared in proportion to each rank's own seconds per
    unit of its partition cost: the partition balances modelled cost, and at the larger grain
    (many more leaves per rank) it balances it exactly, while a region's seconds per unit of
    cost stay. What lies at a rank's boundary (ghost sources, remote multipoles formed by one
    other rank, their messages and their compressions for the M2L) grows as ``scale ** p``
    (surface to volume); what belongs to the coarse levels (the work repeated on boxes other
    ranks compute too, remote multipoles formed by several ranks, their messages and
    compressions) as the number of levels (``levels_ratio``); the partners do not change
    (each rank covers the same region).
    """
    surface = scale ** p
    own = part.compute - part.repeated - part.compress
    per_cost = np.divide(own, part.cost_share, out=np.zeros_like(own),
                         where=part.cost_share > 0)
    factor = np.divide(own_total * per_cost / per_cost.sum(), own, out=np.zeros_like(own),
                       where=own > 0)

    def mixed(total: np.ndarray, repeated: np.ndarray) -> np.ndarray:
        return (total - repeated) * factor + repeated * levels_ratio

    return replace(
        part, leaves=part.leaves * scale, points=part.points * scale,
        cost_share=np.full(part.ranks, 1.0 / part.ranks),
        near=part.near * factor, m2l=mixed(part.m2l, part.repeated_m2l),
        other=mixed(part.other, part.repeated_other),
        compress_boundary=part.compress_boundary * surface,
        compress_coarse=part.compress_coarse * levels_ratio,
        repeated_m2l=part.repeated_m2l * levels_ratio,
        repeated_other=part.repeated_other * levels_ratio,
        ghosts=part.ghosts * surface, ghosts_sent=part.ghosts_sent * surface,
        remote_boundary=part.remote_boundary * surface,
        remote_coarse=part.remote_coarse * levels_ratio,
        parts_boundary=part.parts_boundary * surface,
        parts_coarse=part.parts_coarse * levels_ratio,
        sent_boundary=part.sent_boundary * surface, sent_coarse=part.sent_coarse * levels_ratio,
        parts_wide=part.parts_wide * levels_ratio, sent_wide=part.sent_wide * levels_ratio,
        wide_boxes=part.wide_boxes * levels_ratio)


def predict(base: Measured, steps: int, distribution: str) -> Measured:
    """The tree and partition of the same R ranks with ``factor**steps`` times ``base``'s
    points (:data:`LAWS`): ``steps`` more levels, ``factor**steps`` times the serial time,
    boxes, skeleton and list building, the partition by :func:`extrapolate`, whose ranks' own
    work adds up to the larger tree's serial time."""
    p, factor = LAWS[distribution]
    scale = factor ** steps
    levels = base.nlevels + steps
    part = extrapolate(base.part, scale, p, levels / base.nlevels, base.serial * scale)
    return Measured(base.n * scale, part, base.serial * scale, base.nboxes * scale, levels,
                    base.skeleton * scale, base.lists_seconds * scale)


def measured_row(measured: Measured, network: Network, n_e: int) -> dict:
    """:func:`summarise` and :func:`setup_row` of one tree of the weak study."""
    part = measured.part
    times = rank_times(part, network, n_e, measured.n)
    return (summarise(part, times, measured.serial)
            | setup_row(part, network, measured.n, measured.nboxes, measured.nlevels,
                        measured.skeleton, measured.lists_seconds))


def weak_rows(distribution: str, grains: list[float], all_series: list[dict[int, Measured]],
              ranks: list[int], network: Network, n_e: int, n_crit: int) -> list[dict]:
    """Rows of the weak-scaling table at ``grains[0]`` points per rank: real where the tree
    fits, else :func:`predict` from the largest smaller grain with a real tree of that R."""
    one_rank = all_series[0][1].serial if 1 in all_series[0] else float("nan")
    rows = []
    for nranks in [1, *ranks]:
        steps = next((k for k, series in enumerate(all_series) if nranks in series), None)
        if steps is None:
            log(f"  weak R={nranks}: no real tree at any grain; skipped")
            continue
        measured = predict(all_series[steps][nranks], steps, distribution)
        row = {"study": "weak", "distribution": distribution, "n_points": measured.n,
               "grain": grains[0], "n_crit": n_crit,
               "source": "real tree" if steps == 0 else
               f"from {grains[steps]:.4g}/rank ({all_series[steps][nranks].n:.3g} points)"}
        row |= measured_row(measured, network, n_e)
        row["weak_efficiency"] = one_rank / row["t_max_s"]
        rows.append(row)
    return rows


def law_checks(distribution: str, grains: list[float], all_series: list[dict[int, Measured]],
               network: Network, n_e: int) -> list[dict]:
    """:func:`predict` from each smaller grain to each larger one, at every R > 1 where both
    trees are real, against the larger one's real tree and partition."""
    keys = ("serial", "ghosts_max", "remote_max", "parts_max", "mbytes_max", "comm_max_s",
            "compute_max_s", "efficiency")
    rows = []
    for big, big_series in enumerate(all_series):
        for small in range(big + 1, len(all_series)):
            for nranks in sorted(set(big_series) & set(all_series[small]) - {1}):
                real = big_series[nranks]
                predicted = predict(all_series[small][nranks], small - big, distribution)
                row = {"study": "check", "distribution": distribution, "ranks": nranks,
                       "grain": grains[big], "from_grain": grains[small]}
                pair = [measured_row(m, network, n_e) | {"serial": m.serial}
                        for m in (real, predicted)]
                for key in keys:
                    row[f"{key}_real"], row[f"{key}_predicted"] = pair[0][key], pair[1][key]
                rows.append(row)
    return rows


def check_summary(checks: list[dict]) -> list[dict]:
    """Per (distribution, grains): the range over R of predicted / real of each quantity."""
    summary = []
    for key in dict.fromkeys((r["distribution"], r["from_grain"], r["grain"]) for r in checks):
        rows = [r for r in checks if (r["distribution"], r["from_grain"], r["grain"]) == key]
        out = {"distribution": key[0], "from_grain": key[1], "grain": key[2],
               "ranks_text": f"{rows[0]['ranks']}-{rows[-1]['ranks']}"}
        for name in ("serial", "ghosts_max", "remote_max", "mbytes_max", "comm_max_s",
                     "compute_max_s", "efficiency"):
            ratios = [r[f"{name}_predicted"] / r[f"{name}_real"] for r in rows
                      if r[f"{name}_real"] > 0]
            out[f"{name}_text"] = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "—"
        summary.append(out)
    return summary


def markdown(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A markdown table of ``rows``: columns (header, key, format)."""
    lines = ["| " + " | ".join(header for header, _, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            value = row.get(key)
            cells.append("—" if value is None or (isinstance(value, float) and math.isnan(value))
                         else format(value, fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


SCALING_COLUMNS = [
    ("R", "ranks", "d"), ("leaves/rank min", "leaves_min", ".0f"),
    ("compute s max", "compute_max_s", ".4g"), ("compute s mean", "compute_mean_s", ".4g"),
    ("of it repeated s", "repeated_max_s", ".2g"), ("comm s", "comm_max_s", ".3g"),
    ("ghost / mult. / redistr. s", "comm_parts", "s"), ("ghosts", "ghosts_max", ".3g"),
    ("remote mult. (coarse)", "remote_text", "s"), ("MB/rank", "mbytes_max", ".3g"),
    ("partners g/m", "partners_text", "s"), ("kB/message g/m", "message_text", "s"),
    ("E", "efficiency", ".3f"), ("E, fixes", "efficiency_fixed", ".3f")]
SETUP_COLUMNS = [
    ("R", "ranks", "d"), ("N", "n_points", ".3g"), ("boxes", "nboxes", ".3g"),
    ("all-reduces s", "setup_allreduce_s", ".3g"), ("migration s", "setup_migration_s", ".3g"),
    ("ghost positions s", "setup_ghost_positions_s", ".3g"),
    ("skeleton MiB/rank", "skeleton_mib", ".4g"), ("lists build s/rank", "skeleton_lists_s",
                                                   ".3g")]
CHECK_COLUMNS = [
    ("from grain", "from_grain", ".4g"), ("to grain", "grain", ".4g"), ("R", "ranks_text", "s"),
    ("T(1)", "serial_text", "s"), ("ghosts", "ghosts_max_text", "s"),
    ("remote mult.", "remote_max_text", "s"), ("MB/rank", "mbytes_max_text", "s"),
    ("comm s", "comm_max_s_text", "s"), ("compute s max", "compute_max_s_text", "s"),
    ("E", "efficiency_text", "s")]


def with_text(row: dict) -> dict:
    """``row`` with the combined cells the tables show."""
    row = dict(row)
    if "comm_max_s" in row:
        row["comm_parts"] = (f"{row['ghost_comm_s']:.2g} / {row['multipole_comm_s']:.2g} / "
                             f"{row['redistribution_s']:.2g}")
        row["remote_text"] = f"{row['remote_max']:.3g} ({row['remote_coarse_max']:.3g})"
        row["partners_text"] = (f"{row['ghost_partners_max']:.0f} / "
                                f"{row['multipole_partners_max']:.0f}")
        row["message_text"] = (f"{row['ghost_message_kb_max']:.3g} / "
                               f"{row['multipole_message_kb_max']:.3g}")
    return row


def print_tables(strong: list[dict], weak: list[dict], checks: list[dict]) -> None:
    """The markdown tables, per distribution and size."""
    for key in dict.fromkeys((row["distribution"], row["n_points"]) for row in strong):
        rows = [with_text(row) for row in strong if (row["distribution"], row["n_points"]) == key]
        head = rows[0]
        print(f"\n### Strong scaling: {key[0]}, N = {key[1]:.3g}, n_crit {head['n_crit']}, "
              f"T(1) = {head['t1_s']:.4g} s (model, one rank: P2P {head['near_s']:.3g}, "
              f"M2L cores {head['m2l_s']:.3g}, other {head['other_s']:.3g})\n")
        stopped = [row["source"] for row in rows if row["source"].startswith("stopped")]
        print(markdown([row for row in rows if "comm_max_s" in row], SCALING_COLUMNS))
        if stopped:
            print(f"\nR = {rows[-1]['ranks']}: {stopped[0]}.")
        print("\nSet-up (apart from the evaluation):\n")
        print(markdown([row for row in rows if "setup_allreduce_s" in row], SETUP_COLUMNS))
    for distribution in dict.fromkeys(row["distribution"] for row in weak):
        rows = [with_text(row) for row in weak if row["distribution"] == distribution]
        print(f"\n### Weak scaling: {distribution}, {rows[0]['grain']:.3g} points per rank, "
              f"n_crit {rows[0]['n_crit']}\n")
        columns = ([("N", "n_points", ".3g"), ("source", "source", "s")] + SCALING_COLUMNS
                   + [("E vs 1 rank", "weak_efficiency", ".3f")])
        print(markdown([row for row in rows if "comm_max_s" in row or row["ranks"] == 1],
                       columns))
        print("\nSet-up (apart from the evaluation):\n")
        print(markdown(rows, SETUP_COLUMNS))
        check = check_summary([row for row in checks if row["distribution"] == distribution])
        if check:
            print(f"\nCheck of the weak-scaling laws ({distribution}): predicted from the "
                  "smaller grain / real, lowest-highest over the R where both trees are real\n")
            print(markdown(check, CHECK_COLUMNS))


def write_csv(rows: list[dict], path: Path) -> None:
    """All rows, one column per key any row has."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def plot(strong: list[dict], weak: list[dict], path: Path) -> bool:
    """Efficiency against R (log x) where matplotlib is importable; whether it was drawn."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for key in dict.fromkeys((row["distribution"], row["n_points"]) for row in strong):
        rows = [row for row in strong if (row["distribution"], row["n_points"]) == key
                and "efficiency" in row]
        left.plot([r["ranks"] for r in rows], [r["efficiency"] for r in rows], "o-",
                  label=f"{key[0]}, N = {key[1]:.0e}")
    for distribution in dict.fromkeys(row["distribution"] for row in weak):
        rows = [row for row in weak if row["distribution"] == distribution]
        line, = right.plot([r["ranks"] for r in rows], [r["efficiency"] for r in rows], "o-",
                           label=f"{distribution}: T1(N) / (R max T_r)")
        right.plot([r["ranks"] for r in rows], [r["weak_efficiency"] for r in rows], "s--",
                   color=line.get_color(), label=f"{distribution}: T1(grain) / max T_r")
    for axes, title in ((left, "strong scaling"), (right, "weak scaling (model)")):
        axes.set_xscale("log", base=2)
        axes.set_xlabel("ranks R")
        axes.set_title(title)
        axes.axhline(0.8, color="grey", lw=0.8, ls=":")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    left.set_ylabel("parallel efficiency")
    left.set_ylim(0, 1.05)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return True


def log(message: str) -> None:
    """Progress, on stderr."""
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distribution", nargs="+", choices=sorted(DISTRIBUTIONS),
                        default=["sphere", "cube"])
    parser.add_argument("--n", type=float, nargs="+", default=[1e6, 1e7],
                        help="points of the strong-scaling trees")
    parser.add_argument("--ranks", type=int, nargs="+", default=[2 ** k for k in range(1, 11)])
    parser.add_argument("--order", type=int, default=6)
    parser.add_argument("--alpha", type=float, default=2e-6, help="latency, s per message")
    parser.add_argument("--beta", type=float, default=12.5e9, help="bytes/s per rank")
    parser.add_argument("--grain", type=float, default=1e6, help="weak scaling: points/rank")
    parser.add_argument("--max-points", type=float, default=1.05e7,
                        help="largest real tree of the weak study")
    parser.add_argument("--n-crit", default=None,
                        help="'auto' or an integer (default: 150 for the sphere, else auto)")
    parser.add_argument("--no-weak", action="store_true", help="strong scaling only")
    parser.add_argument("--quick", action="store_true", help="a small run (smoke test)")
    parser.add_argument("--csv", type=Path, default=None,
                        help="default: benchmarks/results/scaling_model.csv (--quick: "
                             "scaling_model_quick.csv); the plot beside it as .png")
    args = parser.parse_args()
    if args.quick:
        args.n, args.ranks, args.grain, args.max_points = [3e4], [2, 4, 8, 16], 2e4, 1e5
    if args.csv is None:
        args.csv = RESULTS / f"scaling_model{'_quick' if args.quick else ''}.csv"
    network, far = Network(args.alpha, args.beta), FarField.of(args.order)
    ranks = sorted(set(args.ranks) - {1})
    strong, weak, checks = [], [], []
    for distribution in args.distribution:
        n_crit = args.n_crit or DEFAULT_N_CRIT.get(distribution, "auto")
        n_crit = n_crit if n_crit == "auto" else int(n_crit)
        for n in args.n:
            strong += strong_study(distribution, int(n), ranks, n_crit, far, network)
        if args.no_weak:
            continue
        if n_crit == "auto":  # the cost model's choice at the grain, fixed for the study
            n_crit = build_problem(distribution, round(args.grain), "auto", far).n_crit
        grains = weak_grains(args.grain, LAWS[distribution][1], ranks[-1], args.max_points)
        all_series = [weak_series(distribution, grain, ranks, args.max_points, n_crit, far)
                      for grain in grains]
        weak += weak_rows(distribution, grains, all_series, ranks, network, far.n_e, n_crit)
        checks += law_checks(distribution, grains, all_series, network, far.n_e)
    print(f"Network: alpha = {args.alpha:g} s per message, beta = {args.beta:g} bytes/s per "
          f"rank. Order {args.order}, n_e = {far.n_e}. Rates per rank (docs/performance.md):")
    for distribution in args.distribution:
        rates = RATES[distribution]
        print(f"- {distribution}: P2P {rates.p2p:.3g} pairs/s, P2M/L2P/M2P/P2L "
              f"{rates.expansion:.3g} evaluations/s, matvecs {rates.matvec / 1e9:.0f} GFLOP/s")
    print_tables(strong, weak, checks)
    write_csv([*strong, *weak, *checks], args.csv)
    print(f"\nwrote {args.csv}")
    if plot(strong, weak, args.csv.with_suffix(".png")):
        print(f"wrote {args.csv.with_suffix('.png')}")


if __name__ == "__main__":
    main()
