"""Stokes flow past a sphere: a sphere of radius ``a`` translating with velocity ``U`` through
fluid of viscosity ``mu``, summed as a single layer of Stokeslets by ``fmmloopy.Fmm(...,
kernel="stokes")`` and checked against Stokes' solution.

The traction on a translating sphere is uniform, ``t = 3 mu U / (2 a)``, and its single layer
``u(x) = int_S G(x - y) t dS_y`` is the flow: ``U`` inside the sphere (it moves rigidly), and
outside

    u = 3a/4 (U / r + (U . x) x / r^3) + a^3/4 (U / r^3 - 3 (U . x) x / r^5),
    p = 3 mu a / 2 (U . x) / r^3.

The surface integral is a Gauss-Legendre (polar angle) times trapezoid (azimuth) rule, whose
nodes carry the forces ``t w_j``: the FMM's sources. Targets: points inside (``r <= a / 2``),
points outside (``2a <= r <= 5a``), and a control sphere of radius ``3a`` on which the stress
``sigma = -p I + mu (grad u + grad u^T)`` (the FMM's pressure and velocity gradient) is
integrated: ``-int sigma n dS`` is the force on the sphere, ``6 pi mu a U`` (Stokes' drag)
on every surface around it.

Usage::

    python examples/stokes_sphere.py [--n-theta 96] [--mu 1.5] [--order 9] [--json]

Exits with status 1 where an error exceeds ``--tolerance`` (1e-6).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import fmmloopy


def sphere_rule(n_theta: int, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes ``(n, 3)``, weights ``(n,)`` and outward normals of a Gauss-Legendre (in
    ``cos theta``, ``n_theta`` nodes) times trapezoid (``2 n_theta`` azimuths) rule on the
    sphere of ``radius`` about 0."""
    cosines, weights = np.polynomial.legendre.leggauss(n_theta)
    azimuths = np.arange(2 * n_theta) * (np.pi / n_theta)
    sines = np.sqrt(1.0 - cosines ** 2)
    normals = np.stack([np.outer(sines, np.cos(azimuths)), np.outer(sines, np.sin(azimuths)),
                        np.outer(cosines, np.ones_like(azimuths))], axis=-1).reshape(-1, 3)
    area = np.outer(weights, np.full(len(azimuths), np.pi / n_theta)).ravel() * radius ** 2
    return radius * normals, area, normals


def stokes_solution(points: np.ndarray, a: float, velocity: np.ndarray, mu: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Velocity and pressure of Stokes flow past a sphere of radius ``a`` moving with
    ``velocity`` at ``points`` outside it (module docstring)."""
    r = np.linalg.norm(points, axis=1)[:, None]
    along = (points @ velocity)[:, None]
    u = (0.75 * a * (velocity / r + along * points / r ** 3)
         + 0.25 * a ** 3 * (velocity / r ** 3 - 3 * along * points / r ** 5))
    return u, 1.5 * mu * a * along[:, 0] / r[:, 0] ** 3


def random_shell(rng, n: int, inner: float, outer: float) -> np.ndarray:
    directions = rng.standard_normal((n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return directions * rng.uniform(inner, outer, (n, 1))


def relative(value, reference) -> float:
    return float(np.linalg.norm(value - reference) / np.linalg.norm(reference))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-theta", type=int, default=96,
                        help="polar nodes of the sphere's rule (2 n^2 sources; default 96)")
    parser.add_argument("--radius", type=float, default=1.0)
    parser.add_argument("--mu", type=float, default=1.5, help="viscosity (default 1.5)")
    parser.add_argument("--order", type=int, default=None,
                        help="the FMM's order (default: a Stokes FMM's, 9)")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    a, mu = args.radius, args.mu
    velocity = np.array([0.3, -0.5, 0.8])
    rng = np.random.default_rng(0)

    nodes, weights, _ = sphere_rule(args.n_theta, a)
    forces = (1.5 * mu / a) * weights[:, None] * velocity  # the traction times the weights
    inside = random_shell(rng, 1000, 0.0, 0.5 * a)
    outside = random_shell(rng, 1000, 2.0 * a, 5.0 * a)
    control, control_weights, control_normals = sphere_rule(48, 3.0 * a)
    targets = np.concatenate([inside, outside, control])

    clock = time.perf_counter()
    fmm = fmmloopy.Fmm(nodes, targets, kernel=f"stokes:mu={mu}", order=args.order)
    setup = time.perf_counter() - clock
    clock = time.perf_counter()
    flow = fmm(forces, gradient=True, pressure=True)
    evaluation = time.perf_counter() - clock

    parts = np.cumsum([0, len(inside), len(outside)])
    u_in, u_out, u_control = np.split(flow.velocity, parts[1:])
    exact_out, pressure_out = stokes_solution(outside, a, velocity, mu)
    gradient, pressure = flow.gradient[parts[2]:], flow.pressure[parts[2]:]
    stress = (-pressure[:, None, None] * np.eye(3)
              + mu * (gradient + gradient.transpose(0, 2, 1)))
    drag = -np.einsum("nij,nj,n->i", stress, control_normals, control_weights)
    stokes_drag = 6 * np.pi * mu * a * velocity
    report = {
        "sources": len(nodes), "targets": len(targets), "order": fmm.order,
        "tree_levels": fmm.tree.nlevels, "n_crit": fmm.n_crit,
        "setup_seconds": setup, "evaluation_seconds": evaluation,
        "velocity_inside_error": relative(u_in, np.broadcast_to(velocity, u_in.shape)),
        "velocity_outside_error": relative(u_out, exact_out),
        "pressure_outside_error": relative(flow.pressure[parts[1]:parts[2]], pressure_out),
        "drag_error": relative(drag, stokes_drag),
        "drag": drag.tolist(), "stokes_drag": stokes_drag.tolist(),
    }
    errors = [value for key, value in report.items() if key.endswith("_error")]
    report["ok"] = bool(max(errors) <= args.tolerance)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"Stokes flow past a sphere (a = {a}, mu = {mu}, U = {velocity.tolist()}): "
              f"{len(nodes)} Stokeslets, {len(targets)} targets, order {fmm.order}, "
              f"{fmm.tree.nlevels} levels (n_crit {fmm.n_crit})")
        print(f"  set-up {setup:.3f} s, evaluation (velocity, gradient, pressure) "
              f"{evaluation:.3f} s")
        print(f"  velocity inside (rigid, U):       error {report['velocity_inside_error']:.2e}")
        print(f"  velocity outside (Stokes):        error {report['velocity_outside_error']:.2e}")
        print(f"  pressure outside:                 error {report['pressure_outside_error']:.2e}")
        print(f"  drag from the stress on r = 3a:   {np.round(drag, 9).tolist()}")
        print(f"  Stokes' drag 6 pi mu a U:         {np.round(stokes_drag, 9).tolist()}"
              f"  (error {report['drag_error']:.2e})")
        print("ok" if report["ok"] else f"FAILED: an error above {args.tolerance:g}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
