"""Direct summation on the device: every source at every target, by the P2P kernel.

A direct sum is the pairwise template over one source list holding all sources: the targets
are cut into boxes of :data:`TARGETS_PER_BOX`, and each box lists one source box, the whole
source set. :class:`DirectSum` launches the ``p2p`` operator under the device's shipped recipe
(the kernel ``fmmloopy check`` compares with the sequential one), so a reference for an FMM
runs at the device's P2P rate instead of numpy's: at 10^6 sources and 10^3 targets, 10^9 pairs.
Inputs, coordinates and strengths go through the same checks and exact rescaling as
:class:`~fmmloopy.api.fmm.Fmm` (origin shift, powers of two), and the same fields (dipoles,
gradients) and strength vectors ``(N, k)`` are accepted.
"""

from __future__ import annotations

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from fmmloopy.api.units import checked_strengths, shaped_results, summed_in_user_units
from fmmloopy.base.devices import choose_device, context_for
from fmmloopy.base.validation import as_float64_points, check_point_array
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.maths.geometry import INDEX_DTYPE
from fmmloopy.maths.green import GreenKernel, get_kernel
from fmmloopy.maths.harmonic import harmonic_split
from fmmloopy.maths.rpy import find_coincident, find_overlaps
from fmmloopy.tree.close_pairs import close_pairs
from fmmloopy.tree.coordinates import working_coordinates

__all__ = ["DirectSum", "direct"]

#: Targets per box of the direct sum: one work-group's targets on a CPU recipe (its vector
#: lanes); enough boxes for every core from a few hundred targets on.
TARGETS_PER_BOX = 64


class DirectSum:
    """``sum_{i, x_i != y} G(y - x_i) q_i`` at every target ``y`` by direct summation on an
    OpenCL device (module docstring); called like :class:`~fmmloopy.api.fmm.Fmm` (charges,
    ``dipoles=``, ``gradient=``, ``hessian=``, strength vectors ``(N, k)``).
    ``exclude_within``: pairs closer than that are left out too (FMM3D's ``thresh``), their
    terms subtracted on the host (what remains carries their rounding: float64's times their
    size over the sum's)."""

    def __init__(self, sources, targets=None, *, kernel: str | GreenKernel = "laplace",
                 device=None, exclude_within: float = 0.0):
        self.kernel = get_kernel(kernel).base
        sources = as_float64_points(check_point_array(sources, "sources"), "sources")
        targets = sources if targets is None else as_float64_points(
            check_point_array(targets, "targets"), "targets")
        self._excluded = _excluded_pairs(targets, sources, exclude_within)
        self.nsources, self.ntargets = len(sources), len(targets)
        self.device = choose_device(device)
        self.queue = cl.CommandQueue(context_for(self.device))
        # The working coordinates of an Fmm: relative to the bounding box's centre where it
        # lies far from 0, times a power of two where the points are very close or far apart.
        _, self.coordinate_exponent, sources, targets = working_coordinates(
            sources, targets, self.kernel.homogeneity, self.kernel.name)
        self._sources = np.ascontiguousarray(sources.T)
        self._targets = np.ascontiguousarray(targets.T)
        self._overlaps = None  # the RPY tensor's (found at the first call)

    def __call__(self, charges=None, *, dipoles=None, gradient: bool = False,
                 pressure: bool = False, stresslets=None, hessian: bool = False):
        """Potentials at the targets (and with ``gradient``, :class:`Fields`, with ``hessian``
        :class:`~fmmloopy.api.units.HessianFields`; Stokes:
        velocities, or a :class:`~fmmloopy.api.units.Flow`), as
        :meth:`Fmm.__call__ <fmmloopy.api.fmm.Fmm.__call__>` returns them."""
        strengths, kernel, batched = checked_strengths(self.kernel, self.nsources, charges,
                                                       dipoles, gradient, pressure, stresslets,
                                                       hessian)
        return shaped_results(self._sum(strengths, kernel), kernel, batched)

    def _sum(self, strengths: np.ndarray, kernel: GreenKernel) -> np.ndarray:
        """``kernel``'s outputs ``(n_outputs, M)`` for ``strengths`` ``(n_inputs, N)``."""
        dtype = kernel.value_dtype()
        if not self.nsources or not self.ntargets:
            return np.zeros((kernel.n_outputs, self.ntargets), dtype)
        outputs = summed_in_user_units(strengths, kernel, self.coordinate_exponent,
                                       lambda scaled: self._with_overlaps(
                                           self._launch(scaled, kernel), scaled, kernel))
        return self._without_excluded(outputs, strengths, kernel)

    def _without_excluded(self, outputs: np.ndarray, strengths: np.ndarray,
                          kernel: GreenKernel) -> np.ndarray:
        """``outputs`` ``(n_outputs, M)`` less the terms of the pairs ``exclude_within``
        leaves out."""
        target, source, offsets = self._excluded
        if not len(target):
            return outputs
        entries = kernel.evaluate(offsets)  # (P,) or (P, n_outputs, n_inputs)
        if entries.ndim == 1:
            terms = (entries * strengths[0, source])[None]
        else:
            terms = np.einsum("poi,ip->op", entries, strengths[:, source])
        outputs = outputs.astype(np.result_type(outputs, terms), copy=False)
        np.subtract.at(outputs, (slice(None), target), terms)
        return outputs

    def _with_overlaps(self, outputs: np.ndarray, strengths: np.ndarray,
                       kernel: GreenKernel) -> np.ndarray:
        """``outputs`` of the RPY tensor with its overlapping spheres' form where they overlap,
        of the regularized Stokeslet with its blobs' own velocities (:mod:`fmmloopy.maths.
        rpy`); other kernels' as they are."""
        split = harmonic_split(kernel)
        if split is None or split.psi_dipole is None:
            return outputs
        if self._overlaps is None:
            self._overlaps = (
                find_overlaps(self._targets, self._sources, split.mu, split.radius)
                if split.radius is not None
                else find_coincident(self._targets, self._sources, split.own_velocity))
        outputs = np.atleast_2d(outputs)
        self._overlaps.add_to(outputs, strengths)
        return outputs

    def _launch(self, strengths: np.ndarray, kernel: GreenKernel) -> np.ndarray:
        """The P2P launch over all pairs: ``kernel``'s outputs for working-unit ``strengths``."""
        dtype = kernel.value_dtype()
        nboxes = 1 + -(-self.ntargets // TARGETS_PER_BOX)  # box 0 holds every source
        target_starts = np.zeros(nboxes, INDEX_DTYPE)
        target_starts[1:] = np.arange(0, self.ntargets, TARGETS_PER_BOX)
        target_counts = np.zeros(nboxes, INDEX_DTYPE)
        target_counts[1:] = np.diff(np.append(target_starts[1:], self.ntargets))
        source_counts = np.zeros(nboxes, INDEX_DTYPE)
        source_counts[0] = self.nsources
        ntarget_boxes = nboxes - 1
        arguments = {
            "sources": self._sources, "targets": self._targets,
            "box_source_starts": np.zeros(nboxes, INDEX_DTYPE),
            "box_source_counts": source_counts,
            "box_target_starts": target_starts, "box_target_counts": target_counts,
            "target_boxes": np.arange(1, nboxes, dtype=INDEX_DTYPE),
            "source_box_starts": np.arange(ntarget_boxes + 1, dtype=INDEX_DTYPE),
            "source_box_lists": np.zeros(ntarget_boxes, INDEX_DTYPE),
            "strengths": strengths[0] if kernel.n_inputs == 1 else strengths,
            "result": np.zeros((kernel.n_outputs, self.ntargets) if kernel.n_outputs > 1
                               else self.ntargets, dtype),
            "nsources": self.nsources, "ntargets": self.ntargets, "nboxes": nboxes,
            "ntarget_boxes": ntarget_boxes, "nsource_list_entries": ntarget_boxes,
            "max_box_targets": int(target_counts.max()),
        }
        operator = compiled_operator("p2p", self.device, kernel=kernel)
        device_arguments = {
            name: cla.to_device(self.queue, np.ascontiguousarray(value))
            if isinstance(value, np.ndarray) else value
            for name, value in arguments.items() if name in operator.argument_names}
        return operator(self.queue, **device_arguments)["result"].get(queue=self.queue)


def _excluded_pairs(targets: np.ndarray, sources: np.ndarray, distance
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target, source, offset ``(P, 3)``) of the pairs closer than ``distance`` (apart)."""
    if isinstance(distance, bool) or not isinstance(distance, int | float | np.floating) \
            or not 0 <= distance < np.inf:
        raise ValueError(f"exclude_within must be a distance >= 0, not {distance!r}")
    target, source = close_pairs(targets, sources, float(distance))
    return target, source, targets[target] - sources[source]


def direct(sources, charges, targets=None, **options) -> np.ndarray:
    """One direct sum on the device: ``DirectSum(sources, targets, **options)(charges)``."""
    return DirectSum(sources, targets, **options)(charges)
