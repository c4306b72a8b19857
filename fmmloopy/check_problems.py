"""Small real problems for the automatic check: adaptive octrees with their interaction lists.

Each problem builds the octree (:mod:`fmmloopy.tree`) of a point distribution and its KIFMM
lists. The pairwise template runs over the U list of every leaf holding targets (the near field);
the matvec template over the V list of every box (one matrix per transfer vector, as M2L). The
distributions give empty boxes, crowded leaves, several levels and targets apart from sources,
which exercise every edge case of the CSR loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmmloopy.distributions import plummer, sphere_surface
from fmmloopy.interaction_lists import (
    NTRANSFER_VECTORS,
    InteractionLists,
    build_interaction_lists,
)
from fmmloopy.kernel_arguments import box_list, box_list_arguments, tree_arguments
from fmmloopy.operators import MATVEC, PARTICLES, SURFACE, OperatorSpec
from fmmloopy.tree import Tree, build_tree


@dataclass
class CheckProblem:
    """A named tree with its lists, from which any template's arguments are filled."""

    name: str
    tree: Tree
    lists: InteractionLists
    seed: int = 0
    #: Surface points (orders 3 and 4 give 26 and 56) and c2e rank of the kernels checked on this
    #: problem. Problems differ in them, so a recipe's size-dependent branches (vector widths
    #: that divide the size or not) are all exercised.
    surface_size: int = 26
    rank: int = 20

    def arguments(self, spec: OperatorSpec, sizes: dict[str, int]
                  ) -> dict[str, np.ndarray | int]:
        """Every argument the kernel of ``spec`` takes, filled from this problem.

        Target boxes are all boxes with a non-empty row in the operator's list (for particle
        targets: leaves with targets, as boxes that share particles would race on them); values
        and matrices are random.
        """
        rng = np.random.default_rng(self.seed + 1)
        tree = self.tree
        arguments = tree_arguments(tree)
        starts, entries, matrix_indices = box_list(tree, self.lists, spec.box_list)
        has_row = np.diff(starts) > 0
        if spec.targets == PARTICLES:
            has_row &= tree.box_is_leaf & (tree.box_target_counts > 0)
        target_boxes = np.flatnonzero(has_row)
        if spec.template == MATVEC:
            nmatrices = {"v": NTRANSFER_VECTORS, "children": 8, "parent": 8}.get(spec.box_list, 1)
            n_out, n_in = sizes["n_target_coeffs"], sizes["n_source_coeffs"]
            arguments |= {
                "matrices": rng.standard_normal((nmatrices, n_out, n_in)),
                "nmatrices": nmatrices,
                "source_vectors": rng.standard_normal((tree.nboxes, n_in)),
                "target_vectors": rng.standard_normal((tree.nboxes, n_out)),
                "level_scales": 2.0 ** -np.arange(tree.nlevels),
            }
        else:
            n_surface = sizes.get("n_surface")
            shape = {PARTICLES: lambda n: (n,), SURFACE: lambda n: (tree.nboxes, n_surface)}
            arguments |= {
                "strengths": rng.standard_normal(shape[spec.sources](tree.nsources)),
                "result": rng.standard_normal(shape[spec.targets](tree.ntargets)),
                "max_box_targets": int(tree.box_target_counts[target_boxes].max()),
            }
            if n_surface is not None:
                surface = rng.uniform(-3.0, 3.0, (3, n_surface))
                arguments |= {"target_surface": surface, "source_surface": surface}
        return arguments | box_list_arguments(starts, entries, target_boxes, matrix_indices)


def tree_problem(name: str, sources: np.ndarray, targets: np.ndarray | None = None,
                 n_crit: int = 24, seed: int = 0, surface_size: int = 26,
                 rank: int = 20) -> CheckProblem:
    """Build the octree and lists of ``sources`` (and ``targets``) as a check problem."""
    tree = build_tree(sources, targets, n_crit=n_crit)
    return CheckProblem(name, tree, build_interaction_lists(tree), seed, surface_size, rank)


def check_problems(seed: int = 0, n: int = 1500) -> list[CheckProblem]:
    """The problems ``fmmloopy check`` runs: four distributions, adaptive trees of 3-6 levels."""
    rng = np.random.default_rng(seed)
    cube = rng.random((n, 3))
    return [
        tree_problem("uniform-cube", cube, seed=seed),
        tree_problem("sphere", sphere_surface(n, rng), seed=seed, surface_size=56, rank=24),
        tree_problem("plummer", plummer(n, rng), seed=seed),
        tree_problem("tgt!=src", cube, rng.random((n // 2, 3)) * 1.2 - 0.1, n_crit=40,
                     seed=seed, surface_size=56, rank=24),
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
