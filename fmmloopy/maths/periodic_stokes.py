"""The far images of a periodic Stokes FMM: the lattice's operators on the cell's Laplace sums.

A Stokes FMM sums Stokeslets as four Laplace potentials (:mod:`fmmloopy.maths.harmonic`):
``phi_k`` of the force components and ``psi`` of ``f . (y - c)``. The images of a cell are not
images of those four: an image shifted by ``n L`` carries ``psi``'s charge ``f . (y + n L -
c)``, and the lattice sum of ``psi`` alone diverges (only the velocity's sum converges, under
Hasimoto's convention, :mod:`fmmloopy.maths.hasimoto`). So the far images go through the
velocity:

* each of the cell's children's multipoles (equivalent densities ``sigma_k`` of ``phi_k`` and
  ``tau`` of ``psi`` on its upward equivalent surface ``e``) is a Stokes flow of its own:
  Stokeslets of force ``sigma`` at ``e`` and point sources of volume ``m = tau - (e - c) .
  sigma`` (``psi``'s part that the forces do not carry: ``grad L m``), whose net ``sum m``
  is 0;
* :func:`stokes_lattice_operators` gives their far images' velocity (and pressure) at the
  cell's downward check points: the Hasimoto sum less the near images ``|n|_inf <= 1``
  (:func:`~fmmloopy.maths.hasimoto.stokes_lattice_remainder`), for the child of octant 0 (the
  others by reflection);
* that velocity, less the flow of the net force's balancing body force (a particular solution
  that no Stokeslets hold, :func:`background_flow`), is fitted by Stokeslets ``sigma_L`` on
  the cell's downward equivalent surface ``e'`` (the Stokes kernel's check-to-equivalent
  pseudo-inverse), which are Laplace sums again: charges ``sigma_L`` of ``phi_k`` and
  ``sigma_L . (e' - c)`` of ``psi``, whose potentials at the children's downward check points
  (:attr:`StokesLatticeOperators.children`) join the children's check potentials.

Three numbers the fitted flow does not fix (derived in docs/kernels.md, "Periodic Stokes"): the
velocity's constant, ``sum m (e - c_0) / V`` (the equivalent Stokes flow and the forces' differ
by a flow of compact support whose integral is ``-sum m e``, and Hasimoto's sum of such a flow
is its images less its mean); the pressure's constant from the fit (a velocity fixes its
pressure up to a constant: the far images' pressure at the check points against the fitted
Stokeslets'); and ``(sum f . (y - c_0) - sum sigma . (e - c_0)) / (3 V)``, the pressures'
mean of the same compact difference.

Everything here is for a cell of half-width 1; ``S`` and the pressure of a mass source scale
as ``1 / h`` and ``1 / h^2`` in a cell of half-width ``h``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.green import LAPLACE_3D, GreenKernel, stokes
from fmmloopy.maths.hasimoto import stokes_lattice_remainder
from fmmloopy.maths.precompute import check_to_equivalent, kernel_matrix
from fmmloopy.maths.surfaces import unit_surface

__all__ = ["OPERATOR_FIELDS", "StokesLatticeOperators", "background_flow",
           "stokes_lattice_operators"]

#: The arrays of :class:`StokesLatticeOperators`, as a cache file holds them.
OPERATOR_FIELDS = ("velocity", "pressure", "fit_first", "fit_second", "fit_pressure",
                   "children")
#: The child octants' centres in a cell of half-width 1, in the order of the tree's children
#: (x slowest).
CHILD_CENTRES = 0.5 * np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)],
                               dtype=np.float64)


def _split_stokeslet() -> GreenKernel:
    """``S`` of :mod:`fmmloopy.maths.hasimoto` (the Stokeslet at ``mu = 1/2``) and its
    pressure row."""
    return stokes(mu=0.5).with_fields(("potential", "pressure"), ("charge",))


@dataclass(frozen=True, eq=False)
class StokesLatticeOperators:
    """The far lattice of a periodic Stokes FMM at one order (module docstring), for a cell of
    half-width 1 with ``n`` points per surface. Inputs are component-major: ``3 n`` forces
    ``sigma`` then ``n`` volume sources ``m``; velocities ``3 n`` likewise."""

    #: (3 n, 4 n): the far images' velocity ``S`` at the cell's downward check points of the
    #: densities of the child of octant 0 (centre ``(-1/2, -1/2, -1/2)``, half-width 1/2);
    #: the other octants' are its reflections (:meth:`far_flow`).
    velocity: np.ndarray
    #: (n, 4 n): their pressure there.
    pressure: np.ndarray
    #: The Stokes check-to-equivalent fit's factors (:func:`~fmmloopy.maths.precompute.
    #: check_to_equivalent`): ``sigma_L = fit_second @ (fit_first @ velocity)``.
    fit_first: np.ndarray
    fit_second: np.ndarray
    #: (n, 3 n): the fitted Stokeslets' pressure at the check points.
    fit_pressure: np.ndarray
    #: (8, n, n): the Laplace potential ``1 / (4 pi r)`` at each child's downward check points
    #: (:data:`CHILD_CENTRES`, half-width 1/2) of charges at the cell's downward equivalent
    #: points.
    children: np.ndarray

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> StokesLatticeOperators:
        """From a cache file's arrays; ValueError for other fields or inconsistent shapes."""
        if set(arrays) != set(OPERATOR_FIELDS):
            raise ValueError(f"the Stokes lattice file holds {sorted(arrays)}, not "
                             f"{sorted(OPERATOR_FIELDS)}")
        n = arrays["pressure"].shape[0]
        shapes = {"velocity": (3 * n, 4 * n), "pressure": (n, 4 * n),
                  "fit_pressure": (n, 3 * n), "children": (8, n, n)}
        for name, shape in shapes.items():
            if arrays[name].shape != shape:
                raise ValueError(f"the Stokes lattice's {name} has shape "
                                 f"{arrays[name].shape}, not {shape}")
        for array in arrays.values():
            array.setflags(write=False)
        return cls(**arrays)

    @cached_property
    def reflections(self) -> np.ndarray:
        """(8, n): per octant, the surface points' permutation of its reflection of octant 0
        (the points are a grid symmetric under every reflection: point ``pi[i]`` is point
        ``i`` reflected; a reflection is its own inverse)."""
        n = self.pressure.shape[0]
        order = next(p for p in range(2, 64) if 6 * (p - 1) ** 2 + 2 == n)
        unit = unit_surface(order).T
        lookup = {tuple(np.round(point, 12)): index for index, point in enumerate(unit)}
        return np.array([[lookup[tuple(np.round(point * signs, 12))] for point in unit]
                         for signs in OCTANT_REFLECTIONS])

    def far_flow(self, octant: int, sigma: np.ndarray, volume_sources: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """``(velocity (3, n), pressure (n,))`` at the cell's downward check points of the far
        images of the child of ``octant``'s densities ``sigma`` (3, n) and ``volume_sources``
        (n,) (cell of half-width 1): octant 0's operators on the densities reflected,
        ``T_(R o)[i, j] = R T_o[pi i, pi j] R``, the result reflected back."""
        signs = OCTANT_REFLECTIONS[octant]
        permutation = self.reflections[octant]
        inputs = np.concatenate([(signs[:, None] * sigma)[:, permutation].reshape(-1),
                                 volume_sources[permutation]])
        velocity = (self.velocity @ inputs).reshape(3, -1)[:, permutation] * signs[:, None]
        return velocity, (self.pressure @ inputs)[permutation]


#: Per octant (:data:`CHILD_CENTRES`' order), the reflection that takes octant 0 to it.
OCTANT_REFLECTIONS = -2.0 * CHILD_CENTRES


def _octant_remainder(order: int, check: np.ndarray, equivalent: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``(S (n, n, 3, 3), P (n, n, 3))``: the lattice's remainder at ``check[:, i] -
    equivalent[:, j]`` (octant 0's equivalent points), computed once per orbit of the pairs
    under the six permutations of the axes (which keep octant 0, the surfaces and the lattice:
    ``S(g r) = g S(r) g^T``, ``P(g r) = g P(r)``) and carried to the rest of the orbit."""
    unit = unit_surface(order).T
    lookup = {tuple(np.round(point, 12)): index for index, point in enumerate(unit)}
    n = len(unit)
    permutations = list(itertools.permutations(range(3)))
    moved = np.array([[lookup[tuple(np.round(point[list(axes)], 12))] for point in unit]
                      for axes in permutations])  # point moved[g, i] is g applied to point i
    pairs = np.arange(n * n)
    images = moved[:, pairs // n] * n + moved[:, pairs % n]  # (6, n^2)
    which = np.argmin(images, axis=0)
    representative = images[which, pairs]
    computed, inverse = np.unique(representative, return_inverse=True)
    offsets = check.T[computed // n] - equivalent.T[computed % n]
    s_computed, p_computed = stokes_lattice_remainder(offsets)
    # pair = g^-1 (representative): S(pair) = g^T S(rep) g, P(pair) = g^T P(rep).
    matrices = np.eye(3)[np.array(permutations)]  # (6, 3, 3): row a of g is e_(axes[a])
    g = matrices[which]
    s = np.einsum("qba,qbc,qcd->qad", g, s_computed[inverse], g)
    p = np.einsum("qba,qb->qa", g, p_computed[inverse])
    return s.reshape(n, n, 3, 3), p.reshape(n, n, 3)


def stokes_lattice_operators(order: int, rcond: float) -> dict[str, np.ndarray]:
    """The arrays of :class:`StokesLatticeOperators` at ``order`` (the fit's pseudo-inverse cut
    at ``rcond``): the lattice's remainder at every pair of a check point and an equivalent
    point of octant 0's child."""
    expansion = Expansion(order)
    check = expansion.surface("downward_check")
    equivalent = CHILD_CENTRES[0][:, None] + 0.5 * expansion.surface("upward_equivalent")
    local = expansion.surface("downward_equivalent")
    n = check.shape[1]
    s, p = _octant_remainder(order, check, equivalent)
    velocity = np.empty((3, n, 4, n))
    velocity[:, :, :3] = s.transpose(2, 0, 3, 1)
    velocity[:, :, 3] = -p.transpose(2, 0, 1)  # a volume source's velocity: grad L = -P
    pressure = np.zeros((n, 4, n))
    pressure[:, :3] = p.transpose(0, 2, 1)
    split = _split_stokeslet()
    fit_first, fit_second = check_to_equivalent(split.with_fields(("potential",), ("charge",)),
                                                check, local, rcond)
    fit_pressure = kernel_matrix(split.with_fields(("pressure",), ("charge",)), check, local)
    laplace = np.stack([kernel_matrix(LAPLACE_3D, (CHILD_CENTRES[octant][:, None]
                                                   + 0.5 * check), local)
                        for octant in range(8)])
    return {"velocity": velocity.reshape(3 * n, 4 * n), "pressure": pressure.reshape(n, 4 * n),
            "fit_first": fit_first, "fit_second": fit_second, "fit_pressure": fit_pressure,
            "children": laplace}


def background_flow(offsets: np.ndarray, force: np.ndarray, volume: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(U (3, M), grad U (3, 3, M))``: a flow of the body force ``-F / V`` that balances a net
    force ``F`` in Hasimoto's convention, at ``offsets`` ``(3, M)`` from the cell's centre, in
    the units of :mod:`fmmloopy.maths.hasimoto` (``2 mu u``): ``U = (2 |x|^2 F - x (x . F)) /
    (5 V)`` solves ``lap U - 2 grad p = 2 F / V`` with ``div U = 0`` and ``p = 0``.
    ``grad U[i, j] = d_j U_i``."""
    force = np.asarray(force, dtype=np.float64)
    along = force @ offsets  # (M,)
    squared = (offsets ** 2).sum(axis=0)
    velocity = (2 * squared * force[:, None] - offsets * along) / (5 * volume)
    gradient = (4 * force[:, None, None] * offsets[None, :, :]
                - np.eye(3)[:, :, None] * along
                - offsets[:, None, :] * force[None, :, None]) / (5 * volume)
    return velocity, gradient
