"""Which boxes each step of a scheme serves on a tree, and in which launches.

A step's :class:`~fmmloopy.maths.kifmm.Boxes` says which boxes it serves in the tree's terms
(holding sources or targets, levels, leaves, listed in a box list); here it is evaluated on a
tree, with the V list by class where the device built it, and for a distributed FMM's rank on
the boxes its plan serves beyond its own tree (:class:`RankBoxes`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from fmmloopy.execution.device_setup import DeviceVClasses
from fmmloopy.execution.kernel_arguments import box_list
from fmmloopy.maths.kifmm import Boxes, KifmmStep
from fmmloopy.maths.scheme import KifmmScheme, Pass
from fmmloopy.tree.lists import InteractionLists
from fmmloopy.tree.octree import Tree

__all__ = ["RankBoxes", "device_class", "launch_order", "recipe_for", "served_boxes"]


@dataclass(frozen=True)
class RankBoxes:
    """A distributed FMM's rank: which boxes its plan serves beyond what its tree shows
    (docs/scale-out.md). ``with_sources``: (nboxes,) bool, the boxes with sources on any rank
    (the rank's tree holds only its own and its ghost points); ``upward``: the boxes whose
    (partial) multipoles the rank forms, the only ones its upward steps serve."""

    with_sources: np.ndarray
    upward: np.ndarray


def device_class(name: str, device_v: DeviceVClasses | None) -> str | None:
    """The V class of list ``name`` where ``device_v`` holds it (``v_<class>``), else None."""
    return name[2:] if device_v is not None and name.startswith("v_") else None


def served_boxes(tree: Tree, lists: InteractionLists, boxes: Boxes,
                 rank_boxes: RankBoxes | None = None, upward: bool = False,
                 device_v: DeviceVClasses | None = None) -> np.ndarray:
    """(nboxes,) bool: the boxes of ``tree`` a step's selection ``boxes`` asks for (a step of
    the ``upward`` pass of a distributed FMM's rank: only its ``rank_boxes.upward``); the V
    classes' rows from ``device_v`` where given (the same boxes, counted on the device)."""
    if boxes.side == "targets":
        present = tree.box_target_counts > 0
    else:
        present = tree.box_source_counts > 0 if rank_boxes is None else rank_boxes.with_sources
    mask = present & (tree.box_levels >= boxes.min_level)
    if upward and rank_boxes is not None:
        mask &= rank_boxes.upward
    if boxes.leaves is not None:
        mask &= tree.box_is_leaf == boxes.leaves
    if boxes.listed is not None:
        name = device_class(boxes.listed, device_v)
        mask &= (device_v.entries_per_box(name) if name else
                 np.diff(box_list(tree, lists, boxes.listed)[0])) > 0
    if boxes.source_in is not None:
        name = device_class(boxes.source_in, device_v)
        if name:
            mask &= device_v.source_boxes(name)
        else:
            listed = np.zeros(tree.nboxes, dtype=bool)
            listed[box_list(tree, lists, boxes.source_in)[1]] = True
            mask &= listed
    return mask


def launch_order(scheme: KifmmScheme, tree: Tree, lists: InteractionLists,
                 rank_boxes: RankBoxes | None = None, device_v: DeviceVClasses | None = None
                 ) -> Iterator[tuple[KifmmStep, np.ndarray]]:
    """``(step, target boxes)`` of every launch of ``scheme`` on ``tree``: the steps in their
    order, a step with ``per_level`` once per level (finest first going up, coarsest first going
    down)."""
    for step in scheme.steps.values():
        mask = served_boxes(tree, lists, step.boxes, rank_boxes,
                            scheme.pass_of(step) == Pass.UPWARD, device_v)
        if step.boxes.per_level is None:
            yield step, np.flatnonzero(mask)
            continue
        levels = range(tree.nlevels)
        for level in reversed(levels) if step.boxes.per_level == "up" else levels:
            yield step, np.flatnonzero(mask & (tree.box_levels == level))


def recipe_for(recipes: str | Mapping[str, str] | None, operator: str) -> str | None:
    """The recipe ``recipes`` (a name for all operators, or one per operator) names for
    ``operator``; None: the device's default."""
    return recipes.get(operator) if isinstance(recipes, Mapping) else recipes
