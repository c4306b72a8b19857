"""The order ``eps`` chooses from the points' own tree (Laplace, Yukawa, Helmholtz in free space).

The accuracy table's errors are the worst of its point sets; a point set whose near field
carries most of the field's norm (a surface, the closest pairs of a random set) meets ``eps``
orders below that. For the built-in Laplace kernel in free space, :class:`OrderSearch` settles
the order on the tree the FMM will run: the far field's share of the kernel weights on that
tree (:func:`fmmloopy.tree.far_share.far_share`) times the table's largest error per unit
share (:func:`fmmloopy.maths.accuracy.far_share_error`) is the error predicted for the worst
strengths, random or of one sign. A lower order makes a tree of smaller leaves (a larger
share), so each order tried is checked on its own tree: the search starts at the order the
root box alone asks for, moves to the lowest untried order that the share of the nearest
higher order tried predicts enough (a higher order's tree has larger leaves, so that share is
the hopeful one), and stops at the lowest order that met ``eps`` on its own tree (after
:data:`MOST_TREES` trees, the lowest met so far). The root box's order is the most it takes
(that rule met ``eps`` on every point set measured, at 10^4 and 10^6 points; the far share
also grows with the points' number, by 1.24x on a uniform cube from 10^4 to 10^6 points,
which the margin already covers there): the points' own share only lowers it.

A Yukawa FMM (whose targets are its sources, or ``kappa L`` up to
:data:`~fmmloopy.maths.accuracy.YUKAWA_SHARE_LIMIT`) and a Helmholtz FMM take the same
search, the error predicted as Laplace's on the tree times the table's ratio of the kernel's
errors to Laplace's at that order (:func:`~fmmloopy.maths.accuracy.laplace_ratio`: over the
sets whose targets are their sources where the FMM's are, else over every set; for Helmholtz
only the orders whose range covers the root box).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from fmmloopy.api.options import FmmOptions
from fmmloopy.base.progress import stage
from fmmloopy.maths.accuracy import (
    MARGIN,
    YUKAWA_SHARE_LIMIT,
    calibrated_family,
    family_parameter,
    far_share_error,
    far_share_orders,
    far_share_refusal,
    laplace_ratio,
    order_for_eps,
)
from fmmloopy.tree.far_share import FarShare, far_share
from fmmloopy.tree.lists import InteractionLists
from fmmloopy.tree.nested import without_heavy_rows
from fmmloopy.tree.octree import Tree

__all__ = ["MOST_TREES", "TREE_FIELDS", "OrderSearch", "first_order", "settle_order"]

#: Trees an order search builds at most (the first included); then the lowest order that met
#: ``eps`` on its own tree, or the one the last tree's share predicts.
MOST_TREES = 3
#: What a set-up's tree stage sets in its :class:`~fmmloopy.api.setup.PointsSetUp`: kept per
#: order tried, so that an order settled on after another is not built again.
TREE_FIELDS = ("n_crit", "root_scale", "what", "n_crit_candidates", "tree", "periodic_tree",
               "rank_boxes", "images", "lists", "evaluated_lists")


def first_order(options: FmmOptions, root_side: float, targets_are_sources: bool
                ) -> tuple[int, OrderSearch | None]:
    """The order to build the first tree for, and the search that settles it on the points
    (None where the order is the root box's: neither the built-in Laplace kernel, Yukawa
    (with targets apart: up to ``YUKAWA_SHARE_LIMIT``) nor Helmholtz, a periodic FMM, or no
    table rows with far shares). ValueError where ``eps`` cannot be met."""
    periodic_axes = len(options.periodic.axes) if options.periodic else 0
    family = calibrated_family(options.kernel, periodic_axes)
    parameter = family_parameter(family, options.kernel, root_side) if family else 0.0
    # Yukawa (with targets apart: kappa L within YUKAWA_SHARE_LIMIT) and Helmholtz as
    # Laplace, their errors over Laplace's from the table (laplace_ratio).
    ratio_known = family == "helmholtz" or (family == "yukawa" and (
        targets_are_sources or parameter <= YUKAWA_SHARE_LIMIT * (1 + 1e-9)))
    # The far shares' model has the potentials' and gradients' powers of 1 / r: a Hessian's
    # order is the root box's (the table's rows over every tree measured).
    hessian = any(quantity.endswith("hessian") for quantity in options.eps_quantities)
    applies = (periodic_axes == 0 and (family == "laplace" or ratio_known)
               and bool(far_share_orders()) and not hessian)
    cap = None
    try:
        order = cap = order_for_eps(options.eps, options.kernel, root_side,
                                    options.eps_quantities,
                                    targets_are_sources=targets_are_sources,
                                    periodic_axes=periodic_axes)
    except ValueError:
        if not applies:
            raise
        # The tree's share may serve it: start at the highest order with a prediction.
        order = _highest_predicted(family, parameter, options.eps_quantities,
                                   targets_are_sources)
        if order is None:
            raise
    return order, (OrderSearch(options.eps, options.eps_quantities, targets_are_sources, cap,
                               family, parameter) if applies else None)


def _highest_predicted(family: str, parameter: float, quantities: tuple[str, ...],
                       targets_are_sources: bool) -> int | None:
    """The highest order with far shares whose error ``family`` can predict for every one of
    ``quantities`` (Laplace's every such order; another family's, where its table rows at
    ``parameter`` have it: :func:`laplace_ratio` finite), None where none."""
    return max((order for order in far_share_orders() if family == "laplace" or all(
        math.isfinite(laplace_ratio(order, quantity, family, parameter, targets_are_sources))
        for quantity in quantities)), default=None)


class OrderSearch:
    """The search of the module docstring: :meth:`next_order` after each tree."""

    def __init__(self, eps: float, quantities: tuple[str, ...], targets_are_sources: bool,
                 cap: int | None = None, family: str = "laplace", parameter: float = 0.0):
        self.eps, self.quantities = eps, quantities
        self.targets_are_sources = targets_are_sources
        #: The kernel's family and parameter: another than Laplace's is predicted as Laplace's
        #: times the table's ratio of its errors to Laplace's (:func:`laplace_ratio`).
        self.family, self.parameter = family, parameter
        #: The root box's order (None where it refused): it met eps on every point set
        #: measured, so the search keeps to it or below and counts it as met.
        self.cap = cap
        self.orders = [order for order in far_share_orders() if cap is None or order <= cap]
        #: order -> the far share of its own tree, and the error predicted there
        self.shares: dict[int, FarShare] = {}
        self.predicted: dict[int, float] = {}

    def _error(self, order: int, share) -> float:
        if self.family == "laplace":
            return far_share_error(order, self.quantities, share.random, share.coherent,
                                   self.targets_are_sources)
        return max(far_share_error(order, (quantity,), share.random, share.coherent,
                                   self.targets_are_sources)
                   * laplace_ratio(order, quantity, self.family, self.parameter,
                                   self.targets_are_sources) for quantity in self.quantities)

    def next_order(self, order: int, tree: Tree, lists: InteractionLists) -> int | None:
        """The next order to build a tree for, given the tree and evaluated lists of
        ``order``; None where ``order`` is settled (its tree is the one to keep).
        ValueError where no order meets ``eps`` on these points."""
        # The heavy rows' pairs are summed by nested FMMs of this order: far, not near.
        share = far_share(tree, without_heavy_rows(tree, lists))
        self.shares[order] = share
        self.predicted[order] = self._error(order, share)
        met = [tried for tried, error in self.predicted.items()
               if MARGIN * error <= self.eps or tried == self.cap]
        missed = [tried for tried in self.predicted if tried not in met]
        floor = max(missed, default=-1)  # an order below one that missed misses too
        lowest_met = min(met, default=math.inf)

        def hopeful(candidate: int) -> bool:
            """Whether ``candidate`` may meet eps: with the share of the nearest order above
            it that was tried (a higher order's tree has larger leaves: less far field), or
            this tree's where none was."""
            above = [tried for tried in self.shares if tried > candidate]
            nearest = self.shares[min(above)] if above else share
            return MARGIN * self._error(candidate, nearest) <= self.eps

        untried = [candidate for candidate in self.orders
                   if floor < candidate < lowest_met and candidate not in self.predicted]
        guess = next((candidate for candidate in untried if hopeful(candidate)), None)
        if guess is None and not met:
            raise far_share_refusal(self.eps, self.quantities, min(
                self._error(candidate, share) for candidate in self.orders), self.family)
        if guess is None or (met and len(self.predicted) >= MOST_TREES):
            target = lowest_met
        else:
            target = guess
        return None if target == order else target


def settle_order(setup, options: FmmOptions, search: OrderSearch,
                 build: Callable[[FmmOptions], None]) -> FmmOptions:
    """``options`` at the order ``search`` settles on; ``setup`` (a
    :class:`~fmmloopy.api.setup.PointsSetUp` whose tree and lists are those of
    ``options.order``) left with that order's tree and lists, ``build(options)`` making them
    for another order (a tree per order tried; the searches' time counts as the tree's)."""
    built = {options.order: {name: getattr(setup, name) for name in TREE_FIELDS}}
    order = options.order
    while order is not None:
        if order not in built:
            build(options.with_order(order))
            built[order] = {name: getattr(setup, name) for name in TREE_FIELDS}
        elif order != options.order:  # an order tried before: the search settled on it
            for name, value in built[order].items():
                setattr(setup, name, value)
            return options.with_order(order)
        options = options.with_order(order)
        clock = time.perf_counter()
        with stage("the order eps needs on these points (the far field's share of the tree)"):
            order = search.next_order(order, setup.tree, setup.evaluated_lists)
        setup.setup_seconds["tree"] += time.perf_counter() - clock
    return options
