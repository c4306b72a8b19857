"""Which far interactions are cheaper summed directly: the lists the FMM evaluates with.

An M2P interaction (W list: target leaf B, source box A) costs ``targets(B) * n_e`` kernel
evaluations; summing A's particles directly costs ``targets(B) * sources(A)`` and is exact. A P2L
interaction (X list: target box B, source leaf A) costs ``sources(A) * n_e`` (the local expansion
it feeds is shared); summing directly into B's targets costs ``sources(A) * targets(B)``. So a W
entry whose source box has at most ``n_e`` sources, and an X entry whose target box has at most
``n_e`` targets, move to the direct (P2P) list, as FMM3D does for small boxes of its lists 3 and 4.
Nothing else changes: every interaction is still summed exactly once.

A moved X entry is given to each leaf with targets under B (B itself when it is a leaf), since
one P2P launch writes each target from the one leaf that holds it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fmmloopy.tree.csr import csr_from_pairs, list_rows, ranges_to_indices
from fmmloopy.tree.lists import InteractionLists
from fmmloopy.tree.octree import Tree

__all__ = ["direct_where_cheaper"]

def _to_leaves(tree: Tree, role: str, boxes: np.ndarray,
               entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each (box, entry) pair repeated for every leaf with ``role`` points (``"source"`` or
    ``"target"``) under (or equal to) the box: ``(leaves, entries)``."""
    starts = getattr(tree, f"box_{role}_starts")
    counts_of = getattr(tree, f"box_{role}_counts")
    leaves = tree.leaves_in_point_order(role)
    leaf_starts = starts[leaves]  # strictly increasing: leaves partition the points
    first = np.searchsorted(leaf_starts, starts[boxes], side="left")
    stop = np.searchsorted(leaf_starts, starts[boxes] + counts_of[boxes], side="left")
    counts = stop - first
    return leaves[ranges_to_indices(first, counts)], np.repeat(entries, counts)


def direct_where_cheaper(tree: Tree, lists: InteractionLists, n_surface: int,
                         source_leaves: bool = False) -> InteractionLists:
    """``lists`` with the W and X entries cheaper to sum directly moved into U (see above).

    The result's U rows hold the adjacent leaves first, then the moved W entries, then the moved
    X entries; W and X keep the rest. ``n_surface`` is the points of an expansion surface.
    ``source_leaves``: a moved W entry's source box that is not a leaf is listed as its leaves
    with sources instead (kernels that store particles relative to their leaf's centre need
    every particle box to be that leaf).
    """
    nboxes = tree.nboxes
    w_rows = list_rows(lists.w_starts)
    w_direct = tree.box_source_counts[lists.w_lists] <= n_surface
    w_sources, w_targets = lists.w_lists[w_direct], w_rows[w_direct]
    if source_leaves:
        w_sources, w_targets = _to_leaves(tree, "source", w_sources, w_targets)
    x_rows = list_rows(lists.x_starts)
    x_direct = tree.box_target_counts[x_rows] <= n_surface
    x_leaves, x_sources = _to_leaves(tree, "target", x_rows[x_direct], lists.x_lists[x_direct])

    u_starts, u_lists = csr_from_pairs(
        np.concatenate([list_rows(lists.u_starts), w_targets, x_leaves]),
        np.concatenate([lists.u_lists, w_sources, x_sources]), nboxes)
    w_starts, w_lists = csr_from_pairs(w_rows[~w_direct], lists.w_lists[~w_direct], nboxes)
    x_starts, x_lists = csr_from_pairs(x_rows[~x_direct], lists.x_lists[~x_direct], nboxes)
    return dataclasses.replace(lists, u_starts=u_starts, u_lists=u_lists, w_starts=w_starts,
                               w_lists=w_lists, x_starts=x_starts, x_lists=x_lists)
