"""The precomputed KIFMM operators of a kernel and order: memoised in-process, cached on disk.

The math (:func:`fmmloopy.maths.precompute.compute_operators`) knows nothing of caches; this module
keeps its results in :mod:`fmmloopy.execution.operator_cache`'s verified ``.npz`` files.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from fmmloopy.execution import cache_files, operator_cache
from fmmloopy.maths import precompute
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.green import GreenKernel, get_kernel
from fmmloopy.maths.kifmm import FIRST_EXPANSION_LEVEL
from fmmloopy.maths.length_scale import UNIT_BOX_HOMOGENEITY, unit_box_kernel
from fmmloopy.maths.levels import LevelOperators
from fmmloopy.maths.periodic import (
    ALL_AXES,
    CHILD_OFFSETS,
    lattice_entries,
    lattice_operators,
)
from fmmloopy.maths.periodic_stokes import StokesLatticeOperators, stokes_lattice_operators
from fmmloopy.maths.precompute import DEFAULT_RCOND, KifmmOperators
from fmmloopy.tuning.device_facts import M2L_RANK_MULTIPLE

# In-process memo: cache key (as operator_cache builds it) -> operators.
_MEMO: dict[str, KifmmOperators] = {}
_LATTICE_MEMO: dict[str, np.ndarray | StokesLatticeOperators] = {}
def get_operators(kernel: str | GreenKernel = "laplace", order: int = 6,
                  rcond: float | None = None, half_width: float = 1.0, *,
                  dense_m2l: bool = False) -> KifmmOperators:
    """The operators of ``kernel`` and ``order`` for a box of ``half_width``: memoised
    in-process, cached on disk.

    ``dense_m2l``: with the dense M2L of every transfer vector (:attr:`KifmmOperators.m2l`),
    which the FMM does not apply (it applies the compressed classes): computed only where asked
    for, and then kept by the operator cache in a file of its own (``316 n_e^2`` numbers: 58 MB
    at order 6, against 10 MB for all the FMM applies; 1.3 GB at order 12)."""
    kernel = get_kernel(kernel).base
    rcond = DEFAULT_RCOND if rcond is None else float(rcond)
    half_width = float(half_width)
    key = operator_cache.operator_key(kernel, order, rcond, half_width)
    dense_key = key | {"part": "dense m2l"}
    memo_key = cache_files.key_string(key)

    def computed(dense: bool = False) -> KifmmOperators:
        return precompute.compute_operators(kernel, order, rcond, half_width, dense_m2l=dense,
                                            rank_multiple=M2L_RANK_MULTIPLE)

    if memo_key not in _MEMO:
        scalars = {"kernel_name": kernel.name, "homogeneity": kernel.homogeneity,
                   "order": int(order), "n_e": Expansion(order).n_e, "rcond": rcond,
                   "half_width": half_width, "components": kernel.density_components}
        _MEMO[memo_key] = operator_cache.load_or_build(
            key, build=lambda: computed().arrays(),
            # A file of another layout raises ValueError, which the cache treats like a
            # corrupt file: rebuilt.
            make=lambda arrays: KifmmOperators.from_arrays(arrays, **scalars),
        )
    operators = _MEMO[memo_key]
    if dense_m2l and operators.m2l is None:
        operators = _MEMO[memo_key] = operator_cache.load_or_build(
            dense_key, build=lambda: {"m2l": computed(dense=True).m2l},
            make=lambda arrays: _with_dense_m2l(operators, arrays))
    return operators


def _with_dense_m2l(operators: KifmmOperators, arrays: dict[str, np.ndarray]) -> KifmmOperators:
    """``operators`` with the dense M2L of a cache file's ``arrays``, checked as the operators'
    own fields are (ValueError for other arrays, shapes or dtypes: the file is rebuilt)."""
    if set(arrays) != {"m2l"}:
        raise ValueError(f"the dense M2L's file holds {sorted(arrays)}, not ['m2l']")
    return dataclasses.replace(operators, m2l=arrays["m2l"])


def level_set(kernel: str | GreenKernel, order: int, half_width: float) -> KifmmOperators:
    """The set of operators of a kernel without homogeneity for the boxes of ``half_width``:
    for Yukawa and Helmholtz the set of half-width 1 at the dimensionless parameter (keyed, and
    shared, by it; :mod:`fmmloopy.maths.length_scale`), else the box's own."""
    kernel = get_kernel(kernel)
    unit = unit_box_kernel(kernel, half_width)
    if unit is not None:
        return get_operators(unit, order)
    return get_operators(kernel, order, half_width=half_width)


def level_operators(kernel: str | GreenKernel, order: int,
                    level_half_widths) -> LevelOperators:
    """The operators an FMM of ``kernel`` applies on a tree whose levels have
    ``level_half_widths``: one set scaled per level for a homogeneous kernel, else a set per
    level from :data:`~fmmloopy.maths.kifmm.FIRST_EXPANSION_LEVEL` (at least that one;
    :func:`level_set`)."""
    kernel = get_kernel(kernel)
    if kernel.homogeneity is not None:
        return LevelOperators.scaled_from(get_operators(kernel, order))
    widths = list(level_half_widths)
    if not widths:
        raise ValueError("a tree has at least one level")
    root = float(widths[0])
    sets = [level_set(kernel, order, math.ldexp(root, -level))
            for level in range(FIRST_EXPANSION_LEVEL,
                               FIRST_EXPANSION_LEVEL + level_set_count(len(widths)))]
    unit = unit_box_kernel(kernel, root) is not None
    return LevelOperators.per_level(sets, FIRST_EXPANSION_LEVEL,
                                    UNIT_BOX_HOMOGENEITY if unit else None)


def level_set_count(nlevels: int) -> int:
    """How many sets :func:`level_operators` makes for a kernel without homogeneity on a tree
    of ``nlevels`` levels: one per level from
    :data:`~fmmloopy.maths.kifmm.FIRST_EXPANSION_LEVEL`, at least one."""
    return max(nlevels, FIRST_EXPANSION_LEVEL + 1) - FIRST_EXPANSION_LEVEL


def forget_operators() -> None:
    """Empty the in-process memos of :func:`get_operators` and :func:`get_lattice_operators`
    (the disk cache stays)."""
    _MEMO.clear()
    _LATTICE_MEMO.clear()


def get_lattice_operators(order: int, axes: tuple[int, ...] = ALL_AXES) -> np.ndarray:
    """The far lattice's 27 operators of a periodic Laplace FMM at ``order``, periodic along
    ``axes``
    (:func:`fmmloopy.maths.periodic.lattice_operators`, read-only): memoised in-process, cached
    on disk beside the order's operators. A file's arrays must have the operators' shape and
    agree with the lattice's remainder at sampled entries, recomputed; else it is rebuilt."""
    kernel = get_kernel("laplace")
    part = ("periodic lattice" if tuple(axes) == ALL_AXES
            else f"lattice periodic along axes {tuple(axes)}")
    key = operator_cache.operator_key(kernel, order, DEFAULT_RCOND) | {"part": part}
    memo_key = cache_files.key_string(key)
    if memo_key not in _LATTICE_MEMO:
        n_e = Expansion(order).n_e

        def make(arrays: dict[str, np.ndarray]) -> np.ndarray:
            operators = arrays.get("lattice")
            if set(arrays) != {"lattice"} or operators.shape != (len(CHILD_OFFSETS), n_e, n_e):
                raise ValueError(f"the lattice file holds {sorted(arrays)}, not the "
                                 f"(27, {n_e}, {n_e}) operators")
            sampled = lattice_entries(order, operators, samples=16, axes=axes)
            if not np.allclose(sampled[0], sampled[1], rtol=0, atol=1e-13):
                raise ValueError("the lattice file's entries differ from the lattice's "
                                 "remainder recomputed")
            operators.setflags(write=False)
            return operators

        _LATTICE_MEMO[memo_key] = operator_cache.load_or_build(
            key, build=lambda: {"lattice": lattice_operators(order, axes)}, make=make)
    return _LATTICE_MEMO[memo_key]


def get_stokes_lattice_operators(order: int) -> StokesLatticeOperators:
    """The far lattice of a periodic Stokes FMM at ``order``
    (:func:`fmmloopy.maths.periodic_stokes.stokes_lattice_operators`, read-only): memoised
    in-process, cached on disk beside the order's Laplace operators (the Stokes FMM's)."""
    key = operator_cache.operator_key(get_kernel("laplace"), order, DEFAULT_RCOND) | {
        "part": "periodic Stokes lattice of the children"}
    memo_key = cache_files.key_string(key)
    if memo_key not in _LATTICE_MEMO:
        _LATTICE_MEMO[memo_key] = operator_cache.load_or_build(
            key, build=lambda: stokes_lattice_operators(order, DEFAULT_RCOND),
            make=StokesLatticeOperators.from_arrays)
    return _LATTICE_MEMO[memo_key]
