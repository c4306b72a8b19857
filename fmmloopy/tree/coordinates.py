"""The coordinates the FMM works in: an exact shift and an exact power-of-two scale of the input.

The kernels are translation invariant and the Laplace kernel is homogeneous, so the FMM may work
in any coordinates ``(x - origin) * 2**-exponent`` and scale the potentials back. Both steps are
exact: the shift by Sterbenz's lemma (:func:`origin`), the scale because it is a power of two
that keeps every nonzero coordinate a normal number (:func:`coordinate_exponent`).

The scale is chosen so that every squared distance the kernels form is a normal float64: the
smallest distance between distinct points and the span of all points must both fit in
``[2**-window, 2**window]`` (squares within ``2**±2 window``; fast relaxed math flushes
subnormals to zero, and a squared distance that underflows would make two points coincide).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SAFE_EXPONENT", "bounds", "coordinate_exponent", "exponent_for", "origin",
           "origin_of_bounds", "scale_exponent", "separation_lower_bound", "span", "window",
           "working_coordinates"]

#: Spans and charges inside ``[2**-SAFE_EXPONENT, 2**SAFE_EXPONENT]`` are not rescaled.
SAFE_EXPONENT = 100

#: Scaled coordinates and distances stay within ``2**±window(homogeneity)``: squared distances
#: within ``2**±960`` and kernel values ``r**d`` within ``2**±960``, which leaves ``2**60`` of
#: float64's range (``2**±1022``) for sums over points, charges and constants.
_RANGE_LOG2 = 960


def window(homogeneity: float | None) -> int:
    """Largest ``log2`` of a scaled distance (and of its inverse) the kernels may see."""
    degree = max(2.0, abs(homogeneity or 0.0))
    return int(_RANGE_LOG2 // degree)


def _present(point_sets) -> list[np.ndarray]:
    return [p for p in point_sets if p is not None and len(p)]


def bounds(*point_sets: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Lower and upper corner of the bounding box of all points; None for no points."""
    present = _present(point_sets)
    if not present:
        return None
    return (np.min([p.min(axis=0) for p in present], axis=0),
            np.max([p.max(axis=0) for p in present], axis=0))


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


def scale_exponent(magnitude: float) -> int:
    """The ``e`` with ``magnitude * 2**-e`` in [0.5, 1) when ``magnitude`` is outside
    ``[2**-SAFE_EXPONENT, 2**SAFE_EXPONENT]``, else 0 (no rescaling)."""
    if magnitude == 0 or 2.0 ** -SAFE_EXPONENT <= magnitude <= 2.0 ** SAFE_EXPONENT:
        return 0
    return int(np.frexp(magnitude)[1])


def separation_lower_bound(*point_sets: np.ndarray, exact_gaps: bool = False) -> float:
    """A lower bound on the distance between any two distinct points (inf if all coincide).

    Cheap (``exact_gaps=False``): two distinct points differ along some axis, by at least the
    unit in the last place of the smaller coordinate's magnitude, or by a whole coordinate when
    the other is 0 or of the other sign; so the distance is at least ``m * 2**-53`` for ``m``
    the smallest nonzero ``|coordinate|`` (0 when ``m`` is subnormal). Sharper
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
            nonzero = magnitude[magnitude > 0]
            if nonzero.size:
                smallest = min(smallest, float(nonzero.min()))
        return math.ldexp(smallest, -53) if math.isfinite(smallest) else math.inf
    bound = math.inf
    for axis in range(3):
        values = np.sort(np.concatenate([p[:, axis] for p in present]))
        gaps = np.diff(values)
        gaps = gaps[gaps > 0]
        if gaps.size:
            bound = min(bound, float(gaps.min()))
    return bound


def coordinate_exponent(extent: float, separation: float, homogeneity: float | None
                        ) -> int | None:
    """The ``e`` such that points spanning ``extent`` whose distinct points are at least
    ``separation`` apart fit ``2**±window`` once multiplied by ``2**-e``; None if no ``e`` does.

    Spans inside ``[2**-100, 2**100]`` with separations above ``2**-window`` keep ``e = 0``;
    other spans are brought to [0.5, 1) (:func:`scale_exponent`) when the separation still fits;
    otherwise the scale is centred: span ``2**(r/2)``, separation ``2**(-r/2)`` for the ratio
    ``2**r`` between them (a far point beside a dense set of points).
    """
    limit = window(homogeneity)
    exponent = scale_exponent(extent)
    if separation == math.inf or extent == 0:
        return exponent
    if separation > 0 and math.log2(separation) - exponent >= -limit:
        return exponent
    if separation == 0 or math.log2(extent) - math.log2(separation) > 2 * limit:
        return None
    return round((math.log2(extent) + math.log2(separation)) / 2)


def working_exponent(sources: np.ndarray, targets: np.ndarray | None,
                     homogeneity: float | None, kernel_name: str) -> int:
    """The power of two the points are divided by: 0 unless they span less than 2**-100 or more
    than 2**100, or distinct points lie so close compared with the span that their squared
    distance would underflow (:func:`coordinate_exponent`). ValueError where no power of two
    fits them, or where they need one and the kernel (``kernel_name``) has no homogeneity."""
    return exponent_for(span(sources, targets), separation_lower_bound(sources, targets),
                        lambda: separation_lower_bound(sources, targets, exact_gaps=True),
                        homogeneity, kernel_name)


def exponent_for(extent: float, separation: float, sharper_separation,
                 homogeneity: float | None, kernel_name: str) -> int:
    """:func:`working_exponent` from the points' span, the cheap bound on their separation and
    a callable giving the sharper bound (called only where the cheap one does not do)."""
    if not np.isfinite(extent):
        raise ValueError("the points span more than float64 holds (their coordinates differ "
                         "by more than 1.8e308); scale them down first")
    exponent = coordinate_exponent(extent, separation, homogeneity)
    if exponent is None:  # the cheap bound may be far too low: the sharper one
        separation = sharper_separation()
        exponent = coordinate_exponent(extent, separation, homogeneity)
    if exponent is None:
        ratio_log2 = math.log2(extent) - math.log2(separation)
        raise ValueError(
            f"the points span {extent:.3g} but two of them differ by only "
            f"{separation:.3g} along an axis: squared distances over a range of "
            f"2**{2 * ratio_log2:.0f} do not fit float64 at any scale; merge the points "
            "that close or evaluate the far and the near ones separately")
    if exponent and homogeneity is None:
        raise ValueError(
            f"the points span {extent:.3g} (closest distinct points >= {separation:.3g}), "
            f"which needs rescaling, and kernel {kernel_name!r} has no homogeneity to "
            "rescale them by; scale the points first")
    return exponent


def working_coordinates(sources: np.ndarray, targets: np.ndarray | None,
                        homogeneity: float | None, kernel_name: str
                        ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray | None]:
    """``(origin, exponent, sources, targets)``: the points in the working coordinates
    ``(x - origin) * 2**-exponent`` (:func:`origin`, :func:`working_exponent`; ``targets``
    None stays None)."""
    shift = origin(sources, targets)
    if shift.any():
        sources = sources - shift
        targets = None if targets is None else targets - shift
    exponent = working_exponent(sources, targets, homogeneity, kernel_name)
    if exponent:
        sources = np.ldexp(sources, -exponent)
        targets = None if targets is None else np.ldexp(targets, -exponent)
    return shift, exponent, sources, targets
