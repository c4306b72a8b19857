"""The FMM's error, estimated: the FMM against a direct sum on a sample of targets.

:func:`estimate_error` (``Fmm.estimate_error``) draws targets uniformly without replacement,
sums every source at them directly on the FMM's device (:class:`~fmmloopy.api.direct.DirectSum`)
and estimates the relative L2 error over **all** targets, ``||u_fmm - u|| / ||u||``:

- the numerator ``sum_i |e_i|^2`` as ``M`` times the mean over the sample (unbiased);
- the denominator from every target: the FMM's values where no direct sum was made, the direct
  sum's where it was. (A sampled denominator is what makes a sample's ratio unreliable: a
  gradient's norm is carried by the few targets beside a very close source, where the near
  field, summed exactly, leaves the error small.)

The 95 % interval comes from resampling the sampled targets (a percentile bootstrap of the
numerator); with every target sampled the estimate is the error itself and the interval that
value.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fmmloopy.api.direct import DirectSum
from fmmloopy.api.units import Flow
from fmmloopy.base.validation import validate_integer

__all__ = ["ErrorEstimate", "estimate_error", "estimate_from_errors", "estimate_from_sample"]

#: Bootstrap resamples of the interval.
RESAMPLES = 1000


class ErrorEstimate(NamedTuple):
    """An estimated relative L2 error over all targets, with its sampling uncertainty."""

    #: The estimate of ``||u_fmm - u|| / ||u||`` over all targets.
    relative_l2: float
    #: A 95 % interval of the estimate (percentile bootstrap over the sampled targets).
    low: float
    high: float
    #: Targets compared with the direct sum.
    samples: int

    def __str__(self) -> str:
        if self.low == self.high:
            return f"{self.relative_l2:.2e} (over {self.samples} targets)"
        return (f"{self.relative_l2:.2e} (95 % interval {self.low:.2e} to {self.high:.2e}, "
                f"{self.samples} sampled targets)")


def estimate_from_sample(values: np.ndarray, sample: np.ndarray, reference: np.ndarray,
                         rng: np.random.Generator) -> ErrorEstimate:
    """The estimate for ``values`` ``(M, ...)`` at every target, given the exact ``reference``
    ``(m, ...)`` at the targets ``sample`` (``(m,)`` distinct indices)."""
    total = len(values)
    flat = np.asarray(values).reshape((total, -1))
    exact = np.asarray(reference).reshape((len(sample), -1))
    squared_errors = (np.abs(flat[sample] - exact) ** 2).sum(axis=1)
    norm_squared = float((np.abs(flat) ** 2).sum() - (np.abs(flat[sample]) ** 2).sum()
                         + (np.abs(exact) ** 2).sum())
    return estimate_from_errors(squared_errors, norm_squared, total, rng)


def estimate_from_errors(squared_errors: np.ndarray, norm_squared: float, total: int,
                         rng: np.random.Generator) -> ErrorEstimate:
    """The estimate from the squared errors ``(m,)`` at ``m`` targets sampled from ``total``
    and the squared norm over all of them (the direct sum's values where it was made)."""
    squared_errors = np.asarray(squared_errors, dtype=np.float64)

    def relative(error_sum: np.ndarray) -> np.ndarray:
        if norm_squared > 0:
            return np.sqrt(error_sum / norm_squared)
        return np.where(error_sum > 0, np.inf, 0.0)

    estimate = float(relative(total * squared_errors.mean()))
    count = len(squared_errors)
    if count == total:
        return ErrorEstimate(estimate, estimate, estimate, total)
    draws = rng.integers(0, count, (RESAMPLES, count))
    low, high = relative(total * np.percentile(squared_errors[draws].mean(axis=1), [2.5, 97.5]))
    return ErrorEstimate(estimate, float(low), float(high), count)


def estimate_error(fmm, charges=None, *, dipoles=None, gradient: bool = False,
                   samples: int = 1000, seed: int | None = 0, result=None
                   ) -> dict[str, ErrorEstimate]:
    """``{"potential": ErrorEstimate}`` (and ``"gradient"`` with ``gradient=True``) of
    ``fmm`` (an :class:`~fmmloopy.api.fmm.Fmm`) for these strengths, against a direct sum on
    ``samples`` targets drawn with ``seed`` (module docstring). ``result``: what ``fmm`` returned
    for exactly these arguments, to spare evaluating again."""
    samples = validate_integer(samples, "samples", 1, None)
    if result is None:
        result = fmm(charges, dipoles=dipoles, gradient=gradient)
    fields = _by_name(result, gradient)
    sources, targets = fmm.user_points
    if fmm.ntargets == 0 or fmm.nsources == 0:
        return {name: ErrorEstimate(0.0, 0.0, 0.0, 0) for name in fields}
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(fmm.ntargets, size=min(samples, fmm.ntargets), replace=False))
    direct = DirectSum(sources, (sources if targets is None else targets)[sample],
                       kernel=fmm.kernel, device=fmm.device)
    exact = direct(charges, dipoles=dipoles, gradient=gradient)
    references = _by_name(exact, gradient)
    return {name: estimate_from_sample(values, sample, references[name], rng)
            for name, values in fields.items()}


def _by_name(result, gradient: bool) -> dict[str, np.ndarray]:
    """A call's result by field: the potential (a tensor kernel's velocity) and, with
    ``gradient``, the gradient (:class:`~fmmloopy.api.units.Fields` or
    :class:`~fmmloopy.api.units.Flow`)."""
    if not gradient:
        return {"potential": result}
    first = result.velocity if isinstance(result, Flow) else result.potential
    return {"potential": first, "gradient": result.gradient}
