"""The precomputed KIFMM operators of a kernel and order: memoised in-process, cached on disk.

The math (:func:`fmmloopy.maths.precompute.compute_operators`) knows nothing of caches; this module
keeps its results in :mod:`fmmloopy.execution.operator_cache`'s verified ``.npz`` files.
"""

from __future__ import annotations

import math

from fmmloopy.execution import cache_files, operator_cache
from fmmloopy.maths import precompute
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.green import GreenKernel, get_kernel
from fmmloopy.maths.kifmm import FIRST_EXPANSION_LEVEL
from fmmloopy.maths.levels import LevelOperators
from fmmloopy.maths.precompute import DEFAULT_RCOND, KifmmOperators

# In-process memo: cache key (as operator_cache builds it) -> operators.
_MEMO: dict[str, KifmmOperators] = {}


def get_operators(kernel: str | GreenKernel = "laplace", order: int = 6,
                  rcond: float | None = None, half_width: float = 1.0) -> KifmmOperators:
    """The operators of ``kernel`` and ``order`` for a box of ``half_width``: memoised
    in-process, cached on disk."""
    kernel = get_kernel(kernel).base
    rcond = DEFAULT_RCOND if rcond is None else float(rcond)
    half_width = float(half_width)
    key = operator_cache.operator_key(kernel, order, rcond, half_width)
    memo_key = cache_files.key_string(key)
    if memo_key not in _MEMO:
        scalars = {"kernel_name": kernel.name, "homogeneity": kernel.homogeneity,
                   "order": int(order), "n_e": Expansion(order).n_e, "rcond": rcond,
                   "half_width": half_width}
        _MEMO[memo_key] = operator_cache.load_or_build(
            key,
            build=lambda: precompute.compute_operators(kernel, order, rcond,
                                                       half_width).arrays(),
            # A file of another layout raises ValueError, which the cache treats like a
            # corrupt file: rebuilt.
            make=lambda arrays: KifmmOperators.from_arrays(arrays, **scalars),
        )
    return _MEMO[memo_key]


def level_operators(kernel: str | GreenKernel, order: int,
                    level_half_widths) -> LevelOperators:
    """The operators an FMM of ``kernel`` applies on a tree whose levels have
    ``level_half_widths``: one set scaled per level for a homogeneous kernel, else a set per
    level from :data:`~fmmloopy.maths.kifmm.FIRST_EXPANSION_LEVEL` (at least that one)."""
    kernel = get_kernel(kernel)
    if kernel.homogeneity is not None:
        return LevelOperators.scaled_from(get_operators(kernel, order))
    widths = list(level_half_widths)
    if not widths:
        raise ValueError("a tree has at least one level")
    last = max(len(widths), FIRST_EXPANSION_LEVEL + 1)
    root = float(widths[0])
    sets = [get_operators(kernel, order, half_width=math.ldexp(root, -level))
            for level in range(FIRST_EXPANSION_LEVEL, last)]
    return LevelOperators.per_level(sets, FIRST_EXPANSION_LEVEL)


def forget_operators() -> None:
    """Empty the in-process memo of :func:`get_operators` (the disk cache stays)."""
    _MEMO.clear()

