"""Kernels whose parameter is an inverse length, and the dimensionless form of their operators.

Yukawa's ``exp(-kappa r) / (4 pi r)`` and Helmholtz's ``exp(1j k r) / (4 pi r)`` are not
homogeneous, but scaling the distance and the parameter together is exact:
``G_p(h d) = h**-1 G_{p h}(d)``. So the operators of a box of half-width ``h`` for the kernel
at ``p`` are those of a box of half-width 1 for the kernel at ``p h``, scaled from level to
level as a homogeneous kernel of degree -1 is (:mod:`fmmloopy.maths.kifmm`'s level scaling).
A set of operators is therefore keyed by the dimensionless product ``p h`` alone: Yukawa at
``kappa = 10`` on a root box of side 1 and at ``kappa = 20`` on one of side 1/2 share every set,
as do the levels of two trees where their boxes' products agree (levels halve ``h`` exactly, so
the products of dyadic levels agree to the bit).
"""

from __future__ import annotations

from fmmloopy.maths.green import LAPLACE_3D, GreenKernel, helmholtz, yukawa

__all__ = ["UNIT_BOX_HOMOGENEITY", "builtin_name", "unit_box_kernel"]

#: The degree the operators of a unit-box set are scaled by from level to level.
UNIT_BOX_HOMOGENEITY = -1.0

#: The built-in scalar kernels, by name: a maker from the kernel's parameters.
_BUILTIN = {"laplace": lambda: LAPLACE_3D, "yukawa": yukawa, "helmholtz": helmholtz}
#: The built-in kernels whose one parameter is an inverse length.
_INVERSE_LENGTH = {"yukawa": "kappa", "helmholtz": "k"}


def builtin_name(kernel: GreenKernel) -> str | None:
    """``"laplace"``, ``"yukawa"`` or ``"helmholtz"`` where ``kernel``'s base (its potential of
    charges) is that built-in Green's function at its parameters; None for any other kernel (a
    user kernel of the same name and another expression, say)."""
    base = kernel.base
    maker = _BUILTIN.get(base.name)
    if maker is None:
        return None
    try:
        builtin = maker(**dict(base.parameters))
    except (TypeError, ValueError):
        return None
    return base.name if builtin.base == base else None


def unit_box_kernel(kernel: GreenKernel, half_width: float) -> GreenKernel | None:
    """The base kernel whose operators for a box of half-width 1, scaled by
    :data:`UNIT_BOX_HOMOGENEITY`, are ``kernel``'s for a box of ``half_width``: the built-in
    Yukawa or Helmholtz kernel at its parameter times ``half_width``; None where ``kernel`` is
    neither."""
    name = builtin_name(kernel)
    if name not in _INVERSE_LENGTH:
        return None
    parameter = _INVERSE_LENGTH[name]
    value = dict(kernel.base.parameters)[parameter] * float(half_width)
    return _BUILTIN[name](**{parameter: value}).base
