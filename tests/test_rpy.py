"""The Rotne-Prager-Yamakawa tensor: mobilities of spheres of one radius, separated and
overlapping.

Reference: the RPY tensor written here from its closed forms, independent of the kernel's
symbolic expression and of :mod:`fmmloopy.maths.rpy`,

    r >= 2a:  (1 / (8 pi mu r)) [(1 + 2 a^2 / (3 r^2)) I + (1 - 2 a^2 / r^2) r^ r^T],
    r <  2a:  (1 / (6 pi mu a)) [(1 - 9 r / (32 a)) I + (3 r / (32 a)) r^ r^T],

``I / (6 pi mu a)`` at ``r = 0``, summed directly. Bounds: the FMM's far field is the
Stokeslet's Laplace sums (docs/kernels.md, "Stokes": 4e-8 to 3e-7 at the default order 9 on
3e4 points), held at the acceptance's 1e-6; a direct sum's rounding, 1e-12.
"""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import fmmloopy
from fmmloopy.base.distributions import sphere_surface
from fmmloopy.maths.green import get_kernel, rpy
from fmmloopy.maths.rpy import MAX_OVERLAPS_PER_TARGET, rpy_parts

pytest.importorskip("scipy", reason="the RPY tensor's overlapping pairs need SciPy")

MU, RADIUS = 0.8, 0.01
KERNEL = f"rpy:mu={MU},radius={RADIUS}"
DEFAULT_ORDER_BOUND = 1e-6


def rpy_tensor(offsets, mu=MU, a=RADIUS):
    """``(..., 3, 3)``: the RPY mobility at ``offsets`` ``(..., 3)`` (module docstring)."""
    r = np.sqrt(np.einsum("...k,...k->...", offsets, offsets))
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = np.where(r[..., None] > 0, offsets / r[..., None], 0.0)
        separated = ((1 + 2 * a * a / (3 * r * r))[..., None, None] * np.eye(3)
                     + (1 - 2 * a * a / (r * r))[..., None, None]
                     * unit[..., :, None] * unit[..., None, :]) / (8 * np.pi * mu * r)[..., None,
                                                                                         None]
    overlapping = ((1 - 9 * r / (32 * a))[..., None, None] * np.eye(3)
                   + (3 * r / (32 * a))[..., None, None] * unit[..., :, None]
                   * unit[..., None, :]) / (6 * np.pi * mu * a)
    return np.where((r < 2 * a)[..., None, None], overlapping, separated)


def mobility_velocities(sources, forces, targets, sample, mu=MU, a=RADIUS):
    rows = []
    for chunk in np.array_split(sample, max(1, len(sample) // 25)):
        offsets = targets[chunk][:, None] - sources[None]
        rows.append(np.einsum("tsab,sb->ta", rpy_tensor(offsets, mu, a), forces))
    return np.concatenate(rows)


def relative(value, reference):
    return np.linalg.norm(value - reference) / np.linalg.norm(reference)


def touching_cloud(rng, n, a=RADIUS, coincident=True):
    """Uniform points in the unit cube with some spheres overlapping on purpose: pairs at
    ``r`` from ``a / 10`` to ``2a``, and (``coincident``) one pair on top of each other."""
    points = rng.uniform(0, 1, (n, 3))
    pairs = np.arange(0, 200, 2)
    direction = rng.standard_normal((len(pairs), 3))
    direction /= np.linalg.norm(direction, axis=1)[:, None]
    points[pairs + 1] = points[pairs] + direction * np.linspace(0.1, 1.99, len(pairs))[:, None] * a
    if coincident:
        points[201] = points[200]
    return points


def test_the_kernel_is_the_separated_form_and_the_two_forms_meet_at_2a():
    rng = np.random.default_rng(0)
    offsets = rng.standard_normal((200, 3)) * np.logspace(-1.5, 1, 200)[:, None]
    kernel = rpy(MU, RADIUS)
    apart = np.linalg.norm(offsets, axis=1) >= 2 * RADIUS
    np.testing.assert_allclose(kernel.evaluate(offsets[apart]), rpy_tensor(offsets[apart]),
                               rtol=1e-13)
    assert get_kernel(KERNEL) == kernel and kernel.homogeneity is None
    at = np.array([2 * RADIUS])
    for near, far in zip(rpy_parts(at, MU, RADIUS, overlapping=True),
                         rpy_parts(at, MU, RADIUS, overlapping=False), strict=True):
        np.testing.assert_allclose(near, far, rtol=1e-14)
    for bad in ({"radius": 0.0}, {"radius": -1.0}, {"mu": float("inf")}):
        with pytest.raises(ValueError, match="rpy: the"):
            rpy(**{"mu": 1.0, "radius": 1.0, **bad})


def test_direct_sum_is_the_closed_form_with_overlaps_and_self_mobility():
    rng = np.random.default_rng(1)
    points = touching_cloud(rng, 600)
    forces = rng.standard_normal((600, 3))
    velocity = fmmloopy.DirectSum(points, kernel=KERNEL)(forces)
    exact = mobility_velocities(points, forces, points, np.arange(600))
    np.testing.assert_allclose(velocity, exact, rtol=0, atol=1e-12 * np.abs(exact).max())
    # The self mobility F / (6 pi mu a) is in: one sphere alone moves at Stokes' velocity.
    lone = fmmloopy.DirectSum(points[:1], kernel=KERNEL)(forces[:1])
    np.testing.assert_allclose(lone, forces[:1] / (6 * np.pi * MU * RADIUS), rtol=1e-14)


@pytest.mark.parametrize("name", ["cube", "sphere", "targets apart"])
def test_fmm_velocities_match_the_closed_form_at_the_default_order(name):
    """Overlapping, touching and separated spheres, a target on a source and targets within
    2a of sources: every pair's form, the far field exercised (several levels)."""
    rng = np.random.default_rng(2)
    n = 12_000
    sources = touching_cloud(rng, n) if name != "sphere" else sphere_surface(n, rng)
    if name == "sphere":  # neighbours on the sphere lie ~0.03 apart: radius 0.01 overlaps some
        sources[1] = sources[0] * (1 + 0.5 * RADIUS)
    targets = None
    if name == "targets apart":
        targets = rng.uniform(-0.2, 1.2, (3000, 3))
        targets[0] = sources[7]
        targets[1] = sources[9] + [RADIUS, 0, 0]
    forces = rng.standard_normal((n, 3))
    fmm = fmmloopy.Fmm(sources, targets, kernel=KERNEL, n_crit=48)
    assert fmm.order == 9 and fmm.tree.nlevels > 3
    velocity = fmm(forces)
    at = sources if targets is None else targets
    sample = np.concatenate([np.arange(4), rng.choice(len(at), 250, replace=False)])
    exact = mobility_velocities(sources, forces, at, sample)
    assert relative(velocity[sample], exact) < DEFAULT_ORDER_BOUND
    # The overlap's own terms, target by target: the first targets overlap their neighbour.
    np.testing.assert_allclose(velocity[:4], exact[:4], rtol=0,
                               atol=DEFAULT_ORDER_BOUND * np.abs(exact).max())


def test_several_force_vectors_and_eps():
    rng = np.random.default_rng(3)
    points = touching_cloud(rng, 8000)
    forces = rng.standard_normal((8000, 3, 2))
    fmm = fmmloopy.Fmm(points, kernel=KERNEL, n_crit=48)
    both = fmm(forces)
    assert both.shape == (8000, 3, 2)
    for column in range(2):
        np.testing.assert_allclose(both[..., column], fmm(forces[..., column]), rtol=0,
                                   atol=1e-13 * np.abs(both).max())
    sample = rng.choice(8000, 200, replace=False)
    exact = mobility_velocities(points, forces[..., 0], points, sample)
    loose = fmmloopy.Fmm(points, kernel=KERNEL, n_crit=48, eps=1e-4)
    assert loose.order < 9
    assert relative(loose(forces[..., 0])[sample], exact) < 1e-4


@pytest.mark.filterwarnings("ignore:build_tree. max_depth=20 reached:RuntimeWarning")
def test_a_nested_rows_overlaps_are_added_once():
    """A cluster finer than the tree's depth is summed by a nested FMM: the overlapping pairs
    inside it (and every sphere's own mobility) are the outer FMM's to add, once."""
    rng = np.random.default_rng(4)
    points = np.concatenate([1e-9 * rng.standard_normal((1000, 3)), [[1.0, 1.0, 1.0]]])
    a = 3e-11
    points[1] = points[0] + [a, 0, 0]
    forces = rng.standard_normal((len(points), 3))
    fmm = fmmloopy.Fmm(points, kernel=f"rpy:radius={a}", n_crit=16)
    assert len(fmm.nested_rows) == 1
    exact = mobility_velocities(points, forces, points, np.arange(len(points)), 1.0, a)
    assert relative(fmm(forces), exact) < DEFAULT_ORDER_BOUND


def test_the_mobility_matrix_is_symmetric_positive_definite():
    """The RPY tensor's point: its mobility matrix stays positive definite where spheres
    overlap (the Stokeslet's does not)."""
    rng = np.random.default_rng(5)
    points = touching_cloud(rng, 250, a=0.1, coincident=False)  # two on one: semidefinite
    fmm = fmmloopy.Fmm(points, kernel="rpy:radius=0.1", n_crit=16)
    matrix = fmmloopy.linear_operator(fmm) @ np.eye(750)  # 750 vectors: passes of 4
    # Symmetric to the FMM's accuracy, entry by entry: 1e-6 of the velocities' norm is up to
    # ~1e-5 of the largest entry (measured 1.3e-6 at these spheres of radius 0.1).
    np.testing.assert_allclose(matrix, matrix.T, rtol=0, atol=1e-5 * np.abs(matrix).max())
    # Measured: smallest eigenvalue 0.0096 (largest 26), the FMM's asymmetry 1.4e-6 an entry.
    assert np.linalg.eigvalsh((matrix + matrix.T) / 2).min() > 0


def test_what_rpy_does_not_have_is_refused_by_name():
    rng = np.random.default_rng(6)
    points = rng.uniform(0, 1, (400, 3))
    forces = rng.standard_normal((400, 3))
    fmm = fmmloopy.Fmm(points, kernel=KERNEL)
    for asked in ({"gradient": True}, {"pressure": True},
                  {"dipoles": rng.standard_normal((400, 3, 3))}):
        with pytest.raises(ValueError, match="velocities of forces only|no pressure"):
            fmm(forces, **asked)
    with pytest.raises(ValueError, match=f"more than {MAX_OVERLAPS_PER_TARGET}"):
        fmmloopy.Fmm(points, kernel="rpy:radius=0.5")(forces)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="periodic"):
            fmmloopy.Fmm(points, kernel=KERNEL, periodic=1.0)


def test_the_sedimenting_spheres_example_settles_as_a_drop():
    """``examples/sedimenting_spheres.py`` as a user runs it (fewer spheres and steps): every
    checked step's velocities within 1e-6 of the direct sums (measured 2e-9), the small copy's
    FMM within 1e-6 of its direct sums at every step, the updates keep the boxes as the cloud
    falls (the boxes follow its mean; a rebuild gives its root cube room), and the cloud's
    first mean velocity within 5 % of the drop's (measured 0.1 % at 2e4 spheres)."""
    example = Path(__file__).parents[1] / "examples" / "sedimenting_spheres.py"
    done = subprocess.run([sys.executable, str(example), "--n", "20000", "--steps", "6",
                           "--small", "1500", "--check-every", "3", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["tree_levels"] > 3 and len(report["steps"]) == 7
    assert [step["step"] for step in report["steps"] if "error" in step] == [0, 3, 6]
    assert report["max_error"] < 1e-6 and report["first_drop_error"] < 0.05
    assert report["small_copy"]["max_error"] < 1e-6 and len(report["small_steps"]) == 7
    # The first Fmm's root cube may be the points' own (n_crit="auto" chooses it or a wider
    # one): the first update may then rebuild it with room to move; the others keep it.
    assert report["updates"] == 6 and report["kept_boxes"] >= 5, report["rebuilt_because"]
    assert set(report["rebuilt_because"]) <= {"rebuilt: a point left the root cube"}
    # The cloud fell 6 x 2 % of its radius at about the drop's velocity.
    assert all(0.9 < -step["mean_velocity"][2] / report["drop_velocity"] < 1.1
               for step in report["steps"])
