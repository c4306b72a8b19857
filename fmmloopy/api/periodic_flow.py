"""Periodic boundaries for a Stokes FMM (``Fmm(points, kernel="stokes", periodic=L)``): what an
evaluation adds to the passes of its four Laplace sums (:mod:`fmmloopy.maths.harmonic`) over the
tree of the cell and its images (:mod:`fmmloopy.tree.periodic`).

Between the passes (:meth:`StokesPeriodicImages.between_passes`): the image boxes get their real
box's multipoles, ``psi``'s with the shift's part (an image shifted by ``s`` carries ``psi``'s
charge ``f . (y + s - c)``: its ``psi`` density is the real one plus ``s_k`` times ``phi_k``'s,
added on the device); then the far images' flow through the cell's children's multipoles
(:mod:`fmmloopy.maths.periodic_stokes`, on the host: a few matrix products at the cell) into the
cell's children's check potentials. After the passes (:meth:`StokesPeriodicImages.finish`):
the body force's flow, the velocity's and the pressure's constants. The convention is
Hasimoto's (:mod:`fmmloopy.maths.hasimoto`): velocity and pressure of mean 0 over the cell, a
net force balanced by a uniform body force. Point forces, in a cell periodic along its three
axes.
"""

from __future__ import annotations

import time

import numpy as np
import pyopencl.array as cla

from fmmloopy.driver.evaluation import PassHooks
from fmmloopy.execution.precomputed import get_stokes_lattice_operators
from fmmloopy.execution.rows import (
    add_rows,
    add_weighted_rows,
    copy_rows,
    folded_rows,
    gather_rows,
)
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.green import GreenKernel
from fmmloopy.maths.harmonic import HARMONIC_POTENTIALS, StokesletSplit
from fmmloopy.maths.periodic import ALL_AXES
from fmmloopy.maths.periodic_stokes import background_flow
from fmmloopy.tree.periodic import Periodic, cell_children

__all__ = ["StokesPeriodicImages", "check_periodic_flow"]


def check_periodic_flow(split: StokesletSplit, kernel: GreenKernel,
                        axes: tuple[int, ...]) -> None:
    """ValueError for a flow the periodic Stokes FMM does not sum: it sums point forces (the
    Stokeslet's velocity, gradient and pressure) in a cell periodic along every axis."""
    if split.radius is not None or split.stresslets or "dipole" in kernel.inputs:
        raise ValueError(f"a periodic Stokes FMM sums point forces (kernel='stokes'); "
                         f"{kernel.base.spec!r} with "
                         f"{'stresslets' if split.stresslets else 'force dipoles'} is not "
                         "periodic yet")
    if tuple(axes) != ALL_AXES:
        raise ValueError("a periodic Stokes FMM is periodic along every axis "
                         "(periodic_axes='xyz'); slabs and wires are Laplace's")


class StokesPeriodicImages:
    """What an evaluation of a periodic Stokes FMM adds to the passes over :class:`Periodic`'s
    tree (module docstring), in working units; ``cell``: the cell in working coordinates."""

    def __init__(self, periodic: Periodic, cell, order: int):
        tree = periodic.tree
        self.axes = cell.axes
        self.images = periodic.image_boxes
        self.originals = periodic.real_box[self.images]
        #: Each image box's shift from its real box, (images, 3).
        self.shifts = tree.box_centres[self.images] - tree.box_centres[self.originals]
        children, positions = cell_children(periodic)
        octants = (positions * np.array([4, 2, 1])).sum(axis=1)
        with_targets = tree.box_target_counts[children] > 0
        with_sources = tree.box_source_counts[children] > 0
        #: The cell's children with targets and their octants (x slowest); those with
        #: sources, their octants and their sources' ranges (tree order: the cell's own).
        self.children, self.octants = children[with_targets], octants[with_targets]
        self.source_children = children[with_sources]
        self.source_octants = octants[with_sources]
        self.source_ranges = [(int(tree.box_source_starts[child]),
                               int(tree.box_source_counts[child]))
                              for child in self.source_children]
        self.operators = get_stokes_lattice_operators(order)
        self.half_width = half_width = 0.5 * cell.side
        self.volume = cell.volume
        #: The cell's centre, also the Laplace sums' ``psi`` centre (the setup's harmonic
        #: hooks take it from here: :mod:`fmmloopy.maths.harmonic`).
        self.centre = centre = cell.lower + half_width
        expansion = Expansion(order)
        #: The source children's upward equivalent points, (children, 3, n), the cell's
        #: downward equivalent points, (3, n), and its downward check points less its centre.
        self.equivalent = (tree.box_centres[self.source_children][:, :, None]
                           + 0.5 * half_width * expansion.surface("upward_equivalent"))
        self.local = centre[:, None] + half_width * expansion.surface("downward_equivalent")
        self.check_offsets = half_width * expansion.surface("downward_check")
        real = tree.source_user_ids < tree.nsources - len(periodic.ghost_sources)
        #: The cell's own sources' offsets from its centre (0 for the ghosts), (3, ns).
        self.source_offsets = np.where(real, tree.sources_soa - centre[:, None], 0.0)
        #: The targets less the cell's centre, (3, nt).
        self.target_offsets = tree.targets_soa - centre[:, None]
        self._copies: dict[int, tuple] = {}
        self._added: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def launches(self) -> list:
        """The plan's launches of the far lattice: none (it is host work between the
        passes)."""
        return []

    def pass_hooks(self, harmonic: PassHooks, charges: np.ndarray, kernel: GreenKernel,
                   split: StokesletSplit) -> PassHooks:
        """The hooks of an evaluation of ``charges`` (tree order, ``kernel``'s forces):
        ``harmonic``'s (the Laplace sums' charges and fields) with the images' between the
        passes and after them; ValueError for what it does not sum
        (:func:`check_periodic_flow`)."""
        check_periodic_flow(split, kernel, self.axes)
        forces = np.asarray(charges, dtype=np.float64).reshape(kernel.vectors, 3, -1)

        def after(plan, potential: np.ndarray) -> None:
            harmonic.after(plan, potential)
            self.finish(plan, np.atleast_2d(potential), kernel, split)

        return PassHooks(before=harmonic.before, after=after,
                         between=lambda plan: self.between_passes(plan, forces))

    def _rows(self, queue, vectors: int) -> tuple:
        """The image rows' device indices for ``vectors`` force vectors (``4 vectors``
        multipole rows a box): the real rows and the image rows to copy, and per image
        ``psi`` row its three ``phi`` rows and their shifts."""
        if vectors not in self._copies:
            width = HARMONIC_POTENTIALS * vectors
            real, image = (folded_rows(boxes, width).astype(np.int64)
                           for boxes in (self.originals, self.images))
            psi = (self.images[:, None] * width + HARMONIC_POTENTIALS * np.arange(vectors)
                   + HARMONIC_POTENTIALS - 1)  # (images, vectors)
            phi = psi[:, :, None] - (HARMONIC_POTENTIALS - 1) + np.arange(3)
            weights = np.broadcast_to(self.shifts[:, None, :], phi.shape)
            self._copies[vectors] = tuple(cla.to_device(queue, np.ascontiguousarray(array))
                                          for array in (real, image, psi.reshape(-1),
                                                        phi.reshape(-1, 3).astype(np.int64),
                                                        weights.reshape(-1, 3)))
        return self._copies[vectors]

    def between_passes(self, plan, forces: np.ndarray) -> dict[str, float]:
        """The images' multipoles, and the far images' flow into the cell's children's check
        potentials (module docstring), for ``forces`` ``(vectors, 3, ns)`` in tree order. Its
        seconds, as ``periodic``."""
        clock = time.perf_counter()
        queue = plan.queue
        vectors = len(forces)
        width = HARMONIC_POTENTIALS * vectors
        multipole = plan.buffers["multipole"]
        if len(self.images):
            real, image, psi, phi, weights = self._rows(queue, vectors)
            copy_rows(queue, multipole, real, image)
            add_weighted_rows(queue, multipole, psi, phi, weights)
        rows = folded_rows(self.source_children, width)
        densities = np.real(gather_rows(queue, multipole, rows)).reshape(
            len(rows) // width, vectors, 4, -1)
        child_totals = np.stack([forces[:, :, first:first + count].sum(axis=2)
                                 for first, count in self.source_ranges], axis=1)
        totals = child_totals.sum(axis=1)  # (vectors, 3)
        moments = np.einsum("vks,ks->v", forces, self.source_offsets)
        checks, added = [], []
        for vector in range(vectors):
            local, constants = self._far_flow(densities[:, vector], child_totals[vector],
                                              moments[vector])
            checks.append(local)
            added.append(constants)
        rows = folded_rows(self.children, width)
        values = np.stack(checks, axis=1)  # (children, vectors, 4, n)
        add_rows(queue, plan.buffers["check_down"], rows,
                 values.reshape(len(rows), -1))
        self._added = (totals, np.array([c[0] for c in added]), np.array([c[1] for c in added]))
        return {"periodic": time.perf_counter() - clock}

    def _far_flow(self, densities: np.ndarray, totals: np.ndarray, moment: float
                  ) -> tuple[np.ndarray, tuple[np.ndarray, float]]:
        """The far images' Laplace check potentials at the children ``(children, 4, n)`` from
        the source children's densities ``(children, 4, n)`` of one force vector, whose net
        forces are ``totals`` ``(children, 3)`` and whose first moment ``sum f . (y - c_0)``
        is ``moment``; and the velocity's and the pressure's constants (module docstring).
        Each child's density sums are set to its forces' (the far field carries each child's
        net force; the densities' sums carry the upward pass's rounding)."""
        h = self.half_width
        operators = self.operators
        n = densities.shape[2]
        total = totals.sum(axis=0)
        velocity, pressure = np.zeros((3, n)), np.zeros(n)
        velocity_constant, density_moment = np.zeros(3), 0.0
        for child, octant in enumerate(self.source_octants):
            density = densities[child]
            sigma = density[:3] + ((totals[child] - density[:3].sum(axis=1)) / n)[:, None]
            equivalent = self.equivalent[child]
            volume_sources = density[3] - np.einsum(
                "kn,kn->n", equivalent - self.centre[:, None], sigma)
            volume_sources -= volume_sources.mean()  # the forces' is 0
            far_velocity, far_pressure = operators.far_flow(octant, sigma, volume_sources / h)
            velocity += far_velocity / h
            pressure += far_pressure / h ** 2
            offsets = equivalent - self.centre[:, None]
            velocity_constant += (offsets * volume_sources).sum(axis=1) / self.volume
            density_moment += (offsets * sigma).sum()
        background, _ = background_flow(self.check_offsets, total, self.volume)
        velocity = (velocity - background).reshape(-1)
        fitted = h * (operators.fit_second @ (operators.fit_first @ velocity))
        fit_constant = np.mean(pressure - operators.fit_pressure @ fitted / h ** 2)
        fitted = fitted.reshape(3, n)
        charges = np.concatenate([fitted, np.einsum("kn,kn->n", self.local
                                                    - self.centre[:, None],
                                                    fitted)[None]])  # (4, n)
        local = np.einsum("ocn,pn->opc", operators.children[self.octants], charges) / h
        pressure_constant = fit_constant + (moment - density_moment) / (3 * self.volume)
        return local, (velocity_constant, pressure_constant)

    def finish(self, plan, outputs: np.ndarray, kernel: GreenKernel,
               split: StokesletSplit) -> None:
        """Add to ``outputs`` (``(n_outputs, M)`` in tree order, ``kernel``'s fields, in place)
        the body force's flow and the constants the last :meth:`between_passes` found."""
        clock = time.perf_counter()
        totals, velocity_constants, pressure_constants = self._added
        per_vector = kernel.n_outputs // kernel.vectors
        scale = 1.0 / (2.0 * split.mu)
        for vector in range(kernel.vectors):
            first = vector * per_vector
            velocity, gradient = background_flow(self.target_offsets, totals[vector],
                                                 self.volume)
            if "potential" in kernel.outputs:
                outputs[first:first + 3] += scale * (
                    velocity + velocity_constants[vector][:, None])
                first += 3
            if "gradient" in kernel.outputs:
                outputs[first:first + 9] += scale * gradient.reshape(9, -1)
                first += 9
            if "pressure" in kernel.outputs:
                outputs[first] += pressure_constants[vector]
        plan.eval_seconds["periodic"] = (plan.eval_seconds.get("periodic", 0.0)
                                         + time.perf_counter() - clock)
