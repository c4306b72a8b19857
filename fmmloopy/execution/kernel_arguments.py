"""Kernel arguments from a tree and its lists, named as the templates name them."""

from __future__ import annotations

from weakref import WeakKeyDictionary

import numpy as np

from fmmloopy.base.precision import FLOAT64, Precision
from fmmloopy.base.sorting import stable_argsort
from fmmloopy.maths.geometry import (
    INDEX_DTYPE,
    M2L_CLASSES,
    NTRANSFER_VECTORS,
    transfer_class,
)
from fmmloopy.maths.layouts import FOLDED_VECTORS
from fmmloopy.maths.templates import particles_for
from fmmloopy.tree.csr import select_rows, starts_from_counts
from fmmloopy.tree.leaf_relative import leaf_relative_points
from fmmloopy.tree.lists import InteractionLists
from fmmloopy.tree.octree import Tree

#: Rows of a box list for every box: (starts[nboxes + 1], entries, matrix indices or None).
BoxList = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def tree_arguments(tree: Tree, precision: Precision = FLOAT64) -> dict[str, np.ndarray | int]:
    """Box geometry and particle layout of ``tree`` (every template argument it determines)
    for kernels of ``precision``: particles relative to their leaf's centre where its kernels
    store them so (:func:`~fmmloopy.maths.templates.particles_for`)."""
    sources, targets = tree.sources_soa, tree.targets_soa
    if particles_for(precision.dtype).relative:
        sources, targets = leaf_relative_points(tree, precision)
    return {
        "sources": sources, "targets": targets,
        "box_source_starts": tree.box_source_starts,
        "box_source_counts": tree.box_source_counts,
        "box_target_starts": tree.box_target_starts,
        "box_target_counts": tree.box_target_counts,
        "box_centres": tree.box_centres_soa, "box_levels": tree.box_levels,
        "level_half_widths": tree.level_half_widths,
        "nboxes": tree.nboxes, "nlevels": tree.nlevels,
        "nsources": tree.nsources, "ntargets": tree.ntargets,
    }


def box_list(tree: Tree, lists: InteractionLists, name: str) -> BoxList:
    """The box list ``name`` with a row for every box (see :mod:`fmmloopy.maths.operators`).

    ``u``/``v``/``w``/``x`` are the interaction lists (V carries transfer-vector indices);
    ``v_<class>`` is V restricted to one transfer-vector class
    (:data:`fmmloopy.maths.geometry.M2L_CLASSES`), with the vectors' indices within the class;
    ``self`` lists each box itself (matrix index 0); ``children`` lists a box's children with
    their octant as matrix index; ``parent`` lists a box's parent with the box's own octant.
    """
    nboxes = tree.nboxes
    if name in ("u", "v", "w", "x"):
        indices = lists.v_transfer if name == "v" else None
        return getattr(lists, f"{name}_starts"), getattr(lists, f"{name}_lists"), indices
    if name.startswith("v_"):
        classes = _v_classes(lists, nboxes)
        if name[2:] not in classes:
            transfer_class(name[2:])  # names the classes
        return classes[name[2:]]
    if name == "self":
        boxes = np.arange(nboxes, dtype=INDEX_DTYPE)
        return np.arange(nboxes + 1, dtype=INDEX_DTYPE), boxes, np.zeros_like(boxes)
    if name == "children":
        present = tree.box_children >= 0
        starts = starts_from_counts(present.sum(axis=1))
        octants = np.broadcast_to(np.arange(8, dtype=INDEX_DTYPE), present.shape)
        return starts, tree.box_children[present], octants[present]
    if name == "parent":
        has_parent = tree.box_parents >= 0
        starts = starts_from_counts(has_parent)
        octants = (tree.box_keys[has_parent] & np.uint64(7)).astype(INDEX_DTYPE)
        return starts, tree.box_parents[has_parent], octants
    raise ValueError(f"unknown box list {name!r}")


#: The V list cut by transfer-vector class, per lists object (cut once: an FMM asks for each
#: class several times).
_V_CLASSES: WeakKeyDictionary = WeakKeyDictionary()


def _v_classes(lists: InteractionLists, nboxes: int) -> dict[str, BoxList]:
    """``{class: (starts, entries, indices within the class)}`` of the V list of ``lists``, for
    every class of :data:`~fmmloopy.maths.geometry.M2L_CLASSES` (read-only arrays)."""
    cached = _V_CLASSES.get(lists)
    if cached is not None:
        return cached
    nclasses = len(M2L_CLASSES)
    class_of_vector = np.empty(NTRANSFER_VECTORS, dtype=np.uint8)
    within_class = np.empty(NTRANSFER_VECTORS, dtype=INDEX_DTYPE)
    for number, name in enumerate(M2L_CLASSES):
        members = transfer_class(name)
        class_of_vector[members] = number
        within_class[members] = np.arange(len(members), dtype=INDEX_DTYPE)
    entry_class = class_of_vector[lists.v_transfer]
    # The entries class by class, each class's in list order (rows ascending, a row's entries
    # in their order): one stable radix sort by class (8-bit keys). A class's positions in the
    # list then ascend, so its entries per row are a binary search of the rows' bounds.
    order = stable_argsort(entry_class, nclasses)
    bounds = np.searchsorted(entry_class[order], np.arange(nclasses + 1))
    entries = lists.v_lists[order]
    within = within_class[lists.v_transfer[order]]
    cached = {}
    for number, name in enumerate(M2L_CLASSES):
        first, last = bounds[number], bounds[number + 1]
        starts = np.searchsorted(order[first:last], lists.v_starts).astype(INDEX_DTYPE)
        arrays = (starts, entries[first:last], within[first:last])
        for array in arrays:
            array.setflags(write=False)
        cached[name] = arrays
    _V_CLASSES[lists] = cached
    return cached


def box_list_arguments(starts: np.ndarray, lists: np.ndarray, target_boxes: np.ndarray,
                       matrix_indices: np.ndarray | None = None) -> dict[str, np.ndarray | int]:
    """The CSR source-box list of ``target_boxes`` from a per-box list ``(starts, lists)``.

    With ``matrix_indices`` (aligned with ``lists``, e.g. V's transfer vectors) the matching
    ``matrix_indices`` argument of the matvec template is cut too.
    """
    target_boxes = np.asarray(target_boxes, dtype=INDEX_DTYPE)
    aligned = () if matrix_indices is None else (matrix_indices,)
    row_starts, entries, *indices = select_rows(starts, lists, target_boxes, *aligned)
    arguments = {
        "target_boxes": target_boxes, "ntarget_boxes": len(target_boxes),
        "source_box_starts": row_starts, "source_box_lists": entries,
        "nsource_list_entries": len(entries),
    }
    if indices:
        arguments["matrix_indices"] = indices[0]
    return arguments


def fold_vectors(arguments: dict, vectors: int, box_levels: np.ndarray) -> dict:
    """A matvec launch's list ``arguments`` (:func:`box_list_arguments`) over ``vectors``
    strength vectors, the vectors folded into the boxes.

    Box ``b``'s expansion of vector ``v`` is row ``b * vectors + v`` of a buffer of
    ``nboxes * vectors`` rows (the pairwise template's rows of a surface of several
    components), and an entry ``(t, s, matrix)`` of the list becomes one entry
    ``(t * vectors + v, s * vectors + v, matrix)`` per vector: the matvec template, unchanged,
    applies each matrix to every vector, and the grouped layout gives each of its matrices the
    pairs of all the vectors at once (one matrix load for them). Returns the arguments with the
    folded ``target_boxes``, CSR list, ``matrix_indices``, ``nboxes`` and ``box_levels``
    (``box_levels``: the tree's, per box) and :data:`~fmmloopy.maths.layouts.FOLDED_VECTORS`.
    """
    if vectors == 1:
        return arguments
    targets = np.asarray(arguments["target_boxes"], dtype=np.int64)
    starts = np.asarray(arguments["source_box_starts"], dtype=np.int64)
    rows = np.repeat(np.arange(len(targets)), vectors)
    vector_of_row = np.tile(np.arange(vectors), len(targets))
    aligned = (arguments["matrix_indices"],) if "matrix_indices" in arguments else ()
    new_starts, entries, *indices = select_rows(starts, arguments["source_box_lists"], rows,
                                                *aligned)
    entries = (entries.astype(np.int64) * vectors
               + np.repeat(vector_of_row, np.diff(new_starts)))
    folded = dict(arguments)
    folded |= {
        "target_boxes": (targets[rows] * vectors + vector_of_row).astype(INDEX_DTYPE),
        "ntarget_boxes": len(rows),
        "source_box_starts": new_starts.astype(INDEX_DTYPE),
        "source_box_lists": entries.astype(INDEX_DTYPE),
        "nsource_list_entries": len(entries),
        "box_levels": np.repeat(np.asarray(box_levels, dtype=INDEX_DTYPE), vectors),
        "nboxes": len(box_levels) * vectors,
        FOLDED_VECTORS: vectors,
    }
    if indices:
        folded["matrix_indices"] = indices[0]
    return folded
