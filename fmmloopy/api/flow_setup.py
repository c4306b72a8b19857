"""What an FMM of a Stokes-family kernel (:mod:`fmmloopy.maths.harmonic`: the Stokeslet, the
RPY tensor, the regularized Stokeslet, stresslets) adds to the set-up and to an evaluation: the
far field's Laplace charges and the velocities from its fields (:func:`harmonic_hooks`), the
pairs an FMM of the RPY tensor or of blobs corrects on the host (:func:`pair_corrections`), and
the regularized Stokeslet's deepest level (:func:`deepest_level`).
"""

from __future__ import annotations

import math
import time

import numpy as np

from fmmloopy.api.options import FmmOptions
from fmmloopy.driver.evaluation import PassHooks
from fmmloopy.driver.plan import Plan
from fmmloopy.maths.green import GreenKernel
from fmmloopy.maths.harmonic import blob_leaf_width, harmonic_split
from fmmloopy.maths.m2l_compression import expected_error
from fmmloopy.maths.rpy import Overlaps, find_coincident, find_overlaps
from fmmloopy.tree.octree import Tree, root_cube

__all__ = ["BLOB_TOLERANCE_FACTOR", "FAR_BUFFERS", "deepest_level", "depth_limited_by_kernel",
           "harmonic_hooks", "pair_corrections"]


#: The far field's point buffers where it sums another kernel than the near field.
FAR_BUFFERS = {"strengths": "far_strengths", "potential": "far_potential"}


def pair_corrections(tree: Tree, split) -> Overlaps:
    """What the pairs of ``tree``'s points add to a far field of ``split``'s Laplace sums with
    ``psi`` dipoles: the RPY tensor's overlapping spheres' form, the regularized Stokeslet's
    blobs on themselves (:mod:`fmmloopy.maths.rpy`)."""
    targets = tree.sources_soa if tree.targets_are_sources else tree.targets_soa
    if split.radius is not None:
        return find_overlaps(targets, tree.sources_soa, split.mu, split.radius)
    return find_coincident(targets, tree.sources_soa, split.own_velocity)


def depth_limited_by_kernel(options: FmmOptions) -> bool:
    """Whether the kernel limits the tree's depth (the regularized Stokeslet,
    :func:`deepest_level`): its deepest leaves are summed directly, however full, neither
    warned about nor nested."""
    split = harmonic_split(options.kernel)
    return split is not None and split.blob is not None


def deepest_level(options: FmmOptions, sources: np.ndarray, targets: np.ndarray | None,
                  exponent: int) -> int:
    """The tree's deepest level: ``options.max_depth``, or for the regularized Stokeslet
    the deepest whose boxes are at least :func:`~fmmloopy.maths.harmonic.blob_leaf_width`
    wide (in working coordinates ``2**-exponent`` of the user's) for the order's error
    (:data:`BLOB_TOLERANCE_FACTOR` times :func:`~fmmloopy.maths.m2l_compression.
    expected_error`): every pair the far field sums is then a box width apart."""
    split = harmonic_split(options.kernel)
    if split is None or split.blob is None:
        return options.max_depth
    _, half_width = root_cube(sources, targets)
    narrowest = math.ldexp(blob_leaf_width(
        split.blob, BLOB_TOLERANCE_FACTOR * expected_error(options.order)), -exponent)
    if narrowest >= 2 * half_width:
        return 0
    return min(options.max_depth, int(math.floor(math.log2(2 * half_width / narrowest))))


#: The regularized Stokeslet's far-field remainder is held to this many times the Laplace
#: KIFMM's expected error at the order (the Stokes sums' own error measured 3 to 40 times it).
BLOB_TOLERANCE_FACTOR = 10.0


def harmonic_hooks(tree: Tree, split, green: GreenKernel, charges: np.ndarray,
                    overlaps: Overlaps | bool | None, centre: np.ndarray | None = None
                    ) -> PassHooks:
    """The Laplace charges of ``charges`` (``green``'s strengths, tree order) uploaded after
    them, and ``green``'s far fields from the Laplace fields added to the near field's at the
    end (:class:`~fmmloopy.maths.harmonic.StokesletSplit`), with the RPY tensor's
    ``overlaps`` (:class:`~fmmloopy.maths.rpy.Overlaps`) where there are some. ``centre``:
    ``psi``'s (default the root's; a periodic FMM's cell's)."""
    centre = np.asarray(tree.root_centre if centre is None else centre, dtype=np.float64)
    targets = tree.sources_soa if tree.targets_are_sources else tree.targets_soa
    count = targets.shape[1]

    def before(plan: Plan) -> None:
        buffer = plan.buffers[FAR_BUFFERS["strengths"]]
        far_inputs, nsources = split.far_kernel(green).n_inputs, tree.sources_soa.shape[1]
        laplace = split.charges(
            green, np.asarray(charges, dtype=np.float64), tree.sources_soa, centre,
            plan.host_array("harmonic charges", (far_inputs, nsources), np.float64),
            plan.host_array("harmonic source offsets", (3, nsources), np.float64))
        buffer.set(laplace.astype(buffer.dtype, copy=False), queue=plan.queue)

    def after(plan: Plan, potential: np.ndarray) -> None:
        clock = time.perf_counter()
        laplace = plan.read_back(FAR_BUFFERS["potential"]).astype(np.float64, copy=False)
        offset = plan.host_array("harmonic offsets", (3, count), np.float64)
        np.subtract(targets, centre[:, None], out=offset)
        fields = split.fields(green, laplace, offset,
                              plan.host_array("harmonic fields", (green.n_outputs, count),
                                              np.float64),
                              plan.host_array("harmonic scratch", (count,), np.float64))
        potential += fields.astype(potential.dtype, copy=False)
        if overlaps:
            overlaps.add_to(potential, np.asarray(charges, dtype=np.float64))
        seconds = time.perf_counter() - clock
        plan.eval_seconds["harmonic"] = seconds
        plan.eval_seconds["total"] += seconds
    return PassHooks(before=before, after=after)
