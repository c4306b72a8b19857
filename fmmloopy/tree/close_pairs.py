"""The pairs of targets and sources closer than a distance, in numpy: the sources sorted by
their first coordinate, each target's candidates the slab of sources within the distance
along it, kept where the whole offset is shorter."""

from __future__ import annotations

import numpy as np

__all__ = ["close_pairs"]

#: Candidates (target, source) looked at in one block of targets: bounds the memory.
BLOCK_CANDIDATES = 4_000_000


def close_pairs(targets: np.ndarray, sources: np.ndarray, distance: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(target, source)`` indices of the pairs of ``targets`` ``(M, 3)`` and ``sources``
    ``(N, 3)`` at a distance ``0 < |t - s| < distance`` (pairs at one point excluded: the
    kernels leave them out already); empty for ``distance`` 0."""
    empty = np.zeros(0, np.intp)
    if distance <= 0 or not len(targets) or not len(sources):
        return empty, empty
    order = np.argsort(sources[:, 0], kind="stable")
    first_coordinates = sources[order, 0]
    low = np.searchsorted(first_coordinates, targets[:, 0] - distance, side="left")
    high = np.searchsorted(first_coordinates, targets[:, 0] + distance, side="right")
    counts = high - low
    found_targets, found_sources = [], []
    start = 0
    while start < len(targets):  # blocks of targets of at most BLOCK_CANDIDATES candidates
        totals = np.cumsum(counts[start:])
        stop = start + max(1, int(np.searchsorted(totals, BLOCK_CANDIDATES, side="right")))
        block = np.arange(start, stop)
        per_target = counts[block]
        target = np.repeat(block, per_target)
        within = np.arange(len(target)) - np.repeat(np.cumsum(per_target) - per_target,
                                                    per_target)
        source = order[np.repeat(low[block], per_target) + within]
        offsets = targets[target] - sources[source]
        squared = np.einsum("pk,pk->p", offsets, offsets)
        keep = (squared > 0) & (squared < distance * distance)
        found_targets.append(target[keep])
        found_sources.append(source[keep])
        start = stop
    return np.concatenate(found_targets), np.concatenate(found_sources)
