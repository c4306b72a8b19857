"""The Rotne-Prager-Yamakawa tensor where spheres overlap: the pairs closer than ``2a``.

An FMM of :func:`~fmmloopy.maths.flow_kernels.rpy` sums the tensor's form for separated
spheres, ``A_far(r) I + B_far(r) d d^T``, over every pair (its far field as Laplace sums,
:mod:`fmmloopy.maths.harmonic`), whichever list a pair falls in. Where two spheres overlap
(``r < 2a``) the tensor is another closed form; :class:`Overlaps` holds those pairs, found
once per point set with SciPy's k-d tree, and adds ``(A_near - A_far) f + (B_near - B_far)
d (d . f)`` to their velocities; at ``r = 0`` (a sphere and itself, or a target on a source)
the FMM's pair is 0 and the sphere's own mobility ``f / (6 pi mu a)`` is added. The pair's
two far terms cancel against the FMM's to the round-off of ``A_far``, which grows as
``(a / r)^3`` for ``r`` far below ``a``: at ``r = a / 100`` a relative ``1e-16 * 1e6``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_OVERLAPS_PER_TARGET", "Overlaps", "find_coincident", "find_overlaps",
           "rpy_parts"]

#: Overlapping pairs per target above which an FMM of the RPY tensor refuses: random spheres
#: of volume fraction ``c`` have about ``8 c`` within ``2a`` each, so this many means spheres
#: of a radius near the points' spacing times several (the pairs' arrays would be a direct
#: sum's, and the separated form's sum, which an FMM approximates, would dwarf the velocities).
MAX_OVERLAPS_PER_TARGET = 256


def rpy_parts(r: np.ndarray, mu: float, radius: float, *, overlapping: bool
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(A, B)`` of ``M = A I + B d d^T`` at distances ``r`` (> 0): the separated spheres'
    form, or with ``overlapping`` the overlapping spheres' (which holds at ``r = 0`` too, where
    ``B`` is given as 0: ``d d^T`` vanishes)."""
    r = np.asarray(r, dtype=np.float64)
    if overlapping:
        scale = 1.0 / (6.0 * np.pi * mu * radius)
        with np.errstate(divide="ignore"):
            dyadic = np.where(r > 0, 3.0 / (32.0 * radius * np.where(r > 0, r, 1.0)), 0.0)
        return scale * (1.0 - 9.0 * r / (32.0 * radius)), scale * dyadic
    scale = 1.0 / (8.0 * np.pi * mu)
    a2 = radius * radius
    return (scale * (1.0 + 2.0 * a2 / (3.0 * r * r)) / r,
            scale * (1.0 - 2.0 * a2 / (r * r)) / r ** 3)


@dataclass(frozen=True)
class Overlaps:
    """The target-source pairs closer than ``2a`` and what each adds to an FMM's sum of the
    separated form (module docstring)."""

    targets: np.ndarray  #: ``(P,)`` target index of each pair
    sources: np.ndarray  #: ``(P,)`` source index
    offsets: np.ndarray  #: ``(3, P)``: ``d = x - y``
    isotropic: np.ndarray  #: ``(P,)``: ``A_near - A_far`` (``A_near`` alone at ``r = 0``)
    dyadic: np.ndarray  #: ``(P,)``: ``B_near - B_far`` (0 at ``r = 0``)
    ntargets: int

    def add_to(self, velocities: np.ndarray, forces: np.ndarray) -> None:
        """``velocities`` ``(3 k, M)`` += the overlapping pairs' correction for ``forces``
        ``(3 k, N)`` (``k`` force vectors, each's components in turn)."""
        if not len(self.targets):
            return
        for vector in range(forces.shape[0] // 3):
            force = forces[3 * vector:3 * vector + 3, self.sources]
            along = np.einsum("kp,kp->p", self.offsets, force) * self.dyadic
            for axis in range(3):
                pair = self.isotropic * force[axis] + along * self.offsets[axis]
                velocities[3 * vector + axis] += np.bincount(
                    self.targets, weights=pair, minlength=self.ntargets).astype(
                        velocities.dtype, copy=False)


def find_overlaps(targets: np.ndarray, sources: np.ndarray, mu: float, radius: float
                  ) -> Overlaps:
    """The pairs of ``targets`` ``(3, M)`` and ``sources`` ``(3, N)`` within ``2 radius``
    (SciPy's ``cKDTree``) and their corrections."""
    try:
        from scipy.spatial import cKDTree
    except ImportError:
        raise ImportError("kernel 'rpy' finds the overlapping spheres with SciPy's k-d tree: "
                          "pip install 'fmmloopy[scipy]' (or scipy)") from None
    target_tree = cKDTree(targets.T)
    source_tree = target_tree if targets is sources else cKDTree(sources.T)
    count = int(target_tree.count_neighbors(source_tree, 2.0 * radius))
    if count > MAX_OVERLAPS_PER_TARGET * max(targets.shape[1], 1):
        raise ValueError(
            f"kernel 'rpy': spheres of radius {radius:g} overlap in {count} target-source "
            f"pairs, {count / targets.shape[1]:.0f} per target (more than "
            f"{MAX_OVERLAPS_PER_TARGET}): the radius is far above the points' spacing; the "
            "RPY tensor models spheres that mostly do not overlap")
    pairs = target_tree.sparse_distance_matrix(source_tree, 2.0 * radius,
                                               output_type="ndarray")
    near = pairs["v"] < 2.0 * radius
    target, source, distance = (pairs["i"][near], pairs["j"][near], pairs["v"][near])
    offsets = targets[:, target] - sources[:, source]
    distance = np.sqrt(np.einsum("kp,kp->p", offsets, offsets))  # as the FMM's pair sees it
    a_near, b_near = rpy_parts(distance, mu, radius, overlapping=True)
    apart = distance > 0
    a_far, b_far = np.zeros_like(distance), np.zeros_like(distance)
    a_far[apart], b_far[apart] = rpy_parts(distance[apart], mu, radius, overlapping=False)
    return Overlaps(target.astype(np.intp), source.astype(np.intp), offsets,
                    a_near - a_far, b_near - b_far, targets.shape[1])


def find_coincident(targets: np.ndarray, sources: np.ndarray, own: float) -> Overlaps:
    """The pairs of ``targets`` ``(3, M)`` and ``sources`` ``(3, N)`` at one point (a target
    on a source: the FMM leaves such a pair out), each adding ``own f``: a kernel's value
    ``own I`` at ``r = 0`` (the regularized Stokeslet's blob moving itself). Points are
    grouped by their exact coordinates (``numpy.unique``)."""
    together = np.concatenate([targets.T, sources.T]) if targets is not sources else sources.T
    _, labels = np.unique(together, axis=0, return_inverse=True)
    labels = labels.reshape(-1)
    count = targets.shape[1]
    target_labels = labels[:count]
    source_labels = labels[count:] if targets is not sources else target_labels
    order = np.argsort(source_labels, kind="stable")
    sorted_labels = source_labels[order]
    first = np.searchsorted(sorted_labels, target_labels, side="left")
    last = np.searchsorted(sorted_labels, target_labels, side="right")
    per_target = last - first
    target = np.repeat(np.arange(count), per_target)
    within = np.arange(len(target)) - np.repeat(np.cumsum(per_target) - per_target, per_target)
    source = order[np.repeat(first, per_target) + within]
    return Overlaps(target.astype(np.intp), source.astype(np.intp), np.zeros((3, len(target))),
                    np.full(len(target), float(own)), np.zeros(len(target)), count)
