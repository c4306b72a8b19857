"""The near field on its own: P2P over the U list of an adaptive octree.

``NearField(points)(charges)`` returns, at every target, the sum over the sources in the leaves
adjacent to the target's leaf -- the part of the FMM that the leaf pass computes directly. The
tree, lists, transformed kernel and device arrays are built once; each call uploads charges only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from fmmloopy.devices import choose_device, context_for
from fmmloopy.execution import compiled_operator
from fmmloopy.interaction_lists import build_interaction_lists
from fmmloopy.kernel_arguments import box_list_arguments, pair_count, tree_arguments
from fmmloopy.kernels import LAPLACE_3D
from fmmloopy.tree import build_tree, ranges_to_indices


def validate_charges(charges, nsources: int) -> np.ndarray:
    """``charges`` as float64 of shape ``(nsources,)``, or a ValueError that says what is wrong."""
    charges = np.asarray(charges)
    if charges.dtype.kind not in "fiu":
        raise ValueError(f"charges must be real numbers, got dtype {charges.dtype}")
    if charges.shape != (nsources,):
        raise ValueError(f"charges must have shape ({nsources},), one per source; "
                         f"got {charges.shape}")
    charges = charges.astype(np.float64, copy=False)
    if not np.all(np.isfinite(charges)):
        raise ValueError("charges contain NaN or inf")
    return charges


@dataclass
class NearField:
    """P2P over the U list, set up once for fixed points and applied to many charge vectors."""

    sources: np.ndarray
    targets: np.ndarray | None = None
    n_crit: int = 150
    device: object = None
    recipe: str | None = None
    setup_seconds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        clock = time.perf_counter()
        self.tree = build_tree(self.sources, self.targets, n_crit=self.n_crit)
        self.setup_seconds["tree"] = time.perf_counter() - clock
        clock = time.perf_counter()
        self.lists = build_interaction_lists(self.tree)
        self.setup_seconds["lists"] = time.perf_counter() - clock

        clock = time.perf_counter()
        self.device = choose_device(self.device)
        self.queue = cl.CommandQueue(context_for(self.device))
        self.p2p = compiled_operator("p2p", self.device, recipe=self.recipe)
        tree = self.tree
        target_leaves = np.flatnonzero(tree.box_is_leaf & (tree.box_target_counts > 0))
        arguments = tree_arguments(tree) | box_list_arguments(
            self.lists.u_starts, self.lists.u_lists, target_leaves)
        arguments["max_box_targets"] = int(tree.box_target_counts[target_leaves].max())
        self.npairs = pair_count(arguments)
        names = set(self.p2p.argument_names) - {"strengths", "result"}
        self._arguments = {name: cla.to_device(self.queue, value)
                           if isinstance(value, np.ndarray) else value
                           for name, value in arguments.items() if name in names}
        self._result = cla.empty(self.queue, tree.ntargets, np.float64)
        self(np.zeros(tree.nsources))  # builds the kernel now, not in the first timed call
        self.setup_seconds["build"] = time.perf_counter() - clock

    def __call__(self, charges) -> np.ndarray:
        """Near-field potentials at the targets, in the user's order.

        Sets ``last_seconds`` (the whole call) and ``last_kernel_seconds`` (the P2P kernel).
        """
        charges = validate_charges(charges, self.tree.nsources)
        clock = time.perf_counter()
        strengths = cla.to_device(self.queue, self.tree.sources_to_tree(charges))
        self._result.fill(0.0)
        self.queue.finish()
        kernel_clock = time.perf_counter()
        self.p2p(self.queue, **self._arguments, strengths=strengths, result=self._result)
        self.queue.finish()
        self.last_kernel_seconds = time.perf_counter() - kernel_clock
        potentials = self.tree.targets_to_user(self._result.get(self.queue))
        self.last_seconds = time.perf_counter() - clock
        return potentials

    def reference(self, charges, target_ids: np.ndarray) -> np.ndarray:
        """The same near field at the user targets ``target_ids``, summed in numpy."""
        tree, lists = self.tree, self.lists
        charges = validate_charges(charges, tree.nsources)
        tree_charges = tree.sources_to_tree(charges)
        leaf_of_target = _leaf_of_each_target(tree)
        values = np.empty(len(target_ids))
        for i, user_id in enumerate(target_ids):  # a fixed sample, not all N targets
            position = tree.target_tree_ids[user_id]
            leaf = leaf_of_target[position]
            boxes = lists.u_lists[lists.u_starts[leaf]:lists.u_starts[leaf + 1]]
            indices = ranges_to_indices(tree.box_source_starts[boxes].astype(np.int64),
                                         tree.box_source_counts[boxes].astype(np.int64))
            offsets = tree.targets[position][None, :] - tree.sources[indices]
            values[i] = LAPLACE_3D.evaluate(offsets) @ tree_charges[indices]
        return values


def _leaf_of_each_target(tree) -> np.ndarray:
    """For every target in tree order, the leaf that holds it."""
    leaves = tree.leaf_boxes
    owner = np.full(tree.ntargets, -1, dtype=np.int64)
    counts = tree.box_target_counts[leaves].astype(np.int64)
    positions = ranges_to_indices(tree.box_target_starts[leaves].astype(np.int64), counts)
    owner[positions] = np.repeat(leaves, counts)
    return owner
