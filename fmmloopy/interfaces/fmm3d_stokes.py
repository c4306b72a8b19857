"""FMM3D's Stokes sums (``stfmm3d``, ``st3ddir``) over fmmloopy's Stokes kernel (viscosity 1).

FMM3D's Stokeslet ``(delta_ij / r + r_i r_j / r^3) / (8 pi)`` and pressure ``r_j / (4 pi
r^3)`` are fmmloopy's; its type I stresslet ``3 r_i r_j r_k / (4 pi r^5)`` (``r`` = target -
source) is minus fmmloopy's double-layer kernel, so a stresslet ``(mu, nu)`` goes in as
``stresslets=(-mu, nu)``. A rotlet ``(rlet, rvec)`` and a doublet ``(dlet, dvec)`` are force
dipoles (``m . grad_y`` of the Stokeslet, force component ``j`` along axis ``l``): the rotlet
the antisymmetric ``rlet_j rvec_l - rvec_j rlet_l``, the doublet ``2 dlet_j dvec_l``, pressures
included. The velocity gradient ``grad[l, i]`` is ``d u_i / d x_l``.
"""

from __future__ import annotations

import warnings

import numpy as np

from fmmloopy.api.direct import DirectSum
from fmmloopy.interfaces.fmm3d_arrays import (
    Output,
    densities,
    densities_count,
    eps_value,
    flag,
    points,
    thresh_value,
)
from fmmloopy.interfaces.fmm3d_reuse import fmm_for

__all__ = ["st3ddir", "stfmm3d"]


def _pairs(given: dict, nd: int, n: int) -> dict:
    """FMM3D's 3-vector densities ``(3, n)`` / ``(nd, 3, n)`` as ``(n, 3, nd)``; each pair
    (strength, orientation) given together or not at all."""
    for first, second in (("strslet", "strsvec"), ("rotlet", "rotvec"),
                          ("doublet", "doubvec")):
        if (given[first] is None) != (given[second] is None):
            raise ValueError(f"{first} and {second} go together: give both or neither")
    return {name: densities(value, name, nd, n, 3, False)
            for name, value in given.items() if value is not None}


def _calls(arrays: dict) -> list[dict]:
    """The fmmloopy calls that sum ``arrays``: forces with stresslets (one call per density
    where their orientations differ), and rotlets and doublets as force dipoles (a call of
    their own: fmmloopy takes force dipoles and stresslets apart)."""
    calls = []
    forces = arrays.get("stoklet")
    if "strslet" in arrays:
        strengths, orientations = -arrays["strslet"], arrays["strsvec"]
        if np.all(orientations == orientations[..., :1]):  # one orientation for every density
            calls.append({"charges": forces, "stresslets": (strengths,
                                                            orientations[..., 0])})
        else:
            for column in range(strengths.shape[-1]):
                own = slice(column, column + 1)
                calls.append({"charges": None if forces is None else forces[..., own],
                              "stresslets": (strengths[..., own], orientations[..., column]),
                              "column": column})
        forces = None
    dipoles = 0
    if "rotlet" in arrays:
        rlet, rvec = arrays["rotlet"], arrays["rotvec"]
        dipoles = dipoles + (np.einsum("njd,nld->njld", rlet, rvec)
                             - np.einsum("njd,nld->njld", rvec, rlet))
    if "doublet" in arrays:
        dipoles = dipoles + 2 * np.einsum("njd,nld->njld", arrays["doublet"], arrays["doubvec"])
    if forces is not None or not isinstance(dipoles, int):
        calls.append({"charges": forces,
                      "dipoles": None if isinstance(dipoles, int) else dipoles})
    if not calls:
        raise ValueError("give stoklet, strslet and strsvec, rotlet and rotvec, or doublet and "
                         "doubvec")
    return calls


def _summed(summation, calls: list[dict], level: int, nd: int) -> list[np.ndarray]:
    """Velocity ``(M, 3, nd)`` (and pressure ``(M, nd)``, gradient ``(M, 3, 3, nd)``, fmmloopy's
    ``[:, i, l] = d u_i / d x_l``) of every call, added."""
    total = None
    for call in calls:
        column = call.pop("column", None)
        result = summation(call.get("charges"), dipoles=call.get("dipoles"),
                           stresslets=call.get("stresslets"), pressure=level >= 2,
                           gradient=level >= 3)
        fields = [result] if level == 1 else [result.velocity, result.pressure] + (
            [result.gradient] if level >= 3 else [])
        if total is None:
            total = [np.zeros((*field.shape[:-1], nd)) for field in fields]
        for sum_field, field in zip(total, fields, strict=True):
            if column is None:
                sum_field += field
            else:
                sum_field[..., column] += field[..., 0]
    return total


def _to_fmm3d(fields: list[np.ndarray], nd: int) -> list[np.ndarray]:
    """Velocity ``(nd, 3, M)``, pressure ``(nd, M)``, gradient ``(nd, 3, 3, M)`` (``[l, i]``:
    ``d u_i / d x_l``), the nd axis left out for nd = 1."""
    converted = [np.moveaxis(fields[0], (0, 1, 2), (2, 1, 0))]
    if len(fields) > 1:
        converted.append(fields[1].T)
    if len(fields) > 2:
        converted.append(np.moveaxis(fields[2], (0, 1, 2, 3), (3, 2, 1, 0)))
    return [np.ascontiguousarray(field[0] if nd == 1 else field) for field in converted]


def _assign(out: Output, fields: list[np.ndarray], suffix: str) -> None:
    for name, field in zip(("pot", "pre", "grad"), fields, strict=False):
        setattr(out, name + suffix, field)


def stfmm3d(*, eps, sources, stoklet=None, strslet=None, strsvec=None, rotlet=None,
            rotvec=None, doublet=None, doubvec=None, targets=None, ifppreg=0, ifppregtarg=0,
            nd=1):
    """Stokes sums (viscosity 1) of Stokeslets, stresslets, rotlets and doublets at the sources
    (``ifppreg``) and ``targets`` (``ifppregtarg``): 1 the velocity ``pot``, 2 and the pressure
    ``pre``, 3 and the velocity gradient ``grad``: FMM3D's ``stfmm3d`` (module docstring)."""
    out = Output()
    pg, pgt = flag(ifppreg, "ifppreg", 3), flag(ifppregtarg, "ifppregtarg", 3)
    nd = densities_count(nd)
    source_points = points(sources, "sources")
    target_points = None if targets is None else points(targets, "targets")
    if pgt and target_points is None:
        raise ValueError(f"ifppregtarg={pgt} asks for fields at targets: give targets (3, nt)")
    if not pg and not pgt:
        warnings.warn("nothing to compute: set ifppreg or ifppregtarg to 1, 2 or 3",
                      stacklevel=2)
        return out
    arrays = _pairs({"stoklet": stoklet, "strslet": strslet, "strsvec": strsvec,
                     "rotlet": rotlet, "rotvec": rotvec, "doublet": doublet,
                     "doubvec": doubvec}, nd, len(source_points))
    calls = _calls(arrays)
    level = max(pg, pgt)
    words = (["charges"] * ("stoklet" in arrays)
             + ["dipoles"] * any(name in arrays for name in ("strslet", "rotlet", "doublet"))
             + ["gradient"] * (level >= 3))
    evaluation = (np.concatenate([source_points, target_points]) if pg and pgt
                  else target_points if pgt else None)
    fmm = fmm_for(source_points, evaluation, kernel="stokes", eps=eps_value(eps),
                  eps_for=words, both_groups=bool(pg and pgt))
    fields = _summed(fmm, calls, level, nd)
    ns = len(source_points)
    if pg:
        _assign(out, _to_fmm3d([field[:ns] for field in fields[:pg]], nd), "")
    if pgt:
        start = ns if pg else 0
        _assign(out, _to_fmm3d([field[start:] for field in fields[:pgt]], nd), "targ")
    return out


def st3ddir(*, eps=None, sources, stoklet=None, strslet=None, strsvec=None, rotlet=None,
            rotvec=None, doublet=None, doubvec=None, targets=None, ifppreg=0, ifppregtarg=0,
            nd=1, thresh=1e-16):
    """The direct sum of :func:`stfmm3d` at ``targets`` (``ifppregtarg``), pairs closer than
    ``thresh`` left out: FMM3D's ``st3ddir`` (``eps`` and ``ifppreg`` are taken and unused, as
    there)."""
    out = Output()
    pgt = flag(ifppregtarg, "ifppregtarg", 3)
    nd = densities_count(nd)
    source_points = points(sources, "sources")
    if targets is None:
        raise ValueError("st3ddir sums at targets: give targets (3, nt)")
    target_points = points(targets, "targets")
    thresh = thresh_value(thresh)
    if not pgt:
        warnings.warn("nothing to compute: set ifppregtarg to 1, 2 or 3", stacklevel=2)
        return out
    arrays = _pairs({"stoklet": stoklet, "strslet": strslet, "strsvec": strsvec,
                     "rotlet": rotlet, "rotvec": rotvec, "doublet": doublet,
                     "doubvec": doubvec}, nd, len(source_points))
    direct = DirectSum(source_points, target_points, kernel="stokes",
                       exclude_within=thresh)
    _assign(out, _to_fmm3d(_summed(direct, _calls(arrays), pgt, nd), nd), "targ")
    return out
