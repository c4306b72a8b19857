"""How much of float64 a pairwise kernel's reciprocal square roots may give up under ``eps``.

A pairwise kernel (P2P and the surface operators of the same template) spends most of its
operations on ``1/sqrt(r2)``: a hardware estimate refined to float64 by FMA steps. Where the FMM
is asked for a relative error ``eps`` far above float64's rounding, fewer steps suffice. The
contract is per ``1/sqrt``: each may carry a relative error up to ``rsqrt_error``
(:func:`rsqrt_error_for_eps`); a term holding ``k`` of them (:func:`rsqrt_power`: 1 for
Laplace's potential of charges, 3 for its gradient or its dipoles' potential, 5 for the gradient
of dipoles) then carries at most ``k * rsqrt_error`` of its own magnitude, and each entry the
sum of its terms' magnitudes times that: what the check allows beyond rounding
(:func:`fmmloopy.checking.verification.compare`).

Only kernels rational in ``1/sqrt(r2)`` and the offsets qualify: in ``exp(-kappa r) / r`` an error
of ``1/sqrt`` moves the exponent by ``kappa r`` times as much, which no fixed allowance bounds.
"""

from __future__ import annotations

import numpy as np
import pymbolic.primitives as prim

from fmmloopy.maths.operators import PAIRWISE, PARTICLES

#: The share of ``eps`` one pair's term may take: its relative error is at most
#: ``PAIR_SHARE * eps``. An entry's error is then at most that share of the sum of its near
#: terms' magnitudes, which exceeds the entry itself only where charges of both signs cancel:
#: by about 25 for charges uniform in [-1, 1] at 10^6 points (the near field's sum of ``|q|/r``
#: over the potential's root mean square), and the errors of one refinement step all have one
#: sign, so they scale the near field rather than add noise to it.
PAIR_SHARE = 0.01


#: The one relative error below float64's that FMMs ask of ``1/sqrt``: one Newton step from
#: AVX-512's estimate (``vrsqrt14pd``, 2^-14) reaches 5.6e-9, three from the double's bits
#: (3.4e-2) 3e-11. One level keeps the kernels few (each is a kernel of its own, shipped with
#: the package): at ``PAIR_SHARE`` it serves ``eps`` from 1e-6 up for potentials of charges,
#: from 3e-6 with gradients or dipoles, from 5e-6 for gradients of dipoles.
RSQRT_ERROR = 1e-8


def _sqrt_count(expr) -> int | None:
    """How many ``sqrt`` factors a denominator multiplies (None: not a product of them and of
    things without ``sqrt``)."""
    if isinstance(expr, prim.Call):
        return 1 if getattr(expr.function, "name", None) == "sqrt" else None
    if isinstance(expr, prim.Product):
        counts = [_sqrt_count(child) for child in expr.children]
        return None if None in counts else sum(counts)
    if isinstance(expr, prim.Power) and isinstance(expr.exponent, int) and expr.exponent > 0:
        count = _sqrt_count(expr.base)
        return None if count is None else count * expr.exponent
    return 0 if _rsqrt_factors(expr) == 0 else None


def _rsqrt_factors(expr) -> int | None:
    """The most ``1/sqrt`` factors one term of ``expr`` multiplies, or None where ``expr``
    calls another function (or ``sqrt`` outside a denominator)."""
    if isinstance(expr, (int, float, complex, prim.Variable, prim.Subscript)):
        return 0
    if isinstance(expr, prim.Call):
        return None
    if isinstance(expr, prim.Product):
        counts = [_rsqrt_factors(child) for child in expr.children]
        return None if None in counts else sum(counts)
    if isinstance(expr, prim.Sum):
        counts = [_rsqrt_factors(child) for child in expr.children]
        return None if None in counts else max(counts)
    if isinstance(expr, prim.If):
        counts = [_rsqrt_factors(expr.then), _rsqrt_factors(expr.else_)]
        condition = _rsqrt_factors(expr.condition)
        return None if None in counts or condition is None else max(counts)
    if isinstance(expr, prim.Comparison):
        counts = [_rsqrt_factors(expr.left), _rsqrt_factors(expr.right)]
        return None if None in counts else 0
    if isinstance(expr, prim.Quotient):
        numerator, denominator = _rsqrt_factors(expr.numerator), _sqrt_count(expr.denominator)
        return None if numerator is None or denominator is None else numerator + denominator
    if isinstance(expr, prim.Power) and isinstance(expr.exponent, int) and expr.exponent >= 0:
        count = _rsqrt_factors(expr.base)
        return None if count is None else count * expr.exponent
    return None


def rsqrt_power(kernel) -> int | None:
    """The most ``1/sqrt`` factors any term of ``kernel``'s entries multiplies (a
    :class:`~fmmloopy.maths.green.GreenKernel` with its fields), or None where an entry is not
    rational in them and the offsets (a call of ``exp``, ``sin``, ``cos``; a complex kernel)."""
    if kernel.is_complex:
        return None
    counts = [_rsqrt_factors(entry) for row in kernel.expressions for entry in row]
    return None if None in counts else max(counts)


def rsqrt_error_for_eps(kernel, eps: float | None) -> float | None:
    """The relative error each ``1/sqrt`` of ``kernel``'s pairwise kernels may carry when the
    FMM is asked for ``eps``: :data:`RSQRT_ERROR` where ``PAIR_SHARE * eps /
    rsqrt_power(kernel)`` reaches it, else None (float64's own; also without ``eps`` or for a
    kernel :func:`rsqrt_power` does not bound)."""
    power = None if eps is None else rsqrt_power(kernel)
    if not power or PAIR_SHARE * float(eps) / power < RSQRT_ERROR:
        return None
    return RSQRT_ERROR


def checked_rsqrt_error(rsqrt_error, spec, kernel, dtype) -> float | None:
    """``rsqrt_error`` as a float for a kernel of operator ``spec`` (an
    :class:`~fmmloopy.maths.operators.OperatorSpec`) summing ``kernel`` in ``dtype``, or a
    ValueError naming what it cannot be: not a positive finite number, an operator that is not
    pairwise, a kernel :func:`rsqrt_power` does not bound, or float32 (whose kernels keep its
    own rounding). None stays None."""
    if rsqrt_error is None:
        return None
    try:
        value = float(rsqrt_error)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ValueError(f"rsqrt_error must be a positive finite number, got {rsqrt_error!r}")
    if spec.template != PAIRWISE:
        raise ValueError(f"rsqrt_error applies to pairwise operators; {spec.name} is "
                         f"{spec.template}")
    if rsqrt_power(kernel) is None:
        raise ValueError(f"rsqrt_error needs a kernel rational in 1/sqrt(r2) and the offsets; "
                         f"{kernel.spec} is not (an error of 1/sqrt would move its other "
                         "functions' arguments by an amount no fixed allowance bounds)")
    if np.dtype(dtype) != np.float64:
        raise ValueError(f"rsqrt_error applies to float64 kernels, not {dtype}")
    return value


def launch_rsqrt_error(spec, kernel, eps: float | None) -> float | None:
    """The ``rsqrt_error`` of a launch of operator ``spec`` summing ``kernel`` in an FMM asked
    for ``eps``: :func:`rsqrt_error_for_eps` for a pairwise operator whose outputs are the
    target points' (P2P, M2P, L2P); None for one that fills a check surface (P2M, P2L), whose
    values a regularised solve turns into an expansion: a pair's error there is not smooth
    over the surface, and the solve's gain on it is not bounded here."""
    if spec.template != PAIRWISE or spec.targets != PARTICLES:
        return None
    return rsqrt_error_for_eps(kernel, eps)


def served_rsqrt_errors(spec, kernel, dtype) -> tuple[float | None, ...]:
    """The ``rsqrt_error`` of each kernel of operator ``spec`` summing ``kernel`` in ``dtype``
    that an FMM may launch: float64's own (None) and, where some ``eps`` gives a launch of it
    :data:`RSQRT_ERROR` (:func:`launch_rsqrt_error` at the largest ``eps``, 1), that too: what
    is shipped and what the check runs."""
    coarser = (np.dtype(dtype) == np.float64
               and launch_rsqrt_error(spec, kernel, 1.0) is not None)
    return (None, RSQRT_ERROR) if coarser else (None,)
