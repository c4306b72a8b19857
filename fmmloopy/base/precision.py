"""The floating-point precisions an FMM can run in: what each one's kernels store and compute in,
and the ranges the working coordinates and strengths are kept within.

float64 is the default. float32 halves the bytes every kernel moves and doubles the lanes of
every vector instruction, for results good to about 4 to 6 digits (docs/fmm.md). The
precomputed operators stay float64 on the host and are rounded once when uploaded; sums over
user units (the power-of-two scales) are done in float64 on the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FLOAT32", "FLOAT64", "PRECISIONS", "Precision", "get_precision"]


@dataclass(frozen=True)
class Precision:
    """One precision: its dtype, unit round-off and exponent windows."""

    #: The real dtype of coordinates, strengths, expansions and matrices in the kernels.
    dtype: np.dtype
    #: Squared distances and kernel values stay within ``2**±range_log2`` (the rest of the
    #: exponent range is left for sums over points, charges and constants).
    range_log2: int
    #: Spans of points and strengths within ``2**±safe_exponent`` are not rescaled.
    safe_exponent: int

    @property
    def name(self) -> str:
        return self.dtype.name

    @property
    def unit_roundoff(self) -> float:
        """``2**-p`` for ``p`` bits of significand: the largest relative rounding error."""
        return float(np.finfo(self.dtype).eps) / 2

    @property
    def largest(self) -> float:
        """The largest finite value."""
        return float(np.finfo(self.dtype).max)

    @property
    def smallest_normal(self) -> float:
        """The smallest positive normal value (fast relaxed math flushes smaller ones to 0)."""
        return float(np.finfo(self.dtype).smallest_normal)

    def complex_dtype(self) -> np.dtype:
        """The complex dtype of the same precision (a complex kernel's values)."""
        return np.dtype(np.complex128 if self.dtype == np.float64 else np.complex64)

    def value_dtype(self, is_complex: bool) -> np.dtype:
        """The dtype of values (strengths, expansions, matrices): real or complex."""
        return self.complex_dtype() if is_complex else self.dtype


#: float64: squared distances within ``2**±960`` of float64's ``2**±1022``.
FLOAT64 = Precision(np.dtype(np.float64), range_log2=960, safe_exponent=100)
#: float32: squared distances within ``2**±96`` of float32's ``2**±126``; spans and strengths
#: outside ``2**±24`` are rescaled by a power of two (exact).
FLOAT32 = Precision(np.dtype(np.float32), range_log2=96, safe_exponent=24)

PRECISIONS = {precision.name: precision for precision in (FLOAT64, FLOAT32)}


def get_precision(dtype) -> Precision:
    """The :class:`Precision` of ``dtype`` (``np.float64``, ``np.float32``, their names, or a
    Precision), or a ValueError naming the ones there are."""
    if isinstance(dtype, Precision):
        return dtype
    if dtype is None:  # np.dtype(None) would be float64
        raise ValueError(f"dtype must be one of {sorted(PRECISIONS)}, got None")
    try:
        name = np.dtype(dtype).name
    except TypeError as exc:
        raise ValueError(f"dtype must be one of {sorted(PRECISIONS)}, got {dtype!r}") from exc
    if name not in PRECISIONS:
        raise ValueError(f"dtype must be one of {sorted(PRECISIONS)} (the kernels' real "
                         f"precision; complex kernels take the complex dtype of the same "
                         f"precision), got {name}")
    return PRECISIONS[name]
