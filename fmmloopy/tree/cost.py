"""Choosing ``n_crit`` by cost: the leaf size that balances the near field against the far field.

A small ``n_crit`` makes many small leaves: few P2P pairs, many boxes and V-list entries (M2L).
A large one does the opposite. Where the optimum lies depends on the distribution, on the order
(an M2L entry costs ``2 n_e^2`` flops, 128 at order 2 and 476 288 at order 10) and on the
relative speed of the P2P and matvec recipes; and a uniform distribution jumps a whole level
when ``n_crit`` crosses a box's count, a factor 8 in boxes (the *depth jump*). So the default
``n_crit`` is chosen per problem: the trees of a range of candidates are built from one sort of
the points (:func:`fmmloopy.tree.octree.tree_boxes`, without lists), their work is counted
(:func:`tree_work`), and the candidate of least modelled time wins (:func:`choose_n_crit`).
The depth jump itself is softened by the root cube: where the bounding cube's best tree is
unbalanced, a cube ``2^(1/3)`` or ``2^(2/3)`` times as wide is tried too (:func:`choose_tree`),
which puts leaf volumes a factor 2 apart instead of 8.

The model, in units of matvec flops:
``P2P pairs x pair_flops + V entries x entry flops + boxes x box flops``, where ``pair_flops``
is what one P2P pair costs in matvec flops on the device (the ratio of the measured matvec flop
rate to the measured P2P pair rate: a fact of the device class the caller passes,
:class:`fmmloopy.tuning.device_facts.DeviceFacts`), and the far field's flops per V entry
and per box come from the operators that will run
(:meth:`fmmloopy.maths.precompute.KifmmOperators.far_field_flops`: a compressed M2L core per
entry; two check-to-equivalent maps, M2M, L2L and the M2L compressions per box). Without them,
dense ``n_e x n_e`` matrices: ``2 n_e^2`` per entry and ``12 n_e^2`` per box. P2M and L2P
(``n_e`` per particle) do not depend on ``n_crit`` and are left out.

Counts. V entries are exact for the tree's boxes: a box's V list is the children of its
parent's colleagues that are not its own colleagues, so its length is the children of the
parent's colleagues minus the box's existing colleagues (itself included). P2P pairs are
estimated: each leaf's targets times the sources in the 27 cells of its level around it (exact
where the neighbouring leaves are of the leaf's level; a coarser or finer neighbour is counted
by the part of it in those cells). Both are computed on a sample of boxes where there are many
(:data:`SAMPLE`) and scaled up.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from fmmloopy.base.validation import validate_integer
from fmmloopy.maths.geometry import NEIGHBOUR_OFFSETS
from fmmloopy.maths.surfaces import surface_size
from fmmloopy.tree.morton import morton_decode, morton_encode, placeholder
from fmmloopy.tree.octree import SortedPoints
from fmmloopy.tree.refinement import balance

__all__ = [
    "AUTO", "CANDIDATES", "REBALANCE_GAIN", "ROOT_SCALES", "CellCounts", "TreeChoice",
    "TreeWork", "choose_n_crit", "choose_tree", "leaf_dimension", "predicted_root_scale",
    "tree_work", "validate_n_crit",
]

#: Candidate ``n_crit``: 32 to 2048, a factor sqrt(2) apart. Below 32 the model's flops miss
#: what dominates there (per-box overheads, and matvecs too small to run at the flop rate the
#: model assumes), and the candidate trees grow costly to count.
CANDIDATES = tuple(int(round(32 * 2 ** (k / 2))) for k in range(13))
#: ``n_crit`` value asking for the choice by cost.
AUTO = "auto"
#: Boxes (and leaves) whose lists are counted, at most; more are sampled and scaled up.
SAMPLE = 1024
#: Candidate trees counted at once, on threads of their own (at most two: a third is more
#: often counted in vain, beyond where the sweep stops).
_WORKERS = min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)
_U64 = np.uint64


def validate_n_crit(value) -> int | str:
    """``value`` as :class:`fmmloopy.Fmm` takes ``n_crit``: an integer >= 1 or ``"auto"``."""
    if isinstance(value, str):
        if value != AUTO:
            raise ValueError(f"n_crit must be an integer >= 1 or {AUTO!r}, got {value!r}")
        return value
    return validate_integer(value, "n_crit", 1)


@dataclass(frozen=True)
class TreeWork:
    """The work of the tree of one ``n_crit``."""

    n_crit: int
    nboxes: int
    v_entries: float
    p2p_pairs: float  # estimated
    #: The tree's boxes, 2:1 balanced (:attr:`balanced`): (placeholder keys, levels, is_leaf) as
    #: :func:`~fmmloopy.tree.octree.tree_boxes` makes them (the tree of the chosen candidate
    #: is built from them).
    boxes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(
        default=None, repr=False, compare=False)
    #: The root cube's side over the side of the points' bounding cube (:data:`ROOT_SCALES`).
    root_scale: float = 1.0
    #: Whether the counts and boxes are of the 2:1 balanced tree (else of the refined tree
    #: before its balance: what the sweep of :func:`choose_n_crit` ranks candidates by).
    balanced: bool = True

    def cost(self, order: int, pair_flops: float,
             far_field: tuple[float, float] | None = None) -> float:
        """Modelled time in matvec flops (module docstring); ``far_field`` is ``(flops per V
        entry, flops per box)``, dense ``n_e x n_e`` matrices if None."""
        return self.p2p_pairs * pair_flops + self.far_field_cost(order, far_field)

    def far_field_cost(self, order: int, far_field: tuple[float, float] | None = None) -> float:
        """The far-field part of :meth:`cost`: it only grows as ``n_crit`` falls."""
        per_entry, per_box = far_field or dense_far_field_flops(order)
        return self.v_entries * per_entry + self.nboxes * per_box


def dense_far_field_flops(order: int) -> tuple[float, float]:
    """``(2 n_e^2, 12 n_e^2)``: a V entry's and a box's far-field flops with dense matrices."""
    n_e = surface_size(order)
    return 2.0 * n_e ** 2, 12.0 * n_e ** 2


def _sample(count: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Indices of at most :data:`SAMPLE` of ``count`` items and the factor that scales a sum
    over them to all."""
    if count <= SAMPLE:
        return np.arange(count), 1.0
    return np.sort(rng.choice(count, SAMPLE, replace=False)), count / SAMPLE


def _cells_around(keys: np.ndarray, levels: np.ndarray, offsets: np.ndarray = NEIGHBOUR_OFFSETS,
                  finer: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(boxes, offsets) placeholder keys of the cells ``offsets`` away from each box's first
    descendant ``finer`` levels down (``finer=0``: its 27 colleagues' cells), and a mask of those
    inside the root."""
    coords = morton_decode(keys ^ placeholder(levels)) << finer
    cells = coords[:, None, :] + offsets[None, :, :]
    level = levels.astype(np.int64) + finer
    inside = np.all((cells >= 0) & (cells < (1 << level)[:, None, None]), axis=2)
    cells = np.where(inside[..., None], cells, 0)
    lev = np.broadcast_to(level[:, None], inside.shape)
    return morton_encode(cells.reshape(-1, 3)).reshape(inside.shape) | placeholder(lev), inside


def _near_sources(keys: np.ndarray, levels: np.ndarray, leaf: np.ndarray, sources: np.ndarray,
                  leaves: np.ndarray, n_e: int) -> np.ndarray:
    """Sources each of ``leaves`` sums about one pair per target with: the boxes of its level
    around it (its U list, and where they are internal, their descendants in its W list) and the
    leaves of the level above around its parent (coarser U neighbours and its X list). In a
    2:1 balanced tree that is all of its near field; W and X boxes cost about a pair per target
    and source, summed directly where small, through ``n_e`` surface points otherwise: so an
    internal neighbour counts at most ``8 n_e`` (its children's surfaces).
    ``keys``, ``levels``, ``leaf``, ``sources``: the boxes and their source counts."""
    own, inside = _cells_around(keys[leaves], levels[leaves])
    found = np.maximum(_existing(keys, own), 0)
    counted = np.where(leaf[found], sources[found], np.minimum(sources[found], 8 * n_e))
    total = np.where(inside & (_existing(keys, own) >= 0), counted, 0).sum(axis=1)
    deeper = levels[leaves] > 0
    parents = _existing(keys, keys[leaves[deeper]] >> _U64(3))
    coarse, inside = _cells_around(keys[parents], levels[parents])
    found = _existing(keys, coarse)
    coarse_leaf = inside & (found >= 0) & leaf[np.maximum(found, 0)]
    total[deeper] += np.where(coarse_leaf, sources[np.maximum(found, 0)], 0).sum(axis=1)
    return total


def _existing(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of each query key among the sorted ``keys``, -1 where it is not a box."""
    position = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
    return np.where(keys[position] == queries, position, -1)


@dataclass(frozen=True)
class CellCounts:
    """The non-empty cells of every level down to where no cell holds more than ``smallest``
    points (pruned to cells whose parent holds more), with their counts: enough to know the
    boxes of the tree of any ``n_crit >= smallest`` without building it."""

    keys: list[np.ndarray]  # per level: sorted placeholder keys of the cells
    sources: list[np.ndarray]  # per level: sources in each cell
    targets: list[np.ndarray]  # per level: targets in each cell
    parent_counts: list[np.ndarray]  # per level: max(sources, targets) of each cell's parent

    @classmethod
    def of(cls, points: SortedPoints, smallest: int) -> CellCounts:
        builder = points.builder
        keys, parent_counts = [np.ones(1, dtype=_U64)], [np.array([np.inf])]
        root = np.zeros(1, dtype=np.int64)
        sources = [builder.source_counts(keys[0], root)]
        targets = [sources[0] if builder.targets_are_sources else
                   builder.target_counts(keys[0], root)]
        for level in range(points.depth + 1):
            count = np.maximum(sources[-1], targets[-1])
            if level == points.depth or count.max() <= smallest:
                break
            # The next level's non-empty cells, where their parent holds more than smallest,
            # with their counts.
            split = count > smallest
            cells, _levels, in_sources, in_targets = builder.counted_children(
                keys[-1][split], np.full(int(split.sum()), level))
            keys.append(cells)
            sources.append(in_sources)
            targets.append(in_targets)
            parent_counts.append(count[np.searchsorted(keys[-2], cells >> _U64(3))])
        return cls(keys, sources, targets, parent_counts)

    def boxes(self, n_crit: int) -> tuple[np.ndarray, ...]:
        """Sorted (placeholder keys, levels, is_leaf, sources, targets) of the boxes of the
        tree for ``n_crit`` before its 2:1 balance: a cell is a box where its parent holds more
        than ``n_crit``."""
        columns = [], [], [], [], []
        last = len(self.keys) - 1
        for level, (cells, sources, targets, parent) in enumerate(zip(
                self.keys, self.sources, self.targets, self.parent_counts, strict=True)):
            exists = parent > n_crit
            if not exists.any():
                break
            leaf = (np.maximum(sources, targets)[exists] <= n_crit) | (level == last)
            for column, values in zip(columns, (cells[exists], np.full(leaf.shape, level),
                                                leaf, sources[exists], targets[exists]),
                                      strict=True):
                column.append(values)
        return tuple(np.concatenate(column) for column in columns)


def tree_work(points: SortedPoints, n_crit: int, order: int, cells: CellCounts | None = None,
              seed: int = 0, balanced: bool = True) -> TreeWork:
    """Boxes, V entries and estimated near-field pairs (order ``order``) of the 2:1 balanced
    tree of ``points`` for ``n_crit`` (``balanced=False``: of the tree before its balance,
    which costs most of the count at 10^7 points), and its boxes; ``cells`` from
    :meth:`CellCounts.of` with ``smallest <= n_crit``."""
    cells = CellCounts.of(points, n_crit) if cells is None else cells
    keys, levels, leaf, sources, targets = cells.boxes(n_crit)
    if len(keys) > 1 and balanced:
        # The 2:1 balance splits leaves beside much finer boxes: few on a sphere or a cube, up
        # to as many again in a cluster's outskirts; the new boxes' counts from the points.
        counted = keys
        keys, levels, leaf = balance(points.builder, keys, levels, leaf)
        if len(keys) > len(counted):  # the added boxes' counts from the points
            builder = points.builder
            at = np.minimum(np.searchsorted(counted, keys), len(counted) - 1)
            new = counted[at] != keys
            sources, targets = sources[at], targets[at]
            sources[new] = builder.source_counts(keys[new], levels[new])
            targets[new] = sources[new] if builder.targets_are_sources else \
                builder.target_counts(keys[new], levels[new])
    rng = np.random.default_rng(seed)

    # V entries: children of the parent's colleagues minus the box's own existing colleagues.
    nboxes = len(keys)
    parents = np.searchsorted(keys, keys[1:] >> _U64(3))
    n_children = np.bincount(parents, minlength=nboxes)
    chosen, scale = _sample(nboxes - 1, rng)
    boxes = chosen + 1
    parent_cells, parent_inside = _cells_around(keys[parents[chosen]], levels[boxes] - 1)
    found = _existing(keys, parent_cells)
    found_ok = parent_inside & (found >= 0)
    candidates = np.where(found_ok, n_children[np.maximum(found, 0)], 0).sum(axis=1)
    own_cells, own_inside = _cells_around(keys[boxes], levels[boxes])
    own = (own_inside & (_existing(keys, own_cells) >= 0)).sum(axis=1)
    v_entries = float((candidates - own).sum()) * scale

    # P2P pairs: each leaf's targets x the sources of its near field (U, W and X lists).
    leaves = np.flatnonzero(leaf)
    chosen, scale = _sample(len(leaves), rng)
    leaves = leaves[chosen]
    near = _near_sources(keys, levels, leaf, sources, leaves, surface_size(order))
    pairs = float(targets[leaves].astype(np.float64) @ near) * scale
    return TreeWork(int(n_crit), nboxes, v_entries, pairs, (keys, levels, leaf),
                    balanced=balanced)


class _SameBoxes:
    """The :class:`TreeWork` counted so far, found again for any ``n_crit`` whose boxes before
    the 2:1 balance are the same (the balance and every count follow from them)."""

    def __init__(self, cells: CellCounts):
        self._cells = cells
        self._by_boxes: dict[tuple, list[tuple[np.ndarray, np.ndarray, TreeWork]]] = {}
        self._of: dict[int, tuple[tuple, np.ndarray, np.ndarray]] = {}

    def _boxes(self, n_crit: int) -> tuple[tuple, np.ndarray, np.ndarray]:
        """(signature, keys, is_leaf) of ``n_crit``'s boxes before the balance."""
        if n_crit not in self._of:
            keys, _levels, leaf, _sources, _targets = self._cells.boxes(n_crit)
            self._of[n_crit] = ((len(keys), int(np.count_nonzero(leaf)), hash(keys.tobytes())),
                                keys, leaf)
        return self._of[n_crit]

    def counted(self, n_crit: int) -> TreeWork | None:
        """The work of ``n_crit``'s tree if a tree of the same boxes was counted, else None."""
        signature, keys, leaf = self._boxes(n_crit)
        for known_keys, known_leaf, work in self._by_boxes.get(signature, ()):
            if np.array_equal(known_keys, keys) and np.array_equal(known_leaf, leaf):
                return work if work.n_crit == n_crit else dataclasses.replace(work,
                                                                              n_crit=n_crit)
        return None

    def new(self, candidates) -> list[int]:
        """Of the ``n_crit`` ``candidates``, those to count: none counted has their boxes,
        nor does an earlier one of them."""
        new: list[int] = []
        for n_crit in candidates:
            signature, keys, leaf = self._boxes(n_crit)
            if self.counted(n_crit) is None and not any(
                    self._boxes(other)[0] == signature
                    and np.array_equal(self._boxes(other)[1], keys)
                    and np.array_equal(self._boxes(other)[2], leaf) for other in new):
                new.append(n_crit)
        return new

    def add(self, work: TreeWork) -> None:
        signature, keys, leaf = self._boxes(work.n_crit)
        self._by_boxes.setdefault(signature, []).append((keys, leaf, work))


def choose_n_crit(points: SortedPoints, order: int, pair_flops: float,
                  far_field: tuple[float, float] | None = None,
                  bound: float = np.inf) -> tuple[int, list]:
    """The candidate ``n_crit`` of least modelled cost for ``order``, and the :class:`TreeWork`
    of every candidate tried (ties: the smaller ``n_crit``); ``far_field`` as for
    :meth:`TreeWork.cost`.

    Every other candidate of :data:`CANDIDATES` (a factor 2 apart) is tried from the largest
    down (those beyond the number of points make the same one-box tree and are not tried); the
    far-field part of the cost (V entries and boxes) only grows as ``n_crit`` falls, so the
    sweep stops once it alone exceeds the best cost so far, or ``bound`` (the cost of a tree
    found already, in another root cube). Then the candidates beside the best (a factor
    sqrt(2) away) are tried too. The sweep counts each tree before its 2:1 balance; the cheapest
    is counted balanced, and the next cheapest where its count before the balance is below
    that, and the cheaper chosen (its boxes are the tree's).
    """
    largest = max(points.builder.point_counts())
    top = next((k for k, n_crit in enumerate(CANDIDATES) if n_crit >= largest),
               len(CANDIDATES) - 1)
    cells = CellCounts.of(points, CANDIDATES[0])
    tried = {}

    def cost(index: int) -> float:
        return tried[index].cost(order, pair_flops, far_field)

    # Counted side by side (numpy releases the GIL in most of it, so two threads take less time
    # than one: docs/history.md, 2026-11-25, "Set-up: overlapped, narrower, pooled"), except
    # where the counts are collective calls (a distributed tree): those on the calling thread,
    # in order.
    workers = _WORKERS if points.builder.thread_safe else 1
    # Candidates whose boxes are the same (a uniform distribution's trees jump a level at a
    # time: at 10^6 cube points, 1024 and 512 make one tree, so do 128, 91 and 64) have the
    # same work: counted once.
    same_boxes = _SameBoxes(cells)
    with ThreadPoolExecutor(workers) as pool:
        def count(indices) -> list[TreeWork]:
            new = same_boxes.new(CANDIDATES[index] for index in indices)
            for work_of in pool.map(tree_work_of, new) if workers > 1 else map(tree_work_of,
                                                                                new):
                same_boxes.add(work_of)
            return [same_boxes.counted(CANDIDATES[index]) for index in indices]

        def tree_work_of(n_crit: int) -> TreeWork:
            return tree_work(points, n_crit, order, cells, balanced=False)

        def next_batch(sweep: list[int]) -> tuple[list[int], list[int]]:
            """The next candidates of ``sweep``, up to ``workers`` of them to be counted."""
            for taken in range(1, len(sweep) + 1):
                if len(same_boxes.new(CANDIDATES[index] for index in sweep[:taken])) > workers:
                    return sweep[:taken - 1], sweep[taken - 1:]
            return sweep, []

        # The sweep, a few candidates at a time: a candidate counted beyond the one where
        # the sweep stops is dropped, so what is tried is the sequential sweep's.
        best, sweep = bound, list(range(top, -1, -2))
        while sweep:
            batch, sweep = next_batch(sweep)
            for index, work in zip(batch, count(batch), strict=True):
                tried[index] = work
                best = min(best, cost(index))
                if work.far_field_cost(order, far_field) > best:
                    sweep = []
                    break
        coarse = min(tried, key=lambda index: (cost(index), index))
        beside = [index for index in (coarse - 1, coarse + 1)
                  if 0 <= index <= top and index not in tried]
        tried.update(zip(beside, count(beside), strict=True))
    # Ranked before their balance (which adds few boxes on a sphere or in a cube, up to a
    # quarter in a cluster's outskirts, and costs most of a count). The balance only adds
    # boxes, so it only raises a tree's cost: the cheapest is counted balanced, then the next
    # cheapest of another tree where it costs less unbalanced than that, and the cheaper chosen.
    ranked = sorted(tried, key=lambda index: (cost(index), index))
    finalists = ranked[:1]
    runner_up = next((index for index in ranked[1:]
                      if tried[index].boxes[0] is not tried[ranked[0]].boxes[0]), None)
    tried[ranked[0]] = tree_work(points, CANDIDATES[ranked[0]], order, cells)
    if runner_up is not None and cost(runner_up) < cost(ranked[0]):
        finalists.append(runner_up)
        tried[runner_up] = tree_work(points, CANDIDATES[runner_up], order, cells)
    chosen = min(finalists, key=lambda index: (cost(index), index))
    return CANDIDATES[chosen], [tried[index] for index in sorted(tried)]


#: Root cubes ``n_crit="auto"`` may choose, as multiples of the side of the points' bounding
#: cube (about its centre). A leaf's volume is the root's over a power of 8, so in the bounding
#: cube alone a near-uniform distribution's leaves jump by 8 in volume (the depth jump: 30 or
#: 244 points per leaf at 10^6 cube points, nothing between); the three cubes make leaf
#: volumes a factor 2 apart. The operators of a homogeneous kernel do not depend on the boxes'
#: size, so a larger cube costs no precomputation.
ROOT_SCALES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
#: Another root cube is counted only where the model predicts its tree this much cheaper than
#: the bounding cube's best (:func:`predicted_root_scale`): its counts cost about as much as
#: the bounding cube's (0.1 s at 10^6 points), which a smaller gain would not repay in one
#: evaluation.
REBALANCE_GAIN = 1.1


@dataclass(frozen=True)
class TreeChoice:
    """What :func:`choose_tree` chose: the points sorted in the chosen root cube, its scale
    (:data:`ROOT_SCALES`), ``n_crit``, and the :class:`TreeWork` of every candidate tried in
    every root cube tried."""

    points: SortedPoints
    root_scale: float
    n_crit: int
    candidates: list[TreeWork]

    @property
    def work(self) -> TreeWork:
        """The chosen tree's :class:`TreeWork` (with its boxes)."""
        return next(work for work in self.candidates
                    if work.n_crit == self.n_crit and work.root_scale == self.root_scale)


def leaf_dimension(points: SortedPoints, work: TreeWork) -> float:
    """How the points fill space at the tree's leaves: log2 of the number of non-empty cells
    one level below the level holding most leaves over the number at it (3 for points filling
    a volume, 2 on a surface), within [1, 3]."""
    _keys, levels, leaf = work.boxes
    level = int(np.bincount(levels[leaf]).argmax())
    if level >= points.depth:
        return 3.0
    coarse, fine = len(points.builder.cells(level)), len(points.builder.cells(level + 1))
    return float(np.clip(np.log2(fine / coarse), 1.0, 3.0))


def predicted_root_scale(work: TreeWork, dimension: float, order: int, pair_flops: float,
                         far_field: tuple[float, float] | None) -> float | None:
    """The root cube of :data:`ROOT_SCALES` whose tree the model predicts cheapest from the
    bounding cube's best tree ``work``, None where none is :data:`REBALANCE_GAIN` cheaper.

    A cube ``2^(k/3)`` times as wide makes leaves ``2^k`` times the volume at the same level,
    or ``2^(k-3)`` one level deeper; a leaf ``x`` times the volume holds ``x^(d/3)`` times the
    points (``d``: :func:`leaf_dimension`), which scales the near field's pairs by that factor
    and the far field's boxes and V entries by its inverse."""
    near = work.p2p_pairs * pair_flops
    far = work.far_field_cost(order, far_field)
    least, chosen = near + far, None
    for power, scale in enumerate(ROOT_SCALES[1:], start=1):
        for volume in (2.0 ** power, 2.0 ** (power - 3)):
            points = volume ** (dimension / 3)
            predicted = near * points + far / points
            if predicted * REBALANCE_GAIN < near + far and predicted < least:
                least, chosen = predicted, scale
    return chosen


def choose_tree(points: SortedPoints, order: int, pair_flops: float,
                far_field: tuple[float, float] | None,
                in_cube: Callable[[float], SortedPoints] | None = None) -> TreeChoice:
    """The root cube and ``n_crit`` of least modelled cost: :func:`choose_n_crit` for
    ``points`` (sorted in their bounding cube); then, where ``in_cube`` is given (``scale ->``
    the same points sorted in the cube ``scale`` times as wide) and
    :func:`predicted_root_scale` names a wider cube, :func:`choose_n_crit` there too, its
    sweep stopped by the first one's cost, and the cheaper of the two."""
    n_crit, tried = choose_n_crit(points, order, pair_flops, far_field)
    best = TreeChoice(points, ROOT_SCALES[0], n_crit, tried)
    scale = None if in_cube is None else predicted_root_scale(
        best.work, leaf_dimension(points, best.work), order, pair_flops, far_field)
    if scale is None:
        return best
    least = best.work.cost(order, pair_flops, far_field)
    scaled = in_cube(scale)
    n_crit, wider = choose_n_crit(scaled, order, pair_flops, far_field, bound=least)
    wider = [dataclasses.replace(work, root_scale=scale) for work in wider]
    choice = TreeChoice(scaled, scale, n_crit, tried + wider)
    return choice if choice.work.cost(order, pair_flops, far_field) < least else \
        dataclasses.replace(best, candidates=tried + wider)
