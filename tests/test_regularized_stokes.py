"""Cortez's regularized Stokeslet: the kernel, its far field's remainder, and the FMM.

Reference: the closed form written here by hand, ``((r^2 + 2 eps^2) I + d d^T) / (8 pi mu (r^2
+ eps^2)^(3/2))`` (``I / (4 pi mu eps)`` at ``r = 0``), summed directly in numpy. Bounds: the
Stokes sums' error at order 9 (the default) measured 1e-8 to 4e-7 on these sets
(docs/kernels.md, "Regularized Stokeslets"), the far field's remainder held below ten times
the Laplace KIFMM's expected error at the order: held at 1e-6.
"""

import numpy as np
import pytest

import fmmloopy
from fmmloopy.base.distributions import sphere_surface
from fmmloopy.maths.harmonic import blob_leaf_width
from fmmloopy.maths.m2l_compression import expected_error


def blobs(targets, sources, forces, epsilon, mu=1.0):
    """The regularized Stokeslets' velocities at ``targets`` ``(M, 3)``, summed directly."""
    velocity = np.zeros((len(targets), 3))
    for first in range(0, len(sources), 5000):
        offsets = targets[:, None, :] - sources[None, first:first + 5000]
        force = forces[first:first + 5000]
        squared = (offsets ** 2).sum(axis=-1)
        scale = 1.0 / (8 * np.pi * mu * (squared + epsilon ** 2) ** 1.5)
        velocity += np.einsum("ts,sk->tk", scale * (squared + 2 * epsilon ** 2), force)
        velocity += np.einsum("tsk,ts->tk", offsets,
                              scale * np.einsum("tsj,sj->ts", offsets, force))
    return velocity


def stokeslet_and_laplacian(offset, mu=1.0):
    """``(G, lap G)`` of the Stokeslet at one offset."""
    r = np.linalg.norm(offset)
    outer = np.outer(offset, offset)
    stokeslet = (np.eye(3) / r + outer / r ** 3) / (8 * np.pi * mu)
    return stokeslet, (2 * np.eye(3) / r ** 3 - 6 * outer / r ** 5) / (8 * np.pi * mu)


def test_the_kernel_is_cortezs_blob_and_moves_itself():
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.1, 0.1, (300, 3))
    points[7] = points[3]  # two blobs at one point
    forces = rng.standard_normal((300, 3))
    epsilon, mu = 0.02, 0.6
    summed = fmmloopy.DirectSum(points, kernel=f"regularized_stokes:mu={mu},epsilon={epsilon}"
                                )(forces)
    np.testing.assert_allclose(summed, blobs(points, points, forces, epsilon, mu),
                               rtol=0, atol=1e-12 * np.abs(summed).max())
    assert np.abs(blobs(points[:1], points[:1], forces[:1], epsilon, mu)
                  - forces[0] / (4 * np.pi * mu * epsilon)).max() < 1e-12


@pytest.mark.parametrize("ratio", [18.0, 40.0, 100.0, 1000.0])
def test_the_far_fields_remainder_is_within_its_bound(ratio):
    """``G_eps - G - (eps^2 / 4) lap G`` is at most ``(9 / 8) (eps / r)^4`` of ``|G|``, the
    bound the tree's narrowest box is chosen by."""
    rng = np.random.default_rng(1)
    epsilon = 1e-3
    for direction in rng.standard_normal((20, 3)):
        offset = ratio * epsilon * direction / np.linalg.norm(direction)
        stokeslet, laplacian = stokeslet_and_laplacian(offset)
        exact = np.array([blobs(offset[None], np.zeros((1, 3)), np.eye(3)[[b]], epsilon)[0]
                          for b in range(3)]).T
        remainder = exact - stokeslet - epsilon ** 2 / 4 * laplacian
        assert np.abs(remainder).max() <= 9 / 8 * ratio ** -4 * np.abs(stokeslet).max() * 1.01


@pytest.mark.parametrize("case", ["cube", "sphere surface", "targets apart"])
def test_velocities_match_the_closed_form(case):
    rng = np.random.default_rng(2)
    if case == "sphere surface":  # blobs a third of the spacing, as on a discretised surface
        sources, epsilon = sphere_surface(20000, rng), 0.008
    else:
        sources, epsilon = rng.uniform(-1, 1, (20000, 3)), 1e-3
    targets = None
    if case == "targets apart":
        targets = np.vstack([rng.uniform(-1.5, 1.5, (400, 3)), sources[:5]])
    forces = rng.standard_normal((20000, 3, 2))
    fmm = fmmloopy.Fmm(sources, targets=targets, kernel=f"regularized_stokes:epsilon={epsilon}")
    velocity = fmm(forces)
    sample = (np.arange(405) if targets is not None
              else rng.choice(20000, 300, replace=False))
    at = sources[sample] if targets is None else targets
    for vector in range(2):
        want = blobs(at, sources, forces[:, :, vector], epsilon)
        assert np.abs(velocity[sample, :, vector] - want).max() <= 1e-6 * np.abs(want).max()
    # every pair of the far field is a box width apart: no box narrower than the bound's
    widths = 2 * fmm.tree.level_half_widths[fmm.tree.box_levels[fmm.tree.box_is_leaf]]
    assert widths.min() >= blob_leaf_width(epsilon, 10 * expected_error(fmm.order))


@pytest.mark.parametrize("options, call, message", [
    ({}, {"gradient": True}, "velocities of forces only"),
    ({"periodic": 1.0}, {}, "Laplace and Stokes kernels"),
])
def test_what_it_does_not_have_is_refused(options, call, message):
    rng = np.random.default_rng(3)
    points, forces = rng.random((300, 3)), rng.standard_normal((300, 3))
    with pytest.raises(ValueError, match=message):
        fmmloopy.Fmm(points, kernel="regularized_stokes:epsilon=0.01", **options)(
            forces, **call)
    with pytest.raises(ValueError, match="regularized Stokeslet"):
        fmmloopy.DistributedFmm(points, kernel="regularized_stokes:epsilon=0.01")
