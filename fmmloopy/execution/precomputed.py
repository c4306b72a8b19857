"""The precomputed KIFMM operators of a kernel and order: memoised in-process, cached on disk.

The math (:func:`fmmloopy.maths.precompute.compute_operators`) knows nothing of caches; this module
keeps its results in :mod:`fmmloopy.execution.operator_cache`'s verified ``.npz`` files.
"""

from __future__ import annotations

from fmmloopy.execution import cache_files, operator_cache
from fmmloopy.maths import precompute
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.green import GreenKernel, get_kernel
from fmmloopy.maths.precompute import DEFAULT_RCOND, KifmmOperators

# In-process memo: cache key (as operator_cache builds it) -> operators.
_MEMO: dict[str, KifmmOperators] = {}


def get_operators(kernel: str | GreenKernel = "laplace", order: int = 6,
                  rcond: float | None = None) -> KifmmOperators:
    """The operators of ``kernel`` and ``order``: memoised in-process, cached on disk."""
    kernel = get_kernel(kernel)
    rcond = DEFAULT_RCOND if rcond is None else float(rcond)
    key = operator_cache.operator_key(kernel, order, rcond)
    memo_key = cache_files.key_string(key)
    if memo_key not in _MEMO:
        scalars = {"kernel_name": kernel.name, "homogeneity": kernel.homogeneity,
                   "order": int(order), "n_e": Expansion(order).n_e, "rcond": rcond}
        _MEMO[memo_key] = operator_cache.load_or_build(
            key,
            build=lambda: precompute.compute_operators(kernel, order, rcond).arrays(),
            # A file of another layout raises ValueError, which the cache treats like a
            # corrupt file: rebuilt.
            make=lambda arrays: KifmmOperators.from_arrays(arrays, **scalars),
        )
    return _MEMO[memo_key]


def forget_operators() -> None:
    """Empty the in-process memo of :func:`get_operators` (the disk cache stays)."""
    _MEMO.clear()

