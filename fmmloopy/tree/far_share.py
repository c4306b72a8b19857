"""The far field's share of a tree's kernel weights: what an FMM's error scales with.

An FMM sums the sources of a target's leaf's U row (its adjacent leaves, and the W and X
entries moved there to be summed directly) exactly and every other source through expansions,
each far pair with a relative error ``e_p`` of the order ``p``. The relative L2 error of the
whole sum is then about ``e_p`` times the far field's part of the field's norm:

- strengths drawn independently with mean 0 (random charges, random dipoles): the squares add,
  ``rho^2 = sum_t sum_(s far) |K|^2 / sum_t sum_s |K|^2``;
- strengths of one sign or direction (one-signed charges, dipoles along a surface's normal):
  the sums add, ``rho_c^2 = sum_t (sum_(s far) |K|)^2 / sum_t (sum_s |K|)^2``.

``|K|`` is taken as ``r^-1``, ``r^-2`` and ``r^-3``: Laplace's potential of charges, its
gradient of charges and potential of dipoles, its gradient of dipoles. A point set whose near
field carries most of the norm (a surface, a random set's closest pairs for the gradient) has
a small ``rho`` and meets an ``eps`` at a lower order than a lattice, whose nearest pairs are
no closer than the spacing (docs/kernels.md, "Accuracy by eps").

:func:`far_share` estimates both on a sample of targets: the near sums exactly over each
sampled target's U row, the far sums over a uniform sample of the sources, scaled up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmmloopy.tree.csr import ranges_to_indices
from fmmloopy.tree.lists import InteractionLists
from fmmloopy.tree.octree import Tree

__all__ = ["POWERS", "SAMPLED_SOURCES", "SAMPLED_TARGETS", "FarShare", "far_share"]

#: The powers of ``1 / r`` in ``|K|``: the charges' potential, the charges' gradient and the
#: dipoles' potential, the dipoles' gradient.
POWERS = (1, 2, 3)
#: Targets whose sums are computed, at most (all where there are fewer) ...
SAMPLED_TARGETS = 128
#: ... and at least, where their near fields hold more than :data:`NEAR_PAIRS` pairs in all.
FEWEST_TARGETS = 32
NEAR_PAIRS = 1 << 20
#: Sources the far sums are taken over, scaled up (all where there are fewer).
SAMPLED_SOURCES = 2048
#: The distance, as a fraction of the spacing of the target's leaf (its side over the square
#: root of its sources), below which a near pair's weight is that at the distance.
CLOSEST_FRACTION = 0.25
#: Near pairs whose distances are held at once (more rows' pairs are taken a block at a time).
_BLOCK = 1 << 21


@dataclass(frozen=True)
class FarShare:
    """``rho`` (strengths independent, mean 0) and ``rho_c`` (strengths of one sign) for each
    power of :data:`POWERS`, each in [0, 1]."""

    random: tuple[float, ...]
    coherent: tuple[float, ...]

    def of(self, power: int, coherent: bool) -> float:
        """The share for ``|K| = r^-power`` (a value of :data:`POWERS`)."""
        return (self.coherent if coherent else self.random)[POWERS.index(power)]


def far_share(tree: Tree, lists: InteractionLists, seed: int = 0) -> FarShare:
    """:class:`FarShare` of the FMM of ``tree`` whose direct pairs are ``lists``' U rows (the
    lists it evaluates: W and X entries summed directly are in U), estimated on
    :data:`SAMPLED_TARGETS` targets and :data:`SAMPLED_SOURCES` sources (module docstring).
    Coincident points (distance 0) are no pair. A tree of one leaf has no far field: 0."""
    rng = np.random.default_rng(seed)
    sources, targets = tree.sources, tree.targets
    leaves = tree.leaves_in_point_order("target")
    # Fewer targets where their near fields are large (about NEAR_PAIRS pairs in all): a
    # target with many near pairs averages over many.
    row_starts = lists.u_starts[:-1]
    near_sources = (np.add.reduceat(
        np.append(tree.box_source_counts[lists.u_lists], 0).astype(np.int64), row_starts)
        * (lists.u_starts[1:] > row_starts))[leaves]
    mean_near = float(tree.box_target_counts[leaves] @ near_sources) / max(len(targets), 1)
    sampled = int(np.clip(NEAR_PAIRS / max(mean_near, 1.0), FEWEST_TARGETS, SAMPLED_TARGETS))
    chosen_targets = _sample(len(targets), sampled, rng)
    chosen_sources = _sample(len(sources), SAMPLED_SOURCES, rng)
    at = targets[chosen_targets]
    leaf_of = leaves[np.searchsorted(tree.box_target_starts[leaves], chosen_targets,
                                     side="right") - 1]
    # A pair closer than a fraction of its leaf's spacing counts as at that distance: the
    # nearest pairs' weights have a tail too heavy for a sample of targets (on a random
    # surface r^-2 has no mean), and leaving them out only overstates the far share.
    spacing = 2 * tree.box_half_widths[leaf_of] / np.sqrt(
        np.maximum(tree.box_source_counts[leaf_of], 1))
    closest = CLOSEST_FRACTION * spacing
    ceiling = np.divide(1.0, closest, out=np.full_like(closest, np.inf), where=closest > 0)
    # Each sampled target's U boxes and the sources in them (its near pairs), and the
    # sampled sources among those.
    box_counts = (lists.u_starts[leaf_of + 1] - lists.u_starts[leaf_of]).astype(np.int64)
    boxes = lists.u_lists[ranges_to_indices(lists.u_starts[leaf_of].astype(np.int64),
                                            box_counts)]
    box_rows = np.repeat(np.arange(len(at)), box_counts)
    source_counts = tree.box_source_counts[boxes].astype(np.int64)
    source_starts = tree.box_source_starts[boxes].astype(np.int64)
    near = np.zeros((len(at), 2 * max(POWERS)))
    inverse = _inverse_distances(at[:, None, :] - sources[chosen_sources][None, :, :])
    pairs_per_row = np.bincount(box_rows, source_counts, minlength=len(at)).astype(np.int64)
    first = 0
    while first < len(at):  # rows whose pairs fit in a block (at least one row)
        last = max(first + 1, int(np.searchsorted(
            np.cumsum(pairs_per_row[first:]), _BLOCK, side="right")) + first)
        in_rows = (box_rows >= first) & (box_rows < last)
        pair_sources = ranges_to_indices(source_starts[in_rows], source_counts[in_rows])
        pair_rows = np.repeat(box_rows[in_rows], source_counts[in_rows])
        pair_inverse = np.minimum(_inverse_distances(at[pair_rows] - sources[pair_sources]),
                                  ceiling[pair_rows])
        # Each row's pairs are contiguous: sums over segments.
        rows_with_pairs = np.flatnonzero(pairs_per_row[first:last]) + first
        starts = np.cumsum(pairs_per_row[rows_with_pairs]) - pairs_per_row[rows_with_pairs]
        power = np.ones_like(pair_inverse)
        for column in range(near.shape[1]):
            power *= pair_inverse
            if len(power):
                near[rows_with_pairs, column] += np.add.reduceat(power, starts)
        # The sampled sources among the near pairs: not in the far sums.
        position = np.minimum(np.searchsorted(chosen_sources, pair_sources),
                              len(chosen_sources) - 1)
        hit = chosen_sources[position] == pair_sources
        inverse[pair_rows[hit], position[hit]] = 0.0
        first = last
    far = np.zeros_like(near)
    power = np.ones_like(inverse)
    for column in range(far.shape[1]):
        power *= inverse
        far[:, column] = power.sum(axis=1)
    far *= len(sources) / max(len(chosen_sources), 1)
    total = near + far
    random, coherent = [], []
    for power in POWERS:
        squared, single = 2 * power - 1, power - 1  # columns of r^-2p and r^-p
        random.append(_ratio(far[:, squared].sum(), total[:, squared].sum()))
        coherent.append(_ratio((far[:, single] ** 2).sum(), (total[:, single] ** 2).sum()))
    return FarShare(tuple(random), tuple(coherent))


def _sample(count: int, most: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``most`` of ``count`` items drawn without replacement (all if fewer)."""
    if count <= most:
        return np.arange(count)
    return np.sort(rng.choice(count, most, replace=False))


def _inverse_distances(offsets: np.ndarray) -> np.ndarray:
    """``1 / |offset|`` over the last axis, 0 where the offset is 0."""
    squared = (offsets ** 2).sum(axis=-1)
    with np.errstate(divide="ignore"):
        return np.where(squared > 0, 1.0 / np.sqrt(squared), 0.0)


def _ratio(far: float, total: float) -> float:
    """``sqrt(far / total)``, 0 where there is no weight at all."""
    return float(np.sqrt(far / total)) if total > 0 else 0.0
