"""The coordinates the FMM works in: an exact shift and an exact power-of-two scale of the input.

The kernels are translation invariant and the Laplace kernel is homogeneous, so the FMM may work
in any coordinates ``(x - origin) * 2**-exponent`` and scale the potentials back. Both steps are
exact: the shift by Sterbenz's lemma (:func:`origin`), the scale because it is a power of two
that keeps every nonzero coordinate a normal number (:func:`coordinate_exponent`).

The scale is chosen so that every squared distance the kernels form is a normal number of the
kernels' precision (:mod:`fmmloopy.base.precision`): the smallest distance between distinct
points and the span of all points must both fit in ``[2**-window, 2**window]`` (squares within
``2**±2 window``; fast relaxed math flushes subnormals to zero, and a squared distance that
underflows would make two points coincide).

In float32 the points stay float64 here: the tree is built from them, and the kernels store
each point relative to its leaf's centre, rounded to float32 then
(:mod:`fmmloopy.tree.leaf_relative`, which refuses distinct points float32 cannot tell apart
there). :func:`refuse_merged_points` refuses points that round to one point of a precision.
"""

from __future__ import annotations

import math

import numpy as np

from fmmloopy.base.precision import FLOAT64, Precision

__all__ = ["SAFE_EXPONENT", "bounds", "coordinate_exponent", "exponent_for", "origin",
           "origin_of_bounds", "refuse_merged_points", "scale_exponent",
           "separation_lower_bound", "span", "window", "working_coordinates"]

#: Spans and charges inside ``[2**-SAFE_EXPONENT, 2**SAFE_EXPONENT]`` are not rescaled (float64;
#: :attr:`~fmmloopy.base.precision.Precision.safe_exponent` for each precision).
SAFE_EXPONENT = FLOAT64.safe_exponent


def window(homogeneity: float | None, precision: Precision = FLOAT64) -> int:
    """Largest ``log2`` of a scaled distance (and of its inverse) the kernels may see: squared
    distances and kernel values ``r**d`` stay within ``2**±range_log2`` of the precision
    (float64: ``2**±960``, which leaves ``2**60`` of float64's range for sums over points,
    charges and constants; float32: ``2**±96`` of ``2**±126``)."""
    degree = max(2.0, abs(homogeneity or 0.0))
    return int(precision.range_log2 // degree)


def _present(point_sets) -> list[np.ndarray]:
    return [p for p in point_sets if p is not None and len(p)]


def bounds(*point_sets: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Lower and upper corner of the bounding box of all points; None for no points."""
    present = _present(point_sets)
    if not present:
        return None
    # Column by column: numpy reduces a column of an (n, 3) array faster than the array along
    # axis 0 (docs/history.md, 2026-11-25, "Set-up: overlapped, narrower, pooled").
    return tuple(np.array([reduce([reduce(p[:, axis]) for p in present])
                           for axis in range(3)])
                 for reduce in (np.min, np.max))


def origin(*point_sets: np.ndarray) -> np.ndarray:
    """Per axis, the centre of the points' bounding box where it lies at least the box's extent
    from 0, else 0. Every coordinate is then within a factor of 2 of the centre, so differences
    from it are exact (Sterbenz's lemma): far from the origin boxes and surfaces keep their
    precision; near it nothing moves (a fine cluster near 0 keeps its relative precision)."""
    box = bounds(*point_sets)
    return np.zeros(3) if box is None else origin_of_bounds(*box)


def origin_of_bounds(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """:func:`origin` from the corners of the points' bounding box."""
    centre = lo / 2 + hi / 2  # halves: no overflow
    with np.errstate(over="ignore"):
        extent = hi - lo
    return np.where(np.abs(centre) >= extent, centre, 0.0)


def span(*point_sets: np.ndarray) -> float:
    """Largest side of the bounding box of all points (0 for none or one; inf on overflow)."""
    box = bounds(*point_sets)
    if box is None:
        return 0.0
    lo, hi = box
    with np.errstate(over="ignore"):
        return float((hi - lo).max())


def scale_exponent(magnitude: float, safe_exponent: int = SAFE_EXPONENT) -> int:
    """The ``e`` with ``magnitude * 2**-e`` in [0.5, 1) when ``magnitude`` is outside
    ``[2**-safe_exponent, 2**safe_exponent]``, else 0 (no rescaling)."""
    if magnitude == 0 or 2.0 ** -safe_exponent <= magnitude <= 2.0 ** safe_exponent:
        return 0
    return int(np.frexp(magnitude)[1])


def separation_lower_bound(*point_sets: np.ndarray, exact_gaps: bool = False,
                           significand_bits: int = 53) -> float:
    """A lower bound on the distance between any two distinct points (inf if all coincide).

    Cheap (``exact_gaps=False``): two distinct points differ along some axis, by at least the
    unit in the last place of the smaller coordinate's magnitude, or by a whole coordinate when
    the other is 0 or of the other sign; so the distance is at least ``m * 2**-p`` for ``m``
    the smallest nonzero ``|coordinate|`` and ``p`` the ``significand_bits`` of the numbers
    the coordinates are (53, or 24 for float32 values; 0 when ``m`` is subnormal). Sharper
    (``exact_gaps=True``, three sorts): the smallest nonzero gap between sorted coordinates
    along any axis, which the difference along that axis cannot undercut.
    """
    present = _present(point_sets)
    if not present:
        return math.inf
    if not exact_gaps:
        smallest = math.inf
        for points in present:
            magnitude = np.abs(points)
            least = magnitude.min()
            if least == 0:  # the smallest nonzero one (a copy, only where there are zeros)
                nonzero = magnitude[magnitude > 0]
                least = nonzero.min() if nonzero.size else math.inf
            smallest = min(smallest, float(least))
        return math.ldexp(smallest, -significand_bits) if math.isfinite(smallest) \
            else math.inf
    bound = math.inf
    for axis in range(3):
        values = np.sort(np.concatenate([p[:, axis] for p in present]))
        gaps = np.diff(values)
        gaps = gaps[gaps > 0]
        if gaps.size:
            bound = min(bound, float(gaps.min()))
    return bound


def coordinate_exponent(extent: float, separation: float, homogeneity: float | None,
                        precision: Precision = FLOAT64) -> int | None:
    """The ``e`` such that points spanning ``extent`` whose distinct points are at least
    ``separation`` apart fit ``2**±window`` once multiplied by ``2**-e``; None if no ``e`` does.

    Spans inside ``[2**-safe, 2**safe]`` (``safe``: the precision's, 100 for float64) with
    separations above ``2**-window`` keep ``e = 0``;
    other spans are brought to [0.5, 1) (:func:`scale_exponent`) when the separation still fits;
    otherwise the scale is centred: span ``2**(r/2)``, separation ``2**(-r/2)`` for the ratio
    ``2**r`` between them (a far point beside a dense set of points).
    """
    limit = window(homogeneity, precision)
    exponent = scale_exponent(extent, precision.safe_exponent)
    if separation == math.inf or extent == 0:
        return exponent
    if separation > 0 and math.log2(separation) - exponent >= -limit:
        return exponent
    if separation == 0 or math.log2(extent) - math.log2(separation) > 2 * limit:
        return None
    return round((math.log2(extent) + math.log2(separation)) / 2)


def working_exponent(sources: np.ndarray, targets: np.ndarray | None,
                     homogeneity: float | None, kernel_name: str,
                     precision: Precision = FLOAT64) -> int:
    """The power of two the points are divided by: 0 unless they span less than 2**-100 or more
    than 2**100, or distinct points lie so close compared with the span that their squared
    distance would underflow (:func:`coordinate_exponent`). ValueError where no power of two
    fits them, or where they need one and the kernel (``kernel_name``) has no homogeneity."""
    bits = np.finfo(precision.dtype).nmant + 1
    return exponent_for(
        span(sources, targets),
        separation_lower_bound(sources, targets, significand_bits=bits),
        lambda: separation_lower_bound(sources, targets, exact_gaps=True),
        homogeneity, kernel_name, precision)


def exponent_for(extent: float, separation: float, sharper_separation,
                 homogeneity: float | None, kernel_name: str,
                 precision: Precision = FLOAT64) -> int:
    """:func:`working_exponent` from the points' span, the cheap bound on their separation and
    a callable giving the sharper bound (called only where the cheap one does not do)."""
    if not np.isfinite(extent):
        raise ValueError("the points span more than float64 holds (their coordinates differ "
                         "by more than 1.8e308); scale them down first")
    exponent = coordinate_exponent(extent, separation, homogeneity, precision)
    if exponent is None:  # the cheap bound may be far too low: the sharper one
        separation = sharper_separation()
        exponent = coordinate_exponent(extent, separation, homogeneity, precision)
    if exponent is None:
        ratio_log2 = math.log2(extent) - math.log2(separation)
        raise ValueError(
            f"the points span {extent:.3g} but two of them differ by only "
            f"{separation:.3g} along an axis: squared distances over a range of "
            f"2**{2 * ratio_log2:.0f} do not fit {precision.name} at any scale; merge the "
            "points that close or evaluate the far and the near ones separately"
            + (" (or use float64)" if precision != FLOAT64 else ""))
    if exponent and homogeneity is None:
        raise ValueError(
            f"the points span {extent:.3g} (closest distinct points >= {separation:.3g}), "
            f"which needs rescaling, and kernel {kernel_name!r} has no homogeneity to "
            "rescale them by; scale the points first")
    return exponent


def refuse_merged_points(exact: np.ndarray, rounded: np.ndarray, precision: Precision,
                         sources: int) -> None:
    """ValueError naming two points that differ in ``exact`` but not in ``rounded`` (both
    ``(n, 3)``, rows in the same order: the sources, ``sources`` of them, then the targets):
    the kernels would take them for one point and leave their interaction out."""
    if len(exact) < 2:
        return
    order = np.lexsort(rounded.T[::-1])
    same = (rounded[order[1:]] == rounded[order[:-1]]).all(axis=1)
    if not same.any():
        return
    differ = same & (exact[order[1:]] != exact[order[:-1]]).any(axis=1)
    if not differ.any():
        return
    first = int(np.argmax(differ))
    pair = sorted((int(order[first]), int(order[first + 1])))

    def name(index: int) -> str:
        return f"source {index}" if index < sources else f"target {index - sources}"
    distance = float(np.linalg.norm(exact[pair[0]] - exact[pair[1]]))
    count = int(differ.sum())
    raise ValueError(
        f"{count} pair{'s' if count > 1 else ''} of distinct points "
        f"{'are' if count > 1 else 'is'} the same point in "
        f"{precision.name}, where the kernels would leave their interaction out; the first: "
        f"{name(pair[0])} and {name(pair[1])}, {distance:.3g} apart (at "
        f"{exact[pair[0]].tolist()} relative to the points' centre). Use dtype=np.float64, "
        "or merge the points that close")


def working_coordinates(sources: np.ndarray, targets: np.ndarray | None,
                        homogeneity: float | None, kernel_name: str,
                        precision: Precision = FLOAT64
                        ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray | None]:
    """``(origin, exponent, sources, targets)``: the points in the working coordinates
    ``(x - origin) * 2**-exponent`` (:func:`origin`, :func:`working_exponent`; ``targets``
    None stays None), float64 (below float64 first scaled into ``precision``'s range by the
    span alone; its kernels round them relative to their leaves,
    :mod:`fmmloopy.tree.leaf_relative`)."""
    shift = origin(sources, targets)
    if shift.any():
        sources = sources - shift
        targets = None if targets is None else targets - shift
    exponent = 0
    if precision != FLOAT64:
        # First into the precision's range (the span's scale alone).
        extent = span(sources, targets)
        exponent = scale_exponent(extent, precision.safe_exponent) \
            if np.isfinite(extent) else 0
        if exponent and homogeneity is None:
            raise ValueError(
                f"the points span {extent:.3g}, which needs rescaling in {precision.name}, "
                f"and kernel {kernel_name!r} has no homogeneity to rescale them by; scale the "
                "points first (or use float64)")
        if exponent:
            sources = np.ldexp(sources, -exponent)
            targets = None if targets is None else np.ldexp(targets, -exponent)
    more = working_exponent(sources, targets, homogeneity, kernel_name, precision)
    if more:
        sources = np.ldexp(sources, -more)
        targets = None if targets is None else np.ldexp(targets, -more)
    return shift, exponent + more, sources, targets
