"""The set-up of the last call kept for the next one with the same points.

FMM3D's calls are one-shot: each builds its tree and evaluates. A script that calls again with
the same points (the matrix-vector products of an iterative solver, one density after another)
would pay fmmloopy's set-up (tree, lists, plan) every time; instead the interface keeps the
:class:`~fmmloopy.api.fmm.Fmm` of its last call and evaluates the next call on it when that call
has the same sources, targets, kernel, ``eps`` and fields asked for. The points are compared by
value (an array changed in place is a new set of points). :func:`keep_last_fmm` turns this off
(and frees the FMM kept, whose buffers hold about what its evaluation needs).
"""

from __future__ import annotations

import threading

import numpy as np

from fmmloopy.api.fmm import Fmm
from fmmloopy.maths.accuracy import eps_quantities, order_for_eps
from fmmloopy.maths.green import get_kernel
from fmmloopy.tree.octree import root_box_side

__all__ = ["fmm_for", "keep_last_fmm"]

_lock = threading.Lock()
#: (key, sources, evaluation points, Fmm) of the last call, or None.
_last: tuple | None = None
_keeping = True


def keep_last_fmm(keep: bool = True) -> None:
    """Whether calls keep their FMM for the next call with the same points (default True);
    ``False`` also drops the FMM kept."""
    global _keeping, _last
    with _lock:
        _keeping = bool(keep)
        if not _keeping:
            _last = None


def _own(points: np.ndarray | None) -> np.ndarray | None:
    """``points`` where the array owns its data, else a copy: a view may be of a caller's
    array, which may change in place."""
    return points if points is None or points.flags.owndata else points.copy()


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and np.array_equal(a, b)


def fmm_for(sources: np.ndarray, evaluation: np.ndarray | None, *, kernel, eps: float,
            eps_for, both_groups: bool = False) -> Fmm:
    """``Fmm(sources, evaluation, kernel=kernel, eps=eps, eps_for=eps_for)``, or the last
    call's where it was built from equal arguments (the points kept are copied where they are
    views, which may be of a caller's array).

    ``both_groups``: the evaluation points are the sources followed by targets of their own,
    and FMM3D holds each group's outputs to ``eps`` on their own. The FMM then takes the order
    of its root box over every point set of the accuracy table (:func:`~fmmloopy.maths.
    accuracy.order_for_eps`, sets with targets apart included), not the one ``eps`` would
    settle on from the points' tree: that one holds the relative error over both groups
    together, and sparse targets beside a dense cluster of sources missed ``eps`` 1e-3 by up
    to 32 times on their own (``benchmarks/fmm3d_compare.py``)."""
    options = {"kernel": kernel, "eps": eps, "eps_for": tuple(eps_for)}
    if both_groups:
        order = order_for_eps(eps, get_kernel(kernel), root_box_side(sources, evaluation),
                              eps_quantities(options.pop("eps_for")), targets_are_sources=False)
        del options["eps"]
        options["order"] = order
    return _kept_or_new(sources, evaluation, options)


def _kept_or_new(sources: np.ndarray, evaluation: np.ndarray | None, options: dict) -> Fmm:
    global _last
    key = tuple(sorted(options.items()))
    with _lock:
        last = _last
    if last is not None and last[0] == key and _same(last[1], sources) \
            and _same(last[2], evaluation):
        return last[3]
    fmm = Fmm(sources, evaluation, **options)
    with _lock:
        if _keeping:
            _last = (key, _own(sources), _own(evaluation), fmm)
    return fmm
