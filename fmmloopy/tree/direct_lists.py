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

def _to_target_leaves(tree: Tree, boxes: np.ndarray,
                      entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each (box, entry) pair repeated for every leaf with targets under (or equal to) the box."""
    leaves = np.flatnonzero(tree.box_is_leaf & (tree.box_target_counts > 0))
    leaves = leaves[np.argsort(tree.box_target_starts[leaves], kind="stable")]
    leaf_starts = tree.box_target_starts[leaves]  # strictly increasing: leaves partition targets
    first = np.searchsorted(leaf_starts, tree.box_target_starts[boxes], side="left")
    stop = np.searchsorted(leaf_starts, tree.box_target_starts[boxes]
                           + tree.box_target_counts[boxes], side="left")
    counts = stop - first
    return leaves[ranges_to_indices(first, counts)], np.repeat(entries, counts)


def direct_where_cheaper(tree: Tree, lists: InteractionLists,
                         n_surface: int) -> InteractionLists:
    """``lists`` with the W and X entries cheaper to sum directly moved into U (see above).

    The result's U rows hold the adjacent leaves first, then the moved W entries, then the moved
    X entries; W and X keep the rest. ``n_surface`` is the points of an expansion surface.
    """
    nboxes = tree.nboxes
    w_rows = list_rows(lists.w_starts)
    w_direct = tree.box_source_counts[lists.w_lists] <= n_surface
    x_rows = list_rows(lists.x_starts)
    x_direct = tree.box_target_counts[x_rows] <= n_surface
    x_leaves, x_sources = _to_target_leaves(tree, x_rows[x_direct], lists.x_lists[x_direct])

    u_starts, u_lists = csr_from_pairs(
        np.concatenate([list_rows(lists.u_starts), w_rows[w_direct], x_leaves]),
        np.concatenate([lists.u_lists, lists.w_lists[w_direct], x_sources]), nboxes)
    w_starts, w_lists = csr_from_pairs(w_rows[~w_direct], lists.w_lists[~w_direct], nboxes)
    x_starts, x_lists = csr_from_pairs(x_rows[~x_direct], lists.x_lists[~x_direct], nboxes)
    return dataclasses.replace(lists, u_starts=u_starts, u_lists=u_lists, w_starts=w_starts,
                               w_lists=w_lists, x_starts=x_starts, x_lists=x_lists)
