"""What :meth:`fmmloopy.Fmm.update` keeps when the points move a little.

The boxes of the tree, the interaction lists, the operators, the plan's lists, matrices,
buffers and kernels all follow from the boxes, not from where the points lie in them. An update
keeps them when the moved points still fit the boxes (:func:`fmmloopy.tree.rebin.rebinned_tree`:
every point in a leaf of the root cube, no box gaining a kind of point it held none of, no leaf
past :data:`LEAF_GROWTH` times ``n_crit``): the points are sorted into the kept leaves, and
the plan's point arrays (coordinates, the boxes' point ranges) are written into the device
buffers its launches already hold (:meth:`~fmmloopy.driver.plan.Plan.refresh_points`). The
points keep the FMM's working coordinates (origin and power-of-two scale) where the scale
still holds them; where the points' mean drifted by more than :data:`DRIFT` of the smallest
leaf's width, the origin of those coordinates moves with it, and the boxes with the cloud. A
point that stepped into a cell where the tree has no leaf stays in its leaf while it lies within
:data:`LOOSENESS` of the leaf's width of it.

Otherwise the update builds a new set-up, for operators with homogeneity in a root cube wider than
the points by :data:`MOVING_MARGIN` of their extent on every side, so that the next steps' points
stay in it. A periodic FMM's tree (the cell and its images) and one with nested FMMs in its
leaves are always rebuilt.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import pyopencl as cl

from fmmloopy.api.options import FmmOptions
from fmmloopy.api.setup import PointsSetUp
from fmmloopy.base.validation import as_float64_points, check_point_array
from fmmloopy.execution.device_setup import device_point_keys
from fmmloopy.execution.kernel_arguments import tree_arguments
from fmmloopy.maths.harmonic import operator_kernel
from fmmloopy.maths.templates import particles_for
from fmmloopy.tree.coordinates import working_exponent
from fmmloopy.tree.leaf_relative import refuse_unresolved_points
from fmmloopy.tree.rebin import LEFT_THE_ROOT_CUBE, in_root_cube, rebinned_tree

__all__ = ["DRIFT", "LEAF_GROWTH", "LOOSENESS", "MOST_SKIPPED", "MOVING_MARGIN",
           "KeptBoxesAttempts", "checked_moves", "kept_boxes", "rebuild_margin",
           "refresh_plans"]

#: A leaf may hold up to this many times ``n_crit`` sources or targets after updates before the
#: tree is rebuilt: its direct sums cost at most this factor squared more per pair of leaves.
LEAF_GROWTH = 2
#: The root cube of a tree an update rebuilds extends past the points' bounding cube by this
#: fraction of their extent on every side (1/16: 12.5 % wider in all; points that move 1e-2
#: of the extent per step stay in it for several steps).
MOVING_MARGIN = 1 / 16


#: A point that moved into a cell where the tree has no leaf stays in its leaf while it lies
#: within this fraction of the leaf's width of it.
LOOSENESS = 1 / 8

#: Points whose mean moved more than this fraction of the smallest leaf's width (a cloud that
#: drifts: sedimenting, falling, flowing) take the tree's boxes with them: the working
#: coordinates' origin moves by the mean's displacement, so the points stay in the root cube
#: and in their leaves (the kernels depend on differences of positions only).
DRIFT = 1 / 16

#: After updates whose points the boxes could not hold, at most this many updates in a row
#: rebuild without trying to keep the boxes.
MOST_SKIPPED = 15


class KeptBoxesAttempts:
    """When an FMM's updates try to keep the boxes. Finding that the moved points do not fit
    costs most of what keeping them costs (the points' keys, a sort, the boxes' ranges: at
    10^6 points on a sphere moving off itself, 0.1-0.2 s on top of the rebuild at every step).
    After ``k`` updates in a row whose points did not fit, the next ``min(2^k - 1,``
    :data:`MOST_SKIPPED` ``)`` rebuild without trying; one that fits starts over. A point
    outside the root cube is found before the sort and does not count."""

    def __init__(self) -> None:
        self.failures, self.skip, self.reason = 0, 0, ""

    def attempt(self, keep: Callable[[], PointsSetUp | str]) -> PointsSetUp | str:
        """``keep()`` (the kept set-up, or why not), or the reason of the last failure where
        this update skips the attempt."""
        if self.skip:
            self.skip -= 1
            after = ("at the next update" if not self.skip else
                     f"after {self.skip} more update{'s' * (self.skip > 1)}")
            return f"{self.reason} at an update before (kept boxes are tried again {after})"
        kept = keep()
        if not isinstance(kept, str):
            self.failures = 0
        elif kept != LEFT_THE_ROOT_CUBE:
            self.failures += 1
            self.skip, self.reason = min(2 ** self.failures - 1, MOST_SKIPPED), kept
        return kept


def checked_moves(sources, targets, counts: tuple[int, int], targets_are_sources: bool,
                  whose: str, remedy: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The points an update takes, checked (``check_point_array``): targets exactly where the
    FMM was built with them, as many of each as ``counts`` (``whose``: ``"the FMM's"``, ...;
    ``remedy``: what to build instead); ValueError naming what is wrong."""
    if (targets is None) != targets_are_sources:
        raise ValueError(
            "update() takes targets exactly when the FMM was built with them: this one "
            + ("has none (its targets are its sources); pass sources only"
               if targets_are_sources else "has targets of its own; pass both"))
    sources = check_point_array(sources, "sources")
    targets = None if targets is None else check_point_array(targets, "targets")
    for name, points, count in (("sources", sources, counts[0]),
                                ("targets", targets, counts[1])):
        if points is not None and len(points) != count:
            raise ValueError(f"update() moves {whose} {count} {name}: got {len(points)} "
                             f"{name} ({remedy})")
    return sources, targets


def rebuild_margin(options: FmmOptions) -> float | None:
    """The root cube's margin of a tree an update rebuilds: :data:`MOVING_MARGIN` for a kernel
    whose operators do not depend on the boxes' size (homogeneous ones: Laplace's, and the
    Laplace sums of Stokes flow and the RPY tensor; a wider cube changes no operator and no
    range), else None (the points' own cube)."""
    return MOVING_MARGIN if operator_kernel(options.kernel).homogeneity is not None else None


def _in_working_coordinates(points: np.ndarray | None, origin: np.ndarray,
                            exponent: int) -> np.ndarray | None:
    if points is None:
        return None
    if origin.any():
        points = points - origin
    return np.ldexp(points, -exponent) if exponent else points


def _drift(tree, sources: np.ndarray) -> np.ndarray | None:
    """How far the sources' mean moved (working coordinates) from the tree's, where that is
    more than :data:`DRIFT` of the smallest leaf's width along an axis, else None. (The
    origin follows it unless the points then leave the root cube and would not without.)"""
    if not len(sources):
        return None
    # The mean of an (n, 3) array as a product with ones: faster than numpy's reduction along
    # its first axis (6 against 13 ms at 10^6 points).
    drift = np.ones(len(sources)) @ sources / len(sources) - tree.sources_soa.mean(axis=1)
    smallest = 2.0 * tree.box_half_widths[tree.box_is_leaf].min()
    return drift if np.abs(drift).max() > DRIFT * smallest else None


def kept_boxes(setup: PointsSetUp, options: FmmOptions, queue: cl.CommandQueue,
               sources: np.ndarray, targets: np.ndarray | None) -> PointsSetUp | str:
    """The set-up of ``setup``'s FMM for its points moved to ``sources`` and ``targets``
    (checked user arrays) with its boxes kept, its plan's point arrays not yet written
    (:func:`refresh_plans`); or a sentence saying why the boxes cannot be kept. ValueError
    where the points are refused (float32 points the kernels cannot tell apart)."""
    if setup.tree is None:
        return "the FMM has no tree"
    if setup.periodic_tree is not None:
        return "the FMM is periodic (its tree holds the cell's images)"
    if setup.rank_boxes is not None:
        return "the FMM is a rank of a distributed FMM"
    if setup.nested_rows:
        return "leaves of the tree are summed by nested FMMs"
    clock = time.perf_counter()
    sources = as_float64_points(sources, "sources")
    targets = None if targets is None else as_float64_points(targets, "targets")
    user_points = (sources, targets)
    origin, exponent = setup.coordinate_origin, setup.coordinate_exponent
    working = [_in_working_coordinates(points, origin, exponent) for points in user_points]
    drift = _drift(setup.tree, working[0])
    if drift is not None:  # the boxes follow the points (the kernels see only differences)
        followed = origin + np.ldexp(drift, exponent)
        following = [_in_working_coordinates(points, followed, exponent)
                     for points in user_points]
        if in_root_cube(setup.tree, *following) or not in_root_cube(setup.tree, *working):
            origin, working = followed, following
    if working_exponent(*working, options.kernel.homogeneity, options.kernel.name,
                        options.precision):
        return "the points need another scale"
    holders = setup.planned_holders or (setup.tree.box_source_counts > 0,
                                        setup.tree.box_target_counts > 0)
    tree = rebinned_tree(setup.tree, *working, LEAF_GROWTH * setup.tree.n_crit,
                         device_point_keys(queue), LOOSENESS, holders)
    if isinstance(tree, str):
        return tree
    if particles_for(options.precision.dtype).relative:
        refuse_unresolved_points(tree, options.precision)
    return dataclasses.replace(setup, user_points=user_points, tree=tree, overlaps=None,
                               setup_seconds={"tree": time.perf_counter() - clock},
                               planned_holders=holders, coordinate_origin=origin)


def refresh_plans(setup: PointsSetUp, plans, options: FmmOptions) -> None:
    """Write ``setup``'s moved points into ``plans`` (its plan and the plans of other fields,
    built on the same boxes) and time it as the set-up's ``plan`` stage."""
    clock = time.perf_counter()
    arguments = tree_arguments(setup.tree, options.precision)
    written: set[int] = set()
    for plan in plans:
        plan.refresh_points(arguments, setup.tree.box_target_counts, written)
    plans[0].queue.finish()
    setup.setup_seconds["plan"] = time.perf_counter() - clock
