"""The built-in kernels of Stokes flow: the Stokeslet, the Rotne-Prager-Yamakawa tensor, the
regularized Stokeslet and the stresslet.

The first three are 3 x 3 tensor kernels of the form ``G = A(r) I + B(r) d d^T`` (``d = x - y``,
``r = |d|``), given with those parts (:attr:`~fmmloopy.maths.green.GreenKernel.isotropic`) so
that the pairwise template applies them as ``A f + B d (d . f)``. Their far fields are summed
as Laplace sums (:mod:`fmmloopy.maths.harmonic`). Their fields (the expressions and
parameters a :class:`~fmmloopy.maths.green.GreenKernel` is made of) are written here;
:func:`~fmmloopy.maths.green.stokes` and :func:`~fmmloopy.maths.green.rpy` make the kernels.
"""

from __future__ import annotations

import math
from numbers import Real

from pymbolic import var

from fmmloopy.maths.green_expression import OFFSET_VARIABLES, guarded, offset_length_squared

__all__ = ["regularized_stokeslet_fields", "rpy_fields", "stokeslet_fields",
           "stresslet_fields"]


def _positive(kernel: str, name: str, value) -> None:
    """ValueError unless ``value`` is a finite real number > 0."""
    if not (isinstance(value, Real) and not isinstance(value, bool) and 0 < value < math.inf):
        raise ValueError(f"{kernel}: the {name} must be a finite real number > 0, not "
                         f"{value!r}")


def _isotropic_fields(name: str, isotropic, dyadic, parameters: dict, **fields) -> dict:
    """The fields of the 3 x 3 kernel ``s (isotropic I / r + dyadic d d^T / r^3)``
    (``s = 1 / (8 pi mu)``, each entry guarded: 0 at ``d = 0``; a factor None for 1): its
    matrix written out for the symbolic derivatives and its parts ``(A, B)`` given for the
    pairwise template."""
    offset = [var(axis) for axis in OFFSET_VARIABLES]
    r2 = offset_length_squared()
    r = var("sqrt")(r2)
    scale = 1 / (8 * math.pi * var("mu"))

    def times(factor, value):
        return value if factor is None else factor * value

    def entry(a: int, b: int):
        term = times(dyadic, offset[a] * offset[b] / (r2 * r))
        return guarded(scale * (times(isotropic, 1 / r) + term if a == b else term))
    parts = (times(isotropic, scale) / r, times(dyadic, scale) / (r2 * r))
    return dict(name=name, expression=tuple(tuple(entry(a, b) for b in range(3))
                                            for a in range(3)),
                parameters=parameters, isotropic=tuple(guarded(part) for part in parts), **fields)


def stokeslet_fields(mu: float) -> dict:
    """The Stokeslet ``G(d) = (I / r + d d^T / r^3) / (8 pi mu)`` (``r = |d|``, viscosity
    ``mu > 0``): the velocity of viscous flow at offset ``d`` from a point force, 3 force
    components to 3 velocity components (the convention of FMM3D's ``stfmm3d`` and STKFMM).
    Its gradient output is the velocity gradient (``d u_a / d x_j`` at ``3 a + j``), its dipole
    input a force dipole (the Stokes doublet: force component ``b`` times the derivative in
    the source point along ``l``, at ``3 b + l``), its ``pressure`` output the pressure
    ``d . f / (4 pi r^3)`` (independent of ``mu``). Homogeneous of degree -1, as Laplace's."""
    _positive("stokes", "viscosity mu", mu)
    r2 = offset_length_squared()
    r = var("sqrt")(r2)
    pressure = tuple(guarded(var(axis) / (r2 * r) * (1 / (4 * math.pi)))
                     for axis in OFFSET_VARIABLES)
    return _isotropic_fields("stokes", None, None, {"mu": mu}, homogeneity=-1.0,
                             companions=(("pressure", pressure, 1),))


def rpy_fields(mu: float, radius: float) -> dict:
    """The Rotne-Prager-Yamakawa tensor of spheres of one ``radius`` ``a`` in a fluid of
    viscosity ``mu``: the mobility ``M(d)`` that gives a sphere's velocity from the force on
    another,

        r >= 2a:  (1 / (8 pi mu r)) [(1 + 2 a^2 / (3 r^2)) I + (1 - 2 a^2 / r^2) d d^T / r^2],
        r <  2a:  (1 / (6 pi mu a)) [(1 - 9 r / (32 a)) I + (3 r / (32 a)) d d^T / r^2],

    the second where the spheres overlap, ``I / (6 pi mu a)`` (a sphere's own mobility) at
    ``r = 0``. The expression here is the first form, ``G + (a^2 / 3) lap G`` of the Stokeslet
    ``G``, at every ``r > 0``: an FMM sums it and adds the difference of the two forms over
    the overlapping pairs (:mod:`fmmloopy.maths.rpy`). Velocities of forces only (no
    gradient, dipoles or pressure); not homogeneous (``a`` is a length)."""
    _positive("rpy", "viscosity mu", mu)
    _positive("rpy", "radius", radius)
    r2 = offset_length_squared()
    a2 = var("radius") * var("radius")
    return _isotropic_fields("rpy", 1 + 2 * a2 / (3 * r2), 1 - 2 * a2 / r2,
                             {"mu": mu, "radius": radius})


def regularized_stokeslet_fields(mu: float, epsilon: float) -> dict:
    """Cortez's regularized Stokeslet (Cortez, Fauci and Medovikov 2005): the flow of a force
    spread over the blob ``15 eps^4 / (8 pi (r^2 + eps^2)^(7/2))``,

        G_eps(d) = ((r^2 + 2 eps^2) I + d d^T) / (8 pi mu (r^2 + eps^2)^(3/2)),

    the method of regularized Stokeslets' kernel (STKFMM's ``RegVel``). Smooth everywhere,
    ``I / (4 pi mu eps)`` at ``r = 0``: the expression is guarded to 0 there, as every kernel's
    (a pair at one point is left out), and the FMM and the direct sum add that value for each
    target on a source (a blob's own velocity; :func:`~fmmloopy.maths.rpy.find_coincident`).
    Away from the blob ``G_eps = G + (eps^2 / 4) lap G + R`` with ``|R| <= (9 / 8) (eps /
    r)^4 |G|`` (``G`` the Stokeslet): the FMM's far field is the first two terms
    (:mod:`fmmloopy.maths.harmonic`), its tree's boxes kept wide enough for ``R``. Velocities
    of forces only; not homogeneous (``eps`` is a length)."""
    _positive("regularized_stokes", "viscosity mu", mu)
    _positive("regularized_stokes", "blob size epsilon", epsilon)
    offset = [var(axis) for axis in OFFSET_VARIABLES]
    e2 = var("epsilon") * var("epsilon")
    smoothed = offset_length_squared() + e2
    scale = 1 / (8 * math.pi * var("mu") * smoothed * var("sqrt")(smoothed))
    isotropic = scale * (offset_length_squared() + 2 * e2)
    expression = tuple(tuple(guarded(isotropic + scale * offset[a] * offset[a] if a == b
                                     else scale * offset[a] * offset[b]) for b in range(3))
                       for a in range(3))
    return dict(name="regularized_stokes", expression=expression,
                parameters={"mu": mu, "epsilon": epsilon},
                isotropic=(guarded(isotropic), guarded(scale)))


def stresslet_fields(mu: float, with_forces: bool = False) -> dict:
    """The stresslet: the velocity ``u_i = T_ijk S_jk`` of a source of stress ``S`` (``S = q
    n^T`` for a double layer of density ``q`` on a surface of normal ``n``), with
    ``T_ijk(d) = -3 d_i d_j d_k / (4 pi r^5)`` (FMM3D's ``stfmm3d`` and STKFMM's, independent
    of ``mu``); its pressure ``(mu / (2 pi)) (tr S / r^3 - 3 d . S d / r^5)`` (which holds the
    viscosity). ``S`` is 9 source components (``S[j, k]`` at ``3 j + k``). ``T`` is symmetric
    in its three indices, so only ``S``'s symmetric part moves the fluid. With
    ``with_forces``, the Stokeslet's three force columns first (``[G | T]``, 12 source
    components): one near field for forces and stresslets; not homogeneous then (``G`` and
    ``T`` differ by a degree)."""
    _positive("stresslet", "viscosity mu", mu)
    stokeslet = stokeslet_fields(mu)
    r2 = offset_length_squared()
    r5 = r2 * r2 * var("sqrt")(r2)
    offset = [var(axis) for axis in OFFSET_VARIABLES]
    columns = [(j, k) for j in range(3) for k in range(3)]
    stress = tuple(tuple(guarded(-3 / (4 * math.pi) * offset[i] * offset[j] * offset[k] / r5)
                         for j, k in columns) for i in range(3))
    pressure = tuple(guarded(var("mu") / (2 * math.pi)
                             * ((r2 if j == k else 0) - 3 * offset[j] * offset[k]) / r5)
                     for j, k in columns)
    if not with_forces:
        return dict(name="stresslet", expression=stress, homogeneity=-2.0,
                    parameters={"mu": mu}, companions=(("pressure", pressure, 1),))
    (_, force_pressure, _), = stokeslet["companions"]
    return dict(name="stokes_stresslet",
                expression=tuple(forces + layer for forces, layer
                                 in zip(stokeslet["expression"], stress, strict=True)),
                parameters={"mu": mu},
                companions=(("pressure", force_pressure + pressure, 1),))
