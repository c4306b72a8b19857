"""Stokes sums as Laplace sums: the far field of Stokeslets from four harmonic potentials.

With ``L(d) = 1 / (4 pi |d|)`` (:data:`~fmmloopy.maths.green.LAPLACE_3D`) and a centre ``c``,
the velocity of point forces ``f`` at ``y`` is

    u_i(x) = 1 / (2 mu) [phi_i - (x - c)_k d_i phi_k + d_i psi],
    phi_k = sum_y L(x - y) f_k,   psi = sum_y L(x - y) f . (y - c),

because ``-(x - c)_k d_i L f_k + d_i L f . (y - c) = d_i (d . f) / (4 pi r^3)`` for ``d = x - y``
(the Stokeslet's ``d d^T / r^3`` part) and ``L f_i / (2 mu)`` is its ``I / r`` part. The four
potentials and their gradients are a Laplace FMM of four charge vectors, whose operators are
the scalar ones (cheap, cached, homogeneous) and whose order reaches Laplace's accuracy; the
near field is the Stokeslet summed directly. The identity holds pair by pair, so the far
field's pairs (every pair the FMM does not sum directly) give the far part of the velocity
and the near field's the rest. ``c`` is the tree's root centre: ``|x - c|`` stays within the
root box, so the cancellation between the terms costs a few digits' fraction, not more. This is
how FMM3D's ``stfmm3d`` sums Stokeslets (Tornberg and Greengard, 2008).

:class:`StokesletSplit` holds the transforms; :func:`harmonic_split` says which kernels have
one (the built-in Stokeslet: :func:`~fmmloopy.maths.green.stokes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmmloopy.maths.green import LAPLACE_3D, GreenKernel, stokes

__all__ = ["HARMONIC_FIELDS", "HARMONIC_POTENTIALS", "StokesletSplit", "harmonic_split",
           "operator_kernel"]

#: Laplace potentials summed per force vector: the three components' and ``psi``.
HARMONIC_POTENTIALS = 4
#: The Laplace fields each potential gives at the targets: the potential and its gradient.
HARMONIC_FIELDS = ("potential", "gradient")
_ROWS = 4  # per Laplace potential: the value and three derivatives


@dataclass(frozen=True)
class StokesletSplit:
    """The Stokeslet of viscosity ``mu`` as Laplace sums (module docstring)."""

    mu: float

    def handles(self, kernel: GreenKernel) -> bool:
        """Whether a call summing ``kernel`` (the Stokeslet with the call's fields) goes
        through the Laplace sums: velocities of forces."""
        return kernel.outputs == ("potential",) and kernel.inputs == ("charge",)

    @staticmethod
    def far_kernel(kernel: GreenKernel) -> GreenKernel:
        """The Laplace kernel whose far field gives ``kernel``'s: potentials and gradients of
        four charge vectors per force vector."""
        return LAPLACE_3D.with_fields(HARMONIC_FIELDS).with_vectors(
            HARMONIC_POTENTIALS * kernel.vectors)

    @staticmethod
    def charges(forces: np.ndarray, sources: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """``(4 v, N)`` Laplace charges of ``forces`` ``(3 v, N)`` (``v`` force vectors, each
        three rows) at ``sources`` ``(3, N)``: per vector ``f_0, f_1, f_2, f . (y - c)``."""
        per_vector = forces.reshape((-1, 3, forces.shape[-1]))
        moment = np.einsum("vkn,kn->vn", per_vector, sources - centre[:, None])
        return np.concatenate([per_vector, moment[:, None]], axis=1).reshape(
            (-1, forces.shape[-1]))

    def velocities(self, fields: np.ndarray, targets: np.ndarray, centre: np.ndarray
                   ) -> np.ndarray:
        """``(3 v, M)`` velocities from the Laplace ``fields`` ``(16 v, M)`` (per vector, per
        potential: value, then gradient) at ``targets`` ``(3, M)``."""
        per_vector = fields.reshape((-1, HARMONIC_POTENTIALS, _ROWS, fields.shape[-1]))
        phi = per_vector[:, :3, 0]  # (v, 3, M)
        gradient_phi = per_vector[:, :3, 1:]  # (v, k, i, M): d_i phi_k
        gradient_psi = per_vector[:, 3, 1:]  # (v, i, M)
        offset = targets - centre[:, None]
        velocity = phi - np.einsum("km,vkim->vim", offset, gradient_phi) + gradient_psi
        return (velocity / (2.0 * self.mu)).reshape((-1, fields.shape[-1]))


def harmonic_split(kernel: GreenKernel) -> StokesletSplit | None:
    """The Laplace sums of ``kernel``'s far field where it has them (the built-in Stokeslet,
    whatever its fields), else None: other kernels (a user's tensor kernel, even one equal to
    the Stokeslet under another name) sum their far field with densities of their own."""
    if kernel.name != "stokes" or not kernel.is_tensor:
        return None
    mu = dict(kernel.parameters).get("mu")
    if mu is None or kernel.base != stokes(mu):
        return None
    return StokesletSplit(mu)


def operator_kernel(kernel: GreenKernel) -> GreenKernel:
    """The kernel whose precomputed operators an FMM of ``kernel`` applies first: Laplace's
    where the far field is Laplace sums, else ``kernel``'s own."""
    return LAPLACE_3D if harmonic_split(kernel) is not None else kernel.base
