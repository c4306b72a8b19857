"""The arrays of FMM3D's Python interface (``fmm3dpy``): its ``Output``, its shapes (points
``(3, n)``, ``nd`` densities first: ``(nd, n)``, ``(nd, 3, n)``, one density without that
axis), its flags, its Hessians' six entries, and ``comperr``; checked with messages that name
the argument."""

from __future__ import annotations

import numpy as np

__all__ = ["FMM3D_HESSIAN_ORDER", "Output", "comperr", "densities", "densities_count",
           "eps_value", "flag", "points", "thresh_value", "to_fmm3d"]

#: FMM3D's Hessian entries in its order (``xx, yy, zz, xy, xz, yz``) as (row, column).
FMM3D_HESSIAN_ORDER = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))

_FIELDS = ("pot", "grad", "hess", "pottarg", "gradtarg", "hesstarg", "pre", "pretarg",
           "E", "curlE", "divE", "Etarg", "curlEtarg", "divEtarg")


class Output:
    """What FMM3D's functions return: the fields asked for (``pot``, ``grad``, ``hess`` at the
    sources, ``pottarg``, ``gradtarg``, ``hesstarg`` at the targets, Stokes' ``pre`` and
    ``pretarg``, Maxwell's ``E``, ``curlE``, ``divE`` and their ``...targ``), the rest None,
    and ``ier`` (0: no error; errors are raised as exceptions)."""

    def __init__(self):
        for name in _FIELDS:
            setattr(self, name, None)
        self.ier = 0

    def __repr__(self) -> str:
        given = [f"{name}={np.shape(getattr(self, name))}" for name in _FIELDS
                 if getattr(self, name) is not None]
        return f"Output({', '.join(given + [f'ier={self.ier}'])})"


def flag(value, name: str, largest: int) -> int:
    """An evaluation flag (``pg``, ``pgt``, ``ifppreg``, ...) as an int from 0 to
    ``largest``, else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) \
            or not 0 <= value <= largest:
        raise ValueError(f"{name} must be an integer from 0 to {largest}, not {value!r}")
    return int(value)


def densities_count(nd) -> int:
    """``nd`` as a positive int, else a ValueError naming it."""
    if not isinstance(nd, int | np.integer) or isinstance(nd, bool) or nd < 1:
        raise ValueError(f"nd must be a positive integer, not {nd!r}")
    return int(nd)


def eps_value(eps) -> float:
    """``eps`` as a float in (0, 1), else a ValueError naming it."""
    if isinstance(eps, bool) or not isinstance(eps, int | float | np.floating | np.integer) \
            or not 0 < eps < 1:
        raise ValueError(f"eps must be a number between 0 and 1 (the precision requested), "
                         f"not {eps!r}")
    return float(eps)


def thresh_value(thresh) -> float:
    """A direct sum's ``thresh`` as a float >= 0, else a ValueError naming it."""
    if isinstance(thresh, bool) or not isinstance(thresh, int | float | np.floating) \
            or not 0 <= thresh < np.inf:
        raise ValueError(f"thresh must be a number >= 0, not {thresh!r}")
    return float(thresh)


def points(values, name: str) -> np.ndarray:
    """FMM3D's points ``(3, n)`` (one point may be ``(3,)``) as fmmloopy's ``(n, 3)``
    float64."""
    array = np.asarray(values)
    if array.ndim == 1 and array.shape == (3,):
        array = array.reshape(3, 1)
    if array.ndim != 2 or array.shape[0] != 3:
        raise ValueError(f"{name} must have shape (3, n) (FMM3D's layout: one column per "
                         f"point), not {array.shape}")
    if np.iscomplexobj(array) or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be real numbers, not {array.dtype}")
    return np.ascontiguousarray(array.T, dtype=np.float64)


def densities(values, name: str, nd: int, n: int, components: int | None,
              complex_values: bool) -> np.ndarray:
    """FMM3D's densities (``(n,)`` or ``(nd, n)`` per point, ``(3, n)`` or ``(nd, 3, n)``
    for ``components`` 3) as fmmloopy's several vectors: ``(n, nd)`` or ``(n, 3, nd)``;
    float64, or complex128 where ``complex_values``."""
    array = np.asarray(values)
    inner = () if components is None else (components,)
    expected = (*inner, n) if nd == 1 else (nd, *inner, n)
    if array.shape != expected and not (nd == 1 and array.shape == (1, *inner, n)):
        shapes = f"(nd, {components}, n)" if components else "(nd, n)"
        raise ValueError(f"{name} must have shape {expected} for nd={nd} and {n} sources "
                         f"(FMM3D's layout: {shapes}, the nd axis left out for nd=1), not "
                         f"{array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be numbers, not {array.dtype}")
    if np.iscomplexobj(array) and not complex_values:
        raise ValueError(f"{name} must be real for this kernel (Laplace's densities are real; "
                         f"Helmholtz's complex), not {array.dtype}")
    array = array.reshape((nd, *inner, n)).astype(
        np.complex128 if complex_values else np.float64)
    return np.ascontiguousarray(array.T)  # (nd, [3,] n) -> (n, [3,] nd)


def to_fmm3d(values: np.ndarray, nd: int) -> np.ndarray:
    """fmmloopy's field of several vectors (``(M, k)``, ``(M, 3, k)``, ``(M, 3, 3, k)`` for a
    Hessian) in FMM3D's layout: ``(nd, M)``, ``(nd, 3, M)``, ``(nd, 6, M)``
    (:data:`FMM3D_HESSIAN_ORDER`), without the nd axis for nd = 1."""
    if values.ndim == 4:
        rows, columns = zip(*FMM3D_HESSIAN_ORDER, strict=True)
        values = values[:, list(rows), list(columns)]
    moved = np.moveaxis(values, -1, 0)  # (k, M, ...)
    moved = np.moveaxis(moved, 1, -1)  # (k, ..., M)
    return np.ascontiguousarray(moved[0] if nd == 1 else moved)


def comperr(*, ntest: int, out: Output, outex: Output, pg: int = 0, pgt: int = 0,
            nd: int = 1) -> float:
    """The relative L2 error of ``out`` against ``outex`` over the first ``ntest`` points, of
    every field the flags name together (``pg``/``pgt``: 1 the potential, 2 and the gradient, 3
    and the Hessian; at the sources and at the targets), as FMM3D's ``comperr``."""
    wanted = [name for level, names in ((pg, ("pot", "grad", "hess")),
                                        (pgt, ("pottarg", "gradtarg", "hesstarg")))
              for name in names[:level]]
    error = norm = 0.0
    for name in wanted:
        got, exact = getattr(out, name), getattr(outex, name)
        if got is None or exact is None:
            raise ValueError(f"comperr: {name} is missing from "
                             f"{'out' if got is None else 'outex'}")
        got, exact = np.asarray(got)[..., :ntest], np.asarray(exact)[..., :ntest]
        error += float(np.sum(np.abs(got - exact) ** 2))
        norm += float(np.sum(np.abs(exact) ** 2))
    return float(np.sqrt(error / norm)) if norm else float(np.sqrt(error))
