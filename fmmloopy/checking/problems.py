"""Real problems for the automatic check: adaptive octrees with their interaction lists.

Small problems (:func:`check_problems`) give edge cases cheaply; production-size problems
(:func:`production_problems`) give the sizes a real FMM reaches (full surfaces, leaves filled to
``n_crit``, the longest lists), where a recipe that assumes a bound goes wrong. Each problem
builds the octree (:mod:`fmmloopy.tree.octree`) of a point distribution and its KIFMM lists. The
pairwise template runs over the U list of every leaf holding targets (the near field); the
matvec template over the V list of every box (one matrix per transfer vector, as M2L). The
distributions give empty boxes, crowded leaves, several levels and targets apart from sources,
which exercise every edge case of the CSR loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fmmloopy.base.distributions import plummer, sphere_surface
from fmmloopy.base.precision import FLOAT64, Precision
from fmmloopy.checking.verification import random_operands, random_values
from fmmloopy.execution.kernel_arguments import (
    box_list,
    box_list_arguments,
    fold_vectors,
    tree_arguments,
)
from fmmloopy.maths.geometry import NTRANSFER_VECTORS
from fmmloopy.maths.green import GreenKernel, get_kernel
from fmmloopy.maths.harmonic import operator_kernel
from fmmloopy.maths.operators import MATVEC, PARTICLES, OperatorSpec, operator_sizes
from fmmloopy.maths.periodic import CHILD_OFFSETS
from fmmloopy.tree.direct_lists import direct_where_cheaper
from fmmloopy.tree.lists import InteractionLists, build_interaction_lists
from fmmloopy.tree.octree import Tree, build_tree, sort_in_cube, tree_boxes
from fmmloopy.tree.periodic import cell_root, into_cell, lattice_list, periodic_tree, real_rows


@dataclass
class CheckProblem:
    """A named tree with its lists, from which any template's arguments are filled."""

    name: str
    tree: Tree
    lists: InteractionLists
    seed: int = 0
    #: Surface points (orders 3 and 4 give 26 and 56; the default order 6, 152) and c2e rank of
    #: the kernels checked on this problem. Problems differ in them, so a recipe's
    #: size-dependent branches (vector widths that divide the size or not) are all exercised.
    surface_size: int = 26
    rank: int = 20
    #: Whether the problem has the sizes of a real FMM run (checked on a sample of rows).
    production: bool = False
    #: Rank of the compressed M2L (``m2l_compress``, ``m2l``, ``m2l_expand``); None: ``rank``.
    m2l_rank: int | None = None
    #: Operator -> ``(name, box list, matrices)`` of the list it is checked on here instead of
    #: its own: the periodic problem checks M2M's kernel on the far lattice's list, the launch
    #: a periodic FMM makes of it (:func:`periodic_problem`).
    lists_for: dict[str, tuple[str, tuple[np.ndarray, ...], int]] = field(default_factory=dict)

    def sizes(self, operator: str) -> list[dict[str, int]]:
        """The template sizes ``operator`` is checked at on this problem: for c2e both factors
        (``rank x n_e`` and ``n_e x rank``) when they differ."""
        first = operator_sizes(operator, self.surface_size, rank=self.rank,
                               m2l_rank=self.m2l_rank)
        if operator != "c2e" or self.rank == self.surface_size:
            return [first]
        return [first, operator_sizes(operator, self.surface_size, rank=self.rank,
                                      first_factor=False)]

    def arguments(self, spec: OperatorSpec, sizes: dict[str, int],
                  green: GreenKernel | None = None,
                  precision: Precision = FLOAT64) -> dict[str, np.ndarray | int]:
        """Every argument the kernel of ``spec`` (summing ``green``: its input and output
        components) of ``precision`` takes, filled from this problem.

        Target boxes are all boxes with a non-empty row in the operator's list (for particle
        targets: leaves with targets, as boxes that share particles would race on them); values
        and matrices are random.
        """
        rng = np.random.default_rng(self.seed + 1)
        tree = self.tree
        override = self.lists_for.get(spec.name)
        starts, entries, matrix_indices = (override[1] if override is not None
                                           else box_list(tree, self.lists, spec.box_list))
        has_row = np.diff(starts) > 0
        if spec.targets == PARTICLES:
            has_row &= tree.box_is_leaf & (tree.box_target_counts > 0)
        target_boxes = np.flatnonzero(has_row)
        lists = box_list_arguments(starts, entries, target_boxes, matrix_indices)
        if spec.template == MATVEC and green is not None:  # vectors folded into the boxes
            lists = fold_vectors(lists, green.vectors, tree.box_levels)
        arguments = tree_arguments(tree, precision) | random_operands(
            spec, sizes, tree, rng, green, nboxes=lists.get("nboxes", tree.nboxes))
        if spec.template == MATVEC:
            nmatrices = (override[2] if override is not None else
                         {"v": NTRANSFER_VECTORS, "children": 8, "parent": 8}.get(spec.box_list,
                                                                                  1))
            n_out, n_in = sizes["n_target_coeffs"], sizes["n_source_coeffs"]
            arguments |= {
                "matrices": random_values(rng, (nmatrices, n_out, n_in),
                                          green is not None and green.is_complex),
                "nmatrices": nmatrices,
                "level_scales": 2.0 ** -np.arange(tree.nlevels),
            }
        else:
            n_surface = sizes.get("n_surface")
            arguments["max_box_targets"] = int(tree.box_target_counts[target_boxes].max(
                initial=0))
            if n_surface is not None:
                surface = rng.uniform(-3.0, 3.0, (3, n_surface))
                arguments |= {"target_surface": surface, "source_surface": surface}
        return arguments | lists

    def describe(self) -> str:
        """One line: the sizes this problem reaches (points, boxes, leaves, lists, surfaces)."""
        tree, lists = self.tree, self.lists
        leaves = tree.box_is_leaf
        longest = {name.upper(): int(np.diff(getattr(lists, f"{name}_starts")).max())
                   for name in "uvwx"}
        lists_text = " ".join(f"{name}<={length}" for name, length in longest.items())
        return (f"{self.name}: {tree.nsources} sources, {tree.ntargets} targets, "
                f"{tree.nboxes} boxes on {tree.nlevels} levels, leaves of up to "
                f"{int(tree.box_target_counts[leaves].max())} targets and "
                f"{int(tree.box_source_counts[leaves].max())} sources, lists {lists_text}, "
                f"surfaces of {self.surface_size} points, c2e rank {self.rank}, "
                f"M2L rank {self.rank if self.m2l_rank is None else self.m2l_rank}"
                + "".join(f"; {operator} on the {name} list "
                          f"({matrices} matrices)"
                          for operator, (name, _, matrices) in self.lists_for.items()))


def tree_problem(name: str, sources: np.ndarray, targets: np.ndarray | None = None,
                 n_crit: int = 24, seed: int = 0, surface_size: int = 26,
                 rank: int = 20, direct_lists: bool = False,
                 production: bool = False, m2l_rank: int | None = None) -> CheckProblem:
    """Build the octree and lists of ``sources`` (and ``targets``) as a check problem; with
    ``direct_lists``, the lists an :class:`fmmloopy.Fmm` evaluates by default (small W/X boxes
    summed directly, which makes U lists longer)."""
    tree = build_tree(sources, targets, n_crit=n_crit)
    lists = build_interaction_lists(tree)
    if direct_lists:
        lists = direct_where_cheaper(tree, lists, surface_size)
    return CheckProblem(name, tree, lists, seed, surface_size, rank, production, m2l_rank)


def periodic_problem(name: str, points: np.ndarray, side: float = 1.0, n_crit: int = 24,
                     seed: int = 0, surface_size: int = 26, rank: int = 20,
                     production: bool = False, m2l_rank: int | None = None) -> CheckProblem:
    """A periodic cell of side ``side`` holding ``points`` (wrapped into ``[0, side)^3``): the
    tree of the cell and its images a periodic FMM builds (:mod:`fmmloopy.tree.periodic`),
    whose lists reach image boxes and ghost sources, rows of the cell's boxes only; M2M's
    kernel is checked on the far lattice's list (each child of the cell lists the 8
    children, with 27 operators) instead of the children list."""
    depth = 20
    lower = np.zeros(3)
    wrapped = into_cell(points, lower, side, depth)
    cell_points = sort_in_cube(wrapped, wrapped, *cell_root(lower, side), depth)
    periodic = periodic_tree(cell_points, n_crit, tree_boxes(cell_points, n_crit), side,
                             surface_size)
    lists = real_rows(build_interaction_lists(periodic.tree), periodic.real)
    _, lattice = lattice_list(periodic)
    return CheckProblem(name, periodic.tree, lists, seed, surface_size, rank, production,
                        m2l_rank,
                        lists_for={"m2m": ("far lattice's", lattice, NLATTICE_OPERATORS)})


#: Surfaces and ranks of the small "sphere" and "tgt!=src" problems on their own: order 4's 56
#: points (a multiple of 8, where order 3's 26 is not) and c2e and M2L rank 24.
SMALL_SECOND_SIZES = {"surface_size": 56, "rank": 24, "m2l_rank": None}


def check_problems(seed: int = 0, n: int = 1500,
                   second_sizes: dict[str, int | None] | None = None) -> list[CheckProblem]:
    """The small problems ``fmmloopy check`` runs: four distributions, adaptive trees of 3-6
    levels, empty boxes, crowded leaves, targets apart from sources; and a periodic cell of
    ``n // 4`` points with its images (:func:`periodic_problem`).

    "uniform-cube" and "plummer" have surfaces of 26 points and c2e rank 20; "sphere" and
    "tgt!=src" the ``second_sizes`` (``surface_size``, ``rank``, ``m2l_rank``; default
    :data:`SMALL_SECOND_SIZES`). A check that also runs production-size problems gives them
    those problems' sizes (:func:`production_sizes`): the kernels built for one serve both, and
    every size a recipe may branch on (a multiple of the vector width or not, a second c2e
    factor or not) is still reached.
    """
    second = SMALL_SECOND_SIZES if second_sizes is None else second_sizes
    rng = np.random.default_rng(seed)
    cube = rng.random((n, 3))
    return [
        tree_problem("uniform-cube", cube, seed=seed),
        tree_problem("sphere", sphere_surface(n, rng), seed=seed, **second),
        tree_problem("plummer", plummer(n, rng), seed=seed),
        tree_problem("tgt!=src", cube, rng.random((n // 2, 3)) * 1.2 - 0.1, n_crit=40,
                     seed=seed, **second),
        periodic_problem("periodic", plummer(n // 4, rng) * 0.2 + 0.5, seed=seed),
    ]


#: Defaults of the production-size problems: those of :class:`fmmloopy.Fmm`.
DEFAULT_ORDER, DEFAULT_N_CRIT = 6, 150

#: Points of a production-size problem per unit of ``n_crit``: 120 * 150 = 18000 Plummer points
#: (:data:`PRODUCTION_TREE_SEED`) give 838 boxes on 8 levels, leaves of up to 149 points, and
#: lists of up to U 39, V 189, W 56, X 19 entries.
POINTS_PER_N_CRIT = 120

#: The far lattice's operators, one per offset between two children of the cell.
NLATTICE_OPERATORS = len(CHILD_OFFSETS)

#: Seed of the points of the production-size trees: fixed, so that the sizes reached do not
#: depend on ``--seed`` (which draws the values).
PRODUCTION_TREE_SEED = 4


def cavity_points(n_crit: int, rng: np.random.Generator) -> np.ndarray:
    """A nearly empty level-3 leaf whose 26 colleagues are all split (each child holds
    ``n_crit // 8 + 1`` points): its W list reaches the bound of 152 and its U list 57."""
    per_child = n_crit // 8 + 1
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
    width = 1.0 / 8  # level-3 boxes of the unit cube spanned by the corners
    points = [corners]
    for offset in np.ndindex(3, 3, 3):
        box = np.array(offset) + 3
        if offset == (1, 1, 1):
            points.append((box + 0.5)[None, :] * width)
            continue
        for child in np.ndindex(2, 2, 2):
            lo = box + 0.5 * np.array(child) + 0.1
            points.append((lo + rng.uniform(0.0, 0.3, (per_child, 3))) * width)
    return np.concatenate(points)


def production_sizes(order: int = DEFAULT_ORDER,
                     kernel: str | GreenKernel = "laplace") -> dict[str, int]:
    """Surfaces and ranks of an FMM of ``kernel`` at ``order``: ``surface_size``, the c2e
    ``rank`` and the compressed M2L's ``m2l_rank``, from its precomputed operators."""
    from fmmloopy.execution.precomputed import get_operators
    operators = get_operators(operator_kernel(get_kernel(kernel)), order)
    return {"surface_size": operators.n_e, "rank": operators.uc2e_first.shape[0],
            "m2l_rank": operators.m2l_rank()}


def production_problems(order: int = DEFAULT_ORDER, n_crit: int = DEFAULT_N_CRIT,
                        n: int | None = None, seed: int = 0,
                        kernel: str | GreenKernel = "laplace") -> list[CheckProblem]:
    """Problems with the sizes a real FMM at ``order`` and ``n_crit`` reaches.

    Surfaces of ``6 (order - 1)^2 + 2`` points and the c2e rank of that order; a Plummer
    sphere of ``n`` points (default ``POINTS_PER_N_CRIT * n_crit``) with leaves filled to
    about ``n_crit`` and V and X lists at their bounds (189, 19 for the defaults); ``2 n``
    points on the sphere surface with the lists :class:`fmmloopy.Fmm` evaluates by default
    (U lists grown by the small W/X boxes); a cavity whose W list reaches 152 and U list 57.
    Hundreds to thousands of target boxes per launch. The c2e rank is that of ``kernel``'s
    precomputed operators.
    """
    n = POINTS_PER_N_CRIT * n_crit if n is None else n
    sizes = dict(seed=seed, n_crit=n_crit, production=True) | production_sizes(order, kernel)
    rng = np.random.default_rng(PRODUCTION_TREE_SEED)
    return [
        tree_problem(f"plummer-{n_crit}", plummer(n, rng), **sizes),
        tree_problem(f"sphere-{n_crit}", sphere_surface(2 * n, rng), direct_lists=True,
                     **sizes),
        tree_problem(f"cavity-{n_crit}", cavity_points(n_crit, rng), **sizes),
    ]


#: Seed of the points of the memcheck trees: fixed, so that every list is non-empty whatever
#: ``--seed`` (which draws the values) says.
MEMCHECK_TREE_SEED = 1


def memcheck_problems(seed: int = 0) -> list[CheckProblem]:
    """Tiny problems for ``fmmloopy check --memcheck`` (the Oclgrind simulator is slow).

    200 Plummer points (84 boxes, 5 levels; U/V/W/X 750/1122/317/317 entries) and 80 Plummer
    sources with 100 targets apart from them, more targets than sources (26 boxes, 4 levels;
    175/68/47/47 entries, surfaces of 56 points); leaves of up to 20 and 19 targets, more than
    one 16-wide chunk. M2L over the V list dominates the simulator's time, hence so few points.
    """
    rng = np.random.default_rng(MEMCHECK_TREE_SEED)
    return [
        tree_problem("tiny-plummer", plummer(200, rng), n_crit=20, seed=seed),
        tree_problem("tiny-tgt!=src", plummer(80, rng), rng.random((100, 3)) * 4.0 - 2.0,
                     n_crit=20, seed=seed, surface_size=56, rank=24),
    ]
