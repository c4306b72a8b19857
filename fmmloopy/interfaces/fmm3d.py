"""FMM3D's Python interface (``fmmpy``/``fmm3dpy``) over fmmloopy: ``import fmmloopy.fmm3d as
fmm`` where a script had ``import fmm3dpy as fmm``.

The functions take FMM3D's keyword arguments, shapes, conventions and flags and return its
:class:`~fmmloopy.interfaces.fmm3d_arrays.Output`: the kernels ``1 / (4 pi r)`` and
``exp(i k r) / (4 pi r)``, a dipole ``v`` giving ``v . grad_y G(x - y)`` (the gradient in the
source point), the term of a point at itself left out, ``pg``/``pgt`` 1 for the potential, 2 and
the gradient, 3 and the Hessian (six entries ``xx, yy, zz, xy, xz, yz``), ``nd`` densities as
fmmloopy's several strength vectors (one call for all). ``eps`` is fmmloopy's ``eps``: the order
is the lowest whose measured error meets it (:class:`fmmloopy.Fmm`). A call with the same
points, kernel, ``eps`` and fields as the last one reuses its set-up
(:mod:`fmmloopy.interfaces.fmm3d_reuse`, :func:`keep_last_fmm`). The direct sums
(``l3ddir``, ``h3ddir``) are :class:`fmmloopy.DirectSum`, leaving out pairs closer than
``thresh``. Stokes (``stfmm3d``, ``st3ddir``): :mod:`fmmloopy.interfaces.fmm3d_stokes`; Maxwell
(``emfmm3d``, ``em3ddir``): :mod:`fmmloopy.interfaces.fmm3d_maxwell`. Bad
input raises ValueError naming the argument (FMM3D asserts).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from fmmloopy.api.direct import DirectSum
from fmmloopy.interfaces.fmm3d_arrays import (
    Output,
    comperr,
    densities,
    densities_count,
    eps_value,
    flag,
    points,
    thresh_value,
    to_fmm3d,
)
from fmmloopy.interfaces.fmm3d_maxwell import maxwell_call
from fmmloopy.interfaces.fmm3d_reuse import fmm_for, keep_last_fmm
from fmmloopy.interfaces.fmm3d_stokes import st3ddir, stfmm3d
from fmmloopy.maths.green import LAPLACE_3D, GreenKernel, helmholtz, yukawa

__all__ = ["Output", "comperr", "em3ddir", "emfmm3d", "h3ddir", "hfmm3d", "keep_last_fmm",
           "l3ddir", "lfmm3d", "st3ddir", "stfmm3d"]

#: The fields of each evaluation flag's value, FMM3D's names at the sources.
_NAMES = ("pot", "grad", "hess")


@dataclass(frozen=True)
class _Kernel:
    """The fmmloopy kernel of an FMM3D call and how its complex densities map onto it:
    ``conjugate`` (a negative real ``zk``: the sum of the conjugate densities with ``|zk|``,
    conjugated), ``split`` (a real kernel, Yukawa for an imaginary ``zk``, of complex
    densities: their real and imaginary parts as two sets of vectors)."""

    green: GreenKernel
    complex_densities: bool
    conjugate: bool = False
    split: bool = False


def _helmholtz_kernel(zk) -> _Kernel:
    """``exp(i zk r) / (4 pi r)`` as fmmloopy sums it: Helmholtz for a real ``zk`` (its
    conjugate for a negative one), Yukawa ``exp(-kappa r) / (4 pi r)`` for ``zk = i kappa``."""
    try:
        value = complex(zk)
    except (TypeError, ValueError):
        raise ValueError(f"zk must be a number, not {zk!r}") from None
    if not np.isfinite(value):
        raise ValueError(f"zk must be finite, not {zk!r}")
    if value.imag == 0:
        return _Kernel(helmholtz(abs(value.real)), True, conjugate=value.real < 0)
    if value.real == 0 and value.imag > 0:
        return _Kernel(yukawa(value.imag), True, split=True)
    raise ValueError(f"zk={zk!r}: fmmloopy sums Helmholtz for a real zk and Yukawa for an "
                     "imaginary one (zk = i kappa, kappa > 0); a zk with both parts (a damped "
                     "wave) is not supported")


def _strengths(kernel: _Kernel, charges, dipvec, nd: int, n: int) -> dict:
    """The call's densities as fmmloopy's arguments (``charges`` ``(n, k)``, ``dipoles``
    ``(n, 3, k)``), at least one given."""
    nd = densities_count(nd)
    if charges is None and dipvec is None:
        raise ValueError("give charges, dipvec or both")
    given = {}
    if charges is not None:
        given["charges"] = densities(charges, "charges", nd, n, None, kernel.complex_densities)
    if dipvec is not None:
        given["dipoles"] = densities(dipvec, "dipvec", nd, n, 3, kernel.complex_densities)
    return _mapped(kernel, given)


def _mapped(kernel: _Kernel, given: dict) -> dict:
    """Densities (last axis: the vectors) as ``kernel`` sums them (:class:`_Kernel`)."""
    if kernel.conjugate:
        given = {name: values.conj() for name, values in given.items()}
    if kernel.split:
        given = {name: np.concatenate([values.real, values.imag], axis=-1)
                 for name, values in given.items()}
    return given


def _fields(result, level: int) -> list[np.ndarray]:
    """The potential (and gradient, Hessian) of a call with several vectors, by ``level``."""
    if level == 1:
        return [result]
    if level == 2:
        return [result.potential, result.gradient]
    return [result.potential, result.gradient, result.hessian]


def _evaluated(kernel: _Kernel, summed, given: dict, level: int) -> list[np.ndarray]:
    """The fields up to ``level`` of ``given`` by ``summed`` (an ``Fmm`` or a ``DirectSum``),
    in fmmloopy's layout; the mappings of :class:`_Kernel` undone."""
    fields = _fields(summed(given.get("charges"), dipoles=given.get("dipoles"),
                            gradient=level >= 2, hessian=level >= 3), level)
    if kernel.split:
        fields = [field[..., :field.shape[-1] // 2] + 1j * field[..., field.shape[-1] // 2:]
                  for field in fields]
    if kernel.conjugate:
        fields = [field.conj() for field in fields]
    return fields


def _fmm_call(kernel: _Kernel, eps, sources, charges, dipvec, targets, pg, pgt, nd) -> Output:
    """lfmm3d and hfmm3d: one fmmloopy FMM over the sources and the targets asked for."""
    out = Output()
    pg, pgt = flag(pg, "pg", 3), flag(pgt, "pgt", 3)
    source_points = points(sources, "sources")
    target_points = None if targets is None else points(targets, "targets")
    if pgt and target_points is None:
        raise ValueError(f"pgt={pgt} asks for fields at targets: give targets (3, nt)")
    if not pg and not pgt:
        warnings.warn("nothing to compute: set pg or pgt to 1, 2 or 3", stacklevel=3)
        return out
    given = _strengths(kernel, charges, dipvec, nd, len(source_points))
    level = max(pg, pgt)
    words = [name for name in ("charges", "dipoles") if name in given] + (
        ["gradient"] if level >= 2 else []) + (["hessian"] if level >= 3 else [])
    if pg and pgt:  # one FMM: its targets the sources then the targets
        evaluation = np.concatenate([source_points, target_points])
    else:
        evaluation = target_points if pgt else None

    summed = fmm_for(source_points, evaluation, kernel=kernel.green, eps=eps_value(eps),
                     eps_for=words, both_groups=bool(pg and pgt))
    fields = _evaluated(kernel, summed, given, level)
    ns = len(source_points)
    for names, level_here, rows in (
            (_NAMES, pg, slice(0, ns)),
            (tuple(f"{name}targ" for name in _NAMES), pgt,
             slice(ns if pg else 0, None))):
        for name, field in zip(names[:level_here], fields, strict=False):
            setattr(out, name, to_fmm3d(field[rows], nd))
    return out


def _direct_call(kernel: _Kernel, sources, charges, dipvec, targets, pgt, nd,
                 thresh) -> Output:
    """l3ddir and h3ddir: the direct sum at the targets, pairs closer than ``thresh`` left
    out."""
    out = Output()
    pgt = flag(pgt, "pgt", 3)
    source_points, target_points = points(sources, "sources"), points(targets, "targets")
    thresh = thresh_value(thresh)
    if not pgt:
        warnings.warn("nothing to compute: set pgt to 1, 2 or 3", stacklevel=3)
        return out
    given = _strengths(kernel, charges, dipvec, nd, len(source_points))

    summed = DirectSum(source_points, target_points, kernel=kernel.green,
                       exclude_within=thresh)
    fields = _evaluated(kernel, summed, given, pgt)
    for name, field in zip(_NAMES[:pgt], fields, strict=False):
        setattr(out, f"{name}targ", to_fmm3d(field, nd))
    return out


def emfmm3d(*, eps, zk, sources, h_current=None, e_current=None, e_charge=None, targets=None,
            ifE=0, ifcurlE=0, ifdivE=0, nd=1):
    """Maxwell's ``E = curl S[h_current] + S[e_current] + grad S[e_charge]`` (``S`` the
    Helmholtz single layer of ``zk``) and, by the flags, ``E``, ``curlE``, ``divE`` at
    ``targets``: FMM3D's ``emfmm3d`` as vector Helmholtz sums
    (:mod:`fmmloopy.interfaces.fmm3d_maxwell`)."""
    def summation(kernel, points_in, points_out, level):
        words = ["charges"] + ["gradient"] * (level >= 2) + ["hessian"] * (level >= 3)
        summed = fmm_for(points_in, points_out, kernel=kernel.green, eps=eps_value(eps),
                         eps_for=words)
        return lambda charges, asked: _evaluated(kernel, summed, _mapped(
            kernel, {"charges": charges}), asked)
    return maxwell_call(_helmholtz_kernel(zk), zk, sources, targets, h_current, e_current,
                        e_charge, (ifE, ifcurlE, ifdivE), nd, summation)


def em3ddir(*, eps=None, zk, sources, h_current=None, e_current=None, e_charge=None,
            targets=None, ifE=0, ifcurlE=0, ifdivE=0, nd=1, thresh=1e-16):
    """The direct sum of :func:`emfmm3d`, pairs closer than ``thresh`` left out: FMM3D's
    ``em3ddir`` (``eps`` taken and unused, as there)."""
    def summation(kernel, points_in, points_out, level):
        summed = DirectSum(points_in, points_out, kernel=kernel.green,
                           exclude_within=thresh_value(thresh))
        return lambda charges, asked: _evaluated(kernel, summed, _mapped(
            kernel, {"charges": charges}), asked)
    return maxwell_call(_helmholtz_kernel(zk), zk, sources, targets, h_current, e_current,
                        e_charge, (ifE, ifcurlE, ifdivE), nd, summation)


def lfmm3d(*, eps, sources, charges=None, dipvec=None, targets=None, pg=0, pgt=0, nd=1):
    """Laplace sums ``u(x) = sum_j c_j / (4 pi |x - x_j|) + v_j . grad_{x_j} (1 / (4 pi |x -
    x_j|))`` at the sources (``pg``) and ``targets`` (``pgt``): FMM3D's ``lfmm3d``. ``sources``
    ``(3, n)``, ``charges`` ``(n,)`` or ``(nd, n)``, ``dipvec`` ``(3, n)`` or ``(nd, 3, n)``,
    ``targets`` ``(3, nt)``; returns an :class:`Output` (``pot``, ``grad``, ``hess``,
    ``pottarg``, ``gradtarg``, ``hesstarg``)."""
    return _fmm_call(_Kernel(LAPLACE_3D, False), eps, sources, charges, dipvec, targets, pg,
                     pgt, nd)


def hfmm3d(*, eps, zk, sources, charges=None, dipvec=None, targets=None, pg=0, pgt=0, nd=1):
    """Helmholtz sums of ``exp(i zk r) / (4 pi r)`` (complex ``charges`` and ``dipvec``), as
    :func:`lfmm3d`: FMM3D's ``hfmm3d``; ``pg``/``pgt`` 3 gives the Hessians too (FMM3D's
    Python interface stops at 2). ``zk`` real (Helmholtz) or imaginary (``i kappa``: Yukawa)."""
    return _fmm_call(_helmholtz_kernel(zk), eps, sources, charges, dipvec, targets, pg, pgt,
                     nd)


def l3ddir(*, sources, targets, charges=None, dipvec=None, pgt=0, nd=1, thresh=1e-16):
    """The direct sum of :func:`lfmm3d` at ``targets``, pairs closer than ``thresh`` left out:
    FMM3D's ``l3ddir``."""
    return _direct_call(_Kernel(LAPLACE_3D, False), sources, charges, dipvec, targets, pgt,
                        nd, thresh)


def h3ddir(*, zk, sources, targets, charges=None, dipvec=None, pgt=0, nd=1, thresh=1e-16):
    """The direct sum of :func:`hfmm3d` at ``targets``, pairs closer than ``thresh`` left out:
    FMM3D's ``h3ddir``."""
    return _direct_call(_helmholtz_kernel(zk), sources, charges, dipvec, targets, pgt, nd,
                        thresh)
