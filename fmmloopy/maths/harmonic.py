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

The Rotne-Prager-Yamakawa tensor of spheres of radius ``a`` (:func:`~fmmloopy.maths.
flow_kernels.rpy`) is, for separated spheres, ``G + (a^2 / 3) lap G``, and
``lap G f = -(1 / mu) grad div phi`` away from the source: its far field is the Stokeslet's
with ``psi`` less ``(2 a^2 / 3) div phi``, which is the potential of Laplace dipoles of moment
``(2 a^2 / 3) f`` (the dipole input is the derivative in the source point): the same four
potentials, ``psi`` with dipoles.

Cortez's regularized Stokeslet of blob size ``eps`` (:func:`~fmmloopy.maths.flow_kernels.
regularized_stokeslet_fields`) is, away from its blob, ``G + (eps^2 / 4) lap G`` up to ``(9 / 8)
(eps / r)^4`` of ``G``: the far field of the same sums with ``psi``'s dipoles ``(eps^2 / 2) f``,
in boxes wide enough for the rest (:func:`blob_leaf_width`).

A stresslet ``S`` (``u_i = T_ijk S_jk``, :func:`~fmmloopy.maths.green.stresslet`) is the force
dipole ``-mu (S + S^T)`` plus the flow ``-P (tr S)`` of a point source of volume, ``P`` the
Stokeslet's pressure row (``T_ijk`` is the stress of the Stokeslet); that source flow is
``grad`` of the Laplace potential of ``tr S``, which ``psi`` would carry as the charge
``2 mu tr S`` and which cancels the force dipole's ``trace`` charge: a stresslet is a force
dipole whose ``psi`` charge is 0.

:class:`StokesletSplit` holds the transforms; :func:`harmonic_split` says which kernels have
one (the built-in Stokeslet and RPY tensor).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fmmloopy.maths.green import (
    LAPLACE_3D,
    GreenKernel,
    regularized_stokes,
    rpy,
    stokes,
    stresslet,
)

__all__ = ["HARMONIC_POTENTIALS", "StokesletSplit", "blob_leaf_width", "check_split_fields",
           "harmonic_split", "kernel_of_call", "layered_kernel", "operator_kernel"]

#: Laplace potentials summed per force vector: the three components' and ``psi``.
HARMONIC_POTENTIALS = 4


@dataclass(frozen=True)
class StokesletSplit:
    """The Stokeslet of viscosity ``mu`` as Laplace sums (module docstring), for every field of
    the built-in kernel: velocities, their gradient and the pressure, of forces and force
    dipoles.

    Force dipoles ``D`` (component ``b`` displaced along ``l``) are Laplace dipoles: moment
    ``D[k, :]`` for ``phi_k``, and for ``psi`` (the derivative of ``f_b (y - c)_b L`` in
    ``y_l``) the charge ``trace D`` and the moment ``(y - c)_b D[b, :]``. The velocity gradient
    is ``d_j u_i = (d_j phi_i - d_i phi_j - (x - c)_k d_i d_j phi_k + d_i d_j psi) / (2 mu)``
    (the potentials' Hessians), the pressure ``-d_k phi_k`` (the divergence of the force
    potentials). With a ``radius``, the RPY tensor's far field (module docstring): velocities
    of forces only.
    """

    mu: float
    #: The spheres' radius of the RPY tensor; None for the Stokeslet.
    radius: float | None = None
    #: The regularized Stokeslet's blob size; None for the others.
    blob: float | None = None
    #: Whether the kernel's source components hold forces (the Stokeslet's three columns) and
    #: stresslets (nine, :func:`~fmmloopy.maths.green.stresslet`).
    forces: bool = True
    stresslets: bool = False

    @property
    def psi_dipole(self) -> float | None:
        """The factor of ``psi``'s dipoles ``c f`` of a far field ``G + (c / 2) lap G``: the
        RPY tensor's ``2 a^2 / 3``, the regularized Stokeslet's ``eps^2 / 2``; else None."""
        if self.radius is not None:
            return 2.0 * self.radius ** 2 / 3.0
        return None if self.blob is None else 0.5 * self.blob ** 2

    @property
    def own_velocity(self) -> float | None:
        """The regularized Stokeslet's ``G_eps(0) = I / (4 pi mu eps)`` (a blob moving itself),
        which its kernel leaves out at ``r = 0`` as every kernel does; else None."""
        return None if self.blob is None else 1.0 / (4.0 * np.pi * self.mu * self.blob)

    def far_kernel(self, kernel: GreenKernel) -> GreenKernel:
        """The Laplace kernel whose far field gives ``kernel``'s fields: four potentials per
        force vector, their gradients, and their Hessians for a velocity gradient; charges
        but for stresslets alone (their ``psi`` charge cancels), dipoles for force dipoles,
        stresslets and the RPY tensor."""
        outputs = ("potential", "gradient") + (("hessian",) if "gradient" in kernel.outputs
                                               else ())
        dipoles = ("dipole" in kernel.inputs or self.psi_dipole is not None
                   or self.stresslets)
        inputs = ("charge",) * self.forces + ("dipole",) * dipoles
        return LAPLACE_3D.with_fields(outputs, inputs).with_vectors(
            HARMONIC_POTENTIALS * kernel.vectors)

    def charges(self, kernel: GreenKernel, strengths: np.ndarray, sources: np.ndarray,
                centre: np.ndarray, out: np.ndarray | None = None,
                relative: np.ndarray | None = None) -> np.ndarray:
        """The far kernel's strengths ``(n_inputs, N)`` from ``kernel``'s ``strengths``
        (of each vector in turn: forces, stresslets ``S`` (``3 j + k``), force dipoles, those
        ``kernel`` takes) at ``sources`` ``(3, N)``; into ``out`` and with ``relative``
        (``(3, N)``, for ``sources - centre``) where given (arrays kept between calls)."""
        count = strengths.shape[-1]
        vectors = kernel.vectors
        per_vector = strengths.reshape((vectors, -1, count))
        if relative is None:
            relative = np.empty_like(sources)
        np.subtract(sources, centre[:, None], out=relative)
        far = self.far_kernel(kernel)
        with_charge, with_dipole = "charge" in far.inputs, "dipole" in far.inputs
        width = int(with_charge) + 3 * int(with_dipole)
        out = (np.empty((far.n_inputs, count)) if out is None else out).reshape(
            (vectors, HARMONIC_POTENTIALS, width, count))
        forces = per_vector[:, :3] if self.forces and "charge" in kernel.inputs else None
        dipoles = None
        if "dipole" in kernel.inputs:
            dipoles = per_vector[:, -9:].reshape((vectors, 3, 3, count))
        elif self.stresslets:  # S is the force dipole -mu (S + S^T), whose trace psi's charge
            stress = per_vector[:, 3 * self.forces:3 * self.forces + 9].reshape(  # 2 mu tr S
                (vectors, 3, 3, count))  # cancels (module docstring)
            dipoles = -self.mu * (stress + stress.transpose(0, 2, 1, 3))
        for vector in range(vectors):
            if with_charge:
                charge = out[vector, :, 0]  # (4, N): phi_k's and psi's
                if forces is None:
                    charge[:] = 0.0
                else:
                    charge[:3] = forces[vector]
                    np.einsum("kn,kn->n", forces[vector], relative, out=charge[3])
                if "dipole" in kernel.inputs:
                    charge[3] += np.einsum("bbn->n", dipoles[vector])
            if not with_dipole:
                continue
            moment = out[vector, :, int(with_charge):]  # (4, 3, N)
            if self.psi_dipole is not None:  # psi's dipoles (module docstring)
                moment[:3] = 0.0
                np.multiply(forces[vector], self.psi_dipole, out=moment[3])
            else:
                moment[:3] = dipoles[vector]
                np.einsum("bln,bn->ln", dipoles[vector], relative, out=moment[3])
        return out.reshape((-1, count))

    def fields(self, kernel: GreenKernel, laplace: np.ndarray, offset: np.ndarray,
               out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
        """``kernel``'s outputs ``(n_outputs, M)`` from the far kernel's ``laplace`` outputs at
        targets ``offset`` ``(3, M)`` from the centre: row by row, each a contiguous array of
        the targets (10^6 targets: tens of milliseconds), into ``out`` and with ``scratch``
        (``(M,)``) where given (arrays kept between calls are not page-faulted in again)."""
        count = laplace.shape[-1]
        rows = laplace.reshape((kernel.vectors, HARMONIC_POTENTIALS, -1, count))
        scale = 1.0 / (2.0 * self.mu)
        out = (np.empty((kernel.n_outputs, count)) if out is None else out).reshape(
            (kernel.vectors, kernel.n_outputs // kernel.vectors, count))
        scratch = np.empty(count) if scratch is None else scratch

        def minus_offset_times(into: np.ndarray, potentials: np.ndarray, row: int) -> None:
            """``into -= (x - c)_k potentials[k, row]``, summed over ``k``."""
            for k in range(3):
                np.multiply(offset[k], potentials[k, row], out=scratch)
                into -= scratch

        for vector, potentials in enumerate(rows):  # potentials[k, 0]: value, [k, 1 + i]: d_i
            first = 0
            if "potential" in kernel.outputs:
                for i in range(3):
                    velocity = out[vector, i]
                    np.add(potentials[i, 0], potentials[3, 1 + i], out=velocity)
                    minus_offset_times(velocity, potentials, 1 + i)
                    velocity *= scale
                first = 3
            if "gradient" in kernel.outputs:
                for i, j in np.ndindex(3, 3):
                    hessian = 4 + _HESSIAN_ROW[i][j]
                    gradient = out[vector, first + 3 * i + j]
                    np.subtract(potentials[i, 1 + j], potentials[j, 1 + i], out=gradient)
                    gradient += potentials[3, hessian]
                    minus_offset_times(gradient, potentials, hessian)
                    gradient *= scale
                first += 9
            if "pressure" in kernel.outputs:
                pressure = out[vector, first]
                np.add(potentials[0, 1], potentials[1, 2], out=pressure)
                pressure += potentials[2, 3]
                np.negative(pressure, out=pressure)
        return out.reshape((-1, count))


#: The row of ``d_i d_j`` among the Hessian's six (``xx, xy, xz, yy, yz, zz``).
_HESSIAN_ROW = ((0, 1, 2), (1, 3, 4), (2, 4, 5))


def harmonic_split(kernel: GreenKernel) -> StokesletSplit | None:
    """The Laplace sums of ``kernel``'s far field where it has them (the built-in Stokeslet,
    whatever its fields), else None: other kernels (a user's tensor kernel, even one equal to
    the Stokeslet under another name) sum their far field with densities of their own."""
    if kernel.name not in _FLOW_KERNELS or not kernel.is_tensor:
        return None
    return _split_of(kernel.base)


@lru_cache(maxsize=64)
def _split_of(base: GreenKernel) -> StokesletSplit | None:
    """:func:`harmonic_split` of a kernel's :attr:`~fmmloopy.maths.green.GreenKernel.base`,
    once per kernel (making the built-in one to compare with takes its symbolic checks)."""
    parameters = dict(base.parameters)
    try:
        if base != _FLOW_KERNELS[base.name](**parameters):
            return None
    except (TypeError, ValueError):
        return None
    return StokesletSplit(parameters["mu"], parameters.get("radius"),
                          blob=parameters.get("epsilon"), forces=base.name != "stresslet",
                          stresslets=base.name in ("stresslet", "stokes_stresslet"))


#: The kernels summed as Laplace sums, by name: how each is made from its parameters.
_FLOW_KERNELS = {"stokes": stokes, "rpy": rpy, "regularized_stokes": regularized_stokes,
                 "stresslet": stresslet,
                 "stokes_stresslet": lambda mu: stresslet(mu, with_forces=True)}


def layered_kernel(kernel: GreenKernel, forces: bool, stresslets: bool) -> GreenKernel:
    """The Stokeslet ``kernel``'s relative that takes a call's ``forces`` and/or
    ``stresslets`` (the Stokeslet, the stresslet, or both's columns), its fields and vectors
    kept; ValueError for stresslets on another kernel."""
    if not stresslets:
        return kernel
    split = harmonic_split(kernel)
    if split is None or kernel.name != "stokes":
        raise ValueError(f"stresslets are a Stokes flow's (kernel='stokes'), not kernel "
                         f"{kernel.base.spec!r}'s")
    made = stresslet(split.mu, with_forces=forces)
    return dataclasses.replace(made, outputs=kernel.outputs, inputs=kernel.inputs,
                               vectors=kernel.vectors)


def kernel_of_call(kernel: GreenKernel, asked: GreenKernel) -> GreenKernel:
    """An FMM of ``kernel``'s kernel for a call that ``asked`` (its fields and vectors; a
    Stokes call with stresslets names the stresslet kernel: :func:`layered_kernel`)."""
    own = kernel if asked.name == kernel.name else layered_kernel(
        kernel, asked.name != "stresslet", True)
    return own.with_fields(asked.outputs, asked.inputs).with_vectors(asked.vectors)


def check_split_fields(kernel: GreenKernel) -> None:
    """ValueError where ``kernel``'s fields are more than its Laplace sums give: the RPY
    tensor's and the regularized Stokeslet's velocities of forces are all they have."""
    split = harmonic_split(kernel)
    if split is not None and split.psi_dipole is not None and (
            kernel.outputs != ("potential",) or kernel.inputs != ("charge",)):
        raise ValueError(f"kernel {kernel.base.spec!r} gives the velocities of forces only "
                         "(no gradient, dipoles or pressure; kernel='stokes' has them)")


#: The bound of the regularized Stokeslet's far-field remainder: ``|R| <= (9 / 8) (eps /
#: r)^4 |G|`` (:func:`~fmmloopy.maths.flow_kernels.regularized_stokeslet_fields`).
BLOB_REMAINDER = 9.0 / 8.0


def blob_leaf_width(epsilon: float, tolerance: float) -> float:
    """The narrowest box an FMM of the regularized Stokeslet of blob size ``epsilon`` may
    have, so that its far field's remainder stays within ``tolerance`` of the Stokeslet's:
    every pair its far field sums is at least a box width apart."""
    return epsilon * (BLOB_REMAINDER / tolerance) ** 0.25


def operator_kernel(kernel: GreenKernel) -> GreenKernel:
    """The kernel whose precomputed operators an FMM of ``kernel`` applies first: Laplace's
    where the far field is Laplace sums, else ``kernel``'s own."""
    return LAPLACE_3D if harmonic_split(kernel) is not None else kernel.base
