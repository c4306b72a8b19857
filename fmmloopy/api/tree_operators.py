"""The operators of an FMM's tree: those of its first level with expansions (before the tree,
for the cost model) and those of every level (once the order is settled), the memory of a
kernel's sets per level checked before they are computed."""

from __future__ import annotations

import math
import time

import pyopencl as cl

from fmmloopy.api.options import FmmOptions
from fmmloopy.base.progress import stage
from fmmloopy.driver.memory import estimate_memory
from fmmloopy.execution.precomputed import (
    get_operators,
    level_operators,
    level_set,
    level_set_count,
)
from fmmloopy.execution.resources import check_memory
from fmmloopy.maths.harmonic import operator_kernel
from fmmloopy.maths.kifmm import FIRST_EXPANSION_LEVEL
from fmmloopy.maths.precompute import KifmmOperators

__all__ = ["first_operators", "tree_operators"]


def first_operators(options: FmmOptions, half_width: float) -> KifmmOperators:
    """The operators of the first level with expansions of a root cube of ``half_width``: a
    homogeneous kernel's one set, else the set of that level's boxes."""
    kernel = operator_kernel(options.kernel)
    if kernel.homogeneity is not None:
        return get_operators(kernel, options.order)
    return level_set(kernel, options.order, math.ldexp(half_width, -FIRST_EXPANSION_LEVEL))


def tree_operators(setup, options: FmmOptions, queue: cl.CommandQueue,
                   first: KifmmOperators) -> None:
    """Stage 2's rest into ``setup`` (a :class:`~fmmloopy.api.setup.PointsSetUp` with its
    tree): the operators of every level of its tree (``first``: the first level's), made once
    the order is settled (an order the search tried and left computes none)."""
    kernel = operator_kernel(options.kernel)
    if kernel.homogeneity is None:  # a set per level: their memory checked before computing
        _check_level_sets(setup, options, queue, first.ranks())
    clock = time.perf_counter()
    with stage(f"operators of the tree's {setup.tree.nlevels} levels"):
        setup.operators = level_operators(kernel, options.order, setup.tree.level_half_widths)
    setup.setup_seconds["precompute"] += time.perf_counter() - clock


def _check_level_sets(setup, options: FmmOptions, queue: cl.CommandQueue,
                      ranks: dict[str, int]) -> None:
    """ResourceLimitError where the operators of a kernel without homogeneity, a set per level
    of the tree (complex for Helmholtz), cannot fit: before they are computed (a Helmholtz
    FMM of order 14 on 10^4 points, three sets, ran out of 24 GB). ``ranks``: those of the
    first level's set, the widest boxes' (the largest of Helmholtz's sets; Yukawa's deeper,
    Laplace-like sets may have larger M2L ranks, which the check before the plan counts)."""
    tree = setup.tree
    estimate = estimate_memory(
        nsources=tree.nsources, ntargets=tree.ntargets, order=options.order,
        targets_are_sources=tree.targets_are_sources, nboxes=tree.nboxes,
        nlevels=tree.nlevels, operator_sets=level_set_count(tree.nlevels), ranks=ranks,
        complex_values=options.kernel.is_complex, real_bytes=options.precision.dtype.itemsize,
        scheme=options.scheme, components=options.kernel.density_components)
    check_memory(estimate, queue.device, setup.what, options.memory_limit)
