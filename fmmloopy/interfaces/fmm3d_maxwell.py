"""FMM3D's Maxwell sums (``emfmm3d``, ``em3ddir``) as vector Helmholtz sums over fmmloopy.

With ``S[f](x) = sum_j G(x - y_j) f_j``, ``G = exp(i zk r) / (4 pi r)``, FMM3D's field is
``E = curl S[h] + S[e] + grad S[q]`` of a magnetic current ``h``, an electric current ``e`` and
a charge ``q``. Away from the sources ``Laplacian S = -zk^2 S``, so

- ``curl E = grad div S[h] + zk^2 S[h] + curl S[e]``,
- ``div E = div S[e] - zk^2 S[q]``,

all of them potentials, gradients and (for ``grad div S[h]``) Hessians of the seven scalar
densities per vector (``h``'s and ``e``'s components, ``q``): one Helmholtz FMM (or direct
sum) at the targets, called per density for ``h``'s three components (with the Hessians where
``curl E`` is asked for) and for ``e``'s and ``q`` (a call of every field of ``7 nd`` vectors
would be one kernel too large for loopy to generate). FMM3D returns every output with its ``nd``
axis, also for ``nd = 1``: ``E`` and ``curlE`` ``(nd, 3, nt)``, ``divE`` ``(nd, nt)``.
"""

from __future__ import annotations

import warnings

import numpy as np

from fmmloopy.interfaces.fmm3d_arrays import (
    Output,
    densities,
    densities_count,
    flag,
    points,
)

__all__ = ["maxwell_call"]

#: The cyclic order of the curl's terms: ``(curl v)_i = d_{i+1} v_{i+2} - d_{i+2} v_{i+1}``.
_NEXT = (1, 2, 0)
_AFTER = (2, 0, 1)


def _curl(gradients: np.ndarray) -> np.ndarray:
    """``curl`` of a vector field from its components' gradients ``(M, 3 [component],
    3 [axis], k)``: ``(M, 3, k)``."""
    return np.stack([gradients[:, _AFTER[i], _NEXT[i]] - gradients[:, _NEXT[i], _AFTER[i]]
                     for i in range(3)], axis=1)


def maxwell_call(kernel, zk, sources, targets, h_current, e_current, e_charge, flags, nd,
                 summation) -> Output:
    """emfmm3d and em3ddir: ``kernel`` the :class:`~fmmloopy.interfaces.fmm3d._Kernel` of
    ``zk``; ``flags`` ``(ifE, ifcurlE, ifdivE)``; ``summation(kernel, sources, targets,
    level)`` an evaluator ``(charges, level)`` -> the fields up to ``level`` of ``charges``
    ``(n, k)`` at the targets (fmmloopy's layout, the kernel's mappings undone)."""
    out = Output()
    wanted = [flag(value, name, 1) for value, name in zip(flags, ("ifE", "ifcurlE", "ifdivE"),
                                                           strict=True)]
    nd = densities_count(nd)
    source_points = points(sources, "sources")
    if targets is None:
        raise ValueError("the Maxwell sums are at targets: give targets (3, nt)")
    target_points = points(targets, "targets")
    if not any(wanted):
        warnings.warn("nothing to compute: set ifE, ifcurlE or ifdivE to 1", stacklevel=3)
        return out
    n = len(source_points)
    given = {name: densities(value, name, nd, n, components, True)
             for name, value, components in (("h_current", h_current, 3),
                                              ("e_current", e_current, 3),
                                              ("e_charge", e_charge, None)) if value is not None}
    if not given:
        raise ValueError("give h_current, e_current, e_charge or several")
    m = len(target_points)
    level = 3 if wanted[1] and "h_current" in given else 2
    evaluate = summation(kernel, source_points, target_points, level)
    # Per density: potentials (M, 7), gradients (M, 7, 3) of h's, e's and q's columns, and
    # grad div S[h] (M, 3) where asked for.
    potential = np.zeros((m, 7, nd), complex)
    gradient = np.zeros((m, 7, 3, nd), complex)
    grad_div = np.zeros((m, 3, nd), complex)
    for density in range(nd):
        if "h_current" in given:
            fields = evaluate(given["h_current"][..., density], level)
            potential[:, :3, density] = fields[0]
            gradient[:, :3, :, density] = fields[1].transpose(0, 2, 1)
            if level == 3:  # the Hessians' rows summed over h's components
                grad_div[..., density] = np.einsum("mijj->mi", fields[2])
        others = [given[name][..., density].reshape(n, -1) if name in given
                  else np.zeros((n, width), complex)
                  for name, width in (("e_current", 3), ("e_charge", 1))]
        if any(name in given for name in ("e_current", "e_charge")):
            fields = evaluate(np.concatenate(others, axis=1), 2)
            potential[:, 3:, density] = fields[0]
            gradient[:, 3:, :, density] = fields[1].transpose(0, 2, 1)
    k2 = complex(zk) ** 2
    if wanted[0]:
        field = _curl(gradient[:, :3]) + potential[:, 3:6] + gradient[:, 6]
        out.E = _fmm3d_vector(field)
    if wanted[1]:
        field = _curl(gradient[:, 3:6]) + k2 * potential[:, :3] + grad_div
        out.curlE = _fmm3d_vector(field)
    if wanted[2]:
        divergence = np.einsum("mjjd->md", gradient[:, 3:6]) - k2 * potential[:, 6]
        out.divE = np.ascontiguousarray(divergence.T)
    return out


def _fmm3d_vector(field: np.ndarray) -> np.ndarray:
    """``(M, 3, nd)`` as FMM3D's ``(nd, 3, M)``."""
    return np.ascontiguousarray(field.transpose(2, 1, 0))
