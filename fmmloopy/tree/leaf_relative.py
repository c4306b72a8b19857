"""Points relative to their leaf's centre: the coordinates float32 kernels store.

A float32 coordinate is rounded relative to its own size. Stored absolutely, the points of a
deep tree lose ``u |x|`` each (``u = 2**-24``), and a near pair's offset, 1e-3 apart among 10^6
points, moves by 1e-4 of itself. Stored as ``x - c`` with ``c`` the centre of the leaf that
holds the point (rounded to float32 first), a point loses ``u h`` at most (``h`` the leaf's
half-width), ``2**depth`` times less; the kernels sum a pair's offset as
``(c_t - c_s) + (x_t - c_t) - (x_s - c_s)`` (:class:`fmmloopy.maths.templates.BoxParticles`).

Two distinct points the kernels cannot tell apart are refused, as for absolute coordinates:
those of one leaf whose stored parts round to the same float32 point, and those of two leaves
closer than float32 resolves beside the leaves' half-width (the kernels' offset of such a pair
is rounded by about ``u h``, so it could come out 0 and drop the pair, or come out far off).
"""

from __future__ import annotations

import numpy as np

from fmmloopy.base.precision import Precision
from fmmloopy.tree.octree import Tree

__all__ = ["leaf_of_points", "leaf_relative_points", "refuse_unresolved_points"]

#: Two points of different leaves closer than this many float32 units of the larger leaf's
#: half-width (along every axis) are refused: their offset is rounded by a few such units.
_RESOLVED_UNITS = 16


def leaf_of_points(tree: Tree, role: str) -> np.ndarray:
    """``(n,)``: the leaf that holds each ``role`` (``"source"`` or ``"target"``) point, in tree
    order (the leaves with points partition them)."""
    starts = getattr(tree, f"box_{role}_starts")
    counts = getattr(tree, f"box_{role}_counts")
    leaves = tree.leaves_in_point_order(role)
    npoints = getattr(tree, f"n{role}s")
    if int(counts[leaves].sum()) != npoints or (
            len(leaves) and np.any(starts[leaves] != np.cumsum(counts[leaves]) - counts[leaves])):
        raise AssertionError(f"the tree's leaves do not partition its {role}s")
    return np.repeat(leaves, counts[leaves])


def leaf_centres(tree: Tree, precision: Precision) -> np.ndarray:
    """``(3, nboxes)``: the box centres as the kernels of ``precision`` hold them (rounded to
    it), in float64."""
    return tree.box_centres_soa.astype(precision.dtype).astype(np.float64)


def leaf_relative_points(tree: Tree, precision: Precision) -> tuple[np.ndarray, np.ndarray]:
    """``(sources, targets)``, ``(3, n)`` float64: each point minus its leaf's centre as
    :func:`leaf_centres` rounds it (exact in float64 up to far below ``precision``'s rounding;
    the kernels' upload rounds them to ``precision``). The targets are the sources' array when
    the tree's targets are its sources."""
    centres = leaf_centres(tree, precision)

    def relative(role: str, points: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(points - centres[:, leaf_of_points(tree, role)])
    sources = relative("source", tree.sources_soa)
    targets = sources if tree.targets_are_sources else relative("target", tree.targets_soa)
    return sources, targets


def refuse_unresolved_points(tree: Tree, precision: Precision) -> None:
    """ValueError naming two distinct points the kernels of ``precision`` would not tell apart
    with points stored relative to their leaves (module docstring): equal stored parts in one
    leaf, or points of two leaves closer than ``_RESOLVED_UNITS`` units of the precision at the
    larger leaf's half-width along every axis."""
    roles = ["source"] + ([] if tree.targets_are_sources else ["target"])
    exact = np.concatenate([tree.sources_soa] + ([] if tree.targets_are_sources
                                                 else [tree.targets_soa]), axis=1)  # (3, n)
    leaves = np.concatenate([leaf_of_points(tree, role) for role in roles])
    stored = (exact - leaf_centres(tree, precision)[:, leaves]).astype(precision.dtype)
    stored += 0  # -0.0 -> +0.0: equal values must hash alike
    half_width = tree.level_half_widths[tree.box_levels[leaves]]
    unit = 2 * precision.unit_roundoff * half_width  # a float32 unit at the leaf's size
    # One leaf: the same stored part, among the points whose leaf and stored part hash alike
    # (one sort of 64-bit hashes, cheaper than a sort of four keys: docs/history.md,
    # 2026-11-26, "Figures that were in the code's docstrings").
    candidates = _same_hash([leaves, *stored])
    _refuse_pairs(exact[:, candidates].T,
                  np.column_stack([leaves[candidates], stored[:, candidates].T]), tree, roles,
                  f"the same point in {precision.name}", indices=candidates)
    # Two leaves: both points near a face of their leaf. Neighbouring leaves differ in width
    # by at most 2 (the tree is 2:1 balanced).
    largest = np.abs(stored).max(axis=0)
    near_face = np.flatnonzero(largest >= half_width - 2 * _RESOLVED_UNITS * unit)
    if len(near_face) < 2:
        return
    grid = float(np.ldexp(1.0, int(np.ceil(np.log2(8 * _RESOLVED_UNITS * unit[near_face].max())))))
    points = exact[:, near_face].T
    for shift in (0.0, 0.25, 0.5, 0.75):
        # A pair closer than grid / 8 along every axis shares a cell of one of these four
        # shifted grids (each axis's cell walls of the four lie grid / 4 apart).
        _refuse_pairs(points, np.floor(points / grid + shift), tree, roles,
                      f"closer than {precision.name} resolves beside their leaves' width",
                      indices=near_face,
                      close=lambda a, b, i, j: (leaves[i] != leaves[j])
                      & (np.abs(a - b).max(axis=1)
                         < _RESOLVED_UNITS * np.maximum(unit[i], unit[j])))


def _same_hash(columns: list[np.ndarray]) -> np.ndarray:
    """The positions whose 64-bit hash of the ``columns`` (equal-length arrays of 4- or 8-byte
    numbers) another position shares, ascending: every group of equal rows is among them."""
    hashed = np.zeros(len(columns[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in columns:
            column = np.ascontiguousarray(column)
            bits = column.view(np.uint32 if column.itemsize == 4 else np.uint64)
            hashed = (hashed ^ bits.astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
            hashed ^= hashed >> np.uint64(29)
    ordered = np.sort(hashed)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(repeated):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.isin(hashed, repeated))


def _refuse_pairs(points: np.ndarray, keys: np.ndarray, tree: Tree, roles: list[str],
                  what: str, indices: np.ndarray | None = None, close=None) -> None:
    """Refuse neighbours in the order of ``keys`` (rows) that share a key and differ in
    ``points``, and satisfy ``close(points_a, points_b, index_a, index_b)`` where given;
    ``indices``: the rows' numbers among all points (for the message and ``close``)."""
    if len(points) < 2:
        return
    order = np.lexsort(keys.T[::-1])
    first, second = order[:-1], order[1:]
    same = (keys[first] == keys[second]).all(axis=1) \
        & (points[first] != points[second]).any(axis=1)
    if close is not None:
        same &= close(points[first], points[second], indices[first], indices[second])
    if not same.any():
        return
    at = int(np.argmax(same))
    pair = [int(first[at]), int(second[at])]
    if indices is not None:
        pair = [int(indices[k]) for k in pair]
    count = int(same.sum())
    distance = float(np.linalg.norm(points[first[at]] - points[second[at]]))
    raise ValueError(
        f"{count} pair{'s' if count > 1 else ''} of distinct points {'are' if count > 1 else 'is'}"
        f" {what}, where the kernels would leave their interaction out or get it "
        f"wrong; the first: {_user_name(tree, roles, pair[0])} and "
        f"{_user_name(tree, roles, pair[1])}, {distance:.3g} apart (in the FMM's working "
        "coordinates). Use dtype=np.float64, or merge the points that close")


def _user_name(tree: Tree, roles: list[str], index: int) -> str:
    """``"source i"`` or ``"target i"`` (the user's numbering) of row ``index`` of the points
    :func:`refuse_unresolved_points` stacks (sources, then targets unless they are the
    sources)."""
    if index < tree.nsources or len(roles) == 1:
        return f"source {int(tree.source_user_ids[index])}"
    return f"target {int(tree.target_user_ids[index - tree.nsources])}"
